"""The build's own rules, on the CPU: which TORCH_CUDA_ARCH_LIST values setup.py and which CMake
architecture lists CMake refuses (tools/build_config.py, cmake/arch_rules.cmake) and when a prebuilt
GEMM archive may be linked (tools/gemm_archive.py)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gemm_archive  # noqa: E402
import build_config  # noqa: E402
from build_config import DEFAULT_ARCH_LIST, DEFAULT_CUDA_ARCHITECTURES, ArchListError, check_arch_list  # noqa: E402
from locate_cuda import find_cuda_home  # noqa: E402


@pytest.mark.parametrize("value", [DEFAULT_ARCH_LIST, "9.0a", "8.0 9.0a", "8.0;8.6;9.0a", "9.0a+PTX",
                                   DEFAULT_ARCH_LIST + ";10.0", "10.0+PTX"])
def test_arch_lists_that_build_working_kernels(value):
    assert check_arch_list(value) == value.replace(" ", ";").split(";")


@pytest.mark.parametrize("value,names", [
    ("8.0+PTX", ["'8.0+PTX'", "PTX", "9.0a"]),  # Hopper would JIT the SM90 GEMMs from sm_80 PTX
    ("8.0;8.6+PTX;9.0a", ["'8.6+PTX'"]),
    ("7.5+PTX", ["'7.5+PTX'"]),
    ("9.0", ["9.0a"]),
    ("8.0;9.0+PTX", ["'9.0+PTX'", "9.0a"]),
    ("Hopper", ["'Hopper'", DEFAULT_ARCH_LIST]),
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


def cmake_to_torch(entry: str) -> str:
    """'90a-real' -> '9.0a', '100' -> '10.0+PTX': the TORCH_CUDA_ARCH_LIST spelling of a CMake entry."""
    number, _, kind = entry.partition("-")
    suffix = number[-1] if number[-1] in "af" else ""
    digits = number[:-1] if suffix else number
    return f"{digits[:-1]}.{digits[-1]}{suffix}" + ("" if kind == "real" else "+PTX")


def test_the_two_default_spellings_name_the_same_sass_only_build():
    cmake = check_arch_list(DEFAULT_ARCH_LIST)
    assert [cmake_to_torch(e) for e in build_config.check_cuda_architectures(DEFAULT_CUDA_ARCHITECTURES)] == cmake
    assert all(e.endswith("-real") for e in DEFAULT_CUDA_ARCHITECTURES.split(";"))  # SASS only, like the torch list
    assert gemm_archive.ARCHITECTURES == DEFAULT_CUDA_ARCHITECTURES


@pytest.mark.parametrize("value", [DEFAULT_CUDA_ARCHITECTURES, "90a-real", "80-real;86-real;90a-real", "90a",
                                   "90a-virtual", DEFAULT_CUDA_ARCHITECTURES + ";100", "100a-real", "120-real"])
def test_cmake_lists_that_build_working_kernels(value):
    assert build_config.check_cuda_architectures(value, "X") == value.split(";")
    # The same rule as the TORCH_CUDA_ARCH_LIST check, entry by entry.
    check_arch_list(";".join(cmake_to_torch(e) for e in value.split(";")))


@pytest.mark.parametrize("value,names", [
    ("90a-real;90-real", ["X=", "'90-real'", "use 90a-real"]),
    ("90", ["'90'", "90a-real"]),
    ("90-virtual", ["'90-virtual'"]),
    ("80;90a-real", ["'80' embeds sm_80 PTX", "use 80-real"]),  # plain 80 is SASS + PTX
    ("80-virtual", ["'80-virtual' embeds sm_80 PTX"]),
    ("86a;90a-real", ["'86a'", "use 86a-real"]),
    ("native", ["'native'", DEFAULT_CUDA_ARCHITECTURES]),
    ("all-major", ["'all-major'"]),
    ("sm_90a", ["'sm_90a'"]),
    ("", ["names no architecture"]),
])
def test_cmake_lists_that_compute_nothing_are_refused(value, names):
    with pytest.raises(ArchListError) as e:
        build_config.check_cuda_architectures(value, "X")
    for name in names:
        assert name in str(e.value), str(e.value)
    # the same verdict in the TORCH_CUDA_ARCH_LIST spelling, where one exists
    if value and all(e[:1].isdigit() for e in value.split(";")):
        with pytest.raises(ArchListError):
            check_arch_list(";".join(cmake_to_torch(e) for e in value.split(";")))


def build_config_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_config.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_build_config_cli_feeds_cmake_the_defaults_and_the_verdicts():
    r = build_config_cli("--cmake")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f'set(S_STE_DEFAULT_CUDA_ARCHITECTURES "{DEFAULT_CUDA_ARCHITECTURES}")',
                                     f'set(S_STE_DEFAULT_TORCH_CUDA_ARCH_LIST "{DEFAULT_ARCH_LIST}")',
                                     f"set(S_STE_GEMM_CXX11_ABI {build_config.GEMM_CXX11_ABI})"]
    assert build_config_cli("--check-cmake", DEFAULT_CUDA_ARCHITECTURES).returncode == 0
    r = build_config_cli("--check-cmake", "80-virtual", "--name", "S_STE_GEMM_ARCHITECTURES")
    assert r.returncode == 1 and "S_STE_GEMM_ARCHITECTURES='80-virtual'" in r.stderr, r.stderr
    r = build_config_cli("--check-torch", "8.0+PTX")
    assert r.returncode == 1 and "'8.0+PTX' embeds sm_80 PTX" in r.stderr, r.stderr


def configure(source, build, *defines, timeout=120):
    return subprocess.run(["cmake", "-S", str(source), "-B", str(build), *defines, f"-DPython3_EXECUTABLE={sys.executable}"],
                          capture_output=True, text=True, timeout=timeout)


needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")


@needs_cmake
def test_cmake_arch_rules_refuse_at_configure_time(tmp_path):
    """cmake/arch_rules.cmake itself, in a project with no language (nothing is compiled): the defaults come
    from build_config.py, an allowed list passes, a refused one stops the configure with the refusal."""
    (tmp_path / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.24)
project(arch_rules_probe LANGUAGES NONE)
include({ROOT}/cmake/arch_rules.cmake)
include({ROOT}/cmake/arch_rules.cmake)  # include_guard: twice is harmless (both CMakeLists include it)
if(NOT DEFINED ARCHS)
  set(ARCHS "${{S_STE_DEFAULT_CUDA_ARCHITECTURES}}")
endif()
s_ste_check_cuda_architectures(ARCHS)
if(DEFINED TORCH_LIST)
  s_ste_check_torch_arch_list("${{TORCH_LIST}}")
endif()
message(STATUS "probe: ${{S_STE_DEFAULT_CUDA_ARCHITECTURES}} | ${{S_STE_DEFAULT_TORCH_CUDA_ARCH_LIST}} | ${{S_STE_GEMM_CXX11_ABI}}")
""")
    ok = configure(tmp_path, tmp_path / "ok")
    assert ok.returncode == 0, ok.stderr
    assert f"probe: {DEFAULT_CUDA_ARCHITECTURES} | {DEFAULT_ARCH_LIST} | {build_config.GEMM_CXX11_ABI}" in ok.stdout
    bad = configure(tmp_path, tmp_path / "bad", "-DARCHS=80;90a-real")
    assert bad.returncode != 0 and "ARCHS='80;90a-real': '80' embeds sm_80 PTX" in " ".join(bad.stderr.split()), bad.stderr
    bad = configure(tmp_path, tmp_path / "torch", "-DTORCH_LIST=9.0")
    assert bad.returncode != 0 and "builds Hopper as '9.0'; use 9.0a" in " ".join(bad.stderr.split()), bad.stderr


def test_both_cmake_lists_check_their_architectures_with_the_shared_rules():
    for path, variable in (("CMakeLists.txt", "CMAKE_CUDA_ARCHITECTURES"),
                           ("csrc/gemm/CMakeLists.txt", "S_STE_GEMM_ARCHITECTURES")):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            text = f.read()
        assert "cmake/arch_rules.cmake)" in text, path
        assert '"${S_STE_DEFAULT_CUDA_ARCHITECTURES}"' in text, path  # the default from build_config.py
        assert text.index(f"s_ste_check_cuda_architectures({variable})") > text.index("S_STE_DEFAULT_CUDA_ARCHITECTURES")
        assert "FATAL_ERROR" not in text and "-real" not in text, f"{path} writes an arch rule or list of its own"


@needs_cmake
@pytest.mark.skipif(find_cuda_home() is None, reason="CMakeLists.txt checks the architectures only when it builds CUDA")
def test_top_level_cmake_refuses_plain_sm90_before_compiling_anything(tmp_path):
    r = configure(ROOT, tmp_path / "b", "-DS_STE_BUILD_MODULE=OFF", "-DCMAKE_CUDA_ARCHITECTURES=80-real;90-real")
    assert r.returncode != 0, r.stdout[-2000:]
    assert "CMAKE_CUDA_ARCHITECTURES='80-real;90-real' builds Hopper as '90-real': use 90a-real" in " ".join(
        r.stderr.split()), r.stderr[-2000:]


def test_archive_inputs_are_the_gemm_sources_and_the_headers_they_include():
    inputs = gemm_archive.gemm_inputs(ROOT)
    for path in ("csrc/gemm/sm90_sparse_gemm.cuh", "csrc/gemm/sparse_gemm.h", "csrc/gemm/select.cpp",
                 "csrc/gemm/CMakeLists.txt", "csrc/include/s_ste/layout_sm90.cuh", "csrc/include/s_ste/hd.cuh",
                 "cmake/arch_rules.cmake"):  # the CMake file csrc/gemm/CMakeLists.txt includes
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


@pytest.mark.parametrize("changed", ["csrc/include/s_ste/layout_sm90.cuh", "cmake/arch_rules.cmake"])
def test_a_stale_archive_is_never_linked(tmp_path, changed):
    root, archive = fake_checkout(tmp_path)
    with open(os.path.join(root, changed), "a") as f:
        f.write("# changed\n")
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
