#!/usr/bin/env bash
# The device suite, for a machine with a GPU and no network, in parts that each fit one short
# call of the device tool (bench/README.md gives the exact calls and their time budget):
#   build     always first: the carried nvidia-cutlass wheel, then the extension for the GPU
#             found here, linking the carried CUTLASS GEMM archive (build/gemm-archive/) so
#             only the binding files compile; without a fitting archive it compiles the GEMMs
#             too (minutes: the archive is the point). Built out of tree (S_STE_BUILD_ROOT,
#             default /tmp/s-ste-build) and reused by the later calls on a warm machine.
#   tests     CTest's GPU checks of the kernel-image rule, the tests marked `cuda` (pytest -m cuda:
#             the CPU tests run in CI), compute-sanitizer memcheck + racecheck on a subset of
#             tests/test_cuda.py
#   bench     bench/tune_gemm.py (the GEMM tuning table of this GPU, which the benches after it use),
#             every bench/bench_*.py, then ncu's DRAM throughput of the fused kernels
#   pretrain  a shortened pre-training comparison (examples/pretrain_gpt.py)
# PARTS picks them (default "tests"). Every step runs under its own time limit (the LIMIT_*
# table below; the sum per part is the call's budget); a step cut by its limit shows rc=124 in
# summary.txt. Logs and results go to $1, else $OUT, else bench/device-out.
#
#   PARTS=tests|bench|pretrain bash bench/on_device.sh [OUT_DIR]   (carry .whl and build/gemm-archive)
#   bash bench/on_device.sh --plan     the three calls: steps, limits, timeout_s, total (no GPU needed)
#
# S_STE_REHEARSAL=1 runs the same steps on a machine without a GPU (bench/rehearse_device.sh):
# the build and ctest's build as here, the GPU tests collected and skipped, the sanitizer steps
# reduced to collecting their selection, the benches and the pre-training as dry/tiny runs;
# S_STE_LIMIT_SCALE=N gives every step N times its device limit there (fewer, slower cores).
# NVCC_LOCK=<file> runs the steps that compile CUDA holding `flock <file>` (a shared build machine;
# the wait is noted, not counted against the step's limit).
set -uo pipefail
cd "$(dirname "$0")/.."

# ---- the budget, in one place -------------------------------------------------------------
# Step limits (seconds; an environment variable of the same name overrides one). A first device
# run records the real times in summary.txt: correct the limits here from it, then the table in
# bench/README.md (tests/test_device_plan.py checks that the two agree and that the calls fit).
: "${LIMIT_BUILD:=150}"           # bindings against the carried archive (the first call; later calls reuse it)
: "${LIMIT_BUILD_ALL:=420}"       # no fitting archive: the CUTLASS GEMMs too (does not fit a call with tests)
: "${LIMIT_CTEST:=30}"            # kernel-image rule on real images
: "${LIMIT_PYTEST:=120}"          # pytest -m cuda
: "${LIMIT_MEMCHECK:=45}"
: "${LIMIT_RACECHECK:=25}"
: "${LIMIT_TUNE_GEMM:=100}"       # bench/tune_gemm.py with TUNE_BUDGET_S of GEMM sweeping, plus its set-up
: "${TUNE_BUDGET_S:=80}"
: "${LIMIT_BENCH_GEMM:=110}"      # with BENCH_ARGS_BENCH_GEMM's shorter cuSPARSELt sweeps (bench/README.md)
: "${LIMIT_BENCH_LAYER:=70}"
: "${LIMIT_BENCH_PRUNE:=40}"
: "${LIMIT_BENCH_OTHER:=50}"      # a bench/bench_*.py without a limit of its own
: "${LIMIT_NCU:=20}"
: "${LIMIT_NCU_SUMMARY:=10}"
: "${LIMIT_PRETRAIN:=70}"         # PRETRAIN_STEPS steps of each recipe
: "${PRETRAIN_STEPS:=100}"
# Arguments of a bench (BENCH_ARGS_<NAME>, as the limits): what makes it fit its limit.
: "${BENCH_ARGS_BENCH_GEMM:=--sweep-budget-s 1.5}"
# The device tool's timeout_s per call (PARTS value): its steps' limits, the build in the first,
# plus the un-timed work around them (wheel install, import check, packing the results).
: "${CALL_TIMEOUT_TESTS:=380}"
: "${CALL_TIMEOUT_BENCH:=360}"
: "${CALL_TIMEOUT_PRETRAIN:=80}"
: "${MACHINE_START:=80}"          # seconds a cold machine takes to start (counted against the lease)
LEASE=900                         # device seconds per session (/work/.library/device/README.md)

bench_limit() {  # bench/bench_gemm.py -> $LIMIT_BENCH_GEMM
  local var
  var=LIMIT_$(basename "$1" .py | tr '[:lower:]' '[:upper:]')
  echo "${!var:-$LIMIT_BENCH_OTHER}"
}

bench_args() {  # bench/bench_gemm.py -> $BENCH_ARGS_BENCH_GEMM (empty for a bench without any)
  local var
  var=BENCH_ARGS_$(basename "$1" .py | tr '[:lower:]' '[:upper:]')
  echo "${!var:-}"
}

if [ "${1:-}" = "--plan" ]; then
  benches="tune_gemm $LIMIT_TUNE_GEMM, "; bench_sum=$LIMIT_TUNE_GEMM
  for b in bench/bench_*.py; do
    benches+="$(basename "$b" .py) $(bench_limit "$b"), "
    bench_sum=$((bench_sum + $(bench_limit "$b")))
  done
  t=$((LIMIT_BUILD + LIMIT_CTEST + LIMIT_PYTEST + LIMIT_MEMCHECK + LIMIT_RACECHECK))
  b=$((bench_sum + LIMIT_NCU + LIMIT_NCU_SUMMARY))
  p=$LIMIT_PRETRAIN
  printf '%-9s %-6s %-9s %s\n' call steps timeout_s "step limits (s)"
  printf '%-9s %-6s %-9s %s\n' tests "$t" "$CALL_TIMEOUT_TESTS" \
    "build $LIMIT_BUILD, ctest $LIMIT_CTEST, pytest -m cuda $LIMIT_PYTEST, memcheck $LIMIT_MEMCHECK, racecheck $LIMIT_RACECHECK"
  printf '%-9s %-6s %-9s %s\n' bench "$b" "$CALL_TIMEOUT_BENCH" "${benches}ncu $LIMIT_NCU + $LIMIT_NCU_SUMMARY"
  printf '%-9s %-6s %-9s %s\n' pretrain "$p" "$CALL_TIMEOUT_PRETRAIN" "pretrain_gpt.py $LIMIT_PRETRAIN"
  total=$((CALL_TIMEOUT_TESTS + CALL_TIMEOUT_BENCH + CALL_TIMEOUT_PRETRAIN))
  echo "total: $total s of call limits + $MACHINE_START s machine start = $((total + MACHINE_START)) s of $LEASE"
  ok=1
  [ "$t" -le "$CALL_TIMEOUT_TESTS" ] && [ "$b" -le "$CALL_TIMEOUT_BENCH" ] && [ "$p" -le "$CALL_TIMEOUT_PRETRAIN" ] || ok=0
  for c in "$CALL_TIMEOUT_TESTS" "$CALL_TIMEOUT_BENCH" "$CALL_TIMEOUT_PRETRAIN"; do [ "$c" -le 600 ] || ok=0; done
  [ $((total + MACHINE_START)) -le "$LEASE" ] || ok=0
  if [ "$ok" = 1 ]; then echo "fits: every call's steps within its timeout_s, each call <= 600 s, all within the lease"
  else echo "DOES NOT FIT"; exit 1; fi
  exit 0
fi

out=${1:-${OUT:-bench/device-out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
summary="$out/summary.txt"
: >"$summary"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
rehearsal=${S_STE_REHEARSAL:-0}
note() { echo "$*" | tee -a "$summary"; }
cpu_mark() {  # $cpu: CPU seconds (user + sys) of every finished child so far (bash's `times`, 2nd line)
  times >"$out/.times"
  cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.0f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' \
    "$out/.times")
}
run_step() {  # name, seconds (the device's limit; S_STE_LIMIT_SCALE stretches it on a slower machine), log, command...
  local name=$1 limit=$2 log=$3; shift 3
  local t0=$SECONDS c0 rc
  cpu_mark; c0=$cpu
  timeout --kill-after=10 $((limit * ${S_STE_LIMIT_SCALE:-1})) "$@" >>"$log" 2>&1
  rc=$?
  cpu_mark
  note "$(printf '%-36s rc=%-3s %4ss of %4ss  cpu %5ss  (log: %s)' "$name" "$rc" $((SECONDS - t0)) "$limit" \
    $((cpu - c0)) "$(basename "$log")")"
  return $rc
}
run_locked_step() {  # run_step holding $NVCC_LOCK when it is set; the wait for the lock is not part of the limit
  [ -n "${NVCC_LOCK:-}" ] || { run_step "$@"; return; }
  local w0=$SECONDS rc
  exec 9>>"$NVCC_LOCK"
  flock 9
  if [ $((SECONDS - w0)) -gt 0 ]; then note "  (waited $((SECONDS - w0)) s for $NVCC_LOCK)"; fi
  run_step "$@"
  rc=$?
  flock -u 9
  exec 9>&-
  return $rc
}
parts=${PARTS:-tests}
has() { case " $parts " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

note "s-ste device suite [$parts], $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ "$rehearsal" = 1 ]; then
  note "REHEARSAL without a GPU: $($PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__)')"
else
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | tee -a "$summary"
fi

# ---- build ---------------------------------------------------------------------------------
# CUTLASS headers from the carried wheel (no network here): the C++ tests need them, and the
# extension too when it has to compile the GEMMs itself.
wheel=$(ls .whl/nvidia_cutlass-4.2.0.0-*.whl 2>/dev/null | head -1)
if ! $PY -c "import cutlass_library" 2>/dev/null; then
  if [ -n "$wheel" ]; then
    site=${S_STE_SITE:-/tmp/s-ste-site}
    $PY -m pip install -q --no-deps --no-index --target "$site" "$wheel" >>"$out/build.log" 2>&1
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  else
    note "no nvidia-cutlass wheel in .whl/: the GEMM archive must fit, and the C++ tests are skipped"
  fi
fi

# Build for this GPU only (e.g. "9.0a" on an H200), with every core; a rehearsal builds for
# DEVICE_ARCH (default 9.0a: the lent machines are Hopper).
if [ "$rehearsal" = 1 ]; then
  cap=${DEVICE_ARCH:-9.0}
else
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' ')
fi
case "$cap" in 9.0) arch="9.0a" ;; *) arch="$cap" ;; esac
export TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=${MAX_JOBS:-$(nproc)}
export CUDA_HOME=$($PY tools/locate_cuda.py)
archive=build/gemm-archive/libs_ste_gemm.a
# The module is built out of tree, under a stamp of its sources' content: a later call on the
# warm machine reuses it whatever the mtimes of the re-sent tree (no rebuild in calls 2, 3).
stamp=$( (echo "$arch"; $PY -V; $PY -c "import torch; print(torch.__version__)"; cat setup.py tools/*.py;
          cat build/gemm-archive/*.json 2>/dev/null; find csrc -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-16)
build_root=${S_STE_BUILD_ROOT:-/tmp/s-ste-build}
lib=$build_root/$stamp
if ls "$lib"/s_ste_cuda*.so >/dev/null 2>&1; then
  note "build: reusing $lib (the sources of an earlier call)"
else
  built=0
  if [ -f "$archive" ]; then
    # setup.py refuses an archive built from other GEMM sources than this checkout's.
    S_STE_GEMM_ARCHIVE="$PWD/$archive" run_locked_step "build bindings (sm $arch, archive)" "$LIMIT_BUILD" "$out/build.log" \
      $PY setup.py build_ext -b "$lib" -t "$build_root/tmp-$stamp" \
      && built=1
  fi
  if [ "$built" = 0 ]; then
    rm -f "$lib"/s_ste_cuda*.so  # never reuse a module a cut-off link left behind
    note "no fitting GEMM archive (see build.log): compiling the CUTLASS GEMMs here too"
    S_STE_GEMM_ARCHIVE=0 run_locked_step "build all (sm $arch)" "$LIMIT_BUILD_ALL" "$out/build.log" \
      $PY setup.py build_ext -b "$lib" -t "$build_root/tmp-$stamp" \
      || { rm -f "$lib"/s_ste_cuda*.so; note "build failed"; exit 1; }
  fi
fi
export PYTHONPATH="$lib:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The module must be the out-of-tree one, built with its CUDA kernels and the archive's GEMMs.
$PY - "$lib" "$rehearsal" >>"$out/build.log" 2>&1 <<'PY' || { note "the extension does not import or does not see the GPU (build.log)"; exit 1; }
import os, sys
import torch, s_ste, s_ste_cuda
lib, rehearsal = sys.argv[1], sys.argv[2] == "1"
assert os.path.dirname(os.path.abspath(s_ste_cuda.__file__)) == lib, (s_ste_cuda.__file__, lib)
assert s_ste.built_with_cuda(), "built without its CUDA kernels"
assert rehearsal or torch.cuda.is_available(), "torch sees no GPU"
names = [k[0] for k in s_ste_cuda.gemm_kernels()]
print(s_ste_cuda.__file__, "torch", torch.__version__, len(names), "GEMMs:", ", ".join(names))
PY
note "module: $(tail -1 "$out/build.log" | cut -c1-300)"

# ---- tests ---------------------------------------------------------------------------------
if has tests; then
  # The kernel-image rule on real images: an sm_90a kernel is accepted, one JIT-compiled
  # from compute_80 PTX is rejected (tests/cpp/test_kernel_image.cu), with select's host test.
  # (Without a GPU the two image tests exit 77: skipped.)
  if $PY -c "import cutlass_library" 2>/dev/null; then
    run_locked_step "ctest (kernel images)" "$LIMIT_CTEST" "$out/ctest.log" bash -c "
      cmake -S tests/cpp -B build/device-cpp -G Ninja -DCMAKE_CUDA_COMPILER=$CUDA_HOME/bin/nvcc \
        -DCMAKE_CUDA_ARCHITECTURES=90a-real -DPython3_EXECUTABLE=$(command -v $PY) >/dev/null &&
      cmake --build build/device-cpp --target test_gemm_select test_kernel_image_sm90a test_kernel_image_ptx80 &&
      ctest --test-dir build/device-cpp -R 'gemm_select|kernel_image' --output-on-failure"
  fi
  # The tests that need a GPU, by their marker (tests/conftest.py: requires_cuda); the CPU tests
  # run in CI. Files in parallel when pytest-xdist is there (one file per worker).
  xdist=""
  if $PY -c "import xdist" 2>/dev/null; then xdist="-n 4 --dist loadfile"; fi
  run_step "pytest -m cuda" "$LIMIT_PYTEST" "$out/pytest.log" $PY -m pytest tests -m cuda -q -rs $xdist
  # The sanitizers run the CUDA tests minus the statistical and largest cases (slow under
  # instrumentation; the same kernels run on the smaller shapes). racecheck targets the
  # kernels that share memory between threads (MVUE-transpose, cast-transpose).
  sel="not unbiased and not 4096 and not 8192 and not opcheck"
  race_sel="$sel and not 1056 and (mvue_24_t_compress or quantize_fp8_scaled)"
  if [ "$rehearsal" = 1 ]; then
    # No GPU to instrument: check that each selection still names tests (a renamed test would
    # otherwise leave a sanitizer step with nothing to run).
    # (pytest exits 5 when a selection collects nothing.)
    run_step "memcheck selection (collect only)" "$LIMIT_MEMCHECK" "$out/sanitizer.log" \
      $PY -m pytest tests/test_cuda.py -m cuda -q --co -k "$sel"
    run_step "racecheck selection (collect only)" "$LIMIT_RACECHECK" "$out/sanitizer.log" \
      $PY -m pytest tests/test_cuda.py -m cuda -q --co -k "$race_sel"
  else
    run_step "compute-sanitizer memcheck" "$LIMIT_MEMCHECK" "$out/sanitizer.log" \
      compute-sanitizer --tool memcheck --error-exitcode 9 $PY -m pytest tests/test_cuda.py -m cuda -q -x -k "$sel"
    run_step "compute-sanitizer racecheck" "$LIMIT_RACECHECK" "$out/sanitizer.log" \
      compute-sanitizer --tool racecheck --error-exitcode 9 $PY -m pytest tests/test_cuda.py -m cuda -q -x -k "$race_sel"
  fi
fi

# ---- bench ---------------------------------------------------------------------------------
if has bench; then
  dry=""
  if [ "$rehearsal" = 1 ]; then dry="--dry-run"; fi
  # First the GEMM tuning table of this GPU (s_ste/gemm_tables/<device>.txt, copied into
  # bench/results/gemm_tables/): every bench after it runs the kernels the table picks.
  run_step "tune_gemm.py $dry" "$LIMIT_TUNE_GEMM" "$out/bench.log" $PY bench/tune_gemm.py --budget-s "$TUNE_BUDGET_S" $dry
  for bench in bench/bench_*.py; do
    # shellcheck disable=SC2046  # (the arguments split on purpose)
    run_step "$(basename "$bench") $dry" "$(bench_limit "$bench")" "$out/bench.log" $PY "$bench" $(bench_args "$bench") $dry
  done
  # DRAM throughput of each fused kernel as ncu sees it, appended to bench/results/prune.md.
  if [ "$rehearsal" != 1 ] && command -v ncu >/dev/null; then
    run_step "ncu (fused kernels)" "$LIMIT_NCU" "$out/ncu.log" bash -c "ncu --clock-control none --metrics \
gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed --csv \
$PY bench/bench_prune.py --profile > '$out/ncu_prune.csv'" &&
      run_step "ncu summary -> prune.md" "$LIMIT_NCU_SUMMARY" "$out/ncu.log" $PY bench/bench_prune.py --attach-ncu "$out/ncu_prune.csv"
  fi
fi

# ---- pretrain ------------------------------------------------------------------------------
if has pretrain; then
  # Shortened to fit its call: all five recipes, PRETRAIN_STEPS steps each (default 100 of the
  # example's 600; evaluation every 25), into bench/results/pretrain.*. A rehearsal: --tiny.
  if [ "$rehearsal" = 1 ]; then
    run_step "pretrain_gpt.py --tiny" "$LIMIT_PRETRAIN" "$out/pretrain.log" $PY examples/pretrain_gpt.py --tiny \
      --steps 12 --eval-every 6 --results-dir "$out/pretrain"
  else
    run_step "pretrain_gpt.py" "$LIMIT_PRETRAIN" "$out/pretrain.log" $PY examples/pretrain_gpt.py \
      --steps "$PRETRAIN_STEPS" --eval-every 25
  fi
fi
mkdir -p bench/results
tar -czf "$out/results.tar.gz" bench/results
note "results: bench/results/ packed in results.tar.gz"
