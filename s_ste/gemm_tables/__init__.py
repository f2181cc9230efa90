"""Per-device GEMM tuning tables: which CUTLASS sparse kernel and knobs sparse_linear runs per problem.

`bench/tune_gemm.py` measures every kernel x knob at the bench's FFN shapes on one GPU and writes
one table per device (`<device>.txt`, the text format of csrc/gemm/tuning_table.h) here; importing
`s_ste` installs them into the extension (`install()`), and the kernel selection then uses the
table whose device name and SM count are the GPU's, if its kernel fingerprint is this build's
(else the wave-efficiency heuristic: csrc/gemm/README.md).

Environment: S_STE_GEMM_TABLES = "0" (or empty) installs none; otherwise a list of files or
folders (os.pathsep-separated) replaces this folder.
"""
from __future__ import annotations

import os
import warnings

from .. import ops

FOLDER = os.path.dirname(os.path.abspath(__file__))
SUFFIX = ".txt"
ENV = "S_STE_GEMM_TABLES"


def table_paths(spec: str | None = None) -> list[str]:
    """The table files to install: those of `spec` (os.pathsep-separated files or folders; "0" or
    "" = none), by default $S_STE_GEMM_TABLES, else this folder's *.txt."""
    spec = os.environ.get(ENV) if spec is None else spec
    if spec is None:
        entries = [FOLDER]
    elif spec.strip() in ("", "0"):
        return []
    else:
        entries = [e for e in spec.split(os.pathsep) if e]
    paths: list[str] = []
    for entry in entries:
        if os.path.isdir(entry):
            paths += sorted(os.path.join(entry, f) for f in os.listdir(entry) if f.endswith(SUFFIX))
        else:
            paths.append(entry)
    return paths


def install(paths: list[str] | None = None) -> list[dict]:
    """Install `paths` (default table_paths()) as the extension's tuning tables, replacing the
    installed ones; returns their status (s_ste_cuda.gemm_tables()). A table that cannot be read or
    parsed, or that was measured with another build's kernels, is reported with a warning and
    never used. Without the CUDA kernels this does nothing and returns []."""
    install_tables = ops.extension_entry("gemm_install_tables")
    if install_tables is None:
        return []
    tables = []
    for path in table_paths() if paths is None else paths:
        try:
            with open(path, encoding="utf-8") as f:
                tables.append((path, f.read()))
        except OSError as e:
            warnings.warn(f"s_ste: GEMM tuning table {path} not readable ({e}): ignored", stacklevel=2)
    status = install_tables(tables)
    for t in status:
        # Tables of other GPUs are normal; a table this build cannot use is stale data.
        if t["status"] is not None:
            warnings.warn(f"s_ste: GEMM tuning table not used: {t['status']}", stacklevel=2)
    return status


def installed() -> list[dict]:
    """The installed tables and their status (status None = usable on its device)."""
    tables = ops.extension_entry("gemm_tables")
    return tables() if tables is not None else []


install()
