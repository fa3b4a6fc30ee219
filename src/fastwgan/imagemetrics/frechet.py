"""The Frechet distance between two Gaussians fitted to feature sets (FID's formula).

Heusel et al. 2017 ("GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium"), after Dowson & Landau 1982: for N(mu1, S1) and N(mu2, S2)

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).

The trace of the matrix square root is computed without forming (S1 S2)^{1/2}: S1 S2 is similar
to the symmetric positive semi-definite M = S1^{1/2} S2 S1^{1/2} (same eigenvalues), so

    Tr (S1 S2)^{1/2} = sum_i sqrt(lambda_i(M)),

with S1^{1/2} and the lambda_i from symmetric eigendecompositions (LAPACK ``syevd`` via
``scipy.linalg.eigh``) in float64. This avoids ``sqrtm`` of the non-symmetric S1 S2, whose
rounding gives complex parts and which needs an ad-hoc diagonal offset when a covariance is
singular (e.g. features after a ReLU with dead units); tiny negative eigenvalues from rounding are
clipped to 0.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
from torch import Tensor

__all__ = ["frechet_distance", "feature_stats"]


def _as64(a, what: str) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().double().numpy()
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf; the features (or the images behind them) are not finite.")
    return a


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = scipy.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) in float64 (module docstring).

    ``mu`` are (d,) means, ``sigma`` (d, d) symmetric positive semi-definite covariances (numpy
    arrays or tensors). Symmetric in its two Gaussians, 0 for identical ones, and >= 0 up to
    rounding (a result below 0 by rounding is returned as 0)."""
    m1, m2 = np.atleast_1d(_as64(mu1, "mu1")), np.atleast_1d(_as64(mu2, "mu2"))
    s1, s2 = np.atleast_2d(_as64(sigma1, "sigma1")), np.atleast_2d(_as64(sigma2, "sigma2"))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"need two means of shape (d,) and two covariances of shape (d, d) with the same d, got "
                         f"{m1.shape}, {s1.shape}, {m2.shape}, {s2.shape}.")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2  # exact symmetry for eigh (a covariance is symmetric)
    r1 = _sqrt_psd(s1)
    m = r1 @ s2 @ r1
    lam = scipy.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(lam, 0.0, None)).sum())
    diff = m1 - m2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) (divisor n - 1) of (n, d) features, in float64."""
    f = _as64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (n, d) with n >= 2 samples, got {f.shape}.")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])
