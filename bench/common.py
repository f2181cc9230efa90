"""Shared helpers of the bench scripts: timing with CUDA events over rotating inputs, the
kernel-only time of a call (torch.profiler), the device-to-device copy ceiling, and results
files that name device, versions (torch, CUDA, cuSPARSELt built and loaded), commit and date."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Callable, Sequence

import torch

import cusparselt  # (bench/ is on sys.path: every bench script puts it there)

BENCH = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(BENCH, "results")  # the scripts' --results-dir / --dry-run replace it


def environment() -> dict[str, str | None]:
    try:  # the checkout the benches run from (not RESULTS: a dry run writes to a temp dir)
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                cwd=BENCH, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=BENCH).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        **cusparselt.versions(),
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def l2_bytes() -> int:
    if not torch.cuda.is_available():
        return 0
    return int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20))


def rotations(bytes_per_set: int) -> int:
    """Input sets to rotate through so that together they exceed 3× the L2 cache."""
    return max(2, -(-3 * l2_bytes() // max(bytes_per_set, 1)))


def time_us(fn: Callable[[int], object], n_sets: int, warmup: int = 10, reps: int = 50) -> float:
    """Median time of fn(i) in µs with CUDA events, rotating i over n_sets input sets."""
    for i in range(warmup):
        fn(i % n_sets)
    torch.cuda.synchronize()
    times = []
    for i in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(i % n_sets)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    times.sort()
    return times[len(times) // 2]


def kernel_us(fn: Callable[[int], object], n_sets: int, reps: int = 3) -> float | None:
    """Device time of one fn(i) from torch.profiler's CUDA activities (kernels, memsets, copies),
    without the host's per-call overhead that the event time also holds (after one warm call);
    None if the profiler saw no GPU activity (no CUPTI)."""
    from torch.profiler import ProfilerActivity, profile
    fn(0)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(reps):
            fn(i % n_sets)
        torch.cuda.synchronize()
    return device_us_per_call(prof.events(), reps)


def device_us_per_call(events, calls: int) -> float | None:
    """Summed duration of the profiler events that ran on the GPU, per call (None: there were none)."""
    on_gpu = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(e.time_range.elapsed_us() for e in on_gpu) / calls if on_gpu else None


def copy_gbps(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth (bytes read + written per second), measured now."""
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device="cuda").fill_(1)
    dst = torch.empty_like(src)
    t = time_us(lambda _: dst.copy_(src), 1, warmup=5, reps=20)
    return 2 * src.numel() / t / 1e3


def write_results(name: str, title: str, columns: Sequence[str], rows: list[dict], notes: str = "") -> str:
    """Print the table and write bench/results/<name>.md and .json; returns the markdown."""
    env = environment()
    md = (f"# {title}\n\n{env['device']}, torch {env['torch']}, CUDA {env['cuda']}, cuSPARSELt "
          f"{env['cusparselt_version_loaded']} loaded (torch built with {env['cusparselt_version_built']}), "
          f"commit {env['commit']}, {env['date']}\n\n{md_table(columns, rows)}\n{notes}\n")
    print(md)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(md)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump([{**r, **env} for r in rows], f, indent=1)
    return md


def md_table(columns: Sequence[str], rows: list[dict]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |\n" for r in rows)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else str(v)
