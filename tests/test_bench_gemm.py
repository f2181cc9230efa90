"""bench_gemm.py's dry run on the CPU (fake timings, a fake cuSPARSELt): every row and field of
issue 16, the tuning's choice, the targets and the verdicts; and bench/verdict.py."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_gemm  # noqa: E402
import common  # noqa: E402
import cusparselt  # noqa: E402
import verdict  # noqa: E402

CSLT_FIELDS = {"cusparselt_alg_id", "cusparselt_split_k", "cusparselt_split_k_mode", "cusparselt_us",
               "cusparselt_kernel_us", "vs_cusparselt"}
ENV_FIELDS = {"cusparselt_version_built", "cusparselt_version_loaded", "device", "torch", "commit", "date"}


def dry_run(tmp_path, monkeypatch, *args):
    monkeypatch.setattr(common, "RESULTS", common.RESULTS)  # main() points it at the temp dir: restore after
    monkeypatch.setattr(sys, "argv", ["bench_gemm.py", "--dry-run", "--results-dir", str(tmp_path), *args])
    bench_gemm.main()
    return json.loads((tmp_path / "gemm.json").read_text()), (tmp_path / "gemm.md").read_text()


def fake_optimum():
    """The configuration the fake cuSPARSELt makes fastest among those that pass (the sweep must find it)."""
    lib = bench_gemm.FakeCusparselt(100.0, 1.0)
    valid = [cusparselt.Config(a, s, m if s != 1 else -1) for a in range(lib.ALGS) if a != lib.WRONG_ALG
             for s in cusparselt.SPLIT_KS for m in cusparselt.SPLIT_K_MODES
             if not (s == 8 and m == cusparselt.TWO_KERNELS)]
    return min(valid, key=lib.us)


def test_gemm_dry_run_has_every_row_and_field(tmp_path, monkeypatch, capsys):
    rows, md = dry_run(tmp_path, monkeypatch)
    printed = capsys.readouterr().out
    assert "≥ 1.8× the dense GEMM" in printed and "≥ 1.1× cuSPARSELt" in printed  # the targets, printed
    assert {r["op"] for r in rows} == {"fwd", "wgrad"}
    assert all(ENV_FIELDS <= r.keys() and r["timings"] == "FAKE (dry run)" for r in rows)
    assert {(r["dtype"], r["layout"]) for r in rows if r["op"] == "fwd"} == {("bf16", "sm90"), ("bf16", "sm80"),
                                                                             ("e4m3", "sm90")}
    wgrad = [r for r in rows if r["op"] == "wgrad"]
    assert {r["dtype"] for r in wgrad} == {"bf16", "e5m2"} and {r["K"] for r in wgrad} == {16384, 65536}
    assert {(r["N"], r["M"]) for r in wgrad} == set(bench_gemm.WEIGHTS)  # dWᵀ [in, out] of every FFN weight
    compared = [r for r in rows if r["dtype"] in ("bf16", "e4m3")]
    assert all(CSLT_FIELDS <= r.keys() for r in rows)
    measured = [r for r in compared if r["sparse_us"] and r["cusparselt_us"]]
    assert len(measured) >= len(compared) - 2  # (the dry run simulates an OOM and a torch error)
    assert all(r[f] is not None for r in measured for f in CSLT_FIELDS)
    assert all(r["cusparselt_note"].startswith("no cuSPARSELt counterpart") and r["cusparselt_us"] is None
               for r in rows if r["dtype"] == "e5m2")
    assert all(r["cusparselt_alpha_check"] for r in rows if r["dtype"] == "e4m3" and r["cusparselt_us"])
    # the full sweep where the plan says, the search alone elsewhere; the sweep finds the fake's optimum
    swept = [r for r in measured if r["cusparselt_tuning"].startswith("search+sweep")]
    plan = bench_gemm.SweepPlan()
    assert {(r["op"], r["M"], r["N"], r["K"]) for r in swept} == {
        (r["op"], r["M"], r["N"], r["K"]) for r in measured if plan.full(r["op"], r["M"], r["N"], r["K"])} != set()
    best = fake_optimum()
    assert all((r["cusparselt_alg_id"], r["cusparselt_split_k"], r["cusparselt_split_k_mode"])
               == (best.alg_id, best.split_k, best.split_k_mode) for r in swept), best
    assert all("the first error" in r["cusparselt_tuning"] and "wrong" in r["cusparselt_tuning"] for r in swept)
    assert all(r["cusparselt_tuning"].startswith("search (") for r in measured if r not in swept)
    # targets and verdicts
    ours = [r for r in rows if r["role"] == "ours"]
    assert all({"fastest", "fastest_by", "use_24", "target"} <= r.keys() for r in ours)
    assert {r["target"] for r in ours if not bench_gemm.gr.is_large(r["op"], r["M"], r["N"], r["K"])} <= {
        "not judged (small shape)", "n/a"}
    assert any("cuSPARSELt" in r["target"] for r in ours)
    for heading in ("## Use 2:4 here?", "## Event vs kernel-only times", "## cuSPARSELt configurations", "FAKE"):
        assert heading in md
    assert "fastest_by" in md and "split_k" in md


def test_gemm_dry_run_on_ampere_plans_bf16_sm80_only(tmp_path, monkeypatch):
    rows, _ = dry_run(tmp_path, monkeypatch, "--dry-run-sm", "8", "--quick")
    assert {(r["op"], r["dtype"], r["layout"]) for r in rows} == {("fwd", "bf16", "sm80"), ("wgrad", "bf16", "sm80")}
    assert all(r["role"] == "ours" for r in rows)


def test_gemm_dry_run_search_only_plan(tmp_path, monkeypatch):
    rows, _ = dry_run(tmp_path, monkeypatch, "--cusparselt", "search", "--ops", "fwd")
    assert {r["op"] for r in rows} == {"fwd"}
    assert all(r["cusparselt_tuning"].startswith("search (") for r in rows if r["cusparselt_tuning"])


def test_gemm_dry_run_refuses_bench_results(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_gemm.py", "--dry-run", "--results-dir", common.RESULTS])
    with pytest.raises(SystemExit, match="never writes into bench/results"):
        bench_gemm.main()


def test_verdict_names_the_fastest_and_answers():
    v = verdict.verdict({verdict.DENSE: 10.0, verdict.OURS: 5.0, verdict.CUSPARSELT: 6.0})
    assert (v["fastest"], v["fastest_by"]) == ("s-ste", 1.2)
    assert v["use_24"] == "yes, with s-ste (2.00x dense, 1.20x cuSPARSELt)"
    v = verdict.verdict({verdict.DENSE: 10.0, verdict.OURS: 12.0, verdict.CUSPARSELT: 11.0})
    assert v["fastest"] == "dense" and v["use_24"] == "no: dense is fastest (best 2:4, cuSPARSELt: 0.91x dense)"
    v = verdict.verdict({verdict.DENSE: 10.0, verdict.OURS: 9.5, verdict.CUSPARSELT: None})
    assert v["use_24"] == "marginal: s-ste only 1.05x dense" and v["fastest_by"] == pytest.approx(10 / 9.5)
    assert verdict.verdict({verdict.DENSE: 10.0, verdict.OURS: None})["use_24"] == "n/a (no 2:4 time)"
    assert verdict.verdict({verdict.DENSE: None, verdict.OURS: None})["use_24"] == "n/a (nothing measured)"


@pytest.fixture
def on_cpu(monkeypatch):
    """bench_gemm's measuring code with its operands on the CPU, cuSPARSELt emulated (dense torch ops), the
    CUDA-event and profiler timers replaced by a call counter: the GPU path's logic, checks and fields."""
    calls = []

    def bench(nvtx, call, n_sets, budget_ms=bench_gemm.BUDGET_MS):
        calls.append(nvtx)
        call(0)
        call(1 % n_sets)
        return 10.0 + len(calls) * 1e-3, 5, 1

    monkeypatch.setattr(bench_gemm, "DEVICE", "cpu")
    monkeypatch.setattr(bench_gemm, "bench", bench)
    monkeypatch.setattr(bench_gemm, "free_memory", lambda: None)
    monkeypatch.setattr(common, "kernel_us", lambda fn, n_sets, reps=3: 9.0)
    return calls


def test_the_measuring_code_runs_every_variant_with_checks_on_the_cpu(on_cpu):
    api = cusparselt.emulated()
    plan = bench_gemm.SweepPlan("full", budget_s=1e9)
    res = bench_gemm.measure_shape("fwd", 64, 64, 128, 9, api, plan)
    for v in ("cublas/bf16", "sparse_linear/sm90_bf16", "sparse_linear/sm80_bf16", "cusparselt/bf16",
              "scaled_mm/e4m3", "sparse_linear/sm90_e4m3", "cusparselt/e4m3"):
        assert res[v].us is not None and res[v].kernel_us == 9.0, (v, res[v])
    for v in ("sparse_linear/sm90_bf16", "sparse_linear/sm80_bf16", "cusparselt/bf16", "sparse_linear/sm90_e4m3",
              "cusparselt/e4m3"):
        assert res[v].check == "ok", (v, res[v])
    c = res["cusparselt/e4m3"]
    assert c.config == cusparselt.DEFAULT and c.tuning.plan == "search+sweep"
    assert c.alpha_check == "ok: vector == scalar, bit for bit"
    assert "n/a" in res["torch24/cutlass_bf16"].note  # (torch's CUTLASS 2:4 path needs a GPU)
    assert any(n.startswith("cusparselt_sweep/") for n in on_cpu) and "cusparselt/bf16" in on_cpu
    rows = bench_gemm.gr.make_rows("fwd", 64, 64, 128, res, 9, {})
    assert all(r["cusparselt_us"] and r["vs_cusparselt"] for r in rows)

    res = bench_gemm.measure_shape("wgrad", 128, 64, 64, 9, api, plan)  # dWᵀ [in 128, out 64] over T = 64 tokens
    for v in ("cublas/bf16_wgrad", "sparse_linear/sm90_bf16_wgrad", "cusparselt/bf16_wgrad",
              "sparse_linear/sm90_e5m2_wgrad"):
        assert res[v].us is not None, (v, res[v])
    for v in ("sparse_linear/sm90_bf16_wgrad", "cusparselt/bf16_wgrad", "sparse_linear/sm90_e5m2_wgrad"):
        assert res[v].check == "ok", (v, res[v])
    rows = bench_gemm.gr.make_rows("wgrad", 128, 64, 64, res, 9, {})
    assert [r["dtype"] for r in rows] == ["bf16", "e5m2"] and rows[0]["vs_cusparselt"]
