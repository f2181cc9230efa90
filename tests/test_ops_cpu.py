"""The extension's CPU kernels against the pure-PyTorch reference and torch's own CUTLASS
layout converter, bit for bit (docs/numerics.md is the contract)."""
import pytest
import torch
from torch.sparse._semi_structured_conversions import sparse_semi_structured_from_dense_cutlass

import s_ste
from s_ste import reference as ref

from conftest import FLOAT_DTYPES, HALF_DTYPES, assert_bits_equal, randn

SHAPES = [(32, 16), (64, 48), (96, 128), (5, 3, 32), (160, 272)]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("soft", [True, False])
def test_threshold_matches_reference(dtype, shape, soft):
    w = randn(*shape, dtype=dtype, seed=sum(shape))
    ours = s_ste.soft_threshold_24(w) if soft else s_ste.hard_threshold_24(w)
    theirs = ref.soft_threshold_24(w) if soft else ref.hard_threshold_24(w)
    assert_bits_equal(ours[0], theirs[0], "pruned")
    assert torch.equal(ours[1], theirs[1])
    assert (ours[1].view(-1, 4).sum(-1) == 2).all()


def test_threshold_ties_and_signs():
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-2.0, 2.0, -2.0, 1.0], [0.0, 0.0, 0.0, 0.0], [-0.0, 3.0, -1.0, 0.5]])
    pruned, mask = s_ste.soft_threshold_24(w)
    # Ties go to the higher index; a kept value equal to t becomes +0.
    assert mask.tolist() == [[False, False, True, True], [False, True, True, False],
                             [False, False, True, True], [False, True, True, False]]
    assert pruned.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 2.5, -0.5, 0]]
    assert not torch.signbit(pruned[pruned == 0]).any(), "zeros must be +0.0"
    hard, hmask = s_ste.hard_threshold_24(w)
    assert torch.equal(hmask, mask) and hard[1].tolist() == [0, 2, -2, 0]


def test_soft_threshold_continuous_across_mask_flip():
    w = torch.tensor([[0.3, -0.5, 0.5, 2.0]] * 32)
    eps = 1e-6
    a = s_ste.soft_threshold_24(w + torch.tensor([0, -eps, 0, 0]))  # |w1| > |w2|: keeps 1, 3
    b = s_ste.soft_threshold_24(w + torch.tensor([0, eps, 0, 0]))  # |w1| < |w2|: keeps 2, 3
    assert not torch.equal(a[1], b[1]), "the perturbation must flip the mask"
    assert (a[0] - b[0]).abs().max() <= 4 * eps


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_scale_factor_least_squares(dtype):
    w = randn(64, 128, dtype=dtype, seed=3)
    beta = s_ste.scale_factor(w)
    assert beta.dtype == torch.float32 and beta.dim() == 0
    s = ref.soft_threshold_24(w.float())[0].double().reshape(-1, 1)
    lstsq = torch.linalg.lstsq(s, w.double().reshape(-1, 1)).solution.item()
    assert beta.item() == pytest.approx(lstsq, rel=1e-6)
    assert beta.item() == pytest.approx(ref.scale_factor(w).item(), rel=1e-6)


def test_scale_factor_of_zero_weight_is_one():
    assert s_ste.scale_factor(torch.zeros(32, 16)).item() == 1.0


def distinct_groups(rows, K, dtype, seed):
    """Random signs, positions and scales, with magnitudes (0.5, 1, 1.5, 2)·s in every group:
    no ties even in 16-bit, so both kept values are non-zero after the soft threshold."""
    g = torch.Generator().manual_seed(seed)
    mags = torch.tensor([0.5, 1.0, 1.5, 2.0])[torch.rand(rows * K // 4, 4, generator=g).argsort(-1)]
    scale = 0.5 + torch.rand(rows * K // 4, 1, generator=g)
    sign = torch.where(torch.rand(rows * K // 4, 4, generator=g) < 0.5, -1.0, 1.0)
    return (sign * mags * scale).reshape(rows, K).to(dtype)


@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("out_dtype", HALF_DTYPES)
@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (96, 288), (256, 512)])
def test_sm80_bytes_equal_torch_converter(in_dtype, out_dtype, shape):
    w = distinct_groups(*shape, in_dtype, seed=shape[0] + shape[1])
    beta = torch.tensor(0.75)
    values, meta = s_ste.prune_and_compress(w, beta, "sm80", out_dtype)
    dense = (ref.soft_threshold_24(w.float())[0] * beta).to(out_dtype)
    assert (dense.view(-1, 4) != 0).sum(-1).eq(2).all(), "the data keeps two non-zeros per group"
    t_values, t_meta = sparse_semi_structured_from_dense_cutlass(dense)
    assert_bits_equal(values, t_values, "values")
    assert_bits_equal(meta, t_meta, "meta")
    r_values, r_meta = ref.prune_and_compress(w, beta, "sm80", out_dtype)
    assert_bits_equal(values, r_values, "values vs reference")
    assert_bits_equal(meta, r_meta, "meta vs reference")
    assert_bits_equal(s_ste.decompress(values, meta, "sm80"), dense, "round trip")


def test_sm80_exact_zero_kept_values_decompress_equal():
    # Equal magnitudes make kept values exactly 0: the converter's !=0 mask may then
    # choose other positions, so compare the decompressed matrices instead of bytes.
    w = torch.tensor([[1.0, -1.0, 1.0, 1.0]]).repeat(32, 8)
    values, meta = s_ste.prune_and_compress(w, torch.tensor(1.0), "sm80", torch.float16)
    expected = (ref.soft_threshold_24(w)[0]).half()
    assert torch.equal(s_ste.decompress(values, meta, "sm80"), expected)
    # Codes come from the mask (ties to the higher index: positions 2, 3 -> 0xE), never 0x0.
    assert (meta.int() & 0xFFFF).eq(0xEEEE).all()


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("shape", [(1, 16), (8, 48), (72, 160), (130, 272), (256, 512), (64, 128)])
def test_sm90_round_trip(dtype, shape):
    w = randn(*shape, dtype=dtype, seed=7 + shape[0])
    beta = torch.tensor(1.25)
    values, meta = s_ste.prune_and_compress(w, beta, "sm90")
    assert values.shape == (shape[0], shape[1] // 2) and meta.dtype == torch.uint8
    expected = (ref.soft_threshold_24(w.float())[0] * beta).to(dtype)
    assert_bits_equal(s_ste.decompress(values, meta, "sm90"), expected, "sm90 round trip")
    # The sm80 and sm90 layouts hold the same values; only the metadata placement differs.
    if shape[0] % 32 == 0:
        assert_bits_equal(values, s_ste.prune_and_compress(w, beta, "sm80")[0], "values")


def test_sm90_padding_is_zero_and_every_byte_written():
    w = randn(72, 160, dtype=torch.bfloat16, seed=11)
    values, meta = s_ste.prune_and_compress(w, torch.tensor(1.0), "sm90")
    from s_ste_cuda import sm90_meta_bytes
    assert meta.numel() == sm90_meta_bytes(72, 160, 16) == 128 * 256 // 8
    # 72*160/8 bytes hold codes (never 0: every code has i1 > 0); the rest is padding.
    assert int((meta != 0).sum()) == 72 * 160 // 8


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(4, 8), (33, 64), (3, 5, 100)])
@pytest.mark.parametrize("seed,offset", [(0, 0), (123, 7), (2**40 + 5, 2**33 + 1)])
def test_mvue_matches_reference(dtype, shape, seed, offset):
    g = randn(*shape, dtype=dtype, seed=seed % 1000 + shape[-1])
    assert_bits_equal(s_ste.mvue_24(g, seed, offset), ref.mvue_24(g, seed, offset), "mvue")


def test_mvue_special_groups():
    g = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -3.0, 0.0], [float("inf"), 1.0, 2.0, 3.0],
                      [1e-30, 1e30, -1e-20, 5.0]])
    out = s_ste.mvue_24(g, 5, 0)
    assert out[0].tolist() == [0, 0, 0, 0]
    assert out[1].tolist() == [0, 0, -3.0, 0], "a lone non-zero has inclusion probability 1"
    assert out[2, :2].isnan().all() and out[2, 2:].eq(0).all()
    assert torch.isfinite(out[3]).all() and (out[3] != 0).sum() <= 2
    assert_bits_equal(out, ref.mvue_24(g, 5, 0), "special groups")


def test_mvue_unbiased_and_reproducible():
    g = randn(8, 64, seed=1)
    draws = torch.stack([s_ste.mvue_24(g, seed, 3) for seed in range(3000)]).double()
    assert ((draws != 0).view(3000, -1, 4).sum(-1) <= 2).all()
    mean, std = draws.mean(0), draws.std(0)
    random = std > 0
    z = (mean - g.double()).abs()[random] / (std[random] / 3000 ** 0.5)
    assert z.max() < 5.5, f"max |z| = {z.max():.2f}"
    # Elements drawn every time with a constant value were kept with probability 1: unscaled.
    sure = ((draws != 0).all(0)) & ~random
    assert torch.allclose(mean[sure], g.double()[sure], rtol=1e-9, atol=0)
    assert torch.equal(s_ste.mvue_24(g, 9, 1), s_ste.mvue_24(g, 9, 1))
    assert not torch.equal(s_ste.mvue_24(g, 9, 1), s_ste.mvue_24(g, 9, 2))
    assert not torch.equal(s_ste.mvue_24(g, 9, 1), s_ste.mvue_24(g, 10, 1))
    # Lower total variance than keeping each element w.p. 1/2 scaled by 2 (variance Σ g²).
    assert draws.var(0).sum() < (g.double() ** 2).sum()


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
def test_quantize_fp8_matches_reference_and_torch(dtype, in_dtype):
    x = randn(37, 64, dtype=in_dtype, seed=2) * 3
    x[0, 0] = 1e-9  # a subnormal in both formats
    q, scale_inv = s_ste.quantize_fp8(x, dtype)
    rq, rscale_inv = ref.quantize_fp8(x, dtype)
    assert_bits_equal(q, rq, "q")
    assert_bits_equal(scale_inv, rscale_inv, "scale_inv")
    fmax = torch.finfo(dtype).max
    scale = torch.tensor(fmax, dtype=torch.float32) / x.float().abs().max()
    assert_bits_equal(q, (x.float() * scale).clamp(-fmax, fmax).to(dtype), "torch cast")
    # Round-trip error: half an ulp of the format, relative, for normal values.
    back = q.float() * scale_inv
    normal = x.float().abs() * scale >= torch.finfo(dtype).smallest_normal
    rel = ((back - x.float()).abs() / x.float().abs())[normal]
    bound = {torch.float8_e4m3fn: 2.0**-4, torch.float8_e5m2: 2.0**-3}[dtype]
    assert rel.max() <= bound * (1 + 1e-6)


def test_quantize_fp8_saturation_zero_and_nan():
    q, scale_inv = s_ste.quantize_fp8(torch.zeros(8), torch.float8_e4m3fn)
    assert scale_inv.item() == 1.0 and q.float().eq(0).all()
    x = torch.tensor([1.0, -2.0, 4.0, 1e-3])
    q, scale_inv = s_ste.quantize_fp8(x, torch.float8_e5m2)
    assert q.float().abs().max().item() == 57344.0
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        s_ste.quantize_fp8(torch.tensor([1.0, float("nan")]), torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        s_ste.quantize_fp8(torch.tensor([1.0, float("-inf")]), torch.float8_e5m2)


@pytest.mark.parametrize("layout", ["sm80", "sm90"])
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("bias", [False, True])
def test_sparse_linear_against_float64(layout, dtype, bias):
    w = randn(64, 96, seed=4)
    x = randn(3, 10, 96, dtype=dtype, seed=5)
    b = randn(64, dtype=dtype, seed=6) if bias else None
    beta = s_ste.scale_factor(w)
    values, meta = s_ste.prune_and_compress(w, beta, layout, dtype)
    y = s_ste.sparse_linear(x, values, meta, b, layout)
    w_hat = s_ste.decompress(values, meta, layout).double()
    expect = x.double() @ w_hat.t() + (b.double() if bias else 0)
    assert y.dtype == dtype and y.shape == (3, 10, 64)
    rel = (y.double() - expect).norm() / expect.norm()
    assert rel < 1e-2, rel
    if layout == "sm80":
        r = ref.sparse_linear(x, values, meta, b, layout)
        assert ((r.double() - expect).norm() / expect.norm()) < 1e-2


FP8 = [torch.float8_e4m3fn, torch.float8_e5m2]


def fp8_weight(w, fp8_dtype):
    """(values, meta, w_scale_inv): β·S(w) compressed to FP8 with a per-tensor scale."""
    beta = s_ste.scale_factor(w)
    w_hat = ref.soft_threshold_24(w.float())[0] * beta
    w_scale = torch.finfo(fp8_dtype).max / w_hat.abs().max()
    values, meta = s_ste.prune_and_compress(w, beta * w_scale, "sm90", fp8_dtype)
    return values, meta, 1.0 / w_scale


@pytest.mark.parametrize("fp8_dtype", FP8)
@pytest.mark.parametrize("shape", [(1, 32), (72, 160), (130, 288)])
def test_prune_and_compress_fp8_saturates_and_round_trips(fp8_dtype, shape):
    w = randn(*shape, seed=shape[0] + 3)
    scale = torch.tensor(torch.finfo(fp8_dtype).max / 2)  # the largest values saturate
    values, meta = s_ste.prune_and_compress(w, scale, "sm90", fp8_dtype)
    assert values.dtype == fp8_dtype and values.shape == (shape[0], shape[1] // 2)
    fmax = torch.finfo(fp8_dtype).max
    expected = (ref.soft_threshold_24(w.float())[0] * scale).clamp(-fmax, fmax).to(fp8_dtype)
    dense = s_ste.decompress(values, meta, "sm90")
    assert_bits_equal(dense, expected, "FP8 values")
    assert dense.float().abs().max().item() == fmax, "saturated, never NaN"


def test_overflowed_gradient_stays_nan_through_fp8_compression():
    g = randn(32, 64, seed=5)
    g[3, 9] = float("inf")  # group 2 of row 3
    g_sparse = s_ste.mvue_24(g, 1, 0)
    assert g_sparse[3, 8:12].isnan().sum() == 2
    for dtype in (torch.bfloat16, *FP8):
        values, meta = s_ste.prune_and_compress(g_sparse, torch.tensor(1.0), "sm90", dtype)
        dense = s_ste.decompress(values, meta, "sm90").float()
        assert dense[3, 8:12].isnan().sum() == 2, f"{dtype}: NaN must survive compression"
        assert torch.isfinite(dense[torch.arange(32) != 3]).all()


def test_fp8_values_need_the_sm90_layout_and_k_multiple_of_32():
    w = randn(64, 48)
    with pytest.raises(TypeError, match=r'prune_and_compress: layout "sm80" holds 16-bit values'):
        s_ste.prune_and_compress(randn(64, 64), torch.tensor(1.0), "sm80", torch.float8_e4m3fn)
    with pytest.raises(ValueError, match=r'layout "sm90" needs K .* multiple of 32 for 8-bit values'):
        s_ste.prune_and_compress(w, torch.tensor(1.0), "sm90", torch.float8_e4m3fn)


@pytest.mark.parametrize("fp8_dtype", FP8)
@pytest.mark.parametrize("bias", [False, True])
def test_sparse_linear_fp8_against_float64(fp8_dtype, bias):
    w, x = randn(96, 160, seed=1), randn(4, 20, 160, seed=2)
    b = randn(96, dtype=torch.bfloat16, seed=3) if bias else None
    values, meta, w_scale_inv = fp8_weight(w, fp8_dtype)
    xq, x_scale_inv = s_ste.quantize_fp8(x, torch.float8_e4m3fn)
    alpha = x_scale_inv * w_scale_inv
    y = s_ste.sparse_linear(xq, values, meta, b, "sm90", alpha)
    assert y.dtype == torch.bfloat16 and y.shape == (4, 20, 96)
    # Exactly what the GEMM computes, in float64: alpha·(x_q · ŵ_qᵀ) + bias, then bf16.
    exact = alpha.double() * (xq.double() @ s_ste.decompress(values, meta, "sm90").double().t())
    if bias:
        exact += b.double()
    assert ((y.double() - exact).norm() / exact.norm()).item() < 8e-3
    # Against the unquantized product: FP8 rounding of both operands (2^-4 / 2^-3 relative).
    true = x.double() @ (ref.soft_threshold_24(w.float())[0] * s_ste.scale_factor(w)).double().t()
    if bias:
        true += b.double()
    bound = {torch.float8_e4m3fn: 0.05, torch.float8_e5m2: 0.1}[fp8_dtype]
    assert ((y.double() - true).norm() / true.norm()).item() < bound


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float8_e5m2])
def test_weight_gradient_through_sparse_linear(out_dtype):
    """dW = MVUE(gᵀ)·x with the 2:4 groups along tokens, as sparse_linear computes it:
    prune_and_compress of an MVUE output is lossless (≥ 2 zeros per group, so t = 0), and
    dWᵀ = sparse_linear(xᵀ, MVUE(gᵀ) compressed)."""
    tokens, n_out, k_in = 64, 96, 48
    g, x = randn(tokens, n_out, seed=1), randn(tokens, k_in, seed=2)
    g_sparse = s_ste.mvue_24(g.t().contiguous(), 7, 0)  # [n_out, tokens]
    if out_dtype == torch.bfloat16:
        values, meta = s_ste.prune_and_compress(g_sparse, torch.tensor(1.0), "sm90", out_dtype)
        assert torch.equal(s_ste.decompress(values, meta, "sm90"), g_sparse.bfloat16()), "lossless"
        dw_t = s_ste.sparse_linear(x.t().contiguous().bfloat16(), values, meta, None, "sm90")
        alpha = torch.tensor(1.0)
    else:
        g_scale = torch.finfo(out_dtype).max / g_sparse.abs().max()
        values, meta = s_ste.prune_and_compress(g_sparse, g_scale, "sm90", out_dtype)
        xq, x_scale_inv = s_ste.quantize_fp8(x.t().contiguous(), torch.float8_e4m3fn)
        alpha = x_scale_inv / g_scale
        dw_t = s_ste.sparse_linear(xq, values, meta, None, "sm90", alpha)
    assert dw_t.shape == (k_in, n_out)
    expect = g_sparse.double() @ x.double()
    bound = 1e-2 if out_dtype == torch.bfloat16 else 0.1
    assert ((dw_t.t().double() - expect).norm() / expect.norm()).item() < bound
