"""Adversarial losses, as functions of the critic's raw scores.

``d_real`` and ``d_fake`` are the critic's outputs, shape (B,), *before* any sigmoid.

* WGAN (Arjovsky et al. 2017, Alg. 1) and WGAN-GP / WGAN-LP (Gulrajani et al. 2017; Petzka et al.
  2018): the critic maximises E[D(x)] - E[D(G(z))], so it minimises
      L_D = E[D(G(z))] - E[D(x)]
  and the generator minimises L_G = -E[D(G(z))]. The critic's Wasserstein estimate is -L_D.
* GAN, minimax (Goodfellow et al. 2014): D(x) = sigmoid(d). The discriminator minimises
      L_D = -E[log sigmoid(d_real)] - E[log(1 - sigmoid(d_fake))]
          = E[softplus(-d_real)] + E[softplus(d_fake)]
  and the generator minimises E[log(1 - sigmoid(d_fake))] = -E[softplus(d_fake)], which saturates
  when D rejects fakes confidently (its gradient vanishes as sigmoid(d_fake) -> 0).
* NS-GAN, the non-saturating generator loss (same paper, Sec. 3): L_G = -E[log sigmoid(d_fake)]
  = E[softplus(-d_fake)]; same fixed point, strong gradients early on.
* Feature matching (Salimans et al. 2016, "Improved Techniques for Training GANs", Sec. 3.1):
      L_G = || E[f(x)] - E[f(G(z))] ||_2^2
  with f the critic's last hidden layer (``critic.features``).

softplus is used instead of log(sigmoid) because it is exact where log(sigmoid) under/overflows
(fp32 sigmoid(-104) == 0, so log gives -inf; softplus(104) == 104).

A discriminator that ends in a sigmoid gives probabilities p = sigmoid(d), not d. Its logit is
recovered as d = log p - log(1 - p) (``probability_logit``), and then softplus(-d) = -log p and
softplus(d) = -log(1 - p): the losses above are the probability form (binary cross-entropy on p)
exactly. p is first clamped into [tiny, 1 - 2^-24] (tiny: fp32's smallest normal), so a saturated
sigmoid gives a finite loss and a zero gradient, never inf or NaN (BCELoss clamps its logs at
-100 for the same reason).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES: tuple[str, ...] = ("wgan", "wgan-gp", "wgan-lp", "gan", "ns-gan")
WASSERSTEIN_LOSSES: tuple[str, ...] = ("wgan", "wgan-gp", "wgan-lp")
PENALTY_LOSSES: tuple[str, ...] = ("wgan-gp", "wgan-lp")  # the critic objective has a gradient penalty


_P_LO = torch.finfo(torch.float32).tiny  # the smallest normal float32: log(_P_LO) ~ -87.3
_P_HI = 1.0 - 2.0**-24  # the largest float32 below 1


def probability_logit(p: torch.Tensor) -> torch.Tensor:
    """d = log p - log(1 - p) in float32, p clamped into [tiny, 1 - 2^-24]: the logit whose sigmoid
    is p, so the logit-form losses on d are the probability-form losses on p (module docstring)."""
    p = p.float().clamp(_P_LO, _P_HI)
    return torch.log(p) - torch.log1p(-p)


def critic_loss(loss: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The critic's (discriminator's) loss to minimise, without any penalty term."""
    if loss in WASSERSTEIN_LOSSES:
        return d_fake.mean() - d_real.mean()
    if loss in ("gan", "ns-gan"):
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")


def generator_loss(loss: str, d_fake: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss to minimise."""
    if loss in WASSERSTEIN_LOSSES:
        return -d_fake.mean()
    if loss == "gan":
        return -F.softplus(d_fake).mean()
    if loss == "ns-gan":
        return F.softplus(-d_fake).mean()
    raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")


def feature_matching_loss(f_real: torch.Tensor, f_fake: torch.Tensor) -> torch.Tensor:
    """|| mean_batch f(x) - mean_batch f(G(z)) ||_2^2 (real features carry no gradient)."""
    diff = f_real.detach().flatten(1).mean(0) - f_fake.flatten(1).mean(0)
    return (diff * diff).sum()


def wasserstein_estimate(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E[D(x)] - E[D(G(z))]: the critic's estimate of W1 (up to its Lipschitz constant)."""
    return d_real.mean() - d_fake.mean()
