"""fastwgan.train: every loss runs and does what its algorithm says, bad input fails before any
training with a message naming the fix, runs are reproducible and resume exactly, outputs exist."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from fastwgan.models import DCGANCritic, MLPCritic, MLPGenerator
from fastwgan.training.config import wgan_original_schedule

from _tiny import quick_train

W = 32  # small models: these tests check behaviour, not quality


def tiny(z_dim=2, n_classes=0, out_shape=None, in_dim=2):
    torch.manual_seed(1)
    if out_shape is not None:
        return (MLPGenerator(z_dim=z_dim, width=W, n_classes=n_classes, out_shape=out_shape),
                MLPCritic(in_dim=in_dim, width=W, n_classes=n_classes))
    return MLPGenerator(z_dim=z_dim, width=W, n_classes=n_classes), MLPCritic(in_dim=2, width=W, n_classes=n_classes)


def params(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def quick(G, D, data="8gaussians", **kw):
    # the trainer's logic, checked in fp32 (bf16: test_amp.py, test_recipes.py); with out=, the pictures too
    return quick_train(G, D, data, **{"steps": 3, "batch_size": 16, "eval_samples": 64, "device": "cpu",
                                      "precision": "fp32", "plots": True, **kw})


@pytest.mark.parametrize("loss", ["wgan", "wgan-gp", "wgan-lp", "gan", "ns-gan"])
def test_every_loss_trains_both_models(loss):
    G, D = tiny()
    g0, d0 = params(G), params(D)
    r = quick(G, D, loss=loss)
    assert r.generator is G and r.critic is D  # trained in place
    assert any(not torch.equal(a, b) for a, b in zip(g0, params(G), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, params(D), strict=True))
    assert len(r.history) == 3 and [h["step"] for h in r.history] == [1, 2, 3]
    for h in r.history:
        assert set(h) >= {"w_estimate", "loss_d", "loss_g", "penalty", "time"}
    if loss == "wgan-gp":
        # a fresh critic's gradient norms are nowhere near 1: the two-sided penalty is positive
        assert all(h["penalty"] > 0 for h in r.history)
    elif loss == "wgan-lp":
        # on the same first critic batch (same seed, same initial critic) the one-sided penalty
        # max(0, |g| - 1)^2 is at most the two-sided (|g| - 1)^2, and never negative
        first = [quick(*tiny(), loss=l, steps=1, n_critic=1, eval_samples=0).history[0]["penalty"]
                 for l in ("wgan-lp", "wgan-gp")]
        assert 0 <= first[0] <= first[1] and first[1] > 0
    else:
        assert all(h["penalty"] == 0 for h in r.history)
    if loss.startswith("wgan"):  # L_D = E D(G(z)) - E D(x) = -(the Wasserstein estimate)
        assert all(h["loss_d"] == pytest.approx(-h["w_estimate"], rel=1e-6, abs=1e-7) for h in r.history)
    assert "w1" in r.metrics


def test_wgan_clips_every_critic_weight_and_uses_paper_defaults():
    G, D = tiny()
    r = quick(G, D, loss="wgan")
    assert r.config["lr"] == 5e-5 and r.config["clip"] == 0.01 and r.config["optimizer"] == "rmsprop"
    for p in D.parameters():
        assert p.abs().max().item() <= 0.01


def test_wgan_gp_paper_defaults_and_overrides():
    # 8gaussians preset (measured, fastwgan.presets), textbook recipe: lambda 1, betas (0.5, 0.9),
    # lr 2e-4 with a linear decay; explicit args win (the fast recipe: tests/test_recipes.py).
    G, D = tiny()
    r = quick(G, D, loss="wgan-gp", recipe="textbook")
    assert r.config["lam"] == 1.0 and tuple(r.config["betas"]) == (0.5, 0.9) and r.config["lr"] == 2e-4
    assert r.config["lr_decay"] == "linear"
    G, D = tiny()
    x = torch.randn(64, 2)
    r = quick(G, D, data=x, loss="wgan-gp")  # no preset: the paper's Algorithm 1 settings
    assert r.config["lam"] == 10.0 and tuple(r.config["betas"]) == (0.0, 0.9) and r.config["n_critic"] == 5
    G, D = tiny()
    r = quick(G, D, loss="wgan-gp", lam=3.0, betas=(0.1, 0.8), lr=2e-4)
    assert r.config["lam"] == 3.0 and tuple(r.config["betas"]) == (0.1, 0.8) and r.config["lr"] == 2e-4


def test_same_seed_same_run_and_different_seed_differs():
    runs = []
    for seed in (3, 3, 4):
        G, D = tiny()
        quick(G, D, seed=seed, eval_samples=0)
        runs.append(params(G) + params(D))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def test_evaluation_does_not_change_the_trajectory():
    out = []
    for ev, evaluated_at in ((2, [2, 4, 6]), (1000, [6])):  # log_every=4: evaluations off the log steps too
        G, D = tiny()
        r = quick(G, D, steps=6, eval_every=ev, log_every=4, eval_samples=64)
        assert [e["step"] for e in r.evals] == evaluated_at  # the comparison below is not vacuous
        out.append(params(G))
    assert all(torch.equal(a, b) for a, b in zip(*out, strict=True))


def test_n_critic_schedule_callable_and_wgan_original():
    calls = []

    def sched(step):
        calls.append(step)
        return 2

    G, D = tiny()
    quick(G, D, n_critic=sched, steps=4, eval_samples=0)
    assert calls == [0, 1, 2, 3]
    assert [wgan_original_schedule(s) for s in (0, 24, 25, 26, 500, 501, 1000)] == [100, 100, 5, 5, 100, 5, 100]
    G, D = tiny()
    r = quick(G, D, loss="wgan", n_critic="wgan-original", steps=1, eval_samples=0)
    assert r.config["n_critic"] == "wgan-original"


def test_z_dim_is_inferred_from_the_first_layer():
    G = nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 2))
    D = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    r = quick(G, D, eval_samples=0)
    assert r.z_dim == 7 and r.config["z_dim"] == 7


def test_conditional_training_on_digits_with_labels():
    G, D = tiny(z_dim=8, n_classes=10, out_shape=(1, 8, 8), in_dim=64)
    r = quick(G, D, data="digits", loss="wgan-gp", eval_samples=64)
    assert "swd" in r.metrics
    assert r.sample(5, torch.arange(5)).shape == (5, 1, 8, 8)


def test_feature_matching_generator_loss(monkeypatch):
    """The logged generator loss is ||mean f(x) - mean f(G(z))||^2 of the batch it saw, computed
    by hand from the critic's features, not the adversarial loss."""
    from fastwgan.training import eager

    seen = []
    real_objective = eager.generator_objective

    def spy(critic, fake, y, *, loss, features=None, real=None):
        out = real_objective(critic, fake, y, loss=loss, features=features, real=real)
        with torch.no_grad():
            by_hand = ((features(real, y).mean(0) - features(fake, y).mean(0)) ** 2).sum()
            adversarial = -critic(fake, y).reshape(-1).mean()
        seen.append((out.item(), by_hand.item(), adversarial.item()))
        return out

    monkeypatch.setattr(eager, "generator_objective", spy)
    G, D = tiny()
    r = quick(G, D, feature_matching=True, eval_samples=0, log_every=1)
    assert len(seen) == len(r.history) == 3
    for (out, by_hand, adversarial), h in zip(seen, r.history, strict=True):
        assert out == pytest.approx(by_hand, rel=1e-6) and h["loss_g"] == pytest.approx(out, rel=1e-6)
        assert abs(out - adversarial) > 1e-3  # negative control: not the adversarial loss


def test_data_forms_tensor_pair_dataset_loader_iterable_callable():
    x = torch.randn(40, 2)
    y = torch.randint(0, 3, (40,))
    ds = torch.utils.data.TensorDataset(x)
    forms = [x, ds, torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True),
             (lambda n: torch.randn(n, 2)), [x[:8], x[8:16]]]
    for data in forms:
        G, D = tiny()
        r = quick(G, D, data=data, steps=2, eval_samples=16)
        assert len(r.history) == 2
    G, D = tiny(n_classes=3)
    r = quick(G, D, data=(x, y), steps=2, eval_samples=16)
    assert len(r.history) == 2


# ---- bad input: a clear error naming the fix, raised before any parameter moves ----

class TwoScores(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x)


class BatchMean(nn.Module):
    """A critic averaging its scores over the batch, as the original WGAN code's critics do."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(x).mean(0).view(1)


BAD = [
    (dict(critic=TwoScores()), ValueError, "one score per sample"),
    (dict(generator=nn.Sequential(nn.Linear(2, 3))), ValueError, "per-sample shape"),
    (dict(data=torch.full((8, 2), float("nan"))), ValueError, "(?i)nan"),
    (dict(data=torch.tensor([[1.0, float("inf")]] * 4)), ValueError, "(?i)inf|finite"),
    (dict(data=torch.empty(0, 2)), ValueError, "empty"),
    (dict(critic=nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))), ValueError, "LayerNorm"),
    (dict(lr=0.0), ValueError, "lr must be"),
    (dict(lr=-1e-4), ValueError, "lr must be"),
    (dict(n_critic=0), ValueError, "n_critic"),
    (dict(loss="wgan", clip=0.0), ValueError, "clip must be > 0"),
    (dict(loss="wgan", clip=-0.01), ValueError, "clip must be > 0"),
    (dict(loss="wgn"), ValueError, "wgan-gp"),
    (dict(data="9gaussians"), ValueError, "8gaussians"),
    (dict(lam=-1.0), ValueError, "lam"),
    (dict(steps=0), ValueError, "steps"),
    (dict(data=torch.randn(8, 2), steps=None), ValueError, "steps is required"),
    (dict(feature_matching=True, critic=nn.Sequential(nn.Linear(2, 1))), ValueError, "features"),
    (dict(tiny=dict(n_classes=3), data=(torch.randn(40, 2), torch.arange(40) % 6)), ValueError,
     "6 classes but the generator's label embedding has 3"),
    # labelled data with unconditional models trains unconditionally (tests/test_dropin.py); one model
    # conditional and the other not is a mismatch
    (dict(tiny=dict(n_classes=3), critic=nn.Sequential(nn.Linear(2, 1)), data=(torch.randn(40, 2), torch.arange(40) % 3)),
     ValueError, "the generator takes them but the critic does not"),
    (dict(critic=nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())), ValueError, "critic ends in a sigmoid"),
    (dict(critic=BatchMean()), ValueError, "looks like a batch average"),
    (dict(tiny=dict(n_classes=3), data=torch.randn(40, 2)), ValueError, "conditional .n_classes=3. but the data has no labels"),
    (dict(image_size=0), ValueError, "image_size must be a positive integer"),
    (dict(z_dim=0), ValueError, "z_dim .the noise size. must be a positive integer"),
    (dict(betas=(0.5,)), TypeError, "betas must be a pair"),
    (dict(loss="wgan", clip="0.01"), TypeError, "clip must be a number"),
]


@pytest.mark.parametrize("change,exc,msg", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_fails_before_training(change, exc, msg):
    change = dict(change)
    G, D = tiny(**change.pop("tiny", {}))
    kw = dict(generator=G, critic=D, data="8gaussians", steps=3)
    kw.update(change)
    gen, crit = kw["generator"], kw["critic"]
    before = params(gen) + params(crit)
    with pytest.raises(exc, match=msg):
        quick_train(kw.pop("generator"), kw.pop("critic"), kw.pop("data"), **kw)
    assert all(torch.equal(a, b) for a, b in zip(before, params(gen) + params(crit), strict=True))


def test_batchnorm_critic_allowed_when_asked():
    G, _ = tiny()
    D = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    r = quick(G, D, allow_batchnorm=True, eval_samples=0)
    assert len(r.history) == 3


def test_dcgan_batchnorm_critic_rejected_layernorm_accepted():
    from fastwgan.models import DCGANGenerator

    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    G = DCGANGenerator(z_dim=8, img_size=32, ngf=8)
    with pytest.raises(ValueError, match="LayerNorm"):
        quick_train(G, DCGANCritic(img_size=32, ndf=8, norm="batch"), x, steps=1)
    r = quick_train(G, DCGANCritic(img_size=32, ndf=8, norm="layer"), x, steps=1, batch_size=4,
                    eval_samples=8)
    assert "swd" in r.metrics


# ---- outputs, checkpoints, resume ----

def test_run_folder_outputs(tmp_path):
    G, D = tiny()
    r = quick(G, D, out=tmp_path / "run", steps=4, log_every=2, eval_every=2, tensorboard=True)
    run = tmp_path / "run"
    assert r.out == run
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [2, 4] and "w1" in lines[-1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["w1"] == pytest.approx(r.metrics["w1"])
    for f in ("samples.png", "learning_curve.png"):
        assert (run / f).stat().st_size > 1000
    assert list((run / "checkpoints").glob("ckpt-00000004.pt"))
    assert list((run / "tb").glob("events.out.tfevents.*"))


def test_resume_continues_exactly(tmp_path):
    G, D = tiny()
    quick(G, D, steps=6, eval_samples=0, seed=5)
    straight = params(G) + params(D)

    G, D = tiny()
    quick(G, D, steps=6, eval_samples=0, seed=5, out=tmp_path, checkpoint_every=3, plots=False)
    # throw away the final checkpoint: resume from step 3 with fresh modules
    (tmp_path / "checkpoints" / "ckpt-00000006.pt").unlink()
    G, D = tiny()
    G.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    r = quick(G, D, steps=6, eval_samples=0, seed=5, out=tmp_path, resume=True, plots=False)
    assert r.history[0]["step"] == 1 and r.history[-1]["step"] == 6
    resumed = params(G) + params(D)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed, strict=True))


def test_corrupted_checkpoint_falls_back_to_previous(tmp_path):
    G, D = tiny()
    quick(G, D, steps=4, eval_samples=0, out=tmp_path, checkpoint_every=2, plots=False)
    newest = tmp_path / "checkpoints" / "ckpt-00000004.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    G, D = tiny()
    ran = []
    from fastwgan.training.eager import EagerStep

    real_call = EagerStep.__call__

    def spy(self, step, feed):
        ran.append(step)
        return real_call(self, step, feed)

    EagerStep.__call__ = spy
    try:
        with pytest.warns(RuntimeWarning, match="truncated or corrupted"):
            r = quick(G, D, steps=4, eval_samples=0, out=tmp_path, resume=True, plots=False)
    finally:
        EagerStep.__call__ = real_call
    assert ran == [2, 3]  # resumed from step 2's checkpoint: neither restarted nor skipped ahead
    assert [h["step"] for h in r.history] == [1, 2, 3, 4]


# ---- a new user's own models: the WGAN-GP authors' MNIST architecture on flat (N, 784) digits ----

class _MNISTStyleGenerator(nn.Module):
    """The layout of a common PyTorch port of gan_mnist.py: the deconvolution blocks are
    registered BEFORE the first Linear that is called, and samples come out flat (B, 784) in
    [0, 1] (sigmoid). The first registered layer takes 4 * dim channels, not the 128 noise values."""

    def __init__(self, dim: int = 4):
        super().__init__()
        self.dim = dim
        self.block1 = nn.Sequential(nn.ConvTranspose2d(4 * dim, 2 * dim, 5), nn.ReLU())
        self.block2 = nn.Sequential(nn.ConvTranspose2d(2 * dim, dim, 5), nn.ReLU())
        self.deconv_out = nn.ConvTranspose2d(dim, 1, 8, stride=2)
        self.preprocess = nn.Sequential(nn.Linear(128, 4 * 4 * 4 * dim), nn.ReLU())

    def forward(self, z):
        h = self.preprocess(z).view(-1, 4 * self.dim, 4, 4)
        h = self.block1(h)[:, :, :7, :7]
        h = self.block2(h)
        return torch.sigmoid(self.deconv_out(h)).view(-1, 784)


class _MNISTStyleCritic(nn.Module):
    def __init__(self, dim: int = 4):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(1, dim, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
                                  nn.Conv2d(dim, 2 * dim, 5, stride=2, padding=2), nn.LeakyReLU(0.2))
        self.out = nn.Linear(2 * dim * 7 * 7, 1)

    def forward(self, x):
        return self.out(self.main(x.view(-1, 1, 28, 28)).flatten(1))


def test_new_user_mnist_models_on_flat_digits_train_and_draw(tmp_path):
    """The noise size is found by trying the layers' widths (not the first registered layer's);
    flat (N, 784) data in [0, 1] trains, and the samples picture is drawn as 28x28 digits in that
    range instead of costing the finished run."""
    torch.manual_seed(0)
    x = torch.rand(64, 784)
    G, D = _MNISTStyleGenerator(), _MNISTStyleCritic()
    assert G(torch.zeros(2, 128)).shape == (2, 784)
    with pytest.raises(RuntimeError):
        G(torch.zeros(2, 4 * G.dim))  # the first registered layer's width is the wrong guess
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no picture may fail
        r = quick_train(G, D, x, steps=2, batch_size=8, n_critic=1, eval_samples=16, out=tmp_path / "run",
                        plots=True)
    assert r.z_dim == 128 and r.config["z_dim"] == 128
    assert (tmp_path / "run" / "samples.png").stat().st_size > 500
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2


def test_a_picture_that_fails_warns_and_keeps_the_run(tmp_path, monkeypatch):
    from fastwgan import plots

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(plots, "plot_learning_curve", broken)
    G, D = tiny()
    with pytest.warns(RuntimeWarning, match="learning_curve.png.*disk full"):
        r = quick(G, D, out=tmp_path / "run", steps=2)
    assert (tmp_path / "run" / "summary.json").exists() and r.metrics
