"""The digit classifier behind the offline MNIST metrics: a small CNN that fastwgan trains itself.

Architecture (LeNet-like, Simard et al. 2003 / the usual Keras ``mnist_cnn`` that PacGAN's mode
counter is based on, made smaller for 2 CPU cores):

    x (B, 1, 28, 28) in [0, 1] -> (x - 0.5) / 0.5
    -> Conv3x3(1 -> 32) ReLU MaxPool2 -> Conv3x3(32 -> 64) ReLU MaxPool2      (B, 64, 7, 7)
    -> Linear(3136 -> 128) ReLU                                              features (B, 128)
    -> Linear(128 -> 10)                                                     logits

Trained on the training split only (Adam 1e-3, batch 64, ``EPOCHS`` epochs, fixed seed), with light
augmentation (random shifts of up to 2 pixels and rotations of up to 10 degrees, applied with one
affine resampling per sample) so that slightly off-centre generated digits are still read right.
Its held-out accuracy (on the test split, never seen in training) is recorded with the weights.

Inputs may be 28x28 or 32x32: 32x32 digits are the 28x28 ones padded by 2 pixels on each side,
so they are centre-cropped back to 28x28 (``as_digit_batch``).
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DigitClassifier", "as_digit_batch", "train_digit_classifier", "accuracy", "RECIPE_VERSION"]

# Bump whenever the architecture or the training recipe below changes: the cache file name and
# its recorded version include it, so an old cached classifier is never used with new code.
RECIPE_VERSION = 1
EPOCHS = 8
BATCH = 64
LR = 1e-3
MAX_SHIFT = 2  # pixels
MAX_ROTATION = 10.0  # degrees


class DigitClassifier(nn.Module):
    """Small CNN: ``features(x)`` is the 128-unit penultimate layer (for the Frechet distance),
    ``forward(x)`` the 10 logits. ``x`` is (B, 1, 28, 28) in [0, 1]."""

    n_features = 128
    n_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.n_features), nn.ReLU(),
        )
        self.head = nn.Linear(self.n_features, self.n_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body((x - 0.5) / 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def as_digit_batch(x: Tensor) -> Tensor:
    """(N, 1, 28, 28) float32 in [0, 1] from (N, 1, 28|32, 28|32), (N, 28|32, 28|32) or flat
    (N, 784|1024) images in [0, 1]. 32x32 inputs are centre-cropped (the 32x32 digits are the
    28x28 ones padded by 2). Values outside [0, 1] are clamped: a generator that overshoots is
    measured on what it would show, not rejected. NaN is left as is (the caller reports it)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}.")
    x = x.detach().float()
    if x.dim() == 2 and x.shape[1] in (784, 1024):
        side = math.isqrt(x.shape[1])
        x = x.reshape(-1, 1, side, side)
    elif x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3] or x.shape[2] not in (28, 32) or x.shape[0] == 0:
        raise ValueError(
            f"digit images must have shape (N, 1, 28, 28) or (N, 1, 32, 32) (flat (N, 784) also works), got "
            f"{tuple(x.shape)}; for stacked-mnist pass (N, 3, H, W) to the stacked-mnist metrics, which classify "
            "each channel on its own."
        )
    if x.shape[2] == 32:
        x = x[:, :, 2:30, 2:30]
    return x.clamp(0.0, 1.0)  # clamp keeps NaN: torch.clamp propagates it


def _augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random shift (integer pixels, up to MAX_SHIFT) and rotation (up to MAX_ROTATION degrees)
    per sample, one bilinear resampling, zeros (the background) outside."""
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(MAX_ROTATION)
    shift = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (n, 2), generator=g).float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos, -sin, 2 * shift[:, 0] / w], 1),
        torch.stack([sin, cos, 2 * shift[:, 1] / h], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def accuracy(model: DigitClassifier, x: Tensor, y: Tensor, batch: int = 500) -> float:
    """Fraction of ``x`` whose arg-max logit equals ``y``."""
    model.eval()
    pred = torch.cat([model(as_digit_batch(x[i:i + batch])).argmax(1) for i in range(0, x.shape[0], batch)])
    return float((pred == y).float().mean())


def train_digit_classifier(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                           seed: int = 0) -> tuple[DigitClassifier, dict]:
    """Train ``DigitClassifier`` on (x_train, y_train) with the recipe in the module docstring and
    return it (in eval mode) with ``{"accuracy": held-out accuracy on (x_test, y_test),
    "n_test": len(y_test), "train_seconds": wall time}``. Deterministic for a given seed and
    thread count (one torch.Generator drives the init, the shuffling and the augmentation)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # nn init draws from the global RNG; keep the caller's stream untouched
        model = DigitClassifier()
    x_train, y_train = as_digit_batch(x_train), y_train.long()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    start = time.perf_counter()
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(x_train.shape[0], generator=g)
        for i in range(0, x_train.shape[0], BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(model(_augment(x_train[idx], g)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    acc = accuracy(model, x_test, y_test.long())
    return model, {"accuracy": acc, "n_test": int(y_test.shape[0]), "train_seconds": seconds}
