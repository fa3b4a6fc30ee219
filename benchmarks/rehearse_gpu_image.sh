#!/usr/bin/env bash
# Rehearses the GPU day on the CPU, on the accelerator machine's software as it is: Python 3.12 with
# exactly torch 2.11.0 and triton 3.6.0 from the registry (the CUDA build; it runs on the CPU), plus
# the image's pytest, pytest-benchmark, hypothesis, pybind11 and ninja and the packages fastwgan
# imports that the image has (numpy, tqdm, matplotlib, pillow, scikit-learn, filelock, scipy,
# torchmetrics, tensorboard) -- and, as there, no POT and no mlxtend.
#
#   bash benchmarks/rehearse_gpu_image.sh           # everything (the CPU test suite: ~20-40 min on 2 cores;
#                                                   # REHEARSAL_SUITE_LIMIT=seconds cuts it short, reporting what ran)
#   bash benchmarks/rehearse_gpu_image.sh --quick   # all but the whole suite (the AOT test still runs)
#   bash benchmarks/rehearse_gpu_image.sh --report  # only rewrite the results file from the last run's logs
#
# In a fresh copy of the repository (tracked and untracked-not-ignored files: what the device tool
# sends), outside this checkout so that the in-place C++ build for torch 2.11 touches nothing here:
#   1. the venv (${REHEARSAL_VENV:-/tmp/fastwgan-gpu-image}; made once, then reused if its versions hold)
#   2. gpu_check.sh --step install: fastwgan installed offline, the C++ kernels built against torch 2.11
#      (each step's limit stretched 20 times: 2 shared cores are not the GPU machine's 16; the time it
#      took is reported)
#   3. gpu_check.sh --dry-run --collect: the plan, and that the CUDA tests and the benchmarks collect
#   4. `pip install --no-deps --no-build-isolation -e .` (README, CI: setuptools builds the C++ kernels
#      in place, one after the other), the AOT Triton compile test (tests/test_triton_compile.py)
#      under triton 3.6
#   5. gpu_check.sh --step info / profile / pack on the CPU: fastwgan info, the profile's reduced CPU
#      mode, and the files that would come back (at most 8)
#   6. the CPU test suite (pytest tests), niced
# and writes benchmarks/results/gpu_rehearsal.md (in this checkout) from what happened.
set -uo pipefail

main() {
cd "$(dirname "$0")/.."
HERE=$PWD
QUICK=0 REPORT_ONLY=0
[ "${1:-}" = --quick ] && QUICK=1
[ "${1:-}" = --report ] && REPORT_ONLY=1
VENV=${REHEARSAL_VENV:-/tmp/fastwgan-gpu-image}
BASE=${REHEARSAL_DIR:-/tmp/fastwgan-gpu-rehearsal}
PY312=${PYTHON312:-$(command -v python3.12 || echo /root/.pyenv/versions/3.12.1/bin/python3.12)}
TORCH=2.11.0 TRITON=3.6.0
IMAGE_TOOLS="pytest pytest-benchmark hypothesis pybind11 ninja setuptools wheel"
IMAGE_DEPS="numpy tqdm matplotlib pillow scikit-learn filelock scipy torchmetrics tensorboard"
REPO=$BASE/repo WORK=$BASE/work LOGS=$BASE/logs
RESULT=$HERE/benchmarks/results/gpu_rehearsal.md
T0=$SECONDS

stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
timed() {  # name cmd...: runs, logs to $LOGS/name.log, records "name rc seconds"
  local name=$1 t0=$SECONDS rc; shift
  stamp "$name: $*"
  "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  echo "$name $rc $((SECONDS - t0))" >> "$LOGS/timings.txt"
  tail -n 5 "$LOGS/$name.log"
  stamp "$name: exit $rc after $((SECONDS - t0)) s"
}

versions_hold() {
  "$VENV/bin/python" - "$TORCH" "$TRITON" <<'EOF' 2>/dev/null
import importlib.util, sys
import torch, triton
ok = torch.__version__.split("+")[0] == sys.argv[1] and triton.__version__ == sys.argv[2]
sys.exit(0 if ok and sys.version_info[:2] == (3, 12) else 1)
EOF
}

if [ "$REPORT_ONLY" = 0 ]; then
# 1. the venv
if ! versions_hold; then
  stamp "making $VENV (torch $TORCH and triton $TRITON from the registry: several GB)"
  "$PY312" -m venv "$VENV" || exit 1
  "$VENV/bin/python" -m pip install -q --progress-bar off "torch==$TORCH" "triton==$TRITON" $IMAGE_TOOLS $IMAGE_DEPS \
    || exit 1
  versions_hold || { echo "the venv does not hold torch $TORCH and triton $TRITON" >&2; exit 1; }
fi
for missing in ot mlxtend; do  # the image has neither: a venv that has one rehearses something else
  if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$missing') is None)"; then
    echo "$VENV has '$missing', which the GPU image lacks: uninstall it or use another REHEARSAL_VENV" >&2
    exit 1
  fi
done

# 2. the fresh copy
rm -rf "$REPO" "$WORK" "$LOGS" && mkdir -p "$REPO" "$WORK" "$LOGS"
git ls-files -z -co --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$REPO" || exit 1
cd "$REPO"
export PYTHON=$VENV/bin/python GPU_CHECK_WORK=$WORK GPU_CHECK_LIMIT_SCALE=20
unset OUT TRITON_INTERPRET FASTWGAN_BACKEND

# 3.-6.
timed install nice -n 10 bash benchmarks/gpu_check.sh --step install
timed dry_run bash benchmarks/gpu_check.sh --dry-run --collect
# the README's and CI's install (the C++ kernels built in place by setuptools), which the suite's
# packaging tests expect
timed pip_install nice -n 10 "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e .
timed aot_test nice -n 10 "$PYTHON" -m pytest tests/test_triton_compile.py -q -p no:cacheprovider -rs \
  --junitxml="$LOGS/aot.xml"
timed info bash benchmarks/gpu_check.sh --step info
timed profile nice -n 10 bash benchmarks/gpu_check.sh --step profile
timed pack bash benchmarks/gpu_check.sh --step pack
if [ "$QUICK" = 0 ]; then  # last: a suite cut short by REHEARSAL_SUITE_LIMIT (seconds) still reports what ran
  timed suite timeout -s INT -k 30 "${REHEARSAL_SUITE_LIMIT:-0}" nice -n 10 "$PYTHON" -m pytest tests -q \
    -p no:cacheprovider -rs --junitxml="$LOGS/suite.xml"
fi
cd "$HERE"
echo "$((SECONDS - T0))" > "$LOGS/wall.txt"
fi

# the results file, from the logs
[ -f "$LOGS/suite.xml" ] || [ "$REPORT_ONLY" = 0 ] || QUICK=1
"$VENV/bin/python" - "$LOGS" "$WORK" "$RESULT" "$QUICK" "$(cat "$LOGS/wall.txt" 2>/dev/null || echo 0)" "${REHEARSAL_SUITE_LIMIT:-0}" <<'EOF'
import json, platform, subprocess, sys, xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

logs, work, result, quick, wall = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
suite_limit = int(sys.argv[6])
import torch, triton

timings = {n: (int(rc), int(s)) for n, rc, s in (l.split() for l in (logs / "timings.txt").read_text().splitlines())}


def junit(path: Path) -> dict:
    if not path.exists():
        return {"missing": True}
    out = {"passed": 0, "failed": [], "skipped": Counter()}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            out["failed"].append((name, (bad.get("message") or "").splitlines()[0][:200] if bad.get("message") else ""))
        elif case.find("skipped") is not None:
            out["skipped"][(case.find("skipped").get("message") or "").split("\n")[0][:160]] += 1
        else:
            out["passed"] += 1
    return out


def counts(j: dict) -> str:
    if j.get("missing"):
        return "no report"
    return f"{j['passed']} passed, {sum(j['skipped'].values())} skipped, {len(j['failed'])} failed"


def step(name: str) -> str:
    if name not in timings:
        return "not run"
    rc, s = timings[name]
    return f"exit {rc}, {s} s"


def log(name: str, lines: int | None = None) -> str:
    text = (logs / f"{name}.log").read_text() if (logs / f"{name}.log").exists() else ""
    keep = text.splitlines()[-lines:] if lines else text.splitlines()
    return "\n".join(keep)


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
pkgs = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
want = ("torch", "triton", "pytest", "pytest-benchmark", "hypothesis", "pybind11", "ninja", "numpy", "setuptools")
listed = {l.split("==")[0].lower(): l for l in pkgs.splitlines() if "==" in l}
kernels = (work / "kernels.txt").read_text().strip() if (work / "kernels.txt").exists() else "no verdict written"
info = work.parent / "repo" / "src" / "fastwgan" / "_build_info.json"
built = f"built against torch {json.loads(info.read_text())['torch']}" if info.exists() else "no _build_info.json: not built"
aot, suite = junit(logs / "aot.xml"), junit(logs / "suite.xml")
returned = sorted(p.name for p in Path(work.parent / "repo" / "benchmarks" / "results" / "gpu_check").glob("*"))

L = ["# The GPU day rehearsed on the accelerator machine's software, on the CPU", "",
     "Generated by `" + (f"REHEARSAL_SUITE_LIMIT={suite_limit} " if suite_limit else "")
     + "bash benchmarks/rehearse_gpu_image.sh" + (" --quick" if quick else "") + "` (do not edit by hand) "
     f"on {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
     f"in {wall // 60} min {wall % 60} s.", "",
     f"Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}; no GPU here), "
     f"triton {triton.__version__}; POT and mlxtend not installed, as on the image.", "",
     "Packages: " + ", ".join(listed[w] for w in want if w in listed) + ".", "",
     "| step | outcome |", "|---|---|",
     f"| install (`gpu_check.sh --step install`; its limit stretched here) | {step('install')}: {kernels} |",
     f"| dry run (`gpu_check.sh --dry-run --collect`) | {step('dry_run')} |",
     f"| `pip install --no-index --no-deps --no-build-isolation -e .` (C++ kernels built in place) | {step('pip_install')}: {built} |",
     f"| AOT Triton compile test under triton {triton.__version__} (`pytest tests/test_triton_compile.py`) | {step('aot_test')}: {counts(aot)} |",
     f"| `gpu_check.sh --step info` | {step('info')} |",
     f"| `gpu_check.sh --step profile` (its CPU mode) | {step('profile')} |",
     f"| `gpu_check.sh --step pack`: files that would come back | {step('pack')}: {len(returned)} ({', '.join(returned)}; "
     "gpu_check.log, the whole run's log, is written by a whole run only) |",
     f"| CPU test suite (`pytest tests`) | " + (f"{step('suite')}: {counts(suite)}" + (
         f" (cut at {suite_limit} s: exit 124 or 137 means the rest did not run)" if suite_limit else "")
         if not quick else "not run (--quick)") + " |",
     ""]
for title, j in (("AOT test", aot), ("CPU suite", suite)):
    if j.get("missing"):
        continue
    if j["failed"]:
        causes = {}
        for n, m in j["failed"]:
            causes.setdefault(m[:120], []).append(n.split(".")[-1])
        L += [f"{title} failures, by message ({len(j['failed'])}):", ""]
        L += [f"- {len(ns)} x {m}: " + ", ".join(f"`{n}`" for n in ns[:4]) + (", ..." if len(ns) > 4 else "")
              for m, ns in sorted(causes.items(), key=lambda kv: -len(kv[1]))] + [""]
    if j["skipped"]:
        L += [f"{title} skips, by reason:", ""] + [f"- {c} x {r}" for r, c in j["skipped"].most_common()] + [""]
L += ["The plan (`bash benchmarks/gpu_check.sh --dry-run --collect`):", "", "```", log("dry_run"), "```", "",
      "The profile's CPU check (`gpu_check.sh --step profile`: the outermost ATen operators stand in for kernels; "
      "no measurement):", ""]
md = work / "profile" / "gpu_profile.md"
L += md.read_text().splitlines()[:12] + [""] if md.exists() else ["(no gpu_profile.md written)", ""]
result.write_text("\n".join(L))
print(f"wrote {result}")
EOF
}

main "$@"  # (a function: bash has read all of it before it runs, so editing this file mid-run is safe)
