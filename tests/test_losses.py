"""Each loss against values computed by hand on tiny inputs."""
import math

import pytest
import torch

from fastwgan.losses import (
    LOSSES,
    critic_loss,
    feature_matching_loss,
    generator_loss,
    wasserstein_estimate,
)

D_REAL = torch.tensor([1.0, 3.0])  # mean 2
D_FAKE = torch.tensor([-1.0, 0.0])  # mean -0.5


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("loss", ["wgan", "wgan-gp", "wgan-lp"])
def test_wasserstein_losses(loss):
    # L_D = E[D(fake)] - E[D(real)] = -0.5 - 2 = -2.5 ; L_G = -E[D(fake)] = 0.5
    assert critic_loss(loss, D_REAL, D_FAKE).item() == pytest.approx(-2.5, abs=1e-7)
    assert generator_loss(loss, D_FAKE).item() == pytest.approx(0.5, abs=1e-7)
    assert wasserstein_estimate(D_REAL, D_FAKE).item() == pytest.approx(2.5, abs=1e-7)


def test_gan_minimax_and_non_saturating():
    # L_D = mean(-log sigmoid(d_real)) + mean(-log(1 - sigmoid(d_fake)))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want_d = (-math.log(sig(1)) - math.log(sig(3))) / 2 + (-math.log(1 - sig(-1)) - math.log(1 - sig(0))) / 2
    for loss in ("gan", "ns-gan"):
        assert critic_loss(loss, D_REAL, D_FAKE).item() == pytest.approx(want_d, rel=1e-6)
    # minimax G: mean(log(1 - sigmoid(d_fake))); non-saturating G: mean(-log sigmoid(d_fake))
    want_mm = (math.log(1 - sig(-1)) + math.log(1 - sig(0))) / 2
    want_ns = (-math.log(sig(-1)) - math.log(sig(0))) / 2
    assert generator_loss("gan", D_FAKE).item() == pytest.approx(want_mm, rel=1e-6)
    assert generator_loss("ns-gan", D_FAKE).item() == pytest.approx(want_ns, rel=1e-6)


def test_minimax_saturates_where_non_saturating_does_not():
    # When D confidently rejects a fake (d = -10), the minimax G loss has a vanishing gradient
    # (sigmoid(-10) = 4.5e-5) while the non-saturating one has gradient ~ -1: the reason NS-GAN exists.
    d = torch.tensor([-10.0], requires_grad=True)
    (g_mm,) = torch.autograd.grad(generator_loss("gan", d), d)
    (g_ns,) = torch.autograd.grad(generator_loss("ns-gan", d), d)
    assert abs(g_mm.item()) == pytest.approx(1 / (1 + math.exp(10)), rel=1e-5)
    assert g_ns.item() == pytest.approx(-1 / (1 + math.exp(-10)), rel=1e-5)


def test_gan_losses_are_finite_at_extreme_logits():
    big = torch.tensor([200.0, -200.0])
    for loss in ("gan", "ns-gan"):
        assert torch.isfinite(critic_loss(loss, big, -big))
        assert torch.isfinite(generator_loss(loss, big))
    assert generator_loss("ns-gan", torch.tensor([-200.0])).item() == pytest.approx(softplus(200.0), rel=1e-6)


def test_feature_matching_by_hand():
    f_real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    f_fake = torch.tensor([[0.0, 0.0], [2.0, 2.0]], requires_grad=True)  # mean (1, 1)
    loss = feature_matching_loss(f_real, f_fake)
    assert loss.item() == pytest.approx(1.0 + 4.0)  # (2-1)^2 + (3-1)^2
    (g,) = torch.autograd.grad(loss, f_fake)
    # d/df_fake = -2 (mean_real - mean_fake) / B = -(1, 2)
    torch.testing.assert_close(g, torch.tensor([[-1.0, -2.0], [-1.0, -2.0]]))


def test_unknown_loss_lists_valid_ones():
    with pytest.raises(ValueError, match="wgan-gp"):
        critic_loss("wgn", D_REAL, D_FAKE)
    with pytest.raises(ValueError, match="ns-gan"):
        generator_loss("lsgan", D_FAKE)
    assert set(LOSSES) == {"wgan", "wgan-gp", "wgan-lp", "gan", "ns-gan"}
