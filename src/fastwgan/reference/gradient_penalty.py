"""Textbook gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Alg. 1).

    x_hat = alpha * x_real + (1 - alpha) * x_fake,   alpha ~ U[0, 1] per sample
    GP    = lam * E[(||grad_x D(x_hat)||_2 - 1)^2]          (two-sided, WGAN-GP)
    LP    = lam * E[max(0, ||grad_x D(x_hat)||_2 - 1)^2]    (one-sided, WGAN-LP, Petzka et al. 2018)

The norm is per sample over every non-batch axis. This is the ``autograd.grad(create_graph=True)``
formulation that the fused path is tested against.
"""
from __future__ import annotations

import torch


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x_hat = alpha * real + (1 - alpha) * fake, alpha of shape (B,) broadcast per sample."""
    a = alpha.reshape(-1, *([1] * (real.dim() - 1)))
    return a * real + (1 - a) * fake


def gradient_penalty(
    critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    lam: float = 10.0,
    one_sided: bool = False,
    alpha: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """lam * mean((||grad D(x_hat)|| - 1)^2); differentiable w.r.t. the critic's parameters."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    x_hat = interpolate(real, fake, alpha).detach().requires_grad_(True)
    out = critic(x_hat) if labels is None else critic(x_hat, labels)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
    gap = norm - 1
    if one_sided:
        gap = gap.clamp(min=0)
    return lam * (gap**2).mean()
