"""The one place that decides which implementation of a fused op runs.

Backends:
  * ``"triton"``    -- Triton kernels; CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``
                       (how CI proves them equal to the references without a GPU).
  * ``"cpp"``       -- the C++ kernels in ``csrc/``, for CPU tensors (``fastwgan._C_<op>``).
  * ``"reference"`` -- plain PyTorch (the torch paths in ``fastwgan.ops``); always available.
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
import json
import os
import warnings
from types import ModuleType
from typing import Literal

import torch

from .cache import cache_dir

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


# Written by setup.py beside the compiled kernels: the torch version they were built against.
BUILD_INFO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build_info.json")
REBUILD = "`pip install --no-build-isolation -e .` in a source checkout (or reinstall fastwgan)"
_warned: set[str] = set()
# op -> how load_extension got it: "installed", "jit", or "missing: <why>" (for `fastwgan info`)
how_loaded: dict[str, str] = {}


def _warn_once(key: str, message: str) -> None:
    """One warning per cause and process (not one per op or per call)."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def built_torch_version() -> str | None:
    """The torch version the installed extension was built against (None: unknown)."""
    try:
        with open(BUILD_INFO) as f:
            return str(json.load(f)["torch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stale_build_reason() -> str | None:
    """Why the installed extension must not be loaded, or None when it may be."""
    built = built_torch_version()
    if built is not None and built != torch.__version__:
        return f"they were built against torch {built}, but torch {torch.__version__} is installed now"
    return None


def _import_installed(op: str) -> tuple[ModuleType | None, str | None]:
    """The extension ``pip install`` built (``fastwgan._C_<op>``), or None and why not.

    A missing module is normal (a pure-Python install): no reason. One that is there but does not
    load is an extension built for another torch (its ABI is not stable across releases: the
    import fails with ``undefined symbol: _ZN...`` or a version check), a reason worth a warning.
    """
    stale = _stale_build_reason()
    if stale is not None:  # do not even dlopen it: a mismatched ABI is not guaranteed to fail cleanly
        return None, stale
    try:
        return importlib.import_module(f"fastwgan._C_{op}"), None
    except ModuleNotFoundError as e:
        if e.name == f"fastwgan._C_{op}":
            return None, None
        return None, f"importing them failed ({type(e).__name__}: {e})"
    except (ImportError, OSError) as e:  # undefined symbol, wrong version, unreadable file
        return None, f"importing them failed ({type(e).__name__}: {e})"


@functools.lru_cache(maxsize=None)
def load_extension(op: str) -> ModuleType | None:
    """The compiled CPU kernels of ``op``, or None when they cannot be had.

    First the extension built by ``pip install`` (``fastwgan._C_<op>``); when it is missing or was
    built for another torch (one warning naming the rebuild), a JIT build with ninja into
    ``$FASTWGAN_BUILD_DIR`` (default: fastwgan's cache folder, ``fastwgan.cache.cache_dir()``) when
    the sources are beside the package (a source checkout); else None, and ``"auto"`` runs the
    reference backend.
    """
    module, problem = _import_installed(op)
    if module is not None:
        how_loaded[op] = "installed"
        return module
    if problem is not None:
        _warn_once(
            "stale",
            f"fastwgan: the installed C++ kernels do not fit this torch: {problem}. Falling back to a "
            f"JIT build (source checkouts) or the reference backend. Fix: rebuild them with {REBUILD}",
        )
    module = _jit_build(op)
    if module is not None:
        how_loaded[op] = "jit"
    else:
        why = problem or "not built (a pure-Python install, or FASTWGAN_NO_EXT=1)"
        how_loaded[op] = f"missing: {why}; no JIT build (" + (
            "FASTWGAN_NO_JIT=1" if os.environ.get("FASTWGAN_NO_JIT") == "1"
            else "no sources beside the package, or the build failed") + ")"
    return module


def _jit_build(op: str) -> ModuleType | None:
    """Build ``csrc/<op>.cpp`` against the running torch (a source checkout only)."""
    src = os.path.normpath(os.path.join(_CSRC, f"{op}.cpp"))
    if not os.path.exists(src) or os.environ.get("FASTWGAN_NO_JIT") == "1":
        return None
    try:
        from torch.utils.cpp_extension import load

        build = os.path.join(os.environ.get("FASTWGAN_BUILD_DIR") or str(cache_dir()), op)
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
        _warn_once(
            "jit",
            f"fastwgan: could not build the C++ kernels for '{op}' ({type(e).__name__}: {e}); "
            "using the reference backend on the CPU. Fix: install a C++ compiler and ninja, then "
            "`pip install --no-build-isolation -e .`",
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
                f"backend 'cpp' was asked for but the C++ kernels for '{op}' cannot be loaded "
                f"({how_loaded.get(op, 'not built')}): rebuild them with {REBUILD} (needs a C++ "
                "compiler), or use 'auto'"
            )
        return "cpp"
    return "reference"


def cpp_sources() -> list[str]:
    """The C++ kernel sources (for diagnostics and the build)."""
    return sorted(glob.glob(os.path.join(os.path.normpath(_CSRC), "*.cpp")))


def check_grads(params: list[torch.Tensor], grads: list[torch.Tensor | None]) -> None:
    """The one rule for the gradients an optimizer step is given, the same for every backend.

    Each gradient is None (no update) or a dense (strided) tensor with its parameter's dtype,
    device and shape; strides may differ. The backends then run what they support (Triton:
    float32; C++: float32 and float64; anything else, float16/bfloat16 included, through the
    reference) without any of them accepting inputs the others refuse.
    """
    if len(grads) != len(params):
        raise ValueError(
            f"got {len(grads)} gradients for {len(params)} parameters: pass one per parameter, in "
            "the parameters' order"
        )
    for i, (p, g) in enumerate(zip(params, grads)):
        if g is None:
            continue
        if not isinstance(g, torch.Tensor):
            raise TypeError(f"gradient {i} must be a tensor or None, got {type(g).__name__}")
        if g.layout != torch.strided:  # sparse COO / CSR / ...
            raise ValueError(
                f"gradient {i} is sparse ({g.layout}); the optimizer steps take dense gradients "
                "(as torch.optim.RMSprop): use dense parameters, e.g. nn.Embedding(sparse=False)"
            )
        if g.dtype != p.dtype:
            raise TypeError(
                f"gradient {i} is {g.dtype} but its parameter is {p.dtype}: every backend takes "
                "gradients in their parameter's dtype; pass g.to(p.dtype)"
            )
        if g.device != p.device:
            raise ValueError(
                f"gradient {i} is on {g.device} but its parameter on {p.device}: move it there"
            )
        if g.shape != p.shape:
            raise ValueError(
                f"gradient {i} has shape {tuple(g.shape)} but its parameter {tuple(p.shape)}: "
                "pass one gradient per parameter, in the parameters' order"
            )
