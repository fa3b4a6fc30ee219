"""``fastwgan.train``: WGAN, WGAN-GP, WGAN-LP, GAN and NS-GAN training in one loop.

One generator step ("iteration") is ``n_critic`` critic updates followed by one generator update,
as in Algorithm 1 of WGAN (Arjovsky et al. 2017) and of WGAN-GP (Gulrajani et al. 2017):

    for t in 1..steps:
        for k in 1..n_critic(t):
            x ~ data, z ~ N(0, I)
            L_D = E[D(G(z))] - E[D(x)] (+ lam * penalty)          # losses.critic_loss
            critic update (WGAN: RMSProp then clip to [-c, c])
        L_G = -E[D(G(z))]   (or feature matching)                  # losses.generator_loss
        generator update

Everything the user can get wrong is checked before the first update (``_validate``), so no
training time is lost to a mistake that a shape or a value reveals up front. Metrics stay on the
device between log points: one host sync per ``log_every`` steps, not per step.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import numpy as np
import torch
import torch.nn as nn

from . import checkpoint as ckpt
from . import distributed as dist_
from .losses import (
    LOSSES,
    feature_matching_loss,
    generator_loss,
    wasserstein_estimate,
)
from .step import critic_objective
from .presets import LOSS_DEFAULTS, PRESETS, Preset, image_folder_preset

# Image folders are resized to 32x32 unless told otherwise: DCGAN-32 trains in minutes on a CPU,
# DCGAN-64 costs about 4x more per step.
DEFAULT_IMAGE_SIZE = 32

NCriticSchedule = Union[int, str, Callable[[int], int]]
DataLike = Union[str, os.PathLike, torch.Tensor, tuple, Iterable, Callable[[int], Any]]


def wgan_original_schedule(step: int) -> int:
    """The original WGAN code's schedule: 100 critic iterations for the first 25 generator
    iterations and every 500th, else 5 (it lets the critic get near optimal early on)."""
    return 100 if step < 25 or step % 500 == 0 else 5


N_CRITIC_SCHEDULES: dict[str, Callable[[int], int]] = {"wgan-original": wgan_original_schedule}


@dataclass
class TrainResult:
    """What a training run returns."""

    generator: nn.Module
    critic: nn.Module
    history: list[dict[str, float]]  # one entry per logged generator step
    metrics: dict[str, float]  # final metrics (W1, modes, ...), also in summary.json
    config: dict[str, Any]  # every resolved setting
    out: Path | None  # the run folder, when one was written
    train_seconds: float = 0.0
    z_dim: int = 0
    evals: list[dict[str, float]] = field(default_factory=list)
    compile_seconds: float = 0.0  # compiling / capturing the static step (not in train_seconds)
    step_mode: str = "eager"  # "eager", "compiled", "cuda-graph", "compiled+cuda-graph"

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n samples from the trained generator (eval mode), on the generator's device."""
        dev = next(self.generator.parameters()).device
        was = self.generator.training
        self.generator.eval()
        try:
            z = torch.randn(n, self.z_dim, device=dev)
            return _call(self.generator, z, labels)
        finally:
            self.generator.train(was)


def _call(module: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return module(x) if y is None else module(x, y)


def _resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available: use device='cpu'")
    return dev


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _IsolatedRNG:
    """Run a side computation (probe, evaluation, pictures) without moving the training's random
    streams: global Python/NumPy/torch(/CUDA) states and the data source's own state are restored,
    so a run's trajectory does not depend on how often it is evaluated."""

    def __init__(self, source) -> None:
        self.source = source

    def __enter__(self) -> None:
        self.rng = _rng_state()
        self.data = self.source.state_dict()

    def __exit__(self, *exc) -> None:
        _set_rng_state(self.rng)
        self.source.load_state_dict(self.data)


class TrainingInterrupted(SystemExit):
    """Raised by ``train`` after SIGINT/SIGTERM: the current step was finished and checkpointed.

    A ``SystemExit`` so that a script that does not catch it exits quietly with the conventional
    status ``128 + signal`` (130 for SIGINT, 143 for SIGTERM) after the message was printed.
    ``step``, ``checkpoint`` and ``message`` say where the run stopped and how to resume.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None, message: str) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint, self.message = signum, step, checkpoint, message

    def __str__(self) -> str:
        return self.message


class _SignalCatcher:
    """Turn SIGINT/SIGTERM into a flag read at the end of each step, so the step in flight is
    finished and checkpointed instead of being torn down mid-update. Installed only from the main
    thread (Python's rule for signal handlers); the previous handlers are restored on exit. A second
    SIGINT while stopping falls back to the previous handler (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:  # asked twice: stop now
            prev = self.previous.get(signum)
            if callable(prev):
                prev(signum, frame)
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "_SignalCatcher":
        if self.enabled:
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


PRECISIONS = ("fp32", "bf16", "fp16")


class _GradScale(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``factor`` (a tensor).

    Placed at the critic's input inside the penalty's critic call, it unscales the input gradient
    in the input's dtype (fp32) as the last step of ``autograd.grad``. The backward is made of
    differentiable ops, so the penalty's double backward passes through it (times ``factor``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(factor)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (factor,) = ctx.saved_tensors
        return g * factor.to(g.dtype), None


class _ScaledCritic(nn.Module):
    """The critic as the gradient penalty sees it under fp16 + GradScaler (PyTorch's AMP recipe
    for a gradient penalty: scale the output, take the gradient, unscale it, form the penalty in
    fp32).

    ``forward(x) = S * D(x)`` in fp32, with S the scaler's current scale (a device tensor: no host
    sync), so the penalty's inner backward through the fp16 critic carries S * dD/dx (kept out of
    fp16's underflow range); ``_GradScale`` multiplies the input gradient by 1/S in fp32 at x. S is
    a power of two, so the unscaled gradient equals the unscaled-path gradient exactly whenever
    nothing overflowed; an overflow gives inf, which the scaler then sees in the parameters'
    gradients and answers by skipping the step and halving S. The penalty itself (norm, square,
    mean) is then formed from an fp32 gradient."""

    def __init__(self, critic: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.critic, self.scale = critic, scale

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        xs = _GradScale.apply(x, 1.0 / self.scale)
        return _call(self.critic, xs, y).float() * self.scale


class _Amp:
    """Mixed precision per PyTorch's AMP recipe: autocast for the forwards (bf16 or fp16), fp32
    master weights and optimizer state, backward outside autocast; fp16 adds one GradScaler per
    model (their steps alternate, so each has its own skip/back-off history)."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision, self.device = precision, device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        fp16 = precision == "fp16"
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaled = fp16

    def autocast(self):
        if self.dtype is None:
            import contextlib

            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def penalty_critic(self, critic: nn.Module) -> nn.Module:
        if not self.scaled:
            return critic
        return _ScaledCritic(critic, self.scaler_d.scale(torch.ones((), device=self.device)))

    def step(self, scaler, loss: torch.Tensor, opt) -> None:
        if not self.scaled:
            loss.backward()
            opt.step()
            return
        scaler.scale(loss).backward()
        scaler.step(opt)  # unscales, skips the update when a gradient is inf/NaN
        scaler.update()


def _check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision='bf16' needs a GPU with bfloat16 support (Ampere or newer): use 'fp16'")


def _preset_for(data: Any, image_size: int | None) -> Preset | None:
    if isinstance(data, str) and data in PRESETS:
        return PRESETS[data]
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        return image_folder_preset(image_size or DEFAULT_IMAGE_SIZE, channels=3)  # loaded as RGB
    return None


def resolve_config(loss: str, preset: Preset | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Paper defaults < data-set preset < explicit arguments (those not None)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
    cfg: dict[str, Any] = dict(LOSS_DEFAULTS[loss])
    cfg.setdefault("betas", (0.0, 0.9))
    cfg.setdefault("lr_decay", "none")
    cfg.setdefault("clip", None)
    if preset is not None:
        cfg.update(steps=preset.steps, log_every=preset.log_every, eval_every=preset.eval_every)
        cfg.update(preset.settings)
        cfg.update(preset.per_loss.get(loss, {}))
    for k, v in overrides.items():
        if v is not None:
            cfg[k] = v
    cfg["loss"] = loss
    return cfg


def _check_settings(cfg: dict[str, Any]) -> None:
    """Plain value checks, each naming the problem and the fix."""
    def bad(msg: str) -> None:
        raise ValueError(msg)

    steps = cfg.get("steps")
    if steps is None:
        bad("steps is required when the data is not a built-in data set: pass steps=N (e.g. 2000)")
    if not isinstance(steps, int) or steps < 1:
        bad(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(cfg["lr"], (int, float)) and cfg["lr"] > 0 and math.isfinite(cfg["lr"])):
        bad(f"lr must be a positive finite number, got {cfg['lr']!r} (WGAN's paper uses 5e-5, WGAN-GP 1e-4)")
    if cfg.get("lr_g") is not None and not cfg["lr_g"] > 0:
        bad(f"lr_g must be positive, got {cfg['lr_g']!r}")
    if cfg.get("lr_decay", "none") not in ("none", "linear"):
        bad(f"lr_decay must be 'none' or 'linear', got {cfg['lr_decay']!r}")
    if not (isinstance(cfg["batch_size"], int) and cfg["batch_size"] >= 1):
        bad(f"batch_size must be a positive integer, got {cfg['batch_size']!r}")
    nc = cfg["n_critic"]
    if isinstance(nc, str):
        if nc not in N_CRITIC_SCHEDULES:
            bad(f"unknown n_critic schedule {nc!r}: use an int >= 1, a callable step -> int, or one of "
                f"{', '.join(N_CRITIC_SCHEDULES)}")
    elif not callable(nc) and not (isinstance(nc, int) and nc >= 1):
        bad(f"n_critic must be an integer >= 1 (or a schedule), got {nc!r}")
    if cfg["loss"] == "wgan":
        c = cfg.get("clip")
        if c is None or not c > 0:
            bad(f"clip must be > 0 for loss='wgan' (the paper uses 0.01), got {c!r}")
    if cfg["loss"] in ("wgan-gp", "wgan-lp") and not cfg["lam"] >= 0:
        bad(f"lam (the penalty weight) must be >= 0, got {cfg['lam']!r} (the paper uses 10)")
    b1, b2 = cfg["betas"]
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        bad(f"betas must lie in [0, 1), got {cfg['betas']!r}")
    for k in ("log_every", "eval_every"):
        if not (isinstance(cfg[k], int) and cfg[k] >= 1):
            bad(f"{k} must be a positive integer, got {cfg[k]!r}")


def _n_critic_fn(nc: NCriticSchedule) -> Callable[[int], int]:
    if isinstance(nc, str):
        return N_CRITIC_SCHEDULES[nc]
    if callable(nc):
        def checked(step: int) -> int:
            n = nc(step)
            if not (isinstance(n, int) and n >= 1):
                raise ValueError(f"the n_critic schedule returned {n!r} at step {step}: it must return an int >= 1")
            return n
        return checked
    return lambda step: nc


@torch.no_grad()
def _validate_models(generator: nn.Module, critic: nn.Module, data, z_dim: int, cfg: dict, device) -> None:
    """Probe G and D on two samples (eval mode, private RNG) and check shapes and settings."""
    from .models import has_batchnorm

    if not isinstance(generator, nn.Module) or not isinstance(critic, nn.Module):
        raise TypeError(
            f"generator and critic must be torch.nn.Module instances, got {type(generator).__name__} "
            f"and {type(critic).__name__} (pass None for both to use the data set's preset models)"
        )
    if not any(True for _ in critic.parameters()) or not any(True for _ in generator.parameters()):
        raise ValueError("the generator and the critic must each have trainable parameters")
    if cfg["loss"] in ("wgan-gp", "wgan-lp") and has_batchnorm(critic) and not cfg.get("allow_batchnorm"):
        raise ValueError(
            "the critic contains BatchNorm, but the gradient penalty is defined per sample and "
            "BatchNorm mixes the samples of a batch (Gulrajani et al. 2017, Sec. 4): use LayerNorm "
            "instead (fastwgan.models.DCGANCritic(norm='layer')), or pass allow_batchnorm=True"
        )
    if cfg.get("feature_matching") and not callable(getattr(critic, "features", None)):
        raise ValueError(
            "feature_matching=True needs a critic with a features(x, y=None) method returning its "
            "last hidden layer (the built-in critics have one)"
        )
    modes = (generator.training, critic.training)
    generator.eval()
    critic.eval()
    try:
        x, y = data.sample_real(2)
        x = x.to(device)
        y = y.to(device) if y is not None else None
        gen = torch.Generator(device=device).manual_seed(0)
        z = torch.randn(2, z_dim, device=device, generator=gen)
        try:
            fake = _call(generator, z, y)
        except Exception as e:
            raise ValueError(
                f"the generator failed on noise of shape (2, {z_dim}) ({type(e).__name__}: {e}): "
                "pass z_dim= matching its input size"
            ) from e
        if tuple(fake.shape[1:]) != tuple(data.sample_shape):
            raise ValueError(
                f"the generator's output has per-sample shape {tuple(fake.shape[1:])} but the data's "
                f"is {tuple(data.sample_shape)}: make the generator emit samples shaped like the data"
            )
        for name, inp in (("real", x), ("generated", fake)):
            out = _call(critic, inp, y)
            if tuple(out.shape) not in ((2,), (2, 1)):
                raise ValueError(
                    f"the critic must return one score per sample, shape (B,) or (B, 1); on a batch "
                    f"of 2 {name} samples it returned shape {tuple(out.shape)}: end it with a "
                    "single-output layer (e.g. nn.Linear(features, 1))"
                )
    finally:
        generator.train(modes[0])
        critic.train(modes[1])


def _make_optimizers(generator: nn.Module, critic: nn.Module, cfg: dict, backend: str):
    lr_d = cfg["lr"]
    lr_g = cfg.get("lr_g") or cfg["lr"]
    if cfg["optimizer"] == "rmsprop":
        from .optim import ClippedRMSprop

        opt_d = ClippedRMSprop(critic.parameters(), lr=lr_d, clip=cfg["clip"], backend=backend)
        opt_g = torch.optim.RMSprop(generator.parameters(), lr=lr_g)
    else:
        opt_d = torch.optim.Adam(critic.parameters(), lr=lr_d, betas=tuple(cfg["betas"]))
        opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=tuple(cfg["betas"]))
    return opt_d, opt_g


# The final evaluation averages W1 (or sliced W) over this many independent draws of n generated
# and n real samples. One 2000-vs-2000 W1 on 8gaussians scatters by about 0.013 (std over draws,
# measured on a trained generator: 0.058-0.091) around its mean, as large as the margin the
# convergence criterion leaves; the mean of 5 draws scatters by about 0.006.
FINAL_EVAL_REPEATS = 5


def evaluate(generator: nn.Module, data, z_dim: int, n: int, device, labels_from_data: bool = True,
             repeats: int = 1) -> dict[str, float]:
    """Quality metrics on ``n`` generated vs ``n`` real samples (see fastwgan.metrics).

    With ``repeats > 1`` the distances are averaged over that many independent draws of ``n``
    samples each (``w1_std`` / ``swd_std`` give their spread) and the mode statistics are taken over
    all the generated samples.
    """
    from . import data as data_mod
    from . import metrics

    if n <= 0:  # evaluation switched off (eval_samples=0), e.g. in benchmarks
        return {}
    fakes, reals = [], []
    was = generator.training
    generator.eval()
    try:
        for _ in range(repeats):
            real, y = data.sample_real(n)
            with torch.no_grad():
                z = torch.randn(n, z_dim, device=device)
                yy = y.to(device) if (y is not None and labels_from_data) else None
                fakes.append(_call(generator, z, yy).float().cpu())
            reals.append(real.float().cpu())
    finally:
        generator.train(was)
    out: dict[str, float] = {}
    if not all(torch.isfinite(f).all() for f in fakes):
        return {"finite": 0.0}
    if getattr(data, "is_toy", False):
        key, dists = "w1", [metrics.wasserstein1(f.numpy(), r.numpy()) for f, r in zip(fakes, reals)]
    else:
        key, dists = "swd", [metrics.sliced_wasserstein(f.flatten(1), r.flatten(1)) for f, r in zip(fakes, reals)]
    out[key] = float(np.mean(dists))
    if repeats > 1:
        out[f"{key}_std"] = float(np.std(dists))
    if getattr(data, "is_toy", False) and data.name in ("8gaussians", "25gaussians"):
        stats = metrics.mode_stats(torch.cat(fakes), data_mod.toy_centers(data.name), data_mod.toy_std(data.name))
        out["high_quality"] = float(stats["high_quality"])
        out["modes_covered"] = float(stats["modes_covered"])
        out["n_modes"] = float(stats["n_modes"])
    return out


def train(
    generator: nn.Module | None,
    critic: nn.Module | None,
    data: DataLike,
    *,
    loss: str = "wgan-gp",
    steps: int | None = None,
    batch_size: int | None = None,
    n_critic: NCriticSchedule | None = None,
    lr: float | None = None,
    lr_g: float | None = None,
    lr_decay: str | None = None,
    betas: tuple[float, float] | None = None,
    clip: float | None = None,
    lam: float | None = None,
    z_dim: int | None = None,
    feature_matching: bool = False,
    allow_batchnorm: bool = False,
    seed: int = 0,
    device: str | torch.device = "auto",
    backend: str = "auto",
    out: str | os.PathLike | None = None,
    log_every: int | None = None,
    eval_every: int | None = None,
    eval_samples: int = 2000,
    image_size: int | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    resume: bool = False,
    tensorboard: bool = False,
    progress: bool = True,
    plots: bool = True,
    precision: str = "fp32",
    handle_signals: bool = True,
    compile: bool | str = "auto",
    cuda_graphs: bool | str = "auto",
) -> TrainResult:
    """Train ``generator`` against ``critic`` on ``data``; the modules are trained in place.

    Args:
        generator: noise (B, z_dim) [, labels] -> samples shaped like the data. None: the preset's.
        critic: samples [, labels] -> one score per sample, (B,) or (B, 1). None: the preset's.
        data: a built-in name ("8gaussians", "25gaussians", "swissroll", "digits"), a folder of
            images, a tensor, an (x, labels) pair, a Dataset, a DataLoader, an iterable of batches,
            or a callable ``sampler(n)``. Labels, when present, condition both models.
        loss: "wgan" (clipping + RMSProp), "wgan-gp", "wgan-lp" (one-sided), "gan", "ns-gan".
        steps: generator iterations (a built-in data set's preset supplies one).
        n_critic: critic updates per generator step: an int, a callable step -> int, or
            "wgan-original" (100 for the first 25 steps and every 500th, else 5).
        lr, lr_g, betas, clip, lam, batch_size: override the loss's paper defaults / the preset.
        lr_decay: "none" or "linear" (both learning rates fall linearly to 0 at the last step, as
            in WGAN-GP's CIFAR recipe; it sharpens the final samples).
        feature_matching: generator loss ||E f(x) - E f(G(z))||^2 on the critic's features.
        allow_batchnorm: accept BatchNorm in the critic with a gradient penalty (not advised).
        seed: seeds Python, NumPy and torch RNGs and the data stream: same seed, same run.
        device: "auto" (CUDA when present), "cpu", "cuda", ...
        backend: fused-kernel backend, "auto" | "triton" | "cpp" | "reference" (or FASTWGAN_BACKEND).
        out: run folder for metrics.jsonl, pictures, checkpoints and summary.json (None: none).
        checkpoint_every: also checkpoint every N steps (the final one is always written to out).
        resume: continue from the newest good checkpoint in ``out`` (a truncated or corrupted one
            is skipped with a warning); the continued run equals the uninterrupted one bit for bit
            on the CPU. The settings must be those of the checkpointed run (``steps`` may grow).
        keep_checkpoints: how many checkpoints to keep (the newest ones).
        tensorboard: write TensorBoard event files to ``out/tb``.
        precision: "fp32"; "bf16" (autocast, CPU or CUDA); or "fp16" (autocast + GradScaler, meant
            for CUDA; it runs on the CPU too, slowly). Weights and optimizer state stay fp32.
        handle_signals: on SIGINT/SIGTERM finish the current step, checkpoint (with ``out``) and
            raise :class:`TrainingInterrupted` (exit status 128 + signal) saying how to resume.
        compile: run each whole iteration (n_critic critic updates + the generator update) as one
            static step under ``torch.compile(fullgraph=True)`` (:mod:`fastwgan.static_step`).
            True / False, or "auto": on the CPU, compile runs of at least ``AUTO_COMPILE_MIN_STEPS``
            steps in bf16, where it was measured to pay for its compile time (benchmarks/RESULTS.md).
            Compile time is reported apart (``TrainResult.compile_seconds``) and cached by PyTorch.
        cuda_graphs: capture the static step in a CUDA graph and replay it (CUDA only). "auto": on
            when the device is CUDA. Settings the static step does not cover (an n_critic schedule,
            fp16, feature matching, DDP, WGAN with lr_decay) run in the eager trainer, with one
            warning naming the reason when compile / cuda_graphs was True (silently under "auto").
            A model that fails to compile or capture always gets that one warning; the attempt is
            rewound, so the run then equals the eager run.

    Non-finite losses or parameters stop training with a ``FloatingPointError`` naming the step and
    the last good checkpoint; they are checked at each log point and before each checkpoint
    (device-side flags per step, one host sync per check), so no bad checkpoint is written.

    Inside a process group (``torchrun``, or ``torch.distributed.init_process_group`` called
    first) training is data parallel with DistributedDataParallel: ``batch_size`` per rank, every
    rank's parameters identical, rank 0 writing the files; see :mod:`fastwgan.distributed`.
    """
    args = dict(locals())  # every argument, passed on by name
    del args["device"]
    t_setup = time.perf_counter()
    dev = _resolve_device(device)
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    _check_precision(precision, dev)
    _check_run_settings(out, checkpoint_every, keep_checkpoints)
    _check_static_settings(compile, cuda_graphs, dev)
    info = dist_.setup(dev)
    if info.enabled:
        dev = dist_.cuda_device_for_rank(dev)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
    try:
        return _train(**args, dev=dev, info=info, t_setup=t_setup)
    finally:
        if info.started_here:
            import torch.distributed as dist

            dist.destroy_process_group()


# compile="auto" on the CPU compiles bf16 runs of at least this many generator steps. Measured on
# the 2-core CPU (benchmarks/RESULTS.md, toy MLP width 256-512): compiling takes 40-60 s (less from
# PyTorch's cache) and saves 20-25 ms per bf16 iteration, so it pays back after about 2000 steps;
# in fp32 the step is bound by fp32 matrix products and compiling was not measured faster.
AUTO_COMPILE_MIN_STEPS = 2000


def _check_static_settings(compile, cuda_graphs, dev: torch.device) -> None:
    for name, v in (("compile", compile), ("cuda_graphs", cuda_graphs)):
        if not (isinstance(v, bool) or v == "auto"):
            raise ValueError(f"{name} must be True, False or 'auto', got {v!r}")
    if cuda_graphs is True and dev.type != "cuda":
        raise ValueError(f"cuda_graphs=True needs a CUDA device, but the run is on {dev}: pass "
                         "cuda_graphs='auto' (or False), or device='cuda' on a machine with a GPU")


def _build_static(compile, cuda_graphs, *, generator, critic, opt_d, opt_g, cfg, info, dev, source, z_dim,
                  amp, remaining: int):
    """The static step this run uses, or None (eager trainer); see ``train``'s compile argument."""
    from .static_step import StaticStep, fallback_warning, static_unsupported

    graphs = dev.type == "cuda" and cuda_graphs in (True, "auto")
    comp = compile is True or (compile == "auto" and dev.type == "cpu" and cfg["precision"] == "bf16"
                               and remaining >= AUTO_COMPILE_MIN_STEPS)
    if not (graphs or comp):
        return None
    reason = static_unsupported(n_critic=cfg["n_critic"], precision=cfg["precision"],
                                feature_matching=cfg["feature_matching"], distributed=info.enabled,
                                loss=cfg["loss"], lr_decay=cfg["lr_decay"], optimizers=(opt_d, opt_g))
    if reason is not None:
        if compile is True or cuda_graphs is True:
            fallback_warning(reason, _static_what(comp, graphs))
        return None
    x, y = source.sample_real(1)
    return StaticStep(generator, critic, opt_d, opt_g, loss=cfg["loss"], lam=cfg["lam"], n_critic=cfg["n_critic"],
                      batch_size=cfg["batch_size"], z_dim=z_dim, sample_shape=tuple(source.sample_shape),
                      data_dtype=x.dtype, labelled=y is not None, device=dev, autocast_dtype=amp.dtype,
                      compile=comp, cuda_graph=graphs)


def _static_what(comp: bool, graphs: bool) -> str:
    return " + ".join(w for w, on in (("torch.compile", comp), ("CUDA-graph capture", graphs)) if on)


def _check_run_settings(out, checkpoint_every, keep_checkpoints) -> None:
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer (steps between checkpoints) or None, "
                         f"got {checkpoint_every!r}")
    if isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int) or keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be an integer >= 1 (resume needs at least one), got "
                         f"{keep_checkpoints!r}")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out={os.fspath(out)!r} is an existing file, not a folder: pass a folder path for the run")


# settings that may differ between a run and its resumption (the rest must match the checkpoint)
_RESUME_MAY_CHANGE = ("steps", "log_every", "eval_every", "eval_samples")


def _check_resume_config(saved: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    diff = [k for k in saved if k in now and k not in _RESUME_MAY_CHANGE and saved[k] != now[k]]
    if diff:
        what = ", ".join(f"{k}={now[k]!r} (checkpoint: {saved[k]!r})" for k in diff)
        raise ValueError(
            f"cannot resume from {path}: it was written with other settings: {what}. Resume with the "
            "checkpoint's settings, or use a new out= folder to start a new run"
        )


def _train(*, generator, critic, data, loss, steps, batch_size, n_critic, lr, lr_g, lr_decay, betas, clip,
           lam, z_dim, feature_matching, allow_batchnorm, seed, dev, backend, out, log_every, eval_every,
           eval_samples, image_size, checkpoint_every, keep_checkpoints, resume, tensorboard, progress, plots,
           precision, handle_signals, compile, cuda_graphs, info: dist_.DistInfo, t_setup: float) -> TrainResult:
    from .data import as_data_source

    if image_size is None and isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        image_size = DEFAULT_IMAGE_SIZE
    preset = _preset_for(data, image_size)
    if isinstance(data, (str, os.PathLike)) and preset is None:
        raise ValueError(
            f"unknown data set {os.fspath(data)!r}: not a built-in name and not a folder; use one of "
            f"{', '.join(PRESETS)}, or the path of a folder of images"
        )
    cfg = resolve_config(
        loss,
        preset,
        dict(steps=steps, batch_size=batch_size, n_critic=n_critic, lr=lr, lr_g=lr_g, lr_decay=lr_decay, betas=betas,
             clip=clip, lam=lam, log_every=log_every, eval_every=eval_every),
    )
    cfg.setdefault("log_every", 100)
    cfg.setdefault("eval_every", 1000)
    cfg.update(feature_matching=feature_matching, allow_batchnorm=allow_batchnorm, seed=seed,
               eval_samples=eval_samples, precision=precision, world_size=info.world)
    _check_settings(cfg)
    if resume and out is None:
        raise ValueError("resume=True needs out= (the run folder holding the checkpoints)")
    if (generator is None) != (critic is None):
        raise ValueError("pass both generator and critic, or neither (None, None: the preset's models)")

    _seed_everything(seed)
    source = as_data_source(data, batch_size=cfg["batch_size"], seed=seed, image_size=image_size)
    if generator is None:
        if preset is None:
            raise ValueError(
                "generator=None and critic=None use a built-in data set's preset models, but this data "
                f"has no preset: pass your own models, or a built-in name ({', '.join(PRESETS)})"
            )
        zd = z_dim or preset.z_dim
        generator, critic = preset.models(zd, source.n_classes)
        z_dim = zd
    if z_dim is None:
        from .models import infer_z_dim

        z_dim = infer_z_dim(generator)
        if z_dim is None:
            raise ValueError("could not infer the noise size from the generator's first layer: pass z_dim=")
    cfg["z_dim"] = z_dim
    generator.to(dev)
    critic.to(dev)
    with _IsolatedRNG(source):
        _validate_models(generator, critic, source, z_dim, cfg, dev)
    if out is not None:
        source.state_dict()  # a source that cannot be checkpointed says so now, not at the first save
    feed = dist_.ShardedSource(source, info) if info.enabled else source

    opt_d, opt_g = _make_optimizers(generator, critic, cfg, backend)
    amp = _Amp(precision, dev)
    decay = cfg["lr_decay"] == "linear"
    lr_d0, lr_g0 = opt_d.param_groups[0]["lr"], opt_g.param_groups[0]["lr"]
    n_critic_at = _n_critic_fn(cfg["n_critic"])
    gp = loss in ("wgan-gp", "wgan-lp") and cfg["lam"] > 0
    if gp:
        from .penalty import gradient_penalty

    run = Path(out) if out is not None else None
    history: list[dict[str, float]] = []
    pending: list[tuple[int, torch.Tensor, float]] = []  # (step, stacked device metrics, wall time)
    evals: list[dict[str, float]] = []
    start = 0
    last_ckpt: Path | None = None
    if run is not None:
        run.mkdir(parents=True, exist_ok=True)
    if resume:
        found = ckpt.load_latest(run / "checkpoints")
        if found is None and ckpt.list_checkpoints(run / "checkpoints"):
            raise ValueError(
                f"resume=True but every checkpoint in {run / 'checkpoints'} is truncated or corrupted (see the "
                "warnings above): nothing to resume from; pass resume=False (or a new out=) to start over"
            )
        if found is not None:
            state, path = found
            _check_resume_config(state.get("config", {}), _jsonable(cfg), path)
            last_ckpt = path
            generator.load_state_dict(state["generator"])
            critic.load_state_dict(state["critic"])
            opt_d.load_state_dict(state["opt_d"])
            opt_g.load_state_dict(state["opt_g"])
            source.load_state_dict(state["data"])
            _set_rng_state(state["rng"])
            if dev.type == "cuda" and "rng_device" in state:  # this rank's own device stream
                torch.cuda.set_rng_state(state["rng_device"], dev)
            for key, scaler in (("scaler_d", amp.scaler_d), ("scaler_g", amp.scaler_g)):
                if key in state:
                    scaler.load_state_dict(state[key])
            history = state.get("history", [])
            evals = state.get("evals", [])
            start = state["step"]
            if info.is_main:
                _truncate_metrics(run / "metrics.jsonl", start)
    # DDP after loading: its construction broadcasts rank 0's parameters to every rank
    G_train = dist_.wrap(generator, info, dev)
    D_train = dist_.wrap(critic, info, dev)
    with _IsolatedRNG(source):  # its probe of the data's dtype must not move the streams
        static = _build_static(compile, cuda_graphs, generator=generator, critic=critic, opt_d=opt_d, opt_g=opt_g,
                               cfg=cfg, info=info, dev=dev, source=source, z_dim=z_dim, amp=amp,
                               remaining=cfg["steps"] - start)
    compile_seconds = 0.0
    step_mode = "eager" if static is None else static.mode
    writer = None
    if tensorboard and run is not None and info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run / "tb"))
    elif tensorboard and run is None:
        raise ValueError("tensorboard=True needs out= (the event files go to out/tb)")

    def flush() -> None:
        """Move the pending per-step metrics from the device into ``history`` (one host sync;
        averaged over ranks when distributed: the global-batch values), then check them: the
        first step with a non-finite loss or parameter stops the run, naming the step and the last
        good checkpoint. Called before every checkpoint, so a bad state is never saved."""
        if not pending:
            return
        vals = dist_.all_mean(torch.stack([m for _, m, _ in pending]), info).cpu().tolist()
        new = []
        for (s, _, wall), (w, ld, pn, lg, pnorm) in zip(pending, vals):
            new.append(dict(step=s, w_estimate=w, loss_d=ld, penalty=pn, loss_g=lg, param_norm=pnorm, time=wall))
        pending.clear()
        history.extend(new)
        # fp16: an inf loss on a step the GradScaler skipped is its normal back-off, not a failure;
        # the parameters (never updated from an inf gradient) are what must stay finite.
        keys = ("param_norm",) if amp.scaled else ("w_estimate", "loss_d", "penalty", "loss_g", "param_norm")
        for rec in new:
            bad = [k for k in keys if not math.isfinite(rec[k])]
            if bad:
                where = (f"the last good checkpoint is {last_ckpt} (resume from it with resume=True / --resume, "
                         "after lowering lr)") if last_ckpt else "no checkpoint was written before it"
                what = "parameters" if bad == ["param_norm"] else "loss"
                raise FloatingPointError(
                    f"non-finite {what} ({', '.join(bad)}) at step {rec['step']}; {where}. Lower lr (or "
                    f"raise lam), check the data, or use precision='fp32'. Record: {rec}"
                )

    def save(step: int) -> Path:
        flush()
        path = ckpt.checkpoint_path(run / "checkpoints", step)
        if info.is_main:  # rank 0 writes; every rank's state is identical
            state = dict(
                step=step, generator=generator.state_dict(), critic=critic.state_dict(),
                opt_d=opt_d.state_dict(), opt_g=opt_g.state_dict(), data=source.state_dict(),
                rng=_rng_state(), history=history, evals=evals, config=_jsonable(cfg),
                scaler_d=amp.scaler_d.state_dict(), scaler_g=amp.scaler_g.state_dict(),
            )
            if dev.type == "cuda":
                state["rng_device"] = torch.cuda.get_rng_state(dev)
            path = ckpt.save_checkpoint(state, run / "checkpoints", step, keep=keep_checkpoints)
        dist_.barrier(info)  # nobody runs ahead (or resumes) before the file is complete
        return path

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg["steps"], initial=start, disable=not progress or not info.is_main, desc=f"{loss}",
               unit="it", dynamic_ncols=True)
    setup_seconds = time.perf_counter() - t_setup
    bs = cfg["batch_size"]
    metrics_file = open(run / "metrics.jsonl", "a") if run is not None and info.is_main else None
    t0 = time.perf_counter()
    train_seconds = 0.0
    side_seconds = 0.0  # evaluation and checkpoints inside the loop
    world = info.world
    all_params = list(generator.parameters()) + list(critic.parameters())
    stop = _SignalCatcher(handle_signals)
    stop.__enter__()
    try:
        for step in range(start, cfg["steps"]):
            if decay:  # set from the step alone: nothing to checkpoint, resume stays exact
                f = 1.0 - step / cfg["steps"]
                for opt, base in ((opt_d, lr_d0), (opt_g, lr_g0)):
                    for group in opt.param_groups:
                        group["lr"] = base * f
                if static is not None:
                    static.set_lr(lr_d0 * f, lr_g0 * f)
            vec = None
            if static is not None:  # the whole iteration as one compiled / graph-replayed step
                vec, static = _static_iteration(static, feed, source)
                compile_seconds = max(compile_seconds, static.compile_seconds if static is not None else 0.0)
                step_mode = "eager" if static is None else step_mode
            if vec is None:
                # ---- critic ----
                for p in critic.parameters():
                    p.requires_grad_(True)
                y = None
                for _ in range(n_critic_at(step)):
                    x, y = feed.next_batch(bs)
                    x = x.to(dev, non_blocking=True)
                    y = y.to(dev, non_blocking=True) if y is not None else None
                    # noise and interpolation weights of the GLOBAL batch, this rank's slice: the ranks
                    # together draw exactly what one process with batch bs * world draws
                    z = dist_.shard(torch.randn(x.shape[0] * world, z_dim, device=dev), info)
                    alpha = dist_.shard(torch.rand(x.shape[0] * world, device=dev), info) if gp else None
                    with amp.autocast():
                        with torch.no_grad():
                            fake = _call(generator, z, y).to(x.dtype)
                        loss_d, pen, d_real, d_fake = critic_objective(
                            D_train, x, fake, y, loss=loss, lam=cfg["lam"],
                            penalty=gradient_penalty if gp else None, penalty_critic=amp.penalty_critic(D_train),
                            alpha=alpha, backend=backend)
                    opt_d.zero_grad(set_to_none=True)
                    # one backward of L_D + P: DDP all-reduces each critic gradient once (distributed.py)
                    amp.step(amp.scaler_d, loss_d + pen, opt_d)
                w_est = wasserstein_estimate(d_real.detach(), d_fake.detach())
                # ---- generator ---- (critic frozen: no grads accumulated for its parameters)
                for p in critic.parameters():
                    p.requires_grad_(False)
                z = dist_.shard(torch.randn(bs * world, z_dim, device=dev), info)
                with amp.autocast():
                    fake = _call(G_train, z, y)  # the critic is called unwrapped: frozen, nothing to reduce
                    if feature_matching:
                        f_real = critic.features(x, y) if y is not None else critic.features(x)
                        f_fake = critic.features(fake, y) if y is not None else critic.features(fake)
                        loss_g = feature_matching_loss(f_real.float(), f_fake.float())
                    else:
                        loss_g = generator_loss(loss, _call(critic, fake, y).reshape(-1).float())
                opt_g.zero_grad(set_to_none=True)
                amp.step(amp.scaler_g, loss_g, opt_g)
                # device-side: the parameters' total norm is finite iff every parameter is (checked in
                # flush(), with the losses, at the next log point or checkpoint: no per-step host sync)
                pnorm = torch.nn.utils.get_total_norm(all_params)
                vec = torch.stack([t.detach().float() for t in (w_est, loss_d, pen, loss_g, pnorm)])
            done = step + 1
            # training time so far: compiling, evaluating and checkpointing are not counted
            pending.append((done, vec, time.perf_counter() - t0 + train_seconds - compile_seconds - side_seconds))
            if done % cfg["log_every"] == 0 or done == cfg["steps"]:
                flush()
                rec = history[-1]
                ev = {}
                if done % cfg["eval_every"] == 0 or done == cfg["steps"]:
                    t_ev = time.perf_counter()
                    with _IsolatedRNG(source):
                        ev = evaluate(generator, source, z_dim, eval_samples, dev,
                                      repeats=FINAL_EVAL_REPEATS if done == cfg["steps"] else 1)
                    side_seconds += time.perf_counter() - t_ev
                    evals.append(dict(step=done, **ev))
                    rec.update(ev)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(rec) + "\n")
                    metrics_file.flush()
                if writer is not None:
                    for k, v in rec.items():
                        if k not in ("step", "time"):
                            writer.add_scalar(k, v, done)
                bar.set_postfix(W=f"{rec['w_estimate']:.4f}", **({"W1": f"{ev['w1']:.3f}"} if "w1" in ev else {}))
            bar.update(1)
            if run is not None and checkpoint_every and done % checkpoint_every == 0 and done < cfg["steps"]:
                t_ck = time.perf_counter()
                last_ckpt = save(done)
                side_seconds += time.perf_counter() - t_ck
            if done < cfg["steps"] and dist_.any_rank(stop.signum is not None, info, dev):
                if run is not None and (last_ckpt is None or last_ckpt.name != f"ckpt-{done:08d}.pt"):
                    last_ckpt = save(done)
                raise _interrupted(stop.signum or signal.SIGTERM, done, cfg["steps"], last_ckpt if run else None,
                                   run, info)
        train_seconds += time.perf_counter() - t0 - compile_seconds - side_seconds
    finally:
        stop.__exit__(None, None, None)
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
        for p in critic.parameters():
            p.requires_grad_(True)

    if evals and evals[-1]["step"] == cfg["steps"]:
        final = evals[-1]
    else:  # resumed from the final checkpoint of a finished run: evaluate once more
        with _IsolatedRNG(source):
            final = dict(step=cfg["steps"], **evaluate(generator, source, z_dim, eval_samples, dev,
                                                       repeats=FINAL_EVAL_REPEATS))
    metrics_out = {k: v for k, v in final.items() if k != "step"}
    if history:
        metrics_out["w_estimate"] = history[-1]["w_estimate"]
    result = TrainResult(generator=generator, critic=critic, history=history, metrics=metrics_out,
                         config=_jsonable(cfg), out=run, train_seconds=train_seconds, z_dim=z_dim,
                         compile_seconds=compile_seconds, step_mode=step_mode,
                         evals=evals)
    if run is not None:
        save(cfg["steps"])
        if info.is_main:
            with _IsolatedRNG(source):
                _write_outputs(result, source, setup_seconds, plots)
    if writer is not None:
        writer.close()
    return result


def _static_iteration(static, feed, source):
    """One iteration of the static step: (metrics vector, the step), or (None, None) when its first
    call failed to compile or capture. Then the data and random streams are rewound to where they
    were (the static step restored the models and optimizers itself), so the eager trainer redoes
    this same iteration, and one warning names the reason."""
    if static.ready:
        static.stage(feed)
        return static(), static
    rng, data = _rng_state(), source.state_dict()
    try:
        static.stage(feed)
        return static(), static
    except Exception as e:  # noqa: BLE001 - any failure to trace/compile/capture means: run eagerly
        from .static_step import fallback_warning

        _set_rng_state(rng)
        source.load_state_dict(data)
        static.release()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        fallback_warning(f"the model could not be {'compiled' if static.compile else 'captured'} "
                         f"({type(e).__name__}: {first[:300]}); pass compile=False / cuda_graphs=False to "
                         "skip the attempt", _static_what(static.compile, static.cuda_graph))
        return None, None


def _interrupted(signum: int, done: int, steps: int, path: Path | None, run: Path | None,
                 info: dist_.DistInfo) -> TrainingInterrupted:
    name = signal.Signals(signum).name
    if path is not None:
        msg = (f"fastwgan: stopped by {name} after step {done} of {steps}; checkpoint written to {path}. To "
               f"continue, run the same command with --resume (fastwgan train ... --out {run} --resume), or call "
               f"fastwgan.train(..., out={os.fspath(run)!r}, resume=True) with the same settings.")
    else:
        msg = (f"fastwgan: stopped by {name} after step {done} of {steps}; nothing was saved because out= was "
               "not given: pass out= (and checkpoint_every=) to make a run resumable.")
    if info.is_main:
        print(msg, file=sys.stderr, flush=True)
    return TrainingInterrupted(signum, done, path, msg)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines written after the checkpoint being resumed (the killed run got
    further than its last checkpoint): the resumed run rewrites them, without duplicates."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            break  # a line torn by the kill: everything after it is from the lost part too
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(k + "\n" for k in keep))
    os.replace(tmp, path)


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in cfg.items():
        if callable(v):
            v = getattr(v, "__name__", repr(v))
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def _write_outputs(result: TrainResult, source, setup_seconds: float, plots: bool) -> None:
    run = result.out
    assert run is not None
    summary = dict(metrics=result.metrics, config=result.config, train_seconds=result.train_seconds,
                   compile_seconds=result.compile_seconds, step_mode=result.step_mode,
                   setup_seconds=setup_seconds, steps=result.config["steps"],
                   torch=torch.__version__)
    tmp = run / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, run / "summary.json")
    if not plots:
        return
    from . import plots as P

    P.plot_learning_curve(result.history, run / "learning_curve.png")
    real, labels = source.sample_real(1000 if getattr(source, "is_toy", False) else 64)
    if labels is not None:
        labels = labels.to(next(result.generator.parameters()).device)
    fake = result.sample(real.shape[0], labels).float().cpu()
    if getattr(source, "is_toy", False):
        critic = result.critic if source.n_classes == 0 else None
        P.plot_toy(fake, real, critic=critic, path=run / "samples.png",
                   title=f"{result.config['loss']} on {source.name}, step {result.config['steps']}")
    else:
        P.save_image_grid(fake, run / "samples.png")
