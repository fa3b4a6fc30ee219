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
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import checkpoint as ckpt
from .models import build_model

LabelsLike = torch.Tensor | Sequence[int] | int | None


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

    @property
    def n_classes(self) -> int:
        return int(getattr(self.generator, "n_classes", 0) or 0)

    @torch.no_grad()
    def sample(self, n: int, labels: LabelsLike = None, seed: int | None = None) -> torch.Tensor:
        """``n`` samples G(z, labels), z ~ N(0, I) (from a private generator seeded ``seed`` when
        given, so the same seed gives the same samples). ``labels``: one class id for all, or n."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int (how many samples), got {n!r}")
        dev = next(self.generator.parameters()).device
        y = _labels(labels, n, self.n_classes, dev)
        rng = None if seed is None else torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, self.z_dim, generator=rng).to(dev)
        was = self.generator.training
        self.generator.eval()
        try:
            return self.generator(z) if y is None else self.generator(z, y)
        finally:
            self.generator.train(was)

    def evaluate(self, n: int = 2000, data: Any = None, seed: int = 0) -> dict[str, float]:
        """The data set's metrics on ``n`` generated vs ``n`` real samples (W1 / modes / high-quality
        on the toys, sliced W on images, the image metrics where installed). ``data``: the run's
        data set when it recorded one, else pass it (a built-in name or an image folder)."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int (samples to evaluate on), got {n!r}")
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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return dict(evaluate(self.generator, source, self.z_dim, n, dev), n=float(n))


def _labels(labels: LabelsLike, n: int, n_classes: int, dev: torch.device) -> torch.Tensor | None:
    if labels is None:
        if n_classes:
            raise ValueError(f"this generator is conditional ({n_classes} classes): pass labels (labels= / "
                             f"--labels), one class id in 0..{n_classes - 1} for all samples or one per sample")
        return None
    if not n_classes:
        raise ValueError("labels were given but this generator is unconditional: drop labels= / --labels")
    y = torch.as_tensor(labels).reshape(-1)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"labels must be integer class ids, got {y.dtype}")
    if y.numel() == 1:
        y = y.expand(n)
    if y.numel() != n:
        raise ValueError(f"got {y.numel()} labels for {n} samples: pass one label for all, or exactly n")
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1} (the run's classes), got {y.min()}..{y.max()}")
    return y.to(dev, torch.long)


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
        return ckpt.load_checkpoint(path), path
    if not ckpt.list_checkpoints(folder):
        raise ValueError(f"{run_dir} is not a fastwgan run folder (no checkpoints/ckpt-*.pt in it): pass the "
                         "out= / --out folder of a training run")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        found = ckpt.load_latest(folder)
    if found is None:
        reasons = "; ".join(str(w.message) for w in seen)
        raise ValueError(f"every checkpoint in {folder} is truncated or corrupted, nothing to load ({reasons})")
    for w in seen:  # a skipped newest checkpoint is worth saying
        warnings.warn(w.message, RuntimeWarning, stacklevel=3)
    return found


def _model(which: str, given: nn.Module | None, spec: dict[str, Any] | None, weights: dict, path: Path) -> nn.Module:
    if given is None:
        if spec is None:
            raise ValueError(f"the run's {which} is not a built-in fastwgan model (checkpoint {path} records no "
                             f"spec for it): pass the module, fastwgan.load(run_dir, {which}=My{which.title()}(...)), "
                             "built as in training; its weights are loaded from the checkpoint")
        given = build_model(spec)
    try:
        given.load_state_dict(weights)
    except RuntimeError as e:
        raise ValueError(f"the {which} does not fit the weights in {path}: build it with the settings of the "
                         f"run ({str(e).splitlines()[0]})") from e
    return given


def _summary(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):  # an unfinished run has none; a torn one is not worth failing for
        return {}


def load(run_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
         generator: nn.Module | None = None, critic: nn.Module | None = None,
         map_location: str | torch.device = "cpu") -> LoadedRun:
    """Load a run folder written by ``fastwgan.train(..., out=run_dir)`` at ``checkpoint`` (default:
    the newest readable one). Built-in models are rebuilt; pass user models as modules."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist: pass the out= / --out folder of a training run")
    state, path = find_checkpoint(run_dir, checkpoint)
    summary = _summary(run_dir)
    specs = state.get("models") or summary.get("models") or {}
    G = _model("generator", generator, specs.get("generator"), state["generator"], path)
    D = _model("critic", critic, specs.get("critic"), state["critic"], path)
    config = dict(state.get("config") or {})
    z_dim = config.get("z_dim") or getattr(G, "z_dim", None)
    if not isinstance(z_dim, int):
        raise ValueError(f"checkpoint {path} records no z_dim and the generator has none: it is not a fastwgan run")
    G.to(map_location).eval()
    D.to(map_location).eval()
    return LoadedRun(generator=G, critic=D, config=config, metrics=dict(summary.get("metrics") or {}),
                     history=list(state.get("history") or []), step=int(state["step"]), z_dim=z_dim,
                     path=run_dir, checkpoint=path, evals=list(state.get("evals") or []))


def save_samples(x: torch.Tensor, path: str | os.PathLike, title: str = "") -> Path:
    """``x`` as ``.pt`` (torch.save), ``.npy`` (NumPy) or ``.png`` (an image grid; a scatter for 2-D
    points). The folder must exist."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of {path} does not exist: create it first")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        torch.save(x, path)
    elif suffix == ".npy":
        import numpy as np

        np.save(path, x.numpy())
    elif suffix == ".png":
        from . import plots

        images = plots.as_images(x)
        if images is not None:
            plots.save_image_grid(images, str(path))
        elif x.dim() == 2 and x.shape[1] == 2:
            plots.plot_toy(x, torch.zeros(0, 2), path=str(path), title=title)
        else:
            raise ValueError(f"samples of shape {tuple(x.shape[1:])} are neither images nor 2-D points: save them "
                             "as .pt or .npy")
    else:
        raise ValueError(f"{path}: the file must end in .pt, .npy or .png")
    return path
