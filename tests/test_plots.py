"""Tests of fastwgan.plots: files are valid PNGs with real content; the contour calls the critic
on a 100x100 grid in eval mode and restores its mode."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fastwgan.data import toy_sample
from fastwgan.models import MLPCritic
from fastwgan.plots import as_images, plot_learning_curve, plot_toy, save_image_grid, save_samples


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        arr = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).reshape(-1, 3)
    n_colors = len(torch.unique(arr, dim=0))
    assert n_colors > 1  # not a blank image
    return arr, n_colors, im.size


class _Spy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = MLPCritic(width=8)
        self.calls = []

    def forward(self, x, y=None):
        self.calls.append((tuple(x.shape), self.training, torch.is_grad_enabled()))
        return self.net(x)


def test_plot_toy_with_and_without_critic(tmp_path):
    g = torch.Generator().manual_seed(0)
    real, fake = toy_sample("8gaussians", 500, g), torch.randn(500, 2, generator=g) * 0.5
    p0 = plot_toy(fake, real, path=str(tmp_path / "a" / "toy.png"), title="no critic")
    _, colors0, _ = _png(p0)
    spy = _Spy().train()
    p1 = plot_toy(fake, real, spy, str(tmp_path / "toy_critic.png"), title="step 10")
    _, colors1, _ = _png(p1)
    assert spy.calls == [((100 * 100, 2), False, False)]  # one grid evaluation, eval mode, no grad
    assert spy.training  # mode restored
    assert colors1 > colors0  # the contour adds a colour map under the points
    spy.eval()
    plot_toy(fake, real, spy, str(tmp_path / "t2.png"))
    assert not spy.training


def test_plot_toy_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plot_toy(torch.zeros(5, 3), torch.zeros(5, 2), path=str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="NaN"):
        plot_toy(torch.full((5, 2), float("nan")), torch.zeros(5, 2), path=str(tmp_path / "x.png"))


def test_save_image_grid_layout_and_upscale(tmp_path):
    # 10 digits-like 8x8 gray images: image i is constant -1 + 2*i/9 -> gray level round(255*i/9)
    imgs = torch.stack([torch.full((1, 8, 8), -1 + 2 * i / 9) for i in range(10)])
    p = save_image_grid(imgs, str(tmp_path / "grid.png"), nrow=4)
    with Image.open(p) as im:
        assert im.mode == "L"
        # cells upscaled 8 -> 32 px (nearest, factor 4), 2 px padding: 4 cols x 3 rows
        assert im.size == (4 * 34 + 2, 3 * 34 + 2)
        px = im.load()
        for i in range(10):
            r, c = divmod(i, 4)
            x0, y0 = 2 + c * 34, 2 + r * 34
            want = round((imgs[i, 0, 0, 0].item() + 1) * 127.5)
            # nearest upscaling of a constant cell: every pixel of the 32x32 block equals the level
            assert {px[x0 + dx, y0 + dy] for dx in (0, 13, 31) for dy in (0, 17, 31)} == {want}
        assert px[0, 0] == 0  # black padding
    _png(p)
    rgb = torch.rand(5, 3, 32, 32) * 2 - 1
    p2 = save_image_grid(rgb, str(tmp_path / "rgb.png"))
    with Image.open(p2) as im:
        assert im.mode == "RGB" and im.size == (5 * 34 + 2, 34 + 2)  # 32 px needs no upscale
    _png(p2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        save_image_grid(torch.zeros(3, 8, 8), str(tmp_path / "bad.png"))


def test_plot_learning_curve(tmp_path):
    hist = [{"step": s, "w_estimate": 1.0 / (1 + s)} for s in range(0, 200, 10)]
    p = plot_learning_curve(hist, str(tmp_path / "lc.png"))
    _, _, size1 = _png(p)
    hist2 = hist + [{"step": s, "w1": 0.5 / (1 + s), "swd": 0.2} for s in (50, 100, 150)]
    p2 = plot_learning_curve(hist2, str(tmp_path / "lc2.png"))
    _, _, size2 = _png(p2)
    assert size2[1] > 1.5 * size1[1]  # the second panel doubles the figure's height
    with pytest.raises(ValueError, match="non-empty"):
        plot_learning_curve([], str(tmp_path / "e.png"))
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_learning_curve([{"loss": 1.0}], str(tmp_path / "e.png"))


# ----------------------------------------------------------------------------------------------
# save_samples: the end-of-run picture never fails a run
# ----------------------------------------------------------------------------------------------


class _Source:
    def __init__(self, value_range=None, is_toy=False):
        self.value_range, self.is_toy = value_range, is_toy


def test_save_image_grid_draws_in_the_value_range(tmp_path):
    levels = torch.tensor([0.0, 0.5, 1.0]).reshape(3, 1, 1, 1).expand(3, 1, 32, 32)

    def grey(path):
        with Image.open(path) as im:
            return [im.getpixel((2 + 34 * i + 16, 18)) for i in range(3)]

    assert grey(save_image_grid(levels, str(tmp_path / "u.png"), value_range=(0, 1))) == [0, 128, 255]
    # negative control: the same [0, 1] data drawn as if in [-1, 1] has a grey background
    assert grey(save_image_grid(levels, str(tmp_path / "s.png"))) == [128, 191, 255]
    with pytest.raises(ValueError, match="lo < hi"):
        save_image_grid(levels, str(tmp_path / "b.png"), value_range=(1, 0))


def test_save_samples_flat_square_images_are_drawn(tmp_path):
    # the WGAN-GP authors' MNIST generator emits flat (N, 784) samples in [0, 1]
    fake = torch.rand(10, 784)
    fake[0] = 1.0
    p = save_samples(fake, fake, _Source((0.0, 1.0)), str(tmp_path / "flat.png"), nrow=5)
    with Image.open(p) as im:
        # 28 px cells, below min_cell=32, are upscaled x2 to 56 px, with 2 px of padding
        assert im.mode == "L" and im.size == (5 * 58 + 2, 2 * 58 + 2)
        assert im.getpixel((2 + 28, 2 + 28)) == 255  # sample 0 is all white: drawn in [0, 1]
    torch.testing.assert_close(as_images(fake)[3, 0, 5], fake[3, 5 * 28 : 6 * 28], rtol=0, atol=0)  # row-major
    p3 = save_samples(torch.rand(4, 3 * 16 * 16), None, _Source((0.0, 1.0)), str(tmp_path / "rgb.png"))
    with Image.open(p3) as im:
        assert im.mode == "RGB"
    assert as_images(torch.zeros(2, 10)) is None and as_images(torch.zeros(2, 12)) is None  # 12 = 3 * 2 * 2: too small
    assert as_images(torch.zeros(2, 48)).shape == (2, 3, 4, 4)
    assert as_images(torch.zeros(2, 5, 5)).shape == (2, 1, 5, 5)


def test_save_samples_out_of_range_is_clamped_not_crashed(tmp_path):
    fake = torch.stack([torch.full((1, 8, 8), 5.0), torch.full((1, 8, 8), -3.0), torch.full((1, 8, 8), 0.25)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # drawing out-of-range samples is not worth a warning
        p = save_samples(fake, fake, _Source((0.0, 1.0)), str(tmp_path / "oor.png"))
    with Image.open(p) as im:
        assert [im.getpixel((2 + 34 * i + 16, 18)) for i in range(3)] == [255, 0, 64]


def test_save_samples_warns_and_returns_none_when_it_cannot_draw(tmp_path):
    nan = torch.rand(4, 1, 8, 8)
    nan[2, 0, 3, 3] = float("nan")
    with pytest.warns(RuntimeWarning, match="1 NaN or inf.*diverged.*results are kept"):
        assert save_samples(nan, nan, _Source((0.0, 1.0)), str(tmp_path / "nan.png")) is None
    assert not (tmp_path / "nan.png").exists()
    with pytest.warns(RuntimeWarning, match=r"shape \(4, 5\) are neither"):
        assert save_samples(torch.rand(4, 5), None, _Source(), str(tmp_path / "odd.png")) is None
    with pytest.warns(RuntimeWarning, match="NaN or inf"):  # toy points too
        assert save_samples(torch.full((5, 2), float("nan")), torch.zeros(5, 2), _Source(is_toy=True),
                            str(tmp_path / "toy.png")) is None
    (tmp_path / "taken.png").mkdir()  # the path is a folder: saving fails, the call does not
    with pytest.warns(RuntimeWarning, match="drawing failed"):
        assert save_samples(torch.rand(4, 1, 8, 8), None, _Source((0.0, 1.0)), str(tmp_path / "taken.png")) is None


def test_save_samples_toy_points_with_critic(tmp_path):
    g = torch.Generator().manual_seed(0)
    real, fake = toy_sample("8gaussians", 200, g), torch.randn(200, 2, generator=g)
    spy = _Spy()
    p = save_samples(fake, real, _Source(is_toy=True), str(tmp_path / "toy.png"), critic=spy, title="t")
    _png(p)
    assert len(spy.calls) == 1
