"""Tests of fastwgan.imagemetrics: the Frechet distance against closed forms, mode / KL counting
on constructed label sets, the digit classifier (held-out accuracy, cache, corruption), the
``image_metrics`` entry point (floor, out-of-range and NaN samples, stacked channels), and FID /
KID / IS through torchmetrics with the digit classifier as the extractor, plus the offline
Inception error.

The classifier is trained once per session into a temporary cache (``classifier_cache_dir`` in conftest.py):
about 15 s on 2 quiet CPU cores, a few minutes when the machine is shared.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from fastwgan.imagemetrics import (DigitClassifier, InceptionUnavailableError, as_digit_batch,
                                   class_coverage, classify_digits, digit_classifier_info, digit_features,
                                   fid_kid_is, frechet_distance, image_metrics, inception_weights_path,
                                   kl_to_uniform, load_digit_classifier, stacked_mode_ids, stacked_modes)
from fastwgan.imagemetrics import classifier_cache

EPS64 = np.finfo(np.float64).eps


# --------------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------------


def _fd_tol(s1: np.ndarray, s2: np.ndarray, mu_scale: float) -> float:
    """Rounding bound of frechet_distance in float64: each symmetric eigendecomposition has a
    backward error of about d eps ||S|| per eigenvalue (Householder tridiagonalisation, Golub &
    Van Loan Sec. 8.3); sqrt(lambda) turns an error delta into delta / (2 sqrt(lambda_min)); the
    trace sums d such terms and two decompositions feed it. Plus the traces and ||dmu||^2 sums."""
    d = s1.shape[0]
    m = scipy.linalg.sqrtm(s1).real @ s2 @ scipy.linalg.sqrtm(s1).real
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    norm = max(np.linalg.norm(s1, 2), np.linalg.norm(s2, 2), np.linalg.norm(m, 2))
    sqrt_err = d * EPS64 * norm / (2 * math.sqrt(max(lam.min(), EPS64 * norm)))
    return 2 * 2 * d * sqrt_err + d * EPS64 * (np.trace(s1) + np.trace(s2)) + d * EPS64 * mu_scale


def _random_cov(rng, d, lo=0.1, hi=3.0):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q, rng.uniform(lo, hi, d)


@pytest.mark.parametrize("d", [1, 7, 64])
def test_frechet_distance_closed_form_commuting(d):
    """Covariances sharing eigenvectors Q (diagonal when Q = I): Tr (S1 S2)^(1/2) = sum sqrt(a b),
    so FD = ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2 (the 2-Wasserstein distance squared)."""
    rng = np.random.default_rng(d)
    q, a = _random_cov(rng, d)
    b = rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    want = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    for basis in (np.eye(d), q):
        s1, s2 = (basis * a) @ basis.T, (basis * b) @ basis.T
        got = frechet_distance(mu1, s1, mu2, s2)
        tol = _fd_tol(s1, s2, float(((mu1 - mu2) ** 2).sum()))
        assert abs(got - want) <= tol, (got, want, tol)
        assert abs(frechet_distance(mu2, s2, mu1, s1) - got) <= tol  # symmetric
        assert frechet_distance(mu1, s1, mu1, s1) <= tol  # zero for identical Gaussians
    # tensors work the same way
    assert frechet_distance(torch.tensor(mu1), torch.tensor(np.diag(a)), torch.tensor(mu2),
                            torch.tensor(np.diag(b))) == pytest.approx(want, abs=_fd_tol(np.diag(a), np.diag(b), 1.0))


def test_frechet_distance_closed_form_2x2_non_commuting():
    """2x2, S1 S2 not commuting: M = S1 S2 has eigenvalues l1, l2 >= 0 with l1 + l2 = tr M and
    l1 l2 = det M, so Tr M^(1/2) = sqrt(l1) + sqrt(l2) = sqrt(tr M + 2 sqrt(det M))."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
        s1, s2 = a @ a.T + 0.1 * np.eye(2), b @ b.T + 0.1 * np.eye(2)
        assert not np.allclose(s1 @ s2, s2 @ s1)
        m = s1 @ s2
        tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
        mu1, mu2 = rng.standard_normal(2), rng.standard_normal(2)
        want = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
        got = frechet_distance(mu1, s1, mu2, s2)
        assert abs(got - want) <= _fd_tol(s1, s2, float(((mu1 - mu2) ** 2).sum())) + 4 * EPS64 * abs(tr_sqrt)


def test_frechet_distance_matches_sqrtm_form_and_handles_singular():
    """Against the textbook form with scipy.linalg.sqrtm of S1 S2 on well-conditioned random
    covariances; a rank-deficient covariance (dead ReLU features) gives a finite, correct value."""
    rng = np.random.default_rng(1)
    d = 16
    a, b = rng.standard_normal((d, 2 * d)), rng.standard_normal((d, 2 * d))
    s1, s2 = a @ a.T / (2 * d) + 0.5 * np.eye(d), b @ b.T / (2 * d) + 0.5 * np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    textbook = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    assert abs(frechet_distance(mu1, s1, mu2, s2) - textbook) <= 2 * _fd_tol(s1, s2, 1.0)
    # singular: zero variance along the last axis in both -> the formula on the other axes
    s1d, s2d = np.diag([1.0, 2.0, 0.0]), np.diag([4.0, 0.5, 0.0])
    want = (1 - 2) ** 2 + (math.sqrt(2) - math.sqrt(0.5)) ** 2
    assert frechet_distance(np.zeros(3), s1d, np.zeros(3), s2d) == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([np.nan]), np.eye(1), np.zeros(1), np.eye(1))


# --------------------------------------------------------------------------------------------
# mode / KL counting on constructed labels
# --------------------------------------------------------------------------------------------


def test_class_coverage_constructed():
    one = class_coverage(np.full(500, 3))
    assert one["classes_covered"] == 1 and one["kl"] == pytest.approx(math.log(10), rel=1e-12)
    uni = class_coverage(np.repeat(np.arange(10), 100))
    assert uni["classes_covered"] == 10 and uni["kl"] == pytest.approx(0.0, abs=1e-15)
    known = class_coverage(np.repeat([0, 1, 2], [50, 30, 20]))
    want = 0.5 * math.log(5) + 0.3 * math.log(3) + 0.2 * math.log(2)  # sum p log(p / (1/10))
    assert known["classes_covered"] == 3 and known["kl"] == pytest.approx(want, rel=1e-12)
    # the threshold: >= min_frac of the samples counts, one sample fewer does not
    labels = np.concatenate([np.zeros(990, int), np.full(10, 7)])
    assert class_coverage(labels, min_frac=0.01)["classes_covered"] == 2
    fewer = np.concatenate([np.zeros(991, int), np.full(9, 7)])
    assert class_coverage(fewer, min_frac=0.01)["classes_covered"] == 1
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        class_coverage(np.array([0, 10]))
    with pytest.raises(ValueError, match="integer"):
        class_coverage(np.array([0.0, 1.0]))


def test_stacked_modes_pacgan_count():
    assert stacked_mode_ids(torch.tensor([[1, 2, 3], [0, 0, 9], [9, 9, 9]])).tolist() == [123, 9, 999]
    every = stacked_modes(np.arange(1000))
    assert every["modes_covered"] == 1000 and every["kl"] == pytest.approx(0.0, abs=1e-14)
    single = stacked_modes(np.full(26000, 417))
    assert single["modes_covered"] == 1 and single["kl"] == pytest.approx(math.log(1000), rel=1e-12)
    ten = stacked_modes(np.repeat(np.arange(0, 1000, 100), 2600))
    assert ten["modes_covered"] == 10 and ten["kl"] == pytest.approx(math.log(100), rel=1e-12)
    # PacGAN: ONE sample in a mode covers it (unlike mnist's class threshold)
    lone = stacked_modes(np.concatenate([np.full(25999, 5), [6]]))
    assert lone["modes_covered"] == 2
    assert kl_to_uniform([3, 1]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-12)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        stacked_mode_ids(torch.zeros(4, 2, dtype=torch.long))


# --------------------------------------------------------------------------------------------
# the digit classifier and its cache
# --------------------------------------------------------------------------------------------


@pytest.fixture
def trained(classifier_cache_dir, monkeypatch):
    monkeypatch.setenv("FASTWGAN_CACHE", str(classifier_cache_dir))
    return load_digit_classifier()


def test_classifier_held_out_accuracy(trained, classifier_cache_dir):
    from fastwgan.data.mnist import load_mnist

    info = digit_classifier_info()
    assert info["n_test"] == 1000 and info["accuracy"] >= 0.95, info
    # the recorded figure is what the cached weights score on the held-out split (28 and padded 32)
    blob = torch.load(classifier_cache.classifier_path(), weights_only=True)
    assert blob["accuracy"] == info["accuracy"]
    for size in (28, 32):
        x, y = load_mnist("test", size)
        assert (classify_digits(x, trained) == y).float().mean().item() == pytest.approx(info["accuracy"], abs=1e-6)
    # negative control: the same measure on an untrained network is near chance
    torch.manual_seed(0)
    assert (classify_digits(x, DigitClassifier().eval()) == y).float().mean().item() < 0.5
    assert not list(classifier_cache_dir.glob("*.tmp"))  # the atomic write left no temporary file


class _RunsCodeWhenUnpickled:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _RunsCodeWhenUnpickled.ran = True
    return {}


def _corrupt(kind: str, path, good: bytes) -> None:
    if kind == "garbage":
        path.write_bytes(b"not a torch file")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "code":  # a file that would run code if unpickled without weights_only
        with open(path, "wb") as f:
            torch.save({"format": "fastwgan-digit-classifier", "payload": _RunsCodeWhenUnpickled()}, f)
    elif kind == "wrong_version":
        blob = torch.load(path, weights_only=True)
        blob["version"] = -1
        torch.save(blob, path)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "code", "wrong_version"])
def test_corrupt_cache_is_retrained_with_a_warning(kind, classifier_cache_dir, tmp_path, monkeypatch):
    """The retrain path itself is under test, so training is replaced by a fast fake that returns a
    fresh network (the real training is the session fixture's)."""
    monkeypatch.setenv("FASTWGAN_CACHE", str(tmp_path))
    path = classifier_cache.classifier_path()
    src = (classifier_cache_dir / path.name).read_bytes()
    path.write_bytes(src)
    _corrupt(kind, path, src)
    calls = []

    def fake_train(*args, seed=0):
        calls.append(seed)
        torch.manual_seed(123)
        return DigitClassifier().eval(), {"accuracy": 0.5, "n_test": 1000, "train_seconds": 0.0}

    monkeypatch.setattr(classifier_cache, "train_digit_classifier", fake_train)
    with pytest.warns(RuntimeWarning, match="cannot be used.*retraining"):
        model = load_digit_classifier()
    assert calls == [0] and not _RunsCodeWhenUnpickled.ran
    assert digit_classifier_info()["accuracy"] == 0.5
    # the rewritten file is complete and readable; a fresh process (memo cleared) uses it silently
    classifier_cache._load.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_digit_classifier()
    assert calls == [0]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_as_digit_batch_shapes_and_clamp():
    x = torch.rand(4, 1, 28, 28) * 3 - 1
    torch.testing.assert_close(as_digit_batch(x), x.clamp(0, 1), rtol=0, atol=0)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    torch.testing.assert_close(as_digit_batch(padded), as_digit_batch(x), rtol=0, atol=0)
    torch.testing.assert_close(as_digit_batch(x.reshape(4, 784)), as_digit_batch(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="stacked-mnist"):
        as_digit_batch(torch.rand(2, 3, 28, 28))


# --------------------------------------------------------------------------------------------
# image_metrics
# --------------------------------------------------------------------------------------------


def test_image_metrics_mnist_real_noise_and_one_class(trained):
    from fastwgan.data.mnist import load_mnist

    x_train, y_train = load_mnist("train", 28)
    real = image_metrics(x_train[:1000], "mnist")
    assert real["n"] == 1000 and real["classes_covered"] == 10 and real["kl"] < 0.05
    # real training digits score near the floor (the floor is exactly such a sample), far below noise
    assert real["fd"] < 2 * real["fd_floor"]
    noise = image_metrics(torch.rand(1000, 1, 28, 28), "mnist")
    assert noise["fd"] > 20 * noise["fd_floor"] and noise["fd_floor"] == real["fd_floor"]
    # FD's finite-sample bias: the floor at n=200 is above the floor at n=1000
    assert image_metrics(x_train[:200], "mnist")["fd_floor"] > real["fd_floor"]
    # one digit only: one class (the 5 % threshold allows for the classifier's stray errors), KL ~ log 10
    ones = x_train[y_train == 1]
    one = image_metrics(ones, "mnist", min_frac=0.05)
    assert one["classes_covered"] == 1 and one["kl"] > math.log(10) - 0.2
    # 32x32 (padded) digits measure exactly as 28x28, flat (N, 784) too
    assert image_metrics(torch.nn.functional.pad(x_train[:1000], (2, 2, 2, 2)), "mnist") == real
    assert image_metrics(x_train[:1000].reshape(1000, 784), "mnist") == real


def test_image_metrics_out_of_range_and_nonfinite(trained):
    from fastwgan.data.mnist import load_mnist

    x = load_mnist("test", 28)[0][:300]
    over = x * 3 - 1  # a generator overshooting [0, 1]: measured as it would be shown (clamped)
    assert image_metrics(over, "mnist") == image_metrics(over.clamp(0, 1), "mnist")
    # a tanh generator's [-1, 1] samples, with the range stated, measure as the [0, 1] digits
    # (greys quantised to multiples of 1/64 so that x * 2 - 1 and back are exact in float32)
    q = torch.round(x * 64) / 64
    assert image_metrics(q * 2 - 1, "mnist", data_range=(-1, 1)) == image_metrics(q, "mnist")
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[7, 0, 3, 3] = bad
        with pytest.warns(RuntimeWarning, match="1 of the 300 generated mnist samples are NaN or inf"):
            out = image_metrics(y, "mnist")
        assert math.isnan(out["fd"]) and math.isnan(out["kl"]) and math.isnan(out["classes_covered"])
        assert out["nonfinite_frac"] == 1 / 300 and math.isfinite(out["fd_floor"])
    with pytest.raises(ValueError, match="channels=3"):
        image_metrics(x, "stacked-mnist")
    with pytest.raises(ValueError, match="image metrics exist for"):
        image_metrics(x, "cifar10")


def test_stacked_mnist_channels_are_classified_separately(trained):
    from fastwgan.data.mnist import stacked_mnist_batch
    from fastwgan.imagemetrics.evaluate import _stacked_features

    x, modes = stacked_mnist_batch(2000, torch.Generator().manual_seed(3), 28, "test")
    _, labels = _stacked_features(x, trained)
    agree = (stacked_mode_ids(labels) == modes).float().mean().item()
    # per-digit held-out accuracy a >= 0.95 -> all three right with probability a^3 >= 0.857
    # (sd of the mean over 2000 samples ~ 0.008); reversing the channels must break it
    assert agree > 0.8
    assert (stacked_mode_ids(labels.flip(1)) == modes).float().mean().item() < 0.2
    out = image_metrics(x, "stacked-mnist")
    true = stacked_modes(modes)
    assert abs(out["modes_covered"] - true["modes_covered"]) <= 0.1 * true["modes_covered"]
    assert out["fd"] < 2 * out["fd_floor"]
    # a generator that puts the same digit triple everywhere: one mode (+ classifier strays)
    same = x[:1].expand(500, -1, -1, -1)
    collapsed = image_metrics(same, "stacked-mnist")
    assert collapsed["modes_covered"] == 1 and collapsed["kl"] == pytest.approx(math.log(1000))
    assert collapsed["fd"] > 10 * collapsed["fd_floor"]


# --------------------------------------------------------------------------------------------
# FID / KID / IS through torchmetrics
# --------------------------------------------------------------------------------------------


class _Features(torch.nn.Module):
    def __init__(self, clf):
        super().__init__()
        self.clf = clf

    def forward(self, x):
        return digit_features(x, self.clf)


class _Logits(_Features):
    def forward(self, x):
        return self.clf(as_digit_batch(x))


def test_fid_kid_is_with_the_digit_classifier(trained):
    from fastwgan.data.mnist import load_mnist
    from fastwgan.imagemetrics import feature_stats

    real = load_mnist("test", 28)[0][:500]
    other = load_mnist("train", 28)[0][:500]
    noise = torch.rand(500, 1, 28, 28)
    kw = {"feature_extractor": _Features(trained), "logits_extractor": _Logits(trained), "kid_subset_size": 250,
          "kid_subsets": 20}
    state = torch.get_rng_state()
    same = fid_kid_is(other, real, **kw)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG stream is untouched
    # torchmetrics' FID equals fastwgan's Frechet distance on the same features, up to the float64
    # rounding of the trace of a square root: these ReLU features have dead units, so S1 S2 has
    # (near-)zero eigenvalues, each computed to ~d eps ||M|| and so, through sqrt, only to
    # sqrt(d eps ||M||); 2 Tr sums d of them, in each of the two implementations
    mu1, s1 = feature_stats(digit_features(other, trained))
    mu2, s2 = feature_stats(digit_features(real, trained))
    ours = frechet_distance(mu1, s1, mu2, s2)
    d, norm = s1.shape[0], np.linalg.norm(s1 @ s2, 2)
    assert abs(same["fid"] - ours) <= 2 * 2 * d * math.sqrt(d * EPS64 * norm)
    bad = fid_kid_is(noise, real, **kw)
    assert bad["fid"] > 20 * same["fid"] and bad["kid_mean"] > 20 * abs(same["kid_mean"]) + 10 * same["kid_std"]
    # IS: real digits are confidently and evenly classified (IS near 10); one class -> IS near 1
    assert same["is_mean"] > 7
    ones = load_mnist("train", 28)
    assert fid_kid_is(ones[0][ones[1] == 1][:300], real, **kw)["is_mean"] < 1.5
    # out-of-range images are clamped, NaN is refused with a clear error
    over = other[:100] * 3 - 1
    assert fid_kid_is(over, real[:100], **kw) == fid_kid_is(over.clamp(0, 1), real[:100], **kw)
    with pytest.raises(ValueError, match="NaN or inf"):
        fid_kid_is(torch.full_like(real, float("nan")), real, **kw)


def _no_network(*args, **kwargs):
    raise AssertionError("a network download was attempted")


def test_inception_missing_weights_error_is_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    assert inception_weights_path() == expected
    x = torch.rand(4, 1, 28, 28)
    with pytest.raises(InceptionUnavailableError) as e:
        fid_kid_is(x, x)
    msg = str(e.value)
    assert str(expected) in msg and "inception_weights=" in msg and "feature_extractor=" in msg
    # a given file that would run code when unpickled is refused before anything unpickles it
    evil = tmp_path / "evil.pth"
    torch.save({"w": _RunsCodeWhenUnpickled()}, evil)
    with pytest.raises(InceptionUnavailableError, match="cannot be read safely"):
        fid_kid_is(x, x, inception_weights=evil)
    assert not _RunsCodeWhenUnpickled.ran


def test_inception_names_a_missing_torch_fidelity(tmp_path, monkeypatch):
    weights = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    monkeypatch.setitem(__import__("sys").modules, "torch_fidelity", None)  # import raises ImportError
    monkeypatch.setitem(__import__("sys").modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(InceptionUnavailableError, match="pip install torch-fidelity") as e:
        fid_kid_is(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8), inception_weights=weights)
    assert "does not exist" not in str(e.value)  # the weights were found; only the package is named


def test_inception_path_glue(monkeypatch):
    """The Inception branch of fid_kid_is with a stand-in for the network (the real weights are
    not downloadable here): gray images go in as uint8 RGB, and its (features, logits) tuple is
    split between FID / KID and IS."""
    from fastwgan.imagemetrics import inception as inc

    seen = []

    class FakeInception(torch.nn.Module):
        def forward(self, u8):
            seen.append((u8.dtype, tuple(u8.shape[1:])))
            f = u8.float().mean((2, 3))  # (N, 3) per-channel means
            return f, torch.cat([f, -f], 1)

    monkeypatch.setattr(inc, "inception_v3", lambda weights=None: FakeInception())
    x = torch.rand(6, 1, 5, 5)
    out = fid_kid_is(x, torch.rand(6, 1, 5, 5), batch=4, kid_subset_size=6, kid_subsets=2, is_splits=2)
    assert set(out) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std"}
    assert seen[0] == (torch.uint8, (3, 5, 5)) and len(seen) == 4  # 6 + 6 images in batches of 4 and 2
    with pytest.raises(ValueError, match="logits_extractor= goes with feature_extractor="):
        fid_kid_is(x, x, logits_extractor=torch.nn.Identity())
