"""Hugging Face models on the CPU: tiny random configs, no download. sparsify (GPT-2's Conv1D, the
FFN patterns), save_pretrained + s_ste.hf.from_pretrained resume bit for bit, and to_inference
checkpoints that a plain transformers (no s_ste) loads and runs with identical outputs."""
import json
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

import s_ste
from s_ste.hf import SparseConv1D

from conftest import assert_bits_equal, randn

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
)
from transformers.pytorch_utils import Conv1D  # noqa: E402

VOCAB, T = 128, 16


def tiny_gpt2():
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=VOCAB, n_positions=32, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config)


def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=32, bos_token_id=0,
                         eos_token_id=0, pad_token_id=0)
    return LlamaForCausalLM(config)


def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=2,
                        vocab_size=VOCAB, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertModel(config)


MODELS = {"gpt2": (tiny_gpt2, GPT2LMHeadModel), "llama": (tiny_llama, LlamaForCausalLM)}


def token_ids(seed=0, batch=2):
    return torch.randint(0, VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


def sparse_names(model):
    return sorted(n for n, m in model.named_modules() if isinstance(m, s_ste.SparseLinear))


# ---------------------------------------------------------------- which layers, which shapes


def test_gpt2_ffn_swaps_exactly_the_mlp_conv1ds_and_keeps_their_layout():
    model = tiny_gpt2()
    dense = {k: v.shape for k, v in model.state_dict().items()}
    fc = model.transformer.h[0].mlp.c_fc.weight
    s_ste.sparsify(model, include="ffn")
    assert sparse_names(model) == [f"transformer.h.{i}.mlp.{n}" for i in range(2) for n in ("c_fc", "c_proj")]
    layer = model.transformer.h[0].mlp.c_fc
    assert type(layer) is SparseConv1D and layer.weight is fc, "the Conv1D parameter itself, shared"
    assert (layer.in_features, layer.out_features, layer.nx, layer.nf) == (64, 256, 64, 256)
    assert type(model.transformer.h[0].attn.c_attn) is Conv1D and type(model.lm_head) is nn.Linear
    state = model.state_dict()
    assert all(state[k].shape == shape for k, shape in dense.items()), "HF checkpoints load unchanged"
    extra = sorted(set(state) - set(dense))
    assert extra == sorted(f"transformer.h.{i}.mlp.{n}.{b}" for i in range(2) for n in ("c_fc", "c_proj")
                           for b in ("scale", "scale_ready", "mvue_state"))


def test_gpt2_all_conv1ds_with_include_none():
    model = tiny_gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every GPT-2 shape here fits the kernels: no warning
        s_ste.sparsify(model)
    assert sum(type(m) is SparseConv1D for m in model.modules()) == 8
    assert isinstance(model.lm_head, s_ste.SparseLinear), "the tied head (128 x 64) is eligible"
    assert model.lm_head.weight is model.transformer.wte.weight, "tying survives the swap"
    model = s_ste.sparsify(tiny_gpt2(), include=["*.mlp.*"])  # the call, which swapped nothing
    assert sum(type(m) is SparseConv1D for m in model.modules()) == 4


def test_llama_ffn():
    model = s_ste.sparsify(tiny_llama(), include="ffn")
    assert sparse_names(model) == [f"model.layers.{i}.mlp.{n}" for i in range(2)
                                   for n in ("down_proj", "gate_proj", "up_proj")]
    assert all(type(m) is s_ste.SparseLinear for n, m in model.named_modules() if n in sparse_names(model))


def test_bert_ffn_leaves_the_attention_output_dense():
    model = s_ste.sparsify(tiny_bert(), include="ffn")
    assert sparse_names(model) == [f"encoder.layer.{i}.{n}.dense" for i in range(2)
                                   for n in ("intermediate", "output")]
    assert type(model.encoder.layer[0].attention.output.dense) is nn.Linear


# ---------------------------------------------------------------- SparseConv1D == SparseLinear on Wᵀ


@pytest.mark.parametrize("fast,fp8", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("recipe", ["s-ste", "sr-ste"])
def test_sparse_conv1d_is_a_sparse_linear_on_the_transposed_weight(fast, fp8, recipe):
    # The fast path's 16-bit GEMMs take bf16/fp16 operands; its FP8 path casts float32 itself.
    dtype = torch.bfloat16 if fast and not fp8 else torch.float32
    K, N = 64, 96
    w_in_out = randn(K, N, dtype=dtype, seed=1)
    kwargs = dict(recipe=recipe, mvue=True, fp8=fp8, seed=3, fast=fast, layout="sm90" if fast else None,
                  dtype=dtype, decay=1e-2)
    conv = SparseConv1D(K, N, **kwargs)
    linear = s_ste.SparseLinear(K, N, **kwargs)
    with torch.no_grad():
        conv.weight.copy_(w_in_out)
        linear.weight.copy_(w_in_out.t())
        conv.bias.copy_(randn(N, dtype=dtype, seed=2))
        linear.bias.copy_(conv.bias)
    assert conv.weight.shape == (K, N)
    x = randn(4, 10, K, dtype=dtype, seed=4)
    g = randn(4, 10, N, dtype=dtype, seed=5)
    xc, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
    for _ in range(2):  # two steps: the MVUE draw advances, the cache is rebuilt after the update
        conv.zero_grad(), linear.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a fall back from the fast path warns: it must not happen here
            yc, yl = conv(xc), linear(xl)
        assert_bits_equal(yc, yl, "forward")
        yc.backward(g), yl.backward(g)
        assert conv.weight.grad.shape == (K, N)
        assert_bits_equal(conv.weight.grad, linear.weight.grad.t().contiguous(), "weight gradient")
        assert_bits_equal(conv.bias.grad, linear.bias.grad, "bias gradient")
        assert_bits_equal(xc.grad, xl.grad, "input gradient")
        with torch.no_grad():
            conv.weight.sub_(0.1 * conv.weight.grad)
            linear.weight.sub_(0.1 * linear.weight.grad)
    assert torch.equal(conv.scale, linear.scale), "β from the groups along the input dimension"
    assert conv.mvue_rng.tolist() == linear.mvue_rng.tolist() == [3, 2]


def test_sparse_conv1d_groups_run_along_the_input_dimension():
    conv = SparseConv1D(64, 32, recipe="ste")
    w_hat = conv.sparse_weight().detach()  # [out, in]
    assert w_hat.shape == (32, 64)
    assert ((w_hat.reshape(32, 16, 4) != 0).sum(-1) == 2).all()
    assert torch.equal(w_hat, s_ste.hard_threshold_24(conv.weight.detach().t().contiguous())[0])


# ---------------------------------------------------------------- save_pretrained -> resume


def train(model, opt, steps, autocast, first_seed):
    losses = []
    for step in range(steps):
        ids = token_ids(first_seed + step)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses)


# (fast, fp8): the semantic path; the fast path (CPU kernels, bf16 autocast); the fast FP8 path
# (float32 master weights, E4M3/E5M2 GEMM operands, delayed scaling: the amax histories resume too).
MODES = {"semantic": (False, False), "fast": (True, False), "fast-fp8": (True, True)}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_resume_from_save_pretrained_is_bit_exact(tmp_path, family, mode):
    build, model_class = MODELS[family]
    fast, fp8 = MODES[mode]
    autocast = fast and not fp8
    N_STEPS, M_STEPS = 3, 2
    options = dict(include="ffn", fast=fast, fp8=fp8, layout="sm90" if fast else None, amax_history_len=4)

    model = s_ste.sparsify(build(), **options).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, opt, N_STEPS, autocast, 0)
    model.save_pretrained(tmp_path)
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    saved_beta = {n: m.scale.clone() for n, m in model.named_modules() if isinstance(m, s_ste.SparseLinear)}
    straight = train(model, opt, M_STEPS, autocast, N_STEPS)

    recorded = json.loads((tmp_path / "config.json").read_text())["s_ste"]
    assert sorted(recorded["calls"][0]["modules"]) == sparse_names(model) and recorded["calls"][0]["fast"] is fast

    resumed = s_ste.hf.from_pretrained(model_class, str(tmp_path))
    assert type(resumed) is model_class and not resumed.training
    assert sparse_names(resumed) == sparse_names(model)
    for name, module in resumed.named_modules():
        if isinstance(module, s_ste.SparseLinear):
            assert module._scale_ready and torch.equal(module.scale, saved_beta[name]), f"{name}: the saved β"
            assert module.mvue_rng.tolist()[1] == N_STEPS, f"{name}: the MVUE draw count"
            assert module.fast is fast and module.fp8 is fp8
    if family == "gpt2":
        assert resumed.lm_head.weight is resumed.transformer.wte.weight, "tied weights stay tied"
    resumed.train()
    opt2 = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(torch.load(tmp_path / "optimizer.pt"))
    again = train(resumed, opt2, M_STEPS, autocast, N_STEPS)
    layers = [m for m in (*model.modules(), *resumed.modules()) if isinstance(m, s_ste.SparseLinear)]
    assert not any(m._warned for m in layers), "no layer fell back from the path under test"

    assert_bits_equal(again, straight, "losses after the resume")
    final, final2 = model.state_dict(), resumed.state_dict()
    assert final.keys() == final2.keys()
    for key in final:
        assert_bits_equal(final2[key], final[key], key)


def test_resumed_beta_is_not_recomputed_from_the_trained_weight(tmp_path):
    model = s_ste.sparsify(tiny_gpt2(), include="ffn").train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
    train(model, opt, 3, False, 0)
    layer = model.transformer.h[0].mlp.c_fc
    recomputed = s_ste.scale_factor(layer.weight.detach().t().contiguous())
    assert not torch.equal(recomputed, layer.scale), "the test needs a β that training would move"
    model.generation_config.max_length = 7  # not the default: it must come from generation_config.json
    model.save_pretrained(tmp_path)
    resumed = s_ste.hf.from_pretrained(GPT2LMHeadModel, tmp_path)  # a Path works too
    assert resumed.generation_config.max_length == 7, "generation_config.json is read"
    resumed(input_ids=token_ids())  # the first forward must not reset β
    assert torch.equal(resumed.transformer.h[0].mlp.c_fc.scale, layer.scale)


def test_from_pretrained_overrides_and_refuses_a_dense_checkpoint(tmp_path):
    model = s_ste.sparsify(tiny_llama(), include="ffn", fast=False)
    model.save_pretrained(tmp_path / "sparse")
    resumed = s_ste.hf.from_pretrained(LlamaForCausalLM, str(tmp_path / "sparse"), overrides={"fast": True})
    assert resumed.model.layers[0].mlp.up_proj.fast is True
    tiny_llama().save_pretrained(tmp_path / "dense")
    with pytest.raises(ValueError, match=r"config.json has no 's_ste' entry"):
        s_ste.hf.from_pretrained(LlamaForCausalLM, str(tmp_path / "dense"))


def test_from_pretrained_reads_a_sharded_checkpoint(tmp_path):
    model = s_ste.sparsify(tiny_gpt2(), include="ffn")
    model(input_ids=token_ids())  # β set at the first forward
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and not (tmp_path / "model.safetensors").exists()
    resumed = s_ste.hf.from_pretrained(GPT2LMHeadModel, tmp_path)
    for key, value in model.state_dict().items():
        assert_bits_equal(resumed.state_dict()[key], value, key)


def test_from_pretrained_names_the_missing_keys(tmp_path):
    model = s_ste.sparsify(tiny_llama(), include="ffn")
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file
    state = load_file(tmp_path / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.scale"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lacks \['model.layers.1.mlp.up_proj.scale'\]"):
        s_ste.hf.from_pretrained(LlamaForCausalLM, str(tmp_path))


# ---------------------------------------------------------------- to_inference -> plain transformers


PLAIN_LOAD = textwrap.dedent("""
    import sys
    sys.modules["s_ste"] = sys.modules["s_ste_cuda"] = None  # importing them fails: a plain transformers install
    import torch, transformers
    path, cls, out = sys.argv[1], sys.argv[2], sys.argv[3]
    model = getattr(transformers, cls).from_pretrained(path)
    ids = torch.load(path + "/ids.pt")
    with torch.no_grad():
        torch.save(model(input_ids=ids).logits, out)
    assert not [n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in ("s_ste", "s_ste_cuda")]
""")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_to_inference_loads_in_plain_transformers_with_identical_outputs(tmp_path, family):
    build, model_class = MODELS[family]
    model = s_ste.sparsify(build(), include="ffn").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, opt, 2, False, 0)
    model.eval()
    exported = s_ste.to_inference(model)
    assert not any(isinstance(m, s_ste.SparseLinear) for m in exported.modules())
    assert not hasattr(exported.config, "s_ste") and hasattr(model.config, "s_ste"), "only the copy loses the record"
    if family == "gpt2":
        fc = exported.transformer.h[0].mlp.c_fc
        assert type(fc) is Conv1D and fc.weight.shape == (64, 256)
        assert ((fc.weight.t().reshape(256, 16, 4) != 0).sum(-1) <= 2).all(), "2:4 along the input dimension"
    else:
        up = exported.model.layers[0].mlp.up_proj
        assert type(up) is nn.Linear and ((up.weight.reshape(128, 16, 4) != 0).sum(-1) <= 2).all()

    ids = token_ids(7)
    with torch.no_grad():
        expected = exported(input_ids=ids).logits
        assert torch.allclose(expected, model(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
    exported.save_pretrained(tmp_path)
    assert "s_ste" not in json.loads((tmp_path / "config.json").read_text())
    torch.save(ids, tmp_path / "ids.pt")
    out = tmp_path / "logits.pt"
    subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(tmp_path), model_class.__name__, str(out)], check=True,
                   cwd=tmp_path, timeout=300)
    assert torch.equal(torch.load(out), expected)
