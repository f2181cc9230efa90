"""Which CUDA architectures a build of s_ste_cuda may target (setup.py checks TORCH_CUDA_ARCH_LIST here).

Two builds compile and launch but compute nothing on Hopper, so they are refused:
- plain `9.0`: CUTLASS's SM90 sparse GEMMs need the arch-specific wgmma/TMA instructions of
  `9.0a`; compiled for `sm_90` their body prints an error and returns;
- `+PTX` on an architecture below 9.0a (e.g. `8.0+PTX`): the driver JIT-compiles that PTX
  for Hopper, and the SM90 kernels in it are the same empty body.
Architecture names (`Ampere`, `Hopper`, ...) and `native` expand to such lists in torch, so
they are refused too: name the architectures, e.g. `8.0;9.0a`.
Importable without torch (the CPU tests call check_arch_list directly).
"""
from __future__ import annotations

import re

DEFAULT_ARCH_LIST = "8.0;9.0a"

_ARCH = re.compile(r"^(\d+)\.(\d+)([af]?)(\+PTX)?$")


class ArchListError(ValueError):
    """TORCH_CUDA_ARCH_LIST names a build that would compute wrong results."""


def check_arch_list(value: str) -> list[str]:
    """The entries of a TORCH_CUDA_ARCH_LIST value (split as torch splits it: ';' or spaces).

    Raises ArchListError naming the offending entry and what to write instead.
    """
    entries = [e for e in value.replace(" ", ";").split(";") if e]
    if not entries:
        raise ArchListError(f"TORCH_CUDA_ARCH_LIST={value!r} names no architecture (e.g. {DEFAULT_ARCH_LIST!r})")
    for entry in entries:
        m = _ARCH.match(entry)
        if m is None:
            raise ArchListError(
                f"TORCH_CUDA_ARCH_LIST={value!r}: {entry!r} is not a numbered architecture; s-ste refuses names "
                f"and 'native' (torch turns them into 9.0 or 'X+PTX' builds whose SM90 GEMMs compute nothing): "
                f"write the list, e.g. {DEFAULT_ARCH_LIST!r}")
        major, minor, suffix, ptx = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        if (major, minor) == (9, 0) and not suffix:
            raise ArchListError(
                f"TORCH_CUDA_ARCH_LIST={value!r} builds Hopper as {entry!r}; use 9.0a (the SM90 sparse GEMMs need "
                "the arch-specific wgmma/TMA instructions; built for plain sm_90 they compute nothing)")
        if ptx and (major, minor) < (9, 0):
            raise ArchListError(
                f"TORCH_CUDA_ARCH_LIST={value!r}: {entry!r} embeds sm_{major}{minor} PTX, which a Hopper GPU "
                "JIT-compiles into SM90 sparse GEMMs that compute nothing (sparse_linear would return "
                f"uninitialised memory); drop '+PTX' below 9.0a, e.g. {DEFAULT_ARCH_LIST!r}")
    return entries
