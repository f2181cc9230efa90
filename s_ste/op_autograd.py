"""Autograd formulas of the extension's differentiable ops (torch.ops.s_ste.*).

The C++ kernels sit below autograd; without these registrations torch would return None
gradients with a warning. Registered with torch.library.register_autograd when s_ste.ops is
imported:

- ``soft_threshold_24`` / ``hard_threshold_24``: straight-through, dL/dw = dL/dpruned (the
  estimator S-STE and STE train with; the mask is not differentiable).
- ``sparse_linear`` with 16-bit values, y = x·Ŵᵀ + b, Ŵ = decompress(values, meta):
  dx = g·Ŵ, db = g summed over tokens, dvalues = (gᵀx) at the kept positions in compressed
  order (row-major, increasing column inside each row: the order of ``values``); meta is
  not differentiable.
- ``sparse_linear`` with FP8 values: only ``bias`` is differentiable; a gradient for x,
  values or alpha raises (SparseLinear(fp8=True) computes its FP8 gradients itself).
"""
from __future__ import annotations

import torch

_ops = torch.ops.s_ste
_FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def _decompress(values: torch.Tensor, meta: torch.Tensor, layout: str) -> torch.Tensor:
    # The metadata was checked (or trusted) by the forward: no second check, no host sync.
    return _ops.decompress(values, meta, layout, False)


# ---- the thresholds: straight-through ----


def _threshold_setup(ctx, inputs, output):
    pass


def _threshold_backward(ctx, grad_pruned, _grad_mask):
    return grad_pruned


for _name in ("soft_threshold_24", "hard_threshold_24"):
    torch.library.register_autograd(f"s_ste::{_name}", _threshold_backward, setup_context=_threshold_setup)


# ---- sparse_linear: the GEMM's gradients ----


_SPARSE_LINEAR_DEFAULTS = (None, "sm80", None)  # bias, layout, alpha: the schema's defaults


def _sparse_linear_setup(ctx, inputs, output):
    # inputs holds the arguments as called: the defaulted trailing ones may be missing.
    x, values, meta, bias, layout, alpha = (*inputs, *_SPARSE_LINEAR_DEFAULTS[len(inputs) - 3:])
    ctx.n_inputs = len(inputs)
    ctx.layout = layout
    ctx.fp8 = values.dtype in _FP8
    ctx.values_dtype = values.dtype
    ctx.save_for_backward(x, values, meta)


def _sparse_linear_backward(ctx, grad):
    x, values, meta = ctx.saved_tensors
    need_x, need_values, _, need_bias, _, need_alpha = (*ctx.needs_input_grad, False, False, False)[:6]
    if ctx.fp8 and (need_x or need_values or need_alpha):
        wrt = [n for n, need in (("x", need_x), ("values", need_values), ("alpha", need_alpha)) if need]
        raise RuntimeError(
            f"sparse_linear: no gradient with respect to {', '.join(wrt)} for FP8 values ({ctx.values_dtype}); "
            "only bias is differentiable there (SparseLinear(fp8=True) computes the FP8 gradients itself)")
    N = values.shape[0]
    g = grad.reshape(-1, N)
    dx = dvalues = dbias = None
    if need_bias:
        dbias = g.sum(0, dtype=torch.float32).to(grad.dtype)
    if need_x or need_values:
        w = _decompress(values, meta, ctx.layout)
        if need_x:
            dx = (g @ w).reshape(x.shape)
        if need_values:
            # The kept positions of each group, exactly two, in the order values stores them.
            kept = _decompress(torch.ones_like(values), meta, ctx.layout) != 0
            dw = g.t() @ x.reshape(-1, x.shape[-1])
            dvalues = dw.masked_select(kept).view(values.shape)
    return (dx, dvalues, None, dbias, None, None)[:ctx.n_inputs]


torch.library.register_autograd("s_ste::sparse_linear", _sparse_linear_backward, setup_context=_sparse_linear_setup)
