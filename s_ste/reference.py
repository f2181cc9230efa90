"""Pure-PyTorch reference implementation of every s-ste op (the test oracle).

This module is the executable form of ``docs/numerics.md``: each function follows the
page step by step, in float32 with one rounding per operation and in the order the page
writes, so that a C++/CUDA implementation of the same page matches it bit for bit where
the page says "bit-identical".

It is deliberately independent of the extension: it imports nothing but ``torch`` (no
``s_ste_cuda``, no ``s_ste.ops``). Everything is vectorised over all groups at once; the
only Python loops run over the 4 positions of a group or the 10 Philox rounds. It works
on any device (CPU or CUDA tensors); elementwise torch ops round once per op (no
fused multiply-add), which is what the spec requires.

Groups are 4 consecutive elements of the last dimension, in the row-major order of the
(logical) tensor; a non-contiguous input is treated as its contiguous copy.
"""

from __future__ import annotations

import operator
from typing import Optional, Tuple

import torch

__all__ = [
    "soft_threshold_24",
    "hard_threshold_24",
    "scale_factor",
    "prune_and_compress",
    "decompress",
    "philox4x32_10",
    "mvue_24",
    "quantize_fp8",
    "sparse_linear",
    "SM80_LEGAL_CODES",
]

_FLOAT_IN = (torch.float32, torch.bfloat16, torch.float16)
_HALF = (torch.float16, torch.bfloat16)
_LAYOUTS = ("sm80", "sm90")
_SM90_MSG = (
    "sm90 reference layout lives in csrc/include/s_ste/layout_sm90.cuh; proven by the C++ test"
)

#: The six legal 2:4 codes ``i0 | (i1 << 2)`` with ``i0 < i1``.
SM80_LEGAL_CODES = (0x4, 0x8, 0x9, 0xC, 0xD, 0xE)

_MASK32 = 0xFFFFFFFF
_U64 = 1 << 64


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def _check_tensor(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")


def _check_dtype(name: str, x: torch.Tensor, allowed) -> None:
    if x.dtype not in allowed:
        names = ", ".join(_dtype_name(d) for d in allowed)
        raise TypeError(f"{name}: dtype must be one of {names}, got {_dtype_name(x.dtype)}")


def _check_groups(name: str, x: torch.Tensor) -> None:
    if x.dim() < 1:
        raise ValueError(f"{name}: expected at least 1 dimension, got a 0-d tensor")
    k = x.shape[-1]
    if k % 4 != 0:
        raise ValueError(f"{name}: last dimension must be a multiple of 4, got {k}")


def _check_layout(layout) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: must be one of {', '.join(map(repr, _LAYOUTS))}, got {layout!r}")


def _as_u64(name: str, v) -> int:
    """Read an integer as unsigned 64-bit (negative int64 values wrap, as in C++)."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.dtype.is_floating_point or v.dtype.is_complex or v.dtype == torch.bool:
            raise TypeError(f"{name}: expected an integer or a 1-element integer tensor")
        v = int(v.item())
    if isinstance(v, bool):
        raise TypeError(f"{name}: expected an integer, got bool")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(v).__name__}") from None
    if not (-(1 << 63) <= v < _U64):
        raise ValueError(f"{name}: must fit in 64 bits (signed or unsigned), got {v}")
    return v % _U64


# --------------------------------------------------------------------------------------
# ranking / thresholds
# --------------------------------------------------------------------------------------
def _compute_dtype(w: torch.Tensor) -> torch.dtype:
    return torch.float64 if w.dtype == torch.float64 else torch.float32


def _rank_keep(a: torch.Tensor) -> torch.Tensor:
    """a: [..., 4] magnitudes. True at the two elements that outrank at least two others.

    Element i outranks j when a_i > a_j, or a_i == a_j and i > j.
    """
    ai = a.unsqueeze(-1)  # [..., 4, 1]  (i)
    aj = a.unsqueeze(-2)  # [..., 1, 4]  (j)
    idx = torch.arange(4, device=a.device)
    i_gt_j = idx.view(4, 1) > idx.view(1, 4)  # [4, 4]
    outranks = (ai > aj) | ((ai == aj) & i_gt_j)
    return outranks.sum(-1) >= 2


def _soft_threshold_core(w: torch.Tensor):
    """Returns (kept values in the compute dtype, mask), both shaped [..., K/4, 4]."""
    cdt = _compute_dtype(w)
    x = w.contiguous().to(cdt)
    x = x.reshape(*x.shape[:-1], x.shape[-1] // 4, 4)
    a = x.abs()
    keep, nan_group = _rank_keep_nan(a)
    # t = the larger magnitude of the two dropped elements (a >= 0, so 0 is a neutral fill)
    t = a.masked_fill(keep, 0.0).amax(-1, keepdim=True)
    d = a - t  # one rounding; >= 0 at the kept positions
    v = torch.where(x < 0, -d, d)
    zero = torch.zeros((), dtype=cdt, device=w.device)
    v = torch.where(keep & (d != 0), v, zero)  # zero results and dropped elements are +0.0
    nan_row = torch.tensor([float("nan"), float("nan"), 0.0, 0.0], dtype=cdt, device=w.device)
    return torch.where(nan_group, nan_row, v), keep


def _rank_keep_nan(a: torch.Tensor):
    """(keep, nan_group): the ranking's mask, except that a group holding a NaN keeps
    positions 0 and 1 (its values become NaN: a diverged weight must stay visible)."""
    nan_group = torch.isnan(a).any(-1, keepdim=True)
    nan_keep = torch.tensor([True, True, False, False], device=a.device)
    return torch.where(nan_group, nan_keep, _rank_keep(a)), nan_group


def soft_threshold_24(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """S-STE 2:4 soft threshold. Returns (pruned in w's dtype, bool mask), both w's shape.

    float32/bfloat16/float16 compute in float32; float64 computes in float64.
    """
    _check_tensor("w", w)
    _check_dtype("w", w, _FLOAT_IN + (torch.float64,))
    _check_groups("w", w)
    v, keep = _soft_threshold_core(w)
    return v.reshape(w.shape).to(w.dtype), keep.reshape(w.shape)


def hard_threshold_24(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Same ranking as soft_threshold_24; kept value = w itself, dropped = +0.0."""
    _check_tensor("w", w)
    _check_dtype("w", w, _FLOAT_IN + (torch.float64,))
    _check_groups("w", w)
    x = w.contiguous()
    xg = x.reshape(*x.shape[:-1], x.shape[-1] // 4, 4)
    keep, nan_group = _rank_keep_nan(xg.to(_compute_dtype(w)).abs())
    out = torch.where(keep, xg, torch.zeros((), dtype=w.dtype, device=w.device))
    out = torch.where(nan_group & keep, torch.full((), float("nan"), dtype=w.dtype, device=w.device), out)
    return out.reshape(w.shape), keep.reshape(w.shape)


def scale_factor(w: torch.Tensor) -> torch.Tensor:
    """beta = sum(w*S) / sum(S*S) (float64 accumulation), 0-d float32; 1 if sum(S*S) == 0."""
    _check_tensor("w", w)
    _check_dtype("w", w, _FLOAT_IN + (torch.float64,))
    _check_groups("w", w)
    s, _ = _soft_threshold_core(w)
    s = s.reshape(-1).to(torch.float64)
    x = w.contiguous().reshape(-1).to(torch.float64)
    num = (x * s).sum()
    den = (s * s).sum()
    one = torch.ones((), dtype=torch.float64, device=w.device)
    beta = torch.where(den == 0, one, num / torch.where(den == 0, one, den))
    return beta.to(torch.float32)


# --------------------------------------------------------------------------------------
# compression (sm80 layout)
# --------------------------------------------------------------------------------------
def _sm80_offsets(rows: int, ncols: int, device) -> torch.Tensor:
    """Flat int16-element offset of logical metadata element (r, c), shape [rows, ncols].

    cutlass::reorder_meta (host_reorder.h) for a 16-bit metadata element: rows are
    re-interleaved inside blocks of 32, then the 2x2 blocks are swizzled from Z to N order;
    the result is stored in ColumnMajorInterleaved<2> (offset = (col/2)*(2*rows) + 2*row +
    col%2).
    """
    r = torch.arange(rows, device=device, dtype=torch.int64).view(rows, 1).expand(rows, ncols)
    c = torch.arange(ncols, device=device, dtype=torch.int64).view(1, ncols).expand(rows, ncols)
    dr = (r // 32) * 32 + (r % 8) * 4 + (r % 32) // 8
    dc = c
    even_odd = (dr % 2 == 0) & (dc % 2 == 1)
    odd_even = (dr % 2 == 1) & (dc % 2 == 0)
    shift = even_odd.to(torch.int64) - odd_even.to(torch.int64)
    dr = dr + shift
    dc = dc - shift
    return (dc // 2) * (2 * rows) + dr * 2 + (dc % 2)


def _check_sm80_shape(name: str, rows: int, k: int) -> None:
    if rows % 32 != 0:
        raise ValueError(f"{name}: layout 'sm80' needs rows % 32 == 0, got {rows} rows")
    if k % 32 != 0:
        # K % 16 is what one int16 metadata element covers, but ColumnMajorInterleaved<2>
        # pairs metadata columns: with K/16 odd the reordered elements do not fit in a
        # [rows, K/16] buffer (torch's converter fails the same way), so K % 32 is required.
        raise ValueError(
            f"{name}: layout 'sm80' needs K % 32 == 0 (an even number of int16 metadata "
            f"columns for ColumnMajorInterleaved<2>), got K = {k}"
        )


def _as_scale(scale, device) -> torch.Tensor:
    if isinstance(scale, torch.Tensor):
        if scale.numel() != 1:
            raise ValueError(f"scale: expected a single value, got a tensor of shape {tuple(scale.shape)}")
        if not (scale.dtype.is_floating_point or scale.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"scale: expected a floating-point value, got {_dtype_name(scale.dtype)}")
        return scale.reshape(()).to(device=device, dtype=torch.float32)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale: expected a float or a 1-element tensor, got {type(scale).__name__}")
    return torch.tensor(float(scale), dtype=torch.float32, device=device)


def prune_and_compress(
    w: torch.Tensor,
    scale,
    layout: str = "sm80",
    out_dtype: Optional[torch.dtype] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Soft-threshold, scale by beta and compress w [rows, K] to (values [rows, K/2], meta)."""
    _check_tensor("w", w)
    _check_dtype("w", w, _FLOAT_IN)
    if w.dim() != 2:
        raise ValueError(f"w: expected a 2-D tensor [rows, K], got shape {tuple(w.shape)}")
    _check_groups("w", w)
    _check_layout(layout)
    if out_dtype is None:
        if w.dtype == torch.float32:
            raise ValueError(
                "out_dtype: float32 input needs an explicit 16-bit out_dtype "
                "(torch.float16 or torch.bfloat16)"
            )
        out_dtype = w.dtype
    if out_dtype not in _HALF:
        raise TypeError(f"out_dtype: must be torch.float16 or torch.bfloat16, got {out_dtype}")
    rows, k = w.shape
    if layout == "sm90":
        raise NotImplementedError(_SM90_MSG)
    _check_sm80_shape("w", rows, k)
    beta = _as_scale(scale, w.device)

    kept, keep = _soft_threshold_core(w)  # float32 [rows, K/4, 4]
    return _pack_sm80(kept * beta, keep, out_dtype)  # one float32 multiply, then RNE cast


def _pack_sm80(v: torch.Tensor, keep: torch.Tensor, out_dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """Compress float32 v [rows, K/4, 4] with exactly two True per group in keep [rows, K/4, 4]
    into (values [rows, K/2] in out_dtype, int16 metadata in the sm80 order)."""
    rows, k = v.shape[0], 4 * v.shape[1]
    v = v.to(out_dtype)
    pos = torch.arange(4, device=v.device, dtype=torch.int64)
    i0 = torch.where(keep, pos, 4).amin(-1)  # [rows, K/4]
    i1 = torch.where(keep, pos, -1).amax(-1)
    v0 = torch.gather(v, -1, i0.unsqueeze(-1))
    v1 = torch.gather(v, -1, i1.unsqueeze(-1))
    values = torch.cat([v0, v1], -1).reshape(rows, k // 2)

    codes = (i0 | (i1 << 2)).reshape(rows, k // 16, 4)  # int64
    packed = codes[..., 0] | (codes[..., 1] << 4) | (codes[..., 2] << 8) | (codes[..., 3] << 12)
    packed = ((packed ^ 0x8000) - 0x8000).to(torch.int16)  # reinterpret uint16 bits as int16
    ncols = k // 16
    flat = torch.empty(rows * ncols, dtype=torch.int16, device=v.device)
    flat[_sm80_offsets(rows, ncols, v.device).reshape(-1)] = packed.reshape(-1)
    return values, flat.view(rows, ncols)


def decompress(values: torch.Tensor, meta: torch.Tensor, layout: str = "sm80") -> torch.Tensor:
    """Inverse of prune_and_compress: dense [rows, K] in values' dtype."""
    _check_tensor("values", values)
    _check_tensor("meta", meta)
    _check_layout(layout)
    _check_dtype("values", values, _HALF)
    if values.dim() != 2:
        raise ValueError(f"values: expected a 2-D tensor [rows, K/2], got shape {tuple(values.shape)}")
    if layout == "sm90":
        raise NotImplementedError(_SM90_MSG)
    rows, half_k = values.shape
    k = 2 * half_k
    _check_sm80_shape("values", rows, k)
    if meta.dtype != torch.int16:
        raise TypeError(f"meta: layout 'sm80' needs int16 metadata, got {_dtype_name(meta.dtype)}")
    ncols = k // 16
    if tuple(meta.shape) != (rows, ncols):
        raise ValueError(f"meta: expected shape {(rows, ncols)} for values of shape "
                         f"{tuple(values.shape)}, got {tuple(meta.shape)}")
    flat = meta.contiguous().reshape(-1).to(torch.int64) & 0xFFFF
    logical = flat[_sm80_offsets(rows, ncols, meta.device).reshape(-1)].reshape(rows, ncols, 1)
    shifts = torch.tensor([0, 4, 8, 12], device=meta.device, dtype=torch.int64)
    codes = ((logical >> shifts) & 0xF).reshape(rows, k // 4)
    i0 = codes & 3
    i1 = codes >> 2
    if bool((i0 >= i1).any()):
        bad = int(codes[i0 >= i1][0])
        raise ValueError(f"meta: invalid 2:4 code 0x{bad:X} (legal: 0x4 0x8 0x9 0xC 0xD 0xE)")
    vals = values.contiguous().reshape(rows, k // 4, 2)
    dense = torch.zeros(rows, k // 4, 4, dtype=values.dtype, device=values.device)
    dense.scatter_(-1, i0.unsqueeze(-1), vals[..., 0:1])
    dense.scatter_(-1, i1.unsqueeze(-1), vals[..., 1:2])
    return dense.reshape(rows, k)


# --------------------------------------------------------------------------------------
# Philox-4x32-10
# --------------------------------------------------------------------------------------
_PHILOX_M0 = 0xD2511F53
_PHILOX_M1 = 0xCD9E8D57
_PHILOX_W0 = 0x9E3779B9
_PHILOX_W1 = 0xBB67AE85


def _mulhilo32(m: int, x: torch.Tensor):
    """(hi, lo) 32-bit halves of the 64-bit product m * x, with int64 arithmetic only.

    x holds uint32 values in int64; m is a 32-bit constant. x is split in 16-bit halves so
    that no intermediate exceeds 2^49.
    """
    a = m * (x >> 16)  # < 2^48
    b = m * (x & 0xFFFF)  # < 2^48
    t = ((a & 0xFFFF) << 16) + b  # < 2^49
    lo = t & _MASK32
    hi = (a >> 16) + (t >> 32)
    return hi, lo


def _as_u32_words(name: str, x: torch.Tensor, n: int) -> torch.Tensor:
    _check_tensor(name, x)
    if x.dtype not in (torch.int64, torch.uint32):
        raise TypeError(f"{name}: dtype must be int64 or uint32, got {_dtype_name(x.dtype)}")
    if x.dim() < 1 or x.shape[-1] != n:
        raise ValueError(f"{name}: last dimension must be {n}, got shape {tuple(x.shape)}")
    if x.dtype == torch.int64:
        if x.numel() and bool(((x < 0) | (x > _MASK32)).any()):
            raise ValueError(f"{name}: int64 words must hold uint32 values, in [0, 2^32)")
        return x
    return x.to(torch.int64)


def philox4x32_10(counter: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Philox-4x32-10 (Random123). counter [..., 4], key [..., 2] (uint32 values in int64
    or uint32 tensors, broadcast together); returns [..., 4] int64 holding uint32 words."""
    c = _as_u32_words("counter", counter, 4)
    k = _as_u32_words("key", key, 2)
    shape = torch.broadcast_shapes(c.shape[:-1], k.shape[:-1])
    c = c.expand(*shape, 4)
    k = k.expand(*shape, 2)
    c0, c1, c2, c3 = c.unbind(-1)
    k0, k1 = k.unbind(-1)
    for rnd in range(10):
        if rnd:
            k0 = (k0 + _PHILOX_W0) & _MASK32
            k1 = (k1 + _PHILOX_W1) & _MASK32
        hi0, lo0 = _mulhilo32(_PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32(_PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return torch.stack([c0, c1, c2, c3], -1)


# --------------------------------------------------------------------------------------
# MVUE 2:4
# --------------------------------------------------------------------------------------
def _mvue_uniforms(n_groups: int, seed: int, offset: int, device):
    g = torch.arange(n_groups, dtype=torch.int64, device=device)
    counter = torch.stack(
        [
            g & _MASK32,
            g >> 32,
            torch.full_like(g, offset & _MASK32),
            torch.full_like(g, offset >> 32),
        ],
        -1,
    )
    key = torch.tensor([seed & _MASK32, seed >> 32], dtype=torch.int64, device=device)
    r = philox4x32_10(counter, key)
    two_m24 = 2.0 ** -24
    u1 = (r[:, 0] >> 8).to(torch.float32) * two_m24  # exact
    u2 = (r[:, 1] >> 8).to(torch.float32) * two_m24
    return u1, u2


def mvue_24(g: torch.Tensor, seed, offset=0) -> torch.Tensor:
    """Minimum-variance unbiased 2:4 sparsification of g (docs/numerics.md, mvue_24)."""
    _check_tensor("g", g)
    _check_dtype("g", g, _FLOAT_IN)
    _check_groups("g", g)
    seed = _as_u64("seed", seed)
    offset = _as_u64("offset", offset)
    dev = g.device
    f32 = torch.float32
    x = g.contiguous().to(f32).reshape(-1, 4)  # exact conversion
    n = x.shape[0]
    zero = torch.zeros((), dtype=f32, device=dev)
    one = torch.ones((), dtype=f32, device=dev)
    if n == 0:
        return torch.empty_like(g)
    u1, u2 = _mvue_uniforms(n, seed, offset, dev)

    # 2. magnitudes
    nonfinite = ~torch.isfinite(x).all(-1)  # a NaN anywhere counts, whatever max() does with it
    absx = x.abs()
    m = absx.amax(-1)
    allzero = (m == 0) & ~nonfinite
    special = nonfinite | allzero
    m_safe = torch.where(special, one, m)
    a = absx / m_safe.unsqueeze(-1)
    a = torch.where(special.unsqueeze(-1), one, a)  # any finite stand-in; overwritten below
    a0, a1, a2, a3 = a.unbind(-1)

    # 3. sums (each left to right, one rounding per addition)
    c1 = a0 + a1
    c2 = c1 + a2
    s = c2 + a3
    prefix = torch.stack([a0, c1, c2, s], -1)
    r_all = torch.stack([(a1 + a2) + a3, (a0 + a2) + a3, c1 + a3, c2], -1)  # R_j

    pos = torch.arange(4, device=dev, dtype=torch.int64)
    # 4. first survivor
    t = u1 * s
    hit = prefix > t.unsqueeze(-1)
    first = torch.where(hit, pos, 4).amin(-1)
    last_pos = torch.where(a > 0, pos, -1).amax(-1)
    first = torch.where(first == 4, last_pos, first)

    # 5. second survivor, among the other three indices in increasing order
    others_tab = torch.tensor([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], device=dev)
    others = others_tab[first]  # [n, 3]
    ao = torch.gather(a, -1, others)
    q0 = ao[:, 0]
    q1 = q0 + ao[:, 1]
    q2 = q1 + ao[:, 2]
    q = torch.stack([q0, q1, q2], -1)
    t2 = u2 * torch.gather(r_all, -1, first.unsqueeze(-1)).squeeze(-1)
    pos3 = pos[:3]
    hit2 = q > t2.unsqueeze(-1)
    sel = torch.where(hit2, pos3, 3).amin(-1)
    last3 = torch.where(ao > 0, pos3, -1).amax(-1)
    sel = torch.where(sel == 3, last3, sel)
    sel = torch.where(sel == -1, 0, sel)  # all three zero: the smallest of them
    second = torch.gather(others, -1, sel.unsqueeze(-1)).squeeze(-1)

    # 6. inclusion probability of every position (used at the survivors only)
    s_col = s.unsqueeze(-1)
    p = a / s_col
    for j in range(4):
        aj_s = a[:, j : j + 1] / s_col  # a_j / S
        ai_rj = a / r_all[:, j : j + 1]  # a_i / R_j
        p = torch.where(pos != j, p + aj_s * ai_rj, p)

    # 7. output
    survivor = (pos == first.unsqueeze(-1)) | (pos == second.unsqueeze(-1))
    live = survivor & (a > 0)
    p_safe = torch.where(live, p, one)
    out = torch.where(live, x / p_safe, zero)
    out = torch.where(allzero.unsqueeze(-1), zero, out)
    nan_row = torch.tensor([float("nan"), float("nan"), 0.0, 0.0], dtype=f32, device=dev)
    out = torch.where(nonfinite.unsqueeze(-1), nan_row, out)
    return out.reshape(g.shape).to(g.dtype)


def mvue_24_t_compress(
    g: torch.Tensor, seed, offset=0, layout: str = "sm80", out_dtype: Optional[torch.dtype] = None, scale=1.0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The weight-gradient operand from grad_out g [T, N] (docs/numerics.md):
    (values, meta) = compress of h = mvue_24(gᵀ) in g's dtype, kept positions ranked as in
    soft_threshold_24 (h has at most two non-zeros per group, so the threshold is 0), times
    scale; non-finite groups keep NaN at positions 0 and 1. amax = max |h| (NaN if any).
    Layout "sm80", 16-bit values only (the C++ tests prove the sm90 map)."""
    _check_tensor("g", g)
    _check_dtype("g", g, _FLOAT_IN)
    if g.dim() != 2:
        raise ValueError(f"g: expected a 2-D tensor [tokens, out_features], got shape {tuple(g.shape)}")
    _check_layout(layout)
    if layout == "sm90":
        raise NotImplementedError(_SM90_MSG)
    out_dtype = out_dtype if out_dtype is not None else g.dtype
    if out_dtype not in _HALF:
        raise TypeError(f"out_dtype: must be torch.float16 or torch.bfloat16, got {out_dtype}")
    tokens, n = g.shape
    _check_sm80_shape("g.t()", n, tokens)
    beta = _as_scale(scale, g.device)
    h = mvue_24(g.t().contiguous(), seed, offset).float()  # rounded to g's dtype, exactly widened
    kept, keep = _soft_threshold_core(h)  # [n, T/4, 4]
    bad = torch.isnan(h.reshape(n, tokens // 4, 4)[..., 0:1])  # mvue_24 writes [NaN, NaN, 0, 0] for a non-finite group
    nan_keep = torch.tensor([True, True, False, False], device=g.device)
    keep = torch.where(bad, nan_keep, keep)
    kept = torch.where(bad & nan_keep, torch.tensor(float("nan"), device=g.device), kept)
    values, meta = _pack_sm80(kept * beta, keep, out_dtype)
    amax = h.abs().amax()  # propagates NaN
    return values, meta, amax


# --------------------------------------------------------------------------------------
# FP8 quantisation
# --------------------------------------------------------------------------------------
_FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}


def quantize_fp8(x: torch.Tensor, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor FP8 quantisation: (q in dtype, scale_inv 0-d float32), q*scale_inv ~ x."""
    _check_tensor("x", x)
    _check_dtype("x", x, _FLOAT_IN)
    if dtype not in _FP8_MAX:
        raise TypeError(f"dtype: must be torch.float8_e4m3fn or torch.float8_e5m2, got {dtype}")
    xf = x.to(torch.float32)
    if xf.numel() and not bool(torch.isfinite(xf).all()):
        raise ValueError("x: contains NaN or Inf; quantize_fp8 needs finite input")
    f32 = torch.float32
    fmax = torch.tensor(_FP8_MAX[dtype], dtype=f32, device=x.device)
    amax = xf.abs().amax() if xf.numel() else torch.zeros((), dtype=f32, device=x.device)
    big = torch.tensor(torch.finfo(f32).max, dtype=f32, device=x.device)
    one = torch.ones((), dtype=f32, device=x.device)
    scale = fmax / torch.where(amax == 0, one, amax)  # float32 division
    scale = torch.where(torch.isinf(scale), big, scale)
    scale = torch.where(amax == 0, one, scale)
    q = (xf * scale).clamp(-fmax, fmax).to(dtype)
    scale_inv = one / scale
    return q, scale_inv


def quantize_fp8_scaled(
    x: torch.Tensor, scale, dtype: torch.dtype, transpose: bool = False
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FP8 cast with a given scale: (q = sat(x·scale) in dtype, q_t = qᵀ contiguous if
    transpose else empty, amax = max |x| as 0-d float32, NaN if x has a NaN)."""
    _check_tensor("x", x)
    _check_dtype("x", x, _FLOAT_IN)
    if dtype not in _FP8_MAX:
        raise TypeError(f"dtype: must be torch.float8_e4m3fn or torch.float8_e5m2, got {dtype}")
    if transpose and x.dim() != 2:
        raise ValueError(f"x: transpose needs a 2-D tensor, got shape {tuple(x.shape)}")
    s = _as_scale(scale, x.device)
    xf = x.to(torch.float32)
    fmax = _FP8_MAX[dtype]
    q = (xf * s).clamp(-fmax, fmax).to(dtype)  # clamp keeps NaN; torch's cast rounds to nearest even
    q_t = q.t().contiguous() if transpose else torch.empty(0, dtype=dtype, device=x.device)
    amax = xf.abs().amax() if xf.numel() else torch.zeros((), dtype=torch.float32, device=x.device)
    return q, q_t, amax


# --------------------------------------------------------------------------------------
# sparse linear
# --------------------------------------------------------------------------------------
def sparse_linear(
    x: torch.Tensor,
    values: torch.Tensor,
    meta: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    layout: str = "sm80",
) -> torch.Tensor:
    """y = x @ decompress(values, meta).T + bias, computed in float64, returned in x's dtype."""
    _check_tensor("x", x)
    w = decompress(values, meta, layout)  # validates values, meta, layout
    n, k = w.shape
    if x.dtype != values.dtype:
        raise TypeError(f"x: dtype must match values ({_dtype_name(values.dtype)}), got {_dtype_name(x.dtype)}")
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"x: last dimension must be K = {k}, got shape {tuple(x.shape)}")
    y = x.to(torch.float64) @ w.to(torch.float64).t()
    if bias is not None:
        _check_tensor("bias", bias)
        if bias.dtype != values.dtype:
            raise TypeError(f"bias: dtype must match values ({_dtype_name(values.dtype)}), got {_dtype_name(bias.dtype)}")
        if tuple(bias.shape) != (n,):
            raise ValueError(f"bias: expected shape ({n},), got {tuple(bias.shape)}")
        y = y + bias.to(torch.float64)
    return y.to(x.dtype)
