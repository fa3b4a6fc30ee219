"""``train(on_eval=...)``: the caller's hook at every evaluation.

It is called at exactly the evaluation steps with the generator and the built-in metrics; returning
True ends the run at that step with a checkpoint there, and resuming that checkpoint to the full
budget gives the uninterrupted run bit for bit (the learning-rate decay is keyed on the budget, not
on where the run stopped). Its time is side work, not training time.
"""
from __future__ import annotations

import json
import time

import pytest
import torch

import fastwgan
from fastwgan import checkpoint as ckpt

from _tiny import tiny_models

KW = dict(loss="wgan-gp", steps=12, batch_size=16, n_critic=2, lr_decay="linear", seed=3, device="cpu",
          progress=False, plots=False, log_every=2, eval_every=4, eval_samples=64, z_dim=3)


def _params(*modules) -> list[torch.Tensor]:
    return [t.detach().clone() for m in modules for t in (*m.parameters(), *m.buffers())]


def test_called_at_each_evaluation_with_the_metrics_and_a_false_return_runs_on():
    calls = []

    def hook(step, generator, metrics):
        calls.append((step, generator, dict(metrics)))
        metrics["w1"] = -1.0  # the hook gets a copy: the run's record must not change
        return False

    G, D = tiny_models()
    r = fastwgan.train(G, D, "8gaussians", on_eval=hook, **KW)
    assert [c[0] for c in calls] == [4, 8, 12]
    assert all(c[1] is G for c in calls)
    assert all("w1" in c[2] and c[2]["w1"] > 0 for c in calls)
    assert [e["w1"] for e in r.evals] == [c[2]["w1"] for c in calls]
    assert r.steps_done == 12 and r.history[-1]["step"] == 12


def test_true_ends_the_run_there_and_resuming_equals_the_uninterrupted_run(tmp_path):
    G0, D0 = tiny_models()
    fastwgan.train(G0, D0, "8gaussians", **KW)
    straight = _params(G0, D0)

    G, D = tiny_models()
    r = fastwgan.train(G, D, "8gaussians", out=tmp_path / "run", on_eval=lambda step, g, m: step >= 8, **KW)
    assert r.steps_done == 8 and r.evals[-1]["step"] == 8 and r.history[-1]["step"] == 8
    saved = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert saved and saved[-1].name == "ckpt-00000008.pt"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 8
    stopped = _params(G, D)
    assert any(not torch.equal(a, b) for a, b in zip(stopped, straight, strict=True))  # it did stop early

    G2, D2 = tiny_models(seed=99)  # other weights: everything must come from the checkpoint
    r2 = fastwgan.train(G2, D2, "8gaussians", out=tmp_path / "run", resume=True, **KW)
    assert r2.steps_done == 12
    for a, b in zip(_params(G2, D2), straight, strict=True):
        assert torch.equal(a, b)


def test_the_hooks_time_is_not_training_time():
    pause = 1.0

    def slow(step, generator, metrics):
        time.sleep(pause)

    G, D = tiny_models()
    r = fastwgan.train(G, D, "8gaussians", on_eval=slow, **KW)
    # three calls sleep 3 s; 12 tiny steps take milliseconds (counted, the time would exceed 3 s)
    assert r.train_seconds < pause
    times = [h["time"] for h in r.history]
    assert max(b - a for a, b in zip(times, times[1:])) < pause


def test_the_generator_is_handed_back_in_training_mode():
    def flips(step, generator, metrics):
        generator.eval()

    G, D = tiny_models()
    fastwgan.train(G, D, "8gaussians", on_eval=flips, **KW)
    assert G.training


def test_a_non_callable_hook_is_refused_before_training():
    with pytest.raises(ValueError, match="on_eval must be a callable"):
        fastwgan.train(*tiny_models(), "8gaussians", on_eval=True, **KW)
