import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A test that needs a GPU carries the `cuda` marker (registered in pyproject.toml): the device
# runs exactly these (`pytest -m cuda`), and without CUDA the hook below skips them.
requires_cuda = pytest.mark.cuda


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def subprocess_env(**extra: str) -> dict:
    """os.environ with the repository root put first on PYTHONPATH (not in place of it: an
    out-of-tree s_ste_cuda, as the device suite builds it, stays importable), plus `extra`."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": ROOT + (os.pathsep + path if path else ""), **extra}

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
