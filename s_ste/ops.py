"""The extension's ops (torch.ops.s_ste.*): for each, its typed wrapper, fake kernel and
autograd formula, side by side.

The kernels (CPU and CUDA), every argument check and the layouts' alignment rules live in the
C++ extension `s_ste_cuda`, which only this module imports. The fake kernels run the same C++
checks (s_ste_cuda.check_args, on the dtype/device/contiguity/sizes of all of an op's
arguments) and describe output shapes and dtypes, so that torch.compile and meta tensors raise
the errors the real kernels raise. Defaults are the op schemas' (csrc/ops.cpp), read from
torch. See docs/numerics.md for the exact arithmetic of each op.
"""
from __future__ import annotations

import math

import torch

import s_ste_cuda  # loads the op registrations; does not initialise CUDA

_ops = torch.ops.s_ste

# ---- the rules every caller shares, written once ----

E4M3 = torch.float8_e4m3fn  # forward FP8 (x, ŵ)
E5M2 = torch.float8_e5m2  # gradient FP8
FP8_DTYPES = (E4M3, E5M2)
HALF_DTYPES = (torch.bfloat16, torch.float16)  # what the 2:4 GEMMs take besides FP8
FLOAT_DTYPES = (torch.float32, *HALF_DTYPES)  # what the element-wise ops take


def _layout_rules() -> dict:
    rules = s_ste_cuda.layout_rules()
    for r in rules.values():
        r["meta_dtype"] = getattr(torch, r["meta_dtype"])
    return rules


# {layout: {"row_align", "k_align": {bits: n}, "gemm_row_align", "gemm_k_align": {bits: n},
# "gemm_token_align", "wgrad_token_pad", "meta_dtype", "meta_cols", "meta_2d"}}: the C++ table
# (csrc/layout_rules.cpp).
LAYOUT_RULES = _layout_rules()
LAYOUTS = tuple(LAYOUT_RULES)  # ("sm80", "sm90")


def _meta_shape(layout: str, rows, K, value_dtype: torch.dtype) -> tuple:
    if LAYOUT_RULES[layout]["meta_2d"]:  # [rows, K / meta_cols]: symbolic sizes stay symbolic under torch.compile
        return (rows, K // LAYOUT_RULES[layout]["meta_cols"])
    return s_ste_cuda.meta_shape(layout, rows, K, 8 * value_dtype.itemsize)


def meta_numel(layout: str, rows: int, K: int, value_dtype: torch.dtype) -> int:
    """Elements of the metadata of a compressed [rows, K] operand holding value_dtype values."""
    return math.prod(_meta_shape(layout, rows, K, value_dtype))


_INT64 = (-(1 << 63), (1 << 63) - 1)


def check_int64(op: str, name: str, v) -> int:
    """The ops' int arguments are int64: say so, instead of torch's "expected int, found int"."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if not _INT64[0] <= v <= _INT64[1]:
        raise ValueError(f"{op}: {name} must fit in int64 ([-2**63, 2**63 - 1]; negative values wrap to "
                         f"uint64 in the Philox key), got {v}")
    return v


def check_same_device(op: str, **tensors: torch.Tensor | None) -> None:
    """Raise the C++ checks' error when the given tensors are not all on one device (the
    layer's own custom ops call it in their real and fake kernels)."""
    named = [(n, t) for n, t in tensors.items() if isinstance(t, torch.Tensor)]
    for name, t in named[1:]:
        ref_name, ref = named[0]
        if t.device != ref.device:
            s_ste_cuda.check_same_device(op, name, str(t.device), ref_name, str(ref.device))


def built_with_cuda() -> bool:
    """Whether the extension was compiled with its CUDA kernels."""
    return bool(s_ste_cuda.built_with_cuda())


def extension_entry(name: str):
    """The extension's function `name` (e.g. the GEMM tables' entries of a CUDA build), None if absent."""
    return getattr(s_ste_cuda, name, None)


# ---- schemas, fakes: the machinery ----


def _arguments(op: str):
    return getattr(_ops, op).default._schema.arguments


def _default(op: str, name: str):
    """The default of argument `name` of s_ste::<op>, as its schema declares it."""
    return next(a.default_value for a in _arguments(op) if a.name == name)


def _bind(op: str, args, kwargs=None) -> tuple:
    """All arguments of s_ste::<op> in schema order: `args` as called (the dispatcher may drop
    trailing defaults), then kwargs or the schema's defaults."""
    kwargs = kwargs or {}
    rest = _arguments(op)[len(args):]
    return (*args, *(kwargs[a.name] if a.name in kwargs else a.default_value for a in rest))


def _spec(t: torch.Tensor | None):
    """What the C++ checks read of a tensor (no data): a symbolic size is None, and the
    checks that need it are left to the real kernel (no guard on a dynamic dimension)."""
    if t is None:
        return None
    sizes = tuple(d if isinstance(d, int) else None for d in t.shape)
    return (t.dtype, str(t.device), bool(t.is_contiguous()), sizes)


def _fake(op: str):
    """Registers the decorated function as the fake kernel of s_ste::<op>: the real kernel's
    checks (C++) on the full argument list, then the function for the outputs' shapes."""
    def register(shapes):
        def fake(*args, **kwargs):
            full = _bind(op, args, kwargs)
            s_ste_cuda.check_args(op, *(_spec(a) if isinstance(a, torch.Tensor) else a for a in full))
            return shapes(*full)

        torch.library.register_fake(f"s_ste::{op}")(fake)
        return shapes
    return register


def _compressed_fake(like: torch.Tensor, rows: int, K: int, layout: str, dtype: torch.dtype):
    """(values [rows, K/2], meta) of a compressed operand, as the kernels allocate them."""
    meta = like.new_empty(_meta_shape(layout, rows, K, dtype), dtype=LAYOUT_RULES[layout]["meta_dtype"])
    return like.new_empty((rows, K // 2), dtype=dtype), meta


# ---- the thresholds: straight-through gradient ----


def soft_threshold_24(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S-STE soft threshold over groups of 4 along the last dim: (pruned, kept mask)."""
    return _ops.soft_threshold_24(w)


def hard_threshold_24(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-2-magnitude hard pruning (the STE / SR-STE mask): (w at kept positions, +0 elsewhere; mask)."""
    return _ops.hard_threshold_24(w)


def _straight_through(ctx, grad_pruned, _grad_mask):
    return grad_pruned  # dL/dw = dL/dpruned: the estimator S-STE and STE train with


for _op in ("soft_threshold_24", "hard_threshold_24"):
    _fake(_op)(lambda w: (torch.empty_like(w), torch.empty_like(w, dtype=torch.bool)))
    torch.library.register_autograd(f"s_ste::{_op}", _straight_through, setup_context=lambda ctx, inputs, output: None)


def scale_factor(w: torch.Tensor) -> torch.Tensor:
    """β = <w, S(w)> / <S(w), S(w)> as a 0-d float32 tensor on w's device."""
    return _ops.scale_factor(w)


@_fake("scale_factor")
def _scale_factor_fake(w):
    return w.new_empty((), dtype=torch.float32)


# ---- compress / decompress ----


def prune_and_compress(
    w: torch.Tensor,
    scale: torch.Tensor,
    layout: str = _default("prune_and_compress", "layout"),
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """scale·S(w) in CUTLASS's compressed 2:4 form: (values [N, K/2], metadata).

    out_dtype: bfloat16 / float16 (default: w's dtype when 16-bit), or float8_e4m3fn /
    float8_e5m2 for layout "sm90" (saturating; fold the FP8 scale into `scale`).
    """
    return _ops.prune_and_compress(w, scale, layout, out_dtype)


@_fake("prune_and_compress")
def _prune_and_compress_fake(w, scale, layout, out_dtype):
    return _compressed_fake(w, *w.shape, layout, out_dtype if out_dtype is not None else w.dtype)


def prune_and_compress_dense(
    w: torch.Tensor,
    scale: torch.Tensor,
    layout: str = _default("prune_and_compress_dense", "layout"),
    out_dtype: torch.dtype | None = None,
    hard: bool = _default("prune_and_compress_dense", "hard"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """prune_and_compress's (values, meta) plus the dense ŵ [N, K] they encode, in one pass.

    dense is in values' dtype, the bytes of ``decompress(values, meta, layout, validate=False)``.
    ``hard``: the top-2 magnitudes instead of the soft threshold (STE / SR-STE), the bytes of
    ``prune_and_compress(hard_threshold_24(w)[0], scale, layout, out_dtype)``.
    """
    return _ops.prune_and_compress_dense(w, scale, layout, out_dtype, hard)


@_fake("prune_and_compress_dense")
def _prune_and_compress_dense_fake(w, scale, layout, out_dtype, hard):
    values, meta = _compressed_fake(w, *w.shape, layout, out_dtype if out_dtype is not None else w.dtype)
    return values, meta, w.new_empty(w.shape, dtype=values.dtype)


def decompress(values: torch.Tensor, meta: torch.Tensor, layout: str = _default("decompress", "layout"),
               validate: bool = _default("decompress", "validate")) -> torch.Tensor:
    """Dense [N, K] matrix from compressed values and metadata.

    ``validate`` (default) first rejects metadata no compressor writes (see
    :func:`validate_compressed`); on CUDA that reads a count back (one host sync), so pass
    ``validate=False`` for metadata you just made with prune_and_compress.
    """
    return _ops.decompress(values, meta, layout, validate)


@_fake("decompress")
def _decompress_fake(values, meta, layout, validate):  # the codes themselves are data: checked at run time
    rows, half_k = values.shape
    return values.new_empty((rows, 2 * half_k))


def validate_compressed(values: torch.Tensor, meta: torch.Tensor,
                        layout: str = _default("validate_compressed", "layout")) -> None:
    """Raise ValueError unless every 2:4 code in ``meta`` is one a compressor writes (kept
    positions i0 < i1: 0x4 0x8 0x9 0xC 0xD 0xE) and, for "sm90", every padding byte is 0.

    decompress and sparse_linear(validate=True) call it; it syncs the host on CUDA.
    """
    _ops.validate_compressed(values, meta, layout)


@_fake("validate_compressed")
def _validate_compressed_fake(values, meta, layout):
    return None


# ---- MVUE ----


def mvue_24(g: torch.Tensor, seed: int, offset: int = _default("mvue_24", "offset")) -> torch.Tensor:
    """Unbiased 2:4 sparsification of g along its last dim, keyed by (seed, offset)."""
    return _ops.mvue_24(g, check_int64("mvue_24", "seed", seed), check_int64("mvue_24", "offset", offset))


@_fake("mvue_24")
def _mvue_24_fake(g, seed, offset):
    return torch.empty_like(g)


def mvue_24_t_compress(
    g: torch.Tensor,
    seed: int,
    offset: int = _default("mvue_24_t_compress", "offset"),
    layout: str = _default("mvue_24_t_compress", "layout"),
    out_dtype: torch.dtype | None = None,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The weight-gradient GEMM's sparse operand from grad_out g [T, N], in one pass.

    Returns (values, meta, amax): ``prune_and_compress(mvue_24(g.t().contiguous(), seed,
    offset), scale, layout, out_dtype)`` (the 2:4 groups run along the tokens T; a group
    whose gradient is not finite keeps NaN at positions 0 and 1) and amax = max |MVUE
    sample| (0-d float32, before ``scale``). Then ``dWᵀ = sparse_linear(xᵀ, values, meta)``.
    out_dtype defaults to g's dtype; float8_e5m2 / float8_e4m3fn need layout "sm90".
    """
    op = "mvue_24_t_compress"
    return _ops.mvue_24_t_compress(g, check_int64(op, "seed", seed), check_int64(op, "offset", offset), layout,
                                   out_dtype, scale)


@_fake("mvue_24_t_compress")
def _mvue_24_t_compress_fake(g, seed, offset, layout, out_dtype, scale):
    tokens, n = g.shape
    values, meta = _compressed_fake(g, n, tokens, layout, out_dtype if out_dtype is not None else g.dtype)
    return values, meta, g.new_empty((), dtype=torch.float32)


# ---- FP8 casts ----


def quantize_fp8(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor scaled saturating cast to FP8: (q, scale_inv) with x ≈ q.float() * scale_inv."""
    return _ops.quantize_fp8(x, dtype)


@_fake("quantize_fp8")
def _quantize_fp8_fake(x, dtype):
    return torch.empty_like(x, dtype=dtype), x.new_empty((), dtype=torch.float32)


def quantize_fp8_scaled(
    x: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype,
    transpose: bool = _default("quantize_fp8_scaled", "transpose"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FP8 cast with a given per-tensor scale (delayed scaling), in one pass, no host sync.

    Returns (q, q_t, amax): q = saturating FP8 rounding of x·scale (x's shape); q_t = the same
    bytes for the 2-D x transposed, contiguous [K, N], when ``transpose`` (else an empty
    tensor); amax = max |x| as a 0-d float32 tensor (NaN if x holds a NaN), for the next
    step's scale. ``scale`` is a 1-element float32 tensor on x's device.
    """
    return _ops.quantize_fp8_scaled(x, scale, dtype, transpose)


@_fake("quantize_fp8_scaled")
def _quantize_fp8_scaled_fake(x, scale, dtype, transpose):
    q_t = x.new_empty((x.shape[1], x.shape[0]) if transpose else (0,), dtype=dtype)
    return x.new_empty(x.shape, dtype=dtype), q_t, x.new_empty((), dtype=torch.float32)


# ---- sparse_linear: the GEMM, its gradients ----


def sparse_linear(
    x: torch.Tensor,
    values: torch.Tensor,
    meta: torch.Tensor,
    bias: torch.Tensor | None = None,
    layout: str = _default("sparse_linear", "layout"),
    alpha: torch.Tensor | None = None,
    validate: bool = False,
    out_transposed: bool = _default("sparse_linear", "out_transposed"),
) -> torch.Tensor:
    """y = alpha · (x · decompress(values, meta)ᵀ) + bias.

    16-bit values: x in the same dtype, y too, no alpha. FP8 values (layout "sm90"): x is
    float8_e4m3fn, alpha the dequantization factor (e.g. scale_inv_x · scale_inv_w, a 0-d
    float32 tensor on the device: no host sync), bias and y bfloat16. The GEMM trusts its
    metadata (an illegal code silently drops or swaps values); ``validate=True`` runs
    :func:`validate_compressed` first (a host sync on CUDA; off, it costs nothing) — use it
    for metadata from a checkpoint or another library. ``out_transposed``: return yᵀ
    [out_features, tokens] contiguous, for a 2-D x and no bias (the weight gradient in its
    parameter's layout; the SM80 GEMM writes it natively).
    """
    if validate:
        validate_compressed(values, meta, layout)
    return _ops.sparse_linear(x, values, meta, bias, layout, alpha, out_transposed)


@_fake("sparse_linear")
def _sparse_linear_fake(x, values, meta, bias, layout, alpha, out_transposed):
    dtype = torch.bfloat16 if values.dtype in FP8_DTYPES else x.dtype
    if out_transposed:
        return x.new_empty((values.shape[0], x.shape[0]), dtype=dtype)
    return x.new_empty((*x.shape[:-1], values.shape[0]), dtype=dtype)


# 16-bit values, y = x·Ŵᵀ + b with Ŵ = decompress(values, meta): dx = g·Ŵ, db = g summed over
# tokens, dvalues = (gᵀx) at the kept positions in compressed order (row-major, increasing
# column inside each row: the order of values); meta is not differentiable. FP8 values: only
# bias is (SparseLinear(fp8=True) computes its FP8 gradients itself). out_transposed: the
# incoming gradient is gᵀ, transposed back once.


def _sparse_linear_setup(ctx, inputs, output):
    x, values, meta, bias, layout, alpha, out_transposed = _bind("sparse_linear", inputs)
    ctx.n_inputs = len(inputs)
    ctx.layout, ctx.out_transposed = layout, out_transposed
    ctx.fp8 = values.dtype in FP8_DTYPES
    ctx.values_dtype = values.dtype
    ctx.save_for_backward(x, values, meta)


def _sparse_linear_backward(ctx, grad):
    x, values, meta = ctx.saved_tensors
    need_x, need_values, _, need_bias, _, need_alpha = (*ctx.needs_input_grad, *(False,) * 6)[:6]
    if ctx.fp8 and (need_x or need_values or need_alpha):
        wrt = [n for n, need in (("x", need_x), ("values", need_values), ("alpha", need_alpha)) if need]
        raise RuntimeError(
            f"sparse_linear: no gradient with respect to {', '.join(wrt)} for FP8 values ({ctx.values_dtype}); "
            "only bias is differentiable there (SparseLinear(fp8=True) computes the FP8 gradients itself)")
    N = values.shape[0]
    g = (grad.t().contiguous() if ctx.out_transposed else grad).reshape(-1, N)
    dx = dvalues = dbias = None
    if need_bias:
        dbias = g.sum(0, dtype=torch.float32).to(grad.dtype)
    if need_x or need_values:
        # The metadata was checked (or trusted) by the forward: no second check, no host sync.
        w = decompress(values, meta, ctx.layout, validate=False)
        if need_x:
            dx = (g @ w).reshape(x.shape)
        if need_values:
            # The kept positions of each group, exactly two, in the order values stores them.
            kept = decompress(torch.ones_like(values), meta, ctx.layout, validate=False) != 0
            dw = g.t() @ x.reshape(-1, x.shape[-1])
            dvalues = dw.masked_select(kept).view(values.shape)
    return (dx, dvalues, None, dbias, None, None, None)[:ctx.n_inputs]


torch.library.register_autograd("s_ste::sparse_linear", _sparse_linear_backward, setup_context=_sparse_linear_setup)
