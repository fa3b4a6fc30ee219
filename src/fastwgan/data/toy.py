"""gan_toy's 2-D toy distributions, constant for constant.

They follow gan_toy.py of Gulrajani et al. 2017 ("Improved Training of Wasserstein GANs",
github.com/igul222/improved_wgan_training):

* ``8gaussians``: centers (+-1, 0), (0, +-1), (+-1/sqrt2, +-1/sqrt2) times 2; a point is
  center + 0.02 * N(0, I); the whole batch is divided by 1.414.
* ``25gaussians``: centers (2i, 2j), i, j in -2..2; std 0.05; divided by 2.828.
* ``swissroll``: ``sklearn.datasets.make_swiss_roll(n, noise=0.25)`` columns 0 and 2, / 7.5.

gan_toy draws the 8-gaussian center with ``random.choice`` (uniform) and builds 25gaussians as a
fixed, shuffled set of 4000 points per center; drawing a uniform center per sample is the same
distribution without the finite-set artefact.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["TOY_DATASETS", "toy_sample", "toy_centers", "toy_std", "check_toy"]

TOY_DATASETS: tuple[str, ...] = ("8gaussians", "25gaussians", "swissroll")

# gan_toy.py divisors: they bring the data roughly to unit scale.
_DIV_8 = 1.414
_DIV_25 = 2.828
_DIV_SWISS = 7.5
_STD_8 = 0.02
_STD_25 = 0.05


def _raw_centers(name: str) -> Tensor:
    """Centers before gan_toy's division, float64."""
    if name == "8gaussians":
        r = 1.0 / math.sqrt(2.0)
        c = [(1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (r, -r), (-r, r), (-r, -r)]
        return torch.tensor(c, dtype=torch.float64) * 2.0
    if name == "25gaussians":
        return torch.tensor([(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)], dtype=torch.float64)
    raise ValueError(f"{name!r} has no centers; toy mixtures with centers are '8gaussians' and '25gaussians'.")


def check_toy(name: str) -> None:
    """Raise ValueError naming the choices when ``name`` is not a toy distribution."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; choose one of {list(TOY_DATASETS)}.")


def toy_centers(name: str) -> Tensor:
    """Mode centers (k, 2) float32 in data space (already divided by 1.414 / 2.828)."""
    check_toy(name)
    div = _DIV_8 if name == "8gaussians" else _DIV_25
    return (_raw_centers(name) / div).float()


def toy_std(name: str) -> float:
    """Per-coordinate std of each mode in data space: 0.02/1.414 or 0.05/2.828."""
    check_toy(name)
    if name == "8gaussians":
        return _STD_8 / _DIV_8
    if name == "25gaussians":
        return _STD_25 / _DIV_25
    raise ValueError("'swissroll' is not a mixture of gaussians and has no per-mode std.")


def toy_sample(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n fresh samples (n, 2) float32 of a gan_toy distribution, drawn from ``generator``
    (torch's global RNG when None)."""
    check_toy(name)
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    if name == "swissroll":
        from sklearn.datasets import make_swiss_roll

        # sklearn needs a numpy seed: take it from the torch generator so the stream is
        # reproducible from the torch generator's state alone.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        data, _ = make_swiss_roll(n_samples=n, noise=0.25, random_state=seed)
        return torch.from_numpy(data[:, [0, 2]] / _DIV_SWISS).float()
    centers = _raw_centers(name)
    std = _STD_8 if name == "8gaussians" else _STD_25
    div = _DIV_8 if name == "8gaussians" else _DIV_25
    idx = torch.randint(0, centers.shape[0], (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return ((centers[idx] + std * noise) / div).float()
