"""Activations used by the built-in critics.

(Initial version: plain torch modules. The fused versions with a pruned double backward replace
these; the names ``ReLU`` and ``LeakyReLU`` and their constructor signatures stay.)
"""
from torch.nn import LeakyReLU, ReLU

__all__ = ["ReLU", "LeakyReLU"]
