"""`fastwgan info`: versions, usable backends and why, CPU bf16 support, what "auto" picks here."""
from __future__ import annotations

import json
import platform

import torch

from fastwgan import backend
from fastwgan.cli import main
from fastwgan.info import auto_settings, cpu_bf16, info


def test_info_reports_versions_and_backends():
    i = info()
    assert i["python"] == platform.python_version() and i["torch"] == torch.__version__
    cpp = i["backends"]["cpp"]
    loaded = all(backend.load_extension(op) is not None for op in ("clipped_rmsprop", "gradient_penalty"))
    assert cpp["usable"] == loaded
    assert set(cpp["ops"].values()) <= {"installed", "jit"} or any(v.startswith("missing") for v in cpp["ops"].values())
    assert i["backends"]["reference"]["usable"] is True
    assert i["backends"]["triton"]["importable"] == backend.triton_available()
    assert i["cuda_devices"] == ([] if not torch.cuda.is_available() else i["cuda_devices"])


def test_cpu_bf16_flags_match_proc_cpuinfo():
    got = cpu_bf16()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        assert got["flags_read"] is False
        return
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    assert got["avx512_bf16"] == ("avx512_bf16" in flags) and got["amx_bf16"] == ("amx_bf16" in flags)
    assert got["capability"] == torch.backends.cpu.get_cpu_capability()


def test_auto_settings_follow_the_trainers_rules(monkeypatch):
    monkeypatch.delenv("FASTWGAN_BACKEND", raising=False)
    a = auto_settings()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    assert a["device"] == dev
    assert a["backend"]["clipped_rmsprop"] == backend.resolve("clipped_rmsprop", dev, "auto")
    if dev == "cpu":
        assert auto_settings("bf16", steps=5000)["compile"] is True  # 5 critic updates per step
        assert auto_settings("bf16", steps=4000, n_critic=1)["compile"] is False  # the 8gaussians fast recipe
        assert auto_settings("bf16", steps=10)["compile"] is False
        assert auto_settings("fp32", steps=5000)["compile"] is False
    # negative control: the environment override changes what auto picks
    monkeypatch.setenv("FASTWGAN_BACKEND", "reference")
    assert auto_settings()["backend"] == {"clipped_rmsprop": "reference", "gradient_penalty": "reference"}


def test_cli_info_prints_json(capsys):
    assert main(["info"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"python", "torch", "triton", "backends", "cpu", "auto", "optional"} <= set(out)
