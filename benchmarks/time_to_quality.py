"""Time to quality: how long until the samples are good, per contender, over seeds.

    python benchmarks/time_to_quality.py                      # both criteria, 4 contenders, seeds 0 1 2 (~1.5 h)
    python benchmarks/time_to_quality.py --criteria 25gaussians --contenders "textbook fp32" "fastwgan fastest"
    FASTWGAN_BENCH_SMOKE=1 python benchmarks/time_to_quality.py --seeds 0   # tiny: checks it runs
    python benchmarks/time_to_quality.py --to-end --criteria 8gaussians   # and the final W1 at the full budget
    python benchmarks/report.py                               # the table in benchmarks/RESULTS.md

Each contender trains until its generator meets the criterion at an evaluation (every ``--every``
generator steps) or the step budget ends. Criteria (evaluated on ``n`` = 2000 generated samples):

* 8gaussians: 8/8 modes covered, >= 80% high-quality samples (within 3 std of a center), and W1
  (mean over 3 draws of 2000 generated vs 2000 real samples) <= 1.5x the finite-sample floor
  (``fastwgan.metrics.real_floor_w1``: W1 between two real sets of 2000, mean over 5 seeds);
* 25gaussians: 25/25 modes covered and >= 70% high-quality samples.

The MNIST criterion (FD <= 3x its floor with 10/10 classes, and the 10x / 5x milestones on the
way) is read off whole FD curves by benchmarks/mnist_quality.py, with the same clock rules.

Contenders, all with the same models (gan_toy's MLPs at width 256): the textbook loop
(benchmarks/_textbook.py) in fp32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``, and
``fastwgan.train`` in fp32 (eager), all three on the textbook recipe (batch 256, lambda 1, Adam 2e-4
with betas (0.5, 0.9) decaying linearly to 0 over the criterion's budget, 5 critic steps); and
"fastwgan fastest": ``fastwgan.train`` with its defaults (the preset's fast recipe, precision and
compile "auto"). "fastwgan fast, eager" / "fast, compiled" (``--contenders``) pin compile either
way: the rows behind compile="auto"'s choice.

Time to quality = wall time from the contender's start (fastwgan: the call of ``fastwgan.train``,
so set-up and compiling are included) to the evaluation that meets the criterion, minus the time
spent evaluating. Every run is its own process. A compiling contender's runs share one inductor
cache of their own that a compile-only probe (a fresh process on a fresh cache) fills first: the
runs report the warm-cache time; the cold-cache time is the same run with its compile time replaced
by the probe's. Results: benchmarks/results/time_to_quality.jsonl (benchmarks/_bench.py); with
``--to-end`` (every run goes on to the full budget and also records its final W1 over 5 draws: the
quality at equal steps) time_to_quality_to_end.jsonl.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import fastwgan  # noqa: E402
from fastwgan import metrics  # noqa: E402
from fastwgan.data import as_data_source, toy_centers, toy_sample, toy_std  # noqa: E402
from fastwgan.models import MLPCritic, MLPGenerator  # noqa: E402
from fastwgan.ops.activations import with_torch_activations  # noqa: E402

import _bench  # noqa: E402
from _textbook import TextbookLoop  # noqa: E402

SUITE = "time_to_quality"
SETTINGS = dict(batch=256, lam=1.0, lr=2e-4, betas=(0.5, 0.9), n_critic=5, width=256)


@dataclass(frozen=True)
class Criterion:
    modes: int
    high_quality: float
    w1_factor: float | None  # W1 <= factor x floor; None: no W1 condition
    steps: int  # budget (and the length of the learning-rate decay)

    def text(self) -> str:
        w1 = f", W1 <= {self.w1_factor}x floor" if self.w1_factor else ""
        return f"{self.modes}/{self.modes} modes, >= {self.high_quality:.0%} high quality{w1}"


CRITERIA = {
    "8gaussians": Criterion(modes=8, high_quality=0.80, w1_factor=1.5, steps=5000),
    "25gaussians": Criterion(modes=25, high_quality=0.70, w1_factor=None, steps=10000),
}


@dataclass(frozen=True)
class Contender:
    """``loop``: "textbook" (benchmarks/_textbook.py, under autocast for bf16) or "fastwgan";
    ``recipe``: "textbook" (SETTINGS, the criterion's budget) or "fast" (the preset's default);
    ``train``: further fastwgan.train settings (precision, compile: else "auto")."""

    loop: str
    recipe: str
    precision: str = "auto"
    train: tuple = ()


CONTENDERS = {
    "textbook fp32": Contender("textbook", "textbook", "fp32"),
    "textbook bf16": Contender("textbook", "textbook", "bf16"),
    "fastwgan fp32": Contender("fastwgan", "textbook", "fp32", (("compile", False),)),
    "fastwgan fastest": Contender("fastwgan", "fast"),  # the defaults: fast recipe, precision and compile "auto"
    "fastwgan fast, eager": Contender("fastwgan", "fast", "auto", (("compile", False),)),
    "fastwgan fast, compiled": Contender("fastwgan", "fast", "auto", (("compile", True),)),
}
DEFAULT_CONTENDERS = ("textbook fp32", "textbook bf16", "fastwgan fp32", "fastwgan fastest")


def custom_contender(settings_json: str) -> Contender:
    """"fastwgan custom": the fast recipe with further train() settings (``--custom JSON``): how
    a candidate recipe is tried before it goes into a preset."""
    extra = json.loads(settings_json)
    if not isinstance(extra, dict):
        raise SystemExit(f"--custom takes a JSON object of fastwgan.train settings, got {settings_json!r}")
    return Contender("fastwgan", "fast", extra.pop("precision", "auto"), tuple(sorted(extra.items())))


def settings() -> dict:
    """SETTINGS, or tiny ones for a smoke run (FASTWGAN_BENCH_SMOKE)."""
    return {**SETTINGS, "batch": 32, "width": 16} if _bench.smoke() else SETTINGS


def criteria() -> dict[str, Criterion]:
    """CRITERIA, or for a smoke run criteria any generator meets (every path of the harness runs)."""
    if not _bench.smoke():
        return CRITERIA
    return {n: dataclasses.replace(c, modes=0, high_quality=0.0, w1_factor=c.w1_factor and 1e3, steps=20)
            for n, c in CRITERIA.items()}


EVAL_N, W1_DRAWS, FINAL_DRAWS, FLOOR_SEEDS = 2000, 3, 5, 5


# ------------------------------------------------------------------------------------------------
# evaluation (the same for every contender; its time is excluded)
# ------------------------------------------------------------------------------------------------
class Evaluator:
    """``on_eval(step, generator, metrics) -> bool``: evaluate, log, and say whether the criterion holds.

    Draws from its own generator (seeded by the step), so evaluating never moves a training stream.
    Keeps the clock: ``training_seconds`` = wall time since ``start()`` minus evaluation time."""

    def __init__(self, name: str, crit: Criterion, floor: float, n: int = EVAL_N,
                 final_step: int | None = None) -> None:
        self.name, self.crit, self.floor, self.n = name, crit, floor, n
        self.final_step = final_step  # with --to-end: never stop; W1 over FINAL_DRAWS draws at this step
        self.evals: list[dict] = []
        self.t0 = time.perf_counter()
        self.eval_seconds = 0.0

    def start(self) -> None:
        self.t0, self.eval_seconds = time.perf_counter(), 0.0

    def on_eval(self, step: int, generator: torch.nn.Module, _metrics: dict | None = None) -> bool:
        t = time.perf_counter()
        rec = dict(step=int(step), seconds=t - self.t0 - self.eval_seconds, **self.measure(step, generator))
        self.evals.append(rec)
        self.eval_seconds += time.perf_counter() - t
        print(json.dumps(rec), flush=True)
        return rec["reached"] and self.final_step is None

    @torch.no_grad()
    def measure(self, step: int, generator: torch.nn.Module) -> dict:
        g = torch.Generator().manual_seed(10_000 + int(step))
        draws = FINAL_DRAWS if step == self.final_step else W1_DRAWS
        was = generator.training
        generator.eval()
        try:
            with torch.autocast("cpu", enabled=False):
                fakes = [generator(torch.randn(self.n, 2, generator=g)).float() for _ in range(draws)]
        finally:
            generator.train(was)
        stats = metrics.mode_stats(fakes[0], toy_centers(self.name), toy_std(self.name))
        out = dict(modes=stats["modes_covered"], high_quality=stats["high_quality"])
        ok = stats["modes_covered"] >= self.crit.modes and stats["high_quality"] >= self.crit.high_quality
        if ok and self.crit.w1_factor:  # W1 only where it can decide (it costs seconds per draw)
            w1 = statistics.mean(metrics.wasserstein1(f, toy_sample(self.name, self.n, g)) for f in fakes[:W1_DRAWS])
            out.update(w1=w1, w1_limit=self.crit.w1_factor * self.floor)
            ok = w1 <= self.crit.w1_factor * self.floor
        out["reached"] = bool(ok)
        if step == self.final_step:  # quality at equal steps: W1 averaged over more draws, spread reported
            w1s = [metrics.wasserstein1(f, toy_sample(self.name, self.n, g)) for f in fakes]
            out.update(final_w1=statistics.mean(w1s), final_w1_std=statistics.pstdev(w1s))
        return out


@functools.lru_cache(maxsize=None)
def floor_w1(name: str, n: int = EVAL_N) -> float:
    """The finite-sample floor of W1 for ``n`` samples: mean over FLOOR_SEEDS pairs of real sets."""
    return statistics.mean(metrics.real_floor_w1(name, n, s) for s in range(FLOOR_SEEDS))


# ------------------------------------------------------------------------------------------------
# contenders
# ------------------------------------------------------------------------------------------------
def models(seed: int):
    width = settings()["width"]
    torch.manual_seed(seed)
    return MLPGenerator(z_dim=2, width=width), MLPCritic(in_dim=2, width=width)


def run_textbook(name: str, steps: int, precision: str, seed: int, every: int, ev: Evaluator) -> dict:
    G, D = (with_torch_activations(m) for m in models(seed))
    torch.manual_seed(seed)
    s = settings()
    source = as_data_source(name, batch_size=s["batch"], seed=seed)
    loop = TextbookLoop(G, D, lambda n: source.next_batch(n)[0], batch=s["batch"], lam=s["lam"], lr=s["lr"],
                        betas=s["betas"], n_critic=s["n_critic"], total_steps=steps, precision=precision)
    ev.start()
    while loop.step < steps:
        loop.run(min(every, steps - loop.step))
        if ev.on_eval(loop.step, G):
            break
    return {}


def train_settings(contender: Contender, steps: int, seed: int) -> dict:
    """fastwgan.train's settings for ``contender`` (no models, data or evaluation)."""
    s = settings()
    kw = dict(loss="wgan-gp", z_dim=2, seed=seed, device="cpu", progress=False, plots=False, eval_samples=0,
              recipe=contender.recipe, precision=contender.precision, **dict(contender.train))
    if contender.recipe == "textbook":  # the textbook loop's settings, spelled out
        kw.update(steps=steps, batch_size=s["batch"], lam=s["lam"], lr=s["lr"], betas=s["betas"],
                  n_critic=s["n_critic"], lr_decay="linear")
    elif _bench.smoke():  # the preset's fast recipe at smoke size
        kw.update(steps=steps, batch_size=s["batch"])
    return kw


def resolved(name: str, contender: Contender, steps: int):
    """The TrainConfig this contender's runs resolve to (budget, precision, compile), by the
    trainer's own rules."""
    from fastwgan.presets import builtin_preset
    from fastwgan.training.config import resolve
    from fastwgan.training.precision import resolve_precision

    kw = {k: v for k, v in train_settings(contender, steps, 0).items() if k != "device"}
    cfg = resolve(kw, builtin_preset(name))
    cfg.precision = resolve_precision(cfg.precision, torch.device("cpu"))
    return cfg


def compiles(name: str, contender: Contender, steps: int) -> bool:
    """Whether this contender's runs compile (compile=True, or "auto" by the trainer's own rule)."""
    from fastwgan.training.runner import static_wanted

    if contender.loop != "fastwgan":
        return False
    cfg = resolved(name, contender, steps)
    return static_wanted(cfg, torch.device("cpu"), cfg.steps)[0]


def run_fastwgan(name: str, contender: Contender, steps: int, seed: int, every: int, ev: Evaluator) -> dict:
    G, D = models(seed)
    kw = train_settings(contender, steps, seed)
    ev.start()
    r = fastwgan.train(G, D, name, eval_every=every, log_every=every, on_eval=ev.on_eval, **kw)
    return dict(compile_seconds=round(r.compile_seconds, 2), step_mode=r.step_mode, precision=r.config["precision"],
                budget_steps=r.config["steps"], n_critic=r.config["n_critic"], lr=r.config["lr"],
                lr_g=r.config["lr_g"] or r.config["lr"])


# ------------------------------------------------------------------------------------------------
# one run per process
# ------------------------------------------------------------------------------------------------
def one_run(name: str, contender: str, seed: int, every: int, floor: float, steps: int, to_end: bool = False) -> dict:
    c = CONTENDERS[contender]
    budget = steps if c.loop == "textbook" else resolved(name, c, steps).steps
    ev = Evaluator(name, criteria()[name], floor, final_step=budget if to_end else None)
    if c.loop == "textbook":
        info = dict(run_textbook(name, steps, c.precision, seed, every, ev), precision=c.precision, budget_steps=steps)
    else:
        info = run_fastwgan(name, c, steps, seed, every, ev)
    hit = next((e for e in ev.evals if e["reached"]), None)
    return dict(reached=hit is not None, step=hit["step"] if hit else None,
                seconds_warm=hit["seconds"] if hit else None, last=ev.evals[-1] if ev.evals else None,
                evals=len(ev.evals), **{k: v for k, v in ev.evals[-1].items() if k.startswith("final_")}, **info)


def compile_probe(name: str, contender: str, steps: int) -> float:
    """Compile seconds of ``contender``'s step in this process (its cache as given)."""
    G, D = models(0)
    kw = dict(train_settings(CONTENDERS[contender], steps, 0), steps=2, compile=True)
    r = fastwgan.train(G, D, name, **kw)
    if r.step_mode != "compiled":
        raise RuntimeError(f"the compile probe ran {r.step_mode!r}, not compiled: see the warning above")
    return r.compile_seconds


def _child(args: list[str], cache: str) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    p = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(next(line for line in reversed(p.stdout.splitlines()) if line.startswith("{")))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--criteria", nargs="+", choices=list(CRITERIA), default=list(CRITERIA))
    ap.add_argument("--contenders", nargs="+", choices=[*CONTENDERS, "fastwgan custom"],
                    default=list(DEFAULT_CONTENDERS))
    ap.add_argument("--custom", default="{}", metavar="JSON",
                    help='settings of the "fastwgan custom" contender, e.g. \'{"n_critic": 1, "lr_g": 2e-4}\'')
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--every", type=int, default=None, help="evaluate every N generator steps (default 250)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--to-end", action="store_true",
                    help="never stop early; also record the final W1 (5 draws) at the full budget")
    ap.add_argument("--one", nargs=3, metavar=("CRITERION", "CONTENDER", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("--probe", nargs=2, metavar=("CRITERION", "CONTENDER"), help=argparse.SUPPRESS)
    ap.add_argument("--floor", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    a.every = a.every or (5 if _bench.smoke() else 250)
    CONTENDERS["fastwgan custom"] = custom_contender(a.custom)
    crits = criteria()
    if a.one:  # child process: one run, one JSON line
        name, contender, seed = a.one
        print(json.dumps(one_run(name, contender, int(seed), a.every, a.floor, crits[name].steps, a.to_end)),
              flush=True)
        return []
    if a.probe:
        name, contender = a.probe
        print(json.dumps(dict(compile_seconds=compile_probe(name, contender, crits[name].steps))), flush=True)
        return []
    print(_bench.machine(), flush=True)
    threads = ["--threads", str(a.threads)] if a.threads else []
    out = []
    for name in a.criteria:
        crit, floor = crits[name], floor_w1(name)
        for contender in a.contenders:
            c = CONTENDERS[contender]
            with tempfile.TemporaryDirectory(prefix="fastwgan-ttq-inductor-") as cache:  # its own, fresh
                comp = compiles(name, c, crit.steps)
                cold = (_child(["--probe", name, contender, "--custom", a.custom, *threads], cache)["compile_seconds"]
                        if comp else None)
                for seed in a.seeds:
                    res = _child(["--one", name, contender, str(seed), "--every", str(a.every), "--custom", a.custom,
                                  "--floor", repr(floor), *threads, *(["--to-end"] if a.to_end else [])], cache)
                    if res["reached"]:
                        res["seconds_cold"] = res["seconds_warm"] - res.get("compile_seconds", 0.0) + (cold or 0.0)
                    if comp:
                        res["compile_seconds_cold"] = cold
                    label = contender
                    if contender == "fastwgan custom":  # each candidate recipe its own row
                        res["custom"] = json.loads(a.custom)
                        label = f"fastwgan custom {json.dumps(res['custom'], sort_keys=True)}"
                    m = dict(group=name, criterion=crit.text(), contender=label, seed=seed,
                             baseline=c.loop == "textbook", recipe=c.recipe, every=a.every, floor_w1=floor,
                             width=settings()["width"], **res)
                    _bench.append(SUITE + "_to_end" if a.to_end else SUITE, m)
                    out.append(m)
    print(f"results: {_bench.results_dir()}", flush=True)
    return out


if __name__ == "__main__":
    main()
