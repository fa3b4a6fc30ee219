"""Turning what a user passes as ``data`` into a :class:`DataSource`, validated before training.

``as_data_source`` walks a short dispatch table (first match wins): a DataSource passes through;
a string is a built-in name or an image folder; a tensor or an (x, y) pair is a finite set; a
map-style Dataset is read item by item; an iterable (DataLoader, list of batches, generator) is
re-chunked; a callable is a sampler. Each entry validates the first batch with
:func:`validate_batch` and detects the data's value range from it unless one is given.
"""
from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .images import DEFAULT_IMAGE_SIZE, check_image_size, load_digits, load_image_folder
from .mnist import MNIST_SIZES, load_mnist
from .sources import DataSource, FiniteSource, IterableSource, SamplerSource, StackedMNISTSource, ToySource, check_n
from .toy import TOY_DATASETS
from .validate import BatchSpec, check_value_range, detect_value_range, n_classes_for, split_batch, validate_batch

__all__ = ["as_data_source", "BUILTIN_DATASETS", "WithoutLabels", "numpy_samples"]


@dataclass(frozen=True)
class _Options:
    """as_data_source's keyword settings, passed to every builder."""

    batch_size: int
    seed: int
    image_size: int | None
    device: torch.device
    n_classes: int | None
    value_range: tuple[float, float] | None

    def range_of(self, x: Tensor) -> tuple[float, float]:
        return self.value_range if self.value_range is not None else detect_value_range(x)


# ---- finite sets ------------------------------------------------------------------------------


def tensor_source(x, y, opt: _Options, *, name: str | None, where: str = "data", resize: bool = True,
                  value_range: tuple[float, float] | None = None) -> FiniteSource:
    """A FiniteSource over in-memory tensors x (N, ...) and optional labels y (N,)."""
    x, y = validate_batch((x, y), image_size=opt.image_size if resize else None, where=where, finite=True)
    nc = n_classes_for(y, opt.n_classes)
    vr = value_range or opt.range_of(x)
    x = x.to(opt.device)
    y = None if y is None else y.to(opt.device)

    def fetch(idx: Tensor) -> tuple[Tensor, Tensor | None]:
        idx = idx.to(x.device)
        return x[idx], (None if y is None else y[idx])

    return FiniteSource(x.shape[0], fetch, tuple(x.shape[1:]), nc, opt.seed, name=name, device=opt.device,
                        value_range=vr)


def _from_tensor(data: Tensor, opt: _Options) -> DataSource:
    if data.numel() == 0:
        raise ValueError(f"the data tensor is empty (shape {tuple(data.shape)}); pass at least one sample.")
    return tensor_source(data, None, opt, name=None)


def _from_pair(data: tuple, opt: _Options) -> DataSource:
    if data[0].numel() == 0:
        raise ValueError(f"the data tensor is empty (shape {tuple(data[0].shape)}); pass at least one sample.")
    return tensor_source(data[0], data[1], opt, name=None)


def _dataset_n_classes(ds) -> int:
    """Class count of a labelled map-style Dataset: ``classes`` (torchvision), ``targets``,
    a TensorDataset's label tensor, else one pass over the items' labels."""
    from torch.utils.data import TensorDataset

    if hasattr(ds, "classes"):
        return len(ds.classes)
    if hasattr(ds, "targets"):
        return int(torch.as_tensor(ds.targets).max()) + 1
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return int(ds.tensors[1].max()) + 1
    return max(int(torch.as_tensor(split_batch(ds[i])[1]).max()) for i in range(len(ds))) + 1


def _from_dataset(ds, opt: _Options) -> DataSource:
    n = len(ds)
    if n == 0:
        raise ValueError("the Dataset is empty (len 0); pass a Dataset with at least one item.")
    x0, y0 = split_batch(ds[0])
    if not isinstance(x0, Tensor):
        raise TypeError(
            f"Dataset items must hold a tensor, got {type(x0).__name__}; add a transform such as "
            "torchvision.transforms.ToTensor() (values in [0, 1]), optionally Normalize to [-1, 1]."
        )
    labelled = y0 is not None

    def fetch(idx: Tensor) -> tuple[Tensor, Tensor | None]:
        items = [split_batch(ds[int(i)]) for i in idx]
        x = torch.stack([it[0] for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items]).reshape(-1) if labelled else None
        return validate_batch((x, y), image_size=opt.image_size, where="items of the Dataset")

    first_x, first_y = validate_batch(fetch(torch.arange(min(n, 64))), where="the first items of the Dataset",
                                      finite=True)
    n_classes = opt.n_classes
    if labelled and n_classes is None:
        n_classes = _dataset_n_classes(ds)
    nc = n_classes_for(first_y, n_classes)
    return FiniteSource(n, fetch, tuple(first_x.shape[1:]), nc, opt.seed, name=type(ds).__name__, device=opt.device,
                        value_range=opt.range_of(first_x))


# ---- streams ----------------------------------------------------------------------------------


def _iterable_n_classes(data, y: Tensor | None, n_classes: int | None) -> int | None:
    """n_classes for an iterable: given, else a DataLoader's Dataset's, else (for a list of
    batches already in memory) the max over all batches; else None (the first batch decides,
    and a larger label later raises asking for n_classes=)."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    if n_classes is not None or y is None:
        return n_classes
    ds = getattr(data, "dataset", None)
    if isinstance(data, DataLoader) and isinstance(ds, Dataset) and not isinstance(ds, IterableDataset):
        return _dataset_n_classes(ds)
    if isinstance(data, (list, tuple)):
        first_x = validate_batch(data[0])[0]
        spec = BatchSpec(tuple(first_x.shape[1:]), labelled=True, n_classes=0)
        return max(int(validate_batch(b, where=f"batch {i} of the list", spec=spec)[1].max())
                   for i, b in enumerate(data)) + 1
    return None


def _from_iterable(data, opt: _Options) -> DataSource:
    it = iter(data)
    try:
        raw = next(it)
    except StopIteration:
        raise ValueError("the iterable/DataLoader yielded no batches; pass non-empty data.") from None
    x, y = validate_batch(raw, image_size=opt.image_size, where="the first batch", finite=True)
    nc = n_classes_for(y, _iterable_n_classes(data, y, opt.n_classes))
    if it is data:  # one-shot iterator: keep the batch we just consumed
        data = itertools.chain([raw], it)
    return IterableSource(data, (x, y), nc, opt.image_size, name=type(data).__name__, device=opt.device,
                          value_range=opt.range_of(x))


def _from_sampler(fn: Callable, opt: _Options) -> DataSource:
    where = f"the first sampler({opt.batch_size}) batch"
    x, y = validate_batch(fn(opt.batch_size), image_size=opt.image_size, where=where, finite=True)
    nc = n_classes_for(y, opt.n_classes)
    return SamplerSource(fn, (x, y), nc, opt.image_size, name=getattr(fn, "__name__", None), device=opt.device,
                         value_range=opt.range_of(x))


class WithoutLabels(DataSource):
    """A labelled source seen without its labels (the models take none): the same stream of x, the
    same state (checkpoints and resume are the labelled source's)."""

    def __init__(self, source: DataSource) -> None:
        self.source, self.n_classes = source, 0
        self.sample_shape, self.name, self.is_toy = source.sample_shape, source.name, source.is_toy
        self.value_range = source.value_range

    def next_batch(self, batch_size: int) -> tuple[Tensor, None]:
        return self.source.next_batch(batch_size)[0], None

    def sample_real(self, n: int) -> tuple[Tensor, None]:
        return self.source.sample_real(n)[0], None

    def state_dict(self) -> dict[str, Any]:
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state)


# ---- names: built-in data sets and image folders ----------------------------------------------


def _toy(name: str, opt: _Options) -> DataSource:
    return ToySource(name, opt.seed, opt.device)


def _digits(name: str, opt: _Options) -> DataSource:
    x, y = load_digits(size=opt.image_size)
    return tensor_source(x, y, opt, name="digits", resize=False, value_range=(-1.0, 1.0))


def _mnist_size(name: str, opt: _Options) -> int:
    size = 28 if opt.image_size is None else opt.image_size
    if size not in MNIST_SIZES:
        raise ValueError(
            f"{name!r} comes at image_size 28 (native) or 32 (zero-padded, for the DCGAN-32 models), got "
            f"image_size={size}; pass one of those."
        )
    return size


def _mnist(name: str, opt: _Options) -> DataSource:
    # unconditional, as in the WGAN-GP authors' MNIST experiment: fed to the models, the labels would
    # make "classes covered" trivially 10/10. Conditional training: pass load_mnist()'s (x, y) pair.
    x, _ = load_mnist("train", _mnist_size(name, opt))
    return tensor_source(x, None, opt, name="mnist", resize=False, value_range=(0.0, 1.0))


def _stacked_mnist(name: str, opt: _Options) -> DataSource:
    if opt.n_classes:
        raise ValueError(
            f"'stacked-mnist' is an unconditional benchmark (its 1000 mode ids are for measuring coverage, never "
            f"given to the models), got n_classes={opt.n_classes}; leave n_classes unset."
        )
    return StackedMNISTSource(opt.seed, _mnist_size(name, opt), opt.device)


# Built-in data sets by name: name -> builder(name, options).
_BUILTINS: dict[str, Callable[[str, _Options], DataSource]] = {
    **{t: _toy for t in TOY_DATASETS},
    "digits": _digits,
    "mnist": _mnist,
    "stacked-mnist": _stacked_mnist,
}
BUILTIN_DATASETS: tuple[str, ...] = tuple(_BUILTINS)


def _from_name(data: str | os.PathLike, opt: _Options) -> DataSource:
    s = os.fspath(data)
    if s in _BUILTINS:
        return _BUILTINS[s](s, opt)
    if os.path.isdir(s):
        x, y = load_image_folder(s, opt.image_size or DEFAULT_IMAGE_SIZE)  # 1 channel if all greyscale, else 3
        return tensor_source(x, y, opt, name=os.path.basename(os.path.normpath(s)), resize=False,
                             value_range=(-1.0, 1.0))
    raise ValueError(
        f"unknown dataset {s!r}: not a built-in name and not an existing folder. Use one of {list(BUILTIN_DATASETS)}, "
        "or a path to a folder of images (one subfolder per class for labels)."
    )


# ---- the dispatch table -----------------------------------------------------------------------

_SUPPORTED = (
    "a tensor x of shape (N, ...); a tuple (x, y) of tensors with integer labels y; a torch Dataset whose items "
    "are x or (x, y); a numpy array x (float, or uint8 images; channels-last images are permuted) or a pair of "
    "them; a DataLoader; an iterable of batches (x or (x, y)); a callable sampler(n) returning x or "
    f"(x, y); a built-in name {list(BUILTIN_DATASETS)}; or a path to an image folder"
)


def _is_numpy(d: Any) -> bool:
    return type(d).__module__ == "numpy" and hasattr(d, "dtype") and hasattr(d, "shape")


def numpy_samples(a) -> Tensor:
    """A NumPy array of samples as a tensor, with a notice for each conversion it makes: float
    arrays as they are; uint8 images scaled to [-1, 1] (x / 127.5 - 1); channels-last images
    (N, H, W, C) with C 1 or 3 permuted to PyTorch's (N, C, H, W). An array whose axes 1 and 3
    could both be the channels is refused, naming the exact conversion for each reading."""
    import numpy as np

    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise TypeError(f"a numpy array of dtype {a.dtype} is not numeric data; pass float samples "
                        "(x.astype(np.float32)).")
    x = torch.from_numpy(np.ascontiguousarray(a))
    notes = []
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1
        notes.append("uint8 values scaled to [-1, 1] as x / 127.5 - 1 (for a generator ending in Tanh; for one "
                     "ending in a Sigmoid pass x.astype(np.float32) / 255)")
    if x.dim() == 4 and x.shape[3] in (1, 3):
        if x.shape[1] in (1, 3):
            raise ValueError(
                f"the numpy array has shape {tuple(a.shape)}: axis 1 and axis 3 could both be the channels. Pass "
                "a tensor in PyTorch's (N, C, H, W) layout: torch.from_numpy(x).permute(0, 3, 1, 2) if the array is "
                "channels-last (N, H, W, C), torch.from_numpy(x) if it is already (N, C, H, W)"
                + (", each .float() / 127.5 - 1 for uint8 images." if a.dtype == np.uint8 else "."))
        x = x.permute(0, 3, 1, 2).contiguous()
        notes.append(f"channels-last images {tuple(a.shape)} (N, H, W, C) permuted to (N, C, H, W) = "
                     f"{tuple(x.shape)}")
    if notes:
        warnings.warn("fastwgan: numpy data: " + "; ".join(notes), UserWarning, stacklevel=4)
    return x


def _from_numpy(data, opt: _Options) -> DataSource:
    return _from_tensor(numpy_samples(data), opt)


def _from_numpy_pair(data: tuple, opt: _Options) -> DataSource:
    y = torch.from_numpy(data[1]) if _is_numpy(data[1]) else data[1]
    return _from_pair((numpy_samples(data[0]), y), opt)


def _is_map_dataset(data) -> bool:
    from torch.utils.data import Dataset, IterableDataset

    return isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__")


# (does it match, build the source): tried in order, first match wins.
_DISPATCH: tuple[tuple[Callable[[Any], bool], Callable[[Any, _Options], DataSource]], ...] = (
    (lambda d: isinstance(d, (str, os.PathLike)), _from_name),
    (lambda d: isinstance(d, Tensor), _from_tensor),
    (lambda d: isinstance(d, tuple) and len(d) == 2 and isinstance(d[0], Tensor), _from_pair),
    (_is_numpy, _from_numpy),
    (lambda d: isinstance(d, tuple) and len(d) == 2 and _is_numpy(d[0]), _from_numpy_pair),
    (_is_map_dataset, _from_dataset),
    (lambda d: isinstance(d, Iterable) and not isinstance(d, (dict, bytes)), _from_iterable),
    (callable, _from_sampler),
)


def as_data_source(
    data: Any,
    *,
    batch_size: int,
    seed: int,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    n_classes: int | None = None,
    value_range: tuple[float, float] | None = None,
) -> DataSource:
    """Wrap ``data`` as a DataSource and validate it before training starts.

    Accepts: a tensor (N, ...); a tuple (x, y); a map-style torch Dataset (items x or (x, y));
    a DataLoader or any iterable of batches; a callable ``sampler(n)``; a string naming a
    built-in dataset or an image folder. Images are resized to ``image_size`` when given (an
    image folder defaults to ``DEFAULT_IMAGE_SIZE``, and loads as one channel when every image
    in it is greyscale, else as RGB). ``n_classes`` overrides the class count
    (default: max label + 1, or the Dataset's ``classes``). ``value_range`` is the (lo, hi) of
    the data's values used to draw them (default: (0, 1) when the first batch has no negative
    value, else (-1, 1); built-in sets know theirs). A DataSource passes through unchanged.
    """
    check_n(batch_size)
    if isinstance(data, DataSource):
        return data
    if image_size is not None:
        check_image_size(image_size)
    opt = _Options(batch_size, seed, image_size, torch.device(device), n_classes,
                   None if value_range is None else check_value_range(value_range))
    for matches, build in _DISPATCH:
        if matches(data):
            return build(data, opt)
    raise TypeError(f"unsupported data type {type(data).__name__}; pass {_SUPPORTED}.")
