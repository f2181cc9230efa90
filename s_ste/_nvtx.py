"""NVTX ranges around the layer's ops, for nsys / ncu --nvtx-include (see bench/README.md).

S_STE_NVTX=1 (read at import): every op of the layer's fast path runs inside an NVTX range
"s_ste.<op>". Off by default: no overhead.
"""
import contextlib
import os

import torch

NVTX = os.environ.get("S_STE_NVTX", "0") not in ("", "0")


def nvtx(name: str):
    """An NVTX range named s_ste.<name> when S_STE_NVTX=1 and CUDA is up, else a no-op."""
    if NVTX and torch.cuda.is_available() and not torch.compiler.is_compiling():
        return torch.cuda.nvtx.range(f"s_ste.{name}")
    return contextlib.nullcontext()
