"""SparseLinear's fast path on the GPU: against the same fast path on the CPU kernels, torch.compile
(inductor) without graph breaks, no host sync in a training step, and to_inference on a trained GPT
with torch's own 2:4 inference path. Needs a CUDA GPU (sm_80+; FP8 cases sm_90)."""
import copy
import os
import sys
import warnings

import pytest
import torch

import s_ste

from conftest import randn, requires_cuda

pytestmark = requires_cuda

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, K, T = 256, 512, 1024


def sm_major():
    return torch.cuda.get_device_capability()[0] if torch.cuda.is_available() else 0


def cases():
    out = [("sm80", False)]
    if sm_major() == 9:
        out += [("sm90", False), ("sm90", True)]
    return out


def layer_pair(layout, fp8, recipe="s-ste"):
    torch.manual_seed(0)
    cpu = s_ste.SparseLinear(K, N, recipe=recipe, fp8=fp8, seed=5, fast=True, layout=layout, dtype=torch.bfloat16)
    cpu.reset_scale()
    gpu = copy.deepcopy(cpu).cuda()
    return cpu, gpu


def run_step(layer, x, g):
    x = x.clone().requires_grad_()
    layer.weight.grad = layer.bias.grad = None
    y = layer(x)
    y.backward(g)
    return [t.detach().float().cpu() for t in (y, x.grad, layer.weight.grad, layer.bias.grad)]


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("layout,fp8", cases())
@pytest.mark.parametrize("recipe", ["s-ste", "sr-ste"])
def test_fast_path_cuda_matches_cpu_kernels(layout, fp8, recipe):
    cpu, gpu = layer_pair(layout, fp8, recipe)
    tol = 3e-2 if fp8 else 1e-2  # GEMM accumulation order; FP8 roundings flip at a few boundaries
    for i in range(3):  # three steps: delayed scaling and MVUE counts advance identically
        x = randn(T, K, dtype=torch.bfloat16, seed=i)
        g = randn(T, N, dtype=torch.bfloat16, seed=10 + i) * 1e-2
        a, b = run_step(cpu, x, g), run_step(gpu, x.cuda(), g.cuda())
        for name, u, v in zip(("y", "dx", "dW", "db"), a, b):
            assert rel(v, u) < tol, f"{name}, step {i}"
        # The compressed weight is bit-identical (same weight, same element-wise kernels).
        assert torch.equal(cpu._cache.entry.values.view(torch.uint8), gpu._cache.entry.values.cpu().view(torch.uint8))
        assert torch.equal(cpu._cache.entry.meta, gpu._cache.entry.meta.cpu())
        with torch.no_grad():  # the same update on both, so the next step rebuilds the same ŵ
            step = -1e-3 * cpu.weight.grad.to(cpu.weight.dtype)
            cpu.weight.add_(step)
            gpu.weight.add_(step.cuda())
    assert gpu.mvue_rng.tolist() == cpu.mvue_rng.tolist() == [5, 3]
    if fp8:
        assert torch.allclose(gpu.fp8_amax_history.cpu(), cpu.fp8_amax_history, rtol=1e-2)


@pytest.mark.parametrize("layout,fp8", cases())
def test_fast_step_never_syncs_the_host(layout, fp8):
    _, gpu = layer_pair(layout, fp8)
    x = randn(T, K, dtype=torch.bfloat16, device="cuda", seed=1).requires_grad_()
    g = randn(T, N, dtype=torch.bfloat16, device="cuda", seed=2)
    gpu(x).backward(g)  # first step (β, warnings, kernel selection) outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            gpu.weight.grad = None
            with torch.no_grad():
                gpu.weight.mul_(1.001)  # a weight update: the compressed weight is rebuilt
            gpu(x).backward(g)
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("layout,fp8", cases()[-1:])  # one case: inductor compiles take tens of seconds
def test_fast_path_inductor_fullgraph(layout, fp8):
    _, gpu = layer_pair(layout, fp8)
    eager = copy.deepcopy(gpu)
    compiled = torch.compile(gpu, fullgraph=True)
    for i in range(2):
        x = randn(T, K, dtype=torch.bfloat16, device="cuda", seed=i)
        g = randn(T, N, dtype=torch.bfloat16, device="cuda", seed=10 + i) * 1e-2
        a, b = run_step(compiled, x, g), run_step(eager, x, g)
        for name, u, v in zip(("y", "dx", "dW", "db"), a, b):
            assert rel(u, v) < 1e-2, f"{name}, step {i}"


def test_fallback_warns_once_naming_the_layer_on_cuda():
    layer = s_ste.SparseLinear(K, 48, fast=None, layout="sm80", name="blocks.3.mlp.fc", device="cuda",
                               dtype=torch.bfloat16)
    x = randn(64, K, dtype=torch.bfloat16, device="cuda")
    with pytest.warns(UserWarning, match=r"blocks\.3\.mlp\.fc: fast path unavailable"):
        layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)


def test_to_inference_on_a_trained_gpt_uses_torch_24():
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import pretrain_gpt as ex
    cfg = ex.GPTConfig(layers=2, d_model=256, heads=4, seq=128)
    model = ex.build_model(cfg, "s-ste", 0, torch.device("cuda"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.randint(0, 256, (8, cfg.seq + 1), device="cuda")
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(data[:, :-1], data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model = model.bfloat16().eval()
    inference = s_ste.to_inference(model)
    fc = inference.blocks[0].mlp.fc.weight
    assert isinstance(fc, torch.sparse.SparseSemiStructuredTensor), type(fc)
    with torch.no_grad():
        a, b = inference(data[:, :-1]).float(), model(data[:, :-1]).float()
    assert rel(a, b) < 2e-2, "to_inference's outputs match the trained model within bf16 tolerance"


@pytest.mark.parametrize("layout,fp8", cases())
@pytest.mark.parametrize("recipe", ["ste", "s-ste"])
def test_fast_path_never_decompresses_on_cuda(layout, fp8, recipe):
    """forward -> backward -> step -> forward: no s_ste::decompress at all (the CUDA GEMMs read the
    compressed operands), one prune_and_compress_dense per weight version, and the weight-gradient
    GEMM's out_transposed output lands in the parameter's layout (no AccumulateGrad copy)."""
    import collections
    from torch.profiler import ProfilerActivity, profile
    _, gpu = layer_pair(layout, fp8, recipe)
    opt = torch.optim.SGD(gpu.parameters(), lr=1e-3)
    x = randn(T, K, dtype=torch.bfloat16, device="cuda", seed=1)
    g = randn(T, N, dtype=torch.bfloat16, device="cuda", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback (layer or GEMM)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            gpu(x).backward(g)
            opt.step()
            gpu(x)
    counts = collections.Counter(e.name for e in prof.events())
    assert counts["s_ste::decompress"] == 0 and counts["s_ste::prune_and_compress_dense"] == 2
    assert counts["s_ste::hard_threshold_24"] == 0, "STE compresses with hard=True, no pre-pass"
    assert gpu.weight.grad.stride() == gpu.weight.stride()


def test_conv1d_weight_gradient_in_the_parameter_layout_on_cuda():
    from s_ste.hf import SparseConv1D
    torch.manual_seed(0)
    conv = SparseConv1D(K, N, fast=True, layout="sm80" if sm_major() != 9 else "sm90", device="cuda",
                        dtype=torch.bfloat16)
    conv(randn(T, K, dtype=torch.bfloat16, device="cuda", seed=1)).float().sum().backward()
    assert conv.weight.grad.shape == (K, N) and conv.weight.grad.stride() == conv.weight.stride()
