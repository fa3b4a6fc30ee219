"""End-to-end figures that take minutes, not a pytest-benchmark round: final quality at equal steps,
and wall time to quality. Results go to benchmarks/RESULTS.md by hand, with the command.

    # final W1 on 8gaussians at the preset's settings, one line per (loop, seed)
    python benchmarks/end_to_end.py quality --loop textbook --seeds 0 1 2
    python benchmarks/end_to_end.py quality --loop fastwgan --precision bf16 --compile --seeds 0 1 2
    # generator iterations per second against batch size and width (gan_toy's MLPs, WGAN-GP)
    python benchmarks/end_to_end.py scaling
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
from fastwgan.ops.activations import with_torch_activations  # noqa: E402
from fastwgan.presets import PRESETS  # noqa: E402
from fastwgan.trainer import FINAL_EVAL_REPEATS, _IsolatedRNG, evaluate  # noqa: E402

from _textbook import TextbookLoop  # noqa: E402

SETTINGS = dict(batch=256, lam=1.0, lr=2e-4, betas=(0.5, 0.9), n_critic=5)


def _textbook(data: str, seed: int, steps: int, eval_every: int, stop_at_all_modes: bool) -> dict:
    torch.manual_seed(seed)
    source = as_data_source(data, batch_size=SETTINGS["batch"], seed=seed)
    G, D = PRESETS[data].models(2, 0)
    G, D = with_torch_activations(G), with_torch_activations(D)  # the textbook models: torch.nn's activations
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


def _scaling(iters: int = 5) -> None:
    """it/s of the textbook loop, fastwgan.train eager (fp32, bf16) and the compiled static step
    (bf16) on gan_toy's WGAN-GP (MLP, lambda 0.1, Adam 1e-4), after one warm-up iteration each
    (which compiles); batch 64-1024 at width 512, width 128-1024 at batch 256."""
    from fastwgan.models import MLPCritic, MLPGenerator

    from _bench import static_step

    points = [(b, 512) for b in (64, 128, 256, 512, 1024)] + [(256, w) for w in (128, 256, 1024)]
    print(f"{'batch':>6} {'width':>6} {'textbook':>9} {'eager fp32':>11} {'eager bf16':>11} {'compiled bf16':>14}"
          f"  (generator it/s; speed-up vs textbook)")
    for batch, width in points:
        def models():
            torch.manual_seed(0)
            return MLPGenerator(z_dim=2, width=width), MLPCritic(in_dim=2, width=width)

        source = as_data_source("8gaussians", batch_size=batch, seed=0)
        G, D = (with_torch_activations(m) for m in models())
        loop = TextbookLoop(G, D, lambda n: source.next_batch(n)[0], batch=batch, lam=0.1, lr=1e-4)
        loop.run(1)
        t = time.perf_counter()
        loop.run(iters)
        rates = [iters / (time.perf_counter() - t)]
        for precision in ("fp32", "bf16"):
            G, D = models()
            r = fastwgan.train(G, D, "8gaussians", steps=iters + 1, batch_size=batch, lam=0.1, lr=1e-4,
                               betas=(0.5, 0.9), lr_decay="none", log_every=1, eval_samples=0, progress=False,
                               device="cpu", compile=False, precision=precision)
            rates.append(iters / (r.history[-1]["time"] - r.history[0]["time"]))
        G, D = models()
        st = static_step(G, D, source, loss="wgan-gp", batch=batch, lam=0.1, lr=1e-4, z_dim=2, precision="bf16")
        st.stage(source)
        st()
        t = time.perf_counter()
        for _ in range(iters):
            st.stage(source)
            v = st()
        v.sum().item()
        rates.append(iters / (time.perf_counter() - t))
        cells = "".join(f" {r:6.2f} ({r / rates[0]:.1f}x)" for r in rates[1:])
        print(f"{batch:6d} {width:6d} {rates[0]:9.2f}{cells}  compile {st.compile_seconds:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("quality", "ttq", "scaling"))
    ap.add_argument("--loop", choices=("textbook", "fastwgan"), default="fastwgan")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.what == "scaling":
        _scaling()
        return
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
