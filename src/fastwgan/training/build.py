"""Everything a run needs before its first step: device, preset, models, the noise shape,
optimizers, and one probe of the models on two samples that turns every shape or label mistake
into an error naming the fix (so no training time is lost to it), and what the caller's models
mean for the run: whether labels condition them, whether the critic's scores are probabilities."""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import torch
from torch import nn

from ..data import DEFAULT_IMAGE_SIZE, folder_channels
from ..data.coerce import WithoutLabels
from ..eval_mode import eval_mode
from ..losses import WASSERSTEIN_LOSSES, probability_logit
from ..models import has_batchnorm, noise_shape_candidates
from ..objectives import call
from ..optim import ClippedRMSprop
from ..presets import PRESETS, Preset, builtin_preset, image_folder_preset
from .config import TrainConfig


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


class Fit(NamedTuple):
    """What the caller's models and data mean for the run (``fit_models_to_data``)."""

    source: Any  # the data source, without its labels when the models take none
    z_shape: tuple[int, ...]  # the noise's per-sample shape
    probabilities: bool  # the critic ends in a sigmoid: its outputs are probabilities


def fit_models_to_data(generator: nn.Module, critic: nn.Module, source, cfg: TrainConfig, device: torch.device, *,
                       own_models: bool) -> Fit:
    """Every check of the models against the data and the settings, before the first update; the
    noise shape; labels dropped (with one notice) when the models take none. ``own_models``: the
    caller's models (the preset's are known to fit their data's range)."""
    source = labels_for_models(generator, critic, source)
    y = torch.zeros(2, dtype=torch.long, device=device) if source.n_classes else None  # class 0: valid for any
    z_shape = cfg.z_shape or infer_noise_shape(generator, source, device, cfg.z_dim, y)
    check_settings_fit_models(generator, critic, cfg)
    fake = probe_models(generator, critic, source, z_shape, device)
    probabilities = critic_gives_probabilities(critic, fake, y, cfg.loss)
    if own_models:
        check_output_range(generator, source, z_shape, device, y)
    return Fit(source, tuple(z_shape), probabilities)


@torch.no_grad()
def infer_noise_shape(generator: nn.Module, source, device: torch.device, z_dim: int | None = None,
                      y: torch.Tensor | None = None) -> tuple[int, ...]:
    """The first candidate shape (``models.noise_shape_candidates``: the first layer decides
    between (B, nz) and (B, nz, 1, 1)) on which the generator emits samples shaped like the data;
    else the first on which it runs at all (the probe then names the shape mismatch). Eval mode:
    the guesses leave BatchNorm's running statistics as they were."""
    dtype = next(generator.parameters()).dtype
    candidates = noise_shape_candidates(generator, z_dim)
    if len(candidates) == 1:  # a built-in generator: nothing to guess
        return candidates[0]
    runs = []
    with eval_mode(generator):
        for shape in candidates:
            try:
                out = call(generator, torch.zeros(2, *shape, device=device, dtype=dtype), y)
            except Exception:  # noqa: BLE001 - a wrong guess; try the next one
                continue
            if tuple(out.shape[1:]) == tuple(source.sample_shape):
                return shape
            runs.append(shape)
    if runs:
        return runs[0]
    tried = ", ".join(str((2, *c)) for c in candidates) or "none found"
    raise ValueError(f"could not infer the noise size: the generator failed on noise of every shape its layers "
                     f"suggest ({tried}): pass z_dim= (flat noise (B, z_dim)) or z_shape= (the noise's per-sample "
                     "shape, e.g. z_shape=(100, 1, 1) for noise of shape (B, 100, 1, 1))")


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
def probe_models(generator: nn.Module, critic: nn.Module, source, z_shape: tuple[int, ...],
                 device: torch.device) -> torch.Tensor:
    """Run G and D on two samples (eval mode, fixed noise), name whatever does not fit; G's two
    samples."""
    with eval_mode(generator, critic):
        x, y = source.sample_real(2)
        x = x.to(device, next(critic.parameters()).dtype)
        y = y.to(device) if y is not None else None
        z = torch.randn(2, *z_shape, device=device, dtype=next(generator.parameters()).dtype,
                        generator=torch.Generator(device=device).manual_seed(0))
        fake = _call_checked(generator, "generator", z, y, f"noise of shape {(2, *z_shape)}",
                             f"pass z_dim= or z_shape= matching its input (now {(2, *z_shape)})")
        if tuple(fake.shape[1:]) != tuple(source.sample_shape):
            raise ValueError(
                f"the generator's output has per-sample shape {tuple(fake.shape[1:])} but the data's "
                f"is {tuple(source.sample_shape)}: make the generator emit samples shaped like the data"
            )
        for name, inp in (("real", x), ("generated", fake)):
            out = _call_checked(critic, "critic", inp, y, f"{name} samples", "make it take samples shaped like the data")
            if out.numel() == 1:
                raise ValueError(
                    f"the critic returned one number for a batch of 2 {name} samples (shape {tuple(out.shape)}): "
                    "it looks like a batch average (the original WGAN code's critics end in "
                    "output.mean(0).view(1)); fastwgan needs one score per sample, shape (B,) or (B, 1): return "
                    "output.view(-1) instead of output.mean(0).view(1)"
                )
            if tuple(out.shape) not in ((2,), (2, 1)):
                raise ValueError(
                    f"the critic must return one score per sample, shape (B,) or (B, 1); on a batch "
                    f"of 2 {name} samples it returned shape {tuple(out.shape)}: end it with a "
                    "single-output layer (e.g. nn.Linear(features, 1))"
                )
        return fake


# ---- what the models' last layers say ---------------------------------------------------------

# autograd nodes that only move or rename values: looking through them finds the last real operation
_SHAPE_ONLY = ("View", "UnsafeView", "Reshape", "Unsqueeze", "Squeeze", "Permute", "Transpose", "Alias", "Clone",
               "Expand", "AsStrided", "ToCopy")


def last_operation(model: nn.Module, *args: torch.Tensor) -> str | None:
    """The name of the last operation on ``model(*args)``'s output, through reshapes ("Sigmoid",
    "Tanh", "Addmm", ...), read from its autograd graph (eval mode, state unchanged); None when
    the output has no graph (the model has no trainable parameter on that path)."""
    with eval_mode(model):
        with torch.enable_grad():
            node = call(model, *args).grad_fn
    while node is not None:
        name = re.sub(r"Backward\d*$", "", type(node).__name__)
        if not name.startswith(_SHAPE_ONLY):
            return name
        node = next((f for f, _ in node.next_functions if f is not None), None)
    return None


def _ends_in(model: nn.Module, activation: type[nn.Module], op: str, *args: torch.Tensor) -> bool:
    """Whether the model's output comes out of ``activation``: the autograd graph decides where
    there is one (an nn.Sigmoid registered last but not on the output path does not count; a
    torch.sigmoid inside forward does); else the last registered module."""
    last = last_operation(model, *args)
    if last is not None:
        return last == op
    modules = list(model.modules())
    return isinstance(modules[-1], activation)


def critic_gives_probabilities(critic: nn.Module, x: torch.Tensor, y: torch.Tensor | None, loss: str) -> bool:
    """True when the critic ends in a sigmoid (the PyTorch DCGAN example's discriminator does).
    Under a Wasserstein loss that is an error: scores squashed into (0, 1) cannot estimate W1.
    Under gan / ns-gan the run trains on the logits recovered from the probabilities (one notice)."""
    if not _ends_in(critic, nn.Sigmoid, "Sigmoid", x, y):
        return False
    if loss in WASSERSTEIN_LOSSES:
        raise ValueError(
            f"the critic ends in a sigmoid, so its scores are squashed into (0, 1), but loss={loss!r} needs "
            "unbounded scores (a critic squashed into (0, 1) cannot estimate the Wasserstein distance): remove "
            "the final nn.Sigmoid() from the critic (its last layer's output is the score), or train it with "
            "loss='ns-gan' / 'gan', which take a sigmoid discriminator as it is"
        )
    warnings.warn(
        f"fastwgan: the discriminator ends in a sigmoid, so its outputs are probabilities p, not logits; "
        f"loss={loss!r} is computed on the logits recovered from them, log p - log(1 - p) (the same loss as "
        "BCELoss on p, with p clamped into the float32 range, as BCELoss clamps its logs). Your model is "
        "unchanged. (Without the final nn.Sigmoid() the loss would see the logits directly, free of the "
        "sigmoid's float32 saturation.)",
        UserWarning, stacklevel=4)
    return True


@contextlib.contextmanager
def scores_as_logits(critic: nn.Module, probabilities: bool) -> Iterator[None]:
    """While training: a critic whose outputs are probabilities returns their logits instead
    (a forward hook, removed after; the module, its parameters and its checkpoints are unchanged)."""
    if not probabilities:
        yield
        return
    handle = critic.register_forward_hook(lambda module, args, out: probability_logit(out))
    try:
        yield
    finally:
        handle.remove()


def check_output_range(generator: nn.Module, source, z_shape: tuple[int, ...], device: torch.device,
                       y: torch.Tensor | None) -> None:
    """One warning when the generator's last activation cannot match the data's range: Tanh on data
    in [0, 1] leaves half its range unused, Sigmoid on data with negative values cannot reach them."""
    lo = (getattr(source, "value_range", None) or (None, None))[0]
    if lo is None:
        return
    z = torch.zeros(2, *z_shape, device=device, dtype=next(generator.parameters()).dtype)
    if lo >= 0 and _ends_in(generator, nn.Tanh, "Tanh", z, y):
        warnings.warn(
            "fastwgan: the generator ends in Tanh (outputs in [-1, 1]) but the data has no negative values "
            "(its range taken as [0, 1]): half of the generator's output range is unused. Scale the data to "
            "[-1, 1] (x * 2 - 1; with torchvision, add transforms.Normalize((0.5,) * channels, (0.5,) * channels) "
            "after ToTensor()), or end the generator in a Sigmoid",
            UserWarning, stacklevel=4)
    elif lo < 0 and _ends_in(generator, nn.Sigmoid, "Sigmoid", z, y):
        warnings.warn(
            "fastwgan: the generator ends in a Sigmoid (outputs in [0, 1]) but the data has negative values "
            "(its range taken as [-1, 1]): the generator cannot produce them. Scale the data to [0, 1] "
            "((x + 1) / 2), or end the generator in Tanh",
            UserWarning, stacklevel=4)


# ---- labels ------------------------------------------------------------------------------------


def takes_labels(model: nn.Module) -> bool:
    """Whether ``model`` is conditional: its ``n_classes`` when it declares one (the built-in models
    do), else whether its forward accepts a second argument (forward(x, y))."""
    declared = getattr(model, "n_classes", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared > 0
    try:
        inspect.signature(model.forward).bind(None, None)
    except (TypeError, ValueError):
        return False
    return True


def labels_for_models(generator: nn.Module, critic: nn.Module, source):
    """The source the models train on. Labelled data conditions models that take labels; with
    models that take none it trains unconditionally (one notice says how to condition). Checked
    before anything calls the models, so an error names the labels, not a symptom."""
    n = source.n_classes
    takes = {name: takes_labels(m) for name, m in (("generator", generator), ("critic", critic))}
    if n and not any(takes.values()):
        warnings.warn(
            f"fastwgan: the data has labels ({n} classes) but neither model takes them, so the run trains "
            f"unconditionally and the labels are not used. To condition on them, build both models with "
            f"n_classes={n} (fastwgan.models' generators and critics take it) or give both forwards a label "
            "argument, forward(x, y)",
            UserWarning, stacklevel=4)
        return WithoutLabels(source)
    if n and not all(takes.values()):
        yes, no = ("generator", "critic") if takes["generator"] else ("critic", "generator")
        raise ValueError(f"the data has labels ({n} classes) and the {yes} takes them but the {no} does not: "
                         f"labels condition both models; build both with n_classes={n} (or give both forwards a "
                         "label argument), or neither")
    check_labels_fit_models(generator, critic, source)
    return source


def check_labels_fit_models(generator: nn.Module, critic: nn.Module, source) -> None:
    """Conditional models need labelled data with no more classes than their embeddings hold."""
    n = source.n_classes
    for name, model in (("generator", generator), ("critic", critic)):
        declared = getattr(model, "n_classes", None)  # the built-in models say what they take
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
