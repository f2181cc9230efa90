"""sparsify's selection and swapping rules on plain torch modules (the HF models are in test_hf.py)."""
import warnings

import pytest
import torch
from torch import nn

import s_ste

from conftest import randn


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_a_bare_linear_comes_back_swapped():
    linear = nn.Linear(64, 32)
    layer = s_ste.sparsify(linear, recipe="ste")
    assert isinstance(layer, s_ste.SparseLinear) and layer.recipe == "ste"
    assert layer.weight is linear.weight and layer.bias is linear.bias
    assert "" not in linear.__dict__ and not hasattr(linear, ""), "no attribute named ''"
    x = randn(3, 64)
    with torch.no_grad():
        assert torch.equal(layer(x), s_ste.to_inference(layer)(x))


def test_a_bare_linear_of_a_bad_shape_stays_dense_with_a_warning():
    linear = nn.Linear(64, 10)
    with pytest.warns(UserWarning, match=r"Linear \(64 -> 10\) stays dense"):
        assert s_ste.sparsify(linear) is linear


class SharedTwice(nn.Module):
    """One Linear registered under two parents (and twice in one parent)."""

    def __init__(self):
        super().__init__()
        shared = nn.Linear(64, 64)
        self.a = nn.Sequential(shared, nn.ReLU())
        self.b = nn.Sequential(nn.ReLU(), shared)
        self.c = shared

    def forward(self, x):
        return self.b(self.a(x)) + self.c(x)


def test_a_shared_linear_is_swapped_everywhere_by_one_layer():
    model = SharedTwice()
    weight = model.c.weight
    s_ste.sparsify(model)
    layer = model.a[0]
    assert isinstance(layer, s_ste.SparseLinear) and layer.weight is weight
    assert model.b[1] is layer and model.c is layer, "every place holds the same SparseLinear"
    assert len([m for m in model.modules() if isinstance(m, s_ste.SparseLinear)]) == 1
    inference = s_ste.to_inference(model)
    assert inference.a[0] is inference.b[1] is inference.c, "the export keeps the sharing"
    assert type(inference.c) is nn.Linear


def test_a_string_include_is_one_pattern():
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    quiet(s_ste.sparsify, model, include="1")
    assert type(model[0]) is nn.Linear and isinstance(model[1], s_ste.SparseLinear)


class TimmMlp(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)


class TimmAttention(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)


class TimmBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.mlp = TimmAttention(), TimmMlp()


class TimmViT(nn.Module):
    """timm's ViT names: blocks.N.attn.{qkv,proj}, blocks.N.mlp.{fc1,fc2}, head."""

    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Linear(48, 64)
        self.blocks = nn.Sequential(TimmBlock(), TimmBlock())
        self.head = nn.Linear(64, 32)


def sparse_names(model):
    return sorted(n for n, m in model.named_modules() if isinstance(m, s_ste.SparseLinear))


def test_ffn_on_timm_style_names():
    model = TimmViT()
    s_ste.sparsify(model, include="ffn")
    assert sparse_names(model) == ["blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]


def test_ffn_combines_with_patterns_and_skip():
    model = TimmViT()
    s_ste.sparsify(model, include=["ffn", "blocks.0.attn.*"], skip=["blocks.1.*"])
    assert sparse_names(model) == ["blocks.0.attn.proj", "blocks.0.attn.qkv", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"]


def test_ffn_on_a_bare_block_and_bert_names():
    assert sparse_names(s_ste.sparsify(TimmBlock(), include="ffn")) == ["mlp.fc1", "mlp.fc2"]
    assert s_ste.hf.is_ffn("encoder.layer.3.output.dense") and s_ste.hf.is_ffn("encoder.layer.3.intermediate.dense")
    assert not s_ste.hf.is_ffn("encoder.layer.3.attention.output.dense")
    assert not s_ste.hf.is_ffn("transformer.h.0.attn.c_proj") and s_ste.hf.is_ffn("transformer.h.0.mlp.c_proj")


def test_no_match_warns_with_the_patterns():
    with pytest.warns(UserWarning, match=r"no nn.Linear or Conv1D was swapped \(include='ffn'"):
        s_ste.sparsify(SharedTwice(), include="ffn")


def test_seeds_follow_the_module_index():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    s_ste.sparsify(model, seed=5)
    assert model[0].mvue_state.tolist() == [6, 0] and model[2].mvue_state.tolist() == [8, 0]


def test_plain_models_get_no_record():
    model = TimmViT()
    s_ste.sparsify(model, include="ffn")
    assert not hasattr(model, "config")


def test_importing_s_ste_does_not_import_transformers():
    import subprocess
    import sys
    code = "import sys, s_ste; assert 'transformers' not in sys.modules, 'transformers imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
