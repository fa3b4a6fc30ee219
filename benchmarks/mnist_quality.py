"""MNIST and Stacked MNIST quality: FD against step and wall time, per loss and contender.

    python benchmarks/mnist_quality.py                       # mnist: 3 losses x their contenders, seed 0
    python benchmarks/mnist_quality.py --losses wgan-gp --contenders "fastwgan fastest" --seeds 1 2
    python benchmarks/mnist_quality.py --losses wgan-gp --contenders "fastwgan fastest" --seeds 0 1 2 \\
        --steps 20000 --every 500                            # to the 3x criterion (its own table group)
    python benchmarks/mnist_quality.py --losses wgan-gp --contenders "fastwgan fastest" --cold-cache
    python benchmarks/mnist_quality.py --data stacked-mnist --contenders "fastwgan fastest" "real data" \\
        --steps 5000 --every 1250 --n 26000                  # modes counted on 26000 samples, as PacGAN
    python benchmarks/mnist_quality.py --folder --steps 500 --every 100    # the image-folder preset on PNGs
    python benchmarks/mnist_quality.py --models dcgan-example --losses ns-gan wgan-gp \
        --contenders "fastwgan fast, eager" --steps 2000 --every 250  # a user's PyTorch-example DCGAN-32
    python benchmarks/mnist_quality.py --plot                # the figures from the results file only
    FASTWGAN_BENCH_SMOKE=1 python benchmarks/mnist_quality.py --steps 4 --every 2   # checks it runs
    python benchmarks/report.py                              # the tables in benchmarks/RESULTS.md

Every run trains the same models for the same number of generator steps (``--steps``) and is
evaluated every ``--every`` steps on ``--n`` = 1000 generated digits drawn from the same noise for
every contender (``fastwgan.imagemetrics.image_metrics``): FD against the 1000 held-out digits
beside its floor (1000 training digits against the same held-out ones), classes covered and KL
(mnist), modes covered out of 1000 and KL (stacked-mnist). Evaluation time is excluded from the
clock; set-up and compiling are included. The time to quality is the first evaluation with FD <=
k x floor and 10/10 classes, for k in ``FD_FACTORS`` (3x is the criterion; 5x and 10x are the
milestones on the way, read off the same curve).

Contenders (mnist models: the WGAN-GP authors' gan_mnist.py generator and critic at the preset's
width, ``fastwgan.presets.MNIST_CPU_DIM``):

* "textbook fp32": the authors' own loop, plain PyTorch (benchmarks/_textbook_mnist.py), WGAN-GP only;
  "textbook bf16" (``--contenders``): the same loop under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
* "fastwgan fp32": ``fastwgan.train(..., recipe="textbook")``: the same recipe, fp32, eager;
* "fastwgan fastest": ``fastwgan.train`` with its defaults (the preset's fast recipe, precision and
  compile "auto"); "fastwgan fast, eager" (``--contenders``): the same with compile=False, the row
  behind compile="auto"'s choice. A compiling run uses fastwgan's compile cache in the user's
  folder (``fastwgan.cache``): the first run on a machine compiles cold, later ones find it warm (each run records its
  compile seconds);
* ``--models dcgan-example``: instead of the preset's models, the models a user brings from the
  PyTorch examples' DCGAN (dcgan/main.py, written from its architecture in tests/_user_models.py),
  at 32x32 (one upsampling stage fewer than its 64x64) and width ``--width``, passed unchanged to
  ``fastwgan.train`` with the training digits normalised to [-1, 1] as that example normalises its
  data (its generator ends in Tanh). ns-gan trains its sigmoid BatchNorm discriminator as it is
  (fastwgan recovers the logits); wgan-gp uses the critic of the same shape with LayerNorm
  (GroupNorm(1, C)) for BatchNorm and without the sigmoid. The recipe is the "mnist" preset's, as
  for the built-in rows (``mnist_recipe``: batch 50; wgan-gp: Adam betas (0.5, 0.9), lambda 10, and
  in the fast recipe one critic update at twice the generator's rate; ns-gan: DCGAN's Adam 2e-4,
  betas (0.5, 0.999)); noise (B, 100, 1, 1), inferred from the generator's first layer.
* "real data": no training; training digits (stacked: freshly stacked ones) measured as if generated,
  the reference every row is read against (its FD is the floor; its classes, modes and KL are what
  the classifier's own errors allow).

Runs are processes of their own, ``--jobs`` at a time, each pinned to one core with one thread
(``--threads``), so that two runs measure side by side on 2 cores under the same conditions.
Results: benchmarks/results/mnist_quality.jsonl (one line per run, with its whole curve); figures:
benchmarks/results/mnist_fd.png (FD against step and against wall time) and sample grids in
benchmarks/results/mnist_samples/.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import fastwgan  # noqa: E402
from fastwgan.imagemetrics import image_metrics  # noqa: E402
from fastwgan.presets import MNIST_CPU_DIM, MNIST_STEPS, MNIST_Z_DIM, image_folder_preset  # noqa: E402

import _bench  # noqa: E402

SUITE = "mnist_quality"
FD_FACTORS = (10, 5, 3)  # time to FD <= k x floor with every class covered; 3x is the criterion
LOSSES = ("wgan-gp", "wgan", "ns-gan")
CONTENDERS = ("textbook fp32", "textbook bf16", "fastwgan fp32", "fastwgan fastest", "fastwgan fast, eager",
              "real data")
DEFAULT_CONTENDERS = ("textbook fp32", "fastwgan fp32", "fastwgan fastest", "real data")
TEXTBOOK_LOSSES = ("wgan-gp",)  # the authors' loop exists for WGAN-GP only
EVAL_SEED = 10_000  # the evaluation noise: the same for every contender at a step


class Curve:
    """``on_eval(step, generator, metrics) -> False``: measure, log and keep one point of the curve.

    Keeps the clock: ``seconds`` = wall time since ``start()`` minus the time spent evaluating."""

    def __init__(self, data: str, n: int, z_dim: int | tuple[int, ...] = MNIST_Z_DIM,
                 value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        self.data, self.n, self.value_range = data, n, value_range
        self.z_shape = (z_dim,) if isinstance(z_dim, int) else tuple(z_dim)  # the noise's per-sample shape
        self.points: list[dict] = []
        self.start()

    def start(self) -> None:
        self.t0, self.eval_seconds = time.perf_counter(), 0.0

    def samples(self, generator: torch.nn.Module) -> torch.Tensor:
        g = torch.Generator().manual_seed(EVAL_SEED)
        was = generator.training
        generator.eval()
        try:
            with torch.no_grad(), torch.autocast("cpu", enabled=False):
                return generator(torch.randn(self.n, *self.z_shape, generator=g)).float()
        finally:
            generator.train(was)

    def on_eval(self, step: int, generator: torch.nn.Module, _metrics: dict | None = None) -> bool:
        t = time.perf_counter()
        m = image_metrics(self.samples(generator), "mnist" if self.data == "folder" else self.data,
                          data_range=self.value_range)
        point = dict(step=int(step), seconds=round(t - self.t0 - self.eval_seconds, 2),
                     **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()})
        self.points.append(point)
        self.eval_seconds += time.perf_counter() - t
        print(json.dumps(point), flush=True)
        return False


def first_reaching(points: list[dict], factor: float, data: str) -> dict | None:
    """The first point with FD <= factor x floor and every class (mnist) / the same for stacked
    (FD only: its modes are counted, not required)."""
    for p in points:
        classes_ok = data == "stacked-mnist" or p.get("classes_covered") == 10
        if classes_ok and p["fd"] <= factor * p["fd_floor"]:  # a NaN FD (diverged) is never <=
            return p
    return None


# ------------------------------------------------------------------------------------------------
# contenders
# ------------------------------------------------------------------------------------------------
def run_textbook(precision: str, steps: int, seed: int, every: int, curve: Curve) -> tuple[torch.nn.Module, dict]:
    from _textbook_mnist import TextbookMNISTLoop

    curve.start()
    loop = TextbookMNISTLoop(dim=MNIST_CPU_DIM, seed=seed, precision=precision)
    while loop.steps < steps:
        loop.run(min(every, steps - loop.steps))
        curve.on_eval(loop.steps, loop.G)
    return loop.G, dict(precision=precision, step_mode="textbook loop", n_critic=5)


DCGAN_EXAMPLE_NZ = 100  # the PyTorch example's noise size


def dcgan_example_models(loss: str, width: int, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The PyTorch example's DCGAN at 32x32 (see the module docstring): its sigmoid BatchNorm
    discriminator for the GAN losses, the same shape with LayerNorm and no sigmoid for WGAN-GP."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _user_models import ExampleDiscriminator, ExampleGenerator, dcgan_init

    torch.manual_seed(seed)
    G = ExampleGenerator(nz=DCGAN_EXAMPLE_NZ, ngf=width, nc=1, img_size=32)
    gan = loss in ("gan", "ns-gan")
    D = ExampleDiscriminator(ndf=width, nc=1, img_size=32, norm="batch" if gan else "layer", sigmoid=gan)
    G.apply(dcgan_init)
    D.apply(dcgan_init)
    return G, D


def mnist_recipe(loss: str, fast: bool) -> dict:
    """The "mnist" preset's settings for ``loss`` (its recipe, not its models): the built-in rows'
    recipe, for data passed as a tensor (which has no preset of its own)."""
    from fastwgan.presets import PRESETS

    p = PRESETS["mnist"]
    chosen = {**p.settings, **p.per_loss.get(loss, {}), **(p.fast.get(loss, {}) if fast else {})}
    chosen.pop("optimizer", None)  # derived from the loss, not a setting
    return chosen


def run_fastwgan(data: str, loss: str, contender: str, steps: int, seed: int, every: int,
                 curve: Curve, models: str = "preset", width: int = 64) -> tuple[torch.nn.Module, dict]:
    kw = dict(loss=loss, steps=steps, seed=seed, device="cpu", progress=False, plots=False, eval_samples=0,
              eval_every=every, log_every=every, on_eval=curve.on_eval)
    if contender == "fastwgan fp32":
        kw.update(recipe="textbook")
    elif contender == "fastwgan fast, eager":
        kw.update(compile=False)
    if _bench.smoke():
        kw.update(batch_size=8)
    G = D = None
    if models == "dcgan-example":
        from fastwgan.data.mnist import load_mnist

        G, D = dcgan_example_models(loss, width, seed)
        data = load_mnist("train", 32)[0] * 2 - 1  # as the example's Normalize((0.5,), (0.5,)) gives
        kw.update(mnist_recipe(loss, fast=contender != "fastwgan fp32"), **(dict(batch_size=8) if _bench.smoke() else {}))
    curve.start()
    r = fastwgan.train(G, D, data, **kw)
    c = r.config
    return r.generator, dict(precision=c["precision"], step_mode=r.step_mode,
                             compile_seconds=round(r.compile_seconds, 2),
                             n_critic=c["n_critic"], lr=c["lr"], lr_g=c["lr_g"] or c["lr"], batch_size=c["batch_size"],
                             recipe=c["recipe"], models=models, z_shape=list(r.z_shape),
                             **(dict(width=width) if models != "preset" else {}))


def write_folder(path: Path) -> Path:
    """The 4000 training digits as greyscale 32x32 PNGs (zero-padded by 2 pixels, like the
    built-in 32x32 digits, so the metrics' centre crop gives back the 28x28 digit)."""
    from PIL import Image

    from fastwgan.data.mnist import load_mnist

    x, _ = load_mnist("train", 32)
    path.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate((x[:, 0] * 255).round().to(torch.uint8)):
        Image.fromarray(img.numpy(), mode="L").save(path / f"{i:04d}.png")
    return path


def run_folder(steps: int, seed: int, every: int, curve: Curve) -> tuple[torch.nn.Module, dict]:
    """The image-folder preset (DCGAN-32, its own defaults) on a folder of the digits as PNGs."""
    with tempfile.TemporaryDirectory(prefix="fastwgan-mnist-png-") as tmp:
        folder = write_folder(Path(tmp) / "mnist_png")
        curve.start()
        r = fastwgan.train(None, None, str(folder), steps=steps, seed=seed, device="cpu", progress=False, plots=False,
                           eval_samples=0, eval_every=every, log_every=every, on_eval=curve.on_eval,
                           **(dict(batch_size=8) if _bench.smoke() else {}))
    c = r.config
    return r.generator, dict(precision=c["precision"], step_mode=r.step_mode, n_critic=c["n_critic"], lr=c["lr"],
                             batch_size=c["batch_size"], compile_seconds=round(r.compile_seconds, 2))


class RealData(torch.nn.Module):
    """A "generator" that ignores its noise and returns real training samples, the same for the
    same batch size (mnist: the first n training digits, n <= 4000; stacked: n freshly stacked)."""

    def __init__(self, data: str) -> None:
        super().__init__()
        self.data = data

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        from fastwgan.data.mnist import load_mnist, stacked_mnist_batch

        n = z.shape[0]
        if self.data == "stacked-mnist":
            return stacked_mnist_batch(n, torch.Generator().manual_seed(EVAL_SEED))[0]
        x = load_mnist("train", 28)[0]
        if n > x.shape[0]:
            raise SystemExit(f"real data: mnist has {x.shape[0]} training digits, asked for {n} (--n)")
        return x[:n]


def run_real(data: str, curve: Curve) -> tuple[torch.nn.Module, dict]:
    G = RealData(data)
    curve.start()
    curve.on_eval(1, G)
    return G, dict(precision="-", step_mode="no training")


def grid_name(data: str, loss: str, contender: str, steps: int = MNIST_STEPS, models: str = "preset") -> str:
    """The sample grid's file name (seed 0): textbook fp32 -> textbook_fp32, fast, eager -> fast_eager;
    a budget other than the preset's and models other than the preset's are in the name."""
    budget = "" if steps == MNIST_STEPS else f"_{steps}steps"
    own = "" if models == "preset" else f"_{models.replace('-', '_')}"
    return f"{data}_{loss}{own}{budget}_{re.sub(r'[^a-z0-9]+', '_', contender)}_seed0"


def save_grid(generator: torch.nn.Module, curve: Curve, name: str) -> str:
    from fastwgan.plots import save_image_grid

    x = curve.samples(generator)[:64]
    lo, hi = curve.value_range
    path = _bench.results_dir() / "mnist_samples" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(((x - lo) / (hi - lo)) * 2 - 1, str(path), nrow=8)  # the grid draws [-1, 1]
    return str(path.relative_to(_bench.results_dir()))  # where it lies beside the results file


def one_run(data: str, loss: str, contender: str, seed: int, steps: int, every: int, n: int,
            models: str = "preset", width: int = 64) -> dict:
    # the image-folder preset's noise size; a folder of images loads in [-1, 1]
    if data == "folder":
        curve = Curve(data, n, z_dim=image_folder_preset(32, 1).z_dim, value_range=(-1.0, 1.0))
    elif models == "dcgan-example":  # the example's (B, 100, 1, 1) noise, data in [-1, 1]
        curve = Curve(data, n, z_dim=(DCGAN_EXAMPLE_NZ, 1, 1), value_range=(-1.0, 1.0))
    else:
        curve = Curve(data, n)
    if data == "folder":
        G, info = run_folder(steps, seed, every, curve)
    elif contender == "real data":
        G, info = run_real(data, curve)
    elif contender.startswith("textbook"):
        G, info = run_textbook(contender.split()[1], steps, seed, every, curve)
    else:
        G, info = run_fastwgan(data, loss, contender, steps, seed, every, curve, models, width)
    grid = save_grid(G, curve, grid_name(data, loss, contender, steps, models)) if seed == 0 else None
    reached = {}
    for k in FD_FACTORS:
        p = first_reaching(curve.points, k, data)
        reached[f"fd_{k}x"] = dict(step=p["step"], seconds=p["seconds"]) if p else None
    return dict(points=curve.points, final=curve.points[-1], reached=reached, grid=grid, **info)


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def plot(results: Path | None = None) -> Path | None:
    """FD / floor against generator step and against wall time, one line per (loss, contender) of
    the newest mnist runs (seed 0 solid, other seeds faint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from report import newest_runs

    path = (results or _bench.results_dir()) / f"{SUITE}.jsonl"
    if not path.exists():
        return None
    rows = [r for _, rs in newest_runs(path) for r in rs if r["data"] == "mnist" and r["contender"] != "real data"]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colors: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: (r["loss"], r["contender"], r["seed"])):
        label = f"{r['group'].removeprefix('mnist ')}, {r['contender']}"
        color = colors.setdefault(label, f"C{len(colors)}")
        ratio = [p["fd"] / p["fd_floor"] for p in r["points"]]
        kw = dict(color=color, alpha=1.0 if r["seed"] == 0 else 0.3, label=label if r["seed"] == 0 else None)
        axes[0].plot([p["step"] for p in r["points"]], ratio, **kw)
        axes[1].plot([p["seconds"] for p in r["points"]], ratio, **kw)
    for ax, xlabel in zip(axes, ("generator step", "wall time (s, evaluation excluded)")):
        ax.set_yscale("log")
        ax.axhline(3, color="k", ls="--", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("FD / floor (1000 samples; dashed: the 3x criterion)")
    axes[1].legend(fontsize=7)
    fig.suptitle("MNIST: Frechet distance of the digit classifier's features, relative to the real-data floor")
    fig.tight_layout()
    out = path.parent / "mnist_fd.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------------
# one run per process
# ------------------------------------------------------------------------------------------------
def _child(args: list[str], core: int | None, cold_cache: bool = False) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    pin = ["taskset", "-c", str(core)] if core is not None and _has_taskset() else []
    with tempfile.TemporaryDirectory(prefix="fastwgan-mnist-inductor-") as cache:
        if cold_cache:  # a compile cache of its own, empty: the cold compile a first run on a machine pays
            env["TORCHINDUCTOR_CACHE_DIR"] = cache
        p = subprocess.run([*pin, sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(next(line for line in reversed(p.stdout.splitlines()) if line.startswith('{"points"')))


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def group_name(data: str, loss: str, contender: str, steps: int, models: str = "preset", width: int = 64) -> str:
    """The table group: data and loss, with the budget when it is not the preset's (a run to a
    longer budget is its own group, never mixed into the equal-steps comparison), and the models
    when they are not the preset's."""
    if contender == "real data":
        return f"{data}, real data"
    own = "" if models == "preset" else f", {models} models (width {width}, 32x32)"
    return f"{data} {loss}{own}" + ("" if steps == MNIST_STEPS else f", {steps} steps")


def plan(a: argparse.Namespace) -> list[tuple[str, str, str, int]]:
    if a.folder:
        return [("folder", "wgan-gp", "fastwgan fastest", s) for s in a.seeds]
    runs = [(a.data, loss, c, s) for loss in a.losses for c in a.contenders for s in a.seeds
            if c != "real data" and (not c.startswith("textbook") or (loss in TEXTBOOK_LOSSES and a.data == "mnist"
                                                                      and a.models == "preset"))]
    return runs + ([(a.data, "-", "real data", 0)] if "real data" in a.contenders else [])


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=("mnist", "stacked-mnist"), default="mnist")
    ap.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    ap.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(DEFAULT_CONTENDERS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=MNIST_STEPS, help="generator steps of every run (equal steps)")
    ap.add_argument("--every", type=int, default=250, help="evaluate every N generator steps")
    ap.add_argument("--n", type=int, default=1000, help="generated samples per evaluation")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at a time, one core each")
    ap.add_argument("--threads", type=int, default=1, help="threads per run")
    ap.add_argument("--folder", action="store_true", help="the image-folder preset on PNGs of the digits")
    ap.add_argument("--cold-cache", action="store_true",
                    help="every run compiles on an empty inductor cache of its own (rows labelled so)")
    ap.add_argument("--models", choices=("preset", "dcgan-example"), default="preset",
                    help="the preset's models, or a user's PyTorch-example DCGAN at 32x32 (module docstring)")
    ap.add_argument("--width", type=int, default=64, help="ngf = ndf of --models dcgan-example (the example: 64)")
    ap.add_argument("--plot", action="store_true", help="only draw the figures from the results file")
    ap.add_argument("--one", nargs=4, metavar=("DATA", "LOSS", "CONTENDER", "SEED"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.plot:
        print(f"wrote {plot()}")
        return []
    if a.one:  # child process: one run, one JSON line
        data, loss, contender, seed = a.one
        print(json.dumps(one_run(data, loss, contender, int(seed), a.steps, a.every, a.n, a.models, a.width)),
              flush=True)
        return []
    print(_bench.machine(), flush=True)
    runs = plan(a)
    common = ["--steps", str(a.steps), "--every", str(a.every), "--n", str(a.n), "--threads", str(a.threads),
              "--models", a.models, "--width", str(a.width)]

    append_lock = threading.Lock()  # one results line at a time (the first also writes the run line)
    free_cores: queue.Queue[int] = queue.Queue()
    for core in range(a.jobs):
        free_cores.put(core)

    def launch(run: tuple[str, str, str, int]) -> dict:
        data, loss, contender, seed = run
        core = free_cores.get()  # the core this run has to itself
        try:
            res = _child(["--one", data, loss, contender, str(seed), *common], core if a.jobs > 1 else None,
                         a.cold_cache)
        finally:
            free_cores.put(core)
        label = f"{contender}, cold compile cache" if a.cold_cache and res["step_mode"] == "compiled" else contender
        m = dict(group=group_name(data, loss, contender, a.steps, a.models, a.width), data=data, loss=loss, contender=label, seed=seed,
                 steps=a.steps,
                 every=a.every, n=a.n, threads=a.threads, jobs=a.jobs, baseline=contender.startswith("textbook"), **res)
        with append_lock:
            _bench.append(SUITE, m)
        f = m["final"]
        print(f"{data} {loss} {contender} seed {seed}: FD {f['fd']:.1f} (floor {f['fd_floor']:.1f}) at step "
              f"{f['step']}, {f['seconds']:.0f} s; reached {m['reached']}", flush=True)
        return m

    with ThreadPoolExecutor(max_workers=a.jobs) as pool:  # threads only wait on child processes
        out = list(pool.map(launch, runs))
    print(f"wrote {plot()}", flush=True)
    return out


if __name__ == "__main__":
    main()
