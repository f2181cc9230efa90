"""bench_gemm's rows, targets and tables: from the Results of one shape (measured, or fake in a
dry run) to the rows of gemm.json, the targets judged on them, the per-shape verdicts and the
notes of gemm.md."""
from __future__ import annotations

from dataclasses import dataclass

import cusparselt
import verdict as verdicts

# Targets (issue 16), judged at the large FFN shapes (is_large): every sparse GEMM of ours
# ≥ 1.8× the dense GEMM of its dtype and ≥ 1.1× cuSPARSELt tuned the same way (best algorithm ×
# split-K, checked), where cuSPARSELt has a counterpart.
TARGET_VS_DENSE = 1.8
TARGET_VS_CUSPARSELT = 1.1
TOL = {"bf16": 1e-2, "e4m3": 6e-2, "e5m2": 6e-2}  # relative Frobenius error of the checks
NO_CUSPARSELT = "no cuSPARSELt counterpart (E5M2 × E4M3: cuSPARSELt multiplies E4M3 × E4M3 only)"
OPERAND_BYTES = {"bf16": 2, "e4m3": 1, "e5m2": 1}

# Datasheet peaks per device name (first hit): tensor-core TFLOP/s (dense, 2:4 sparse = 2×
# dense) and HBM TB/s. H100 SXM: bf16 989 / 1979, FP8 1979 / 3958, 3.35 TB/s; the H200 has
# the H100 SXM's tensor cores and clocks, and 4.8 TB/s.
PEAKS = (
    ("H100 PCIe", {"bf16": (756.0, 1513.0), "e4m3": (1513.0, 3026.0), "hbm_tbps": 2.0}),
    ("H100 NVL", {"bf16": (835.0, 1671.0), "e4m3": (1671.0, 3341.0), "hbm_tbps": 3.9}),
    ("H100", {"bf16": (989.0, 1979.0), "e4m3": (1979.0, 3958.0), "hbm_tbps": 3.35}),   # H100 SXM5
    ("H200", {"bf16": (989.0, 1979.0), "e4m3": (1979.0, 3958.0), "hbm_tbps": 4.8}),    # H200 / GH200
    ("A100", {"bf16": (312.0, 624.0), "hbm_tbps": 2.0}),
)


def peaks_for(device: str) -> tuple[str | None, dict]:
    for key, peaks in PEAKS:
        if key in device:
            return key, peaks
    return None, {}


def peak_key(dtype: str) -> str:
    """The tensor-core rate a dtype runs at (E5M2 × E4M3 at the FP8 rate)."""
    return "bf16" if dtype == "bf16" else "e4m3"


def tokens_of(op: str, M: int, N: int, K: int) -> int:
    """The token count of a GEMM: M for the forward, the reduction K for the weight gradient."""
    return M if op == "fwd" else K


def weight_size(op: str, M: int, N: int, K: int) -> int:
    """out_features · in_features of the layer: N·K for the forward, N·M for dWᵀ [M = in, N = out]."""
    return N * K if op == "fwd" else N * M


def is_large(op: str, M: int, N: int, K: int) -> bool:
    """The 'large FFN shapes' the targets apply to: ≥ 16384 tokens and a weight ≥ 4096²."""
    return tokens_of(op, M, N, K) >= 16384 and weight_size(op, M, N, K) >= 4096 * 4096


def tflops(M: int, N: int, K: int, us: float | None) -> float | None:
    return None if us is None else 2.0 * M * N * K / us / 1e6


def floor_us(M: int, N: int, K: int, dtype: str, peaks: dict) -> float | None:
    """The sparse GEMM's floor: max(dense-equivalent FLOPs ÷ the 2:4 peak, bytes ÷ HBM bandwidth),
    bytes = x + 2:4 values + 4-bit codes read once, y (bf16) written once."""
    if peak_key(dtype) not in peaks:
        return None
    s = OPERAND_BYTES[dtype]
    nbytes = M * K * s + N * K // 2 * s + N * K // 8 + M * N * 2
    return max(2.0 * M * N * K / (peaks[peak_key(dtype)][1] * 1e6), nbytes / (peaks["hbm_tbps"] * 1e6))


@dataclass
class Result:
    """One variant on one shape: time, kernel-only time, correctness check, kernel, and why it is missing."""
    us: float | None = None
    check: str | None = None   # "ok" / "FAIL" / None (not checked)
    rel: float | None = None
    kernel: str | None = None
    note: str = ""
    reps: int = 0
    inner: int = 0
    kernel_us: float | None = None                  # torch.profiler's device time per call
    tuning: cusparselt.Tuning | None = None         # cuSPARSELt only: the search / sweep
    config: cusparselt.Config | None = None         # cuSPARSELt only: the configuration timed
    alpha_check: str | None = None                  # cuSPARSELt FP8: device alpha vector vs scalar


@dataclass(frozen=True)
class Keys:
    """The variants (NVTX op/variant names) one row of ours is compared with."""
    ours: str
    dense: str
    cusparselt: str | None
    dense_fast: str | None = None   # FP8: _scaled_mm with fast accumulation
    torch24: str | None = None      # bf16 forward: torch's CUTLASS 2:4 path


def ours_planned(op: str, sm_major: int) -> list[tuple[str, str]]:
    """(dtype, layout) of our rows: sm90 on Hopper (plus the sm80 forward as the Ampere-path
    reference), sm80 elsewhere; FP8 on Hopper (E4M3 forward, E5M2 × E4M3 weight gradient)."""
    if op == "fwd":
        return [("bf16", "sm90"), ("bf16", "sm80"), ("e4m3", "sm90")] if sm_major == 9 else [("bf16", "sm80")]
    return [("bf16", "sm90"), ("e5m2", "sm90")] if sm_major == 9 else [("bf16", "sm80")]


def keys(op: str, dtype: str, layout: str) -> Keys:
    tail = "" if op == "fwd" else "_wgrad"
    if dtype == "bf16":
        return Keys(f"sparse_linear/{layout}_bf16{tail}", f"cublas/bf16{tail}", f"cusparselt/bf16{tail}",
                    torch24="torch24/cutlass_bf16" if op == "fwd" else None)
    if dtype == "e4m3":
        return Keys("sparse_linear/sm90_e4m3", "scaled_mm/e4m3", "cusparselt/e4m3", "scaled_mm/e4m3_fastaccum")
    return Keys("sparse_linear/sm90_e5m2_wgrad", "scaled_mm/e5m2_wgrad", None)


def variants_planned(op: str, sm_major: int) -> list[str]:
    out = []
    for dtype, layout in ours_planned(op, sm_major):
        k = keys(op, dtype, layout)
        out += [v for v in (k.dense, k.ours, k.cusparselt, k.dense_fast, k.torch24) if v and v not in out]
    return out


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _ok_us(r: Result | None) -> float | None:
    """The time of a variant that may be compared: measured and not failing its check."""
    return r.us if r is not None and r.us is not None and r.check != "FAIL" else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


CUSPARSELT_FIELDS = ("cusparselt_alg_id", "cusparselt_split_k", "cusparselt_split_k_mode", "cusparselt_config",
                     "cusparselt_us", "cusparselt_kernel_us", "cusparselt_check", "cusparselt_rel_err",
                     "cusparselt_tuning", "cusparselt_tuning_gain", "cusparselt_alpha_check", "cusparselt_note")


def cusparselt_fields(k: Keys, c: Result | None) -> dict:
    """The cusparselt_* fields of a row (issue 16's names; the same keys on every row)."""
    if k.cusparselt is None:
        return {**dict.fromkeys(CUSPARSELT_FIELDS), "cusparselt_note": NO_CUSPARSELT}
    c = c or Result(note="n/a: not run")
    t = c.tuning
    best = t.best if t else None
    default = next((x for x in t.trials if x.config == cusparselt.DEFAULT and x.status == "ok"), None) if t else None
    return {
        "cusparselt_alg_id": c.config.alg_id if c.config else None,
        "cusparselt_split_k": c.config.split_k if c.config else None,
        "cusparselt_split_k_mode": c.config.split_k_mode if c.config else None,
        "cusparselt_config": c.config.label() if c.config else None,
        "cusparselt_us": _ok_us(c), "cusparselt_kernel_us": c.kernel_us,
        "cusparselt_check": c.check, "cusparselt_rel_err": c.rel,
        "cusparselt_tuning": t.summary() if t else None,
        # what tuning bought over torch's default (alg 0, no split-K), by the sweep's timer
        "cusparselt_tuning_gain": default.us / best.us if best and default else None,
        "cusparselt_alpha_check": c.alpha_check,
        "cusparselt_note": c.note or None,
    }


def make_rows(op: str, M: int, N: int, K: int, res: dict[str, Result], sm_major: int, peaks: dict) -> list[dict]:
    """The rows of one shape: one per sparse kernel of ours, with its baselines."""
    rows = []
    n_sets = res.get("_n_sets", Result())
    for dtype, lay in ours_planned(op, sm_major):
        k = keys(op, dtype, lay)
        err = res.get(f"_{dtype}_error")
        r = res.get(k.ours) or err or Result(note="n/a: not run")
        dense = res.get(k.dense) or err or Result()
        sparse_tf, dense_tf = tflops(M, N, K, r.us), tflops(M, N, K, dense.us)
        row = {
            "op": op, "dtype": dtype, "layout": lay, "M": M, "N": N, "K": K,
            "kernel": r.kernel or "n/a", "check": r.check, "rel_err": r.rel,
            "sparse_us": r.us, "sparse_kernel_us": r.kernel_us, "sparse_tflops": sparse_tf,
            "dense_kernel": dense.kernel, "dense_us": dense.us, "dense_kernel_us": dense.kernel_us,
            "dense_tflops": dense_tf, "speedup_vs_dense": _ratio(sparse_tf, dense_tf),
            **cusparselt_fields(k, res.get(k.cusparselt) if k.cusparselt else None),
        }
        row["cusparselt_tflops"] = tflops(M, N, K, row["cusparselt_us"])
        row["vs_cusparselt"] = _ratio(row["cusparselt_us"], _ok_us(r))
        if k.torch24:
            t24 = res.get(k.torch24) or Result(note="n/a: not run")
            row.update({"torch24_cutlass_us": _ok_us(t24), "torch24_cutlass_tflops": tflops(M, N, K, _ok_us(t24)),
                        "vs_torch24_cutlass": _ratio(_ok_us(t24), _ok_us(r)),
                        "torch24_note": _join(t24.note, f"check {t24.check}" if t24.check == "FAIL" else "") or None})
        if k.dense_fast:
            fast = res.get(k.dense_fast) or Result()
            row["dense_fastaccum_tflops"] = tflops(M, N, K, fast.us)
            row["speedup_vs_dense_fastaccum"] = _ratio(sparse_tf, row["dense_fastaccum_tflops"])
            row["dense_check"] = dense.check
        fl = floor_us(M, N, K, dtype, peaks)
        row.update({
            "floor_us": fl, "frac_floor": _ratio(fl, r.us),
            "frac_sparse_peak": sparse_tf / peaks[peak_key(dtype)][1] if sparse_tf and peak_key(dtype) in peaks else None,
            "vs_dense_ceiling": None,  # filled once the run's ceiling is known
            "role": "Ampere-path reference" if (sm_major == 9 and lay == "sm80") else "ours",
            "reps": r.reps, "inner": r.inner,
            "n_sets": n_sets.reps if dtype == "bf16" else n_sets.inner,
            "note": _join(r.note, "" if dense.us is not None or dense.note in ("", r.note) else f"dense: {dense.note}"),
        })
        row["target"] = judge(row)
        if row["role"] == "ours":
            row.update(verdicts.verdict({verdicts.OURS: _ok_us(r), verdicts.CUSPARSELT: row["cusparselt_us"],
                                         verdicts.DENSE: _ok_us(dense)}))
        rows.append(row)
    return rows


def judge(row: dict) -> str:
    """met / missed against the targets at the large shapes ('' for the reference rows)."""
    if row["role"] != "ours":
        return ""
    if row["sparse_us"] is None:
        return "n/a"
    if row["check"] == "FAIL":
        return "missed (check FAIL)"
    if not is_large(row["op"], row["M"], row["N"], row["K"]):
        return "not judged (small shape)"
    judged, missed = [], []
    for name, ratio, target in (("dense", "speedup_vs_dense", TARGET_VS_DENSE),
                                ("cuSPARSELt", "vs_cusparselt", TARGET_VS_CUSPARSELT)):
        if row[ratio] is not None:
            judged.append(name)
            if row[ratio] < target:
                missed.append(f"< {target}x {name}")
    if not judged:
        return "n/a (nothing to judge)"
    return "missed: " + ", ".join(missed) if missed else "met (vs " + ", ".join(judged) + ")"


def finish(rows: list[dict], measured_ceiling: dict[str, float]) -> dict[str, float]:
    """The practical ceiling per tensor-core rate (best dense TFLOP/s of the run, the square
    GEMM included), and each row's sparse TFLOP/s over it (2.0 = the full 2:4 doubling)."""
    ceiling = dict(measured_ceiling)
    for r in rows:
        if r["dense_tflops"] is not None:
            key = peak_key(r["dtype"])
            ceiling[key] = max(ceiling.get(key, 0.0), r["dense_tflops"])
    for r in rows:
        c = ceiling.get(peak_key(r["dtype"]))
        r["vs_dense_ceiling"] = r["sparse_tflops"] / c if r["sparse_tflops"] and c else None
    return ceiling


COLUMNS = ["op", "dtype", "layout", "M", "N", "K", "kernel", "check", "sparse_tflops", "dense_tflops",
           "speedup_vs_dense", "cusparselt_tflops", "vs_cusparselt", "cusparselt_config", "frac_floor",
           "frac_sparse_peak", "vs_dense_ceiling", "target", "note"]
TIME_COLUMNS = ["op", "dtype", "layout", "M", "N", "K", "sparse_us", "sparse_kernel_us", "cusparselt_us",
                "cusparselt_kernel_us", "dense_us", "dense_kernel_us", "floor_us"]
TUNING_COLUMNS = ["op", "dtype", "M", "N", "K", "cusparselt_config", "cusparselt_tuning_gain", "cusparselt_tuning",
                  "cusparselt_alpha_check", "cusparselt_note"]
VERDICT_COLUMNS = ["op", "dtype", "M", "N", "K", *verdicts.COLUMNS]


def targets_text() -> str:
    return (f"**Targets** (issue 16), judged at the large FFN shapes (≥ 16384 tokens, weight ≥ 4096²): every "
            f"sparse GEMM of ours (forward bf16 and E4M3, weight gradient bf16 and E5M2 × E4M3) ≥ "
            f"{TARGET_VS_DENSE}× the dense GEMM of its dtype (cuBLAS bf16, `torch._scaled_mm` FP8 with accurate "
            f"accumulation, as ours) and ≥ {TARGET_VS_CUSPARSELT}× cuSPARSELt tuned per shape (`vs_cusparselt`), "
            "where cuSPARSELt has a counterpart.")


def notes_text(rows, ceiling, peak_name, peaks, dry_run: bool, sweep_text: str, md_table) -> str:
    def pct(v, d):
        return f"{100 * v / d:.0f} %" if v and d else "n/a"

    ours = [r for r in rows if r["role"] == "ours"]
    met = sum(r["target"].startswith("met") for r in ours)
    judged = sum(r["target"].startswith(("met", "missed")) for r in ours)
    where = [f"{r['op']} {r['dtype']} {r['layout']} {r['M']}x{r['N']}x{r['K']}" for r in rows]
    fails = [w for w, r in zip(where, rows) if r["check"] == "FAIL"]
    skipped = [w for w, r in zip(where, rows) if "OOM" in (r["note"] or "")]
    lines = []
    if dry_run:
        lines.append("**DRY RUN: every time, TFLOP/s and cuSPARSELt configuration above is FAKE (fixed made-up "
                     "throughputs and a fake cuSPARSELt, no GPU), not a measurement; only the plan, kernel names, "
                     "field names and the tuning logic are real.**\n")
    bf16_peak = peaks.get("bf16", (None, None))[0]
    fp8_peak = peaks.get("e4m3", (None, None))[0]
    lines += [
        targets_text() + f" `target`: met on {met} of {judged} judged rows of ours. Only the forward `y = x·ŵᵀ` "
        "and the weight gradient `dWᵀ = xᵀ·ĝᵀ` (ĝ = MVUE(gᵀ), 2:4 along the tokens) can use the sparse tensor "
        "cores: the input gradient `dx = g·ŵ` reduces over out_features, along which ŵ is not 2:4, so it stays "
        "a dense GEMM (bench_layer times it).",
        "",
        "**How**: TFLOP/s = dense-equivalent 2·M·N·K ÷ median time (CUDA events, after warm-up, input sets "
        "rotated so they exceed 3× L2, `inner` back-to-back calls per sample below 1 ms). `speedup_vs_dense` = "
        "ours ÷ dense TFLOP/s; `vs_cusparselt` = cuSPARSELt's time ÷ ours. cuSPARSELt runs as raw "
        "`torch._cslt_sparse_mm` calls on `torch._cslt_compress`'s operand (compression not timed: "
        "bench_prune times it), `transpose_result=True` so it writes y [M, N] row-major as ours does, FP8 with "
        "alpha as a device vector of length N (a 1-element alpha costs a host sync per call), at the "
        "configuration of `cusparselt_config`. Weight-gradient rows: ours is `sparse_linear(xᵀ, "
        "mvue_24_t_compress(g))`, cuSPARSELt multiplies the same 2:4 ĝ (decompressed, then "
        "`_cslt_compress`ed) by x [T, K] as the layer saved it, dense is gᵀ·x as nn.Linear's backward computes "
        "it (FP8: `_scaled_mm` E5M2 gᵀ × E4M3 x). Every sparse output is checked first against the dense "
        f"product of the same (decompressed) operands (relative Frobenius error ≤ {TOL['bf16']:g} bf16, ≤ "
        f"{TOL['e4m3']:g} FP8); a FAIL row stays in the table. `kernel` is the CUTLASS kernel `sparse_linear` "
        "selects (`s_ste_cuda.gemm_select`); `fallback(decompress+dense)` means none takes the shape. The sm80 "
        "forward rows on Hopper (`role` = Ampere-path reference) are not judged. `*_kernel_us` is the device "
        "time of one call from torch.profiler's CUDA activities: the event time minus it is the host's "
        "per-call overhead (cuSPARSELt re-plans on every torch call).",
        "",
        "**cuSPARSELt tuning**: " + sweep_text,
        "",
        f"**Floors and ceilings**: datasheet peaks for {peak_name or 'this device: unknown, so no floor'}"
        + (f" (dense / 2:4 TFLOP/s: bf16 {peaks['bf16'][0]:g} / {peaks['bf16'][1]:g}"
           + (f", FP8 {peaks['e4m3'][0]:g} / {peaks['e4m3'][1]:g}" if "e4m3" in peaks else "")
           + f"; HBM {peaks['hbm_tbps']:g} TB/s)" if "bf16" in peaks else "")
        + "; `floor_us` = max(2·M·N·K ÷ the 2:4 peak, bytes ÷ HBM bandwidth) with bytes = x, the 2:4 values "
        "and codes read once and y written once; `frac_floor` = floor ÷ our time; `frac_sparse_peak` = our "
        "TFLOP/s ÷ the 2:4 peak. Measured in this run, the practical ceiling (best dense TFLOP/s, the square "
        f"GEMM included): bf16 {ceiling.get('bf16', float('nan')):.0f} TFLOP/s ({pct(ceiling.get('bf16'), bf16_peak)} "
        "of the datasheet dense peak)"
        + (f", FP8 {ceiling['e4m3']:.0f} TFLOP/s ({pct(ceiling['e4m3'], fp8_peak)})" if "e4m3" in ceiling else "")
        + "; `vs_dense_ceiling` = our TFLOP/s ÷ that ceiling (2.0 would be the full 2:4 doubling).",
    ]
    if fails:
        lines += ["", "**Check FAILED**: " + ", ".join(fails) + "."]
    if skipped:
        lines += ["", "**Skipped (OOM)**: " + ", ".join(skipped) + "."]
    lines += ["", "## Use 2:4 here? (fastest of s-ste / cuSPARSELt tuned / dense per shape; `fastest_by` = the "
              f"second's time ÷ the fastest's; 'marginal' below {verdicts.MARGINAL}× dense)", "",
              md_table(VERDICT_COLUMNS, ours),
              "## Event vs kernel-only times (µs per call)", "", md_table(TIME_COLUMNS, rows),
              "## cuSPARSELt configurations", "", md_table(TUNING_COLUMNS, ours)]
    return "\n".join(lines)


def sweep_plan_text(full_where: str, budget_s: float) -> str:
    return ("per shape, cuSPARSELt's own search (`torch._C._cusparselt.mm_search`, else "
            "`torch._cslt_sparse_mm_search`) and torch's default (alg 0, no split-K); " + full_where
            + f" also the sweep alg_id 0.. up to the first error × split_k {{1, 2, 4, 8}} × split_k_mode {{1, 2}} "
            f"(at most {budget_s:g} s per shape and dtype; fastest algorithms get split-K first). Every "
            "configuration is checked against the dense reference before it may win (wrong outputs are "
            "counted, never chosen); all are timed by the same short timer, and the winner is then timed "
            "like every other variant. `cusparselt_tuning` says which plan ran and how it ended; "
            "`cusparselt_tuning_gain` = torch's default time ÷ the winner's (1.0: tuning bought nothing).")
