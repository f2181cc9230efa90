"""The element-wise half of an S-STE step at memory speed: the fused kernels against the
device-to-device copy bandwidth and against the nearest existing alternatives, same run.

Kernels (each a torch custom op; `op/variant` is its NVTX range):
- prune_and_compress/{sm90,sm80}_{fp32,bf16}: dense weight -> soft threshold -> × β -> cast
  -> compressed values + metadata, one pass (weights [N_out, K] of real models);
- prune_and_compress/sm90_fp32_e4m3: the same with the FP8 E4M3 cast;
- scale_factor/fp32: β, the whole-tensor reduction used once;
- mvue_24_t_compress/sm90_bf16[_e5m2]: grad_out [T, N] -> MVUE(gᵀ) compressed for the
  weight-gradient GEMM (transpose through shared memory), optionally E5M2 (8k-64k tokens);
- quantize_fp8_scaled/e4m3[_t]: activations -> E4M3 with a given scale, amax in the same pass,
  and (_t) the transposed copy too.
Alternatives timed on the same tensor: torch._sparse_semi_structured_tile (PyTorch's fused
2:4 prune + compress for training; it also writes the transposed form) and
torch.sparse.to_sparse_semi_structured (conversion of an already-pruned tensor) for the
pruning kernels; the unfused ops (mvue_24 on gᵀ + prune_and_compress) for the MVUE kernel;
PyTorch eager (scale, clamp, cast, amax, transpose) for the casts; and `torch._cslt_compress`
(baseline "cslt_compress"), the step a cuSPARSELt user pays on the weight every optimizer
step and on the gradient every step, on the pruned ŵ (bf16 or E4M3) and on MVUE(gᵀ): it only
compresses, while ours prunes (or samples), scales, casts and compresses in its time
(cuSPARSELt has no E5M2: that row says so).

Bytes = inputs read once + outputs written once (values, metadata 4 bits per group). The
floor of every kernel is bytes ÷ copy bandwidth; `frac_of_copy` is the fraction of it
reached (targets: ≥ 0.85 prune_and_compress and the casts at the large shapes, ≥ 0.75 the
fused MVUE; prune_and_compress also faster than `torch._cslt_compress`: `verdict`). Timing: common.time_us (CUDA events, median after warm-up), rotating input sets
that together exceed 3× L2.

    python bench/bench_prune.py [--quick]      # --quick: one shape per kernel (profiling)
    python bench/bench_prune.py --dry-run      # CPU only: plan + table with FAKE timings, temp dir
    python bench/bench_prune.py --profile      # each kernel once at one large shape, for ncu:
    ncu --clock-control none --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \\
        --csv python bench/bench_prune.py --profile > ncu_prune.csv
    python bench/bench_prune.py --attach-ncu ncu_prune.csv   # adds the DRAM % table to prune.md
    nsys profile -t cuda,nvtx -o prune python bench/bench_prune.py --quick

Writes bench/results/prune.md and prune.json (rows: kernel, shape, dtype, time_us, gbps,
copy_gbps, frac_of_copy, target, baseline, baseline_time_us, speedup, baseline_note, verdict,
device, cusparselt_version_loaded, commit, ...).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import s_ste  # noqa: E402

WEIGHTS = [(768, 3072), (3072, 768), (4096, 4096), (4096, 11008), (11008, 4096), (8192, 28672)]  # [N_out, K]
GRADS = [(8192, 3072), (8192, 11008), (65536, 4096), (65536, 11008)]  # grad_out [T, N]
ACTS = [(8192, 4096), (65536, 4096), (65536, 11008)]  # x [T, K]
QUICK = {"w": [(4096, 11008)], "g": [(65536, 4096)], "x": [(65536, 4096)]}
TARGET = {"prune_and_compress": 0.85, "quantize_fp8_scaled": 0.85, "mvue_24_t_compress": 0.75}
LARGE = 4096 * 4096  # elements: the fraction-of-copy targets apply from here (smaller ones are launch-bound)
CSLT = "cslt_compress"  # the baseline name of torch._cslt_compress rows (prune.json readers match it)
MUST_BEAT_CSLT = ("prune_and_compress",)  # issue 16: prune+compress faster than _cslt_compress
CSLT_NOTE = {"w": "compress only (of the pruned ŵ): ours also prunes, scales and casts",
             "g": "compress only (of MVUE(gᵀ) [N, T]): ours also transposes and samples MVUE",
             "e5m2": "no cuSPARSELt counterpart (cuSPARSELt has no E5M2)"}
COLUMNS = ["kernel", "shape", "dtype", "time_us", "MB", "gbps", "frac_of_copy", "target", "baseline",
           "baseline_time_us", "speedup", "verdict", "baseline_note"]
FAKE_FRAC = 0.7  # --dry-run only: a made-up fraction of copy bandwidth, NOT a measurement
FAKE_BASELINE = {CSLT: 0.9}  # --dry-run: made-up baseline time ÷ ours (2 for the others): both verdicts show
BF16, FP32, E4M3, E5M2 = torch.bfloat16, torch.float32, torch.float8_e4m3fn, torch.float8_e5m2


@dataclass
class Case:
    """One kernel on one shape: inputs are made per rotation set by make(i); run(x) launches."""
    kernel: str                       # "op/variant", also the NVTX range
    shape: tuple
    dtype: str
    nbytes: int
    make: object                      # i -> input tuple
    run: object                       # inputs -> None
    alternatives: list = field(default_factory=list)  # [(name, inputs -> None, or None: none exists, note)]


def randn_cuda(shape, dtype, seed: int) -> torch.Tensor:
    return torch.randn(*shape, device="cuda", generator=torch.Generator("cuda").manual_seed(seed)).to(dtype)


def packed_bytes(rows: int, k: int, value_bytes: int) -> int:
    return rows * k // 2 * value_bytes + rows * k // 8  # values + 4-bit codes


def weight_cases(shapes) -> list[Case]:
    cases = []
    for n, k in shapes:
        def make(i, n=n, k=k):
            return randn_cuda((n, k), FP32, i), torch.tensor(0.9, device="cuda")
        def make_bf16(i, n=n, k=k):
            w, beta = make(i)
            return w.bfloat16(), beta

        def tile(w):
            torch._sparse_semi_structured_tile(w)

        def to_semi(wp):
            torch.sparse.to_sparse_semi_structured(wp)

        alts = []
        if hasattr(torch, "_sparse_semi_structured_tile"):
            alts.append(("torch._sparse_semi_structured_tile", lambda inp: tile(inp[0]), ""))
        alts.append(("torch.sparse.to_sparse_semi_structured", lambda inp: to_semi(inp[2]), ""))
        cslt = [(CSLT, lambda inp: torch._cslt_compress(inp[2]), CSLT_NOTE["w"])]

        def make_bf16_with_pruned(i, n=n, k=k):
            w, beta = make_bf16(i)
            return w, beta, s_ste.soft_threshold_24(w)[0]

        def make_with_w_hat(i, n=n, k=k, dtype=BF16):  # + ŵ = β·S(w) in the cast's dtype (what cuSPARSELt compresses)
            w, beta = make(i)
            return w, beta, s_ste.decompress(*s_ste.prune_and_compress(w, beta, "sm90", dtype), "sm90", False)

        cases += [
            Case("prune_and_compress/sm90_fp32", (n, k), "fp32->bf16", n * k * 4 + packed_bytes(n, k, 2),
                 make_with_w_hat, lambda inp: s_ste.prune_and_compress(inp[0], inp[1], "sm90", BF16), cslt),
            Case("prune_and_compress/sm90_bf16", (n, k), "bf16->bf16", n * k * 2 + packed_bytes(n, k, 2),
                 make_bf16_with_pruned, lambda inp: s_ste.prune_and_compress(inp[0], inp[1], "sm90"), alts + cslt),
            Case("prune_and_compress/sm80_bf16", (n, k), "bf16->bf16", n * k * 2 + packed_bytes(n, k, 2),
                 make_bf16_with_pruned, lambda inp: s_ste.prune_and_compress(inp[0], inp[1], "sm80"), alts + cslt),
            Case("prune_and_compress/sm90_fp32_e4m3", (n, k), "fp32->e4m3", n * k * 4 + packed_bytes(n, k, 1),
                 lambda i: make_with_w_hat(i, dtype=E4M3),
                 lambda inp: s_ste.prune_and_compress(inp[0], inp[1] * 400, "sm90", E4M3), cslt),
            Case("scale_factor/fp32", (n, k), "fp32", n * k * 4, make, lambda inp: s_ste.scale_factor(inp[0])),
        ]
    return cases


def grad_cases(shapes) -> list[Case]:
    cases = []
    for t, n in shapes:
        def make(i, t=t, n=n):  # g, the E5M2 scale, the draw, and MVUE(gᵀ) (what cuSPARSELt compresses)
            g = randn_cuda((t, n), BF16, i)
            return g, torch.tensor(1000.0, device="cuda"), i, s_ste.mvue_24(g.t().contiguous(), 1, i)

        def unfused(inp):
            h = s_ste.mvue_24(inp[0].t().contiguous(), 1, inp[2])
            s_ste.prune_and_compress(h, torch.ones((), device="cuda"), "sm90")

        alts = [("unfused mvue_24(gᵀ) + prune_and_compress", unfused, "")]
        if hasattr(torch, "_sparse_semi_structured_tile"):
            alts.append(("torch._sparse_semi_structured_tile(gᵀ), no MVUE",
                         lambda inp: torch._sparse_semi_structured_tile(inp[0].t().contiguous()), ""))
        cases += [
            Case("mvue_24_t_compress/sm90_bf16", (t, n), "bf16->bf16", t * n * 2 + packed_bytes(n, t, 2), make,
                 lambda inp: s_ste.mvue_24_t_compress(inp[0], 1, inp[2], "sm90"),
                 alts + [(CSLT, lambda inp: torch._cslt_compress(inp[3]), CSLT_NOTE["g"])]),
            Case("mvue_24_t_compress/sm90_bf16_e5m2", (t, n), "bf16->e5m2", t * n * 2 + packed_bytes(n, t, 1), make,
                 lambda inp: s_ste.mvue_24_t_compress(inp[0], 1, inp[2], "sm90", E5M2, inp[1]),
                 [(CSLT, None, CSLT_NOTE["e5m2"])]),
        ]
    return cases


def act_cases(shapes) -> list[Case]:
    cases = []
    for t, k in shapes:
        def make(i, t=t, k=k):
            return randn_cuda((t, k), BF16, i), torch.tensor(40.0, device="cuda")

        def eager(inp, transpose):
            q = (inp[0].float() * inp[1]).clamp(-448.0, 448.0).to(E4M3)
            inp[0].abs().amax()
            if transpose:
                q.t().contiguous()

        cases += [
            Case("quantize_fp8_scaled/e4m3", (t, k), "bf16->e4m3", t * k * 3, make,
                 lambda inp: s_ste.quantize_fp8_scaled(inp[0], inp[1], E4M3),
                 [("torch eager: scale, clamp, cast, amax", lambda inp: eager(inp, False), "")]),
            Case("quantize_fp8_scaled/e4m3_t", (t, k), "bf16->e4m3 + e4m3ᵀ", t * k * 4, make,
                 lambda inp: s_ste.quantize_fp8_scaled(inp[0], inp[1], E4M3, True),
                 [("torch eager: scale, clamp, cast, amax, .t().contiguous()", lambda inp: eager(inp, True), "")]),
        ]
    return cases


def timed(name: str, run, sets) -> float:
    op, variant = (name.split("/", 1) + [""])[:2]

    def one(i):
        torch.cuda.nvtx.range_push(op)
        torch.cuda.nvtx.range_push(variant or op)
        run(sets[i])
        torch.cuda.nvtx.range_pop()
        torch.cuda.nvtx.range_pop()

    return common.time_us(one, len(sets), warmup=5, reps=30)


def rows_for(case: Case, us: float, copy: float, alt_times: list) -> list[dict]:
    """One row per alternative (name, µs or None, note) of the case, each judged (`verdict`)."""
    gbps = case.nbytes / us / 1e3
    base = {"kernel": case.kernel, "shape": "x".join(map(str, case.shape)), "dtype": case.dtype, "time_us": us,
            "MB": case.nbytes / 1e6, "gbps": gbps, "copy_gbps": copy, "frac_of_copy": gbps / copy,
            "target": TARGET.get(case.kernel.split("/")[0])}
    rows = [{**base, "baseline": name, "baseline_time_us": t, "speedup": (t / us) if t else None,
             "baseline_note": note or None} for name, t, note in alt_times]
    rows = rows or [{**base, "baseline": None, "baseline_time_us": None, "speedup": None, "baseline_note": None}]
    for r in rows:
        r["verdict"] = judge(r)
    return rows


def judge(row: dict) -> str:
    """The raised targets on one row: the fraction of copy bandwidth, and for prune_and_compress
    against torch._cslt_compress, faster than it ('' where neither applies)."""
    missed = []
    large = math.prod(int(d) for d in row["shape"].split("x")) >= LARGE
    if row["target"] is not None and large and row["frac_of_copy"] < row["target"]:
        missed.append(f"{row['frac_of_copy']:.0%} < {row['target']:.0%} of copy")
    if row["baseline"] == CSLT and row["kernel"].split("/")[0] in MUST_BEAT_CSLT:
        if row["speedup"] is None:
            missed.append("_cslt_compress not timed")
        elif row["speedup"] <= 1.0:
            missed.append("slower than _cslt_compress")
    elif row["target"] is None:
        return ""
    elif not large:
        return "not judged (small shape)"
    return "missed: " + ", ".join(missed) if missed else "met"


def measure(case: Case, copy: float) -> list[dict]:
    n_sets = common.rotations(case.nbytes)
    try:
        sets = [case.make(i) for i in range(n_sets)]
        us = timed(case.kernel, case.run, sets)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return [{"kernel": case.kernel, "shape": "x".join(map(str, case.shape)), "dtype": case.dtype,
                 "baseline": "skipped: OOM"}]
    alt_times = []
    for name, alt, note in case.alternatives:
        if alt is None:  # no counterpart exists: the row says so
            alt_times.append((name, None, note))
            continue
        try:
            alt_times.append((name, timed("baseline/" + name.split(" ")[0], alt, sets), note))
        except Exception as e:  # an alternative this torch or GPU lacks: the row says so
            why = f"n/a: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
            alt_times.append((name, None, f"{why}; {note}" if note else why))
    del sets
    torch.cuda.empty_cache()
    return rows_for(case, us, copy, alt_times)


def attach_ncu(csv_path: str) -> None:
    """Append a per-kernel table of ncu's DRAM throughput (% of peak) and duration to prune.md."""
    kernels = ("prune_compress_kernel", "mvue_compress_kernel", "cast_transpose_kernel", "cast_kernel")
    seen = {}
    with open(csv_path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # skip the program's own output
    for rec in csv.DictReader(lines):
        name = rec.get("Kernel Name", "")
        short = next((k for k in kernels if k in name), None)
        if short is None:
            continue
        # drop the parameter list, not the "(anonymous namespace)" of the demangled name
        key = name.replace("(anonymous namespace)", "<anon>").split("(")[0][:100]
        seen.setdefault(key, {})[rec.get("Metric Name")] = f'{rec.get("Metric Value")} {rec.get("Metric Unit", "")}'
    md = "\n## ncu (--clock-control none), one launch per kernel at the --profile shapes\n\n"
    md += "| kernel | DRAM throughput | duration |\n|---|---|---|\n"
    for key, m in seen.items():
        md += f"| `{key}` | {m.get('dram__throughput.avg.pct_of_peak_sustained_elapsed', '?')} | " \
              f"{m.get('gpu__time_duration.sum', '?')} |\n"
    os.makedirs(common.RESULTS, exist_ok=True)
    with open(os.path.join(common.RESULTS, "prune.md"), "a") as f:
        f.write(md)
    print(md)


TARGETS = ("**Targets** (issue 16): prune_and_compress ≥ 85 % of the copy bandwidth at the large shapes (≥ 4096² "
           "elements) and faster than torch._cslt_compress on the same weight at every shape; "
           "quantize_fp8_scaled ≥ 85 % and the fused mvue_24_t_compress ≥ 75 % at the large shapes "
           "(`verdict` judges every row).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one shape per kernel")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: fake timings, written to a temp dir")
    parser.add_argument("--profile", action="store_true", help="each fused kernel once (run under ncu)")
    parser.add_argument("--attach-ncu", metavar="CSV", help="append ncu's per-kernel summary to prune.md")
    parser.add_argument("--results-dir", help="write prune.md/.json here (default bench/results; a temp dir for --dry-run)")
    args = parser.parse_args()
    if args.results_dir:
        if args.dry_run and os.path.abspath(args.results_dir) == os.path.abspath(common.RESULTS):
            sys.exit("--dry-run never writes into bench/results: pick another --results-dir")
        common.RESULTS = args.results_dir
    if args.attach_ncu:
        return attach_ncu(args.attach_ncu)
    shapes = QUICK if (args.quick or args.profile) else {"w": WEIGHTS, "g": GRADS, "x": ACTS}
    print(TARGETS, flush=True)
    if args.dry_run:
        if not args.results_dir:
            common.RESULTS = tempfile.mkdtemp(prefix="bench_prune_dry_")
        cases = plan(shapes)
        copy = 3000.0
        rows = []
        for c in cases:
            us = c.nbytes / (FAKE_FRAC * copy * 1e3)
            rows += rows_for(c, us, copy, [(name, FAKE_BASELINE.get(name, 2.0) * us if alt else None, note)
                                           for name, alt, note in c.alternatives])
        for r in rows:
            r["timings"] = "FAKE (dry run)"
    else:
        if not torch.cuda.is_available():
            sys.exit("bench_prune needs a CUDA GPU (--dry-run checks the plan on a CPU)")
        cases = plan(shapes)
        if args.profile:
            for c in cases:
                inp = c.make(0)
                c.run(inp)  # one launch per kernel: ncu profiles each
            torch.cuda.synchronize()
            return None
        copy = common.copy_gbps()
        rows = [r for c in cases for r in measure(c, copy)]
    common.write_results(
        "prune", "Fused element-wise kernels vs copy bandwidth and alternatives" + (" [DRY RUN: FAKE timings]" if args.dry_run else ""),
        COLUMNS + ["copy_gbps"], rows,
        notes=TARGETS + "\n\nBytes = inputs read once + outputs written once; floor = bytes ÷ copy_gbps (measured "
              "in this run, read + write); frac_of_copy = floor ÷ time. speedup = baseline_time_us / time_us on the "
              "same tensors. torch._sparse_semi_structured_tile also writes the transposed compressed form (more "
              "bytes); to_sparse_semi_structured only converts an already-pruned tensor; `cslt_compress` "
              "(torch._cslt_compress, cuSPARSELt's compressor) only compresses a tensor that is already pruned, "
              "scaled and cast (baseline_note says which), while ours does all of it in its time.")
    if args.dry_run:
        print(f"dry run: wrote {os.path.join(common.RESULTS, 'prune.md')} and prune.json")
    return None


def plan(shapes) -> list[Case]:
    return weight_cases(shapes["w"]) + grad_cases(shapes["g"]) + act_cases(shapes["x"])


if __name__ == "__main__":
    main()
