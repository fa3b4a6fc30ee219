"""What a training run returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..objectives import call


@dataclass
class TrainResult:
    """The trained models (trained in place), the logged history and the final metrics."""

    generator: nn.Module
    critic: nn.Module
    history: list[dict[str, float]]  # one entry per generator step (read from the device at log points)
    metrics: dict[str, float]  # final metrics (W1, modes, ...), also in summary.json
    config: dict[str, Any]  # every resolved algorithm setting
    out: Path | None  # the run folder, when one was written
    train_seconds: float = 0.0  # training only: no setup, compiling, evaluation or checkpoints
    z_dim: int = 0
    evals: list[dict[str, float]] = field(default_factory=list)
    compile_seconds: float = 0.0  # compiling / capturing the static step
    step_mode: str = "eager"  # "eager", "compiled", "cuda-graph", "compiled+cuda-graph"
    steps_done: int = 0  # generator steps trained: ``steps``, or fewer where on_eval ended the run

    def sample(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n samples from the trained generator (eval mode), on the generator's device."""
        return generate(self.generator, self.z_dim, n, labels)


@torch.no_grad()
def generate(generator: nn.Module, z_dim: int, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) for n draws z ~ N(0, I) in the generator's dtype and on its device, in eval mode (its
    BatchNorm statistics are not updated), its training mode restored after."""
    param = next(generator.parameters())
    was = generator.training
    generator.eval()
    try:
        z = torch.randn(n, z_dim, device=param.device, dtype=param.dtype)
        return call(generator, z, labels)
    finally:
        generator.train(was)
