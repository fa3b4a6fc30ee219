"""Class labels, checked in one place for every way they enter: data batches
(``as_data_source``), the built-in models' forwards, the gradient penalty's ``labels=`` and
requests for samples (``TrainResult.sample``, ``fastwgan.load(...).sample``, ``--labels``).

Labels are class ids ``y`` of shape (B,), one per sample, int64, with ``0 <= y_b < n_classes``;
they are present exactly when the model is conditional (``n_classes > 0``). Every error names
the problem and the fix.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_labels"]


def _as_tensor(labels: Any) -> Tensor:
    try:
        return torch.as_tensor(labels)
    except Exception:
        raise TypeError(f"labels must be integer class ids (a tensor, a sequence or an int), got "
                        f"{type(labels).__name__}: pass a tensor of int class ids.") from None


def check_labels(labels: Any, n: int, n_classes: int | None = None, *, who: str = "the model",
                 how: str = "labels=", one_for_all: bool = False, convert: bool = False, ids: bool = True,
                 values: bool = True, range_fix: str = "pass class ids of the model's classes") -> Tensor | None:
    """``labels`` for a batch of ``n`` samples as int64 class ids of shape (n,), or None.

    ``n_classes``: > 0 the model is conditional (labels required, each below it); 0 it is not
    (labels refused); None: the count is not known here (data whose classes are inferred, the
    penalty's critic): presence is the caller's to decide and only ``0 <= y`` is checked.
    ``who`` / ``how`` name the model and how labels are passed, in the messages.
    ``one_for_all``: a single id is repeated for all n samples. ``convert``: sequences, NumPy
    arrays and ints are taken (user input); otherwise a tensor is required. ``ids=False``: any
    per-sample conditioning tensor (B, ...) (the penalty hands labels to a critic it does not
    know): only its type and batch axis are checked, and it is returned as given.
    ``values=False`` skips the range check, a host read of the ids: a model's forward pass does,
    because the read would sync the device every step and break a compiled graph; the ids were
    checked where they entered (the data source), and the embedding still refuses a bad one.
    """
    if labels is None:
        if n_classes:
            each = "one for all samples or one per sample" if one_for_all else f"of shape ({n},)"
            raise ValueError(f"{who} is conditional (n_classes={n_classes}) and needs labels: pass {how}, "
                             f"int class ids in 0..{n_classes - 1}, {each}")
        return None
    if n_classes == 0:
        raise ValueError(f"labels were given but {who} is unconditional: drop {how}")
    if convert and not isinstance(labels, Tensor):
        labels = _as_tensor(labels)
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a tensor with one entry per sample (class ids of shape ({n},)), got "
                        f"{type(labels).__name__}: pass torch.as_tensor(labels)")
    if ids:
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels have dtype {labels.dtype}; pass integer class ids (y.long()) in "
                            f"0..{n_classes - 1 if n_classes else 'n_classes-1'}")
        if labels.dim() == 0 or (labels.dim() == 2 and labels.shape[1] == 1):  # an int; a column of ids
            labels = labels.reshape(-1)
        if labels.dim() != 1:
            raise ValueError(f"labels must be 1-D class ids, got shape {tuple(labels.shape)}; pass y of shape "
                             f"({n},) (not one-hot)")
        if one_for_all and labels.shape[0] == 1:
            labels = labels.expand(n)
    if labels.dim() == 0 or labels.shape[0] != n:
        count = f"{labels.shape[0]} labels" if labels.dim() else "one unbatched label"
        raise ValueError(f"got {count} for {n} samples: labels must hold one entry per sample, shape ({n},), got "
                         f"{tuple(labels.shape)}; pass " + ("one label for all, or exactly n" if one_for_all
                                                            else "the labels of this batch"))
    if not ids:
        return labels
    labels = labels.long()
    if values and labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or (n_classes and hi >= n_classes):
            bound = f"0..{n_classes - 1}" if n_classes else "0..n_classes-1"
            problem = f"negative label {lo}" if lo < 0 else f"label {hi} is out of range for n_classes={n_classes}"
            fix = "class ids count from 0" if lo < 0 else range_fix
            raise ValueError(f"{problem}: labels must lie in {bound}, got {lo}..{hi}; {fix}")
    return labels
