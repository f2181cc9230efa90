#!/usr/bin/env bash
# The whole device suite, for a machine with a GPU and no network (see bench/README.md):
# install the carried nvidia-cutlass wheel, build the extension for the GPU found here, run
# every pytest test on CUDA, compute-sanitizer (memcheck, racecheck) on the CUDA tests, and
# every bench/bench_*.py. Logs and results go to $1, else $OUT, else bench/device-out.
# Each step has its own time limit so the whole run ends inside one 10-minute call.
# PARTS picks what runs after the build (default "tests bench"): tests (pytest, the two
# sanitizers), bench (every bench/bench_*.py, then ncu on the fused kernels), pretrain (the
# pre-training comparison, examples/pretrain_gpt.py; about as long as a call allows, so it
# goes in a call of its own).
#
#   [PARTS="tests bench"] bench/on_device.sh [OUT_DIR]   (run from anywhere; carry .whl/)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench/device-out}}
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
export PYTHONUNBUFFERED=1
note() { echo "$*" | tee -a "$summary"; }
run_step() {  # name, seconds, log file, command...
  local name=$1 limit=$2 log=$3; shift 3
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  note "$(printf '%-28s rc=%-3s %4ss  (log: %s)' "$name" "$rc" $((SECONDS - t0)) "$(basename "$log")")"
  return $rc
}

note "s-ste device suite, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | tee -a "$summary"

# CUTLASS headers from the carried wheel (no network here); only the headers are needed.
wheel=$(ls .whl/nvidia_cutlass-4.2.0.0-*.whl 2>/dev/null | head -1)
if ! python -c "import cutlass_library" 2>/dev/null; then
  if [ -z "$wheel" ]; then note "no nvidia-cutlass wheel in .whl/ (carry it: see bench/README.md)"; exit 1; fi
  python -m pip install -q --no-deps --no-index --target /tmp/s-ste-site "$wheel" >>"$out/build.log" 2>&1
  export PYTHONPATH="/tmp/s-ste-site${PYTHONPATH:+:$PYTHONPATH}"
fi

# Build for this GPU only (e.g. "9.0a" on H100), with every core.
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' ')
case "$cap" in 9.0) arch="9.0a" ;; *) arch="$cap" ;; esac
export TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=$(nproc)
export CUDA_HOME=$(python third_party/locate_cuda.py)
run_step "build (sm $arch)" 240 "$out/build.log" python setup.py build_ext --inplace || { note "build failed"; exit 1; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import s_ste, torch; assert s_ste.built_with_cuda() and torch.cuda.is_available()" >>"$out/build.log" 2>&1 \
  || { note "the extension does not see the GPU"; exit 1; }

parts=${PARTS:-tests bench}
has() { case " $parts " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if has tests; then
  run_step "pytest (all, on CUDA)" 150 "$out/pytest.log" python -m pytest tests -q -rs
  # The sanitizers run the CUDA tests minus the statistical and largest cases (slow under
  # instrumentation; the same kernels run on the smaller shapes). racecheck targets the
  # kernels that share memory between threads (MVUE-transpose, cast-transpose).
  sel="not unbiased and not 4096 and not 8192 and not opcheck"
  run_step "compute-sanitizer memcheck" 100 "$out/sanitizer.log" \
    compute-sanitizer --tool memcheck --error-exitcode 9 python -m pytest tests/test_cuda.py -q -k "$sel"
  run_step "compute-sanitizer racecheck" 90 "$out/sanitizer.log" \
    compute-sanitizer --tool racecheck --error-exitcode 9 python -m pytest tests/test_cuda.py -q \
    -k "$sel and not 1056 and (mvue_24_t_compress or quantize_fp8_scaled)"
fi
if has bench; then
  for bench in bench/bench_*.py; do
    run_step "$(basename "$bench")" 120 "$out/bench.log" python "$bench"
  done
  # DRAM throughput of each fused kernel as ncu sees it, appended to bench/results/prune.md.
  if command -v ncu >/dev/null; then
    run_step "ncu (fused kernels)" 90 "$out/ncu.log" bash -c "ncu --clock-control none --metrics \
gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed --csv \
python bench/bench_prune.py --profile > '$out/ncu_prune.csv'" &&
      run_step "ncu summary -> prune.md" 30 "$out/ncu.log" python bench/bench_prune.py --attach-ncu "$out/ncu_prune.csv"
  fi
fi
if has pretrain; then
  run_step "pretrain_gpt.py" 420 "$out/pretrain.log" python examples/pretrain_gpt.py
fi
mkdir -p bench/results
tar -czf "$out/results.tar.gz" bench/results
note "results: bench/results/ packed in results.tar.gz"
