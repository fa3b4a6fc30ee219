"""Tests of fastwgan.models: shapes, gan_toy / DCGAN architecture rules, conditioning,
features/forward consistency, the gradient penalty running through every critic, helpers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastwgan.models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator, has_batchnorm, noise_size_candidates
from fastwgan.ops import activations
from fastwgan.reference.gradient_penalty import gradient_penalty


def _linears(m):
    return [l for l in m.modules() if isinstance(l, nn.Linear)]


def test_mlp_matches_gan_toy_architecture():
    G, D = MLPGenerator(), MLPCritic()
    assert [(l.in_features, l.out_features) for l in _linears(G)] == [(2, 512), (512, 512), (512, 512), (512, 2)]
    assert [(l.in_features, l.out_features) for l in _linears(D)] == [(2, 512), (512, 512), (512, 512), (512, 1)]
    kinds = [type(m) for m in G.net]
    assert kinds == [nn.Linear, activations.ReLU] * 3 + [nn.Linear]
    assert [type(m) for m in D.body] == [nn.Linear, activations.ReLU] * 3
    z = torch.randn(7, 2)
    x = G(z)
    assert x.shape == (7, 2) and G.z_dim == 2
    assert D(x).shape == (7,)
    # forward = head(features)
    torch.testing.assert_close(D(x), D.proj.head(D.features(x)).reshape(-1), rtol=0, atol=0)
    assert D.features(x).shape == (7, 512)


def test_mlp_images_width_depth():
    G = MLPGenerator(z_dim=16, width=32, depth=2, out_shape=(1, 8, 8))
    x = G(torch.randn(5, 16))
    assert x.shape == (5, 1, 8, 8) and x.abs().max() <= 1  # tanh
    D = MLPCritic(in_dim=64, width=32, depth=2)
    assert D(x).shape == (5,) and len(_linears(D)) == 3
    with pytest.raises(ValueError, match="in_dim=64.*MLPCritic\\(in_dim=2\\)"):
        D(torch.randn(5, 2))
    with pytest.raises(ValueError, match="z_dim=16"):
        G(torch.randn(5, 3))
    with pytest.raises(ValueError, match="positive int"):
        MLPCritic(width=0)


@pytest.mark.parametrize("img_size", [8, 16, 32, 64])
@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_dcgan_shapes_and_rules(img_size, norm):
    G = DCGANGenerator(z_dim=10, img_size=img_size, channels=3, ngf=8)
    D = DCGANCritic(img_size=img_size, channels=3, ndf=8, norm=norm)
    x = G(torch.randn(3, 10))
    assert x.shape == (3, 3, img_size, img_size) and x.abs().max() <= 1
    assert isinstance(G.net[-1], nn.Tanh)
    assert D(x).shape == (3,)
    # strided convs only, no pooling, no fully connected hidden layers, no sigmoid
    for m in list(G.modules()) + list(D.modules()):
        assert not isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Linear, nn.Sigmoid))
    convs = [m for m in D.body if isinstance(m, nn.Conv2d)]
    assert all(c.stride == (2, 2) for c in convs) and len(convs) == {8: 1, 16: 2, 32: 3, 64: 4}[img_size]
    # no norm right after D's first conv; norm kind as asked elsewhere; LeakyReLU(0.2)
    assert isinstance(D.body[1], activations.LeakyReLU) and D.body[1].negative_slope == 0.2
    norms = [m for m in D.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert len(norms) == (len(convs) - 1 if norm != "none" else 0)
    assert all(isinstance(m, nn.GroupNorm if norm == "layer" else nn.BatchNorm2d) for m in norms)
    assert all(m.num_groups == 1 for m in norms if isinstance(m, nn.GroupNorm))
    assert has_batchnorm(D) == (norm == "batch" and img_size > 8) and has_batchnorm(G)
    # G: BatchNorm + ReLU after every ConvTranspose but the last
    gl = list(G.net)
    tconvs = [i for i, m in enumerate(gl) if isinstance(m, nn.ConvTranspose2d)]
    for i in tconvs[:-1]:
        assert isinstance(gl[i + 1], nn.BatchNorm2d) and isinstance(gl[i + 2], activations.ReLU)
    assert gl[tconvs[-1] + 1] is gl[-1]
    # features are the last hidden layer: a 4x4 map, head = valid 4x4 conv on it
    f = D.features(x)
    assert f.shape == (3, D.n_features) and D.n_features == 8 * 2 ** (len(convs) - 1) * 16


def test_dcgan_64_matches_reference_channel_plan():
    G = DCGANGenerator()  # z 100, 64x64x3, ngf 64: 100 -> 512 -> 256 -> 128 -> 64 -> 3
    t = [(m.in_channels, m.out_channels) for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert t == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    D = DCGANCritic()
    c = [(m.in_channels, m.out_channels) for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert c == [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]


def test_dcgan_init_is_normal_002():
    torch.manual_seed(0)
    D = DCGANCritic(ndf=32)
    w = torch.cat([m.weight.flatten() for m in D.modules() if isinstance(m, nn.Conv2d)])
    # ~700k weights: the sample std of N(0, 0.02) is within 1 % (relative sd 1/sqrt(2n) ~ 0.1 %)
    assert abs(w.std().item() / 0.02 - 1) < 0.01 and abs(w.mean().item()) < 0.001


def test_dcgan_errors():
    with pytest.raises(ValueError, match="img_size must be one of"):
        DCGANGenerator(img_size=48)
    with pytest.raises(ValueError, match="norm must be one of"):
        DCGANCritic(norm="instance")
    D = DCGANCritic(img_size=16, channels=1, ndf=4)
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        D(torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_conditional_models(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        G, D = MLPGenerator(z_dim=4, width=16, n_classes=3), MLPCritic(width=16, n_classes=3)
    else:
        G = DCGANGenerator(z_dim=4, img_size=8, channels=1, ngf=4, n_classes=3)
        D = DCGANCritic(img_size=8, channels=1, ndf=4, norm="layer", n_classes=3)
    z = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    x = G(z, y)
    # the label changes the generated sample for the same z
    assert not torch.allclose(G(z, (y + 1) % 3), x)
    out = D(x, y)
    assert out.shape == (6,)
    # projection: D(x, y) = head(h) + <embed(y), h>
    h = D.features(x, y)
    torch.testing.assert_close(out, D.proj.head(h.reshape(6, -1, *([4, 4] if kind == "dcgan" else []))).reshape(-1)
                               + (D.proj.embed(y) * h).sum(1))
    for m in (G, D):
        with pytest.raises(ValueError, match="is conditional.*needs labels"):
            m(z if m is G else x)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        D(x, y[:3])
    # unconditional models ignore labels so a trainer can pass them uniformly
    U = MLPCritic(width=8)
    torch.testing.assert_close(U(torch.ones(2, 2), torch.tensor([0, 1])), U(torch.ones(2, 2)))


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_gradient_penalty_runs_through_critics(kind):
    """The critic must be twice differentiable w.r.t. its input (WGAN-GP's double backward)."""
    torch.manual_seed(0)
    if kind == "mlp":
        D, real, fake = MLPCritic(width=16, n_classes=2), torch.randn(5, 2), torch.randn(5, 2)
    else:
        D = DCGANCritic(img_size=16, channels=1, ndf=4, norm="layer", n_classes=2)
        real, fake = torch.randn(5, 1, 16, 16), torch.randn(5, 1, 16, 16)
    y = torch.tensor([0, 1, 1, 0, 1])
    gp = gradient_penalty(D, real, fake, lam=10.0, labels=y)
    gp.backward()
    grads = {n: p.grad for n, p in D.named_parameters()}
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    # the input gradient depends on every weight (the head's bias alone drops out of it)
    first = "body.0.weight"
    assert grads[first].abs().sum() > 0 and grads["proj.embed.weight"].abs().sum() > 0
    assert grads["proj.head.weight"].abs().sum() > 0


def test_noise_size_candidates_and_has_batchnorm():
    assert noise_size_candidates(MLPGenerator(z_dim=7))[0] == 7  # the attribute first
    assert noise_size_candidates(nn.Sequential(nn.Sequential(nn.Linear(13, 4)), nn.ReLU(), nn.Linear(4, 2))) == [13, 4]
    assert noise_size_candidates(nn.Sequential(nn.ConvTranspose2d(21, 8, 4), nn.Linear(3, 3))) == [21, 3]
    assert noise_size_candidates(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(3, 3))) == [3]
    assert noise_size_candidates(nn.Sequential(nn.ReLU())) == []
    assert has_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2))))
    assert not has_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.GroupNorm(1, 2)))
    assert not has_batchnorm(MLPCritic())
