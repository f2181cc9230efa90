"""bench_prune.py's plan and results file on the CPU (--dry-run: fake timings, temp dir)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = {"prune_and_compress/sm90_fp32", "prune_and_compress/sm90_bf16", "prune_and_compress/sm80_bf16",
           "prune_and_compress/sm90_fp32_e4m3", "scale_factor/fp32", "mvue_24_t_compress/sm90_bf16",
           "mvue_24_t_compress/sm90_bf16_e5m2", "quantize_fp8_scaled/e4m3", "quantize_fp8_scaled/e4m3_t"}
KEYS = {"kernel", "shape", "dtype", "time_us", "gbps", "copy_gbps", "frac_of_copy", "baseline", "baseline_time_us",
        "device", "commit"}


def test_bench_prune_dry_run_writes_every_kernel_and_column(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "bench/bench_prune.py", "--dry-run", "--results-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "prune.json").read_text())
    assert {r["kernel"] for r in rows} == KERNELS
    assert all(KEYS <= r.keys() for r in rows)
    shapes = {r["shape"] for r in rows}
    assert {"4096x4096", "4096x11008", "11008x4096", "8192x28672", "768x3072", "65536x11008"} <= shapes
    assert "DRY RUN" in (tmp_path / "prune.md").read_text()


def test_bench_prune_dry_run_refuses_bench_results():
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "bench/bench_prune.py", "--dry-run", "--results-dir",
                          os.path.join(ROOT, "bench", "results")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0 and "never writes into bench/results" in out.stderr
