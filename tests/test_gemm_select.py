"""The CUTLASS GEMM registry and selector, driven on the host (no GPU): which kernel
sparse_linear runs for a problem, and why a problem falls back to decompress + dense GEMM."""
import pytest

import s_ste
import s_ste_cuda

pytestmark = pytest.mark.skipif(not s_ste.built_with_cuda(), reason="CPU-only build has no GEMM kernels")

SM90_MIN_TILE_K = 128  # csrc/include/s_ste/layout_sm90.cuh: kMinTileK16 / kMinTileK8


def kernels():
    keys = ("name", "sm", "layout", "a", "b", "out", "has_bias", "out_is_transposed", "tile_m", "tile_n", "tile_k")
    return [dict(zip(keys, k)) for k in s_ste_cuda.gemm_kernels()]


def test_registry_holds_both_families():
    names = {k["name"]: k for k in kernels()}
    assert {("sm80", "bfloat16"), ("sm80", "float16"), ("sm90", "bfloat16"), ("sm90", "float8_e4m3fn"),
            ("sm90", "float8_e5m2")} <= {(k["layout"], k["a"]) for k in names.values()}
    for k in names.values():
        if k["a"].startswith("float8"):
            # FP8: x is E4M3 (the weight E4M3, or the E5M2 gradient for dW), bf16 out.
            assert (k["b"], k["out"], k["layout"]) == ("float8_e4m3fn", "bfloat16", "sm90")
        else:
            assert k["a"] == k["b"] == k["out"]
        if k["layout"] == "sm90":
            # One compressed layout per dtype: every SM90 kernel's K tile maps to AtomK = 128.
            assert k["tile_k"] >= SM90_MIN_TILE_K and k["sm"] == 90
            assert not k["out_is_transposed"]
        else:
            assert k["sm"] == 80


@pytest.mark.parametrize("layout,dtype,sm", [("sm80", "bfloat16", 8), ("sm80", "float16", 8), ("sm80", "bfloat16", 9),
                                             ("sm90", "bfloat16", 9), ("sm90", "float8_e4m3fn", 9),
                                             ("sm90", "float8_e5m2", 9)])
@pytest.mark.parametrize("N,M,K", [(4096, 4096, 4096), (8192, 11008, 4096), (16384, 4096, 11008), (128, 3072, 768)])
def test_real_model_shapes_select_a_kernel(layout, dtype, sm, N, M, K):
    name, why = s_ste_cuda.gemm_select(layout, dtype, sm, N, M, K, True)
    assert name is not None, why
    k = next(k for k in kernels() if k["name"] == name)
    assert (k["layout"], k["a"]) == (layout, dtype) and k["sm"] <= 10 * sm


def test_sm90_kernels_need_hopper():
    name, why = s_ste_cuda.gemm_select("sm90", "bfloat16", 8, 4096, 4096, 4096, False)
    assert name is None and "needs an SM90 (Hopper) GPU" in why
    name, why = s_ste_cuda.gemm_select("sm80", "bfloat16", 7, 4096, 4096, 4096, False)
    assert name is None and "needs compute capability >= 8.0" in why


def test_missing_dtypes_fall_back_with_a_reason():
    name, why = s_ste_cuda.gemm_select("sm90", "float16", 9, 4096, 4096, 4096, False)
    assert name is None and why == "no kernel for this layout and these dtypes in this build"
    name, why = s_ste_cuda.gemm_select("sm90", "float8_e4m3fn", 9, 4096, 4096, 4096, False, "bfloat16")
    assert name is None, "FP8 weights need FP8 activations"


def test_fp8_alignment_rules():
    # 8-bit values: K % 32 (16-byte TMA rows of K/2 bytes); bf16 out [N, M]: M % 8.
    for dtype in ("float8_e4m3fn", "float8_e5m2"):
        assert s_ste_cuda.gemm_select("sm90", dtype, 9, 7, 136, 96, True)[0] is not None
        name, why = s_ste_cuda.gemm_select("sm90", dtype, 9, 64, 128, 48, False)
        assert name is None and "multiple of 32" in why
        name, why = s_ste_cuda.gemm_select("sm90", dtype, 9, 64, 4100, 128, False)
        assert name is None and "multiple of 8" in why


@pytest.mark.parametrize("name", [k["name"] for k in kernels()] if s_ste.built_with_cuda() else [])
def test_can_implement_rejects_degenerate_problems_with_a_message(name):
    for N, M, K in [(0, 4096, 4096), (4096, 0, 4096), (4096, 4096, 0), (4096, 4096, 8)]:
        why = s_ste_cuda.gemm_can_implement(name, N, M, K, False)
        assert isinstance(why, str) and why, f"{name} accepted N={N} M={M} K={K}"
    assert s_ste_cuda.gemm_can_implement(name, 4096, 4096, 4096, False) is None
    with pytest.raises(KeyError):
        s_ste_cuda.gemm_can_implement("no_such_kernel", 64, 64, 64, False)


def test_small_problems_take_the_smaller_tile():
    by_name = {k["name"]: k for k in kernels()}
    for dtype in ("bfloat16", "float8_e4m3fn"):
        big, _ = s_ste_cuda.gemm_select("sm90", dtype, 9, 8192, 4096, 4096, False)
        small, _ = s_ste_cuda.gemm_select("sm90", dtype, 9, 128, 1024, 1024, False)
        assert by_name[big]["tile_m"] == 128, "a problem that fills the GPU takes the large tile"
        # 8 × 1 tiles of 128×128 leave most of 132 SMs idle: the 64-row tile doubles the CTAs.
        assert by_name[small]["tile_m"] == 64, small
        # On a 4-SM GPU the same problem fills it with the large tile.
        assert s_ste_cuda.gemm_select("sm90", dtype, 9, 128, 1024, 1024, False, None, 4)[0] == big


@pytest.mark.parametrize("sm", [10, 12])
@pytest.mark.parametrize("layout,dtype", [("sm80", "bfloat16"), ("sm80", "float16"), ("sm90", "bfloat16"),
                                          ("sm90", "float8_e4m3fn"), ("sm90", "float8_e5m2")])
def test_newer_gpus_fall_back_with_a_reason(sm, layout, dtype):
    # Compute capability 10.x / 12.x: this build holds sm_80 and sm_90a images only, neither
    # runs there, so no kernel may be selected (sparse_linear falls back with the warning).
    name, why = s_ste_cuda.gemm_select(layout, dtype, sm, 4096, 4096, 4096, False)
    assert name is None, f"{name} selected on compute capability {sm}.x, which this build has no image for"
    expected = "needs an SM90 (Hopper) GPU" if layout == "sm90" else "compute capability 10.x and newer"
    for k in kernels():
        if (k["layout"], k["a"]) == (layout, dtype):
            reason = next(r for r in why.split("; ") if r.startswith(k["name"] + ": "))
            assert expected in reason, why


def test_sm80_kernels_run_on_ampere_and_hopper_only():
    for sm in (8, 9):
        assert s_ste_cuda.gemm_select("sm80", "bfloat16", sm, 4096, 4096, 4096, False)[0] is not None
    for sm in (7, 10, 11, 12):
        assert s_ste_cuda.gemm_select("sm80", "bfloat16", sm, 4096, 4096, 4096, False)[0] is None
