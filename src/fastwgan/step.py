"""The critic's loss in one training step, the fast way; shared by the trainer and the benchmarks.

    L_D = E[D(G(z))] - E[D(x)] + lam * E[(||grad D(x_hat)|| - 1)^2]      (WGAN-GP, Alg. 1)

Two layout decisions, both exact in what they compute (same samples, same per-sample scores):

* **One forward for real and fake** (convolutional critics). ``D(cat[x, G(z)])`` instead of
  ``D(x)`` and ``D(G(z))``: half the layer calls, and bigger, more efficient convolutions (an MLP
  gains nothing, so it keeps two forwards). Only when the critic treats samples independently: a critic with BatchNorm (in training mode) normalises over its batch,
  so joining real and fake would change what it computes; such critics keep two forwards. The
  interpolated batch stays a separate forward: its double backward then runs over B rows, not
  3B (measured slower on the CPU when all three are joined, landscape.md).
* **channels_last on the CPU for convolutional critics.** oneDNN's CPU convolutions work in NHWC;
  with NCHW tensors every convolution (forward, backward and the penalty's double backward)
  reorders its input and output. Measured on the DCGAN-64 LayerNorm critic step: 1.2x from this
  alone (benchmarks/RESULTS.md). The penalty's fused kernels read NHWC tensors in place.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .losses import critic_loss
from .models import has_batchnorm

__all__ = ["CriticLayout", "critic_scores", "critic_objective"]


class CriticLayout:
    """How a critic's inputs are laid out and batched on ``device`` (decided once per run)."""

    def __init__(self, critic: nn.Module, device: torch.device | str, *, channels_last: bool | None = None,
                 join_real_fake: bool | None = None) -> None:
        device = torch.device(device)
        has_conv = any(isinstance(m, nn.Conv2d) for m in critic.modules())
        self.channels_last = (device.type == "cpu" and has_conv) if channels_last is None else channels_last
        # joining pays for convolutions (bigger oneDNN batches: 1.14x on the DCGAN-64 step) but not
        # for an MLP (49.1 vs 49.1 ms per gan_toy critic step, batch 256, width 512), where it
        # would only change the float summation order of the matmuls: keep the plain two forwards
        self.join = (has_conv and not has_batchnorm(critic)) if join_real_fake is None else join_real_fake

    def prepare(self, critic: nn.Module) -> nn.Module:
        """Convert the critic's parameters to the chosen memory format (in place)."""
        if self.channels_last:
            critic.to(memory_format=torch.channels_last)
        return critic

    def __call__(self, x: Tensor) -> Tensor:
        """A batch in the chosen memory format."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


def _call(critic: Callable[..., Tensor], x: Tensor, y: Tensor | None) -> Tensor:
    return critic(x) if y is None else critic(x, y)


def critic_scores(critic: Callable[..., Tensor], real: Tensor, fake: Tensor, y: Tensor | None,
                  layout: CriticLayout) -> tuple[Tensor, Tensor]:
    """(D(real), D(fake)), each of shape (B,); one joined forward when the layout allows it."""
    real, fake = layout(real), layout(fake)
    if layout.join:
        B = real.shape[0]
        both = _call(critic, torch.cat([real, fake]), None if y is None else torch.cat([y, y]))
        both = both.reshape(-1)
        return both[:B], both[B:]
    return _call(critic, real, y).reshape(-1), _call(critic, fake, y).reshape(-1)


def critic_objective(critic: Callable[..., Tensor], real: Tensor, fake: Tensor, y: Tensor | None,
                     layout: CriticLayout, *, loss: str = "wgan-gp", lam: float = 10.0,
                     penalty: Callable[..., Tensor] | None = None, penalty_critic=None,
                     alpha: Tensor | None = None, backend: str = "auto") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(L_D without penalty, penalty, D(real), D(fake)); ``(L_D + penalty).backward()`` trains D.

    ``penalty`` is ``fastwgan.penalty.gradient_penalty`` (or None: no penalty, a zero tensor);
    ``penalty_critic`` is what the penalty calls (default ``critic``; the trainer passes a wrapper
    for mixed precision).
    """
    d_real, d_fake = critic_scores(critic, real, fake, y, layout)
    d_real, d_fake = d_real.float(), d_fake.float()
    loss_d = critic_loss(loss, d_real, d_fake)
    if penalty is None:
        pen = torch.zeros((), device=d_real.device)
    else:
        pen = penalty(penalty_critic if penalty_critic is not None else critic, layout(real), layout(fake),
                      lam=lam, one_sided=loss == "wgan-lp", labels=y, backend=backend, alpha=alpha)
    return loss_d, pen, d_real, d_fake
