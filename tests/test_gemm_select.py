"""The CUTLASS GEMM registry and selector, driven on the host (no GPU): which kernel
sparse_linear runs for a problem and by which rule (tuning table / heuristic / fallback), the
run-time knobs, and why a problem falls back to decompress + dense GEMM."""
import os
import warnings

import pytest

import s_ste
import s_ste_cuda
from s_ste import gemm_tables

pytestmark = pytest.mark.skipif(not s_ste.built_with_cuda(), reason="CPU-only build has no GEMM kernels")

SM90_MIN_TILE_K = 128  # csrc/include/s_ste/layout_sm90.cuh: kMinTileK16 / kMinTileK8
# The configurations of issue 19, beside the ones before it.
TUNING_KERNELS = {
    "sm90_bf16_128x128x128_c2x1_pingpong", "sm90_bf16_256x128x128_c2x1_coop", "sm90_e4m3_128x128x256_c2x1_coop",
    "sm90_e5m2_e4m3_128x128x256_c2x1_coop", "sm90_e4m3_128x256x128_c2x1_coop_fastaccum",
    "sm90_e4m3_256x128x128_c2x1_coop_fastaccum", "sm90_e4m3_128x128x256_c1x2_pingpong_fastaccum"}
NO_TABLE = ""  # gemm_select's device_name that matches no tuning table: the heuristic alone


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
        big, _ = s_ste_cuda.gemm_select("sm90", dtype, 9, 8192, 4096, 4096, False, device_name=NO_TABLE)
        small, _ = s_ste_cuda.gemm_select("sm90", dtype, 9, 128, 1024, 1024, False, device_name=NO_TABLE)
        assert by_name[big]["tile_m"] == 128, "a problem that fills the GPU takes the large tile"
        # 8 × 1 tiles of 128×128 leave most of 132 SMs idle: the 64-row tile doubles the CTAs.
        assert by_name[small]["tile_m"] == 64, small
        # On a 4-SM GPU the same problem fills it with the large tile.
        assert s_ste_cuda.gemm_select("sm90", dtype, 9, 128, 1024, 1024, False, None, 4, NO_TABLE)[0] == big


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


# ---- issue 19: the tuning configurations, knobs, rules and tables ----

def info():
    return {k["name"]: k for k in s_ste_cuda.gemm_kernel_info()}


def test_tuning_configurations_are_built_and_consistent():
    by_name = info()
    assert TUNING_KERNELS <= set(by_name), sorted(TUNING_KERNELS - set(by_name))
    assert [k["name"] for k in kernels()] == list(by_name), "gemm_kernels and gemm_kernel_info list the same kernels"
    for name, k in by_name.items():
        tm, tn, tk = k["tile"]
        assert name.startswith(f"{k['layout']}_") and f"{tm}x{tn}x{tk}" in name, name
        if k["layout"] == "sm80":
            assert (k["scheduler_knobs"], k["promotion_step"], k["cluster"]) == (False, 0, (1, 1)), name
            continue
        cm, cn = k["cluster"]
        assert f"_c{cm}x{cn}_" in name and k["scheduler_knobs"] and k["stages"] >= 2, name
        assert 0 < k["smem_bytes"] <= 227 * 1024, (name, k["smem_bytes"])  # Hopper's opt-in shared memory per block
        fp8 = k["a"].startswith("float8")
        expected = ("fp8_fastaccum" if name.endswith("_fastaccum") else "fp8_promoted") if fp8 else "f32"
        assert k["accumulation"] == expected, name
        # The promotion interval counts wgmmas: a multiple of TileK / 64 for the promoting kernels.
        assert k["promotion_step"] == (tk // 64 if expected == "fp8_promoted" else 0), name
        if expected == "fp8_fastaccum":
            # FastAccum for the forward only: never the weight gradient's E5M2 x E4M3 product.
            assert (k["a"], k["b"]) == ("float8_e4m3fn", "float8_e4m3fn"), name


def test_knobs_are_checked_by_name():
    ok = s_ste_cuda.gemm_can_implement
    assert ok("sm90_bf16_128x128x128_c2x1_coop", 8192, 4096, 4096, False, "along_n", 8, 0) is None
    assert ok("sm90_e4m3_128x128x256_c2x1_coop", 8192, 4096, 4096, False, "along_m", 2, 8) is None
    assert ok("sm90_e4m3_128x128x128_c2x1_coop", 8192, 4096, 4096, False, promotion=2) is None
    assert "positive multiple" in ok("sm90_e4m3_128x128x256_c2x1_coop", 8192, 4096, 4096, False, promotion=2)
    assert "positive multiple" in ok("sm90_e4m3_128x128x128_c2x1_coop", 8192, 4096, 4096, False, promotion=-2)
    for name in ("sm90_bf16_128x128x128_c2x1_coop", "sm90_e4m3_128x256x128_c2x1_coop_fastaccum"):
        assert "does not promote" in ok(name, 8192, 4096, 4096, False, promotion=4)
    assert "swizzle must be" in ok("sm90_bf16_128x128x128_c2x1_coop", 8192, 4096, 4096, False, swizzle=3)
    assert "no persistent tile scheduler" in ok("sm80_bf16_128x128x64", 8192, 4096, 4096, False, "along_m")
    assert "no persistent tile scheduler" in ok("sm80_f16_128x128x64", 8192, 4096, 4096, False, swizzle=2)
    with pytest.raises(ValueError, match="unknown raster"):
        ok("sm90_bf16_128x128x128_c2x1_coop", 64, 64, 64, False, "diagonal")


def test_gemm_select_reports_its_rule():
    d = s_ste_cuda.gemm_select("sm90", "bfloat16", 9, 8192, 4096, 4096, False, device_name=NO_TABLE, detail=True)
    assert d == {"kernel": "sm90_bf16_128x128x128_c2x1_coop", "rule": "heuristic", "why": "", "table": None,
                 "raster": "heuristic", "swizzle": 0, "promotion": 0}
    d = s_ste_cuda.gemm_select("sm90", "bfloat16", 10, 8192, 4096, 4096, False, detail=True)
    assert d["kernel"] is None and d["rule"] == "fallback" and "needs an SM90 (Hopper) GPU" in d["why"]
    # The default device_name is this machine's GPU (none here: the heuristic, as sparse_linear would).
    assert s_ste_cuda.gemm_select("sm90", "bfloat16", 9, 8192, 4096, 4096, False) == \
        s_ste_cuda.gemm_select("sm90", "bfloat16", 9, 8192, 4096, 4096, False, device_name=NO_TABLE)


@pytest.mark.parametrize("N", [1, 64, 640, 4096, 16384, 65536])
@pytest.mark.parametrize("M,K", [(3072, 768), (4096, 4096), (11008, 4096), (4096, 11008), (28672, 8192)])
def test_heuristic_never_picks_fastaccum_and_keeps_todays_large_tile(N, M, K):
    name = s_ste_cuda.gemm_select("sm90", "float8_e4m3fn", 9, N, M, K, False, device_name=NO_TABLE)[0]
    assert name is not None and not name.endswith("_fastaccum"), name
    bf16 = s_ste_cuda.gemm_select("sm90", "bfloat16", 9, N, M, K, False, device_name=NO_TABLE)[0]
    if N >= 4096:  # problems that fill the GPU run what they ran before the tuning kernels existed
        assert (name, bf16) == ("sm90_e4m3_128x128x128_c2x1_coop", "sm90_bf16_128x128x128_c2x1_coop")


def write_table(path, rows, fingerprint=None, device="Test GPU 9000", sm_count=132):
    text = "\n".join(["s_ste_gemm_table 1", f"device {device}", f"sm_count {sm_count}",
                      f"fingerprint {fingerprint or s_ste_cuda.gemm_fingerprint()}", *rows]) + "\n"
    path.write_text(text)
    return str(path)


@pytest.fixture
def restore_tables():
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gemm_tables.install()


def test_selection_reads_a_table_file(tmp_path, restore_tables):
    path = write_table(tmp_path / "test_gpu.txt", [
        "row bfloat16 bfloat16 4096 4096 4096 8193 32768 sm90_bf16_256x128x128_c2x1_coop along_m 4 0 1.0 x",
        "row float8_e4m3fn float8_e4m3fn 4096 4096 4096 8193 32768 sm90_e4m3_128x256x128_c2x1_coop_fastaccum "
        "along_n 8 0",
        "row float8_e5m2 float8_e4m3fn 4096 16384 65536 4096 4096 sm90_e5m2_e4m3_128x128x256_c2x1_coop heuristic 0 16",
        "row bfloat16 bfloat16 2048 2048 2048 1 131072 sm90_bf16_128x128x128_c2x1_coop heuristic 0 4",  # refused knob
    ])
    status = gemm_tables.install([path])
    assert [(t["source"], t["device"], t["rows"], t["status"]) for t in status] == [(path, "Test GPU 9000", 4, None)]

    def pick(a, N, M, K, device="Test GPU 9000", sm_count=132):
        return s_ste_cuda.gemm_select("sm90", a, 9, N, M, K, True, None, sm_count, device, True)

    d = pick("bfloat16", 16384, 4096, 4096)
    assert (d["kernel"], d["rule"], d["raster"], d["swizzle"], d["table"]) == (
        "sm90_bf16_256x128x128_c2x1_coop", "table", "along_m", 4, f"{path}:5")
    d = pick("float8_e4m3fn", 16384, 4096, 4096)
    assert (d["kernel"], d["rule"], d["raster"], d["swizzle"]) == (
        "sm90_e4m3_128x256x128_c2x1_coop_fastaccum", "table", "along_n", 8), "FastAccum only through a table row"
    d = pick("float8_e5m2", 4096, 4096, 32768)  # the weight gradient: K = tokens in the row's range
    assert (d["kernel"], d["rule"], d["promotion"]) == ("sm90_e5m2_e4m3_128x128x256_c2x1_coop", "table", 16)
    # Outside the rows: the heuristic, saying why.
    d = pick("bfloat16", 4096, 4096, 4096)
    assert d["rule"] == "heuristic" and d["kernel"] == "sm90_bf16_128x128x128_c2x1_coop" and "no row of" in d["why"]
    d = pick("bfloat16", 4096, 2048, 2048)
    assert d["rule"] == "heuristic" and ":8" in d["why"] and "does not promote" in d["why"], d
    # Another GPU, or the same name with another SM count: the heuristic.
    d = pick("bfloat16", 16384, 4096, 4096, device="NVIDIA H200")
    assert d["rule"] == "heuristic" and d["why"] == ""
    d = pick("bfloat16", 16384, 4096, 4096, sm_count=114)
    assert d["rule"] == "heuristic" and "measured on 132 SMs" in d["why"]
    # The plain call (no detail) gives the table's kernel too, with an empty reason.
    assert s_ste_cuda.gemm_select("sm90", "bfloat16", 9, 16384, 4096, 4096, False, None, 132, "Test GPU 9000") == (
        "sm90_bf16_256x128x128_c2x1_coop", "")


def test_a_table_of_another_build_is_ignored_with_a_warning(tmp_path, restore_tables):
    path = write_table(tmp_path / "stale.txt", [
        "row bfloat16 bfloat16 4096 4096 4096 1 131072 sm90_bf16_256x128x128_c2x1_coop along_m 4 0"],
        fingerprint="0123456789abcdef")
    assert s_ste_cuda.gemm_fingerprint() != "0123456789abcdef"
    with pytest.warns(UserWarning, match="another build's kernels"):
        status = gemm_tables.install([path])
    assert "fingerprint 0123456789abcdef" in status[0]["status"]
    d = s_ste_cuda.gemm_select("sm90", "bfloat16", 9, 16384, 4096, 4096, False, None, 132, "Test GPU 9000", True)
    assert d["rule"] == "heuristic" and d["kernel"] == "sm90_bf16_128x128x128_c2x1_coop" and "fingerprint" in d["why"]


def test_malformed_or_unreadable_tables_are_refused(tmp_path, restore_tables):
    bad = write_table(tmp_path / "bad.txt", ["row bfloat16 bfloat16 4096 4096"])
    unknown = write_table(tmp_path / "unknown.txt", ["row bfloat16 bfloat16 1 1 1 1 1 no_such_kernel heuristic 0 0"])
    with pytest.warns(UserWarning) as record:
        status = gemm_tables.install([bad, unknown, str(tmp_path / "missing.txt")])
    messages = " | ".join(str(w.message) for w in record)
    assert f"{bad}:5: a row needs" in messages and "no kernel named no_such_kernel" in messages
    assert "missing.txt not readable" in messages
    assert [t["status"] is None for t in status] == [False, False]


def test_table_paths_follow_the_environment(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.md").write_text("")
    monkeypatch.setenv(gemm_tables.ENV, "0")
    assert gemm_tables.table_paths() == []
    monkeypatch.setenv(gemm_tables.ENV, os.pathsep.join([str(tmp_path), "/x/y.txt"]))
    assert gemm_tables.table_paths() == [str(tmp_path / "a.txt"), "/x/y.txt"]
    monkeypatch.delenv(gemm_tables.ENV)
    assert all(p.startswith(gemm_tables.FOLDER) and p.endswith(".txt") for p in gemm_tables.table_paths())
