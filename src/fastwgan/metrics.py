"""Sample-quality metrics for the toy distributions and small images.

* ``wasserstein1``: exact W1 between two equal-weight point clouds, the optimal-transport linear
  program solved by POT's network simplex (Flamary et al. 2021, "POT: Python Optimal Transport").
* ``mode_stats``: the project issue's mode-coverage definition (high-quality samples within
  ``n_std`` standard deviations of their nearest center; a mode is covered when at least
  ``min_frac`` of ALL samples are high-quality samples of it).
* ``sliced_wasserstein``: SW_1 (p = 1), the mean over random unit directions of the 1-D W1
  between the projected clouds (Rabin et al. 2011; Bonneel et al. 2015).
* ``real_floor_w1``: W1 between two independent real samples of size n -- the value a perfect
  generator would get at that n (W1 between finite samples is biased upwards), i.e. the floor a
  generated sample's W1 is compared with.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["wasserstein1", "mode_stats", "sliced_wasserstein", "real_floor_w1"]


def _np2d(a, what: str) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().double().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        raise ValueError(f"{what} must have a sample axis: shape (n, d), got {a.shape}; use x[:, None] for 1-D data.")
    if a.shape[0] == 0 or a.size == 0:
        raise ValueError(f"{what} is empty (shape {a.shape}); pass at least one sample.")
    a = a.reshape(a.shape[0], -1)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf; the generator has diverged or the data is corrupt.")
    return a


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    a, b = _np2d(x, "x"), _np2d(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x has {a.shape[1]} features per sample and y {b.shape[1]}; compare samples of the same shape.")
    return a, b


def wasserstein1(x, y) -> float:
    """Exact W1 = min over couplings P of sum_ij P_ij ||x_i - y_j||_2, uniform weights 1/n and
    1/m, computed in float64 (``ot.emd2`` on the Euclidean cost matrix). Memory
    and time grow as n*m: meant for a few thousand points."""
    import ot

    from scipy.spatial.distance import cdist

    a, b = _pair(x, y)
    # Same cost as ot.dist(a, b, metric="euclidean"), but computed from the differences: ot.dist
    # expands |a|^2 + |b|^2 - 2<a, b>, whose rounding leaves ~sqrt(eps)*|a| = 1.5e-8*|a| at zero
    # distance; cdist is exact to a few ulp, so W1(x, x) is 0 and a shift by v gives |v|.
    cost = cdist(a, b, metric="euclidean")
    wa = np.full(a.shape[0], 1.0 / a.shape[0])
    wb = np.full(b.shape[0], 1.0 / b.shape[0])
    # numItermax: the default (1e5) stops early above ~1000 points and POT then only warns.
    return float(ot.emd2(wa, wb, cost, numItermax=10_000_000))


def mode_stats(samples, centers, std: float, n_std: float = 3.0, min_frac: float = 0.01) -> dict:
    """Mode coverage of a mixture of isotropic gaussians.

    A sample is high quality when its Euclidean distance to the nearest center is <= n_std*std
    (the boundary counts). Mode k is covered when #(high-quality samples nearest to k) >=
    min_frac * #samples. Returns ``high_quality`` (fraction of samples), ``modes_covered``,
    ``n_modes``."""
    s = _np2d(samples, "samples")
    c = _np2d(centers, "centers")
    if s.shape[1] != c.shape[1]:
        raise ValueError(f"samples have {s.shape[1]} coordinates and centers {c.shape[1]}; they must match.")
    if not std > 0 or not n_std > 0:
        raise ValueError(f"std and n_std must be > 0, got std={std!r}, n_std={n_std!r}.")
    if not 0 <= min_frac <= 1:
        raise ValueError(f"min_frac must be in [0, 1], got {min_frac!r}.")
    d = np.sqrt(((s[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    nearest = d.argmin(1)
    good = d[np.arange(s.shape[0]), nearest] <= n_std * std
    counts = np.bincount(nearest[good], minlength=c.shape[0])
    n = s.shape[0]
    return {
        "high_quality": float(good.mean()),
        "modes_covered": int((counts >= min_frac * n).sum()),
        "n_modes": int(c.shape[0]),
    }


def sliced_wasserstein(x, y, n_projections: int = 128, seed: int = 0) -> float:
    """SW_1(x, y) = mean over ``n_projections`` random unit directions theta of
    W1(<x, theta>, <y, theta>), samples flattened. 1-D W1 between equal-size samples is the
    mean |sorted difference|; for different sizes both empirical quantile functions are
    compared on the merged grid of their breakpoints (exact 1-D W1)."""
    if isinstance(n_projections, bool) or not isinstance(n_projections, int) or n_projections <= 0:
        raise ValueError(f"n_projections must be a positive int, got {n_projections!r}.")
    a, b = _pair(x, y)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((a.shape[1], n_projections))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    pa = np.sort(a @ theta, axis=0)
    pb = np.sort(b @ theta, axis=0)
    if pa.shape[0] == pb.shape[0]:
        return float(np.abs(pa - pb).mean())
    # exact 1-D W1 = integral_0^1 |F_a^-1(t) - F_b^-1(t)| dt over the merged quantile grid
    ta = np.arange(1, pa.shape[0] + 1) / pa.shape[0]
    tb = np.arange(1, pb.shape[0] + 1) / pb.shape[0]
    t = np.unique(np.concatenate([ta, tb]))
    dt = np.diff(np.concatenate([[0.0], t]))
    ia = np.minimum(np.searchsorted(ta, t, side="left"), pa.shape[0] - 1)
    ib = np.minimum(np.searchsorted(tb, t, side="left"), pb.shape[0] - 1)
    return float((np.abs(pa[ia] - pb[ib]) * dt[:, None]).sum(0).mean())


def real_floor_w1(name: str, n: int, seed: int) -> float:
    """W1 between two independent samples of size n of the toy distribution ``name`` (drawn from
    one torch generator seeded with ``seed``): the finite-sample noise floor of W1."""
    from .data import toy_sample

    g = torch.Generator().manual_seed(int(seed))
    return wasserstein1(toy_sample(name, n, g), toy_sample(name, n, g))


# Image metrics live in fastwgan.imagemetrics (FD with its floor, class / mode coverage and KL,
# FID / KID / IS); they are re-exported here lazily (PEP 562), so importing fastwgan.metrics stays
# light and scipy.linalg / torchmetrics load only when an image metric is used.
_IMAGE_METRICS = ("image_metrics", "frechet_distance", "feature_stats", "fid_kid_is", "class_coverage",
                  "stacked_modes", "InceptionUnavailableError")
__all__ += list(_IMAGE_METRICS)


def __getattr__(name: str):
    if name in _IMAGE_METRICS:
        from . import imagemetrics

        return getattr(imagemetrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
