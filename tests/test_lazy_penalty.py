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

from _tiny import tiny_models

KW = dict(loss="wgan-gp", batch_size=16, lam=2.0, seed=4, device="cpu", progress=False, plots=False, eval_samples=0,
          precision="fp32", z_dim=3, log_every=1)


def _params(*modules) -> list[torch.Tensor]:
    return [p.detach().clone() for m in modules for p in m.parameters()]


def test_the_penalty_runs_on_every_kth_update_weighted_k_lam(monkeypatch):
    calls = []
    real = eager.gradient_penalty

    def spy(critic, r, f, **kw):
        calls.append(kw["lam"])
        return real(critic, r, f, **kw)

    monkeypatch.setattr(eager, "gradient_penalty", spy)
    fastwgan.train(*tiny_models(), "8gaussians", steps=3, n_critic=6, penalty_every=3, compile=False, **KW)
    assert calls == [3 * 2.0] * (3 * 2)  # updates 0 and 3 of each of the 3 generator steps
    calls.clear()
    fastwgan.train(*tiny_models(), "8gaussians", steps=3, n_critic=6, compile=False, **KW)
    assert calls == [2.0] * (3 * 6)  # penalty_every=1: every update, weight lam


def test_compiled_equals_eager_and_the_lazy_penalty_changes_training():
    runs = {}
    for name, extra in (("eager", dict(compile=False)), ("compiled", dict(compile=True)),
                        ("every update", dict(compile=False, penalty_every=1))):
        G, D = tiny_models()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
            r = fastwgan.train(G, D, "8gaussians", **{"steps": 6, "n_critic": 2, "penalty_every": 2, **KW, **extra})
        runs[name] = (r, _params(G, D))
    assert runs["compiled"][0].step_mode == "compiled"
    # same draws, same lazy schedule: the two runners agree to fp32 rounding (a penalty on the wrong
    # update or with the wrong weight moves the losses by O(1) relative amounts)
    for a, b in zip(runs["compiled"][0].history, runs["eager"][0].history, strict=True):
        for k in ("w_estimate", "loss_d", "penalty", "loss_g"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-5), (a["step"], k)
    for a, b in zip(runs["compiled"][1], runs["eager"][1], strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    # negative control: the penalty on every update trains differently
    assert any(not torch.allclose(a, b, rtol=1e-3, atol=1e-5)
               for a, b in zip(runs["every update"][1], runs["eager"][1], strict=True))
    # the logged penalty is the one computed (k * lam * P > 0), not the zero of an update without it
    assert all(h["penalty"] > 0 for h in runs["eager"][0].history)


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
