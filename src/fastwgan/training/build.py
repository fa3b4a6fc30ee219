"""Everything a run needs before its first step: device, preset, models, the noise size,
optimizers, and one probe of the models on two samples that turns every shape or label mistake
into an error naming the fix (so no training time is lost to it)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import DEFAULT_IMAGE_SIZE, folder_channels
from ..models import has_batchnorm, noise_size_candidates
from ..objectives import call
from ..optim import ClippedRMSprop
from ..presets import PRESETS, Preset, builtin_preset, image_folder_preset
from .config import TrainConfig


def resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N' ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available: use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: fastwgan trains on 'cpu' or 'cuda' devices")
    return dev


def preset_for(data: Any, image_size: int | None) -> Preset | None:
    """The built-in data set's preset, the image-folder preset, or None (the caller's data)."""
    if isinstance(data, str) and data in PRESETS:
        return builtin_preset(data, image_size)
    if isinstance(data, (str, os.PathLike)):
        if Path(data).is_dir():
            # the channels load_image_folder will load: 1 when every image is greyscale, else 3
            return image_folder_preset(image_size or DEFAULT_IMAGE_SIZE, channels=folder_channels(os.fspath(data)))
        raise ValueError(
            f"unknown data set {os.fspath(data)!r}: not a built-in name and not a folder; use one of "
            f"{', '.join(PRESETS)}, or the path of a folder of images"
        )
    return None


def build_models(generator: nn.Module | None, critic: nn.Module | None, preset: Preset | None, cfg: TrainConfig,
                 source) -> tuple[nn.Module, nn.Module, int]:
    """(G, D, z_dim): the caller's models, or the preset's when both are None."""
    if (generator is None) != (critic is None):
        raise ValueError("pass both generator and critic, or neither (None, None: the preset's models)")
    if generator is None:
        if preset is None:
            raise ValueError("generator=None and critic=None use a built-in data set's preset models, but this data "
                             f"has no preset: pass your own models, or a built-in name ({', '.join(PRESETS)})")
        z_dim = cfg.z_dim or preset.z_dim
        generator, critic = preset.models(z_dim, source.n_classes)
        return generator, critic, z_dim
    for name, m in (("generator", generator), ("critic", critic)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(m).__name__} (pass None for both "
                            "generator and critic to use the data set's preset models)")
        if not any(True for _ in m.parameters()):
            raise ValueError(f"the {name} has no trainable parameters")
    return generator, critic, cfg.z_dim


@torch.no_grad()
def infer_noise_size(generator: nn.Module, source, device: torch.device) -> int:
    """The first candidate size on which the generator emits samples shaped like the data; else
    the first on which it runs at all (the probe then names the shape mismatch)."""
    y = torch.zeros(2, dtype=torch.long, device=device) if source.n_classes else None  # class 0: valid for any
    dtype = next(generator.parameters()).dtype
    runs = []
    for z_dim in noise_size_candidates(generator):
        try:
            out = call(generator, torch.zeros(2, z_dim, device=device, dtype=dtype), y)
        except Exception:  # noqa: BLE001 - a wrong guess; try the next one
            continue
        if tuple(out.shape[1:]) == tuple(source.sample_shape):
            return z_dim
        runs.append(z_dim)
    if runs:
        return runs[0]
    raise ValueError("could not infer the noise size: the generator failed on noise of every size its layers "
                     f"suggest ({noise_size_candidates(generator) or 'none found'}): pass z_dim= (the size of "
                     "the generator's noise input)")


def make_optimizers(generator: nn.Module, critic: nn.Module, cfg: TrainConfig):
    """WGAN: ClippedRMSprop for the critic, RMSprop for the generator; else Adam for both."""
    lr_g = cfg.lr_g or cfg.lr
    if cfg.optimizer == "rmsprop":
        return (ClippedRMSprop(critic.parameters(), lr=cfg.lr, clip=cfg.clip, backend=cfg.backend),
                torch.optim.RMSprop(generator.parameters(), lr=lr_g))
    betas = tuple(cfg.betas)
    return (torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=betas),
            torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas))


def check_settings_fit_models(generator: nn.Module, critic: nn.Module, cfg: TrainConfig) -> None:
    if cfg.penalty and has_batchnorm(critic) and not cfg.allow_batchnorm:
        raise ValueError(
            "the critic contains BatchNorm, but the gradient penalty is defined per sample and "
            "BatchNorm mixes the samples of a batch (Gulrajani et al. 2017, Sec. 4): use LayerNorm "
            "instead (fastwgan.models.DCGANCritic(norm='layer')), or pass allow_batchnorm=True"
        )
    if cfg.feature_matching and not callable(getattr(critic, "features", None)):
        raise ValueError(
            "feature_matching=True needs a critic with a features(x, y=None) method returning its "
            "last hidden layer (the built-in critics have one)"
        )


@torch.no_grad()
def probe_models(generator: nn.Module, critic: nn.Module, source, z_dim: int, device: torch.device) -> None:
    """Run G and D on two samples (eval mode, fixed noise) and name whatever does not fit."""
    modes = (generator.training, critic.training)
    generator.eval()
    critic.eval()
    try:
        x, y = source.sample_real(2)
        x = x.to(device, next(critic.parameters()).dtype)
        y = y.to(device) if y is not None else None
        z = torch.randn(2, z_dim, device=device, dtype=next(generator.parameters()).dtype,
                        generator=torch.Generator(device=device).manual_seed(0))
        fake = _call_checked(generator, "generator", z, y, f"noise of shape (2, {z_dim})",
                             f"pass z_dim= matching its input size (now {z_dim})")
        if tuple(fake.shape[1:]) != tuple(source.sample_shape):
            raise ValueError(
                f"the generator's output has per-sample shape {tuple(fake.shape[1:])} but the data's "
                f"is {tuple(source.sample_shape)}: make the generator emit samples shaped like the data"
            )
        for name, inp in (("real", x), ("generated", fake)):
            out = _call_checked(critic, "critic", inp, y, f"{name} samples", "make it take samples shaped like the data")
            if tuple(out.shape) not in ((2,), (2, 1)):
                raise ValueError(
                    f"the critic must return one score per sample, shape (B,) or (B, 1); on a batch "
                    f"of 2 {name} samples it returned shape {tuple(out.shape)}: end it with a "
                    "single-output layer (e.g. nn.Linear(features, 1))"
                )
    finally:
        generator.train(modes[0])
        critic.train(modes[1])


def check_labels_fit_models(generator: nn.Module, critic: nn.Module, source) -> None:
    """Labelled data needs conditional models with room for every class, and the reverse; checked
    before anything calls the models, so the error names the labels, not a symptom."""
    n = source.n_classes
    for name, model in (("generator", generator), ("critic", critic)):
        declared = getattr(model, "n_classes", None)  # the built-in models say what they take
        if n and declared == 0:
            raise ValueError(f"the data has labels ({n} classes) but the {name} is unconditional (n_classes=0): "
                             f"build the models with n_classes={n}, or pass the data without labels")
        if not n and declared:
            raise ValueError(f"the {name} is conditional (n_classes={declared}) but the data has no labels: pass "
                             "labelled data (x, y), or build the models with n_classes=0")
        embeds = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
        if n and embeds and n > min(embeds):
            raise ValueError(f"the data has {n} classes but the {name}'s label embedding has {min(embeds)}: build "
                             f"the models with n_classes={n}")


def _call_checked(model: nn.Module, name: str, x: torch.Tensor, y, what: str, fix: str) -> torch.Tensor:
    """``call(model, x, y)``; a failure is explained by the labels when they are the cause."""
    try:
        return call(model, x, y)
    except Exception as e:  # noqa: BLE001 - re-raised with the cause named
        cause = f"{type(e).__name__}: {e}"
        raise ValueError(f"the {name} failed on {what} ({cause}): {_label_mismatch(model, name, x, y) or fix}") from e


def _label_mismatch(model: nn.Module, name: str, x: torch.Tensor, y) -> str | None:
    """Which label problem makes ``model`` fail, if one does (None: not a label problem)."""
    n_classes = getattr(model, "n_classes", None)
    if y is None:
        if n_classes:
            return (f"the {name} is conditional (n_classes={n_classes}) but the data has no labels: pass labelled "
                    "data (x, y), or build the models with n_classes=0")
        return None
    try:
        model(x)
    except Exception:  # noqa: BLE001 - fails without labels too: a label-range problem or none
        embeds = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
        top = int(y.max()) if y.numel() else -1
        if embeds and top >= min(embeds):
            return (f"the data's labels go up to {top} but the {name}'s embedding has {min(embeds)} classes: build "
                    f"the models with n_classes={top + 1} (or more)")
        return None
    return (f"the data has labels but the {name} takes none (it works when called without them): build the "
            "models with n_classes= the number of classes, or pass the data without labels")
