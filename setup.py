"""Build of the s_ste_cuda extension (CUDA kernels when a toolkit is found, else CPU only).

`pip install -e . --no-build-isolation` or `python setup.py develop`. Environment:
  TORCH_CUDA_ARCH_LIST  architectures to build (default "8.0;9.0a"; the "a" enables the
                        SM90 wgmma/TMA instructions CUTLASS 3.x kernels need)
  S_STE_CPU_ONLY=1      skip the CUDA sources even when nvcc is present
  MAX_JOBS              parallel compile jobs (ninja)
"""
import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "third_party"))
from locate_cuda import find_cuda_home, pip_cuda_include_dirs  # noqa: E402
from locate_cutlass import cutlass_include_dirs  # noqa: E402

# Decide by the toolkit, never by torch.cuda.is_available(): build machines have no GPU.
cuda_home = None if os.environ.get("S_STE_CPU_ONLY") == "1" else find_cuda_home()
if cuda_home:
    # cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = cuda_home
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0a")
    # CUTLASS's SM90 kernels compiled for plain sm_90 contain no GEMM (they print an error and
    # return, leaving the output unwritten): Hopper must be built as 9.0a.
    archs = os.environ["TORCH_CUDA_ARCH_LIST"].replace(";", " ").split()
    if any(a.split("+")[0] == "9.0" for a in archs):
        sys.exit(f"s-ste: TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']!r} builds Hopper as 9.0; "
                 "use 9.0a (the SM90 sparse GEMMs need the arch-specific wgmma/TMA instructions)")

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


host_sources = rel(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")) + glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))
# CUDA-only sources: element-wise kernels, the sparse_linear GEMM dispatch, and the CUTLASS
# GEMM instantiations (one per .cu, no torch headers) with their registry.
cuda_sources = rel(
    glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))
    + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cpp"))
    + glob.glob(os.path.join(ROOT, "csrc", "gemm", "*.cu"))
    + glob.glob(os.path.join(ROOT, "csrc", "gemm", "*.cpp"))
)
include_dirs = [os.path.join(ROOT, "csrc", "include")]
cxx_flags = ["-O3", "-std=c++20", "-ffp-contract=off"]

if cuda_home:
    extension = CUDAExtension(
        "s_ste_cuda",
        host_sources + cuda_sources,
        include_dirs=include_dirs + cutlass_include_dirs() + pip_cuda_include_dirs(),
        define_macros=[("S_STE_WITH_CUDA", "1")],
        extra_compile_args={
            "cxx": cxx_flags,
            "nvcc": ["-O3", "-DNDEBUG", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"],
        },
    )
else:
    print("s-ste: no CUDA toolkit found, building the CPU-only extension", file=sys.stderr)
    extension = CppExtension("s_ste_cuda", host_sources, include_dirs=include_dirs, extra_compile_args=cxx_flags)

setup(
    name="s-ste",
    version="0.1.0",
    description="S-STE 2:4 sparse pre-training on NVIDIA sparse tensor cores",
    packages=["s_ste"],
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.10",
)
