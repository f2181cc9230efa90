"""`SparseLinear`: an nn.Linear whose weight is 2:4 sparse in every forward (S-STE and friends)."""
from __future__ import annotations

import sys
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import fp8_scaling, ops
from .autograd import RECIPES, fast_linear, nvtx, sparse_linear_train, sparse_weight
from .fp8_scaling import E4M3, FP8_MAX

_HALF = (torch.bfloat16, torch.float16)


class _Compressed(NamedTuple):
    """The per-weight-update operands of the fast path (never in state_dict)."""

    values: torch.Tensor      # ŵ in CUTLASS's compressed 2:4 form [N, K/2] (bf16/fp16, or E4M3·s_w)
    meta: torch.Tensor        # its metadata in `layout`
    w_dgrad: torch.Tensor     # the dense operand of dx = g·ŵ: ŵ [N, K] (16-bit) or ŵ_qᵀ [K, N] (E4M3)
    scale_w: torch.Tensor | None  # the FP8 scale the values were cast with (0-d float32), None in 16 bits
    storage: object           # the weight's storage, held so its address is not reused while it is the key


# Optimizer steps taken by any torch.optim optimizer in this process (a global post-step hook,
# registered by the first SparseLinear). Part of the weight cache's key: FSDP2 re-gathers the
# updated weight into its unsharded Parameter through a base tensor whose version counter that
# Parameter does not share, so `weight._version` alone would miss the update.
_OPTIMIZER_STEPS = [0]
_STEP_HOOK = []


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    _OPTIMIZER_STEPS[0] += 1


def _register_step_hook() -> None:
    if not _STEP_HOOK:
        from torch.optim.optimizer import register_optimizer_step_post_hook
        _STEP_HOOK.append(register_optimizer_step_post_hook(_count_optimizer_step))


_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _check_seed(seed) -> None:
    # The MVUE key is an int64 (the ops' `int`): say so here, not deep in the first backward.
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"SparseLinear: seed must be an int, got {type(seed).__name__}")
    if not _INT64[0] <= seed <= _INT64[1]:
        raise ValueError(f"SparseLinear: seed must fit in int64 ([-2**63, 2**63 - 1]), got {seed}")


def _check_dtype(name: str, dtype: torch.dtype) -> None:
    if dtype not in _DTYPES:
        raise TypeError(f"SparseLinear {name}: weight dtype {dtype} is unsupported (the 2:4 kernels take "
                        "float32, bfloat16 and float16; use one of them, or autocast)")


def _is_dtensor(t) -> bool:
    dtensor = sys.modules.get("torch.distributed.tensor")  # (not loaded: no DTensor exists)
    return dtensor is not None and isinstance(t, dtensor.DTensor)


def _fast_ops_available() -> bool:
    return hasattr(torch.ops.s_ste, "mvue_24_t_compress") and hasattr(torch.ops.s_ste, "quantize_fp8_scaled")


def _recomputing() -> bool:
    """Whether this forward runs inside a backward pass (activation checkpointing's recompute)."""
    return not torch.compiler.is_compiling() and torch._C._current_graph_task_id() != -1


def _auto_layout(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "sm90"  # both layouts have CPU kernels; sm90 also takes FP8 values
    major = torch.cuda.get_device_capability(device)[0]
    return "sm90" if major == 9 else ("sm80" if major >= 8 else None)


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

    - the *semantic* path (``fast=False``; the default on the CPU): dense ŵ, dense GEMMs,
      FP8 simulated with current per-tensor scales (the tests' reference);
    - the *fast* path (``fast=True``; ``fast=None`` picks it for CUDA inputs): ŵ compressed
      once per weight update (``prune_and_compress``, cached until the weight or β changes, see
      :meth:`_weight_key`; rebuilt every forward under ``torch.compile``), the 2:4 sparse GEMM
      forward, the dense input-gradient GEMM, the fused MVUE-transpose-compress and the sparse
      weight-gradient GEMM; with ``fp8=True`` E4M3 x/ŵ and E5M2 gradients with delayed scaling
      from an amax history of ``amax_history_len`` steps (:mod:`s_ste.fp8_scaling`). It runs on
      the CPU too (the ops' CPU kernels), in ``layout`` ``"sm80"`` or ``"sm90"`` (default: from
      the GPU's compute capability; ``"sm90"`` on the CPU). A layer whose shape, dtype or
      device the kernels cannot take uses the semantic path, with a one-time warning naming it.

    The cache sees every change made through ``weight``/``scale`` themselves (optimizer steps,
    ``copy_``, in-place ops under ``no_grad``, ``weight.data = t``, ``load_state_dict``,
    :meth:`reset_scale`, FSDP2's re-gathers), but not an in-place write through ``.data``
    (``layer.weight.data.mul_(2)``: ``.data`` has a version counter of its own, so nothing
    short of reading the weight would see it): call :meth:`invalidate_cache` after one.

    Bad input: ``in_features``/``out_features`` must be positive (``in_features`` a multiple
    of 4), ``seed`` an int64, the weight float32/bfloat16/float16 (float64 raises, at
    construction or at the forward of a layer converted with ``.double()``). A NaN/Inf weight
    gives a NaN (or Inf) output on every path, never a finite one; an Inf/NaN output gradient
    (a loss-scaler overflow) gives non-finite weight gradients, so ``torch.amp.GradScaler``
    skips the step; an empty batch gives an empty output and zero weight gradients. Loading a
    state_dict with β not finite or ≤ 0 (while ``scale_ready``), or an FP8 amax that is not
    finite or negative (other than the pending "none" marker −1), raises naming the key.

    MVUE draws are keyed by (seed + rank·2³², draw count): the count lives in ``mvue_rng`` on
    the CPU (so reading it is no device sync) and is written to the ``mvue_state`` buffer when
    the state is saved; under ``torch.distributed`` each rank draws independently.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        recipe: str = "s-ste",
        mvue: bool = True,
        fp8: bool = False,
        decay: float = 2e-4,
        seed: int = 0,
        device=None,
        dtype=None,
        fast: bool | None = None,
        layout: str | None = None,
        amax_history_len: int = fp8_scaling.DEFAULT_HISTORY_LEN,
        name: str | None = None,
    ) -> None:
        if recipe not in RECIPES:
            raise ValueError(f"SparseLinear: recipe must be one of {RECIPES}, got {recipe!r}")
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"SparseLinear: {arg} must be a positive int, got {v!r}")
        if in_features % 4:
            raise ValueError(f"SparseLinear: in_features must be a multiple of 4 (2:4 groups), got {in_features}")
        if layout is not None and layout not in ops.LAYOUTS:
            raise ValueError(f"SparseLinear: layout must be one of {ops.LAYOUTS} or None, got {layout!r}")
        _check_seed(seed)
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        _check_dtype(name or f"({in_features} -> {out_features})", self.weight.dtype)
        self.recipe, self.mvue, self.fp8, self.decay = recipe, mvue, fp8, decay
        self.fast, self.layout = fast, layout
        self.name = name or f"SparseLinear({in_features} -> {out_features})"
        self.register_buffer("scale", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("scale_ready", torch.zeros((), dtype=torch.bool, device=device))
        # (seed, number of MVUE draws so far), saved; mvue_rng is the live copy on the CPU.
        self.register_buffer("mvue_state", torch.tensor([seed, 0], dtype=torch.int64, device=device))
        self.mvue_rng = torch.tensor([seed, 0], dtype=torch.int64)
        if fp8:  # delayed scaling state (fp8_scaling.KINDS rows), saved so a resumed run keeps its scales
            history, pending = fp8_scaling.new_state(amax_history_len, device)
            self.register_buffer("fp8_amax_history", history)
            self.register_buffer("fp8_amax_pending", pending)
        # Python mirrors of device state: no data-dependent branch (and no host sync) in forward.
        self._scale_ready = False
        self._fp8_seen_x = self._fp8_seen_grad = False
        self._fp8_replay = (True, False)
        self._rank: int | None = None
        self._warned = False
        self._cache: _Compressed | None = None
        self._cache_key: tuple | None = None
        self._generation = 0  # bumped by invalidate_cache(): part of the cache key
        self.register_load_state_dict_post_hook(_sync_scale_flag)
        self.register_state_dict_pre_hook(_save_mvue_state)
        _register_step_hook()

    @torch.no_grad()
    def reset_scale(self) -> None:
        """(Re)compute β from the current weight and freeze it."""
        self.scale.copy_(ops.scale_factor(self._weight_oi().detach().contiguous()))
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
        return sparse_weight(self._weight_oi(), self.scale, self.recipe, float(self.decay))[0]

    def _apply(self, fn, recurse=True):
        # β and the FP8 amaxes are float32 (the ops take them so): keep them so through .half(),
        # .bfloat16() and .to(dtype), which convert every floating-point buffer.
        names = [n for n in ("scale", "fp8_amax_history", "fp8_amax_pending") if n in self._buffers]
        kept = {n: self._buffers[n] for n in names}
        super()._apply(fn, recurse)
        for n in names:
            if self._buffers[n].dtype != torch.float32:  # undo the cast, keep the move
                self._buffers[n] = kept[n].to(self._buffers[n].device)
        self._cache = self._cache_key = None
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
        return {**state, "_cache": None, "_cache_key": None, "_sharded_weight": None}

    def __setattr__(self, name, value):
        if name == "weight" and _is_dtensor(value):
            # FSDP2 swaps its sharded DTensor parameter in between forwards and an unsharded one
            # (gathered through a tensor whose version it does not share) in for the forward:
            # the sharded one's version is what moves when the weight is updated in place.
            self.__dict__["_sharded_weight"] = value
        super().__setattr__(name, value)

    # ---- the fast path ----

    def _fast_layout(self, x: torch.Tensor, dtype: torch.dtype) -> tuple[str | None, str]:
        """(layout, "") when the fast path can run this forward, else (None, why not)."""
        if self.recipe == "dense":
            return None, "the 'dense' recipe has no 2:4 weight"
        if not _fast_ops_available():
            return None, "the s_ste_cuda extension lacks mvue_24_t_compress/quantize_fp8_scaled (rebuild it)"
        if x.device != self.weight.device:
            return None, f"input on {x.device}, weight on {self.weight.device}"
        layout = self.layout or _auto_layout(x.device)
        if layout is None:
            return None, "no 2:4 sparse tensor cores before sm_80"
        N, K = self.out_features, self.in_features
        if self.fp8:
            if layout != "sm90":
                return None, "FP8 needs the sm90 layout (Hopper)"
            if K % 32 or N % 16:
                return None, f"FP8 needs in_features % 32 == 0 and out_features % 16 == 0, got {K}, {N}"
        elif dtype not in _HALF:
            return None, f"compute dtype {dtype} (2:4 GEMMs take bf16/fp16: use autocast or a 16-bit layer)"
        elif layout == "sm80" and (K % 32 or N % 32):
            return None, f"sm80 needs in_features % 32 == 0 and out_features % 32 == 0, got {K}, {N}"
        elif K % 16:
            return None, f"sm90 needs in_features % 16 == 0, got {K}"
        return layout, ""

    def _compressed(self, dtype: torch.dtype, layout: str) -> _Compressed:
        """(values, meta, dense dgrad operand, FP8 scale) of the current weight, cached per update."""
        compiling = torch.compiler.is_compiling()  # dynamo cannot branch on _version: rebuild in graph
        key = None if compiling else self._weight_key(dtype, layout)
        if not compiling and self._cache is not None and key == self._cache_key:
            return self._cache
        with torch.no_grad(), nvtx("prune_and_compress"):
            w = self._weight_oi().detach().contiguous()
            if self.recipe == "s-ste":
                src, beta = w, self.scale
            else:  # STE / SR-STE: compressing the hard-pruned weight is exact (its dropped values are 0)
                src, beta = ops.hard_threshold_24(w)[0], None
            one = torch.ones((), dtype=torch.float32, device=w.device)
            if self.fp8:
                amax_w = fp8_scaling.weight_amax(w, beta)
                fp8_scaling.push(self.fp8_amax_history, fp8_scaling.W, amax_w)
                # A non-finite weight must not saturate to a finite E4M3 (±448): a NaN scale makes ŵ NaN.
                scale_w = fp8_scaling.nan_unless_finite(fp8_scaling.scales(self.fp8_amax_history)[fp8_scaling.W],
                                                        amax_w)
                values, meta = ops.prune_and_compress(src, (beta if beta is not None else one) * scale_w, layout, E4M3)
                w_dgrad = ops.decompress(values, meta, layout, validate=False).t().contiguous()
            else:
                scale_w = None
                values, meta = ops.prune_and_compress(src, beta if beta is not None else one, layout, dtype)
                w_dgrad = ops.decompress(values, meta, layout, validate=False)
        cache = _Compressed(values, meta, w_dgrad, scale_w, self.weight.untyped_storage())
        if not compiling:
            self._cache, self._cache_key = cache, key
        return cache

    def _weight_key(self, dtype: torch.dtype, layout: str) -> tuple:
        """Everything host-visible that changes when the weight or β changes (no device sync).

        - the weight: its tensor, storage address (the cache holds the storage, so an address
          is never reused while it is the key) and version counter (in-place writes through
          ``weight`` itself, ``copy_``, ``load_state_dict``);
        - under FSDP2, the sharded DTensor parameter and its version (FSDP2 gathers the
          unsharded weight through a tensor whose version counter it does not share), and
          every optimizer step in the process;
        - β: its tensor and version (``reset_scale``, a loaded or assigned ``scale``);
        - ``invalidate_cache()`` calls, and the recipe and operand types.
        """
        w, beta = self.weight, self.scale
        sharded = self.__dict__.get("_sharded_weight")
        sharded_key = (id(sharded), sharded._version) if sharded is not None else None
        return (id(w), w.data_ptr(), w._version, sharded_key, _OPTIMIZER_STEPS[0], id(beta), beta._version,
                self._generation, self.recipe, dtype, layout, self.fp8)

    def invalidate_cache(self) -> None:
        """Rebuild the fast path's compressed weight at the next forward.

        Needed only after writing the weight through ``weight.data`` in place (e.g.
        ``layer.weight.data.mul_(2)``) or ``scale.data``: ``.data`` is a new tensor with a version
        counter of its own, so such a write leaves nothing the cache can see without reading
        the weight. Every other way of changing the weight or β is detected.
        """
        self._generation += 1
        self._cache = self._cache_key = None

    def _fast_forward(self, x: torch.Tensor, dtype: torch.dtype, layout: str, rng: torch.Tensor,
                      recomputing: bool) -> torch.Tensor:
        K, N = self.in_features, self.out_features
        lead = x.shape[:-1]
        x2 = x.reshape(-1, K)
        if not self.fp8:
            x2 = x2.to(dtype)
        x2 = x2.contiguous()
        c = self._compressed(dtype, layout)
        need_wgrad = torch.is_grad_enabled() and self.weight.requires_grad
        backward = torch.is_grad_enabled() and (need_wgrad or x.requires_grad)  # a backward will follow
        scales = amax = None
        first_grad = False
        if self.fp8:
            if recomputing:  # replay the original forward's choices
                first_x, first_grad = self._fp8_replay
            else:
                first_x, first_grad = not self._fp8_seen_x, backward and not self._fp8_seen_grad
                self._fp8_replay = (first_x, first_grad)
            empty = x2.shape[0] == 0  # no tokens: no amax to learn from, the first step is still to come
            hist, amax = self.fp8_amax_history, self.fp8_amax_pending
            if not recomputing:  # the recompute must cast with the scales of the original forward
                fp8_scaling.fold(hist, amax)
            s = fp8_scaling.scales(hist)
            s_x = s[fp8_scaling.X]
            if first_x and not empty:  # first step: the current amax of x
                s_x = fp8_scaling.scale_from_amax(x2.detach().abs().amax(), FP8_MAX[E4M3])
            scales = torch.stack([s_x, c.scale_w, s[fp8_scaling.GRAD], s[fp8_scaling.GRAD_MVUE]])
        bias = self.bias
        if bias is not None and not self.fp8:
            bias = bias.to(dtype)
        pad_to = 64 if layout == "sm80" else 32  # the weight-gradient GEMM's K alignment (tokens)
        decay = float(self.decay) if self.recipe == "sr-ste" else 0.0
        y, _, amax_x = fast_linear(x2, self._weight_oi(), c.values, c.meta, c.w_dgrad, bias, rng, scales, amax, layout,
                                   pad_to, self.mvue and self.training, need_wgrad, first_grad, decay)
        if self.fp8:
            with torch.no_grad():
                amax[fp8_scaling.X] = fp8_scaling.clean(amax_x)
            if not recomputing and not empty:
                self._fp8_seen_x = True
                self._fp8_seen_grad = self._fp8_seen_grad or backward
            y = y.to(dtype)  # the FP8 GEMMs write bf16; the layer returns its compute dtype
        return y.reshape(*lead, N)

    def _next_rng(self, recomputing: bool) -> torch.Tensor:
        """(seed + rank·2³², draw) of this forward's MVUE sample, a CPU tensor; advances the count."""
        if self._rank is None:
            dist = torch.distributed
            self._rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        rng = self.mvue_rng.clone()
        if self._rank:
            rng[0] += self._rank << 32
        if self.training and self.mvue:
            if recomputing:  # activation checkpointing: replay the draw of the original forward
                rng[1] -= 1
            else:
                self.mvue_rng[1] += 1
        return rng

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device_type = x.device.type
        autocast = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type) if autocast else x.dtype
        self._check_input(x, dtype)
        # β is computed at the first forward, training or not (so eval before training and
        # to_inference agree), and then stays fixed.
        if self.recipe == "s-ste" and not self._scale_ready:
            self.reset_scale()
        # Auto mode leaves a "dense"-recipe layer (an ablation, no 2:4 weight) on the semantic path quietly.
        if self.fast or (self.fast is None and x.is_cuda and self.recipe != "dense"):
            layout, why = self._fast_layout(x, dtype)
            if layout is not None:
                recomputing = _recomputing()
                return self._fast_forward(x, dtype, layout, self._next_rng(recomputing), recomputing)
            if not self._warned:
                warnings.warn(f"SparseLinear {self.name}: fast path unavailable ({why}); using decompress + "
                              "dense GEMMs", stacklevel=2)
                self._warned = True
        w_hat, bias = self.sparse_weight(), self.bias
        if self.recipe == "dense" and not (self.mvue or self.fp8):
            return F.linear(x, w_hat, bias)
        if autocast:
            x, w_hat = x.to(dtype), w_hat.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        rng = self._next_rng(_recomputing())
        return sparse_linear_train(x, w_hat, bias, rng, self.mvue and self.training, self.fp8)

    def _check_input(self, x: torch.Tensor, dtype: torch.dtype) -> None:
        # Host-side checks only (dtype, shape): a clear error instead of one deep in a kernel.
        _check_dtype(self.name, self.weight.dtype)  # (a layer converted with .double())
        if dtype not in _DTYPES:
            raise TypeError(f"SparseLinear {self.name}: input dtype {dtype} is unsupported (float32, bfloat16 "
                            "or float16, or autocast to one of them)")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear {self.name}: input must have shape [..., {self.in_features}] "
                             f"(in_features), got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, recipe={self.recipe!r}, mvue={self.mvue}, fp8={self.fp8}"


def _sync_scale_flag(module: SparseLinear, incompatible_keys) -> None:
    # Loading is allowed to sync: refresh every Python mirror of the loaded device state.
    module._scale_ready = bool(module.scale_ready)
    module.mvue_rng = module.mvue_state.detach().cpu().clone()
    if module.fp8:
        seen = (module.fp8_amax_history.amax(dim=1) > 0).tolist()
        module._fp8_seen_x, module._fp8_seen_grad = seen[fp8_scaling.X], seen[fp8_scaling.GRAD]
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
    if module.fp8:
        errors += fp8_scaling.check_state(state_dict.get(prefix + "fp8_amax_history"),
                                          state_dict.get(prefix + "fp8_amax_pending"), prefix)
    return errors


def _save_mvue_state(module: SparseLinear, prefix: str, keep_vars: bool) -> None:
    with torch.no_grad():
        module.mvue_state.copy_(module.mvue_rng)
