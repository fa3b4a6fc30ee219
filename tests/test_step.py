"""fastwgan.step: the critic objective's layout choices change speed, never what is computed.

Tolerance rule (landscape.md, flash-attention's): against a float64 evaluation of the textbook
computation (two NCHW forwards + ``autograd.grad(create_graph=True)`` penalty), our float32 result
may be at most twice as far as the textbook's own float32 result, plus one float32 rounding of the
largest value: channels_last and a joined batch only reorder float sums.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastwgan.models import DCGANCritic, MLPCritic
from fastwgan.ops import gradient_penalty as O
from fastwgan.penalty import gradient_penalty
from fastwgan.reference.gradient_penalty import gradient_penalty as textbook_penalty
from fastwgan.step import CriticLayout, critic_objective

EPS32 = torch.finfo(torch.float32).eps


def test_layout_decisions():
    conv_ln = DCGANCritic(img_size=16, ndf=4, norm="layer")
    conv_bn = DCGANCritic(img_size=16, ndf=4, norm="batch")
    mlp = MLPCritic(in_dim=2, width=8)
    lay = CriticLayout(conv_ln, "cpu")
    assert lay.channels_last and lay.join
    lay = CriticLayout(conv_bn, "cpu")
    assert lay.channels_last and not lay.join  # BatchNorm: real and fake must not share statistics
    lay = CriticLayout(mlp, "cpu")
    assert not lay.channels_last and not lay.join
    x = torch.randn(2, 3, 4, 4)
    assert CriticLayout(conv_ln, "cpu")(x).is_contiguous(memory_format=torch.channels_last)
    assert CriticLayout(mlp, "cpu")(x) is x


def _objective_grads(critic, real, fake, alpha, lam, layout=None):
    critic.zero_grad(set_to_none=True)
    if layout is None:  # textbook
        loss = critic(fake).mean() - critic(real).mean()
        pen = textbook_penalty(critic, real, fake, lam=lam, alpha=alpha)
    else:
        loss, pen, _, _ = critic_objective(critic, real, fake, None, layout, lam=lam,
                                           penalty=gradient_penalty, alpha=alpha, backend="cpp")
    (loss + pen).backward()
    return torch.cat([loss.detach().reshape(1), pen.detach().reshape(1)] +
                     [p.grad.detach().reshape(-1) for p in critic.parameters()]).double()


@pytest.mark.parametrize("size", [8, 16])
def test_channels_last_joined_objective_equals_textbook(size):
    torch.manual_seed(size)
    base = DCGANCritic(img_size=size, ndf=8, norm="layer")
    real, fake = torch.randn(5, 3, size, size), torch.randn(5, 3, size, size)
    alpha = torch.rand(5)
    ref64 = _objective_grads(_copy(base).double(), real.double(), fake.double(), alpha.double(), 10.0)
    plain = _objective_grads(_copy(base), real, fake, alpha, 10.0)
    ours_critic = _copy(base)
    layout = CriticLayout(ours_critic, "cpu")
    assert layout.channels_last and layout.join
    layout.prepare(ours_critic)
    ours = _objective_grads(ours_critic, real, fake, alpha, 10.0, layout)
    err_plain = (plain - ref64).abs().max().item()
    err_ours = (ours - ref64).abs().max().item()
    assert err_ours <= 2 * err_plain + EPS32 * ref64.abs().max().item(), (err_ours, err_plain)


def _copy(m: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(m)


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
