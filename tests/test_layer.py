"""SparseLinear, sparsify and to_inference against float64 references built from s_ste.reference."""
import warnings

import pytest
import torch
from torch import nn

import s_ste
from s_ste import reference as ref
from s_ste.autograd import sparse_linear_train

from conftest import randn

N, K, M = 64, 48, 20


def make_layer(recipe, mvue=False, fp8=False, bias=True, seed=0):
    torch.manual_seed(seed)
    layer = s_ste.SparseLinear(K, N, bias=bias, recipe=recipe, mvue=mvue, fp8=fp8, decay=1e-2, seed=11)
    return layer


def fake_quant64(t, dtype):
    q, s = ref.quantize_fp8(t.float().contiguous(), dtype)
    return q.double() * s.double()


def reference_step(layer, x, g):
    """(y, dx, dW, db) in float64 for one training step of `layer` on x with output grad g."""
    w = layer.weight.detach()
    if layer.recipe == "s-ste":
        beta = ref.scale_factor(w).double()
        w_hat = ref.soft_threshold_24(w.double())[0] * beta
        mask = ref.soft_threshold_24(w.double())[1]
    elif layer.recipe in ("ste", "sr-ste"):
        w_hat, mask = ref.hard_threshold_24(w.double())
    else:
        w_hat, mask = w.double(), torch.ones_like(w, dtype=torch.bool)
    xd, gd = x.double(), g.double()
    xq, wq, gq = xd, w_hat, gd
    if layer.fp8:
        xq, wq, gq = fake_quant64(xd, torch.float8_e4m3fn), fake_quant64(w_hat, torch.float8_e4m3fn), fake_quant64(gd, torch.float8_e5m2)
    y = xq @ wq.t() + layer.bias.detach().double()
    dx = gq @ wq
    g_t = gd.t()
    if layer.mvue:
        g_t = ref.mvue_24(g.float().t().contiguous(), 11, 0).double()
    if layer.fp8:
        g_t = fake_quant64(g_t, torch.float8_e5m2)
    dw = g_t @ xq
    if layer.recipe == "sr-ste":
        dw = dw + layer.decay * w.double() * (~mask)
    return y, dx, dw, gd.sum(0)


def rel_err(a, b):
    return ((a.double() - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("recipe", ["dense", "ste", "sr-ste", "s-ste"])
@pytest.mark.parametrize("mvue", [False, True])
@pytest.mark.parametrize("fp8", [False, True])
def test_forward_backward_against_float64(recipe, mvue, fp8):
    layer = make_layer(recipe, mvue=mvue, fp8=fp8)
    x = randn(M, K, seed=1).requires_grad_()
    g = randn(M, N, seed=2)
    y = layer(x)
    y.backward(g)
    ry, rdx, rdw, rdb = reference_step(layer, x.detach(), g)
    tol = 2e-2 if fp8 else 1e-5  # fp8: operands rounded at 2^-4 / 2^-3 relative
    assert rel_err(y, ry) < tol
    assert rel_err(x.grad, rdx) < tol
    assert rel_err(layer.weight.grad, rdw) < tol
    assert rel_err(layer.bias.grad, rdb) < 1e-6


def test_weight_is_two_four_and_gradient_straight_through():
    layer = make_layer("s-ste")
    w_hat = layer.sparse_weight()
    assert ((w_hat.detach().view(-1, 4) != 0).sum(-1) <= 2).all()
    w_hat.sum().backward()
    assert torch.equal(layer.weight.grad, torch.ones_like(layer.weight))


@pytest.mark.filterwarnings("ignore:Input #:UserWarning")
def test_sparse_linear_train_gradcheck():
    x = randn(6, 16, dtype=torch.float64, seed=3).float().requires_grad_()
    w = randn(8, 16, seed=4).requires_grad_()
    b = randn(8, seed=5).requires_grad_()
    rng = torch.tensor([0, 0])
    fn = lambda x, w, b: sparse_linear_train(x, w, b, rng, False, False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-2, atol=1e-3, rtol=1e-3)


def test_scale_is_computed_once_then_frozen_and_saved():
    layer = make_layer("s-ste")
    layer(randn(4, K))
    beta = layer.scale.clone()
    assert beta.item() == pytest.approx(ref.scale_factor(layer.weight.detach()).item(), rel=1e-6)
    with torch.no_grad():
        layer.weight.mul_(3.0)
    layer(randn(4, K))
    assert torch.equal(layer.scale, beta), "beta stays fixed while training"
    fresh = s_ste.SparseLinear(K, N, recipe="s-ste")
    fresh.load_state_dict(layer.state_dict())
    fresh(randn(4, K))
    assert torch.equal(fresh.scale, beta), "a loaded beta is not recomputed"
    fresh.reset_scale()
    assert fresh.scale.item() == pytest.approx(ref.scale_factor(fresh.weight.detach()).item(), rel=1e-6)


def test_mvue_draws_change_each_step_and_replay_from_state():
    layer = make_layer("s-ste", mvue=True)
    x, g = randn(M, K, seed=1), randn(M, N, seed=2)
    grads = []
    for _ in range(2):
        layer.weight.grad = None
        layer(x).backward(g)
        grads.append(layer.weight.grad.clone())
    assert not torch.equal(grads[0], grads[1]), "each step draws a new MVUE sample"
    replay = make_layer("s-ste", mvue=True)
    replay.load_state_dict(layer.state_dict())
    replay.mvue_state[1] = 1
    replay(x).backward(g)
    assert torch.equal(replay.weight.grad, grads[1])


def test_autocast_bfloat16():
    layer = make_layer("s-ste", mvue=True)
    x = randn(M, K, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    expect = reference_step(layer, x, torch.zeros(M, N))[0]
    assert rel_err(y, expect) < 1e-2
    y.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("recipe,fp8", [("s-ste", False), ("sr-ste", False), ("s-ste", True)])
def test_torch_compile_fullgraph(recipe, fp8):
    layer = make_layer(recipe, mvue=True, fp8=fp8)
    layer(randn(4, K))  # β set eagerly, as after the first step

    def loss_fn(x):
        return layer(x).square().mean()

    # fullgraph: the layer's forward and its registered backward trace with no graph break.
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    x = randn(M, K, seed=1)
    loss = compiled(x)
    loss.backward()
    grad = layer.weight.grad.clone()
    assert layer.mvue_state[1].item() == 2, "the compiled forward advanced the MVUE draw counter"
    layer.weight.grad = None
    layer.mvue_state[1] -= 1  # replay the same MVUE draw eagerly
    loss_eager = loss_fn(x)
    loss_eager.backward()
    assert torch.allclose(loss, loss_eager) and torch.allclose(layer.weight.grad, grad, rtol=1e-5, atol=1e-6)


class Block(nn.Module):
    """A tiny pre-norm transformer block with a classifier head that the kernels cannot take."""

    def __init__(self, d=64, heads=4):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.head = nn.Linear(d, 10)
        self.heads = heads

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        x = x + self.mlp(self.norm2(x))
        return self.head(x)


def test_sparsify_and_to_inference_on_a_block():
    torch.manual_seed(0)
    model = Block()
    fc1 = model.mlp[0].weight
    with pytest.warns(UserWarning, match=r"head \(64 -> 10\) stays dense"):
        s_ste.sparsify(model, recipe="s-ste")
    assert isinstance(model.mlp[0], s_ste.SparseLinear) and isinstance(model.qkv, s_ste.SparseLinear)
    assert type(model.head) is nn.Linear
    assert model.mlp[0].weight is fc1, "the swapped layer shares the parameter"

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = randn(2, 16, 64, seed=1)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    model.eval()
    inference = s_ste.to_inference(model)
    assert not any(isinstance(m, s_ste.SparseLinear) for m in inference.modules())
    w = inference.mlp[0].weight
    assert ((w.view(-1, 4) != 0).sum(-1) <= 2).all()
    with torch.no_grad():
        assert torch.allclose(inference(x), model(x), rtol=1e-5, atol=1e-6)


def test_sparsify_patterns():
    model = Block()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_ste.sparsify(model, recipe="ste", include=["mlp.*"])
    assert isinstance(model.mlp[0], s_ste.SparseLinear) and isinstance(model.mlp[2], s_ste.SparseLinear)
    assert type(model.qkv) is nn.Linear and model.mlp[0].recipe == "ste"
    model = Block()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_ste.sparsify(model, skip=["qkv", "proj"])
    assert type(model.qkv) is nn.Linear and type(model.proj) is nn.Linear
    assert isinstance(model.mlp[0], s_ste.SparseLinear)


def test_beta_stays_float32_through_dtype_conversion():
    layer = make_layer("s-ste")
    layer.reset_scale()
    beta = layer.scale.clone()
    layer.bfloat16()
    assert layer.weight.dtype == torch.bfloat16
    assert layer.scale.dtype == torch.float32 and torch.equal(layer.scale, beta), "β must not be rounded"
    assert layer.state_dict()["scale"].dtype == torch.float32
    values, _ = s_ste.prune_and_compress(layer.weight.detach(), layer.scale, "sm90")  # takes β as is
    assert values.dtype == torch.bfloat16


def test_beta_is_set_at_the_first_forward_even_in_eval():
    layer = make_layer("s-ste").eval()
    x = randn(4, K)
    with torch.no_grad():
        y = layer(x)
    assert layer.scale.item() == pytest.approx(ref.scale_factor(layer.weight.detach()).item(), rel=1e-6)
    with torch.no_grad():
        assert torch.allclose(s_ste.to_inference(layer)(x), y)


def test_to_inference_keeps_dense_recipe_layers_dense():
    layer = make_layer("dense")
    linear = s_ste.to_inference(layer)
    assert torch.equal(linear.weight, layer.weight), "a dense-recipe layer is not pruned"
