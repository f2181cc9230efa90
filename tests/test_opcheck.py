"""torch.library.opcheck on every op (schema, fake kernel, autograd registration, dispatch),
and the fake kernels on meta tensors."""
import pytest
import torch

import s_ste  # noqa: F401  (registers the ops)

from conftest import randn

ops = torch.ops.s_ste


def op_cases(device="cpu"):
    w = randn(64, 64, device=device, seed=1)
    wb = w.bfloat16()
    beta = torch.tensor(0.9, device=device)
    v80, m80 = ops.prune_and_compress(wb, beta, "sm80")
    v90, m90 = ops.prune_and_compress(wb, beta, "sm90")
    x = randn(8, 64, dtype=torch.bfloat16, device=device, seed=2)
    bias = randn(64, dtype=torch.bfloat16, device=device, seed=3)
    rng = torch.tensor([3, 4], device=device)
    v8, m8 = ops.prune_and_compress(w, beta * 100, "sm90", torch.float8_e4m3fn)
    xq, x_scale_inv = ops.quantize_fp8(x, torch.float8_e4m3fn)
    return [
        (ops.prune_and_compress, (w, beta * 100, "sm90", torch.float8_e5m2), {}),
        (ops.decompress, (v8, m8, "sm90"), {}),
        (ops.sparse_linear, (xq, v8, m8, bias, "sm90", x_scale_inv), {}),
        (ops.soft_threshold_24, (w,), {}),
        (ops.hard_threshold_24, (wb,), {}),
        (ops.scale_factor, (w,), {}),
        (ops.prune_and_compress, (w, beta, "sm80", torch.bfloat16), {}),
        (ops.prune_and_compress, (wb, beta, "sm90"), {}),
        (ops.prune_and_compress_dense, (w, beta, "sm80", torch.bfloat16), {}),
        (ops.prune_and_compress_dense, (wb, beta, "sm90", None, True), {}),
        (ops.prune_and_compress_dense, (w, beta * 100, "sm90", torch.float8_e4m3fn), {}),
        (ops.decompress, (v80, m80, "sm80"), {}),
        (ops.decompress, (v90, m90, "sm90"), {}),
        (ops.decompress, (v90, m90, "sm90", False), {}),
        (ops.validate_compressed, (v80, m80, "sm80"), {}),
        (ops.validate_compressed, (v8, m8, "sm90"), {}),
        (ops.quantize_fp8_scaled, (torch.zeros(3, 0, device=device), beta, torch.float8_e4m3fn, True), {}),
        (ops.mvue_24, (w, 5, 6), {}),
        (ops.quantize_fp8, (w, torch.float8_e4m3fn), {}),
        (ops.quantize_fp8, (wb, torch.float8_e5m2), {}),
        (ops.sparse_linear, (x, v80, m80, bias, "sm80"), {}),
        (ops.sparse_linear, (x, v90, m90, None, "sm90"), {}),
        (ops.sparse_linear, (x, v80, m80, None, "sm80", None, True), {}),
        (ops.sparse_linear, (xq, v8, m8, None, "sm90", x_scale_inv, True), {}),
        (ops.mvue_24_t_compress, (wb, 5, 6, "sm80"), {}),
        (ops.mvue_24_t_compress, (w, 5, 6, "sm90", torch.float16, beta), {}),
        (ops.mvue_24_t_compress, (w, 5, 6, "sm90", torch.float8_e5m2, beta * 100), {}),
        (ops.quantize_fp8_scaled, (wb, beta * 100, torch.float8_e4m3fn, True), {}),
        (ops.quantize_fp8_scaled, (randn(3, 5, 7, device=device), beta, torch.float8_e5m2), {}),
        (ops.sparse_weight, (w.clone().requires_grad_(), beta, "s-ste", 0.0), {}),
        (ops.sparse_weight, (randn(32, 16, seed=4).requires_grad_(), beta, "sr-ste", 1e-2), {}),
        # Non-contiguous inputs: the fake kernels must give the real (contiguous) strides.
        (ops.sparse_weight, (w.t(), beta, "s-ste", 0.0), {}),
        (ops.sparse_weight, (w.t(), beta, "ste", 0.0), {}),
        (ops.sparse_linear_train_backward,
         (randn(8, 4, 64, device=device), randn(4, 8, 64, device=device).transpose(0, 1), w.detach(), rng, False, False), {}),
        (ops.sparse_linear_train, (x.float().requires_grad_(), w.detach().requires_grad_(), None, rng, True, False), {}),
        (ops.sparse_linear_train_backward, (randn(8, 64, device=device), x.float(), w.detach(), rng, True, True), {}),
    ]


from test_layer import fast_op_cases  # noqa: E402  (the layer's fast-path ops)

CASES = op_cases() + fast_op_cases()
ALL_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def opcheck_utils(op, args, kwargs):
    """All opcheck tests, less those torch cannot run on FP8 tensors (it has no FP8
    arithmetic): test_schema compares inputs arithmetically (FP8 inputs), and
    aot_dispatch_dynamic sums the outputs to test backward (FP8 outputs)."""
    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)
    out = op(*args, **kwargs)
    outs = out if isinstance(out, (tuple, list)) else (() if out is None else (out,))
    skip = set()
    if any(isinstance(a, torch.Tensor) and a.dtype in fp8 for a in args):
        skip.add("test_schema")
    if any(o.dtype in fp8 for o in outs):
        skip.add("test_aot_dispatch_dynamic")
    return tuple(u for u in ALL_UTILS if u not in skip)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]._qualified_op_name}-{i}" for i, c in enumerate(CASES)])
def test_opcheck_cpu(case):
    op, args, kwargs = CASES[case]
    torch.library.opcheck(op, args, kwargs, test_utils=opcheck_utils(op, args, kwargs))


def test_every_op_has_an_opcheck_case():
    defined = {name for name in dir(ops) if not name.startswith("_") and isinstance(getattr(ops, name), torch._ops.OpOverloadPacket)}
    covered = {c[0]._qualified_op_name.split("::")[1] for c in CASES}
    assert defined <= covered, f"ops without an opcheck case: {defined - covered}"


def test_fake_kernels_on_meta():
    w = torch.empty(96, 160, device="meta")
    beta = torch.empty((), device="meta")
    pruned, mask = s_ste.soft_threshold_24(w)
    assert pruned.shape == w.shape and mask.dtype == torch.bool and pruned.device.type == "meta"
    assert s_ste.scale_factor(w).shape == ()
    v, m = s_ste.prune_and_compress(w, beta, "sm80", torch.float16)
    assert v.shape == (96, 80) and v.dtype == torch.float16 and m.shape == (96, 10) and m.dtype == torch.int16
    v, m = s_ste.prune_and_compress(w.bfloat16(), beta, "sm90")
    assert m.shape == (128 * 256 // 8,) and m.dtype == torch.uint8
    assert s_ste.decompress(v, m, "sm90").shape == (96, 160)
    assert s_ste.mvue_24(w, 1, 2).shape == w.shape
    q, s = s_ste.quantize_fp8(w, torch.float8_e5m2)
    assert q.dtype == torch.float8_e5m2 and s.shape == ()
    x = torch.empty(2, 7, 160, dtype=torch.bfloat16, device="meta")
    assert s_ste.sparse_linear(x, v, m, None, "sm90").shape == (2, 7, 96)


def test_fake_kernels_reject_bad_shapes_on_meta():
    # The same errors (type and text) as the real kernels: test_hardening_ops.py compares them.
    with pytest.raises(ValueError, match="multiple of 4"):
        s_ste.soft_threshold_24(torch.empty(8, 6, device="meta"))
    with pytest.raises(ValueError, match="layout"):
        s_ste.decompress(torch.empty(32, 8, device="meta"), torch.empty(32, 1, device="meta"), "sm70")


def test_sm80_fakes_keep_symbolic_sizes():
    """Under dynamic shapes the sm80 fakes compute the metadata shape on SymInts: one graph
    serves every row count (the sm90 size goes through C++ and specializes, as before)."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(lambda w, b: s_ste.prune_and_compress(w, b, "sm80"), dynamic=True, backend="aot_eager")
    for rows in (32, 64, 96):
        v, m = compiled(randn(rows, 64).bfloat16(), torch.tensor(1.0))
        assert v.shape == (rows, 32) and m.shape == (rows, 4)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
