"""Hugging Face integration: GPT-2's Conv1D, the FFN layers of each model family, resume and export.

Nothing here imports ``transformers`` at import time: a Conv1D can only exist once the user
has imported it, and the helpers that need the library import it when called.

- :class:`SparseConv1D`: the :class:`~s_ste.nn.SparseLinear` of ``transformers.pytorch_utils.Conv1D``
  (GPT-2's ``attn.c_attn``/``c_proj``, ``mlp.c_fc``/``c_proj``): ``weight`` stays ``[in, out]`` so HF
  checkpoints load unchanged; the 2:4 groups still run along the input dimension.
- ``FFN_SUFFIXES``: what ``sparsify(model, include="ffn")`` swaps, per family.
- :func:`from_pretrained`: a sparse model back from ``save_pretrained``, with its saved β, MVUE
  draw counts and FP8 histories (the recipe is read from ``config.json``'s ``s_ste`` entry).
"""
from __future__ import annotations

import json
import os
import sys

import torch
from torch import nn

from .nn import SparseLinear

# The FFN linears of each family, matched as a suffix of the module name ("mlp.c_fc" matches
# "transformer.h.0.mlp.c_fc" and "mlp.c_fc"). BERT-style encoders (and HF's ViT) name the FFN
# output "output.dense", like the attention output "attention.output.dense": that one is excluded.
FFN_SUFFIXES = {
    "gpt2": ("mlp.c_fc", "mlp.c_proj"),
    "llama": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),  # also Qwen, Mistral, Gemma
    "bert": ("intermediate.dense", "output.dense"),  # also RoBERTa and HF's ViT
    "vit": ("mlp.fc1", "mlp.fc2"),  # timm's ViT, CLIP, Phi
    "gpt_neox": ("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"),  # also Pythia, Falcon
}
FFN_EXCLUDED_SUFFIXES = ("attention.output.dense",)

# The key of the sparsify record in an HF model's config (written to config.json by save_pretrained).
CONFIG_KEY = "s_ste"
RECORD_FORMAT = 1


def _has_suffix(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def is_ffn(name: str) -> bool:
    """Whether the module called `name` is an FFN linear of one of the families of FFN_SUFFIXES."""
    if any(_has_suffix(name, s) for s in FFN_EXCLUDED_SUFFIXES):
        return False
    return any(_has_suffix(name, s) for suffixes in FFN_SUFFIXES.values() for s in suffixes)


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


# ---- resume from save_pretrained ----


def _saved_state(path: str) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in folder `path` (safetensors, sharded or not; else pytorch_model.bin)."""
    from safetensors.torch import load_file

    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        state = {}
        for name in files:
            state.update(load_file(os.path.join(path, name)))
        return state
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return load_file(single)
    legacy = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(legacy):
        return torch.load(legacy, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"s_ste.hf.from_pretrained: no model.safetensors(.index.json) or pytorch_model.bin "
                            f"in {path}")


def _check_missing(model: nn.Module, missing: list[str], loaded: set[str], path: str) -> None:
    """Missing keys are fine only where they are tied to a loaded one (save_pretrained drops those)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded_ids = {id(params[k]) for k in loaded if k in params}
    untied = [k for k in missing if k not in params or id(params[k]) not in loaded_ids]
    if untied:
        raise ValueError(f"s_ste.hf.from_pretrained: {path} lacks {untied}")


@torch.no_grad()
def from_pretrained(model_class, path: str | os.PathLike, dtype: torch.dtype | None = None, device=None,
                    overrides: dict | None = None) -> nn.Module:
    """The sparse model saved by ``save_pretrained`` in `path`, ready to resume training.

    Builds ``model_class`` from the saved config, applies the saved ``sparsify`` calls (the
    ``s_ste`` entry of ``config.json``: recipe, options and the swapped module names), then loads
    the whole state, so every SparseLinear keeps its saved β (not one recomputed from the trained
    weight), its MVUE draw count and its FP8 amax history. `dtype` defaults to the saved
    ``config.dtype``; `overrides` replace saved options of every call (e.g. ``{"fast": True}``).
    Like ``transformers``' ``from_pretrained`` it returns the model in eval mode.
    """
    from .sparsify import apply_record

    config = model_class.config_class.from_pretrained(path)
    record = getattr(config, CONFIG_KEY, None)
    if not record:
        raise ValueError(f"s_ste.hf.from_pretrained: {path}/config.json has no {CONFIG_KEY!r} entry (saved before "
                         f"s_ste.sparsify?); load it with {model_class.__name__}.from_pretrained")
    if dtype is None:
        saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        dtype = getattr(torch, saved) if isinstance(saved, str) else saved
    with torch.device(device or "cpu"):
        model = model_class(config)
    if dtype is not None:
        model.to(dtype)  # SparseLinear keeps β and the FP8 amaxes float32
    setattr(model.config, CONFIG_KEY, None)  # apply_record writes it back, call by call
    apply_record(model, record, overrides or {})
    state = _saved_state(path)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"s_ste.hf.from_pretrained: {path} holds keys the sparsified model lacks: "
                         f"{result.unexpected_keys}")
    _check_missing(model, result.missing_keys, set(state), path)
    if os.path.exists(os.path.join(path, "generation_config.json")) and hasattr(model, "generation_config"):
        from transformers import GenerationConfig
        model.generation_config = GenerationConfig.from_pretrained(path)
    return model.eval()
