"""What a training run returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..eval_mode import eval_mode
from ..models import noise_shape
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
    z_dim: int = 0  # noise values per sample, prod(z_shape)
    z_shape: tuple[int, ...] = ()  # the noise's per-sample shape, e.g. (100,) or (100, 1, 1)
    evals: list[dict[str, float]] = field(default_factory=list)
    compile_seconds: float = 0.0  # compiling / capturing the static step
    step_mode: str = "eager"  # "eager", "compiled", "cuda-graph", "compiled+cuda-graph"
    steps_done: int = 0  # generator steps trained: ``steps``, or fewer where on_eval ended the run

    n_classes: int | None = None  # the data's classes (None: the generator's n_classes attribute, else 0)

    def sample(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n samples from the trained generator (eval mode), on the generator's device. ``n`` and
        ``labels`` are checked as ``fastwgan.load(...).sample`` checks them (fastwgan.sampling)."""
        from ..sampling import check_count, check_sample_memory, labels_for

        n = check_count(n)
        n_classes = self.n_classes if self.n_classes is not None else int(getattr(self.generator, "n_classes", 0) or 0)
        y = labels_for(labels, n, n_classes, next(self.generator.parameters()).device)
        z_shape = noise_shape(self.z_shape or self.z_dim)
        check_sample_memory(self.generator, z_shape, n, y, f"{n:,} samples", "ask for fewer samples at a time")
        return generate(self.generator, z_shape, n, y)


@torch.no_grad()
def generate(generator: nn.Module, z_shape: int | tuple[int, ...], n: int,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) for n draws z ~ N(0, I) of per-sample shape ``z_shape`` (an int: flat (z_dim,)) in the
    generator's dtype and on its device, in eval mode (its BatchNorm statistics are not updated),
    its training mode restored after."""
    param = next(generator.parameters())
    with eval_mode(generator):
        z = torch.randn(n, *noise_shape(z_shape), device=param.device, dtype=param.dtype)
        return call(generator, z, labels)
