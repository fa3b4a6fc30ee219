"""A run folder after training: fastwgan.load, and the sample / eval / export commands, with the bad
inputs (not a run, every checkpoint corrupted, a conditional model without labels, --n 0, a
generator torch.export cannot trace). Runs are made with the public fastwgan.train, tiny."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fastwgan
from fastwgan.cli import main
from fastwgan.export import export_generator
from fastwgan.models import MLPCritic, MLPGenerator

from _rules import assert_fp64_rule
from _tiny import quick_train

TINY = dict(steps=3, batch_size=32, n_critic=1, eval_samples=100, seed=0)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "toy"
    quick_train(MLPGenerator(z_dim=2, width=16), MLPCritic(in_dim=2, width=16), "8gaussians",
                out=str(out), checkpoint_every=1, **TINY)
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    quick_train(MLPGenerator(z_dim=4, width=16, n_classes=10, out_shape=(1, 8, 8)),
                MLPCritic(in_dim=64, width=16, n_classes=10), "digits", out=str(out), **TINY)
    return out


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastwgan: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------ load
def test_load_rebuilds_the_built_in_models_at_the_newest_checkpoint(toy_run):
    run = fastwgan.load(toy_run)
    assert run.step == 3 and run.z_dim == 2 and run.checkpoint.name == "ckpt-00000003.pt"
    assert isinstance(run.generator, MLPGenerator) and isinstance(run.critic, MLPCritic)
    assert run.config["steps"] == 3 and run.config["batch_size"] == 32
    assert "w1" in run.metrics and len(run.history) >= 1
    state = torch.load(run.checkpoint, weights_only=True)
    for k, v in run.generator.state_dict().items():
        assert torch.equal(v, state["generator"][k]), k


def test_load_from_an_older_checkpoint(toy_run):
    old, new = fastwgan.load(toy_run, checkpoint="ckpt-00000001.pt"), fastwgan.load(toy_run)
    assert old.step == 1
    w_old, w_new = old.generator.state_dict(), new.generator.state_dict()
    assert any(not torch.equal(w_old[k], w_new[k]) for k in w_old)  # a different state, not the newest again


def test_sample_is_reproducible_and_is_the_generator_on_seeded_noise(toy_run):
    run = fastwgan.load(toy_run)
    a, b, c = run.sample(50, seed=3), run.sample(50, seed=3), run.sample(50, seed=4)
    assert a.shape == (50, 2) and torch.equal(a, b) and not torch.equal(a, c)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(a, run.generator(z))


def test_user_models_must_be_passed_and_then_load(tmp_path):
    G = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    D = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    quick_train(G, D, "8gaussians", out=str(tmp_path / "u"), **TINY)
    with pytest.raises(ValueError, match="generator=") as e:
        fastwgan.load(tmp_path / "u")
    assert "not a built-in" in str(e.value)
    G2 = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    D2 = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    run = fastwgan.load(tmp_path / "u", generator=G2, critic=D2)
    assert torch.equal(G2[0].weight, G[0].weight.detach().cpu())
    with pytest.raises(ValueError, match="does not fit the weights"):
        fastwgan.load(tmp_path / "u", generator=nn.Linear(2, 2), critic=D2)
    assert run.sample(4).shape == (4, 2)


def test_a_folder_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(ValueError, match="not a fastwgan run folder"):
        fastwgan.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fastwgan.load(tmp_path / "missing")
    assert main(["sample", "--run", str(tmp_path), "--n", "4", "--out", str(tmp_path / "s.pt")]) == 2
    assert "not a fastwgan run folder" in _err(capsys)
    assert main(["eval", "--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in _err(capsys)


def test_a_run_whose_checkpoints_are_all_corrupted(toy_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(toy_run, bad)
    ckpts = sorted((bad / "checkpoints").glob("ckpt-*.pt"))
    ckpts[-1].write_bytes(b"not a zip file")
    with pytest.warns(RuntimeWarning, match="ckpt-00000003"):
        assert fastwgan.load(bad).step == 2  # the newest corrupted: the previous good one
    for p in ckpts:
        p.write_bytes(p.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="every checkpoint .* is truncated or corrupted"):
        fastwgan.load(bad)
    assert main(["export", "--run", str(bad), "--out", str(tmp_path / "G.pt2")]) == 2
    assert "every checkpoint" in _err(capsys)


# ------------------------------------------------------------------------------------ sample
@pytest.mark.parametrize("suffix", [".pt", ".npy", ".png"])
def test_cli_sample_writes_the_seeded_samples(toy_run, tmp_path, suffix, capsys):
    out = tmp_path / f"s{suffix}"
    assert main(["sample", "--run", str(toy_run), "--n", "20", "--out", str(out), "--seed", "5"]) == 0
    want = fastwgan.load(toy_run).sample(20, seed=5)
    if suffix == ".pt":
        assert torch.equal(torch.load(out), want)
    elif suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), want.numpy())
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_conditional_run_needs_labels(digits_run, tmp_path, capsys):
    run = fastwgan.load(digits_run)
    assert run.n_classes == 10
    with pytest.raises(ValueError, match="conditional .*labels"):
        run.sample(8)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        run.sample(8, labels=10)
    with pytest.raises(ValueError, match="got 3 labels for 8"):
        run.sample(8, labels=[1, 2, 3])
    x = run.sample(8, labels=3, seed=0)
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(x, run.generator(z, torch.full((8,), 3)))
        assert not torch.equal(x, run.generator(z, torch.full((8,), 4)))  # the label is used
    assert main(["sample", "--run", str(digits_run), "--n", "8", "--out", str(tmp_path / "x.png")]) == 2
    assert "--labels" in _err(capsys)
    assert main(["sample", "--run", str(digits_run), "--n", "8", "--labels", "3", "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").stat().st_size > 0


def test_n_zero_and_a_bad_suffix_are_usage_errors(toy_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample", "--run", str(toy_run), "--n", "0", "--out", str(tmp_path / "s.pt")])
    assert e.value.code == 2 and "positive integer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="positive int"):
        fastwgan.load(toy_run).sample(0)
    assert main(["sample", "--run", str(toy_run), "--n", "4", "--out", str(tmp_path / "s.txt")]) == 2
    assert ".pt, .npy or .png" in _err(capsys)


# ------------------------------------------------------------------------------------ eval
def test_cli_eval_prints_the_data_sets_metrics(toy_run, capsys):
    assert main(["eval", "--run", str(toy_run), "--n", "300", "--data", "8gaussians", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"w1", "high_quality", "modes_covered", "n_modes"} <= set(out) and out["n"] == 300 and out["step"] == 3
    again = fastwgan.load(toy_run).evaluate(300, data="8gaussians", seed=1)
    assert again["w1"] == out["w1"]  # the seed fixes both draws
    other = fastwgan.load(toy_run).evaluate(300, data="8gaussians", seed=2)
    assert other["w1"] != out["w1"]


def test_eval_of_images_gives_sliced_w(digits_run):
    m = fastwgan.load(digits_run).evaluate(64, data="digits")
    assert "swd" in m and "w1" not in m
    with pytest.raises(ValueError, match="classes"):
        fastwgan.load(digits_run).evaluate(64, data="8gaussians")


# ------------------------------------------------------------------------------------ export
_HIDDEN = r"""
import sys, torch
sys.modules["fastwgan"] = None
try:
    import fastwgan
    print("FASTWGAN-IMPORTABLE")
except ImportError:
    pass
fmt, path, z, out = sys.argv[1:5]
m = torch.export.load(path).module() if fmt == "torch.export" else torch.jit.load(path)
torch.save(m(*torch.load(z)), out)
"""


def _run_hidden(fmt: str, path: Path, args: tuple, tmp_path: Path) -> torch.Tensor:
    torch.save(args, tmp_path / "z.pt")
    r = subprocess.run([sys.executable, "-c", _HIDDEN, fmt, str(path), str(tmp_path / "z.pt"), str(tmp_path / "o.pt")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "FASTWGAN-IMPORTABLE" not in r.stdout  # negative control: fastwgan really is hidden there
    return torch.load(tmp_path / "o.pt")


def test_cli_export_loads_without_fastwgan_and_matches(toy_run, tmp_path, capsys):
    out = tmp_path / "G.pt2"
    assert main(["export", "--run", str(toy_run), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "torch.export" and report["max_abs_err"] <= report["bound"]
    run = fastwgan.load(toy_run)
    z = torch.randn(13, 2)
    got = _run_hidden("torch.export", out, (z,), tmp_path)
    with torch.no_grad():
        want, want64 = run.generator(z), run.generator.double()(z.double())
    assert_fp64_rule(got, want, want64, what="exported generator")


def test_export_of_a_conditional_generator(digits_run, tmp_path):
    run = fastwgan.load(digits_run)
    rep = export_generator(run.generator, run.z_dim, tmp_path / "G.pt2", n_classes=10)
    z, y = torch.randn(5, 4), torch.tensor([0, 3, 9, 3, 1])
    got = _run_hidden(rep["format"], tmp_path / "G.pt2", (z, y), tmp_path)
    with torch.no_grad():
        want, want64 = run.generator(z, y), run.generator.double()(z.double(), y)
    assert_fp64_rule(got, want, want64, what="exported conditional generator")


class _Branchy(nn.Module):
    """A data-dependent branch: torch.export refuses it, TorchScript's script keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if bool(z.abs().max() > 1e6):
            return z
        return self.net(z)


class _NumPyInside(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, z):
        return torch.from_numpy(np.tanh(self.lin(z).detach().numpy()))


def test_export_falls_back_to_torchscript_when_torch_export_cannot_trace(tmp_path):
    with pytest.raises(ValueError, match="could not export this generator .*export"):
        export_generator(_Branchy(), 2, tmp_path / "G.pt2", route="export")
    assert not (tmp_path / "G.pt2").exists()
    g = _Branchy()
    rep = export_generator(g, 2, tmp_path / "G.pt", route="auto")
    assert rep["format"] == "torchscript-script" and rep["tried"] and "export" in rep["tried"][0]
    z = torch.randn(6, 2)
    got = _run_hidden(rep["format"], tmp_path / "G.pt", (z,), tmp_path)
    with torch.no_grad():
        want, want64 = g(z), g.double()(z.double())
    assert_fp64_rule(got, want, want64, what="TorchScript generator")


def test_a_generator_nothing_can_export_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="could not export this generator"):
        export_generator(_NumPyInside(), 2, tmp_path / "G.pt2")
    assert not (tmp_path / "G.pt2").exists()


# ------------------------------------------------------------------------------------ model specs
@pytest.mark.parametrize("model", [
    lambda: MLPGenerator(z_dim=3, width=8, depth=2, n_classes=4, out_shape=(1, 2, 2)),
    lambda: MLPCritic(in_dim=4, width=8, n_classes=2),
    lambda: __import__("fastwgan.models", fromlist=["x"]).DCGANGenerator(z_dim=5, img_size=8, channels=1, ngf=4),
    lambda: __import__("fastwgan.models", fromlist=["x"]).DCGANCritic(img_size=8, channels=1, ndf=4, norm="layer"),
])
def test_model_spec_rebuilds_the_same_architecture(model):
    from fastwgan.models import build_model, model_spec

    m = model()
    spec = model_spec(m)
    assert json.loads(json.dumps(spec)) == spec  # plain data: JSON and weights_only-loadable
    rebuilt = build_model(spec)
    assert type(rebuilt) is type(m)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}
    rebuilt.load_state_dict(m.state_dict())  # strict


def test_model_spec_is_none_for_user_models_and_subclasses():
    from fastwgan.models import build_model, model_spec

    class MyG(MLPGenerator):
        def __init__(self):
            super().__init__(z_dim=2, width=4)

    assert model_spec(nn.Linear(2, 2)) is None and model_spec(MyG()) is None
    assert model_spec(MLPGenerator(z_dim=2, width=4)) is not None  # negative control
    with pytest.raises(ValueError, match="not a built-in fastwgan model"):
        build_model({"class": "os.system", "kwargs": {}})
