"""The README's main job runs, and importing the package leaves CUDA uninitialised."""
import math
import subprocess
import sys

import s_ste.demo


def test_demo_trains_a_sparse_model():
    results = s_ste.demo.main(["--steps", "60", "--hidden", "128", "--device", "cpu"])
    assert results["sparse_zero_fraction"] >= 0.5
    for key in ("dense_val_loss", "s-ste_val_loss"):
        assert math.isfinite(results[key]) and results[key] < 0.9, f"{key} did not learn: {results[key]}"


def test_import_does_not_initialise_cuda():
    code = "import torch, s_ste; s_ste.SparseLinear(32, 32); assert not torch.cuda.is_initialized(); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
