"""The differentiable pieces of an S-STE linear layer, as custom ops with registered autograd.

Custom ops (so torch.compile traces the layer without graph breaks) for the two paths of
``SparseLinear``:

The semantic path (the reference; the default on the CPU):
- ``s_ste::sparse_weight(w, scale, recipe, decay)`` -> (ŵ, mask): the 2:4 weight of a recipe,
  with a straight-through gradient (dL/dw = dL/dŵ, plus SR-STE's masked decay).
- ``s_ste::sparse_linear_train(x, ŵ, bias, rng, mvue, fp8)`` -> y = x ŵᵀ + b, whose backward
  (``s_ste::sparse_linear_train_backward``) computes dx = g ŵ and dŵ = MVUE(gᵀ) x with dense
  products; ``fp8=True`` simulates the FP8 rounding of every GEMM operand with current
  per-tensor scales (E4M3 forward, E5M2 gradient).

The fast path (the default on CUDA):
- ``s_ste::fast_linear(x, w, values, meta, w_dgrad, ...)`` -> y from the compressed weight
  (sparse GEMM; FP8: quantize_fp8_scaled then the E4M3 sparse GEMM), whose backward
  (``s_ste::fast_linear_backward``) computes dx with a dense GEMM and dWᵀ with
  mvue_24_t_compress and the sparse GEMM; FP8 scales come in from s_ste.fp8_scaling
  (delayed scaling) and the measured amaxes go back out, no host sync.

The math is in the extension's ops (s_ste.ops); this file only wires them together.
"""
import contextlib
import os
from typing import Optional

import torch
import torch.nn.functional as F

from . import ops

# S_STE_NVTX=1 (read at import): every op of the layer's fast path runs inside an NVTX range
# "s_ste.<op>" (for nsys / ncu --nvtx-include; see bench/README.md). Off by default: no overhead.
NVTX = os.environ.get("S_STE_NVTX", "0") not in ("", "0")


def nvtx(name: str):
    """An NVTX range named s_ste.<name> when S_STE_NVTX=1 and CUDA is up, else a no-op."""
    if NVTX and torch.cuda.is_available() and not torch.compiler.is_compiling():
        return torch.cuda.nvtx.range(f"s_ste.{name}")
    return contextlib.nullcontext()

RECIPES = ("dense", "ste", "sr-ste", "s-ste")
FORWARD_FP8 = torch.float8_e4m3fn
GRADIENT_FP8 = torch.float8_e5m2


def fake_quantize(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t rounded through FP8 `dtype` with a per-tensor scale, back in t's dtype.

    A non-finite t has no finite scale: the result is all NaN (as a scale computed from a
    NaN/Inf amax makes it), so a diverged weight or an overflowed gradient (a loss-scaler
    step) stays visible; quantize_fp8 itself refuses non-finite input.
    """
    finite = torch.isfinite(t)
    q, scale_inv = ops.quantize_fp8(torch.where(finite, t, 0).contiguous(), dtype)
    return torch.where(finite.all(), q.float() * scale_inv, float("nan")).to(t.dtype)


# ---- the sparse weight of a recipe, straight-through ----


@torch.library.custom_op("s_ste::sparse_weight", mutates_args=())
def sparse_weight(w: torch.Tensor, scale: torch.Tensor, recipe: str, decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    ops.check_same_device("sparse_weight", w=w, scale=scale)
    if recipe == "s-ste":
        # Threshold in float32 and round once, as prune_and_compress does.
        pruned, mask = ops.soft_threshold_24(w.float().contiguous())
        return (pruned * scale).to(w.dtype), mask
    if recipe in ("ste", "sr-ste"):
        return ops.hard_threshold_24(w.contiguous())
    raise ValueError(f"sparse_weight: recipe must be one of 's-ste', 'ste', 'sr-ste', got {recipe!r}")


@sparse_weight.register_fake
def _sparse_weight_fake(w, scale, recipe, decay):
    ops.check_same_device("sparse_weight", w=w, scale=scale)
    # Contiguous whatever w's strides: the kernels run on w.contiguous().
    return w.new_empty(w.shape), w.new_empty(w.shape, dtype=torch.bool)


def _sparse_weight_setup(ctx, inputs, output):
    w, _, recipe, decay = inputs
    ctx.decay = decay if recipe == "sr-ste" else 0.0
    ctx.save_for_backward(w if ctx.decay else None, output[1] if ctx.decay else None)


def _sparse_weight_backward(ctx, grad_w_hat, _grad_mask):
    w, mask = ctx.saved_tensors
    grad = grad_w_hat
    if ctx.decay:
        # SR-STE: pull the pruned weights toward zero, λ·(1 − mask)·w.
        grad = grad + ctx.decay * w * (~mask)
    return grad, None, None, None


sparse_weight.register_autograd(_sparse_weight_backward, setup_context=_sparse_weight_setup)


# ---- the linear product with MVUE weight gradients ----


@torch.library.custom_op("s_ste::sparse_linear_train", mutates_args=())
def sparse_linear_train(
    x: torch.Tensor, w_hat: torch.Tensor, bias: Optional[torch.Tensor], rng: torch.Tensor, mvue: bool, fp8: bool
) -> torch.Tensor:
    ops.check_same_device("sparse_linear_train", x=x, w_hat=w_hat, bias=bias)  # rng lives on the CPU
    if fp8:
        x, w_hat = fake_quantize(x, FORWARD_FP8), fake_quantize(w_hat, FORWARD_FP8)
    return F.linear(x, w_hat, bias)


@sparse_linear_train.register_fake
def _sparse_linear_train_fake(x, w_hat, bias, rng, mvue, fp8):
    ops.check_same_device("sparse_linear_train", x=x, w_hat=w_hat, bias=bias)
    return x.new_empty((*x.shape[:-1], w_hat.shape[0]))


@torch.library.custom_op("s_ste::sparse_linear_train_backward", mutates_args=())
def sparse_linear_train_backward(
    grad: torch.Tensor, x: torch.Tensor, w_hat: torch.Tensor, rng: torch.Tensor, mvue: bool, fp8: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dŵ, db) for y = x ŵᵀ + b; rng = (seed, offset) of the MVUE draw."""
    K, N = x.shape[-1], w_hat.shape[0]
    g = grad.reshape(-1, N)
    x2 = x.reshape(-1, K)
    if fp8:
        x2, w_hat = fake_quantize(x2, FORWARD_FP8), fake_quantize(w_hat, FORWARD_FP8)
    g_in = fake_quantize(g, GRADIENT_FP8) if fp8 else g
    # dx reduces over N, along which ŵ is not 2:4: a dense product.
    dx = (g_in @ w_hat).reshape(x.shape)
    g_t = g.t()
    if mvue and g_t.shape[1]:  # (no tokens: nothing to sample, dŵ = 0)
        # 2:4 groups run along tokens, the reduction dim of dŵ = gᵀ x; pad tokens to 4.
        M = g_t.shape[1]
        pad = (-M) % 4
        g_t = F.pad(g_t, (0, pad)) if pad else g_t
        seed, offset = (int(v) for v in rng.tolist())
        g_t = ops.mvue_24(g_t.contiguous(), seed, offset)[:, :M]
    if fp8:
        g_t = fake_quantize(g_t, GRADIENT_FP8)
    dw = g_t @ x2
    return dx, dw.to(w_hat.dtype), g.sum(0)


@sparse_linear_train_backward.register_fake
def _sparse_linear_train_backward_fake(grad, x, w_hat, rng, mvue, fp8):
    return x.new_empty(x.shape), w_hat.new_empty(w_hat.shape), grad.new_empty((w_hat.shape[0],))


def _linear_setup(ctx, inputs, output):
    x, w_hat, bias, rng, mvue, fp8 = inputs
    ctx.has_bias = bias is not None
    ctx.mvue, ctx.fp8 = mvue, fp8
    ctx.save_for_backward(x, w_hat, rng)


def _linear_backward(ctx, grad):
    x, w_hat, rng = ctx.saved_tensors
    dx, dw, db = sparse_linear_train_backward(grad.contiguous(), x, w_hat, rng, ctx.mvue, ctx.fp8)
    return dx, dw, (db.to(grad.dtype) if ctx.has_bias else None), None, None, None


sparse_linear_train.register_autograd(_linear_backward, setup_context=_linear_setup)


# ---- the fast path: compressed 2:4 weight, sparse GEMMs, fused MVUE-transpose-compress ----
#
# SparseLinear builds (values, meta) = prune_and_compress(ŵ) and the dense operand of the
# input-gradient GEMM once per weight update and passes them in; these two ops only chain the
# extension's ops. x is 2-D [T, K]; tokens are zero-padded to `pad_to` for the weight-gradient
# GEMM, whose reduction dim (and 2:4 dim) they are.


FP8_VALUE_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def _fp8_mm(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor) -> torch.Tensor:
    """bf16(scale_a·scale_b·(a·b)) for FP8 a [M, K] row-major and b [K, N] column-major (torch._scaled_mm)."""
    return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    return F.pad(t, (0, 0, 0, rows - t.shape[0])) if rows != t.shape[0] else t


def _padded(T: int, pad_to: int) -> int:
    return -(-T // pad_to) * pad_to


@torch.library.custom_op("s_ste::fast_linear", mutates_args=())
def fast_linear(
    x: torch.Tensor, weight: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, w_dgrad: torch.Tensor,
    bias: Optional[torch.Tensor], rng: torch.Tensor, scales: Optional[torch.Tensor], amax: Optional[torch.Tensor],
    layout: str, pad_to: int, mvue: bool, need_wgrad: bool, first: bool, decay: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, saved operand of the weight gradient, amax of x) for y = x ŵᵀ + b.

    16-bit: y = sparse_linear(x, values, meta, bias); the saved operand is empty (x itself is saved).
    FP8 (values in float8_e4m3fn): x is cast to E4M3 with scales[X] (and transposed, padded, for
    the weight gradient: the saved operand), y = bf16(x_q·ŵ_qᵀ/(s_x·s_w) + b); amax = max|x|.
    `weight`, `w_dgrad`, `rng`, `amax`, `mvue`, `first`, `decay` are for the backward.
    """
    _fast_linear_devices(x, weight, values, meta, w_dgrad, bias, scales, amax)
    T = x.shape[0]
    if T == 0:  # an empty batch: no GEMM, no amax (−1: none this step)
        return _empty_forward(x, values, layout, need_wgrad, pad_to)
    if values.dtype not in FP8_VALUE_DTYPES:
        with nvtx("fwd_gemm"):
            y = ops.sparse_linear(x, values, meta, bias, layout)
        return y, x.new_empty((0,)), x.new_zeros((), dtype=torch.float32)
    s_x, s_w = scales[0], scales[1]
    # Padded tokens (zeros) keep every FP8 GEMM dim a multiple of 16; their outputs are dropped.
    with nvtx("quantize_x"):
        q, q_t, amax_x = ops.quantize_fp8_scaled(_pad_rows(x, _padded(T, pad_to)), s_x.reshape(1), FORWARD_FP8,
                                                 transpose=need_wgrad)
    from .fp8_scaling import nan_unless_finite
    alpha = nan_unless_finite((s_x * s_w).reciprocal(), amax_x)  # (±Inf in x saturated: keep it non-finite)
    b = bias.to(torch.bfloat16) if bias is not None else None
    with nvtx("fwd_gemm"):
        y = ops.sparse_linear(q, values, meta, b, layout, alpha)[:T]
    return y, q_t, amax_x


def _fast_linear_devices(x, weight, values, meta, w_dgrad, bias, scales, amax):
    ops.check_same_device("fast_linear", x=x, weight=weight, values=values, meta=meta, w_dgrad=w_dgrad, bias=bias,
                          scales=scales, amax=amax)  # rng lives on the CPU


def _empty_forward(x, values, layout, need_wgrad, pad_to):
    N, K = values.shape[0], x.shape[1]
    none = x.new_full((), -1.0, dtype=torch.float32)
    if values.dtype not in FP8_VALUE_DTYPES:
        return x.new_empty((0, N)), x.new_empty((0,)), none
    saved = x.new_empty((K, 0) if need_wgrad else (0,), dtype=FORWARD_FP8)
    return x.new_empty((0, N), dtype=torch.bfloat16), saved, none


@fast_linear.register_fake
def _fast_linear_fake(x, weight, values, meta, w_dgrad, bias, rng, scales, amax, layout, pad_to, mvue, need_wgrad,
                      first, decay):
    _fast_linear_devices(x, weight, values, meta, w_dgrad, bias, scales, amax)
    T, K = x.shape
    N = values.shape[0]
    if values.dtype not in FP8_VALUE_DTYPES:
        return x.new_empty((T, N)), x.new_empty((0,)), x.new_empty((), dtype=torch.float32)
    saved = x.new_empty((K, _padded(T, pad_to)) if need_wgrad else (0,), dtype=FORWARD_FP8)
    return x.new_empty((T, N), dtype=torch.bfloat16), saved, x.new_empty((), dtype=torch.float32)


@torch.library.custom_op("s_ste::fast_linear_backward", mutates_args=("amax",))
def fast_linear_backward(
    grad: torch.Tensor, x: torch.Tensor, w_dgrad: torch.Tensor, rng: torch.Tensor, scales: Optional[torch.Tensor],
    amax: Optional[torch.Tensor], layout: str, pad_to: int, mvue: bool, first: bool, wgrad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx [T, K], dWᵀ [K, N], db [N]) for y = x ŵᵀ + b, g = grad [T, N] (wgrad=False: dWᵀ empty).

    dx = g·ŵ, a dense GEMM (w_dgrad: ŵ [N, K] in 16 bits, or ŵ_qᵀ [K, N] in E4M3);
    dWᵀ = xᵀ·MVUE(gᵀ)ᵀ through mvue_24_t_compress and the sparse GEMM (mvue=False: dense xᵀ·g).
    16-bit: x is the layer input [T, K]. FP8: x is the saved E4M3 xᵀ [K, T_pad]; g is cast to E5M2
    with scales[GRAD] (first step: its current amax), MVUE(gᵀ) with scales[GRAD_MVUE] (first
    step: 4·max|g|), and their amaxes are written to amax[2], amax[3] (the delayed-scaling history).
    """
    T, N = grad.shape
    if T == 0:  # an empty batch: zero weight and bias gradients, no amax
        return _empty_backward(grad, w_dgrad, wgrad)
    seed, offset = (int(v) for v in rng.tolist())  # rng lives on the CPU: no device sync
    if w_dgrad.dtype not in FP8_VALUE_DTYPES:
        with nvtx("dgrad_gemm"):
            dx = grad @ w_dgrad
        if not wgrad:
            dwt = grad.new_empty((0,))
        elif mvue:
            Tp = _padded(T, pad_to)
            with nvtx("mvue_t_compress"):
                values, meta, _ = ops.mvue_24_t_compress(_pad_rows(grad, Tp), seed, offset, layout)
            with nvtx("transpose_x"):
                x_t = _pad_rows(x, Tp).t().contiguous()
            with nvtx("wgrad_gemm"):
                dwt = ops.sparse_linear(x_t, values, meta, None, layout)
        else:
            with nvtx("wgrad_gemm_dense"):
                dwt = x.t() @ grad
        return dx, dwt, grad.sum(0)
    from .fp8_scaling import FP8_MAX, MVUE_AMAX_BOUND, clean, nan_unless_finite, scale_from_amax

    Tp = _padded(T, pad_to)
    gp = _pad_rows(grad, Tp)
    s_x, s_w, s_g, s_h = scales[0], scales[1], scales[2], scales[3]
    if first:  # no history yet: the current amax (one extra reduction, first step only)
        amax_now = grad.detach().abs().amax().float()
        s_g = scale_from_amax(amax_now, FP8_MAX[GRADIENT_FP8])
        s_h = scale_from_amax(amax_now * MVUE_AMAX_BOUND, FP8_MAX[GRADIENT_FP8])
    with nvtx("quantize_g"):
        g_q, g_qt, amax_g = ops.quantize_fp8_scaled(gp, s_g.reshape(1), GRADIENT_FP8, transpose=wgrad and not mvue)
    # The saturating cast maps ±Inf to ±max: an overflowed gradient (a loss-scaler step) must
    # give non-finite gradients (so the scaler skips the step), so its dequant factor turns NaN.
    inv_g = nan_unless_finite(s_g.reciprocal(), amax_g)
    with nvtx("dgrad_gemm"):
        dx = _fp8_mm(g_q, w_dgrad.t(), inv_g, s_w.reciprocal())[:T]
    if not wgrad:
        dwt = grad.new_empty((0,), dtype=torch.bfloat16)
        amax_h = torch.full_like(amax_g, -1.0)
    elif mvue:
        with nvtx("mvue_t_compress"):
            values, meta, amax_h = ops.mvue_24_t_compress(gp, seed, offset, layout, GRADIENT_FP8, s_h.reshape(1))
        with nvtx("wgrad_gemm"):
            dwt = ops.sparse_linear(x, values, meta, None, layout, nan_unless_finite((s_x * s_h).reciprocal(), amax_g))
    else:
        with nvtx("wgrad_gemm_dense"):
            dwt = _fp8_mm(x, g_qt.t(), s_x.reciprocal(), inv_g)
        amax_h = torch.full_like(amax_g, -1.0)  # no MVUE output this step
    # An overflowed gradient (a loss-scaler step) stays Inf/NaN in dx and dWᵀ, so the scaler skips
    # the step; its amax is kept out of the saved state (recorded as 0, as fold would).
    amax[2:4].copy_(clean(torch.stack([amax_g, amax_h])))
    return dx, dwt, grad.sum(0, dtype=torch.float32).to(grad.dtype)


def _empty_backward(grad, w_dgrad, wgrad):
    N = grad.shape[1]
    fp8 = w_dgrad.dtype in FP8_VALUE_DTYPES
    K = w_dgrad.shape[0] if fp8 else w_dgrad.shape[1]
    dtype = torch.bfloat16 if fp8 else grad.dtype
    dwt = grad.new_zeros((K, N), dtype=dtype) if wgrad else grad.new_empty((0,), dtype=dtype)
    return grad.new_empty((0, K), dtype=dtype), dwt, grad.new_zeros((N,))


@fast_linear_backward.register_fake
def _fast_linear_backward_fake(grad, x, w_dgrad, rng, scales, amax, layout, pad_to, mvue, first, wgrad):
    T, N = grad.shape
    fp8 = w_dgrad.dtype in FP8_VALUE_DTYPES
    K = w_dgrad.shape[0] if fp8 else w_dgrad.shape[1]
    dtype = torch.bfloat16 if fp8 else grad.dtype
    dwt = grad.new_empty((K, N) if wgrad else (0,), dtype=dtype)
    return grad.new_empty((T, K), dtype=dtype), dwt, grad.new_empty((N,))


def _fast_setup(ctx, inputs, output):
    x, weight, values, meta, w_dgrad, bias, rng, scales, amax, layout, pad_to, mvue, need_wgrad, first, decay = inputs
    y, x_fp8_t, _ = output
    ctx.mark_non_differentiable(x_fp8_t, output[2])
    ctx.has_bias, ctx.layout, ctx.pad_to, ctx.mvue, ctx.first = bias is not None, layout, pad_to, mvue, first
    ctx.decay = decay
    ctx.fp8 = values.dtype in FP8_VALUE_DTYPES
    ctx.x_dtype, ctx.w_dtype = x.dtype, weight.dtype
    saved_x = x_fp8_t if ctx.fp8 else x
    # The amax buffer is written by the next forward before this backward runs (delayed scaling):
    # keep it out of save_for_backward's version check; the backward writes only its grad slots.
    ctx.amax = amax
    ctx.save_for_backward(saved_x, w_dgrad, rng, scales, weight if decay else None)


def _fast_backward(ctx, grad, _g_saved, _g_amax):
    x, w_dgrad, rng, scales, weight = ctx.saved_tensors
    amax = ctx.amax
    wgrad = ctx.needs_input_grad[1]
    if wgrad and ctx.fp8 and x.dim() != 2:  # (the forward saved the 1-D placeholder, not xᵀ)
        raise RuntimeError("SparseLinear: weight gradient through an FP8 forward that ran without grad enabled")
    dx, dwt, db = fast_linear_backward(grad.contiguous(), x, w_dgrad, rng, scales, amax, ctx.layout, ctx.pad_to,
                                       ctx.mvue, ctx.first, wgrad)
    dw = dwt.t().to(ctx.w_dtype) if wgrad else None
    if wgrad and ctx.decay:
        # SR-STE: λ·(1 − mask)·w; the mask (top-2 magnitudes) recomputed from w here (backward only).
        mask = ops.hard_threshold_24(weight.detach().contiguous())[1]
        dw = dw + ctx.decay * weight.detach() * (~mask)
    return (dx.to(ctx.x_dtype), dw, None, None, None, (db.to(grad.dtype) if ctx.has_bias else None),
            None, None, None, None, None, None, None, None, None)


fast_linear.register_autograd(_fast_backward, setup_context=_fast_setup)
