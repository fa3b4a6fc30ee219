"""What one training iteration optimises, written once for every runner.

One generator iteration of Algorithm 1 (WGAN, Arjovsky et al. 2017; WGAN-GP, Gulrajani et al. 2017):

    for k in 1..n_critic:
        L_D = E[D(G(z_k))] - E[D(x_k)] + P_k          critic_objective (P: the gradient penalty)
        theta_D <- opt_D(theta_D, grad L_D)
    L_G = -E[D(G(z))]   (or feature matching)         generator_objective
    theta_G <- opt_G(theta_G, grad L_G)

The eager runner (:mod:`fastwgan.training.eager`) differentiates these with autograd; the static
runner (:mod:`fastwgan.training.static`) with ``torch.func.grad`` over ``functional_call``. Both pass
the critic as a callable ``critic(x, y) -> scores`` and the penalty as a callable
``penalty(real, fake, y) -> P``, so neither restates the algorithm. Scores are summed in float32
(autocast may run the critic in bf16).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from .losses import critic_loss, feature_matching_loss, generator_loss, wasserstein_estimate

__all__ = ["call", "CriticTerms", "PenaltySchedule", "critic_objective", "generator_objective", "metrics_vector",
           "METRICS"]

Critic = Callable[[Tensor, "Tensor | None"], Tensor]
Penalty = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

# the entries of the per-step metrics vector, in order
METRICS: tuple[str, ...] = ("w_estimate", "loss_d", "penalty", "loss_g", "param_norm")


def call(model: Callable[..., Tensor], x: Tensor, y: Tensor | None = None) -> Tensor:
    """``model(x)``, or ``model(x, y)`` for a conditional model: labels condition both models."""
    return model(x) if y is None else model(x, y)


class PenaltySchedule(NamedTuple):
    """Which of an iteration's critic updates carry the gradient penalty, with which weight and form.

    Lazy penalty (lazy regularisation, Karras et al. 2020, "Analyzing and Improving the Image Quality
    of StyleGAN", Sec. 4.1): only updates k = 0, every, 2 * every, ... carry it, weighted
    ``every * lam`` so that its weight per update stays lam on average (``every=1``: the textbook
    penalty on every update). One-sided, max(0, ||g|| - 1)^2, for WGAN-LP (Petzka et al. 2018);
    two-sided for WGAN-GP (Gulrajani et al. 2017)."""

    lam: float
    every: int = 1
    one_sided: bool = False

    @classmethod
    def for_loss(cls, loss: str, lam: float | None, every: int = 1) -> PenaltySchedule:
        return cls(float(lam or 0.0), int(every), loss == "wgan-lp")

    def on(self, k: int) -> bool:
        """Whether critic update ``k`` (0-based within the iteration) carries the penalty."""
        return k % self.every == 0

    @property
    def weight(self) -> float:
        """The penalty's coefficient on the updates that carry it."""
        return self.lam * self.every


class CriticTerms(NamedTuple):
    """The critic objective's parts: L_D without the penalty, P, D(real), D(fake) (float32, (B,))."""

    loss_d: Tensor
    penalty: Tensor
    d_real: Tensor
    d_fake: Tensor


def critic_objective(critic: Critic, real: Tensor, fake: Tensor, y: Tensor | None, *, loss: str,
                     penalty: Penalty | None = None, joined: bool = False) -> tuple[Tensor, CriticTerms]:
    """(L_D + P, its terms); ``penalty=None`` means no penalty term (a zero). Real and fake go
    through the critic in two forwards, or with ``joined`` in one forward of cat(real, fake) split
    back in that order: the same scores for a critic that scores each sample on its own (the caller
    checks that: :func:`fastwgan.training.static.batch_independent`), with 2B-row matrix products.
    The eager runner keeps two forwards (a joined forward was measured no faster there)."""
    if joined:
        B = real.shape[0]
        d = critic(torch.cat([real, fake]), None if y is None else torch.cat([y, y])).reshape(-1).float()
        d_real, d_fake = d[:B], d[B:]
    else:
        d_real = critic(real, y).reshape(-1).float()
        d_fake = critic(fake, y).reshape(-1).float()
    loss_d = critic_loss(loss, d_real, d_fake)
    pen = torch.zeros((), device=d_real.device) if penalty is None else penalty(real, fake, y)
    return loss_d + pen, CriticTerms(loss_d, pen, d_real, d_fake)


def generator_objective(critic: Critic, fake: Tensor, y: Tensor | None, *, loss: str,
                        features: Critic | None = None, real: Tensor | None = None) -> Tensor:
    """L_G: the loss's generator term on D(G(z)); with ``features`` (the critic's last hidden
    layer) feature matching ||E f(x) - E f(G(z))||^2 against ``real`` (Salimans et al. 2016)."""
    if features is not None:
        assert real is not None, "feature matching needs the real batch"
        return feature_matching_loss(features(real, y).float(), features(fake, y).float())
    return generator_loss(loss, critic(fake, y).reshape(-1).float())


@torch.no_grad()
def metrics_vector(terms: CriticTerms, loss_g: Tensor, params: Sequence[Tensor]) -> Tensor:
    """The step's metrics (``METRICS``) as one device vector: read at log points, not per step.
    The parameters' total norm is finite iff every parameter is (the non-finite check)."""
    w_est = wasserstein_estimate(terms.d_real, terms.d_fake)
    pnorm = torch.nn.utils.get_total_norm(list(params))
    return torch.stack([t.detach().float() for t in (w_est, terms.loss_d, terms.penalty, loss_g, pnorm)])
