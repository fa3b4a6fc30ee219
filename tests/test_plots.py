"""Tests of fastwgan.plots: files are valid PNGs with real content; the contour calls the critic
on a 100x100 grid in eval mode and restores its mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fastwgan.data import toy_sample
from fastwgan.models import MLPCritic
from fastwgan.plots import plot_learning_curve, plot_toy, save_image_grid


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
