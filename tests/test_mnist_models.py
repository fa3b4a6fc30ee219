"""Tests of the WGAN-GP authors' MNIST generator and critic (fastwgan.models.MNISTGenerator /
MNISTCritic): the architecture of gan_mnist.py layer by layer, its parameter count, tflib's
initialisation, conditioning, and the double backward the gradient penalty needs."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _rules import assert_fp64_rule
from fastwgan.models import MNISTCritic, MNISTGenerator, build_model, has_batchnorm, model_spec, noise_size_candidates
from fastwgan.ops import activations
from fastwgan.ops.activations import with_torch_activations
from fastwgan.reference.gradient_penalty import gradient_penalty


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _authors_counts(dim: int, z: int = 128) -> tuple[int, int]:
    """gan_mnist.py's parameters, layer by layer (weights + biases; 5x5 kernels)."""
    g = (z * 4 * 4 * 4 * dim + 4 * 4 * 4 * dim) + (4 * dim * 2 * dim * 25 + 2 * dim) \
        + (2 * dim * dim * 25 + dim) + (dim * 1 * 25 + 1)
    d = (1 * dim * 25 + dim) + (dim * 2 * dim * 25 + 2 * dim) + (2 * dim * 4 * dim * 25 + 4 * dim) \
        + (4 * 4 * 4 * dim + 1)
    return g, d


@pytest.mark.parametrize("dim", [64, 16])
def test_parameter_count_matches_the_authors(dim):
    g, d = _authors_counts(dim)
    assert (_count(MNISTGenerator(dim=dim)), _count(MNISTCritic(dim=dim))) == (g, d)
    if dim == 64:  # the figures the docstrings state
        assert (g, d) == (1_554_177, 1_030_145)


def test_layers_shapes_and_rules():
    torch.manual_seed(0)
    G, D = MNISTGenerator(), MNISTCritic()
    lin = [(m.in_features, m.out_features) for m in G.modules() if isinstance(m, nn.Linear)]
    assert lin == [(128, 4 * 4 * 4 * 64)]
    tconv = [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in G.modules()
             if isinstance(m, nn.ConvTranspose2d)]
    assert tconv == [(256, 128, (5, 5), (2, 2)), (128, 64, (5, 5), (2, 2)), (64, 1, (5, 5), (2, 2))]
    conv = [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert conv == [(1, 64, (5, 5), (2, 2)), (64, 128, (5, 5), (2, 2)), (128, 256, (5, 5), (2, 2))]
    assert [(m.in_features, m.out_features) for m in D.modules() if isinstance(m, nn.Linear)] == [(4096, 1)]
    # no normalisation anywhere (WGAN-GP mode), fastwgan's activations (pruned double backward)
    norms = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in list(G.modules()) + list(D.modules())) and not has_batchnorm(D)
    assert sum(isinstance(m, activations.ReLU) for m in G.modules()) == 3
    leaky = [m for m in D.modules() if isinstance(m, activations.LeakyReLU)]
    assert len(leaky) == 3 and all(m.negative_slope == 0.2 for m in leaky)
    assert not any(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for m in list(G.modules()) + list(D.modules()))
    # the 4x4 -> 8x8 (cropped to 7x7) -> 14x14 -> 28x28 path, seen through hooks
    seen = {}
    G.up1.register_forward_hook(lambda m, i, o: seen.__setitem__("up1", o.shape))
    G.up2.register_forward_hook(lambda m, i, o: seen.__setitem__("up2_in", i[0].shape))
    x = G(torch.randn(3, 128))
    assert seen == {"up1": (3, 128, 8, 8), "up2_in": (3, 128, 7, 7)}
    assert x.shape == (3, 1, 28, 28) and bool(((x > 0) & (x < 1)).all())  # sigmoid
    assert D(x).shape == (3,) and D.features(x).shape == (3, 4096)
    # the authors feed flat digits: same scores; forward = head(features)
    torch.testing.assert_close(D(x.reshape(3, 784)), D(x), rtol=0, atol=0)
    torch.testing.assert_close(D(x), D.proj.head(D.features(x)).reshape(3), rtol=0, atol=0)
    assert noise_size_candidates(G)[0] == 128 and G.img_size == 28 and G.channels == 1


def test_tflib_initialisation():
    """Weights ~ U(+-s sqrt 3) with tflib's std s per layer kind, biases 0."""
    torch.manual_seed(0)
    G, D = MNISTGenerator(), MNISTCritic()
    want = {
        "fc.0": math.sqrt(2 / (128 + 4096)),                     # Linear, Glorot
        "up1.0": math.sqrt(4 / (256 * 25 / 4 + 128 * 25)),       # Deconv2D, He
        "up2.0": math.sqrt(4 / (128 * 25 / 4 + 64 * 25)),
        "body.2": math.sqrt(4 / (64 * 25 + 128 * 25 / 4)),       # Conv2D, He
        "body.4": math.sqrt(4 / (128 * 25 + 256 * 25 / 4)),
    }
    mods = dict(G.named_modules()) | dict(D.named_modules())
    for name, s in want.items():
        w = mods[name].weight.detach().double()
        n = w.numel()
        # U(-a, a), a = s sqrt 3: bounded by a; sample std within 5 sd of its sampling error
        # (relative sd of a uniform sample's std: sqrt((kurtosis - 1) / (4 n)) = sqrt(0.8 / (4 n)))
        assert w.abs().max() <= s * math.sqrt(3) * (1 + 1e-6), name
        assert abs(w.std().item() / s - 1) < 5 * math.sqrt(0.8 / (4 * n)), name
        assert not mods[name].bias.any(), name


def test_conditional_variants_and_spec():
    torch.manual_seed(0)
    G, D = MNISTGenerator(z_dim=8, dim=4, n_classes=10), MNISTCritic(dim=4, n_classes=10)
    z, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 9])
    x = G(z, y)
    assert x.shape == (6, 1, 28, 28) and not torch.allclose(G(z, (y + 1) % 10), x)
    h = D.features(x, y)
    torch.testing.assert_close(D(x, y), D.proj.head(h).reshape(6) + (D.proj.embed(y) * h).sum(1))
    for m, inp in ((G, z), (D, x)):
        with pytest.raises(ValueError, match="is conditional.*needs labels"):
            m(inp)
    # unconditional models ignore labels
    U = MNISTCritic(dim=4)
    torch.testing.assert_close(U(x, y), U(x), rtol=0, atol=0)
    # a built-in model: its spec rebuilds it
    for m in (G, D):
        spec = model_spec(m)
        assert spec is not None and spec["kwargs"]["n_classes"] == 10
        assert type(build_model(spec)) is type(m)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="positive int"):
        MNISTGenerator(dim=0)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*DCGANCritic\(img_size=32"):
        MNISTCritic(dim=4)(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="z_dim=128"):
        MNISTGenerator(dim=4)(torch.randn(2, 100))


@pytest.mark.parametrize("n_classes", [0, 3])
def test_penalty_double_backward_matches_torch_activations(n_classes):
    """WGAN-GP differentiates the critic twice. The pruned activations must give the parameter
    gradients of the penalty that torch.nn's give: both fp32 results against the fp64 truth,
    by the project's rule (tests/_rules.py)."""
    torch.manual_seed(0)
    D = MNISTCritic(dim=4, n_classes=n_classes)
    real, fake = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    alpha = torch.rand(5)
    y = torch.tensor([0, 1, 2, 0, 1]) if n_classes else None

    def grads(critic, dtype):
        critic = critic.to(dtype)
        gp = gradient_penalty(critic, real.to(dtype), fake.to(dtype), lam=10.0, alpha=alpha.to(dtype), labels=y)
        params = list(critic.parameters())
        # biases reach the input gradient only through the activation masks (derivative 0):
        # unused in the penalty's graph, so their gradient is None -> 0
        gs = torch.autograd.grad(gp, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]

    ours = grads(D, torch.float32)
    plain = grads(with_torch_activations(D), torch.float32)
    truth = grads(with_torch_activations(D), torch.float64)
    assert_fp64_rule(ours, plain, truth, what="penalty parameter gradients")
    # every weight matrix reaches the penalty (a pruned branch that dropped a real term would zero one)
    names = [n for n, _ in D.named_parameters()]
    for name, g in zip(names, ours):
        if name.endswith("weight"):
            assert g.abs().sum() > 0, name


def test_penalty_gradient_by_finite_differences():
    """The penalty's parameter gradient (a mixed second derivative of the critic) against a central
    difference along a random direction V, in float64: (GP(t + eps V) - GP(t - eps V)) / (2 eps)
    = <grad GP, V> + O(eps^2) while no activation changes sign (the critic is piecewise linear in x,
    smooth in its weights between sign changes)."""
    torch.manual_seed(0)
    D = MNISTCritic(dim=4).double()
    real, fake = torch.rand(3, 1, 28, 28, dtype=torch.float64), torch.rand(3, 1, 28, 28, dtype=torch.float64)
    alpha = torch.rand(3, dtype=torch.float64)
    params = list(D.parameters())
    V = [torch.randn_like(p) for p in params]
    gp = gradient_penalty(D, real, fake, lam=10.0, alpha=alpha)
    grads = torch.autograd.grad(gp, params, allow_unused=True)
    analytic = sum((g * v).sum() for g, v in zip(grads, V) if g is not None).item()
    eps = 1e-6

    def gp_at(t):
        with torch.no_grad():
            for p, v in zip(params, V):
                p.add_(t * v)
        val = gradient_penalty(D, real, fake, lam=10.0, alpha=alpha).item()
        with torch.no_grad():
            for p, v in zip(params, V):
                p.sub_(t * v)
        return val

    numeric = (gp_at(eps) - gp_at(-eps)) / (2 * eps)
    # error: the O(eps^2) truncation of a central difference (the penalty is a polynomial of low
    # degree in the weights between sign changes) plus each GP value's rounding, at most ~1e3 u64
    # |GP| (sums of up to ~1e3 float64 terms per output, worst-case linear growth), divided by eps
    u64 = torch.finfo(torch.float64).eps / 2
    scale = abs(gp.item()) + abs(analytic)
    assert abs(numeric - analytic) <= (1e3 * u64 / eps + eps**2) * scale, (numeric, analytic)
    assert abs(analytic) > 1e-3 * abs(gp.item())  # a direction the penalty actually depends on
