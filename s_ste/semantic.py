"""The semantic path of ``SparseLinear`` (the reference; the default on the CPU), and the recipe rules both paths share.

Custom ops (so torch.compile traces the layer without graph breaks):

- ``s_ste::sparse_weight(w, scale, recipe, decay)`` -> (ŵ, mask): the 2:4 weight of a recipe,
  with the recipes' weight gradient (:func:`weight_grad`: straight-through, plus SR-STE's decay).
- ``s_ste::sparse_linear_train(x, ŵ, bias, rng, mvue, fp8, rank)`` -> y = x ŵᵀ + b, whose backward
  (``s_ste::sparse_linear_train_backward``) computes dx = g ŵ and dŵ = MVUE(gᵀ) x with dense
  products, drawing the MVUE sample from the layer's counter rng (:func:`take_mvue_draw`); ``fp8=True`` simulates the FP8 rounding of every GEMM operand with current
  per-tensor scales (E4M3 forward, E5M2 gradient).

The math is in the extension's ops (s_ste.ops); this file only wires them together.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from . import ops
from .ops import E4M3, E5M2

RECIPES = ("dense", "ste", "sr-ste", "s-ste")


def take_mvue_draw(counter: torch.Tensor, rank: int) -> tuple[int, int]:
    """The key (seed + rank·2³², count) of a backward's MVUE draw, from the layer's counter
    (seed, count) on the CPU (no device sync), which it advances in place.

    Drawn in the backward, not the forward, so that a recompute (activation checkpointing,
    eager or compiled) never draws again and a compiled step never reads a counter its own
    graph has advanced (torch.compile's partitioner may re-read a mutated input in the backward).
    """
    key = counter.clone()
    if rank:
        key[0] += rank << 32
    counter[1] += 1
    seed, offset = (int(v) for v in key.tolist())
    return seed, offset


def scale_of(w_oi: torch.Tensor) -> torch.Tensor:
    """β of a weight [out_features, in_features] (2:4 groups along its rows), 0-d float32."""
    return ops.scale_factor(w_oi.detach().contiguous())


def weight_grad(grad_w_hat: torch.Tensor, w: torch.Tensor | None, mask: torch.Tensor | None,
                decay: float) -> torch.Tensor:
    """dL/dw of every recipe from dL/dŵ: straight-through (dL/dw = dL/dŵ), plus SR-STE's decay
    λ·(1 − mask)·w that pulls the pruned weights toward zero (decay 0: none; w, mask unused)."""
    if not decay:
        return grad_w_hat
    return grad_w_hat + decay * w * (~mask)


def fake_quantize(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t rounded through FP8 `dtype` with a per-tensor scale, back in t's dtype.

    A non-finite t has no finite scale: the result is all NaN (as a scale computed from a
    NaN/Inf amax makes it), so a diverged weight or an overflowed gradient (a loss-scaler
    step) stays visible; quantize_fp8 itself refuses non-finite input.
    """
    finite = torch.isfinite(t)
    q, scale_inv = ops.quantize_fp8(torch.where(finite, t, 0).contiguous(), dtype)
    return torch.where(finite.all(), q.float() * scale_inv, float("nan")).to(t.dtype)


# ---- the sparse weight of a recipe ----


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
    return weight_grad(grad_w_hat, w, mask, ctx.decay), None, None, None


sparse_weight.register_autograd(_sparse_weight_backward, setup_context=_sparse_weight_setup)


# ---- the linear product with MVUE weight gradients ----


@torch.library.custom_op("s_ste::sparse_linear_train", mutates_args=())
def sparse_linear_train(
    x: torch.Tensor, w_hat: torch.Tensor, bias: Optional[torch.Tensor], rng: torch.Tensor, mvue: bool, fp8: bool,
    rank: int = 0,
) -> torch.Tensor:
    ops.check_same_device("sparse_linear_train", x=x, w_hat=w_hat, bias=bias)  # rng lives on the CPU
    if fp8:
        x, w_hat = fake_quantize(x, E4M3), fake_quantize(w_hat, E4M3)
    return F.linear(x, w_hat, bias)


@sparse_linear_train.register_fake
def _sparse_linear_train_fake(x, w_hat, bias, rng, mvue, fp8, rank=0):
    ops.check_same_device("sparse_linear_train", x=x, w_hat=w_hat, bias=bias)
    return x.new_empty((*x.shape[:-1], w_hat.shape[0]))


@torch.library.custom_op("s_ste::sparse_linear_train_backward", mutates_args=("rng",))
def sparse_linear_train_backward(
    grad: torch.Tensor, x: torch.Tensor, w_hat: torch.Tensor, rng: torch.Tensor, mvue: bool, fp8: bool,
    rank: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dŵ, db) for y = x ŵᵀ + b; mvue: dŵ from an MVUE draw keyed by the counter rng
    (seed, count) and `rank` (take_mvue_draw), which it advances."""
    seed, offset = take_mvue_draw(rng, rank) if mvue else (0, 0)
    K, N = x.shape[-1], w_hat.shape[0]
    g = grad.reshape(-1, N)
    x2 = x.reshape(-1, K)
    if fp8:
        x2, w_hat = fake_quantize(x2, E4M3), fake_quantize(w_hat, E4M3)
    g_in = fake_quantize(g, E5M2) if fp8 else g
    # dx reduces over N, along which ŵ is not 2:4: a dense product.
    dx = (g_in @ w_hat).reshape(x.shape)
    g_t = g.t()
    if mvue and g_t.shape[1]:  # (no tokens: nothing to sample, dŵ = 0)
        # 2:4 groups run along tokens, the reduction dim of dŵ = gᵀ x; pad tokens to 4.
        M = g_t.shape[1]
        pad = (-M) % 4
        g_t = F.pad(g_t, (0, pad)) if pad else g_t
        g_t = ops.mvue_24(g_t.contiguous(), seed, offset)[:, :M]
    if fp8:
        g_t = fake_quantize(g_t, E5M2)
    dw = g_t @ x2
    return dx, dw.to(w_hat.dtype), g.sum(0)


@sparse_linear_train_backward.register_fake
def _sparse_linear_train_backward_fake(grad, x, w_hat, rng, mvue, fp8, rank=0):
    return x.new_empty(x.shape), w_hat.new_empty(w_hat.shape), grad.new_empty((w_hat.shape[0],))


def _linear_setup(ctx, inputs, output):
    x, w_hat, bias, rng, mvue, fp8, *rank = inputs
    ctx.has_bias = bias is not None
    ctx.mvue, ctx.fp8, ctx.rank = mvue, fp8, (rank or [0])[0]
    # The counter is read (and advanced) by the backward: held, not saved (no version check).
    ctx.rng = rng
    ctx.save_for_backward(x, w_hat)


def _linear_backward(ctx, grad):
    x, w_hat = ctx.saved_tensors
    dx, dw, db = sparse_linear_train_backward(grad.contiguous(), x, w_hat, ctx.rng, ctx.mvue, ctx.fp8, ctx.rank)
    return dx, dw, (db.to(grad.dtype) if ctx.has_bias else None), None, None, None, None


sparse_linear_train.register_autograd(_linear_backward, setup_context=_linear_setup)
