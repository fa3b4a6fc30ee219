"""A run survives being killed or stopped, and says clearly what is wrong when something is.

* SIGKILL at an arbitrary step (a real process, killed from outside once a checkpoint exists),
  then ``resume=True``: the final parameters equal the uninterrupted run's bit for bit.
* SIGTERM / SIGINT: the step in flight is finished, checkpointed, the process exits 128 + signal
  with a message saying how to resume, and resuming again matches the uninterrupted run exactly.
* Non-finite losses or parameters: detected without a per-step host sync, the message names the
  exact step and the last good checkpoint, and no checkpoint of a bad state is written.
* Checkpoints hold every state (models, optimizers, RNGs, data position, configuration), only
  the last K are kept, and bad resume inputs fail with a clear error.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import fastwgan
from fastwgan import checkpoint as ckpt
from fastwgan.cli import main as cli_main
from fastwgan.models import MLPCritic, MLPGenerator

from _tiny import QUIET_ARGS, TESTS, quick_train

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A tiny run in its own process. STEP_DELAY slows each generator step (inside the n_critic
# schedule, which does not touch any numbers) so that a kill from outside lands mid-run.
SCRIPT = textwrap.dedent("""
    import os, sys, time
    import torch
    from fastwgan.models import MLPCritic, MLPGenerator
    from _tiny import quick_train  # tests/ is on PYTHONPATH: the tests' quiet settings

    out, steps, every, result = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    delay = float(os.environ.get("STEP_DELAY", "0"))

    def n_critic_schedule(step):
        if delay:
            time.sleep(delay)
        return 2

    torch.manual_seed(1)
    G, D = MLPGenerator(width=16), MLPCritic(width=16)
    quick_train(G, D, "8gaussians", loss=os.environ.get("LOSS", "wgan-gp"), steps=steps, batch_size=16,
                n_critic=n_critic_schedule, seed=7, device="cpu", out=out or None, checkpoint_every=every,
                keep_checkpoints=2, resume="--resume" in sys.argv, log_every=5)
    torch.save({"G": G.state_dict(), "D": D.state_dict()}, result)
""")
STEPS, EVERY = 40, 4


def _run(tmp: Path, out: str, result: Path, *flags: str, delay: float = 0.0, wait: bool = True, loss="wgan-gp"):
    script = tmp / "run_tiny.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, TESTS, os.environ.get("PYTHONPATH", "")]), STEP_DELAY=str(delay),
               LOSS=loss, OMP_NUM_THREADS="1")  # same thread count in every run: same float sums
    cmd = [sys.executable, str(script), out, str(STEPS), str(EVERY), str(result), *flags]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        so, se = p.communicate(timeout=120)
        assert p.returncode == 0, se
    return p


def _wait_for_checkpoint(p: subprocess.Popen, folder: Path, timeout: float = 120.0) -> None:
    t = time.monotonic()
    while not ckpt.list_checkpoints(folder):
        assert p.poll() is None, p.communicate()[1]
        assert time.monotonic() - t < timeout, "no checkpoint appeared"
        time.sleep(0.005)


def _same(a: Path, b: Path) -> None:
    sa, sb = torch.load(a), torch.load(b)
    for part in ("G", "D"):
        assert sa[part].keys() == sb[part].keys()
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), (part, k)  # bit for bit


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, Path]:
    """The uninterrupted runs (no out=, no checkpoints) to compare against."""
    tmp = tmp_path_factory.mktemp("straight")
    res = {}
    for loss in ("wgan-gp",):
        res[loss] = tmp / f"{loss}.pt"
        _run(tmp, "", res[loss], loss=loss)
    return res


def test_sigkill_at_an_arbitrary_step_then_resume_is_bitwise_identical(tmp_path, straight):
    loss = "wgan-gp"
    out = tmp_path / "run"
    p = _run(tmp_path, str(out), tmp_path / "killed.pt", delay=0.03, wait=False, loss=loss)
    _wait_for_checkpoint(p, out / "checkpoints")
    time.sleep(0.1)  # let it run past the checkpoint: the kill lands between two checkpoints
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    kept = ckpt.list_checkpoints(out / "checkpoints")
    last = int(kept[-1].stem.split("-")[1])
    assert EVERY <= last < STEPS and not (tmp_path / "killed.pt").exists()  # killed mid-run
    assert len(kept) <= 2 and not list((out / "checkpoints").glob("*.tmp"))  # keep=2, nothing torn

    _run(tmp_path, str(out), tmp_path / "resumed.pt", "--resume", loss=loss)
    _same(straight[loss], tmp_path / "resumed.pt")
    # metrics.jsonl: the lines the killed run wrote after its last checkpoint were dropped on resume
    steps = [json.loads(s)["step"] for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, STEPS + 1, 5))


def test_sigterm_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path, straight):
    sig = signal.SIGTERM
    out = tmp_path / "run"
    p = _run(tmp_path, str(out), tmp_path / "stopped.pt", delay=0.03, wait=False)
    _wait_for_checkpoint(p, out / "checkpoints")
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err  # 143 / 130: the convention for "stopped by a signal"
    name = signal.Signals(sig).name
    assert f"stopped by {name} after step" in err and "resume=True" in err and "--resume" in err
    stopped_at = int(err.split("after step ")[1].split()[0])
    assert EVERY <= stopped_at < STEPS
    assert ckpt.checkpoint_path(out / "checkpoints", stopped_at).exists()  # the stop step itself
    assert str(ckpt.checkpoint_path(out / "checkpoints", stopped_at)) in err
    _run(tmp_path, str(out), tmp_path / "resumed.pt", "--resume")
    _same(straight["wgan-gp"], tmp_path / "resumed.pt")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_in_process_raises_training_interrupted(tmp_path, sig):
    """Library use: the signal becomes TrainingInterrupted (a SystemExit with code 128 + signal)
    after the step in flight; the previous handlers are restored afterwards."""
    before = signal.getsignal(sig)

    def sched(step):
        if step == 2:
            os.kill(os.getpid(), sig)  # arrives in the middle of step 3
        return 1

    G, D = _tiny()
    with pytest.raises(fastwgan.TrainingInterrupted) as e:
        quick_train(G, D, "8gaussians", steps=10, batch_size=8, n_critic=sched, device="cpu", out=tmp_path)
    assert e.value.code == 128 + sig and e.value.step == 3
    assert e.value.checkpoint == ckpt.checkpoint_path(tmp_path / "checkpoints", 3) and e.value.checkpoint.exists()
    assert f"stopped by {signal.Signals(sig).name} after step 3 of 10" in str(e.value)
    assert signal.getsignal(sig) is before


def test_cli_checkpoint_every_and_resume_continue_exactly(tmp_path, capsys):
    base = ["train", "--data", "8gaussians", "--steps", "6", "--batch-size", "16", *QUIET_ARGS,
            "--seed", "3", "--n-critic", "2", "--lr", "1e-3"]
    assert cli_main(base + ["--out", str(tmp_path / "a")]) == 0
    assert cli_main(base + ["--out", str(tmp_path / "b"), "--checkpoint-every", "4"]) == 0
    final_b = ckpt.checkpoint_path(tmp_path / "b" / "checkpoints", 6)
    final_b.unlink()  # as if killed after step 4's checkpoint
    assert cli_main(base + ["--out", str(tmp_path / "b"), "--checkpoint-every", "4", "--resume"]) == 0
    a = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "a" / "checkpoints", 6))
    b = ckpt.load_checkpoint(final_b)
    for part in ("generator", "critic"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k])


# ---- non-finite detection ----

def _tiny(extra_param: bool = False):
    torch.manual_seed(1)
    G, D = MLPGenerator(width=16), MLPCritic(width=16)
    if extra_param:
        D.unused = nn.Parameter(torch.zeros(3))  # in the model, not in the forward: only a parameter check sees it
    return G, D


def test_non_finite_loss_names_the_step_and_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def sampler(n):  # draws 1-2 validate the data and the models; step s draws 2s+1, 2s+2 (n_critic=2)
        calls["n"] += 1
        x = torch.randn(n, 2)
        return x * float("nan") if calls["n"] == 11 else x  # step 5's first critic batch

    G, D = _tiny()
    with pytest.raises(FloatingPointError) as e:
        quick_train(G, D, sampler, steps=10, batch_size=8, n_critic=2, device="cpu", out=tmp_path,
                    checkpoint_every=2, log_every=100)
    msg = str(e.value)
    assert "non-finite loss" in msg and "at step 5" in msg
    good = ckpt.checkpoint_path(tmp_path / "checkpoints", 4)
    assert str(good) in msg and "resume=True" in msg
    # the check ran before step 6's checkpoint: no checkpoint of a NaN state exists
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")] == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    state = ckpt.load_checkpoint(good)
    assert all(torch.isfinite(v).all() for v in state["critic"].values())


def test_non_finite_parameter_is_caught_even_with_finite_losses():
    G, D = _tiny(extra_param=True)

    def sched(step):
        if step == 6:  # corrupt a parameter at the start of step 7; the losses never see it
            with torch.no_grad():
                D.unused[1] = float("inf")
        return 1

    with pytest.raises(FloatingPointError, match=r"non-finite parameters \(param_norm\) at step 7; no checkpoint"):
        quick_train(G, D, "8gaussians", steps=12, batch_size=8, n_critic=sched, device="cpu", log_every=5)


def test_non_finite_check_syncs_only_at_log_points(monkeypatch):
    """The per-step flags stay on the device: the history is read (one .cpu() of the stacked
    metrics) once per log_every steps, not per step."""
    reads = []
    real_stack = torch.stack

    def counting_stack(tensors, *a, **k):
        out = real_stack(tensors, *a, **k)
        if len(tensors) and isinstance(tensors, list) and tensors[0].dim() == 1 and tensors[0].numel() == 5:
            reads.append(len(tensors))  # flush(): one stack of the pending 5-metric rows
        return out

    monkeypatch.setattr(torch, "stack", counting_stack)
    G, D = _tiny()
    quick_train(G, D, "8gaussians", steps=12, batch_size=8, n_critic=1, device="cpu", log_every=4)
    assert reads == [4, 4, 4]


# ---- checkpoints: contents, keep K, bad resume input ----

def test_checkpoint_holds_every_state_and_keeps_the_last_k(tmp_path):
    G, D = _tiny()
    quick_train(G, D, "8gaussians", steps=5, batch_size=8, n_critic=1, device="cpu", out=tmp_path, precision="fp32",
                checkpoint_every=1, keep_checkpoints=2)
    kept = ckpt.list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in kept] == ["ckpt-00000004.pt", "ckpt-00000005.pt"]
    s = ckpt.load_checkpoint(kept[-1])
    assert s["step"] == 5
    assert {"generator", "critic", "opt_d", "opt_g", "data", "rng", "config", "history", "scaler_d"} <= set(s)
    assert {"python", "numpy", "torch"} <= set(s["rng"])
    assert s["data"]["kind"] == "toy" and s["config"]["seed"] == 0 and s["config"]["precision"] == "fp32"
    assert s["opt_d"]["state"]  # Adam moments are in it


def test_every_checkpoint_corrupted_is_an_error_not_a_silent_restart(tmp_path):
    G, D = _tiny()
    kw = dict(steps=4, batch_size=8, n_critic=1, device="cpu", out=tmp_path, checkpoint_every=2)
    quick_train(G, D, "8gaussians", **kw)
    for p in ckpt.list_checkpoints(tmp_path / "checkpoints"):
        p.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="truncated or corrupted"):
        with pytest.raises(ValueError, match="every checkpoint .* is truncated or corrupted.*resume=False"):
            quick_train(*_tiny(), "8gaussians", resume=True, **kw)


def test_resume_with_other_settings_is_refused(tmp_path):
    kw = dict(steps=4, batch_size=8, n_critic=1, device="cpu", out=tmp_path, checkpoint_every=2,
              lr=1e-4)
    quick_train(*_tiny(), "8gaussians", **kw)
    with pytest.raises(ValueError, match=r"other settings: lr=0\.001 \(checkpoint: 0\.0001\)"):
        quick_train(*_tiny(), "8gaussians", resume=True, **dict(kw, lr=1e-3))
    kw["steps"] = 6  # training longer is allowed
    r = quick_train(*_tiny(), "8gaussians", resume=True, **kw)
    assert r.history[-1]["step"] == 6


BAD_RUN = [
    (dict(checkpoint_every=0), "checkpoint_every must be a positive integer"),
    (dict(checkpoint_every=2.5), "checkpoint_every must be a positive integer"),
    (dict(keep_checkpoints=0), "keep_checkpoints must be an integer >= 1"),
    (dict(precision="fp8"), "unknown precision 'fp8'"),
    (dict(resume=True, out=None), "resume=True needs out="),
    (dict(out="FILE"), "is an existing file, not a folder"),
    (dict(data=iter([torch.randn(8, 2)] * 3), out="DIR"), "one-shot iterator cannot be checkpointed"),
]


@pytest.mark.parametrize("change,msg", BAD_RUN, ids=[m for _, m in BAD_RUN])
def test_bad_run_settings_fail_before_training(tmp_path, change, msg):
    G, D = _tiny()
    before = [p.detach().clone() for p in list(G.parameters()) + list(D.parameters())]
    kw = dict(data="8gaussians", steps=3, batch_size=8, device="cpu")
    kw.update(change)
    if kw.get("out") == "FILE":
        (tmp_path / "f").write_text("x")
        kw["out"] = tmp_path / "f"
    elif kw.get("out") == "DIR":
        kw["out"] = tmp_path / "run"
    with pytest.raises(ValueError, match=msg):
        quick_train(G, D, kw.pop("data"), **kw)
    assert all(torch.equal(a, b) for a, b in zip(before, list(G.parameters()) + list(D.parameters()), strict=True))


def test_a_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    """The write protocol: a kill between writing the temporary file and the rename (simulated by
    a failing os.replace) leaves no half checkpoint under a final name; the torn .tmp is ignored."""
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint({"step": 1, "w": torch.ones(3)}, folder, 1)

    def crash(*a, **k):
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint({"step": 2, "w": torch.zeros(3)}, folder, 2)
    monkeypatch.undo()
    assert (folder / "ckpt-00000002.pt.tmp").exists()
    assert [p.name for p in ckpt.list_checkpoints(folder)] == ["ckpt-00000001.pt"]
    state, path = ckpt.load_latest(folder)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))


def test_a_truncated_checkpoint_is_a_clear_error_naming_the_file(tmp_path):
    path = ckpt.save_checkpoint({"step": 1, "w": torch.randn(1000)}, tmp_path, 1)
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(ValueError, match=r"ckpt-00000001\.pt is truncated or corrupted .* resume from the previous"):
        ckpt.load_checkpoint(path)
