"""One-call swaps: `sparsify` (nn.Linear / HF Conv1D -> SparseLinear) and `to_inference` (-> final 2:4 weights).

Also the name patterns (``include="ffn"``: FFN_SUFFIXES, is_ffn) and the sparsify record a
transformers model carries in its config (CONFIG_KEY, RECORD_FORMAT; written by sparsify,
replayed by apply_record).
"""
from __future__ import annotations

import copy
import fnmatch
import math
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .conv1d import SparseConv1D, conv1d_class, inference_conv1d
from .nn import SparseLinear
from .ops import LAYOUT_RULES
from .options import DEFAULTS

# The weight shapes [out_features, in_features] every compressed layout accepts: the layout rules'
# lcm over layouts and value widths (SM80's metadata sets both today). The GEMMs may need more
# (the SM80 SparseGemm's K): a SparseLinear the fast path cannot take runs the semantic path,
# with a warning naming the rule.
K_MULTIPLE = math.lcm(*(k for rules in LAYOUT_RULES.values() for k in rules["k_align"].values()))
N_MULTIPLE = math.lcm(*(rules["row_align"] for rules in LAYOUT_RULES.values()))

# include="ffn" (or "ffn" among the include patterns): the FFN linears of every family in FFN_SUFFIXES,
# matched as a suffix of the module name ("mlp.c_fc" matches "transformer.h.0.mlp.c_fc" and "mlp.c_fc").
# BERT-style encoders (and HF's ViT) name the FFN output "output.dense", like the attention output
# "attention.output.dense": that one is excluded.
FFN = "ffn"
FFN_SUFFIXES = {
    "gpt2": ("mlp.c_fc", "mlp.c_proj"),
    "llama": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),  # also Qwen, Mistral, Gemma
    "bert": ("intermediate.dense", "output.dense"),  # also RoBERTa and HF's ViT
    "vit": ("mlp.fc1", "mlp.fc2"),  # timm's ViT, CLIP, Phi
    "gpt_neox": ("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"),  # also Pythia, Falcon
}
FFN_EXCLUDED_SUFFIXES = ("attention.output.dense",)

# The sparsify record: the key of its entry in an HF model's config (written to config.json by
# save_pretrained, replayed by s_ste.hf.from_pretrained) and its format.
CONFIG_KEY = "s_ste"
RECORD_FORMAT = 1


def _has_suffix(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def is_ffn(name: str) -> bool:
    """Whether the module called `name` is an FFN linear of one of the families of FFN_SUFFIXES."""
    if any(_has_suffix(name, s) for s in FFN_EXCLUDED_SUFFIXES):
        return False
    return any(_has_suffix(name, s) for suffixes in FFN_SUFFIXES.values() for s in suffixes)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _patterns(patterns: str | Iterable[str] | None) -> tuple[str, ...] | None:
    # A lone string is one pattern, not a sequence of one-letter patterns.
    return None if patterns is None else ((patterns,) if isinstance(patterns, str) else tuple(patterns))


def _selector(include: str | Iterable[str] | None, skip: str | Iterable[str]) -> Callable[[str], bool]:
    include, skip = _patterns(include), _patterns(skip)
    ffn = include is not None and FFN in include
    globs = tuple(p for p in include if p != FFN) if include is not None else None

    def selected(name: str) -> bool:
        if _matches(name, skip):
            return False
        return globs is None or _matches(name, globs) or (ffn and is_ffn(name))

    return selected


def _features(module: nn.Module) -> tuple[int, int, bool] | None:
    """(in_features, out_features, is_conv1d) of a module sparsify can swap, else None."""
    if type(module) is nn.Linear:
        return module.in_features, module.out_features, False
    conv1d = conv1d_class()
    if conv1d is not None and type(module) is conv1d:
        return module.weight.shape[0], module.weight.shape[1], True
    return None


def _sparse_layer(module: nn.Module, name: str, features: tuple[int, int, bool], seed: int,
                  options: dict) -> SparseLinear:
    in_features, out_features, conv1d = features
    cls = SparseConv1D if conv1d else SparseLinear
    layer = cls(in_features, out_features, bias=module.bias is not None, seed=seed, device=module.weight.device,
                dtype=module.weight.dtype, name=name, **options)
    layer.weight = module.weight  # shared: the optimizer, tied weights and checkpoints see the same tensor
    if module.bias is not None:
        layer.bias = module.bias
    return layer


def _replace(model: nn.Module, new: dict[int, nn.Module]) -> nn.Module:
    """Put new[id(m)] in every place m is registered (a shared module is replaced everywhere, by one module)."""
    if id(model) in new:
        return new[id(model)]
    places = [(parent, child_name, new[id(child)]) for parent in model.modules()
              for child_name, child in parent._modules.items() if child is not None and id(child) in new]
    for parent, child_name, module in places:
        setattr(parent, child_name, module)
    return model


def _swap(model: nn.Module, selected: Callable[[str], bool], seed: int,
          options: dict) -> tuple[nn.Module, list[str], int]:
    """(model with the selected layers swapped, their names, how many selected layers stay dense)."""
    new, names, kept = {}, [], 0
    # Deduplicated: a module shared by two parents is met (and swapped) once, under its first name;
    # the index gives each layer its MVUE seed.
    for index, (name, module) in enumerate(list(model.named_modules())):
        features = _features(module)
        if features is None or not selected(name):
            continue
        in_features, out_features, _ = features
        if in_features % K_MULTIPLE or out_features % N_MULTIPLE:
            warnings.warn(
                f"sparsify: {name or type(module).__name__} ({in_features} -> {out_features}) stays dense: 2:4 "
                f"kernels need in_features % {K_MULTIPLE} == 0 and out_features % {N_MULTIPLE} == 0",
                stacklevel=3,
            )
            kept += 1
            continue
        new[id(module)] = _sparse_layer(module, name, features, seed + index, options)
        names.append(name)
    return _replace(model, new), names, kept


def _record(model: nn.Module, options: dict, seed: int, names: list[str]) -> None:
    """Append this call to the HF config's s_ste entry (config.json), for s_ste.hf.from_pretrained."""
    config = getattr(model, "config", None)
    if not names or not hasattr(config, "to_json_string"):  # not a transformers model
        return
    record = getattr(config, CONFIG_KEY, None) or {"format": RECORD_FORMAT, "calls": []}
    record["calls"].append({**options, "seed": seed, "modules": names})
    setattr(config, CONFIG_KEY, record)


def sparsify(
    model: nn.Module,
    recipe: str = DEFAULTS.recipe,
    fp8: bool = DEFAULTS.fp8,
    skip: str | Iterable[str] = (),
    include: str | Iterable[str] | None = None,
    mvue: bool = DEFAULTS.mvue,
    decay: float = DEFAULTS.decay,
    seed: int = DEFAULTS.seed,
    fast: bool | None = DEFAULTS.fast,
    layout: str | None = DEFAULTS.layout,
    amax_history_len: int = DEFAULTS.amax_history_len,
) -> nn.Module:
    """Swap every eligible ``nn.Linear`` (and HF ``Conv1D``) of ``model`` for a :class:`SparseLinear`, in place.

    ``include``/``skip`` are fnmatch patterns (a string or a list of them) on the module names
    (``model.named_modules()``): a layer is swapped when it matches some ``include`` pattern (all
    do when ``include`` is None) and no ``skip`` pattern. The pattern ``"ffn"`` stands for the FFN
    linears of the known families (``FFN_SUFFIXES``: GPT-2, Llama/Qwen/Mistral, BERT, ViT,
    GPT-NeoX). Layers whose shape the 2:4 kernels cannot take stay dense, with a warning naming them.
    A ``transformers`` Conv1D (GPT-2) becomes a :class:`s_ste.hf.SparseConv1D`, whose weight keeps
    Conv1D's ``[in, out]`` shape. The swapped layers share the original parameters, are named after
    their module path (in warnings), and replace the module wherever it is registered (a layer
    shared by two parents stays shared). ``fast``, ``layout`` and ``amax_history_len`` go to every
    :class:`SparseLinear`. On a ``transformers`` model the call is recorded in ``model.config``
    (so ``save_pretrained`` writes it and :func:`s_ste.hf.from_pretrained` replays it).

    Returns ``model``, or the new layer when ``model`` itself is a linear layer.
    """
    options = dict(recipe=recipe, mvue=mvue, fp8=fp8, decay=decay, fast=fast, layout=layout,
                   amax_history_len=amax_history_len)
    result, names, kept = _swap(model, _selector(include, skip), seed, options)
    if not names and not kept:  # (a layer kept dense has had its own warning)
        warnings.warn(f"sparsify: no nn.Linear or Conv1D was swapped (include={include!r}, skip={skip!r})",
                      stacklevel=2)
    _record(result, options, seed, names)
    return result


def apply_record(model: nn.Module, record: dict, overrides: dict) -> nn.Module:
    """Replay the sparsify calls of a config's s_ste entry on `model` (the same modules, options and seeds)."""
    if record.get("format") != RECORD_FORMAT:
        raise ValueError(f"s_ste: sparsify record format {record.get('format')!r} is not {RECORD_FORMAT}")
    for call in record["calls"]:
        call = {**call, **overrides}
        modules, seed = call.pop("modules"), call.pop("seed")
        wanted = set(modules)
        _, names, _ = _swap(model, wanted.__contains__, seed, call)
        if set(names) != wanted:
            raise ValueError(f"s_ste: the recorded sparse layers {sorted(wanted - set(names))} are not swappable "
                             "linears of this model")
        _record(model, call, seed, names)
    return model


# ---- inference export ----


def _semi_structured(weight: torch.Tensor) -> torch.Tensor | None:
    """torch's own 2:4 inference form of `weight`, or None where this torch/device lacks it."""
    if not weight.is_cuda or weight.dtype not in (torch.float16, torch.bfloat16):
        return None
    try:
        return torch.sparse.to_sparse_semi_structured(weight)
    except (RuntimeError, ValueError, NotImplementedError) as err:
        warnings.warn(f"to_inference: torch's 2:4 format unavailable ({err}); keeping dense 2:4 weights", stacklevel=4)
        return None


def _inference_module(module: SparseLinear, semi_structured: bool) -> nn.Module:
    """A plain nn.Linear (HF Conv1D for a SparseConv1D) holding the layer's final ŵ."""
    if module.recipe == "s-ste" and not module._scale_ready:
        module.reset_scale()
    w_hat = module.sparse_weight().detach().clone()
    if isinstance(module, SparseConv1D):  # torch's 2:4 form is for x·Wᵀ: Conv1D's x·W stays dense
        return inference_conv1d(module, w_hat)
    linear = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                       device=module.weight.device, dtype=module.weight.dtype)
    # A "dense" recipe layer is not 2:4: torch's converter would silently prune it.
    sparse = _semi_structured(w_hat) if semi_structured and module.recipe != "dense" else None
    linear.weight = nn.Parameter(sparse if sparse is not None else w_hat, requires_grad=False)
    if module.bias is not None:
        linear.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=False)
    return linear


@torch.no_grad()
def to_inference(model: nn.Module, semi_structured: bool | None = None) -> nn.Module:
    """A copy of ``model`` whose SparseLinear layers are plain ``nn.Linear`` (HF ``Conv1D``) holding ŵ.

    ŵ is the layer's final 2:4 weight (β·S(w) for S-STE, the masked weight for STE/SR-STE). With
    ``semi_structured`` (default: True, except on ``transformers`` models, whose ``save_pretrained``
    stores plain tensors only) an ``nn.Linear``'s ŵ is stored in torch's ``SparseSemiStructuredTensor``
    form where the running torch and device support it (CUDA, fp16/bf16), else as a dense tensor
    with the zeros in place. A transformers model comes back without the ``s_ste`` config entry:
    its ``save_pretrained`` output loads in a plain ``transformers`` install.
    """
    model = copy.deepcopy(model)
    if semi_structured is None:
        semi_structured = not hasattr(getattr(model, "config", None), "to_json_string")
    new = {id(m): _inference_module(m, semi_structured) for m in model.modules() if isinstance(m, SparseLinear)}
    model = _replace(model, new)
    config = getattr(model, "config", None)
    if hasattr(config, "to_json_string") and hasattr(config, CONFIG_KEY):
        delattr(config, CONFIG_KEY)
    return model
