"""CPU error model of Hopper's FP8 tensor-core accumulation: FastAccum vs CUTLASS's promotion.

Predicts the relative Frobenius error, against float64, of the sparse E4M3 x E4M3 -> bf16 GEMM
y = alpha * (x_q . w_q^T) at the FFN reduction lengths K, for
  - promoted: CUTLASS's MainloopSm90TmaGmmaWarpSpecializedSparseFP8 (the tensor core
    accumulates `interval` wgmmas from zero, then the partial sum is added to f32 registers);
  - fastaccum: the FastAccum schedules (all of K in the tensor core's accumulator),
with the accuracy rule of tests/test_cuda.py / csrc/gemm/README.md (relative Frobenius error vs
float64 of the quantized operands' exact product < 8e-3, bf16 output rounding included).

What the model assumes about the FP8 wgmma (not NVIDIA-documented; two independent reports):
  - DeepSeek-V3 technical report (arXiv 2412.19437, section 3.5.2, quoted in deepseek-ai/DeepGEMM
    #37 and #50): "FP8 GEMM employs fixed-point accumulation, aligning the mantissa products by
    right-shifting based on the maximum exponent before addition ... it only uses the highest 14
    bits of each mantissa product after sign-fill right shifting, and truncates bits exceeding
    this range"; section 3.3.2: "limited to retaining around 14 bits", "K = 4096 ... a maximum
    relative error of nearly 2%" (random matrices, no promotion).
  - SageAttention2 (arXiv 2411.10958, quoted in thu-ml/SageAttention #287): the accumulator of
    mma(f32.e4m3.e4m3.f32) on Ada and Hopper behaves as FP22 (1 sign, 8 exponent, 13 mantissa
    bits): an accumulator input D with more than 13 mantissa bits comes back with its 10 least
    significant mantissa bits zeroed.
So: per accumulation step (GROUP products, the products of one wgmma by default: 32 non-zeros
of a sparse m64nNk64), every term, the running accumulator D included, is aligned to the
largest exponent e among them and truncated to the grid 2^(e-13) (sign-fill right shift =
rounding toward -inf; --trunc: toward zero), then summed exactly. The partial sums of the
promoted mainloop enter f32 registers with an f32 add (round to nearest); the output is
alpha * acc rounded to bf16.

    python bench/fp8_accum_model.py               # the table for csrc/gemm/README.md
    python bench/fp8_accum_model.py --trunc --group 16 --samples 4000
Needs torch (for the E4M3 casts) and numpy; no GPU.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

TOL = 8e-3  # tests/test_cuda.py test_sparse_linear_fp8_gemm: relative Frobenius error vs float64
KS = (768, 4096, 8192, 11008, 14336, 28672)  # in_features of the FFN shapes (forward K)
KEEP_BITS = 14  # significant bits of each aligned term (the DeepSeek-V3 report)


def e4m3(t: torch.Tensor) -> np.ndarray:
    """t scaled to E4M3's range (448 at |max|) and cast, as float64."""
    return (t * (448.0 / t.abs().max())).to(torch.float8_e4m3fn).double().numpy()


def operands(samples: int, K: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """FP8 x rows [samples, K] and 2:4-sparse FP8 weight rows [samples, K] (2 largest |w| of 4 kept,
    as the S-STE forward has them), like the tests' Gaussian data."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, K, generator=g, dtype=torch.float64)
    w = torch.randn(samples, K, generator=g, dtype=torch.float64)
    groups = w.view(samples, K // 4, 4)
    keep = groups.abs().argsort(dim=-1)[..., 2:]
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    w = (groups * mask).view(samples, K)
    return e4m3(x), e4m3(w)


def align_truncate(v: np.ndarray, emax: np.ndarray, toward_zero: bool) -> np.ndarray:
    ulp = np.ldexp(1.0, emax - (KEEP_BITS - 1))
    q = v / ulp
    return (np.trunc(q) if toward_zero else np.floor(q)) * ulp


def tensor_core_sum(products: np.ndarray, d: np.ndarray, group: int, toward_zero: bool) -> np.ndarray:
    """D + sum(products) through the modelled accumulator, `group` products per step (rows independent)."""
    for j in range(0, products.shape[1], group):
        p = products[:, j:j + group]
        terms = np.concatenate([d[:, None], p], axis=1)
        mags = np.abs(terms)
        nz = mags > 0
        emax = np.where(nz, np.floor(np.log2(np.where(nz, mags, 1.0))), -1000).max(axis=1).astype(np.int64)
        emax = np.maximum(emax, -1000)
        d = align_truncate(terms, emax[:, None], toward_zero).sum(axis=1)
    return d


def bf16(v: np.ndarray) -> np.ndarray:
    return torch.from_numpy(v).to(torch.bfloat16).double().numpy()


def model(K: int, samples: int, group: int, interval_products: int | None, toward_zero: bool, seed: int) -> float:
    """Relative Frobenius error vs float64 of `samples` outputs of length-K sparse dot products.
    interval_products: products per promotion (None = FastAccum: never promoted)."""
    x, w = operands(samples, K, seed)
    nz = w != 0
    # Each row keeps exactly K/2 non-zeros; the sparse wgmma multiplies the kept pairs in k order.
    idx = np.argsort(~nz, axis=1, kind="stable")[:, : K // 2]
    prods = np.take_along_axis(x, idx, axis=1) * np.take_along_axis(w, idx, axis=1)  # exact in float64
    exact = prods.sum(axis=1)  # float64 reference (the tests' float64 product)
    if interval_products is None:
        acc = tensor_core_sum(prods, np.zeros(samples), group, toward_zero)
    else:
        acc = np.zeros(samples, dtype=np.float32)
        for j in range(0, prods.shape[1], interval_products):
            part = tensor_core_sum(prods[:, j:j + interval_products], np.zeros(samples), group, toward_zero)
            acc = (acc + part.astype(np.float32)).astype(np.float32)  # f32 add, round to nearest
        acc = acc.astype(np.float64)
    alpha = 1.0 / 448.0 ** 2  # the dequant scale: output magnitude O(1) like the tests'
    y = bf16(alpha * acc)
    ref = alpha * exact
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def dense_errors(K: int, samples: int, group: int, toward_zero: bool, seed: int) -> tuple[float, float]:
    """A dense K-long FP8 dot product accumulated without promotion (f32 output, no bf16 rounding):
    (relative Frobenius error, max |error| / max |exact|), the two readings of the DeepSeek-V3
    report's "maximum relative error of nearly 2%" at K = 4096 (it names no metric; an elementwise
    relative error is unbounded near zero sums)."""
    g = torch.Generator().manual_seed(seed)
    x = e4m3(torch.randn(samples, K, generator=g, dtype=torch.float64))
    w = e4m3(torch.randn(samples, K, generator=g, dtype=torch.float64))
    prods = x * w
    exact = prods.sum(axis=1)
    err = tensor_core_sum(prods, np.zeros(samples), group, toward_zero) - exact
    return float(np.linalg.norm(err) / np.linalg.norm(exact)), float(np.abs(err).max() / np.abs(exact).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="output elements per K (default 2000)")
    parser.add_argument("--group", type=int, default=32, help="products per accumulation step (default 32: one sparse wgmma)")
    parser.add_argument("--trunc", action="store_true", help="truncate toward zero instead of sign-fill (toward -inf)")
    parser.add_argument("--interval", type=int, default=4, help="promotion interval in wgmmas (default 4, CUTLASS's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    per_wgmma = 32  # non-zero products of one sparse m64nNk64 FP8 wgmma per output
    mode = "toward zero" if args.trunc else "sign-fill (toward -inf)"
    print(f"model: {KEEP_BITS} kept bits per aligned term, {args.group} products per step, truncation {mode}; "
          f"{args.samples} outputs per K; rule: rel. Frobenius error < {TOL:g}")
    fro, worst = dense_errors(4096, args.samples, args.group, args.trunc, args.seed)
    print(f"calibration, dense FP8 K=4096 without promotion (DeepSeek-V3: 'a maximum relative error of nearly 2%'): "
          f"relative Frobenius error {fro:.2%}, max |error| / max |exact| {worst:.2%}")
    print()
    print(f"| K | promoted (interval {args.interval}) | FastAccum | FastAccum / promoted | FastAccum passes |")
    print("|---|---|---|---|---|")
    for K in KS:
        promoted = model(K, args.samples, args.group, args.interval * per_wgmma, args.trunc, args.seed)
        fast = model(K, args.samples, args.group, None, args.trunc, args.seed)
        print(f"| {K} | {promoted:.2e} | {fast:.2e} | {fast / promoted:.1f} | {'yes' if fast < TOL else 'NO'} |",
              flush=True)


if __name__ == "__main__":
    main()
