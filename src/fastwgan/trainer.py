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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import numpy as np
import torch
import torch.nn as nn

from . import checkpoint as ckpt
from .losses import (
    LOSSES,
    WASSERSTEIN_LOSSES,
    critic_loss,
    feature_matching_loss,
    generator_loss,
    wasserstein_estimate,
)
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


def evaluate(generator: nn.Module, data, z_dim: int, n: int, device, labels_from_data: bool = True) -> dict[str, float]:
    """Quality metrics on ``n`` generated vs ``n`` real samples (see fastwgan.metrics)."""
    from . import data as data_mod
    from . import metrics

    if n <= 0:  # evaluation switched off (eval_samples=0), e.g. in benchmarks
        return {}
    real, y = data.sample_real(n)
    was = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            z = torch.randn(n, z_dim, device=device)
            yy = y.to(device) if (y is not None and labels_from_data) else None
            fake = _call(generator, z, yy).float().cpu()
    finally:
        generator.train(was)
    out: dict[str, float] = {}
    if not torch.isfinite(fake).all():
        return {"finite": 0.0}
    if getattr(data, "is_toy", False):
        out["w1"] = metrics.wasserstein1(fake.numpy(), real.float().numpy())
        if data.name in ("8gaussians", "25gaussians"):
            stats = metrics.mode_stats(fake, data_mod.toy_centers(data.name), data_mod.toy_std(data.name))
            out["high_quality"] = float(stats["high_quality"])
            out["modes_covered"] = float(stats["modes_covered"])
            out["n_modes"] = float(stats["n_modes"])
    else:
        out["swd"] = metrics.sliced_wasserstein(fake.flatten(1), real.float().flatten(1))
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
        feature_matching: generator loss ||E f(x) - E f(G(z))||^2 on the critic's features.
        allow_batchnorm: accept BatchNorm in the critic with a gradient penalty (not advised).
        seed: seeds Python, NumPy and torch RNGs and the data stream: same seed, same run.
        device: "auto" (CUDA when present), "cpu", "cuda", ...
        backend: fused-kernel backend, "auto" | "triton" | "cpp" | "reference" (or FASTWGAN_BACKEND).
        out: run folder for metrics.jsonl, pictures, checkpoints and summary.json (None: none).
        checkpoint_every: also checkpoint every N steps (the final one is always written to out).
        resume: continue from the newest good checkpoint in ``out``.
        tensorboard: write TensorBoard event files to ``out/tb``.
    """
    from .data import as_data_source

    t_setup = time.perf_counter()
    dev = _resolve_device(device)
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
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
        dict(steps=steps, batch_size=batch_size, n_critic=n_critic, lr=lr, lr_g=lr_g, betas=betas,
             clip=clip, lam=lam, log_every=log_every, eval_every=eval_every),
    )
    cfg.setdefault("log_every", 100)
    cfg.setdefault("eval_every", 1000)
    cfg.update(feature_matching=feature_matching, allow_batchnorm=allow_batchnorm, seed=seed,
               eval_samples=eval_samples)
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

    opt_d, opt_g = _make_optimizers(generator, critic, cfg, backend)
    n_critic_at = _n_critic_fn(cfg["n_critic"])
    gp = loss in ("wgan-gp", "wgan-lp") and cfg["lam"] > 0
    if gp:
        from .penalty import gradient_penalty

    run = Path(out) if out is not None else None
    history: list[dict[str, float]] = []
    pending: list[tuple[int, torch.Tensor, float]] = []  # (step, stacked device metrics, wall time)
    evals: list[dict[str, float]] = []
    start = 0
    if run is not None:
        run.mkdir(parents=True, exist_ok=True)
    if resume:
        found = ckpt.load_latest(run / "checkpoints")
        if found is not None:
            state, path = found
            generator.load_state_dict(state["generator"])
            critic.load_state_dict(state["critic"])
            opt_d.load_state_dict(state["opt_d"])
            opt_g.load_state_dict(state["opt_g"])
            source.load_state_dict(state["data"])
            _set_rng_state(state["rng"])
            history = state.get("history", [])
            evals = state.get("evals", [])
            start = state["step"]
    writer = None
    if tensorboard and run is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run / "tb"))
    elif tensorboard:
        raise ValueError("tensorboard=True needs out= (the event files go to out/tb)")

    def flush() -> None:
        """Move the pending per-step metrics from the device into ``history``: one host sync."""
        if pending:
            vals = torch.stack([m for _, m, _ in pending]).cpu().tolist()
            for (s, _, wall), (w, ld, pn, lg) in zip(pending, vals):
                history.append(dict(step=s, w_estimate=w, loss_d=ld, penalty=pn, loss_g=lg, time=wall))
            pending.clear()

    def save(step: int) -> Path:
        flush()
        state = dict(
            step=step, generator=generator.state_dict(), critic=critic.state_dict(),
            opt_d=opt_d.state_dict(), opt_g=opt_g.state_dict(), data=source.state_dict(),
            rng=_rng_state(), history=history, evals=evals, config=_jsonable(cfg),
        )
        return ckpt.save_checkpoint(state, run / "checkpoints", step, keep=keep_checkpoints)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg["steps"], initial=start, disable=not progress, desc=f"{loss}", unit="it",
               dynamic_ncols=True)
    setup_seconds = time.perf_counter() - t_setup
    bs = cfg["batch_size"]
    metrics_file = open(run / "metrics.jsonl", "a") if run is not None else None
    last_ckpt: Path | None = None
    t0 = time.perf_counter()
    train_seconds = 0.0
    zero = torch.zeros((), device=dev)
    try:
        for step in range(start, cfg["steps"]):
            # ---- critic ----
            for p in critic.parameters():
                p.requires_grad_(True)
            y = None
            for _ in range(n_critic_at(step)):
                x, y = source.next_batch(bs)
                x = x.to(dev, non_blocking=True)
                y = y.to(dev, non_blocking=True) if y is not None else None
                z = torch.randn(x.shape[0], z_dim, device=dev)
                with torch.no_grad():
                    fake = _call(generator, z, y)
                d_real = _call(critic, x, y).reshape(-1)
                d_fake = _call(critic, fake, y).reshape(-1)
                loss_d = critic_loss(loss, d_real, d_fake)
                pen = gradient_penalty(critic, x, fake, lam=cfg["lam"], one_sided=loss == "wgan-lp",
                                       labels=y, backend=backend) if gp else zero
                opt_d.zero_grad(set_to_none=True)
                (loss_d + pen).backward()
                opt_d.step()
            w_est = wasserstein_estimate(d_real.detach(), d_fake.detach())
            # ---- generator ---- (critic frozen: no grads accumulated for its parameters)
            for p in critic.parameters():
                p.requires_grad_(False)
            z = torch.randn(bs, z_dim, device=dev)
            fake = _call(generator, z, y)
            if feature_matching:
                f_real = critic.features(x, y) if y is not None else critic.features(x)
                f_fake = critic.features(fake, y) if y is not None else critic.features(fake)
                loss_g = feature_matching_loss(f_real, f_fake)
            else:
                loss_g = generator_loss(loss, _call(critic, fake, y).reshape(-1))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

            done = step + 1
            pending.append((done, torch.stack([w_est, loss_d.detach(), pen.detach(), loss_g.detach()]),
                            time.perf_counter() - t0 + train_seconds))
            if done % cfg["log_every"] == 0 or done == cfg["steps"]:
                flush()
                rec = history[-1]
                if not all(math.isfinite(rec[k]) for k in ("w_estimate", "loss_d", "loss_g")):
                    where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else ""
                    raise FloatingPointError(
                        f"non-finite loss at step {done} ({rec}){where}: lower lr, or check the data"
                    )
                ev = {}
                if done % cfg["eval_every"] == 0 or done == cfg["steps"]:
                    with _IsolatedRNG(source):
                        ev = evaluate(generator, source, z_dim, eval_samples, dev)
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
                last_ckpt = save(done)
        train_seconds += time.perf_counter() - t0
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
        for p in critic.parameters():
            p.requires_grad_(True)

    if evals and evals[-1]["step"] == cfg["steps"]:
        final = evals[-1]
    else:  # resumed from the final checkpoint of a finished run: evaluate once more
        with _IsolatedRNG(source):
            final = dict(step=cfg["steps"], **evaluate(generator, source, z_dim, eval_samples, dev))
    metrics_out = {k: v for k, v in final.items() if k != "step"}
    if history:
        metrics_out["w_estimate"] = history[-1]["w_estimate"]
    result = TrainResult(generator=generator, critic=critic, history=history, metrics=metrics_out,
                         config=_jsonable(cfg), out=run, train_seconds=train_seconds, z_dim=z_dim,
                         evals=evals)
    if run is not None:
        save(cfg["steps"])
        with _IsolatedRNG(source):
            _write_outputs(result, source, setup_seconds, plots)
    if writer is not None:
        writer.close()
    return result


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
