"""The prebuilt CUTLASS GEMM archive (libs_ste_gemm.a): where setup.py finds it and whether it fits this checkout.

The SM90 GEMM translation units take minutes each to compile; they include neither torch nor
Python, so tools/build_gemm_archive.py compiles them once into a static archive that
setup.py links instead (the GPU machine then compiles only the small binding files). Beside
the archive lies a manifest (libs_ste_gemm.json) with a fingerprint of every file the archive
was compiled from; an archive whose fingerprint differs from the checkout's is stale and is
never linked (its kernels could disagree with the headers the bindings see).
Importable without torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_config import DEFAULT_CUDA_ARCHITECTURES, GEMM_CXX11_ABI  # noqa: E402

ARCHIVE_NAME = "libs_ste_gemm.a"
MANIFEST_NAME = "libs_ste_gemm.json"
DEFAULT_DIR = os.path.join("build", "gemm-archive")  # relative to the repository root (git-ignored)
ARCHITECTURES = DEFAULT_CUDA_ARCHITECTURES  # what the archive is built for (CMake spelling, SASS only)
CXX11_ABI = GEMM_CXX11_ABI  # the archive's -D_GLIBCXX_USE_CXX11_ABI

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# include(${CMAKE_CURRENT_SOURCE_DIR}/../../cmake/arch_rules.cmake) in a CMake file
_CMAKE_INCLUDE = re.compile(r'^\s*include\(\s*"?\$\{CMAKE_CURRENT_(?:SOURCE|LIST)_DIR\}/([^")\s]+)', re.M)


def gemm_inputs(root: str) -> list[str]:
    """Repository-relative paths the archive is compiled from: csrc/gemm's sources and
    CMakeLists.txt, every repository header they include and every CMake file it includes
    (recursively: cmake/arch_rules.cmake)."""
    gemm = os.path.join(root, "csrc", "gemm")
    include = os.path.join(root, "csrc", "include")
    todo = [os.path.join(gemm, f) for f in sorted(os.listdir(gemm))
            if f.endswith((".cu", ".cpp", ".h", ".cuh")) or f == "CMakeLists.txt"]
    seen: set[str] = set()
    while todo:
        path = os.path.normpath(todo.pop())
        if path in seen:
            continue
        seen.add(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith((".txt", ".cmake")):
            todo += [os.path.join(os.path.dirname(path), name) for name in _CMAKE_INCLUDE.findall(text)]
            continue
        for name in _INCLUDE.findall(text):
            for base in (os.path.dirname(path), include):
                candidate = os.path.join(base, name)
                if os.path.isfile(candidate):
                    todo.append(candidate)
                    break
    return sorted(os.path.relpath(p, root) for p in seen)


def fingerprint(root: str, architectures: str = ARCHITECTURES) -> str:
    """sha256 over the archive's inputs (names and bytes) and its architectures."""
    h = hashlib.sha256(f"architectures={architectures}\n".encode())
    for rel in gemm_inputs(root):
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
        h.update(f"{rel.replace(os.sep, '/')}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def read_manifest(archive: str) -> dict | None:
    path = os.path.join(os.path.dirname(os.path.abspath(archive)), MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def why_unusable(root: str, archive: str, cuda_version: str | None = None, cxx11_abi: bool | None = None) -> str | None:
    """None if `archive` can be linked into this checkout's extension, else why not.

    cuda_version: torch.version.cuda (the archive's CUDA major must match it);
    cxx11_abi: torch._C._GLIBCXX_USE_CXX11_ABI.
    """
    if not os.path.isfile(archive):
        return f"{archive} does not exist"
    manifest = read_manifest(archive)
    if manifest is None:
        return f"{archive} has no readable {MANIFEST_NAME} beside it (build it with tools/build_gemm_archive.py)"
    expected = fingerprint(root, manifest.get("architectures", ARCHITECTURES))
    if manifest.get("fingerprint") != expected:
        return (f"{archive} was built from other GEMM sources than this checkout's (fingerprint "
                f"{str(manifest.get('fingerprint'))[:12]} != {expected[:12]}): rebuild it with "
                "`python tools/build_gemm_archive.py`")
    if cuda_version and str(manifest.get("cuda", "")).split(".")[0] != cuda_version.split(".")[0]:
        return f"{archive} was built with CUDA {manifest.get('cuda')}, torch uses CUDA {cuda_version}"
    if cxx11_abi is not None and bool(manifest.get("cxx11_abi", CXX11_ABI)) != bool(cxx11_abi):
        return f"{archive} was built with _GLIBCXX_USE_CXX11_ABI={manifest.get('cxx11_abi')}, torch with {int(cxx11_abi)}"
    return None


def resolve(root: str, env: dict, cuda_version: str | None = None, cxx11_abi: bool | None = None) -> tuple[str | None, str]:
    """(archive to link or None, a line saying why) from S_STE_GEMM_ARCHIVE and the default folder.

    S_STE_GEMM_ARCHIVE=path: that archive, which must fit (else ValueError with the reason);
    S_STE_GEMM_ARCHIVE=0: compile the GEMM sources; unset: build/gemm-archive/ when it holds
    an archive that fits, else compile the sources.
    """
    requested = env.get("S_STE_GEMM_ARCHIVE", "")
    if requested == "0":
        return None, "S_STE_GEMM_ARCHIVE=0: compiling the CUTLASS GEMM sources"
    if requested:
        archive = os.path.abspath(requested)
        reason = why_unusable(root, archive, cuda_version, cxx11_abi)
        if reason:
            raise ValueError(f"S_STE_GEMM_ARCHIVE={requested}: {reason}")
        return archive, f"linking the prebuilt CUTLASS GEMM archive {archive}"
    archive = os.path.join(root, DEFAULT_DIR, ARCHIVE_NAME)
    if not os.path.exists(archive):
        return None, "no prebuilt GEMM archive: compiling the CUTLASS GEMM sources"
    reason = why_unusable(root, archive, cuda_version, cxx11_abi)
    if reason:
        return None, f"not linking {archive} ({reason}): compiling the CUTLASS GEMM sources"
    return archive, f"linking the prebuilt CUTLASS GEMM archive {archive}"
