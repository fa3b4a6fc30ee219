"""Atomic, safe checkpoints: a crash or a kill at any instant leaves the previous checkpoint intact,
and loading one never runs code stored in it.

Write protocol: serialize to ``<name>.tmp`` in the same folder, flush and fsync the file, rename it
over the final name (atomic on POSIX within one file system), then fsync the folder so the rename
itself survives a power loss. Only the last ``keep`` checkpoints are kept.

Safety: a checkpoint holds only tensors and plain Python data (numbers, strings, None, lists,
tuples, dicts), checked before writing, and is read with ``torch.load(weights_only=True)``, whose
unpickler builds nothing else. The random states, which Python and NumPy give as tuples holding a
NumPy array, are stored as lists and tensors (:func:`rng_state`). So a file planted in a run folder
(a shared disk, a downloaded run) cannot run code when a run resumes from it.

Reading sorts what a failed load means:

* the zip archive or its pickle is damaged (truncated, a bad CRC): :class:`CheckpointError`;
  :func:`load_latest` warns and falls back to the previous checkpoint;
* an intact pickle holding anything else (a class, a function): :class:`UnsafeCheckpointError`,
  never skipped, since nothing fastwgan writes looks like that;
* a checkpoint of the first format (NumPy objects in its random state, written by fastwgan before
  ``FORMAT`` 2): :class:`LegacyCheckpointError`, naming :func:`upgrade_checkpoint`.
"""
from __future__ import annotations

import io
import os
import pickle
import random
import re
import shutil
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import write_bytes_atomic

__all__ = [
    "FORMAT", "REQUIRED_KEYS", "CheckpointError", "UnsafeCheckpointError", "LegacyCheckpointError",
    "checkpoint_path", "list_checkpoints", "save_checkpoint", "load_checkpoint", "load_latest",
    "rng_state", "set_rng_state", "check_plain", "upgrade_checkpoint",
]

FORMAT = 2  # 1 (no "format" key): NumPy's random state pickled as NumPy objects
# What a training run's checkpoint holds; the trainer passes it as ``required=``.
REQUIRED_KEYS: tuple[str, ...] = (
    "step", "generator", "critic", "opt_d", "opt_g", "data", "rng", "config",
)
_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")
# What format-1 checkpoints need beyond plain data: np.random.get_state()'s uint32 key array.
_LEGACY_GLOBALS = frozenset({
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct", "numpy.ndarray",
    "numpy.dtype", "numpy.dtypes.UInt32DType",
})


class CheckpointError(ValueError):
    """A damaged or incomplete checkpoint (truncated, bad CRC, missing entries): skippable."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint holding objects other than tensors and plain data: refused, never skipped."""


class LegacyCheckpointError(ValueError):
    """A checkpoint in an older (or newer) format than this fastwgan reads."""


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:08d}.pt"


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


# --------------------------------------------------------------------------------------------
# random states as plain data
# --------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The global random states (Python, NumPy's legacy ``np.random``, torch CPU, every CUDA
    device) as tensors, lists and numbers only, so a checkpoint holding them loads with
    ``weights_only=True``. :func:`set_rng_state` restores them bit for bit."""
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        # Mersenne Twister: 624 words + the position, and the cached second normal of gauss()
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global random states saved by :func:`rng_state`.

    CUDA states are restored on as many devices as both the state and this machine have. A
    malformed state raises a ValueError before any stream is changed."""
    try:
        py, npy = state["python"], state["numpy"]
        py_state = (int(py["version"]), tuple(int(w) for w in py["internal"]), py["gauss_next"])
        keys = npy["keys"]
        np_state = (str(npy["kind"]), np.asarray(keys.tolist() if torch.is_tensor(keys) else keys,
                                                 dtype=np.uint32),
                    int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
        torch_state = state["torch"]
        if not torch.is_tensor(torch_state):
            raise TypeError(f"'torch' is a {type(torch_state).__name__}, not a tensor")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(
            f"the saved random state is malformed ({type(e).__name__}: {e}); expected the dict "
            "fastwgan.checkpoint.rng_state() returns (a checkpoint of an older format? see "
            "upgrade_checkpoint)"
        ) from e
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)
    if "cuda" in state and torch.cuda.is_available():
        for i, s in enumerate(list(state["cuda"])[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
_LEAVES = (int, float, bool, str, bytes, complex, type(None), torch.dtype, torch.device)
_SEQUENCES = (list, tuple, set, torch.Size)


def check_plain(obj: Any, where: str = "state") -> None:
    """Raise TypeError, naming the entry, unless ``obj`` is made only of tensors and plain data
    (what ``torch.load(weights_only=True)`` rebuilds without running code)."""
    t = type(obj)
    if t in (torch.Tensor, torch.nn.Parameter) or t in _LEAVES:
        return
    if t in _SEQUENCES:
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    if t in (dict, OrderedDict):
        for k, v in obj.items():
            check_plain(k, f"{where} key {k!r}")
            check_plain(v, f"{where}[{k!r}]")
        if t is OrderedDict:  # a module state_dict's _metadata travels in __dict__
            for k, v in vars(obj).items():
                check_plain(v, f"{where}.{k}")
        return
    raise TypeError(
        f"checkpoint entry {where} is a {t.__module__}.{t.__qualname__}: a checkpoint holds only "
        "tensors and plain Python data (numbers, strings, None, lists, tuples, dicts), so it "
        "loads with torch.load(weights_only=True). Store it as a tensor or a list instead"
    )


def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike, step: int, keep: int = 3) -> Path:
    """Atomically write ``state`` (plus ``"format"``) as the checkpoint of ``step``; keep the
    newest ``keep``. Raises TypeError naming the entry, before writing, if ``state`` holds
    anything but tensors and plain data."""
    state = {**state, "format": FORMAT}
    check_plain(state)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, step)
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(final, buf.getbuffer(), tmp=final.with_suffix(".pt.tmp"))
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return final


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike, *, required: Sequence[str] = ()) -> dict[str, Any]:
    """Load one checkpoint with ``weights_only=True`` (no stored code can run).

    ``required``: entries it must have besides ``step`` (a run's: :data:`REQUIRED_KEYS`).

    Raises:
        CheckpointError: truncated, damaged, or without a ``required`` entry (names the file and
            the missing entries).
        UnsafeCheckpointError: the file holds objects other than tensors and plain data.
        LegacyCheckpointError: written by an older fastwgan (see :func:`upgrade_checkpoint`) or
            a newer one.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, damaged pickle, a refused global, ...
        raise _classify_failure(Path(path), e) from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"checkpoint {path} is not a fastwgan checkpoint (no 'step' entry)")
    fmt = state.get("format")
    if fmt is None:
        raise _legacy(Path(path))
    if fmt != FORMAT:
        raise LegacyCheckpointError(
            f"checkpoint {path} has format {fmt!r} but this fastwgan reads format {FORMAT}: load it "
            "with the fastwgan that wrote it (a newer one?), or start a new run"
        )
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is incomplete: it has no {', '.join(map(repr, missing))} "
            "entry; move it out of the folder to resume from the previous checkpoint"
        )
    _check_entries(state, Path(path))
    return state


MAX_STEP = 99_999_999  # the most a checkpoint's name (ckpt-%08d.pt) holds


def _check_entries(state: dict[str, Any], path: Path) -> None:
    """The entries everything after a load trusts: a sane step, models as state_dicts (names to
    tensors, or plain data for a module's extra state)."""
    step = state["step"]
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise CheckpointError(
            f"checkpoint {path} records 'step' = {step!r}, not a step count (an int in 0..{MAX_STEP:,}): the file "
            "is damaged or was not written by fastwgan; move it out of the folder to use the previous checkpoint"
        )
    for key in ("generator", "critic"):
        if key in state and not (isinstance(state[key], dict) and all(isinstance(k, str) for k in state[key])):
            raise CheckpointError(
                f"checkpoint {path}: its {key!r} entry is not a state_dict (a dict of parameter names to tensors) "
                f"but a {type(state[key]).__name__}: the file is damaged or was not written by fastwgan; move it "
                "out of the folder to use the previous checkpoint"
            )


def _classify_failure(path: Path, e: Exception) -> ValueError:
    """A damaged file (skippable), a legacy one, or one holding objects that are not plain data."""
    if _old_format_refused(path, e):
        return UnsafeCheckpointError(
            f"checkpoint {path} is a torch file of the old, non-zip format holding objects other than tensors "
            "and plain data, so it was not loaded (loading it could run code stored in it). fastwgan never "
            "writes such a file: if you did not put it there, someone else did. Move it out of the folder to "
            "resume from the previous checkpoint"
        )
    if not _pickle_intact(path):
        return CheckpointError(
            f"checkpoint {path} is truncated or corrupted ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); delete it to resume from the previous one"
        )
    try:
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # opcodes a tensors-and-data pickle never uses
        unsafe = {"<unreadable opcodes>"}
    if unsafe and unsafe <= _LEGACY_GLOBALS:
        return _legacy(path)
    named = f" ({', '.join(sorted(unsafe))})" if unsafe else ""
    return UnsafeCheckpointError(
        f"checkpoint {path} contains objects other than tensors and plain data{named}, so it was "
        "not loaded (loading it could run code stored in it). fastwgan never writes such a file: "
        "if you did not put it there, someone else did, or it is damaged. Move it out of the folder "
        "to resume from the previous checkpoint"
    )


def _old_format_refused(path: Path, e: Exception) -> bool:
    """True for a file of torch's old serialization (a bare pickle stream, not a zip archive) that
    the safe unpickler refused: its pickle read up to an object it does not build."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return (head[:1] == b"\x80" and not zipfile.is_zipfile(path) and isinstance(e, pickle.UnpicklingError)
            and "weights_only" in str(e).lower().replace(" ", "_"))


def _pickle_intact(path: Path) -> bool:
    """True when the archive's pickle reads back with its CRC-32 intact: then a load failure is
    the content's, not damage."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
            z.read(name)  # checks the CRC-32 stored when the file was written
    except (zipfile.BadZipFile, StopIteration, OSError, EOFError, ValueError):
        return False
    return True


def _legacy(path: Path) -> LegacyCheckpointError:
    return LegacyCheckpointError(
        f"checkpoint {path} was written by an older fastwgan (checkpoint format 1, which pickles "
        "NumPy objects) and is not loaded as it is. Convert it once with "
        f"`python -c \"from fastwgan.checkpoint import upgrade_checkpoint; upgrade_checkpoint('{path}')\"` "
        "(it still unpickles only tensors, plain data and NumPy arrays, keeping the original "
        "beside it as .legacy), or re-create it by training again"
    )


def load_latest(folder: str | os.PathLike, *,
                required: Sequence[str] = ()) -> tuple[dict[str, Any], Path] | None:
    """The newest loadable checkpoint in ``folder`` and its path, or None when there is none.

    A damaged newest file, or one without a ``required`` entry (:class:`CheckpointError`), is
    skipped with a RuntimeWarning, falling back to the previous one. An unsafe or legacy file
    raises (UnsafeCheckpointError / LegacyCheckpointError): it is never skipped, nor loaded."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path, required=required), path
        except CheckpointError as e:
            warnings.warn(f"{e}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
    return None


# --------------------------------------------------------------------------------------------
# format 1 -> 2
# --------------------------------------------------------------------------------------------
def upgrade_checkpoint(path: str | os.PathLike) -> Path:
    """Rewrite a format-1 checkpoint (older fastwgan) in the current format, in place; the
    original is kept as ``<path>.legacy``. Returns ``path``.

    Still no code runs: the file is read with ``weights_only=True``, allowing beyond tensors and
    plain data only NumPy's array reconstruction (the one thing format 1 needs: NumPy's random
    state). Its random state is converted to :func:`rng_state`'s layout."""
    path = Path(path)
    rebuild = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)),  # under either NumPy's name:
               (rebuild, "numpy._core.multiarray._reconstruct"),
               (rebuild, "numpy.core.multiarray._reconstruct")]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise _classify_failure(path, e) from None
    if not isinstance(state, dict) or "step" not in state or state.get("format") not in (None, 1):
        raise ValueError(f"{path} is not a format-1 fastwgan checkpoint: nothing to upgrade")
    state.pop("format", None)
    state["rng"] = _rng_from_legacy(path, state.get("rng"))
    shutil.copy2(path, path.with_name(path.name + ".legacy"))
    state["format"] = FORMAT
    check_plain(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getbuffer(), tmp=path.with_name(path.name + ".tmp"))
    return path


def _rng_from_legacy(path: Path, old: Any) -> dict[str, Any]:
    try:
        version, internal, gauss_next = old["python"]
        kind, keys, pos, has_gauss, cached = old["numpy"]
        new: dict[str, Any] = {
            "python": {"version": int(version), "internal": [int(w) for w in internal],
                       "gauss_next": gauss_next},
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": old["torch"],
        }
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: its random state is not format 1's ({type(e).__name__}: {e})") from e
    if "cuda" in old:
        new["cuda"] = list(old["cuda"])
    return new
