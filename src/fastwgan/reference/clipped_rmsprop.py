"""Textbook WGAN critic update (Arjovsky et al. 2017, "Wasserstein GAN", Algorithm 1, lines 6-7):

    w <- w + lr * RMSProp(w, g_w)
    w <- clip(w, -c, c)

done the plain way: ``torch.optim.RMSprop`` (its own arithmetic, untouched) followed by one
``clamp_`` per parameter tensor. This is the ground truth the fused kernels are tested against,
and the ``"reference"`` backend of :class:`fastwgan.optim.ClippedRMSprop`.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.rmsprop import rmsprop as _torch_rmsprop


def clipped_rmsprop_reference_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    square_avgs: list[torch.Tensor],
    grad_avgs: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    steps: list[torch.Tensor],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    clip: float,
    foreach: bool | None = None,
) -> None:
    """torch.optim.RMSprop's functional step on the given state, then ``p.clamp_(-clip, clip)``."""
    _torch_rmsprop(
        params,
        grads,
        square_avgs,
        grad_avgs,
        momentum_buffers,
        steps,
        foreach=foreach,
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
    )
    for p in params:
        p.clamp_(-clip, clip)


class ReferenceClippedRMSprop(torch.optim.RMSprop):
    """``torch.optim.RMSprop`` whose ``step`` ends with ``p.clamp_(-clip, clip)`` on every
    parameter.

    Every parameter is clipped, also one without a gradient this step: WGAN's constraint is on
    the weights, whatever the step did (the original code clamps all of ``netD.parameters()``).
    """

    def __init__(self, params: Iterable, *, clip: float = 0.01, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.clip = clip

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.clamp_(-self.clip, self.clip)
        return loss
