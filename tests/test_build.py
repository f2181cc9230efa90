"""The build's own rules, on the CPU: which TORCH_CUDA_ARCH_LIST values setup.py refuses
(tools/build_config.py) and when a prebuilt GEMM archive may be linked
(tools/gemm_archive.py)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gemm_archive  # noqa: E402
from build_config import ArchListError, check_arch_list  # noqa: E402
from locate_cuda import find_cuda_home  # noqa: E402


@pytest.mark.parametrize("value", ["8.0;9.0a", "9.0a", "8.0 9.0a", "8.0;8.6;9.0a", "9.0a+PTX", "8.0;9.0a;10.0",
                                   "10.0+PTX"])
def test_arch_lists_that_build_working_kernels(value):
    assert check_arch_list(value) == value.replace(" ", ";").split(";")


@pytest.mark.parametrize("value,names", [
    ("8.0+PTX", ["'8.0+PTX'", "PTX", "9.0a"]),  # Hopper would JIT the SM90 GEMMs from sm_80 PTX
    ("8.0;8.6+PTX;9.0a", ["'8.6+PTX'"]),
    ("7.5+PTX", ["'7.5+PTX'"]),
    ("9.0", ["9.0a"]),
    ("8.0;9.0+PTX", ["'9.0+PTX'", "9.0a"]),
    ("Hopper", ["'Hopper'", "8.0;9.0a"]),
    ("native", ["'native'"]),
    ("", ["names no architecture"]),
    ("sm_90a", ["'sm_90a'"]),
])
def test_arch_lists_that_compute_nothing_are_refused(value, names):
    with pytest.raises(ArchListError) as e:
        check_arch_list(value)
    for name in names:
        assert name in str(e.value), str(e.value)


@pytest.mark.skipif(find_cuda_home() is None, reason="setup.py checks the arch list only when it builds CUDA")
def test_setup_py_refuses_ptx_below_hopper():
    env = dict(os.environ, TORCH_CUDA_ARCH_LIST="8.0+PTX")
    env.pop("S_STE_CPU_ONLY", None)
    r = subprocess.run([sys.executable, "setup.py", "--name"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "'8.0+PTX' embeds sm_80 PTX" in r.stderr, r.stderr[-2000:]


def test_archive_inputs_are_the_gemm_sources_and_the_headers_they_include():
    inputs = gemm_archive.gemm_inputs(ROOT)
    for path in ("csrc/gemm/sm90_sparse_gemm.cuh", "csrc/gemm/sparse_gemm.h", "csrc/gemm/select.cpp",
                 "csrc/gemm/CMakeLists.txt", "csrc/include/s_ste/layout_sm90.cuh", "csrc/include/s_ste/hd.cuh"):
        assert path in inputs, path
    # Headers the GEMMs never include (the element-wise kernels') do not make the archive stale.
    assert "csrc/include/s_ste/soft_threshold.cuh" not in inputs
    assert not any(p.startswith("csrc/cuda/") for p in inputs)


def fake_checkout(tmp_path):
    """A copy of the files the archive is compiled from, and a fake archive built from them."""
    root = tmp_path / "repo"
    for rel in gemm_archive.gemm_inputs(ROOT):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.join(ROOT, rel), root / rel)
    out = root / gemm_archive.DEFAULT_DIR
    out.mkdir(parents=True)
    (out / gemm_archive.ARCHIVE_NAME).write_bytes(b"!<arch>\n")
    manifest = {"fingerprint": gemm_archive.fingerprint(str(root)), "architectures": gemm_archive.ARCHITECTURES,
                "cuda": "13.0", "cxx11_abi": 1}
    (out / gemm_archive.MANIFEST_NAME).write_text(json.dumps(manifest))
    return str(root), str(out / gemm_archive.ARCHIVE_NAME)


def test_a_matching_archive_is_linked(tmp_path):
    root, archive = fake_checkout(tmp_path)
    assert gemm_archive.why_unusable(root, archive, "13.0", True) is None
    assert gemm_archive.resolve(root, {}, "13.0", True)[0] == archive  # found in build/gemm-archive
    assert gemm_archive.resolve(root, {"S_STE_GEMM_ARCHIVE": archive}, "13.0", True)[0] == archive
    assert gemm_archive.resolve(root, {"S_STE_GEMM_ARCHIVE": "0"}, "13.0", True)[0] is None


def test_a_stale_archive_is_never_linked(tmp_path):
    root, archive = fake_checkout(tmp_path)
    header = os.path.join(root, "csrc", "include", "s_ste", "layout_sm90.cuh")
    with open(header, "a") as f:
        f.write("// changed\n")
    reason = gemm_archive.why_unusable(root, archive, "13.0", True)
    assert reason and "other GEMM sources" in reason
    path, note = gemm_archive.resolve(root, {}, "13.0", True)  # the default folder: compile instead
    assert path is None and "compiling the CUTLASS GEMM sources" in note
    with pytest.raises(ValueError, match="S_STE_GEMM_ARCHIVE"):  # asked for explicitly: refuse
        gemm_archive.resolve(root, {"S_STE_GEMM_ARCHIVE": archive}, "13.0", True)


def test_an_archive_of_another_cuda_or_abi_is_refused(tmp_path):
    root, archive = fake_checkout(tmp_path)
    assert "CUDA 13.0" in gemm_archive.why_unusable(root, archive, "12.8", True)
    assert "_GLIBCXX_USE_CXX11_ABI" in gemm_archive.why_unusable(root, archive, "13.0", False)
    os.remove(os.path.join(os.path.dirname(archive), gemm_archive.MANIFEST_NAME))
    assert gemm_archive.MANIFEST_NAME in gemm_archive.why_unusable(root, archive, "13.0", True)
    with pytest.raises(ValueError, match="does not exist"):
        gemm_archive.resolve(root, {"S_STE_GEMM_ARCHIVE": str(tmp_path / "missing.a")})
