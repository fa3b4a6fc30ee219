"""Image data on disk or bundled with a package: sklearn's 8x8 digits and folders of images
(one channel when every image in the folder is greyscale, else RGB).

The default image size, :data:`DEFAULT_IMAGE_SIZE`, is decided here once: 32, the size of the
DCGAN-32 models (Radford et al. 2016 use 64 for LSUN; 32 keeps CPU runs affordable).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEFAULT_IMAGE_SIZE", "IMAGE_EXTENSIONS", "check_image_size", "resize", "load_digits", "load_image_folder",
           "folder_channels", "GREYSCALE_MODES"]

DEFAULT_IMAGE_SIZE: int = 32
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def check_image_size(size, setting: str = "image_size") -> int:
    """``size`` as a positive int, else ValueError naming ``setting``."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(
            f"{setting} must be a positive int (pixels per side, e.g. {DEFAULT_IMAGE_SIZE}), got {size!r}."
        )
    return size


def _check_fits(n: int, channels: int, size: int) -> None:
    """n images of size x size pixels (float32, held twice while resized and stacked) must fit in memory."""
    from ..memory import require_memory

    require_memory(2.0 * n * channels * size * size * 4, f"{n:,} images of {size}x{size} pixels (image_size={size})",
                   "pass a smaller image_size (--image-size), e.g. 32 or 64")


def resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of (N, C, H, W) in [-1, 1] to ``size`` x ``size`` (antialiased when
    shrinking), clamped back to [-1, 1]."""
    check_image_size(size)
    _check_fits(x.shape[0], x.shape[1], size)
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])
    return out.clamp_(-1.0, 1.0)


def load_digits(size: int | None = None) -> tuple[Tensor, Tensor]:
    """sklearn's bundled 8x8 digits: x (1797, 1, 8, 8) float32 in [-1, 1] (pixel/8 - 1, pixels
    are 0..16), y (1797,) int64. ``size`` resizes bilinearly (e.g. 32 for a DCGAN)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 8.0 - 1.0
    y = torch.from_numpy(d.target).long()
    if size is not None and size != 8:
        x = resize(x, size)
    return x, y


def _load_one_image(path: str, size: int, channels: int) -> Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
        t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    t = t.reshape(size, size, channels).permute(2, 0, 1).float()
    return t / 127.5 - 1.0


def _is_image(fname: str) -> bool:
    return os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS


def _class_folders(path: str) -> list[tuple[str, list[str]]]:
    """(subfolder name, its image files walked recursively) for each subfolder holding images."""
    classes = []
    for d in sorted(os.listdir(path)):
        full = os.path.join(path, d)
        if not os.path.isdir(full):
            continue
        files = []
        for root, _, names in sorted(os.walk(full)):
            files += [os.path.join(root, f) for f in sorted(names) if _is_image(f)]
        if files:
            classes.append((d, files))
    return classes


def _list_image_folder(path: str) -> list[tuple[str, list[str]]]:
    """The image files a folder holds, grouped: ``[("", files)]`` for images directly in
    ``path`` (unlabelled), else one (class name, files) per subfolder in sorted order. The one
    listing both :func:`load_image_folder` and :func:`folder_channels` read."""
    if not os.path.isdir(path):
        raise ValueError(f"image folder {path!r} does not exist or is not a directory; pass an existing folder.")
    top = sorted(f for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)) and _is_image(f))
    classes = _class_folders(path)
    if not top and not classes:
        raise ValueError(
            f"no images found in {path!r}; accepted extensions are {list(IMAGE_EXTENSIONS)} "
            "(images directly in the folder, or one subfolder per class)."
        )
    if top and classes:
        raise ValueError(
            f"{path!r} holds images both directly and in subfolders {[c for c, _ in classes]}; put every image "
            "in a class subfolder (labelled data) or all in the folder itself (unlabelled)."
        )
    return [("", [os.path.join(path, f) for f in top])] if top else classes


# PIL modes holding one intensity per pixel (bilevel, 8/16/32-bit integer, float; "LA" adds alpha,
# which loading drops as it does for RGBA).
GREYSCALE_MODES: frozenset[str] = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def folder_channels(path: str) -> int:
    """1 when every image :func:`load_image_folder` would read under ``path`` is greyscale by its
    PIL mode (:data:`GREYSCALE_MODES`), else 3. ``Image.open`` reads only the header, so no pixel
    is decoded. A palette ("P") image counts as colour: its palette may hold any colour."""
    return _channels_of(_list_image_folder(path))


def _channels_of(groups: list[tuple[str, list[str]]]) -> int:
    from PIL import Image

    for _, files in groups:
        for f in files:
            with Image.open(f) as im:  # lazy: the header only
                if im.mode not in GREYSCALE_MODES:
                    return 3
    return 1


def load_image_folder(path: str, size: int, channels: int | None = None) -> tuple[Tensor, Tensor | None]:
    """Every image under ``path`` as x (N, C, size, size) float32 in [-1, 1] (center crop to a
    square, then bicubic resize). When ``path`` has subfolders holding images, each subfolder is
    a class (sorted names -> ids 0..K-1) and y is (N,) int64; else y is None. ``channels`` is
    1 (greyscale) or 3 (RGB); None picks :func:`folder_channels` (1 when every image is greyscale)."""
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or None (detect), got {channels!r}.")
    check_image_size(size, "size")
    groups = _list_image_folder(path)
    if channels is None:
        channels = _channels_of(groups)
    _check_fits(sum(len(files) for _, files in groups), channels, size)
    xs, ys = [], []
    for k, (_, files) in enumerate(groups):
        xs += [_load_one_image(f, size, channels) for f in files]
        ys += [k] * len(files)
    labelled = groups[0][0] != ""
    return torch.stack(xs), (torch.tensor(ys, dtype=torch.int64) if labelled else None)
