"""Mixed precision, per PyTorch's AMP recipe: autocast for the forwards (bf16 or fp16), fp32 master
weights and optimizer state, backward outside autocast; fp16 adds one GradScaler per model (their
steps alternate, so each has its own skip / back-off history).

The gradient penalty under fp16 follows the recipe for a penalty: scale the critic's output by the
scaler's S, take the input gradient, unscale it in fp32 at the input, form the penalty in fp32.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ..hardware import native_bf16
from ..objectives import call


class GradScale(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``factor`` (a tensor).

    Placed at the critic's input inside the penalty's critic call, it unscales the input gradient
    in the input's dtype (fp32) as the last step of ``autograd.grad``. The backward is made of
    differentiable ops, so the penalty's double backward passes through it (times ``factor``)."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: Tensor) -> Tensor:
        ctx.save_for_backward(factor)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: Tensor):
        (factor,) = ctx.saved_tensors
        return g * factor.to(g.dtype), None


class ScaledCritic(nn.Module):
    """The critic as the gradient penalty sees it under fp16 + GradScaler.

    ``forward(x) = S * D(x)`` in fp32, with S the scaler's current scale (a device tensor: no host
    sync), so the penalty's inner backward through the fp16 critic carries S * dD/dx (kept out of
    fp16's underflow range); :class:`GradScale` multiplies the input gradient by 1/S in fp32 at x.
    S is a power of two, so the unscaled gradient equals the unscaled-path gradient exactly whenever
    nothing overflowed; an overflow gives inf, which the scaler then sees in the parameters'
    gradients and answers by skipping the step and halving S."""

    def __init__(self, critic: nn.Module, scale: Tensor) -> None:
        super().__init__()
        self.critic, self.scale = critic, scale

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        xs = GradScale.apply(x, 1.0 / self.scale)
        return call(self.critic, xs, y).float() * self.scale


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"``: bf16 where the hardware runs it natively (a CUDA GPU with bf16, a CPU with
    AVX512-BF16 or AMX: there the time-to-quality harness measured it faster at the same quality),
    else fp32. Any other value is returned as given."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


class Amp:
    """Autocast and (fp16) the two GradScalers of one run."""

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("precision='bf16' needs a GPU with bfloat16 support (Ampere or newer): use 'fp16'")
        self.precision, self.device = precision, device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaled = precision == "fp16"
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=self.scaled)
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=self.scaled)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def penalty_critic(self, critic: nn.Module) -> nn.Module:
        if not self.scaled:
            return critic
        return ScaledCritic(critic, self.scaler_d.scale(torch.ones((), device=self.device)))

    def step(self, scaler: torch.amp.GradScaler, loss: Tensor, opt: torch.optim.Optimizer) -> None:
        """backward + optimizer step (fp16: scaled; the scaler skips a step with inf/NaN grads)."""
        if not self.scaled:
            loss.backward()
            opt.step()
            return
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
