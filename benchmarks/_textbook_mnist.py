"""The textbook contender for images: the WGAN-GP authors' MNIST loop, written the plain PyTorch way.

Gulrajani et al. 2017, ``gan_mnist.py`` (MODE = 'wgan-gp'): their generator and critic
(``fastwgan.models.MNISTGenerator`` / ``MNISTCritic`` with torch.nn's own ReLU / LeakyReLU, i.e.
no pruned double backward), Adam(lr 1e-4, betas (0.5, 0.9)) for both, lambda 10, 5 critic
iterations per generator iteration, batch 50, noise z ~ N(0, I_128), digits in [0, 1] (the
generator ends in a sigmoid), and the penalty through ``torch.autograd.grad(create_graph=True)``:

    L_D = E[D(x~)] - E[D(x)] + lambda E[(||grad_x^ D(x^)||_2 - 1)^2],  x^ = x + alpha (x~ - x),
    alpha ~ U[0, 1] per sample;            L_G = -E[D(G(z))].

Each critic iteration uses a fresh real batch and a fresh fake batch (one fake batch for both
D(x~) and the interpolates, as in the authors' graph) and reads its loss with ``.item()`` (their
loop fetches ``disc_cost`` every critic iteration). One difference, stated: the authors skip the
generator update at iteration 0 and update G first in every later iteration; here an iteration is
5 critic steps then 1 generator step, so that N iterations are exactly N generator steps, as in
fastwgan's trainer (the same work per step for a time-to-quality comparison).

Real digits come from ``fastwgan.data.mnist.load_mnist("train")`` in shuffled epochs, like their
``inf_train_gen`` cycling over the training set.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from fastwgan.models import MNISTCritic, MNISTGenerator
from fastwgan.ops.activations import with_torch_activations

# The authors' settings (gan_mnist.py); benchmarks import these rather than restating them.
SETTINGS = {"lr": 1e-4, "betas": (0.5, 0.9), "lam": 10.0, "n_critic": 5, "batch": 50, "z_dim": 128}


def textbook_models(dim: int = 64, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(G, D): the authors' MNIST generator and critic with torch.nn activations, seeded init."""
    torch.manual_seed(seed)
    G, D = MNISTGenerator(z_dim=SETTINGS["z_dim"], dim=dim), MNISTCritic(dim=dim)
    return with_torch_activations(G), with_torch_activations(D)


def textbook_optimizers(G: nn.Module, D: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """(optD, optG): Adam(1e-4, betas (0.5, 0.9)) for each, as the authors."""
    kw = {"lr": SETTINGS["lr"], "betas": SETTINGS["betas"]}
    return torch.optim.Adam(D.parameters(), **kw), torch.optim.Adam(G.parameters(), **kw)


def mnist_batches(batch: int = SETTINGS["batch"], seed: int = 0, size: int = 28) -> Iterator[Tensor]:
    """Endless batches (batch, 1, size, size) of training digits in [0, 1], reshuffled every epoch
    (the last incomplete batch of an epoch is dropped)."""
    from fastwgan.data.mnist import load_mnist

    x, _ = load_mnist("train", size=size)
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0] - batch + 1, batch):
            yield x[order[i:i + batch]]


def textbook_penalty(D: nn.Module, real: Tensor, fake: Tensor, lam: float) -> Tensor:
    """lambda E[(||grad D(x^)||_2 - 1)^2] with autograd.grad(create_graph=True), plain torch."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)))
    x_hat = (real + alpha * (fake - real)).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return lam * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def textbook_mnist_step(G: nn.Module, D: nn.Module, optD: torch.optim.Optimizer, optG: torch.optim.Optimizer,
                        batch_iter: Iterator[Tensor], *, z_dim: int = SETTINGS["z_dim"],
                        lam: float = SETTINGS["lam"], n_critic: int = SETTINGS["n_critic"], bf16: bool = False) -> float:
    """One generator iteration: ``n_critic`` critic steps, then one generator step (module
    docstring). The batch size is the real batches'. Returns the last critic step's Wasserstein
    estimate E[D(x)] - E[D(x~)] (read with .item() every critic step, as the authors do).

    ``bf16``: PyTorch's AMP recipe, a fresh autocast context around each step's forwards and loss
    (one context around many steps would keep using its cached bf16 copies of the first weights)."""
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    w = float("nan")
    for p in D.parameters():
        p.requires_grad_(True)
    for _ in range(n_critic):
        real = next(batch_iter)
        b = real.shape[0]
        with autocast():
            with torch.no_grad():
                fake = G(torch.randn(b, z_dim)).float()
            d_real, d_fake = D(real).mean(), D(fake).mean()
            loss = d_fake - d_real + textbook_penalty(D, real, fake, lam)
        optD.zero_grad()
        loss.backward()
        optD.step()
        w = (d_real - d_fake).item()
    for p in D.parameters():
        p.requires_grad_(False)  # the generator step needs no critic weight gradients
    optG.zero_grad()
    with autocast():
        loss_g = -D(G(torch.randn(b, z_dim))).mean()
    loss_g.backward()
    optG.step()
    return w


class TextbookMNISTLoop:
    """The authors' loop with its state, so a benchmark can run it in chunks and evaluate between:
    ``run(iters)`` does ``iters`` generator iterations and returns the last Wasserstein estimate;
    ``sample(n)`` draws n generated digits without gradients (for image_metrics)."""

    def __init__(self, dim: int = 64, seed: int = 0, precision: str = "fp32") -> None:
        self.bf16 = precision == "bf16"
        self.G, self.D = textbook_models(dim, seed)
        self.optD, self.optG = textbook_optimizers(self.G, self.D)
        self.batches = mnist_batches(SETTINGS["batch"], seed)
        self.steps = 0

    def run(self, iters: int) -> float:
        w = float("nan")
        for _ in range(iters):
            w = textbook_mnist_step(self.G, self.D, self.optD, self.optG, self.batches, bf16=self.bf16)
            self.steps += 1
        return w

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.G(torch.randn(n, SETTINGS["z_dim"]))
