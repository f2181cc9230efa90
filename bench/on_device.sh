#!/usr/bin/env bash
# The device suite, for a machine with a GPU and no network, in parts that each fit one short
# call of the device tool (bench/README.md gives the exact calls and their time budget):
#   build     always first: the carried nvidia-cutlass wheel, then the extension for the GPU
#             found here, linking the carried CUTLASS GEMM archive (build/gemm-archive/) so
#             only the binding files compile; without a fitting archive it compiles the GEMMs
#             too (minutes: the archive is the point). Built out of tree (/tmp/s-ste-build)
#             and reused by the later calls on a warm machine.
#   tests     CTest's GPU checks of the kernel-image rule, the pytest files that touch CUDA,
#             compute-sanitizer memcheck + racecheck on a subset of tests/test_cuda.py
#   bench     every bench/bench_*.py, then ncu's DRAM throughput of the fused kernels
#   pretrain  a shortened pre-training comparison (examples/pretrain_gpt.py)
# PARTS picks them (default "tests"). Every step runs under its own time limit (seconds; the
# sum per part is the call's budget); a step cut by its limit shows rc=124 in summary.txt.
# Logs and results go to $1, else $OUT, else bench/device-out.
#
#   PARTS=tests|bench|pretrain bash bench/on_device.sh [OUT_DIR]   (carry .whl and build/gemm-archive)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench/device-out}}
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
note() { echo "$*" | tee -a "$summary"; }
run_step() {  # name, seconds, log file, command...
  local name=$1 limit=$2 log=$3; shift 3
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  note "$(printf '%-30s rc=%-3s %4ss  (log: %s)' "$name" "$rc" $((SECONDS - t0)) "$(basename "$log")")"
  return $rc
}
parts=${PARTS:-tests}
has() { case " $parts " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

note "s-ste device suite [$parts], $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | tee -a "$summary"

# ---- build ---------------------------------------------------------------------------------
# CUTLASS headers from the carried wheel (no network here): the C++ tests need them, and the
# extension too when it has to compile the GEMMs itself.
wheel=$(ls .whl/nvidia_cutlass-4.2.0.0-*.whl 2>/dev/null | head -1)
if ! $PY -c "import cutlass_library" 2>/dev/null; then
  if [ -n "$wheel" ]; then
    $PY -m pip install -q --no-deps --no-index --target /tmp/s-ste-site "$wheel" >>"$out/build.log" 2>&1
    export PYTHONPATH="/tmp/s-ste-site${PYTHONPATH:+:$PYTHONPATH}"
  else
    note "no nvidia-cutlass wheel in .whl/: the GEMM archive must fit, and the C++ tests are skipped"
  fi
fi

# Build for this GPU only (e.g. "9.0a" on an H200), with every core.
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' ')
case "$cap" in 9.0) arch="9.0a" ;; *) arch="$cap" ;; esac
export TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=$(nproc)
export CUDA_HOME=$($PY tools/locate_cuda.py)
archive=build/gemm-archive/libs_ste_gemm.a
# The module is built out of tree, under a stamp of its sources' content: a later call on the
# warm machine reuses it whatever the mtimes of the re-sent tree (no rebuild in calls 2, 3).
stamp=$( (echo "$arch"; $PY -V; cat setup.py tools/*.py; cat build/gemm-archive/*.json 2>/dev/null;
          find csrc -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-16)
lib=/tmp/s-ste-build/$stamp
if ls "$lib"/s_ste_cuda*.so >/dev/null 2>&1; then
  note "build: reusing $lib (the sources of an earlier call)"
else
  built=0
  if [ -f "$archive" ]; then
    # setup.py refuses an archive built from other GEMM sources than this checkout's.
    S_STE_GEMM_ARCHIVE="$PWD/$archive" run_step "build bindings (sm $arch, archive)" 150 "$out/build.log" \
      $PY setup.py build_ext -b "$lib" -t /tmp/s-ste-build/tmp \
      && built=1
  fi
  if [ "$built" = 0 ]; then
    rm -f "$lib"/s_ste_cuda*.so  # never reuse a module a cut-off link left behind
    note "no fitting GEMM archive (see build.log): compiling the CUTLASS GEMMs here too"
    S_STE_GEMM_ARCHIVE=0 run_step "build all (sm $arch)" 420 "$out/build.log" \
      $PY setup.py build_ext -b "$lib" -t /tmp/s-ste-build/tmp || { rm -f "$lib"/s_ste_cuda*.so; note "build failed"; exit 1; }
  fi
fi
export PYTHONPATH="$lib:$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import s_ste, s_ste_cuda, torch; assert s_ste.built_with_cuda() and torch.cuda.is_available(); print(s_ste_cuda.__file__)" \
  >>"$out/build.log" 2>&1 || { note "the extension does not import or does not see the GPU (build.log)"; exit 1; }

# ---- tests ---------------------------------------------------------------------------------
if has tests; then
  # The kernel-image rule on real images: an sm_90a kernel is accepted, one JIT-compiled
  # from compute_80 PTX is rejected (tests/cpp/test_kernel_image.cu), with select's host test.
  if $PY -c "import cutlass_library" 2>/dev/null; then
    run_step "ctest (kernel images)" 40 "$out/ctest.log" bash -c "
      cmake -S tests/cpp -B build/device-cpp -G Ninja -DCMAKE_CUDA_COMPILER=$CUDA_HOME/bin/nvcc \
        -DCMAKE_CUDA_ARCHITECTURES=90a-real -DPython3_EXECUTABLE=$(command -v $PY) >/dev/null &&
      cmake --build build/device-cpp --target test_gemm_select test_kernel_image_sm90a test_kernel_image_ptx80 &&
      ctest --test-dir build/device-cpp -R 'gemm_select|kernel_image' --output-on-failure"
  fi
  # Every test file that touches CUDA (the CPU-only files run in CI); files in parallel when
  # pytest-xdist is there (one file per worker: the distributed tests keep their ports).
  files=$(grep -l "cuda" tests/test_*.py | tr '\n' ' ')
  xdist=""
  if $PY -c "import xdist" 2>/dev/null; then xdist="-n 4 --dist loadfile"; fi
  run_step "pytest (CUDA files)" 130 "$out/pytest.log" $PY -m pytest $files -q -rs $xdist
  # The sanitizers run the CUDA tests minus the statistical and largest cases (slow under
  # instrumentation; the same kernels run on the smaller shapes). racecheck targets the
  # kernels that share memory between threads (MVUE-transpose, cast-transpose).
  sel="not unbiased and not 4096 and not 8192 and not opcheck"
  run_step "compute-sanitizer memcheck" 55 "$out/sanitizer.log" \
    compute-sanitizer --tool memcheck --error-exitcode 9 $PY -m pytest tests/test_cuda.py -q -x -k "$sel"
  run_step "compute-sanitizer racecheck" 35 "$out/sanitizer.log" \
    compute-sanitizer --tool racecheck --error-exitcode 9 $PY -m pytest tests/test_cuda.py -q -x \
    -k "$sel and not 1056 and (mvue_24_t_compress or quantize_fp8_scaled)"
fi

# ---- bench ---------------------------------------------------------------------------------
if has bench; then
  for bench in bench/bench_*.py; do
    run_step "$(basename "$bench")" 50 "$out/bench.log" $PY "$bench"
  done
  # DRAM throughput of each fused kernel as ncu sees it, appended to bench/results/prune.md.
  if command -v ncu >/dev/null; then
    run_step "ncu (fused kernels)" 30 "$out/ncu.log" bash -c "ncu --clock-control none --metrics \
gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed --csv \
$PY bench/bench_prune.py --profile > '$out/ncu_prune.csv'" &&
      run_step "ncu summary -> prune.md" 15 "$out/ncu.log" $PY bench/bench_prune.py --attach-ncu "$out/ncu_prune.csv"
  fi
fi

# ---- pretrain ------------------------------------------------------------------------------
if has pretrain; then
  # Shortened to fit its call: all five recipes, PRETRAIN_STEPS steps each (default 200 of the
  # example's 600; evaluation every 50), into bench/results/pretrain.*.
  run_step "pretrain_gpt.py" 130 "$out/pretrain.log" $PY examples/pretrain_gpt.py --steps "${PRETRAIN_STEPS:-200}" \
    --eval-every 50
fi
mkdir -p bench/results
tar -czf "$out/results.tar.gz" bench/results
note "results: bench/results/ packed in results.tar.gz"
