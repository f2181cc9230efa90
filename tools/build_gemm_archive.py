"""Build the CUTLASS sparse GEMMs (csrc/gemm) into one static archive, libs_ste_gemm.a, with its manifest.

    python tools/build_gemm_archive.py [--out build/gemm-archive] [--jobs 2] [--ccache]

Needs nvcc, CMake, ninja and the nvidia-cutlass headers; no torch and no GPU. The archive
holds sm_80 and sm_90a SASS and -fPIC host code, so setup.py links it into s_ste_cuda with
`S_STE_GEMM_ARCHIVE=<out>/libs_ste_gemm.a` (or finds it in build/gemm-archive/) and compiles
only the binding files. Fails if ptxas reports C7510 (serialized wgmma: a slow kernel).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gemm_archive  # noqa: E402
from locate_cuda import find_cuda_home  # noqa: E402
from locate_cutlass import CUTLASS_PIN  # noqa: E402


def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


def cutlass_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("nvidia-cutlass")
    except metadata.PackageNotFoundError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, gemm_archive.DEFAULT_DIR), help="folder of the archive and manifest")
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build", "gemm-cmake"),
                        help="CMake build folder (default build/gemm-cmake, kept out of OUT so OUT carries light)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MAX_JOBS", "2")),
                        help="parallel compiles (default $MAX_JOBS or 2; an SM90 unit takes ~5 GB of RAM)")
    parser.add_argument("--ccache", action="store_true", help="compile the .cu files through ccache (CI)")
    args = parser.parse_args()

    cuda_home = find_cuda_home()
    if not cuda_home:
        print("build_gemm_archive: no CUDA toolkit (nvcc) found", file=sys.stderr)
        return 1
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    out = os.path.abspath(args.out)
    build = os.path.abspath(args.build_dir)
    os.makedirs(out, exist_ok=True)
    before = gemm_archive.fingerprint(ROOT)

    configure = ["cmake", "-S", os.path.join(ROOT, "csrc", "gemm"), "-B", build, "-G", "Ninja",
                 f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DS_STE_GEMM_ARCHITECTURES={gemm_archive.ARCHITECTURES}",
                 f"-DPython3_EXECUTABLE={sys.executable}"]
    if args.ccache:
        # nvcc only: the two small .cpp files go through whatever compiler is on PATH (CI puts
        # ccache's masquerading g++ first; a second ccache on top of it would recurse).
        configure += ["-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"]
    t0 = time.monotonic()
    subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
    log_path = os.path.join(out, "build.log")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(["cmake", "--build", build, "--target", "s_ste_gemm", "-j", str(args.jobs)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    seconds = time.monotonic() - t0
    if rc != 0:
        print(f"build_gemm_archive: the build failed (log: {log_path})", file=sys.stderr)
        return rc
    with open(log_path, encoding="utf-8") as f:
        if "C7510" in f.read():
            print("build_gemm_archive: ptxas reports C7510 (wgmma serialized): a slow kernel, treated as a bug",
                  file=sys.stderr)
            return 1
    if gemm_archive.fingerprint(ROOT) != before:
        print("build_gemm_archive: the GEMM sources changed during the build; run it again", file=sys.stderr)
        return 1

    archive = os.path.join(out, gemm_archive.ARCHIVE_NAME)
    shutil.copyfile(os.path.join(build, gemm_archive.ARCHIVE_NAME), archive)
    manifest = {
        "fingerprint": before,
        "architectures": gemm_archive.ARCHITECTURES,
        "cuda": nvcc_version(nvcc),
        "cutlass": cutlass_version(),
        "cutlass_pin": CUTLASS_PIN,
        "cxx11_abi": gemm_archive.CXX11_ABI,
        "inputs": gemm_archive.gemm_inputs(ROOT),
        "bytes": os.path.getsize(archive),
        "build_seconds": round(seconds, 1),
        "built": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    with open(os.path.join(out, gemm_archive.MANIFEST_NAME), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"build_gemm_archive: {archive} ({manifest['bytes'] / 2**20:.1f} MiB) in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
