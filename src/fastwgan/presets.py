"""Default settings: each loss's paper defaults, and a measured preset per built-in data set.

Precedence, lowest first: ``LOSS_DEFAULTS[loss]`` (the papers' Algorithm 1 settings) <
``PRESETS[data]`` (measured on this project's CPU to train that data set well) < what the caller
passes explicitly. Every value is overridable from ``fastwgan.train`` and the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

# Paper defaults. WGAN: Arjovsky et al. 2017, Alg. 1 (RMSProp, lr 5e-5, c 0.01, m 64, n_critic 5).
# WGAN-GP: Gulrajani et al. 2017, Alg. 1 (Adam lr 1e-4, betas (0, 0.9), lambda 10, n_critic 5).
# WGAN-LP: Petzka et al. 2018 use the same optimiser settings with the one-sided penalty.
# GAN / NS-GAN: DCGAN's Adam 2e-4, betas (0.5, 0.999), one D step per G step (Radford et al. 2016).
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "wgan": dict(optimizer="rmsprop", lr=5e-5, clip=0.01, n_critic=5, batch_size=64, lam=0.0),
    "wgan-gp": dict(optimizer="adam", lr=1e-4, betas=(0.0, 0.9), lam=10.0, n_critic=5, batch_size=64),
    "wgan-lp": dict(optimizer="adam", lr=1e-4, betas=(0.0, 0.9), lam=10.0, n_critic=5, batch_size=64),
    "gan": dict(optimizer="adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1, batch_size=64, lam=0.0),
    "ns-gan": dict(optimizer="adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1, batch_size=64, lam=0.0),
}


@dataclass(frozen=True)
class Preset:
    """Models and settings that train one built-in data set well (see ``notes``)."""

    models: Callable[[int, int], tuple[nn.Module, nn.Module]]  # (z_dim, n_classes) -> (G, D)
    z_dim: int
    steps: int
    settings: dict[str, Any] = field(default_factory=dict)  # all losses
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_every: int = 100
    eval_every: int = 500
    notes: str = ""
    # per loss, what the default recipe ("fast") changes: only where the time-to-quality harness
    # showed the same criterion reached sooner by every seed (recipe="textbook" leaves it out)
    fast: dict[str, dict[str, Any]] = field(default_factory=dict)


def _toy_models(width: int) -> Callable[[int, int], tuple[nn.Module, nn.Module]]:
    """gan_toy's MLPs (3 hidden ReLU layers) at ``width`` (gan_toy: 512)."""

    def build(z_dim: int, n_classes: int) -> tuple[nn.Module, nn.Module]:
        from .models import MLPCritic, MLPGenerator

        return (
            MLPGenerator(z_dim=z_dim, out_dim=2, width=width, depth=3, n_classes=n_classes),
            MLPCritic(in_dim=2, width=width, depth=3, n_classes=n_classes),
        )

    return build


def _digits_models(z_dim: int, n_classes: int) -> tuple[nn.Module, nn.Module]:
    from .models import MLPCritic, MLPGenerator

    return (
        MLPGenerator(z_dim=z_dim, width=512, depth=3, n_classes=n_classes, out_shape=(1, 8, 8)),
        MLPCritic(in_dim=64, width=512, depth=3, n_classes=n_classes),
    )


TOY_WIDTH = 256

# Why this preset and not gan_toy's own settings (width 512, lambda 0.1, Adam 1e-4 constant): those
# reach the high-quality criterion much later, and the linear decay is what sharpens the modes at
# the end. The runs behind it, with their command: benchmarks/RESULTS.md, "Convergence".
# Other losses keep their papers' settings on toy data (with gan_toy's batch of 256).
_TOY = dict(batch_size=256)
_TOY_PER_LOSS = {
    "wgan-gp": dict(betas=(0.5, 0.9), lam=1.0, lr=2e-4, lr_decay="linear"),
    "wgan-lp": dict(betas=(0.5, 0.9), lam=1.0, lr=2e-4, lr_decay="linear"),
}

# The fast recipe (the default; recipe="textbook" leaves it out): one critic step per generator
# step at twice the generator's learning rate (two time-scales, Heusel et al. 2017) and a shorter
# budget (the linear decay ends sooner). Each generator step then costs about a quarter, and on
# 8gaussians every seed reached the README's criterion sooner than with 5 critic steps. The runs
# behind it: benchmarks/RESULTS.md, "Time to quality".
_TTUR = dict(n_critic=1, lr=4e-4, lr_g=2e-4)

# 25gaussians' fast recipe: every recipe with fewer critic steps failed to spread the samples over the
# grid, so it keeps 5 and spends less per unit of quality in two other ways. A batch of 1024 at twice
# the learning rate (the square-root scaling of Krizhevsky 2014 / Hoffer et al. 2017): on 2 cores a
# step costs 1.4x a batch of 256's eager and 1.8x compiled, but the criterion came in 2250-3250 steps
# instead of 6000-7500 (4x the batch at 4x the rate, 8e-4, took 4500). And the lazy penalty (Karras
# et al. 2020): the penalty on every 5th critic step at 5x its weight. The budget, 5000 steps, is
# about twice the steps the criterion took (3000 left a seed short). The runs: benchmarks/RESULTS.md,
# "Time to quality", and recipe_search.md.
_25G_FAST = dict(batch_size=1024, lr=4e-4, penalty_every=5, steps=5000)

PRESETS: dict[str, Preset] = {
    "8gaussians": Preset(
        models=_toy_models(TOY_WIDTH), z_dim=2, steps=5000, settings=_TOY,
        per_loss=_TOY_PER_LOSS, log_every=100, eval_every=500, notes="measured, see above",
        fast={loss: dict(_TTUR, steps=4000) for loss in ("wgan-gp", "wgan-lp")},
    ),
    "25gaussians": Preset(
        models=_toy_models(TOY_WIDTH), z_dim=2, steps=10000, settings=_TOY,
        per_loss=_TOY_PER_LOSS, log_every=100, eval_every=500, fast={"wgan-gp": _25G_FAST},
    ),
    "swissroll": Preset(
        models=_toy_models(TOY_WIDTH), z_dim=2, steps=3000, settings=_TOY,
        per_loss=_TOY_PER_LOSS, log_every=100, eval_every=500,
    ),
    "digits": Preset(
        models=_digits_models, z_dim=32, steps=3000, settings=dict(batch_size=64),
        notes="MLP on 8x8 digits",
    ),
}


# MNIST: the setting of the WGAN-GP authors' gan_mnist.py (Gulrajani et al. 2017): Adam 1e-4,
# betas (0.5, 0.9), lambda 10, 5 critic iterations, batch 50, 128 noise values, data in [0, 1]
# and a generator ending in a sigmoid. Other losses keep their papers' settings at batch 50.
MNIST_Z_DIM = 128
MNIST_CPU_DIM = 16  # gan_mnist.py's DIM is 64; 16 keeps a CPU run affordable
_MNIST = dict(batch_size=50)
_MNIST_PER_LOSS = {
    loss: dict(optimizer="adam", lr=1e-4, betas=(0.5, 0.9), lam=10.0, n_critic=5) for loss in ("wgan-gp", "wgan-lp")
}


# The budget and the fast recipe: benchmarks/RESULTS.md, "MNIST". With one critic step per generator
# step at twice the generator's learning rate (the toys' fast recipe), a generator step costs about a
# quarter as much, and FD fell faster per step than with 5 critic steps; 10000 steps is about where
# it reached 3x the real-data floor.
MNIST_STEPS = 10_000
_MNIST_FAST = {loss: dict(_TTUR) for loss in ("wgan-gp", "wgan-lp")}


def _mnist_models(dim: int, channels: int) -> Callable[[int, int], tuple[nn.Module, nn.Module]]:
    """gan_mnist.py's generator and critic at width ``dim`` for 28x28 images with ``channels``
    (1: MNIST, 3: Stacked MNIST), looked up when built so this module imports without them."""

    def build(z_dim: int, n_classes: int) -> tuple[nn.Module, nn.Module]:
        from . import models

        extra = {} if channels == 1 else {"channels": channels}
        return (
            models.MNISTGenerator(z_dim=z_dim, dim=dim, n_classes=n_classes, **extra),
            models.MNISTCritic(dim=dim, n_classes=n_classes, **extra),
        )

    return build


def _dcgan32_models(channels: int) -> Callable[[int, int], tuple[nn.Module, nn.Module]]:
    """DCGAN-32 (LayerNorm critic: the penalty is per sample). Its generator ends in tanh, whose
    range (-1, 1) holds the [0, 1] digits."""

    def build(z_dim: int, n_classes: int) -> tuple[nn.Module, nn.Module]:
        from .models import DCGANCritic, DCGANGenerator

        return (
            DCGANGenerator(z_dim=z_dim, img_size=32, channels=channels, n_classes=n_classes),
            DCGANCritic(img_size=32, channels=channels, norm="layer", n_classes=n_classes),
        )

    return build


def mnist_preset(image_size: int = 28, channels: int = 1) -> Preset:
    """The preset for ``"mnist"`` (``channels=1``) or ``"stacked-mnist"`` (``channels=3``):
    gan_mnist.py's models at 28x28, DCGAN-32's at 32x32 (the digits zero-padded by 2 pixels)."""
    if image_size not in (28, 32):
        raise ValueError(f"the MNIST presets are for image_size 28 or 32, got {image_size!r}.")
    models = _mnist_models(MNIST_CPU_DIM, channels) if image_size == 28 else _dcgan32_models(channels)
    return Preset(models=models, z_dim=MNIST_Z_DIM, steps=MNIST_STEPS, settings=_MNIST, per_loss=_MNIST_PER_LOSS,
                  log_every=100, eval_every=1000, fast=_MNIST_FAST,
                  notes="gan_mnist.py's setting at width 16; the fast recipe adds TTUR with one critic step")


PRESETS["mnist"] = mnist_preset(28, channels=1)
PRESETS["stacked-mnist"] = mnist_preset(28, channels=3)


def builtin_preset(name: str, image_size: int | None = None) -> Preset:
    """The preset of built-in data set ``name`` at ``image_size`` (None: the set's own size)."""
    if name in ("mnist", "stacked-mnist") and image_size is not None:
        return mnist_preset(image_size, channels=1 if name == "mnist" else 3)
    return PRESETS[name]


def image_folder_preset(image_size: int, channels: int) -> Preset:
    """DCGAN models for a folder of images (LayerNorm critic: the penalty is per sample)."""

    def models(z_dim: int, n_classes: int) -> tuple[nn.Module, nn.Module]:
        from .models import DCGANCritic, DCGANGenerator

        return (
            DCGANGenerator(z_dim=z_dim, img_size=image_size, channels=channels, n_classes=n_classes),
            DCGANCritic(img_size=image_size, channels=channels, norm="layer", n_classes=n_classes),
        )

    return Preset(models=models, z_dim=100, steps=5000, log_every=50, eval_every=500)
