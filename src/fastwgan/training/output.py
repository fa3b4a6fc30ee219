"""What a run writes besides checkpoints: metrics.jsonl, TensorBoard, summary.json and pictures.

Written by rank 0 only. A picture or a TensorBoard event that cannot be written warns and is
skipped: it never costs a finished run. metrics.jsonl gets one line per logged step; on resume it is
healed first (:func:`heal_metrics`): the lines the checkpoint supersedes are dropped, a damaged line is
set aside, a record cut by a kill is written again, so every logged step appears once. Whole files
(summary.json, the pictures) are replaced atomically (:mod:`fastwgan.atomic`).
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..atomic import replaced_on_success, write_bytes_atomic
from .result import TrainResult


def _warn(what: str, e: Exception) -> None:
    warnings.warn(f"fastwgan: could not write {what} ({type(e).__name__}: {e}); the run goes on without it",
                  RuntimeWarning, stacklevel=3)


class RunOutput:
    """The run folder's logs (None folder: nothing is written)."""

    def __init__(self, run: Path | None, *, tensorboard: bool, resume_step: int | None,
                 checkpoint: dict[str, Any] | None = None) -> None:
        self.run = run
        if run is not None and resume_step is not None:
            heal_metrics(run / "metrics.jsonl", resume_step, checkpoint)
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


SET_ASIDE = ".set-aside"


def heal_metrics(path: Path, step: int, checkpoint: dict[str, Any] | None = None) -> None:
    """Make ``path`` (metrics.jsonl) what the run wrote up to the resumed checkpoint's ``step``.

    * A line that is not a record (torn by a kill, damaged on disk), or a record the checkpoint's
      history contradicts, is appended to ``metrics.jsonl.set-aside`` (named in a RuntimeWarning)
      and never costs the lines after it.
    * Records after ``step`` are the resumed run's to write (the checkpoint supersedes them;
      resume is exact, so it writes the same ones again); a second, different record of a step is
      set aside, an identical one dropped.
    * A logged record of a step up to ``step`` that the file lacks (its line was cut by the kill
      that ended the run) is written again from the ``checkpoint``'s history, where it is kept.

    The side file is written before metrics.jsonl is replaced, and the replacement is atomic: a
    kill at any instant loses no line."""
    if not path.exists():
        return
    truth = {r["step"]: json.dumps(r) for r in _logged_records(checkpoint, step)}
    kept: dict[int, bytes] = {}
    aside: list[bytes] = []
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        at, rec = _record(line)
        if at is None or (at in truth and json.dumps(rec) != truth[at]):
            aside.append(line)  # not a record, or one the checkpoint contradicts (damaged on disk)
        elif at > step:
            continue
        elif at in kept:
            if kept[at] != line:
                aside.append(line)
        else:
            kept[at] = line
    for at, line in truth.items():
        kept.setdefault(at, line.encode())
    if aside:
        side = path.with_name(path.name + SET_ASIDE)
        with open(side, "ab") as f:
            f.write(b"".join(line + b"\n" for line in aside))
            f.flush()
            os.fsync(f.fileno())
        warnings.warn(f"fastwgan: {len(aside)} line(s) of {path} are damaged (not a record: cut by a kill or changed "
                      "on disk; or a record the checkpoint contradicts): they were moved to "
                      f"{side}, the valid records kept and the checkpoint's written again", RuntimeWarning, stacklevel=3)
    write_bytes_atomic(path, b"".join(kept[k] + b"\n" for k in sorted(kept)))


def _record(line: bytes) -> tuple[int | None, Any]:
    """(step, record) of a metrics.jsonl line; step None when the line is not a record."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    step = rec.get("step") if isinstance(rec, dict) else None
    return (step if type(step) is int and step >= 1 else None), rec


def _logged_records(checkpoint: dict[str, Any] | None, step: int) -> list[dict[str, Any]]:
    """The records of the checkpoint's history that its run logged: every ``log_every``-th and
    ``eval_every``-th step and the run's last (the rest of the history is per step, unlogged)."""
    if not checkpoint:
        return []
    config, history = checkpoint.get("config") or {}, checkpoint.get("history") or []
    cadences = [c for c in (config.get("log_every"), config.get("eval_every")) if type(c) is int and c > 0]
    last = config.get("steps")
    return [r for r in history if isinstance(r, dict) and type(r.get("step")) is int and 1 <= r["step"] <= step
            and (r["step"] == last or any(r["step"] % c == 0 for c in cadences))]


def write_summary(result: TrainResult, setup_seconds: float, extra: dict[str, Any]) -> None:
    """summary.json, atomically: final metrics, every setting, timings."""
    run = result.out
    assert run is not None
    summary = dict(metrics=result.metrics, config=result.config, train_seconds=result.train_seconds,
                   compile_seconds=result.compile_seconds, step_mode=result.step_mode,
                   setup_seconds=setup_seconds, steps=result.steps_done, torch=torch.__version__, **extra)
    write_bytes_atomic(run / "summary.json", json.dumps(summary, indent=2).encode())


def write_pictures(result: TrainResult, source) -> None:
    """learning_curve.png and samples.png; each one that fails warns and is skipped."""
    from .. import plots as P

    run = result.out
    assert run is not None
    try:
        with replaced_on_success(run / "learning_curve.png") as tmp:
            P.plot_learning_curve(result.history, str(tmp))
    except Exception as e:  # noqa: BLE001 - a picture never costs a run
        _warn("learning_curve.png", e)
    try:
        with replaced_on_success(run / "samples.png") as tmp:
            _samples_picture(result, source, tmp)
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
