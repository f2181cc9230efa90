"""Tune the SM90 2:4 sparse GEMMs: every kernel x knob at the bench's FFN shapes, forward and weight gradient.

For each problem of the training step at bench_gemm.py's shapes (the forward y = x·ŵᵀ: M =
out_features, K = in_features, N = tokens ∈ bench_gemm.TOKENS; the weight gradient dŵᵀ = MVUE(gᵀ)
against xᵀ: M = out_features, N = in_features, K = tokens ∈ WGRAD_TOKENS), in bf16 and FP8 (E4M3
forward, E5M2 x E4M3 weight gradient), it times every SM90 kernel of the build that takes the
problem (s_ste_cuda.gemm_kernel_info / gemm_can_implement) with its default knobs, then the
fastest FINALISTS kernels over the knob grid (raster × swizzle, × FP8 promotion interval for
the promoting kernels), each through s_ste_cuda.gemm_run. A configuration may win only if its
result passed the accuracy rule against float64 first (csrc/gemm/README.md: relative Frobenius
error of sampled output rows < TOL, the tests' tolerances; for FastAccum kernels this is the
only way into the library, so they are chosen only where the device showed them accurate).

Writes the table the library reads (the text format of csrc/gemm/tuning_table.h): into
s_ste/gemm_tables/<device>.txt, so later runs in the same checkout (bench_gemm.py after this in
the device call) use it, and a copy into bench/results/gemm_tables/ (packed by on_device.sh);
plus the report bench/results/tune_gemm.md. The sweep keeps to --budget-s seconds of GPU time
(estimated before, enforced while running: past the budget only default knobs are timed, past
1.2x it stops and writes what it has).

    python bench/tune_gemm.py [--budget-s 240] [--quick]
    python bench/tune_gemm.py --dry-run [--out-dir DIR]   # CPU only: fake times marked FAKE, into a
                                                          # temp dir; needs the CUDA build (kernel list)
    python bench/tune_gemm.py --estimate                  # the plan and its device-time estimate
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_gemm  # noqa: E402  (the FFN shapes)
import common  # noqa: E402

import s_ste  # noqa: E402
import s_ste_cuda  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = os.path.join(ROOT, "s_ste", "gemm_tables")
WGRAD_TOKENS = (16384, 65536)            # K of the weight gradient (tokens per step)
QUICK_TOKENS, QUICK_WEIGHTS = (16384,), ((4096, 4096),)
# The accuracy rule (tests/test_cuda.py, csrc/gemm/README.md): relative Frobenius error vs float64
# of the operands' exact product: bf16 1e-2, FP8 8e-3 (bf16 output rounding is ~2e-3 of it).
TOL = {"bf16": 1e-2, "fp8": 8e-3}
RASTERS = ("heuristic", "along_m", "along_n")
SWIZZLES = (0, 2, 4, 8)                   # 0 = the scheduler's default, 1
PROMOTIONS = (0, 8, 16)                   # wgmmas between FP8 promotions; 0 = the default, 4
FINALISTS = 2
CHECK_ROWS = 1024                         # output rows compared with float64
# Planning (and --dry-run's fake times): dense-equivalent TFLOP/s a kernel is assumed to reach.
ASSUMED_TFLOPS = {"bf16": 700.0, "fp8": 1300.0}
SETUP_S = 0.3                             # operands, compress, float64 reference, per problem
CONFIG_OVERHEAD_S = 0.003                 # host time per configuration (launches, event syncs, the check's compare)
PER_CONFIG_MS = 25.0                      # timed samples per configuration
MIN_REPS, MAX_REPS, INNER_US, MAX_INNER = 3, 10, 1000.0, 16
FAKE_DEVICE = "FAKE dry-run GPU"


@dataclass
class Case:
    """One GEMM problem D[M, N] = A[M, K]·B[K, N] of the training step, and the table ranges it stands for."""
    role: str        # "fwd" / "wgrad"
    group: str       # "bf16" / "fp8"
    a: str           # values dtype (element name)
    b: str           # x dtype
    M: int
    N: int
    K: int
    k_range: tuple[int, int]
    n_range: tuple[int, int]

    @property
    def flops(self) -> float:
        return 2.0 * self.M * self.N * self.K

    def label(self) -> str:
        return f"{self.role} {self.a}x{self.b} M={self.M} N={self.N} K={self.K}"


@dataclass
class Config:
    kernel: str
    raster: str = "heuristic"
    swizzle: int = 0
    promotion: int = 0

    def knobs(self) -> str:
        return f"{self.raster}/s{self.swizzle}/p{self.promotion}"


@dataclass
class Measurement:
    config: Config
    us: float | None = None
    rel: float | None = None
    ok: bool = False
    note: str = ""


@dataclass
class Outcome:
    case: Case
    measured: list[Measurement] = field(default_factory=list)
    heuristic: str | None = None   # what the library picks without a table
    note: str = ""

    def winners(self) -> list[Measurement]:
        return sorted((m for m in self.measured if m.ok and m.us is not None), key=lambda m: m.us)


# ---------------------------------------------------------------- the plan (host only)

def ranges(values: tuple[int, ...]) -> list[tuple[int, int]]:
    """Inclusive ranges around sorted measured sizes: split at the geometric midpoints, the ends
    extended by a factor 2 (sizes beyond are the heuristic's)."""
    vs = sorted(values)
    cuts = [math.isqrt(a * b) for a, b in zip(vs, vs[1:])]
    lows = [max(1, vs[0] // 2)] + [c + 1 for c in cuts]
    highs = cuts + [vs[-1] * 2]
    return list(zip(lows, highs))


def plan_cases(quick: bool) -> list[Case]:
    tokens = QUICK_TOKENS if quick else bench_gemm.TOKENS
    wgrad_tokens = QUICK_TOKENS if quick else WGRAD_TOKENS
    weights = QUICK_WEIGHTS if quick else bench_gemm.WEIGHTS
    out = []
    for group, a, b, wa in (("bf16", "bfloat16", "bfloat16", "bfloat16"),
                            ("fp8", "float8_e4m3fn", "float8_e4m3fn", "float8_e5m2")):
        for n_out, k_in in weights:
            for t, rng in zip(sorted(tokens), ranges(tokens)):
                out.append(Case("fwd", group, a, b, n_out, t, k_in, (k_in, k_in), rng))
            for t, rng in zip(sorted(wgrad_tokens), ranges(wgrad_tokens)):
                out.append(Case("wgrad", group, wa, b, n_out, k_in, t, rng, (k_in, k_in)))
    return out


def kernel_info() -> dict[str, dict]:
    if not hasattr(s_ste_cuda, "gemm_kernel_info"):
        sys.exit("tune_gemm needs the extension built with its CUDA kernels (the kernel list and fingerprint); "
                 "this one is CPU-only")
    return {k["name"]: k for k in s_ste_cuda.gemm_kernel_info()}


def candidates(case: Case, info: dict[str, dict]) -> list[str]:
    """The SM90 kernels of the build that take the problem with default knobs (registry order)."""
    return [name for name, k in info.items()
            if k["layout"] == "sm90" and (k["a"], k["b"]) == (case.a, case.b)
            and s_ste_cuda.gemm_can_implement(name, case.N, case.M, case.K, False) is None]


def knob_grid(name: str, case: Case, info: dict[str, dict]) -> list[Config]:
    """Every knob setting the kernel takes for the problem (gemm_can_implement), defaults first."""
    promotions = PROMOTIONS if info[name]["promotion_step"] else (0,)
    grid = [Config(name, r, s, p) for p in promotions for r in RASTERS for s in SWIZZLES]
    return [c for c in grid
            if s_ste_cuda.gemm_can_implement(name, case.N, case.M, case.K, False, c.raster, c.swizzle,
                                             c.promotion) is None]


def schedule(est_us: float, per_config_ms: float) -> tuple[int, int]:
    """(inner calls per sample, timed samples) for a call of est_us."""
    est_us = max(est_us, 1.0)
    inner = 1 if est_us >= INNER_US else min(MAX_INNER, math.ceil(INNER_US / est_us))
    reps = int(min(MAX_REPS, max(MIN_REPS, per_config_ms * 1e3 / (inner * est_us))))
    return inner, reps


def config_seconds(est_us: float, per_config_ms: float, checked: bool = True) -> float:
    """GPU seconds one configuration costs: its check, one sizing call, one warm-up sample, the
    timed samples (a configuration that failed its check costs the check only)."""
    inner, reps = schedule(est_us, per_config_ms)
    return (1 + ((1 + (1 + reps) * inner) if checked else 0)) * est_us / 1e6


def assumed_us(case: Case, config: Config, info: dict[str, dict], fake: bool) -> float:
    """The planning estimate of a configuration's time (and --dry-run's FAKE time): the assumed
    throughput, scaled in the dry run by a fixed pseudo-random factor per configuration so that
    different kernels and knobs win."""
    us = case.flops / (ASSUMED_TFLOPS[case.group] * 1e6)
    if not fake:
        return us
    k = info[config.kernel]
    tile = k["tile"][0] * k["tile"][1] / (128 * 128)
    factor = 1.0 + 0.08 * math.log2(tile) - (0.1 if k["accumulation"] == "fp8_fastaccum" else 0.0)
    jitter = zlib.crc32(f"{case.label()} {config}".encode()) % 1000 / 1000.0  # deterministic
    return us / max(0.3, factor + 0.15 * (jitter - 0.5))


def fake_rel(case: Case, config: Config, info: dict[str, dict]) -> float:
    """--dry-run's FAKE check result: the promoted / f32 kernels well inside the rule; FastAccum's error
    growing with K as the pessimistic (sign-fill) reading of bench/fp8_accum_model.py predicts, so the
    dry-run table shows the gate at work (FastAccum winning only at short K)."""
    if info[config.kernel]["accumulation"] == "fp8_fastaccum":
        return 1.7e-3 + 2e-3 * (case.K / 768) ** 1.1
    return 0.25 * TOL[case.group]


def estimate_seconds(cases: list[Case], info: dict[str, dict], finalists: int,
                     per_config_ms: float) -> tuple[float, int]:
    """(seconds, configurations) of the plan at the assumed throughputs. The finalists are not
    known before timing: each problem is priced with the knob grids of its first kernels."""
    total, configs = 0.0, 0
    for case in cases:
        names = candidates(case, info)
        if not names:
            continue
        total += SETUP_S
        grids = [[Config(n)] for n in names] + [knob_grid(n, case, info)[1:] for n in names[:finalists]]
        for grid in grids:
            for config in grid:
                total += config_seconds(assumed_us(case, config, info, False), per_config_ms) + CONFIG_OVERHEAD_S
                configs += 1
    return total, configs


# ---------------------------------------------------------------- one problem on the GPU

class Operands:
    """Rotating operand sets of one case on the GPU, the float64 reference of sampled rows, and the
    call that runs a configuration."""

    def __init__(self, case: Case):
        self.case = case
        M, N, K = case.M, case.N, case.K
        per_set = M * K // 2 + N * K * (2 if case.group == "bf16" else 1) + M * N * 2
        self.n = min(4, common.rotations(per_set))
        self.xs, self.values, self.metas, self.alphas = [], [], [], []
        for i in range(self.n):
            x = torch.randn(N, K, device="cuda")
            if case.role == "wgrad":
                a = s_ste.mvue_24(torch.randn(M, K, device="cuda"), 17 + i, 0)  # MVUE(gᵀ): the 2:4 gradient
                beta = torch.ones((), device="cuda")
            else:
                a = torch.randn(M, K, device="cuda")
                beta = s_ste.scale_factor(a)
            if case.group == "bf16":
                v, m = s_ste.prune_and_compress(a, beta, "sm90", torch.bfloat16)
                self.xs.append(x.to(torch.bfloat16))
                self.alphas.append(None)
            else:
                dtype_a = getattr(torch, case.a)
                pruned = a if case.role == "wgrad" else s_ste.soft_threshold_24(a)[0] * beta
                w_scale = torch.finfo(dtype_a).max / pruned.abs().max()
                v, m = s_ste.prune_and_compress(a, beta * w_scale, "sm90", dtype_a)
                xq, x_scale_inv = s_ste.quantize_fp8(x, torch.float8_e4m3fn)
                self.xs.append(xq)
                self.alphas.append((x_scale_inv / w_scale).float())
            self.values.append(v)
            self.metas.append(m)
            del x, a
        rows = torch.linspace(0, N - 1, min(N, CHECK_ROWS), device="cuda").long()
        dense = s_ste.decompress(self.values[0], self.metas[0], "sm90")  # ŵ [M, K] in the values' dtype
        x_rows = self.xs[0][rows]
        ref = torch.zeros(len(rows), M, dtype=torch.float64, device="cuda")
        for k0 in range(0, K, 8192):  # float64 in K chunks: the weight gradient's ŵ is up to 28672 x 65536
            ref += x_rows[:, k0:k0 + 8192].double() @ dense[:, k0:k0 + 8192].double().t()
        if self.alphas[0] is not None:
            ref *= self.alphas[0].double()
        self.rows, self.ref = rows, ref
        del dense, x_rows

    def run(self, config: Config, i: int) -> torch.Tensor:
        return s_ste_cuda.gemm_run(config.kernel, self.xs[i], self.values[i], self.metas[i], None, self.alphas[i],
                                   config.raster, config.swizzle, config.promotion)

    def rel_err(self, y: torch.Tensor) -> float:
        got = y[self.rows].double()
        return ((got - self.ref).norm() / self.ref.norm()).item()


def time_config(ops: Operands, config: Config, per_config_ms: float) -> float:
    ops.run(config, 0)  # sizing call, warm
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    ops.run(config, 1 % ops.n)
    end.record()
    end.synchronize()
    inner, reps = schedule(start.elapsed_time(end) * 1e3, per_config_ms)

    def sample(i: int) -> None:
        for j in range(inner):
            ops.run(config, (i * inner + j) % ops.n)

    return common.time_us(sample, ops.n, warmup=1, reps=reps) / inner


def measure(ops: Operands | None, case: Case, config: Config, info: dict[str, dict], per_config_ms: float,
            fake: bool) -> Measurement:
    """Check, then time one configuration (a failed check is not timed); never raises."""
    m = Measurement(config)
    tol = TOL[case.group]
    if fake:
        m.us = assumed_us(case, config, info, True)
        m.rel = fake_rel(case, config, info)
        m.ok = m.rel < tol
        m.note = "FAKE" if m.ok else f"FAKE check FAILED: {m.rel:.3g} >= {tol:g}"
        return m
    try:
        y = ops.run(config, 0)
        m.rel = ops.rel_err(y)
        del y
        if not m.rel < tol:  # NaN fails too
            m.note = f"check FAILED: {m.rel:.3g} >= {tol:g}"
            return m
        m.ok = True
        m.us = time_config(ops, config, per_config_ms)
    except torch.cuda.OutOfMemoryError:
        m.ok, m.note = False, "OOM"
        torch.cuda.empty_cache()
    except Exception as e:  # a kernel that refuses or fails: the row says why, the sweep goes on
        m.ok, m.note = False, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return m


def tune_case(case: Case, info: dict[str, dict], finalists: int, per_config_ms: float, fake: bool,
              knobs_allowed) -> Outcome:
    out = Outcome(case)
    out.heuristic = s_ste_cuda.gemm_select("sm90", case.a, 9, case.N, case.M, case.K, False, case.b, 132, "")[0]
    names = candidates(case, info)
    if not names:
        out.note = "no SM90 kernel takes this problem"
        return out
    ops = None
    try:
        if not fake:
            ops = Operands(case)
        for name in names:  # stage 1: every kernel with its defaults
            out.measured.append(measure(ops, case, Config(name), info, per_config_ms, fake))
        ranked = [m.config.kernel for m in out.winners()][:finalists]
        for name in ranked:  # stage 2: the finalists' knob grids
            if not knobs_allowed():
                out.note = "knob sweep cut by the budget"
                break
            for config in knob_grid(name, case, info)[1:]:
                out.measured.append(measure(ops, case, config, info, per_config_ms, fake))
    except torch.cuda.OutOfMemoryError:
        out.note = "operands do not fit: skipped (OOM)"
    finally:
        del ops
        if not fake:
            torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------- outputs

def device_slug(device: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")


def weights_of(outcomes: list[Outcome], info: dict[str, dict]) -> dict[str, float]:
    """Per kernel: the geometric mean, over the problems where it and its dtypes' default kernel (the
    first of the registry) were both timed with default knobs, of t(default) / t(kernel)."""
    ratios: dict[str, list[float]] = {}
    for o in outcomes:
        base = {m.config.kernel: m.us for m in o.measured
                if m.ok and m.us and m.config == Config(m.config.kernel)}
        default = next((n for n, k in info.items() if k["layout"] == "sm90" and (k["a"], k["b"]) == (o.case.a, o.case.b)),
                       None)
        if default not in base:
            continue
        for name, us in base.items():
            ratios.setdefault(name, []).append(base[default] / us)
    return {n: math.exp(sum(map(math.log, r)) / len(r)) for n, r in ratios.items() if r}


def table_text(device: str, sm_count: int, outcomes: list[Outcome], weights: dict[str, float], fake: bool) -> str:
    env = common.environment()
    lines = [
        "# s-ste GEMM tuning table, written by bench/tune_gemm.py (format: csrc/gemm/tuning_table.h)",
        f"# {'FAKE: dry-run times, not measurements; ' if fake else ''}torch {env['torch']}, CUDA {env['cuda']}, "
        f"commit {env['commit']}, {env['date']}",
        "s_ste_gemm_table 1",
        f"device {device}",
        f"sm_count {sm_count}",
        f"fingerprint {s_ste_cuda.gemm_fingerprint()}",
    ]
    if fake:
        lines.append("note FAKE")
    lines += [f"weight {n} {w:.4f}" for n, w in sorted(weights.items())]
    lines.append("# row a b M K_lo K_hi N_lo N_hi kernel raster swizzle promotion us runner_up")
    for o in outcomes:
        ws = o.winners()
        if not ws:
            continue
        c, best = o.case, ws[0]
        runner = next((m.config.kernel for m in ws[1:] if m.config.kernel != best.config.kernel), "-")
        lines.append(f"row {c.a} {c.b} {c.M} {c.k_range[0]} {c.k_range[1]} {c.n_range[0]} {c.n_range[1]} "
                     f"{best.config.kernel} {best.config.raster} {best.config.swizzle} {best.config.promotion} "
                     f"{best.us:.1f} {runner}")
    return "\n".join(lines) + "\n"


def report_text(device: str, outcomes: list[Outcome], fake: bool, seconds: float, estimate: float,
                budget: float, table_path: str) -> str:
    env = common.environment()
    fake_mark = " [FAKE: dry-run times and checks, not measurements]" if fake else ""
    lines = [f"# GEMM tuning sweep{fake_mark}", "",
             f"{device}, torch {env['torch']}, CUDA {env['cuda']}, commit {env['commit']}, {env['date']}; "
             f"{'fake ' if fake else ''}GPU time {seconds:.0f} s (estimated {estimate:.0f} s, budget {budget:.0f} s). "
             f"Table: `{os.path.relpath(table_path, ROOT) if table_path.startswith(ROOT) else table_path}`.", "",
             "Winner per problem (the fastest configuration whose result passed the accuracy check against "
             f"float64: bf16 < {TOL['bf16']:g}, FP8 < {TOL['fp8']:g}); `heuristic` is what the library runs "
             "without the table, `gain` its time over the winner's.", "",
             "| role | a x b | M | N | K | winner | knobs | µs | TFLOP/s | rel. error | heuristic | gain | runner-up | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        c = o.case
        ws = o.winners()
        h = next((m for m in o.measured if m.config == Config(o.heuristic or "")), None)
        if not ws:
            lines.append(f"| {c.role} | {c.a} x {c.b} | {c.M} | {c.N} | {c.K} | - | | | | | {o.heuristic} | | | "
                         f"{o.note or 'nothing passed'} |")
            continue
        best = ws[0]
        rel = best.rel
        runner = next((m for m in ws[1:] if m.config.kernel != best.config.kernel), None)
        gain = f"{h.us / best.us:.2f}x" if h and h.us else ""
        lines.append(
            f"| {c.role} | {c.a} x {c.b} | {c.M} | {c.N} | {c.K} | {best.config.kernel} | {best.config.knobs()} | "
            f"{best.us:.1f} | {c.flops / best.us / 1e6:.0f} | {'' if rel is None else f'{rel:.2e}'} | "
            f"{o.heuristic} | {gain} | {runner.config.kernel + f' {runner.us:.1f}' if runner else '-'} | {o.note} |")
    fast = [(o.case, m) for o in outcomes for m in o.measured
            if m.rel is not None and "fastaccum" in m.config.kernel]
    if fast:
        lines += ["", "FastAccum accuracy (the device's verdict, csrc/gemm/README.md): relative Frobenius error "
                  f"vs float64 per problem and kernel; a result >= {TOL['fp8']:g} never enters the table.", "",
                  "| M | N | K | kernel | knobs | rel. error | passes |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {c.M} | {c.N} | {c.K} | {m.config.kernel} | {m.config.knobs()} | {m.rel:.2e} | "
                  f"{'yes' if m.ok else 'NO'} |" for c, m in fast]
    lines += ["", "<details><summary>every configuration timed</summary>", "",
              "| role | M | N | K | kernel | knobs | µs | rel. error | note |", "|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        c = o.case
        for m in o.measured:
            lines.append(f"| {c.role} | {c.M} | {c.N} | {c.K} | {m.config.kernel} | {m.config.knobs()} | "
                         f"{'' if m.us is None else f'{m.us:.1f}'} | {'' if m.rel is None else f'{m.rel:.2e}'} | "
                         f"{m.note} |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="no GPU: fake times marked FAKE, into a temp dir")
    parser.add_argument("--estimate", action="store_true", help="print the plan and its device-time estimate, run nothing")
    parser.add_argument("--quick", action="store_true", help="(4096, 4096) x 16384 tokens only")
    parser.add_argument("--budget-s", type=float, default=240.0, help="GPU seconds the sweep may take (default 240)")
    parser.add_argument("--finalists", type=int, default=FINALISTS, help="kernels per problem whose knobs are swept")
    parser.add_argument("--per-config-ms", type=float, default=PER_CONFIG_MS, help="timed samples per configuration")
    parser.add_argument("--out-dir", default=None,
                        help="where the report and the table copy go (default bench/results; --dry-run: a temp dir)")
    args = parser.parse_args()

    info = kernel_info()
    cases = plan_cases(args.quick)
    finalists = args.finalists
    estimate, n_configs = estimate_seconds(cases, info, finalists, args.per_config_ms)
    while estimate > args.budget_s and finalists > 0:  # fit the plan: fewer knob sweeps first
        finalists -= 1
        estimate, n_configs = estimate_seconds(cases, info, finalists, args.per_config_ms)
    n_pairs = sum(len(candidates(c, info)) for c in cases)
    print(f"plan: {len(cases)} problems, {n_pairs} kernel x problem pairs, knob sweeps of the {finalists} fastest "
          f"kernels per problem ({n_configs} configurations); estimated {estimate:.0f} s of device time at "
          f"{ASSUMED_TFLOPS} TFLOP/s (budget {args.budget_s:.0f} s)", flush=True)
    if args.estimate:
        return 0

    fake = args.dry_run
    if fake:
        out_dir = args.out_dir or tempfile.mkdtemp(prefix="tune_gemm_dry_")
        if os.path.realpath(out_dir) == os.path.realpath(common.RESULTS):
            sys.exit("--dry-run never writes into bench/results: pick another --out-dir")
        device, sm_count = FAKE_DEVICE, 132
        table_dirs = [out_dir]
    else:
        if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
            sys.exit("tune_gemm needs a Hopper GPU (python bench/tune_gemm.py --dry-run checks the sweep on a CPU)")
        out_dir = args.out_dir or common.RESULTS
        device = torch.cuda.get_device_name()
        sm_count = torch.cuda.get_device_properties(0).multi_processor_count
        table_dirs = [TABLES, os.path.join(out_dir, "gemm_tables")]
        torch.manual_seed(0)

    spent = 0.0  # GPU seconds (fake: the fake times' schedule)
    t0 = time.perf_counter()
    outcomes = []
    for case in cases:
        elapsed = spent if fake else time.perf_counter() - t0
        if elapsed > 1.2 * args.budget_s:
            outcomes.append(Outcome(case, note="not measured: budget spent"))
            continue
        start = time.perf_counter()
        o = tune_case(case, info, finalists, args.per_config_ms, fake,
                      lambda: (spent if fake else time.perf_counter() - t0) <= args.budget_s)
        if fake:
            spent += SETUP_S + sum(config_seconds(m.us, args.per_config_ms, m.ok) + CONFIG_OVERHEAD_S
                                   for m in o.measured if m.us)
        outcomes.append(o)
        best = o.winners()[0] if o.winners() else None
        print(f"  {case.label()}: {best.config.kernel + ' ' + best.config.knobs() if best else '-'} "
              f"({time.perf_counter() - start:.1f} s){' FAKE' if fake else ''}", flush=True)
    seconds = spent if fake else time.perf_counter() - t0

    text = table_text(device, sm_count, outcomes, weights_of(outcomes, info), fake)
    table_path = ""
    for d in table_dirs:
        os.makedirs(d, exist_ok=True)
        table_path = table_path or os.path.join(d, device_slug(device) + ".txt")
        with open(os.path.join(d, device_slug(device) + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
    os.makedirs(out_dir, exist_ok=True)
    report = report_text(device, outcomes, fake, seconds, estimate, args.budget_s, table_path)
    with open(os.path.join(out_dir, "tune_gemm.md"), "w", encoding="utf-8") as f:
        f.write(report)
    print(report)
    print(f"wrote {table_path} and {os.path.join(out_dir, 'tune_gemm.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
