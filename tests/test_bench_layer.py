"""bench_layer.py's cuSPARSELt rows on the CPU (dry run: cuSPARSELt emulated by dense torch ops),
and the S-STE layer built on cuSPARSELt (bench/cusparselt_layer.py) against SparseLinear's math."""
import importlib
import json
import os
import sys

import pytest
import torch

import s_ste

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import common  # noqa: E402
import cusparselt  # noqa: E402
import cusparselt_layer  # noqa: E402

BF16 = torch.bfloat16
VARIANTS = {"s-ste", "s-ste/cusparselt", "s-ste+fp8", "s-ste+fp8/cusparselt"}


@pytest.fixture
def bench_layer(monkeypatch):
    monkeypatch.setenv("S_STE_NVTX", "0")  # (bench_layer.py turns the layer's NVTX ranges on by default)
    monkeypatch.setattr(common, "RESULTS", common.RESULTS)  # main() points it at the temp dir: restore after
    return importlib.import_module("bench_layer")


def test_layer_dry_run_has_the_cusparselt_variants_targets_and_verdicts(tmp_path, monkeypatch, bench_layer, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_layer.py", "--dry-run", "--no-gpt", "--results-dir", str(tmp_path)])
    bench_layer.main()
    assert "≥ 1.35× dense bf16 and faster than the S-STE layer built on cuSPARSELt" in capsys.readouterr().out
    rows = json.loads((tmp_path / "layer.json").read_text())
    assert {r["variant"] for r in rows} == VARIANTS
    for r in rows:
        assert {"cusparselt_version_built", "cusparselt_version_loaded", "device", "commit"} <= r.keys()
        assert r["sparse_ms"] > 0 and r["speedup"] == r["dense_ms"] / r["sparse_ms"]
    ours = [r for r in rows if "/" not in r["variant"]]
    theirs = {(r["N"], r["K"], r["fp8"]): r for r in rows if "/" in r["variant"]}
    for r in ours:
        other = theirs[(r["N"], r["K"], r["fp8"])]
        assert other["variant"] == r["variant"] + "/cusparselt"
        assert r["cusparselt_ms"] == other["sparse_ms"] and r["vs_cusparselt"] == other["sparse_ms"] / r["sparse_ms"]
        assert r["meets_target"] == "yes" or r["meets_target"].startswith("no: ")
        assert ("1.35x" if not r["fp8"] else "1.2x") in r["target"]
        assert {"fastest", "fastest_by", "use_24"} <= r.keys() and r["fastest"] in ("s-ste", "cuSPARSELt", "dense")
        assert other["note"].startswith("FAKE: cuSPARSELt emulated") and "fwd alg 0" in other["note"]
    extra = json.loads((tmp_path / "layer_breakdown.json").read_text())
    assert {"cusparselt_version_built", "cusparselt_version_loaded"} <= extra["environment"].keys()
    md = (tmp_path / "layer.md").read_text()
    assert "## Use 2:4 here?" in md and "FAKE" in md and "DRY RUN" in md


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("fp8", [False, True])
def test_the_cusparselt_layer_computes_what_sparselinear_computes(fp8):
    """Same weight, inputs and MVUE draw: the bf16 weight gradient is bit-identical (same 2:4 ĝ, same
    products), y and dx agree to bf16 rounding (ŵ is rounded twice there, once in ours); in FP8
    the cuSPARSELt layer's weight gradient stays bf16 (no E5M2), so only close."""
    torch.manual_seed(0)
    N, K, T = 64, 128, 64
    ours = s_ste.SparseLinear(K, N, bias=False, recipe="s-ste", fp8=fp8, fast=True, layout="sm90", dtype=BF16)
    ours.reset_scale()
    calls = []
    api = cusparselt.emulated()
    emulated_mm = api.sparse_mm

    def recording_mm(a, b, **kw):
        calls.append((a.dtype, tuple(b.shape), b.is_contiguous(), kw))
        return emulated_mm(a, b, **kw)

    api.sparse_mm = recording_mm
    layer = cusparselt_layer.CusparseltSSTE(K, N, api, fp8=fp8, dtype=BF16)
    with torch.no_grad():
        layer.weight.copy_(ours.weight)
    for step in range(3):
        x = torch.randn(T, K, dtype=BF16, requires_grad=True)
        x2 = x.detach().clone().requires_grad_()
        g = torch.randn(T, N, dtype=BF16)
        y1, y2 = ours(x), layer(x2)
        y1.backward(g)
        y2.backward(g)
        if step == 0 and fp8:
            continue  # (the first FP8 step: different first-step scales by design)
        assert rel(y2, y1) < (2e-2 if fp8 else 1e-2) and rel(x2.grad, x.grad) < (2e-2 if fp8 else 1e-2)
        if fp8:
            assert rel(layer.weight.grad, ours.weight.grad) < 0.1
        else:
            assert torch.equal(layer.weight.grad, ours.weight.grad)
        ours.weight.grad = layer.weight.grad = None
    assert layer.draws == 3 and torch.equal(layer.scale, ours.scale)
    assert {k[0] for k in layer.configs} == {"fwd", "wgrad"}  # searched once per GEMM shape
    fwd = [c for c in calls if c[3]["transpose_result"]]
    wgrad = [c for c in calls if not c[3]["transpose_result"]]
    assert len(fwd) == len(wgrad) == 3
    assert all(shape == (K, T) and not contiguous for _, shape, contiguous, _ in fwd)  # xᵀ as a view: y [T, N]
    assert all(dtype == BF16 and shape == (T, K) for dtype, shape, _, _ in wgrad)     # ĝ [N, T] · x [T, K]
    if fp8:
        assert all(dtype == torch.float8_e4m3fn and kw["out_dtype"] == BF16 and kw["alpha"].shape == (N,)
                   for dtype, _, _, kw in fwd)  # the device alpha vector: no host sync


def test_the_cusparselt_layer_wants_tokens_in_multiples_of_16():
    layer = cusparselt_layer.CusparseltSSTE(32, 16, cusparselt.emulated(), dtype=BF16)
    with pytest.raises(ValueError, match="multiple of 16"):
        layer(torch.randn(8, 32, dtype=BF16))
