"""The fast path's compressed weight: built once per weight update, cached under a host-visible key.

:class:`WeightCache` takes tensors (the parameter, its ``[out, in]`` view, β, the layer's FP8
state), never the layer itself, and holds only what it built (never in state_dict).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from . import ops
from ._nvtx import nvtx
from .fp8_scaling import Fp8State
from .ops import E4M3


class CompressedWeight(NamedTuple):
    """The per-weight-update operands of the fast path."""

    values: torch.Tensor      # ŵ in CUTLASS's compressed 2:4 form [N, K/2] (bf16/fp16, or E4M3·s_w)
    meta: torch.Tensor        # its metadata in `layout`
    w_dgrad: torch.Tensor     # the dense operand of dx = g·ŵ: ŵ [N, K] (16-bit) or ŵ_qᵀ [K, N] (E4M3)
    scale_w: torch.Tensor | None  # the FP8 scale the values were cast with (0-d float32), None in 16 bits
    storage: object           # the weight's storage, held so its address is not reused while it is the key


# Optimizer steps taken by any torch.optim optimizer in this process (a global post-step hook,
# registered by the first WeightCache). Part of the key: FSDP2 re-gathers the updated weight into
# its unsharded Parameter through a base tensor whose version counter that Parameter does not
# share, so `weight._version` alone would miss the update.
_OPTIMIZER_STEPS = [0]
_STEP_HOOK = []


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    _OPTIMIZER_STEPS[0] += 1


def _register_step_hook() -> None:
    if not _STEP_HOOK:
        _STEP_HOOK.append(register_optimizer_step_post_hook(_count_optimizer_step))


def compress(w_oi: torch.Tensor, beta: torch.Tensor, recipe: str, dtype: torch.dtype, layout: str,
             fp8: Fp8State | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(values, meta, w_dgrad, scale_w) of the recipe's ŵ for the weight w_oi [out, in], in one pass
    (prune_and_compress_dense writes the dense ŵ of the input-gradient GEMM beside the values)."""
    with torch.no_grad(), nvtx("prune_and_compress"):
        w = w_oi.detach().contiguous()
        hard = recipe != "s-ste"  # STE / SR-STE: the top-2 magnitudes, unscaled
        scale = torch.ones((), dtype=torch.float32, device=w.device) if hard else beta
        scale_w = fp8.weight_scale(w, None if hard else beta) if fp8 is not None else None
        values, meta, dense = ops.prune_and_compress_dense(w, scale * scale_w if fp8 is not None else scale, layout,
                                                           E4M3 if fp8 is not None else dtype, hard=hard)
        # FP8: torch._scaled_mm takes ŵ_q column-major, so its transpose is materialized.
        w_dgrad = dense.t().contiguous() if fp8 is not None else dense
    return values, meta, w_dgrad, scale_w


class WeightCache:
    """The compressed weight of a layer's current parameter, rebuilt when its key changes.

    The key is everything host-visible that changes when the weight or β changes (no device sync):

    - the weight: its tensor, storage address (the entry holds the storage, so an address is
      never reused while it is the key) and version counter (in-place writes through ``weight``
      itself, ``copy_``, ``load_state_dict``);
    - under FSDP2, the sharded DTensor parameter and its version (FSDP2 gathers the unsharded
      weight through a tensor whose version counter it does not share), and every optimizer
      step in the process;
    - β: its tensor and version (``reset_scale``, a loaded or assigned ``scale``);
    - :meth:`invalidate` calls, and the recipe and operand types.

    Under torch.compile the weight is recompressed in the graph at every call (dynamo cannot
    branch on ``_version``) and nothing is cached.
    """

    def __init__(self) -> None:
        self.entry: CompressedWeight | None = None
        self._key: tuple | None = None
        self._generation = 0  # bumped by invalidate(): part of the key
        _register_step_hook()

    def key(self, weight: torch.Tensor, sharded: torch.Tensor | None, beta: torch.Tensor, recipe: str,
            dtype: torch.dtype, layout: str, fp8: bool) -> tuple:
        sharded_key = (id(sharded), sharded._version) if sharded is not None else None
        return (id(weight), weight.data_ptr(), weight._version, sharded_key, _OPTIMIZER_STEPS[0], id(beta),
                beta._version, self._generation, recipe, dtype, layout, fp8)

    def get(self, weight: torch.Tensor, w_oi: torch.Tensor, sharded: torch.Tensor | None, beta: torch.Tensor,
            recipe: str, dtype: torch.dtype, layout: str, fp8: Fp8State | None) -> CompressedWeight:
        """The compressed form of `weight` (the parameter; `w_oi` its [out, in] view, `sharded`
        FSDP2's sharded parameter or None), from the cache when its key is unchanged."""
        compiling = torch.compiler.is_compiling()
        key = None if compiling else self.key(weight, sharded, beta, recipe, dtype, layout, fp8 is not None)
        if not compiling and self.entry is not None and key == self._key:
            return self.entry
        entry = CompressedWeight(*compress(w_oi, beta, recipe, dtype, layout, fp8), weight.untyped_storage())
        if not compiling:
            self.entry, self._key = entry, key
        return entry

    def clear(self) -> None:
        """Forget the entry (the next get rebuilds it)."""
        self.entry = self._key = None

    def invalidate(self) -> None:
        """Rebuild at the next get even if the key looks unchanged (a write through ``.data``)."""
        self._generation += 1
        self.clear()

    def __getstate__(self):
        # A copy (deepcopy, pickle) starts empty: the entry is derived data holding a storage.
        return {**self.__dict__, "entry": None, "_key": None}
