"""Shared benchmark helpers: record a median per unit, and describe the machine.

Every benchmark records its median into ``RATIOS[group][name]`` through :func:`record`; at the end
of the session (conftest.py) each group's entries are printed as speed ratios against the group's
baseline, all measured in this same run on this same machine.
"""
from __future__ import annotations

import os
import platform

import torch

RATIOS: dict[str, dict[str, float]] = {}
NOTES: dict[tuple[str, str], str] = {}  # (group, name) -> extra text (peak memory, GB/s)
BASELINES: dict[str, str] = {}


def record(benchmark, group: str, name: str, units: float = 1.0, baseline: bool = False) -> float:
    """Store seconds per unit (median) of a finished ``benchmark`` run under ``group``/``name``."""
    if getattr(benchmark, "disabled", False) or benchmark.stats is None:
        return float("nan")  # --benchmark-disable: ran once as a smoke test, nothing timed
    stats = benchmark.stats.stats
    per_unit = stats.median / units
    RATIOS.setdefault(group, {})[name] = per_unit
    if baseline:
        BASELINES[group] = name
    benchmark.extra_info.update(group=group, name=name, seconds_per_unit=per_unit, units=units)
    return per_unit


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()}), threads {torch.get_num_threads()}")


def note(group: str, name: str, text: str) -> None:
    """Extra text printed beside ``group``/``name`` in the session summary."""
    NOTES[(group, name)] = text



def static_step(G, D, source, *, loss: str, batch: int, lam: float, lr: float, z_dim: int, precision: str):
    """The trainer's compiled static step (what ``train(compile=True)`` runs) for these models, with
    the trainer's optimizers for ``loss``; call ``stage(source)`` then ``()`` per iteration."""
    from fastwgan.optim import ClippedRMSprop
    from fastwgan.static_step import StaticStep

    if loss == "wgan":
        opt_d, opt_g = ClippedRMSprop(D.parameters(), lr=lr, clip=0.01), torch.optim.RMSprop(G.parameters(), lr=lr)
    else:
        opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.9))
        opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.9))
    return StaticStep(G, D, opt_d, opt_g, loss=loss, lam=lam, n_critic=5, batch_size=batch, z_dim=z_dim,
                      sample_shape=tuple(source.sample_shape), data_dtype=torch.float32, labelled=False,
                      device=torch.device("cpu"), autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
                      compile=True)
