"""The command line: help a newcomer can follow, clear errors, a real (short) run end to end."""
import json
import subprocess
import sys

import pytest

from fastwgan.cli import main

from _tiny import QUIET_ARGS


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
    import fastwgan

    seen = {}

    def fake_train(*a, **kw):
        seen.update(kw)
        raise ValueError("stop here")

    monkeypatch.setattr(fastwgan, "train", fake_train)
    code = main(["train", "--data", "8gaussians", "--compile", flag, "--cuda-graphs", flag,
                 "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2
    assert seen["compile"] == value and seen["cuda_graphs"] == value


# ------------------------------------------------------- every anticipated error is one line
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastwgan: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_bogus_device_is_one_line(capsys, tmp_path):
    import torch

    # decided by fastwgan.hardware.resolve_device, as the trainer decides it: not a device, a device
    # fastwgan does not train on, CUDA on a machine without it
    bad = {"bogus": "is not a device", "meta": "trains on 'cpu' or 'cuda'"}
    if not torch.cuda.is_available():
        bad["cuda:0"] = "CUDA is not available: use --device='cpu'"
    for device, why in bad.items():
        assert main(["train", "--data", "8gaussians", "--device", device, "--out", str(tmp_path / "x")]) == 2
        err = _one_line_error(capsys)
        assert f"--device {device!r}" in err and why in err, err
        assert not (tmp_path / "x").exists()  # said before any work


def test_backend_triton_without_triton_is_one_line(capsys, tmp_path, monkeypatch):
    from fastwgan import backend

    monkeypatch.setattr(backend, "triton_available", lambda: False)
    assert main(["train", "--data", "8gaussians", "--backend", "triton", "--out", str(tmp_path / "x")]) == 2
    assert "pip install" in _one_line_error(capsys) and not (tmp_path / "x").exists()


def test_corrupt_png_in_an_image_folder_is_one_line(capsys, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (8, 8), color=i * 40).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    assert main(["train", "--data", str(folder), "--image-size", "8", "--steps", "1", "--no-progress",
                 "--out", str(tmp_path / "x")]) == 2
    assert "broken.png" in _one_line_error(capsys)


def test_missing_run_folder_is_one_line(capsys, tmp_path):
    assert main(["sample", "--run", str(tmp_path / "nope"), "--n", "3", "--out", str(tmp_path / "s.pt")]) == 2
    assert "does not exist" in _one_line_error(capsys)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "sample", "--run", str(tmp_path / "nope"), "--n", "3", "--out", str(tmp_path / "s.pt")])
    with pytest.raises(FileNotFoundError):  # also after the command
        main(["eval", "--run", str(tmp_path / "nope"), "--debug"])


def test_a_failed_run_is_status_1_and_an_unexpected_error_says_debug(monkeypatch, capsys, tmp_path):
    import fastwgan

    def diverge(*a, **kw):
        raise FloatingPointError("non-finite loss at step 3")

    monkeypatch.setattr(fastwgan, "train", diverge)
    assert main(["train", "--data", "8gaussians", "--out", str(tmp_path / "x")]) == 1
    assert "non-finite loss" in _one_line_error(capsys)

    def bug(*a, **kw):
        raise KeyError("oops")

    monkeypatch.setattr(fastwgan, "train", bug)
    assert main(["train", "--data", "8gaussians", "--out", str(tmp_path / "x")]) == 1
    assert "--debug" in _one_line_error(capsys)


def test_training_interrupted_passes_through_with_its_status(monkeypatch, tmp_path):
    import fastwgan

    def interrupted(*a, **kw):
        raise fastwgan.TrainingInterrupted(15, 2, None, "stopped at step 2")

    monkeypatch.setattr(fastwgan, "train", interrupted)
    assert main(["train", "--data", "8gaussians", "--out", str(tmp_path / "x")]) == 143


def test_tensorboard_without_tensorboard_names_the_extra(monkeypatch, capsys, tmp_path):
    """The trainer calls fastwgan.extras.require before the first step; the CLI shows it as one line."""
    from fastwgan import extras

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(ImportError, match=r'pip install "fastwgan\[tensorboard\]"'):
        extras.require("tensorboard", "torch.utils.tensorboard")
    code = main(["train", "--data", "8gaussians", "--steps", "1", "--tensorboard", *QUIET_ARGS,
                 "--out", str(tmp_path / "x")])
    assert code == 2 and 'pip install "fastwgan[tensorboard]"' in _one_line_error(capsys)
