"""Compile time of the whole training step: cold, and loaded from fastwgan's compile cache.

    python benchmarks/compile_cache.py                       # 8gaussians and 25gaussians, 3 rounds each
    python benchmarks/compile_cache.py --data 25gaussians --rounds 5

Each round is a fresh process that runs ``fastwgan.train(..., compile=True)`` for 2 steps with the
data set's preset models and default recipe and reports ``compile_seconds`` (tracing, compiling and
the first call; the update is undone). Contenders, each with PyTorch's ``TORCHINDUCTOR_CACHE_DIR``
unset so that fastwgan's own folder (``FASTWGAN_CACHE``) is the cache:

- "cold": an empty cache folder (the first run of a model and setting on a machine);
- "warm: the next process": the folder the cold round of the same model filled (every later run);
- "cold, one compile thread": an empty folder with ``TORCHINDUCTOR_COMPILE_THREADS=1`` (inductor
  otherwise starts a pool of compile workers, one per core);
- "cold, new machine": an empty folder and an empty ``TMPDIR`` too: inductor keeps the header it
  precompiles for its C++ kernels (~150 MB, built once per machine and compiler flags) in
  ``$TMPDIR/torchinductor_<user>``, outside every cache folder, so "cold" above reuses the one an
  earlier compile on this machine left, and only this contender is the first compile on a machine.

Results: benchmarks/results/compile_cache.jsonl (``python benchmarks/report.py`` renders them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

SUITE = "compile_cache"
DATA = ("8gaussians", "25gaussians")
CONTENDERS = ("cold", "warm: the next process", "cold, one compile thread", "cold, new machine")

_CHILD = """
import json, sys, fastwgan
from fastwgan.presets import PRESETS
G, D = PRESETS[sys.argv[1]].models(2, 0)
r = fastwgan.train(G, D, sys.argv[1], steps=2, compile=True, precision="bf16", progress=False, plots=False,
                   eval_samples=0, seed=0)
print(json.dumps(dict(mode=r.step_mode, compile_seconds=r.compile_seconds, n_critic=r.config["n_critic"],
                      batch_size=r.config["batch_size"])))
"""


def compile_once(data: str, cache: Path, threads: int | None = None, tmpdir: Path | None = None) -> dict:
    """One fresh process compiling ``data``'s step with ``cache`` as fastwgan's cache folder (and
    ``tmpdir`` as its ``TMPDIR``, where given)."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env["FASTWGAN_CACHE"] = str(cache)
    if threads:
        env["TORCHINDUCTOR_COMPILE_THREADS"] = str(threads)
    if tmpdir:
        env["TMPDIR"] = str(tmpdir)
    p = subprocess.run([sys.executable, "-c", _CHILD, data], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"compiling {data} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    if out["mode"] != "compiled":
        raise RuntimeError(f"{data} ran {out['mode']!r}, not compiled:\n{p.stderr[-3000:]}")
    return out


def rounds(data: str, n: int) -> dict[str, list[float]]:
    """``n`` rounds of each contender; a cold round's folder serves the warm round after it."""
    times: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    for _ in range(n):
        with tempfile.TemporaryDirectory(prefix="fastwgan-cc-") as a, tempfile.TemporaryDirectory(prefix="fastwgan-cc-") as b, \
                tempfile.TemporaryDirectory(prefix="fastwgan-cc-") as c, tempfile.TemporaryDirectory(prefix="fastwgan-tmp-") as t:
            times["cold"].append(compile_once(data, Path(a))["compile_seconds"])
            times["warm: the next process"].append(compile_once(data, Path(a))["compile_seconds"])
            times["cold, one compile thread"].append(compile_once(data, Path(b), threads=1)["compile_seconds"])
            times["cold, new machine"].append(compile_once(data, Path(c), tmpdir=Path(t))["compile_seconds"])
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", choices=DATA, default=list(DATA))
    ap.add_argument("--rounds", type=int, default=1 if _bench.smoke() else 3)
    a = ap.parse_args(argv)
    print(_bench.machine(), flush=True)
    for data in a.data:
        for contender, secs in rounds(data, a.rounds).items():
            m = _bench.measurement(group=f"compile: {data} WGAN-GP step, default recipe", contender=contender,
                                   precision="bf16", shapes="preset models", unit="compile", units=1.0, warmup=0,
                                   round_seconds=secs, baseline=contender == "cold")
            _bench.append(SUITE, m)
            print(f"{data:12s} {contender:28s} " + " ".join(f"{s:.1f}s" for s in secs), flush=True)
    print(f"results: {_bench.results_dir()}", flush=True)


if __name__ == "__main__":
    main()
