"""Baseline timings of the element-wise ops (the simple one-thread-per-group kernels of the
foundation): time, bytes moved, GB/s and the fraction of the copy bandwidth measured in the
same run. The floor of each op is its bytes ÷ copy bandwidth (they do no real arithmetic).

    python bench/bench_ops.py [--quick]

Writes bench/results/ops.md and ops.json. NVTX ranges name each kernel for nsys/ncu:
    nsys profile -t cuda,nvtx python bench/bench_ops.py --quick
    ncu --nvtx --nvtx-include "prune_and_compress.sm90/" --clock-control none python bench/bench_ops.py --quick
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import s_ste  # noqa: E402

WEIGHTS = [(3072, 768), (4096, 4096), (11008, 4096), (4096, 11008)]
GRADS = [(4096, 8192), (4096, 32768)]  # [out_features, tokens]: MVUE along tokens


def row(kernel, shape, dtype, nbytes, t_us, copy):
    gbps = nbytes / t_us / 1e3
    return {"kernel": kernel, "shape": "x".join(map(str, shape)), "dtype": str(dtype).replace("torch.", ""),
            "time_us": t_us, "MB": nbytes / 1e6, "gbps": gbps, "copy_gbps": copy, "frac_of_copy": gbps / copy}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one shape per op (for profiling)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_ops needs a CUDA GPU")
    copy = common.copy_gbps()
    weights = WEIGHTS[1:2] if args.quick else WEIGHTS
    grads = GRADS[:1] if args.quick else GRADS
    rows = []
    for N, K in weights:
        w_bytes = N * K * 4
        sets = [torch.randn(N, K, device="cuda") for _ in range(common.rotations(w_bytes))]
        beta = s_ste.scale_factor(sets[0])
        for layout in ("sm80", "sm90"):
            out_bytes = N * K // 2 * 2 + N * K // 8  # values + metadata (4 bits per group in both layouts)
            def run(i, layout=layout):
                torch.cuda.nvtx.range_push(f"prune_and_compress.{layout}")
                s_ste.prune_and_compress(sets[i], beta, layout, torch.bfloat16)
                torch.cuda.nvtx.range_pop()
            rows.append(row(f"prune_and_compress[{layout}]", (N, K), "fp32->bf16", w_bytes + out_bytes,
                            common.time_us(run, len(sets)), copy))
        del sets
    for N, M in grads:
        nbytes = N * M * 2
        sets = [torch.randn(N, M, device="cuda", dtype=torch.bfloat16) for _ in range(common.rotations(nbytes))]
        def run(i):
            torch.cuda.nvtx.range_push("mvue_24")
            s_ste.mvue_24(sets[i], 1, i)
            torch.cuda.nvtx.range_pop()
        rows.append(row("mvue_24", (N, M), torch.bfloat16, 2 * nbytes, common.time_us(run, len(sets)), copy))
        def run_q(i):
            torch.cuda.nvtx.range_push("quantize_fp8")
            s_ste.quantize_fp8(sets[i], torch.float8_e5m2)
            torch.cuda.nvtx.range_pop()
        rows.append(row("quantize_fp8[e5m2]", (N, M), torch.bfloat16, nbytes + nbytes // 2,
                        common.time_us(run_q, len(sets)), copy))
        del sets
    common.write_results(
        "ops", "Element-wise ops (foundation kernels)",
        ["kernel", "shape", "dtype", "time_us", "MB", "gbps", "copy_gbps", "frac_of_copy"], rows,
        notes="Bytes = inputs read once + outputs written once; the floor of each op is bytes ÷ copy "
              "bandwidth. quantize_fp8 also reads x once more for amax and syncs the host (foundation "
              "version). These kernels are the simple correctness versions; issue 3 makes them fast.")


if __name__ == "__main__":
    main()
