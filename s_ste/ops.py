"""Typed wrappers of the extension's ops (torch.ops.s_ste.*) and their fake kernels.

The kernels (CPU and CUDA) and every argument check live in the C++ extension
`s_ste_cuda`; the fake kernels here run the same C++ checks (s_ste_cuda.check_args, on the
dtype/device/contiguity/sizes of their arguments) and describe output shapes and dtypes, so
that torch.compile and meta tensors raise the errors the real kernels raise. See docs/numerics.md for the exact
arithmetic of each op.
"""
from __future__ import annotations

import torch

import s_ste_cuda  # noqa: F401  (loads the op registrations; does not initialise CUDA)

_ops = torch.ops.s_ste

LAYOUTS = ("sm80", "sm90")


def soft_threshold_24(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S-STE soft threshold over groups of 4 along the last dim: (pruned, kept mask)."""
    return _ops.soft_threshold_24(w)


def hard_threshold_24(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-2-magnitude hard pruning (the STE / SR-STE mask): (w at kept positions, +0 elsewhere; mask)."""
    return _ops.hard_threshold_24(w)


def scale_factor(w: torch.Tensor) -> torch.Tensor:
    """β = <w, S(w)> / <S(w), S(w)> as a 0-d float32 tensor on w's device."""
    return _ops.scale_factor(w)


def prune_and_compress(
    w: torch.Tensor,
    scale: torch.Tensor,
    layout: str = "sm80",
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """scale·S(w) in CUTLASS's compressed 2:4 form: (values [N, K/2], metadata).

    out_dtype: bfloat16 / float16 (default: w's dtype when 16-bit), or float8_e4m3fn /
    float8_e5m2 for layout "sm90" (saturating; fold the FP8 scale into `scale`).
    """
    return _ops.prune_and_compress(w, scale, layout, out_dtype)


def decompress(values: torch.Tensor, meta: torch.Tensor, layout: str = "sm80", validate: bool = True) -> torch.Tensor:
    """Dense [N, K] matrix from compressed values and metadata.

    ``validate`` (default) first rejects metadata no compressor writes (see
    :func:`validate_compressed`); on CUDA that reads a count back (one host sync), so pass
    ``validate=False`` for metadata you just made with prune_and_compress.
    """
    return _ops.decompress(values, meta, layout, validate)


def validate_compressed(values: torch.Tensor, meta: torch.Tensor, layout: str = "sm80") -> None:
    """Raise ValueError unless every 2:4 code in ``meta`` is one a compressor writes (kept
    positions i0 < i1: 0x4 0x8 0x9 0xC 0xD 0xE) and, for "sm90", every padding byte is 0.

    decompress and sparse_linear(validate=True) call it; it syncs the host on CUDA.
    """
    _ops.validate_compressed(values, meta, layout)


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _check_int64(op: str, name: str, v) -> int:
    """The ops' int arguments are int64: say so, instead of torch's "expected int, found int"."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if not _INT64[0] <= v <= _INT64[1]:
        raise ValueError(f"{op}: {name} must fit in int64 ([-2**63, 2**63 - 1]; negative values wrap to "
                         f"uint64 in the Philox key), got {v}")
    return v


def mvue_24(g: torch.Tensor, seed: int, offset: int = 0) -> torch.Tensor:
    """Unbiased 2:4 sparsification of g along its last dim, keyed by (seed, offset)."""
    return _ops.mvue_24(g, _check_int64("mvue_24", "seed", seed), _check_int64("mvue_24", "offset", offset))


def quantize_fp8(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor scaled saturating cast to FP8: (q, scale_inv) with x ≈ q.float() * scale_inv."""
    return _ops.quantize_fp8(x, dtype)


def quantize_fp8_scaled(
    x: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype, transpose: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FP8 cast with a given per-tensor scale (delayed scaling), in one pass, no host sync.

    Returns (q, q_t, amax): q = saturating FP8 rounding of x·scale (x's shape); q_t = the same
    bytes for the 2-D x transposed, contiguous [K, N], when ``transpose`` (else an empty
    tensor); amax = max |x| as a 0-d float32 tensor (NaN if x holds a NaN), for the next
    step's scale. ``scale`` is a 1-element float32 tensor on x's device.
    """
    return _ops.quantize_fp8_scaled(x, scale, dtype, transpose)


def mvue_24_t_compress(
    g: torch.Tensor,
    seed: int,
    offset: int = 0,
    layout: str = "sm90",
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
    return _ops.mvue_24_t_compress(g, _check_int64(op, "seed", seed), _check_int64(op, "offset", offset), layout,
                                   out_dtype, scale)


def sparse_linear(
    x: torch.Tensor,
    values: torch.Tensor,
    meta: torch.Tensor,
    bias: torch.Tensor | None = None,
    layout: str = "sm80",
    alpha: torch.Tensor | None = None,
    validate: bool = False,
) -> torch.Tensor:
    """y = alpha · (x · decompress(values, meta)ᵀ) + bias.

    16-bit values: x in the same dtype, y too, no alpha. FP8 values (layout "sm90"): x is
    float8_e4m3fn, alpha the dequantization factor (e.g. scale_inv_x · scale_inv_w, a 0-d
    float32 tensor on the device: no host sync), bias and y bfloat16. The GEMM trusts its
    metadata (an illegal code silently drops or swaps values); ``validate=True`` runs
    :func:`validate_compressed` first (a host sync on CUDA; off, it costs nothing) — use it
    for metadata from a checkpoint or another library.
    """
    if validate:
        validate_compressed(values, meta, layout)
    return _ops.sparse_linear(x, values, meta, bias, layout, alpha)


def built_with_cuda() -> bool:
    """Whether the extension was compiled with its CUDA kernels."""
    return bool(s_ste_cuda.built_with_cuda())


# ---- fake kernels: the real kernels' checks (C++), then shapes and dtypes ----


def _spec(t: torch.Tensor | None):
    """What the C++ checks read of a tensor (no data): a symbolic size is None, and the
    checks that need it are left to the real kernel (no guard on a dynamic dimension)."""
    if t is None:
        return None
    sizes = tuple(d if isinstance(d, int) else None for d in t.shape)
    return (t.dtype, str(t.device), bool(t.is_contiguous()), sizes)


def _check(op: str, *args) -> None:
    s_ste_cuda.check_args(op, *(_spec(a) if isinstance(a, torch.Tensor) else a for a in args))


def check_same_device(op: str, **tensors: torch.Tensor | None) -> None:
    """Raise the C++ checks' error when the given tensors are not all on one device (the
    layer's own custom ops call it in their real and fake kernels)."""
    named = [(n, t) for n, t in tensors.items() if isinstance(t, torch.Tensor)]
    for name, t in named[1:]:
        ref_name, ref = named[0]
        if t.device != ref.device:
            raise ValueError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}; "
                             "move them to one device")


def _meta_numel(layout: str, rows: int, K: int, value_dtype: torch.dtype) -> int:
    if layout == "sm80":
        return rows * (K // 16)
    return s_ste_cuda.sm90_meta_bytes(rows, K, 8 * value_dtype.itemsize)


def _compressed_fake(like: torch.Tensor, rows: int, K: int, layout: str, dtype: torch.dtype):
    """(values [rows, K/2], meta) of a compressed operand, as the kernels allocate them."""
    values = like.new_empty((rows, K // 2), dtype=dtype)
    if layout == "sm80":
        return values, like.new_empty((rows, K // 16), dtype=torch.int16)
    return values, like.new_empty((_meta_numel(layout, rows, K, dtype),), dtype=torch.uint8)


@torch.library.register_fake("s_ste::soft_threshold_24")
def _soft_threshold_24_fake(w):
    _check("soft_threshold_24", w)
    return torch.empty_like(w), torch.empty_like(w, dtype=torch.bool)


@torch.library.register_fake("s_ste::hard_threshold_24")
def _hard_threshold_24_fake(w):
    _check("hard_threshold_24", w)
    return torch.empty_like(w), torch.empty_like(w, dtype=torch.bool)


@torch.library.register_fake("s_ste::scale_factor")
def _scale_factor_fake(w):
    _check("scale_factor", w)
    return w.new_empty((), dtype=torch.float32)


@torch.library.register_fake("s_ste::prune_and_compress")
def _prune_and_compress_fake(w, scale, layout="sm80", out_dtype=None):
    _check("prune_and_compress", w, scale, layout, out_dtype)
    rows, K = w.shape
    return _compressed_fake(w, rows, K, layout, out_dtype if out_dtype is not None else w.dtype)


@torch.library.register_fake("s_ste::decompress")
def _decompress_fake(values, meta, layout="sm80", validate=True):
    _check("decompress", values, meta, layout)  # the codes themselves are data: checked at run time
    rows, half_k = values.shape
    return values.new_empty((rows, 2 * half_k))


@torch.library.register_fake("s_ste::validate_compressed")
def _validate_compressed_fake(values, meta, layout="sm80"):
    _check("validate_compressed", values, meta, layout)


@torch.library.register_fake("s_ste::mvue_24")
def _mvue_24_fake(g, seed, offset=0):
    _check("mvue_24", g)
    return torch.empty_like(g)


@torch.library.register_fake("s_ste::quantize_fp8")
def _quantize_fp8_fake(x, dtype):
    _check("quantize_fp8", x, dtype)
    return torch.empty_like(x, dtype=dtype), x.new_empty((), dtype=torch.float32)


FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


@torch.library.register_fake("s_ste::quantize_fp8_scaled")
def _quantize_fp8_scaled_fake(x, scale, dtype, transpose=False):
    _check("quantize_fp8_scaled", x, scale, dtype, transpose)
    if transpose:
        q_t = x.new_empty((x.shape[1], x.shape[0]), dtype=dtype)
    else:
        q_t = x.new_empty((0,), dtype=dtype)
    return x.new_empty(x.shape, dtype=dtype), q_t, x.new_empty((), dtype=torch.float32)


@torch.library.register_fake("s_ste::mvue_24_t_compress")
def _mvue_24_t_compress_fake(g, seed, offset=0, layout="sm90", out_dtype=None, scale=None):
    _check("mvue_24_t_compress", g, layout, out_dtype, scale)
    tokens, n = g.shape
    values, meta = _compressed_fake(g, n, tokens, layout, out_dtype if out_dtype is not None else g.dtype)
    return values, meta, g.new_empty((), dtype=torch.float32)


@torch.library.register_fake("s_ste::sparse_linear")
def _sparse_linear_fake(x, values, meta, bias=None, layout="sm80", alpha=None):
    _check("sparse_linear", x, values, meta, bias, layout, alpha)
    dtype = torch.bfloat16 if values.dtype in FP8_DTYPES else x.dtype
    return x.new_empty((*x.shape[:-1], values.shape[0]), dtype=dtype)


from . import op_autograd  # noqa: E402,F401  (registers the autograd formulas of the ops above)
