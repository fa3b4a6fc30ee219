"""A finished (or interrupted) run folder as an object: load it, sample it, evaluate it again.

    run = fastwgan.load("runs/8g")          # the newest readable checkpoint
    x = run.sample(1000, seed=0)           # reproducible samples
    run.evaluate(n=5000)                   # the data set's metrics, recomputed

Built-in models are rebuilt from the spec each checkpoint records (``models.model_spec``); a run
of user models needs the modules passed in (``generator=`` / ``critic=``), their weights are then
loaded from the checkpoint. Export lives in ``fastwgan.export``.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from . import checkpoint as ckpt
from .atomic import replaced_on_success
from .eval_mode import eval_mode
from .loaded_models import build_from_spec, load_weights
from .memory import gigabytes, require_memory
from .models import noise_shape
from .run_folder import refuse_checkpoint_folder
from .sampling import LabelsLike, check_count, check_sample_memory, check_seed, labels_for

_MODELS = ("generator", "critic")  # what a checkpoint must hold to be loaded
SAMPLE_CHUNK = 65536  # samples generated (and written, by `fastwgan sample`) at a time


@dataclass
class LoadedRun:
    """A run folder's models, settings and metrics at one checkpoint."""

    generator: nn.Module
    critic: nn.Module
    config: dict[str, Any]
    metrics: dict[str, float]  # summary.json's final metrics ({} for an unfinished run)
    history: list[dict[str, float]]
    step: int
    z_dim: int
    path: Path  # the run folder
    checkpoint: Path
    evals: list[dict[str, float]] = field(default_factory=list)
    z_shape: tuple[int, ...] = ()  # the noise's per-sample shape; () for a run that recorded none: (z_dim,)

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the generator's noise: the recorded one, else flat (z_dim,)."""
        return tuple(self.z_shape) or (self.z_dim,)

    @property
    def n_classes(self) -> int:
        return int(getattr(self.generator, "n_classes", 0) or 0)

    def sample(self, n: int, labels: LabelsLike = None, seed: int | None = None) -> torch.Tensor:
        """``n`` samples G(z, labels), z ~ N(0, I) (from a private generator seeded ``seed`` when
        given, so the same seed gives the same samples). ``labels``: one class id for all, or n.
        A request that cannot fit in memory is refused before it allocates (:mod:`fastwgan.sampling`)."""
        chunks = self.iter_samples(n, labels, seed, fix="ask for fewer samples, or write them to a file chunk by "
                                                          "chunk: fastwgan sample --out FILE.npy")
        return torch.cat(list(chunks))

    def iter_samples(self, n: int, labels: LabelsLike = None, seed: int | None = None, *,
                     fix: str = "ask for fewer samples", hold_all: bool = True) -> Iterator[torch.Tensor]:
        """:meth:`sample`'s samples, ``SAMPLE_CHUNK`` at a time (the noise is drawn chunk by chunk
        either way, so both give the same samples). ``hold_all=False``: the caller keeps one chunk
        at a time, and only a chunk must fit in memory. Every argument is checked before the first chunk."""
        n = check_count(n)
        seed = check_seed(seed)
        dev = next(self.generator.parameters()).device
        y = labels_for(labels, n, self.n_classes, dev)
        check_sample_memory(self.generator, self.noise_shape, n if hold_all else min(n, SAMPLE_CHUNK), y,
                            f"{n:,} samples" if hold_all else f"a chunk of {min(n, SAMPLE_CHUNK):,} samples", fix)
        return self._chunks(n, y, seed, dev)

    def _chunks(self, n: int, y: torch.Tensor | None, seed: int | None, dev: torch.device) -> Iterator[torch.Tensor]:
        rng = None if seed is None else torch.Generator().manual_seed(seed)
        with eval_mode(self.generator):
            for lo in range(0, n, SAMPLE_CHUNK):
                k = min(SAMPLE_CHUNK, n - lo)
                z = torch.randn(k, *self.noise_shape, generator=rng).to(dev)
                with torch.no_grad():  # left before the yield: grad mode never leaks to the caller
                    chunk = self.generator(z) if y is None else self.generator(z, y[lo:lo + k])
                yield chunk

    def evaluate(self, n: int = 2000, data: Any = None, seed: int = 0) -> dict[str, float]:
        """The data set's metrics on ``n`` generated vs ``n`` real samples (W1 / modes / high-quality
        on the toys, sliced W on images, the image metrics where installed). ``data``: the run's
        data set when it recorded one, else pass it (a built-in name or an image folder)."""
        n = check_count(n, "samples to evaluate on")
        seed = check_seed(seed)
        data = data if data is not None else self.config.get("data")
        if data is None:
            raise ValueError(f"the run {self.path} does not record its data set: pass it (data= / --data, a "
                             "built-in name or the image folder it was trained on)")
        from .data import as_data_source

        source = as_data_source(data, batch_size=min(n, 256), seed=seed, image_size=self.config.get("image_size"))
        if source.n_classes != self.n_classes:
            raise ValueError(f"the data {data!r} has {source.n_classes} classes but the run's generator takes "
                             f"{self.n_classes}: pass the data set the run was trained on")
        from .training.evaluate import evaluate

        dev = next(self.generator.parameters()).device
        self._check_eval_memory(n, getattr(source, "is_toy", False), dev)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return dict(evaluate(self.generator, source, self.noise_shape, n, dev), n=float(n))


    def _check_eval_memory(self, n: int, is_toy: bool, dev: torch.device) -> None:
        """n generated and n real samples (and a float copy), plus the exact W1's n x n float64 cost
        matrix on the toys: refused up front when they cannot be held."""
        fix = "pass a smaller n (n= / --n): a few thousand samples is the usual size"
        one = torch.zeros(1, dtype=torch.long, device=dev) if self.n_classes else None
        out_shape = check_sample_memory(self.generator, self.noise_shape, 1, one, "one sample", fix)
        need = n * (3 * math.prod(out_shape) * 4 + math.prod(self.noise_shape) * 4) + (8.0 * n * n if is_toy else 0)
        require_memory(need, f"evaluating on {n:,} samples", fix)


def find_checkpoint(run_dir: Path, checkpoint: str | os.PathLike | None) -> tuple[dict[str, Any], Path]:
    """The state to load: ``checkpoint`` (a path, or a file name inside ``run/checkpoints``) or the
    newest readable one."""
    folder = run_dir / "checkpoints"
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists() and (folder / path).exists():
            path = folder / path
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist: pass one of "
                                    f"{[p.name for p in ckpt.list_checkpoints(folder)] or 'the files in checkpoints/'}")
        return ckpt.load_checkpoint(path, required=_MODELS), path
    if not ckpt.list_checkpoints(folder):
        raise ValueError(f"{run_dir} is not a fastwgan run folder (no checkpoints/ckpt-*.pt in it): pass the "
                         "out= / --out folder of a training run")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        found = ckpt.load_latest(folder, required=_MODELS)
    if found is None:
        reasons = "; ".join(str(w.message) for w in seen)
        raise ValueError(f"every checkpoint in {folder} is truncated or corrupted, nothing to load ({reasons})")
    for w in seen:  # a skipped newest checkpoint is worth saying
        warnings.warn(w.message, RuntimeWarning, stacklevel=3)
    return found


def _model(which: str, given: nn.Module | None, spec: Any, spec_source: Path, weights: Any, path: Path) -> nn.Module:
    if given is None:
        if spec is None:
            raise ValueError(f"the run's {which} is not a built-in fastwgan model (checkpoint {path} records no "
                             f"spec for it): pass the module, fastwgan.load(run_dir, {which}=My{which.title()}(...)), "
                             "built as in training; its weights are loaded from the checkpoint")
        return build_from_spec(spec, which, spec_source, weights, path)
    return load_weights(given, weights, which, path, "build it with the settings of the run")


def _spec(which: str, state: dict[str, Any], summary: dict[str, Any], path: Path, run_dir: Path) -> tuple[Any, Path]:
    """The ``which`` model's spec and the file it was read from: the checkpoint's, else summary.json's."""
    for record, source in ((state.get("models"), path), (summary.get("models"), run_dir / "summary.json")):
        if record is not None and not isinstance(record, dict):
            raise ValueError(f"the 'models' entry of {source} is a {type(record).__name__}, not a dict of model "
                             "specs: the file was edited or damaged; pass the modules (fastwgan.load(run, "
                             "generator=..., critic=...))")
        if record and record.get(which) is not None:
            return record[which], source
    return None, path


def _noise(config: dict[str, Any], G: nn.Module, path: Path) -> tuple[int, tuple[int, ...]]:
    """(z_dim, z_shape) as recorded, checked against each other and the generator."""
    z_dim = config.get("z_dim") or getattr(G, "z_dim", None)
    if type(z_dim) is not int or z_dim < 1:
        raise ValueError(f"checkpoint {path} records no z_dim (a positive int; got {z_dim!r}) and the generator has "
                         "none: it is not a fastwgan run, or the file was edited")
    own = getattr(G, "z_dim", None)
    if type(own) is int and own != z_dim:
        raise ValueError(f"checkpoint {path} records z_dim={z_dim} but its generator takes z_dim={own}: the file was "
                         "edited or damaged; use another checkpoint (checkpoint= / --checkpoint)")
    shape = config.get("z_shape") or z_dim  # a checkpoint written before the noise shape was recorded: flat
    ok = type(shape) is int or (isinstance(shape, (list, tuple)) and shape and all(type(v) is int and v >= 1
                                                                                    for v in shape))
    if not ok or math.prod(noise_shape(shape)) != z_dim:
        raise ValueError(f"checkpoint {path} records z_shape={shape!r}, not a shape of z_dim={z_dim} noise values: "
                         "the file was edited or damaged; use another checkpoint (checkpoint= / --checkpoint)")
    return z_dim, noise_shape(shape)


def _summary(run_dir: Path) -> dict[str, Any]:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):  # an unfinished run has none; a torn one is not worth failing for
        return {}
    return summary if isinstance(summary, dict) else {}


def load(run_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
         generator: nn.Module | None = None, critic: nn.Module | None = None,
         map_location: str | torch.device = "cpu") -> LoadedRun:
    """Load a run folder written by ``fastwgan.train(..., out=run_dir)`` at ``checkpoint`` (default:
    the newest readable one). Built-in models are rebuilt; pass user models as modules."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder: pass the folder training wrote (out= / "
                                 f"--out), e.g. {run_dir.parent}")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist: pass the out= / --out folder of a training run")
    state, path = find_checkpoint(run_dir, checkpoint)
    summary = _summary(run_dir)
    G = _model("generator", generator, *_spec("generator", state, summary, path, run_dir), state["generator"], path)
    D = _model("critic", critic, *_spec("critic", state, summary, path, run_dir), state["critic"], path)
    config = dict(state.get("config") or {})
    z_dim, z_shape = _noise(config, G, path)
    G.to(map_location).eval()
    D.to(map_location).eval()
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
    return LoadedRun(generator=G, critic=D, config=config, metrics=dict(metrics),
                     history=list(state.get("history") or []), step=int(state["step"]), z_dim=z_dim,
                     path=run_dir, checkpoint=path, evals=list(state.get("evals") or []), z_shape=z_shape)


SAMPLE_FORMATS = (".pt", ".npy", ".png")


def sample_path(path: str | os.PathLike) -> Path:
    """``path`` checked as a samples file: a known suffix, an existing folder, not a run's checkpoints/."""
    path = refuse_checkpoint_folder(path)
    if path.suffix.lower() not in SAMPLE_FORMATS:
        raise ValueError(f"{path}: the file must end in .pt, .npy or .png")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of {path} does not exist: create it first")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: pass a file name ending in .pt, .npy or .png")
    return path


def save_samples(x: torch.Tensor, path: str | os.PathLike, title: str = "") -> Path:
    """``x`` as ``.pt`` (torch.save), ``.npy`` (NumPy) or ``.png`` (an image grid; a scatter for 2-D
    points). The folder must exist. The file is replaced only once the new one is complete
    (:mod:`fastwgan.atomic`): a failure leaves what was at ``path``."""
    path = sample_path(path)
    suffix, images = path.suffix.lower(), None
    if suffix == ".png":
        from . import plots

        images = plots.as_images(x)
        if images is None and not (x.dim() == 2 and x.shape[1] == 2):
            raise ValueError(f"samples of shape {tuple(x.shape[1:])} are neither images nor 2-D points: save them "
                             "as .pt or .npy")
    with replaced_on_success(path) as tmp:
        if suffix == ".pt":
            torch.save(x, tmp)
        elif suffix == ".npy":
            import numpy as np

            np.save(tmp, x.numpy())  # tmp ends in .npy: NumPy adds no suffix
        elif images is not None:
            plots.save_image_grid(images, str(tmp))
        else:
            plots.plot_toy(x, torch.zeros(0, 2), path=str(tmp), title=title)
    return path


def write_samples(run: LoadedRun, n: int, path: str | os.PathLike, labels: LabelsLike = None,
                  seed: int | None = None, title: str = "") -> tuple[int, ...]:
    """``n`` samples of ``run`` into ``path``; returns the per-sample shape. A ``.npy`` file is
    written chunk by chunk (one chunk in memory; the disk's free space checked first); ``.pt`` and
    ``.png`` need every sample in memory at once, checked before any is generated."""
    path = sample_path(path)
    if path.suffix.lower() != ".npy":
        fix = "ask for fewer samples, or write them as .npy (--out FILE.npy), which is written chunk by chunk"
        x = torch.cat(list(run.iter_samples(n, labels, seed, fix=fix)))
        save_samples(x.detach().cpu(), path, title=title)
        return tuple(x.shape[1:])
    return _stream_npy(run.iter_samples(n, labels, seed, hold_all=False), check_count(n), path)


def _stream_npy(chunks: Iterator[torch.Tensor], n: int, path: Path) -> tuple[int, ...]:
    import shutil

    import numpy as np

    first = next(chunks).detach().cpu()
    first = first.float() if first.dtype == torch.bfloat16 else first
    shape, dtype = tuple(first.shape[1:]), first.numpy().dtype
    need = n * math.prod(shape) * dtype.itemsize
    free = shutil.disk_usage(path.parent).free
    if need > free:
        raise OSError(f"{n:,} samples need {gigabytes(need)} in {path} but its disk has {gigabytes(free)} free: ask "
                      "for fewer samples, or write them to another disk")
    with replaced_on_success(path) as tmp, open(tmp, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n, *shape)}
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in _all(first, chunks):
            f.write(np.ascontiguousarray(chunk.numpy().astype(dtype, copy=False)).tobytes())
    return shape


def _all(first: torch.Tensor, rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield first
    for c in rest:
        c = c.detach().cpu()
        yield c.float() if c.dtype == torch.bfloat16 else c
