"""CUDA kernels against the CPU kernels, bit for bit (skipped without a GPU).

The CPU path is proven against the reference in test_ops_cpu.py; here the GPU proves it
runs the same arithmetic. Outputs are allocated from poisoned memory so an element a
kernel fails to write shows up as a mismatch."""
import pytest
import torch

import s_ste
from s_ste import ops

from conftest import FLOAT_DTYPES, HALF_DTYPES, assert_bits_equal, randn, requires_cuda
from test_fused_ops import DENSE_CASES, special_weight

pytestmark = [requires_cuda, pytest.mark.cuda]

SHAPES = [(32, 16), (64, 48), (96, 128), (130, 272), (1024, 1040), (4096, 4096)]


def poison_allocator(nbytes=64 << 20):
    """Fill a large block with 0xFF bytes and free it: the caching allocator hands the same
    memory to the next outputs, so unwritten elements read as NaN / -1 codes."""
    block = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    block.fill_(0xFF)
    del block


def both(fn, *tensors, **kwargs):
    poison_allocator()
    gpu = fn(*[t.cuda() if isinstance(t, torch.Tensor) else t for t in tensors], **kwargs)
    torch.cuda.synchronize()
    cpu = fn(*tensors, **kwargs)
    return gpu, cpu


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_threshold(dtype, shape):
    w = randn(*shape, dtype=dtype, seed=shape[1])
    for fn in (s_ste.soft_threshold_24, s_ste.hard_threshold_24):
        (gp, gm), (cp, cm) = both(fn, w)
        assert_bits_equal(gp, cp, fn.__name__)
        assert torch.equal(gm.cpu(), cm)


COMPRESS_CASES = [("sm80", s) for s in [(32, 32), (64, 96), (96, 288), (1024, 1056), (4096, 4096)]] + [
    ("sm90", s) for s in [(32, 16), (64, 48), (96, 272), (1000, 1040), (4096, 4096)]
]


@pytest.mark.parametrize("layout,shape", COMPRESS_CASES)
@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("out_dtype", HALF_DTYPES)
def test_prune_and_compress_and_decompress(layout, shape, in_dtype, out_dtype):
    w = randn(*shape, dtype=in_dtype, seed=shape[0])
    beta = torch.tensor(0.8125)
    (gv, gm), (cv, cm) = both(s_ste.prune_and_compress, w, beta, layout, out_dtype)
    assert_bits_equal(gv, cv, "values")
    assert_bits_equal(gm, cm, "meta")
    gd, cd = both(s_ste.decompress, cv, cm, layout)
    assert_bits_equal(gd, cd, "decompress")


@pytest.mark.parametrize("layout", ["sm90"])
@pytest.mark.parametrize("shape", [(1, 16), (72, 160), (130, 48)])
def test_sm90_unaligned_rows(layout, shape):
    w = randn(*shape, dtype=torch.bfloat16, seed=3)
    (gv, gm), (cv, cm) = both(s_ste.prune_and_compress, w, torch.tensor(1.0), layout)
    assert_bits_equal(gv, cv, "values")
    assert_bits_equal(gm, cm, "meta (padding included)")


def test_scale_factor():
    w = randn(1024, 1024, seed=5)
    g, c = both(s_ste.scale_factor, w)
    assert g.item() == pytest.approx(c.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(4, 8), (4096, 1024), (3, 5, 100)])
def test_mvue(dtype, shape):
    g = randn(*shape, dtype=dtype, seed=9)
    for seed, offset in [(0, 0), (2**40 + 3, 2**35 + 9)]:
        gpu, cpu = both(s_ste.mvue_24, g, seed, offset)
        assert_bits_equal(gpu, cpu, "mvue")


def test_mvue_unbiased_on_gpu():
    g = randn(16, 64, seed=1).cuda()
    draws = torch.stack([s_ste.mvue_24(g, seed, 0) for seed in range(4000)]).double()
    mean, std = draws.mean(0), draws.std(0)
    random = std > 0
    z = (mean - g.double()).abs()[random] / (std[random] / 4000**0.5)
    assert z.max() < 5.5


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
def test_quantize_fp8(dtype, in_dtype):
    x = randn(777, 129, dtype=in_dtype, seed=4) * 7
    (gq, gs), (cq, cs) = both(s_ste.quantize_fp8, x, dtype)
    assert_bits_equal(gq, cq, "q")
    assert_bits_equal(gs, cs, "scale_inv")
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        s_ste.quantize_fp8(torch.tensor([1.0, float("nan")], device="cuda"), dtype)


@pytest.mark.parametrize("layout", ["sm80", "sm90"])
def test_sparse_linear(layout):
    w = randn(256, 512, seed=1)
    x = randn(4, 64, 512, dtype=torch.bfloat16, seed=2)
    b = randn(256, dtype=torch.bfloat16, seed=3)
    values, meta = s_ste.prune_and_compress(w, s_ste.scale_factor(w), layout, torch.bfloat16)
    gy, cy = both(s_ste.sparse_linear, x, values, meta, b, layout)
    expect = x.double() @ s_ste.decompress(values, meta, layout).double().t() + b.double()
    for y in (gy.cpu(), cy):
        assert ((y.double() - expect).norm() / expect.norm()) < 1e-2


def test_wrong_device_is_a_named_error():
    w = randn(64, 64).half().cuda()
    with pytest.raises(ValueError, match="prune_and_compress: scale is on cpu but w is on cuda"):
        s_ste.prune_and_compress(w, torch.tensor(1.0))
    values, meta = s_ste.prune_and_compress(w, torch.tensor(1.0, device="cuda"))
    with pytest.raises(ValueError, match="decompress: meta is on cpu"):
        s_ste.decompress(values, meta.cpu())
    with pytest.raises(ValueError, match="sparse_linear: x is on cpu"):
        s_ste.sparse_linear(torch.ones(2, 64, dtype=torch.half), values, meta)


def test_opcheck_cuda():
    from test_opcheck import op_cases, opcheck_utils

    for op, args, kwargs in op_cases("cuda"):
        torch.library.opcheck(op, args, kwargs, test_utils=opcheck_utils(op, args, kwargs))


def test_layer_on_gpu_matches_cpu():
    torch.manual_seed(0)
    cpu = s_ste.SparseLinear(256, 128, recipe="s-ste", mvue=True)
    gpu = s_ste.SparseLinear(256, 128, recipe="s-ste", mvue=True).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x, g = randn(64, 256, seed=1), randn(64, 128, seed=2)
    xg = x.cuda().requires_grad_()
    x.requires_grad_()
    cpu(x).backward(g)
    gpu(xg).backward(g.cuda())
    assert torch.allclose(gpu.weight.grad.cpu(), cpu.weight.grad, rtol=1e-4, atol=1e-5)
    assert torch.allclose(xg.grad.cpu(), x.grad, rtol=1e-4, atol=1e-5)


def test_to_inference_on_gpu():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 256)).cuda().bfloat16()
    s_ste.sparsify(model, recipe="s-ste")
    x = randn(64, 256, dtype=torch.bfloat16, device="cuda", seed=1)
    model.train()
    model(x).float().sum().backward()
    model.eval()
    inference = s_ste.to_inference(model)
    with torch.no_grad():
        y, yi = model(x), inference(x)
    assert ((y.double() - yi.double()).norm() / y.double().norm()) < 1e-2


# ---- CUTLASS sparse GEMMs behind sparse_linear ----

GEMM_CASES = [
    ("sm80", torch.bfloat16, 256, 512, 512), ("sm80", torch.float16, 256, 512, 512),
    ("sm80", torch.bfloat16, 8192, 4096, 4096), ("sm80", torch.bfloat16, 120, 96, 128),
    ("sm90", torch.bfloat16, 256, 512, 512), ("sm90", torch.bfloat16, 8192, 4096, 4096),
    ("sm90", torch.bfloat16, 120, 200, 144), ("sm90", torch.bfloat16, 8, 128, 128),
]


@pytest.mark.parametrize("layout,dtype,N,M,K", GEMM_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_sparse_linear_gemm_against_float64(layout, dtype, N, M, K, bias):
    import s_ste_cuda

    sm = torch.cuda.get_device_capability()[0]
    name, why = s_ste_cuda.gemm_select(layout, str(dtype).replace("torch.", ""), sm, N, M, K, bias)
    if layout == "sm90" and sm != 9:
        pytest.skip("SM90 kernels need a Hopper GPU")
    assert name is not None, f"expected a CUTLASS kernel for this shape: {why}"
    for trial in range(2):  # fresh random data each time
        w = randn(M, K, seed=100 * trial + 1, device="cuda")
        x = randn(N, K, dtype=dtype, seed=100 * trial + 2, device="cuda")
        b = randn(M, dtype=dtype, seed=100 * trial + 3, device="cuda") if bias else None
        values, meta = s_ste.prune_and_compress(w, s_ste.scale_factor(w), layout, dtype)
        poison_allocator()
        y = s_ste.sparse_linear(x, values, meta, b, layout)
        assert s_ste_cuda.last_sparse_linear_kernel() == name, "the CUTLASS kernel ran, not the fallback"
        expect = x.double() @ s_ste.decompress(values, meta, layout).double().t()
        if bias:
            expect += b.double()
        assert y.shape == (N, M) and y.dtype == dtype and y.is_contiguous()
        rel = ((y.double() - expect).norm() / expect.norm()).item()
        assert rel < 1e-2, f"{name}: relative error {rel:.3g}"


def test_sparse_linear_matches_torchs_own_cutlass_path():
    if not hasattr(torch, "_sparse_semi_structured_linear"):
        pytest.skip("this torch has no _sparse_semi_structured_linear")
    w = randn(512, 1024, seed=1, device="cuda")
    x = randn(256, 1024, dtype=torch.bfloat16, seed=2, device="cuda")
    values, meta = s_ste.prune_and_compress(w, s_ste.scale_factor(w), "sm80", torch.bfloat16)
    ours = s_ste.sparse_linear(x, values, meta, None, "sm80")
    theirs = torch._sparse_semi_structured_linear(x, values, meta)
    assert ((ours.double() - theirs.double()).norm() / theirs.double().norm()).item() < 1e-3


def test_unsupported_shape_falls_back_and_stays_correct():
    import s_ste_cuda

    # Legal for the layout (K % 32) but no kernel takes K = 32 (SM80 K tile: 64).
    N, M, K = 64, 64, 32
    name, _ = s_ste_cuda.gemm_select("sm80", "bfloat16", torch.cuda.get_device_capability()[0], N, M, K, False)
    w = randn(M, K, seed=1, device="cuda")
    x = randn(N, K, dtype=torch.bfloat16, seed=2, device="cuda")
    values, meta = s_ste.prune_and_compress(w, torch.tensor(1.0, device="cuda"), "sm80", torch.bfloat16)
    assert name is None, f"K = 32 is below the SM80 kernel's K tile, yet {name} was selected"
    y = s_ste.sparse_linear(x, values, meta, None, "sm80")
    assert s_ste_cuda.last_sparse_linear_kernel() == "fallback"
    expect = x.double() @ s_ste.decompress(values, meta, "sm80").double().t()
    assert ((y.double() - expect).norm() / expect.norm()).item() < 1e-2


@pytest.mark.parametrize("fp8_dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("shape", [(1, 32), (72, 160), (1000, 1056), (4096, 4096)])
def test_prune_and_compress_fp8(fp8_dtype, shape):
    w = randn(*shape, seed=shape[0])
    scale = torch.tensor(torch.finfo(fp8_dtype).max / 3)  # some values saturate
    (gv, gm), (cv, cm) = both(s_ste.prune_and_compress, w, scale, "sm90", fp8_dtype)
    assert_bits_equal(gv, cv, "FP8 values")
    assert_bits_equal(gm, cm, "meta")
    gd, cd = both(s_ste.decompress, cv, cm, "sm90")
    assert_bits_equal(gd, cd, "FP8 decompress")


@pytest.mark.parametrize("fp8_dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("N,M,K", [(256, 512, 512), (8192, 4096, 4096), (120, 200, 160), (8, 128, 128)])
@pytest.mark.parametrize("bias", [False, True])
def test_sparse_linear_fp8_gemm(fp8_dtype, N, M, K, bias):
    import s_ste_cuda

    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("FP8 sparse GEMMs need a Hopper GPU")
    name, why = s_ste_cuda.gemm_select("sm90", str(fp8_dtype).replace("torch.", ""), 9, N, M, K, bias)
    assert name is not None, f"expected a CUTLASS kernel for this shape: {why}"
    w = randn(M, K, seed=1, device="cuda")
    x = randn(N, K, seed=2, device="cuda")
    b = randn(M, dtype=torch.bfloat16, seed=3, device="cuda") if bias else None
    beta = s_ste.scale_factor(w)
    w_scale = torch.finfo(fp8_dtype).max / (s_ste.soft_threshold_24(w)[0] * beta).abs().max()
    values, meta = s_ste.prune_and_compress(w, beta * w_scale, "sm90", fp8_dtype)
    xq, x_scale_inv = s_ste.quantize_fp8(x, torch.float8_e4m3fn)
    alpha = x_scale_inv / w_scale
    poison_allocator()
    y = s_ste.sparse_linear(xq, values, meta, b, "sm90", alpha)
    assert s_ste_cuda.last_sparse_linear_kernel() == name
    exact = alpha.double() * (xq.double() @ s_ste.decompress(values, meta, "sm90").double().t())
    if bias:
        exact += b.double()
    assert y.dtype == torch.bfloat16 and y.shape == (N, M)
    rel = ((y.double() - exact).norm() / exact.norm()).item()
    assert rel < 8e-3, f"{name}: relative error {rel:.3g} (bf16 output rounding is ~4e-3)"
    cpu = s_ste.sparse_linear(xq.cpu(), values.cpu(), meta.cpu(), None if b is None else b.cpu(), "sm90", alpha.cpu())
    assert ((y.cpu().double() - cpu.double()).norm() / cpu.double().norm()).item() < 8e-3


def test_fp8_weight_gradient_gemm():
    """dWᵀ = sparse_linear(xᵀ in E4M3, MVUE(gᵀ) compressed to E5M2): the E5M2×E4M3 kernel."""
    import s_ste_cuda

    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("FP8 sparse GEMMs need a Hopper GPU")
    tokens, n_out, k_in = 8192, 1024, 768
    g = randn(tokens, n_out, seed=1, device="cuda")
    x = randn(tokens, k_in, seed=2, device="cuda")
    assert s_ste_cuda.gemm_select("sm90", "float8_e5m2", 9, k_in, n_out, tokens, False)[0] is not None
    g_sparse = s_ste.mvue_24(g.t().contiguous(), 3, 0)
    g_scale = torch.finfo(torch.float8_e5m2).max / g_sparse.abs().max()
    values, meta = s_ste.prune_and_compress(g_sparse, g_scale, "sm90", torch.float8_e5m2)
    xq, x_scale_inv = s_ste.quantize_fp8(x.t().contiguous(), torch.float8_e4m3fn)
    alpha = x_scale_inv / g_scale
    dw_t = s_ste.sparse_linear(xq, values, meta, None, "sm90", alpha)
    assert s_ste_cuda.last_sparse_linear_kernel().startswith("sm90_e5m2_e4m3")
    exact = alpha.double() * (xq.double() @ s_ste.decompress(values, meta, "sm90").double().t())
    assert ((dw_t.double() - exact).norm() / exact.norm()).item() < 8e-3


# ---- the fused kernels of the training step (issue 3) ----
# Shapes not multiples of the kernels' tiles (prune: 64 rows x 128 columns; MVUE: 64 columns
# x 128 tokens; cast-transpose: 64 x 64) and the smallest legal ones.
FUSED_T_N = [(16, 1), (32, 8), (48, 100), (160, 72), (288, 130), (1056, 1000), (8192, 1024)]


@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("layout,out_dtype", [("sm80", torch.bfloat16), ("sm80", torch.float16), ("sm90", torch.bfloat16),
                                              ("sm90", torch.float16), ("sm90", torch.float8_e5m2), ("sm90", torch.float8_e4m3fn)])
@pytest.mark.parametrize("T,N", FUSED_T_N)
def test_mvue_24_t_compress(in_dtype, layout, out_dtype, T, N):
    fp8 = out_dtype in (torch.float8_e4m3fn, torch.float8_e5m2)
    if (layout == "sm80" and (N % 32 or T % 32)) or (fp8 and T % 32):
        pytest.skip("shape not legal for this layout / dtype")
    g = randn(T, N, dtype=in_dtype, seed=T + N)
    scale = torch.tensor(7.0 if fp8 else 0.75)
    (gv, gm, ga), (cv, cm, ca) = both(s_ste.mvue_24_t_compress, g, 9, 1 << 35, layout, out_dtype, scale)
    assert_bits_equal(gv, cv, "values")
    assert_bits_equal(gm, cm, "meta (padding included)")
    assert_bits_equal(ga, ca, "amax")


def test_mvue_24_t_compress_non_finite_on_gpu():
    g = randn(128, 64, seed=3)
    g[9, 5], g[70, 33] = float("nan"), float("inf")
    (gv, gm, ga), (cv, cm, ca) = both(s_ste.mvue_24_t_compress, g, 1, 0, "sm90", torch.float8_e5m2)
    assert ga.isnan() and ca.isnan()
    assert_bits_equal(gv, cv, "values (FP8 NaN is 0x7F on both paths)")
    assert_bits_equal(gm, cm, "meta")


def test_mvue_24_t_compress_unbiased_on_gpu():
    g = randn(64, 32, seed=4, device="cuda")
    draws = torch.stack([s_ste.decompress(*s_ste.mvue_24_t_compress(g, s, 7, "sm90", torch.float16)[:2], "sm90").float()
                         for s in range(2000)])
    mean, std = draws.mean(0), draws.std(0)
    assert ((mean - g.t().half().float()).abs() <= 5 * std / 2000 ** 0.5 + 2e-3).all()


@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (64, 64), (100, 130), (1024, 4096), (8192, 768)])
@pytest.mark.parametrize("transpose", [False, True])
def test_quantize_fp8_scaled(in_dtype, dtype, shape, transpose):
    x = randn(*shape, dtype=in_dtype, seed=shape[1]) * 30
    scale = torch.tensor(torch.finfo(dtype).max / 60)
    (gq, gt, ga), (cq, ct, ca) = both(s_ste.quantize_fp8_scaled, x, scale, dtype, transpose)
    assert_bits_equal(gq, cq, "q")
    assert_bits_equal(gt, ct, "q_t")
    assert_bits_equal(ga, ca, "amax")


def test_fused_kernels_take_misaligned_views():
    """A view at an odd storage offset (no 16-byte alignment) is copied, not misread."""
    base = randn(64 * 128 + 1, dtype=torch.bfloat16, seed=6)
    w = base[1:].view(64, 128)
    (gv, gm), (cv, cm) = both(s_ste.prune_and_compress, w, torch.tensor(0.9), "sm90")
    assert_bits_equal(gv, cv, "values")
    assert_bits_equal(gm, cm, "meta")
    (gq, _, ga), (cq, _, ca) = both(s_ste.quantize_fp8_scaled, w, torch.tensor(2.0), torch.float8_e4m3fn)
    assert_bits_equal(gq, cq, "q")
    assert_bits_equal(ga, ca, "amax")


def test_fused_ops_reject_tensors_on_the_wrong_device():
    g = randn(64, 64, device="cuda")
    with pytest.raises(ValueError, match="mvue_24_t_compress: scale .*device"):
        s_ste.mvue_24_t_compress(g, 0, 0, "sm90", torch.bfloat16, torch.tensor(1.0))
    with pytest.raises(ValueError, match="quantize_fp8_scaled: scale .*device"):
        s_ste.quantize_fp8_scaled(g, torch.tensor(1.0), torch.float8_e4m3fn)


def test_fp8_weight_gradient_from_the_fused_ops():
    """The FP8 weight-gradient GEMM fed by the fused ops: xᵀ from quantize_fp8_scaled's
    transposed copy, MVUE(gᵀ) from mvue_24_t_compress, the E5M2×E4M3 kernel."""
    import s_ste_cuda

    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("FP8 sparse GEMMs need a Hopper GPU")
    tokens, n_out, k_in = 8192, 1024, 768
    g = randn(tokens, n_out, seed=1, device="cuda")
    x = randn(tokens, k_in, seed=2, device="cuda")
    s_g = torch.tensor(1000.0, device="cuda")
    s_x = torch.tensor(100.0, device="cuda")
    values, meta, amax_g = s_ste.mvue_24_t_compress(g, 3, 0, "sm90", torch.float8_e5m2, s_g)
    _, xq_t, amax_x = s_ste.quantize_fp8_scaled(x, s_x, torch.float8_e4m3fn, transpose=True)
    alpha = 1 / (s_x * s_g)
    dw_t = s_ste.sparse_linear(xq_t, values, meta, None, "sm90", alpha)
    assert s_ste_cuda.last_sparse_linear_kernel().startswith("sm90_e5m2_e4m3")
    exact = alpha.double() * (xq_t.double() @ s_ste.decompress(values, meta, "sm90").double().t())
    assert ((dw_t.double() - exact).norm() / exact.norm()).item() < 8e-3
    assert amax_x == x.abs().max() and amax_g > 0


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16, torch.float8_e4m3fn])
def test_nan_bits_match_cpu(out_dtype):
    """NaNs made by arithmetic (inf − inf in the threshold, MVUE's overflow groups) have one
    encoding on both paths (docs/numerics.md, NaN encodings)."""
    w = randn(64, 64, seed=2)
    w[3, :4] = torch.tensor([float("inf"), float("inf"), float("inf"), 1.0])
    (gv, gm), (cv, cm) = both(s_ste.prune_and_compress, w, torch.tensor(1.0), "sm90", out_dtype)
    assert_bits_equal(gv, cv, "values")
    g = randn(64, 64, seed=3)
    g[9, 5] = float("nan")
    (gv, gm, ga), (cv, cm, ca) = both(s_ste.mvue_24_t_compress, g, 1, 0, "sm90", out_dtype if out_dtype != torch.float8_e4m3fn else torch.float8_e5m2)
    assert_bits_equal(gv, cv, "values")
    assert_bits_equal(ga, ca, "amax")
    x = randn(32, 48, dtype=torch.bfloat16, seed=4)
    x[1, 1] = float("nan")
    (gq, gt, ga), (cq, ct, ca) = both(s_ste.quantize_fp8_scaled, x, torch.tensor(2.0), torch.float8_e5m2, True)
    assert_bits_equal(gq, cq, "q")
    assert_bits_equal(gt, ct, "q_t")
    assert_bits_equal(ga, ca, "amax")


# ---- issue 11 on the GPU: the CUDA paths of the hardening (owed until a device run) ----

@pytest.mark.parametrize("layout", ["sm80", "sm90"])
def test_nan_groups_and_validation_match_cpu(layout):
    w = randn(96, 128, seed=11)
    w[3, 0], w[5, 7], w[9, 2] = float("nan"), float("nan"), float("inf")
    for fn in (s_ste.soft_threshold_24, s_ste.hard_threshold_24):
        (gp, gm), (cp, cm) = both(fn, w)
        assert_bits_equal(gp, cp, fn.__name__)
        assert torch.equal(gm.cpu(), cm)
    gv, cv = both(s_ste.scale_factor, w)
    assert torch.isnan(gv).item() and torch.isnan(cv).item()
    (gv, gm), (cv, cm) = both(s_ste.prune_and_compress, w.bfloat16(), torch.tensor(0.5), layout)
    assert_bits_equal(gv, cv, "values")
    assert_bits_equal(gm, cm, "meta")
    s_ste.validate_compressed(gv, gm, layout)  # the compressor's own output is valid on the GPU too
    bad = gm.clone()
    flat = bad.view(torch.uint8)
    data = int(torch.nonzero(flat).view(-1)[0])
    flat[data] = (int(flat[data]) & 0xF0) | 0x5
    with pytest.raises(ValueError, match=r"decompress: meta holds illegal 2:4 codes in 1 metadata element"):
        s_ste.decompress(gv, bad, layout)
    with pytest.raises(ValueError, match=r"illegal 2:4 codes"):
        s_ste.sparse_linear(randn(8, 128, dtype=torch.bfloat16, device="cuda"), gv, bad, layout=layout, validate=True)


def test_sm90_padding_validated_on_gpu():
    v, m = s_ste.prune_and_compress(randn(40, 128, device="cuda").bfloat16(), torch.tensor(1.0, device="cuda"), "sm90")
    s_ste.validate_compressed(v, m, "sm90")
    m = m.clone()
    m[-1] = 0x44
    with pytest.raises(ValueError, match=r"1 padding byte\(s\)"):
        s_ste.validate_compressed(v, m, "sm90")


def test_mixed_cuda_and_meta_devices_are_named():
    v, m = s_ste.prune_and_compress(randn(64, 64, device="cuda").bfloat16(), torch.tensor(1.0, device="cuda"), "sm80")
    with pytest.raises(ValueError, match="bias is on meta but values is on cuda"):
        s_ste.sparse_linear(randn(8, 64, dtype=torch.bfloat16, device="cuda"), v, m,
                            torch.zeros(64, dtype=torch.bfloat16, device="meta"))


# ---- issue 15: prune_and_compress_dense and sparse_linear(out_transposed=True) ----

@pytest.mark.parametrize("in_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("layout,out_dtype,shape", DENSE_CASES + [
    ("sm80", torch.bfloat16, (1024, 1056)), ("sm90", torch.float16, (1000, 1040)), ("sm90", torch.float8_e4m3fn, (4096, 4096))])
@pytest.mark.parametrize("hard", [False, True])
def test_prune_and_compress_dense(in_dtype, layout, out_dtype, shape, hard):
    """values, meta and dense ŵ: the CPU bytes (which test_fused_ops.py proves equal to the unfused ops)."""
    w = special_weight(*shape, seed=shape[1]).to(in_dtype)
    scale = torch.tensor(0.8125 if out_dtype in HALF_DTYPES else 96.0)
    gpu, cpu = both(ops.prune_and_compress_dense, w, scale, layout, out_dtype, hard)
    for g, c, what in zip(gpu, cpu, ("values", "meta", "dense")):
        assert_bits_equal(g, c, what)
    (gv, gm), _ = both(s_ste.prune_and_compress, w, scale, layout, out_dtype)
    if not hard:  # the public op is the same kernel without the dense store
        assert_bits_equal(gv, gpu[0], "values")
        assert_bits_equal(gm, gpu[1], "meta")


@pytest.mark.parametrize("layout,dtype,T,N,K", [
    ("sm80", torch.bfloat16, 256, 512, 512), ("sm80", torch.float16, 64, 96, 128), ("sm80", torch.bfloat16, 8, 32, 64),
    ("sm90", torch.bfloat16, 256, 512, 512), ("sm90", torch.bfloat16, 120, 200, 144),
    ("sm90", torch.float8_e4m3fn, 256, 512, 512), ("sm90", torch.float8_e5m2, 1024, 768, 8192)])
def test_sparse_linear_out_transposed_on_the_gemms(layout, dtype, T, N, K):
    """yᵀ from the CUTLASS kernel (SM80: its native output, no copy; SM90: one transpose):
    the bytes of the kernel's y transposed, and no fallback."""
    import s_ste_cuda

    sm = torch.cuda.get_device_capability()[0]
    if layout == "sm90" and sm != 9:
        pytest.skip("SM90 kernels need a Hopper GPU")
    fp8 = dtype in (torch.float8_e4m3fn, torch.float8_e5m2)
    name, why = s_ste_cuda.gemm_select(layout, str(dtype).replace("torch.", ""), sm, T, N, K, False)
    assert name is not None, why
    w = randn(N, K, seed=1, device="cuda")
    values, meta = s_ste.prune_and_compress(w, torch.tensor(50.0 if fp8 else 1.0, device="cuda"), layout, dtype)
    x = randn(T, K, seed=2, device="cuda")
    x, alpha = (s_ste.quantize_fp8(x, torch.float8_e4m3fn)[0], torch.tensor(0.02, device="cuda")) if fp8 else \
        (x.to(dtype), None)
    poison_allocator()
    yt = ops.sparse_linear(x, values, meta, None, layout, alpha, out_transposed=True)
    assert s_ste_cuda.last_sparse_linear_kernel() == name
    assert yt.shape == (N, T) and yt.is_contiguous()
    assert_bits_equal(yt, ops.sparse_linear(x, values, meta, None, layout, alpha).t().contiguous(), "yᵀ")
    cpu = ops.sparse_linear(x.cpu(), values.cpu(), meta.cpu(), None, layout, None if alpha is None else alpha.cpu(),
                            out_transposed=True)
    assert ((yt.cpu().double() - cpu.double()).norm() / cpu.double().norm()).item() < 8e-3


def test_sparse_linear_out_transposed_fallback_and_empty():
    values, meta = s_ste.prune_and_compress(randn(64, 32, device="cuda").bfloat16(), torch.tensor(1.0, device="cuda"))
    x = randn(40, 32, dtype=torch.bfloat16, device="cuda")  # K = 32: no SM80 kernel, the fallback
    yt = ops.sparse_linear(x, values, meta, out_transposed=True)
    assert_bits_equal(yt, ops.sparse_linear(x, values, meta).t().contiguous(), "fallback yᵀ")
    assert ops.sparse_linear(x[:0], values, meta, out_transposed=True).shape == (64, 0)
