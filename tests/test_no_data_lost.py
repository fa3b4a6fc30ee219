"""Nothing a user had is lost: a failed export keeps the file that was at its path, a damaged line
of metrics.jsonl is set aside instead of taking the valid lines after it, a run's own checkpoints
are never an output path, and a record cut by a kill is written again on resume. Each case ends
with every file that existed before either byte-identical or set aside (never gone)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import fastwgan
from fastwgan.cli import main as cli_main
from fastwgan.export import export_generator

from _tiny import tiny_models

ARGS = dict(batch_size=16, n_critic=1, progress=False, eval_samples=0, plots=False, log_every=1,
            keep_checkpoints=5)
SIDE = "metrics.jsonl.set-aside"


def _train(out, steps=10, **kw):
    G, D = tiny_models("mlp", width=8, z_dim=2)
    return fastwgan.train(G, D, "8gaussians", out=out, steps=steps, **{**ARGS, **kw})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 10-step run, one record per step, checkpoints at 5 and 10; copied per test."""
    run = tmp_path_factory.mktemp("finished") / "run"
    _train(run, checkpoint_every=5)
    return run


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, ignore=shutil.ignore_patterns(".fastwgan.lock"))
    return copy


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".fastwgan.lock"}


def _lines(path: Path) -> list[bytes]:
    return [s for s in path.read_bytes().split(b"\n") if s]


def assert_kept(folder: Path, before: dict[str, bytes], *, changed: tuple[str, ...] = ()) -> None:
    """Every file of ``before`` is still there byte for byte, except those in ``changed``, whose
    every line is still in the file or in its set-aside file."""
    for name, data in before.items():
        path = folder / name
        assert path.exists(), f"{name} is gone"
        if name not in changed:
            assert path.read_bytes() == data, f"{name} changed"
            continue
        now = set(_lines(path)) | (set(_lines(path.with_name(path.name + ".set-aside")))
                                   if path.with_name(path.name + ".set-aside").exists() else set())
        lost = [s for s in data.split(b"\n") if s and s not in now]
        assert not lost, f"lines of {name} lost: {lost}"


def _not_superseded(files: dict[str, bytes]) -> dict[str, bytes]:
    """What a resume must leave as it was: all but what the resumed run writes anew (its
    checkpoints, past its last one the oldest pruned, and summary.json, the finished run's)."""
    return {k: v for k, v in files.items() if not k.startswith("checkpoints/") and k != "summary.json"}


# 1 ------------------------------------------------------------------------------------------
class _Unexportable(nn.Module):
    z_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, z):
        raise RuntimeError("this generator cannot be traced")


def test_a_failed_export_keeps_the_file_that_was_at_out(tmp_path):
    out = tmp_path / "G.pt2"
    out.write_bytes(b"the user's earlier export")
    before = _files(tmp_path)
    with pytest.raises(ValueError, match="could not export"):
        export_generator(_Unexportable(), 2, out)
    assert_kept(tmp_path, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G.pt2"]  # no temporary file left behind


def test_a_successful_export_replaces_the_file_at_out(tmp_path):
    """Negative control for the test above: the export path does write when it can (TorchScript,
    the quicker route; torch.export's are in test_run_commands.py)."""
    out = tmp_path / "G.pt"
    out.write_bytes(b"old")
    G, _ = tiny_models("mlp", width=8, z_dim=2)
    report = export_generator(G, 2, out, route="torchscript")
    assert out.read_bytes() != b"old" and report["path"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G.pt"]


# 2 ------------------------------------------------------------------------------------------
def test_a_malformed_line_in_metrics_is_set_aside_and_the_lines_after_it_kept(run):
    lines = _lines(run / "metrics.jsonl")
    assert [json.loads(s)["step"] for s in lines] == list(range(1, 11))
    damaged = lines[:1] + [b'{"step": 2, "loss_d": 0.1'] + lines[2:]
    (run / "metrics.jsonl").write_bytes(b"\n".join(damaged) + b"\n")
    before = _files(run)
    with pytest.warns(RuntimeWarning, match=SIDE):
        _train(run, steps=12, checkpoint_every=5, resume=True)
    after = _lines(run / "metrics.jsonl")
    assert [json.loads(s)["step"] for s in after] == list(range(1, 13))
    assert after[:10] == lines  # the valid lines kept byte for byte, step 2 written again from the checkpoint
    assert _lines(run / SIDE) == [b'{"step": 2, "loss_d": 0.1']
    assert_kept(run, _not_superseded(before), changed=("metrics.jsonl",))


# 3 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["sample", "export"])
def test_a_runs_checkpoints_are_never_an_output_path(run, command, capsys):
    target = run / "checkpoints" / "ckpt-00000010.pt"
    before = _files(run)
    extra = ["--n", "5"] if command == "sample" else []
    code = cli_main([command, "--run", str(run), *extra, "--out", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoints" in err and "another" in err, err
    assert_kept(run, before)
    assert _files(run) == before


def test_an_output_beside_the_run_folder_is_written(run, tmp_path, capsys):
    """Negative control: the same command with a path outside checkpoints/ writes the file."""
    out = tmp_path / "s.pt"
    assert cli_main(["sample", "--run", str(run), "--n", "5", "--out", str(out)]) == 0
    assert torch.load(out).shape == (5, 2)


# 4 ------------------------------------------------------------------------------------------
def test_a_record_cut_by_a_kill_is_written_again_on_resume(run):
    lines = _lines(run / "metrics.jsonl")
    (run / "metrics.jsonl").write_bytes(b"\n".join(lines[:9]) + b"\n" + lines[9][:17])  # step 10 cut mid-line
    before = _files(run)
    with pytest.warns(RuntimeWarning, match=SIDE):
        _train(run, steps=12, checkpoint_every=5, resume=True)
    after = _lines(run / "metrics.jsonl")
    assert [json.loads(s)["step"] for s in after] == list(range(1, 13))  # one record per logged step
    assert after[:10] == lines  # step 10's record as the first run wrote it
    assert _lines(run / SIDE) == [lines[9][:17]]
    assert_kept(run, _not_superseded(before), changed=("metrics.jsonl",))


def test_resume_drops_only_the_records_the_checkpoint_supersedes(run):
    """Records after the checkpoint's step are the resumed run's to write: the newest checkpoint
    removed, a resume from step 5 rewrites steps 6-10 (exactly, as resume is exact) and keeps 1-5."""
    lines = _lines(run / "metrics.jsonl")
    (run / "checkpoints" / "ckpt-00000010.pt").unlink()
    _train(run, steps=10, checkpoint_every=5, resume=True)
    after = _lines(run / "metrics.jsonl")
    assert [json.loads(s)["step"] for s in after] == list(range(1, 11))
    assert after[:5] == lines[:5]
    assert not (run / SIDE).exists()
