"""Textbook WGAN critic update (Arjovsky et al. 2017, "Wasserstein GAN", Algorithm 1, lines 6-7):

    w <- w + lr * RMSProp(w, g_w)
    w <- clip(w, -c, c)

done the plain way: ``torch.optim.RMSprop`` (its own arithmetic, untouched) followed by one
``clamp_`` per parameter tensor. This is the ground truth the fused kernels (and the ``"reference"``
backend, :func:`fastwgan.ops.clipped_rmsprop.plain_clipped_rmsprop_`) are tested against.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch


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
