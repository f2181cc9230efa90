"""The fast path never decompresses (issue 15, redesign §5.5 check 4), on the CPU kernels.

A torch.profiler run of forward -> backward -> optimizer.step() -> forward of
SparseLinear(fast=True) holds no s_ste::decompress event outside the sparse GEMMs (the CPU
kernel of s_ste::sparse_linear is the portable decompress + dense GEMM, which dispatches
s_ste::decompress itself; the CUDA GEMMs read the compressed operands) and exactly one weight
compress per weight version (prune_and_compress_dense writes the dense ŵ of the input-gradient GEMM in the
same pass); STE / SR-STE compress with hard=True, without a hard_threshold_24 pre-pass (SR-STE's
backward still reads its decay mask from one).
"""
import collections
import warnings

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import s_ste

from conftest import randn

N, K, T = 64, 128, 40  # both layouts' alignments; 40 tokens: padded for the weight-gradient GEMM
WEIGHT_COMPRESS = ("s_ste::prune_and_compress_dense", "s_ste::prune_and_compress")
CASES = [("sm90", False), ("sm80", False), ("sm90", True)]


def _inside_sparse_gemm(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == "s_ste::sparse_linear":
            return True
        parent = parent.cpu_parent
    return False


def profiled_steps(layer) -> collections.Counter:
    """Op-event counts of forward -> backward -> optimizer.step() -> forward; decompress events
    inside a sparse GEMM are counted apart, as "s_ste::decompress (in sparse_linear)"."""
    opt = torch.optim.SGD(layer.parameters(), lr=1e-3)
    x, g = randn(T, K, seed=1), randn(T, N, seed=2)
    autocast = not layer.fp8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the semantic path
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                y = layer(x)
            y.backward(g.to(y.dtype))
            opt.step()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                layer(x)
    return collections.Counter(f"{e.name} (in sparse_linear)" if e.name == "s_ste::decompress" and
                               _inside_sparse_gemm(e) else e.name for e in prof.events())


@pytest.mark.parametrize("layout,fp8", CASES, ids=[f"{la}-{'fp8' if f else '16bit'}" for la, f in CASES])
@pytest.mark.parametrize("recipe", ["ste", "sr-ste", "s-ste"])
def test_fast_path_compresses_once_per_weight_version_and_never_decompresses(recipe, layout, fp8):
    torch.manual_seed(0)
    layer = s_ste.SparseLinear(K, N, recipe=recipe, fp8=fp8, fast=True, layout=layout, seed=3)
    counts = profiled_steps(layer)
    assert counts["s_ste::fast_linear"] == 2 and counts["s_ste::fast_linear_backward"] == 1, "the fast path ran"
    assert counts["s_ste::decompress"] == 0, "the layer itself never decompresses"
    assert counts["s_ste::decompress (in sparse_linear)"] <= counts["s_ste::sparse_linear"], "(the CPU GEMM's own)"
    assert sum(counts[name] for name in WEIGHT_COMPRESS) == 2, "one compress per weight version (2 versions)"
    assert counts["s_ste::prune_and_compress_dense"] == 2
    assert counts["s_ste::hard_threshold_24"] == (1 if recipe == "sr-ste" else 0), "no pre-pass; SR-STE's mask"


def test_the_dense_recipe_compresses_nothing():
    torch.manual_seed(0)
    layer = s_ste.SparseLinear(K, N, recipe="dense", fast=False, seed=3)
    counts = profiled_steps(layer)
    assert not any(counts[name] for name in (*WEIGHT_COMPRESS, "s_ste::decompress"))
