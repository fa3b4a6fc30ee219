"""A run's complete state in a checkpoint, and restoring it: both models, both optimizers, the
GradScalers, every random stream, the data stream's position, the history and the settings. A
resumed run equals the uninterrupted one bit for bit on the CPU."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoint as ckpt
from .. import distributed as dist_
from ..loaded_models import load_weights
from ..run_folder import check_resume_steps
from .config import TrainConfig, check_resume
from .precision import Amp


@dataclass
class RunState:
    """The objects a checkpoint saves and restores."""

    generator: nn.Module
    critic: nn.Module
    opt_d: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    source: Any
    amp: Amp
    cfg: TrainConfig
    device: torch.device
    info: dist_.DistInfo
    resumed_config: dict[str, Any] | None = None  # the settings of the checkpoint resumed from


    def to_dict(self, step: int, history: list, evals: list) -> dict[str, Any]:
        state = dict(
            step=step, generator=self.generator.state_dict(), critic=self.critic.state_dict(),
            opt_d=self.opt_d.state_dict(), opt_g=self.opt_g.state_dict(), data=self.source.state_dict(),
            rng=ckpt.rng_state(), history=history, evals=evals, config=self.cfg.algorithm(),
            scaler_d=self.amp.scaler_d.state_dict(), scaler_g=self.amp.scaler_g.state_dict(),
            models=model_specs(self.generator, self.critic),
        )
        if self.device.type == "cuda":
            state["rng_device"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self, folder: Path, step: int, history: list, evals: list) -> Path:
        """Rank 0 writes (every rank's state is identical); nobody runs ahead before it is complete."""
        path = ckpt.checkpoint_path(folder, step)
        if self.info.is_main:
            path = ckpt.save_checkpoint(self.to_dict(step, history, evals), folder, step, keep=self.cfg.keep_checkpoints)
        dist_.barrier(self.info)
        return path

    def resume(self, folder: Path) -> tuple[int, list, list, Path] | None:
        """Load the newest good checkpoint into the objects: (step, history, evals, path), or None
        when the folder has no checkpoint yet. Every checkpoint unreadable is an error, never a
        silent restart."""
        found = ckpt.load_latest(folder, required=ckpt.REQUIRED_KEYS)
        if found is None:
            if ckpt.list_checkpoints(folder):
                raise ValueError(
                    f"resume=True but every checkpoint in {folder} is truncated or corrupted (see the "
                    "warnings above): nothing to resume from; pass resume=False (or a new out=) to start over"
                )
            return None
        state, path = found
        check_resume(state.get("config", {}), self.cfg, path)
        check_resume_steps(state["step"], self.cfg.steps, path)
        self._load(state, path)
        self.resumed_config = dict(state.get("config") or {})
        return state["step"], state.get("history", []), state.get("evals", []), path

    def _load(self, state: dict[str, Any], path: Path) -> None:
        """(load_latest checked that every entry is there.)"""
        fix = ("resume with models of the checkpoint's sizes (the same model settings as the run that wrote it), "
               "or start a new run (overwrite=True or another out=)")
        load_weights(self.generator, state["generator"], "generator", path, fix)
        load_weights(self.critic, state["critic"], "critic", path, fix)
        self.opt_d.load_state_dict(state["opt_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.source.load_state_dict(state["data"])
        ckpt.set_rng_state(state["rng"])
        if self.device.type == "cuda" and "rng_device" in state:  # this rank's own device stream
            torch.cuda.set_rng_state(state["rng_device"], self.device)
        for key, scaler in (("scaler_d", self.amp.scaler_d), ("scaler_g", self.amp.scaler_g)):
            if key in state:
                scaler.load_state_dict(state[key])


def model_specs(generator: nn.Module, critic: nn.Module) -> dict[str, Any]:
    """How to rebuild the models (built-in ones; None for the caller's own), for fastwgan.load."""
    from ..models import model_spec

    return {"generator": model_spec(generator), "critic": model_spec(critic)}
