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

import math
from collections.abc import Sequence

import torch
from torch import Tensor

EPS32 = torch.finfo(torch.float32).eps  # 2^-23
U32 = EPS32 / 2  # unit roundoff of float32

__all__ = ["EPS32", "U32", "METRICS", "as_flat64", "assert_fp64_rule", "assert_same_trajectory", "run_tensors", "ulps_atol"]


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


# -- two runs of the same iterations ------------------------------------------------------------
METRICS = ("w_estimate", "loss_d", "penalty", "loss_g", "param_norm")  # the per-step history's numbers


def ulps_atol(truth: Tensor, n: int = 8, dtype: torch.dtype = torch.float32) -> float:
    """``n`` units in the last place of ``dtype`` at the scale of ``truth``'s largest element
    (|x| <= 2^k: ulp = 2^(k - mantissa bits)). Over several iterations a run in ``dtype`` that
    happens to land on the fp64 values leaves err(ref32) = 0; a few ulps keep the rule from asking
    the other run for exact equality there (8: the steps' rounding accumulated, stated once here)."""
    top = float(truth.detach().double().abs().max())
    return n * torch.finfo(dtype).eps * 2.0 ** math.ceil(math.log2(max(top, 1e-30)))


def run_tensors(result) -> list[Tensor]:
    """A finished run's generator and critic state (parameters and buffers), in order."""
    return [*result.generator.state_dict().values(), *result.critic.state_dict().values()]


def assert_same_trajectory(got, ref32, truth64, *, what: str = "", metrics: Sequence[str] = METRICS) -> None:
    """Two runs of the same iterations on the same draws (``got``: the runner under test, ``ref32``:
    the eager fp32 trainer), each a :class:`fastwgan.TrainResult`, against the same iterations in
    float64 (``truth64``): every logged metric (per metric, over the steps) and every tensor of the
    final models (per tensor) obey the rule, with ``ulps_atol``. A wiring error (another batch,
    another noise draw, a penalty on the wrong update, a stale lr) moves them by O(1) relative
    amounts, far outside it."""
    steps = [len(r.history) for r in (got, ref32, truth64)]
    assert steps[0] == steps[1] == steps[2] > 0, f"{what}: histories of {steps} steps"
    for k in metrics:
        g, r, t = (torch.tensor([h[k] for h in run.history], dtype=torch.float64) for run in (got, ref32, truth64))
        assert_fp64_rule(g, r, t, atol=ulps_atol(t), what=f"{what} {k}")
    for i, (g, r, t) in enumerate(zip(*(run_tensors(run) for run in (got, ref32, truth64)), strict=True)):
        if not t.is_floating_point():  # BatchNorm's batch counter
            assert torch.equal(g, t) and torch.equal(r, t), f"{what}: tensor {i}"
        else:
            assert_fp64_rule(g, r, t, atol=ulps_atol(t), what=f"{what} tensor {i} {tuple(t.shape)}")
