"""Models fitted to weights read from a file, checked before anything is allocated.

A model spec read from a run folder (a checkpoint's ``models`` entry or summary.json's) is data
someone may have edited: its class must be a built-in model, its keywords the constructor's, its
values of the constructor's types. The model is then built on the meta device (shapes only, no
memory) and its parameter shapes compared with the stored weights, which bound every size: a spec
asking for a model the weights do not fit (``width=200000`` beside weights of width 8) is refused
naming the file, the keyword values and the first differing parameter, before a byte is
allocated. The same shape comparison names the differing parameter when a run resumes with models
of other sizes.
"""
from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from torch import nn

from .memory import require_memory

__all__ = ["check_weights", "shape_problem", "load_weights", "build_from_spec", "check_not_meta"]

_PLAIN = (int, float, str, bool, type(None), list)


def check_weights(weights: Any, which: str, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``weights`` when it is a state_dict (names to tensors), else ValueError naming the entry."""
    if not isinstance(weights, dict) or not all(isinstance(k, str) for k in weights):
        raise ValueError(f"checkpoint {path}: its {which!r} entry is not a state_dict (a dict of parameter names to "
                         f"tensors) but a {type(weights).__name__}: the file is damaged or was not written by "
                         "fastwgan; move it out of the folder to use the previous checkpoint")
    return weights


def shape_problem(module: nn.Module, weights: dict[str, torch.Tensor]) -> str | None:
    """The first difference between ``module``'s parameters and buffers and ``weights`` (a name
    missing on either side, or a shape), or None when the weights fit."""
    own = module.state_dict()
    for name, t in own.items():
        if name not in weights:
            return f"the model has {name!r} but the stored weights do not"
        if isinstance(t, torch.Tensor) and not isinstance(weights[name], torch.Tensor):
            return f"{name!r} is a tensor in the model but a {type(weights[name]).__name__} in the stored weights"
        if isinstance(t, torch.Tensor) and tuple(t.shape) != tuple(weights[name].shape):
            return (f"{name!r} has shape {tuple(t.shape)} in the model but {tuple(weights[name].shape)} in the "
                    "stored weights")
    extra = [k for k in weights if k not in own]
    if extra:
        return f"the stored weights have {extra[0]!r}, which the model does not"
    return None


def load_weights(module: nn.Module, weights: Any, which: str, path: str | os.PathLike, fix: str) -> nn.Module:
    """Load ``weights`` (the ``which`` entry of ``path``) into ``module``; a mismatch is a
    ValueError naming the parameter and ``fix``."""
    weights = check_weights(weights, which, path)
    problem = shape_problem(module, weights)
    if problem is not None:
        raise ValueError(f"the {which} does not fit the weights in {path}: {problem}; {fix}")
    module.load_state_dict(weights)
    return module


def _describe(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _check_value(cls: type, key: str, value: Any, default: Any) -> str | None:
    if type(value) not in _PLAIN:
        return f"{key}={value!r} is a {type(value).__name__}"
    if default is inspect.Parameter.empty or default is None:
        return None
    want = bool if isinstance(default, bool) else int if isinstance(default, int) else type(default)
    ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
    if want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is tuple:
        ok = isinstance(value, list)
    return None if ok else f"{key}={value!r} is not {want.__name__} (as {cls.__name__} takes)"


def _checked_spec(spec: Any, which: str, source: str | os.PathLike, registry: dict[str, type]) -> tuple[type, dict]:
    fix = (f"the file was edited or damaged; pass the module itself, fastwgan.load(run, {which}=...), built as in "
           "training")
    if not isinstance(spec, dict) or spec.get("class") not in registry:
        name = spec.get("class") if isinstance(spec, dict) else spec
        raise ValueError(f"the {which} spec in {source} names {name!r}, not a built-in fastwgan model (one of "
                         f"{', '.join(sorted(registry))}): {fix}")
    cls = registry[spec["class"]]
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"the {which} spec in {source} has kwargs {kwargs!r}, not a dict of keywords: {fix}")
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in kwargs if k not in params or k == "self"]
    if unknown:
        raise ValueError(f"the {which} spec in {source} has the keyword {unknown[0]!r}, which {cls.__name__} does not "
                         f"take (it takes {', '.join(p for p in params if p != 'self')}): {fix}")
    for k, v in kwargs.items():
        problem = _check_value(cls, k, v, params[k].default)
        if problem:
            raise ValueError(f"the {which} spec in {source}: {problem}: {fix}")
    return cls, kwargs


def build_from_spec(spec: Any, which: str, source: str | os.PathLike, weights: Any,
                    weights_path: str | os.PathLike) -> nn.Module:
    """The built-in model ``spec`` (read from ``source``) describes, its ``weights`` loaded; the
    spec is checked and the model's shapes matched to the weights before it is allocated."""
    from .models import _REGISTRY

    cls, kwargs = _checked_spec(spec, which, source, _REGISTRY)
    weights = check_weights(weights, which, weights_path)
    fix = f"the file was edited or damaged; pass the module itself, fastwgan.load(run, {which}=...), built as in training"
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated, whatever the sizes
            shell = cls(**kwargs)
    except Exception as e:  # noqa: BLE001 - any refusal of the constructor is the spec's fault
        raise ValueError(f"the {which} spec in {source} ({cls.__name__} {_describe(kwargs)}) does not build "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): {fix}") from None
    problem = shape_problem(shell, weights)
    if problem is not None:
        raise ValueError(f"the {which} spec in {source} ({cls.__name__} {_describe(kwargs)}) does not fit the "
                         f"weights in {weights_path}: {problem}: {fix}")
    nbytes = sum(t.numel() * t.element_size() for t in shell.state_dict().values() if isinstance(t, torch.Tensor))
    require_memory(nbytes, f"the {which} of {source}", "free memory, or load the run on a larger machine")
    return load_weights(cls(**kwargs), weights, which, weights_path, fix)


def check_not_meta(module: nn.Module, which: str) -> None:
    """A model whose parameters live on the meta device holds no values: refuse it by name."""
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        raise ValueError(f"the {which}'s parameters are on the meta device (shapes without values): build it on a "
                         "real device, or materialise it first (module.to_empty(device='cpu') and initialise it)")
