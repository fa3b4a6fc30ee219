"""The Python half of benchmarks/gpu_check.sh.

    python benchmarks/gpu_check.py kernels          # build the C++ kernels; did they build against this torch?
    python benchmarks/gpu_check.py pack WORK DEST   # WORK's step outputs -> the 8 files in DEST
    python benchmarks/gpu_check.py files            # the names of those files

``kernels`` builds the C++ kernels of every op at once against the torch that is here (fastwgan's
JIT build, one process per op: setuptools builds the extensions of ``pip install`` one after the
other, and its parallel mode breaks torch's ninja build), then prints one verdict line: exit 0 when
they load, 1 when they fell back to the reference backend.

``pack`` writes DEST/gpu_check.json (machine, each step's command, limit, exit status and wall time,
the kernels' verdict, the test outcomes, the benchmark statistics), copies info.json, tests.xml,
bench.json, gpu_profile.md and gpu_profile.json, and puts the rest (each step's log, the profile's
Chrome traces, the rows this run appended to benchmarks/results/*.jsonl) into extras.tar.gz: with
gpu_check.log, which gpu_check.sh writes there itself, at most ``MAX_FILES`` files, the device
tool's limit on what comes back from ``$OUT``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILES = 8
COPIED = {"info.json": "info.json", "tests.xml": "tests.xml", "bench.json": "bench.json",
          "profile/gpu_profile.md": "gpu_profile.md", "profile/gpu_profile.json": "gpu_profile.json"}
# gpu_check.log (written by the shell script) + gpu_check.json + the copies + extras.tar.gz
RETURNED = ("gpu_check.log", "gpu_check.json", *COPIED.values(), "extras.tar.gz")
assert len(RETURNED) <= MAX_FILES


def build_kernels() -> None:
    """Build each op's C++ kernels against the torch that is here, all ops at once (one process
    each, each into its own folder): the JIT build of ``fastwgan.backend``, which later processes
    load from its cache instead of compiling again."""
    from fastwgan.info import OPS

    code = "import sys; from fastwgan import backend; backend.load_extension(sys.argv[1])"
    builds = [subprocess.Popen([sys.executable, "-c", code, op]) for op in OPS]
    for b in builds:
        b.wait()


def kernels_verdict() -> tuple[bool, str]:
    """(usable, one line): how each op's C++ kernels load, and the torch they were built against."""
    import torch

    from fastwgan import backend
    from fastwgan.info import OPS

    for op in OPS:
        backend.load_extension(op)
    how = {op: backend.how_loaded.get(op, "unknown") for op in OPS}
    ok = all(v in ("installed", "jit") for v in how.values())
    # a JIT build is always against the running torch; an installed one says which it was built for
    built = torch.__version__ if set(how.values()) == {"jit"} else backend.built_torch_version()
    state = "built and loaded" if ok else "FELL BACK (the reference backend on the CPU)"
    detail = "; ".join(f"{op}: {v}" for op, v in how.items())
    return ok, f"C++ kernels: {state}; built against torch {built}, torch here {torch.__version__}; {detail}"


def read_steps(work: Path) -> dict:
    out = {}
    path = work / "steps.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        name, limit, rc, wall, cmd = line.split("\t", 4)
        out[name] = {"command": cmd, "limit_s": int(limit), "rc": int(rc),
                     "timed_out": rc in ("124", "137"), "wall_s": int(wall)}
    return out


def read_tests(xml: Path) -> dict:
    out: dict[str, list] = {"passed": [], "failed": [], "skipped": []}
    if not xml.exists():
        return out
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:  # a report cut off by the time limit
        return {**out, "unreadable": str(e)}
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            out["failed"].append({"test": name, "message": (bad.get("message") or "")[:2000]})
        elif case.find("skipped") is not None:
            out["skipped"].append({"test": name, "reason": case.find("skipped").get("message")})
        else:
            out["passed"].append(name)
    return out


def read_benchmarks(path: Path) -> list:
    if not path.exists():
        return []
    keep = ("min", "median", "mean", "stddev", "rounds")
    return [{"name": b["fullname"], "group": b.get("group"), "extra_info": b.get("extra_info", {}),
             "stats_s": {k: b["stats"][k] for k in keep if k in b["stats"]}}
            for b in json.loads(path.read_text())["benchmarks"]]


def new_rows(work: Path) -> dict[str, str]:
    """results file -> the lines this run appended to it (counts taken before the first step)."""
    before = {}
    path = work / "jsonl_before.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        name, count = line.rsplit(" ", 1)
        before[Path(name).name] = int(count)
    out = {}
    for f in sorted((ROOT / "benchmarks" / "results").glob("*.jsonl")):
        lines = f.read_text().splitlines(keepends=True)[before.get(f.name, 0):]
        if lines:
            out[f.name] = "".join(lines)
    return out


def info_json(work: Path) -> dict:
    """`fastwgan info`, nvidia-smi and the package list, as one document."""
    def text(name: str) -> str | None:
        p = work / name
        return p.read_text() if p.exists() else None

    out: dict = {}
    raw = text("info_fastwgan.json")
    try:
        out["fastwgan_info"] = json.loads(raw) if raw else None
    except ValueError:
        out["fastwgan_info"] = raw
    out["kernels"] = text("kernels.txt")
    out["nvidia_smi"] = text("nvidia-smi.txt")
    out["pip_list"] = (text("pip-list.txt") or "").splitlines()
    return out


def pack(work: Path, dest: Path) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    info = info_json(work)
    (work / "info.json").write_text(json.dumps(info, indent=1))
    fi = info["fastwgan_info"] if isinstance(info["fastwgan_info"], dict) else {}
    summary = {
        "machine": {k: fi.get(k) for k in ("python", "torch", "triton", "cuda_devices", "threads")},
        "kernels": (info["kernels"] or "").strip(),
        "steps": read_steps(work),
        "tests": read_tests(work / "tests.xml"),
        "benchmarks": read_benchmarks(work / "bench.json"),
    }
    (dest / "gpu_check.json").write_text(json.dumps(summary, indent=1))
    for src, name in COPIED.items():
        if (work / src).exists():
            shutil.copyfile(work / src, dest / name)
    with tarfile.open(dest / "extras.tar.gz", "w:gz") as tar:
        for log in sorted(work.glob("*.log")) + sorted((work / "profile").glob("trace_*.json")):
            if log.name != "gpu_check.log":
                tar.add(log, arcname=f"extras/{log.name}")
        for name, rows in new_rows(work).items():
            row_file = work / f"rows_{name}"
            row_file.write_text(rows)
            tar.add(row_file, arcname=f"extras/results/{name}")
    return summary


def main(argv: list[str]) -> int:
    if argv[:1] == ["files"]:
        print(" ".join(RETURNED))
        return 0
    if argv[:1] == ["kernels"]:
        build_kernels()
        ok, line = kernels_verdict()
        print(line)
        return 0 if ok else 1
    if argv[:1] == ["pack"] and len(argv) == 3:
        s = pack(Path(argv[1]), Path(argv[2]))
        t = s["tests"]
        steps = ", ".join(f"{k} rc {v['rc']} in {v['wall_s']} s" for k, v in s["steps"].items())
        print(f"{argv[2]}: tests {len(t['passed'])} passed, {len(t['failed'])} failed, {len(t['skipped'])} "
              f"skipped; {len(s['benchmarks'])} benchmarks; steps: {steps}")
        extra = sorted(p.name for p in Path(argv[2]).iterdir() if p.name not in RETURNED)
        if extra:
            print(f"warning: {argv[2]} also holds {extra}: more than the {MAX_FILES} files that come back")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
