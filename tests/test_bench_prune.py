"""bench_prune.py's plan and results file on the CPU (--dry-run: fake timings, temp dir)."""
import json
import os
import subprocess
import sys

from conftest import subprocess_env
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = {"prune_and_compress/sm90_fp32", "prune_and_compress/sm90_bf16", "prune_and_compress/sm80_bf16",
           "prune_and_compress/sm90_fp32_e4m3", "scale_factor/fp32", "mvue_24_t_compress/sm90_bf16",
           "mvue_24_t_compress/sm90_bf16_e5m2", "quantize_fp8_scaled/e4m3", "quantize_fp8_scaled/e4m3_t"}
KEYS = {"kernel", "shape", "dtype", "time_us", "gbps", "copy_gbps", "frac_of_copy", "baseline", "baseline_time_us",
        "baseline_note", "verdict", "device", "commit", "cusparselt_version_built", "cusparselt_version_loaded"}
# every kernel that has a torch._cslt_compress counterpart, and the one that has none (E5M2)
CSLT_TIMED = {"prune_and_compress/sm90_fp32", "prune_and_compress/sm90_bf16", "prune_and_compress/sm80_bf16",
              "prune_and_compress/sm90_fp32_e4m3", "mvue_24_t_compress/sm90_bf16"}
CSLT_NONE = {"mvue_24_t_compress/sm90_bf16_e5m2"}


def test_bench_prune_dry_run_writes_every_kernel_and_column(tmp_path):
    env = subprocess_env()
    out = subprocess.run([sys.executable, "bench/bench_prune.py", "--dry-run", "--results-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "prune.json").read_text())
    assert {r["kernel"] for r in rows} == KERNELS
    assert all(KEYS <= r.keys() for r in rows)
    shapes = {r["shape"] for r in rows}
    assert {"4096x4096", "4096x11008", "11008x4096", "8192x28672", "768x3072", "65536x11008"} <= shapes
    assert "DRY RUN" in (tmp_path / "prune.md").read_text()
    assert all(r["timings"] == "FAKE (dry run)" for r in rows)
    cslt = [r for r in rows if r["baseline"] == "cslt_compress"]
    shapes_of = {k: {r["shape"] for r in rows if r["kernel"] == k} for k in KERNELS}
    for k in CSLT_TIMED | CSLT_NONE:  # one cslt_compress row per shape of each such kernel
        assert {r["shape"] for r in cslt if r["kernel"] == k} == shapes_of[k], k
    assert all(r["baseline_time_us"] for r in cslt if r["kernel"] in CSLT_TIMED)
    none = [r for r in cslt if r["kernel"] in CSLT_NONE]
    assert all(r["baseline_time_us"] is None and "no cuSPARSELt counterpart" in r["baseline_note"] for r in none)
    assert all("compress only" in r["baseline_note"] for r in cslt if r["kernel"] in CSLT_TIMED)
    # the raised target: prune_and_compress judged against _cslt_compress (the fake times make it slower)
    prune_cslt = [r for r in cslt if r["kernel"].startswith("prune_and_compress")]
    assert prune_cslt and all("slower than _cslt_compress" in r["verdict"] for r in prune_cslt)
    small = [r for r in rows if r["shape"] == "768x3072" and r["target"] is not None]  # fractions judged from 4096²
    assert {r["verdict"] for r in small if r["baseline"] != "cslt_compress"} == {"not judged (small shape)"}
    assert {r["verdict"] for r in small if r["baseline"] == "cslt_compress"} == {"missed: slower than _cslt_compress"}
    assert "85 %" in (tmp_path / "prune.md").read_text() and "_cslt_compress" in (tmp_path / "prune.md").read_text()


def test_bench_prune_dry_run_refuses_bench_results():
    env = subprocess_env()
    out = subprocess.run([sys.executable, "bench/bench_prune.py", "--dry-run", "--results-dir",
                          os.path.join(ROOT, "bench", "results")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0 and "never writes into bench/results" in out.stderr


def test_attach_ncu_summarises_each_fused_kernel(tmp_path):
    """--attach-ncu reads ncu's --csv rows (one per kernel and metric), keeps the fused kernels."""
    head = '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",' \
           '"Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"\n'

    def row(i, kernel, metric, unit, value):
        return f'"{i}","1","python","h","{kernel}","1","7","(256, 1, 1)","(528, 1, 1)","0","9.0","Command line ' \
               f'profiler metrics","{metric}","{unit}","{value}"\n'

    k1 = "void s_ste::(anonymous namespace)::prune_compress_kernel<false, 0, float, c10::BFloat16>(const T3 *, ...)"
    k2 = "void s_ste::<unnamed>::cast_transpose_kernel<c10::BFloat16>(const T1 *, ...)"
    text = ("bench output line\n==PROF== Connected\n" + head
            + row(0, k1, "dram__throughput.avg.pct_of_peak_sustained_elapsed", "%", "91.2")
            + row(0, k1, "gpu__time_duration.sum", "us", "80.1")
            + row(1, "void at::native::vectorized_elementwise_kernel<4>(...)", "gpu__time_duration.sum", "us", "3")
            + row(2, k2, "dram__throughput.avg.pct_of_peak_sustained_elapsed", "%", "88.0"))
    csv_path = tmp_path / "ncu.csv"
    csv_path.write_text(text)
    (tmp_path / "prune.md").write_text("# table\n")
    env = subprocess_env()
    out = subprocess.run([sys.executable, "bench/bench_prune.py", "--attach-ncu", str(csv_path), "--results-dir",
                          str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    md = (tmp_path / "prune.md").read_text()
    assert "prune_compress_kernel<false, 0, float, c10::BFloat16>` | 91.2 % | 80.1 us" in md
    assert "cast_transpose_kernel" in md and "88.0 %" in md and "vectorized_elementwise" not in md
