"""SparseLinear, sparsify and to_inference against float64 references built from s_ste.reference."""
import warnings

import pytest
import torch
from torch import nn

import s_ste
from s_ste import reference as ref
from s_ste.semantic import sparse_linear_train

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
    state = layer.state_dict()
    assert state["mvue_state"].tolist() == [11, 2], "the live draw count (mvue_rng) is saved"
    state["mvue_state"][1] = 1
    replay = make_layer("s-ste", mvue=True)
    replay.load_state_dict(state)
    assert replay.mvue_rng.tolist() == [11, 1] and replay.mvue_rng.device.type == "cpu"
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
    assert layer.mvue_rng[1].item() == 1, "the compiled backward advanced the MVUE draw counter"
    layer.weight.grad = None
    layer.mvue_rng[1] -= 1  # replay the same MVUE draw eagerly
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


# ---------------------------------------------------------------- the fast path (on the CPU kernels)

from s_ste import fp8_scaling  # noqa: E402

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
requires_fast_ops = pytest.mark.skipif(
    not (hasattr(torch.ops.s_ste, "mvue_24_t_compress") and hasattr(torch.ops.s_ste, "quantize_fp8_scaled")),
    reason="the extension predates mvue_24_t_compress / quantize_fp8_scaled")
FN, FK, FT = 64, 128, 128  # fast-path shapes: both layouts' alignments, tokens a multiple of 64


def bf16_exact(*shape, seed, scale=1.0):
    """float32 data exactly representable in bf16 (so a bf16 and a float32 MVUE pick the same survivors)."""
    return (randn(*shape, seed=seed) * scale).bfloat16().float()


def fast_pair(recipe, layout, mvue=True, fp8=False, seed=0):
    """(fast layer, semantic layer) with the same parameters and MVUE seed."""
    torch.manual_seed(seed)
    fast = s_ste.SparseLinear(FK, FN, recipe=recipe, mvue=mvue, fp8=fp8, decay=1e-2, seed=11, fast=True, layout=layout)
    slow = s_ste.SparseLinear(FK, FN, recipe=recipe, mvue=mvue, fp8=fp8, decay=1e-2, seed=11, fast=False)
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def step(layer, x, g, autocast=True):
    x = x.clone().requires_grad_()
    layer.weight.grad = layer.bias.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x)
    y.backward(g.to(y.dtype))
    return y.detach().float(), x.grad.float(), layer.weight.grad.clone(), layer.bias.grad.clone()


@requires_fast_ops
@pytest.mark.parametrize("layout", ["sm80", "sm90"])
@pytest.mark.parametrize("recipe,mvue", [("s-ste", True), ("s-ste", False), ("ste", True), ("sr-ste", True)])
def test_fast_path_against_float64_and_semantic_path(layout, recipe, mvue):
    fast, slow = fast_pair(recipe, layout, mvue)
    x, g = bf16_exact(FT, FK, seed=1), bf16_exact(FT, FN, seed=2)
    got, sem = step(fast, x, g), step(slow, x, g)
    ref = reference_step(fast, x, g)
    for name, a, b, r in zip(("y", "dx", "dW", "db"), got, sem, ref):
        assert rel_err(a, r) < 1e-2, f"{name} vs float64"           # bf16 operands: ~2^-8 relative
        assert rel_err(a, b.double()) < 1e-2, f"{name} vs the semantic path"
    assert fast.mvue_rng.tolist() == slow.mvue_rng.tolist() == [11, int(mvue)]


@requires_fast_ops
def test_fast_path_pads_tokens_and_keeps_leading_dims():
    fast, _ = fast_pair("s-ste", "sm80", mvue=True)
    x = bf16_exact(3, 7, FK, seed=1)  # 21 tokens: padded to 64 for the weight-gradient GEMM
    y, dx, dw, db = step(fast, x, bf16_exact(3, 7, FN, seed=2))
    assert y.shape == (3, 7, FN) and dx.shape == x.shape
    g = bf16_exact(21, FN, seed=2)
    # mvue_24_t_compress on the zero-padded gradient = mvue_24 of the padded transpose.
    h = ref.mvue_24(torch.nn.functional.pad(g.t(), (0, 64 - 21)).contiguous(), 11, 0)[:, :21].double()
    expect = h @ x.reshape(21, FK).bfloat16().double()
    assert rel_err(dw, expect) < 1e-2


def history_reference(amaxes, length):
    """Newest-first history of the last `length` amaxes (0-padded), and scale = fp8_max / max."""
    h = (list(reversed(amaxes)) + [0.0] * length)[:length]
    return h


@requires_fast_ops
def test_fast_path_fp8_delayed_scaling_against_float64():
    """Three steps with inputs and gradients of different magnitudes: every cast must use the
    scale of the amax history of the *previous* steps (current amax on the first step), and
    the history must hold exactly the amaxes of x, ŵ, g and the MVUE sample."""
    torch.manual_seed(0)
    layer = s_ste.SparseLinear(FK, FN, recipe="s-ste", mvue=True, fp8=True, seed=11, fast=True, layout="sm90",
                               amax_history_len=2)
    w = layer.weight.detach()
    layer.reset_scale()
    beta = layer.scale.double()
    w_hat = ref.soft_threshold_24(w.double())[0] * beta
    # Small magnitudes: a wrong scale (e.g. 1) would underflow E4M3/E5M2 and fail the tolerances.
    mags = [(1e-3, 1e-4), (4e-3, 2e-5), (5e-4, 3e-4)]
    hx, hg, hh = [], [], []
    amax_w = (w.abs().amax().double() * beta).item()  # the S-STE bound of max|ŵ|

    def q(t, s, dtype):  # the saturating cast with scale s, dequantized, in float64
        m = fp8_scaling.FP8_MAX[dtype]
        return (t.float() * torch.tensor(s, dtype=torch.float32)).clamp(-m, m).to(dtype).double() / s

    for i, (mx, mg) in enumerate(mags):
        x = randn(FT, FK, seed=10 + i) * mx
        g = randn(FT, FN, seed=20 + i) * mg
        y, dx, dw, db = step(layer, x, g, autocast=False)
        s_x = 448.0 / (max(hx[-2:]) if hx else x.abs().amax().item())
        s_w = 448.0 / amax_w
        s_g = 57344.0 / (max(hg[-2:]) if hg else g.abs().amax().item())
        s_h = 57344.0 / (max(hh[-2:]) if hh else 4 * g.abs().amax().item())
        s_x, s_w, s_g, s_h = (torch.tensor(v, dtype=torch.float32).item() for v in (s_x, s_w, s_g, s_h))
        xq, wq, gq = q(x, s_x, E4M3), q(w_hat, s_w, E4M3), q(g.bfloat16(), s_g, E5M2)
        h = ref.mvue_24(g.bfloat16().t().contiguous(), 11, i).double()  # g arrives in bf16 (y's dtype)
        hq = q(h, s_h, E5M2)
        assert rel_err(y, xq @ wq.t() + layer.bias.detach().double()) < 1e-2, f"y, step {i}"
        assert rel_err(dx, gq @ wq) < 1e-2, f"dx, step {i}"
        assert rel_err(dw, hq @ xq) < 2e-2, f"dW, step {i}"
        hx.append(x.abs().amax().item())
        hg.append(g.bfloat16().abs().amax().item())
        hh.append(h.abs().amax().item())
    hist = layer.fp8_amax_history
    # x is folded at the next forward: after 3 steps its history holds steps 0, 1 (newest first).
    assert hist[fp8_scaling.X].tolist() == pytest.approx(history_reference(hx[:2], 2), rel=1e-6)
    assert hist[fp8_scaling.W].tolist() == pytest.approx([amax_w, 0.0], rel=1e-6), "one push per weight update"
    assert hist[fp8_scaling.GRAD].tolist() == pytest.approx(history_reference(hg[:2], 2), rel=1e-6)
    pending = layer.fp8_amax_pending.tolist()
    assert pending[fp8_scaling.X] == pytest.approx(hx[2], rel=1e-6)
    assert pending[fp8_scaling.GRAD] == pytest.approx(hg[2], rel=1e-6)
    assert pending[fp8_scaling.GRAD_MVUE] == pytest.approx(hh[2], rel=1e-5)


def test_amax_history_fold_push_and_scales():
    history, pending = fp8_scaling.new_state(3)
    seq = [[1.0, -1.0, 2.0, float("nan")], [4.0, -1.0, float("inf"), 0.5], [-1.0, -1.0, 8.0, 0.25]]
    for p in seq:
        pending.copy_(torch.tensor(p))
        fp8_scaling.fold(history, pending)
        assert (pending == -1).all(), "fold clears the pending amaxes"
    # −1 = no new amax (row unchanged); NaN/Inf are recorded as 0.
    assert history.tolist() == [[4.0, 1.0, 0.0], [0.0, 0.0, 0.0], [8.0, 0.0, 2.0], [0.25, 0.5, 0.0]]
    fp8_scaling.push(history, fp8_scaling.W, torch.tensor(3.0))
    assert history[fp8_scaling.W].tolist() == [3.0, 0.0, 0.0]
    s = fp8_scaling.scales(history)
    expect = torch.tensor([448 / 4, 448 / 3, 57344 / 8, 57344 / 0.5], dtype=torch.float32)
    assert torch.equal(s, expect)
    # Guards of quantize_fp8: amax 0 -> 1, overflow -> float32 max.
    assert fp8_scaling.scale_from_amax(torch.tensor(0.0), 448.0).item() == 1.0
    assert fp8_scaling.scale_from_amax(torch.tensor(1e-45), 448.0).item() == torch.finfo(torch.float32).max
    with pytest.raises(ValueError):
        fp8_scaling.new_state(0)


@requires_fast_ops
def test_weight_cache_rebuilt_only_when_the_weight_changes(monkeypatch):
    calls = []
    real = s_ste.ops.prune_and_compress_dense
    monkeypatch.setattr(s_ste.ops, "prune_and_compress_dense", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast, _ = fast_pair("s-ste", "sm90")
    x, g = bf16_exact(FT, FK, seed=1), bf16_exact(FT, FN, seed=2)
    opt = torch.optim.SGD(fast.parameters(), lr=0.1)
    step(fast, x, g)
    y1 = step(fast, x, g)[0]
    assert len(calls) == 1, "two forwards, one weight: one prune_and_compress"
    opt.step()  # bumps weight._version
    y2 = step(fast, x, g)[0]
    assert len(calls) == 2 and not torch.equal(y1, y2)
    fast.load_state_dict(_fresh_state(fast))
    step(fast, x, g)
    assert len(calls) == 3, "load_state_dict copies into the weight: rebuilt"
    fast.weight = nn.Parameter(fast.weight.detach().clone() * 2)  # a new tensor (e.g. FSDP re-sharding)
    y4 = step(fast, x, g)[0]
    assert len(calls) == 4 and torch.allclose(y4, step(fast, x, g)[0])
    assert len(calls) == 4
    # FSDP2's pattern: the optimizer updates a shard, then the all-gather writes the unsharded
    # weight through another tensor on its storage (its version counter does not move).
    shard = nn.Parameter(fast.weight.detach().clone())
    shard_opt = torch.optim.SGD([shard], lr=0.5)
    shard.grad = torch.ones_like(shard)
    shard_opt.step()
    alias = torch.empty(0).set_(fast.weight.untyped_storage(), 0, fast.weight.shape)
    version = fast.weight._version
    with torch.no_grad():
        alias.copy_(shard)
    assert fast.weight._version == version
    step(fast, x, g)
    assert len(calls) == 5, "any optimizer step invalidates the cache"
    assert not any("cache" in k for k in fast.state_dict()), "the compressed weight is not state"
    import copy
    assert copy.deepcopy(fast)._cache.entry is None


def _fresh_state(layer):
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state["weight"] = state["weight"] + 0.01
    return state


@requires_fast_ops
@pytest.mark.parametrize("fp8", [False, True])
def test_fast_path_torch_compile_fullgraph(fp8):
    import copy
    fast, _ = fast_pair("s-ste", "sm90", mvue=True, fp8=fp8)
    eager = copy.deepcopy(fast)
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    for i in range(2):
        x, g = bf16_exact(FT, FK, seed=1 + i), bf16_exact(FT, FN, seed=2 + i)
        a, b = step(compiled, x, g, autocast=not fp8), step(eager, x, g, autocast=not fp8)
        for name, u, v in zip(("y", "dx", "dW", "db"), a, b):
            assert torch.allclose(u, v, rtol=1e-5, atol=1e-6), f"{name}, step {i}"
    assert fast.mvue_rng.tolist() == eager.mvue_rng.tolist() == [11, 2]
    if fp8:  # (the compiled forward re-casts ŵ, so pushes its amax, every call: row W differs)
        rows = [fp8_scaling.X, fp8_scaling.GRAD, fp8_scaling.GRAD_MVUE]
        assert torch.equal(fast.fp8_amax_history[rows], eager.fp8_amax_history[rows])
    torch._dynamo.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not fp8):
        explain = torch._dynamo.explain(fast)(bf16_exact(FT, FK, seed=1))
    assert explain.graph_count == 1 and explain.graph_break_count == 0


@requires_fast_ops
@pytest.mark.parametrize("fp8", [False, True])
def test_fast_path_activation_checkpointing(fp8):
    import copy
    from torch.utils.checkpoint import checkpoint
    fast, _ = fast_pair("s-ste", "sm90", mvue=True, fp8=fp8)
    ckpt = copy.deepcopy(fast)
    for i in range(2):
        x, g = bf16_exact(FT, FK, seed=1 + i), bf16_exact(FT, FN, seed=2 + i)
        a = step(fast, x, g, autocast=not fp8)
        xc = x.clone().requires_grad_()
        ckpt.weight.grad = ckpt.bias.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not fp8):
            y = checkpoint(ckpt, xc, use_reentrant=False)
        y.backward(g.to(y.dtype))
        for name, u, v in zip(("y", "dx", "dW", "db"), a, (y.float(), xc.grad.float(), ckpt.weight.grad,
                                                          ckpt.bias.grad)):
            assert torch.equal(u, v.detach()), f"{name}, step {i}: the recompute replays the same draw and scales"
    assert ckpt.mvue_rng.tolist() == [11, 2], "the recompute does not advance the MVUE count"
    if fp8:
        assert torch.equal(fast.fp8_amax_history, ckpt.fp8_amax_history)


@requires_fast_ops
def test_fast_path_falls_back_with_one_warning_naming_the_layer():
    torch.manual_seed(0)
    layer = s_ste.SparseLinear(FK, 48, recipe="s-ste", fast=True, layout="sm80", name="blocks.0.mlp.fc")
    ref_layer = s_ste.SparseLinear(FK, 48, recipe="s-ste", fast=False)
    ref_layer.load_state_dict(layer.state_dict())
    x = bf16_exact(8, FK, seed=1)
    with pytest.warns(UserWarning, match=r"blocks\.0\.mlp\.fc: fast path unavailable \(sm80 needs"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(layer(x), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(ref_layer(x), y), "the fallback is the semantic path"
    f32 = s_ste.SparseLinear(FK, FN, fast=True, layout="sm90")
    with pytest.warns(UserWarning, match=r"compute dtype torch.float32"):
        f32(x)


def test_sparsify_names_layers_and_passes_fast_options():
    model = Block()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_ste.sparsify(model, include=["mlp.*"], fast=False, layout="sm80", amax_history_len=4, fp8=True)
    fc = model.mlp[0]
    assert fc.name == "mlp.0" and fc.fast is False and fc.layout == "sm80"
    assert fc.fp8_amax_history.shape == (len(fp8_scaling.KINDS), 4)
    model.bfloat16()
    assert fc.fp8_amax_history.dtype == torch.float32, "amaxes stay float32 through dtype casts"


def test_mvue_key_includes_the_rank():
    """Under torch.distributed each rank draws its own MVUE sample: key = seed + rank·2³²."""
    layer = make_layer("s-ste", mvue=True)
    layer._rank = 3  # what the first forward reads from torch.distributed.get_rank()
    x, g = randn(M, K, seed=1), randn(M, N, seed=2)
    layer(x).backward(g)
    g_t = torch.nn.functional.pad(g.t(), (0, (-M) % 4)).contiguous()
    h = ref.mvue_24(g_t, 11 + (3 << 32), 0)[:, :M].double()
    assert rel_err(layer.weight.grad, h @ x.double()) < 1e-5
    assert layer.mvue_rng.tolist() == [11, 1], "the saved seed is the rank-free one"


def fast_op_cases():
    """opcheck cases of the fast path's two custom ops (bf16 sm80 and FP8 sm90)."""
    ops = torch.ops.s_ste
    torch.manual_seed(0)
    w = randn(FN, FK, seed=3)
    beta = torch.tensor(0.9)
    x = randn(40, FK, dtype=torch.bfloat16, seed=4)  # 40 tokens: padded to 64 / 32
    g = randn(40, FN, dtype=torch.bfloat16, seed=5)
    rng = torch.tensor([3, 4])
    v80, m80 = ops.prune_and_compress(w, beta, "sm80", torch.bfloat16)
    dense80 = ops.decompress(v80, m80, "sm80")
    scales = torch.tensor([100.0, 200.0, 3000.0, 1000.0])
    v8, m8 = ops.prune_and_compress(w, beta * scales[1], "sm90", torch.float8_e4m3fn)
    wq_t = ops.decompress(v8, m8, "sm90").t().contiguous()
    xq_t = ops.quantize_fp8_scaled(torch.nn.functional.pad(x, (0, 0, 0, 24)), scales[:1], E4M3, True)[1]
    amax = torch.full((4,), -1.0)
    wr = w.clone().requires_grad_()
    return [
        (ops.fast_linear, (x.clone().requires_grad_(), wr, v80, m80, dense80, randn(FN, dtype=torch.bfloat16),
                           rng, None, None, "sm80", True, True, False, 0.0), {}),
        (ops.fast_linear, (x.float().requires_grad_(), wr, v8, m8, wq_t, None, rng, scales, amax, "sm90", True,
                           True, False, 1e-2), {}),
        (ops.fast_linear_backward, (g, x, dense80, rng, None, None, "sm80", True, False, True), {}),
        (ops.fast_linear_backward, (g, x, dense80, rng, None, None, "sm80", False, False, True), {}),
        (ops.fast_linear_backward, (g, xq_t, wq_t, rng, scales, amax.clone(), "sm90", True, True, True), {}),
        (ops.fast_linear_backward, (g, xq_t, wq_t, rng, scales, amax.clone(), "sm90", False, False, True), {}),
        (ops.fast_linear_backward, (g, xq_t[:0], wq_t, rng, scales, amax.clone(), "sm90", True, False, False),
         {}),
    ]


@requires_fast_ops
@pytest.mark.parametrize("case", range(7))
def test_fast_ops_opcheck(case):
    op, args, kwargs = fast_op_cases()[case]
    fp8 = (E4M3, E5M2)
    utils = ["test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"]
    if any(isinstance(a, torch.Tensor) and a.dtype in fp8 for a in args):
        utils.remove("test_schema")  # torch compares FP8 inputs arithmetically: it has no FP8 arithmetic
    outs = op(*args, **kwargs)
    if any(o.dtype in fp8 for o in outs):
        utils.remove("test_aot_dispatch_dynamic")  # (sums FP8 outputs)
    torch.library.opcheck(op, args, kwargs, test_utils=tuple(utils))


@requires_fast_ops
@pytest.mark.parametrize("fp8", [False, True])
def test_fast_path_frozen_weight_gives_input_gradient_only(fp8):
    fast, _ = fast_pair("s-ste", "sm90", mvue=True, fp8=fp8)
    ref_layer = copy_layer(fast)
    fast.weight.requires_grad_(False)
    x, g = bf16_exact(FT, FK, seed=1), bf16_exact(FT, FN, seed=2)
    xg = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not fp8):
        y = fast(xg)
    y.backward(g.to(y.dtype))
    assert fast.weight.grad is None and fast.bias.grad is not None
    expect = step(ref_layer, x, g, autocast=not fp8)
    assert torch.equal(xg.grad.float(), expect[1]), "dx as with a trainable weight"


def copy_layer(layer):
    import copy
    return copy.deepcopy(layer)
