"""Pictures of a run: toy samples over the critic's score, image grids, learning curves.

``save_samples`` is the one the trainer calls at the end of a run: it picks the picture for the
data (a scatter for 2-D points, a grid for images, reshaping flat square images), draws images in
the data's value range, and never raises: a picture that cannot be drawn is a warning, never the
loss of a finished run.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly, never
through pyplot: no display is needed, no global backend is switched, and no figure is left open in
pyplot's registry. The image grid is written with Pillow directly.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .eval_mode import eval_mode

__all__ = ["plot_toy", "save_image_grid", "save_samples", "as_images", "plot_learning_curve"]


def _figure(**kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _ensure_dir(path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)


def _np(a) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().float().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"toy plots take 2-D points of shape (n, 2), got {a.shape}.")
    return a


def _critic_grid(critic: nn.Module, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Critic scores on the grid (len(ys), len(xs)), in eval mode under no_grad, mode restored."""
    params = list(critic.parameters())
    device = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params else torch.float32
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=dtype, device=device)
    with eval_mode(critic):
        with torch.no_grad():
            out = critic(pts)
    return out.reshape(-1).float().cpu().numpy().reshape(gx.shape)


def plot_toy(samples, real, critic: nn.Module | None = None, path: str = "toy.png", title: str = "",
             grid: int = 100) -> str:
    """Scatter real (orange) and generated (green) 2-D points; with a critic, a filled contour
    of its score over the plot's box on a ``grid`` x ``grid`` lattice (as gan_toy.py draws)."""
    s, r = _np(samples), _np(real)
    if not (np.isfinite(s).all() and np.isfinite(r).all()):
        raise ValueError("samples or real points contain NaN/inf; the generator has diverged.")
    both = np.concatenate([s, r])
    lo, hi = both.min(0), both.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-3)
    lo, hi = lo - pad, hi + pad
    fig = _figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    if critic is not None:
        xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
        z = _critic_grid(critic, xs, ys)
        cs = ax.contourf(xs, ys, z, levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.04, label="critic score")
    ax.scatter(r[:, 0], r[:, 1], s=4, c="tab:orange", alpha=0.6, label="real")
    ax.scatter(s[:, 0], s[:, 1], s=4, c="tab:green", alpha=0.6, label="generated")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=3, fontsize=8)
    if title:
        ax.set_title(title)
    _ensure_dir(path)
    fig.savefig(path, bbox_inches="tight")
    return path


def save_image_grid(images: Tensor, path: str, nrow: int = 8, min_cell: int = 32, pad: int = 2,
                    value_range: tuple[float, float] = (-1.0, 1.0)) -> str:
    """Tile (N, C, H, W) images with values in ``value_range`` = (lo, hi) into a PNG, ``nrow`` per
    row, ``pad`` px of black between cells: a value v is drawn as grey level
    255 * (v - lo) / (hi - lo), values outside the range clamped to it and NaN drawn as lo. Cells
    smaller than ``min_cell`` px are upscaled by an integer factor with nearest neighbour (8x8
    digits become 32x32 blocks, no blur)."""
    from PIL import Image

    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty tensor (N, C, H, W) with C in (1, 3), got {shape}.")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow <= 0:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}.")
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (lo, hi) with lo < hi, got {value_range!r}.")
    x = images.detach().float().cpu()
    x = torch.nan_to_num((x - lo) / (hi - lo), nan=0.0).clamp(0, 1)  # in [0, 1], lo -> black
    n, c, h, w = x.shape
    k = max(1, math.ceil(min_cell / min(h, w)))
    if k > 1:
        x = x.repeat_interleave(k, 2).repeat_interleave(k, 3)
        h, w = h * k, w * k
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    canvas = torch.zeros((c, rows * (h + pad) + pad, cols * (w + pad) + pad))
    for i in range(n):
        r0, c0 = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        canvas[:, r0 : r0 + h, c0 : c0 + w] = x[i]
    arr = (canvas * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    img = Image.fromarray(np.ascontiguousarray(arr[:, :, 0]) if c == 1 else arr)  # uint8 2-D -> "L", HxWx3 -> "RGB"
    _ensure_dir(path)
    img.save(path, format="PNG")
    return path


def as_images(x: Tensor) -> Tensor | None:
    """``x`` as (N, C, H, W) with C in (1, 3) for drawing, or None when it is not images:
    (N, C, H, W) as is; (N, H, W) as one channel; flat (N, D) as square images when D is s*s
    (grey) or 3*s*s (RGB, channels first, as ``x.flatten(1)`` of (N, 3, s, s) lays it out),
    s >= 4."""
    if x.dim() == 4 and x.shape[1] in (1, 3):
        return x
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 2:
        n, d = x.shape
        for c in (1, 3):
            s = math.isqrt(d // c)
            if d % c == 0 and s >= 4 and c * s * s == d:
                return x.reshape(n, c, s, s)
    return None


def _warn_no_picture(path: Any, reason: str) -> None:
    warnings.warn(f"fastwgan: no sample picture written to {os.fspath(path)}: {reason}. The run's results are "
                  "kept.", RuntimeWarning, stacklevel=3)


def save_samples(fake: Tensor, real: Tensor, source: Any, path: str, *, critic: nn.Module | None = None,
                 title: str = "", value_range: tuple[float, float] | None = None, nrow: int = 8) -> str | None:
    """The end-of-run picture of generated samples ``fake`` beside ``real`` ones; never raises.

    2-D points (a toy ``source``, or samples of shape (N, 2)): :func:`plot_toy`, with the
    critic's score under them when ``critic`` is given. Anything :func:`as_images` can lay out
    as images: a grid of ``fake`` drawn in ``value_range`` (default ``source.value_range``, else
    (-1, 1)), out-of-range values clamped for display. Otherwise, for non-finite samples, or
    when drawing fails, a RuntimeWarning names the reason and no file is written.
    Returns the path written, or None.
    """
    try:
        fake = torch.as_tensor(fake).detach().float().cpu()
        bad = int((~torch.isfinite(fake)).sum())
        if bad:
            _warn_no_picture(path, f"the generated samples hold {bad} NaN or inf values (the generator diverged)")
            return None
        if getattr(source, "is_toy", False) or (fake.dim() == 2 and fake.shape[1] == 2):
            return plot_toy(fake, real, critic=critic, path=path, title=title)
        images = as_images(fake)
        if images is None:
            _warn_no_picture(path, f"samples of shape {tuple(fake.shape)} are neither 2-D points nor images "
                                   "(N, C, H, W) / flat square images")
            return None
        vr = value_range or getattr(source, "value_range", None) or (-1.0, 1.0)
        return save_image_grid(images, path, nrow=nrow, value_range=vr)
    except Exception as e:  # noqa: BLE001 - a picture never costs a finished run
        _warn_no_picture(path, f"drawing failed ({type(e).__name__}: {e})")
        return None


def plot_learning_curve(history: list[dict], path: str) -> str:
    """Top panel: the critic's Wasserstein estimate ``w_estimate`` against ``step``. Bottom
    panel (when any entry has them): ``w1`` and ``swd`` against step."""
    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError("history must be a non-empty list of dicts with 'step' and 'w_estimate'.")

    def series(key: str) -> tuple[list, list]:
        pts = [(h["step"], h[key]) for h in history if key in h and h[key] is not None and "step" in h]
        return [p[0] for p in pts], [float(p[1]) for p in pts]

    steps, w = series("w_estimate")
    extra = {k: series(k) for k in ("w1", "swd") if series(k)[0]}
    if not steps and not extra:
        raise ValueError("no entry of history has 'step' with 'w_estimate', 'w1' or 'swd'; nothing to plot.")
    panels = 1 + bool(extra)
    fig = _figure(figsize=(6, 3 * panels), dpi=100)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.plot(steps, w, color="tab:blue", lw=1)
    ax.set_ylabel("critic W estimate")
    ax.grid(alpha=0.3)
    if extra:
        ax2 = axes[1, 0]
        for k, (st, v) in extra.items():
            ax2.plot(st, v, marker="o", ms=3, lw=1, label=k)
        ax2.set_ylabel("distance to data")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("generator step")
    _ensure_dir(path)
    fig.savefig(path, bbox_inches="tight")
    return path
