"""Build of the s_ste_cuda extension (CUDA kernels when a toolkit is found, else CPU only).

`pip install -e . --no-build-isolation` or `python setup.py develop`. Environment:
  TORCH_CUDA_ARCH_LIST  architectures to build (default and rules: tools/build_config.py,
                        sm_80 and sm_90a; the "a" enables the SM90 wgmma/TMA instructions
                        CUTLASS 3.x kernels need; plain 9.0 and "+PTX" below 9.0a are refused)
  S_STE_GEMM_ARCHIVE    a prebuilt libs_ste_gemm.a (tools/build_gemm_archive.py) to link
                        instead of compiling the CUTLASS GEMMs; "0" compiles them. Unset: the
                        archive in build/gemm-archive/ if it fits this checkout, else compile.
  S_STE_CPU_ONLY=1      skip the CUDA sources even when nvcc is present
  MAX_JOBS              parallel compile jobs (ninja)
"""
import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gemm_archive  # noqa: E402
from build_config import DEFAULT_ARCH_LIST, ArchListError, check_arch_list  # noqa: E402
from locate_cuda import find_cuda_home, pip_cuda_include_dirs  # noqa: E402
from locate_cutlass import cutlass_include_dirs  # noqa: E402

# Decide by the toolkit, never by torch.cuda.is_available(): build machines have no GPU.
cuda_home = None if os.environ.get("S_STE_CPU_ONLY") == "1" else find_cuda_home()
if cuda_home:
    # cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = cuda_home
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    try:
        check_arch_list(os.environ["TORCH_CUDA_ARCH_LIST"])
    except ArchListError as e:
        sys.exit(f"s-ste: {e}")

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


host_sources = rel(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")) + glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))
# CUDA-only sources: element-wise kernels and the sparse_linear GEMM dispatch (the bindings),
# then the CUTLASS GEMM instantiations (one per .cu, no torch headers) with their registry,
# unless a prebuilt archive of those is linked.
binding_sources = rel(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")) + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cpp")))
gemm_sources = rel(glob.glob(os.path.join(ROOT, "csrc", "gemm", "*.cu")) + glob.glob(os.path.join(ROOT, "csrc", "gemm", "*.cpp")))
include_dirs = [os.path.join(ROOT, "csrc", "include")]
cxx_flags = ["-O3", "-std=c++20", "-ffp-contract=off"]

if cuda_home:
    try:
        archive, note = gemm_archive.resolve(ROOT, os.environ, torch.version.cuda, torch._C._GLIBCXX_USE_CXX11_ABI)
    except ValueError as e:
        sys.exit(f"s-ste: {e}")
    print(f"s-ste: {note}", file=sys.stderr)
    try:
        cutlass_dirs = cutlass_include_dirs()
    except RuntimeError:
        if not archive:
            raise
        cutlass_dirs = []  # the bindings include no CUTLASS header: the archive needs none
    extension = CUDAExtension(
        "s_ste_cuda",
        host_sources + binding_sources + ([] if archive else gemm_sources),
        include_dirs=include_dirs + cutlass_dirs + pip_cuda_include_dirs(),
        define_macros=[("S_STE_WITH_CUDA", "1")],
        extra_objects=[archive] if archive else [],
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
    packages=["s_ste", "s_ste.gemm_tables"],
    package_data={"s_ste.gemm_tables": ["*.txt"]},  # the per-device GEMM tuning tables (bench/tune_gemm.py)
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.10",
)
