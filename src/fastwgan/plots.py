"""Pictures of a run: toy samples over the critic's score, image grids, learning curves.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly, never
through pyplot: no display is needed, no global backend is switched, and no figure is left open in
pyplot's registry. The image grid is written with Pillow directly.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["plot_toy", "save_image_grid", "plot_learning_curve"]


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
    was_training = critic.training
    critic.eval()
    try:
        with torch.no_grad():
            out = critic(pts)
    finally:
        critic.train(was_training)
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


def save_image_grid(images: Tensor, path: str, nrow: int = 8, min_cell: int = 32, pad: int = 2) -> str:
    """Tile (N, C, H, W) images in [-1, 1] into a PNG, ``nrow`` per row, ``pad`` px of black
    between cells. Cells smaller than ``min_cell`` px are upscaled by an integer factor with
    nearest neighbour (8x8 digits become 32x32 blocks, no blur)."""
    from PIL import Image

    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty tensor (N, C, H, W) with C in (1, 3), got {shape}.")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow <= 0:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}.")
    x = images.detach().float().cpu().clamp(-1, 1)
    x = torch.nan_to_num(x, nan=-1.0)
    n, c, h, w = x.shape
    k = max(1, math.ceil(min_cell / min(h, w)))
    if k > 1:
        x = x.repeat_interleave(k, 2).repeat_interleave(k, 3)
        h, w = h * k, w * k
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    canvas = torch.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), -1.0)
    for i in range(n):
        r0, c0 = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        canvas[:, r0 : r0 + h, c0 : c0 + w] = x[i]
    arr = ((canvas + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    img = Image.fromarray(np.ascontiguousarray(arr[:, :, 0]) if c == 1 else arr)  # uint8 2-D -> "L", HxWx3 -> "RGB"
    _ensure_dir(path)
    img.save(path, format="PNG")
    return path


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
