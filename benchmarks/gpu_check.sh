#!/usr/bin/env bash
# The day a GPU is lent, in one call: from a fresh copy of this repository on the lent machine's
# image (Python 3.12 with torch, triton, pytest, pytest-benchmark, hypothesis, pybind11 and ninja;
# no fastwgan, no POT, no mlxtend, no network), within 8 minutes of wall clock:
#
#   1 install   fastwgan offline (editable, no dependencies, no build isolation; FASTWGAN_NO_EXT=1),
#               then its C++ kernels built against the torch that is there, both ops at once
#               (fastwgan's JIT build, cached: the later steps load them; `pip install`'s own
#               build compiles them one after the other, and setuptools' --parallel breaks
#               torch's ninja build, whose one build.ninja the two extensions then share)
#   2 info      `fastwgan info` (did the C++ kernels build against this torch, or fall back?), the
#               GPU (nvidia-smi), the Python packages
#   3 tests     the CUDA-marked tests                                  (pytest tests -m cuda)
#   4 bench     every benchmark, CPU and CUDA contenders side by side  (pytest benchmarks/ --benchmark-only)
#   5 profile   torch.profiler over one compiled and one CUDA-graph toy iteration and one DCGAN-32
#               iteration: kernels, launch gaps, top kernels           (benchmarks/gpu_profile.py)
#   6 pack      the results, as at most 8 files
#
#   bash benchmarks/gpu_check.sh                  # the whole day (needs a CUDA device for steps 3-5)
#   bash benchmarks/gpu_check.sh --dry-run        # anywhere: the plan, each step's command and limit
#   bash benchmarks/gpu_check.sh --dry-run --collect   # ... and that the selections of steps 3-4 collect
#   bash benchmarks/gpu_check.sh --step NAME      # one step alone (install, info, profile and pack run
#                                                 # on the CPU too: benchmarks/rehearse_gpu_image.sh does)
#
# Each step runs under `timeout` with a hard limit (SIGINT at the limit, so pytest still writes its
# reports, then SIGKILL KILL_AFTER seconds later); the limits plus the grace add up to 468 s, the
# checks between steps (does fastwgan import, is there a CUDA device) take the rest of the 480 s.
# A step that fails or runs out of time is recorded and the next one runs. When the C++ build fails,
# the later steps run with FASTWGAN_NO_JIT=1: the kernels fall back to the reference backend instead
# of being compiled halfway through a benchmark (and the C++ contenders fail, saying so).
#
# Comes back (into $OUT when set, the device tool's folder; else benchmarks/results/gpu_check/),
# 8 files: gpu_check.log (everything printed), gpu_check.json (machine, each step's command, limit,
# exit status and wall time, the install verdict, the test outcomes with failure messages, the
# benchmark statistics), info.json, tests.xml (JUnit), bench.json (pytest-benchmark's JSON),
# gpu_profile.md, gpu_profile.json, extras.tar.gz (each step's log, the Chrome traces of the
# profile, and the rows this run appended to benchmarks/results/*.jsonl, for benchmarks/report.py).
#
# TRITON_INTERPRET=0: tests/conftest.py sets the interpreter only when the variable is unset, and on
# a GPU the Triton kernels must run compiled.
set -uo pipefail

cd "$(dirname "$0")/.."
DRY=0 COLLECT=0 ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --collect) COLLECT=1 ;;
    --step) ONLY=${2:-}; shift ;;
    *) echo "usage: $0 [--dry-run [--collect]] [--step install|info|tests|bench|profile|pack]" >&2; exit 2 ;;
  esac
  shift
done

PY=${PYTHON:-python3}
DEST=${OUT:-benchmarks/results/gpu_check}
WORK=${GPU_CHECK_WORK:-/tmp/fastwgan-gpu-check}
KILL_AFTER=3
BUDGET=480
# the rehearsal's 2 shared CPU cores are not the GPU machine's 16: it stretches every limit by this factor
SCALE=${GPU_CHECK_LIMIT_SCALE:-1}
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
# where step 1 builds the C++ kernels and every later step finds them (also the tests that point
# fastwgan's cache folder elsewhere)
export FASTWGAN_BUILD_DIR=${FASTWGAN_BUILD_DIR:-$WORK-build}

# name | limit (s) | command, run by bash from the repository root
STEPS=(
  "install|110|FASTWGAN_NO_EXT=1 $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . && $PY benchmarks/gpu_check.py kernels | tee $WORK/kernels.txt"
  "info|20|$PY -m fastwgan info > $WORK/info_fastwgan.json; (nvidia-smi || echo 'no nvidia-smi') > $WORK/nvidia-smi.txt; $PY -m pip list --format=freeze > $WORK/pip-list.txt"
  "tests|115|$PY -m pytest tests -m cuda -q -p no:cacheprovider -rfEs --junitxml=$WORK/tests.xml"
  "bench|145|$PY -m pytest benchmarks/ --benchmark-only -q -p no:cacheprovider --benchmark-json=$WORK/bench.json"
  "profile|50|$PY benchmarks/gpu_profile.py --out $WORK/profile --traces"
  "pack|10|$PY benchmarks/gpu_check.py pack $WORK $DEST"
)

field() { echo "$1" | cut -d'|' -f"$2"; }  # (field 3- for the command: it may hold "|")
if [ -n "$ONLY" ] && ! printf '%s\n' "${STEPS[@]}" | cut -d'|' -f1 | grep -qx "$ONLY"; then
  echo "no step '$ONLY': one of $(printf '%s\n' "${STEPS[@]}" | cut -d'|' -f1 | tr '\n' ' ')" >&2
  exit 2
fi

if [ "$DRY" = 1 ]; then
  total=0 n=0
  echo "plan: bash benchmarks/gpu_check.sh (python: $PY; scratch: $WORK)"
  for s in "${STEPS[@]}"; do
    n=$((n + 1)); limit=$(field "$s" 2); total=$((total + limit + KILL_AFTER))
    printf 'step %d %-8s limit %3d s (+%d s to kill): %s\n' "$n" "$(field "$s" 1)" "$limit" "$KILL_AFTER" "$(field "$s" 3-)"
  done
  echo "total: $total s of $BUDGET s (the rest: the checks between steps, a few seconds)"
  files=$("$PY" benchmarks/gpu_check.py files)
  echo "returns ($(echo $files | wc -w) files, into \${OUT:-benchmarks/results/gpu_check}): $files"
  if [ "$COLLECT" = 1 ]; then
    echo
    echo "selected by step 3 (collected here; on a GPU they run):"
    "$PY" -m pytest tests -m cuda --collect-only -q -p no:cacheprovider 2>&1 | grep -E '::|collected|error' | sed 's/^/  /'
    echo "selected by step 4 (--benchmark-only skips the untimed ones among them when it runs):"
    "$PY" -m pytest benchmarks/ --benchmark-only --collect-only -q -p no:cacheprovider 2>&1 \
      | grep -E '::|collected|error' | sed 's/^/  /'
  fi
  [ "$total" -le "$BUDGET" ]
  exit
fi

mkdir -p "$WORK" "$DEST"
if [ -z "$ONLY" ]; then
  rm -rf "${WORK:?}"/* "$DEST"/* && mkdir -p "$WORK"
  exec > >(tee "$DEST/gpu_check.log") 2>&1
  TEE=$!
fi
# rows already in the results files: the pack step keeps only what this run appends
[ -f "$WORK/jsonl_before.txt" ] || for f in benchmarks/results/*.jsonl; do
  [ -f "$f" ] && echo "$f $(wc -l < "$f")"
done > "$WORK/jsonl_before.txt"

run_step() {  # one step under its hard limit; its rc and wall time go to steps.tsv
  local name=$1 limit=$(($2 * SCALE)) cmd=$3 t0=$SECONDS rc
  echo "=== $(date -u +%H:%M:%S) step $name (limit ${limit}s): $cmd"
  timeout -s INT -k "$KILL_AFTER" "$limit" bash -o pipefail -c "$cmd" > "$WORK/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$limit" "$rc" "$((SECONDS - t0))" "$cmd" >> "$WORK/steps.tsv"
  tail -n 15 "$WORK/$name.log"
  echo "=== step $name: exit $rc after $((SECONDS - t0)) s$([ "$rc" = 124 ] || [ "$rc" = 137 ] && echo ' (TIME LIMIT)')"
  return "$rc"
}

cuda_ok() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

status=0
for s in "${STEPS[@]}"; do
  name=$(field "$s" 1)
  [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && continue
  if [ -z "$ONLY" ] && { [ "$name" = tests ] || [ "$name" = bench ]; } && [ -n "${NO_CUDA:-}" ]; then
    echo "=== step $name skipped: no CUDA device visible to torch"
    continue
  fi
  run_step "$name" "$(field "$s" 2)" "$(field "$s" 3-)" || status=1
  if [ "$name" = install ]; then
    if ! "$PY" -c 'import fastwgan' 2>/dev/null; then  # not even the Python package: run it from the sources
      export PYTHONPATH=$PWD/src FASTWGAN_NO_JIT=1
      echo "=== fastwgan did not install: later steps import it from src/ (PYTHONPATH), reference kernels"
    elif ! grep -q '^C++ kernels: built and loaded' "$WORK/kernels.txt" 2>/dev/null; then
      export FASTWGAN_NO_JIT=1  # no C++ kernels: the reference backend, instead of compiling mid-run
      echo "=== the C++ kernels did not build: later steps run with FASTWGAN_NO_JIT=1 (reference backend)"
    fi
  fi
  if [ "$name" = info ] && [ -z "$ONLY" ] && ! cuda_ok; then
    NO_CUDA=1
    echo "=== no CUDA device visible to torch: the tests and benchmarks are skipped (the profile runs its CPU check)"
  fi
done
[ -n "${NO_CUDA:-}" ] && status=3
echo "=== $(date -u +%H:%M:%S) done: exit $status after $SECONDS s"
if [ -n "${TEE:-}" ]; then exec >&- 2>&-; wait "$TEE"; fi  # the log is whole before the tool collects it
exit "$status"
