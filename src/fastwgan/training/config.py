"""Every setting of a training run, in one dataclass, and how a value is chosen.

Precedence, lowest first: the loss's paper defaults (``presets.LOSS_DEFAULTS``) < the data set's
measured preset (``presets.PRESETS``) < what the caller passes (anything not None). ``TrainConfig``
is the single list of ``fastwgan.train``'s settings: ``train(**settings)`` is checked against its
fields, checkpoints store its algorithm fields, and a resumed run must match them.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from ..losses import LOSSES, PENALTY_LOSSES
from ..presets import LOSS_DEFAULTS, Preset

NCriticSchedule = Union[int, str, Callable[[int], int]]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# "fast": the preset's faster recipe where one was measured to reach the same quality sooner, and
# precision / compile chosen per machine; "textbook": the papers' recipe as the preset measured it,
# in fp32, eager (benchmarks/RESULTS.md, "Time to quality")
RECIPES = ("fast", "textbook")


def _algo(default: Any = None) -> Any:
    """A setting that defines what training computes: stored in checkpoints, matched on resume."""
    return field(default=default, metadata={"algorithm": True})


def wgan_original_schedule(step: int) -> int:
    """The original WGAN code's schedule: 100 critic iterations for the first 25 generator
    iterations and every 500th, else 5 (it lets the critic get near optimal early on)."""
    return 100 if step < 25 or step % 500 == 0 else 5


N_CRITIC_SCHEDULES: dict[str, Callable[[int], int]] = {"wgan-original": wgan_original_schedule}


@dataclass
class TrainConfig:
    """The settings of one run (see ``fastwgan.train`` for what each means). None: not chosen yet,
    filled in by :func:`resolve` from the preset and the paper defaults."""

    # what is trained, and how (algorithm settings: a resume must use the same ones)
    loss: str = _algo("wgan-gp")
    steps: int | None = _algo()
    batch_size: int | None = _algo()
    n_critic: NCriticSchedule | None = _algo()
    lr: float | None = _algo()
    lr_g: float | None = _algo()
    lr_decay: str | None = _algo()
    betas: tuple[float, float] | None = _algo()
    clip: float | None = _algo()
    lam: float | None = _algo()
    # the lazy penalty: on every penalty_every-th critic update only, weighted penalty_every * lam
    penalty_every: int = _algo(1)
    z_dim: int | None = _algo()
    # the per-sample noise shape, e.g. (100, 1, 1) for DCGAN-style generators (None: inferred from
    # the generator's first layer); z_dim is the number of noise values, prod(z_shape)
    z_shape: tuple[int, ...] | None = _algo()
    feature_matching: bool = _algo(False)
    allow_batchnorm: bool = _algo(False)
    seed: int = _algo(0)
    recipe: str = _algo("fast")
    precision: str = _algo("auto")  # "auto": resolved per device by precision.resolve_precision
    log_every: int | None = _algo()
    eval_every: int | None = _algo()
    eval_samples: int = _algo(2000)
    optimizer: str | None = _algo()  # "adam" | "rmsprop", from the loss
    world_size: int = _algo(1)
    image_size: int | None = _algo()  # images resized to this size (image folders, mnist at 32)
    data: str | None = _algo()  # the built-in data set's name or the image folder (None: the caller's data)
    # where and how it runs (may differ between a run and its resumption)
    device: Any = "auto"
    backend: str = "auto"
    out: str | os.PathLike | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 3
    resume: bool = False
    overwrite: bool = False
    tensorboard: bool = False
    progress: bool = True
    plots: bool = True
    handle_signals: bool = True
    compile: bool | str = "auto"
    cuda_graphs: bool | str = "auto"
    # called at every evaluation as on_eval(step, generator, metrics); returning True ends the run
    # there (a checkpoint is written at that step, and the run can be resumed to its full budget)
    on_eval: Callable[[int, Any, dict], Any] | None = None

    @property
    def penalty(self) -> bool:
        """Whether the critic objective has a gradient penalty term."""
        return self.loss in PENALTY_LOSSES and bool(self.lam)

    def algorithm(self) -> dict[str, Any]:
        """The algorithm settings as plain JSON data (checkpoints, summary.json)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata.get("algorithm")}


# what train() takes; the other fields are filled in by train itself
_DERIVED = ("optimizer", "world_size", "data")
SETTINGS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in _DERIVED)
# settings that may differ between a run and its resumption (the rest of the algorithm must match)
RESUME_MAY_CHANGE = ("steps", "log_every", "eval_every", "eval_samples")


def _jsonable(v: Any) -> Any:
    if callable(v):
        return getattr(v, "__name__", repr(v))
    if isinstance(v, tuple):
        return list(v)
    return v


def check_names(settings: dict[str, Any]) -> None:
    """Unknown keyword arguments name the closest valid setting."""
    for name in settings:
        if name not in SETTINGS:
            close = difflib.get_close_matches(name, SETTINGS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"train() got an unknown setting {name!r}{hint}; the settings are: {', '.join(SETTINGS)}")


def resolve(settings: dict[str, Any], preset: Preset | None) -> TrainConfig:
    """Paper defaults < preset < explicit settings (those not None), then every value check."""
    check_names(settings)
    loss = settings.get("loss", "wgan-gp")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
    recipe = settings.get("recipe") or "fast"
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)} ('textbook' is the papers' "
                         "recipe in fp32, eager)")
    chosen: dict[str, Any] = dict(betas=(0.0, 0.9), lr_decay="none", log_every=100, eval_every=1000)
    chosen.update(LOSS_DEFAULTS[loss])
    if preset is not None:
        chosen.update(steps=preset.steps, log_every=preset.log_every, eval_every=preset.eval_every)
        chosen.update(preset.settings)
        chosen.update(preset.per_loss.get(loss, {}))
        if recipe == "fast":
            chosen.update(preset.fast.get(loss, {}))
    if recipe == "textbook":
        chosen.update(precision="fp32", compile=False)
    explicit = {k: v for k, v in settings.items() if v is not None}
    chosen.update(explicit)
    cfg = TrainConfig(**chosen)
    if "penalty_every" not in explicit and _lazy_penalty_problem(cfg):
        cfg.penalty_every = 1  # a recipe's lazy penalty steps aside for the caller's n_critic or lam
    check(cfg)
    return cfg


def _bad(msg: str) -> None:
    raise ValueError(msg)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_type(name: str, value: Any, ok: bool, want: str) -> None:
    if not ok:
        raise TypeError(f"{name} must be {want}, got {type(value).__name__} {value!r}")


def check(cfg: TrainConfig) -> None:
    """Plain value checks, each naming the setting, the problem and the fix."""
    if cfg.steps is None:
        _bad("steps is required when the data is not a built-in data set: pass steps=N (e.g. 2000)")
    _check_type("steps", cfg.steps, _is_int(cfg.steps), "an int")
    if cfg.steps < 1:
        _bad(f"steps must be a positive integer, got {cfg.steps!r}")
    _check_number("lr", cfg.lr, "WGAN's paper uses 5e-5, WGAN-GP 1e-4")
    if cfg.lr_g is not None:
        _check_number("lr_g", cfg.lr_g, "default: lr")
    if cfg.lr_decay not in ("none", "linear"):
        _bad(f"lr_decay must be 'none' or 'linear', got {cfg.lr_decay!r}")
    _check_type("batch_size", cfg.batch_size, _is_int(cfg.batch_size), "an int")
    if cfg.batch_size < 1:
        _bad(f"batch_size must be a positive integer, got {cfg.batch_size!r}")
    _check_n_critic(cfg.n_critic)
    if cfg.loss == "wgan" or cfg.clip is not None:  # checked even where the loss ignores it
        _check_type("clip", cfg.clip, _is_number(cfg.clip), "a number (the paper uses 0.01)")
        if not (cfg.clip > 0 and math.isfinite(cfg.clip)):
            _bad(f"clip must be > 0 (WGAN's weight-clipping bound; the paper uses 0.01), got {cfg.clip!r}")
    _check_type("lam", cfg.lam, _is_number(cfg.lam), "a number (the paper uses 10)")
    if not (cfg.lam >= 0 and math.isfinite(cfg.lam)):
        _bad(f"lam (the penalty weight) must be finite and >= 0, got {cfg.lam!r} (the paper uses 10)")
    _check_penalty_every(cfg)
    _check_betas(cfg.betas)
    if cfg.z_dim is not None:
        _check_type("z_dim", cfg.z_dim, _is_int(cfg.z_dim), "an int")
        if cfg.z_dim < 1:
            _bad(f"z_dim (the noise size) must be a positive integer, got {cfg.z_dim!r}")
    _check_z_shape(cfg)
    for name in ("log_every", "eval_every"):
        v = getattr(cfg, name)
        _check_type(name, v, _is_int(v), "an int")
        if v < 1:
            _bad(f"{name} must be a positive integer, got {v!r}")
    _check_type("eval_samples", cfg.eval_samples, _is_int(cfg.eval_samples), "an int")
    if cfg.eval_samples < 0:
        _bad(f"eval_samples must be >= 0 (0 switches evaluation off), got {cfg.eval_samples!r}")
    _check_type("seed", cfg.seed, _is_int(cfg.seed), "an int")
    if not 0 <= cfg.seed < 2**63:  # what torch.manual_seed takes
        _bad(f"seed must be an int in 0 .. 2**63 - 1 (what torch's random generators take), got {cfg.seed!r}: "
             "pass a smaller seed, e.g. seed=0")
    if cfg.precision not in PRECISIONS:
        _bad(f"unknown precision {cfg.precision!r}: choose one of {', '.join(PRECISIONS)}")
    _check_run_options(cfg)


def _check_z_shape(cfg: TrainConfig) -> None:
    """z_shape: a tuple of positive ints (an int n means (n,)); with z_dim, prod(z_shape) == z_dim."""
    shape = cfg.z_shape
    if shape is None:
        return
    if _is_int(shape):
        shape = (shape,)
    ok = isinstance(shape, (tuple, list)) and len(shape) >= 1 and all(_is_int(v) for v in shape)
    _check_type("z_shape", cfg.z_shape, ok, "a tuple of ints, the noise's per-sample shape, e.g. (100, 1, 1)")
    if min(shape) < 1:
        _bad(f"z_shape (the noise's per-sample shape) must hold positive integers, got {cfg.z_shape!r}")
    cfg.z_shape = tuple(shape)
    if cfg.z_dim is not None and math.prod(shape) != cfg.z_dim:
        _bad(f"z_shape={cfg.z_shape!r} holds {math.prod(shape)} noise values but z_dim={cfg.z_dim}: pass one "
             "of them, or make them agree")


def _check_number(name: str, v: Any, hint: str) -> None:
    _check_type(name, v, _is_number(v), f"a number ({hint})")
    if not (v > 0 and math.isfinite(v)):
        _bad(f"{name} must be a positive finite number, got {v!r} ({hint})")


def _check_penalty_every(cfg: TrainConfig) -> None:
    k = cfg.penalty_every
    _check_type("penalty_every", k, _is_int(k), "an int >= 1 (1: the penalty on every critic update)")
    if k < 1:
        _bad(f"penalty_every must be an integer >= 1 (1: the penalty on every critic update), got {k!r}")
    problem = _lazy_penalty_problem(cfg)
    if problem:
        _bad(problem)


def _lazy_penalty_problem(cfg: TrainConfig) -> str | None:
    """Why ``penalty_every`` (an int >= 1) does not fit the other settings, or None."""
    k = cfg.penalty_every
    if k > 1 and not cfg.penalty:
        return (f"penalty_every={k} needs a loss with a gradient penalty (wgan-gp, wgan-lp) and lam > 0, "
                f"got loss={cfg.loss!r}, lam={cfg.lam!r}")
    if k > 1 and not (_is_int(cfg.n_critic) and cfg.n_critic % k == 0):
        return (f"penalty_every={k} must divide n_critic (got n_critic={cfg.n_critic!r}), so that every generator "
                f"step has its penalty on the same critic updates (e.g. n_critic=5 with penalty_every=5)")
    return None


def _check_betas(betas: Any) -> None:
    ok = isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_is_number(b) for b in betas)
    _check_type("betas", betas, ok, "a pair of numbers (b1, b2), e.g. (0.0, 0.9)")
    if not all(0 <= b < 1 for b in betas):
        _bad(f"betas must lie in [0, 1), got {tuple(betas)!r}")


def _check_n_critic(nc: Any) -> None:
    if isinstance(nc, str):
        if nc not in N_CRITIC_SCHEDULES:
            _bad(f"unknown n_critic schedule {nc!r}: use an int >= 1, a callable step -> int, or one of "
                 f"{', '.join(N_CRITIC_SCHEDULES)}")
    elif not callable(nc):
        _check_type("n_critic", nc, _is_int(nc), "an int >= 1 (or a schedule)")
        if nc < 1:
            _bad(f"n_critic must be an integer >= 1 (or a schedule), got {nc!r}")


def _check_run_options(cfg: TrainConfig) -> None:
    ce = cfg.checkpoint_every
    if ce is not None and not (_is_int(ce) and ce >= 1):
        _bad(f"checkpoint_every must be a positive integer (steps between checkpoints) or None, got {ce!r}")
    if not (_is_int(cfg.keep_checkpoints) and cfg.keep_checkpoints >= 1):
        _bad(f"keep_checkpoints must be an integer >= 1 (resume needs at least one), got {cfg.keep_checkpoints!r}")
    if cfg.image_size is not None and not (_is_int(cfg.image_size) and cfg.image_size >= 1):
        _bad(f"image_size must be a positive integer (pixels per side, e.g. 32), got {cfg.image_size!r}")
    for name in ("compile", "cuda_graphs"):
        v = getattr(cfg, name)
        if not (isinstance(v, bool) or v == "auto"):
            _bad(f"{name} must be True, False or 'auto', got {v!r}")
    if cfg.out is not None:
        _check_type("out", cfg.out, isinstance(cfg.out, (str, os.PathLike)), "a folder path")
        if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
            _bad(f"out={os.fspath(cfg.out)!r} is an existing file, not a folder: pass a folder path for the run")
    if cfg.resume and cfg.out is None:
        _bad("resume=True needs out= (the run folder holding the checkpoints)")
    if cfg.resume and cfg.overwrite:
        _bad("resume=True and overwrite=True contradict each other: resume continues the run in out=, "
             "overwrite moves it aside and starts a new one; pass one of them")
    if cfg.on_eval is not None and not callable(cfg.on_eval):
        _bad(f"on_eval must be a callable on_eval(step, generator, metrics) -> bool, got {cfg.on_eval!r}")
    if cfg.tensorboard and cfg.out is None:
        _bad("tensorboard=True needs out= (the event files go to out/tb)")


def n_critic_schedule(nc: NCriticSchedule) -> Callable[[int], int]:
    """``step -> critic updates`` for an int, a named schedule or a user callable (checked)."""
    if isinstance(nc, str):
        return N_CRITIC_SCHEDULES[nc]
    if callable(nc):
        def checked(step: int) -> int:
            n = nc(step)
            if not (_is_int(n) and n >= 1):
                raise ValueError(f"the n_critic schedule returned {n!r} at step {step}: it must return an int >= 1")
            return n
        return checked
    return lambda step: nc


def check_resume(saved: dict[str, Any], cfg: TrainConfig, path: Any) -> None:
    """A resumed run must have the checkpoint's algorithm settings (``steps`` may grow)."""
    now = cfg.algorithm()
    diff = [k for k in saved if k in now and k not in RESUME_MAY_CHANGE and saved[k] != now[k]]
    if diff:
        what = ", ".join(f"{k}={now[k]!r} (checkpoint: {saved[k]!r})" for k in diff)
        raise ValueError(
            f"cannot resume from {path}: it was written with other settings: {what}. Resume with the "
            "checkpoint's settings, or use a new out= folder to start a new run"
        )
