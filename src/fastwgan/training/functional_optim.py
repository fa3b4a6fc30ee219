"""The optimizers' update rules in functional form, for the static runner: one registry, keyed by
optimizer class, instead of class-name checks scattered through the code.

Each rule runs the optimizer's own arithmetic on its own state tensors (torch's functional
``adam`` / ``rmsprop``, or ClippedRMSprop's registered op), so a checkpoint's optimizer state_dict is
the eager trainer's and a run can be resumed in either runner. Under compilation and in CUDA graphs
Adam runs in its capturable form with the learning rate a device tensor: a linear decay then changes
a value, not the graph.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam as _adam
from torch.optim.optimizer import _get_scalar_dtype
from torch.optim.rmsprop import rmsprop as _rmsprop

from ..optim import ClippedRMSprop

# per-group options the functional rules do not implement
_UNSUPPORTED_OPTIONS = ("amsgrad", "maximize", "momentum", "centered", "weight_decay", "differentiable")


class _Rule:
    state_keys: tuple[str, ...] = ()
    lr_on_device = True  # the learning rate can be a device tensor (set_lr without recompiling)

    def unsupported(self, opt: torch.optim.Optimizer) -> str | None:
        for group in opt.param_groups:
            if any(group.get(k) for k in _UNSUPPORTED_OPTIONS):
                return "the static step implements plain Adam / RMSprop (no amsgrad, momentum, weight decay)"
        return None

    def init_state(self, opt: torch.optim.Optimizer, on_device: bool) -> None:
        """The state the eager optimizer creates at its first step (same keys and dtypes)."""
        for group in opt.param_groups:
            if on_device:
                group["capturable"] = True
            for p in group["params"]:
                st = opt.state[p]
                if len(st) == 0:
                    st["step"] = torch.zeros((), dtype=_get_scalar_dtype())
                    for k in self.state_keys:
                        st[k] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if on_device:
                    st["step"] = st["step"].to(p.device)

    def form(self, opt: torch.optim.Optimizer) -> Any:
        """What the update needs, read once: inside the compiled step, reading ``param_groups``
        would make torch.compile guard on the group dict, so each new lr would recompile."""
        group = opt.param_groups[0]  # one group: the trainer builds them so
        params = list(group["params"])
        return params, [[opt.state[p][k] for p in params] for k in (*self.state_keys, "step")], self.hyper(group)

    def hyper(self, group: dict) -> dict[str, Any]:
        return {}


class _Adam(_Rule):
    state_keys = ("exp_avg", "exp_avg_sq")

    def hyper(self, group: dict) -> dict[str, Any]:
        b1, b2 = group["betas"]
        return dict(beta1=float(b1), beta2=float(b2), eps=float(group["eps"]))

    def update(self, opt, form, grads: list[Tensor], lr: Tensor, capturable: bool) -> None:
        params, (m, v, steps), hp = form
        _adam(params, grads, m, v, [], steps, foreach=False, capturable=capturable, amsgrad=False,
              lr=lr if capturable else float(opt.param_groups[0]["lr"]), weight_decay=0.0, maximize=False, **hp)


class _RMSprop(_Rule):
    state_keys = ("square_avg",)
    lr_on_device = False  # torch's functional rmsprop takes a float lr

    def hyper(self, group: dict) -> dict[str, Any]:
        return dict(lr=float(group["lr"]), alpha=float(group["alpha"]), eps=float(group["eps"]))

    def update(self, opt, form, grads: list[Tensor], lr: Tensor, capturable: bool) -> None:
        params, (sq, steps), hp = form
        _rmsprop(params, grads, sq, [], [], steps, foreach=False, weight_decay=0.0, momentum=0.0, centered=False,
                 capturable=capturable, **hp)


class _ClippedRMSprop(_RMSprop):
    """WGAN's critic update through its registered op (one launch for all parameters); its kernels
    never read the step count on the host, so its state stays where it is."""

    def init_state(self, opt: torch.optim.Optimizer, on_device: bool) -> None:
        super().init_state(opt, on_device=False)

    def form(self, opt: torch.optim.Optimizer) -> Any:
        return None

    def update(self, opt, form, grads: list[Tensor], lr: Tensor, capturable: bool) -> None:
        opt.step_with_grads(grads)


RULES: dict[type, _Rule] = {torch.optim.Adam: _Adam(), torch.optim.RMSprop: _RMSprop(),
                            ClippedRMSprop: _ClippedRMSprop()}


def rule_for(opt: torch.optim.Optimizer) -> _Rule | None:
    """The functional rule of ``opt``'s exact class (a subclass may change the update: no rule)."""
    return RULES.get(type(opt))


def unsupported(opt: torch.optim.Optimizer) -> str | None:
    """Why ``opt`` has no functional form here (None: it has one)."""
    rule = rule_for(opt)
    if rule is None:
        return f"optimizer {type(opt).__name__} has no functional form here (supported: Adam, RMSprop, ClippedRMSprop)"
    return rule.unsupported(opt)
