"""Bounded, checked inputs: one validation per public entry point, every refusal naming the file or
setting, the cause and the fix, and no request that can exhaust the machine's memory. The memory
probes run in a child process under an address-space limit and must end in fastwgan's own error,
not the allocator's. Each case ends with the run folder's files byte-identical."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import fastwgan
from fastwgan import checkpoint as ckpt
from fastwgan.cli import main as cli_main
from fastwgan.penalty import gradient_penalty

from _malicious import WritesFile
from _tiny import tiny_models

ARGS = dict(batch_size=16, n_critic=1, progress=False, eval_samples=0, plots=False, log_every=1,
            keep_checkpoints=5)
LIMIT = 8 * 2**30  # the child's address space


def _train(out, steps=4, width=8, **kw):
    G, D = tiny_models("mlp", width=width, z_dim=2)
    return fastwgan.train(G, D, "8gaussians", out=out, steps=steps, **{**ARGS, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    result = _train(run)
    return run, result


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished[0], copy, ignore=shutil.ignore_patterns(".fastwgan.lock"))
    return copy


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".fastwgan.lock"}


def _newest(run: Path) -> Path:
    return ckpt.list_checkpoints(run / "checkpoints")[-1]


def _edit_checkpoint(run: Path, edit) -> Path:
    """Rewrite the newest checkpoint with ``edit(state)`` applied (a planted, plain-data file)."""
    path = _newest(run)
    state = ckpt.load_checkpoint(path)
    edit(state)
    torch.save(state, path)
    return path


# 5 ------------------------------------------------------------------------------------------
def test_both_sample_entry_points_refuse_labels_on_an_unconditional_run(finished):
    run, result = finished
    loaded = fastwgan.load(run)
    for sample in (result.sample, loaded.sample):
        with pytest.raises(ValueError, match="unconditional: drop labels"):
            sample(3, labels=torch.tensor([0, 1, 0]))
        assert sample(3).shape == (3, 2)  # negative control: the same call without labels works


def test_a_planted_step_beyond_any_run_is_refused(run):
    before_name = _newest(run).name
    path = ckpt.checkpoint_path(run / "checkpoints", 5)
    state = ckpt.load_checkpoint(_newest(run))
    state["step"] = 10**30
    torch.save(state, path)
    before = _files(run)
    with pytest.warns(RuntimeWarning, match=r"ckpt-00000005\.pt.*step"):
        loaded = fastwgan.load(run)
    assert loaded.step == 4 and loaded.checkpoint.name == before_name
    assert _files(run) == before


# 6 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1.5, -0.25, float("nan")])
def test_gradient_penalty_refuses_alpha_outside_the_unit_interval(value):
    D = torch.nn.Linear(2, 1)
    real, fake = torch.randn(4, 2), torch.randn(4, 2)
    alpha = torch.tensor([0.5, 0.5, value, 0.5])
    with pytest.raises(ValueError, match=r"alpha .*\[0, 1\]"):
        gradient_penalty(D, real, fake, alpha=alpha)
    gradient_penalty(D, real, fake, alpha=torch.tensor([0.0, 1.0, 0.5, 0.5]))  # the ends are fine


# 7 ------------------------------------------------------------------------------------------
_CHILD = textwrap.dedent("""
    import json, resource, sys, warnings
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    warnings.simplefilter("ignore")
    import contextlib, io
    from fastwgan.cli import main
    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except BaseException as e:
                code = repr(e)
        results.append([code, err.getvalue()])
    print(json.dumps(results))
""")


def _probe(commands: list[list[str]], cwd: Path) -> list[tuple[int, str]]:
    r = subprocess.run([sys.executable, "-c", _CHILD.format(limit=LIMIT), json.dumps(commands)],
                       capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_requests_beyond_the_machines_memory_are_refused_up_front(finished, tmp_path):
    runs = {}
    for name in ("width", "summary", "z_dim", "plain"):
        runs[name] = tmp_path / name
        shutil.copytree(finished[0], runs[name], ignore=shutil.ignore_patterns(".fastwgan.lock"))

    def width(state):
        state["models"]["generator"]["kwargs"]["width"] = 200000

    def no_specs(state):
        state["models"] = {"generator": None, "critic": None}

    def z_dim(state):
        state["config"]["z_dim"] = 10**12

    _edit_checkpoint(runs["width"], width)
    summary = json.loads((runs["summary"] / "summary.json").read_text())
    summary["models"]["generator"]["kwargs"]["width"] = 200000
    (runs["summary"] / "summary.json").write_text(json.dumps(summary))
    _edit_checkpoint(runs["summary"], no_specs)  # the spec then comes from summary.json
    _edit_checkpoint(runs["z_dim"], z_dim)
    before = {k: _files(v) for k, v in runs.items()}
    out = {k: tmp_path / f"{k}.pt" for k in runs}
    results = _probe([
        ["sample", "--run", str(runs["width"]), "--n", "5", "--out", str(out["width"])],
        ["sample", "--run", str(runs["summary"]), "--n", "5", "--out", str(out["summary"])],
        ["sample", "--run", str(runs["z_dim"]), "--n", "5", "--out", str(out["z_dim"])],
        ["sample", "--run", str(runs["plain"]), "--n", "1000000000", "--out", str(out["plain"])],
        ["eval", "--run", str(runs["plain"]), "--n", "1000000000"],
        ["train", "--data", "digits", "--image-size", "100000", "--steps", "1", "--out", str(tmp_path / "t"),
         "--no-progress"],
    ], tmp_path)
    for (code, err), what in zip(results, ("width", "summary", "z_dim", "samples", "eval", "image size"), strict=True):
        assert code == 2, (what, code, err)
        assert err.startswith("fastwgan: error:") and "allocat" not in err and "MemoryError" not in err, (what, err)
    assert "width=200000" in results[0][1] and "ckpt-00000004.pt (MLPGenerator" in results[0][1]
    assert "width=200000" in results[1][1] and "summary.json (MLPGenerator" in results[1][1]
    assert "z_dim=1000000000000" in results[2][1] and "ckpt-00000004.pt" in results[2][1]
    for (_, err) in results[3:]:
        assert "of memory, but this process can have at most" in err and "GB" in err, err
    for name, folder in runs.items():
        assert _files(folder) == before[name]
    assert not any(p.exists() for p in out.values()) and not (tmp_path / "t").exists()


def test_a_large_npy_sample_request_streams_to_the_file(run, tmp_path):
    """More samples than one chunk: written chunk by chunk, equal to the same seed's samples."""
    from fastwgan import run as run_mod

    out = tmp_path / "x.npy"
    old = run_mod.SAMPLE_CHUNK
    run_mod.SAMPLE_CHUNK = 7
    try:
        assert cli_main(["sample", "--run", str(run), "--n", "30", "--out", str(out), "--seed", "3"]) == 0
    finally:
        run_mod.SAMPLE_CHUNK = old
    got = np.load(out)
    want = fastwgan.load(run).sample(30, seed=3).numpy()
    assert got.shape == (30, 2)
    run_mod.SAMPLE_CHUNK = 7
    try:
        want7 = fastwgan.load(run).sample(30, seed=3).numpy()
    finally:
        run_mod.SAMPLE_CHUNK = old
    np.testing.assert_array_equal(got, want7)
    assert np.isfinite(want).all()


# 8 ------------------------------------------------------------------------------------------
def test_resuming_with_models_of_another_width_names_the_parameter(run):
    before = _files(run)
    with pytest.raises(ValueError, match=r"generator .*'net\.0\.weight' has shape \(16, 2\) in the model but \(8, 2\)"):
        _train(run, steps=6, width=16, resume=True)
    assert _files(run) == before


@pytest.mark.parametrize("entry,value,match", [
    ("generator", 5, r"'generator'.*not a state_dict"),
    ("step", "ten", r"'step'.*'ten'"),
])
def test_a_checkpoint_with_malformed_entries_is_a_clear_error(run, entry, value, match):
    path = _edit_checkpoint(run, lambda s: s.__setitem__(entry, value))
    before = _files(run)
    with pytest.raises(ValueError, match=match):
        ckpt.load_checkpoint(path, required=ckpt.REQUIRED_KEYS)
    with pytest.raises(ValueError, match=path.name):
        fastwgan.load(run, checkpoint=path)
    assert _files(run) == before


def test_models_on_the_meta_device_are_refused():
    with torch.device("meta"):
        G, D = tiny_models("mlp", width=8, z_dim=2)
    with pytest.raises(ValueError, match="meta device"):
        fastwgan.train(G, D, "8gaussians", steps=1, **ARGS)


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "3"])
def test_sample_counts_that_are_not_positive_ints_are_refused_alike(finished, n):
    run, result = finished
    loaded = fastwgan.load(run)
    for sample in (result.sample, loaded.sample):
        with pytest.raises((ValueError, TypeError), match="n must be a positive int"):
            sample(n)


def test_labels_out_of_range_are_refused_by_both_entry_points(tmp_path):
    G, D = tiny_models("mlp", width=8, z_dim=2, n_classes=3)

    def labelled(batch):
        return torch.randn(batch, 2), torch.randint(0, 3, (batch,))

    result = fastwgan.train(G, D, labelled, out=tmp_path / "r", steps=1, **ARGS)
    loaded = fastwgan.load(tmp_path / "r", generator=tiny_models("mlp", width=8, z_dim=2, n_classes=3)[0],
                           critic=tiny_models("mlp", width=8, z_dim=2, n_classes=3)[1])
    for sample in (result.sample, loaded.sample):
        with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
            sample(2, labels=torch.tensor([0, 3]))
        assert sample(2, labels=torch.tensor([0, 2])).shape == (2, 2)


def test_seeds_beyond_the_random_generators_range_are_refused(finished):
    G, D = tiny_models("mlp", width=8, z_dim=2)
    with pytest.raises(ValueError, match=r"seed must be an int in 0 \.\. 2\*\*63"):
        fastwgan.train(G, D, "8gaussians", steps=1, seed=2**70, **ARGS)
    with pytest.raises(ValueError, match=r"seed must be an int in 0 \.\. 2\*\*63"):
        fastwgan.load(finished[0]).sample(2, seed=2**70)


# 9 ------------------------------------------------------------------------------------------
def test_a_planted_old_format_pickle_is_reported_unsafe(run, tmp_path):
    marker = tmp_path / "pwned"
    state = ckpt.load_checkpoint(_newest(run))
    state["step"] = 5
    state["extra"] = WritesFile(marker)
    path = ckpt.checkpoint_path(run / "checkpoints", 5)
    torch.save(state, path, _use_new_zipfile_serialization=False)
    before = _files(run)
    with pytest.raises(ckpt.UnsafeCheckpointError, match=path.name):
        ckpt.load_checkpoint(path)
    with pytest.raises(ckpt.UnsafeCheckpointError):
        fastwgan.load(run)
    assert not marker.exists() and _files(run) == before


def test_a_truncated_checkpoint_is_still_reported_as_damaged(run):
    """Negative control for the test above: damage is not called unsafe."""
    path = _newest(run)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupted"):
        ckpt.load_checkpoint(path)


def test_a_lock_file_that_is_a_symlink_is_named_as_such(run, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("not a lock")
    (run / ".fastwgan.lock").symlink_to(target)
    before = _files(run)
    with pytest.raises(ValueError, match=r"lock file .* is a symbolic link \(to .*elsewhere\).*remove the link") as e:
        _train(run, steps=6, resume=True)
    assert "flock" not in str(e.value)  # not blamed on the file system
    assert target.read_text() == "not a lock" and _files(run) == before


def test_an_unknown_keyword_in_a_planted_spec_names_the_file_and_the_fix(run):
    path = _edit_checkpoint(run, lambda s: s["models"]["generator"]["kwargs"].__setitem__("colour", 3))
    before = _files(run)
    with pytest.raises(ValueError, match=rf"{path.name}.*'colour'.*generator="):
        fastwgan.load(run)
    assert _files(run) == before


def test_run_pointing_at_a_file_says_it_is_a_file(run, capsys):
    code = cli_main(["sample", "--run", str(run / "summary.json"), "--n", "2", "--out", str(run.parent / "x.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "is a file" in err and "does not exist" not in err


@pytest.mark.parametrize("n", [np.int64(3), torch.tensor(3), np.int32(3)])
def test_numpy_and_0d_tensor_integers_are_sample_counts(finished, n):
    run, result = finished
    for sample in (result.sample, fastwgan.load(run).sample):
        assert sample(n).shape == (3, 2)


def test_a_trained_results_sample_beyond_memory_is_refused_before_allocating(finished):
    from fastwgan.memory import MemoryRequestError, available_bytes

    n = int(available_bytes() // 8) + 1  # its noise alone (2 float32 per sample) would not fit
    with pytest.raises(MemoryRequestError, match=f"{n:,} samples would take about"):
        finished[1].sample(n)
