"""Seeding, and running side computations without moving the training's random streams."""
from __future__ import annotations

import random

import numpy as np
import torch

from ..checkpoint import rng_state, set_rng_state


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (all devices) from one seed: the same seed gives the same run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class IsolatedRNG:
    """Run a side computation (probe, evaluation, pictures) without moving the training's random
    streams: the global Python/NumPy/torch(/CUDA) states and the data source's own state are
    restored, so a run's trajectory does not depend on how often it is evaluated."""

    def __init__(self, source) -> None:
        self.source = source

    def __enter__(self) -> None:
        self.rng = rng_state()
        self.data = self.source.state_dict()

    def __exit__(self, *exc) -> None:
        set_rng_state(self.rng)
        self.source.load_state_dict(self.data)
