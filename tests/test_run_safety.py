"""A run folder nobody can corrupt or abuse, through ``fastwgan.train`` and the command line: a
planted checkpoint never runs code, a resume cannot rewrite history, a new run never mixes with an
old one, two writers never share a folder, an unwritable folder fails before the first step. Every
case ends with every earlier checkpoint intact (byte for byte)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastwgan.cli import main as cli_main
from fastwgan.run_folder import RunFolderBusyError, RunFolderInUseError, RunFolderNotWritableError

from _malicious import plant_malicious_checkpoint
from _tiny import quick_train, tiny_models

ARGS = dict(steps=4, batch_size=16, n_critic=1, checkpoint_every=2, log_every=1, keep_checkpoints=5)


def _train(out, **kw):
    G, D = tiny_models("mlp", width=8, z_dim=2)
    return quick_train(G, D, "8gaussians", out=out, **{**ARGS, **kw})


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "checkpoints").glob("ckpt-*.pt"))}


def _intact(folder: Path, before: dict[str, bytes]) -> None:
    after = _snapshot(folder)
    assert before and all(after.get(k) == v for k, v in before.items()), "an earlier checkpoint changed or vanished"


def test_a_planted_checkpoint_never_runs_code_through_train_or_the_cli(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    _train(run)
    bad = plant_malicious_checkpoint(run / "checkpoints", marker)
    before = _snapshot(run)
    with pytest.raises(ValueError, match=f"{bad.name}.*objects other than tensors"):
        _train(run, steps=6, resume=True)
    code = cli_main(["train", "--data", "8gaussians", "--steps", "6", "--batch-size", "16", "--out", str(run),
                     "--resume", "--no-progress", "--no-plots", "--eval-samples", "0"])
    assert code == 2 and bad.name in capsys.readouterr().err
    assert not marker.exists()  # the payload never ran
    _intact(run, before)


def test_resuming_with_fewer_steps_than_the_checkpoint_is_refused(tmp_path):
    run = tmp_path / "run"
    _train(run)
    before = _snapshot(run)
    with pytest.raises(ValueError, match="at step 4.*steps=2"):
        _train(run, steps=2, resume=True)
    _intact(run, before)


def test_a_new_run_into_a_folder_holding_a_run_is_refused_or_moves_it_aside(tmp_path):
    run = tmp_path / "run"
    _train(run)
    before, metrics = _snapshot(run), (run / "metrics.jsonl").read_bytes()
    with pytest.raises(RunFolderInUseError, match="resume=True.*overwrite=True"):
        _train(run, seed=1)
    _intact(run, before)
    _train(run, seed=1, overwrite=True)
    moved = list(run.glob("previous-run-*"))
    assert len(moved) == 1 and _snapshot(moved[0]) == before
    assert (moved[0] / "metrics.jsonl").read_bytes() == metrics
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the new run's own lines only
    assert sorted(_snapshot(run)) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]


# The first writer: long enough to outlive the test. compile=False: at this many steps compile="auto"
# would compile first on a CPU with native bf16 (about 30 s before the first checkpoint), and the
# lock under test is the same either way.
_WRITER = """
import sys
sys.path.insert(0, {tests!r})
from _tiny import quick_train, tiny_models
G, D = tiny_models("mlp", width=8, z_dim=2)
quick_train(G, D, "8gaussians", out={out!r}, steps=100000, batch_size=16, n_critic=1, checkpoint_every=2,
            handle_signals=False, compile=False)
"""


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", _WRITER.format(tests=str(Path(__file__).parent), out=str(run))])
    try:
        deadline = time.time() + 120
        while not list((run / "checkpoints").glob("ckpt-*.pt")) and time.time() < deadline:
            assert first.poll() is None, "the first writer died"
            time.sleep(0.2)
        with pytest.raises(RunFolderBusyError, match=f"pid {first.pid}"):
            _train(run, resume=True, steps=200000)
        with pytest.raises(RunFolderBusyError):
            _train(run, overwrite=True)
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        first.kill()
        first.wait()
    assert list((run / "checkpoints").glob("ckpt-*.pt"))


def test_an_unwritable_folder_fails_before_the_first_step(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    G, D = tiny_models("mlp", width=8, z_dim=2)
    before = [p.detach().clone() for p in [*G.parameters(), *D.parameters()]]
    with pytest.raises(RunFolderNotWritableError, match="a-file"):
        quick_train(G, D, "8gaussians", out=blocker / "run", **ARGS)
    assert all(torch.equal(a, b) for a, b in zip(before, [*G.parameters(), *D.parameters()], strict=True))


def test_the_cli_refuses_a_second_run_into_a_folder_then_overwrite_moves_it_aside(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", "8gaussians", "--steps", "2", "--batch-size", "16", "--out", str(run), "--no-progress",
            "--no-plots", "--eval-samples", "0"]
    assert cli_main(argv) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastwgan: error:") and "--resume" in err and "--overwrite" in err
    assert cli_main(argv + ["--overwrite"]) == 0
    (moved,) = run.glob("previous-run-*")
    assert _snapshot(moved) == before
