"""2:4 sparse GEMMs against dense GEMMs and the best-tuned cuSPARSELt, at FFN shapes, forward and
weight gradient.

For tokens M ∈ {4096, 16384, 65536} and weights (N_out, K) ∈ {(3072, 768), (4096, 4096),
(11008, 4096), (4096, 11008), (28672, 8192)}, all in the same run:

- forward `y = x·ŵᵀ` (`op` = "fwd"), x [M, K], ŵ [N, K] 2:4 along K (β·S(w), prune_and_compress):
  bf16: our `sparse_linear` (layout "sm90" on Hopper, and "sm80", the Ampere path, as a reference
  there; "sm80" only elsewhere) vs cuBLAS dense bf16 (F.linear on the decompressed ŵ) vs
  cuSPARSELt tuned per shape (raw `torch._cslt_sparse_mm` on `torch._cslt_compress(ŵ)`,
  `transpose_result=True`: bench/cusparselt.py) vs torch's CUTLASS 2:4 path
  (`to_sparse_semi_structured` + F.linear); FP8 (Hopper): our `sparse_linear` on E4M3 x and ŵ (bf16
  out, alpha = dequant scale) vs dense `torch._scaled_mm` (accurate and fast accumulation) vs
  cuSPARSELt E4M3 × E4M3 -> bf16 with alpha as a device vector of length N (checked against the
  1-element alpha, which costs torch a host sync per call);
- weight gradient `dWᵀ = xᵀ·ĝᵀ` (`op` = "wgrad"), ĝ = MVUE(gᵀ) 2:4 along the tokens T ∈ {16384,
  65536} (the GEMM's reduction dim): M = in_features, N = out_features, K = T. bf16: ours
  (`sparse_linear` on `mvue_24_t_compress`'s output) vs cuSPARSELt on the same 2:4 ĝ vs cuBLAS
  dense gᵀ·x; FP8: ours E5M2 ĝ × E4M3 xᵀ vs `torch._scaled_mm` E5M2 × E4M3 (cuSPARSELt has no
  E5M2: the rows say so).

cuSPARSELt per shape: its own search and torch's default everywhere; the full sweep (alg_id ×
split_k × split_k_mode, every configuration checked before it may win) at 16384 tokens on the
three largest weights, within --sweep-budget-s per shape and dtype (--cusparselt picks another
plan). TFLOP/s count dense-equivalent FLOPs 2·M·N·K for every kernel; each output is checked first
against the dense product of the same operands (relative Frobenius error ≤ 1e-2 bf16, ≤ 6e-2
FP8; failing rows are reported, not dropped). Timing: common.time_us (CUDA events, median after
warm-up) over rotating input sets that together exceed 3× L2; each timed sample runs `inner`
back-to-back calls (inner > 1 only for calls under ~1 ms, so launch latency is amortised as in a
training step); beside it, the device time of one call from torch.profiler (`*_kernel_us`). Rows
that do not fit in memory are reported as 'skipped: OOM'. gemm.md ends with the verdict per shape
(fastest of ours / cuSPARSELt / dense, and "use 2:4 here?").

    python bench/bench_gemm.py [--quick]          # --quick: M=T=16384, (4096, 4096) only
    python bench/bench_gemm.py --dry-run          # CPU only: plan, tuning logic and tables with FAKE
                                                  # timings and a fake cuSPARSELt, into a temp dir
    python bench/bench_gemm.py --ops fwd --cusparselt search   # a shorter run

Writes bench/results/gemm.md and gemm.json. Every launch sits in two nested NVTX ranges, the op
then the variant: sparse_linear/{sm90_bf16,sm80_bf16,sm90_e4m3,sm90_bf16_wgrad,sm90_e5m2_wgrad},
cublas/{bf16,bf16_wgrad}, scaled_mm/{e4m3,e4m3_fastaccum,e5m2_wgrad}, cusparselt/{bf16,e4m3,
bf16_wgrad} (the tuning's own timings under cusparselt_sweep/...), torch24/cutlass_bf16:
    nsys profile -t cuda,nvtx -o gemm python bench/bench_gemm.py --quick
    nsys stats --report nvtx_sum,cuda_gpu_kern_sum gemm.nsys-rep
    ncu --nvtx --nvtx-include "sparse_linear/sm90_bf16/" --kernel-name-base demangled -k regex:Sparse --launch-skip 20 --launch-count 1 --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis python bench/bench_gemm.py --quick --ops fwd
    ncu --nvtx --nvtx-include "sparse_linear/sm90_e4m3/" --kernel-name-base demangled -k regex:Sparse --launch-skip 20 --launch-count 1 --clock-control none --set full -o gemm_e4m3 python bench/bench_gemm.py --quick --ops fwd
    ncu --nvtx --nvtx-include "cusparselt/bf16/" --launch-skip 20 --launch-count 1 --clock-control none --section SpeedOfLight python bench/bench_gemm.py --quick --ops fwd
    ncu --nvtx --nvtx-include "cublas/bf16/" --launch-skip 20 --launch-count 1 --clock-control none --section SpeedOfLight python bench/bench_gemm.py --quick --ops fwd
(--launch-skip passes the check, sizing and warm-up launches; -k regex:Sparse keeps the
CUTLASS sparse kernel and drops the sm80 path's transpose copy in the same range.)
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import cusparselt  # noqa: E402
import gemm_rows as gr  # noqa: E402
from gemm_rows import TOL, Result, tflops  # noqa: E402

import s_ste  # noqa: E402

TOKENS = (4096, 16384, 65536)                                                    # M
WEIGHTS = ((3072, 768), (4096, 4096), (11008, 4096), (4096, 11008), (28672, 8192))  # (N_out, K)
WGRAD_TOKENS = (16384, 65536)                                                    # T, the wgrad's K
QUICK_TOKENS, QUICK_WEIGHTS = (16384,), ((4096, 4096),)
CEILING_SHAPE = (8192, 8192, 8192)  # a square cuBLAS GEMM measured as the practical ceiling
OPS = ("fwd", "wgrad")
DEVICE = "cuda"  # where the operands live (a CPU smoke test of the measuring code points it at the CPU)

BF16, E4M3, E5M2 = torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2

# Timing schedule: per variant, about BUDGET_MS of timed samples, MIN_REPS..MAX_REPS of them.
BUDGET_MS, MIN_REPS, MAX_REPS, MAX_WARMUP = 200.0, 5, 50, 10
INNER_TARGET_US, MAX_INNER = 1000.0, 16
PROFILE_CALLS = 4  # common.kernel_us: one warm call + 3 profiled

# cuSPARSELt tuning: the full sweep where the targets are judged and a sweep is affordable (16384
# tokens, the three largest weights), the search alone elsewhere; each configuration of a sweep
# is timed with SWEEP_BUDGET_MS of samples, and a sweep stops after SWEEP_BUDGET_S of device time.
SWEEP_TOKENS, SWEEP_MIN_WEIGHT = 16384, 11008 * 4096
SWEEP_BUDGET_MS, SWEEP_BUDGET_S = 20.0, 3.0
# cusparseLtMatmulSearch times every algorithm CUSPARSELT_MATMUL_SEARCH_ITERATIONS (default 5)
# times; the number of algorithms per shape is not known before a device run: assume 10 (estimates).
SEARCH_CALLS_EST = 50

# Fake dense-equivalent TFLOP/s of each variant for --dry-run (NOT measurements; the cuSPARSELt
# ones are the fake library's alg-0 throughput, its configurations scale it).
FAKE_TFLOPS = {"cublas/bf16": 650.0, "sparse_linear/sm90_bf16": 980.0, "sparse_linear/sm80_bf16": 600.0,
               "torch24/cutlass_bf16": 520.0, "cusparselt/bf16": 820.0, "scaled_mm/e4m3": 1150.0,
               "scaled_mm/e4m3_fastaccum": 1300.0, "sparse_linear/sm90_e4m3": 1650.0, "cusparselt/e4m3": 1450.0,
               "cublas/bf16_wgrad": 640.0, "sparse_linear/sm90_bf16_wgrad": 950.0,
               "sparse_linear/sm80_bf16_wgrad": 580.0, "cusparselt/bf16_wgrad": 800.0,
               "scaled_mm/e5m2_wgrad": 1120.0, "sparse_linear/sm90_e5m2_wgrad": 1600.0}


def schedule(est_us: float, budget_ms: float = BUDGET_MS) -> tuple[int, int, int]:
    """(inner calls per timed sample, warm-up samples, timed samples) for a call of est_us."""
    est_us = max(est_us, 1.0)
    inner = 1 if est_us >= INNER_TARGET_US else min(MAX_INNER, math.ceil(INNER_TARGET_US / est_us))
    reps = int(min(MAX_REPS, max(MIN_REPS, budget_ms * 1e3 / (inner * est_us))))
    warmup = int(min(MAX_WARMUP, max(1, reps // 5)))
    return inner, warmup, reps


def schedule_seconds(est_us: float, budget_ms: float = BUDGET_MS) -> float:
    """GPU seconds one timing costs: check + sizing calls, warm-up and timed samples."""
    inner, warmup, reps = schedule(est_us, budget_ms)
    return (2 + (warmup + reps) * inner) * est_us / 1e6


@dataclass(frozen=True)
class SweepPlan:
    """Where cuSPARSELt gets the full sweep: "auto" (the large shapes at SWEEP_TOKENS), "search"
    (nowhere: search + default only), "full" (everywhere); budget_s per shape and dtype."""
    mode: str = "auto"
    budget_s: float = SWEEP_BUDGET_S

    def full(self, op: str, M: int, N: int, K: int) -> bool:
        if self.mode != "auto":
            return self.mode == "full"
        return gr.tokens_of(op, M, N, K) == SWEEP_TOKENS and gr.weight_size(op, M, N, K) >= SWEEP_MIN_WEIGHT

    def text(self) -> str:
        where = {"auto": f"at {SWEEP_TOKENS} tokens on the weights of ≥ 11008·4096 elements (forward and "
                         "weight gradient, every dtype cuSPARSELt takes)",
                 "full": "at every shape", "search": "nowhere (--cusparselt search)"}[self.mode]
        return gr.sweep_plan_text(where, self.budget_s)


# ---------------------------------------------------------------- kernel names (host only)

def gemm_kernel(layout: str, dtype: str, sm_major: int, M: int, N: int, K: int) -> tuple[str | None, str]:
    """(CUTLASS kernel sparse_linear runs, or None = decompress + dense fallback; reason).

    s_ste_cuda.gemm_select takes (layout, dtype, sm_major, N_tokens, M_out, K, has_bias):
    our M (tokens) is its N and our N (out_features) its M."""
    try:
        import s_ste_cuda
    except ImportError as e:
        return None, f"s_ste_cuda not importable: {e}"
    if not hasattr(s_ste_cuda, "gemm_select"):
        return None, "extension built without CUDA (no gemm_select)"
    return s_ste_cuda.gemm_select(layout, dtype, sm_major, M, N, K, False)


def kernel_label(name: str | None) -> str:
    return name if name else "fallback(decompress+dense)"


TORCH_DTYPE_NAME = {"bf16": "bfloat16", "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2"}


# ---------------------------------------------------------------- GPU helpers

_short = cusparselt.short_error
_join = gr._join


def free_memory() -> None:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def rel_err(y: torch.Tensor, ref: torch.Tensor, ref_scale: torch.Tensor | None = None) -> float:
    """‖y − ref·ref_scale‖_F / ‖ref·ref_scale‖_F in float32 chunks (outputs can be several GB)."""
    assert y.shape == ref.shape, (tuple(y.shape), tuple(ref.shape))
    rows = max(1, (1 << 26) // max(1, y.shape[1]))
    num = torch.zeros((), dtype=torch.float64, device=y.device)
    den = torch.zeros((), dtype=torch.float64, device=y.device)
    for r in range(0, y.shape[0], rows):
        a = y[r:r + rows].float()
        b = ref[r:r + rows].float()
        if ref_scale is not None:
            b.mul_(ref_scale)
        num += (a - b).square().sum(dtype=torch.float64)
        den += b.square().sum(dtype=torch.float64)
    return (num.sqrt() / den.sqrt()).item()


def nvtx_call(nvtx: str, call):
    """call(i) inside the two nested NVTX ranges op/variant."""
    op, variant = nvtx.split("/")

    def one(i: int) -> None:
        torch.cuda.nvtx.range_push(op)
        torch.cuda.nvtx.range_push(variant)
        call(i)
        torch.cuda.nvtx.range_pop()
        torch.cuda.nvtx.range_pop()
    return one


def bench(nvtx: str, call, n_sets: int, budget_ms: float = BUDGET_MS) -> tuple[float, int, int]:
    """Median µs of call(i) rotating over n_sets input sets; returns (µs, reps, inner)."""
    one = nvtx_call(nvtx, call)
    one(0)  # sizes the loop on a warm call
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    one(1 % n_sets)
    end.record()
    end.synchronize()
    inner, warmup, reps = schedule(start.elapsed_time(end) * 1e3, budget_ms)

    def sample(i: int) -> None:
        for j in range(inner):
            one((i * inner + j) % n_sets)

    return common.time_us(sample, n_sets, warmup=warmup, reps=reps) / inner, reps, inner


def run_variant(nvtx: str, call, n_sets: int, tol: float | None, kernel: str,
                check=None, note: str = "") -> Result:
    """Check call(0) with check(y) -> rel error (if given), then time it (events, then the
    profiler's kernel-only time). Never raises."""
    res = Result(kernel=kernel, note=note)
    oom, y = False, None
    try:
        if check is not None:
            y = call(0)
            res.rel = check(y)
            y = None
            res.check = "ok" if res.rel <= tol else "FAIL"  # NaN fails too
            if not math.isfinite(res.rel):
                res.note, res.rel = _join(res.note, "non-finite output or reference"), None
        res.us, res.reps, res.inner = bench(nvtx, call, n_sets)
        try:
            res.kernel_us = common.kernel_us(nvtx_call(nvtx, call), n_sets, reps=PROFILE_CALLS - 1)
            if res.kernel_us is None:
                res.note = _join(res.note, "kernel time n/a: the profiler saw no GPU activity")
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as e:  # (a profiler that fails here): the event time still stands
            res.note = _join(res.note, f"kernel time n/a: {_short(e)}")
    except torch.cuda.OutOfMemoryError:
        oom = True
    except Exception as e:  # an API that is missing or raises: the row says why
        res.note = _join(res.note, f"n/a: {_short(e)}")
    if oom:
        y = None  # drop the output before returning the cached blocks
        res.us = None
        res.note = _join(res.note, "skipped: OOM")
        free_memory()
    return res


def guarded(make: Callable[[], Result]) -> Result:
    """make(), or the Result saying why it could not run: an OOM or an error (an operand a library
    refuses, an API this torch lacks) costs this variant only."""
    try:
        return make()
    except torch.cuda.OutOfMemoryError:
        free_memory()
        return Result(note="skipped: OOM")
    except Exception as e:
        return Result(note=f"n/a: {_short(e)}")


def torch24_cutlass(w: torch.Tensor):
    """torch's CUTLASS SparseSemiStructuredTensor of the dense 2:4 ŵ (SM8x kernels, also run on Hopper)."""
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured
    old = SparseSemiStructuredTensor._FORCE_CUTLASS
    SparseSemiStructuredTensor._FORCE_CUTLASS = True
    try:
        t = to_sparse_semi_structured(w)
    finally:
        SparseSemiStructuredTensor._FORCE_CUTLASS = old
    if "CUTLASS" not in type(t).__name__:
        raise RuntimeError(f"asked torch for CUTLASS, got {type(t).__name__}")
    return t


def run_cusparselt(nvtx: str, api: cusparselt.Api | None, comps, bs, n_sets: int, tol: float, check, full: bool,
                   budget_s: float, alphas=None, out_dtype=None) -> Result:
    """cuSPARSELt tuned on set 0 (cusparselt.tune: search, default, the sweep if full, every
    configuration checked by check(y) -> rel error), then the winner timed like every variant."""
    if api is None:
        return Result(note="n/a: torch has no cuSPARSELt (torch.backends.cusparselt.is_available() is False)")
    alphas = alphas or [None] * n_sets

    def call(cfg, i):
        return api.mm(comps[i], bs[i], cfg, alphas[i], out_dtype, transpose_result=True)

    def checked(y):
        rel = check(y)
        return rel <= tol, rel

    sweep_nvtx = nvtx.replace("/", "_sweep/", 1)
    tuning = cusparselt.tune(lambda: api.search(comps[0], bs[0], alphas[0], out_dtype, True),
                             lambda cfg: call(cfg, 0), checked,
                             lambda cfg: bench(sweep_nvtx, lambda i: call(cfg, i), n_sets, SWEEP_BUDGET_MS)[0],
                             full=full, split_ks=api.split_ks(), budget_s=budget_s)  # (an OOM: guarded's)
    best = tuning.best
    if best is None:
        return Result(note="n/a: no cuSPARSELt configuration passed its check", tuning=tuning)
    res = run_variant(nvtx, lambda i: call(best.config, i), n_sets, tol, f"cuSPARSELt {best.config.label()}",
                      check=check)
    res.tuning, res.config = tuning, best.config
    return res


def alpha_vector_check(api, comp, b, cfg, alpha_vec, alpha, out_dtype) -> str:
    """cuSPARSELt's output with the device alpha vector vs with the 1-element alpha (host sync)."""
    try:
        y_vec = api.mm(comp, b, cfg, alpha_vec, out_dtype)
        y_one = api.mm(comp, b, cfg, alpha.reshape(1), out_dtype)
    except Exception as e:  # OOM included: only this check is lost
        return f"n/a: {_short(e)}"
    if torch.equal(y_vec, y_one):
        return "ok: vector == scalar, bit for bit"
    rel = rel_err(y_vec, y_one)
    return f"{'ok' if rel <= 1e-3 else 'FAIL'}: vector vs scalar rel {rel:.2g}"


# ---------------------------------------------------------------- the forward on the GPU

class Sets:
    """Rotating base operands of one forward shape: x (bf16 [M, K]), w (fp32 [N, K]) and β."""

    def __init__(self, M: int, N: int, K: int, n: int):
        self.xs = [torch.randn(M, K, device=DEVICE, dtype=BF16) for _ in range(n)]
        self.ws = [torch.randn(N, K, device=DEVICE) for _ in range(n)]
        self.betas = [s_ste.scale_factor(w) for w in self.ws]


def measure_fwd_bf16(M, N, K, sets: Sets, n: int, layouts, sm_major, api, plan: SweepPlan) -> dict[str, Result]:
    out: dict[str, Result] = {}
    xs = sets.xs[:n]
    comp = {lay: [s_ste.prune_and_compress(w, b, lay, BF16) for w, b in zip(sets.ws[:n], sets.betas[:n])]
            for lay in layouts}
    base = "sm80" if "sm80" in layouts else layouts[0]
    w_hat = [s_ste.decompress(v, m, base) for v, m in comp[base]]  # the dense ŵ, bf16 [N, K]
    ref = F.linear(xs[0], w_hat[0])  # the dense product of the decompressed operands (cuBLAS)
    tol = TOL["bf16"]

    out["cublas/bf16"] = run_variant("cublas/bf16", lambda i: F.linear(xs[i], w_hat[i]), n, None, "cuBLAS bf16")
    for lay in layouts:
        values, metas = [c[0] for c in comp[lay]], [c[1] for c in comp[lay]]
        name, why = gemm_kernel(lay, "bfloat16", sm_major, M, N, K)
        note = "" if name else f"fallback: {why}"
        lay_ref = ref
        w0 = s_ste.decompress(values[0], metas[0], lay)
        if not torch.equal(w0, w_hat[0]):
            note = _join(note, f"decompress({lay}) != decompress({base})")
            lay_ref = F.linear(xs[0], w0)
        del w0
        out[f"sparse_linear/{lay}_bf16"] = run_variant(
            f"sparse_linear/{lay}_bf16",
            lambda i, lay=lay, v=values, m=metas: s_ste.sparse_linear(xs[i], v[i], m[i], None, lay),
            n, tol, kernel_label(name), check=lambda y, r=lay_ref: rel_err(y, r), note=note)
        del lay_ref, values, metas
    del comp
    def cslt() -> Result:
        comps = [api.compress(w) for w in w_hat] if api is not None else None
        return run_cusparselt("cusparselt/bf16", api, comps, [x.t() for x in xs], n, tol, lambda y: rel_err(y, ref),
                              plan.full("fwd", M, N, K), plan.budget_s)

    def torch24() -> Result:
        ws24 = [torch24_cutlass(w) for w in w_hat]
        return run_variant("torch24/cutlass_bf16", lambda i: F.linear(xs[i], ws24[i]), n, tol,
                           f"torch {type(ws24[0]).__name__}", check=lambda y: rel_err(y, ref))

    for key, make in (("cusparselt/bf16", cslt), ("torch24/cutlass_bf16", torch24)):
        out[key] = guarded(make)  # (its operands are freed when make returns)
        free_memory()
    return out


def measure_fwd_fp8(M, N, K, sets: Sets, n: int, sm_major, api, plan: SweepPlan) -> dict[str, Result]:
    out: dict[str, Result] = {}
    tol = TOL["e4m3"]
    xq, sx, vq, mq, sw, wq = [], [], [], [], [], []
    notes = ""
    for x, w, beta in zip(sets.xs[:n], sets.ws[:n], sets.betas[:n]):
        q, s = s_ste.quantize_fp8(x, E4M3)          # x ≈ q·s (s = scale_inv, 0-d float32)
        xq.append(q)
        sx.append(s)
        w_hat32 = s_ste.soft_threshold_24(w)[0].mul_(beta)  # ŵ = β·S(w), float32
        _, s_w = s_ste.quantize_fp8(w_hat32, E4M3)  # ŵ's FP8 scale is 1 / s_w
        sw.append(s_w)
        v, m = s_ste.prune_and_compress(w, beta / s_w, "sm90", E4M3)  # sat_fp8(kept·β·scale)
        vq.append(v)
        mq.append(m)
        try:
            wq.append(s_ste.decompress(v, m, "sm90"))  # the dense FP8 ŵ the kernels multiply
        except Exception as e:
            notes = f"dense FP8 ŵ cast by torch (decompress: {_short(e)})"
            wq.append((w_hat32 / s_w).clamp_(-448.0, 448.0).to(E4M3))
        del w_hat32
    alphas = [a * b for a, b in zip(sx, sw)]
    ref = F.linear(xq[0].to(BF16), wq[0].to(BF16))  # exact products, fp32 sum; ×alpha in the check

    def check(y):
        return rel_err(y, ref, alphas[0])

    out["scaled_mm/e4m3"] = run_variant(
        "scaled_mm/e4m3", lambda i: torch._scaled_mm(xq[i], wq[i].t(), sx[i], sw[i], None, None, BF16), n,
        tol, "cuBLAS _scaled_mm e4m3", check=check, note=notes)
    out["scaled_mm/e4m3_fastaccum"] = run_variant(
        "scaled_mm/e4m3_fastaccum",
        lambda i: torch._scaled_mm(xq[i], wq[i].t(), sx[i], sw[i], None, None, BF16, True), n, tol,
        "cuBLAS _scaled_mm e4m3 fast-accum", check=check)
    name, why = gemm_kernel("sm90", "float8_e4m3fn", sm_major, M, N, K)

    def sl(x, v, m, alpha):
        return s_ste.sparse_linear(x, v, m, None, "sm90", alpha=alpha)

    out["sparse_linear/sm90_e4m3"] = run_variant(
        "sparse_linear/sm90_e4m3", lambda i: sl(xq[i], vq[i], mq[i], alphas[i]), n, tol, kernel_label(name),
        check=check, note=_join(notes, "" if name else f"fallback: {why}"))
    del vq, mq
    def cslt() -> Result:  # (an error: e.g. a cuSPARSELt without E4M3)
        comps = [api.compress(w) for w in wq] if api is not None else None
        avec = [cusparselt.alpha_vector(a, N) for a in alphas]
        bs = [x.t() for x in xq]  # xᵀ as a view: the column-major B that FP8 cuSPARSELt takes
        res = run_cusparselt("cusparselt/e4m3", api, comps, bs, n, tol, check, plan.full("fwd", M, N, K),
                             plan.budget_s, alphas=avec, out_dtype=BF16)
        if res.config is not None:
            res.alpha_check = alpha_vector_check(api, comps[0], bs[0], res.config, avec[0], alphas[0], BF16)
        return res

    out["cusparselt/e4m3"] = guarded(cslt)
    return out


# ---------------------------------------------------------------- the weight gradient on the GPU

class WgradSets:
    """Rotating operands of one weight-gradient shape: x (bf16 [T, K_in]) and g (bf16 [T, N_out])."""

    def __init__(self, T: int, N: int, K_in: int, n: int):
        self.xs = [torch.randn(T, K_in, device=DEVICE, dtype=BF16) for _ in range(n)]
        self.gs = [torch.randn(T, N, device=DEVICE, dtype=BF16) for _ in range(n)]


def measure_wgrad_bf16(M, N, K, sets: WgradSets, n: int, layout, sm_major, api, plan: SweepPlan) -> dict[str, Result]:
    """dWᵀ [M = in, N = out] = xᵀ·ĝᵀ over K = T tokens."""
    out: dict[str, Result] = {}
    xs, gs = sets.xs[:n], sets.gs[:n]
    tol = TOL["bf16"]
    comp = [s_ste.mvue_24_t_compress(g, i, 0, layout)[:2] for i, g in enumerate(gs)]
    xts = [x.t().contiguous() for x in xs]  # xᵀ [in, T]: the row-major x our GEMM takes
    g_hat = [s_ste.decompress(v, m, layout) for v, m in comp]  # the dense 2:4 ĝ [out, T]
    ref = F.linear(xts[0], g_hat[0])
    out["cublas/bf16_wgrad"] = run_variant("cublas/bf16_wgrad", lambda i: torch.mm(gs[i].t(), xs[i]), n, None,
                                           "cuBLAS bf16 gᵀ·x")
    name, why = gemm_kernel(layout, "bfloat16", sm_major, M, N, K)
    out[f"sparse_linear/{layout}_bf16_wgrad"] = run_variant(
        f"sparse_linear/{layout}_bf16_wgrad",
        lambda i: s_ste.sparse_linear(xts[i], comp[i][0], comp[i][1], None, layout), n, tol, kernel_label(name),
        check=lambda y: rel_err(y, ref), note="" if name else f"fallback: {why}")
    del comp, xts

    def cslt() -> Result:
        comps = [api.compress(h) for h in g_hat] if api is not None else None
        g_hat.clear()  # (the dense ĝ are not needed any more)
        # x [T, in] as the layer saved it: cuSPARSELt takes it without the transpose ours needs
        return run_cusparselt("cusparselt/bf16_wgrad", api, comps, xs, n, tol, lambda y: rel_err(y, ref),
                              plan.full("wgrad", M, N, K), plan.budget_s)

    out["cusparselt/bf16_wgrad"] = guarded(cslt)
    return out


def measure_wgrad_fp8(M, N, K, sets: WgradSets, n: int, sm_major) -> dict[str, Result]:
    """The FP8 weight gradient: E5M2 ĝ × E4M3 xᵀ (cuSPARSELt has no E5M2 counterpart)."""
    out: dict[str, Result] = {}
    tol = TOL["e5m2"]
    s_x = torch.ones(1, device=DEVICE)
    s_g = torch.full((1,), 1000.0, device=DEVICE)  # randn g: |1000·g| < 57344 = E5M2's max
    xq_t = [s_ste.quantize_fp8_scaled(x, s_x, E4M3, transpose=True)[1] for x in sets.xs[:n]]   # [in, T]
    gq_t = [s_ste.quantize_fp8_scaled(g, s_g, E5M2, transpose=True)[1] for g in sets.gs[:n]]   # [out, T]
    comp = [s_ste.mvue_24_t_compress(g, i, 0, "sm90", E5M2, s_g)[:2] for i, g in enumerate(sets.gs[:n])]
    inv_x, inv_g = s_x[0].reciprocal(), s_g[0].reciprocal()
    alpha = inv_x * inv_g
    ref = F.linear(xq_t[0].to(BF16), s_ste.decompress(comp[0][0], comp[0][1], "sm90").to(BF16))
    out["scaled_mm/e5m2_wgrad"] = run_variant(
        "scaled_mm/e5m2_wgrad", lambda i: torch._scaled_mm(gq_t[i], xq_t[i].t(), scale_a=inv_g, scale_b=inv_x,
                                                           out_dtype=BF16), n, None, "cuBLAS _scaled_mm e5m2 x e4m3")
    name, why = gemm_kernel("sm90", "float8_e5m2", sm_major, M, N, K)
    out["sparse_linear/sm90_e5m2_wgrad"] = run_variant(
        "sparse_linear/sm90_e5m2_wgrad",
        lambda i: s_ste.sparse_linear(xq_t[i], comp[i][0], comp[i][1], None, "sm90", alpha), n, tol,
        kernel_label(name), check=lambda y: rel_err(y, ref, alpha), note="" if name else f"fallback: {why}")
    return out


# ---------------------------------------------------------------- one shape

def measure_shape(op, M, N, K, sm_major, api, plan: SweepPlan) -> dict[str, Result]:
    """Every variant of one shape; an OOM or error costs the variants it hits, never the run."""
    if op == "fwd":
        n_bf16 = common.rotations(M * K * 2 + N * K * 2)   # x + dense ŵ, the largest operand set
        n_fp8 = common.rotations(M * K + N * K) if sm_major == 9 else 0
    else:  # x [T, in] + g [T, out] (T = K, in = M, out = N)
        n_bf16 = common.rotations(K * (M + N) * 2)
        n_fp8 = common.rotations(K * (M + N)) if sm_major == 9 else 0
    out: dict[str, Result] = {"_n_sets": Result(reps=n_bf16, inner=n_fp8)}
    fp8 = "e4m3" if op == "fwd" else "e5m2"
    sets = None
    try:
        sets = (Sets(M, N, K, max(n_bf16, n_fp8)) if op == "fwd"
                else WgradSets(K, N, M, max(n_bf16, n_fp8)))
    except torch.cuda.OutOfMemoryError:
        out["_bf16_error"] = out[f"_{fp8}_error"] = Result(note="skipped: OOM")
    if sets is None:
        free_memory()
        return out
    layout = "sm90" if sm_major == 9 else "sm80"
    for group, n in (("bf16", n_bf16), (fp8, n_fp8)):
        if n == 0:
            continue
        try:
            if op == "fwd" and group == "bf16":
                layouts = ("sm90", "sm80") if sm_major == 9 else ("sm80",)
                out.update(measure_fwd_bf16(M, N, K, sets, n, layouts, sm_major, api, plan))
            elif op == "fwd":
                out.update(measure_fwd_fp8(M, N, K, sets, n, sm_major, api, plan))
            elif group == "bf16":
                out.update(measure_wgrad_bf16(M, N, K, sets, n, layout, sm_major, api, plan))
            else:
                out.update(measure_wgrad_fp8(M, N, K, sets, n, sm_major))
        except torch.cuda.OutOfMemoryError:
            out[f"_{group}_error"] = Result(note="skipped: OOM")
        except Exception as e:  # e.g. the FP8 compress not there yet: the rows say so
            out[f"_{group}_error"] = Result(note=f"n/a: {_short(e)}")
        free_memory()
    del sets
    free_memory()
    return out


def measure_ceilings(fp8: bool) -> dict[str, float]:
    """cuBLAS dense TFLOP/s at CEILING_SHAPE: the practical ceiling of the dense tensor cores."""
    M, N, K = CEILING_SHAPE
    ceil = {}
    n = common.rotations(M * K * 2 + N * K * 2)
    try:
        xs = [torch.randn(M, K, device="cuda", dtype=BF16) for _ in range(n)]
        ws = [torch.randn(N, K, device="cuda", dtype=BF16) for _ in range(n)]
        us, _, _ = bench("cublas/bf16_ceiling", lambda i: F.linear(xs[i], ws[i]), n)
        ceil["bf16"] = tflops(M, N, K, us)
    except Exception as e:
        print(f"bf16 ceiling not measured: {_short(e)}")
        return ceil
    if fp8:
        try:
            one = torch.ones((), device="cuda")
            xq = [x.to(E4M3) for x in xs]
            wq = [w.to(E4M3) for w in ws]
            us, _, _ = bench("scaled_mm/e4m3_ceiling",
                             lambda i: torch._scaled_mm(xq[i], wq[i].t(), one, one, None, None, BF16), n)
            ceil["e4m3"] = tflops(M, N, K, us)
        except Exception as e:
            print(f"FP8 ceiling not measured: {_short(e)}")
    del xs, ws
    free_memory()
    return ceil


def summarize(ceiling, peaks) -> None:
    for dt in ("bf16", "e4m3"):
        if dt in ceiling:
            peak = peaks.get(dt, (None,))[0]
            frac = f" = {ceiling[dt] / peak:.0%} of the {peak:g} TFLOP/s datasheet peak" if peak else ""
            print(f"practical ceiling: dense {dt} {ceiling[dt]:.0f} TFLOP/s{frac}")


# ---------------------------------------------------------------- dry run (no CUDA)

class FakeCusparselt:
    """A made-up cuSPARSELt for --dry-run (its times are FAKE): algs 0..ALGS-1 (ALGS raises, so
    the sweep meets its first error), alg WRONG_ALG returns wrong numbers (the check must skip
    it), split_k 8 with two kernels raises; times = alg 0's time × a fixed factor per
    configuration. `gpu_s` counts the device seconds the real calls would take (the sweep's clock)."""
    ALGS, WRONG_ALG = 6, 2

    def __init__(self, alg0_us: float, tol: float):
        self.alg0_us, self.tol, self.gpu_s = alg0_us, tol, 0.0

    def us(self, cfg: cusparselt.Config) -> float:
        split = {1: 1.0, 2: 0.95, 4: 0.98, 8: 1.08}[cfg.split_k] * (1.02 if cfg.split_k_mode == 2 else 1.0)
        return self.alg0_us * (1.0 - 0.04 * min(cfg.alg_id, 3) + 0.05 * max(cfg.alg_id - 3, 0)) * split

    def search(self):
        self.gpu_s += SEARCH_CALLS_EST * self.alg0_us / 1e6
        return cusparselt.Config(1), None

    def run(self, cfg: cusparselt.Config):
        if cfg.alg_id >= self.ALGS or (cfg.split_k == 8 and cfg.split_k_mode == cusparselt.TWO_KERNELS):
            raise RuntimeError("CUSPARSE_STATUS_INVALID_VALUE (fake cuSPARSELt)")
        self.gpu_s += self.us(cfg) / 1e6
        return cfg

    def check(self, y: cusparselt.Config) -> tuple[bool, float]:
        rel = 0.5 if y.alg_id == self.WRONG_ALG else 0.3 * self.tol
        return rel <= self.tol, rel

    def timer(self, cfg: cusparselt.Config) -> float:
        self.gpu_s += schedule_seconds(self.us(cfg), SWEEP_BUDGET_MS)
        return self.us(cfg)


def fake_variant_us(v: str, M: int, N: int, K: int) -> float:
    eff = min(1.0, (M * N * K / 4096 ** 3) ** 0.25)  # small shapes run below the fake peak
    return 2.0 * M * N * K / (FAKE_TFLOPS[v] * eff * 1e6)


def fake_results(op, M, N, K, sm_major, simulate_failures: bool, plan: SweepPlan) -> tuple[dict[str, Result], dict]:
    """Fake Results for the plan (fixed throughputs, shrunk at small shapes; a fake cuSPARSELt
    tuned by the real cusparselt.tune), and the device seconds they would cost, by kind.
    Exercises the kernel lookup, the n/a and OOM paths and the row code; touches no GPU."""
    res: dict[str, Result] = {}
    cost = {"timing": 0.0, "profile+check": 0.0, "cusparselt tuning": 0.0}
    for v in gr.variants_planned(op, sm_major):
        us = fake_variant_us(v, M, N, K)
        inner, warmup, reps = schedule(us)
        cost["timing"] += schedule_seconds(us)
        cost["profile+check"] += (PROFILE_CALLS + 1) * us / 1e6
        dtype = "e4m3" if "e4m3" in v else "e5m2" if "e5m2" in v else "bf16"
        r = Result(us=us, reps=reps, inner=inner, kernel=v, kernel_us=0.97 * us)
        if not v.startswith("cublas/"):
            r.rel = 0.3 * TOL[dtype]
            r.check = "ok" if r.rel <= TOL[dtype] else "FAIL"
        if v.startswith("sparse_linear/"):
            lay = v.split("/")[1].split("_")[0]
            name, why = gemm_kernel(lay, TORCH_DTYPE_NAME[dtype], sm_major, M, N, K)
            r.kernel = kernel_label(name)
            r.note = "" if name else f"fallback: {why}"
        if v.startswith("cusparselt/"):
            lib = FakeCusparselt(us, TOL[dtype])
            tuning = cusparselt.tune(lib.search, lib.run, lib.check, lib.timer, full=plan.full(op, M, N, K),
                                     budget_s=plan.budget_s, clock=lambda lib=lib: lib.gpu_s)
            cost["cusparselt tuning"] += lib.gpu_s
            best = tuning.best
            r.us, r.kernel_us = best.us, 0.97 * best.us
            r.config, r.tuning, r.kernel = best.config, tuning, f"cuSPARSELt {best.config.label()} (FAKE)"
            r.alpha_check = "FAKE: not run (dry run)" if dtype == "e4m3" else None
        if simulate_failures and v == "cusparselt/e4m3":
            r = Result(note="n/a: simulated torch error (dry run)")
        if simulate_failures and v == "sparse_linear/sm90_e4m3":
            r = Result(note="skipped: OOM (simulated in --dry-run)")
        res[v] = r
    res["_n_sets"] = Result(reps=2, inner=2)
    return res, cost


# ---------------------------------------------------------------- main

def plan_shapes(ops, quick: bool) -> list[tuple[str, int, int, int]]:
    """(op, M, N, K) of the run; the weight gradient's M = in_features, N = out_features, K = T."""
    tokens = QUICK_TOKENS if quick else TOKENS
    wtokens = QUICK_TOKENS if quick else WGRAD_TOKENS
    weights = QUICK_WEIGHTS if quick else WEIGHTS
    shapes = [("fwd", M, N, K) for M in tokens for N, K in weights] if "fwd" in ops else []
    return shapes + ([("wgrad", K, N, T) for T in wtokens for N, K in weights] if "wgrad" in ops else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="M=T=16384, (N, K)=(4096, 4096) only (for profiling)")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: build the plan and the table from fake timings and a fake cuSPARSELt, write "
                             "to a temp dir (or --results-dir), never to bench/results")
    parser.add_argument("--dry-run-sm", type=int, default=9, help="compute capability major the dry run assumes")
    parser.add_argument("--results-dir", default=None, help=f"where gemm.md/json go (default {common.RESULTS})")
    parser.add_argument("--ops", default="fwd,wgrad", help="comma-separated: fwd, wgrad (default both)")
    parser.add_argument("--cusparselt", choices=("auto", "search", "full"), default="auto",
                        help="where cuSPARSELt gets the full sweep (auto: 16384 tokens, the largest weights)")
    parser.add_argument("--sweep-budget-s", type=float, default=SWEEP_BUDGET_S,
                        help=f"device seconds per swept shape and dtype (default {SWEEP_BUDGET_S:g})")
    args = parser.parse_args()
    ops = [o for o in args.ops.split(",") if o]
    if not set(ops) <= set(OPS):
        sys.exit(f"--ops takes {', '.join(OPS)}, got {args.ops}")
    plan = SweepPlan(args.cusparselt, args.sweep_budget_s)
    shapes = plan_shapes(ops, args.quick)
    biggest = max(shapes, key=lambda s: s[1] * s[2] * s[3])

    if args.dry_run:
        out_dir = args.results_dir or tempfile.mkdtemp(prefix="bench_gemm_dry_")
        if os.path.realpath(out_dir) == os.path.realpath(common.RESULTS):
            sys.exit("--dry-run never writes into bench/results: pick another --results-dir")
        common.RESULTS = out_dir  # write_results reads the module global
        sm_major = args.dry_run_sm
        device = "NVIDIA H100 80GB HBM3" if sm_major == 9 else "NVIDIA A100-SXM4-80GB"
        api = None
    else:
        if not torch.cuda.is_available():
            sys.exit("bench_gemm needs a CUDA GPU (python bench/bench_gemm.py --dry-run checks the plan on a CPU)")
        if args.results_dir:
            common.RESULTS = args.results_dir
        sm_major = torch.cuda.get_device_capability()[0]
        device = torch.cuda.get_device_name()
        torch.manual_seed(0)
        api = cusparselt.Api.from_torch() if torch.backends.cusparselt.is_available() else None
    peak_name, peaks = gr.peaks_for(device)
    print(f"{device} (sm {sm_major}x): {len(shapes)} shapes ({', '.join(ops)}); peaks: {peak_name or 'unknown device'}")
    print(gr.targets_text(), flush=True)

    rows: list[dict] = []
    if args.dry_run:
        total: dict[str, float] = {}
        for op, M, N, K in shapes:
            res, cost = fake_results(op, M, N, K, sm_major, len(shapes) > 1 and (op, M, N, K) == biggest, plan)
            for kind, s in cost.items():
                total[kind] = total.get(kind, 0.0) + s
            rows += gr.make_rows(op, M, N, K, res, sm_major, peaks)
        measured = {"bf16": FAKE_TFLOPS["cublas/bf16"] * 1.05}
        if sm_major == 9:
            measured["e4m3"] = FAKE_TFLOPS["scaled_mm/e4m3"] * 1.05
        print(f"dry run: at the fake throughputs the run would spend ~{sum(total.values()):.0f} s of device time ("
              + ", ".join(f"{k} {s:.0f} s" for k, s in total.items()) + "), plus operand set-up, reference "
              "products and Python (not modelled; the device run prints per-shape wall times)")
    else:
        measured = measure_ceilings(fp8=sm_major == 9)
        t0 = time.perf_counter()
        for op, M, N, K in shapes:
            t = time.perf_counter()
            res = measure_shape(op, M, N, K, sm_major, api, plan)
            rows += gr.make_rows(op, M, N, K, res, sm_major, peaks)
            print(f"  {op} M={M} N={N} K={K}: {time.perf_counter() - t:.1f} s (total {time.perf_counter() - t0:.0f} s)",
                  flush=True)
    if args.dry_run:
        for r in rows:
            r["timings"] = "FAKE (dry run)"
    ceiling = gr.finish(rows, measured)
    summarize(ceiling, peaks)
    title = "2:4 sparse GEMMs vs dense and tuned cuSPARSELt (FFN shapes: y = x·ŵᵀ, dWᵀ = xᵀ·ĝᵀ)"
    common.write_results(
        "gemm", title + (" [DRY RUN: FAKE timings]" if args.dry_run else ""), gr.COLUMNS, rows,
        notes=gr.notes_text(rows, ceiling, peak_name, peaks, args.dry_run, plan.text(), common.md_table))
    if args.dry_run:
        print(f"dry run: wrote {os.path.join(common.RESULTS, 'gemm.md')} and gemm.json")


if __name__ == "__main__":
    main()
