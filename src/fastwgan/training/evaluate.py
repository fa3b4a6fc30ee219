"""Sample-quality metrics of a generator during and after training (see :mod:`fastwgan.metrics`).

Toy data: exact W1 against real samples, and for the Gaussian mixtures the high-quality fraction and
the modes covered. Images: sliced W, plus the digit metrics (Fréchet distance, classes or modes
covered) for the MNIST data sets. A metric that fails warns and is left out: it never costs a run.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .result import generate

# The final evaluation averages W1 (or sliced W) over this many independent draws of n generated
# and n real samples: one 2000-vs-2000 W1 on 8gaussians scatters about as much as the margin the
# convergence criterion leaves, the mean of 5 draws about half as much (benchmarks/RESULTS.md).
FINAL_EVAL_REPEATS = 5


def draw(generator: nn.Module, source, z_shape: int | tuple[int, ...], n: int,
         device) -> tuple[torch.Tensor, torch.Tensor]:
    """(n generated, n real) samples as float32 CPU tensors; labels from the real draw condition G.
    ``z_shape``: the noise's per-sample shape (an int: flat noise of that size)."""
    real, y = source.sample_real(n)
    labels = y.to(device) if (y is not None and source.n_classes) else None
    return generate(generator, z_shape, n, labels).float().cpu(), real.float().cpu()


def evaluate(generator: nn.Module, source, z_shape: int | tuple[int, ...], n: int, device,
             repeats: int = 1) -> dict[str, float]:
    """Quality metrics on ``n`` generated vs ``n`` real samples, averaged over ``repeats`` draws
    (``w1_std`` / ``swd_std`` give their spread); mode statistics over all generated samples."""
    if n <= 0:  # evaluation switched off (eval_samples=0), e.g. in benchmarks
        return {}
    pairs = [draw(generator, source, z_shape, n, device) for _ in range(repeats)]
    if not all(torch.isfinite(f).all() for f, _ in pairs):
        return {"finite": 0.0}
    out: dict[str, float] = {}
    for name, fn in (("distance", _distance), ("modes", _modes), ("images", _image_metrics)):
        try:
            out.update(fn(pairs, source))
        except Exception as e:  # noqa: BLE001 - a metric never costs a run
            warnings.warn(f"fastwgan: the {name} metrics failed ({type(e).__name__}: {e}); continuing without them",
                          RuntimeWarning, stacklevel=2)
    return out


def _distance(pairs, source) -> dict[str, float]:
    from .. import metrics

    if getattr(source, "is_toy", False):
        key, dists = "w1", [metrics.wasserstein1(f.numpy(), r.numpy()) for f, r in pairs]
    else:
        key, dists = "swd", [metrics.sliced_wasserstein(f.flatten(1), r.flatten(1)) for f, r in pairs]
    out = {key: float(np.mean(dists))}
    if len(dists) > 1:
        out[f"{key}_std"] = float(np.std(dists))
    return out


def _modes(pairs, source) -> dict[str, float]:
    from .. import metrics
    from ..data import toy_centers, toy_std

    if not (getattr(source, "is_toy", False) and source.name in ("8gaussians", "25gaussians")):
        return {}
    stats = metrics.mode_stats(torch.cat([f for f, _ in pairs]), toy_centers(source.name), toy_std(source.name))
    return {k: float(stats[k]) for k in ("high_quality", "modes_covered", "n_modes")}


def _image_metrics(pairs, source) -> dict[str, float]:
    if getattr(source, "name", None) not in ("mnist", "stacked-mnist"):
        return {}
    from ..imagemetrics import image_metrics

    return image_metrics(torch.cat([f for f, _ in pairs]), source.name, data_range=tuple(source.value_range))
