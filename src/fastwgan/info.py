"""``fastwgan info``: what this machine can run, and what ``"auto"`` picks here.

Versions (Python, torch, triton), each kernel backend and why it is or is not usable (the C++
extension installed / JIT-built / missing, Triton importable, CUDA devices), whether the CPU has
bf16 instructions, and the settings ``train(..., device="auto", backend="auto", compile="auto")``
resolves to on this machine (``auto_settings``: the one place that states those rules for display).
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

from . import backend
from .cache import cache_dir, compile_cache_dir
from .extras import EXTRAS, available, install_command
from .hardware import auto_device, cpu_bf16

OPS = ("clipped_rmsprop", "gradient_penalty")
# module to look for -> extra that installs it
OPTIONAL = {"tensorboard": "tensorboard", "triton": "triton", "mlxtend": "images", "torchmetrics": "images",
            "torch_fidelity": "inception"}


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        return None


def kernel_backends() -> dict[str, Any]:
    """Each backend: usable here or not, and why."""
    cpp = {}
    for op in OPS:
        backend.load_extension(op)
        cpp[op] = backend.how_loaded.get(op, "unknown")
    triton_ok = backend.triton_available()
    return {
        "cpp": {"usable": all(v in ("installed", "jit") for v in cpp.values()), "ops": cpp,
                "built_against_torch": backend.built_torch_version()},
        "triton": {"usable": triton_ok and (torch.cuda.is_available() or backend.triton_interpret()),
                   "importable": triton_ok,
                   "why": ("CUDA tensors" if torch.cuda.is_available() else
                           "CPU tensors through TRITON_INTERPRET=1" if backend.triton_interpret() else
                           "no CUDA device (on the CPU only under TRITON_INTERPRET=1, for tests)")
                   if triton_ok else f"triton does not import: `{install_command('triton')}`"},
        "reference": {"usable": True, "why": "plain PyTorch, always"},
    }


def auto_settings(precision: str = "auto", steps: int | None = None, n_critic: int = 5) -> dict[str, Any]:
    """What ``"auto"`` resolves to on this machine, by the trainer's rules: device = CUDA when
    present; precision = bf16 where the hardware has it (``resolve_precision``); backend per op =
    Triton on CUDA, C++ on the CPU when it loads, else reference (or $FASTWGAN_BACKEND); compile =
    bf16 CPU runs of at least AUTO_COMPILE_MIN_CRITIC_UPDATES critic updates; CUDA graphs = on CUDA."""
    from .training.precision import resolve_precision
    from .training.runner import AUTO_COMPILE_MIN_CRITIC_UPDATES as min_updates, auto_compiles

    device = auto_device()
    precision = resolve_precision(precision, device)
    kernels = {}
    for op in OPS:
        try:
            kernels[op] = backend.resolve(op, device, "auto")
        except (ValueError, RuntimeError) as e:  # e.g. a bad FASTWGAN_BACKEND
            kernels[op] = f"error: {e}"
    compile_on = steps is not None and auto_compiles(precision, device, steps, n_critic)
    return {"device": str(device), "backend": kernels, "precision": precision,
            "compile": compile_on if steps is not None else
            (f"on for bf16 CPU runs of >= {min_updates} critic updates (steps x n_critic)"
             if device.type == "cpu" else "off"),
            "cuda_graphs": device.type == "cuda",
            "FASTWGAN_BACKEND": os.environ.get("FASTWGAN_BACKEND")}


def info() -> dict[str, Any]:
    """Everything ``fastwgan info`` prints, as a dict."""
    from . import __version__

    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "fastwgan": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "cuda_devices": cuda,
        "cpu": cpu_bf16(),
        "threads": torch.get_num_threads(),
        "backends": kernel_backends(),
        "auto": auto_settings(),
        "cache": {"folder": str(cache_dir()), "compiled_steps": str(compile_cache_dir())},
        "optional": {m: ("installed" if available(m) else f"missing: `{install_command(e)}` ({EXTRAS[e]})")
                     for m, e in OPTIONAL.items()},
    }
