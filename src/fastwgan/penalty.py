"""Public gradient-penalty entry points (WGAN-GP, Gulrajani et al. 2017; WGAN-LP, Petzka et al. 2018).

    x_hat = alpha_b * real_b + (1 - alpha_b) * fake_b       alpha_b ~ U[0, 1], one per sample
    g_b   = grad_x D(x_hat)_b                                 (per sample, all non-batch axes)
    P     = lam * mean_b (||g_b||_2 - 1)^2                    two-sided (WGAN-GP)
    P     = lam * mean_b max(0, ||g_b||_2 - 1)^2              one-sided (WGAN-LP)

Two formulations:

* :func:`gradient_penalty` -- the fast eager path. Fused kernels (C++ on the CPU, Triton on the
  GPU) for the interpolation and for the norm + penalty and its backward; the critic's own double
  backward runs through autograd, and is pruned when the critic uses
  :mod:`fastwgan.ops.activations` (the built-in critics do). Call ``P.backward()`` (or add P to the
  critic loss) to get the critic's gradients. Not traceable by ``torch.compile``'s aot_autograd,
  which does not support double backward.
* :func:`gradient_penalty_functional` -- the compilable path: the input gradient is taken with
  ``torch.func.grad`` over ``torch.func.functional_call``, so the whole penalty is one first-order
  graph that ``torch.compile(fullgraph=True)`` traces; backward through it gives the same critic
  gradients. Plain PyTorch ops (inductor fuses the elementwise part itself).

Zero-gradient convention (both paths and ``backend="reference"``): where ``g_b = 0`` the norm is not
differentiable; we define ``d||g_b||/dg_b = 0``. Such a sample adds ``lam / B`` to P (two-sided;
0 one-sided) and contributes exactly zero gradient -- never NaN, which is what the common
hand-written ``sqrt((g**2).sum(1))`` gives there (0/0 in the double backward: the derivative of sqrt at 0 is infinite, times a zero).
torch 2.x's own ``Tensor.norm`` backward already uses this convention, so the textbook reference
agrees with the fused path at a zero gradient (tests/test_gradient_penalty.py checks both).

Critics with BatchNorm mix samples, so the per-sample penalty is ill-defined for them (the paper
uses LayerNorm); this is the trainer's check, not this function's.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from . import backend as _backend
from .labels import check_labels
from .ops.activations import pruned_double_backward
from .ops import gradient_penalty as _ops

__all__ = ["gradient_penalty", "gradient_penalty_functional", "penalty_at"]


def _check_inputs(real, fake, lam, alpha, one_sided=False, labels=None) -> Tensor:
    """Validate the settings both paths share; return alpha as a (B,) tensor in real's
    dtype/device."""
    if not isinstance(real, Tensor) or not isinstance(fake, Tensor):
        raise TypeError(
            f"real and fake must be tensors, got {type(real).__name__} and {type(fake).__name__}"
        )
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}: pass equally sized batches of the same data shape"
        )
    if real.dim() < 1 or real.shape[0] == 0:
        raise ValueError(f"real and fake need a non-empty batch axis first, got {tuple(real.shape)}")
    if not real.is_floating_point() or real.dtype != fake.dtype:
        raise TypeError(
            f"real and fake must be floating-point tensors of one dtype, got {real.dtype} and "
            f"{fake.dtype}: cast fake with fake.to(real.dtype)"
        )
    if real.device != fake.device:
        raise ValueError(f"real is on {real.device} but fake on {fake.device}: move them together")
    if isinstance(lam, Tensor) or not isinstance(lam, (int, float)) or isinstance(lam, bool):
        raise TypeError(f"lam must be a Python float, got {type(lam).__name__}")
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam (the penalty weight) must be finite and >= 0, got {lam} (paper: 10)")
    if not isinstance(one_sided, bool):
        raise TypeError(
            f"one_sided must be a bool (True: WGAN-LP's max(0, ||g|| - 1)^2), got "
            f"{type(one_sided).__name__} {one_sided!r}"
        )
    B = real.shape[0]
    _check_labels(labels, B, real.device)
    if alpha is None:
        return torch.rand(B, device=real.device, dtype=real.dtype)
    if not isinstance(alpha, Tensor):
        raise TypeError(f"alpha must be a tensor of shape (B,), got {type(alpha).__name__}")
    # one weight per sample: (B,) or (B, 1, ..., 1). Anything else (a scalar for the whole batch,
    # per-pixel weights) is the known bug of other libraries and is refused.
    if alpha.numel() != B or (alpha.dim() > 0 and alpha.shape[0] != B) or alpha.dim() == 0:
        raise ValueError(
            f"alpha must hold one weight per sample, shape ({B},), got {tuple(alpha.shape)}: "
            "one scalar for the whole batch or per-element weights are not the WGAN-GP sampling"
        )
    alpha = alpha.detach().reshape(B).to(device=real.device, dtype=real.dtype)
    _check_alpha_range(alpha)
    return alpha


def _check_alpha_range(alpha: Tensor) -> None:
    """x_hat = alpha x + (1 - alpha) x_fake lies between the pair only for alpha in [0, 1]. Checked
    on the host for CPU tensors; on an accelerator as a device-side assert, so a training step never
    waits for it; not inside a compiled graph or a CUDA-graph capture (where the trainer's own draws
    from U[0, 1) arrive)."""
    if torch.compiler.is_compiling() or (alpha.is_cuda and torch.cuda.is_current_stream_capturing()):
        return
    inside = ((alpha >= 0) & (alpha <= 1)).all()  # NaN compares False: refused too
    if alpha.device.type != "cpu":
        torch._assert_async(inside, "gradient_penalty: alpha must lie in [0, 1]")
    elif not bool(inside):
        bad = alpha[~((alpha >= 0) & (alpha <= 1))]
        raise ValueError(
            f"alpha (the interpolation weights) must lie in [0, 1], got {bad[0].item()!r} among {bad.numel()} "
            "out of range: x_hat = alpha * real + (1 - alpha) * fake must lie between the pair (WGAN-GP draws "
            "alpha ~ U[0, 1]); pass weights in [0, 1], or alpha=None to draw them"
        )


def _check_labels(labels, B: int, device: torch.device) -> None:
    """Any per-sample conditioning the critic takes (class ids, one-hot codes): one entry per
    sample (``check_labels`` with ``ids=False``: the critic decides what they mean), on real's device."""
    if check_labels(labels, B, ids=False) is not None and labels.device != device:
        raise ValueError(f"labels are on {labels.device} but real on {device}: move them together")


def _call(critic, x: Tensor, labels, call=None):
    """``critic(x[, labels])``; outside compilation, a failure of the critic on these inputs
    (wrong data shape, dtype or device, labels out of range or missing) is re-raised naming them,
    with the critic's own error as the cause: RuntimeError / IndexError as ValueError, TypeError
    (a call with the wrong arguments) as TypeError."""
    call = critic if call is None else call  # not `call or critic`: dynamo cannot branch on a module's truth
    if torch.compiler.is_compiling():
        return call(x) if labels is None else call(x, labels)
    try:
        return call(x) if labels is None else call(x, labels)
    except (RuntimeError, IndexError, TypeError) as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise
        given = "no labels were given" if labels is None else (
            f"labels of shape {tuple(labels.shape)} and dtype {labels.dtype}")
        message = (
            f"the critic failed on the interpolated batch (shape {tuple(x.shape)}, {x.dtype}, on "
            f"{x.device}: the shape, dtype and device of real and fake; {given}): "
            f"{type(e).__name__}: {e}. Pass real, fake (and labels, for a conditional critic only) "
            "that the critic takes"
        )
        raise (TypeError if isinstance(e, TypeError) else ValueError)(message) from e


def _check_output(out, B: int) -> None:
    """The critic's output must be a tensor of one score per sample that depends on the input."""
    if not isinstance(out, Tensor):
        raise TypeError(f"the critic must return a tensor, got {type(out).__name__}")
    _check_scores(out.shape, out.requires_grad, B)


def _check_scores(shape: torch.Size, depends_on_x: bool, B: int) -> None:
    """The one check of the critic's scores on both paths. Shape and ``requires_grad`` are
    metadata: no host sync, and fixed at trace time under ``torch.compile``. Inside
    ``torch.func.grad``, ``requires_grad`` says whether the output depends on the transformed
    input x; on the eager path it may also come from the parameters, so that path checks the
    input gradient as well."""
    if len(shape) == 0 or math.prod(shape) != B or shape[0] != B:
        raise ValueError(
            f"the critic must return one score per sample, shape ({B},) or ({B}, 1), got "
            f"{tuple(shape)}"
        )
    if not depends_on_x:
        raise _no_input_dependence()


def _no_input_dependence() -> ValueError:
    return ValueError(
        "the critic's output does not depend on its input, so the gradient penalty is undefined: "
        "check that forward() uses x (and is not run under torch.no_grad() or on a detached copy)"
    )


def gradient_penalty(
    critic: Callable[..., Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    lam: float = 10.0,
    one_sided: bool = False,
    alpha: Tensor | None = None,
    labels: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """The gradient penalty P (a scalar); ``P.backward()`` populates the critic's gradients.

    Args:
        critic: module or function; called as ``critic(x_hat)``, or ``critic(x_hat, labels)`` when
            ``labels`` is given (conditional critics). Must return shape (B,) or (B, 1).
        real, fake: (B, ...) tensors of the same shape (any number of data axes). Both are
            detached: the penalty trains the critic only (Alg. 1).
        lam: penalty weight lambda >= 0 (10 in the paper; 0.1 in its toy experiments).
        one_sided: WGAN-LP's max(0, ||g|| - 1)^2 instead of (||g|| - 1)^2.
        alpha: optional (B,) interpolation weights, one per sample; default U[0, 1).
        labels: one entry per sample (shape (B, ...)), on real's device; passed to the critic.
        backend: "auto" | "cpp" | "triton" | "reference" (see :mod:`fastwgan.backend`).
    """
    alpha = _check_inputs(real, fake, lam, alpha, one_sided, labels)
    be = _backend.resolve("gradient_penalty", real.device, backend)
    B = real.shape[0]
    with torch.enable_grad():
        x_hat = _ops.interpolate(real.detach(), fake.detach(), alpha, backend=be)
        x_hat = x_hat.detach().requires_grad_(True)
        with pruned_double_backward():
            out = _call(critic, x_hat, labels)
        _check_output(out, B)
        (g,) = torch.autograd.grad(
            out, x_hat, torch.ones_like(out), create_graph=True, allow_unused=True
        )
        if g is None:
            raise _no_input_dependence()
        return _ops.norm_penalty(g, lam, one_sided, backend=be)


def gradient_penalty_functional(
    critic: torch.nn.Module,
    real: Tensor,
    fake: Tensor,
    *,
    lam: float = 10.0,
    one_sided: bool = False,
    alpha: Tensor | None = None,
    labels: Tensor | None = None,
) -> Tensor:
    """Same penalty and gradients as :func:`gradient_penalty`, traceable by ``torch.compile``.

    ``grad_x D`` is computed with ``torch.func.grad`` of ``functional_call(critic, ...)``, which
    aot_autograd sees as an ordinary first-order graph, so ``torch.compile(fullgraph=True)`` can
    compile a whole critic step around it (eager ``autograd.grad(create_graph=True)`` cannot be
    traced: "aot_autograd does not currently support double backward"). Uses the same zero-gradient
    convention (:func:`fastwgan.ops.gradient_penalty.safe_norm`). ``critic`` must be an
    ``nn.Module``; its parameters and buffers are passed explicitly, so ``P.backward()`` populates
    their ``.grad`` as usual. The same validation as :func:`gradient_penalty`, none of it a host
    sync; the result is in the inputs' dtype (accumulated in at least float32).
    """
    if not isinstance(critic, torch.nn.Module):
        raise TypeError(
            f"gradient_penalty_functional needs an nn.Module critic, got {type(critic).__name__}: "
            "wrap the function in a module, or use gradient_penalty"
        )
    alpha = _check_inputs(real, fake, lam, alpha, one_sided, labels)
    x_hat = _ops.plain_interpolate(real.detach(), fake.detach(), alpha)
    state = {**dict(critic.named_parameters()), **dict(critic.named_buffers())}
    return penalty_at(critic, state, x_hat, lam=lam, one_sided=one_sided, labels=labels)


def penalty_at(critic: torch.nn.Module, state: dict[str, Tensor], x_hat: Tensor, *, lam: float,
               one_sided: bool = False, labels: Tensor | None = None) -> Tensor:
    """lam * mean_b (||grad_x D(x_hat; state)_b|| - 1)^2 with the critic's parameters and buffers
    taken from ``state`` (a name -> tensor dict, as ``torch.func.functional_call`` takes it).

    The building block of :func:`gradient_penalty_functional` and of the static training step
    (:mod:`fastwgan.training.static`), which differentiates it once more with ``torch.func.grad`` over
    ``state``: every derivative is a ``torch.func`` transform, so ``torch.compile(fullgraph=True)``
    traces the whole thing. The score and the norm are accumulated in float32, or float64 for a
    float64 x_hat (autocast may run the critic in bf16); the penalty has x_hat's dtype. The
    critic's output is checked as on the eager path (shape, and that it depends on x): all
    metadata, so free under compilation.
    """
    B = x_hat.shape[0]
    acc = torch.promote_types(x_hat.dtype, torch.float32)

    def forward(*args: Tensor) -> Tensor:
        return torch.func.functional_call(critic, state, args)

    seen: list[tuple[torch.Size, bool]] = []

    def score_sum(x: Tensor) -> Tensor:
        with pruned_double_backward():
            out = _call(critic, x, labels, call=forward)
        if not isinstance(out, Tensor):
            _check_output(out, B)
        # checked after the transform: an exception raised inside torch.func.grad trips dynamo
        seen.append((out.shape, out.requires_grad))
        return out.to(acc).sum()

    g = torch.func.grad(score_sum)(x_hat)
    _check_scores(*seen[0], B)
    gap = _ops.safe_norm(g.to(acc)) - 1
    if one_sided:
        gap = gap.clamp(min=0)
    return (lam * gap.square().mean()).to(x_hat.dtype)
