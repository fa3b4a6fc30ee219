"""``DataSource``: the trainer's single view of any data, and its four kinds.

* :class:`ToySource`: fresh gan_toy samples from a seeded generator;
* :class:`FiniteSource`: N samples walked in shuffled epochs without replacement;
* :class:`IterableSource`: a DataLoader or any iterable of batches, re-chunked to the batch size;
* :class:`SamplerSource`: a user callable ``sampler(n)``;
* :class:`StackedMNISTSource`: Stacked MNIST drawn on the fly from a seeded generator.

Every source can save and reload its stream position (``state_dict`` / ``load_state_dict``), so a
resumed run draws exactly the batches the uninterrupted run would have drawn.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .mnist import shared_split, stack_digits
from .toy import check_toy, toy_sample
from .validate import BatchSpec, validate_batch

__all__ = ["DataSource", "ToySource", "FiniteSource", "IterableSource", "SamplerSource", "StackedMNISTSource",
           "check_n", "seeded", "check_kind", "EVAL_SEED_OFFSET"]

# sample_real draws from a generator seeded seed + EVAL_SEED_OFFSET, apart from the training stream.
EVAL_SEED_OFFSET = 1_000_003


class DataSource:
    """The trainer's single view of any data.

    Attributes: ``sample_shape`` (per-sample shape), ``n_classes`` (0 when unlabelled), ``name``
    (str or None), ``is_toy``, ``value_range`` ((lo, hi) of the data's values, e.g. (0, 1) or
    (-1, 1), used to draw pictures; None for points that are not pixels). ``next_batch(b)`` is an
    endless training stream; ``sample_real(n)`` is a sample for metrics that does not disturb the
    training stream; ``state_dict`` / ``load_state_dict`` let a resumed run continue the same stream.
    """

    sample_shape: tuple[int, ...]
    n_classes: int
    name: str | None
    is_toy: bool
    value_range: tuple[float, float] | None = None

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
            f"n_classes={self.n_classes}, is_toy={self.is_toy}, value_range={self.value_range})"
        )


def check_n(n: int, what: str = "batch_size") -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"{what} must be a positive int, got {n!r}.")


def seeded(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def check_kind(state: dict[str, Any], kind: str) -> None:
    """Reject a saved data state written by another kind of source."""
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"data state is for a {got!r} source but this source is {kind!r}; resume with the same data.")


class ToySource(DataSource):
    """Fresh gan_toy samples each call. Training and ``sample_real`` use separate generators
    (seed and seed + 1_000_003) so evaluating metrics does not change the training stream."""

    def __init__(self, name: str, seed: int, device: str | torch.device = "cpu") -> None:
        check_toy(name)
        self.name, self.sample_shape, self.n_classes, self.is_toy = name, (2,), 0, True
        self.device = torch.device(device)
        self._gen = seeded(seed)
        self._eval_gen = seeded(seed + EVAL_SEED_OFFSET)

    def next_batch(self, batch_size: int) -> tuple[Tensor, None]:
        check_n(batch_size)
        return toy_sample(self.name, batch_size, self._gen).to(self.device), None

    def sample_real(self, n: int) -> tuple[Tensor, None]:
        check_n(n, "n")
        return toy_sample(self.name, n, self._eval_gen).to(self.device), None

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "toy", "gen": self._gen.get_state(), "eval_gen": self._eval_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_kind(state, "toy")
        self._gen.set_state(state["gen"])
        self._eval_gen.set_state(state["eval_gen"])


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
        value_range: tuple[float, float] | None = None,
    ) -> None:
        self._n, self._fetch = n, fetch
        self.sample_shape, self.n_classes, self.name, self.is_toy = tuple(sample_shape), n_classes, name, False
        self.value_range = value_range
        self.device = torch.device(device)
        self._gen = seeded(seed)
        self._eval_gen = seeded(seed + EVAL_SEED_OFFSET)
        self._perm = torch.randperm(n, generator=self._gen)
        self._pos = 0
        self.epoch = 0

    def __len__(self) -> int:
        return self._n

    def _take(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:
        x, y = self._fetch(idx)
        return x.to(self.device), (None if y is None else y.to(self.device))

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        check_n(batch_size)
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
        check_n(n, "n")
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
        check_kind(state, "finite")
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
        value_range: tuple[float, float] | None = None,
    ) -> None:
        self._it_src = iterable
        self._one_shot = iter(iterable) is iterable
        self.image_size = image_size
        self.sample_shape, self.n_classes, self.name, self.is_toy = tuple(first[0].shape[1:]), n_classes, name, False
        self.value_range = value_range
        self.device = torch.device(device)
        self._spec = BatchSpec(self.sample_shape, first[1] is not None, n_classes)
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
        return validate_batch(raw, image_size=self.image_size, where="a batch of the iterable", spec=self._spec)

    def _take(self, n: int, pull: Callable[[], tuple[Tensor, Tensor | None]], buf: list) -> tuple[Tensor, Tensor | None]:
        have = sum(b[0].shape[0] for b in buf)
        while have < n:
            b = pull()
            buf.append(b)
            have += b[0].shape[0]
        x = torch.cat([b[0] for b in buf])
        y = torch.cat([b[1] for b in buf]) if self._spec.labelled else None
        buf.clear()
        if x.shape[0] > n:
            buf.append((x[n:], None if y is None else y[n:]))
        x, y = x[:n], (None if y is None else y[:n])
        return x.to(self.device), (None if y is None else y.to(self.device))

    def _one_pass_sample(self, n: int) -> tuple[Tensor, Tensor | None]:
        """The first n samples of a fresh pass (wrapping around when one pass has fewer)."""
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
        y = torch.cat([c[1] for c in chunks])[:n] if self._spec.labelled else None
        return x.to(self.device), (None if y is None else y.to(self.device))

    # -- public ----------------------------------------------------------------------------
    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        check_n(batch_size)
        return self._take(batch_size, self._next_raw, self._buf)

    def sample_real(self, n: int) -> tuple[Tensor, Tensor | None]:
        check_n(n, "n")
        if self._one_shot:
            return self.next_batch(n)
        g = self._loader_gen()
        saved_rng, saved_gen = torch.get_rng_state(), (None if g is None else g.get_state())
        try:
            return self._one_pass_sample(n)
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

    def _replay_epoch(self, state: dict[str, Any], g: torch.Generator | None) -> None:
        """Restart the epoch from its saved RNG states and skip the batches already consumed."""
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

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_kind(state, "iterable")
        g = self._loader_gen()
        if (state["epoch_gen"] is None) != (g is None):
            raise ValueError("data state and this DataLoader differ in having a generator=; resume with the same loader setup.")
        self._replay_epoch(state, g)
        self.epoch = int(state["epoch"])
        self._epoch_rng, self._epoch_gen = state["epoch_rng"].clone(), state["epoch_gen"]
        self._consumed = int(state["consumed"])
        self._buf = [(x.to(self.device), None if y is None else y.to(self.device)) for x, y in state["buf"]]


class SamplerSource(DataSource):
    """A user callable ``sampler(n) -> x or (x, y)``: fresh data each call. Its randomness is the
    callable's own, so resuming is exact only when the sampler reseeds itself."""

    def __init__(self, fn: Callable, first: tuple[Tensor, Tensor | None], n_classes: int, image_size: int | None,
                 name: str | None = None, device: str | torch.device = "cpu",
                 value_range: tuple[float, float] | None = None) -> None:
        self._fn = fn
        self.image_size = image_size
        self.sample_shape, self.n_classes, self.name, self.is_toy = tuple(first[0].shape[1:]), n_classes, name, False
        self.value_range = value_range
        self._spec = BatchSpec(self.sample_shape, first[1] is not None, n_classes)
        self.device = torch.device(device)

    def _call(self, n: int) -> tuple[Tensor, Tensor | None]:
        check_n(n)
        x, y = validate_batch(self._fn(n), image_size=self.image_size, where=f"sampler({n})", spec=self._spec, n=n)
        return x.to(self.device), (None if y is None else y.to(self.device))

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        return self._call(batch_size)

    def sample_real(self, n: int) -> tuple[Tensor, Tensor | None]:
        return self._call(n)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "sampler"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_kind(state, "sampler")


class StackedMNISTSource(DataSource):
    """Stacked MNIST (see :mod:`fastwgan.data.mnist`): three independently drawn training digits
    as the channels of each sample, drawn on the fly; the same draws as
    ``stacked_mnist_batch(n, generator, size)`` from a generator seeded ``seed``.

    It is an unconditional benchmark: ``next_batch`` and ``sample_real`` return no labels and
    ``n_classes`` is 0, so the models are never given the 1000 mode ids (``n_modes``); the
    mode-coverage metrics classify each channel of the generated samples instead. Training and
    ``sample_real`` use separate generators (seed and seed + 1_000_003), saved by ``state_dict``.
    """

    n_modes = 1000

    def __init__(self, seed: int, size: int = 28, device: str | torch.device = "cpu") -> None:
        x, y = shared_split("train", size)
        self.device = torch.device(device)
        self._x, self._y = x.to(self.device), y.to(self.device)
        self.name, self.sample_shape, self.n_classes, self.is_toy = "stacked-mnist", (3, size, size), 0, False
        self.value_range = (0.0, 1.0)
        self._gen = seeded(seed)
        self._eval_gen = seeded(seed + EVAL_SEED_OFFSET)

    def _draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, None]:
        idx = torch.randint(0, self._x.shape[0], (n, 3), generator=generator)
        return stack_digits(self._x, self._y, idx.to(self.device))[0], None

    def next_batch(self, batch_size: int) -> tuple[Tensor, None]:
        check_n(batch_size)
        return self._draw(batch_size, self._gen)

    def sample_real(self, n: int) -> tuple[Tensor, None]:
        check_n(n, "n")
        return self._draw(n, self._eval_gen)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "stacked-mnist", "size": self.sample_shape[-1], "gen": self._gen.get_state(),
                "eval_gen": self._eval_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_kind(state, "stacked-mnist")
        if state["size"] != self.sample_shape[-1]:
            raise ValueError(f"data state is for {state['size']}x{state['size']} images but this source makes "
                             f"{self.sample_shape[-1]}x{self.sample_shape[-1]}; resume with the same image_size.")
        self._gen.set_state(state["gen"])
        self._eval_gen.set_state(state["eval_gen"])
