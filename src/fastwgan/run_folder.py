"""One run per folder: the run folder's lock, its writability, and what may be found in it.

:func:`open_run_folder` is called once before the first training step and held for the run's
lifetime (a context manager). It

* creates the folder and checks, with a probe file created, fsynced and removed, that the folder
  and its ``checkpoints/`` take files: an unwritable folder is found before any training, not at
  the final save;
* takes an exclusive lock (``filelock``'s ``flock``, released by the kernel when the process dies,
  so a killed run never leaves a stale lock) and records the holder's pid in the lock file, so a
  second run writing into the same folder gets an error naming the folder and that pid;
* refuses a folder that already holds a run (``metrics.jsonl``, ``summary.json`` or a
  ``checkpoints/ckpt-*.pt``) unless the caller said what to do with it: ``resume=True`` continues
  it, ``overwrite=True`` moves it aside into ``previous-run-<UTC time>/`` inside the folder
  (nothing is deleted).

Only the process that writes the folder opens it (rank 0 in distributed runs).
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

__all__ = [
    "RunFolder", "RunFolderError", "RunFolderBusyError", "RunFolderNotWritableError",
    "RunFolderInUseError", "open_run_folder", "check_resume_steps", "holds_run", "refuse_checkpoint_folder",
]

LOCK_NAME = ".fastwgan.lock"
PREVIOUS_PREFIX = "previous-run-"
_CKPT = re.compile(r"^ckpt-\d{8}\.pt$")


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (its subclasses say why)."""


class RunFolderBusyError(RunFolderError):
    """Another process holds the folder's lock."""


class RunFolderNotWritableError(RunFolderError):
    """The folder (or its checkpoints/) cannot be created or written."""


class RunFolderInUseError(RunFolderError):
    """The folder holds an earlier run and neither resume nor overwrite was asked for."""


class RunFolder:
    """An opened run folder: ``path``, ``checkpoints`` (its checkpoint folder), ``previous`` (where
    ``overwrite=True`` moved an earlier run, else None). Holds the lock until :meth:`close`."""

    def __init__(self, path: Path, lock: FileLock, previous: Path | None) -> None:
        self.path = path
        self.checkpoints = path / "checkpoints"
        self.previous = previous
        self._lock = lock

    @property
    def locked(self) -> bool:
        return self._lock.is_locked

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, locked={self.locked}, previous={self.previous})"


def open_run_folder(out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False) -> RunFolder:
    """Create, check and lock the run folder ``out`` for one run; see the module docstring.

    Raises (all ValueError subclasses, each naming the folder and the fix):
        RunFolderNotWritableError: ``out`` or ``out/checkpoints`` cannot be created or written.
        RunFolderBusyError: another process (its pid named) holds the folder's lock.
        RunFolderInUseError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` was set.
        RunFolderError: ``resume`` and ``overwrite`` both set.
    """
    if not isinstance(resume, bool) or not isinstance(overwrite, bool):
        raise TypeError(f"resume and overwrite must be bools, got {resume!r} and {overwrite!r}")
    if resume and overwrite:
        raise RunFolderError(
            "resume=True continues the run in the folder and overwrite=True moves it aside: "
            "pass one of them"
        )
    path = Path(out)
    _make_writable_dir(path, "run folder")
    lock = _acquire(path)
    try:
        previous = None
        if holds_run(path):
            if overwrite:
                previous = _move_aside(path)
            elif not resume:
                raise RunFolderInUseError(
                    f"{path} already holds a run ({', '.join(_run_files(path))}): pass "
                    "resume=True (--resume) to continue it, or overwrite=True (--overwrite) to move "
                    f"it aside into {path}/{PREVIOUS_PREFIX}<UTC time>/ and start anew; or choose "
                    "another folder"
                )
        _make_writable_dir(path / "checkpoints", "checkpoint folder")
    except BaseException:
        lock.release(force=True)
        raise
    return RunFolder(path, lock, previous)


def check_resume_steps(checkpoint_step: int, steps: int, path: str | os.PathLike) -> None:
    """Refuse to resume a checkpoint of step ``checkpoint_step`` into a run of ``steps`` total
    steps when ``steps`` is smaller (the run would overwrite later checkpoints with states
    labelled as earlier steps). ``steps == checkpoint_step`` is fine: nothing left to train."""
    if steps < checkpoint_step:
        raise ValueError(
            f"resume: the checkpoint {path} is at step {checkpoint_step} but steps={steps}, and a "
            f"run cannot go back: pass steps >= {checkpoint_step} (steps counts all the run's "
            "steps, not the ones to add), or start a new run (overwrite=True or another folder)"
        )


def refuse_checkpoint_folder(out: str | os.PathLike, setting: str = "--out") -> Path:
    """``out`` as a Path, unless it lies inside a run folder's ``checkpoints/``: a run's own
    checkpoints are never an output (a sample or export written there would replace one)."""
    path = Path(out)
    resolved = path.resolve()
    for folder in resolved.parents:
        if folder.name == "checkpoints" and (holds_run(folder.parent) or (folder.parent / LOCK_NAME).exists()):
            raise RunFolderError(
                f"{setting} {out} lies inside the run folder {folder.parent}'s checkpoints/, which holds the "
                "run's checkpoints (an output written there would replace one): write it to another folder, "
                f"e.g. {folder.parent / path.name}"
            )
    return path


def holds_run(path: str | os.PathLike) -> bool:
    """True when ``path`` holds the output of a run."""
    return bool(_run_files(Path(path)))


def _run_files(path: Path) -> list[str]:
    found = [n for n in ("metrics.jsonl", "summary.json") if (path / n).exists()]
    ckpts = path / "checkpoints"
    if ckpts.is_dir() and any(_CKPT.match(p.name) for p in ckpts.iterdir()):
        found.append("checkpoints/ckpt-*.pt")
    return found


def _make_writable_dir(path: Path, what: str) -> None:
    """mkdir -p, then create + fsync + remove a probe file: raises before any work if the folder
    cannot hold files (read-only mount, no permission, a file in the way, a full disk)."""
    probe = path / f".fastwgan-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"fastwgan")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunFolderNotWritableError(
            f"the {what} {path} is not writable ({type(e).__name__}: {e.strerror or e}): choose a "
            "folder you can write (out= / --out), or fix its permissions, mount or free space"
        ) from e


def _acquire(path: Path) -> FileLock:
    def record_pid(fd: int) -> None:  # after each physical acquire: the holder, for the error
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    lock_path = path / LOCK_NAME
    if lock_path.is_symlink():  # opening it would follow the link and truncate whatever it points at
        raise RunFolderError(
            f"the lock file {lock_path} is a symbolic link (to {os.readlink(lock_path)}), not a file fastwgan "
            "wrote: remove the link (fastwgan re-creates the lock file), or choose another folder"
        )
    # flock only (no soft-lock fallback): a soft lock outlives a killed run
    lock = FileLock(path / LOCK_NAME, timeout=0, thread_local=False, fallback_to_soft=False,
                    on_acquired=record_pid)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusyError(
            f"another fastwgan run ({_holder(path)}) is writing to {path}: wait for it to finish, "
            "or choose another folder (out= / --out)"
        ) from None
    except OSError as e:
        raise RunFolderNotWritableError(
            f"cannot lock the run folder {path} ({type(e).__name__}: {e.strerror or e}): it must be "
            "on a file system that supports flock; choose another folder"
        ) from e
    return lock


def _holder(path: Path) -> str:
    try:
        pid = (path / LOCK_NAME).read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def _move_aside(path: Path) -> Path:
    """Move everything in ``path`` but the lock and earlier moved-aside runs into a new
    ``previous-run-<UTC time>`` folder inside it; returns that folder."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = path / f"{PREVIOUS_PREFIX}{stamp}"
    n = 1
    while dest.exists():
        dest = path / f"{PREVIOUS_PREFIX}{stamp}-{n}"
        n += 1
    dest.mkdir()
    for entry in sorted(path.iterdir()):
        if entry.name == LOCK_NAME or entry == dest or entry.name.startswith(PREVIOUS_PREFIX):
            continue
        shutil.move(str(entry), str(dest / entry.name))  # a rename: same file system
    return dest
