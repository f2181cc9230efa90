"""One-call swaps: `sparsify` (nn.Linear -> SparseLinear) and `to_inference` (-> final 2:4 weights)."""
from __future__ import annotations

import copy
import fnmatch
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from .nn import SparseLinear

# The weight shapes [out_features, in_features] both compressed layouts accept: K % 32 (SM80
# metadata pairs; SM90 needs 16, or 32 for FP8) and out_features % 32 (SM80 metadata rows).
# The GEMMs may need more (SM80 SparseGemm: in_features % 64); sparse_linear falls back to
# decompress + dense GEMM, with a warning, for the shapes no kernel takes.
K_MULTIPLE = 32
N_MULTIPLE = 32


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def sparsify(
    model: nn.Module,
    recipe: str = "s-ste",
    fp8: bool = False,
    skip: Iterable[str] = (),
    include: Iterable[str] | None = None,
    mvue: bool = True,
    decay: float = 2e-4,
    seed: int = 0,
    fast: bool | None = None,
    layout: str | None = None,
    amax_history_len: int = 16,
) -> nn.Module:
    """Swap every eligible ``nn.Linear`` of ``model`` for a :class:`SparseLinear`, in place.

    ``include``/``skip`` are fnmatch patterns on the module names (``model.named_modules()``):
    a linear is swapped when it matches some ``include`` pattern (all do when ``include`` is
    None) and no ``skip`` pattern. Linears whose shape the 2:4 kernels cannot take stay
    dense, with a warning naming them. The swapped layers share the original parameters and
    are named after their module path (in warnings). ``fast``, ``layout`` and
    ``amax_history_len`` go to every :class:`SparseLinear`. Returns ``model``.
    """
    skip, include = tuple(skip), (tuple(include) if include is not None else None)
    swapped = 0
    for index, (name, module) in enumerate(list(model.named_modules())):
        if type(module) is not nn.Linear or _matches(name, skip):
            continue
        if include is not None and not _matches(name, include):
            continue
        if module.in_features % K_MULTIPLE or module.out_features % N_MULTIPLE:
            warnings.warn(
                f"sparsify: {name} ({module.in_features} -> {module.out_features}) stays dense: 2:4 kernels "
                f"need in_features % {K_MULTIPLE} == 0 and out_features % {N_MULTIPLE} == 0",
                stacklevel=2,
            )
            continue
        layer = SparseLinear(
            module.in_features, module.out_features, bias=module.bias is not None, recipe=recipe,
            mvue=mvue, fp8=fp8, decay=decay, seed=seed + index,
            device=module.weight.device, dtype=module.weight.dtype,
            fast=fast, layout=layout, amax_history_len=amax_history_len, name=name,
        )
        layer.weight = module.weight
        if module.bias is not None:
            layer.bias = module.bias
        parent, child = _parent(model, name)
        setattr(parent, child, layer)
        swapped += 1
    if swapped == 0:
        warnings.warn("sparsify: no nn.Linear was swapped (check include/skip patterns)", stacklevel=2)
    return model


def _semi_structured(weight: torch.Tensor) -> torch.Tensor | None:
    """torch's own 2:4 inference form of `weight`, or None where this torch/device lacks it."""
    if not weight.is_cuda or weight.dtype not in (torch.float16, torch.bfloat16):
        return None
    try:
        return torch.sparse.to_sparse_semi_structured(weight)
    except (RuntimeError, ValueError, NotImplementedError) as err:
        warnings.warn(f"to_inference: torch's 2:4 format unavailable ({err}); keeping dense 2:4 weights", stacklevel=3)
        return None


def _inference_linear(module: SparseLinear, semi_structured: bool) -> nn.Linear:
    """A plain nn.Linear holding the layer's final ŵ."""
    linear = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                       device=module.weight.device, dtype=module.weight.dtype)
    if module.recipe == "s-ste" and not module._scale_ready:
        module.reset_scale()
    w_hat = module.sparse_weight().detach().clone()
    # A "dense" recipe layer is not 2:4: torch's converter would silently prune it.
    sparse = _semi_structured(w_hat) if semi_structured and module.recipe != "dense" else None
    linear.weight = nn.Parameter(sparse if sparse is not None else w_hat, requires_grad=False)
    if module.bias is not None:
        linear.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=False)
    return linear


@torch.no_grad()
def to_inference(model: nn.Module, semi_structured: bool = True) -> nn.Module:
    """A copy of ``model`` whose SparseLinear layers are plain ``nn.Linear`` holding ŵ.

    ŵ is the layer's final 2:4 weight (β·S(w) for S-STE, the masked weight for STE/SR-STE),
    stored in torch's ``SparseSemiStructuredTensor`` form where the running torch and device
    support it (CUDA, fp16/bf16), else as a dense tensor with the zeros in place.
    """
    model = copy.deepcopy(model)
    if isinstance(model, SparseLinear):
        return _inference_linear(model, semi_structured)
    for name, module in list(model.named_modules()):
        if isinstance(module, SparseLinear):
            parent, child = _parent(model, name)
            setattr(parent, child, _inference_linear(module, semi_structured))
    return model
