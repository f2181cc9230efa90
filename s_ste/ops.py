"""Typed wrappers of the extension's ops (torch.ops.s_ste.*) and their fake kernels.

The kernels (CPU and CUDA) and every argument check live in the C++ extension
`s_ste_cuda`; the fake kernels here only describe output shapes and dtypes so that
torch.compile and meta tensors can trace the ops. See docs/numerics.md for the exact
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


def decompress(values: torch.Tensor, meta: torch.Tensor, layout: str = "sm80") -> torch.Tensor:
    """Dense [N, K] matrix from compressed values and metadata."""
    return _ops.decompress(values, meta, layout)


def mvue_24(g: torch.Tensor, seed: int, offset: int = 0) -> torch.Tensor:
    """Unbiased 2:4 sparsification of g along its last dim, keyed by (seed, offset)."""
    return _ops.mvue_24(g, seed, offset)


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
    return _ops.mvue_24_t_compress(g, seed, offset, layout, out_dtype, scale)


def sparse_linear(
    x: torch.Tensor,
    values: torch.Tensor,
    meta: torch.Tensor,
    bias: torch.Tensor | None = None,
    layout: str = "sm80",
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = alpha · (x · decompress(values, meta)ᵀ) + bias.

    16-bit values: x in the same dtype, y too, no alpha. FP8 values (layout "sm90"): x is
    float8_e4m3fn, alpha the dequantization factor (e.g. scale_inv_x · scale_inv_w, a 0-d
    float32 tensor on the device: no host sync), bias and y bfloat16.
    """
    return _ops.sparse_linear(x, values, meta, bias, layout, alpha)


def built_with_cuda() -> bool:
    """Whether the extension was compiled with its CUDA kernels."""
    return bool(s_ste_cuda.built_with_cuda())


# ---- fake kernels: shapes and dtypes only (argument checks run in the real kernels) ----


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


def _layout_check(op: str, layout: str) -> None:
    torch._check(layout in LAYOUTS, lambda: f'{op}: layout must be "sm80" or "sm90", got "{layout}"')


def _groups_check(op: str, name: str, t: torch.Tensor) -> None:
    torch._check(t.dim() >= 1 and t.shape[-1] % 4 == 0,
                 lambda: f"{op}: {name}.shape[-1] must be a positive multiple of 4, got {tuple(t.shape)}")


@torch.library.register_fake("s_ste::soft_threshold_24")
def _soft_threshold_24_fake(w):
    _groups_check("soft_threshold_24", "w", w)
    return torch.empty_like(w), torch.empty_like(w, dtype=torch.bool)


@torch.library.register_fake("s_ste::hard_threshold_24")
def _hard_threshold_24_fake(w):
    _groups_check("hard_threshold_24", "w", w)
    return torch.empty_like(w), torch.empty_like(w, dtype=torch.bool)


@torch.library.register_fake("s_ste::scale_factor")
def _scale_factor_fake(w):
    _groups_check("scale_factor", "w", w)
    return w.new_empty((), dtype=torch.float32)


@torch.library.register_fake("s_ste::prune_and_compress")
def _prune_and_compress_fake(w, scale, layout="sm80", out_dtype=None):
    _layout_check("prune_and_compress", layout)
    torch._check(w.dim() == 2, lambda: f"prune_and_compress: w must be 2-D, got {tuple(w.shape)}")
    rows, K = w.shape
    return _compressed_fake(w, rows, K, layout, out_dtype if out_dtype is not None else w.dtype)


@torch.library.register_fake("s_ste::decompress")
def _decompress_fake(values, meta, layout="sm80"):
    _layout_check("decompress", layout)
    rows, half_k = values.shape
    return values.new_empty((rows, 2 * half_k))


@torch.library.register_fake("s_ste::mvue_24")
def _mvue_24_fake(g, seed, offset=0):
    _groups_check("mvue_24", "g", g)
    return torch.empty_like(g)


@torch.library.register_fake("s_ste::quantize_fp8")
def _quantize_fp8_fake(x, dtype):
    return torch.empty_like(x, dtype=dtype), x.new_empty((), dtype=torch.float32)


FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


@torch.library.register_fake("s_ste::quantize_fp8_scaled")
def _quantize_fp8_scaled_fake(x, scale, dtype, transpose=False):
    if transpose:
        torch._check(x.dim() == 2, lambda: f"quantize_fp8_scaled: transpose needs a 2-D x, got {tuple(x.shape)}")
        q_t = x.new_empty((x.shape[1], x.shape[0]), dtype=dtype)
    else:
        q_t = x.new_empty((0,), dtype=dtype)
    return x.new_empty(x.shape, dtype=dtype), q_t, x.new_empty((), dtype=torch.float32)


@torch.library.register_fake("s_ste::mvue_24_t_compress")
def _mvue_24_t_compress_fake(g, seed, offset=0, layout="sm90", out_dtype=None, scale=None):
    _layout_check("mvue_24_t_compress", layout)
    torch._check(g.dim() == 2, lambda: f"mvue_24_t_compress: g must be 2-D [tokens, out_features], got {tuple(g.shape)}")
    tokens, n = g.shape
    values, meta = _compressed_fake(g, n, tokens, layout, out_dtype if out_dtype is not None else g.dtype)
    return values, meta, g.new_empty((), dtype=torch.float32)


@torch.library.register_fake("s_ste::sparse_linear")
def _sparse_linear_fake(x, values, meta, bias=None, layout="sm80", alpha=None):
    _layout_check("sparse_linear", layout)
    dtype = torch.bfloat16 if values.dtype in FP8_DTYPES else x.dtype
    return x.new_empty((*x.shape[:-1], values.shape[0]), dtype=dtype)
