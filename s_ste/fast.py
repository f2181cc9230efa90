"""The fast path of ``SparseLinear``: which layers take it, and its custom op.

- :func:`eligible`: whether a layer's shape, dtype and device fit the 2:4 kernels of a layout
  (the layout rules of the extension, ``ops.LAYOUT_RULES``, plus torch._scaled_mm's multiples
  of 16 for the FP8 input gradient), and if not, why.
- ``s_ste::fast_linear(x, w, values, meta, w_dgrad, ...)`` -> y from the compressed weight
  (sparse GEMM; FP8: quantize_fp8_scaled then the E4M3 sparse GEMM), whose backward
  (``s_ste::fast_linear_backward``) computes dx with a dense GEMM and dW (in the parameter's
  layout) with mvue_24_t_compress and the sparse GEMM; FP8 scales come in by slot (fp8_scaling.X, W, GRAD,
  GRAD_MVUE; delayed scaling) and the measured amaxes go back out, no host sync.
- :func:`linear`: the typed call of that op (a CompressedWeight, an Fp8Step or None).

The layer builds the compressed weight once per weight update (s_ste.weight_cache) and passes
it in; x is 2-D [T, K] inside the op; tokens are zero-padded to the layout's
``wgrad_token_pad`` for the weight-gradient GEMM, whose reduction dim (and 2:4 dim) they are.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from . import ops, semantic
from ._nvtx import nvtx
from .fp8_scaling import GRAD, GRAD_MVUE, X, W, Fp8Step, clean, first_grad_scales, nan_unless_finite
from .ops import E4M3, E5M2, FP8_DTYPES, HALF_DTYPES, LAYOUT_RULES
from .weight_cache import CompressedWeight

# torch._scaled_mm (the FP8 input-gradient GEMM, dense) needs every dimension a multiple of 16.
SCALED_MM_ALIGN = 16


def auto_layout(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "sm90"  # both layouts have CPU kernels; sm90 also takes FP8 values
    major = torch.cuda.get_device_capability(device)[0]
    return "sm90" if major == 9 else ("sm80" if major >= 8 else None)


def shape_rule(layout: str, fp8: bool) -> tuple[int, int]:
    """(multiple of in_features, multiple of out_features) every GEMM of the fast path takes.

    in_features is the compressed weight's K and the weight-gradient GEMM's tokens; out_features
    the rows of the compressed weight and of the compressed MVUE(gᵀ), the GEMMs' M.
    """
    rules, bits = LAYOUT_RULES[layout], 8 if fp8 else 16
    k = math.lcm(rules["k_align"][bits], rules["gemm_k_align"][bits], rules["gemm_token_align"])
    n = math.lcm(rules["row_align"], rules["gemm_row_align"])
    if fp8:
        k, n = math.lcm(k, SCALED_MM_ALIGN), math.lcm(n, SCALED_MM_ALIGN)
    return k, n


def eligible(recipe: str, fp8: bool, layout: str | None, x: torch.Tensor, weight: torch.Tensor,
             dtype: torch.dtype, out_features: int, in_features: int) -> tuple[str | None, str]:
    """(layout, "") when the fast path can run this forward, else (None, why not)."""
    if recipe == "dense":
        return None, "the 'dense' recipe has no 2:4 weight"
    if x.device != weight.device:
        return None, f"input on {x.device}, weight on {weight.device}"
    layout = layout or auto_layout(x.device)
    if layout is None:
        return None, "no 2:4 sparse tensor cores before sm_80"
    if fp8 and 8 not in LAYOUT_RULES[layout]["k_align"]:
        return None, "FP8 needs the sm90 layout (Hopper)"
    if not fp8 and dtype not in HALF_DTYPES:
        return None, f"compute dtype {dtype} (2:4 GEMMs take bf16/fp16: use autocast or a 16-bit layer)"
    k, n = shape_rule(layout, fp8)
    if in_features % k or out_features % n:
        needs = [f"in_features % {k} == 0"] + ([f"out_features % {n} == 0"] if n > 1 else [])
        got = f"{in_features}, {out_features}" if n > 1 else f"{in_features}"
        return None, f"{'FP8' if fp8 else layout} needs {' and '.join(needs)}, got {got}"
    return layout, ""


def _fp8_mm(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor) -> torch.Tensor:
    """bf16(scale_a·scale_b·(a·b)) for FP8 a [M, K] row-major and b [K, N] column-major (torch._scaled_mm)."""
    return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    return F.pad(t, (0, 0, 0, rows - t.shape[0])) if rows != t.shape[0] else t


def _padded(T: int, layout: str) -> int:
    """T rounded up to the weight-gradient GEMM's token multiple."""
    pad_to = LAYOUT_RULES[layout]["wgrad_token_pad"]
    return -(-T // pad_to) * pad_to


@torch.library.custom_op("s_ste::fast_linear", mutates_args=())
def fast_linear(
    x: torch.Tensor, weight: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, w_dgrad: torch.Tensor,
    bias: Optional[torch.Tensor], rng: torch.Tensor, scales: Optional[torch.Tensor], amax: Optional[torch.Tensor],
    layout: str, mvue: bool, need_wgrad: bool, first: bool, decay: float, rank: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, saved operand of the weight gradient, amax of x) for y = x ŵᵀ + b.

    16-bit: y = sparse_linear(x, values, meta, bias); the saved operand is empty (x itself is saved).
    FP8 (values in float8_e4m3fn): x is cast to E4M3 with scales[X] (and transposed, padded, for
    the weight gradient: the saved operand), y = bf16(x_q·ŵ_qᵀ/(s_x·s_w) + b); amax = max|x|.
    `weight`, `w_dgrad`, `rng`, `amax`, `mvue`, `first`, `decay`, `rank` are for the backward.
    """
    _fast_linear_devices(x, weight, values, meta, w_dgrad, bias, scales, amax)
    T = x.shape[0]
    if T == 0:  # an empty batch: no GEMM, no amax (−1: none this step)
        return _empty_forward(x, values, need_wgrad)
    if values.dtype not in FP8_DTYPES:
        with nvtx("fwd_gemm"):
            y = ops.sparse_linear(x, values, meta, bias, layout)
        return y, x.new_empty((0,)), x.new_zeros((), dtype=torch.float32)
    s_x, s_w = scales[X], scales[W]
    # Padded tokens (zeros) keep every FP8 GEMM dim a multiple of 16; their outputs are dropped.
    with nvtx("quantize_x"):
        q, q_t, amax_x = ops.quantize_fp8_scaled(_pad_rows(x, _padded(T, layout)), s_x.reshape(1), E4M3,
                                                 transpose=need_wgrad)
    alpha = nan_unless_finite((s_x * s_w).reciprocal(), amax_x)  # (±Inf in x saturated: keep it non-finite)
    b = bias.to(torch.bfloat16) if bias is not None else None
    with nvtx("fwd_gemm"):
        y = ops.sparse_linear(q, values, meta, b, layout, alpha)[:T]
    return y, q_t, amax_x


def _fast_linear_devices(x, weight, values, meta, w_dgrad, bias, scales, amax):
    ops.check_same_device("fast_linear", x=x, weight=weight, values=values, meta=meta, w_dgrad=w_dgrad, bias=bias,
                          scales=scales, amax=amax)  # rng lives on the CPU


def _empty_forward(x, values, need_wgrad):
    N, K = values.shape[0], x.shape[1]
    none = x.new_full((), -1.0, dtype=torch.float32)
    if values.dtype not in FP8_DTYPES:
        return x.new_empty((0, N)), x.new_empty((0,)), none
    saved = x.new_empty((K, 0) if need_wgrad else (0,), dtype=E4M3)
    return x.new_empty((0, N), dtype=torch.bfloat16), saved, none


@fast_linear.register_fake
def _fast_linear_fake(x, weight, values, meta, w_dgrad, bias, rng, scales, amax, layout, mvue, need_wgrad, first,
                      decay, rank=0):
    _fast_linear_devices(x, weight, values, meta, w_dgrad, bias, scales, amax)
    T, K = x.shape
    N = values.shape[0]
    if values.dtype not in FP8_DTYPES:
        return x.new_empty((T, N)), x.new_empty((0,)), x.new_empty((), dtype=torch.float32)
    saved = x.new_empty((K, _padded(T, layout)) if need_wgrad else (0,), dtype=E4M3)
    return x.new_empty((T, N), dtype=torch.bfloat16), saved, x.new_empty((), dtype=torch.float32)


@torch.library.custom_op("s_ste::fast_linear_backward", mutates_args=("amax", "rng"))
def fast_linear_backward(
    grad: torch.Tensor, x: torch.Tensor, w_dgrad: torch.Tensor, rng: torch.Tensor, scales: Optional[torch.Tensor],
    amax: Optional[torch.Tensor], layout: str, mvue: bool, first: bool, wgrad: bool, rank: int = 0,
    weight_t: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx [T, K], dW [N, K], db [N]) for y = x ŵᵀ + b, g = grad [T, N] (wgrad=False: dW empty).

    dx = g·ŵ, a dense GEMM (w_dgrad: ŵ [N, K] in 16 bits, or ŵ_qᵀ [K, N] in E4M3);
    dW = MVUE(gᵀ)·x through mvue_24_t_compress and the sparse GEMM (mvue=False: dense gᵀ·x), in
    the parameter's layout: contiguous, or for a parameter stored [K, N] (weight_t: HF's Conv1D)
    the [N, K] view of a contiguous dWᵀ, so that AccumulateGrad copies nothing.
    16-bit: x is the layer input [T, K]. FP8: x is the saved E4M3 xᵀ [K, T_pad]; g is cast to E5M2
    with scales[GRAD] (first step: its current amax), MVUE(gᵀ) with scales[GRAD_MVUE] (first
    step: 4·max|g|), and their amaxes are written to amax[GRAD], amax[GRAD_MVUE] (the history's).
    mvue: the draw is keyed by the counter rng (seed, count) and `rank` (take_mvue_draw), which it advances.
    """
    T, N = grad.shape
    seed, offset = semantic.take_mvue_draw(rng, rank) if mvue else (0, 0)
    if T == 0:  # an empty batch: zero weight and bias gradients, no amax
        return _empty_backward(grad, w_dgrad, wgrad, weight_t)
    Tp = _padded(T, layout)
    if w_dgrad.dtype not in FP8_DTYPES:
        with nvtx("dgrad_gemm"):
            dx = grad @ w_dgrad
        if not wgrad:
            dw = grad.new_empty((0,))
        elif mvue:
            with nvtx("mvue_t_compress"):
                values, meta, _ = ops.mvue_24_t_compress(_pad_rows(grad, Tp), seed, offset, layout)
            with nvtx("transpose_x"):
                x_t = _pad_rows(x, Tp).t().contiguous()
            with nvtx("wgrad_gemm"):
                dw = _in_layout(ops.sparse_linear(x_t, values, meta, None, layout, out_transposed=not weight_t),
                                weight_t)
        else:
            with nvtx("wgrad_gemm_dense"):
                dw = _from_transposed(x.t() @ grad, weight_t)
        return dx, dw, grad.sum(0)
    gp = _pad_rows(grad, Tp)
    s_x, s_w, s_g, s_h = scales[X], scales[W], scales[GRAD], scales[GRAD_MVUE]
    if first:  # no history yet: the current amax (one extra reduction, first step only)
        s_g, s_h = first_grad_scales(grad)
    with nvtx("quantize_g"):
        g_q, g_qt, amax_g = ops.quantize_fp8_scaled(gp, s_g.reshape(1), E5M2, transpose=wgrad and not mvue)
    # The saturating cast maps ±Inf to ±max: an overflowed gradient (a loss-scaler step) must
    # give non-finite gradients (so the scaler skips the step), so its dequant factor turns NaN.
    inv_g = nan_unless_finite(s_g.reciprocal(), amax_g)
    with nvtx("dgrad_gemm"):
        dx = _fp8_mm(g_q, w_dgrad.t(), inv_g, s_w.reciprocal())[:T]
    if not wgrad:
        dw = grad.new_empty((0,), dtype=torch.bfloat16)
        amax_h = torch.full_like(amax_g, -1.0)
    elif mvue:
        with nvtx("mvue_t_compress"):
            values, meta, amax_h = ops.mvue_24_t_compress(gp, seed, offset, layout, E5M2, s_h.reshape(1))
        alpha = nan_unless_finite((s_x * s_h).reciprocal(), amax_g)
        with nvtx("wgrad_gemm"):
            dw = _in_layout(ops.sparse_linear(x, values, meta, None, layout, alpha, out_transposed=not weight_t),
                            weight_t)
    else:
        with nvtx("wgrad_gemm_dense"):
            dw = _from_transposed(_fp8_mm(x, g_qt.t(), s_x.reciprocal(), inv_g), weight_t)
        amax_h = torch.full_like(amax_g, -1.0)  # no MVUE output this step
    # An overflowed gradient (a loss-scaler step) stays Inf/NaN in dx and dW, so the scaler skips
    # the step; its amax is kept out of the saved state (recorded as 0, as fold would).
    amax[GRAD:GRAD_MVUE + 1].copy_(clean(torch.stack([amax_g, amax_h])))
    return dx, dw, grad.sum(0, dtype=torch.float32).to(grad.dtype)


def _in_layout(gemm_out: torch.Tensor, weight_t: bool) -> torch.Tensor:
    """dW [N, K] from the weight-gradient GEMM's output: dW itself (out_transposed), or dWᵀ viewed."""
    return gemm_out.t() if weight_t else gemm_out


def _from_transposed(dwt: torch.Tensor, weight_t: bool) -> torch.Tensor:
    """dW [N, K] in the parameter's layout from a contiguous dWᵀ (the dense weight-gradient GEMMs)."""
    return dwt.t() if weight_t else dwt.t().contiguous()


def _backward_shapes(grad, w_dgrad):
    """(K, dtype of dx and dW) of a backward."""
    fp8 = w_dgrad.dtype in FP8_DTYPES
    return (w_dgrad.shape[0] if fp8 else w_dgrad.shape[1]), (torch.bfloat16 if fp8 else grad.dtype)


def _weight_grad_like(grad, K, N, dtype, weight_t, zeros=False):
    """A [N, K] dW in the parameter's layout (see fast_linear_backward)."""
    make = grad.new_zeros if zeros else grad.new_empty
    return make((K, N), dtype=dtype).t() if weight_t else make((N, K), dtype=dtype)


def _empty_backward(grad, w_dgrad, wgrad, weight_t):
    N = grad.shape[1]
    K, dtype = _backward_shapes(grad, w_dgrad)
    dw = _weight_grad_like(grad, K, N, dtype, weight_t, zeros=True) if wgrad else grad.new_empty((0,), dtype=dtype)
    return grad.new_empty((0, K), dtype=dtype), dw, grad.new_zeros((N,))


@fast_linear_backward.register_fake
def _fast_linear_backward_fake(grad, x, w_dgrad, rng, scales, amax, layout, mvue, first, wgrad, rank=0,
                               weight_t=False):
    T, N = grad.shape
    K, dtype = _backward_shapes(grad, w_dgrad)
    dw = _weight_grad_like(grad, K, N, dtype, weight_t) if wgrad else grad.new_empty((0,), dtype=dtype)
    return grad.new_empty((T, K), dtype=dtype), dw, grad.new_empty((N,))


def _fast_setup(ctx, inputs, output):
    x, weight, values, meta, w_dgrad, bias, rng, scales, amax, layout, mvue, need_wgrad, first, decay, *rank = inputs
    y, x_fp8_t, _ = output
    ctx.mark_non_differentiable(x_fp8_t, output[2])
    ctx.has_bias, ctx.layout, ctx.mvue, ctx.first = bias is not None, layout, mvue, first
    ctx.decay, ctx.rank = decay, (rank or [0])[0]
    ctx.fp8 = values.dtype in FP8_DTYPES
    ctx.x_dtype, ctx.w_dtype = x.dtype, weight.dtype
    ctx.weight_t = not weight.is_contiguous()  # (SparseConv1D's [out, in] view of its [in, out] parameter)
    saved_x = x_fp8_t if ctx.fp8 else x
    # The amax buffer is written by the next forward before this backward runs (delayed scaling),
    # and the MVUE counter by the backward: both held, not saved (no version check).
    ctx.amax, ctx.rng = amax, rng
    ctx.save_for_backward(saved_x, w_dgrad, scales, weight if decay else None)


def _fast_backward(ctx, grad, _g_saved, _g_amax):
    x, w_dgrad, scales, weight = ctx.saved_tensors
    wgrad = ctx.needs_input_grad[1]
    if wgrad and ctx.fp8 and x.dim() != 2:  # (the forward saved the 1-D placeholder, not xᵀ)
        raise RuntimeError("SparseLinear: weight gradient through an FP8 forward that ran without grad enabled")
    dx, dw, db = fast_linear_backward(grad.contiguous(), x, w_dgrad, ctx.rng, scales, ctx.amax, ctx.layout,
                                      ctx.mvue, ctx.first, wgrad, ctx.rank, ctx.weight_t)
    if wgrad:
        # SR-STE's mask (top-2 magnitudes) is recomputed from w here (backward only).
        mask = ops.hard_threshold_24(weight.detach().contiguous())[1] if ctx.decay else None
        dw = semantic.weight_grad(dw.to(ctx.w_dtype), weight.detach() if ctx.decay else None, mask, ctx.decay)
    else:
        dw = None
    return (dx.to(ctx.x_dtype), dw, None, None, None, (db.to(grad.dtype) if ctx.has_bias else None),
            None, None, None, None, None, None, None, None, None)


fast_linear.register_autograd(_fast_backward, setup_context=_fast_setup)


def linear(x: torch.Tensor, weight: torch.Tensor, cw: CompressedWeight, bias: torch.Tensor | None, rng: torch.Tensor,
           fp8_step: Fp8Step | None, *, dtype: torch.dtype, layout: str, mvue: bool, need_wgrad: bool,
           decay: float, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(y [..., N] in `dtype`, amax of x) for y = x ŵᵀ + b on the compressed weight `cw` of `weight`.

    `x` [..., K] (cast to `dtype` in 16 bits; FP8 casts it itself), `rng` the layer's MVUE counter
    (advanced by the backward; `rank` offsets the seed), `fp8_step`
    the FP8 forward's scales and amax slots (None: 16 bits), `decay` SR-STE's (0: none).
    """
    lead, K, N = x.shape[:-1], x.shape[-1], cw.values.shape[0]
    x2 = x.reshape(-1, K)
    if fp8_step is None:
        x2 = x2.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    scales, amax, first = (None, None, False) if fp8_step is None else (fp8_step.scales, fp8_step.amax,
                                                                         fp8_step.first_grad)
    y, _, amax_x = fast_linear(x2.contiguous(), weight, cw.values, cw.meta, cw.w_dgrad, bias, rng, scales, amax,
                               layout, mvue, need_wgrad, first, decay, rank)
    if fp8_step is not None:
        y = y.to(dtype)  # the FP8 GEMMs write bf16; the layer returns its compute dtype
    return y.reshape(*lead, N), amax_x
