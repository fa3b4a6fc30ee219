"""``fastwgan.train``: the training loop, as a short orchestration of the modules beside it.

    for t in 1..steps:
        for k in 1..n_critic(t):  L_D = E[D(G(z))] - E[D(x)] (+ P);  critic update     objectives
        L_G = -E[D(G(z))] (or feature matching);  generator update                     objectives
        every log_every: metrics to the host, non-finite check, logs                    history, output
        every eval_every: the same, plus an evaluation and on_eval                       evaluate
        every checkpoint_every, and on SIGINT/SIGTERM: an atomic checkpoint              state, signals

(Algorithm 1 of WGAN, Arjovsky et al. 2017, and of WGAN-GP, Gulrajani et al. 2017.) Everything the
caller can get wrong is checked before the first update; metrics stay on the device between log
points (one host sync per ``log_every`` steps).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distributed as dist_
from ..data import as_data_source
from ..eval_mode import modes_kept
from ..hardware import resolve_device
from ..loaded_models import check_not_meta
from . import build, config, output
from .eager import EagerStep
from .evaluate import FINAL_EVAL_REPEATS, evaluate
from .history import History
from .inputs import Draws
from .precision import Amp, resolve_precision
from .result import TrainResult
from .rng import IsolatedRNG, seed_everything
from .runner import Runner, check_static_settings
from .signals import SignalCatcher, interrupted
from .state import RunState, model_specs


def train(generator: nn.Module | None, critic: nn.Module | None, data: Any, **settings: Any) -> TrainResult:
    """Train ``generator`` against ``critic`` on ``data``; the modules are trained in place.

    ``settings`` are the fields of :class:`fastwgan.training.config.TrainConfig` (README: "The Python
    API"); anything not given comes from the data set's preset and the loss's paper defaults.
    ``generator=None, critic=None`` use the preset's models. Inside a process group (torchrun) the
    run is data parallel (:mod:`fastwgan.distributed`).
    """
    t_setup = time.perf_counter()
    preset = build.preset_for(data, settings.get("image_size"))
    cfg = config.resolve(settings, preset)
    cfg.data = os.fspath(data) if isinstance(data, (str, os.PathLike)) else None
    device = resolve_device(cfg.device)
    cfg.precision = resolve_precision(cfg.precision, device)
    check_static_settings(cfg, device)
    info = dist_.setup(device)
    if info.enabled:
        device = dist_.cuda_device_for_rank(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        cfg.world_size = info.world
    try:
        return _train(generator, critic, data, preset, cfg, device, info, t_setup)
    finally:
        if info.started_here:
            torch.distributed.destroy_process_group()


def _train(generator, critic, data, preset, cfg: config.TrainConfig, device: torch.device, info: dist_.DistInfo,
           t_setup: float) -> TrainResult:
    seed_everything(cfg.seed)
    source = as_data_source(data, batch_size=cfg.batch_size, seed=cfg.seed, image_size=cfg.image_size)
    own_models = generator is not None
    generator, critic, cfg.z_dim = build.build_models(generator, critic, preset, cfg, source)
    check_not_meta(generator, "generator")
    check_not_meta(critic, "critic")
    generator.to(device)
    critic.to(device)
    with IsolatedRNG(source):  # probing the models must not move the training's streams
        fit = build.fit_models_to_data(generator, critic, source, cfg, device, own_models=own_models)
    source, cfg.z_shape, cfg.z_dim = fit.source, fit.z_shape, math.prod(fit.z_shape)
    if cfg.out is not None:
        source.state_dict()  # a source that cannot be checkpointed says so now, not at the first save
    opt_d, opt_g = build.make_optimizers(generator, critic, cfg)
    state = RunState(generator, critic, opt_d, opt_g, source, Amp(cfg.precision, device), cfg, device, info)
    with build.scores_as_logits(critic, fit.probabilities), _run_folder(cfg, info) as run:
        return _loop(state, run, t_setup)


@contextlib.contextmanager
def _run_folder(cfg: config.TrainConfig, info: dist_.DistInfo):
    """The run folder, locked for the run's lifetime by rank 0 (None: no folder)."""
    if cfg.out is None:
        yield None
        return
    if not info.is_main:
        dist_.barrier(info)  # rank 0 has created and checked the folder
        yield Path(cfg.out)
        return
    from ..run_folder import open_run_folder

    with open_run_folder(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite) as folder:
        dist_.barrier(info)
        yield Path(folder.path)


class _Stopwatch:
    """Time spent on side work (evaluation, checkpoints): not training time."""

    def __init__(self) -> None:
        self.total = 0.0

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.total += time.perf_counter() - self.t


def _loop(s: RunState, run: Path | None, t_setup: float) -> TrainResult:
    cfg, info = s.cfg, s.info
    records, evals, start, last_ckpt, stop_early = [], [], 0, None, False
    if cfg.resume and (found := s.resume(run / "checkpoints")) is not None:
        start, records, evals, last_ckpt = found
    done = start
    runner = _runner(s, start)
    feed = dist_.ShardedSource(s.source, info) if info.enabled else s.source
    history = History(records, info, losses_may_overflow=s.amp.scaled)
    out = output.RunOutput(run if info.is_main else None, tensorboard=cfg.tensorboard,
                           resume_step=start if cfg.resume else None,
                           checkpoint=dict(config=s.resumed_config, history=records))
    lr0 = (cfg.lr, cfg.lr_g or cfg.lr)  # from the settings: a resumed optimizer holds a decayed lr
    bar = _progress_bar(cfg, start, info)
    setup_seconds, t0, side = time.perf_counter() - t_setup, time.perf_counter(), _Stopwatch()
    try:
        with SignalCatcher(cfg.handle_signals) as stop:
            for step in range(start, cfg.steps):
                if cfg.lr_decay == "linear":  # set from the step alone: nothing to checkpoint, resume stays exact
                    runner.set_lr(lr0[0] * (1 - step / cfg.steps), lr0[1] * (1 - step / cfg.steps))
                metrics = runner(step, feed)
                done = step + 1
                history.add(done, metrics, time.perf_counter() - t0 - runner.compile_seconds - side.total)
                evaluating = done % cfg.eval_every == 0 or done == cfg.steps
                # evaluations keep their own cadence: eval_every need not be a multiple of log_every
                if evaluating or done % cfg.log_every == 0:
                    history.flush(last_ckpt)
                    if evaluating:
                        with side:
                            evals.append(dict(step=done, **_evaluate(s, done == cfg.steps)))
                            # every rank stops together (a rank that stopped alone would hang the others)
                            stop_early = dist_.any_rank(_call_on_eval(cfg, done, s.generator, evals[-1]), info,
                                                        s.device)
                        history.records[-1].update(evals[-1])
                    out.log(history.records[-1])
                    bar.set_postfix(W=f"{history.records[-1]['w_estimate']:.4f}")
                bar.update(1)
                if stop_early:  # the caller's criterion holds: _finish writes the checkpoint at this step
                    break
                wants_ckpt = cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps
                stopping = done < cfg.steps and dist_.any_rank(stop.signum is not None, info, s.device)
                if run is not None and (wants_ckpt or stopping) and _not_saved(last_ckpt, done):
                    with side:
                        history.flush(last_ckpt)  # never checkpoint a non-finite state
                        last_ckpt = s.save(run / "checkpoints", done, history.records, evals)
                if stopping:
                    raise interrupted(stop.signum or signal.SIGTERM, done, cfg.steps, last_ckpt if run else None,
                                      run, info.is_main)
        train_seconds = time.perf_counter() - t0 - runner.compile_seconds - side.total
    finally:
        bar.close()
        out.close()
    return _finish(s, run, history.records, evals, train_seconds, setup_seconds, runner, done)


def _call_on_eval(cfg: config.TrainConfig, step: int, generator: nn.Module, metrics: dict) -> bool:
    """The caller's hook at an evaluation: True ends the run. It gets the generator as trained
    (its training mode restored after) and a copy of the metrics (it cannot change the record)."""
    if cfg.on_eval is None:
        return False
    with modes_kept(generator):
        return bool(cfg.on_eval(step, generator, {k: v for k, v in metrics.items() if k != "step"}))


def _not_saved(last_ckpt: Path | None, step: int) -> bool:
    return last_ckpt is None or last_ckpt.name != f"ckpt-{step:08d}.pt"


def _runner(s: RunState, start: int) -> Runner:
    """The eager step, and the static one when asked for and possible (after resume: DDP wraps the
    loaded models, and its construction broadcasts rank 0's parameters)."""
    cfg, info = s.cfg, s.info
    draws = Draws(cfg.batch_size, cfg.z_shape, penalty=cfg.penalty, device=s.device,
                  data_dtype=next(s.critic.parameters()).dtype, z_dtype=next(s.generator.parameters()).dtype, info=info)
    eager = EagerStep(generator=s.generator, critic=s.critic, g_train=dist_.wrap(s.generator, info, s.device),
                      d_train=dist_.wrap(s.critic, info, s.device), opt_d=s.opt_d, opt_g=s.opt_g, amp=s.amp, cfg=cfg,
                      draws=draws, n_critic_at=config.n_critic_schedule(cfg.n_critic))
    return Runner(eager, cfg, s.device, s.source, cfg.steps - start, info.enabled, tuple(s.source.sample_shape),
                  labelled=s.source.n_classes > 0)


def _progress_bar(cfg: config.TrainConfig, start: int, info: dist_.DistInfo):
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start, disable=not cfg.progress or not info.is_main, desc=cfg.loss,
                unit="it", dynamic_ncols=True)


def _evaluate(s: RunState, final: bool) -> dict[str, float]:
    with IsolatedRNG(s.source):
        return evaluate(s.generator, s.source, s.cfg.z_shape, s.cfg.eval_samples, s.device,
                        repeats=FINAL_EVAL_REPEATS if final else 1)


def _finish(s: RunState, run: Path | None, records: list, evals: list, train_seconds: float, setup_seconds: float,
            runner: Runner, last: int) -> TrainResult:
    """The result at step ``last`` (``steps``, or where on_eval ended the run); with a run folder the
    final checkpoint, summary.json and the pictures."""
    cfg = s.cfg
    if evals and evals[-1]["step"] == last:
        final = evals[-1]
    else:  # resumed from the final checkpoint of a finished run: evaluate once more
        final = dict(step=last, **_evaluate(s, True))
    metrics = {k: v for k, v in final.items() if k != "step"}
    if records:
        metrics["w_estimate"] = records[-1]["w_estimate"]
    result = TrainResult(generator=s.generator, critic=s.critic, history=records, metrics=metrics,
                         config=cfg.algorithm(), out=run, train_seconds=train_seconds, z_dim=cfg.z_dim,
                         z_shape=cfg.z_shape, n_classes=s.source.n_classes,
                         compile_seconds=runner.compile_seconds, step_mode=runner.mode, evals=evals, steps_done=last)
    if run is not None:
        s.save(run / "checkpoints", last, records, evals)
        if s.info.is_main:
            output.write_summary(result, setup_seconds, {"models": model_specs(s.generator, s.critic),
                                                         "z_shape": list(cfg.z_shape)})
            if cfg.plots:
                with IsolatedRNG(s.source):
                    output.write_pictures(result, s.source)
    return result
