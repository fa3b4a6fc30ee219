"""fastwgan.objectives: the iteration's objectives equal the textbook ones (with the fused penalty
the eager runner uses), feature matching is the hand computation; the fused penalty ops read
channels_last tensors in place.

Tolerance rule (tests/_rules.py): against a float64 evaluation of the textbook computation
(``autograd.grad(create_graph=True)`` penalty), our float32 result may be at most twice as far as
the textbook's own float32 result, plus one float32 rounding of the largest value.
"""
from __future__ import annotations

import copy

import pytest
import torch

from fastwgan.models import DCGANCritic, MLPCritic
from fastwgan.objectives import call, critic_objective, generator_objective, metrics_vector
from fastwgan.ops import gradient_penalty as O
from fastwgan.penalty import gradient_penalty
from fastwgan.reference.gradient_penalty import gradient_penalty as textbook_penalty

from _rules import EPS32, assert_fp64_rule


def _objective_grads(critic, real, fake, alpha, lam, ours: bool, joined: bool = False):
    critic = copy.deepcopy(critic)
    if ours:
        total, terms = critic_objective(lambda x, y: call(critic, x, y), real, fake, None, loss="wgan-gp",
                                        penalty=lambda r, f, y: gradient_penalty(critic, r, f, lam=lam, alpha=alpha,
                                                                                 backend="cpp"), joined=joined)
        loss, pen = terms.loss_d, terms.penalty
    else:  # textbook
        loss = critic(fake).mean() - critic(real).mean()
        pen = textbook_penalty(critic, real, fake, lam=lam, alpha=alpha)
        total = loss + pen
    total.backward()
    return torch.cat([loss.detach().reshape(1), pen.detach().reshape(1)] +
                     [p.grad.detach().reshape(-1) for p in critic.parameters()]).double()


@pytest.mark.parametrize("joined", [False, True])
@pytest.mark.parametrize("size", [8, 16])
def test_critic_objective_equals_textbook(size, joined):
    """Also with real and fake joined in one forward (``joined``): the textbook's two forwards."""
    torch.manual_seed(size)
    base = DCGANCritic(img_size=size, ndf=8, norm="layer")
    real, fake = torch.randn(5, 3, size, size), torch.randn(5, 3, size, size)
    alpha = torch.rand(5)
    ref64 = _objective_grads(base.double(), real.double(), fake.double(), alpha.double(), 10.0, False)
    base.float()
    plain = _objective_grads(base, real, fake, alpha, 10.0, False)
    ours = _objective_grads(base, real, fake, alpha, 10.0, True, joined)
    assert_fp64_rule(ours, plain, ref64, what="critic objective and its gradients")


def test_joined_critic_objective_splits_labelled_scores_in_order():
    """Joined, a conditional critic gets cat(y, y) with cat(real, fake), and the scores come back as
    (real, fake): the terms equal the two-forward terms (fp64 rule); swapping the halves fails it."""
    torch.manual_seed(0)
    D = MLPCritic(in_dim=2, width=16, n_classes=3)
    real, fake, y = torch.randn(7, 2), torch.randn(7, 2), torch.randint(0, 3, (7,))

    def terms(model, dtype, joined):
        total, t = critic_objective(lambda x, lab: call(model, x, lab), real.to(dtype), fake.to(dtype), y,
                                    loss="wgan", joined=joined)
        return torch.cat([total.reshape(1), t.loss_d.reshape(1), t.d_real, t.d_fake]).double()

    D64 = copy.deepcopy(D).double()
    ref64, plain = terms(D64, torch.float64, False), terms(D, torch.float32, False)
    assert_fp64_rule(terms(D, torch.float32, True), plain, ref64, what="joined critic objective")
    assert_fp64_rule(terms(D64, torch.float64, True), plain, ref64, what="joined critic objective, fp64")


def test_critic_objective_without_penalty_is_the_plain_loss():
    torch.manual_seed(0)
    D = MLPCritic(in_dim=2, width=8)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    total, terms = critic_objective(lambda x, y: call(D, x, y), real, fake, None, loss="wgan")
    assert terms.penalty.item() == 0.0
    assert torch.equal(total, D(fake).mean() - D(real).mean())
    assert terms.d_real.shape == (6,) and terms.d_fake.shape == (6,)


def test_generator_objective_feature_matching_is_the_hand_computation():
    """||mean f(x) - mean f(G(z))||^2 on the critic's features, not the adversarial loss."""
    torch.manual_seed(0)
    D = MLPCritic(in_dim=2, width=8)
    real, fake = torch.randn(6, 2), torch.randn(6, 2, requires_grad=True)
    fm = generator_objective(lambda x, y: call(D, x, y), fake, None, loss="wgan-gp",
                             features=lambda x, y: D.features(x), real=real)
    by_hand = ((D.features(real).mean(0) - D.features(fake).mean(0)) ** 2).sum()
    assert torch.allclose(fm, by_hand, rtol=4 * EPS32, atol=0)
    adversarial = generator_objective(lambda x, y: call(D, x, y), fake, None, loss="wgan-gp")
    assert torch.equal(adversarial, -D(fake).reshape(-1).mean())
    assert not torch.allclose(fm, adversarial)  # negative control: the two are different losses


def test_metrics_vector_order_and_norm():
    torch.manual_seed(0)
    d_real, d_fake = torch.randn(5), torch.randn(5)
    from fastwgan.objectives import CriticTerms

    p = [torch.randn(3, 4), torch.randn(7)]
    v = metrics_vector(CriticTerms(torch.tensor(0.5), torch.tensor(0.25), d_real, d_fake), torch.tensor(-1.5), p)
    norm = torch.cat([t.reshape(-1) for t in p]).norm()
    assert v.tolist() == pytest.approx([(d_real.mean() - d_fake.mean()).item(), 0.5, 0.25, -1.5, norm.item()],
                                       rel=4 * EPS32)


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
