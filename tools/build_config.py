"""Which CUDA architectures a build of s_ste_cuda may target: the rules and the defaults, once.

Two builds compile and launch but compute nothing on Hopper, so they are refused:
- plain `9.0` (CMake `90`): CUTLASS's SM90 sparse GEMMs need the arch-specific wgmma/TMA
  instructions of `9.0a`; compiled for `sm_90` their body prints an error and returns;
- PTX of an architecture below 9.0a (`8.0+PTX`; CMake `80` or `80-virtual`): the driver
  JIT-compiles that PTX for Hopper, and the SM90 kernels in it are the same empty body.
Architecture names (`Ampere`, `Hopper`, ...) and `native` (CMake also `all`, `all-major`) expand
to such lists, so they are refused too: name the architectures, e.g. `8.0;9.0a`.

The same rules in both spellings: setup.py checks TORCH_CUDA_ARCH_LIST with check_arch_list;
CMake (cmake/arch_rules.cmake, included by CMakeLists.txt and csrc/gemm/CMakeLists.txt) reads the
defaults from `--cmake` and checks its lists with `--check-cmake` / `--check-torch`.
Importable without torch (the CPU tests call it directly).

    python tools/build_config.py --cmake                         # the defaults as CMake set() lines
    python tools/build_config.py --check-cmake "80-real;90a-real" --name S_STE_GEMM_ARCHITECTURES
    python tools/build_config.py --check-torch "8.0;9.0a"         # exit 1 + the refusal on stderr
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_ARCH_LIST = "8.0;9.0a"  # TORCH_CUDA_ARCH_LIST spelling (setup.py, torch's CMake config)
DEFAULT_CUDA_ARCHITECTURES = "80-real;90a-real"  # CMake spelling of the same: sm_80 and sm_90a SASS, no PTX
# The libstdc++ ABI the GEMM archive is compiled with (select_kernel takes a std::string*): torch's.
GEMM_CXX11_ABI = 1


class ArchListError(ValueError):
    """An architecture list names a build that would compute wrong results."""


@dataclass(frozen=True)
class _Spelling:
    """How one kind of list writes an architecture, and what its refusals say (str.format fields:
    name, value, entry, major, minor, suffix, default)."""
    default: str
    entry: re.Pattern  # groups: major, minor, 'a'/'f' suffix, the PTX marker
    embeds_ptx: Callable[[str | None], bool]
    not_numbered: str
    plain_sm90: str
    ptx_below_sm90: str


_TORCH = _Spelling(
    DEFAULT_ARCH_LIST, re.compile(r"^(\d+)\.(\d+)([af]?)(\+PTX)?$"), lambda ptx: ptx is not None,
    "{name}={value!r}: {entry!r} is not a numbered architecture; s-ste refuses names and 'native' (torch turns them "
    "into 9.0 or 'X+PTX' builds whose SM90 GEMMs compute nothing): write the list, e.g. {default!r}",
    "{name}={value!r} builds Hopper as {entry!r}; use 9.0a (the SM90 sparse GEMMs need the arch-specific wgmma/TMA "
    "instructions; built for plain sm_90 they compute nothing)",
    "{name}={value!r}: {entry!r} embeds sm_{major}{minor} PTX, which a Hopper GPU JIT-compiles into SM90 sparse GEMMs "
    "that compute nothing (sparse_linear would return uninitialised memory); drop '+PTX' below 9.0a, e.g. {default!r}")
# CMake: `N-real` is SASS only, plain `N` SASS + PTX, `N-virtual` PTX only.
_CMAKE = _Spelling(
    DEFAULT_CUDA_ARCHITECTURES, re.compile(r"^(\d+?)(\d)([af]?)(-real|-virtual)?$"), lambda kind: kind != "-real",
    "{name}={value!r}: {entry!r} is not a numbered architecture; s-ste refuses 'native', 'all' and 'all-major' (they "
    "build plain sm_90 or embed PTX below sm_90a, whose SM90 GEMMs compute nothing): write the list, e.g. {default!r}",
    "{name}={value!r} builds Hopper as {entry!r}: use 90a-real (the SM90 sparse GEMMs need the arch-specific wgmma/TMA "
    "instructions; built for plain sm_90 they compute nothing)",
    "{name}={value!r}: {entry!r} embeds sm_{major}{minor} PTX, which a Hopper GPU JIT-compiles into SM90 sparse GEMMs "
    "that compute nothing: use {major}{minor}{suffix}-real")


def _check(value: str, name: str, spelling: _Spelling) -> list[str]:
    entries = [e for e in value.replace(" ", ";").split(";") if e]  # as torch and CMake split: ';' or spaces
    if not entries:
        raise ArchListError(f"{name}={value!r} names no architecture (e.g. {spelling.default!r})")
    for entry in entries:
        fields = {"name": name, "value": value, "entry": entry, "default": spelling.default}
        m = spelling.entry.match(entry)
        if m is None:
            raise ArchListError(spelling.not_numbered.format(**fields))
        major, minor, suffix, ptx = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        fields.update(major=major, minor=minor, suffix=suffix)
        if (major, minor) == (9, 0) and not suffix:
            raise ArchListError(spelling.plain_sm90.format(**fields))
        if spelling.embeds_ptx(ptx) and (major, minor) < (9, 0):
            raise ArchListError(spelling.ptx_below_sm90.format(**fields))
    return entries


def check_arch_list(value: str) -> list[str]:
    """The entries of a TORCH_CUDA_ARCH_LIST value (split as torch splits it: ';' or spaces).

    Raises ArchListError naming the offending entry and what to write instead.
    """
    return _check(value, "TORCH_CUDA_ARCH_LIST", _TORCH)


def check_cuda_architectures(value: str, name: str = "CMAKE_CUDA_ARCHITECTURES") -> list[str]:
    """The entries of a CMake CUDA_ARCHITECTURES list (`80-real`, `90a-real`, `100`, ...), checked by the
    same rules as check_arch_list; `name` is the CMake variable the list came from, for the message."""
    return _check(value, name, _CMAKE)


def cmake_settings() -> str:
    """The defaults as CMake code (cmake/arch_rules.cmake includes it)."""
    return (f'set(S_STE_DEFAULT_CUDA_ARCHITECTURES "{DEFAULT_CUDA_ARCHITECTURES}")\n'
            f'set(S_STE_DEFAULT_TORCH_CUDA_ARCH_LIST "{DEFAULT_ARCH_LIST}")\n'
            f"set(S_STE_GEMM_CXX11_ABI {GEMM_CXX11_ABI})\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--cmake", action="store_true", help="print the defaults as CMake set() lines")
    what.add_argument("--check-cmake", metavar="LIST", help="check a CMake CUDA_ARCHITECTURES list")
    what.add_argument("--check-torch", metavar="LIST", help="check a TORCH_CUDA_ARCH_LIST value")
    parser.add_argument("--name", default="CMAKE_CUDA_ARCHITECTURES", help="the CMake variable, for the message")
    args = parser.parse_args(argv)
    if args.cmake:
        sys.stdout.write(cmake_settings())
        return 0
    try:
        if args.check_cmake is not None:
            check_cuda_architectures(args.check_cmake, args.name)
        else:
            check_arch_list(args.check_torch)
    except ArchListError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
