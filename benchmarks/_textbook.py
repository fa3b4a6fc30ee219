"""The textbook training loops the benchmarks measure fastwgan against, written the plain PyTorch
way (Gulrajani et al.'s gan_toy.py for WGAN-GP; Arjovsky et al.'s Algorithm 1 for WGAN).

Each loop draws its data from ``sample(n)`` and its noise and interpolation weights from torch's
global RNG, reads its critic loss with ``.item()`` every critic step as gan_toy does, and keeps its
optimizers between calls of ``run`` so that a benchmark can evaluate along the way.

bf16 (``precision="bf16"``) is PyTorch's AMP recipe: a fresh ``torch.autocast`` context around each
step's forwards and loss, the backward and the optimizer step outside it. One context around many
steps is wrong, not just slow: autocast caches its bf16 copy of each weight until the context exits,
so every forward after the first optimizer step would use the stale weights.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def mlp(i: int, o: int, width: int) -> nn.Sequential:
    """gan_toy's MLP: three hidden ReLU layers."""
    return nn.Sequential(nn.Linear(i, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, o))


class TextbookLoop:
    """WGAN-GP (``lam`` > 0, Adam) or WGAN (``clip``, RMSprop) as in the papers' Algorithm 1.

    ``total_steps`` turns on a linear learning-rate decay to 0 over that many generator steps (the
    fastwgan presets' schedule), so the two can be compared at the same settings.
    """

    def __init__(self, G: nn.Module, D: nn.Module, sample: Callable[[int], torch.Tensor], *, z_dim: int = 2,
                 batch: int = 256, lam: float = 0.1, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.9),
                 n_critic: int = 5, clip: float | None = None, total_steps: int | None = None,
                 device: str | torch.device = "cpu", precision: str = "fp32") -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.bf16 = precision == "bf16"
        self.G, self.D, self.sample, self.z_dim, self.device = G, D, sample, z_dim, device
        self.batch, self.lam, self.n_critic, self.clip = batch, lam, n_critic, clip
        if clip is None:
            self.opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
            self.opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
        else:
            self.opt_d = torch.optim.RMSprop(D.parameters(), lr=lr)
            self.opt_g = torch.optim.RMSprop(G.parameters(), lr=lr)
        self.lr, self.total, self.step = lr, total_steps, 0
        self.w = 0.0

    def autocast(self) -> torch.autocast:
        """A fresh context per step (module docstring): its weight-cast cache dies with the step."""
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.bf16)

    def run(self, iters: int) -> float:
        G, D, b = self.G, self.D, self.batch
        for _ in range(iters):
            if self.total:
                for opt in (self.opt_d, self.opt_g):
                    for group in opt.param_groups:
                        group["lr"] = self.lr * (1 - self.step / self.total)
            for p in D.parameters():
                p.requires_grad = True
            for _ in range(self.n_critic):
                real = self.sample(b)
                D.zero_grad()
                with self.autocast():
                    with torch.no_grad():
                        fake = G(torch.randn(b, self.z_dim, device=self.device)).float()
                    d_real, d_fake = D(real).mean(), D(fake).mean()
                    loss = d_fake - d_real
                    if self.clip is None:
                        alpha = torch.rand(b, *([1] * (real.dim() - 1)), device=self.device).expand_as(real)
                        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
                        (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
                        loss = loss + self.lam * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
                loss.backward()
                self.opt_d.step()
                if self.clip is not None:
                    for p in D.parameters():
                        p.data.clamp_(-self.clip, self.clip)
                self.w = (d_real - d_fake).item()  # gan_toy reads its losses every critic step
            for p in D.parameters():
                p.requires_grad = False
            G.zero_grad()
            with self.autocast():
                loss_g = -D(G(torch.randn(b, self.z_dim, device=self.device))).mean()
            loss_g.backward()
            self.opt_g.step()
            self.step += 1
        return self.w
