#!/usr/bin/env bash
# The device plan (bench/README.md), rehearsed on this CPU machine before any device call, as the
# device would run it:
#   1. a virtual environment with the device image's torch (torch 2.11.0+cu130; Python 3.12 when
#      there is one, as on the image) and the packages the suite needs, made once (a few GB);
#   2. the carried files: the pinned nvidia-cutlass wheel in .whl/ and the GEMM archive of this
#      checkout in build/gemm-archive/ (built when the one there does not fit: ≈ 6 min of CPU);
#   3. the working tree copied as a device call copies it (tracked and untracked-not-ignored files,
#      plus the carried paths; no in-place build, no bench/results written here);
#   4. the three calls of bench/on_device.sh back to back in that copy, with S_STE_REHEARSAL=1: the
#      out-of-tree binding build (TORCH_CUDA_ARCH_LIST=9.0a, against the archive and torch 2.11), the
#      module's import and its GEMMs, ctest's build, `pytest -m cuda` (every test collected, all
#      skip here), the sanitizers' selections, the bench dry runs, the tiny pre-training; calls 2
#      and 3 must reuse call 1's module;
#   5. (here only, not on the device) the CPU suite against that module and torch 2.11: every
#      subprocess test must still see the out-of-tree module.
# Each step is timed (wall and CPU); the table at the end is what bench/README.md records.
#
#   bash bench/rehearse_device.sh [OUT_DIR]        (default /tmp/s-ste-rehearsal; rc 0 = the plan passed)
#
# Environment: VENV (default /work/venv-torch211), DEVICE_TORCH (2.11.0), NVCC_LOCK (default
# /tmp/s-ste-nvcc.lock: every nvcc step waits for it), CPU_SUITE=0 to skip step 5. Uses ccache
# when /usr/lib/ccache exists (the device has none: its compile times are bench/README.md's).
set -uo pipefail
{ # the whole script is read before it runs: editing it meanwhile cannot derail a rehearsal
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-/tmp/s-ste-rehearsal}
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
VENV=${VENV:-/work/venv-torch211}
DEVICE_TORCH=${DEVICE_TORCH:-2.11.0}
export NVCC_LOCK=${NVCC_LOCK:-/tmp/s-ste-nvcc.lock}
HOST_PY=${HOST_PYTHON:-python3}
if [ -d /usr/lib/ccache ]; then
  export CCACHE_DIR=${CCACHE_DIR:-/root/.cache/s-ste-ccache} CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-20G} CCACHE_NOHASHDIR=1
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-/work} PATH="/usr/lib/ccache:$PATH"
fi
table="$out/rehearsal.txt"
failed=0

cpu_mark() {  # $cpu: CPU seconds of every finished child so far (bash's `times`, 2nd line)
  times >"$out/.times"
  cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.0f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' \
    "$out/.times")
}
row() {  # step, rc, wall, cpu, note
  printf '| %-44s | %3s | %6s | %6s | %s |\n' "$1" "$2" "$3" "$4" "$5" >>"$table"
  [ "$2" = 0 ] || [ "$2" = "-" ] || failed=1
}
step() {  # name, log, note, command...: run it, time it, add a row
  local name=$1 log=$2 what=$3; shift 3
  local t0=$SECONDS c0 rc
  cpu_mark; c0=$cpu
  "$@" >>"$log" 2>&1
  rc=$?
  cpu_mark
  row "$name" "$rc" "$((SECONDS - t0)) s" "$((cpu - c0)) s" "$what"
  echo "$(printf '%-44s rc=%-3s %5ss  (log: %s)' "$name" "$rc" $((SECONDS - t0)) "$log")"
  return $rc
}
finish() {
  echo
  echo "Device rehearsal at $(git -C "$root" rev-parse --short=12 HEAD) ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)):"
  echo
  echo "| step | rc | wall | CPU | what |"
  echo "|---|---|---|---|---|"
  cat "$table"
  echo
  if [ "$failed" = 0 ]; then echo "REHEARSAL PASSED (logs: $out)"; else echo "REHEARSAL FAILED (logs: $out)"; fi
  exit "$failed"
}
: >"$table"

# ---- 1. the device's torch ----------------------------------------------------------------------
make_venv() {
  local py
  py=$(command -v python3.12 || command -v python3)
  "$py" -m venv "$VENV" &&
    "$VENV/bin/python" -m pip install -q --upgrade pip &&
    # What the device image holds that the suite uses (/work/.library/device/KINDS.md lists it).
    "$VENV/bin/python" -m pip install -q "torch==$DEVICE_TORCH" numpy pytest pytest-xdist hypothesis \
      "transformers==5.17.0" "safetensors==0.8.0" tqdm matplotlib setuptools wheel ninja cmake
}
if "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$DEVICE_TORCH')" 2>/dev/null; then
  row "venv (torch $DEVICE_TORCH)" - - - "present: $VENV"
else
  rm -rf "$VENV"
  step "venv (torch $DEVICE_TORCH)" "$out/venv.log" "made: $VENV" make_venv || finish
fi
device_py="$VENV/bin/python"
row "  its python, torch" - - - "$("$device_py" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)')"

# ---- 2. what the calls carry ----------------------------------------------------------------------
if ls .whl/nvidia_cutlass-4.2.0.0-*.whl >/dev/null 2>&1; then
  row "nvidia-cutlass wheel (.whl/)" - - - "present"
else
  step "nvidia-cutlass wheel (.whl/)" "$out/wheel.log" "downloaded" \
    "$HOST_PY" -m pip download --no-deps nvidia-cutlass==4.2.0.0 -d .whl || finish
fi
archive_fits() {
  "$HOST_PY" - "$root" <<'PY'
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tools"))
import gemm_archive
why = gemm_archive.why_unusable(sys.argv[1], os.path.join(sys.argv[1], gemm_archive.DEFAULT_DIR, gemm_archive.ARCHIVE_NAME))
print(why or "fits")
sys.exit(1 if why else 0)
PY
}
if archive_fits >"$out/archive.log" 2>&1; then
  row "GEMM archive (build/gemm-archive/)" - - - "fits this checkout: reused"
else
  ccache_flag=""
  if command -v ccache >/dev/null; then ccache_flag=--ccache; fi
  w0=$SECONDS
  exec 9>>"$NVCC_LOCK"
  flock 9  # held for the build; the wait is not the build's cost
  step "GEMM archive (build/gemm-archive/)" "$out/archive.log" \
    "built (tools/build_gemm_archive.py $ccache_flag) after $((SECONDS - w0)) s waiting for the nvcc lock" \
    "$HOST_PY" tools/build_gemm_archive.py $ccache_flag || finish
  flock -u 9
  exec 9>&-
fi

# ---- 3. the tree a call sends -------------------------------------------------------------------
tree="$out/tree"
copy_tree() {  # no .git: the device gets the files, not the repository
  mkdir -p "$tree" || return 1
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    if [ -e "$f" ] || [ -L "$f" ]; then cp --parents -d "$f" "$tree"/ || return 1; fi  # (deleted, not committed: skip)
  done &&
    cp -r --parents .whl build/gemm-archive "$tree"/
}
step "working tree + carry (.whl, build/gemm-archive)" "$out/copy.log" "as a device call copies it" copy_tree || finish
row "  what travels" - - - "$(du -sh --exclude=.git "$tree" | cut -f1) (a call may carry 64 MiB)"

# ---- 4. the three calls ------------------------------------------------------------------------------
# The device has 16 cores, this machine fewer: every step gets S_STE_LIMIT_SCALE times its limit
# (the table shows the device's limit beside the time it took here).
export S_STE_REHEARSAL=1 PYTHON="$device_py" PATH="$VENV/bin:$PATH" S_STE_BUILD_ROOT="$out/s-ste-build" S_STE_SITE="$out/site"
export S_STE_LIMIT_SCALE=${S_STE_LIMIT_SCALE:-8}
if command -v ccache >/dev/null; then
  PYTORCH_NVCC="ccache $("$HOST_PY" tools/locate_cuda.py)/bin/nvcc"
  export PYTORCH_NVCC
fi
unset PYTHONPATH
for part in tests bench pretrain; do
  step "call: PARTS=$part bash bench/on_device.sh" "$out/call-$part.log" "summary: call-$part/summary.txt" \
    env PARTS=$part bash "$tree/bench/on_device.sh" "$out/call-$part"
  sed -n '3,$p' "$out/call-$part/summary.txt" | grep -v "^results:" | while IFS= read -r line; do
    # "name  rc=0   12s of  150s  cpu   20s  (log: x)" -> a row of the table
    if [[ $line =~ ^(.*[^ ])\ +rc=([0-9]+)\ +([0-9]+)s\ of\ +([0-9]+)s\ +cpu\ +([0-9]+)s ]]; then
      printf '| %-44s | %3s | %6s | %6s | %s |\n' "  ${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]} s" \
        "${BASH_REMATCH[5]} s" "device limit ${BASH_REMATCH[4]} s" >>"$table"
      [ "${BASH_REMATCH[2]}" = 0 ] || echo 1 >"$out/.step-failed"
    else
      printf '| %-44s | %3s | %6s | %6s | %s |\n' "  (note)" - - - "${line:0:160}" >>"$table"
    fi
  done
done
[ -f "$out/.step-failed" ] && failed=1
grep -q "build: reusing" "$out/call-bench/summary.txt" "$out/call-pretrain/summary.txt" 2>/dev/null \
  || { row "calls 2 and 3 reuse call 1's module" 1 - - "they rebuilt it"; }
module=$(ls "$S_STE_BUILD_ROOT"/*/s_ste_cuda*.so 2>/dev/null | head -1)

# ---- 5. the CPU suite on the device's torch (here only) -----------------------------------------
if [ "${CPU_SUITE:-1}" != 0 ] && [ -n "$module" ]; then
  xdist=""
  if "$device_py" -c "import xdist" 2>/dev/null; then xdist="-n 2 --dist loadfile"; fi
  step "CPU suite, torch $DEVICE_TORCH + out-of-tree module" "$out/cpu-suite.log" "pytest tests -m 'not cuda' $xdist" \
    bash -c "cd '$tree' && PYTHONPATH='$(dirname "$module")' '$device_py' -m pytest tests -q -m 'not cuda' $xdist \
      -p no:cacheprovider --ignore=tests/test_architecture.py"  # (that one reads the source: CI runs it)
  row "  its result" - - - "$(grep -E '[0-9]+ (passed|failed)' "$out/cpu-suite.log" | tail -1)"
fi
finish
}
