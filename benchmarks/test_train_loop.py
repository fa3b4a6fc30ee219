"""Whole training iterations: ``fastwgan.train`` vs gan_toy's textbook WGAN-GP loop, same run.

The textbook loop is the one of Gulrajani et al.'s gan_toy.py (WGAN-GP on 8 gaussians): an MLP
2-512-512-512 with ReLU for G and D, batch 256, Adam(1e-4, betas (0.5, 0.9)), lambda 0.1, 5 critic
steps per generator step, penalty by ``autograd.grad(create_graph=True)`` with a per-sample alpha.
Both draw their data from the same ``fastwgan.data.toy_sample`` so the comparison is of the
training machinery only. Unit: one generator iteration (= 5 critic updates + 1 generator update).

    pytest benchmarks/test_train_loop.py --benchmark-only
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import fastwgan
from fastwgan.data import toy_sample

from _bench import record

ITERS = 10  # generator iterations per timed round
BATCH, WIDTH, LAM = 256, 512, 0.1


def _mlp(i: int, o: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, o))


def textbook_wgan_gp(G: nn.Module, D: nn.Module, iters: int, batch: int = BATCH, lam: float = LAM,
                     n_critic: int = 5) -> float:
    """gan_toy.py's WGAN-GP loop, written the plain PyTorch way."""
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
    w = 0.0
    for _ in range(iters):
        for p in D.parameters():
            p.requires_grad = True
        for _ in range(n_critic):
            real = toy_sample("8gaussians", batch)
            with torch.no_grad():
                fake = G(torch.randn(batch, 2))
            D.zero_grad()
            d_real, d_fake = D(real).mean(), D(fake).mean()
            alpha = torch.rand(batch, 1).expand_as(real)
            x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
            gp = lam * ((grad.norm(2, dim=1) - 1) ** 2).mean()
            (d_fake - d_real + gp).backward()
            opt_d.step()
            w = (d_real - d_fake).item()  # gan_toy reads its losses every iteration
        for p in D.parameters():
            p.requires_grad = False
        G.zero_grad()
        (-D(G(torch.randn(batch, 2))).mean()).backward()
        opt_g.step()
    return w


@pytest.mark.benchmark(group="train-loop wgan-gp toy MLP")
def test_textbook_wgan_gp_toy(benchmark):
    torch.manual_seed(0)
    G, D = _mlp(2, 2, WIDTH), _mlp(2, 1, WIDTH)
    benchmark.pedantic(textbook_wgan_gp, args=(G, D, ITERS), rounds=3, warmup_rounds=1)
    record(benchmark, "wgan-gp toy MLP (gen it)", "textbook loop", units=ITERS, baseline=True)


@pytest.mark.benchmark(group="train-loop wgan-gp toy MLP")
def test_fastwgan_train_wgan_gp_toy(benchmark):
    from fastwgan.models import MLPCritic, MLPGenerator

    torch.manual_seed(0)
    G, D = MLPGenerator(z_dim=2, width=WIDTH), MLPCritic(in_dim=2, width=WIDTH)

    def run():
        return fastwgan.train(G, D, "8gaussians", loss="wgan-gp", steps=ITERS, batch_size=BATCH,
                              lam=LAM, progress=False, eval_samples=0, device="cpu")

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    record(benchmark, "wgan-gp toy MLP (gen it)", "fastwgan.train", units=ITERS)
