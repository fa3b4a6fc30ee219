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

from fastwgan import checkpoint as ckpt

from _tiny import quick_train, tiny_models

KW = dict(loss="wgan-gp", steps=12, batch_size=16, n_critic=2, lr_decay="linear", seed=3, device="cpu",
          log_every=2, eval_every=4, eval_samples=64, z_dim=3)


def _params(*modules) -> list[torch.Tensor]:
    return [t.detach().clone() for m in modules for t in (*m.parameters(), *m.buffers())]


def test_called_at_each_evaluation_with_the_metrics_and_a_false_return_runs_on():
    calls = []

    def hook(step, generator, metrics):
        calls.append((step, generator, dict(metrics)))
        metrics["w1"] = -1.0  # the hook gets a copy: the run's record must not change
        return False

    G, D = tiny_models()
    r = quick_train(G, D, "8gaussians", on_eval=hook, **KW)
    assert [c[0] for c in calls] == [4, 8, 12]
    assert all(c[1] is G for c in calls)
    assert all("w1" in c[2] and c[2]["w1"] > 0 for c in calls)
    assert [e["w1"] for e in r.evals] == [c[2]["w1"] for c in calls]
    assert r.steps_done == 12 and r.history[-1]["step"] == 12


def test_evaluations_keep_their_own_cadence_when_it_is_not_a_multiple_of_logging(tmp_path):
    """eval_every=3 with log_every=2: evaluations (and the hook) at 3, 6, 9, 12, logged there too."""
    calls = []
    G, D = tiny_models()
    r = quick_train(G, D, "8gaussians", on_eval=lambda step, g, m: calls.append(step),
                    out=tmp_path / "run", **{**KW, "eval_every": 3})
    assert calls == [3, 6, 9, 12]
    assert [e["step"] for e in r.evals] == [3, 6, 9, 12]
    assert all("w1" in r.history[s - 1] for s in (3, 6, 9, 12))
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in logged if "w1" in rec] == [3, 6, 9, 12]


def test_true_ends_the_run_there_and_resuming_equals_the_uninterrupted_run(tmp_path):
    G0, D0 = tiny_models()
    quick_train(G0, D0, "8gaussians", **KW)
    straight = _params(G0, D0)

    G, D = tiny_models()
    r = quick_train(G, D, "8gaussians", out=tmp_path / "run", on_eval=lambda step, g, m: step >= 8, **KW)
    assert r.steps_done == 8 and r.evals[-1]["step"] == 8 and r.history[-1]["step"] == 8
    saved = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert saved and saved[-1].name == "ckpt-00000008.pt"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 8
    stopped = _params(G, D)
    assert any(not torch.equal(a, b) for a, b in zip(stopped, straight, strict=True))  # it did stop early

    G2, D2 = tiny_models(seed=99)  # other weights: everything must come from the checkpoint
    r2 = quick_train(G2, D2, "8gaussians", out=tmp_path / "run", resume=True, **KW)
    assert r2.steps_done == 12
    for a, b in zip(_params(G2, D2), straight, strict=True):
        assert torch.equal(a, b)


def test_the_hooks_time_is_not_training_time(monkeypatch):
    """The loop's clock jumps an hour inside each hook call: none of it may reach train_seconds
    or the records' times (a clock, not a sleep: the check holds however loaded the machine is)."""
    from fastwgan.training import loop

    hour, offset = 3600.0, [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda real=time.perf_counter: real() + offset[0])

    def slow(step, generator, metrics):
        offset[0] += hour

    G, D = tiny_models()
    r = quick_train(G, D, "8gaussians", on_eval=slow, **KW)
    assert offset[0] == 3 * hour  # the hook ran at each of the three evaluations
    assert r.train_seconds < hour
    times = [h["time"] for h in r.history]
    assert max(b - a for a, b in zip(times, times[1:])) < hour


def test_the_generator_is_handed_back_in_training_mode():
    def flips(step, generator, metrics):
        generator.eval()

    G, D = tiny_models()
    quick_train(G, D, "8gaussians", on_eval=flips, **KW)
    assert G.training


def test_a_non_callable_hook_is_refused_before_training():
    with pytest.raises(ValueError, match="on_eval must be a callable"):
        quick_train(*tiny_models(), "8gaussians", on_eval=True, **KW)
