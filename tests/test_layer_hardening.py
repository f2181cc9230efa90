"""SparseLinear under bad and edge-case input (issue 11): non-finite weights, stale weight
caches, invalid checkpoints, the ops' autograd formulas, and the layer's argument errors."""
import copy
import warnings

import pytest
import torch
from torch import nn

import s_ste
from s_ste import fp8_scaling
from s_ste.weight_cache import WeightCache

from conftest import randn

ops = torch.ops.s_ste
FN, FK, FT = 64, 128, 40  # fast-path shapes (both layouts); 40 tokens: padded for the wgrad GEMM
NAN, INF = float("nan"), float("inf")
requires_fast_ops = pytest.mark.skipif(
    not (hasattr(ops, "mvue_24_t_compress") and hasattr(ops, "quantize_fp8_scaled")),
    reason="the extension predates mvue_24_t_compress / quantize_fp8_scaled")


def make(recipe="s-ste", fast=False, layout="sm90", fp8=False, mvue=True, seed=0, **kw):
    torch.manual_seed(seed)
    return s_ste.SparseLinear(FK, FN, recipe=recipe, mvue=mvue, fp8=fp8, seed=7, fast=fast,
                              layout=layout if fast else None, **kw)


def forward(layer, x, autocast=None):
    """The layer's output (float32) with bf16 autocast on the 16-bit fast path."""
    if autocast is None:
        autocast = bool(layer.fast) and not layer.fp8
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return layer(x).float()


# ------------------------------------------------------------------ non-finite weights


PATHS = [("semantic", False, None), ("fast-sm90", True, "sm90"), ("fast-sm80", True, "sm80")]


@pytest.mark.parametrize("path,fast,layout", PATHS, ids=[p[0] for p in PATHS])
@pytest.mark.parametrize("recipe", ["dense", "ste", "sr-ste", "s-ste"])
@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("pos", range(4))
def test_non_finite_weight_reaches_the_output(path, fast, layout, recipe, fp8, bad, pos):
    """A NaN/±Inf weight (at each position of its 2:4 group) makes the outputs of its row
    non-finite, as in a dense layer: never a finite answer."""
    if fast and (recipe == "dense" or (fp8 and layout == "sm80")):
        pytest.skip("that layer runs the semantic path")
    if fast and not hasattr(ops, "mvue_24_t_compress"):
        pytest.skip("old extension")
    layer = make(recipe, fast=fast, layout=layout or "sm90", fp8=fp8)
    x = randn(FT, FK, seed=1)
    forward(layer, x)  # a finite step first: β frozen, a cached weight and an FP8 history exist
    row, group = 5, 3
    with torch.no_grad():
        layer.weight[row, 4 * group + pos] = bad  # the weight diverges later in training
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = forward(layer, x)
    assert not torch.isfinite(y[:, row]).any(), f"row {row} of the output is finite: {y[:4, row].tolist()}"


def test_non_finite_weight_fp8_scale_is_nan_not_saturated():
    """The FP8 cast saturates ±Inf to ±448: the weight's scale must turn NaN instead."""
    amax = torch.tensor([1.0, INF, NAN])
    out = fp8_scaling.nan_unless_finite(torch.tensor(2.0), amax)
    assert out[0].item() == 2.0 and out[1:].isnan().all()


# ------------------------------------------------------------------ the fast path's weight cache


def fast_layer(fp8=False, recipe="s-ste"):
    layer = make(recipe, fast=True, fp8=fp8)
    layer.eval()  # no MVUE draw: forwards are repeatable
    return layer


def expected(layer, x):
    """The output of a fresh copy of `layer` (no cache) on x."""
    fresh = copy.deepcopy(layer)
    assert fresh._cache.entry is None
    return forward(fresh, x)


def run_twice(layer, x):
    """Forward once (fills the cache) and return x for the second forward."""
    forward(layer, x)
    assert layer._cache.entry is not None
    return x


@requires_fast_ops
@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("how", ["no_grad_mul_", "copy_", "data_assign", "data_assign_reused_address",
                                 "load_state_dict", "optimizer_step", "data_inplace_then_invalidate"])
def test_cache_sees_every_weight_update(how, fp8):
    layer = fast_layer(fp8)
    x = run_twice(layer, bf16(FT, FK, seed=1))
    w = layer.weight
    new = (w.detach() * 1.5 + 0.25).clone()
    if how == "no_grad_mul_":
        with torch.no_grad():
            w.mul_(1.5).add_(0.25)
    elif how == "copy_":
        with torch.no_grad():
            w.copy_(new)
    elif how == "data_assign":
        w.data = new
    elif how == "data_assign_reused_address":
        # The cached key's storage address freed and handed to the next tensor of the same
        # size: the address alone must not make the new weight look cached.
        ptr = w.data_ptr()
        w.data = w.detach().clone()
        for _ in range(8):
            cand = new.clone()
            if cand.data_ptr() == ptr:
                break
        w.data = cand
    elif how == "load_state_dict":
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        state["weight"] = new
        layer.load_state_dict(state)
    elif how == "optimizer_step":
        opt = torch.optim.SGD([w], lr=1.0)
        w.grad = -(new - w.detach())
        opt.step()
    elif how == "data_inplace_then_invalidate":
        w.data.mul_(1.5).add_(0.25)  # `.data` has its own version counter: undetectable...
        layer.invalidate_cache()     # ...so the documented remedy
    assert torch.allclose(layer.weight.detach(), new)
    assert torch.equal(forward(layer, x), expected(layer, x)), f"stale compressed weight after {how}"


@requires_fast_ops
@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("how", ["reset_scale", "scale_fill_", "scale_assign", "scale_load", "recipe"])
def test_cache_sees_every_beta_update(how, fp8):
    layer = fast_layer(fp8)
    x = bf16(FT, FK, seed=1)
    forward(layer, x)
    with torch.no_grad():
        layer.weight.add_(randn(FN, FK, seed=9).abs())  # β of the first forward is now stale
    forward(layer, x)
    before = forward(layer, x)
    if how == "reset_scale":
        layer.reset_scale()
    elif how == "scale_fill_":
        layer.scale.fill_(0.5)
    elif how == "scale_assign":
        layer.scale = torch.tensor(0.5)
    elif how == "scale_load":
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        state["scale"] = torch.tensor(0.5)
        layer.load_state_dict(state)
    elif how == "recipe":
        layer.recipe = "ste"
    got = forward(layer, x)
    assert not torch.equal(got, before), f"{how}: the output must change"
    assert torch.equal(got, expected(layer, x)), f"stale compressed weight after {how}"


@requires_fast_ops
def test_cache_still_hits_without_updates(monkeypatch):
    calls = []
    real = s_ste.ops.prune_and_compress_dense
    monkeypatch.setattr(s_ste.ops, "prune_and_compress_dense", lambda *a, **k: calls.append(1) or real(*a, **k))
    layer = fast_layer()
    x = bf16(FT, FK, seed=1)
    for _ in range(3):
        forward(layer, x)
    assert len(calls) == 1, "an unchanged weight is compressed once"
    layer.invalidate_cache()
    forward(layer, x)
    assert len(calls) == 2


def bf16(*shape, seed):
    return randn(*shape, seed=seed).bfloat16().float()


# ------------------------------------------------------------------ checkpoints


def holder(fp8=True):
    torch.manual_seed(0)
    return nn.ModuleDict({"fc1": s_ste.SparseLinear(FK, FN, fp8=fp8)})


def good_state():
    model = holder()
    model["fc1"].reset_scale()
    return {k: v.clone() for k, v in model.state_dict().items()}


BAD_STATES = [
    ("fc1.scale", 0.0), ("fc1.scale", -0.5), ("fc1.scale", NAN), ("fc1.scale", INF),
    ("fc1.fp8_amax_history", NAN), ("fc1.fp8_amax_history", INF), ("fc1.fp8_amax_history", -1.0),
    ("fc1.fp8_amax_pending", NAN), ("fc1.fp8_amax_pending", INF), ("fc1.fp8_amax_pending", -0.5),
]


@pytest.mark.parametrize("key,value", BAD_STATES)
def test_invalid_checkpoint_is_refused_naming_the_key(key, value):
    state = good_state()
    state[key].view(-1)[-1] = value
    model = holder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=key.replace(".", r"\.")):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) or (v.isnan().all() and before[k].isnan().all()), f"{k} was loaded"


@pytest.mark.parametrize("key,value", [("fc1.scale", NAN), ("fc1.fp8_amax_pending", -1.0)])
def test_valid_edge_states_load(key, value):
    state = good_state()
    if key == "fc1.scale":
        state["fc1.scale_ready"] = torch.tensor(False)  # an unset β is recomputed at the first forward
    state[key].view(-1)[-1] = value
    model = holder()
    model.load_state_dict(state)
    y = model["fc1"](randn(8, FK, seed=1))
    assert torch.isfinite(y).all()


# ------------------------------------------------------------------ autograd of the ops


def test_thresholds_are_straight_through():
    for op in (ops.soft_threshold_24, ops.hard_threshold_24):
        w = randn(8, 16, seed=1).requires_grad_()
        g = randn(8, 16, seed=2)
        pruned, mask = op(w)
        assert not mask.requires_grad
        pruned.backward(g)
        assert torch.equal(w.grad, g), op


def kept_position_map(values, meta, layout):
    """Column of each value in the dense matrix, found one values column at a time (one-hots):
    independent of the order the backward assumes."""
    N, half = values.shape
    cols = torch.empty(N, half, dtype=torch.long)
    for j in range(half):
        onehot = torch.zeros_like(values)
        onehot[:, j] = 1
        dense = ops.decompress(onehot, meta, layout)
        assert ((dense != 0).sum(1) == 1).all()
        cols[:, j] = dense.argmax(1)
    return cols


@pytest.mark.parametrize("layout", ["sm80", "sm90"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sparse_linear_gradients_against_float64(layout, dtype):
    N, K = 32, 64
    w = randn(N, K, seed=1)
    values, meta = ops.prune_and_compress(w, torch.tensor(0.9), layout, dtype)
    values = values.detach().requires_grad_()
    x = randn(3, 5, K, dtype=dtype, seed=2).requires_grad_()
    bias = randn(N, dtype=dtype, seed=3).requires_grad_()
    g = randn(3, 5, N, dtype=dtype, seed=4)
    ops.sparse_linear(x, values, meta, bias, layout).backward(g)
    dense = ops.decompress(values.detach(), meta, layout).double()
    gd, xd = g.double().reshape(-1, N), x.detach().double().reshape(-1, K)
    dw = gd.t() @ xd
    expect_dvalues = dw.gather(1, kept_position_map(values.detach(), meta, layout))
    tol = dict(rtol=2e-2, atol=2e-2)
    assert torch.allclose(x.grad.double(), (gd @ dense).reshape(x.shape), **tol)
    assert torch.allclose(values.grad.double(), expect_dvalues, **tol)
    assert torch.allclose(bias.grad.double(), gd.sum(0), **tol)
    assert values.grad.dtype == dtype and x.grad.dtype == dtype


def test_sparse_linear_fp8_gradient_is_refused_except_bias():
    w = randn(32, 64, seed=1)
    v8, m8 = ops.prune_and_compress(w, torch.tensor(100.0), "sm90", torch.float8_e4m3fn)
    xq, s = ops.quantize_fp8(randn(8, 64, dtype=torch.bfloat16, seed=2), torch.float8_e4m3fn)
    bias = randn(32, dtype=torch.bfloat16, seed=3).requires_grad_()
    alpha = (s / 100).requires_grad_()
    y = ops.sparse_linear(xq, v8, m8, bias, "sm90", alpha.detach())
    y.float().sum().backward()
    assert torch.equal(bias.grad, torch.ones(8, 32, dtype=torch.bfloat16).sum(0))
    y = ops.sparse_linear(xq, v8, m8, bias, "sm90", alpha)
    with pytest.raises(RuntimeError, match=r"sparse_linear: no gradient with respect to alpha for FP8 values"):
        y.float().sum().backward()


OPCHECK_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


@pytest.mark.parametrize("case", ["soft", "hard", "sparse_linear_sm80", "sparse_linear_sm90"])
def test_opcheck_with_gradients(case):
    w = randn(32, 64, seed=1)
    if case in ("soft", "hard"):
        op = ops.soft_threshold_24 if case == "soft" else ops.hard_threshold_24
        args = (w.clone().requires_grad_(),)
    else:
        layout = case[-4:]
        values, meta = ops.prune_and_compress(w, torch.tensor(0.9), layout, torch.bfloat16)
        x = randn(8, 64, dtype=torch.bfloat16, seed=2)
        bias = randn(32, dtype=torch.bfloat16, seed=3)
        op = ops.sparse_linear
        args = (x.requires_grad_(), values.requires_grad_(), meta, bias.requires_grad_(), layout)
    torch.library.opcheck(op, args, test_utils=OPCHECK_UTILS)


# ------------------------------------------------------------------ the layer's argument errors


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 2**70])
def test_seed_outside_int64_is_refused(seed):
    with pytest.raises(ValueError, match=r"SparseLinear: seed must fit in int64"):
        s_ste.SparseLinear(16, 16, seed=seed)


def test_seed_edges_and_types():
    for seed in (2**63 - 1, -(2**63)):
        s_ste.SparseLinear(16, 16, seed=seed)
    with pytest.raises(TypeError, match=r"SparseLinear: seed must be an int"):
        s_ste.SparseLinear(16, 16, seed=1.5)


@pytest.mark.parametrize("shape", [(0, 8), (8, 0), (-4, 8), (8, -1)])
def test_empty_or_negative_features_are_refused(shape):
    with pytest.raises(ValueError, match=r"SparseLinear: (in|out)_features must be a positive int"):
        s_ste.SparseLinear(*shape)


def test_float64_is_refused_at_construction_and_forward():
    with pytest.raises(TypeError, match=r"weight dtype torch.float64 is unsupported.*float32, bfloat16 and float16"):
        s_ste.SparseLinear(16, 16, dtype=torch.float64)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.raises(TypeError, match=r"float64 is unsupported"):
            s_ste.SparseLinear(16, 16)
    finally:
        torch.set_default_dtype(default)
    layer = s_ste.SparseLinear(16, 16, name="fc1").double()
    with pytest.raises(TypeError, match=r"SparseLinear fc1: weight dtype torch.float64 is unsupported"):
        layer(torch.randn(2, 16, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"SparseLinear fc1: input dtype torch.float64 is unsupported"):
        s_ste.SparseLinear(16, 16, name="fc1")(torch.randn(2, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"SparseLinear fc1: input must have shape \[\.\.\., 16\]"):
        s_ste.SparseLinear(16, 16, name="fc1")(torch.randn(2, 12))


EMPTY_CASES = [(False, None, False), (False, None, True), (True, "sm90", False), (True, "sm80", False),
               (True, "sm90", True)]


@pytest.mark.parametrize("fast,layout,fp8", EMPTY_CASES)
@pytest.mark.parametrize("mvue", [False, True])
def test_empty_batch_gives_zero_gradients(fast, layout, fp8, mvue):
    if fast and not hasattr(ops, "mvue_24_t_compress"):
        pytest.skip("old extension")
    layer = make("s-ste", fast=fast, layout=layout or "sm90", fp8=fp8, mvue=mvue)
    twin = copy.deepcopy(layer)
    x = torch.zeros(0, FK, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: the fast path itself takes an empty batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast and not fp8):
            y = layer(x)
    assert y.shape == (0, FN)
    y.float().sum().backward()
    assert x.grad.shape == (0, FK)
    assert torch.equal(layer.weight.grad, torch.zeros_like(layer.weight))
    assert torch.equal(layer.bias.grad, torch.zeros_like(layer.bias))
    # The empty step leaves the FP8 first-step logic and the amax state as they were.
    xs, g = bf16(FT, FK, seed=1), bf16(FT, FN, seed=2)
    twin.mvue_rng = layer.mvue_rng.clone()  # (the empty step took an MVUE draw, as every step does)
    for m in (layer, twin):
        m.weight.grad = m.bias.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast and not fp8):
            out = m(xs)
        out.backward(g.to(out.dtype))
    assert torch.equal(layer.weight.grad, twin.weight.grad)
    if fp8:
        assert torch.equal(layer.fp8_amax_history, twin.fp8_amax_history)


GRADSCALER_CASES = [(False, False), (False, True), (True, False), (True, True)]


@pytest.mark.parametrize("fast,fp8", GRADSCALER_CASES)
def test_grad_scaler_skips_an_overflowed_step(fast, fp8):
    """A loss-scaler overflow (Inf in the output gradient) must reach the weight gradient as
    Inf/NaN, so GradScaler skips the step instead of the backward raising."""
    if fast and not hasattr(ops, "mvue_24_t_compress"):
        pytest.skip("old extension")
    layer = make("s-ste", fast=fast, fp8=fp8)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    x = bf16(FT, FK, seed=1)
    forward(layer, x)  # a finite first step (FP8: amax history exists)
    before = copy.deepcopy(layer.state_dict())
    opt.zero_grad()
    loss = forward(layer, x).square().sum() * 1e10  # × 2**100: the scaled gradient overflows float32
    scaler.scale(loss).backward()
    assert not torch.isfinite(layer.weight.grad).all(), "the overflow must be visible in the weight gradient"
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() < 2.0**100, "the scaler saw the overflow"
    assert torch.equal(layer.weight, before["weight"]) and torch.equal(layer.bias, before["bias"]), "step skipped"
    if fp8:  # the saved state stays loadable after an overflow
        holder_ = nn.ModuleDict({"fc1": make("s-ste", fast=fast, fp8=fp8)})
        holder_["fc1"].load_state_dict(layer.state_dict())
        assert torch.isfinite(layer.fp8_amax_pending).all()


@requires_fast_ops
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
@pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")
def test_fsdp2_sharded_parameter_update_changes_the_cache_key(tmp_path, monkeypatch):
    """FSDP2 (one rank, in process): the unsharded weight FSDP2 gathers into need not show an
    in-place change of the sharded DTensor parameter (same id; on two ranks the same version,
    and the same address whenever the allocator hands the block back): the key must move
    through the sharded parameter's version."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0, world_size=1)
    try:
        layer = fast_layer()
        keys = []
        real = WeightCache.key
        monkeypatch.setattr(WeightCache, "key", lambda self, *a: keys.append(real(self, *a)) or keys[-1])
        root = nn.Sequential(layer)
        fully_shard(layer)  # (not the root: resharded after each forward)
        fully_shard(root)
        x = bf16(8, FK, seed=1)
        a = forward(root, x, autocast=True)
        with torch.no_grad():
            layer.weight.mul_(0.5)  # between forwards: the sharded DTensor parameter
        assert type(layer.weight).__name__ == "DTensor"
        b = forward(root, x, autocast=True)
        sharded0, sharded1 = keys[0][3], keys[1][3]
        assert sharded0 is not None and sharded0 != sharded1, "the sharded parameter's version is in the key"
        assert keys[0] != keys[1]
        assert torch.allclose(b, a * 0.5 + layer.bias.float().full_tensor() * 0.5, rtol=2e-2, atol=2e-2)
    finally:
        dist.destroy_process_group()
