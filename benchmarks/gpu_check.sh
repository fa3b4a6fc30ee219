#!/usr/bin/env bash
# The one command for the day a GPU is lent: the CUDA-marked tests, then the CUDA-marked
# benchmarks, in under 8 minutes, into ONE results file.
#
#   benchmarks/gpu_check.sh            # on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --dry-run  # anywhere: what it would run (and that the selections collect)
#
# Writes ${OUT:-benchmarks/results}/gpu_check.json: the GPU and software, each step's command,
# exit status and wall time, the test outcomes (passed / failed / skipped, with failure messages)
# and the benchmark statistics (pytest-benchmark's JSON, trimmed to name, stats and extra_info).
# The benchmarks also append their rows to benchmarks/results/*.jsonl as usual (benchmarks/_bench.py);
# when $OUT is set (the lent machine) those files are copied there too.
#
# Time budget (wall clock, hard limits via `timeout`): tests 230 s (the CUDA-graph and compiled
# static-step tests compile with inductor), benchmarks 230 s (four whole-iteration contenders compile), the rest
# (environment, summary) a few seconds: 7.7 min at most.
#
# TRITON_INTERPRET=0: tests/conftest.py only sets the interpreter when the variable is unset, and
# on a GPU the Triton kernels must run compiled.
set -uo pipefail

cd "$(dirname "$0")/.."
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEST=${OUT:-benchmarks/results}
RESULT="$DEST/gpu_check.json"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TRITON_INTERPRET=0

TESTS_CMD=("$PY" -m pytest tests -m cuda -q -p no:cacheprovider -rfEs
           --junitxml="$WORK/tests.xml")
BENCH_CMD=("$PY" -m pytest benchmarks -m cuda --benchmark-only -q -p no:cacheprovider
           --benchmark-json="$WORK/bench.json")
TESTS_LIMIT=230
BENCH_LIMIT=230

if [ "$DRY" = 1 ]; then
  echo "would write: $RESULT"
  echo "step 1 (limit ${TESTS_LIMIT}s): TRITON_INTERPRET=0 ${TESTS_CMD[*]}"
  echo "step 2 (limit ${BENCH_LIMIT}s): TRITON_INTERPRET=0 ${BENCH_CMD[*]}"
  echo
  echo "selected by step 1 (collected here; on a GPU they run):"
  "$PY" -m pytest tests -m cuda --collect-only -q -p no:cacheprovider 2>&1 | grep '::' | sed 's/^/  /'
  echo "selected by step 2:"
  "$PY" -m pytest benchmarks -m cuda --collect-only -q -p no:cacheprovider 2>&1 | grep '::' | sed 's/^/  /'
  exit 0
fi

mkdir -p "$DEST"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "no CUDA device visible to torch: nothing to check (use --dry-run to see the plan)" >&2
  exit 3
fi

run_step() {  # name limit cmd...: runs with a hard time limit, records rc and wall seconds
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  echo "$rc $((SECONDS - t0))" > "$WORK/$name.status"
  tail -n 5 "$WORK/$name.log"
  return 0
}

run_step tests "$TESTS_LIMIT" "${TESTS_CMD[@]}"
run_step bench "$BENCH_LIMIT" "${BENCH_CMD[@]}"

"$PY" - "$WORK" "$RESULT" "${TESTS_CMD[*]}" "${BENCH_CMD[*]}" <<'EOF'
import json, platform, sys, xml.etree.ElementTree as ET
from pathlib import Path

import torch

work, result, tests_cmd, bench_cmd = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]


def status(name):
    rc, wall = (work / f"{name}.status").read_text().split()
    return {"rc": int(rc), "timed_out": rc in ("124", "137"), "wall_s": int(wall),
            "log_tail": (work / f"{name}.log").read_text()[-4000:]}


def tests():
    out = {"passed": [], "failed": [], "skipped": []}
    xml = work / "tests.xml"
    if not xml.exists():
        return out
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            out["failed"].append({"test": name, "message": (bad.get("message") or "")[:2000]})
        elif case.find("skipped") is not None:
            out["skipped"].append({"test": name, "reason": case.find("skipped").get("message")})
        else:
            out["passed"].append(name)
    return out


def benchmarks():
    path = work / "bench.json"
    if not path.exists():
        return []
    keep = ("min", "median", "mean", "stddev", "rounds")
    return [{"name": b["fullname"], "group": b.get("group"), "extra_info": b.get("extra_info", {}),
             "stats_s": {k: b["stats"][k] for k in keep if k in b["stats"]}}
            for b in json.loads(path.read_text())["benchmarks"]]


props = torch.cuda.get_device_properties(0)
data = {
    "machine": {"gpu": props.name, "sm": f"{props.major}.{props.minor}",
                "sms": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
                "torch": torch.__version__, "cuda": torch.version.cuda,
                "python": platform.python_version()},
    "steps": {"tests": {"command": tests_cmd, **status("tests")},
              "benchmarks": {"command": bench_cmd, **status("bench")}},
    "tests": tests(),
    "benchmarks": benchmarks(),
}
try:
    import triton
    data["machine"]["triton"] = triton.__version__
except ImportError:
    pass
result.write_text(json.dumps(data, indent=1))
t = data["tests"]
print(f"{result}: tests {len(t['passed'])} passed, {len(t['failed'])} failed, "
      f"{len(t['skipped'])} skipped; {len(data['benchmarks'])} benchmarks")
sys.exit(1 if t["failed"] or any(s["rc"] not in (0, 5) for s in data["steps"].values()) else 0)
EOF
rc=$?
if [ -n "${OUT:-}" ] && [ "$DEST" != benchmarks/results ]; then
  cp benchmarks/results/*.jsonl "$DEST"/ 2>/dev/null || true
fi
exit $rc
