"""What a request for samples may ask, checked once for every entry point (``TrainResult.sample``,
``LoadedRun.sample``, ``fastwgan sample`` / ``eval``): the count, the labels, the seed, and the
memory the request needs before it allocates any of it."""
from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch

from .eval_mode import eval_mode
from .labels import check_labels
from .memory import require_memory

__all__ = ["SEED_LIMIT", "check_count", "check_seed", "labels_for", "check_sample_memory"]

LabelsLike = torch.Tensor | Sequence[int] | int | None
SEED_LIMIT = 2**63  # torch's generators take seeds in 0 .. 2**63 - 1 on every path fastwgan seeds


def _as_int(v: Any) -> int | None:
    """``v`` as an int when it is one: Python and NumPy integers, a 0-d integer tensor (not bool)."""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return None
    if isinstance(v, torch.Tensor):
        if v.dim() != 0 or v.dtype == torch.bool or v.is_floating_point() or v.is_complex():
            return None
        return int(v.item())
    try:
        return operator.index(v)
    except TypeError:
        return None


def check_count(n: Any, what: str = "how many samples") -> int:
    """``n`` as a positive int, else ValueError (a Python, NumPy or 0-d tensor integer is fine)."""
    value = _as_int(n)
    if value is None or value <= 0:
        raise ValueError(f"n must be a positive int ({what}), got {n!r}: pass e.g. n=1000")
    return value


def check_seed(seed: Any, setting: str = "seed") -> int | None:
    """``seed`` (None: unseeded) as an int in 0 .. 2**63 - 1, else ValueError naming ``setting``."""
    if seed is None:
        return None
    value = _as_int(seed)
    if value is None or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{setting} must be an int in 0 .. 2**63 - 1 (what torch's random generators take), got "
                         f"{seed!r}: pass a smaller seed, e.g. {setting}=0")
    return value


def labels_for(labels: LabelsLike, n: int, n_classes: int, device: torch.device) -> torch.Tensor | None:
    """The (n,) int64 class ids a generator of ``n_classes`` classes gets for ``labels`` (one id
    for all, or n), or None for an unconditional generator; every mismatch a ValueError / TypeError."""
    y = check_labels(labels, n, n_classes, who="this generator", how="labels= / --labels", one_for_all=True,
                     convert=True, range_fix="pass ids of the run's classes")
    return None if y is None else y.to(device)


@torch.no_grad()
def check_sample_memory(generator: torch.nn.Module, z_shape: Sequence[int], n: int, labels: torch.Tensor | None,
                        what: str, fix: str) -> tuple[int, ...]:
    """Refuse up front when ``n`` samples (their noise and the generator's outputs) cannot be held;
    returns the per-sample output shape. The output size comes from one sample's forward pass
    (eval mode, no random draw), its noise checked first."""
    from .objectives import call

    param = next(generator.parameters())
    per_z = math.prod(z_shape) * param.element_size()
    require_memory(per_z, f"one noise vector of shape {tuple(z_shape)}", fix)
    with eval_mode(generator):
        one = call(generator, torch.zeros(1, *z_shape, device=param.device, dtype=param.dtype),
                   None if labels is None else labels[:1])
    require_memory(n * (per_z + one[0].numel() * one.element_size()), what, fix)
    return tuple(one.shape[1:])
