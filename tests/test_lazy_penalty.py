"""``penalty_every=k``: the lazy gradient penalty (lazy regularisation, Karras et al. 2020, StyleGAN2).

The penalty is computed on critic updates ``i % k == 0`` of each generator step only, weighted
``k * lam``, so its expected contribution per update is unchanged. Checked: which updates get it and
with what weight (eager), the compiled step against the eager one on the same draws, that it
changes training (negative control), the logged penalty, and every bad value.
"""
from __future__ import annotations

import warnings

import pytest
import torch

import fastwgan
from fastwgan.training import eager

from _rules import assert_same_trajectory
from _tiny import quick_train, tiny_models

KW = dict(loss="wgan-gp", batch_size=16, lam=2.0, seed=4, device="cpu", precision="fp32", z_dim=3, log_every=1)


def test_the_penalty_runs_on_every_kth_update_weighted_k_lam(monkeypatch):
    calls = []
    real = eager.gradient_penalty

    def spy(critic, r, f, **kw):
        calls.append(kw["lam"])
        return real(critic, r, f, **kw)

    monkeypatch.setattr(eager, "gradient_penalty", spy)
    quick_train(*tiny_models(), "8gaussians", steps=3, n_critic=6, penalty_every=3, compile=False, **KW)
    assert calls == [3 * 2.0] * (3 * 2)  # updates 0 and 3 of each of the 3 generator steps
    calls.clear()
    quick_train(*tiny_models(), "8gaussians", steps=3, n_critic=6, compile=False, **KW)
    assert calls == [2.0] * (3 * 6)  # penalty_every=1: every update, weight lam


def test_compiled_equals_eager_and_the_lazy_penalty_changes_training():
    runs = {}
    for name, dtype, extra in (("eager", torch.float32, dict(compile=False)),
                               ("compiled", torch.float32, dict(compile=True)),
                               ("fp64", torch.float64, dict(compile=False)),
                               ("every update", torch.float32, dict(compile=False, penalty_every=1))):
        G, D = (m.to(dtype) for m in tiny_models())
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
            runs[name] = quick_train(G, D, "8gaussians", **{"steps": 6, "n_critic": 2, "penalty_every": 2, **KW,
                                                                **extra})
    assert runs["compiled"].step_mode == "compiled"
    # same draws, same lazy schedule: the two runners agree by the derived rule (a penalty on the
    # wrong update or with the wrong weight moves the losses by O(1) relative amounts)
    assert_same_trajectory(runs["compiled"], runs["eager"], runs["fp64"], what="lazy penalty, compiled")
    # negative control: the penalty on every update trains differently, far outside the rule
    with pytest.raises(AssertionError, match="fp64 truth"):
        assert_same_trajectory(runs["every update"], runs["eager"], runs["fp64"], what="every update")
    # the logged penalty is the one computed (k * lam * P > 0), not the zero of an update without it
    assert all(h["penalty"] > 0 for h in runs["eager"].history)


@pytest.mark.parametrize("change, msg", [
    (dict(penalty_every=0), "penalty_every must be an integer >= 1"),
    (dict(penalty_every="2"), "penalty_every must be an int"),
    (dict(penalty_every=2, n_critic=5), "penalty_every=2 must divide n_critic"),
    (dict(penalty_every=2, n_critic="wgan-original"), "penalty_every=2 must divide n_critic"),
    (dict(penalty_every=5, loss="wgan", n_critic=5), "penalty_every=5 needs a loss with a gradient penalty"),
    (dict(penalty_every=5, lam=0.0, n_critic=5), "penalty_every=5 needs a loss with a gradient penalty"),
])
def test_bad_values_are_named_before_training(change, msg):
    kw = {**KW, "steps": 1, "n_critic": 1, **change}
    with pytest.raises((ValueError, TypeError), match=msg):
        fastwgan.train(*tiny_models(), "8gaussians", **kw)
