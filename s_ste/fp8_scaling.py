"""FP8 delayed scaling for the layer's fast path: per-tensor scales from an amax history.

Transformer Engine's delayed-scaling recipe (scale = fp8_max / max over the amax window,
margin 0), with no host sync anywhere: every scale is a float32 device tensor computed from
device tensors.

Each FP8 layer keeps, per tensor kind (``KINDS``: the input x and the weight ŵ in E4M3, the
output gradient g and its MVUE-sparsified transpose h in E5M2):

- ``history[kind, :]``: the amaxes (max |tensor|) of the last ``len`` steps, newest first;
- ``pending[kind]``: the amax measured at the current step (−1: none yet), written by the
  ops that quantize the tensor (``quantize_fp8_scaled``, ``mvue_24_t_compress``) in the
  same pass as the cast.

At the start of each forward the pending amaxes are pushed into the history (``fold``); the
scale of a kind is then ``fp8_max / max(history[kind])`` (``scales``), so the cast of step t
uses the amaxes of steps < t and never waits for the amax of its own tensor.

- First step (empty history): x uses its current amax (one extra reduction, first step only),
  g its current amax (computed in the backward), h the bound ``4·max|g|`` (an MVUE output is
  ``g_i / p_i`` with ``p_i ≥ a_i / S``, so ``|h_i| ≤ S·max_group|g| ≤ 4·max|g|``).
- The weight's amax is known before its cast (it is cast once per weight update, when the
  compressed weight is rebuilt), so it is pushed into the history *before* its scale is
  computed (the scale includes the current amax): ``β·max|w|`` for S-STE (an upper bound of
  ``max|ŵ|``: the soft threshold only shrinks magnitudes), ``max|w|`` otherwise (exact: the
  group maximum is always kept).
- A non-finite amax (an overflowed gradient) is recorded as 0, i.e. ignored by the scale;
  the overflow itself stays visible in the tensors (NaN survives the FP8 casts).
- Guards as in ``quantize_fp8``: amax 0 gives scale 1, and a scale that overflows float32
  gives the largest finite float32.

:class:`Fp8State` runs this protocol for one layer: it holds the Python mirrors of the device
state (so no forward branches on device data or syncs the host) and reads the layer's two
buffers ``HISTORY``/``PENDING`` (registered on the layer, so its state_dict keys stay its own).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch

from .ops import E4M3, E5M2

FP8_MAX = {E4M3: 448.0, E5M2: 57344.0}
KINDS = ("x", "w", "grad", "grad_mvue")
KIND_DTYPES = (E4M3, E4M3, E5M2, E5M2)
X, W, GRAD, GRAD_MVUE = range(4)
MVUE_AMAX_BOUND = 4.0  # max|MVUE(g)| <= 4 max|g| (see the module docstring)
# Transformer Engine's DelayedScaling takes the max over the window too (amax_compute_algo="max",
# margin 0); its default window is 1024 steps (amax_history_len); 16 here, as issue 5 asks.
DEFAULT_HISTORY_LEN = 16

# The layer's buffers (its state_dict keys): the history [len(KINDS), len] and the pending amaxes.
HISTORY, PENDING = "fp8_amax_history", "fp8_amax_pending"

_F32_MAX = torch.finfo(torch.float32).max


def clean(amax: torch.Tensor) -> torch.Tensor:
    """amax with NaN/Inf recorded as 0 (ignored by the scale), for the history and the pending
    slots: the saved state then holds only amaxes ≥ 0 and the −1 "none" marker."""
    return torch.where(torch.isfinite(amax), amax, 0.0)


def scale_from_amax(amax: torch.Tensor, fp8_max: torch.Tensor | float) -> torch.Tensor:
    """fp8_max / amax (float32, on amax's device), 1 where amax is 0, float32 max where that overflows."""
    amax = amax.float()
    scale = torch.where(amax > 0, fp8_max / amax.clamp_min(torch.finfo(torch.float32).tiny), 1.0)
    return torch.where(torch.isfinite(scale), scale, _F32_MAX)


def fp8_max_tensor(device) -> torch.Tensor:
    """FP8_MAX of each kind, in KINDS order, as a float32 tensor (filled on the device: a tensor
    built from a Python list would be a host-to-device copy, which waits for the device)."""
    out = torch.full((len(KINDS),), FP8_MAX[E4M3], dtype=torch.float32, device=device)
    out[GRAD:] = FP8_MAX[E5M2]  # (KIND_DTYPES: E4M3 before GRAD, E5M2 from it)
    return out


def new_state(history_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(history [len(KINDS), history_len] of zeros, pending [len(KINDS)] of −1)."""
    if history_len < 1:
        raise ValueError(f"amax history length must be >= 1, got {history_len}")
    history = torch.zeros(len(KINDS), history_len, dtype=torch.float32, device=device)
    pending = torch.full((len(KINDS),), -1.0, dtype=torch.float32, device=device)
    return history, pending


@torch.no_grad()
def fold(history: torch.Tensor, pending: torch.Tensor) -> None:
    """Push each kind's pending amax (where ≥ 0) into its history, newest first; clear pending. In place."""
    rolled = torch.roll(history, 1, dims=1)
    rolled[:, 0] = clean(pending).clamp_min(0.0)
    history.copy_(torch.where((pending >= 0)[:, None] | torch.isnan(pending)[:, None], rolled, history))
    pending.fill_(-1.0)


@torch.no_grad()
def push(history: torch.Tensor, kind: int, amax: torch.Tensor) -> None:
    """Push one amax into one kind's history right away (the weight's, known before its cast). In place."""
    row = torch.roll(history[kind], 1)
    row[0] = clean(amax.float())
    history[kind].copy_(row)


def scales(history: torch.Tensor) -> torch.Tensor:
    """The scale of every kind, fp8_max / max(history), float32 [len(KINDS)] on the device."""
    return scale_from_amax(history.amax(dim=1), fp8_max_tensor(history.device))


def nan_unless_finite(scale: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    """scale, or NaN where amax is not finite: a saturating cast would turn ±Inf into ±fp8_max,
    a finite value; a NaN scale keeps the overflow visible in the cast tensor instead."""
    return torch.where(torch.isfinite(amax), scale, float("nan"))


def check_state(history: torch.Tensor, pending: torch.Tensor, prefix: str = "") -> list[str]:
    """What is wrong with a loaded amax state (syncs the host), one message per bad key."""
    errors = []
    for key, t, ok in ((prefix + HISTORY, history, lambda t: torch.isfinite(t) & (t >= 0)),
                       (prefix + PENDING, pending, lambda t: torch.isfinite(t) & ((t >= 0) | (t == -1)))):
        if t is None or t.is_meta or not t.is_floating_point():
            continue
        bad = ~ok(t.float())
        if bad.any():
            first = t.flatten()[bad.flatten()][0].item()
            errors.append(f"{key}: {int(bad.sum())} invalid amax value(s), e.g. {first} (amaxes are finite and "
                          f">= 0{'' if 'history' in key else ', or -1 for none'}): a diverged checkpoint?")
    return errors


def weight_amax(w: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
    """max|ŵ| or its bound: β·max|w| for S-STE (beta given), max|w| otherwise (0-d float32)."""
    amax = w.detach().abs().amax().float()
    return amax * beta if beta is not None else amax


def first_grad_scales(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale of g, scale of MVUE(gᵀ)) at the first step, from g's current amax (no history yet)."""
    amax_now = grad.detach().abs().amax().float()
    return (scale_from_amax(amax_now, FP8_MAX[E5M2]),
            scale_from_amax(amax_now * MVUE_AMAX_BOUND, FP8_MAX[E5M2]))


class Fp8Step(NamedTuple):
    """What one FP8 forward of the fast path casts with, and where its ops report the amaxes."""

    scales: torch.Tensor  # [len(KINDS)] float32 on the device: the cast scale of X, W, GRAD, GRAD_MVUE
    amax: torch.Tensor    # the layer's PENDING buffer: the ops write the amaxes they measure
    first_grad: bool      # no g history yet: the backward takes g's scales from its current amax
    counts: bool          # this forward teaches the history (not a recompute, not an empty batch)
    backward: bool        # a backward will follow


class Fp8State:
    """The delayed-scaling protocol of one FP8 layer (not an nn.Module: the buffers stay the layer's).

    ``buffers`` is the layer's buffer mapping (``module._buffers``), read at every use, so a
    ``.to()``, ``load_state_dict`` or assignment of ``HISTORY``/``PENDING`` is always seen. The
    Python mirrors ``seen_x``/``seen_grad`` (the history has an amax of x / of g: the first step
    is over) keep every forward free of data-dependent branches; ``replay`` holds the choices of
    the last forward for its recompute under activation checkpointing.
    """

    def __init__(self, buffers: Mapping[str, torch.Tensor]) -> None:
        self._buffers = buffers
        self.seen_x = self.seen_grad = False
        self.replay = (True, False)

    @property
    def history(self) -> torch.Tensor:
        return self._buffers[HISTORY]

    @property
    def pending(self) -> torch.Tensor:
        return self._buffers[PENDING]

    def weight_scale(self, w: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
        """The E4M3 scale of a new ŵ (w [out, in]; β for S-STE): its amax joins the history first."""
        amax_w = weight_amax(w, beta)
        push(self.history, W, amax_w)
        # A non-finite weight must not saturate to a finite E4M3 (±448): a NaN scale makes ŵ NaN.
        return nan_unless_finite(scales(self.history)[W], amax_w)

    def begin_forward(self, x: torch.Tensor, scale_w: torch.Tensor, recomputing: bool, backward: bool) -> Fp8Step:
        """Fold the last step's amaxes into the history and return this forward's scales."""
        if recomputing:  # replay the original forward's choices
            first_x, first_grad = self.replay
        else:
            first_x, first_grad = not self.seen_x, backward and not self.seen_grad
            self.replay = (first_x, first_grad)
        empty = x.numel() == 0  # no tokens: no amax to learn from, the first step is still to come
        if not recomputing:  # the recompute must cast with the scales of the original forward
            fold(self.history, self.pending)
        s = scales(self.history)
        s_x = s[X]
        if first_x and not empty:  # first step: the current amax of x
            s_x = scale_from_amax(x.detach().abs().amax(), FP8_MAX[E4M3])
        return Fp8Step(torch.stack([s_x, scale_w, s[GRAD], s[GRAD_MVUE]]), self.pending, first_grad,
                       not recomputing and not empty, backward)

    def end_forward(self, step: Fp8Step, amax_x: torch.Tensor) -> None:
        """Record x's amax (pending until the next fold) and what this forward taught the history."""
        with torch.no_grad():
            step.amax[X] = clean(amax_x)
        if step.counts:
            self.seen_x = True
            self.seen_grad = self.seen_grad or step.backward

    def after_load(self) -> None:
        """Refresh the mirrors from a loaded history (loading may sync the host)."""
        seen = (self.history.amax(dim=1) > 0).tolist()
        self.seen_x, self.seen_grad = seen[X], seen[GRAD]

    @staticmethod
    def check_loaded(state_dict: Mapping, prefix: str) -> list[str]:
        """What is wrong with the amax state a state_dict would load (see check_state)."""
        return check_state(state_dict.get(prefix + HISTORY), state_dict.get(prefix + PENDING), prefix)
