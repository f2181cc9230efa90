"""s-ste: S-STE 2:4 sparse pre-training (Hu, Zhu, Chen, NeurIPS 2024) on NVIDIA sparse tensor cores.

Ops (CPU and CUDA kernels in the `s_ste_cuda` extension, exact definitions in
docs/numerics.md; the same names in `s_ste.reference`, the pure-PyTorch oracle):
soft_threshold_24, hard_threshold_24, scale_factor, prune_and_compress, decompress,
mvue_24, quantize_fp8, sparse_linear. Layers: `s_ste.nn.SparseLinear`, `sparsify`,
`to_inference`; `s_ste.hf` (Hugging Face: GPT-2's Conv1D, `include="ffn"`, resume with
`s_ste.hf.from_pretrained`). Importing the package does not initialise CUDA nor import transformers.
"""
from . import gemm_tables, hf, reference  # noqa: F401  (importing gemm_tables installs the GEMM tuning tables)
from .nn import SparseLinear
from .ops import (
    LAYOUTS,
    built_with_cuda,
    decompress,
    hard_threshold_24,
    mvue_24,
    mvue_24_t_compress,
    prune_and_compress,
    quantize_fp8,
    quantize_fp8_scaled,
    scale_factor,
    soft_threshold_24,
    sparse_linear,
    validate_compressed,
)
from .sparsify import sparsify, to_inference

__all__ = [
    "LAYOUTS",
    "SparseLinear",
    "built_with_cuda",
    "decompress",
    "hard_threshold_24",
    "hf",
    "mvue_24",
    "mvue_24_t_compress",
    "prune_and_compress",
    "quantize_fp8",
    "quantize_fp8_scaled",
    "reference",
    "scale_factor",
    "soft_threshold_24",
    "sparse_linear",
    "sparsify",
    "to_inference",
    "validate_compressed",
]
__version__ = "0.1.0"
