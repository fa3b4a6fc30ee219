"""Where the trained digit classifier lives between runs, and how it is read back safely.

The file lives in fastwgan's cache folder (``fastwgan.cache.cache_dir()``: ``$FASTWGAN_CACHE``,
else ``$XDG_CACHE_HOME/fastwgan``, else ``~/.cache/fastwgan``). It is written atomically (a
temporary file in the same folder, then ``os.replace``), so a run killed mid-write never leaves
half a file behind, and two processes that train at once both end with a complete file. It records
the classifier's held-out accuracy, the recipe version and a SHA-256 of the training digits; it is
read with ``torch.load(weights_only=True)`` (tensors, numbers and strings only: nothing is
unpickled that could run code). An unreadable, truncated or mismatched file is reported with a
RuntimeWarning and the classifier is retrained.
"""
from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..atomic import replaced_on_success
from ..cache import cache_dir
from .classifier import RECIPE_VERSION, DigitClassifier, train_digit_classifier

__all__ = ["cache_dir", "classifier_path", "load_digit_classifier", "digit_classifier_info"]

_FORMAT = "fastwgan-digit-classifier"


def classifier_path() -> Path:
    return cache_dir() / f"digit_classifier_v{RECIPE_VERSION}.pt"


def _data_hash(x: Tensor, y: Tensor) -> str:
    h = hashlib.sha256()
    h.update(x.detach().float().contiguous().numpy().tobytes())
    h.update(y.detach().long().contiguous().numpy().tobytes())
    return h.hexdigest()


def _atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(path) as tmp:
        torch.save(obj, tmp)


def _read(path: Path, data_hash: str) -> tuple[DigitClassifier, dict]:
    """The cached classifier, or ValueError / RuntimeError / OSError saying why it cannot be used."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
        raise ValueError("not a fastwgan digit-classifier file")
    if blob.get("version") != RECIPE_VERSION:
        raise ValueError(f"recipe version {blob.get('version')!r}, this fastwgan trains version {RECIPE_VERSION}")
    if blob.get("data_sha256") != data_hash:
        raise ValueError("trained on other digits than the current training split")
    model = DigitClassifier()
    model.load_state_dict(blob["state_dict"])  # strict: a missing or misshapen tensor raises
    info = {k: blob[k] for k in ("accuracy", "n_test", "train_seconds")}
    if not all(isinstance(v, (int, float)) for v in info.values()):
        raise ValueError("its recorded accuracy is not a number")
    return model.eval().requires_grad_(False), info


@functools.lru_cache(maxsize=4)
def _load(path: Path, seed: int) -> tuple[DigitClassifier, dict]:
    from fastwgan.data.mnist import load_mnist

    x_train, y_train = load_mnist("train", size=28)
    x_test, y_test = load_mnist("test", size=28)
    data_hash = _data_hash(x_train, y_train)
    if path.exists():
        try:
            return _read(path, data_hash)
        except Exception as e:  # any unreadable file: say so, then retrain (never fail a run on a cache)
            reason = (str(e).splitlines() or [""])[0][:200]  # torch's unpickling errors run to many lines
            warnings.warn(f"the cached digit classifier {path} cannot be used ({type(e).__name__}: {reason}); "
                          "retraining it (about a minute on 2 CPU cores).", RuntimeWarning, stacklevel=3)
    model, info = train_digit_classifier(x_train, y_train, x_test, y_test, seed=seed)
    blob = {"format": _FORMAT, "version": RECIPE_VERSION, "data_sha256": data_hash,
            "state_dict": model.state_dict(), **info}
    try:
        _atomic_save(blob, path)
    except OSError as e:  # a read-only cache costs a retrain next time, not this run
        warnings.warn(f"could not write the digit classifier cache {path} ({e}); it will be retrained next "
                      "time. Set FASTWGAN_CACHE to a writable folder.", RuntimeWarning, stacklevel=3)
    return model.eval().requires_grad_(False), info


def load_digit_classifier(seed: int = 0) -> DigitClassifier:
    """The digit classifier (eval mode, no grad): read from the cache, or trained on the mnist
    training split (about a minute on 2 CPU cores) and cached when absent, stale or corrupt.
    Kept in memory per cache path for the rest of the process."""
    return _load(classifier_path(), seed)[0]


def digit_classifier_info(seed: int = 0) -> dict:
    """``{"accuracy", "n_test", "train_seconds"}`` recorded with the classifier
    (``accuracy`` is on the held-out test split; ``train_seconds`` is the wall time when it was trained)."""
    return dict(_load(classifier_path(), seed)[1])
