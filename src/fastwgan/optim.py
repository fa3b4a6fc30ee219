"""Optimizers for WGAN training.

:class:`ClippedRMSprop` is WGAN's critic update (Arjovsky et al. 2017, Algorithm 1): the arithmetic
of ``torch.optim.RMSprop`` followed by clipping every weight to ``[-clip, clip]``, fused into one
pass over memory (see :mod:`fastwgan.ops.clipped_rmsprop` for the kernels and why they take a
table of pointers rather than a flat buffer). Its state has RMSprop's layout (``step``,
``square_avg``, ``momentum_buffer``, ``grad_avg``) so ``state_dict`` loads into
``torch.optim.RMSprop`` and back.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable

import torch
from torch.optim.optimizer import _get_scalar_dtype

from fastwgan import backend as _backend
from fastwgan.ops import clipped_rmsprop as _ops

__all__ = ["ClippedRMSprop"]

_OP = "clipped_rmsprop"


def _check_hparams(lr: Any, alpha: float, eps: float, clip: float, weight_decay: float,
                   momentum: float) -> None:
    if isinstance(lr, torch.Tensor):
        raise TypeError("lr must be a Python float (a tensor lr is not supported): pass float(lr)")
    if not lr >= 0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    if not clip > 0 or not math.isfinite(clip):
        raise ValueError(
            f"clip must be a finite number > 0 (WGAN uses 0.01), got {clip}: weights are clipped "
            "to [-clip, clip]"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (smoothing constant) must be in [0, 1], got {alpha}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if not momentum >= 0:
        raise ValueError(f"momentum must be >= 0, got {momentum}")


_STATE_KEYS = ("step", "square_avg", "momentum_buffer", "grad_avg")  # RMSprop's layout


def _check_rmsprop_state_dict(state_dict: Any) -> None:
    """Refuse, at load time, a state_dict that is not RMSprop's / ClippedRMSprop's (an Adam one
    would fail only at the first step, with a KeyError)."""
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
        raise ValueError(
            "ClippedRMSprop.load_state_dict needs an optimizer state_dict (a dict with 'state' and "
            f"'param_groups'), got {type(state_dict).__name__}"
        )
    need_of: dict[Any, list[str]] = {}
    for i, group in enumerate(state_dict["param_groups"]):
        if "alpha" not in group:
            keys = sorted(k for k in group if k != "params")
            raise ValueError(
                f"this state_dict is not RMSprop's or ClippedRMSprop's: param_groups[{i}] has no "
                f"'alpha' (its settings are {', '.join(keys)}). Load the state of the same kind "
                "of optimizer (the critic's ClippedRMSprop / RMSprop), or start it fresh"
            )
        need = ["square_avg"] + (["momentum_buffer"] if group.get("momentum", 0) > 0 else []) \
            + (["grad_avg"] if group.get("centered", False) else [])
        need_of.update({pid: need for pid in group.get("params", [])})
    for pid, st in state_dict["state"].items():
        foreign = sorted(set(st) - set(_STATE_KEYS))
        if foreign:
            raise ValueError(
                f"this state_dict is not RMSprop's or ClippedRMSprop's: the state of parameter "
                f"{pid} holds {', '.join(foreign)} (ClippedRMSprop keeps {', '.join(_STATE_KEYS)}). "
                "Load the state of the same kind of optimizer, or start it fresh"
            )
        missing = [k for k in need_of.get(pid, ["square_avg"]) if k not in st] if st else []
        if missing:
            raise ValueError(
                f"the state of parameter {pid} lacks {', '.join(missing)}, which its param group's "
                "settings need (square_avg always, momentum_buffer for momentum > 0, grad_avg for "
                "centered=True): load a state_dict saved with the same settings"
            )


class ClippedRMSprop(torch.optim.Optimizer):
    """RMSProp followed by ``p.clamp_(-clip, clip)``, fused: one pass over memory per step.

    Equivalent to ``torch.optim.RMSprop(params, lr, alpha, eps, weight_decay, momentum, centered)``
    plus ``for p in params: p.clamp_(-clip, clip)`` after every step (within a few ulp; see
    tests/test_clipped_rmsprop.py). Every parameter is clipped, also one without a gradient in a
    step (RMSprop skips it; WGAN's constraint is on all the critic's weights).

    Args:
        params: the critic's parameters (or parameter groups).
        lr: learning rate (WGAN: 5e-5). May be changed in ``param_groups`` between steps; under
            ``torch.compile`` a new value recompiles the step (it is a Python float).
        alpha, eps, weight_decay, momentum, centered: as in ``torch.optim.RMSprop``.
        clip: c > 0 of the weight clipping (WGAN: 0.01).
        backend: ``"auto"`` | ``"triton"`` | ``"cpp"`` | ``"reference"``, resolved per device by
            :func:`fastwgan.backend.resolve` when a parameter group is added.

    A group's tensors are bucketed by (device, dtype) and each bucket is one kernel call: one
    Triton launch (CUDA, float32), or one parallel C++ region (CPU, float32/float64). Anything
    those cannot take (float16/bfloat16, a non-dense parameter) runs the reference in that bucket.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 5e-5,
        alpha: float = 0.99,
        eps: float = 1e-8,
        clip: float = 0.01,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        backend: str = "auto",
    ) -> None:
        _check_hparams(lr, alpha, eps, clip, weight_decay, momentum)
        if backend not in _backend.BACKENDS:
            raise ValueError(
                f"unknown backend {backend!r}: choose one of {', '.join(_backend.BACKENDS)}"
            )
        self.backend = backend
        self._backend_of: dict[torch.device, str] = {}
        self._kernels: dict[str, Callable[..., None]] = {}
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            clip=clip,
            # RMSprop's own keys, so the state_dict loads into torch.optim.RMSprop unchanged.
            foreach=None,
            maximize=False,
            capturable=False,
            differentiable=False,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)  # normalises the group, fills in the defaults
        group = self.param_groups[-1]
        try:
            _check_hparams(group["lr"], group["alpha"], group["eps"], group["clip"],
                           group["weight_decay"], group["momentum"])
            for i, p in enumerate(group["params"]):
                if not p.is_floating_point() or p.is_complex():
                    raise TypeError(
                        f"ClippedRMSprop updates real floating-point parameters; parameter {i} "
                        f"of group {len(self.param_groups) - 1} is {p.dtype}: leave it out of "
                        "the optimizer or make it a float tensor"
                    )
            self._resolve(group)
        except Exception:
            self.param_groups.pop()  # a rejected group leaves no trace
            raise

    def _resolve(self, group: dict[str, Any]) -> None:
        for p in group["params"]:
            if p.device not in self._backend_of:
                # the one place that picks backends; raises here (not mid-training) when an
                # explicitly requested backend cannot run on this device.
                which = _backend.resolve(_OP, p.device, self.backend)
                self._backend_of[p.device] = which
                # fetch the op now (loading / building the extension), not inside a traced step
                if which == "cpp" and "cpp" not in self._kernels:
                    self._kernels["cpp"] = _ops.cpp_op()
                elif which == "triton" and "triton" not in self._kernels:
                    self._kernels["triton"] = _ops.triton_op()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.load_state_dict``, refusing (ValueError) a state_dict of another
        kind of optimizer (Adam's, say) before anything is loaded."""
        _check_rmsprop_state_dict(state_dict)
        super().load_state_dict(state_dict)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["backend"] = self.backend
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        backend = state.pop("backend", None)
        super().__setstate__(state)
        if "_backend_of" not in self.__dict__:  # unpickled or deep-copied: resolve again
            self.backend = backend or "auto"
            self._backend_of, self._kernels = {}, {}
            for group in self.param_groups:
                self._resolve(group)
        for group in self.param_groups:
            for k, v in self.defaults.items():
                group.setdefault(k, v)  # e.g. 'clip' when loading torch.optim.RMSprop's state
            for p in group["params"]:
                s = self.state.get(p, {})
                if len(s) != 0 and not torch.is_tensor(s["step"]):
                    s["step"] = torch.tensor(float(s["step"]), dtype=_get_scalar_dtype())

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One fused RMSProp + clip step for every parameter; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    @torch.no_grad()
    def step_with_grads(self, grads: list[torch.Tensor]) -> None:
        """``step()`` with the gradients given as a list (the parameters' order, one group)
        instead of read from ``.grad``: the form the static training step uses under
        ``torch.compile`` and in CUDA graphs, where the gradients come from ``torch.func.grad``."""
        if len(self.param_groups) != 1:
            raise ValueError(
                f"step_with_grads needs an optimizer with one param group, this one has "
                f"{len(self.param_groups)}: call step() with .grad set instead"
            )
        if not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of tensors, got {type(grads).__name__}")
        self._step_group(self.param_groups[0], list(grads))

    def _step_group(self, group: dict[str, Any], grads: list[torch.Tensor] | None = None) -> None:
        lr, clip = group["lr"], group["clip"]
        if isinstance(lr, torch.Tensor):
            lr = float(lr)
        _check_hparams(lr, group["alpha"], group["eps"], clip, group["weight_decay"],
                       group["momentum"])
        # 'capturable' is ignored: the kernels never sync on the step count (torch.compile's
        # optimizer tracing also sets it to True in the traced view of every group).
        if group["maximize"] or group["differentiable"]:
            raise ValueError(
                "ClippedRMSprop does not implement RMSprop's maximize/differentiable: set them to "
                "False in param_groups (they came from a loaded state_dict)"
            )
        centered, use_m = group["centered"], group["momentum"] > 0
        if grads is None:
            grads = [p.grad for p in group["params"]]
        _backend.check_grads(group["params"], grads)  # one rule, whichever backend runs
        buckets: dict[tuple[torch.device, torch.dtype, str], list[list[torch.Tensor]]] = {}
        no_grad: list[torch.Tensor] = []
        for p, g in zip(group["params"], grads):
            if g is None:
                no_grad.append(p)
                continue
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.zeros((), dtype=_get_scalar_dtype())
                state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if use_m:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                if centered:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            which = self._backend_of[p.device]
            v = state["square_avg"]
            ga = state["grad_avg"] if centered else None
            mb = state["momentum_buffer"] if use_m else None
            if which != "reference":
                if which == "triton" and p.dtype != torch.float32:
                    which = "reference"
                elif which == "cpp" and p.dtype not in (torch.float32, torch.float64):
                    which = "reference"
                elif not _ops.dense(p) or any(
                    x is not None and x.stride() != p.stride() for x in (v, ga, mb)
                ):
                    which = "reference"
                elif g.stride() != p.stride():
                    g = torch.empty_like(p).copy_(g)  # grad in another layout: one extra copy
            lists = buckets.setdefault((p.device, p.dtype, which), [[], [], [], [], [], []])
            lists[0].append(p)
            lists[1].append(g)
            lists[2].append(v)
            if centered:
                lists[3].append(ga)
            if use_m:
                lists[4].append(mb)
            lists[5].append(state["step"])
        for (_, _, which), (ps, gs, vs, gas, mbs, steps) in buckets.items():
            args = (ps, gs, vs, gas, mbs, steps)
            hp = dict(lr=lr, alpha=group["alpha"], eps=group["eps"],
                      weight_decay=group["weight_decay"], momentum=group["momentum"],
                      centered=centered, clip=clip)
            if which == "reference":
                _ops.plain_clipped_rmsprop_(*args, **hp)
            else:  # one call: one parallel C++ region / one Triton launch for the bucket
                self._kernels[which](*args, *hp.values())
        for p in no_grad:
            p.clamp_(-clip, clip)
