"""``image_metrics``: the one call a training run's evaluation makes for the built-in image data.

For ``"mnist"`` (generated (N, 1, 28|32, 28|32) or flat (N, 784) in [0, 1]):

    fd        Frechet distance between the digit classifier's penultimate features (128-d) of
              the generated digits and of the 1000 held-out digits (Heusel et al. 2017);
    fd_floor  the same distance for min(N, 4000) real TRAINING digits against the same held-out
              ones: what a perfect generator would score at this N (FD is biased upwards at finite
              N), so report fd beside fd_floor, never alone;
    classes_covered, kl   classes with >= min_frac of the samples, KL(class histogram || uniform).

For ``"stacked-mnist"`` (generated (N, 3, 28|32, 28|32)): each channel classified on its own
(PacGAN's count), ``modes_covered`` (modes with >= 1 sample, out of 1000) and ``kl``; ``fd`` /
``fd_floor`` on the three channels' features side by side (384-d) against 1000 stacked held-out
samples (three held-out digits each), the floor from min(N, 4000) stacked training samples.

Every result also has ``n`` (samples measured) and ``nonfinite_frac``. Samples outside [0, 1]
are clamped (measured as they would be shown). A batch with any NaN / inf sample gives NaN for
every generated-sample metric and a RuntimeWarning, never an exception: a diverged generator must
not kill the run that is measuring it. The reference features are computed once per process.
"""
from __future__ import annotations

import functools
import math
import warnings

import torch
from torch import Tensor

from .classifier import DigitClassifier, as_digit_batch
from .classifier_cache import classifier_path, load_digit_classifier
from .frechet import feature_stats, frechet_distance
from .modes import class_coverage, stacked_mode_ids, stacked_modes

__all__ = ["image_metrics", "IMAGE_METRIC_DATA", "digit_features", "classify_digits"]

IMAGE_METRIC_DATA = ("mnist", "stacked-mnist")
N_REFERENCE = 1000  # held-out samples behind fd (all 1000 held-out digits for mnist)
_BATCH = 500


@torch.no_grad()
def digit_features(images: Tensor, classifier: DigitClassifier | None = None) -> Tensor:
    """The classifier's penultimate features (N, 128) of digits (N, 1, 28|32, 28|32) in [0, 1]."""
    clf = classifier if classifier is not None else load_digit_classifier()
    x = as_digit_batch(images)
    return torch.cat([clf.features(x[i:i + _BATCH]) for i in range(0, x.shape[0], _BATCH)])


@torch.no_grad()
def classify_digits(images: Tensor, classifier: DigitClassifier | None = None) -> Tensor:
    """Predicted digit classes (N,) int64."""
    clf = classifier if classifier is not None else load_digit_classifier()
    x = as_digit_batch(images)
    return torch.cat([clf(x[i:i + _BATCH]).argmax(1) for i in range(0, x.shape[0], _BATCH)])


def _channels(x: Tensor) -> Tensor:
    """(N, 3, H, W) -> (3N, 1, H, W), channel-major: rows k*N .. (k+1)*N - 1 are channel k."""
    return x.transpose(0, 1).reshape(-1, 1, *x.shape[-2:])


def _stacked_features(x: Tensor, clf: DigitClassifier) -> tuple[Tensor, Tensor]:
    """Per-sample concatenated channel features (N, 384) and channel digit labels (N, 3)."""
    n = x.shape[0]
    flat = as_digit_batch(_channels(x))
    feats = torch.cat([clf.features(flat[i:i + _BATCH]) for i in range(0, flat.shape[0], _BATCH)])
    labels = clf.head(feats).argmax(1)
    return feats.reshape(3, n, -1).transpose(0, 1).reshape(n, -1), labels.reshape(3, n).T


@functools.lru_cache(maxsize=2)
def _digit_tables(key: str) -> tuple[Tensor, Tensor]:
    """Classifier features of every training digit (4000, 128) and held-out digit (1000, 128), per classifier file."""
    from fastwgan.data.mnist import load_mnist

    clf = load_digit_classifier()
    return digit_features(load_mnist("train", 28)[0], clf), digit_features(load_mnist("test", 28)[0], clf)


@functools.lru_cache(maxsize=4)
def _reference(data_name: str, key: str, seed: int) -> dict:
    """Held-out reference statistics, and the shuffled training features the floor's subsets come from.

    Stacked references are built from the per-digit tables: a stacked sample's features are its
    three digits' features side by side, so indexing the tables with three independently drawn
    digit indices per sample IS the classifier run on freshly stacked digits, 3x cheaper."""
    train, test = _digit_tables(key)
    g = torch.Generator().manual_seed(seed)
    if data_name == "stacked-mnist":
        test = test[torch.randint(0, test.shape[0], (N_REFERENCE, 3), generator=g)].reshape(N_REFERENCE, -1)
        train = train[torch.randint(0, train.shape[0], (train.shape[0], 3), generator=g)].reshape(train.shape[0], -1)
    perm = torch.randperm(train.shape[0], generator=g)
    return {"test": feature_stats(test), "train": train[perm]}


def _check(generated: Tensor, data_name: str) -> Tensor:
    if data_name not in IMAGE_METRIC_DATA:
        raise ValueError(f"image metrics exist for {IMAGE_METRIC_DATA}, got {data_name!r}; for other images use "
                         "fid_kid_is(generated, real, feature_extractor=...).")
    if not isinstance(generated, Tensor):
        raise TypeError(f"generated must be a torch.Tensor of images, got {type(generated).__name__}.")
    x = generated.detach().float().cpu()
    if data_name == "mnist" and x.dim() == 2 and x.shape[1] in (784, 1024):
        side = math.isqrt(x.shape[1])
        x = x.reshape(-1, 1, side, side)  # flat digits (not clamped yet: inf must still be seen)
    want = 1 if data_name == "mnist" else 3
    if x.dim() != 4 or x.shape[1] != want or x.shape[2] != x.shape[3] or x.shape[2] not in (28, 32) or x.shape[0] < 2:
        raise ValueError(
            f"{data_name} metrics need generated images of shape (N, {want}, 28, 28) or (N, {want}, 32, 32) "
            "with N >= 2, "
            f"got {tuple(generated.shape)}"
            + ("; stacked-mnist has three digits as three channels: build the generator with channels=3."
               if data_name == "stacked-mnist" and x.dim() == 4 and x.shape[1] == 1 else ".")
        )
    return x


def image_metrics(generated: Tensor, data_name: str, *, n: int | None = None, min_frac: float = 0.01,
                  data_range: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> dict[str, float]:
    """Offline quality metrics of generated images of a built-in data set (module docstring).

    ``generated`` (N, C, H, W) in the data's range ``data_range`` ((0, 1) for the built-in digits;
    (-1, 1) for a tanh generator trained on rescaled digits), mapped to [0, 1] before measuring;
    ``n`` uses the first n samples (all by default); ``min_frac`` is mnist's class-coverage
    threshold; ``seed`` fixes the floor's subset and the stacked reference. Returns ``fd``,
    ``fd_floor``, ``n``, ``nonfinite_frac`` and ``classes_covered``/``kl`` (mnist) or
    ``modes_covered``/``kl`` (stacked-mnist)."""
    x = _check(generated, data_name)
    lo, hi = (float(v) for v in data_range)
    if not hi > lo:
        raise ValueError(f"data_range must be (low, high) with high > low, got {data_range!r}.")
    if (lo, hi) != (0.0, 1.0):
        x = (x - lo) / (hi - lo)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an int >= 2 (samples to measure), got {n!r}.")
        x = x[:n]
    n_bad = int((~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)).sum())
    bad = n_bad / x.shape[0]
    ref = _reference(data_name, str(classifier_path()), seed)
    n_train = min(x.shape[0], ref["train"].shape[0])
    floor = frechet_distance(*feature_stats(ref["train"][:n_train]), *ref["test"])
    count_key = "classes_covered" if data_name == "mnist" else "modes_covered"
    out = {"fd": math.nan, "fd_floor": floor, count_key: math.nan, "kl": math.nan, "n": int(x.shape[0]),
           "nonfinite_frac": bad}
    if bad > 0:
        warnings.warn(f"{n_bad} of the {x.shape[0]} generated {data_name} samples are NaN or inf (the generator has "
                      "diverged); fd, kl and coverage are reported as NaN.", RuntimeWarning, stacklevel=2)
        return out
    clf = load_digit_classifier()
    with torch.no_grad():
        if data_name == "mnist":
            feats = digit_features(x, clf)
            counts = class_coverage(clf.head(feats).argmax(1), 10, min_frac)
        else:
            feats, labels = _stacked_features(x, clf)
            counts = stacked_modes(stacked_mode_ids(labels))
    out["fd"] = frechet_distance(*feature_stats(feats), *ref["test"])
    out[count_key], out["kl"] = counts[count_key], counts["kl"]
    return out
