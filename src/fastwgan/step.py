"""The critic's objective in one training step; shared by the trainer and the benchmarks.

    L_D = E[D(G(z))] - E[D(x)] + lam * E[(||grad D(x_hat)|| - 1)^2]      (WGAN-GP, Alg. 1)

Real and fake go through the critic in two forwards, and the interpolated batch in a third.
Measured on the 2-core CPU (benchmarks/RESULTS.md), the alternatives are slower or no faster:
one joined real+fake forward (DCGAN-32 LayerNorm critic step 118 -> 179 ms; MLP 23.4 -> 22.8 ms),
channels_last convolutions (118 -> 133 ms), both (156 ms); all three joined (landscape.md).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .losses import critic_loss

__all__ = ["critic_objective"]


def _call(critic: Callable[..., Tensor], x: Tensor, y: Tensor | None) -> Tensor:
    return critic(x) if y is None else critic(x, y)


def critic_objective(critic: Callable[..., Tensor], real: Tensor, fake: Tensor, y: Tensor | None, *,
                     loss: str = "wgan-gp", lam: float = 10.0, penalty: Callable[..., Tensor] | None = None,
                     penalty_critic=None, alpha: Tensor | None = None,
                     backend: str = "auto") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(L_D without penalty, penalty, D(real), D(fake)); ``(L_D + penalty).backward()`` trains D.

    ``penalty`` is ``fastwgan.penalty.gradient_penalty`` (or None: no penalty, a zero tensor);
    ``penalty_critic`` is what the penalty calls (default ``critic``; the trainer passes a wrapper
    for mixed precision). Scores are returned as float32 vectors of shape (B,).
    """
    d_real = _call(critic, real, y).reshape(-1).float()
    d_fake = _call(critic, fake, y).reshape(-1).float()
    loss_d = critic_loss(loss, d_real, d_fake)
    if penalty is None:
        pen = torch.zeros((), device=d_real.device)
    else:
        pen = penalty(penalty_critic if penalty_critic is not None else critic, real, fake, lam=lam,
                      one_sided=loss == "wgan-lp", labels=y, backend=backend, alpha=alpha)
    return loss_d, pen, d_real, d_fake
