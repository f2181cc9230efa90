"""`SparseLinear`: an nn.Linear whose weight is 2:4 sparse in every forward (S-STE and friends).

The layer holds the parameters, buffers and state hooks and picks a path per forward. Elsewhere:
its options and argument checks (s_ste.options), the paths (s_ste.semantic, s_ste.fast), the
compressed-weight cache (s_ste.weight_cache) and the FP8 delayed scaling (s_ste.fp8_scaling.Fp8State).
"""
from __future__ import annotations

import sys
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from . import fast, fp8_scaling, semantic
from .options import DEFAULTS, check_args, check_dtype, check_input
from .weight_cache import WeightCache


def _recomputing() -> bool:
    """Whether this forward runs inside a backward pass (activation checkpointing's recompute)."""
    return not torch.compiler.is_compiling() and torch._C._current_graph_task_id() != -1


class SparseLinear(nn.Linear):
    """A linear layer trained with a 2:4 sparse weight.

    The dense ``weight`` is the parameter (what the optimizer, DDP and FSDP see); every
    forward recomputes the sparse weight ŵ from it according to ``recipe``:

    - ``"dense"``: ŵ = w (for ablations; with ``mvue``/``fp8`` it isolates their effect).
    - ``"ste"``: ŵ = top-2-of-4 magnitude mask · w, straight-through gradient.
    - ``"sr-ste"``: as ``"ste"``, plus SR-STE's decay ``decay·(1 − mask)·w`` on the gradient.
    - ``"s-ste"``: ŵ = β · soft_threshold(w) with a fixed per-tensor β, straight-through.

    ``mvue=True`` sparsifies the output gradient 2:4 along the tokens (unbiased MVUE) for
    the weight-gradient product; ``fp8=True`` rounds the GEMM operands through FP8
    (E4M3 forward, E5M2 gradient). β is computed at the first forward (or by
    :meth:`reset_scale`), saved in ``state_dict`` as float32 whatever the layer's dtype, and
    kept fixed thereafter.

    Two execution paths with the same recipe semantics:

    - the *semantic* path (``fast=False``; the default on the CPU; :mod:`s_ste.semantic`): dense
      ŵ, dense GEMMs, FP8 simulated with current per-tensor scales (the tests' reference);
    - the *fast* path (``fast=True``; ``fast=None`` picks it for CUDA inputs; :mod:`s_ste.fast`):
      ŵ compressed once per weight update (cached until the weight or β changes, see
      :class:`s_ste.weight_cache.WeightCache`; rebuilt every forward under ``torch.compile``), the
      2:4 sparse GEMM forward, the dense input-gradient GEMM, the fused MVUE-transpose-compress
      and the sparse weight-gradient GEMM; with ``fp8=True`` E4M3 x/ŵ and E5M2 gradients with
      delayed scaling from an amax history of ``amax_history_len`` steps (:mod:`s_ste.fp8_scaling`).
      It runs on the CPU too (the ops' CPU kernels), in ``layout`` ``"sm80"`` or ``"sm90"``
      (default: from the GPU's compute capability; ``"sm90"`` on the CPU). A layer whose shape,
      dtype or device the kernels cannot take uses the semantic path, with a one-time warning
      naming it and the rule.

    The cache sees every change made through ``weight``/``scale`` themselves, but not an in-place
    write through ``.data`` (``layer.weight.data.mul_(2)``): call :meth:`invalidate_cache` after one.
    Bad input (README, "Bad input"): a bad shape, seed or dtype, or a state_dict with β ≤ 0 or a bad
    FP8 amax, raises naming it; a NaN/Inf weight or output gradient stays non-finite on every path
    (so ``torch.amp.GradScaler`` skips the step); an empty batch gives zero weight gradients.

    MVUE draws are keyed by (seed + rank·2³², draw count): the count lives in ``mvue_rng`` on
    the CPU (so reading it is no device sync) and advances once per backward that draws (a
    recompute under activation checkpointing draws nothing, eager or compiled); it is written to
    the ``mvue_state`` buffer when the state is saved. Under ``torch.distributed`` each rank
    draws independently.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, recipe: str = DEFAULTS.recipe,
                 mvue: bool = DEFAULTS.mvue, fp8: bool = DEFAULTS.fp8, decay: float = DEFAULTS.decay,
                 seed: int = DEFAULTS.seed, device=None, dtype=None, fast: bool | None = DEFAULTS.fast,
                 layout: str | None = DEFAULTS.layout, amax_history_len: int = DEFAULTS.amax_history_len,
                 name: str | None = None) -> None:
        check_args(in_features, out_features, recipe, layout, seed)
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        check_dtype(name or f"({in_features} -> {out_features})", self.weight.dtype)
        self.recipe, self.mvue, self.fp8, self.decay = recipe, mvue, fp8, decay
        self.fast, self.layout = fast, layout
        self.name = name or f"SparseLinear({in_features} -> {out_features})"
        self.register_buffer("scale", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("scale_ready", torch.zeros((), dtype=torch.bool, device=device))
        # (seed, number of MVUE draws so far), saved; mvue_rng is the live copy on the CPU.
        self.register_buffer("mvue_state", torch.tensor([seed, 0], dtype=torch.int64, device=device))
        self.mvue_rng = torch.tensor([seed, 0], dtype=torch.int64)
        self._fp8 = None
        if fp8:  # delayed scaling state (fp8_scaling.KINDS rows), saved so a resumed run keeps its scales
            history, pending = fp8_scaling.new_state(amax_history_len, device)
            self.register_buffer(fp8_scaling.HISTORY, history)
            self.register_buffer(fp8_scaling.PENDING, pending)
            self._fp8 = fp8_scaling.Fp8State(self._buffers)
        # Python mirror of scale_ready: no data-dependent branch (and no host sync) in forward.
        self._scale_ready = False
        self._rank: int | None = None
        self._warned = False
        self._cache = WeightCache()
        self._sharded_weight = None  # FSDP2's sharded parameter (see __setattr__)
        self.register_load_state_dict_post_hook(_sync_scale_flag)
        self.register_state_dict_pre_hook(_save_mvue_state)

    @torch.no_grad()
    def reset_scale(self) -> None:
        """(Re)compute β from the current weight and freeze it."""
        self.scale.copy_(semantic.scale_of(self._weight_oi()))
        self.scale_ready.fill_(True)
        self._scale_ready = True
        self.invalidate_cache()  # (β's version moved too; say it outright)

    def _weight_oi(self) -> torch.Tensor:
        """The weight as [out_features, in_features], 2:4 groups along its rows (SparseConv1D stores it [in, out])."""
        return self.weight

    def sparse_weight(self) -> torch.Tensor:
        """ŵ [out, in], differentiable with respect to ``weight`` through the recipe's straight-through rule."""
        if self.recipe == "dense":
            return self._weight_oi()
        return semantic.sparse_weight(self._weight_oi(), self.scale, self.recipe, float(self.decay))[0]

    def invalidate_cache(self) -> None:
        """Rebuild the fast path's compressed weight at the next forward: needed only after an
        in-place write through ``weight.data`` or ``scale.data`` (``.data`` has a version counter of
        its own, so nothing short of reading the weight sees it); every other change is detected."""
        self._cache.invalidate()

    def _apply(self, fn, recurse=True):
        # β and the FP8 amaxes are float32 (the ops take them so): keep them so through .half(),
        # .bfloat16() and .to(dtype), which convert every floating-point buffer.
        names = [n for n in ("scale", fp8_scaling.HISTORY, fp8_scaling.PENDING) if n in self._buffers]
        kept = {n: self._buffers[n] for n in names}
        super()._apply(fn, recurse)
        for n in names:
            if self._buffers[n].dtype != torch.float32:  # undo the cast, keep the move
                self._buffers[n] = kept[n].to(self._buffers[n].device)
        self._cache.clear()
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A checkpoint that would train wrong is refused, naming the key (loading may sync).
        errors = _check_loaded_state(self, state_dict, prefix)
        if errors:
            error_msgs.extend(f"SparseLinear {self.name}: {e}" for e in errors)
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        return {**state, "_sharded_weight": None}

    def __setattr__(self, name, value):
        dtensor = sys.modules.get("torch.distributed.tensor")  # (not loaded: no DTensor exists)
        if name == "weight" and dtensor is not None and isinstance(value, dtensor.DTensor):
            # FSDP2 swaps its sharded DTensor parameter in between forwards and an unsharded one
            # (gathered through a tensor whose version it does not share) in for the forward:
            # the sharded one's version is what moves when the weight is updated in place.
            self.__dict__["_sharded_weight"] = value
        super().__setattr__(name, value)

    def _fast_forward(self, x: torch.Tensor, dtype: torch.dtype, layout: str) -> torch.Tensor:
        cw = self._cache.get(self.weight, self._weight_oi(), self._sharded_weight, self.scale, self.recipe, dtype,
                             layout, self._fp8)
        need_wgrad = torch.is_grad_enabled() and self.weight.requires_grad
        backward = torch.is_grad_enabled() and (need_wgrad or x.requires_grad)  # a backward will follow
        step = self._fp8.begin_forward(x, cw.scale_w, _recomputing(), backward) if self.fp8 else None
        y, amax_x = fast.linear(x, self._weight_oi(), cw, self.bias, self.mvue_rng, step, dtype=dtype, layout=layout,
                                mvue=self.mvue and self.training, need_wgrad=need_wgrad,
                                decay=float(self.decay) if self.recipe == "sr-ste" else 0.0, rank=self._mvue_rank())
        if step is not None:
            self._fp8.end_forward(step, amax_x)
        return y

    def _mvue_rank(self) -> int:
        """This process's rank, which offsets the MVUE seed (read once; each rank draws its own sample)."""
        if self._rank is not None:
            return self._rank
        dist = torch.distributed
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not torch.compiler.is_compiling():  # (a compiled forward may not set attributes under checkpoint)
            self._rank = rank
        return rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device_type = x.device.type
        autocast = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type) if autocast else x.dtype
        check_dtype(self.name, self.weight.dtype)  # (a layer converted with .double())
        check_input(self.name, self.in_features, x, dtype)
        # β is computed at the first forward, training or not (so eval before training and
        # to_inference agree), and then stays fixed.
        if self.recipe == "s-ste" and not self._scale_ready:
            self.reset_scale()
        # Auto mode leaves a "dense"-recipe layer (an ablation, no 2:4 weight) on the semantic path quietly.
        if self.fast or (self.fast is None and x.is_cuda and self.recipe != "dense"):
            layout, why = fast.eligible(self.recipe, self.fp8, self.layout, x, self.weight, dtype, self.out_features,
                                        self.in_features)
            if layout is not None:
                return self._fast_forward(x, dtype, layout)
            if not self._warned:
                warnings.warn(f"SparseLinear {self.name}: fast path unavailable ({why}); using the semantic path "
                              "(dense GEMMs on ŵ)", stacklevel=2)
                self._warned = True
        w_hat, bias = self.sparse_weight(), self.bias
        if self.recipe == "dense" and not (self.mvue or self.fp8):
            return F.linear(x, w_hat, bias)
        if autocast:
            x, w_hat = x.to(dtype), w_hat.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        return semantic.sparse_linear_train(x, w_hat, bias, self.mvue_rng, self.mvue and self.training, self.fp8,
                                            self._mvue_rank())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, recipe={self.recipe!r}, mvue={self.mvue}, fp8={self.fp8}"


def _sync_scale_flag(module: SparseLinear, incompatible_keys) -> None:
    # Loading is allowed to sync: refresh every Python mirror of the loaded device state.
    module._scale_ready = bool(module.scale_ready)
    module.mvue_rng = module.mvue_state.detach().cpu().clone()
    if module._fp8 is not None:
        module._fp8.after_load()
    module.invalidate_cache()


def _check_loaded_state(module: SparseLinear, state_dict, prefix: str) -> list[str]:
    """Why a state_dict must not be loaded into `module` (β ≤ 0 or not finite while marked ready,
    a bad FP8 amax), one message per key; [] when it is fine."""
    errors = []
    scale, ready = state_dict.get(prefix + "scale"), state_dict.get(prefix + "scale_ready")
    if ready is None:
        ready = module.scale_ready
    if isinstance(scale, torch.Tensor) and not scale.is_meta and scale.numel() == 1 and not ready.is_meta:
        beta = scale.detach().float().reshape(())
        if bool(ready) and not (torch.isfinite(beta) and beta > 0):
            errors.append(f"{prefix}scale: β = {beta.item()} with scale_ready set; β is finite and > 0 "
                          "(a diverged checkpoint?)")
    if module._fp8 is not None:
        errors += module._fp8.check_loaded(state_dict, prefix)
    return errors


def _save_mvue_state(module: SparseLinear, prefix: str, keep_vars: bool) -> None:
    with torch.no_grad():
        module.mvue_state.copy_(module.mvue_rng)
