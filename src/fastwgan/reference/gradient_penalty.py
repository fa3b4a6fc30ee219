"""Textbook gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Alg. 1).

    x_hat = alpha * x_real + (1 - alpha) * x_fake,   alpha ~ U[0, 1] per sample
    GP    = lam * E[(||grad_x D(x_hat)||_2 - 1)^2]          (two-sided, WGAN-GP)
    LP    = lam * E[max(0, ||grad_x D(x_hat)||_2 - 1)^2]    (one-sided, WGAN-LP, Petzka et al. 2018)

The norm is per sample over every non-batch axis. This is the ``autograd.grad(create_graph=True)``
formulation that the fused path is tested against.

Zero gradient: torch's ``norm`` backward (2.x) returns 0 where the norm is 0, which is the
convention of the fused path (d||g||/dg := 0 at g = 0); the hand-written ``sqrt(sum(g**2))`` that
many implementations use gives 0/0 = NaN there instead (the derivative of sqrt at 0 is infinite, times a zero).
(:func:`fastwgan.ops.gradient_penalty.safe_norm` is the run-time form of the same convention,
differentiable to any order.)
"""
from __future__ import annotations

import torch
from torch import Tensor


def interpolate(real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """x_hat = alpha * real + (1 - alpha) * fake, alpha of shape (B,) broadcast per sample."""
    a = alpha.reshape(-1, *([1] * (real.dim() - 1)))
    return a * real + (1 - a) * fake


def row_norm(g: Tensor) -> Tensor:
    """Per-sample L2 norm over all non-batch axes, by torch's ``norm`` (d||g||/dg = 0 at g = 0)."""
    return g.reshape(g.shape[0], -1).norm(2, dim=1)


def gradient_penalty(
    critic,
    real: Tensor,
    fake: Tensor,
    *,
    lam: float = 10.0,
    one_sided: bool = False,
    alpha: Tensor | None = None,
    labels: Tensor | None = None,
) -> Tensor:
    """lam * mean((||grad D(x_hat)|| - 1)^2); differentiable w.r.t. the critic's parameters."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    x_hat = interpolate(real, fake, alpha).detach().requires_grad_(True)
    out = critic(x_hat) if labels is None else critic(x_hat, labels)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = row_norm(grad)
    gap = norm - 1
    if one_sided:
        gap = gap.clamp(min=0)
    return lam * (gap**2).mean()
