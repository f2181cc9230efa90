"""Hugging Face integration: resume a sparse model from ``save_pretrained``.

Nothing here imports ``transformers`` at import time: the helpers that need the library import
it when called. Re-exported for HF users:

- :class:`SparseConv1D` (s_ste.conv1d): the :class:`~s_ste.nn.SparseLinear` of
  ``transformers.pytorch_utils.Conv1D`` (GPT-2's ``attn.c_attn``/``c_proj``, ``mlp.c_fc``/``c_proj``):
  ``weight`` stays ``[in, out]`` so HF checkpoints load unchanged; the 2:4 groups still run along
  the input dimension.
- ``FFN_SUFFIXES``, :func:`is_ffn` (s_ste.sparsify): what ``sparsify(model, include="ffn")`` swaps, per family.
- :func:`from_pretrained`: a sparse model back from ``save_pretrained``, with its saved β, MVUE
  draw counts and FP8 histories (the recipe is read from ``config.json``'s ``s_ste`` entry).
"""
from __future__ import annotations

import json
import os

import torch
from torch import nn

from .conv1d import SparseConv1D
from .sparsify import CONFIG_KEY, FFN_SUFFIXES, apply_record, is_ffn

__all__ = ["SparseConv1D", "FFN_SUFFIXES", "is_ffn", "from_pretrained"]


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
