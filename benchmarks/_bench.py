"""The one benchmark harness: rounds -> statistics -> one line in a results file.

Every contender of every benchmark is measured the same way: ``warmup`` rounds are run and dropped,
then ``rounds`` rounds are timed, each round doing ``units`` units of work (one optimizer step, one
critic step, one generator iteration...). A measurement is the list of timed round durations;
:func:`summarize` turns it into seconds per unit (median, min, max, quartiles), and :func:`append`
writes it as one JSON line to ``benchmarks/results/<suite>.jsonl``, after a ``run`` line that
describes the machine (CPU model, cores, bf16 instructions), the versions (Python, torch, fastwgan
and its git commit), the date, the thread count and the command. ``benchmarks/report.py`` turns
the newest run of each suite into the tables of ``benchmarks/RESULTS.md``.

Two sources of round durations, one statistic:

* pytest benchmarks time their rounds with pytest-benchmark (``benchmark.pedantic(fn,
  rounds=R, warmup_rounds=W, iterations=1)``); :func:`record` reads its raw round list.
* whole training runs cannot be re-entered per round (``fastwgan.train`` compiles once per call),
  so their rounds are cut from time stamps taken inside one run (:func:`rounds_from_stamps`): the
  trainer's own ``TrainResult.history`` times for fastwgan, ``time.perf_counter`` between calls of
  the loop for the textbook loop. The first ``warmup`` rounds are dropped the same way.

Environment: ``FASTWGAN_BENCH_RESULTS`` overrides the results folder; ``FASTWGAN_BENCH_SMOKE=1``
asks the script benchmarks for tiny sizes (an end-to-end check, not a measurement) and sends their
results to a temporary folder unless ``FASTWGAN_BENCH_RESULTS`` is set.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16", "avx512f", "avx2")

# the pytest session's ratio summary (conftest.py): group -> name -> seconds per unit
RATIOS: dict[str, dict[str, float]] = {}
NOTES: dict[tuple[str, str], str] = {}  # (group, name) -> extra text (peak memory, GB/s)
BASELINES: dict[tuple[str, str], str] = {}  # (group, precision) -> the plain-PyTorch contender
PRECISION: dict[tuple[str, str], str] = {}  # (group, name) -> precision


def smoke() -> bool:
    """True when ``FASTWGAN_BENCH_SMOKE`` asks for tiny sizes (checks that a script runs)."""
    return os.environ.get("FASTWGAN_BENCH_SMOKE", "") not in ("", "0")


def results_dir() -> Path:
    if os.environ.get("FASTWGAN_BENCH_RESULTS"):
        return Path(os.environ["FASTWGAN_BENCH_RESULTS"])
    if smoke():
        return Path(tempfile.gettempdir()) / "fastwgan-bench-smoke"
    return RESULTS_DIR


# ------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------
def summarize(round_seconds: Sequence[float], units: float = 1.0) -> dict[str, float]:
    """Seconds per unit over the timed rounds: median (the headline), min, max, quartiles."""
    if not round_seconds:
        raise ValueError("no timed rounds: ask for at least one round after the warm-up")
    per = sorted(t / units for t in round_seconds)
    q = statistics.quantiles(per, n=4, method="inclusive") if len(per) > 1 else [per[0]] * 3
    return dict(median_s=statistics.median(per), min_s=per[0], max_s=per[-1], q1_s=q[0], q3_s=q[2],
                rounds=len(per))


def rounds_from_stamps(stamps: Sequence[float], warmup: int) -> list[float]:
    """Round durations from cumulative time stamps at round ends (``stamps[0]`` ends round 1),
    the first ``warmup`` rounds dropped."""
    ends = list(stamps)
    starts = [0.0] + ends[:-1]
    return [e - s for s, e in zip(starts, ends)][warmup:]


# ------------------------------------------------------------------------------------------------
# machine and versions
# ------------------------------------------------------------------------------------------------
def _cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model, [f for f in BF16_FLAGS if f in flags]


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' (uncommitted changes)' if dirty else ''}" if commit else "unknown"


def environment() -> dict[str, Any]:
    """The machine, the versions and the date of a run (the header of its results)."""
    import fastwgan

    model, flags = _cpu_model_and_flags()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return dict(
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=dict(cpu=model, cores=os.cpu_count(), isa=flags, capability=torch.backends.cpu.get_cpu_capability(),
                     gpu=gpu),
        versions=dict(python=platform.python_version(), torch=torch.__version__, fastwgan=fastwgan.__version__,
                      commit=_git_commit()),
        threads=torch.get_num_threads(),
    )


def machine() -> str:
    """One line for a terminal header."""
    env = environment()
    m, v = env["machine"], env["versions"]
    return (f"{m['cpu']}, {m['cores']} cores ({', '.join(m['isa']) or 'no bf16 ISA'}; torch {m['capability']}), "
            f"torch {v['torch']}, {env['threads']} threads, fastwgan {v['commit']}")


# ------------------------------------------------------------------------------------------------
# the results file
# ------------------------------------------------------------------------------------------------
_RUNS: dict[str, str] = {}  # results file -> run id of this process (a file of another folder gets its own run line)


def append(suite: str, measurement: dict[str, Any], command: str | None = None) -> None:
    """Append one measurement to ``<results>/<suite>.jsonl``; the first of this process per suite
    is preceded by a ``run`` line (environment and command) that later lines refer to."""
    path = results_dir() / f"{suite}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    key = str(path.resolve())
    if key not in _RUNS:
        env = environment()
        _RUNS[key] = f"{env['date']} pid {os.getpid()}"
        cmd = command or shlex.join(["python", *[_relative(a) for a in sys.argv]])
        lines.append(dict(kind="run", suite=suite, run=_RUNS[key], command=cmd, smoke=smoke(), **env))
    lines.append(dict(kind="measurement", suite=suite, run=_RUNS[key], **measurement))
    text = "".join(json.dumps(line, sort_keys=False) + "\n" for line in lines).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one write on an O_APPEND descriptor: two benchmark processes never interleave their lines
        view = memoryview(text)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _relative(arg: str) -> str:
    try:
        return str(Path(arg).resolve().relative_to(ROOT)) if os.path.exists(arg) else arg
    except ValueError:
        return arg


def measurement(*, group: str, contender: str, precision: str, shapes: str, unit: str, units: float,
                warmup: int, round_seconds: Sequence[float], baseline: bool = False, **extra: Any) -> dict[str, Any]:
    """One results line: what was measured and its statistics (seconds per ``unit``)."""
    return dict(group=group, contender=contender, precision=precision, shapes=shapes, unit=unit,
                units_per_round=units, warmup=warmup, baseline=baseline, **summarize(round_seconds, units),
                round_seconds=[round(t, 6) for t in round_seconds], **extra)


# ------------------------------------------------------------------------------------------------
# pytest-benchmark -> the results file
# ------------------------------------------------------------------------------------------------
def record(benchmark, group: str, name: str, units: float = 1.0, baseline: bool = False, *,
           precision: str = "fp32", shapes: str = "", unit: str = "call", warmup: int = 0, **extra: Any) -> float:
    """Record a finished ``benchmark.pedantic`` run: seconds per unit (median) into the session
    summary and one line into ``results/<suite>.jsonl`` (suite: the test module without ``test_``).
    ``baseline`` marks the plain-PyTorch contender that the group's ratios at ``precision`` use;
    ``warmup`` is the number of warm-up rounds given to ``pedantic`` (recorded, not re-run)."""
    if getattr(benchmark, "disabled", False) or benchmark.stats is None:
        return float("nan")  # --benchmark-disable: ran once as a smoke test, nothing timed
    stats = benchmark.stats.stats
    summary = summarize(stats.data, units)
    key = name if precision == "fp32" else f"{name} {precision}"
    RATIOS.setdefault(group, {})[key] = summary["median_s"]
    PRECISION[(group, key)] = precision
    if baseline:
        BASELINES[(group, precision)] = key
    module = benchmark.fullname.split("::")[0]
    suite = Path(module).stem.removeprefix("test_")
    benchmark.extra_info.update(group=group, name=name, seconds_per_unit=summary["median_s"], units=units)
    append(suite, measurement(group=group, contender=name, precision=precision, shapes=shapes, unit=unit,
                              units=units, warmup=warmup,
                              round_seconds=list(stats.data), baseline=baseline, **extra),
           command=f"pytest {module} --benchmark-only")
    return summary["median_s"]


def note(group: str, name: str, text: str) -> None:
    """Extra text printed beside ``group``/``name`` in the session summary."""
    NOTES[(group, name)] = text
