"""SparseLinear's options: their defaults (s_ste.sparsify's too) and the checks of the layer's
arguments and input (host-side only: a clear error instead of one deep in a kernel)."""
from __future__ import annotations

from typing import NamedTuple

import torch

from . import ops
from .fp8_scaling import DEFAULT_HISTORY_LEN
from .semantic import RECIPES

DTYPES = ops.FLOAT_DTYPES  # what the layer computes in
_INT64 = (-(1 << 63), (1 << 63) - 1)


class Options(NamedTuple):
    """SparseLinear's options after the shape, with their defaults."""

    recipe: str = "s-ste"
    mvue: bool = True
    fp8: bool = False
    decay: float = 2e-4
    seed: int = 0
    fast: bool | None = None
    layout: str | None = None
    amax_history_len: int = DEFAULT_HISTORY_LEN


DEFAULTS = Options()


def check_args(in_features, out_features, recipe, layout, seed) -> None:
    """The constructor's checks, before any tensor is made."""
    if recipe not in RECIPES:
        raise ValueError(f"SparseLinear: recipe must be one of {RECIPES}, got {recipe!r}")
    for arg, v in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"SparseLinear: {arg} must be a positive int, got {v!r}")
    if in_features % 4:
        raise ValueError(f"SparseLinear: in_features must be a multiple of 4 (2:4 groups), got {in_features}")
    if layout is not None and layout not in ops.LAYOUTS:
        raise ValueError(f"SparseLinear: layout must be one of {ops.LAYOUTS} or None, got {layout!r}")
    # The MVUE key is an int64 (the ops' `int`): say so here, not deep in the first backward.
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"SparseLinear: seed must be an int, got {type(seed).__name__}")
    if not _INT64[0] <= seed <= _INT64[1]:
        raise ValueError(f"SparseLinear: seed must fit in int64 ([-2**63, 2**63 - 1]), got {seed}")


def check_dtype(name: str, dtype: torch.dtype) -> None:
    """The weight's dtype (at construction, and at each forward: a layer converted with .double())."""
    if dtype not in DTYPES:
        raise TypeError(f"SparseLinear {name}: weight dtype {dtype} is unsupported (the 2:4 kernels take "
                        "float32, bfloat16 and float16; use one of them, or autocast)")


def check_input(name: str, in_features: int, x: torch.Tensor, dtype: torch.dtype) -> None:
    """A forward's input x, computed in `dtype` (its own, or autocast's)."""
    if dtype not in DTYPES:
        raise TypeError(f"SparseLinear {name}: input dtype {dtype} is unsupported (float32, bfloat16 "
                        "or float16, or autocast to one of them)")
    if x.dim() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"SparseLinear {name}: input must have shape [..., {in_features}] "
                         f"(in_features), got {tuple(x.shape)}")
