"""Files replaced whole or not at all: every file fastwgan writes (checkpoints, exports, samples,
metrics, summaries, pictures, the classifier cache) goes through :func:`replaced_on_success`.

Protocol: the writer writes a temporary file in the destination's folder (same file system, so the
rename is atomic on POSIX); when it returns, the file is fsynced, renamed over the destination
(``os.replace``) and the folder fsynced, so the rename survives a power loss. If the writer
raises, the temporary file is removed and whatever was at the destination is untouched: a failed
write never costs the file that was there. Once the new file is complete and on disk, a failing
rename leaves it beside the destination (the new data is not deleted either).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replaced_on_success", "write_bytes_atomic", "fsync_folder"]


def _temporary_name(path: Path) -> Path:
    # hidden, per process, and ending in the destination's suffix: writers that pick the format
    # from the suffix (matplotlib, PIL, np.save) write the same format to it
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


@contextmanager
def replaced_on_success(path: str | os.PathLike, tmp: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on a normal exit it replaces ``path``
    (unless the writer wrote nothing there: then ``path`` is left as it is).

    ``tmp`` names the temporary file (default: a hidden ``.<stem>.<pid>.partial<suffix>``)."""
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else _temporary_name(path)
    try:
        yield tmp
        if not tmp.exists():  # the writer chose to write nothing (and said why): keep what is there
            return
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    fsync_folder(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes | memoryview,
                       tmp: str | os.PathLike | None = None) -> Path:
    """``path`` holds ``data``, or (on any failure) what it held before."""
    path = Path(path)
    with replaced_on_success(path, tmp) as t, open(t, "wb") as f:
        f.write(data)
    return path


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
