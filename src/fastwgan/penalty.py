"""Public gradient-penalty entry point (dispatches to the fused path or the reference)."""
from __future__ import annotations

from .reference.gradient_penalty import gradient_penalty

__all__ = ["gradient_penalty"]
