"""Whole training iterations at equal precision: fastwgan against the textbook PyTorch loop.

    python benchmarks/train_loop.py                   # every group and contender (about 15 minutes)
    FASTWGAN_BENCH_SMOKE=1 python benchmarks/train_loop.py   # tiny sizes: checks it runs (not a measurement)
    python benchmarks/train_loop.py --scaling         # WGAN-GP over batch 64-1024 and width 128-1024 (about 25 minutes)
    python benchmarks/report.py                       # regenerate benchmarks/RESULTS.md

Unit: one generator iteration (5 critic updates + 1 generator update). Groups: WGAN-GP and WGAN
(weight clipping, RMSprop) on gan_toy's MLPs (width 512, batch 256), and WGAN-GP on DCGAN-32
(LayerNorm critic, batch 64, lambda 10). Contenders, each in fp32 and in bf16:

* textbook: gan_toy's loop (benchmarks/_textbook.py: ``autograd.grad(create_graph=True)``,
  ``.backward()``, torch.optim, ``.item()`` every critic step, torch.nn activations); its bf16 is
  PyTorch's AMP recipe, a fresh ``torch.autocast("cpu", dtype=torch.bfloat16)`` around each step's
  forwards, what a user tries first;
* fastwgan eager: ``fastwgan.train(compile=False, precision=...)``;
* fastwgan compiled: ``fastwgan.train(compile=True, precision=...)``. Its compile time is
  recorded apart (``TrainResult.compile_seconds``), on a fresh inductor cache unless
  ``--warm-cache`` (then PyTorch's cache in the user's folder).
* jax.jit (WGAN-GP groups; needs ``pip install "fastwgan[bench-jax]"``, skipped with the reason
  printed otherwise): the same iteration as one ``jax.jit`` program (benchmarks/jax_loop.py:
  ``lax.fori_loop`` over the critic steps, optax Adam, the same models from the same initial
  weights, its draws made inside the program); bf16 there is fp32 master weights with the
  parameters cast to bf16 in the forward. Its compile time (ahead of time, before the first
  round) is recorded apart like fastwgan's. XLA sizes its own thread pool (all cores);
  ``--threads`` sets torch's only.

Every contender runs ``warmup + rounds`` rounds of ``iters`` generator iterations in one run; the
round times come from ``TrainResult.history`` (the trainer's own training clock, without set-up,
compiling or evaluation) for fastwgan and from ``time.perf_counter`` around the loop for the
textbook and jax.jit (blocking on its results at each round end), and go through the one harness
(benchmarks/_bench.py) into benchmarks/results/train_loop.jsonl. Ratios are formed by report.py, only between contenders of
the same precision; what bf16 buys is its own table.
"""
from __future__ import annotations

import os
import sys
import tempfile

if __name__ == "__main__" and "--warm-cache" not in sys.argv:
    # a cold compile by default; set before torch is imported, as inductor reads its cache folder from here
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="fastwgan-bench-inductor-"))

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

import fastwgan  # noqa: E402
from fastwgan.data import as_data_source  # noqa: E402
from fastwgan.models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator  # noqa: E402
from fastwgan.ops.activations import with_torch_activations  # noqa: E402

import _bench  # noqa: E402
from _textbook import TextbookLoop  # noqa: E402

SUITE = "train_loop"
UNIT = "generator iteration"


@dataclass(frozen=True)
class Group:
    loss: str
    batch: int
    lr: float
    lam: float = 0.0
    betas: tuple[float, float] = (0.5, 0.9)
    clip: float | None = None
    model: str = "mlp"  # "mlp" (gan_toy's, 2-D data) or "dcgan32"
    width: int = 512  # MLP hidden units
    ndf: int = 64  # DCGAN base channels (generator and critic)
    img: int = 32  # DCGAN image side
    iters: int = 5  # generator iterations per round
    rounds: int = 5
    warmup: int = 1

    @property
    def z_dim(self) -> int:
        return 2 if self.model == "mlp" else 100

    def shapes(self) -> str:
        if self.model == "mlp":
            return f"MLP 2-{self.width}x3, batch {self.batch}"
        return f"DCGAN-32 (LayerNorm critic), batch {self.batch}"


GROUPS = {
    "WGAN-GP toy MLP": Group("wgan-gp", batch=256, lr=1e-4, lam=0.1, rounds=7),
    "WGAN toy MLP": Group("wgan", batch=256, lr=5e-5, clip=0.01, rounds=7),
    "WGAN-GP DCGAN-32": Group("wgan-gp", batch=64, lr=1e-4, lam=10.0, betas=(0.0, 0.9), model="dcgan32", iters=2),
}
# --scaling: how the cost grows with the batch (width 512) and the width (batch 256), gan_toy's WGAN-GP
SCALING = {f"WGAN-GP toy MLP b{b} w{w}": replace(GROUPS["WGAN-GP toy MLP"], batch=b, width=w, rounds=5)
           for b, w in ((64, 512), (128, 512), (512, 512), (1024, 512), (256, 128), (256, 256), (256, 1024))}
CONTENDERS = ("textbook", "fastwgan eager", "fastwgan compiled", "jax.jit")
PRECISIONS = ("fp32", "bf16")


def smoke_size(g: Group) -> Group:
    return replace(g, batch=8, width=16, ndf=8, img=16, iters=1, rounds=2, warmup=1)


def models(g: Group):
    torch.manual_seed(0)
    if g.model == "mlp":
        return MLPGenerator(z_dim=2, width=g.width), MLPCritic(in_dim=2, width=g.width)
    return (DCGANGenerator(z_dim=100, img_size=g.img, channels=3, ngf=g.ndf),
            DCGANCritic(img_size=g.img, channels=3, ndf=g.ndf, norm="layer"))


def data(g: Group):
    if g.model == "mlp":
        return "8gaussians"
    gen = torch.Generator().manual_seed(0)
    return torch.rand(max(512, 4 * g.batch), 3, g.img, g.img, generator=gen) * 2 - 1  # only speed is measured


def run_textbook(g: Group, precision: str) -> tuple[list[float], dict]:
    """Cumulative training seconds at the end of each round."""
    G, D = (with_torch_activations(m) for m in models(g))
    source = as_data_source(data(g), batch_size=g.batch, seed=0)
    # bf16: the loop opens a fresh autocast context per step (benchmarks/_textbook.py); one context
    # around the rounds would keep the first bf16 copy of every weight (autocast's cast cache)
    loop = TextbookLoop(G, D, lambda n: source.next_batch(n)[0], z_dim=g.z_dim, batch=g.batch, lam=g.lam,
                        lr=g.lr, betas=g.betas, clip=g.clip, precision=precision)
    stamps, t0 = [], time.perf_counter()
    for _ in range(g.warmup + g.rounds):
        loop.run(g.iters)
        stamps.append(time.perf_counter() - t0)
    return stamps, {}


def run_fastwgan(g: Group, precision: str, compile: bool) -> tuple[list[float], dict]:
    """The trainer's own training clock at the end of each round (set-up and compile excluded)."""
    G, D = models(g)
    steps = (g.warmup + g.rounds) * g.iters
    settings = dict(lam=g.lam) if g.loss == "wgan-gp" else dict(clip=g.clip)
    if g.loss == "wgan-gp":
        settings["betas"] = g.betas
    r = fastwgan.train(G, D, data(g), loss=g.loss, steps=steps, batch_size=g.batch, lr=g.lr, n_critic=5,
                       lr_decay="none", z_dim=g.z_dim, log_every=g.iters, eval_samples=0, progress=False,
                       plots=False, device="cpu", seed=0, compile=compile, precision=precision, **settings)
    stamps = [h["time"] for h in r.history if h["step"] % g.iters == 0]
    if len(stamps) != g.warmup + g.rounds:
        raise RuntimeError(f"expected {g.warmup + g.rounds} round ends in TrainResult.history, got {len(stamps)}")
    info = dict(step_mode=r.step_mode)
    if compile:
        info.update(compile_seconds=round(r.compile_seconds, 2), inductor_cache=os.environ.get(
                        "TORCHINDUCTOR_CACHE_DIR", "PyTorch's default (user's folder)"))
    return stamps, info


def jax_skip_reason(g: Group) -> str | None:
    """Why the jax.jit contender cannot run ``g`` here (None: it can)."""
    if g.loss != "wgan-gp":
        return "jax.jit is written for the WGAN-GP groups only"
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError as e:
        return f"jax.jit skipped: {e.name or 'jax'} is not installed (pip install \"fastwgan[bench-jax]\")"
    return None


def run_jax(g: Group, precision: str) -> tuple[list[float], dict]:
    """Cumulative seconds at round ends (compile excluded: ahead of time, before the first round)."""
    import jax_loop

    G, D = models(g)  # the same initial weights as the torch contenders, copied
    images = None if g.model == "mlp" else data(g).permute(0, 2, 3, 1).contiguous().numpy()  # NHWC
    return jax_loop.run(G, D, model=g.model, batch=g.batch, z_dim=g.z_dim, lam=g.lam, lr=g.lr, betas=g.betas,
                        precision=precision, data=images, iters=g.iters, rounds=g.warmup + g.rounds)


def measure(name: str, g: Group, contender: str, precision: str, suite: str = SUITE) -> dict:
    if contender == "textbook":
        stamps, info = run_textbook(g, precision)
    elif contender == "jax.jit":
        stamps, info = run_jax(g, precision)
    else:
        stamps, info = run_fastwgan(g, precision, compile=contender.endswith("compiled"))
    m = _bench.measurement(group=name, contender=contender, precision=precision, shapes=g.shapes(), unit=UNIT,
                           units=g.iters, warmup=g.warmup, round_seconds=_bench.rounds_from_stamps(stamps, g.warmup),
                           baseline=contender == "textbook", loss=g.loss, **info)
    _bench.append(suite, m)
    extra = (f"  compile {info['compile_seconds']:.1f} s ({info.get('step_mode', 'XLA')})"
             if "compile_seconds" in info else "")
    print(f"{name:18s} {contender:18s} {precision}  {m['median_s'] * 1e3:8.1f} ms/it "
          f"(min {m['min_s'] * 1e3:.1f}, max {m['max_s'] * 1e3:.1f}, {m['rounds']} rounds){extra}", flush=True)
    return m


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", nargs="+", choices=list(GROUPS) + list(SCALING), default=None)
    ap.add_argument("--scaling", action="store_true", help="the batch / width sweep instead of the main groups")
    ap.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=None,
                    help="default: all (--scaling: all but jax.jit, which it runs only when named)")
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--warm-cache", action="store_true", help="compile with PyTorch's cache in the user's folder")
    ap.add_argument("--iters", type=int, default=None, help="generator iterations per round (default: the group's)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="timed rounds (default: the group's; e.g. jax.jit on DCGAN-32 takes ~47 s per iteration)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(_bench.machine(), flush=True)
    out, known = [], {**GROUPS, **SCALING}
    suite = SUITE + "_scaling" if a.scaling else SUITE
    contenders = a.contenders or [c for c in CONTENDERS if not (a.scaling and c == "jax.jit")]
    for name in a.groups or list(SCALING if a.scaling else GROUPS):
        g = smoke_size(known[name]) if _bench.smoke() else known[name]
        g = replace(g, iters=a.iters or g.iters, rounds=a.rounds or g.rounds)
        for contender in contenders:
            reason = jax_skip_reason(g) if contender == "jax.jit" else None
            if reason:
                print(f"{name:18s} {reason}", flush=True)
                continue
            for precision in a.precisions:
                out.append(measure(name, g, contender, precision, suite))
    print(f"results: {_bench.results_dir() / (suite + '.jsonl')}", flush=True)
    return out


if __name__ == "__main__":
    main()
