"""Find the CUDA toolkit directory for the build (CUDA_HOME).

torch.utils.cpp_extension derives CUDA_HOME from `which nvcc` when the variable is unset;
on our build machines `nvcc` on PATH is a small wrapper script in /usr/local/bin, which
would point it at /usr/local. Follow links and wrapper scripts to the real toolkit.
Prints the directory (or nothing, exit 1, when there is no toolkit).
"""
from __future__ import annotations

import os
import re
import shutil
import sys


def _is_toolkit(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "bin", "nvcc")) and os.path.isfile(
        os.path.join(path, "include", "cuda_runtime.h")
    )


def _from_nvcc(nvcc: str, depth: int = 0) -> str | None:
    real = os.path.realpath(nvcc)
    home = os.path.dirname(os.path.dirname(real))
    if _is_toolkit(home):
        return home
    if depth > 3:
        return None
    try:
        with open(real, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    # A wrapper script: follow the first absolute path to an nvcc it names.
    for match in re.finditer(rb"(/[^\s\"']*/bin/nvcc)\b", head):
        found = _from_nvcc(match.group(1).decode(), depth + 1)
        if found:
            return found
    return None


def find_cuda_home() -> str | None:
    for var in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(var)
        if value and _is_toolkit(value):
            return value
    nvcc = shutil.which("nvcc")
    if nvcc:
        found = _from_nvcc(nvcc)
        if found:
            return found
    default = "/usr/local/cuda"
    return default if _is_toolkit(default) else None


def pip_cuda_include_dirs() -> list[str]:
    """Include dirs of the pip CUDA packages (nvidia/cu13/include, ...).

    The CUDA 13 toolkit on our build machines lacks the library headers torch's CUDA headers
    include (cusparse.h, cublas_v2.h) and curand, which some CUTLASS util headers need; the
    nvidia-* wheels that torch pulls in ship them.
    """
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = []
    for root in spec.submodule_search_locations:
        for sub in sorted(os.listdir(root)):
            inc = os.path.join(root, sub, "include")
            if any(os.path.isfile(os.path.join(inc, h)) for h in ("cusparse.h", "curand_kernel.h")):
                found.append(inc)
    return found


if __name__ == "__main__":
    home = find_cuda_home()
    if not home:
        sys.exit(1)
    print(home)
