"""The eager runner: one iteration with autograd, the optimizers' own ``step()`` and, with a
penalty, the fused gradient penalty (:func:`fastwgan.gradient_penalty`).

Distributed, the critic's three forwards (real, fake, x_hat) go through DistributedDataParallel and
are followed by ONE backward of L_D + P, so each gradient bucket is all-reduced once with every term
in it (see :mod:`fastwgan.distributed`); the generator step calls the critic unwrapped (frozen).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..objectives import PenaltySchedule, call, critic_objective, generator_objective, metrics_vector
from ..penalty import gradient_penalty
from .config import TrainConfig
from .inputs import CriticInputs, Draws
from .precision import Amp


class EagerStep:
    """``step(t, feed) -> metrics vector``: n_critic(t) critic updates, then one generator update."""

    def __init__(self, *, generator: nn.Module, critic: nn.Module, g_train: nn.Module, d_train: nn.Module,
                 opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer, amp: Amp, cfg: TrainConfig,
                 draws: Draws, n_critic_at: Callable[[int], int]) -> None:
        self.G, self.D, self.G_train, self.D_train = generator, critic, g_train, d_train
        self.opt_d, self.opt_g, self.amp, self.cfg, self.draws = opt_d, opt_g, amp, cfg, draws
        self.n_critic_at = n_critic_at
        self.schedule = PenaltySchedule.for_loss(cfg.loss, cfg.lam, cfg.penalty_every)
        self.params = [*generator.parameters(), *critic.parameters()]

    def __call__(self, step: int, feed) -> Tensor:
        self.D.requires_grad_(True)
        for k in range(self.n_critic_at(step)):
            inp = self.draws.critic(feed)
            with_penalty = self.schedule.on(k)
            terms = self._critic_update(inp, with_penalty)
            if with_penalty:  # the metrics show the last penalty computed (lazy: not a zero)
                penalty = terms.penalty
        self.D.requires_grad_(False)  # no gradients accumulated for the frozen critic
        try:
            loss_g = self._generator_update(inp)
        finally:
            self.D.requires_grad_(True)
        return metrics_vector(terms._replace(penalty=penalty), loss_g, self.params)

    def _critic_update(self, inp: CriticInputs, with_penalty: bool):
        with self.amp.autocast():
            with torch.no_grad():
                fake = call(self.G_train, inp.z, inp.y).to(inp.x.dtype)
            penalty = self._penalty(inp.alpha) if with_penalty else None
            total, terms = critic_objective(lambda x, y: call(self.D_train, x, y), inp.x, fake, inp.y,
                                            loss=self.cfg.loss, penalty=penalty)
        self.opt_d.zero_grad(set_to_none=True)
        self.amp.step(self.amp.scaler_d, total, self.opt_d)
        return terms

    def _penalty(self, alpha: Tensor | None):
        if alpha is None:
            return None
        critic, sched = self.amp.penalty_critic(self.D_train), self.schedule
        return lambda real, fake, y: gradient_penalty(critic, real, fake, lam=sched.weight, one_sided=sched.one_sided,
                                                      labels=y, alpha=alpha, backend=self.cfg.backend)

    def _generator_update(self, inp: CriticInputs) -> Tensor:
        z = self.draws.generator()
        features = getattr(self.D, "features", None) if self.cfg.feature_matching else None
        with self.amp.autocast():
            fake = call(self.G_train, z, inp.y)
            loss_g = generator_objective(lambda x, y: call(self.D, x, y), fake, inp.y, loss=self.cfg.loss,
                                         features=(lambda x, y: call(features, x, y)) if features else None,
                                         real=inp.x)
        self.opt_g.zero_grad(set_to_none=True)
        self.amp.step(self.amp.scaler_g, loss_g, self.opt_g)
        return loss_g
