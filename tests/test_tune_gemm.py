"""bench/tune_gemm.py on the CPU: the dry run writes a table (fake times marked FAKE) that the
library then reads and selects from, its FastAccum gate keeps inaccurate results out, and the
sweep plan fits its budget. Needs the extension built with its CUDA kernels (the kernel list)."""
import os
import re
import subprocess
import sys
import warnings

import pytest

import s_ste
import s_ste_cuda
from s_ste import gemm_tables

pytestmark = pytest.mark.skipif(not s_ste.built_with_cuda(), reason="the tuner needs the CUDA build's kernel list")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_DEVICE = "FAKE dry-run GPU"
FP8_TOL = 8e-3


def run_tuner(*args, timeout=300):
    # The extension this process loaded first on the path, so the subprocess sees the same build.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(s_ste_cuda.__file__), ROOT])}
    out = subprocess.run([sys.executable, "bench/tune_gemm.py", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("tune")
    stdout = run_tuner("--dry-run", "--out-dir", str(out_dir))
    return out_dir, stdout


def rows_of(text):
    return [line.split() for line in text.splitlines() if line.startswith("row ")]


def test_dry_run_writes_a_fake_table_and_report(dry_run):
    out_dir, stdout = dry_run
    table = (out_dir / "fake_dry_run_gpu.txt").read_text()
    report = (out_dir / "tune_gemm.md").read_text()
    assert "FAKE" in table and "FAKE" in report.splitlines()[0]
    assert f"fingerprint {s_ste_cuda.gemm_fingerprint()}" in table and f"device {FAKE_DEVICE}" in table
    rows = rows_of(table)
    # bench_gemm's 5 weights x (3 token counts forward + 2 weight-gradient token counts) x (bf16, FP8).
    assert len(rows) == 50, len(rows)
    kinds = {(r[1], r[2]) for r in rows}
    assert kinds == {("bfloat16", "bfloat16"), ("float8_e4m3fn", "float8_e4m3fn"), ("float8_e5m2", "float8_e4m3fn")}
    assert not os.path.exists(os.path.join(ROOT, "s_ste", "gemm_tables", "fake_dry_run_gpu.txt"))


def test_the_library_reads_the_dry_run_table(dry_run):
    out_dir, _ = dry_run
    path = str(out_dir / "fake_dry_run_gpu.txt")
    rows = rows_of(open(path).read())
    try:
        status = gemm_tables.install([path])
        assert status[0]["status"] is None and status[0]["rows"] == len(rows)
        for r in rows:
            a, b, M, k_lo, k_hi, n_lo, n_hi, kernel, raster, swizzle, promotion = r[1:12]
            M, K, N = int(M), int(k_hi), int(n_lo)
            d = s_ste_cuda.gemm_select("sm90", a, 9, N, M, K, False, b, 132, FAKE_DEVICE, True)
            assert (d["kernel"], d["rule"], d["raster"], d["swizzle"], d["promotion"]) == (
                kernel, "table", raster, int(swizzle), int(promotion)), (r, d)
        # A real GPU's name never matches the dry run's table.
        d = s_ste_cuda.gemm_select("sm90", "bfloat16", 9, 16384, 4096, 4096, False, None, 132, "NVIDIA H200", True)
        assert d["rule"] == "heuristic"
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gemm_tables.install()


def test_fastaccum_wins_only_where_its_check_passed(dry_run):
    out_dir, _ = dry_run
    rows = rows_of((out_dir / "fake_dry_run_gpu.txt").read_text())
    fast = [r for r in rows if r[8].endswith("_fastaccum")]
    # The dry run's FastAccum errors grow with K (the pessimistic model): they pass only at K = 768,
    # so FastAccum rows, if any, are forward rows with K = 768; never a weight-gradient row.
    assert all(r[1] == r[2] == "float8_e4m3fn" and r[4] == r[5] == "768" for r in fast), fast
    report = (out_dir / "tune_gemm.md").read_text()
    assert "FastAccum accuracy" in report
    failed = re.findall(r"\| (\d+) \| (\d+) \| (\d+) \| (\S+_fastaccum) \| \S+ \| (\S+) \| NO \|", report)
    assert failed and all(float(err) >= FP8_TOL for *_, err in failed)


def test_the_plan_fits_its_budget():
    stdout = run_tuner("--estimate", "--budget-s", "240")
    m = re.search(r"knob sweeps of the (\d+) fastest kernels per problem \((\d+) configurations\); estimated (\d+) s", stdout)
    assert m and int(m.group(3)) <= 240, stdout
    tight = run_tuner("--estimate", "--budget-s", "30")
    m30 = re.search(r"knob sweeps of the (\d+) fastest kernels per problem \((\d+) configurations\); estimated (\d+) s", tight)
    assert m30 and int(m30.group(1)) < int(m.group(1)) and int(m30.group(2)) < int(m.group(2)), tight
