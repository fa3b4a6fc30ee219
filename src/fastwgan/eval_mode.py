"""Modules in eval mode for a block, each one's own training flag restored after."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["eval_mode", "modes_kept"]


@contextlib.contextmanager
def modes_kept(*modules: nn.Module) -> Iterator[None]:
    """Whatever the block does to the modules' training flags (a caller's hook may call
    ``.eval()``), each module leaves it in the mode it entered in."""
    was = [m.training for m in modules]
    try:
        yield
    finally:
        for m, training in zip(modules, was, strict=True):
            m.train(training)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """The modules in eval mode inside the block (BatchNorm uses its running statistics and does
    not update them, dropout is off), their modes restored after."""
    with modes_kept(*modules):
        for m in modules:
            m.eval()
        yield
