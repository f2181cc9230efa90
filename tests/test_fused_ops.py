"""The fused training ops on the CPU path: mvue_24_t_compress (MVUE of grad_outᵀ, compressed
for the weight-gradient GEMM) and quantize_fp8_scaled (delayed-scaling FP8 cast with the
transposed copy and amax). Against s_ste.reference bit for bit, and against the composition
of the unfused ops for the layouts and dtypes the reference does not cover."""
import pytest
import torch

import s_ste
from s_ste import ops, reference as ref

from conftest import FLOAT_DTYPES, HALF_DTYPES, assert_bits_equal, randn

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
BETA = torch.tensor(1.0)


def assert_same_or_both_nan(a, b, what):
    """Bits equal, except that NaN may differ in payload (a NaN is a NaN on every path)."""
    nan = a.float().isnan() & b.float().isnan()
    a2, b2 = a.clone(), b.clone()
    a2[nan], b2[nan] = 0, 0
    assert_bits_equal(a2, b2, what)
    assert torch.equal(a.float().isnan(), b.float().isnan()), f"{what}: NaN positions differ"


# ---- mvue_24_t_compress ----

@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("out_dtype", HALF_DTYPES)
@pytest.mark.parametrize("T,N", [(32, 32), (96, 64), (160, 96)])
def test_mvue_t_compress_matches_reference(in_dtype, out_dtype, T, N):
    g = randn(T, N, dtype=in_dtype, seed=T + N)
    scale = torch.tensor(0.6875)
    got = s_ste.mvue_24_t_compress(g, 11, 3, "sm80", out_dtype, scale)
    want = ref.mvue_24_t_compress(g, 11, 3, "sm80", out_dtype, scale)
    for a, b, what in zip(got, want, ("values", "meta", "amax")):
        assert_bits_equal(a, b, what)


# Shapes that are not multiples of the CUDA kernels' tiles (64 rows x 128 tokens), and the
# smallest legal ones, for the sm90 layout (rows free, tokens % 16; % 32 for FP8).
SM90_SHAPES = [(16, 1), (32, 8), (48, 100), (144, 66), (160, 72), (288, 130)]


@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("out_dtype", HALF_DTYPES + FP8)
@pytest.mark.parametrize("T,N", SM90_SHAPES)
def test_mvue_t_compress_equals_the_unfused_ops(in_dtype, out_dtype, T, N):
    if out_dtype in FP8 and T % 32:
        pytest.skip("FP8 values need tokens % 32")
    g = randn(T, N, dtype=in_dtype, seed=T * N)
    scale = torch.tensor(3.5 if out_dtype in FP8 else 1.0)
    values, meta, amax = s_ste.mvue_24_t_compress(g, 5, 1 << 33, "sm90", out_dtype, scale)
    h = s_ste.mvue_24(g.t().contiguous(), 5, 1 << 33)
    want_v, want_m = s_ste.prune_and_compress(h, scale, "sm90", out_dtype)
    assert_bits_equal(values, want_v, "values")
    assert_bits_equal(meta, want_m, "meta")
    assert_bits_equal(amax, h.float().abs().amax(), "amax")


def test_mvue_t_compress_default_layout_scale_and_dtype():
    g = randn(64, 32, dtype=torch.bfloat16, seed=2)
    values, meta, _ = s_ste.mvue_24_t_compress(g, 1)  # sm90, scale 1, bf16
    want_v, want_m = s_ste.prune_and_compress(s_ste.mvue_24(g.t().contiguous(), 1, 0), torch.tensor(1.0), "sm90")
    assert_bits_equal(values, want_v, "values")
    assert_bits_equal(meta, want_m, "meta")


@pytest.mark.parametrize("layout,out_dtype", [("sm80", torch.bfloat16), ("sm90", torch.float16), ("sm90", torch.float8_e5m2)])
def test_mvue_t_compress_keeps_non_finite_groups_visible(layout, out_dtype):
    g = randn(64, 32, seed=4)
    g[5, 3], g[40, 7], g[41, 7] = float("nan"), float("inf"), -float("inf")
    values, meta, amax = s_ste.mvue_24_t_compress(g, 2, 0, layout, out_dtype)
    assert amax.isnan()
    dense = s_ste.decompress(values, meta, layout).float()  # [N, T]
    for n, t in ((3, 5), (7, 40)):
        group = dense[n, t // 4 * 4: t // 4 * 4 + 4]
        assert group[:2].isnan().all() and (group[2:] == 0).all(), group
    assert dense.isnan().sum() == 4  # the two bad groups only
    if layout == "sm80":
        want = ref.mvue_24_t_compress(g, 2, 0, "sm80", out_dtype)
        for a, b, what in zip((values, meta, amax), want, ("values", "meta", "amax")):
            assert_same_or_both_nan(a, b, what)


def test_mvue_t_compress_all_zero_and_single_nonzero_groups():
    g = torch.zeros(32, 32)
    g[1, 0] = -2.0  # group (n=0, tokens 0..3) has one non-zero
    values, meta, amax = s_ste.mvue_24_t_compress(g, 0, 0, "sm80", torch.bfloat16)
    dense = s_ste.decompress(values, meta, "sm80").float()
    assert dense[0, 1] == -2.0 and dense.count_nonzero() == 1 and amax == 2.0
    want = ref.mvue_24_t_compress(g, 0, 0, "sm80", torch.bfloat16)
    for a, b, what in zip((values, meta, amax), want, ("values", "meta", "amax")):
        assert_bits_equal(a, b, what)


def test_mvue_t_compress_is_unbiased():
    """E[decompress(mvue_24_t_compress(g))] = gᵀ: the mean over 600 seeds is within 5 standard
    errors of gᵀ at every element (the MVUE variance is known from its inclusion probabilities)."""
    g = randn(32, 32, seed=9)
    draws = torch.stack([s_ste.decompress(*s_ste.mvue_24_t_compress(g, s, 0, "sm80", torch.float16)[:2], "sm80").float()
                         for s in range(600)])
    mean, std = draws.mean(0), draws.std(0)
    err = (mean - g.t().half().float()).abs()
    assert (err <= 5 * std / 600 ** 0.5 + 2e-3).all(), err.max()
    # exactly two of every four survive in every group (the data has no zeros)
    assert draws.count_nonzero() == draws.numel() // 2


def test_weight_gradient_through_sparse_linear():
    """dWᵀ = sparse_linear(xᵀ, mvue_24_t_compress(g)) equals MVUE(gᵀ)·x in float64."""
    tokens, n_out, k_in = 128, 64, 96
    g = randn(tokens, n_out, dtype=torch.bfloat16, seed=1)
    x = randn(tokens, k_in, dtype=torch.bfloat16, seed=2)
    values, meta, _ = s_ste.mvue_24_t_compress(g, 4, 2, "sm80")
    dw_t = s_ste.sparse_linear(x.t().contiguous(), values, meta, None, "sm80")
    exact = (ref.mvue_24(g.t().contiguous(), 4, 2).double() @ x.double()).t()
    assert ((dw_t.double() - exact).norm() / exact.norm()).item() < 1e-2


# ---- quantize_fp8_scaled ----

@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("dtype", FP8)
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (64, 128), (130, 70)])
def test_quantize_fp8_scaled_matches_reference(in_dtype, dtype, shape):
    x = randn(*shape, dtype=in_dtype, seed=shape[1]) * 50
    scale = torch.tensor(torch.finfo(dtype).max / 100)  # some values saturate
    got = s_ste.quantize_fp8_scaled(x, scale, dtype, True)
    want = ref.quantize_fp8_scaled(x, scale, dtype, True)
    for a, b, what in zip(got, want, ("q", "q_t", "amax")):
        assert_bits_equal(a, b, what)
    assert got[1].shape == (shape[1], shape[0])


def test_quantize_fp8_scaled_without_transpose_any_shape():
    x = randn(3, 5, 37, dtype=torch.bfloat16, seed=3)  # numel % 16 != 0
    q, q_t, amax = s_ste.quantize_fp8_scaled(x, torch.tensor([2.0]), torch.float8_e4m3fn)
    assert q.shape == x.shape and q_t.numel() == 0
    want = ref.quantize_fp8_scaled(x, torch.tensor([2.0]), torch.float8_e4m3fn)
    assert_bits_equal(q, want[0], "q")
    assert_bits_equal(amax, want[2], "amax")


def test_quantize_fp8_scaled_delayed_scaling_matches_quantize_fp8():
    """With the scale quantize_fp8 would pick (from this amax), the bytes are quantize_fp8's."""
    x = randn(48, 80, seed=8)
    q0, scale_inv = s_ste.quantize_fp8(x, torch.float8_e5m2)
    q, _, amax = s_ste.quantize_fp8_scaled(x, 1 / scale_inv, torch.float8_e5m2)
    assert_bits_equal(q, q0, "q")
    assert amax == x.abs().max()


def test_quantize_fp8_scaled_non_finite():
    x = randn(16, 16, seed=5)
    x[2, 3] = float("inf")
    q, _, amax = s_ste.quantize_fp8_scaled(x, torch.tensor(1.0), torch.float8_e4m3fn)
    assert amax.isinf() and q[2, 3].float() == 448  # saturates, as quantize_fp8's rounding does
    x[4, 4] = float("nan")
    q, q_t, amax = s_ste.quantize_fp8_scaled(x, torch.tensor(1.0), torch.float8_e4m3fn, True)
    assert amax.isnan() and q[4, 4].float().isnan() and q_t[4, 4].float().isnan()


def test_quantize_fp8_scaled_empty():
    q, q_t, amax = s_ste.quantize_fp8_scaled(torch.empty(0, 8), torch.tensor(1.0), torch.float8_e5m2, True)
    assert q.shape == (0, 8) and q_t.shape == (8, 0) and amax == 0


def test_one_nan_encoding_on_every_path():
    """Kernels write NaN as float32 0x7fc00000, 16-bit 0x7FFF, FP8 0x7F whatever the payload or
    sign the arithmetic made (x86 makes negative NaNs, the GPU positive ones): the GPU tests
    then compare NaN bits too."""
    g = randn(64, 32, seed=4)
    g[5, 3] = float("inf")
    for dtype, nan_bits in ((torch.bfloat16, 0x7FFF), (torch.float16, 0x7FFF)):
        values = s_ste.mvue_24_t_compress(g, 2, 0, "sm90", dtype)[0]
        nans = values.isnan()
        assert nans.sum() == 2 and (values.view(torch.int16)[nans] == nan_bits).all()
    q = s_ste.mvue_24_t_compress(g, 2, 0, "sm90", torch.float8_e5m2)[0]
    assert (q.view(torch.uint8) == 0x7F).sum() == 2
    # inf - inf inside the soft threshold makes a NaN on the CPU with the sign bit set
    w = torch.tensor([[float("inf"), float("inf"), float("inf"), 1.0] + [1.0] * 28] * 32)
    v, _ = s_ste.prune_and_compress(w, torch.tensor(1.0), "sm90", torch.float8_e4m3fn)
    assert v.view(torch.uint8)[0, 0] == 0x7F
    neg_nan = torch.zeros(4) / 0  # 0xFFC00000 on x86
    q, _, amax = s_ste.quantize_fp8_scaled(neg_nan, torch.tensor(1.0), torch.float8_e4m3fn)
    assert (q.view(torch.uint8) == 0x7F).all() and amax.view(torch.int32) == 0x7FC00000
    pruned = s_ste.soft_threshold_24(w.bfloat16())[0]
    assert (pruned.view(torch.int16)[pruned.isnan()] == 0x7FFF).all()


# ---- prune_and_compress_dense: values + meta + dense ŵ in one pass ----

def special_weight(rows, K, seed):
    """Random groups with, at the start of every row, the groups where pruning is delicate:
    ±0, NaN and ±Inf at each position, magnitude ties, all-zero and one-non-zero groups."""
    nan, inf = float("nan"), float("inf")
    groups = [[0.0, -0.0, 0.0, -0.0], [-0.0, -0.0, -0.0, -0.0], [1.5, -0.0, 0.0, -0.0], [-0.0, 0.0, -2.0, -0.0],
              [0.0, 0.0, 0.0, 3.0], [0.0, -0.0, -0.0, -3.0], [nan, 1.0, 2.0, 3.0], [1.0, nan, -2.0, 0.0],
              [1.0, 2.0, -0.0, nan], [nan, nan, nan, nan], [inf, -inf, 1.0, 2.0], [inf, inf, inf, inf],
              [-inf, 0.0, -0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [2.0, 2.0, 1.0, 1.0],
              [1.0, 2.0, 2.0, 1.0], [-1.0, 1.0, -0.0, 0.0], [1e-40, -1e-40, 0.0, 1e-39], [0.5, 0.25, -0.0, -0.5]]
    w = randn(rows, K, seed=seed)
    special = torch.tensor(groups).view(1, -1)[:, :K]
    w[:, :special.shape[1]] = special
    return w


def test_the_special_weight_tests_what_it_says():
    w = special_weight(32, 96, 0)
    assert (w == 0).any() and torch.signbit(w[w == 0]).any() and w.isnan().any() and w.isinf().any()


DENSE_CASES = [("sm80", o, (64, 96)) for o in HALF_DTYPES] + [("sm80", torch.bfloat16, (32, 32))] + [
    ("sm90", o, s) for o in HALF_DTYPES for s in [(1, 16), (40, 80), (130, 336), (8, 48)]] + [
    ("sm90", o, s) for o in FP8 for s in [(1, 32), (40, 96), (130, 352)]]


@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("layout,out_dtype,shape", DENSE_CASES)
@pytest.mark.parametrize("hard", [False, True])
def test_prune_and_compress_dense_equals_the_unfused_ops(in_dtype, layout, out_dtype, shape, hard):
    # K not a multiple of 32 (sm90 16-bit: 16, 48, 80, 336) runs a short tail chunk; rows not a
    # multiple of the CUDA tile (64) a partial tile.
    w = special_weight(*shape, seed=shape[1]).to(in_dtype)
    for beta in (0.75, 1.0, -1.5) if out_dtype in HALF_DTYPES else (96.0, -0.03):
        scale = torch.tensor(beta)
        values, meta, dense = ops.prune_and_compress_dense(w, scale, layout, out_dtype, hard)
        src = s_ste.hard_threshold_24(w)[0] if hard else w
        want_values, want_meta = s_ste.prune_and_compress(src, scale, layout, out_dtype)
        assert_bits_equal(values, want_values, "values")
        assert_bits_equal(meta, want_meta, "meta")
        assert_bits_equal(dense, s_ste.decompress(want_values, want_meta, layout, validate=False), "dense")


def test_prune_and_compress_dense_hard_is_the_ste_route_and_differs_from_soft():
    w = randn(32, 64, seed=3).bfloat16()
    soft = ops.prune_and_compress_dense(w, BETA, "sm80")
    hard = ops.prune_and_compress_dense(w, BETA, "sm80", hard=True)
    assert torch.equal(soft[1], hard[1]), "the same mask (the top-2 magnitudes)"
    assert not torch.equal(soft[0], hard[0]), "the soft threshold shrinks the kept values"
    assert_bits_equal(hard[2], s_ste.hard_threshold_24(w)[0], "hard dense = the hard-pruned weight at beta 1")


def test_prune_and_compress_dense_defaults():
    w = randn(32, 64, seed=4).half()
    got = ops.prune_and_compress_dense(w, BETA)
    assert got[0].dtype == got[2].dtype == torch.float16 and got[1].dtype == torch.int16, "sm80, w's dtype"
    for a, b in zip(got, ops.prune_and_compress_dense(w, BETA, "sm80", None, False)):
        assert_bits_equal(a, b)


# ---- sparse_linear(out_transposed=True): yᵀ, the weight gradient in its parameter's layout ----

@pytest.mark.parametrize("layout,dtype", [("sm80", torch.bfloat16), ("sm80", torch.float16), ("sm90", torch.bfloat16)] +
                         [("sm90", f) for f in FP8])
@pytest.mark.parametrize("T", [1, 40, 64])
def test_sparse_linear_out_transposed_is_the_transpose(layout, dtype, T):
    N, K = 64, 96 if layout == "sm90" else 64
    fp8 = dtype in FP8
    values, meta = s_ste.prune_and_compress(randn(N, K, seed=T), torch.tensor(50.0 if fp8 else 1.0), layout, dtype)
    x = randn(T, K, seed=T + 1)
    x, alpha = (s_ste.quantize_fp8(x, torch.float8_e4m3fn)[0], torch.tensor(0.02)) if fp8 else (x.to(dtype), None)
    yt = s_ste.sparse_linear(x, values, meta, None, layout, alpha, out_transposed=True)
    assert yt.shape == (N, T) and yt.is_contiguous()
    assert_bits_equal(yt, s_ste.sparse_linear(x, values, meta, None, layout, alpha).t().contiguous(), "yᵀ")


def test_sparse_linear_out_transposed_rules():
    values, meta = s_ste.prune_and_compress(randn(32, 64).bfloat16(), BETA)
    x = randn(8, 64).bfloat16()
    with pytest.raises(ValueError, match=r"sparse_linear: bias must be None with out_transposed=True"):
        s_ste.sparse_linear(x, values, meta, torch.zeros(32, dtype=torch.bfloat16), out_transposed=True)
    with pytest.raises(ValueError, match=r"sparse_linear: out_transposed=True needs a 2-D x"):
        s_ste.sparse_linear(x.view(2, 4, 64), values, meta, out_transposed=True)
    for bad in (lambda t: t.to("meta"),):  # the fake kernel raises the same
        with pytest.raises(ValueError, match=r"bias must be None with out_transposed=True"):
            s_ste.sparse_linear(bad(x), bad(values), bad(meta), bad(torch.zeros(32, dtype=torch.bfloat16)),
                                out_transposed=True)
    assert s_ste.sparse_linear(x.to("meta"), values.to("meta"), meta.to("meta"), out_transposed=True).shape == (32, 8)


def test_sparse_linear_out_transposed_gradients_are_the_transposed_ones():
    values, meta = s_ste.prune_and_compress(randn(32, 64, seed=5).bfloat16(), BETA)
    x = randn(16, 64, seed=6).bfloat16()
    g = randn(32, 16, seed=7).bfloat16()  # dL/dyᵀ
    grads = []
    for out_transposed in (True, False):
        xr, vr = x.clone().requires_grad_(), values.clone().requires_grad_()
        y = s_ste.sparse_linear(xr, vr, meta, out_transposed=out_transposed)
        y.backward(g if out_transposed else g.t().contiguous())
        grads.append((xr.grad, vr.grad))
    for a, b in zip(*grads):
        assert_bits_equal(a, b, "gradients")
