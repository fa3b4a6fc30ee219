"""fastwgan.step: the trainer's critic objective equals the textbook one; the fused penalty ops
read channels_last tensors in place.

Tolerance rule (landscape.md, flash-attention's): against a float64 evaluation of the textbook
computation (``autograd.grad(create_graph=True)`` penalty), our float32 result may be at most twice
as far as the textbook's own float32 result, plus one float32 rounding of the largest value.
"""
from __future__ import annotations

import pytest
import torch

from fastwgan.models import DCGANCritic, MLPCritic
from fastwgan.ops import gradient_penalty as O
from fastwgan.penalty import gradient_penalty
from fastwgan.reference.gradient_penalty import gradient_penalty as textbook_penalty
from fastwgan.step import critic_objective

EPS32 = torch.finfo(torch.float32).eps


def _objective_grads(critic, real, fake, alpha, lam, ours: bool):
    import copy

    critic = copy.deepcopy(critic)
    if ours:
        loss, pen, _, _ = critic_objective(critic, real, fake, None, lam=lam, penalty=gradient_penalty,
                                           alpha=alpha, backend="cpp")
    else:  # textbook
        loss = critic(fake).mean() - critic(real).mean()
        pen = textbook_penalty(critic, real, fake, lam=lam, alpha=alpha)
    (loss + pen).backward()
    return torch.cat([loss.detach().reshape(1), pen.detach().reshape(1)] +
                     [p.grad.detach().reshape(-1) for p in critic.parameters()]).double()


@pytest.mark.parametrize("size", [8, 16])
def test_critic_objective_equals_textbook(size):
    torch.manual_seed(size)
    base = DCGANCritic(img_size=size, ndf=8, norm="layer")
    real, fake = torch.randn(5, 3, size, size), torch.randn(5, 3, size, size)
    alpha = torch.rand(5)
    ref64 = _objective_grads(base.double(), real.double(), fake.double(), alpha.double(), 10.0, False)
    base.float()
    plain = _objective_grads(base, real, fake, alpha, 10.0, False)
    ours = _objective_grads(base, real, fake, alpha, 10.0, True)
    err_plain = (plain - ref64).abs().max().item()
    err_ours = (ours - ref64).abs().max().item()
    assert err_ours <= 2 * err_plain + EPS32 * ref64.abs().max().item(), (err_ours, err_plain)


def test_critic_objective_without_penalty_is_the_plain_loss():
    torch.manual_seed(0)
    D = MLPCritic(in_dim=2, width=8)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    loss, pen, d_real, d_fake = critic_objective(D, real, fake, None, loss="wgan")
    assert pen.item() == 0.0
    assert torch.equal(loss, D(fake).mean() - D(real).mean())
    assert d_real.shape == (6,) and d_fake.shape == (6,)


@pytest.mark.parametrize("backend", ["cpp", "triton", "reference"])
def test_fused_ops_read_channels_last_in_place(backend):
    torch.manual_seed(3)
    real, fake = torch.randn(3, 5, 7, 6), torch.randn(3, 5, 7, 6)
    alpha = torch.rand(3)
    rl, fl = (t.contiguous(memory_format=torch.channels_last) for t in (real, fake))
    nchw = O.interpolate(real, fake, alpha, backend)
    nhwc = O.interpolate(rl, fl, alpha, backend)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(nhwc, nchw)  # elementwise, same arithmetic per element: bitwise
    g = torch.randn(3, 5, 7, 6)
    gl = g.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    g.requires_grad_(True)
    p_nchw = O.norm_penalty(g, 10.0, False, backend)
    p_nhwc = O.norm_penalty(gl, 10.0, False, backend)
    # the per-sample sum runs in another element order: at most a rounding of the sum and of the
    # result (the C++ kernel sums in float64), i.e. a few float32 ulps of the penalty
    assert abs(p_nhwc.item() - p_nchw.item()) <= 4 * EPS32 * abs(p_nchw.item())
    (d_nchw,) = torch.autograd.grad(p_nchw, g)
    (d_nhwc,) = torch.autograd.grad(p_nhwc, gl)
    torch.testing.assert_close(d_nhwc, d_nchw, rtol=4 * EPS32, atol=0)
