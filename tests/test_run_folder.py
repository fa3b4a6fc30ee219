"""One run per folder: the lock (across processes), an earlier run refused or moved aside intact,
an unwritable folder found before any work, resume with fewer steps refused."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastwgan.run_folder import (
    LOCK_NAME,
    RunFolderBusyError,
    RunFolderError,
    RunFolderInUseError,
    RunFolderNotWritableError,
    check_resume_steps,
    holds_run,
    open_run_folder,
)


def _earlier_run(folder: Path) -> dict[str, bytes]:
    """Files of a finished run (distinct contents); returns relative path -> bytes."""
    files = {
        "metrics.jsonl": b'{"step": 1}\n{"step": 2}\n',
        "summary.json": b'{"steps": 2}',
        "samples.png": b"\x89PNG not really",
        "checkpoints/ckpt-00000001.pt": b"checkpoint one",
        "checkpoints/ckpt-00000002.pt": b"checkpoint two",
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return files


def _assert_intact(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (folder / rel).read_bytes() == data, rel


def test_a_new_folder_is_created_locked_and_released(tmp_path):
    out = tmp_path / "a" / "run"
    with open_run_folder(out) as run:
        assert run.locked and run.path == out and run.checkpoints.is_dir() and run.previous is None
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "checkpoints"]  # probes removed
    assert not run.locked
    with open_run_folder(out, resume=True) as again:  # free again
        assert again.locked


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    with open_run_folder(tmp_path):
        with pytest.raises(RunFolderBusyError, match=f"pid {os.getpid()}"):
            open_run_folder(tmp_path, resume=True)


_HOLDER = textwrap.dedent("""
    import sys
    from fastwgan.run_folder import open_run_folder
    with open_run_folder(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()   # hold the lock until the test says so
""")


def test_two_writers_in_two_processes(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line.strip() == "locked", holder.stderr.read()
        files = _earlier_run(out)  # what the holding run has written so far
        for resume, overwrite in ((False, False), (True, False), (False, True)):
            with pytest.raises(RunFolderBusyError) as e:
                open_run_folder(out, resume=resume, overwrite=overwrite)
            msg = str(e.value)
            assert str(out) in msg and f"pid {holder.pid}" in msg and "another fastwgan run" in msg
        _assert_intact(out, files)  # overwrite did not move the live run's files
        assert not any(p.name.startswith("previous-run-") for p in out.iterdir())
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    with open_run_folder(out, resume=True) as run:  # released when the holder exited
        assert run.locked
    _assert_intact(out, files)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        with pytest.raises(RunFolderBusyError):
            open_run_folder(tmp_path)
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait()
    with open_run_folder(tmp_path) as run:
        assert run.locked


@pytest.mark.parametrize("marker", ["metrics.jsonl", "summary.json", "checkpoints/ckpt-00000007.pt"])
def test_a_new_run_into_a_folder_holding_a_run_is_refused(tmp_path, marker):
    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / marker).write_bytes(b"earlier")
    assert holds_run(tmp_path)
    with pytest.raises(RunFolderInUseError) as e:
        open_run_folder(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "resume=True" in msg and "overwrite=True" in msg
    assert (tmp_path / marker).read_bytes() == b"earlier"


def test_lock_released_after_a_refusal(tmp_path):
    _earlier_run(tmp_path)
    with pytest.raises(RunFolderInUseError):
        open_run_folder(tmp_path)
    with open_run_folder(tmp_path, resume=True) as run:
        assert run.locked


def test_an_empty_or_foreign_folder_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "other.pt").write_bytes(b"x")
    assert not holds_run(tmp_path)
    with open_run_folder(tmp_path) as run:
        assert run.previous is None
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_moves_the_earlier_run_aside_intact(tmp_path):
    files = _earlier_run(tmp_path)
    with open_run_folder(tmp_path, overwrite=True) as run:
        prev = run.previous
        assert prev is not None and prev.parent == tmp_path and prev.name.startswith("previous-run-")
        assert prev.name.endswith("Z")  # UTC
        _assert_intact(prev, files)
        assert not holds_run(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOCK_NAME, "checkpoints", prev.name])
        assert not any(run.checkpoints.iterdir())
        second = _earlier_run(tmp_path)  # the new run writes its own files
    with open_run_folder(tmp_path, overwrite=True) as run2:  # twice: both earlier runs kept apart
        assert run2.previous != prev
        _assert_intact(prev, files)
        _assert_intact(run2.previous, second)
        assert not (run2.previous / prev.name).exists()  # not nested


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(RunFolderError, match="pass one of them"):
        open_run_folder(tmp_path, resume=True, overwrite=True)


def test_a_folder_below_a_file_is_not_writable(tmp_path):
    """Creating a folder under a regular file fails for every user, root included."""
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run"
    with pytest.raises(RunFolderNotWritableError) as e:
        open_run_folder(out)
    assert str(out) in str(e.value) and "choose a folder you can write" in str(e.value)


def test_an_existing_folder_that_takes_no_files_is_found_before_any_work():
    """/proc/self exists and is a directory, but nobody, root included, can create a file in it:
    the probe file finds that at open, not at the first checkpoint."""
    out = Path("/proc/self")
    if not out.is_dir():
        pytest.skip("needs Linux's /proc")
    with pytest.raises(RunFolderNotWritableError) as e:
        open_run_folder(out)
    assert "/proc/self" in str(e.value) and "not writable" in str(e.value)


def test_checkpoints_folder_that_cannot_be_created_is_found_at_open(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the checkpoint folder goes")
    with pytest.raises(RunFolderNotWritableError, match="checkpoint folder") as e:
        open_run_folder(tmp_path)
    assert str(tmp_path / "checkpoints") in str(e.value)
    with open_run_folder(tmp_path / "other"):  # and the refused folder's lock was released
        pass
    (tmp_path / "checkpoints").unlink()
    with open_run_folder(tmp_path):
        pass


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permission bits")
def test_a_read_only_folder_is_not_writable(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(RunFolderNotWritableError, match="not writable"):
            open_run_folder(out)
    finally:
        out.chmod(0o700)


def test_lock_released_after_an_exception_in_the_run(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with open_run_folder(tmp_path) as run:
            assert run.locked
            raise RuntimeError("boom")
    assert not run.locked
    with open_run_folder(tmp_path) as again:
        assert again.locked
    run.close()  # idempotent


def test_check_resume_steps():
    check_resume_steps(4, 4, "ckpt-00000004.pt")  # equal: nothing left to train, fine
    check_resume_steps(4, 10, "ckpt-00000004.pt")
    with pytest.raises(ValueError) as e:
        check_resume_steps(4, 2, "runs/x/checkpoints/ckpt-00000004.pt")
    msg = str(e.value)
    assert "step 4" in msg and "steps=2" in msg and "ckpt-00000004.pt" in msg and "steps >= 4" in msg
