"""Mode coverage and KL to uniform from predicted labels (no network here: labels in, counts out).

* MNIST (10 classes): ``class_coverage`` counts the classes that receive at least ``min_frac``
  of all samples (default 0.01 = a tenth of the uniform share 1/10, so the classifier's stray
  errors on a missing digit do not count it as covered) and
  KL(p_gen || uniform) = sum_k p_k log(p_k K) = log K - H(p_gen), natural log, 0 log 0 = 0.
* Stacked MNIST (1000 modes; Metz et al. 2017, "Unrolled Generative Adversarial Networks"):
  ``stacked_modes`` counts the way PacGAN does (Lin et al. 2018, "PacGAN: The power of two samples
  in generative adversarial networks", after VEEGAN, Srivastava et al. 2017): each of the three
  channels is classified on its own (one classifier call per channel), the triple (d0, d1, d2) is
  the mode, a mode is covered when AT LEAST ONE sample lands in it, and KL(p_gen || uniform over
  1000) uses the same natural-log formula. PacGAN uses 26,000 samples; with fewer, fewer modes can
  be hit (n samples cover at most n modes), so always report n beside the count.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import Tensor

__all__ = ["class_coverage", "stacked_modes", "kl_to_uniform", "stacked_mode_ids"]


def _labels(labels, n_classes: int, what: str) -> np.ndarray:
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    a = np.asarray(labels)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array of class ids, got shape {a.shape}.")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be integer class ids, got dtype {a.dtype}.")
    if a.min() < 0 or a.max() >= n_classes:
        raise ValueError(f"{what} must lie in [0, {n_classes}), got values in [{a.min()}, {a.max()}].")
    return a.astype(np.int64)


def kl_to_uniform(counts) -> float:
    """KL(p || uniform) = sum_k p_k log(p_k K), p = counts / sum(counts), K = len(counts); nats."""
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0 or (c < 0).any() or c.sum() <= 0:
        raise ValueError(f"counts must be a non-empty 1-D array of non-negative counts with a positive sum, got {c!r}.")
    p = c / c.sum()
    nz = p > 0
    return float((p[nz] * np.log(p[nz] * c.size)).sum())


def class_coverage(labels, n_classes: int = 10, min_frac: float = 0.01) -> dict:
    """``{"classes_covered", "kl", "n"}`` for predicted class ids (module docstring): a class is
    covered when it gets >= ``min_frac`` of the ``n`` samples; ``kl`` = KL(histogram || uniform)."""
    if not 0 <= min_frac <= 1:
        raise ValueError(f"min_frac must be in [0, 1], got {min_frac!r}.")
    a = _labels(labels, n_classes, "labels")
    counts = np.bincount(a, minlength=n_classes)
    return {"classes_covered": int((counts >= min_frac * a.size).sum()), "kl": kl_to_uniform(counts), "n": int(a.size)}


def stacked_mode_ids(channel_labels) -> Tensor:
    """Mode id 100 d0 + 10 d1 + d2 (0..999) from per-channel digit labels of shape (n, 3)."""
    t = torch.as_tensor(channel_labels)
    if t.dim() != 2 or t.shape[1] != 3:
        raise ValueError(f"channel labels must have shape (n, 3) (one digit per channel), got {tuple(t.shape)}.")
    return t[:, 0] * 100 + t[:, 1] * 10 + t[:, 2]


def stacked_modes(mode_ids, n_modes: int = 1000) -> dict:
    """``{"modes_covered", "kl", "n"}`` for stacked-MNIST mode ids (PacGAN's count, module
    docstring): ``modes_covered`` = #modes with at least one sample; ``kl`` = KL(histogram || uniform)."""
    a = _labels(mode_ids, n_modes, "mode ids")
    counts = np.bincount(a, minlength=n_modes)
    return {"modes_covered": int((counts > 0).sum()), "kl": kl_to_uniform(counts), "n": int(a.size)}


