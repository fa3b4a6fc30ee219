"""Whole training iterations: fastwgan against the textbook PyTorch loop, same run, same CPU.

Unit: one generator iteration (= 5 critic updates + 1 generator update). Contenders per group:

* textbook: gan_toy's loop (benchmarks/_textbook.py): ``autograd.grad(create_graph=True)``,
  ``.backward()``, torch.optim, ``.item()`` every critic step;
* ``fastwgan.train`` (eager): fused penalty kernels, pruned double backward, no per-step sync;
* the static step (fastwgan.static_step, what ``train(compile=True)`` runs), compiled with
  ``fullgraph=True``, staged and called exactly as the trainer does; compile time excluded (its
  warm-up round compiles). fp32, and bf16 autocast (fp32 weights and optimizer state).

Groups: WGAN-GP and WGAN (clipping, RMSprop) on gan_toy's MLPs (width 512, batch 256), and WGAN-GP
on DCGAN-32 (LayerNorm critic, batch 64, lambda 10). Final quality at equal steps and the scaling
with batch and width are measured by benchmarks/end_to_end.py (minutes per point).

    pytest benchmarks/test_train_loop.py --benchmark-only
"""
from __future__ import annotations

import pytest
import torch

import fastwgan
from fastwgan.data import as_data_source
from fastwgan.models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator
from fastwgan.ops.activations import with_torch_activations

from _bench import record, static_step
from _textbook import TextbookLoop

ITERS = 10  # generator iterations per timed round
CASES = {
    # group: (loss, batch, lam, lr, data, z_dim)
    "wgan-gp toy MLP (gen it)": ("wgan-gp", 256, 0.1, 1e-4, "8gaussians", 2),
    "wgan toy MLP (gen it)": ("wgan", 256, 0.0, 5e-5, "8gaussians", 2),
    "wgan-gp DCGAN-32 (gen it)": ("wgan-gp", 64, 10.0, 1e-4, "images", 100),
}


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(512, 3, 32, 32, generator=g) * 2 - 1  # any images do: only speed is measured


def _models(group: str):
    torch.manual_seed(0)
    if "DCGAN" in group:
        return DCGANGenerator(z_dim=100, img_size=32, channels=3), DCGANCritic(img_size=32, channels=3, norm="layer")
    return MLPGenerator(z_dim=2, width=512), MLPCritic(in_dim=2, width=512)


def _data(group: str):
    return _images() if "DCGAN" in group else "8gaussians"


@pytest.mark.parametrize("group", list(CASES))
def test_textbook_loop(benchmark, group):
    loss, batch, lam, lr, _, z_dim = CASES[group]
    G, D = (with_torch_activations(m) for m in _models(group))
    source = as_data_source(_data(group), batch_size=batch, seed=0)
    loop = TextbookLoop(G, D, lambda n: source.next_batch(n)[0], z_dim=z_dim, batch=batch, lam=lam, lr=lr,
                        clip=0.01 if loss == "wgan" else None)
    benchmark.pedantic(loop.run, args=(ITERS,), rounds=3, warmup_rounds=1)
    record(benchmark, group, "textbook loop", units=ITERS, baseline=True)


@pytest.mark.parametrize("group", list(CASES))
def test_fastwgan_train_eager(benchmark, group):
    loss, batch, lam, lr, _, _ = CASES[group]
    G, D = _models(group)

    def run():
        return fastwgan.train(G, D, _data(group), loss=loss, steps=ITERS, batch_size=batch, lam=lam or None,
                              lr=lr, progress=False, eval_samples=0, device="cpu", compile=False)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    record(benchmark, group, "fastwgan.train eager", units=ITERS)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("group", list(CASES))
def test_fastwgan_static_step_compiled(benchmark, group, precision):
    """The trainer's compiled step, staged from the data stream and called per iteration."""
    loss, batch, lam, lr, _, z_dim = CASES[group]
    G, D = _models(group)
    source = as_data_source(_data(group), batch_size=batch, seed=0)
    st = static_step(G, D, source, loss=loss, batch=batch, lam=lam, lr=lr, z_dim=z_dim, precision=precision)

    def run():
        out = []
        for _ in range(ITERS):
            st.stage(source)
            out.append(st())
        return torch.stack(out).sum().item()  # one host read per round, as at a log point

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    record(benchmark, group, f"static step compiled {precision}", units=ITERS)
    benchmark.extra_info["compile_seconds"] = st.compile_seconds


@pytest.mark.parametrize("group", ["wgan-gp toy MLP (gen it)"])
def test_fastwgan_train_eager_bf16(benchmark, group):
    loss, batch, lam, lr, _, _ = CASES[group]
    G, D = _models(group)

    def run():
        return fastwgan.train(G, D, _data(group), loss=loss, steps=ITERS, batch_size=batch, lam=lam, lr=lr,
                              progress=False, eval_samples=0, device="cpu", compile=False, precision="bf16")

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    record(benchmark, group, "fastwgan.train eager bf16", units=ITERS)
