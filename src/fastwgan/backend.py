"""The one place that decides which implementation of a fused op runs.

Backends:
  * ``"triton"``    -- Triton kernels; CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``
                       (how CI proves them equal to the references without a GPU).
  * ``"cpp"``       -- the C++ kernels in ``csrc/``, for CPU tensors (``fastwgan._C_<op>``).
  * ``"reference"`` -- plain PyTorch, in ``fastwgan.reference``; always available.
  * ``"auto"``      -- triton on CUDA when triton imports, cpp on the CPU when the extension
                       loads, else reference.

The environment variable ``FASTWGAN_BACKEND`` overrides ``"auto"`` (tests and CI use it to force
the Triton interpreter). An explicitly requested backend that cannot run raises, naming the fix;
only ``"auto"`` falls back silently.
"""
from __future__ import annotations

import functools
import glob
import importlib
import os
import warnings
from types import ModuleType
from typing import Literal

import torch

Backend = Literal["auto", "triton", "cpp", "reference"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "cpp", "reference")

_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "csrc")


def triton_interpret() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install on an odd platform
        return False
    return True


@functools.lru_cache(maxsize=None)
def load_extension(op: str) -> ModuleType | None:
    """The compiled CPU kernels of ``op``, or None when they cannot be had.

    First the extension built by ``pip install`` (``fastwgan._C_<op>``); failing that, when the
    sources are beside the package (a source checkout), a JIT build with ninja into
    ``$FASTWGAN_BUILD_DIR`` (default ``~/.cache/fastwgan``); the build takes about a minute once.
    """
    try:
        return importlib.import_module(f"fastwgan._C_{op}")
    except ImportError:
        pass
    src = os.path.normpath(os.path.join(_CSRC, f"{op}.cpp"))
    if not os.path.exists(src) or os.environ.get("FASTWGAN_NO_JIT") == "1":
        return None
    try:
        from torch.utils.cpp_extension import load

        build = os.path.join(
            os.environ.get("FASTWGAN_BUILD_DIR", os.path.expanduser("~/.cache/fastwgan")), op
        )
        os.makedirs(build, exist_ok=True)
        return load(
            name=f"fastwgan_C_{op}",
            sources=[src],
            extra_include_paths=[os.path.dirname(src)],
            extra_cflags=["-O3", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            build_directory=build,
            with_cuda=False,
            verbose=False,
        )
    except Exception as e:  # compiler missing, etc.: say so once, fall back
        warnings.warn(
            f"fastwgan: could not build the C++ kernels for '{op}' ({type(e).__name__}: {e}); "
            "using the reference backend on the CPU. Fix: install a C++ compiler and ninja, then "
            "`pip install --no-build-isolation -e .`",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def resolve(op: str, device: torch.device | str, requested: str = "auto") -> str:
    """Pick the backend that runs ``op`` on ``device``.

    ``requested`` is what the caller asked for; ``"auto"`` defers to ``FASTWGAN_BACKEND`` and then
    to the device. Returns one of ``"triton"``, ``"cpp"``, ``"reference"``.
    """
    if requested not in BACKENDS:
        raise ValueError(
            f"unknown backend {requested!r}: choose one of {', '.join(BACKENDS)}"
        )
    if requested == "auto":
        env = os.environ.get("FASTWGAN_BACKEND", "auto")
        if env not in BACKENDS:
            raise ValueError(
                f"FASTWGAN_BACKEND={env!r} is not a backend: set it to one of {', '.join(BACKENDS)}"
            )
        requested = env
    dev = torch.device(device)
    if requested == "auto":
        if dev.type == "cuda" and triton_available():
            return "triton"
        if dev.type == "cpu" and load_extension(op) is not None:
            return "cpp"
        return "reference"
    if requested == "triton":
        if not triton_available():
            raise RuntimeError(
                "backend 'triton' was asked for but triton does not import: "
                "`pip install triton==3.7.1`, or use backend='auto'"
            )
        if dev.type == "cpu" and not triton_interpret():
            raise RuntimeError(
                "backend 'triton' on CPU tensors needs the Triton interpreter: set "
                "TRITON_INTERPRET=1 before triton is imported, or use backend='cpp'/'auto'"
            )
        return "triton"
    if requested == "cpp":
        if dev.type != "cpu":
            raise RuntimeError(
                f"backend 'cpp' runs on CPU tensors only, got {dev.type}: use 'triton' or 'auto'"
            )
        if load_extension(op) is None:
            raise RuntimeError(
                f"backend 'cpp' was asked for but the C++ kernels for '{op}' are not built: run "
                "`pip install --no-build-isolation -e .` (needs a C++ compiler), or use 'auto'"
            )
        return "cpp"
    return "reference"


def cpp_sources() -> list[str]:
    """The C++ kernel sources (for diagnostics and the build)."""
    return sorted(glob.glob(os.path.join(os.path.normpath(_CSRC), "*.cpp")))
