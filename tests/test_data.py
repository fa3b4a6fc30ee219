"""Tests of fastwgan.data: gan_toy's constants, digits, image folders, DataSource streams,
resumption and input validation."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fastwgan.data import (
    BUILTIN_DATASETS,
    DEFAULT_IMAGE_SIZE,
    TOY_DATASETS,
    DataSource,
    as_data_source,
    folder_channels,
    load_digits,
    load_image_folder,
    toy_centers,
    toy_sample,
    toy_std,
)

from _tiny import quick_train


def test_names():
    assert TOY_DATASETS == ("8gaussians", "25gaussians", "swissroll")
    assert BUILTIN_DATASETS == TOY_DATASETS + ("digits", "mnist", "stacked-mnist")


def test_toy_centers_match_gan_toy_constants():
    r = 1 / math.sqrt(2)
    raw8 = torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (r, -r), (-r, r), (-r, -r)], dtype=torch.float64) * 2
    torch.testing.assert_close(toy_centers("8gaussians"), (raw8 / 1.414).float())
    raw25 = torch.tensor([(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)], dtype=torch.float64)
    torch.testing.assert_close(toy_centers("25gaussians"), (raw25 / 2.828).float())
    assert toy_std("8gaussians") == 0.02 / 1.414
    assert toy_std("25gaussians") == 0.05 / 2.828
    with pytest.raises(ValueError, match="swissroll"):
        toy_std("swissroll")
    with pytest.raises(ValueError, match="choose one of"):
        toy_centers("9gaussians")


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians"])
def test_toy_gaussian_mixture_statistics(name):
    n = 20000
    x = toy_sample(name, n, torch.Generator().manual_seed(1))
    assert x.shape == (n, 2) and x.dtype == torch.float32
    c, std = toy_centers(name), toy_std(name)
    d = torch.cdist(x.double(), c.double())
    nearest = d.argmin(1)
    # residual to the nearest center is the gaussian noise (modes are >= 1.08 apart, noise <= 6 std = 0.09)
    res = x.double() - c.double()[nearest]
    # sample std of n iid normals has relative sd 1/sqrt(2n) = 0.5 % (n=20000 points, 2 coords -> 40000
    # values): 5 sd -> 2.5 %
    assert abs(res.std().item() / std - 1) < 5 / math.sqrt(2 * 2 * n)
    assert res.abs().max().item() < 6 * std
    # uniform over k centers: each count is Binomial(n, 1/k); 5 sd band
    k = c.shape[0]
    counts = torch.bincount(nearest, minlength=k).double()
    sd = math.sqrt(n * (1 / k) * (1 - 1 / k))
    assert (counts - n / k).abs().max().item() < 5 * sd


def test_swissroll_matches_sklearn_with_derived_seed():
    from sklearn.datasets import make_swiss_roll

    g = torch.Generator().manual_seed(3)
    x = toy_sample("swissroll", 500, g)
    g2 = torch.Generator().manual_seed(3)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g2).item())
    ref = make_swiss_roll(n_samples=500, noise=0.25, random_state=seed)[0][:, [0, 2]] / 7.5
    torch.testing.assert_close(x, torch.from_numpy(ref).float())
    # reproducible from the generator state, different on the next draw
    assert torch.equal(toy_sample("swissroll", 500, torch.Generator().manual_seed(3)), x)
    assert not torch.equal(toy_sample("swissroll", 500, g), x)


def test_toy_sample_bad_args():
    with pytest.raises(ValueError, match="choose one of"):
        toy_sample("moons", 10)
    with pytest.raises(ValueError, match="positive int"):
        toy_sample("8gaussians", 0)


def test_load_digits():
    from sklearn.datasets import load_digits as sk

    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    d = sk()
    torch.testing.assert_close(x[5, 0], torch.from_numpy(d.images[5]).float() / 8 - 1, rtol=0, atol=0)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert set(y.tolist()) == set(range(10))
    x32, y32 = load_digits(size=32)
    assert x32.shape == (1797, 1, 32, 32) and torch.equal(y32, y)
    assert x32.min().item() >= -1 and x32.max().item() <= 1
    # bilinear upsampling preserves the mean up to border effects: a constant image stays constant
    torch.testing.assert_close(x32.mean((2, 3)), x.mean((2, 3)), atol=0.05, rtol=0)


def _write_img(path, color, size=(12, 8)):
    from PIL import Image

    Image.new("RGB", size, color).save(path)


def test_load_image_folder_unlabelled_and_labelled(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    # a 12x8 image: left 2 columns red, centre 8x8 green, right 2 columns red -> center crop keeps green
    from PIL import Image

    im = Image.new("RGB", (12, 8), (255, 0, 0))
    im.paste((0, 255, 0), (2, 0, 10, 8))
    im.save(flat / "a.png")
    _write_img(flat / "b.JPG", (0, 0, 255))
    (flat / "notes.txt").write_text("not an image")
    x, y = load_image_folder(str(flat), 4)
    assert y is None and x.shape == (2, 3, 4, 4)
    torch.testing.assert_close(x[0], torch.tensor([-1.0, 1.0, -1.0])[:, None, None].expand(3, 4, 4))
    xg, _ = load_image_folder(str(flat), 4, channels=1)
    assert xg.shape == (2, 1, 4, 4)

    lab = tmp_path / "lab"
    for cls, col in (("cat", (255, 255, 255)), ("dog", (0, 0, 0))):
        (lab / cls).mkdir(parents=True)
        for i in range(3):
            _write_img(lab / cls / f"{i}.png", col)
    x, y = load_image_folder(str(lab), 8)
    assert x.shape == (6, 3, 8, 8) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.all(x[:3] == 1) and torch.all(x[3:] == -1)


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(str(tmp_path / "nope"), 8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no images found.*\.png"):
        load_image_folder(str(tmp_path / "empty"), 8)
    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    _write_img(mixed / "top.png", (1, 2, 3))
    _write_img(mixed / "a" / "in.png", (1, 2, 3))
    with pytest.raises(ValueError, match="both directly and in subfolders"):
        load_image_folder(str(mixed), 8)


def _write_grey(path, value, size=(12, 8), mode="L"):
    from PIL import Image

    Image.new(mode, size, value).save(path)


@pytest.mark.parametrize("mode, value", [("L", 200), ("LA", (200, 255)), ("I;16", 40000), ("1", 1)])
def test_greyscale_folder_loads_as_one_channel(tmp_path, mode, value):
    """Every file greyscale by its PIL mode -> (N, 1, s, s), unlabelled or one subfolder per class;
    ``channels=`` still overrides the detection."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        _write_grey(flat / f"{i}.png", value, mode=mode)
    assert folder_channels(str(flat)) == 1
    x, y = load_image_folder(str(flat), 8)
    assert y is None and x.shape == (3, 1, 8, 8)
    assert load_image_folder(str(flat), 8, channels=3)[0].shape == (3, 3, 8, 8)
    lab = tmp_path / "lab"
    for cls in ("a", "b"):
        (lab / cls / "nested").mkdir(parents=True)
        _write_grey(lab / cls / "nested" / "0.png", value, mode=mode)
    x, y = load_image_folder(str(lab), 4)
    assert x.shape == (2, 1, 4, 4) and y.tolist() == [0, 1]


def test_l_mode_pixels_load_exactly(tmp_path):
    """An L image of value v loads as v / 127.5 - 1 (what its RGB copy loads in each channel)."""
    (tmp_path / "g").mkdir()
    _write_grey(tmp_path / "g" / "a.png", 51)
    x, _ = load_image_folder(str(tmp_path / "g"), 4)
    torch.testing.assert_close(x, torch.full((1, 1, 4, 4), 51 / 127.5 - 1), rtol=0, atol=0)


@pytest.mark.parametrize("labelled", [False, True])
def test_one_colour_image_among_greys_makes_the_folder_rgb(tmp_path, labelled):
    """Negative control: one RGB (or palette) file, anywhere load_image_folder looks, makes 3 channels."""
    for odd_mode in ("RGB", "P"):
        root = tmp_path / f"{odd_mode}-{labelled}"
        dirs = [root / "a", root / "b"] if labelled else [root]
        for d in dirs:
            d.mkdir(parents=True)
            for i in range(3):
                _write_grey(d / f"{i}.png", 90)
        _write_grey(dirs[-1] / "z.png", (90, 90, 90) if odd_mode == "RGB" else 0, mode=odd_mode)
        (root / "skip.txt").write_text("not an image")  # files load_image_folder skips do not count
        assert folder_channels(str(root)) == 3
        assert load_image_folder(str(root), 8)[0].shape == ((7 if labelled else 4), 3, 8, 8)


def test_rgb_folder_stays_rgb_and_listing_errors_are_shared(tmp_path):
    (tmp_path / "rgb").mkdir()
    for i in range(2):
        _write_img(tmp_path / "rgb" / f"{i}.png", (10, 20, 30))
    assert folder_channels(str(tmp_path / "rgb")) == 3
    assert load_image_folder(str(tmp_path / "rgb"), 8)[0].shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="does not exist"):
        folder_channels(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        folder_channels(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="channels must be 1"):
        load_image_folder(str(tmp_path / "rgb"), 8, channels=2)


@pytest.mark.parametrize("grey", [True, False])
def test_folder_preset_models_match_the_loaded_channels(tmp_path, grey):
    """End to end: the preset's generator and critic take the channels the folder loads as, and
    two training steps run (they would fail in the probe if the two disagreed)."""
    import fastwgan

    for i in range(4):
        if grey:
            _write_grey(tmp_path / f"{i}.png", 60 * i)
        else:
            _write_img(tmp_path / f"{i}.png", (60 * i, 0, 255 - 60 * i))
    src = as_data_source(str(tmp_path), batch_size=2, seed=0, image_size=8)
    want = 1 if grey else 3
    assert src.sample_shape == (want, 8, 8)
    res = quick_train(None, None, str(tmp_path), steps=2, image_size=8, batch_size=4, precision="fp32", compile=False,
                      out=None)
    assert res.steps_done == 2
    assert res.generator.channels == want and res.critic.channels == want
    assert res.sample(3).shape == (3, want, 8, 8)


# ----------------------------------------------------------------------------------------------
# DataSource
# ----------------------------------------------------------------------------------------------


def _stream(src: DataSource, sizes):
    return [src.next_batch(b) for b in sizes]


def _eq_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb)
        assert (ya is None and yb is None) or torch.equal(ya, yb)


def test_toy_source_stream_resume_and_eval_independence():
    src = as_data_source("8gaussians", batch_size=64, seed=5)
    assert src.is_toy and src.sample_shape == (2,) and src.n_classes == 0 and src.name == "8gaussians"
    x, y = src.next_batch(64)
    assert x.shape == (64, 2) and y is None
    state = src.state_dict()
    after = _stream(src, [64, 7])
    # sample_real uses its own generator: drawing from it does not change the training stream
    src2 = as_data_source("8gaussians", batch_size=64, seed=5)
    src2.next_batch(64)
    src2.sample_real(100)
    _eq_batches(_stream(src2, [64, 7]), after)
    # resume
    src3 = as_data_source("8gaussians", batch_size=64, seed=99)
    src3.load_state_dict(state)
    _eq_batches(_stream(src3, [64, 7]), after)
    # same seed -> same stream; different seed -> different
    assert torch.equal(as_data_source("swissroll", batch_size=8, seed=1).next_batch(8)[0],
                       as_data_source("swissroll", batch_size=8, seed=1).next_batch(8)[0])
    assert not torch.equal(as_data_source("25gaussians", batch_size=8, seed=1).next_batch(8)[0],
                           as_data_source("25gaussians", batch_size=8, seed=2).next_batch(8)[0])


def test_tensor_source_epochs_without_replacement():
    n = 10
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)
    y = torch.arange(n) % 4
    src = as_data_source((x, y), batch_size=4, seed=0)
    assert src.sample_shape == (3,) and src.n_classes == 4 and not src.is_toy
    seen = []
    for _ in range(5):  # 20 samples = exactly 2 epochs, batches cross the epoch boundary at 10
        xb, yb = src.next_batch(4)
        assert xb.shape == (4, 3)
        assert torch.equal(yb, xb[:, 0].long() % 4)  # labels stay attached to their samples
        seen += xb[:, 0].long().tolist()
    assert sorted(seen[:10]) == list(range(n)) and sorted(seen[10:]) == list(range(n))
    assert seen[:10] != seen[10:]  # reshuffled (probability 1/10! of a false failure)
    # a batch larger than the data spans several epochs and stays without replacement per epoch
    big, _ = as_data_source(x, batch_size=25, seed=1).next_batch(25)
    ids = big[:, 0].long().tolist()
    assert sorted(ids[:10]) == list(range(n)) and sorted(ids[10:20]) == list(range(n))


def test_tensor_source_resume_exact_and_sample_real():
    x = torch.randn(37, 2)
    src = as_data_source(x, batch_size=8, seed=3)
    _stream(src, [8, 8, 8, 8])  # crosses the first epoch end (37)
    state = src.state_dict()
    after = _stream(src, [8] * 10)
    src2 = as_data_source(x, batch_size=8, seed=123)
    src2.load_state_dict(state)
    _eq_batches(_stream(src2, [8] * 10), after)
    # sample_real: subset without replacement when n <= N, with replacement above
    r, _ = src.sample_real(37)
    assert torch.equal(torch.sort(r[:, 0]).values, torch.sort(x[:, 0]).values)
    r, _ = src.sample_real(100)
    assert r.shape == (100, 2) and all(any(torch.equal(ri, xj) for xj in x) for ri in r[:10])
    with pytest.raises(ValueError, match="resume with the same data"):
        as_data_source(torch.randn(5, 2), batch_size=2, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="resume with the same data"):
        as_data_source("8gaussians", batch_size=2, seed=0).load_state_dict(state)


def test_dataset_source():
    x = torch.randn(20, 1, 4, 4)
    y = torch.randint(0, 3, (20,))
    y[0] = 2
    src = as_data_source(TensorDataset(x, y), batch_size=6, seed=0)
    assert src.sample_shape == (1, 4, 4) and src.n_classes == 3
    xb, yb = src.next_batch(6)
    idx = [int(torch.nonzero((x == xi).all(dim=(1, 2, 3)))[0]) for xi in xb]
    assert torch.equal(yb, y[idx])
    # same data through a tensor pair gives the same stream (same seed -> same permutation)
    _eq_batches(_stream(as_data_source(TensorDataset(x, y), batch_size=6, seed=4), [6, 6, 6, 6]),
                _stream(as_data_source((x, y), batch_size=6, seed=4), [6, 6, 6, 6]))
    s = as_data_source(TensorDataset(x), batch_size=6, seed=0)
    assert s.n_classes == 0 and s.next_batch(3)[1] is None


@pytest.mark.parametrize("with_gen", [False, True])
def test_dataloader_source_rechunks_and_resumes_exactly(with_gen):
    x = torch.arange(23, dtype=torch.float32)[:, None]
    y = torch.arange(23) % 5

    def loader():
        g = torch.Generator().manual_seed(11) if with_gen else None
        return DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True, generator=g)

    torch.manual_seed(0)
    src = as_data_source(loader(), batch_size=7, seed=0)
    assert src.sample_shape == (1,) and src.n_classes == 5
    first = _stream(src, [7, 7, 7, 7])  # 28 samples: crosses the end of the first pass (23)
    for xb, yb in first:
        assert xb.shape == (7, 1) and torch.equal(yb, xb[:, 0].long() % 5)
    state = src.state_dict()
    torch.manual_seed(1234)  # training code consumes the global RNG between save and resume
    after = _stream(src, [7] * 6)
    # resume in a fresh loader and a different global RNG state
    torch.manual_seed(999)
    src2 = as_data_source(loader(), batch_size=7, seed=0)
    _stream(src2, [7])
    src2.load_state_dict(state)
    torch.manual_seed(1234)
    _eq_batches(_stream(src2, [7] * 6), after)
    # every pass is a permutation: the first 23 ids drawn are all distinct
    ids = torch.cat([b[0] for b in first])[:, 0].long().tolist()
    assert sorted(ids[:23]) == list(range(23))
    # sample_real does not disturb the stream and is the same subset each call
    a, _ = src.sample_real(30)
    b, _ = src.sample_real(30)
    assert a.shape == (30, 1) and torch.equal(a, b)


def test_iterables_and_sampler():
    batches = [torch.randn(4, 2) for _ in range(3)]
    src = as_data_source(batches, batch_size=5, seed=0)
    got = torch.cat([src.next_batch(5)[0] for _ in range(6)])  # 30 = 2.5 passes over 12
    torch.testing.assert_close(got, torch.cat(batches * 3)[:30], rtol=0, atol=0)

    gen = (torch.full((3, 2), float(i)) for i in range(4))
    one = as_data_source(gen, batch_size=3, seed=0)
    assert [one.next_batch(3)[0][0, 0].item() for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="one-shot iterator cannot be re-iterated"):
        one.next_batch(3)
    with pytest.raises(ValueError, match="cannot be checkpointed"):
        as_data_source(iter([torch.zeros(2, 2)]), batch_size=2, seed=0).state_dict()

    calls = []

    def sampler(n):
        calls.append(n)
        return torch.randn(n, 3), torch.arange(n) % 4

    s = as_data_source(sampler, batch_size=16, seed=0)
    assert s.sample_shape == (3,) and s.n_classes == 4 and calls == [16]
    xb, yb = s.next_batch(9)
    assert xb.shape == (9, 3) and yb.shape == (9,) and yb.dtype == torch.int64 and calls[-1] == 9
    with pytest.raises(ValueError, match="must return 5 samples"):
        as_data_source(lambda n: torch.randn(3, 2), batch_size=4, seed=0).next_batch(5)
    # later batches keep the first one's layout: labels always or never, and below n_classes
    flip = iter([True, False])

    def labels_once(n):
        return (torch.randn(n, 2), torch.zeros(n, dtype=torch.long)) if next(flip) else torch.randn(n, 2)

    s = as_data_source(labels_once, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="lacks labels.*every time"):
        s.next_batch(4)
    hi = iter([1, 2])  # the first id past the inferred classes
    s = as_data_source(lambda n: (torch.randn(n, 2), torch.full((n,), next(hi))), batch_size=4, seed=0)
    assert s.n_classes == 2
    with pytest.raises(ValueError, match="label 2 is out of range for n_classes=2.*pass n_classes="):
        s.next_batch(4)


def test_image_size_resizes_and_digits_builtin(tmp_path):
    src = as_data_source("digits", batch_size=8, seed=0, image_size=16)
    assert src.sample_shape == (1, 16, 16) and src.n_classes == 10 and src.name == "digits"
    t = as_data_source(torch.zeros(5, 3, 8, 8), batch_size=2, seed=0, image_size=32)
    assert t.sample_shape == (3, 32, 32)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        _write_img(tmp_path / "imgs" / f"{i}.png", (i * 50, 0, 0))
    f = as_data_source(str(tmp_path / "imgs"), batch_size=2, seed=0, image_size=16)
    assert f.sample_shape == (3, 16, 16) and f.n_classes == 0


def test_default_image_size_and_bad_sizes(tmp_path):
    assert DEFAULT_IMAGE_SIZE == 32
    (tmp_path / "imgs").mkdir()
    _write_img(tmp_path / "imgs" / "a.png", (200, 0, 0))
    assert as_data_source(str(tmp_path / "imgs"), batch_size=1, seed=0).sample_shape == (3, 32, 32)
    for bad in (0, -8, 2.5, True):
        for data in ("digits", torch.zeros(4, 1, 8, 8), str(tmp_path / "imgs")):
            with pytest.raises(ValueError, match="image_size must be a positive int"):
                as_data_source(data, batch_size=2, seed=0, image_size=bad)
    with pytest.raises(ValueError, match="size must be a positive int"):
        load_image_folder(str(tmp_path / "imgs"), 0)


def test_value_range_detected_or_given(tmp_path):
    kw = dict(batch_size=4, seed=0)
    assert as_data_source(torch.rand(8, 1, 4, 4), **kw).value_range == (0.0, 1.0)
    assert as_data_source(torch.rand(8, 1, 4, 4) * 2 - 1, **kw).value_range == (-1.0, 1.0)
    # a [-1, 1] set whose first stream batch happens to be non-negative still follows the data it saw;
    # the caller overrides with value_range=
    assert as_data_source([torch.rand(4, 2)], **kw).value_range == (0.0, 1.0)
    assert as_data_source([torch.rand(4, 2)], value_range=(-1, 1), **kw).value_range == (-1.0, 1.0)
    assert as_data_source(lambda n: -torch.rand(n, 2), **kw).value_range == (-1.0, 1.0)
    assert as_data_source(TensorDataset(torch.rand(8, 2)), **kw).value_range == (0.0, 1.0)
    assert as_data_source("digits", **kw).value_range == (-1.0, 1.0)
    assert as_data_source("8gaussians", **kw).value_range is None  # points, not pixels
    for bad in ((1, 0), (0,), "01", 1.0, (0, float("nan"))):
        with pytest.raises(ValueError, match="value_range"):
            as_data_source(torch.rand(8, 2), value_range=bad, **kw)


def test_validation_errors_name_problem_and_fix():
    kw = dict(batch_size=4, seed=0)
    with pytest.raises(ValueError, match="empty"):
        as_data_source(torch.zeros(0, 2), **kw)
    with pytest.raises(ValueError, match="empty"):
        as_data_source(TensorDataset(torch.zeros(0, 2)), **kw)
    with pytest.raises(ValueError, match="no batches"):
        as_data_source([], **kw)
    bad = torch.randn(100, 2)
    bad[73, 1] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or inf.*clean"):
        as_data_source(bad, **kw)
    bad[73, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        as_data_source((bad, torch.zeros(100, dtype=torch.long)), **kw)
    with pytest.raises(ValueError, match="NaN or inf"):
        as_data_source([bad], **kw)
    with pytest.raises(ValueError, match="NaN or inf"):
        as_data_source(lambda n: torch.full((n, 2), float("nan")), **kw)
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar10'.*8gaussians.*digits.*mnist.*folder"):
        as_data_source("cifar10", **kw)
    with pytest.raises(TypeError, match="unsupported data type int.*DataLoader.*callable"):
        as_data_source(42, **kw)
    import numpy as np  # numpy arrays are accepted (tests/test_dropin.py); the ambiguous layout is refused

    with pytest.raises(ValueError, match=r"could both be the channels.*torch\.from_numpy\(x\)\.permute\(0, 3, 1, 2\)"):
        as_data_source(np.zeros((4, 3, 5, 3), dtype=np.float32), **kw)
    with pytest.raises(TypeError, match="not numeric data"):
        as_data_source(np.array([["a", "b"]] * 4, dtype=object), **kw)
    with pytest.raises(ValueError, match="3 labels for 5 samples"):
        as_data_source((torch.randn(5, 2), torch.zeros(3, dtype=torch.long)), **kw)
    with pytest.raises(TypeError, match="integer class ids"):
        as_data_source((torch.randn(5, 2), torch.zeros(5)), **kw)
    with pytest.raises(ValueError, match="negative label"):
        as_data_source((torch.randn(5, 2), torch.tensor([0, 1, -1, 0, 0])), **kw)
    with pytest.raises(ValueError, match="out of range for n_classes=2"):
        as_data_source((torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 0])), n_classes=2, **kw)
    with pytest.raises(TypeError, match=r"floating-point.*\[0, 1\].*255.*\[-1, 1\].*127.5"):
        as_data_source(torch.zeros(4, 2, dtype=torch.uint8), **kw)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        as_data_source(torch.zeros(4, 2), batch_size=0, seed=0)
    # int32 labels are accepted and converted; n_classes = max + 1
    s = as_data_source((torch.randn(5, 2), torch.tensor([0, 6, 1, 0, 0], dtype=torch.int32)), **kw)
    assert s.n_classes == 7 and s.next_batch(5)[1].dtype == torch.int64


def test_one_shot_iterator_keeps_first_batch():
    it = iter([torch.full((2, 1), 1.0), torch.full((2, 1), 2.0)])
    src = as_data_source(it, batch_size=2, seed=0)
    assert list(itertools.chain(*[src.next_batch(2)[0][:, 0].tolist() for _ in range(2)])) == [1, 1, 2, 2]


def test_iterable_label_count():
    # a labelled list: n_classes comes from all batches, not just the first
    batches = [(torch.randn(3, 2), torch.tensor([0, 1, 0])), (torch.randn(3, 2), torch.tensor([4, 1, 0]))]
    assert as_data_source(batches, batch_size=3, seed=0).n_classes == 5
    # a DataLoader over a TensorDataset: from the label tensor, even if the first batch lacks the max
    y = torch.tensor([0] * 8 + [6])
    dl = DataLoader(TensorDataset(torch.randn(9, 2), y), batch_size=4)
    assert as_data_source(dl, batch_size=4, seed=0).n_classes == 7
    # a one-shot stream can only infer from its first batch; a later larger label names the fix
    stream = iter(batches)
    s = as_data_source(stream, batch_size=3, seed=0)
    assert s.n_classes == 2
    s.next_batch(3)
    with pytest.raises(ValueError, match="pass n_classes="):
        s.next_batch(3)
    s2 = as_data_source(iter(batches), batch_size=3, seed=0, n_classes=5)
    assert s2.next_batch(6)[1].tolist() == [0, 1, 0, 4, 1, 0]


def test_toy_sample_default_generator_is_torch_global_rng():
    torch.manual_seed(7)
    a = toy_sample("25gaussians", 50)
    torch.manual_seed(7)
    assert torch.equal(toy_sample("25gaussians", 50), a)
    assert not torch.equal(toy_sample("25gaussians", 50), a)
