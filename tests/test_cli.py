"""The command line: help a newcomer can follow, clear errors, a real (short) run end to end."""
import json
import subprocess
import sys

import pytest

from fastwgan.cli import main


def test_help_lists_data_sets_losses_and_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("8gaussians", "digits", "wgan-gp", "ns-gan", "--steps", "--resume", "--tensorboard", "examples"):
        assert word in text


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "fastwgan", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "train" in r.stdout


def test_unknown_data_set_is_a_clear_error(capsys, tmp_path):
    code = main(["train", "--data", "9gaussians", "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "9gaussians" in err and "8gaussians" in err


def test_a_short_run_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", "8gaussians", "--steps", "2", "--batch-size", "32", "--eval-samples", "200",
                 "--out", str(out), "--no-progress", "--seed", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    metrics = json.loads(printed[: printed.rindex("}") + 1])
    assert {"w1", "high_quality", "modes_covered"} <= set(metrics)
    for f in ("samples.png", "learning_curve.png", "metrics.jsonl", "summary.json"):
        assert (out / f).exists(), f
    assert json.loads((out / "summary.json").read_text())["config"]["batch_size"] == 32


@pytest.mark.parametrize("flag, value", [("on", True), ("off", False), ("auto", "auto")])
def test_compile_and_cuda_graph_flags_reach_train(monkeypatch, tmp_path, flag, value):
    import fastwgan.trainer as trainer

    seen = {}

    def fake_train(*a, **kw):
        seen.update(kw)
        raise ValueError("stop here")

    monkeypatch.setattr(trainer, "train", fake_train)
    code = main(["train", "--data", "8gaussians", "--compile", flag, "--cuda-graphs", flag,
                 "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2
    assert seen["compile"] == value and seen["cuda_graphs"] == value
