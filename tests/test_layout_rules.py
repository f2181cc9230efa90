"""The one alignment table (csrc/layout_rules.cpp, from s_ste/layout_sm80.cuh and
layout_sm90.cuh; s_ste.ops.LAYOUT_RULES in Python) against what the ops do: for each rule, the
aligned shape passes and a shape one step off raises the op's error, whose text names the
table's number. The GEMM rules are checked against the GEMMs' own can_implement (a CUDA build;
no GPU needed) and, at compile time, by the GEMM headers' static_asserts."""
import re

import pytest
import torch

from s_ste import ops

from conftest import randn

RULES = ops.LAYOUT_RULES
BETA = torch.tensor(1.0)
VALUE_DTYPES = {16: torch.bfloat16, 8: torch.float8_e4m3fn}


def value_cases():
    """(layout, value bits, value dtype) for every width each layout holds."""
    return [(layout, bits, VALUE_DTYPES[bits]) for layout, r in RULES.items() for bits in r["k_align"]]


def test_the_table():
    assert ops.LAYOUTS == ("sm80", "sm90")
    for layout, r in RULES.items():
        assert set(r) >= {"row_align", "k_align", "gemm_row_align", "gemm_k_align", "gemm_token_align",
                          "wgrad_token_pad", "meta_dtype"}, layout
        assert set(r["gemm_k_align"]) == set(r["k_align"]), "a GEMM rule for every width the layout holds"
        for bits, k in r["k_align"].items():
            # The layer pads the tokens (the weight-gradient GEMM's K) once for every width.
            assert r["wgrad_token_pad"] % k == 0 and r["wgrad_token_pad"] % r["gemm_k_align"][bits] == 0
            assert k % 4 == 0 and r["gemm_k_align"][bits] % k == 0, "the GEMM takes no K the layout rejects"
        assert r["gemm_row_align"] % r["row_align"] == 0
    assert 8 not in RULES["sm80"]["k_align"], "no FP8 sparse tensor cores before SM90"


def one_step_off(align):
    """The smallest size above `align` that keeps 2:4 groups whole but breaks the rule."""
    return align + 4 if align % 8 == 0 else align + 1


@pytest.mark.parametrize("layout,bits,dtype", value_cases())
def test_k_align(layout, bits, dtype):
    k = RULES[layout]["k_align"][bits]
    rows = RULES[layout]["row_align"]
    w = randn(rows, k, seed=1)
    for op in (ops.prune_and_compress, ops.prune_and_compress_dense):
        op(w, BETA, layout, dtype)  # aligned: accepted
        with pytest.raises(ValueError, match=rf'{op.__name__}: layout "{layout}" needs K .* multiple of {k}\b'):
            op(randn(rows, one_step_off(k), seed=1), BETA, layout, dtype)
    # mvue_24_t_compress: K is the tokens, g.shape[0]
    ops.mvue_24_t_compress(randn(k, rows, seed=2), 0, 0, layout, dtype)
    with pytest.raises(ValueError, match=rf"g.shape\[0\] \(tokens.*multiple of {k} for layout \"{layout}\""):
        ops.mvue_24_t_compress(randn(one_step_off(k), rows, seed=2), 0, 0, layout, dtype)


@pytest.mark.parametrize("layout", [layout for layout, r in RULES.items() if r["row_align"] > 1])
def test_row_align(layout):
    n = RULES[layout]["row_align"]
    k = min(RULES[layout]["k_align"].values())
    ops.prune_and_compress(randn(n, k, seed=3).bfloat16(), BETA, layout)
    with pytest.raises(ValueError, match=rf"row count \(out_features\) to be a multiple of {n}\b"):
        ops.prune_and_compress(randn(n + 1, k, seed=3).bfloat16(), BETA, layout)
    with pytest.raises(ValueError, match=rf"g.shape\[1\] \(out_features.*multiple of {n} for layout \"{layout}\""):
        ops.mvue_24_t_compress(randn(k, n + 1, seed=4).bfloat16(), 0, 0, layout)
    values, meta = ops.prune_and_compress(randn(n, k, seed=3).bfloat16(), BETA, layout)
    with pytest.raises(ValueError, match=rf"multiple of {n}\b"):  # a compressed operand with a row too few
        ops.decompress(values[1:].contiguous(), meta, layout)


@pytest.mark.parametrize("layout", [layout for layout, r in RULES.items() if r["row_align"] == 1])
def test_rows_free(layout):
    k = min(RULES[layout]["k_align"].values())
    ops.prune_and_compress(randn(1, k, seed=5).bfloat16(), BETA, layout)
    ops.mvue_24_t_compress(randn(k, 1, seed=5).bfloat16(), 0, 0, layout)


@pytest.mark.parametrize("layout,bits,dtype", value_cases())
@pytest.mark.parametrize("rows,k_multiple", [(1, 1), (37, 3), (64, 8)])
def test_meta_numel_and_dtype(layout, bits, dtype, rows, k_multiple):
    rows = max(rows // RULES[layout]["row_align"], 1) * RULES[layout]["row_align"]
    K = k_multiple * RULES[layout]["k_align"][bits]
    values, meta = ops.prune_and_compress(randn(rows, K, seed=6), BETA * 10, layout, dtype)
    assert meta.numel() == ops.meta_numel(layout, rows, K, dtype) and meta.dtype == RULES[layout]["meta_dtype"]
    fake_values, fake_meta = ops.prune_and_compress(randn(rows, K, seed=6).to("meta"), BETA.to("meta"), layout, dtype)
    assert fake_meta.shape == meta.shape and fake_values.shape == values.shape


@pytest.mark.parametrize("layout,bits,dtype", value_cases())
def test_wgrad_token_pad(layout, bits, dtype):
    """Tokens padded to wgrad_token_pad make a legal weight-gradient operand for every width."""
    pad, n = RULES[layout]["wgrad_token_pad"], RULES[layout]["row_align"]
    ops.mvue_24_t_compress(randn(pad, n, seed=7), 0, 0, layout, dtype)
    ops.mvue_24_t_compress(randn(3 * pad, n, seed=7), 0, 0, layout, dtype)


# ---- the GEMM rules: the GEMMs' own can_implement (host-only; CUDA builds) ----

def gemm_kernels():
    if not ops.built_with_cuda():
        return []
    import s_ste_cuda

    keys = ("name", "sm", "layout", "a", "b", "out", "has_bias", "out_is_transposed")
    return [dict(zip(keys, k)) for k in s_ste_cuda.gemm_kernels()]


@pytest.mark.skipif(not ops.built_with_cuda(), reason="the GEMMs are compiled in CUDA builds only")
@pytest.mark.parametrize("kernel", gemm_kernels(), ids=lambda k: k["name"])
def test_gemm_rules_are_the_gemms(kernel):
    import s_ste_cuda

    r = RULES[kernel["layout"]]
    bits = 8 if kernel["a"].startswith("float8") else 16
    M, K, T = 2 * r["gemm_row_align"] * 64, 2 * r["gemm_k_align"][bits] * 8, 64 * r["gemm_token_align"]
    can = lambda T, M, K: s_ste_cuda.gemm_can_implement(kernel["name"], T, M, K, False)  # noqa: E731
    assert can(T, M, K) is None, "an aligned problem is taken"
    for rule, size, args in (("gemm_row_align", r["gemm_row_align"], lambda s: (T, M + s, K)),
                             ("gemm_k_align", r["gemm_k_align"][bits], lambda s: (T, M, K + s)),
                             ("gemm_token_align", r["gemm_token_align"], lambda s: (T + s, M, K))):
        if size == 1:
            assert can(*args(1)) is None, f"{rule} is 1: any size"
            continue
        step = 4 if rule == "gemm_k_align" else 1  # K stays a whole number of 2:4 groups
        why = can(*args(step))
        assert why is not None and re.search(rf"multiple of {size}\b", why), f"{rule}: {why}"


# ---- the layer's fall-back text ----
# For each rule above, a layer whose shape is one step off falls back to the semantic path with a
# one-time warning naming the table's number (fast.eligible's reason): the layer's in_features is the
# compressed weight's K and the weight-gradient GEMM's tokens, its out_features the rows of the
# compressed weight and of MVUE(gᵀ) and the GEMMs' M; FP8 adds torch._scaled_mm's 16.

def layer_rules(layout, bits):
    """(in_features multiple, out_features multiple) of the layer's fast path, from the table."""
    import math

    r = RULES[layout]
    k = math.lcm(r["k_align"][bits], r["gemm_k_align"][bits], r["gemm_token_align"])
    n = math.lcm(r["row_align"], r["gemm_row_align"])
    return (math.lcm(k, 16), math.lcm(n, 16)) if bits == 8 else (k, n)


def layer_forward(in_features, out_features, layout, bits, fast):
    import s_ste

    torch.manual_seed(0)
    layer = s_ste.SparseLinear(in_features, out_features, fp8=bits == 8, fast=fast, layout=layout)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bits == 16):
        return layer(randn(8, in_features, seed=8)).float()


@pytest.mark.parametrize("layout,bits,dtype", value_cases())
def test_layer_falls_back_naming_the_rule(layout, bits, dtype):
    import warnings

    k, n = layer_rules(layout, bits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer_forward(k, n, layout, bits, fast=True)  # aligned: the fast path, no warning
    what = "FP8" if bits == 8 else layout
    off = [((one_step_off(k), n), rf"in_features % {k} == 0")]
    compressible = k + RULES[layout]["k_align"][bits]  # the layout compresses it, a GEMM refuses it
    if compressible % k:
        off.append(((compressible, n), rf"in_features % {k} == 0"))
    if n > 1:  # (no out_features rule otherwise)
        off.append(((k, one_step_off(n)), rf"out_features % {n} == 0"))
    for shape, needs in off:
        with pytest.warns(UserWarning, match=rf"fast path unavailable \({what} needs .*{needs}"):
            y = layer_forward(*shape, layout, bits, fast=True)
        assert torch.equal(y, layer_forward(*shape, layout, bits, fast=False)), "the semantic path"


def test_the_sm80_layer_rule_is_the_gemms_k():
    """The SM80 SparseGemm needs K % 64 where the compressed layout takes K % 32: the layer takes the
    GEMM's rule (a layer admitted at % 32 ran decompress + dense GEMMs at every forward)."""
    assert RULES["sm80"]["gemm_k_align"][16] > RULES["sm80"]["k_align"][16]
    assert layer_rules("sm80", 16)[0] == RULES["sm80"]["gemm_k_align"][16]
