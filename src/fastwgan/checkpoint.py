"""Atomic checkpoints: a crash or a kill at any instant leaves the previous checkpoint intact.

Write protocol: serialize to ``<name>.tmp`` in the same folder, flush and fsync the file, rename it
over the final name (atomic on POSIX within one file system), then fsync the folder so the rename
itself survives a power loss. Only the last ``keep`` checkpoints are kept. Reading falls back from
a truncated or corrupted newest file to the previous good one, saying so.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:08d}.pt"


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike, step: int, keep: int = 3) -> Path:
    """Atomically write ``state`` as the checkpoint of ``step``; keep the newest ``keep``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, step)
    tmp = final.with_suffix(".pt.tmp")
    buf = io.BytesIO()
    torch.save(state, buf)
    with open(tmp, "wb") as f:
        f.write(buf.getbuffer())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load one checkpoint; a truncated or corrupted file raises a ValueError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated zip, bad pickle, ...
        raise ValueError(
            f"checkpoint {path} is truncated or corrupted ({type(e).__name__}: {e}); delete it to "
            "resume from the previous one"
        ) from e
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"checkpoint {path} is not a fastwgan checkpoint (no 'step' entry)")
    return state


def load_latest(folder: str | os.PathLike) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint in ``folder`` (skipping corrupted ones with a warning)."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path), path
        except ValueError as e:
            warnings.warn(f"{e}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
    return None
