"""Issue 11, op level: no silent wrong answer. Mixed devices, fake kernels that check what the
real kernels check, metadata no compressor writes, non-finite weights, quantize_fp8_scaled's
empty shapes, seeds outside int64."""
import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import s_ste
from s_ste import reference

from conftest import randn

ops = torch.ops.s_ste
W = randn(64, 64, seed=1)
BETA = torch.tensor(1.0)
META = "meta"


def compressed(layout="sm80", dtype=torch.bfloat16, rows=64, k=64):
    return ops.prune_and_compress(randn(rows, k, seed=7).to(dtype), BETA, layout)


# ---- 1. mixed devices: a meta argument beside CPU ones is an error that names it ----

def _mixed_cases():
    v80, m80 = compressed("sm80")
    v8, m8 = ops.prune_and_compress(W, BETA * 100, "sm90", torch.float8_e4m3fn)
    x = randn(8, 64, dtype=torch.bfloat16, seed=2)
    xq, xs = ops.quantize_fp8(x, torch.float8_e4m3fn)
    bias = randn(64, dtype=torch.bfloat16, seed=3)
    meta_one = torch.ones((), device=META)
    return [
        ("prune_and_compress scale", lambda: ops.prune_and_compress(W.half(), meta_one), "scale is on meta but w is on cpu"),
        ("prune_and_compress w", lambda: ops.prune_and_compress(W.half().to(META), BETA), "scale is on cpu but w is on meta"),
        ("prune_and_compress_dense scale", lambda: ops.prune_and_compress_dense(W.half(), meta_one), "scale is on meta but w is on cpu"),
        ("decompress meta", lambda: ops.decompress(v80, m80.to(META)), "meta is on meta but values is on cpu"),
        ("sparse_linear bias", lambda: ops.sparse_linear(x, v80, m80, bias.to(META)), "bias is on meta but values is on cpu"),
        ("sparse_linear x", lambda: ops.sparse_linear(x.to(META), v80, m80), "x is on meta but values is on cpu"),
        ("sparse_linear alpha", lambda: ops.sparse_linear(xq, v8, m8, None, "sm90", xs.to(META)), "alpha is on meta but values is on cpu"),
        ("mvue_24_t_compress scale", lambda: ops.mvue_24_t_compress(W.half(), 0, 0, "sm90", None, meta_one), "scale is on meta but g is on cpu"),
        ("quantize_fp8_scaled scale", lambda: ops.quantize_fp8_scaled(W, meta_one, torch.float8_e4m3fn), "scale is on meta but x is on cpu"),
        ("validate_compressed", lambda: ops.validate_compressed(v80.to(META), m80), "meta is on cpu but values is on meta"),
    ]


@pytest.mark.parametrize("name,call,message", _mixed_cases(), ids=[c[0] for c in _mixed_cases()])
def test_mixed_devices_raise_naming_the_argument(name, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


# ---- 2. the fake kernels raise exactly what the real kernels raise ----

def _bad_inputs():
    """(name, make(conv) -> call) for inputs the real CPU kernels reject; conv maps each real
    tensor argument to the backend under test (itself, a meta tensor, a FakeTensor)."""
    v80, m80 = compressed("sm80")
    v90, m90 = compressed("sm90")
    x = randn(8, 64, dtype=torch.bfloat16, seed=2)
    return [
        ("soft_threshold int32", lambda c: lambda: ops.soft_threshold_24(c(W.int()))),
        ("hard_threshold odd K", lambda c: lambda: ops.hard_threshold_24(c(W[:, :6].contiguous()))),
        ("scale_factor non-contiguous", lambda c: lambda: ops.scale_factor(c(W).t())),
        ("mvue_24 float64", lambda c: lambda: ops.mvue_24(c(W.double()), 0, 0)),
        ("prune_and_compress float32 out", lambda c: lambda: ops.prune_and_compress(c(W), c(BETA))),
        ("prune_and_compress sm80 rows", lambda c: lambda: ops.prune_and_compress(c(W[:48].half()), c(BETA))),
        ("prune_and_compress sm90 K", lambda c: lambda: ops.prune_and_compress(c(randn(64, 40).half()), c(BETA), "sm90")),
        ("prune_and_compress bad layout", lambda c: lambda: ops.prune_and_compress(c(W.half()), c(BETA), "sm70")),
        ("prune_and_compress 2-element scale", lambda c: lambda: ops.prune_and_compress(c(W.half()), c(torch.ones(2)))),
        ("prune_and_compress_dense float32 out", lambda c: lambda: ops.prune_and_compress_dense(c(W), c(BETA))),
        ("prune_and_compress_dense sm80 rows", lambda c: lambda: ops.prune_and_compress_dense(c(W[:48].half()), c(BETA), "sm80", None, True)),
        ("prune_and_compress_dense sm90 fp8 K", lambda c: lambda: ops.prune_and_compress_dense(c(W[:, :48].contiguous()), c(BETA), "sm90", torch.float8_e4m3fn)),
        ("decompress 3-element meta", lambda c: lambda: ops.decompress(c(v90), c(m90[:3].contiguous()), "sm90")),
        ("decompress sm80 meta shape", lambda c: lambda: ops.decompress(c(v80), c(m80[:, :2].contiguous()))),
        ("decompress int32 meta", lambda c: lambda: ops.decompress(c(v80), c(m80.int()))),
        ("sparse_linear K mismatch", lambda c: lambda: ops.sparse_linear(c(x[:, :32].contiguous()), c(v80), c(m80))),
        ("sparse_linear dtype mismatch", lambda c: lambda: ops.sparse_linear(c(x.half()), c(v80), c(m80))),
        ("sparse_linear bias shape", lambda c: lambda: ops.sparse_linear(c(x), c(v80), c(m80), c(x[0, :32].contiguous()))),
        ("sparse_linear alpha for bf16", lambda c: lambda: ops.sparse_linear(c(x), c(v80), c(m80), None, "sm80", c(BETA))),
        ("sparse_linear out_transposed bias", lambda c: lambda: ops.sparse_linear(c(x), c(v80), c(m80), c(x[0]), "sm80", None, True)),
        ("sparse_linear out_transposed 3-D x", lambda c: lambda: ops.sparse_linear(c(x.view(2, 4, 64)), c(v80), c(m80), None, "sm80", None, True)),
        ("mvue_24_t_compress tokens", lambda c: lambda: ops.mvue_24_t_compress(c(W[:40].half()), 0, 0, "sm90")),
        ("mvue_24_t_compress sm80 fp8", lambda c: lambda: ops.mvue_24_t_compress(c(W.half()), 0, 0, "sm80", torch.float8_e5m2)),
        ("quantize_fp8 float16 target", lambda c: lambda: ops.quantize_fp8(c(W), torch.float16)),
        ("quantize_fp8_scaled 3-D transpose", lambda c: lambda: ops.quantize_fp8_scaled(c(W.view(4, 16, 64)), c(BETA), torch.float8_e4m3fn, True)),
        ("validate_compressed 16-bit sm90 K", lambda c: lambda: ops.validate_compressed(c(torch.zeros(64, 20, dtype=torch.half)), c(torch.zeros(64, dtype=torch.uint8)), "sm90")),
    ]


def _error(call):
    try:
        call()
    except Exception as err:  # noqa: BLE001 - the type and text are what is compared
        return type(err), str(err)
    return None, None


@pytest.mark.parametrize("name,make", _bad_inputs(), ids=[c[0] for c in _bad_inputs()])
def test_fake_kernels_raise_the_real_errors(name, make):
    real = _error(make(lambda t: t))
    assert real[0] in (TypeError, ValueError), f"the real kernel accepted {name}: {real}"
    assert _error(make(lambda t: t.to(META))) == real, "meta tensors"
    # The calls build their arguments lazily: let the mode turn those real tensors into fakes.
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    call = make(mode.from_tensor)
    with mode:
        assert _error(call) == real, "FakeTensorMode (torch.compile's tracing)"


# ---- 3. metadata no compressor writes ----

def _corrupt_sm80(code):
    v, m = compressed("sm80")
    m = m.clone()
    # Overwrite the lowest nibble of one metadata element: one group's code.
    m.view(-1)[5] = (int(m.view(-1)[5]) & ~0xF) | code
    return v, m


@pytest.mark.parametrize("code", [0x0, 0x1, 0x5, 0xA, 0xF, 0x3, 0x6])
def test_decompress_rejects_illegal_sm80_codes(code):
    v, m = _corrupt_sm80(code)
    with pytest.raises(ValueError, match=r"decompress: meta holds illegal 2:4 codes in 1 metadata element"):
        ops.decompress(v, m)
    with pytest.raises(ValueError, match=r"validate_compressed: meta holds illegal 2:4 codes"):
        s_ste.validate_compressed(v, m)
    with pytest.raises(ValueError, match=r"invalid 2:4 code"):  # the reference agrees
        reference.decompress(v, m)
    # Opted out: decompress trusts it (documented), and writes in bounds.
    assert ops.decompress(v, m, "sm80", False).shape == (64, 64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn])
@pytest.mark.parametrize("code", [0x0, 0x1, 0x5, 0xF])
def test_decompress_rejects_illegal_sm90_codes_in_the_data_area(dtype, code):
    w = randn(64, 128, seed=3)
    v, m = ops.prune_and_compress(w if dtype != torch.bfloat16 else w.bfloat16(), BETA, "sm90",
                                  None if dtype == torch.bfloat16 else dtype)
    m = m.clone()
    data = int(torch.nonzero(m).view(-1)[0])  # a data byte (the compressor never writes 0 there)
    m[data] = (int(m[data]) & 0xF0) | code
    with pytest.raises(ValueError, match=r"decompress: meta holds illegal 2:4 codes"):
        ops.decompress(v, m, "sm90")


def test_decompress_rejects_nonzero_sm90_padding():
    # 40 rows: the metadata is padded to 64 rows, and the padding must stay zero.
    v, m = ops.prune_and_compress(randn(40, 128, seed=4).bfloat16(), BETA, "sm90")
    assert m.numel() > 40 * 128 // 8
    s_ste.validate_compressed(v, m, "sm90")  # what the compressor writes is valid
    m = m.clone()
    m[-1] = 0x44
    with pytest.raises(ValueError, match=r"decompress: 1 padding byte\(s\) of the \"sm90\" metadata are not zero"):
        ops.decompress(v, m, "sm90")


@pytest.mark.parametrize("layout", ["sm80", "sm90"])
def test_compressor_output_always_validates(layout):
    for seed in range(3):
        w = randn(64, 128, seed=seed)
        w[0, :8] = 0  # all-zero groups
        w[1, :4] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # one non-zero
        w[2, :4] = float("nan")
        v, m = ops.prune_and_compress(w.bfloat16(), BETA, layout)
        s_ste.validate_compressed(v, m, layout)
        g = torch.nan_to_num(w.t().contiguous(), nan=1.0).bfloat16()
        gv, gm, _ = ops.mvue_24_t_compress(g, seed, 0, layout)
        s_ste.validate_compressed(gv, gm, layout)


def test_sparse_linear_validate_option():
    v, m = _corrupt_sm80(0x5)
    x = randn(8, 64, dtype=torch.bfloat16, seed=2)
    with pytest.raises(ValueError, match=r"validate_compressed: meta holds illegal 2:4 codes"):
        s_ste.sparse_linear(x, v, m, validate=True)
    s_ste.sparse_linear(x, *compressed("sm80"), validate=True)  # valid metadata passes


# ---- 4. non-finite weights never vanish ----

@pytest.mark.parametrize("pos", range(4))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_nan_weight_stays_nan_in_the_threshold(pos, dtype):
    w = randn(2, 8, seed=pos).to(dtype)
    w[0, pos] = float("nan")
    for op, ref in ((ops.soft_threshold_24, reference.soft_threshold_24),
                    (ops.hard_threshold_24, reference.hard_threshold_24)):
        pruned, mask = op(w)
        assert torch.isnan(pruned[0, :2]).all() and torch.equal(pruned[0, 2:4], torch.zeros(2, dtype=dtype))
        assert mask[0, :4].tolist() == [True, True, False, False]
        ref_pruned, ref_mask = ref(w)
        assert torch.equal(mask, ref_mask)
        assert torch.equal(torch.isnan(pruned), torch.isnan(ref_pruned))
        assert torch.equal(pruned.nan_to_num(7.0), ref_pruned.nan_to_num(7.0)), "the finite groups are unchanged"


@pytest.mark.parametrize("layout", ["sm80", "sm90"])
def test_nan_weight_reaches_the_sparse_linear_output(layout):
    w = randn(64, 64, seed=5).bfloat16()
    w[3, 0] = float("nan")
    v, m = ops.prune_and_compress(w, BETA, layout)
    y = ops.sparse_linear(randn(4, 64, dtype=torch.bfloat16, seed=6), v, m, None, layout)
    assert torch.isnan(y[:, 3]).all(), "row 3 of the weight holds a NaN: its output column must be NaN"
    assert torch.isfinite(y[:, :3]).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_scale_factor_is_nan_for_a_non_finite_weight(bad):
    w = randn(32, 32, seed=8)
    w[1, 2] = bad
    assert torch.isnan(ops.scale_factor(w))
    assert torch.isnan(reference.scale_factor(w))


def test_scale_factor_of_zeros_stays_one():
    assert ops.scale_factor(torch.zeros(8, 8)).item() == 1.0


# ---- 9. quantize_fp8_scaled on empty shapes: real and fake agree ----

@pytest.mark.parametrize("shape", [(3, 0), (0, 3), (0, 0)])
def test_quantize_fp8_scaled_empty_transpose_shapes(shape):
    x = torch.zeros(shape)
    q, q_t, amax = ops.quantize_fp8_scaled(x, BETA, torch.float8_e4m3fn, True)
    assert q.shape == shape and q_t.shape == shape[::-1] and amax.item() == 0.0
    fq, fq_t, _ = ops.quantize_fp8_scaled(x.to(META), BETA.to(META), torch.float8_e4m3fn, True)
    assert fq.shape == q.shape and fq_t.shape == q_t.shape
    torch.library.opcheck(ops.quantize_fp8_scaled, (x, BETA, torch.float8_e4m3fn, True))


# ---- unclear errors: seeds outside int64 ----

@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 2**70])
def test_seed_outside_int64_is_a_clear_error(seed):
    with pytest.raises(ValueError, match=r"mvue_24: seed must fit in int64"):
        s_ste.mvue_24(W, seed)
    with pytest.raises(ValueError, match=r"mvue_24_t_compress: offset must fit in int64"):
        s_ste.mvue_24_t_compress(W.half(), 0, seed)


def test_int64_extremes_are_accepted():
    s_ste.mvue_24(W, 2**63 - 1, -(2**63))


# ---- the layer's own custom ops: a meta argument beside CPU ones is named, never garbage ----

def test_layer_ops_name_a_meta_argument():  # the layer ops: registered by `import s_ste`
    w = randn(32, 32)
    meta_one = torch.ones((), device=META)
    with pytest.raises(ValueError, match="sparse_weight: scale is on meta but w is on cpu"):
        ops.sparse_weight(w, meta_one, "s-ste", 0.0)
    x = randn(4, 32)
    with pytest.raises(ValueError, match="sparse_linear_train: bias is on meta but x is on cpu"):
        ops.sparse_linear_train(x, w, torch.zeros(32, device=META), torch.tensor([0, 0]), False, False)
    v, m = ops.prune_and_compress(w.bfloat16(), BETA, "sm90")
    with pytest.raises(ValueError, match="fast_linear: w_dgrad is on meta but x is on cpu"):
        ops.fast_linear(x.bfloat16(), w, v, m, w.bfloat16().to(META), None, torch.tensor([0, 0]), None, None,
                        "sm90", False, False, False, 0.0)


# ---- the fakes' bridge takes each op's full schema argument list ----

def test_check_args_takes_the_schemas_arity():
    import s_ste_cuda

    spec = (torch.float16, "cpu", True, (64, 64))
    s_ste_cuda.check_args("mvue_24_t_compress", spec, 0, 0, "sm90", None, None)  # all six arguments
    for op, args in (("mvue_24_t_compress", (spec, "sm90", None, None)), ("decompress", (spec, spec, "sm80")),
                     ("mvue_24", (spec,)), ("sparse_linear", (spec, spec, spec, None, "sm80", None))):
        n = len(getattr(ops, op).default._schema.arguments)
        with pytest.raises(TypeError, match=rf"check_args: {op} takes {n} arguments \(its schema's\), got {len(args)}"):
            s_ste_cuda.check_args(op, *args)
    with pytest.raises(KeyError, match="no checks for op 'no_such_op'"):
        s_ste_cuda.check_args("no_such_op")
