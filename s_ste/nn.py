"""`SparseLinear`: an nn.Linear whose weight is 2:4 sparse in every forward (S-STE and friends)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .autograd import RECIPES, sparse_linear_train, sparse_weight


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
    ) -> None:
        if recipe not in RECIPES:
            raise ValueError(f"SparseLinear: recipe must be one of {RECIPES}, got {recipe!r}")
        if in_features % 4:
            raise ValueError(f"SparseLinear: in_features must be a multiple of 4 (2:4 groups), got {in_features}")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.recipe, self.mvue, self.fp8, self.decay = recipe, mvue, fp8, decay
        self.register_buffer("scale", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("scale_ready", torch.zeros((), dtype=torch.bool, device=device))
        # (seed, number of MVUE draws so far): each training forward gets a fresh offset.
        self.register_buffer("mvue_state", torch.tensor([seed, 0], dtype=torch.int64, device=device))
        self._scale_ready = False  # Python mirror of scale_ready: no data-dependent branch in forward
        self.register_load_state_dict_post_hook(_sync_scale_flag)

    @torch.no_grad()
    def reset_scale(self) -> None:
        """(Re)compute β from the current weight and freeze it."""
        self.scale.copy_(ops.scale_factor(self.weight.detach().contiguous()))
        self.scale_ready.fill_(True)
        self._scale_ready = True

    def sparse_weight(self) -> torch.Tensor:
        """ŵ, differentiable with respect to ``weight`` through the recipe's straight-through rule."""
        if self.recipe == "dense":
            return self.weight
        return sparse_weight(self.weight, self.scale, self.recipe, float(self.decay))[0]

    def _apply(self, fn, recurse=True):
        # β is a float32 scale (the ops take it as float32): keep it so through .half(),
        # .bfloat16() and .to(dtype), which convert every floating-point buffer.
        scale = self.scale
        super()._apply(fn, recurse)
        if self.scale.dtype != torch.float32:  # undo the cast, keep the move
            self.scale = scale.to(self.scale.device)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # β is computed at the first forward, training or not (so eval before training and
        # to_inference agree), and then stays fixed.
        if self.recipe == "s-ste" and not self._scale_ready:
            self.reset_scale()
        w_hat, bias = self.sparse_weight(), self.bias
        if self.recipe == "dense" and not (self.mvue or self.fp8):
            return F.linear(x, w_hat, bias)
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            x, w_hat = x.to(dtype), w_hat.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        rng = self.mvue_state.clone()
        if self.training and self.mvue:
            self.mvue_state[1] += 1
        return sparse_linear_train(x, w_hat, bias, rng, self.mvue and self.training, self.fp8)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, recipe={self.recipe!r}, mvue={self.mvue}, fp8={self.fp8}"


def _sync_scale_flag(module: SparseLinear, incompatible_keys) -> None:
    module._scale_ready = bool(module.scale_ready)
