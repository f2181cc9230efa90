"""2:4 sparse GEMMs against dense GEMMs and torch's own 2:4 path, at FFN shapes.

For tokens M ∈ {4096, 16384, 65536} and weights (N_out, K) ∈ {(3072, 768), (4096, 4096),
(11008, 4096), (4096, 11008), (28672, 8192)}, y = x·ŵᵀ with x [M, K] and ŵ [N, K] 2:4 sparse
along K (β·S(w), compressed by prune_and_compress), all in the same run:

- bf16: our `sparse_linear` (layout "sm90" on Hopper, and "sm80", the Ampere path, as a
  reference there; "sm80" only elsewhere) vs cuBLAS dense bf16 (F.linear on the decompressed ŵ)
  vs torch's 2:4 path (`to_sparse_semi_structured` + F.linear, CUTLASS and cuSPARSELt backends);
- FP8 (Hopper): our `sparse_linear` on e4m3 x and ŵ (bf16 out, alpha = dequant scale) vs dense
  FP8 `torch._scaled_mm` (per-tensor scales, bf16 out; accurate and fast accumulation) vs
  torch's cuSPARSELt FP8 path (`torch._scaled_mm` on a SparseSemiStructuredTensor).

TFLOP/s count dense-equivalent FLOPs 2·M·N·K for every kernel. Each sparse kernel's output is
first checked against the dense product of the decompressed operands (relative Frobenius
error ≤ 1e-2 bf16, ≤ 6e-2 FP8; `check` = ok/FAIL, failing rows are reported, not dropped).
Timing: common.time_us (CUDA events, median after warm-up) over rotating input sets that
together exceed 3× L2; each timed sample runs `inner` back-to-back calls (inner > 1 only for
kernels under ~1 ms, so launch latency is amortised as in a training step), and the number of
reps shrinks for the largest shapes so the whole run stays around 2 minutes on an H100.
Rows that do not fit in memory are reported as 'skipped: OOM'.

    python bench/bench_gemm.py [--quick]          # --quick: M=16384, (4096, 4096) only
    python bench/bench_gemm.py --dry-run          # CPU only: plan + table with fake timings,
                                                  # written to a temp dir (never bench/results)

Writes bench/results/gemm.md and gemm.json. Every launch sits in two nested NVTX ranges, the op
then the variant: sparse_linear/{sm90_bf16,sm80_bf16,sm90_e4m3}, cublas/bf16,
scaled_mm/{e4m3,e4m3_fastaccum}, torch24/{cutlass_bf16,cusparselt_bf16,cusparselt_e4m3}:
    nsys profile -t cuda,nvtx -o gemm python bench/bench_gemm.py --quick
    nsys stats --report nvtx_sum,cuda_gpu_kern_sum gemm.nsys-rep
    ncu --nvtx --nvtx-include "sparse_linear/sm90_bf16/" --kernel-name-base demangled -k regex:Sparse --launch-skip 20 --launch-count 1 --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis python bench/bench_gemm.py --quick
    ncu --nvtx --nvtx-include "sparse_linear/sm90_e4m3/" --kernel-name-base demangled -k regex:Sparse --launch-skip 20 --launch-count 1 --clock-control none --set full -o gemm_e4m3 python bench/bench_gemm.py --quick
    ncu --nvtx --nvtx-include "cublas/bf16/" --launch-skip 20 --launch-count 1 --clock-control none --section SpeedOfLight python bench/bench_gemm.py --quick
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
from dataclasses import dataclass

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import s_ste  # noqa: E402

TOKENS = (4096, 16384, 65536)                                                    # M
WEIGHTS = ((3072, 768), (4096, 4096), (11008, 4096), (4096, 11008), (28672, 8192))  # (N_out, K)
QUICK_TOKENS, QUICK_WEIGHTS = (16384,), ((4096, 4096),)
CEILING_SHAPE = (8192, 8192, 8192)  # a square cuBLAS GEMM measured as the practical ceiling

BF16, E4M3 = torch.bfloat16, torch.float8_e4m3fn
TOL = {"bf16": 1e-2, "e4m3": 6e-2}           # relative Frobenius error of the checks
TARGET_SPEEDUP = {"bf16": 1.6, "e4m3": 1.5}  # sparse / dense at the large shapes (the issue)


def is_large(M: int, N: int, K: int) -> bool:
    """The 'large shapes' the speed-up targets apply to."""
    return M >= 16384 and N * K >= 4096 * 4096


# Datasheet tensor-core peaks in TFLOP/s, (dense, 2:4 sparse), from NVIDIA's H100 / A100
# datasheets (sparse = 2× dense). H100 SXM: bf16 989 / 1979, FP8 1979 / 3958. The H200 has the
# H100 SXM's tensor cores and clocks, so the same peaks. Matched on the device name, first hit.
PEAKS = (
    ("H100 PCIe", {"bf16": (756.0, 1513.0), "e4m3": (1513.0, 3026.0)}),
    ("H100 NVL", {"bf16": (835.0, 1671.0), "e4m3": (1671.0, 3341.0)}),
    ("H100", {"bf16": (989.0, 1979.0), "e4m3": (1979.0, 3958.0)}),   # H100 SXM5
    ("H200", {"bf16": (989.0, 1979.0), "e4m3": (1979.0, 3958.0)}),   # H200 / GH200
    ("A100", {"bf16": (312.0, 624.0)}),
)

# Timing schedule: per variant, about BUDGET_MS of timed samples, MIN_REPS..MAX_REPS of them.
BUDGET_MS, MIN_REPS, MAX_REPS, MAX_WARMUP = 200.0, 5, 50, 10
INNER_TARGET_US, MAX_INNER = 1000.0, 16

# Fake dense-equivalent TFLOP/s of each variant for --dry-run (NOT measurements).
FAKE_TFLOPS = {"cublas/bf16": 650.0, "sparse_linear/sm90_bf16": 980.0, "sparse_linear/sm80_bf16": 600.0,
               "torch24/cutlass_bf16": 520.0, "torch24/cusparselt_bf16": 760.0, "scaled_mm/e4m3": 1150.0,
               "scaled_mm/e4m3_fastaccum": 1300.0, "sparse_linear/sm90_e4m3": 1650.0,
               "torch24/cusparselt_e4m3": 1400.0}


def peaks_for(device: str) -> tuple[str | None, dict]:
    for key, peaks in PEAKS:
        if key in device:
            return key, peaks
    return None, {}


def tflops(M: int, N: int, K: int, us: float | None) -> float | None:
    return None if us is None else 2.0 * M * N * K / us / 1e6


def schedule(est_us: float) -> tuple[int, int, int]:
    """(inner calls per timed sample, warm-up samples, timed samples) for a call of est_us."""
    est_us = max(est_us, 1.0)
    inner = 1 if est_us >= INNER_TARGET_US else min(MAX_INNER, math.ceil(INNER_TARGET_US / est_us))
    reps = int(min(MAX_REPS, max(MIN_REPS, BUDGET_MS * 1e3 / (inner * est_us))))
    warmup = int(min(MAX_WARMUP, max(1, reps // 5)))
    return inner, warmup, reps


def schedule_seconds(est_us: float) -> float:
    """GPU seconds one variant costs: check + sizing calls, warm-up and timed samples."""
    inner, warmup, reps = schedule(est_us)
    return (2 + (warmup + reps) * inner) * est_us / 1e6


@dataclass
class Result:
    """One variant on one shape: time, correctness check, kernel, and why it is missing."""
    us: float | None = None
    check: str | None = None   # "ok" / "FAIL" / None (not checked)
    rel: float | None = None
    kernel: str | None = None
    note: str = ""
    reps: int = 0
    inner: int = 0


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


# ---------------------------------------------------------------- GPU helpers

def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:160] if msg else ''}"


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


def bench(nvtx: str, call, n_sets: int) -> tuple[float, int, int]:
    """Median µs of call(i) rotating over n_sets input sets; returns (µs, reps, inner)."""
    op, variant = nvtx.split("/")

    def one(i: int) -> None:
        torch.cuda.nvtx.range_push(op)
        torch.cuda.nvtx.range_push(variant)
        call(i)
        torch.cuda.nvtx.range_pop()
        torch.cuda.nvtx.range_pop()

    one(0)  # sizes the loop on a warm call
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    one(1 % n_sets)
    end.record()
    end.synchronize()
    inner, warmup, reps = schedule(start.elapsed_time(end) * 1e3)

    def sample(i: int) -> None:
        for j in range(inner):
            one((i * inner + j) % n_sets)

    return common.time_us(sample, n_sets, warmup=warmup, reps=reps) / inner, reps, inner


def run_variant(nvtx: str, call, n_sets: int, tol: float | None, kernel: str,
                check=None, note: str = "") -> Result:
    """Check call(0) with check(y) -> rel error (if given), then time it. Never raises."""
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


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def torch24_from_dense(w: torch.Tensor, backend: str):
    """torch's SparseSemiStructuredTensor of the dense 2:4 ŵ, on the backend asked for."""
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured
    old = SparseSemiStructuredTensor._FORCE_CUTLASS
    SparseSemiStructuredTensor._FORCE_CUTLASS = backend == "cutlass"
    try:
        t = to_sparse_semi_structured(w)
    finally:
        SparseSemiStructuredTensor._FORCE_CUTLASS = old
    want = "CUTLASS" if backend == "cutlass" else "CUSPARSELT"
    if want not in type(t).__name__:
        raise RuntimeError(f"asked torch for {backend}, got {type(t).__name__}")
    return t


# ---------------------------------------------------------------- one shape on the GPU

class Sets:
    """Rotating base operands of one shape: x (bf16 [M, K]), w (fp32 [N, K]) and β."""

    def __init__(self, M: int, N: int, K: int, n: int):
        self.xs = [torch.randn(M, K, device="cuda", dtype=BF16) for _ in range(n)]
        self.ws = [torch.randn(N, K, device="cuda") for _ in range(n)]
        self.betas = [s_ste.scale_factor(w) for w in self.ws]


def measure_bf16(M, N, K, sets: Sets, n: int, layouts, sm_major) -> dict[str, Result]:
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
    for backend in ("cutlass", "cusparselt"):
        key = f"torch24/{backend}_bf16"
        try:
            ws24 = [torch24_from_dense(w, backend) for w in w_hat]
        except torch.cuda.OutOfMemoryError:
            ws24 = None
            out[key] = Result(note="skipped: OOM")
        except Exception as e:
            ws24 = None
            out[key] = Result(note=f"n/a: {_short(e)}")
        if ws24 is None:
            free_memory()
            continue
        out[key] = run_variant(key, lambda i, ws=ws24: F.linear(xs[i], ws[i]), n, tol,
                               f"torch {type(ws24[0]).__name__}", check=lambda y: rel_err(y, ref))
        del ws24
        free_memory()
    return out


def measure_fp8(M, N, K, sets: Sets, n: int, sm_major) -> dict[str, Result]:
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
    key = "torch24/cusparselt_e4m3"
    try:
        ws24 = [torch24_from_dense(w, "cusparselt") for w in wq]
    except Exception as e:  # OOM included: only this variant is lost
        ws24 = None
        out[key] = Result(note="skipped: OOM" if isinstance(e, torch.cuda.OutOfMemoryError) else f"n/a: {_short(e)}")
        free_memory()
    if ws24 is not None:
        # torch's FP8 2:4 path: _scaled_mm(sparse ŵ, xᵀ) = yᵀ [N, M] (positional: torch's sparse
        # dispatch reads args[:7]); returns yᵀ, so no transpose is in its time.
        out[key] = run_variant(
            key, lambda i, ws=ws24: torch._scaled_mm(ws[i], xq[i].t(), sw[i], sx[i], None, None, BF16), n, tol,
            f"torch {type(ws24[0]).__name__} e4m3 (yᵀ)", check=lambda y: rel_err(y.t(), ref, alphas[0]))
        del ws24
    return out


def measure_shape(M, N, K, sm_major) -> dict[str, Result]:
    """Every variant of one shape; an OOM or error costs the variants it hits, never the run."""
    layouts = ("sm90", "sm80") if sm_major == 9 else ("sm80",)
    n_bf16 = common.rotations(M * K * 2 + N * K * 2)   # x + dense ŵ, the largest operand set
    n_fp8 = common.rotations(M * K + N * K) if sm_major == 9 else 0
    out: dict[str, Result] = {"_n_sets": Result(reps=n_bf16, inner=n_fp8)}
    sets = None
    try:
        sets = Sets(M, N, K, max(n_bf16, n_fp8))
    except torch.cuda.OutOfMemoryError:
        out["_bf16_error"] = out["_e4m3_error"] = Result(note="skipped: OOM")
    if sets is None:
        free_memory()
        return out
    for group, n in (("bf16", n_bf16), ("e4m3", n_fp8)):
        if n == 0:
            continue
        try:
            out.update(measure_bf16(M, N, K, sets, n, layouts, sm_major) if group == "bf16"
                       else measure_fp8(M, N, K, sets, n, sm_major))
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


# ---------------------------------------------------------------- rows, table and notes

def variants_planned(sm_major: int) -> list[str]:
    v = ["cublas/bf16"]
    v += ["sparse_linear/sm90_bf16", "sparse_linear/sm80_bf16"] if sm_major == 9 else ["sparse_linear/sm80_bf16"]
    v += ["torch24/cutlass_bf16", "torch24/cusparselt_bf16"]
    if sm_major == 9:
        v += ["scaled_mm/e4m3", "scaled_mm/e4m3_fastaccum", "sparse_linear/sm90_e4m3", "torch24/cusparselt_e4m3"]
    return v


def make_rows(M, N, K, res: dict[str, Result], sm_major: int, peaks: dict) -> list[dict]:
    """The rows of one shape: one per sparse kernel of ours, with its baselines."""
    rows = []
    ours = [("bf16", "sm90"), ("bf16", "sm80")] if sm_major == 9 else [("bf16", "sm80")]
    if sm_major == 9:
        ours.append(("e4m3", "sm90"))
    n_sets = res.get("_n_sets", Result())
    for dtype, lay in ours:
        r = res.get(f"sparse_linear/{lay}_{dtype}") or res.get(f"_{dtype}_error") or Result(note="n/a: not run")
        if dtype == "bf16":
            dense = res.get("cublas/bf16") or res.get("_bf16_error") or Result()
            t24 = {"cutlass": res.get("torch24/cutlass_bf16"), "cusparselt": res.get("torch24/cusparselt_bf16")}
            fast = None
        else:
            dense = res.get("scaled_mm/e4m3") or res.get("_e4m3_error") or Result()
            t24 = {"cutlass": None, "cusparselt": res.get("torch24/cusparselt_e4m3")}
            fast = res.get("scaled_mm/e4m3_fastaccum")
        sparse_tf, dense_tf = tflops(M, N, K, r.us), tflops(M, N, K, dense.us)
        t24_tf = {b: (tflops(M, N, K, t.us) if t is not None else None) for b, t in t24.items()}
        t24_ok = {b: tf for b, tf in t24_tf.items() if tf is not None and t24[b].check == "ok"}
        best = max(t24_ok, key=t24_ok.get) if t24_ok else None
        torch24 = t24_ok[best] if best else None
        fast_tf = tflops(M, N, K, fast.us) if fast is not None else None
        reference = sm_major == 9 and dtype == "bf16" and lay == "sm80"
        t24_notes = _join(*(f"{b}: {t.note}" for b, t in t24.items() if t is not None and t.note),
                          *(f"{b}: check {t.check} ({t.rel:.2g})" for b, t in t24.items()
                            if t is not None and t.check == "FAIL"))
        row = {
            "dtype": dtype, "layout": lay, "M": M, "N": N, "K": K,
            "kernel": r.kernel or "n/a", "check": r.check, "rel_err": r.rel,
            "sparse_us": r.us, "sparse_tflops": sparse_tf,
            "dense_kernel": dense.kernel, "dense_us": dense.us, "dense_tflops": dense_tf,
            "speedup_vs_dense": sparse_tf / dense_tf if sparse_tf and dense_tf else None,
            "torch24_tflops": torch24, "torch24_kernel": best,
            "torch24_cutlass_tflops": t24_tf["cutlass"], "torch24_cusparselt_tflops": t24_tf["cusparselt"],
            "torch24_notes": t24_notes or None,
            "vs_torch24": sparse_tf / torch24 if sparse_tf and torch24 else None,
            "frac_sparse_peak": sparse_tf / peaks[dtype][1] if sparse_tf and dtype in peaks else None,
            "vs_dense_ceiling": None,  # filled once the run's ceiling is known
            "target": None,
            "role": "Ampere-path reference" if reference else "ours",
            "reps": r.reps, "inner": r.inner, "n_sets": n_sets.reps if dtype == "bf16" else n_sets.inner,
            "note": _join(r.note, "" if dense.us is not None or dense.note in ("", r.note) else f"dense: {dense.note}"),
        }
        if dtype == "e4m3":
            row["dense_fastaccum_tflops"] = fast_tf
            row["speedup_vs_dense_fastaccum"] = sparse_tf / fast_tf if sparse_tf and fast_tf else None
            row["dense_check"] = dense.check
        row["target"] = verdict(row)
        rows.append(row)
    return rows


def verdict(row: dict) -> str:
    """met / missed against the issue's targets ('' for the reference rows)."""
    if row["role"] != "ours":
        return ""
    if row["sparse_tflops"] is None:
        return "n/a"
    if row["check"] == "FAIL":
        return "missed (check FAIL)"
    judged, missed = [], []
    if is_large(row["M"], row["N"], row["K"]) and row["speedup_vs_dense"] is not None:
        judged.append("dense")
        if row["speedup_vs_dense"] < TARGET_SPEEDUP[row["dtype"]]:
            missed.append(f"< {TARGET_SPEEDUP[row['dtype']]}x dense")
    if row["vs_torch24"] is not None:
        judged.append("torch 2:4")
        if row["vs_torch24"] < 1.0:
            missed.append("< torch 2:4")
    if not judged:
        return "n/a (nothing to judge)"
    return "missed: " + ", ".join(missed) if missed else "met (vs " + ", ".join(judged) + ")"


def finish(rows: list[dict], measured_ceiling: dict[str, float]) -> dict[str, float]:
    """The practical ceiling per dtype (best cuBLAS dense TFLOP/s of the run, the square GEMM
    included), and each row's sparse TFLOP/s over it (2.0 = the full 2:4 doubling)."""
    ceiling = dict(measured_ceiling)
    for r in rows:
        if r["dense_tflops"] is not None:
            ceiling[r["dtype"]] = max(ceiling.get(r["dtype"], 0.0), r["dense_tflops"])
    for r in rows:
        c = ceiling.get(r["dtype"])
        r["vs_dense_ceiling"] = r["sparse_tflops"] / c if r["sparse_tflops"] and c else None
    return ceiling


COLUMNS = ["dtype", "layout", "M", "N", "K", "kernel", "check", "rel_err", "sparse_tflops", "dense_tflops",
           "speedup_vs_dense", "torch24_tflops", "torch24_kernel", "vs_torch24", "frac_sparse_peak",
           "vs_dense_ceiling", "target", "note"]


def notes_text(rows, ceiling, peak_key, peaks, dry_run) -> str:
    def pct(v, d):
        return f"{100 * v / d:.0f} %" if v and d else "n/a"

    ours = [r for r in rows if r["role"] == "ours"]
    met = sum(r["target"].startswith("met") for r in ours)
    timed = sum(r["sparse_tflops"] is not None for r in ours)
    fails = [f"{r['dtype']} {r['layout']} {r['M']}x{r['N']}x{r['K']}" for r in rows if r["check"] == "FAIL"]
    skipped = [f"{r['dtype']} {r['layout']} {r['M']}x{r['N']}x{r['K']}" for r in rows if "OOM" in (r["note"] or "")]
    lines = []
    if dry_run:
        lines.append("**DRY RUN: every time and TFLOP/s in the table above is FAKE (fixed made-up "
                     "throughputs, no GPU), not a measurement; only the plan, kernel names and layout are real.**\n")
    bf16_peak = peaks.get("bf16", (None, None))[0]
    fp8_peak = peaks.get("e4m3", (None, None))[0]
    lines += [
        "**Targets** (the issue): at the large shapes (M ≥ 16384 tokens and N·K ≥ 4096²), our sparse "
        f"bf16 GEMM ≥ {TARGET_SPEEDUP['bf16']}× cuBLAS dense bf16 and our sparse FP8 GEMM ≥ "
        f"{TARGET_SPEEDUP['e4m3']}× dense FP8 (`torch._scaled_mm`, accurate accumulation, as ours); "
        "and ≥ torch's own 2:4 path (the faster of its CUTLASS and cuSPARSELt backends) at every shape. "
        f"`target`: met on {met} of {timed} timed rows of ours. Only the forward `y = x·ŵᵀ` (and the "
        "weight gradient) can use the sparse tensor cores: the input-gradient GEMM `dx = g·ŵ` reduces "
        "over out_features, along which ŵ is not 2:4, so it stays a dense GEMM.",
        "",
        "**How**: TFLOP/s = dense-equivalent 2·M·N·K ÷ median time (CUDA events, after warm-up, "
        "input sets rotated so they exceed 3× L2, `inner` back-to-back calls per sample below 1 ms); "
        "`speedup_vs_dense` = sparse ÷ dense TFLOP/s of the same dtype; `vs_torch24` = ours ÷ torch's "
        "2:4 (its operand conversion not timed; torch's CUTLASS path returns a transposed view and "
        "its FP8 path yᵀ, so no transpose is in their time, while our sm80 kernel's yᵀ→y transpose "
        "is in ours). Each sparse kernel is checked first against the dense product of the "
        f"decompressed operands (relative Frobenius error ≤ {TOL['bf16']:g} bf16, ≤ {TOL['e4m3']:g} "
        "FP8); a FAIL row stays in the table. `kernel` is the CUTLASS kernel `sparse_linear` selects "
        "(`s_ste_cuda.gemm_select`); `fallback(decompress+dense)` means none takes the shape. The "
        "sm80 rows on Hopper (`role` = Ampere-path reference in gemm.json) are not judged against "
        "the targets.",
        "",
        f"**Ceilings**: datasheet peaks for {peak_key or 'this device: unknown, so frac_sparse_peak is empty'}"
        + (f" (dense / 2:4 sparse TFLOP/s: bf16 {peaks['bf16'][0]:g} / {peaks['bf16'][1]:g}"
           + (f", FP8 {peaks['e4m3'][0]:g} / {peaks['e4m3'][1]:g}" if "e4m3" in peaks else "") + ")"
           if "bf16" in peaks else "")
        + "; `frac_sparse_peak` = sparse TFLOP/s ÷ the 2:4 peak. Measured in this run, the practical "
        f"ceiling (best cuBLAS dense TFLOP/s, {'x'.join(map(str, CEILING_SHAPE))} included): bf16 "
        f"{ceiling.get('bf16', float('nan')):.0f} TFLOP/s ({pct(ceiling.get('bf16'), bf16_peak)} of the "
        "datasheet dense peak)"
        + (f", FP8 {ceiling['e4m3']:.0f} TFLOP/s ({pct(ceiling['e4m3'], fp8_peak)})" if "e4m3" in ceiling else "")
        + "; `vs_dense_ceiling` = sparse TFLOP/s ÷ that ceiling (2.0 would be the full 2:4 doubling).",
    ]
    if fails:
        lines += ["", "**Check FAILED**: " + ", ".join(fails) + "."]
    if skipped:
        lines += ["", "**Skipped (OOM)**: " + ", ".join(skipped) + "."]
    return "\n".join(lines)


def summarize(ceiling, peaks) -> None:
    for dt in ("bf16", "e4m3"):
        if dt in ceiling:
            peak = peaks.get(dt, (None,))[0]
            frac = f" = {ceiling[dt] / peak:.0%} of the {peak:g} TFLOP/s datasheet peak" if peak else ""
            print(f"practical ceiling: cuBLAS dense {dt} {ceiling[dt]:.0f} TFLOP/s{frac}")


# ---------------------------------------------------------------- dry run (no CUDA)

def fake_results(M, N, K, sm_major, simulate_failures: bool) -> tuple[dict[str, Result], float]:
    """Fake Results for the plan (fixed throughputs, shrunk at small shapes), and the GPU
    seconds the schedule would spend on them. Exercises the kernel lookup, the n/a and OOM
    paths and the row code; touches no GPU."""
    res: dict[str, Result] = {}
    secs = 0.0
    eff = min(1.0, (M * N * K / 4096 ** 3) ** 0.25)
    for v in variants_planned(sm_major):
        tf = FAKE_TFLOPS[v] * eff
        us = 2.0 * M * N * K / (tf * 1e6)
        inner, warmup, reps = schedule(us)
        secs += schedule_seconds(us)
        dtype = "e4m3" if "e4m3" in v else "bf16"
        r = Result(us=us, reps=reps, inner=inner, kernel=v)
        if v.startswith("sparse_linear/") or v.startswith("torch24/") or v.startswith("scaled_mm/"):
            r.rel = 0.3 * TOL[dtype]
            r.check = "ok" if r.rel <= TOL[dtype] else "FAIL"
        if v.startswith("sparse_linear/"):
            lay = v.split("/")[1].split("_")[0]
            name, why = gemm_kernel(lay, "bfloat16" if dtype == "bf16" else "float8_e4m3fn", sm_major, M, N, K)
            r.kernel = kernel_label(name)
            r.note = "" if name else f"fallback: {why}"
        if v == "torch24/cusparselt_e4m3" and simulate_failures:
            r = Result(note="n/a: simulated torch error (dry run)")
        if simulate_failures and v == "sparse_linear/sm90_e4m3":
            r = Result(note="skipped: OOM (simulated in --dry-run)")
        res[v] = r
    res["_n_sets"] = Result(reps=2, inner=2)
    return res, secs


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="M=16384, (N, K)=(4096, 4096) only (for profiling)")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: build the plan and the table from fake timings, write to a temp dir "
                             "(or --results-dir), never to bench/results")
    parser.add_argument("--dry-run-sm", type=int, default=9, help="compute capability major the dry run assumes")
    parser.add_argument("--results-dir", default=None, help=f"where gemm.md/json go (default {common.RESULTS})")
    args = parser.parse_args()

    tokens = QUICK_TOKENS if args.quick else TOKENS
    weights = QUICK_WEIGHTS if args.quick else WEIGHTS
    shapes = [(M, N, K) for M in tokens for N, K in weights]
    biggest = max(shapes, key=lambda s: s[0] * s[1] * s[2])

    if args.dry_run:
        out_dir = args.results_dir or tempfile.mkdtemp(prefix="bench_gemm_dry_")
        if os.path.realpath(out_dir) == os.path.realpath(common.RESULTS):
            sys.exit("--dry-run never writes into bench/results: pick another --results-dir")
        common.RESULTS = out_dir  # write_results reads the module global
        sm_major = args.dry_run_sm
        device = "NVIDIA H100 80GB HBM3" if sm_major == 9 else "NVIDIA A100-SXM4-80GB"
    else:
        if not torch.cuda.is_available():
            sys.exit("bench_gemm needs a CUDA GPU (python bench/bench_gemm.py --dry-run checks the plan on a CPU)")
        if args.results_dir:
            common.RESULTS = args.results_dir
        sm_major = torch.cuda.get_device_capability()[0]
        device = torch.cuda.get_device_name()
        torch.manual_seed(0)
    peak_key, peaks = peaks_for(device)
    print(f"{device} (sm {sm_major}x): {len(shapes)} shapes x {len(variants_planned(sm_major))} variants; "
          f"peaks: {peak_key or 'unknown device'}", flush=True)

    rows: list[dict] = []
    if args.dry_run:
        total = 0.0
        for M, N, K in shapes:
            res, secs = fake_results(M, N, K, sm_major, len(shapes) > 1 and (M, N, K) == biggest)
            total += secs
            rows += make_rows(M, N, K, res, sm_major, peaks)
        measured = {"bf16": FAKE_TFLOPS["cublas/bf16"] * 1.05}
        if sm_major == 9:
            measured["e4m3"] = FAKE_TFLOPS["scaled_mm/e4m3"] * 1.05
        print(f"dry run: the timing schedule would spend ~{total:.0f} s of GPU time at the fake throughputs "
              "(plus operand set-up and checks)")
    else:
        measured = measure_ceilings(fp8=sm_major == 9)
        t0 = time.perf_counter()
        for M, N, K in shapes:
            t = time.perf_counter()
            res = measure_shape(M, N, K, sm_major)
            rows += make_rows(M, N, K, res, sm_major, peaks)
            print(f"  M={M} N={N} K={K}: {time.perf_counter() - t:.1f} s (total {time.perf_counter() - t0:.0f} s)",
                  flush=True)
    ceiling = finish(rows, measured)
    summarize(ceiling, peaks)
    title = "2:4 sparse GEMMs vs dense and torch's 2:4 path (FFN shapes, y = x·ŵᵀ)"
    common.write_results(
        "gemm", title + (" [DRY RUN: fake timings]" if args.dry_run else ""),
        COLUMNS, rows, notes=notes_text(rows, ceiling, peak_key, peaks, args.dry_run))
    if args.dry_run:
        print(f"dry run: wrote {os.path.join(common.RESULTS, 'gemm.md')} and gemm.json")


if __name__ == "__main__":
    main()
