"""The tiny models the tests share (seeded, so two calls build the same weights), and
``quick_train``: the trainer with a test's quiet defaults."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

import fastwgan

from fastwgan.models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator


def tiny_models(kind: str = "mlp", *, n_classes: int = 0, width: int = 24, z_dim: int = 3,
                seed: int = 1) -> tuple[nn.Module, nn.Module]:
    """(G, D): "mlp" = gan_toy's MLPs on 2-D points at ``width``; "dcgan" = a 16x16 one-channel
    DCGAN pair (convolutions, LayerNorm critic, BatchNorm generator: buffers too)."""
    torch.manual_seed(seed)
    if kind == "mlp":
        return (MLPGenerator(z_dim=z_dim, out_dim=2, width=width, n_classes=n_classes),
                MLPCritic(in_dim=2, width=width, n_classes=n_classes))
    if kind == "dcgan":
        return (DCGANGenerator(z_dim=z_dim, img_size=16, channels=1, ngf=8, n_classes=n_classes),
                DCGANCritic(img_size=16, channels=1, ndf=8, norm="layer", n_classes=n_classes))
    raise ValueError(f"unknown tiny model kind {kind!r}: 'mlp' or 'dcgan'")


# what a test of the trainer's logic leaves out: the progress bar, the pictures, the evaluation
QUIET = dict(progress=False, plots=False, eval_samples=0)
# the same, spelled as `fastwgan train` flags
QUIET_ARGS = [*([] if QUIET["progress"] else ["--no-progress"]), *([] if QUIET["plots"] else ["--no-plots"]),
              "--eval-samples", str(QUIET["eval_samples"])]
# this folder, for a test's subprocess to import this module (PYTHONPATH or sys.path)
TESTS = str(Path(__file__).resolve().parent)


def quick_train(generator: nn.Module | None, critic: nn.Module | None, data: Any = "8gaussians",
                **settings: Any) -> fastwgan.TrainResult:
    """``fastwgan.train`` as a test of the trainer's logic runs it: no progress bar, no pictures,
    no evaluation (``eval_samples=0``) unless the test asks; every setting given wins."""
    return fastwgan.train(generator, critic, data, **{**QUIET, **settings})
