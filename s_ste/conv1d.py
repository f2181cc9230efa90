"""GPT-2's Conv1D (``transformers.pytorch_utils.Conv1D``) as a sparse layer, and back.

Nothing here imports ``transformers`` at import time: a Conv1D can only exist once the user has
imported it (:func:`conv1d_class` finds it then).
"""
from __future__ import annotations

import sys

import torch
from torch import nn

from .nn import SparseLinear


def conv1d_class() -> type | None:
    """transformers' Conv1D if transformers is imported (else no Conv1D can exist: None)."""
    return getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)


class SparseConv1D(SparseLinear):
    """:class:`SparseLinear` for HF's Conv1D (y = x·W + b with ``weight`` W of shape ``[in, out]``).

    The parameter keeps Conv1D's name, shape and layout (HF checkpoints and optimizer states
    load unchanged); the pruning, β and the GEMMs read its ``[out, in]`` view, so the 2:4 groups
    run along the input dimension as for an ``nn.Linear``. ``nf``/``nx`` are Conv1D's names
    of ``out_features``/``in_features`` (GPT-2's code reads them).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kwargs) -> None:
        super().__init__(in_features, out_features, bias=bias, **kwargs)
        self.weight = nn.Parameter(self.weight.detach().t().contiguous())
        self.nf, self.nx = out_features, in_features

    def reset_parameters(self) -> None:
        # Conv1D's own initialisation (the shape does not matter to it, unlike nn.Linear's fan-in).
        nn.init.normal_(self.weight, std=0.02)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _weight_oi(self) -> torch.Tensor:
        return self.weight.t()


def inference_conv1d(layer: SparseConv1D, w_hat: torch.Tensor) -> nn.Module:
    """A plain transformers Conv1D holding the final 2:4 weight ŵ ([out, in]) as its [in, out] weight."""
    conv = conv1d_class()
    if conv is None:  # a SparseConv1D made by hand, transformers never imported
        from transformers.pytorch_utils import Conv1D as conv
    module = conv(layer.out_features, layer.in_features)
    module.weight = nn.Parameter(w_hat.t().contiguous(), requires_grad=False)
    if layer.bias is not None:
        module.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
    else:  # Conv1D always has a bias: a zero one is the same map
        module.bias = nn.Parameter(torch.zeros_like(w_hat[:, 0]), requires_grad=False)
    return module
