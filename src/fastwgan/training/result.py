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

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n samples from the trained generator (eval mode), on the generator's device."""
        param = next(self.generator.parameters())
        was = self.generator.training
        self.generator.eval()
        try:
            z = torch.randn(n, self.z_dim, device=param.device, dtype=param.dtype)
            return call(self.generator, z, labels)
        finally:
            self.generator.train(was)
