"""What a run writes besides checkpoints: metrics.jsonl, TensorBoard, summary.json and pictures.

Written by rank 0 only. A picture or a TensorBoard event that cannot be written warns and is
skipped: it never costs a finished run. metrics.jsonl gets one line per logged step; on resume the
lines a killed run wrote after its last checkpoint are dropped first, so every step appears once.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .result import TrainResult


def _warn(what: str, e: Exception) -> None:
    warnings.warn(f"fastwgan: could not write {what} ({type(e).__name__}: {e}); the run goes on without it",
                  RuntimeWarning, stacklevel=3)


class RunOutput:
    """The run folder's logs (None folder: nothing is written)."""

    def __init__(self, run: Path | None, *, tensorboard: bool, resume_step: int | None) -> None:
        self.run = run
        if run is not None and resume_step is not None:
            truncate_metrics(run / "metrics.jsonl", resume_step)
        self.metrics = open(run / "metrics.jsonl", "a") if run is not None else None
        self.writer = None
        if tensorboard and run is not None:
            from ..extras import require

            require("tensorboard", "tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run / "tb"))

    def log(self, rec: dict[str, float]) -> None:
        if self.metrics is not None:
            self.metrics.write(json.dumps(rec) + "\n")
            self.metrics.flush()
        if self.writer is not None:
            try:
                for k, v in rec.items():
                    if k not in ("step", "time"):
                        self.writer.add_scalar(k, v, rec["step"])
            except Exception as e:  # noqa: BLE001 - a log line never costs a run
                _warn("a TensorBoard event", e)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.writer is not None:
            self.writer.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines written after the checkpoint being resumed (the killed run got
    further than its last checkpoint): the resumed run rewrites them, without duplicates."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            break  # a line torn by the kill: everything after it is from the lost part too
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(k + "\n" for k in keep))
    os.replace(tmp, path)


def write_summary(result: TrainResult, setup_seconds: float, extra: dict[str, Any]) -> None:
    """summary.json, atomically: final metrics, every setting, timings."""
    run = result.out
    assert run is not None
    summary = dict(metrics=result.metrics, config=result.config, train_seconds=result.train_seconds,
                   compile_seconds=result.compile_seconds, step_mode=result.step_mode,
                   setup_seconds=setup_seconds, steps=result.steps_done, torch=torch.__version__, **extra)
    tmp = run / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, run / "summary.json")


def write_pictures(result: TrainResult, source) -> None:
    """learning_curve.png and samples.png; each one that fails warns and is skipped."""
    from .. import plots as P

    run = result.out
    assert run is not None
    try:
        P.plot_learning_curve(result.history, run / "learning_curve.png")
    except Exception as e:  # noqa: BLE001 - a picture never costs a run
        _warn("learning_curve.png", e)
    try:
        _samples_picture(result, source, run / "samples.png")
    except Exception as e:  # noqa: BLE001
        _warn("samples.png", e)


def _samples_picture(result: TrainResult, source, path: Path) -> None:
    from .. import plots as P

    real, labels = source.sample_real(1000 if getattr(source, "is_toy", False) else 64)
    if labels is not None and source.n_classes:
        labels = labels.to(next(result.generator.parameters()).device)
    else:
        labels = None
    fake = result.sample(real.shape[0], labels).float().cpu()
    critic = result.critic if getattr(source, "is_toy", False) and source.n_classes == 0 else None
    P.save_samples(fake, real, source, str(path), critic=critic,
                   title=f"{result.config['loss']} on {source.name}, step {result.config['steps']}")
