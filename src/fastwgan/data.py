"""Data for the trainer: gan_toy's toy distributions, sklearn's digits, image folders, and
``DataSource``, the trainer's single view of any data (tensors, Datasets, DataLoaders, iterables,
sampler callables, built-in names, folder paths).

Toy distributions follow gan_toy.py of Gulrajani et al. 2017 ("Improved Training of Wasserstein
GANs", github.com/igul222/improved_wgan_training) constant for constant:

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
import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "TOY_DATASETS",
    "BUILTIN_DATASETS",
    "IMAGE_EXTENSIONS",
    "toy_sample",
    "toy_centers",
    "toy_std",
    "load_digits",
    "load_image_folder",
    "DataSource",
    "as_data_source",
]

TOY_DATASETS: tuple[str, ...] = ("8gaussians", "25gaussians", "swissroll")
BUILTIN_DATASETS: tuple[str, ...] = TOY_DATASETS + ("digits",)
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

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


def _check_toy(name: str) -> None:
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; choose one of {list(TOY_DATASETS)}.")


def toy_centers(name: str) -> Tensor:
    """Mode centers (k, 2) float32 in data space (already divided by 1.414 / 2.828)."""
    _check_toy(name)
    div = _DIV_8 if name == "8gaussians" else _DIV_25
    return (_raw_centers(name) / div).float()


def toy_std(name: str) -> float:
    """Per-coordinate std of each mode in data space: 0.02/1.414 or 0.05/2.828."""
    _check_toy(name)
    if name == "8gaussians":
        return _STD_8 / _DIV_8
    if name == "25gaussians":
        return _STD_25 / _DIV_25
    raise ValueError("'swissroll' is not a mixture of gaussians and has no per-mode std.")


def toy_sample(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n fresh samples (n, 2) float32 of a gan_toy distribution, drawn from ``generator``
    (torch's global RNG when None)."""
    _check_toy(name)
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


def load_digits(size: int | None = None) -> tuple[Tensor, Tensor]:
    """sklearn's bundled 8x8 digits: x (1797, 1, 8, 8) float32 in [-1, 1] (pixel/8 - 1, pixels
    are 0..16), y (1797,) int64. ``size`` resizes bilinearly (e.g. 32 for a DCGAN)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 8.0 - 1.0
    y = torch.from_numpy(d.target).long()
    if size is not None and size != 8:
        x = _resize(x, size)
    return x, y


def _resize(x: Tensor, size: int) -> Tensor:
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"image size must be a positive int, got {size!r}.")
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])
    return out.clamp_(-1.0, 1.0)


def _load_one_image(path: str, size: int, channels: int) -> Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
        t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    t = t.reshape(size, size, channels).permute(2, 0, 1).float()
    return t / 127.5 - 1.0


def _is_image(fname: str) -> bool:
    return os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS


def load_image_folder(path: str, size: int, channels: int = 3) -> tuple[Tensor, Tensor | None]:
    """Every image under ``path`` as x (N, C, size, size) float32 in [-1, 1] (center crop to a
    square, then bicubic resize). When ``path`` has subfolders holding images, each subfolder is
    a class (sorted names -> ids 0..K-1) and y is (N,) int64; else y is None."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}.")
    if not os.path.isdir(path):
        raise ValueError(f"image folder {path!r} does not exist or is not a directory; pass an existing folder.")
    top = sorted(f for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)) and _is_image(f))
    classes: list[tuple[str, list[str]]] = []
    for d in sorted(os.listdir(path)):
        full = os.path.join(path, d)
        if not os.path.isdir(full):
            continue
        files = []
        for root, _, names in sorted(os.walk(full)):
            files += [os.path.join(root, f) for f in sorted(names) if _is_image(f)]
        if files:
            classes.append((d, files))
    if not top and not classes:
        raise ValueError(
            f"no images found in {path!r}; accepted extensions are {list(IMAGE_EXTENSIONS)} "
            "(images directly in the folder, or one subfolder per class)."
        )
    if top and classes:
        raise ValueError(
            f"{path!r} holds images both directly and in subfolders {[c for c, _ in classes]}; put every image "
            "in a class subfolder (labelled data) or all in the folder itself (unlabelled)."
        )
    if top:
        return torch.stack([_load_one_image(os.path.join(path, f), size, channels) for f in top]), None
    xs, ys = [], []
    for k, (_, files) in enumerate(classes):
        xs += [_load_one_image(f, size, channels) for f in files]
        ys += [k] * len(files)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


# --------------------------------------------------------------------------------------------
# DataSource
# --------------------------------------------------------------------------------------------


class DataSource:
    """The trainer's single view of any data.

    Attributes: ``sample_shape`` (per-sample shape), ``n_classes`` (0 when unlabelled), ``name``
    (str or None), ``is_toy``. ``next_batch(b)`` is an endless training stream; ``sample_real(n)``
    is a sample for metrics that does not disturb the training stream; ``state_dict`` /
    ``load_state_dict`` let a resumed run continue the same stream.
    """

    sample_shape: tuple[int, ...]
    n_classes: int
    name: str | None
    is_toy: bool

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def sample_real(self, n: int) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, sample_shape={self.sample_shape}, "
            f"n_classes={self.n_classes}, is_toy={self.is_toy})"
        )


def _check_n(n: int, what: str = "batch_size") -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"{what} must be a positive int, got {n!r}.")


def _seeded(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


class ToySource(DataSource):
    """Fresh gan_toy samples each call. Training and ``sample_real`` use separate generators
    (seed and seed + 1_000_003) so evaluating metrics does not change the training stream."""

    def __init__(self, name: str, seed: int, device: str | torch.device = "cpu") -> None:
        _check_toy(name)
        self.name, self.sample_shape, self.n_classes, self.is_toy = name, (2,), 0, True
        self.device = torch.device(device)
        self._gen = _seeded(seed)
        self._eval_gen = _seeded(seed + 1_000_003)

    def next_batch(self, batch_size: int) -> tuple[Tensor, None]:
        _check_n(batch_size)
        return toy_sample(self.name, batch_size, self._gen).to(self.device), None

    def sample_real(self, n: int) -> tuple[Tensor, None]:
        _check_n(n, "n")
        return toy_sample(self.name, n, self._eval_gen).to(self.device), None

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "toy", "gen": self._gen.get_state(), "eval_gen": self._eval_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, "toy")
        self._gen.set_state(state["gen"])
        self._eval_gen.set_state(state["eval_gen"])


def _check_kind(state: dict[str, Any], kind: str) -> None:
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"data state is for a {got!r} source but this source is {kind!r}; resume with the same data.")


class FiniteSource(DataSource):
    """A finite set of N samples (a tensor pair, or a map-style Dataset read item by item).

    ``next_batch`` walks shuffled epochs without replacement; a batch that crosses an epoch end
    takes the epoch's remainder and continues in the next permutation, so every batch has
    exactly ``batch_size`` samples and every sample appears once per epoch.
    """

    def __init__(
        self,
        n: int,
        fetch: Callable[[Tensor], tuple[Tensor, Tensor | None]],
        sample_shape: tuple[int, ...],
        n_classes: int,
        seed: int,
        name: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self._n, self._fetch = n, fetch
        self.sample_shape, self.n_classes, self.name, self.is_toy = tuple(sample_shape), n_classes, name, False
        self.device = torch.device(device)
        self._gen = _seeded(seed)
        self._eval_gen = _seeded(seed + 1_000_003)
        self._perm = torch.randperm(n, generator=self._gen)
        self._pos = 0
        self.epoch = 0

    def __len__(self) -> int:
        return self._n

    def _take(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:
        x, y = self._fetch(idx)
        return x.to(self.device), (None if y is None else y.to(self.device))

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        _check_n(batch_size)
        parts, need = [], batch_size
        while need > 0:
            if self._pos == self._n:
                self._perm = torch.randperm(self._n, generator=self._gen)
                self._pos = 0
                self.epoch += 1
            k = min(need, self._n - self._pos)
            parts.append(self._perm[self._pos : self._pos + k])
            self._pos += k
            need -= k
        return self._take(torch.cat(parts))

    def sample_real(self, n: int) -> tuple[Tensor, Tensor | None]:
        _check_n(n, "n")
        if n <= self._n:
            idx = torch.randperm(self._n, generator=self._eval_gen)[:n]
        else:
            idx = torch.randint(0, self._n, (n,), generator=self._eval_gen)
        return self._take(idx)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "finite",
            "n": self._n,
            "gen": self._gen.get_state(),
            "eval_gen": self._eval_gen.get_state(),
            "perm": self._perm.clone(),
            "pos": self._pos,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, "finite")
        if state["n"] != self._n:
            raise ValueError(f"data state is for {state['n']} samples but this source has {self._n}; resume with the same data.")
        self._gen.set_state(state["gen"])
        self._eval_gen.set_state(state["eval_gen"])
        self._perm = state["perm"].clone()
        self._pos = int(state["pos"])
        self.epoch = int(state["epoch"])


class IterableSource(DataSource):
    """Batches from a DataLoader or any iterable of batches (tensor or (x, y)), re-iterated at
    the end of each epoch and re-chunked to exactly ``batch_size`` samples per call.

    Resuming is exact when each pass over the iterable is reproducible from torch's RNG: at the
    start of every epoch the global RNG state and the DataLoader's ``generator`` state are saved
    and the first batch is fetched at once (so the shuffle is drawn right there); resuming
    replays that start and skips the batches already consumed. ``sample_real`` reads a separate
    pass with the RNG state saved and restored, so it neither disturbs training nor varies
    between calls. A one-shot iterator (``iter(it) is it``) is a single stream: it cannot be
    re-iterated or resumed, and ``sample_real`` draws from the same stream.
    """

    def __init__(
        self,
        iterable: Iterable,
        first: tuple[Tensor, Tensor | None],
        n_classes: int,
        image_size: int | None,
        name: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self._it_src = iterable
        self._one_shot = iter(iterable) is iterable
        self.image_size = image_size
        self.sample_shape, self.n_classes, self.name, self.is_toy = tuple(first[0].shape[1:]), n_classes, name, False
        self.device = torch.device(device)
        self._labelled = first[1] is not None
        self.epoch = -1
        self._buf: list[tuple[Tensor, Tensor | None]] = []
        self._start_epoch()

    # -- stream internals ------------------------------------------------------------------
    def _loader_gen(self) -> torch.Generator | None:
        return getattr(self._it_src, "generator", None)

    def _start_epoch(self) -> None:
        self.epoch += 1
        self._epoch_rng = torch.get_rng_state()
        g = self._loader_gen()
        self._epoch_gen = None if g is None else g.get_state()
        self._iter = iter(self._it_src)
        self._consumed = 0
        self._pending = self._pull_raw()  # draw the epoch's shuffle now (see class docstring)
        if self._pending is None:
            raise ValueError(
                "the iterable yielded no batches" + (" after its first pass: a one-shot iterator cannot be re-iterated;"
                " pass a DataLoader, a list of batches, a Dataset or a sampler callable instead." if self.epoch else
                "; pass non-empty data.")
            )

    def _pull_raw(self):
        try:
            return next(self._iter)
        except StopIteration:
            return None

    def _next_raw(self) -> tuple[Tensor, Tensor | None]:
        if self._pending is None:
            self._pending = self._pull_raw()
            if self._pending is None:
                self._start_epoch()
        raw, self._pending = self._pending, None
        self._consumed += 1
        return self._convert(raw)

    def _convert(self, raw) -> tuple[Tensor, Tensor | None]:
        x, y = _split_batch(raw)
        x = _prepare_x(x, self.image_size)
        if x.shape[1:] != self.sample_shape:
            raise ValueError(
                f"batch of per-sample shape {tuple(x.shape[1:])} after shape {self.sample_shape}; every batch must "
                "have the same per-sample shape (pass image_size= to resize images)."
            )
        y = _prepare_y(y, x.shape[0])
        if (y is not None) != self._labelled:
            raise ValueError("some batches have labels and some do not; yield (x, y) for every batch or x for every batch.")
        if y is not None and self.n_classes and int(y.max()) >= self.n_classes:
            raise ValueError(
                f"label {int(y.max())} >= n_classes={self.n_classes} (inferred from the first batch); pass "
                "n_classes= to as_data_source."
            )
        return x, y

    def _take(self, n: int, pull: Callable[[], tuple[Tensor, Tensor | None]], buf: list) -> tuple[Tensor, Tensor | None]:
        have = sum(b[0].shape[0] for b in buf)
        while have < n:
            b = pull()
            buf.append(b)
            have += b[0].shape[0]
        x = torch.cat([b[0] for b in buf])
        y = torch.cat([b[1] for b in buf]) if self._labelled else None
        buf.clear()
        if x.shape[0] > n:
            buf.append((x[n:], None if y is None else y[n:]))
        x, y = x[:n], (None if y is None else y[:n])
        return x.to(self.device), (None if y is None else y.to(self.device))

    # -- public ----------------------------------------------------------------------------
    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        _check_n(batch_size)
        return self._take(batch_size, self._next_raw, self._buf)

    def sample_real(self, n: int) -> tuple[Tensor, Tensor | None]:
        _check_n(n, "n")
        if self._one_shot:
            return self.next_batch(n)
        g = self._loader_gen()
        saved_rng, saved_gen = torch.get_rng_state(), (None if g is None else g.get_state())
        try:
            it = iter(self._it_src)
            chunks: list = []
            got = 0
            while got < n:
                try:
                    raw = next(it)
                except StopIteration:
                    if got == 0:
                        raise ValueError("the iterable yielded no batches; pass non-empty data.") from None
                    it = iter(self._it_src)  # fewer than n samples in one pass: wrap around
                    continue
                b = self._convert(raw)
                chunks.append(b)
                got += b[0].shape[0]
            x = torch.cat([c[0] for c in chunks])[:n]
            y = torch.cat([c[1] for c in chunks])[:n] if self._labelled else None
            return x.to(self.device), (None if y is None else y.to(self.device))
        finally:
            torch.set_rng_state(saved_rng)
            if g is not None:
                g.set_state(saved_gen)

    def state_dict(self) -> dict[str, Any]:
        if self._one_shot:
            raise ValueError(
                "a one-shot iterator cannot be checkpointed: its past cannot be replayed. Pass a DataLoader, a "
                "Dataset, a tensor or a sampler callable to get resumable runs."
            )
        g = self._loader_gen()
        return {
            "kind": "iterable",
            "epoch": self.epoch,
            "epoch_rng": self._epoch_rng.clone(),
            "epoch_gen": None if self._epoch_gen is None else self._epoch_gen.clone(),
            "gen_now": None if g is None else g.get_state(),
            "consumed": self._consumed,
            "buf": [(x.cpu(), None if y is None else y.cpu()) for x, y in self._buf],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, "iterable")
        g = self._loader_gen()
        if (state["epoch_gen"] is None) != (g is None):
            raise ValueError("data state and this DataLoader differ in having a generator=; resume with the same loader setup.")
        rng_now = torch.get_rng_state()
        try:
            torch.set_rng_state(state["epoch_rng"])
            if g is not None:
                g.set_state(state["epoch_gen"])
            self._iter = iter(self._it_src)
            self._pending = self._pull_raw()
            for _ in range(state["consumed"]):
                if self._pending is None:
                    self._pending = self._pull_raw()
                self._pending = None
            if g is not None:
                g.set_state(state["gen_now"])
        finally:
            torch.set_rng_state(rng_now)
        self.epoch = int(state["epoch"])
        self._epoch_rng, self._epoch_gen = state["epoch_rng"].clone(), state["epoch_gen"]
        self._consumed = int(state["consumed"])
        self._buf = [(x.to(self.device), None if y is None else y.to(self.device)) for x, y in state["buf"]]


class SamplerSource(DataSource):
    """A user callable ``sampler(n) -> x or (x, y)``: fresh data each call. Its randomness is the
    callable's own, so resuming is exact only when the sampler reseeds itself."""

    def __init__(self, fn: Callable, first: tuple[Tensor, Tensor | None], n_classes: int, image_size: int | None,
                 name: str | None = None, device: str | torch.device = "cpu") -> None:
        self._fn = fn
        self.image_size = image_size
        self.sample_shape, self.n_classes, self.name, self.is_toy = tuple(first[0].shape[1:]), n_classes, name, False
        self._labelled = first[1] is not None
        self.device = torch.device(device)

    def _call(self, n: int) -> tuple[Tensor, Tensor | None]:
        _check_n(n)
        x, y = _split_batch(self._fn(n))
        x = _prepare_x(x, self.image_size)
        if x.shape[0] != n or x.shape[1:] != self.sample_shape:
            raise ValueError(
                f"sampler({n}) returned shape {tuple(x.shape)}; it must return {n} samples of shape {self.sample_shape}."
            )
        y = _prepare_y(y, n)
        if (y is not None) != self._labelled:
            raise ValueError("the sampler returns labels on some calls only; return (x, y) always or x always.")
        return x.to(self.device), (None if y is None else y.to(self.device))

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        return self._call(batch_size)

    def sample_real(self, n: int) -> tuple[Tensor, Tensor | None]:
        return self._call(n)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "sampler"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, "sampler")


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------

_SUPPORTED = (
    "a tensor x of shape (N, ...); a tuple (x, y) of tensors with integer labels y; a torch Dataset whose items "
    "are x or (x, y); a DataLoader; an iterable of batches (x or (x, y)); a callable sampler(n) returning x or "
    f"(x, y); a built-in name {list(BUILTIN_DATASETS)}; or a path to an image folder"
)


def _split_batch(raw) -> tuple[Any, Any]:
    if isinstance(raw, Tensor):
        return raw, None
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        return raw[0], raw[1]
    if isinstance(raw, (tuple, list)) and len(raw) == 1:
        return raw[0], None
    raise TypeError(
        f"a batch must be a tensor x or a pair (x, y), got {type(raw).__name__}"
        + (f" of length {len(raw)}" if isinstance(raw, (tuple, list)) else "")
        + "; yield x or (x, y)."
    )


def _prepare_x(x, image_size: int | None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(
            f"data must be a torch.Tensor, got {type(x).__name__}; convert it (e.g. torch.as_tensor, or "
            "torchvision.transforms.ToTensor() for PIL images)."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"data has dtype {x.dtype}; pass floating-point data scaled to [-1, 1] (e.g. x.float() / 127.5 - 1 "
            "for uint8 images)."
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"data of shape {tuple(x.shape)} is empty or has no batch axis; pass (N, ...) with N >= 1.")
    x = x.float()
    if image_size is not None and x.dim() == 4 and tuple(x.shape[-2:]) != (image_size, image_size):
        x = _resize(x, image_size)
    return x


def _check_finite(x: Tensor, where: str) -> None:
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{where} contains {bad} NaN or inf values; clean or drop those samples before training.")


def _prepare_y(y, n: int) -> Tensor | None:
    if y is None:
        return None
    if isinstance(y, int):
        y = torch.tensor([y])
    if not isinstance(y, Tensor):
        try:
            y = torch.as_tensor(y)
        except Exception:
            raise TypeError(f"labels must be a tensor of int class ids, got {type(y).__name__}.") from None
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"labels have dtype {y.dtype}; pass integer class ids (y.long()) in [0, n_classes).")
    y = y.reshape(-1) if y.dim() == 2 and y.shape[1] == 1 else y
    if y.dim() != 1:
        raise ValueError(f"labels must be 1-D class ids, got shape {tuple(y.shape)}; pass y of shape (N,) (not one-hot).")
    if y.shape[0] != n:
        raise ValueError(f"{y.shape[0]} labels for {n} samples; pass exactly one label per sample.")
    y = y.long()
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"negative label {int(y.min())}; class ids must be in [0, n_classes).")
    return y


def _n_classes_for(y: Tensor | None, n_classes: int | None) -> int:
    if y is None:
        return 0
    hi = int(y.max()) + 1
    if n_classes is None:
        return hi
    if hi > n_classes:
        raise ValueError(f"label {hi - 1} is out of range for n_classes={n_classes}; class ids must be in [0, n_classes).")
    return int(n_classes)


def _tensor_source(x, y, *, seed, image_size, device, name, n_classes, what="data") -> FiniteSource:
    x = _prepare_x(x, image_size)
    _check_finite(x, what)
    y = _prepare_y(y, x.shape[0])
    nc = _n_classes_for(y, n_classes)
    x = x.to(device)
    y = None if y is None else y.to(device)

    def fetch(idx: Tensor) -> tuple[Tensor, Tensor | None]:
        idx = idx.to(x.device)
        return x[idx], (None if y is None else y[idx])

    return FiniteSource(x.shape[0], fetch, tuple(x.shape[1:]), nc, seed, name=name, device=device)


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
    return max(int(torch.as_tensor(_split_batch(ds[i])[1]).max()) for i in range(len(ds))) + 1


def _dataset_source(ds, *, seed, image_size, device, n_classes) -> FiniteSource:
    n = len(ds)
    if n == 0:
        raise ValueError("the Dataset is empty (len 0); pass a Dataset with at least one item.")
    x0, y0 = _split_batch(ds[0])
    if not isinstance(x0, Tensor):
        raise TypeError(
            f"Dataset items must hold a tensor, got {type(x0).__name__}; add a transform such as "
            "torchvision.transforms.ToTensor() plus Normalize to [-1, 1]."
        )
    labelled = y0 is not None

    def fetch(idx: Tensor) -> tuple[Tensor, Tensor | None]:
        items = [_split_batch(ds[int(i)]) for i in idx]
        x = _prepare_x(torch.stack([it[0] for it in items]), image_size)
        if not labelled:
            return x, None
        ys = [it[1] for it in items]
        y = torch.stack([torch.as_tensor(v) for v in ys]).reshape(-1)
        return x, _prepare_y(y, x.shape[0])

    first_x, first_y = fetch(torch.arange(min(n, 64)))
    _check_finite(first_x, "the first items of the Dataset")
    if labelled:
        if n_classes is None:
            n_classes = _dataset_n_classes(ds)
        nc = _n_classes_for(first_y, n_classes)
    else:
        nc = 0
    return FiniteSource(n, fetch, tuple(first_x.shape[1:]), nc, seed, name=type(ds).__name__, device=device)


def as_data_source(
    data: Any,
    *,
    batch_size: int,
    seed: int,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    n_classes: int | None = None,
) -> DataSource:
    """Wrap ``data`` as a DataSource and validate it before training starts.

    Accepts: a tensor (N, ...); a tuple (x, y); a map-style torch Dataset (items x or (x, y));
    a DataLoader or any iterable of batches; a callable ``sampler(n)``; a string naming a
    built-in dataset or an image folder. Images are resized to ``image_size`` when given (an
    image folder defaults to 64). ``n_classes`` overrides the class count (default: max label
    + 1, or the Dataset's ``classes``). A DataSource passes through unchanged.
    """
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    _check_n(batch_size)
    if isinstance(data, DataSource):
        return data
    if isinstance(data, (str, os.PathLike)):
        s = os.fspath(data)
        if s in TOY_DATASETS:
            return ToySource(s, seed, device)
        if s == "digits":
            x, y = load_digits(size=image_size)
            return _tensor_source(x, y, seed=seed, image_size=None, device=device, name="digits", n_classes=n_classes)
        if os.path.isdir(s):
            x, y = load_image_folder(s, image_size or 64)
            return _tensor_source(x, y, seed=seed, image_size=None, device=device, name=os.path.basename(os.path.normpath(s)),
                                  n_classes=n_classes)
        raise ValueError(
            f"unknown dataset {s!r}: not a built-in name and not an existing folder. Use one of {list(BUILTIN_DATASETS)}, "
            "or a path to a folder of images (one subfolder per class for labels)."
        )
    if isinstance(data, Tensor):
        if data.numel() == 0:
            raise ValueError(f"the data tensor is empty (shape {tuple(data.shape)}); pass at least one sample.")
        return _tensor_source(data, None, seed=seed, image_size=image_size, device=device, name=None, n_classes=n_classes)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        if data[0].numel() == 0:
            raise ValueError(f"the data tensor is empty (shape {tuple(data[0].shape)}); pass at least one sample.")
        return _tensor_source(data[0], data[1], seed=seed, image_size=image_size, device=device, name=None,
                              n_classes=n_classes)
    if type(data).__module__ == "numpy":
        raise TypeError(f"numpy data ({type(data).__name__}) is not accepted directly; wrap it with torch.from_numpy(x).float().")
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__"):
        return _dataset_source(data, seed=seed, image_size=image_size, device=device, n_classes=n_classes)
    if isinstance(data, (DataLoader, Iterable)) and not isinstance(data, (dict, bytes)):
        it = iter(data)
        try:
            raw = next(it)
        except StopIteration:
            raise ValueError("the iterable/DataLoader yielded no batches; pass non-empty data.") from None
        x, y = _split_batch(raw)
        x = _prepare_x(x, image_size)
        _check_finite(x, "the first batch")
        y = _prepare_y(y, x.shape[0])
        if n_classes is None and y is not None:
            ds = getattr(data, "dataset", None)
            if isinstance(data, DataLoader) and isinstance(ds, Dataset) and not isinstance(ds, IterableDataset):
                n_classes = _dataset_n_classes(ds)
            elif isinstance(data, (list, tuple)):  # cheap: the batches are already in memory
                n_classes = max(int(_prepare_y(_split_batch(b)[1], _split_batch(b)[0].shape[0]).max()) for b in data) + 1
            # else: max + 1 of the first batch; a larger label later raises, asking for n_classes=
        nc = _n_classes_for(y, n_classes)
        if it is data:  # one-shot iterator: keep the batch we just consumed
            import itertools

            data = itertools.chain([raw], it)
        name = type(data).__name__
        return IterableSource(data, (x, y), nc, image_size, name=name, device=device)
    if callable(data):
        raw = data(batch_size)
        x, y = _split_batch(raw)
        x = _prepare_x(x, image_size)
        _check_finite(x, f"the first sampler({batch_size}) batch")
        y = _prepare_y(y, x.shape[0])
        nc = _n_classes_for(y, n_classes)
        return SamplerSource(data, (x, y), nc, image_size, name=getattr(data, "__name__", None), device=device)
    raise TypeError(f"unsupported data type {type(data).__name__}; pass {_SUPPORTED}.")
