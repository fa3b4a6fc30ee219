"""End-to-end figures that take minutes, not a pytest-benchmark round: final quality at equal steps,
and wall time to quality. Results go to benchmarks/RESULTS.md by hand, with the command.

    # final W1 on 8gaussians at the preset's settings, one line per (loop, seed)
    python benchmarks/end_to_end.py quality --loop textbook --seeds 0 1 2
    python benchmarks/end_to_end.py quality --loop fastwgan --precision bf16 --compile --seeds 0 1 2
    # wall time until 25gaussians shows all 25 modes (evaluated every 250 steps)
    python benchmarks/end_to_end.py ttq --loop textbook
    python benchmarks/end_to_end.py ttq --loop fastwgan --precision bf16 --compile

Both loops use the preset's models and settings (MLP width 256, batch 256, lambda 1, Adam 2e-4,
betas (0.5, 0.9), linear decay to 0 over the preset's steps, 5 critic steps), the same data
stream and the same evaluation (fastwgan.trainer.evaluate: W1 by POT over 2000 vs 2000 samples,
mean of 5 draws at the end; modes within 3 std). Only the training machinery differs. Training
time excludes evaluation for both; fastwgan's compile time is reported apart and added to its
time to quality.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import fastwgan  # noqa: E402
from fastwgan.data import as_data_source  # noqa: E402
from fastwgan.presets import PRESETS  # noqa: E402
from fastwgan.trainer import FINAL_EVAL_REPEATS, _IsolatedRNG, evaluate  # noqa: E402

from _textbook import TextbookLoop  # noqa: E402

SETTINGS = dict(batch=256, lam=1.0, lr=2e-4, betas=(0.5, 0.9), n_critic=5)


def _textbook(data: str, seed: int, steps: int, eval_every: int, stop_at_all_modes: bool) -> dict:
    torch.manual_seed(seed)
    source = as_data_source(data, batch_size=SETTINGS["batch"], seed=seed)
    G, D = PRESETS[data].models(2, 0)
    G, D = _torch_activations(G), _torch_activations(D)  # the textbook models: torch.nn's activations
    loop = TextbookLoop(G, D, lambda n: source.next_batch(n)[0], total_steps=steps, **SETTINGS)
    t_train, evals = 0.0, []
    while loop.step < steps:
        t = time.perf_counter()
        loop.run(eval_every)
        t_train += time.perf_counter() - t
        last = loop.step >= steps
        with _IsolatedRNG(source):
            ev = evaluate(G, source, 2, 2000, torch.device("cpu"), repeats=FINAL_EVAL_REPEATS if last else 1)
        evals.append(dict(step=loop.step, time=t_train, **ev))
        print(json.dumps(evals[-1]), flush=True)
        if stop_at_all_modes and ev.get("modes_covered") == ev.get("n_modes"):
            break
    return dict(loop="textbook", seed=seed, steps=loop.step, train_seconds=t_train, final=evals[-1], evals=evals)


def _torch_activations(m):
    from fastwgan.ops.activations import with_torch_activations

    return with_torch_activations(m)


def _fastwgan(data: str, seed: int, steps: int, eval_every: int, precision: str, compile: bool) -> dict:
    torch.manual_seed(seed)
    r = fastwgan.train(None, None, data, steps=steps, seed=seed, eval_every=eval_every, log_every=eval_every,
                       precision=precision, compile=compile, progress=False, device="cpu")
    times = {h["step"]: h["time"] for h in r.history}
    evals = [dict(e, time=times.get(e["step"])) for e in r.evals]
    for e in evals:
        print(json.dumps(e), flush=True)
    return dict(loop=f"fastwgan {r.step_mode} {precision}", seed=seed, steps=steps, train_seconds=r.train_seconds,
                compile_seconds=r.compile_seconds, final=evals[-1], evals=evals)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("quality", "ttq"))
    ap.add_argument("--loop", choices=("textbook", "fastwgan"), required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    data = "8gaussians" if a.what == "quality" else "25gaussians"
    steps = a.steps or PRESETS[data].steps
    every = 500 if a.what == "quality" else 250
    for seed in a.seeds:
        if a.loop == "textbook":
            res = _textbook(data, seed, steps, every, stop_at_all_modes=a.what == "ttq")
        else:
            res = _fastwgan(data, seed, steps, every, a.precision, a.compile)
        if a.what == "ttq":
            first = next((e for e in res["evals"] if e.get("modes_covered") == e.get("n_modes")), None)
            res["time_to_all_modes"] = None if first is None else first["time"] + res.get("compile_seconds", 0.0)
            res["step_all_modes"] = None if first is None else first["step"]
        res.pop("evals")
        res["threads"] = torch.get_num_threads()
        res["torch"] = torch.__version__
        print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
