"""Locate the CUTLASS C++ headers shipped by the pinned PyPI package nvidia-cutlass.

CUTLASS is never copied into this repository: setup.py imports this file and CMake runs
it (`python tools/locate_cutlass.py --cmake`) to find the headers of the installed
package. The pin lives here so both builds agree on it.
"""
from __future__ import annotations

import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from locate_cuda import pip_cuda_include_dirs  # noqa: E402

CUTLASS_PIN = "nvidia-cutlass==4.2.0.0"


def cutlass_include_dirs() -> list[str]:
    """[cutlass/include, cutlass/tools/util/include] of the installed nvidia-cutlass."""
    spec = importlib.util.find_spec("cutlass_library")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"CUTLASS headers not found: install them with `pip install {CUTLASS_PIN}`"
        )
    source = os.path.join(os.path.dirname(spec.origin), "source")
    dirs = [os.path.join(source, "include"), os.path.join(source, "tools", "util", "include")]
    marker = os.path.join(dirs[0], "cutlass", "cutlass.h")
    if not os.path.isfile(marker):
        raise RuntimeError(f"{marker} is missing: reinstall with `pip install {CUTLASS_PIN}`")
    return dirs


if __name__ == "__main__":
    # Some CUTLASS util headers include curand, which only the pip CUDA packages ship here.
    dirs = cutlass_include_dirs() + pip_cuda_include_dirs()
    print(";".join(dirs) if "--cmake" in sys.argv else "\n".join(dirs))
