"""ReLU / LeakyReLU whose double backward skips the input branch (the pruned double backward).

    y = x                 if x > 0
    y = negative_slope*x  otherwise              (ReLU: negative_slope = 0)

    dy/dx = m(x) = 1 if x > 0 else negative_slope  (piecewise constant)

The first-order backward is ``g -> m(x) * g``. Its derivative with respect to ``g`` is ``m(x)`` again;
its derivative with respect to ``x`` is ``g * dm/dx = 0`` almost everywhere. Autograd's formula for
``threshold_backward`` / ``leaky_relu_backward`` (derivatives.yaml) returns ``zeros_like(grad)`` for
that ``x`` branch, and the engine then pushes those zeros through the backward of every earlier
layer: for a WGAN-GP critic (Gulrajani et al. 2017) the double backward of the gradient penalty does
two real matmuls/convolutions per layer (weight and input gradient) on all-zero tensors, plus the
adds (counted: a 3-hidden-layer ReLU MLP critic step goes from 31 to 25 ``aten::mm`` calls).
Behind a LayerNorm the saving is smaller: LayerNorm's own double backward has a real input branch
that reaches the earlier layers anyway, so only the zero tensors and their elementwise work go. Here the first-order
backward is itself a custom Function (``_MaskedGrad``) that reads the mask from a *detached* saved
tensor, so the second-order graph has no edge back into the forward graph and the engine never runs
that branch; gradients are unchanged (the pruned term is exactly zero).

No mask is stored: the mask is read off the output y (y > 0 exactly when x > 0 for
negative_slope >= 0), which the next layer keeps alive anyway, so the fused LeakyReLU saves the
4 B/elem input that autograd's LeakyReLU keeps.

Both Functions use the ``setup_context`` form so that ``torch.func`` transforms (``grad``, ``vmap``
via ``generate_vmap_rule``) can run them. Under ``torch.compile`` the modules run a select on the
mask instead (``_select_form``): aot_autograd differentiates the graph itself there, and the
select's derivative has no input branch either, so the compiled double backward is pruned too.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch
from torch import Tensor, nn

from ._function import Function

__all__ = ["ReLU", "LeakyReLU", "relu", "leaky_relu", "pruned_double_backward", "with_torch_activations"]

# Whether the forward being run will be differentiated twice. Only then does the pruned Function
# pay: elsewhere (the generator, the critic on real and fake samples) its Python-level autograd
# Functions cost more than they save (benchmarks/results/eager_overhead.md), and torch's own
# op computes the same values and first-order gradients bit for bit.
_PRUNING = contextvars.ContextVar("fastwgan_pruned_double_backward", default=False)


@contextlib.contextmanager
def pruned_double_backward(enabled: bool = True) -> Iterator[None]:
    """Inside, these activations record the pruned double backward; outside they call torch's
    ops. :func:`fastwgan.gradient_penalty` enters it around the critic's forward on x_hat; enter
    it yourself around a forward you differentiate with ``create_graph=True``."""
    if torch.compiler.is_compiling():  # compiled code always runs _select_form (see leaky_relu)
        yield
        return
    token = _PRUNING.set(enabled)
    try:
        yield
    finally:
        _PRUNING.reset(token)


def _apply_mask(g: Tensor, s: Tensor, slope: float, s_is_result: bool) -> Tensor:
    """m(x) * g, read off the saved tensor ``s`` (the output y, or the input x)."""
    # torch's own vectorized backward kernels: ReLU selects on y <= 0 (exactly as
    # nn.ReLU's autograd formula, which also saves the result), LeakyReLU on s > 0.
    if slope == 0.0:
        return torch.ops.aten.threshold_backward(g, s, 0)
    return torch.ops.aten.leaky_relu_backward(g, s, slope, s_is_result)


class _MaskedGrad(Function):
    """g -> m(x) * g with m read from a saved tensor; linear in g, so its backward is itself.

    The saved tensor is the activation's output y when ``negative_slope >= 0`` (y > 0 exactly when
    x > 0): the next layer saves y for its own backward anyway, so this costs no memory at all,
    where autograd's LeakyReLU keeps its fp32 input alive as well (4 B/elem).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(g: Tensor, s: Tensor, slope: float, s_is_result: bool) -> Tensor:
        return _apply_mask(g, s, slope, s_is_result)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, s, slope, s_is_result = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(s)
        ctx.slope = slope
        ctx.s_is_result = s_is_result

    @staticmethod
    def backward(ctx, gg: Tensor):
        if gg is None:
            return None, None, None, None
        (s,) = ctx.saved_tensors
        # d/dg = m (applied to gg). d/ds: m is piecewise constant, its derivative is 0 almost
        # everywhere -> return None (no gradient) instead of autograd's zeros_like. This is the
        # pruning: the engine then never runs the earlier layers' backward on all-zero tensors.
        return _MaskedGrad.apply(gg, s, ctx.slope, ctx.s_is_result), None, None, None


class _LeakyReLUFn(Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, slope: float) -> Tensor:
        if slope == 0.0:
            return torch.relu(x)
        return torch.nn.functional.leaky_relu(x, slope)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, slope = inputs
        ctx.set_materialize_grads(False)
        ctx.slope = slope
        ctx.s_is_result = slope >= 0.0
        ctx.save_for_backward(output if ctx.s_is_result else x)

    @staticmethod
    def backward(ctx, gy: Tensor):
        if gy is None:
            return None, None
        (s,) = ctx.saved_tensors
        # s.detach(): the mask's source enters the first-order graph as a constant, so the
        # double backward has no edge back into the forward graph at all. (Returning None from
        # _MaskedGrad.backward alone is not enough: the engine would still run this node with an
        # undefined gradient, materialize it as zeros and push them through every earlier layer,
        # measured: the same number of matmuls as autograd's zeros_like.)
        return _MaskedGrad.apply(gy, s.detach(), ctx.slope, ctx.s_is_result), None


class _LeakyReLUInplaceFn(Function):
    """In-place variant (``inplace=True``): overwrites x and keeps the result for the mask."""

    @staticmethod
    def forward(ctx, x: Tensor, slope: float) -> Tensor:
        if slope == 0.0:
            x.relu_()
        else:
            torch.nn.functional.leaky_relu_(x, slope)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        ctx.slope = slope
        return x

    @staticmethod
    def backward(ctx, gy: Tensor):
        (y,) = ctx.saved_tensors
        return _MaskedGrad.apply(gy, y.detach(), ctx.slope, True), None


def _select_form(x: Tensor, slope: float, inplace: bool) -> Tensor:
    """The activation as a select on the boolean mask x > 0: what compiled code runs.

    Its derivative, ``g -> where(x > 0, g, slope * g)``, is a select of the incoming gradient on
    the same mask, and a boolean mask has no derivative: aot_autograd's double backward then has
    no input branch at all, where torch's relu / leaky_relu give it ``zeros_like`` and two products
    per earlier layer on them. The same pruning as the custom Functions, in the graph inductor
    compiles. Values and first-order gradients equal torch's ops (ReLU keeps NaN: ``x <= 0`` is
    False for it, as in ``threshold``)."""
    if slope == 0.0:
        return x.masked_fill_(x <= 0, 0) if inplace else torch.where(x <= 0, 0, x)
    y = torch.where(x > 0, x, x * slope)
    return x.copy_(y) if inplace else y


def leaky_relu(x: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """LeakyReLU with the pruned double backward (see module docstring)."""
    slope = float(negative_slope)
    if torch.compiler.is_compiling():
        # aot_autograd differentiates the traced graph itself, and a custom Function nested in
        # torch.func.grad was measured to give WRONG second-order gradients (torch 2.13, aot_eager
        # and inductor): compiled code prunes with a plain select instead (_select_form).
        return _select_form(x, slope, inplace)
    if not _PRUNING.get():  # nothing to prune: torch's op computes the same values, with less overhead
        if slope == 0.0:
            return torch.relu_(x) if inplace else torch.relu(x)
        return torch.nn.functional.leaky_relu(x, slope, inplace=inplace)
    if inplace:
        if slope < 0.0:
            raise ValueError(
                f"LeakyReLU(inplace=True) needs negative_slope >= 0 (got {slope}): with a negative "
                "slope the sign of the output no longer gives the mask; use inplace=False"
            )
        return _LeakyReLUInplaceFn.apply(x, slope)
    return _LeakyReLUFn.apply(x, slope)


def relu(x: Tensor, inplace: bool = False) -> Tensor:
    """ReLU with the pruned double backward (see module docstring)."""
    return leaky_relu(x, 0.0, inplace)


class ReLU(nn.Module):
    """Drop-in for ``torch.nn.ReLU`` whose double backward skips the all-zero input branch."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return relu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(nn.Module):
    """Drop-in for ``torch.nn.LeakyReLU`` whose double backward skips the all-zero input branch."""

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return leaky_relu(x, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


def with_torch_activations(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` (same weights) with these activations swapped for torch.nn's:
    the textbook, unpruned model, for tests and benchmarks that compare against it."""
    import copy

    out = copy.deepcopy(module)
    for m in list(out.modules()):
        for name, child in list(m.named_children()):
            if isinstance(child, ReLU):
                setattr(m, name, nn.ReLU(child.inplace))
            elif isinstance(child, LeakyReLU):
                setattr(m, name, nn.LeakyReLU(child.negative_slope, child.inplace))
    return out
