import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
HALF_DTYPES = (torch.bfloat16, torch.float16)


def randn(*shape, dtype=torch.float32, device="cpu", seed=0):
    """Random normal data, never zeros: zeros hide unwritten outputs and wrong indexing."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype=dtype, device=device)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bytes as integers, so -0.0 != +0.0 and NaN payloads compare."""
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(view)


def assert_bits_equal(a: torch.Tensor, b: torch.Tensor, what: str = "") -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}"
    diff = bits(a.cpu()) != bits(b.cpu())
    if diff.any():
        idx = diff.nonzero()[0].tolist()
        raise AssertionError(f"{what}: {int(diff.sum())} elements differ, first at {idx}: "
                             f"{a.cpu()[tuple(idx)].item()} vs {b.cpu()[tuple(idx)].item()}")
