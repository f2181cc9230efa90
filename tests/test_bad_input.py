"""Every op rejects bad input with an error naming the op and the argument, before any kernel runs."""
import pytest
import torch

import s_ste
from s_ste import ops

from conftest import randn

W = randn(64, 64, seed=1)
BETA = torch.tensor(1.0)


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda: s_ste.soft_threshold_24(W.double()), TypeError, r"soft_threshold_24: w must have dtype"),
        (lambda: s_ste.soft_threshold_24(W[:, :6]), ValueError, r"soft_threshold_24: w must be contiguous"),
        (lambda: s_ste.soft_threshold_24(W[:, :6].contiguous()), ValueError, r"w.shape\[-1\] must be a positive multiple of 4"),
        (lambda: s_ste.hard_threshold_24(W.int()), TypeError, r"hard_threshold_24: w must have dtype"),
        (lambda: s_ste.scale_factor(W.t()), ValueError, r"scale_factor: w must be contiguous"),
        (lambda: s_ste.prune_and_compress(W, BETA), TypeError, r"prune_and_compress: out_dtype must be .*pass out_dtype="),
        (lambda: s_ste.prune_and_compress(W.half(), BETA, "sm70"), ValueError, r'prune_and_compress: layout must be "sm80" or "sm90"'),
        (lambda: s_ste.prune_and_compress(W.half(), BETA.double()), TypeError, r"prune_and_compress: scale must have dtype"),
        (lambda: s_ste.prune_and_compress(W.half(), torch.ones(2)), ValueError, r"prune_and_compress: scale must hold one element"),
        (lambda: s_ste.prune_and_compress(W[:48].half(), BETA), ValueError, r"row count \(out_features\) to be a multiple of 32"),
        (lambda: s_ste.prune_and_compress(randn(64, 48).half(), BETA), ValueError, r'layout "sm80" needs K .* multiple of 32'),
        (lambda: s_ste.prune_and_compress(randn(64, 40).half(), BETA, "sm90"), ValueError, r'layout "sm90" needs K .* multiple of 16'),
        (lambda: s_ste.prune_and_compress(W.half().view(2, 32, 64), BETA), ValueError, r"prune_and_compress: w must be 2-D"),
        (lambda: ops.prune_and_compress_dense(W, BETA), TypeError, r"prune_and_compress_dense: out_dtype must be .*pass out_dtype="),
        (lambda: ops.prune_and_compress_dense(W.half().view(2, 32, 64), BETA), ValueError, r"prune_and_compress_dense: w must be 2-D"),
        (lambda: ops.prune_and_compress_dense(W.half(), torch.ones(2)), ValueError, r"prune_and_compress_dense: scale must hold one element"),
        (lambda: ops.prune_and_compress_dense(W.half(), BETA, "sm70"), ValueError, r'prune_and_compress_dense: layout must be "sm80" or "sm90"'),
        (lambda: ops.prune_and_compress_dense(W, BETA, "sm80", torch.float8_e4m3fn), TypeError, r'prune_and_compress_dense: layout "sm80" holds 16-bit values'),
        (lambda: ops.prune_and_compress_dense(randn(64, 40).half(), BETA, "sm90"), ValueError, r'prune_and_compress_dense: layout "sm90" needs K .* multiple of 16'),
        (lambda: s_ste.decompress(W.half()[:, :32].contiguous(), torch.zeros(64, 3, dtype=torch.int16)), ValueError, r"decompress: meta has 192 elements"),
        (lambda: s_ste.decompress(W.half()[:, :32].contiguous(), torch.zeros(64, 4, dtype=torch.uint8)), TypeError, r"decompress: meta must have dtype"),
        (lambda: s_ste.decompress(W[:, :32].contiguous(), torch.zeros(64, 4, dtype=torch.int16)), TypeError, r"decompress: values must have dtype"),
        (lambda: s_ste.decompress(torch.zeros(32, 0, dtype=torch.half), torch.zeros(32, 0, dtype=torch.int16)), ValueError, r"decompress: in_features \(K\) must be positive"),
        (lambda: s_ste.mvue_24(W.double(), 0), TypeError, r"mvue_24: g must have dtype"),
        (lambda: s_ste.mvue_24(randn(4, 10), 0), ValueError, r"mvue_24: g.shape\[-1\] must be a positive multiple of 4"),
        (lambda: s_ste.quantize_fp8(W, torch.float16), TypeError, r"quantize_fp8: dtype must be torch.float8_e4m3fn"),
        (lambda: s_ste.quantize_fp8(W.t(), torch.float8_e4m3fn), ValueError, r"quantize_fp8: x must be contiguous"),
        (lambda: s_ste.quantize_fp8(W.int(), torch.float8_e4m3fn), TypeError, r"quantize_fp8: x must have dtype"),
        (lambda: s_ste.mvue_24_t_compress(W.view(64, 16, 4), 0), ValueError, r"mvue_24_t_compress: g must be 2-D"),
        (lambda: s_ste.mvue_24_t_compress(W.t(), 0), ValueError, r"mvue_24_t_compress: g must be contiguous"),
        (lambda: s_ste.mvue_24_t_compress(W.int(), 0), TypeError, r"mvue_24_t_compress: g must have dtype"),
        (lambda: s_ste.mvue_24_t_compress(W, 0), TypeError, r"mvue_24_t_compress: out_dtype must be .*pass out_dtype="),
        (lambda: s_ste.mvue_24_t_compress(W[:40].half(), 0), ValueError, r"g.shape\[0\] \(tokens.*multiple of 16.*pad the tokens"),
        (lambda: s_ste.mvue_24_t_compress(W[:48].half(), 0, 0, "sm90", torch.float8_e5m2), ValueError, r"g.shape\[0\] \(tokens.*multiple of 32"),
        (lambda: s_ste.mvue_24_t_compress(W[:, :48].contiguous().half(), 0, 0, "sm80"), ValueError, r"g.shape\[1\] \(out_features.*multiple of 32"),
        (lambda: s_ste.mvue_24_t_compress(W.half(), 0, 0, "sm80", torch.float8_e5m2), TypeError, r'mvue_24_t_compress: layout "sm80" holds 16-bit values'),
        (lambda: s_ste.mvue_24_t_compress(W.half(), 0, 0, "sm90", None, torch.ones(2)), ValueError, r"mvue_24_t_compress: scale must hold one element"),
        (lambda: s_ste.mvue_24_t_compress(W.half(), 0, 0, "sm90", None, BETA.half()), TypeError, r"mvue_24_t_compress: scale must have dtype"),
        (lambda: s_ste.mvue_24_t_compress(W.half(), 0, 0, "sm70"), ValueError, r'mvue_24_t_compress: layout must be "sm80" or "sm90"'),
        (lambda: s_ste.quantize_fp8_scaled(W, BETA, torch.bfloat16), TypeError, r"quantize_fp8_scaled: dtype must be torch.float8"),
        (lambda: s_ste.quantize_fp8_scaled(W.t(), BETA, torch.float8_e4m3fn), ValueError, r"quantize_fp8_scaled: x must be contiguous"),
        (lambda: s_ste.quantize_fp8_scaled(W.double(), BETA, torch.float8_e4m3fn), TypeError, r"quantize_fp8_scaled: x must have dtype"),
        (lambda: s_ste.quantize_fp8_scaled(W, torch.ones(2), torch.float8_e4m3fn), ValueError, r"quantize_fp8_scaled: scale must hold one element"),
        (lambda: s_ste.quantize_fp8_scaled(W, BETA.double(), torch.float8_e4m3fn), TypeError, r"quantize_fp8_scaled: scale must have dtype"),
        (lambda: s_ste.quantize_fp8_scaled(W.view(4, 16, 64), BETA, torch.float8_e4m3fn, True), ValueError, r"quantize_fp8_scaled: x must be 2-D"),
    ],
)
def test_named_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.fixture(scope="module")
def compressed():
    return s_ste.prune_and_compress(W.half(), BETA)


def test_sparse_linear_errors(compressed):
    values, meta = compressed
    x = randn(4, 64, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"sparse_linear: x has dtype .*BFloat16.* values has dtype"):
        s_ste.sparse_linear(x.bfloat16(), values, meta)
    with pytest.raises(ValueError, match=r"sparse_linear: x.shape\[-1\] must equal in_features = 2 \* values.shape\[1\] = 64"):
        s_ste.sparse_linear(x[:, :32], values, meta)
    with pytest.raises(ValueError, match=r"sparse_linear: bias must have shape \[out_features\] = \[64\]"):
        s_ste.sparse_linear(x, values, meta, torch.zeros(32, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"sparse_linear: bias must have dtype"):
        s_ste.sparse_linear(x, values, meta, torch.zeros(64))
    with pytest.raises(ValueError, match=r"sparse_linear: meta has 128 elements but values of shape \[64, 32\]"):
        s_ste.sparse_linear(x, values, meta[:, :2].contiguous())
    with pytest.raises(ValueError, match=r"sparse_linear: bias must be None with out_transposed=True"):
        ops.sparse_linear(x, values, meta, torch.zeros(64, dtype=torch.float16), out_transposed=True)
    with pytest.raises(ValueError, match=r"sparse_linear: out_transposed=True needs a 2-D x"):
        ops.sparse_linear(x.view(2, 2, 64), values, meta, out_transposed=True)


def test_sparse_linear_fp8_errors():
    w = randn(64, 64)
    values, meta = s_ste.prune_and_compress(w, torch.tensor(100.0), "sm90", torch.float8_e4m3fn)
    x = randn(4, 64)
    with pytest.raises(TypeError, match=r"sparse_linear: with FP8 values, x must be torch.float8_e4m3fn"):
        s_ste.sparse_linear(x.bfloat16(), values, meta, None, "sm90")
    xq, _ = s_ste.quantize_fp8(x, torch.float8_e4m3fn)
    with pytest.raises(TypeError, match=r"sparse_linear: bias must have dtype BFloat16"):
        s_ste.sparse_linear(xq, values, meta, torch.zeros(64), "sm90")
    with pytest.raises(TypeError, match=r"sparse_linear: alpha must have dtype Float"):
        s_ste.sparse_linear(xq, values, meta, None, "sm90", torch.tensor(1.0, dtype=torch.float64))
    v16, m16 = s_ste.prune_and_compress(w.bfloat16(), torch.tensor(1.0), "sm90")
    with pytest.raises(ValueError, match=r"sparse_linear: alpha \(the FP8 dequantization scale\) is only for FP8"):
        s_ste.sparse_linear(x.bfloat16(), v16, m16, None, "sm90", torch.tensor(1.0))


def test_layer_rejects_bad_configuration():
    with pytest.raises(ValueError, match="recipe must be one of"):
        s_ste.SparseLinear(16, 32, recipe="magnitude")
    with pytest.raises(ValueError, match="in_features must be a multiple of 4"):
        s_ste.SparseLinear(18, 32)
