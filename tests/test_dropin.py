"""Drop-in: the models and data of the most copied GAN codebases, unchanged, through fastwgan.train.

Models of the same shapes as the PyTorch DCGAN example's and the WGAN authors' (tests/_user_models.py)
train a few steps; sample, load, export and resume then work on the run folder. Each case that
used to fail or train silently wrong is now correct or a clear message, each with a negative control.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastwgan
from fastwgan import checkpoint as ckpt
from fastwgan.data import as_data_source
from fastwgan.export import export_generator
from fastwgan.losses import critic_loss, generator_loss, probability_logit
from fastwgan.models import MLPCritic, MLPGenerator, noise_shape_candidates
from fastwgan.training import build
from fastwgan.training.inputs import Draws
from fastwgan.training.precision import Amp
from fastwgan.training.static import StaticStep
from fastwgan.distributed import DistInfo

from _rules import assert_fp64_rule
from _user_models import (ExampleDiscriminator, ExampleGenerator, LabelledImages, WGAN_DCGAN_D, WGAN_DCGAN_G,
                          WGAN_MLP_D, WGAN_MLP_G, dcgan_init)

NZ, SIZE = 8, 16
FAST = dict(batch_size=8, progress=False, plots=False, eval_samples=0, precision="fp32", compile=False,
            handle_signals=False)


def params(*models):
    return [p.detach().clone() for m in models for p in m.parameters()]


def example_models(seed=0, **d_kw):
    torch.manual_seed(seed)
    G, D = ExampleGenerator(nz=NZ, ngf=4, nc=1, img_size=SIZE), ExampleDiscriminator(ndf=4, nc=1, img_size=SIZE, **d_kw)
    G.apply(dcgan_init)
    D.apply(dcgan_init)
    return G, D


def wgan_dcgan(seed=0, batch_mean=True):
    torch.manual_seed(seed)
    return (WGAN_DCGAN_G(SIZE, NZ, 1, 4, n_extra_layers=1),
            WGAN_DCGAN_D(SIZE, NZ, 1, 4, n_extra_layers=1, batch_mean=batch_mean))


def messages(record) -> str:
    return "\n".join(str(w.message) for w in record)


# ---- the PyTorch DCGAN example: (B, nz, 1, 1) noise, a sigmoid BatchNorm discriminator, (image, target) items ----

def test_pytorch_dcgan_example_trains_as_it_is_and_its_run_folder_works(tmp_path):
    G, D = example_models()
    data = LabelledImages(n=48, nc=1, size=SIZE)
    with pytest.warns(UserWarning) as record:
        r = fastwgan.train(G, D, data, loss="ns-gan", steps=3, out=tmp_path / "run", **FAST)
    said = messages(record)
    assert said.count("ends in a sigmoid") == 1 and "log p - log(1 - p)" in said  # says what it does, once
    assert said.count("neither model takes them") == 1 and "n_classes=10" in said
    assert r.z_shape == (NZ, 1, 1) and r.z_dim == NZ
    assert not D._forward_hooks  # the user's module is unchanged after training
    with torch.no_grad():
        out = D.eval()(torch.randn(4, 1, SIZE, SIZE))
    assert out.shape == (4,) and bool(((out >= 0) & (out <= 1)).all())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["z_shape"] == [NZ, 1, 1] and summary["config"]["z_shape"] == [NZ, 1, 1]
    assert r.sample(5).shape == (5, 1, SIZE, SIZE)

    G2, D2 = example_models(seed=9)
    run = fastwgan.load(tmp_path / "run", generator=G2, critic=D2)
    assert run.noise_shape == (NZ, 1, 1)
    a, b = run.sample(6, seed=3), run.sample(6, seed=3)
    assert a.shape == (6, 1, SIZE, SIZE) and torch.equal(a, b)
    rep = export_generator(run.generator, run.noise_shape, tmp_path / "G.pt2")
    assert rep["max_abs_err"] <= rep["bound"]


def test_labelled_data_with_unconditional_models_is_the_unlabelled_run():
    """The labels are dropped, nothing else changes: the same parameters bit for bit as training on x."""
    x, y = torch.randn(40, 2), torch.arange(40) % 4
    runs = []
    for data in ((x, y), x):
        torch.manual_seed(3)
        G, D = MLPGenerator(z_dim=2, width=16), MLPCritic(width=16)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            fastwgan.train(G, D, data, steps=3, **FAST)
        runs.append((params(G, D), messages(record)))
    assert "neither model takes them" in runs[0][1]
    assert "neither model takes them" not in runs[1][1]  # negative control: no labels, no notice
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))


def test_conditional_models_still_take_the_labels():
    x, y = torch.randn(40, 2), torch.arange(40) % 4
    torch.manual_seed(0)
    G, D = MLPGenerator(z_dim=2, width=16, n_classes=4), MLPCritic(width=16, n_classes=4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        r = fastwgan.train(G, D, (x, y), steps=2, **FAST)
    assert "neither model takes them" not in messages(record)
    assert r.sample(3, labels=torch.tensor([0, 1, 3])).shape == (3, 2)


def test_resume_of_user_models_with_4d_noise_is_bit_exact(tmp_path):
    data = LabelledImages(n=48, nc=1, size=SIZE)
    kw = dict(loss="ns-gan", checkpoint_every=2, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        G, D = example_models()
        fastwgan.train(G, D, data, steps=4, out=tmp_path / "whole", **kw)
        whole = params(G, D)
        G, D = example_models()
        fastwgan.train(G, D, data, steps=2, out=tmp_path / "split", **kw)
        G, D = example_models(seed=5)  # other weights: the checkpoint's must be loaded
        fastwgan.train(G, D, data, steps=4, out=tmp_path / "split", resume=True, **kw)
    assert all(torch.equal(a, b) for a, b in zip(whole, params(G, D), strict=True))


# ---- the WGAN authors' models: batch-mean critics, (B, nz, 1, 1) noise, BatchNorm critics ----

def test_wgan_authors_batch_mean_critic_is_named_as_such():
    G, D = wgan_dcgan()
    data = torch.rand(32, 1, SIZE, SIZE) * 2 - 1
    with pytest.raises(ValueError, match=r"batch average.*output\.mean\(0\)\.view\(1\).*output\.view\(-1\)"):
        fastwgan.train(G, D, data, loss="wgan", steps=2, **FAST)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="batch average"):
        fastwgan.train(WGAN_MLP_G(8, NZ, 1, 16), WGAN_MLP_D(8, NZ, 1, 16), torch.rand(32, 1, 8, 8) * 2 - 1,
                       loss="wgan", steps=2, **FAST)


def test_wgan_authors_dcgan_trains_and_resumes(tmp_path):
    """Their RMSProp 5e-5 and clip 0.01 (the loss's defaults; their Diters schedule is
    n_critic='wgan-original', left out here for time); the one-line fix output.view(-1) in the
    critic, nothing else changed."""
    data = torch.rand(32, 1, SIZE, SIZE) * 2 - 1
    kw = dict(loss="wgan", n_critic=3, **FAST)
    G, D = wgan_dcgan(batch_mean=False)
    r = fastwgan.train(G, D, data, steps=2, out=tmp_path / "run", **kw)
    assert r.z_shape == (NZ, 1, 1)
    assert max(float(p.detach().abs().max()) for p in D.parameters()) <= 0.01  # clipped
    whole = params(G, D)
    G, D = wgan_dcgan(batch_mean=False)
    fastwgan.train(G, D, data, steps=1, out=tmp_path / "split", **kw)
    G, D = wgan_dcgan(seed=4, batch_mean=False)
    fastwgan.train(G, D, data, steps=2, out=tmp_path / "split", resume=True, **kw)
    assert all(torch.equal(a, b) for a, b in zip(whole, params(G, D), strict=True))


def test_wgan_authors_mlp_takes_flat_noise_and_numpy_channels_last_data(tmp_path):
    torch.manual_seed(0)
    G, D = WGAN_MLP_G(8, NZ, 1, 16), WGAN_MLP_D(8, NZ, 1, 16, batch_mean=False)
    images = (np.random.default_rng(0).random((32, 8, 8, 1)) * 2 - 1).astype(np.float32)  # (N, H, W, C)
    with pytest.warns(UserWarning, match=r"channels-last images \(32, 8, 8, 1\).*permuted"):
        r = fastwgan.train(G, D, images, loss="wgan-gp", steps=2, out=tmp_path / "run", **FAST)
    assert r.z_shape == (NZ,)  # a Linear first layer: flat noise
    run = fastwgan.load(tmp_path / "run", generator=WGAN_MLP_G(8, NZ, 1, 16),
                        critic=WGAN_MLP_D(8, NZ, 1, 16, batch_mean=False))
    assert run.sample(3, seed=0).shape == (3, 1, 8, 8)


def test_batchnorm_critic_under_the_penalty_needs_allow_batchnorm():
    G, D = wgan_dcgan(batch_mean=False)
    data = torch.rand(32, 1, SIZE, SIZE) * 2 - 1
    with pytest.raises(ValueError, match="allow_batchnorm=True"):
        fastwgan.train(G, D, data, loss="wgan-gp", steps=1, **FAST)
    r = fastwgan.train(G, D, data, loss="wgan-gp", steps=1, allow_batchnorm=True, **FAST)
    assert len(r.history) == 1


# ---- noise shape ----

def test_noise_layout_follows_the_first_layer_and_z_shape_overrides_it():
    G, _ = example_models()
    assert noise_shape_candidates(G)[0] == (NZ, 1, 1)
    assert noise_shape_candidates(WGAN_MLP_G(8, NZ, 1, 16))[0] == (NZ,)
    assert noise_shape_candidates(MLPGenerator(z_dim=3)) == [(3,)]  # built-in: flat, as before
    data = torch.rand(32, 1, SIZE, SIZE) * 2 - 1
    G, D = example_models(sigmoid=False, norm="layer")
    r = fastwgan.train(G, D, data, steps=1, z_shape=(NZ, 1, 1), **FAST)
    assert r.z_shape == (NZ, 1, 1)
    with pytest.raises(ValueError, match=r"noise of shape \(2, 8\).*z_shape="):
        fastwgan.train(G, D, data, steps=1, z_shape=(NZ,), **FAST)  # flat noise into a ConvTranspose2d
    with pytest.raises(ValueError, match="z_shape=.*holds 8 noise values but z_dim=5"):
        fastwgan.train(G, D, data, steps=1, z_shape=(NZ, 1, 1), z_dim=5, **FAST)


def test_a_checkpoint_without_a_noise_shape_means_flat_noise(tmp_path):
    torch.manual_seed(0)
    G, D = MLPGenerator(z_dim=3, width=8), MLPCritic(width=8)
    fastwgan.train(G, D, torch.randn(32, 2), steps=2, out=tmp_path / "run", **FAST)
    (path,) = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    state = ckpt.load_checkpoint(path)
    del state["config"]["z_shape"]  # what an older fastwgan wrote
    path.unlink()
    ckpt.save_checkpoint(state, tmp_path / "run" / "checkpoints", state["step"])
    run = fastwgan.load(tmp_path / "run")
    assert run.noise_shape == (3,) and run.sample(4, seed=0).shape == (4, 2)


def test_static_step_buffers_take_the_noise_shape():
    G, D = example_models(sigmoid=False, norm="layer")
    draws = Draws(4, (NZ, 1, 1), penalty=True, device=torch.device("cpu"), data_dtype=torch.float32,
                  z_dtype=torch.float32, info=DistInfo())
    st = StaticStep(G, D, torch.optim.Adam(D.parameters()), torch.optim.Adam(G.parameters()), loss="wgan-gp",
                    lam=1.0, n_critic=2, draws=draws, sample_shape=(1, SIZE, SIZE), labelled=False,
                    amp=Amp("fp32", torch.device("cpu")))
    data = torch.rand(16, 1, SIZE, SIZE) * 2 - 1
    src, src2 = as_data_source(data, batch_size=4, seed=0), as_data_source(data, batch_size=4, seed=0)
    torch.manual_seed(1)
    st.stage(src)
    assert st.z_d.shape == (2, 4, NZ, 1, 1) and st.z_g.shape == (4, NZ, 1, 1)
    torch.manual_seed(1)
    first = Draws(4, (NZ, 1, 1), penalty=True, device=torch.device("cpu"), data_dtype=torch.float32,
                  z_dtype=torch.float32, info=DistInfo()).critic(src2)
    assert torch.equal(st.z_d[0], first.z)  # the eager runner's numbers, in its shape
    assert torch.isfinite(st()).all()


# ---- probability outputs ----

class FunctionalSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return torch.sigmoid(self.lin(x)).view(-1)


class SigmoidOffPath(nn.Module):
    """An nn.Sigmoid registered last but not on the output's path: not a probability critic."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return self.lin(x * 2).view(-1)


@pytest.mark.parametrize("critic,expected", [
    (nn.Sequential(nn.Linear(2, 1), nn.Sigmoid()), True),
    (FunctionalSigmoid(), True),
    (nn.Sequential(nn.Linear(2, 1)), False),  # negative controls
    (SigmoidOffPath(), False),
    (nn.Sequential(nn.Linear(2, 1), nn.Tanh()), False),
], ids=["nn.Sigmoid", "torch.sigmoid", "linear", "sigmoid off the path", "tanh"])
def test_sigmoid_detection(critic, expected):
    x = torch.randn(2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert build.critic_gives_probabilities(critic, x, None, "ns-gan") is expected
    if expected:
        with pytest.raises(ValueError, match=r"ends in a sigmoid.*remove the final nn\.Sigmoid\(\)"):
            build.critic_gives_probabilities(critic, x, None, "wgan-gp")


@pytest.mark.parametrize("loss", ["wgan", "wgan-gp", "wgan-lp"])
def test_sigmoid_critic_under_a_wasserstein_loss_is_refused(loss):
    G, D = example_models()
    with pytest.raises(ValueError, match="ends in a sigmoid"):
        fastwgan.train(G, D, torch.rand(16, 1, SIZE, SIZE) * 2 - 1, loss=loss, steps=1, allow_batchnorm=True, **FAST)


@pytest.mark.parametrize("loss", ["gan", "ns-gan"])
def test_losses_on_recovered_logits_are_the_probability_form(loss):
    """On the same fp32 probabilities p: the logit-form losses on log p - log(1 - p) against binary
    cross-entropy on p (what the PyTorch example's BCELoss computes), under the project's rule with
    fp64 BCE on the same p as the truth and plain fp32 BCE as the reference."""
    g = torch.Generator().manual_seed(0)
    # logits whose fp32 sigmoid is strictly inside (0, 1): where p is 0 or 1 exactly the logit is gone
    # (BCELoss says -log 0 = 100, the clamp says 16.6 or 87.3; neither is the truth), checked below
    d_real, d_fake = (torch.randn(512, generator=g) * 6).clamp(-15, 15), (torch.randn(512, generator=g) * 6).clamp(-15, 15)
    p_real, p_fake = torch.sigmoid(d_real), torch.sigmoid(d_fake)

    def bce(pr, pf):
        ones, zeros = torch.ones_like(pr), torch.zeros_like(pf)
        lossd = F.binary_cross_entropy(pr, ones) + F.binary_cross_entropy(pf, zeros)
        lossg = -F.binary_cross_entropy(pf, zeros) if loss == "gan" else F.binary_cross_entropy(pf, ones)
        return torch.stack([lossd, lossg])

    got = torch.stack([critic_loss(loss, probability_logit(p_real), probability_logit(p_fake)),
                       generator_loss(loss, probability_logit(p_fake))])
    assert_fp64_rule(got, bce(p_real, p_fake), bce(p_real.double(), p_fake.double()), what=loss)
    # saturated probabilities (0 and 1 exactly) give finite losses and finite, zero gradients
    p = torch.tensor([0.0, 1.0], requires_grad=True)
    out = critic_loss(loss, probability_logit(p), probability_logit(p))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(p.grad).all()


def test_sigmoid_discriminator_trains_like_the_same_network_without_its_sigmoid():
    """ns-gan on a sigmoid discriminator equals ns-gan on its logits (the same weights without the
    sigmoid) to float32 rounding: the wrong loss (softplus of probabilities) would differ at once."""
    out = []
    for sigmoid in (True, False):
        torch.manual_seed(0)
        G = MLPGenerator(z_dim=2, width=16)
        D = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1), *([nn.Sigmoid()] if sigmoid else []))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fastwgan.train(G, D, torch.randn(64, 2), loss="ns-gan", steps=3, **FAST)
        out.append(torch.tensor([[h["loss_d"], h["loss_g"]] for h in r.history]))
    # a few fp32 roundings of O(1) losses; a wrong loss is off by O(0.1)
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=1e-5)


# ---- data range and numpy ----

@pytest.mark.parametrize("final,lo,warns", [
    (nn.Tanh(), 0.0, "ends in Tanh"), (nn.Sigmoid(), -1.0, "ends in a Sigmoid"),
    (nn.Tanh(), -1.0, None), (nn.Sigmoid(), 0.0, None),  # negative controls: ranges that fit
])
def test_generator_range_against_the_data_range(final, lo, warns):
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 2), final)
    data = torch.rand(32, 2) * (1 - lo) + lo
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fastwgan.train(G, MLPCritic(width=8), data, steps=1, z_dim=3, **FAST)
    said = messages(record)
    if warns:
        assert said.count(warns) == 1 and ("x * 2 - 1" in said or "(x + 1) / 2" in said)
    else:
        assert "ends in" not in said


def test_numpy_arrays():
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x = rng.standard_normal((16, 2)).astype(np.float32)
        src = as_data_source(x, batch_size=4, seed=0)  # float as it is, no notice
        assert torch.equal(src.sample_real(16)[0].sort(0).values, torch.from_numpy(x).sort(0).values)
        nchw = rng.random((8, 1, 6, 6)).astype(np.float32)
        assert as_data_source(nchw, batch_size=4, seed=0).sample_shape == (1, 6, 6)
    assert not record  # negative controls: nothing converted, nothing said
    u8 = rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match=r"uint8 values scaled to \[-1, 1\].*channels-last"):
        src = as_data_source(u8, batch_size=4, seed=0)
    assert src.sample_shape == (3, 6, 6)
    got = torch.stack([src.sample_real(8)[0]]).reshape(-1)
    assert got.min() >= -1 and got.max() <= 1
    want = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(src.sample_real(8)[0].sort(0).values, want.sort(0).values)
    with pytest.raises(ValueError, match=r"axis 1 and axis 3 could both be the channels.*permute\(0, 3, 1, 2\)"):
        as_data_source(rng.random((8, 3, 6, 3)).astype(np.float32), batch_size=4, seed=0)
    pair = as_data_source((x, np.arange(16) % 2), batch_size=4, seed=0)
    assert pair.n_classes == 2
