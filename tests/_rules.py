"""The project's derived tolerance rule, written once; every numeric test imports it.

Rule (flash-attention's): with the same computation in float64 as the truth,

    err(got) <= 2 * err(ref32) + atol,      err(x) = max |x - truth64|,
                                            atol   = eps32 * max |truth64|   (default)

``ref32`` is plain PyTorch in float32 on the same inputs: its distance from the truth is what fp32
rounding costs the textbook. A fused kernel may round in another order (a different summation
tree, a fused multiply-add, a wider accumulator), so it is allowed twice that. ``atol`` is one
fp32 epsilon at the tensor's scale (two half-ulps of its largest element): a stored fp32 result
can be that far from the fp64 value even where plain fp32 happens to round every element the
right way (tiny tensors, exact zeros). Callers pass a larger, derived ``atol`` only where they
state why (a single scalar, a sum of several rounded terms); never a tuned one.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

EPS32 = torch.finfo(torch.float32).eps  # 2^-23
U32 = EPS32 / 2  # unit roundoff of float32

__all__ = ["EPS32", "U32", "as_flat64", "assert_fp64_rule"]


def as_flat64(x: Tensor | Sequence[Tensor]) -> Tensor:
    """One float64 vector from a tensor or a list of tensors (all elements, in order)."""
    if isinstance(x, Tensor):
        return x.detach().double().reshape(-1)
    return torch.cat([t.detach().double().reshape(-1) for t in x])


def assert_fp64_rule(
    got: Tensor | Sequence[Tensor],
    ref32: Tensor | Sequence[Tensor],
    truth64: Tensor | Sequence[Tensor],
    *,
    atol: float | None = None,
    what: str = "",
    eps: float = EPS32,
) -> None:
    """Assert ``max|got - truth64| <= 2 * max|ref32 - truth64| + atol`` (module docstring).

    ``got`` / ``ref32`` / ``truth64`` are tensors or lists of tensors (compared as one flat
    vector). ``atol`` defaults to ``eps * max|truth64|``; ``eps`` is fp32's unless a test states
    another dtype's rule. A non-finite ``got`` where the truth is finite fails with that message.
    """
    g, r, t = as_flat64(got), as_flat64(ref32), as_flat64(truth64)
    assert g.shape == r.shape == t.shape, f"{what}: shapes {g.shape}, {r.shape}, {t.shape} differ"
    bad = ~torch.isfinite(g) & torch.isfinite(t)
    assert not bool(bad.any()), (
        f"{what}: {int(bad.sum())} non-finite values where the truth is finite")
    assert t.numel() > 0, f"{what}: nothing to compare (an empty check would pass vacuously)"
    err_got = (g - t).abs().max().item()
    err_ref = (r - t).abs().max().item()
    if atol is None:
        atol = eps * t.abs().max().item()
    assert err_got <= 2 * err_ref + atol, (
        f"{what}: err {err_got:.3e} from the fp64 truth > allowed 2*{err_ref:.3e} + {atol:.3e}"
        f" = {2 * err_ref + atol:.3e} (plain fp32's own err {err_ref:.3e})"
    )
