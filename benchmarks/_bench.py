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

