"""Validation of one batch of user data, written once and used by every source: the first batch
when a source is built, and each later batch of streams (iterables, samplers) against the
first one's layout.

A batch is a tensor ``x`` (N, ...) or a pair ``(x, y)`` with ``y`` integer class ids (N,).
Every error names the problem and the fix, before any training work is done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..labels import check_labels
from .images import resize

__all__ = ["BatchSpec", "validate_batch", "split_batch", "n_classes_for", "detect_value_range", "check_value_range"]


@dataclass(frozen=True)
class BatchSpec:
    """The layout every later batch of a stream must keep: the first batch's."""

    sample_shape: tuple[int, ...]
    labelled: bool
    n_classes: int  # 0: no bound known


def split_batch(raw: Any) -> tuple[Any, Any]:
    """``x`` -> (x, None); ``(x, y)`` -> (x, y); ``(x,)`` -> (x, None)."""
    if isinstance(raw, Tensor):
        return raw, None
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        return raw[0], raw[1]
    if isinstance(raw, (tuple, list)) and len(raw) == 1:
        return raw[0], None
    raise TypeError(
        f"a batch must be a tensor x or a pair (x, y), got {type(raw).__name__}"
        + (f" of length {len(raw)}" if isinstance(raw, (tuple, list)) else "")
        + "; yield x or (x, y)."
    )


def _prepare_x(x: Any, image_size: int | None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(
            f"data must be a torch.Tensor, got {type(x).__name__}; convert it (e.g. torch.as_tensor, or "
            "torchvision.transforms.ToTensor() for PIL images)."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"data has dtype {x.dtype}; pass floating-point data, scaled to [0, 1] for a generator ending in a "
            "sigmoid (x.float() / 255 for uint8 images) or to [-1, 1] for one ending in tanh "
            "(x.float() / 127.5 - 1)."
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"data of shape {tuple(x.shape)} is empty or has no batch axis; pass (N, ...) with N >= 1.")
    x = x.float()
    if image_size is not None and x.dim() == 4 and tuple(x.shape[-2:]) != (image_size, image_size):
        x = resize(x, image_size)
    return x


def _check_finite(x: Tensor, where: str) -> None:
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{where} contains {bad} NaN or inf values; clean or drop those samples before training.")


def _check_against(x: Tensor, y: Any, spec: BatchSpec, where: str, n: int | None) -> None:
    if x.shape[1:] != spec.sample_shape or (n is not None and x.shape[0] != n):
        count = f"{n} samples" if n is not None else "samples"
        raise ValueError(
            f"{where} has shape {tuple(x.shape)}; it must return {count} of shape {spec.sample_shape}, the first "
            "batch's (every batch keeps one per-sample shape; pass image_size= to resize images)."
        )
    if (y is not None) != spec.labelled:
        raise ValueError(
            f"{where} {'has' if y is not None else 'lacks'} labels but the first batch "
            f"{'did not' if y is not None else 'had them'}; return (x, y) every time or x every time."
        )


def validate_batch(
    raw: Any,
    *,
    image_size: int | None = None,
    where: str = "data",
    finite: bool = False,
    spec: BatchSpec | None = None,
    n: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One batch ``x`` or ``(x, y)`` as (x float32 (N, ...), y int64 (N,) or None).

    Checks x's type, dtype and batch axis, resizes (N, C, H, W) images to ``image_size``;
    with ``finite`` rejects NaN/inf (done on first batches: a full scan of every batch would
    cost a device sync per step); with ``spec`` (a stream's first-batch layout) checks the
    per-sample shape, the count ``n`` when given and that labels are present exactly when they
    were; then y as class ids (``fastwgan.labels.check_labels``), below ``spec.n_classes`` when
    known. ``where`` names the batch in error messages.
    """
    x, y = split_batch(raw)
    x = _prepare_x(x, image_size)
    if finite:
        _check_finite(x, where)
    if spec is not None:
        _check_against(x, y, spec, where, n)
    bound = spec.n_classes if spec is not None and spec.n_classes else None  # None: inferred from the labels
    y = check_labels(y, x.shape[0], bound, who=where, how="(x, y)", convert=True,
                     range_fix="n_classes was inferred from the first batch: pass n_classes= to as_data_source")
    return x, y


def n_classes_for(y: Tensor | None, n_classes: int | None) -> int:
    """The class count: 0 when unlabelled, ``max(y) + 1`` when not given, else ``n_classes``
    after checking every label is below it."""
    if y is None:
        return 0
    if n_classes is None:
        return int(y.max()) + 1
    check_labels(y, y.shape[0], n_classes, who=f"as_data_source(n_classes={n_classes})",
                 how="the labels, or pass n_classes= the number of classes",
                 range_fix="pass n_classes= the number of classes, or class ids below it")
    return int(n_classes)


def detect_value_range(x: Tensor) -> tuple[float, float]:
    """The data's value convention: (0, 1) when no value is negative (images scaled by 1/255,
    a sigmoid generator), else (-1, 1) (images scaled by 1/127.5 - 1, a tanh generator)."""
    return (0.0, 1.0) if float(x.min()) >= 0.0 else (-1.0, 1.0)


def check_value_range(value_range: Any) -> tuple[float, float]:
    """``value_range`` as a pair of floats (lo, hi) with lo < hi, else ValueError."""
    try:
        if not isinstance(value_range, (tuple, list)):
            raise TypeError
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"value_range must be a pair (lo, hi) such as (0, 1) or (-1, 1), got {value_range!r}."
        ) from None
    if not lo < hi:
        raise ValueError(f"value_range must have lo < hi, got {value_range!r}; pass e.g. (0, 1) or (-1, 1).")
    return lo, hi
