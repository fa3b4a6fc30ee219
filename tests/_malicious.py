"""A malicious checkpoint for the tests: a genuine fastwgan checkpoint plus one pickled object
whose ``__reduce__`` writes a file when the checkpoint is unpickled (what an attacker who can drop
a file into a run folder would plant). Loading it with ``weights_only=False`` writes the marker
file; fastwgan must refuse it without writing it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fastwgan import checkpoint as ckpt


class WritesFile:
    """Unpickling this runs ``exec`` on code that writes ``marker``."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        code = f"open({self.marker!r}, 'w').write('code from a checkpoint ran')"
        return exec, (code,)


def plant_malicious_checkpoint(folder: str | Path, marker: str | Path, *, base: str | Path | None = None,
                               step: int | None = None) -> Path:
    """Write ``folder/ckpt-<step>.pt``: the genuine state of ``base`` (default: the newest checkpoint
    in ``folder``) plus an entry whose unpickling writes ``marker``. ``step`` defaults to one past
    the base's, so the planted file is the newest. Returns its path; ``marker`` must not exist
    after fastwgan has been asked to load it."""
    folder = Path(folder)
    base = Path(base) if base is not None else ckpt.list_checkpoints(folder)[-1]
    state = ckpt.load_checkpoint(base)
    step = state["step"] + 1 if step is None else step
    state["step"] = step
    state["extra"] = WritesFile(marker)
    path = ckpt.checkpoint_path(folder, step)
    torch.save(state, path)  # not save_checkpoint: that refuses anything but plain data
    return path
