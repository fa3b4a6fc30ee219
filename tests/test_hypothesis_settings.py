"""Property: a setting given a value of the wrong type, range or shape either works or raises
ValueError / TypeError whose message names that setting; never another exception type.

Each public entry point is a :class:`Target`: how to call it, a known-good set of settings, and
for each setting a Hypothesis strategy of wrong values. One setting is replaced per example, so
the error must name it. To cover another entry point (``train()``'s settings, say), add a Target
to ``TARGETS``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from fastwgan.penalty import gradient_penalty, gradient_penalty_functional

B = 5


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[dict[str, Any]], object]  # calls the entry point with these settings
    good: Callable[[], dict[str, Any]]  # settings that work
    wrong: dict[str, st.SearchStrategy]  # per setting: values of the wrong type, range, shape
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # words naming a setting


def check_one(target: Target, key: str, value: Any) -> None:
    """Run ``target`` with ``key=value``: it works, or raises ValueError / TypeError naming
    ``key`` (AssertionError otherwise); any other exception propagates and fails the test."""
    kwargs = {**target.good(), key: value}
    try:
        target.run(kwargs)
    except (ValueError, TypeError) as e:
        words = target.names.get(key, (key,))
        assert any(w in str(e) for w in words), (
            f"{target.name}: {key}={value!r} raised {type(e).__name__} without naming {key}: {e}")


# -- strategies ---------------------------------------------------------------------------------
_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool,
           torch.complex64]


@st.composite
def tensors(draw, max_dims: int = 3, max_size: int = 6, dtypes=_DTYPES) -> torch.Tensor:
    shape = draw(st.lists(st.integers(0, max_size), max_size=max_dims))
    dtype = draw(st.sampled_from(dtypes))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return torch.randn(shape, generator=g).mul(3).to(dtype)


_junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True),
                  st.text(max_size=3), st.lists(st.floats(-1, 1), max_size=6),
                  st.just(np.zeros((B, 3))), st.just(np.float32(1.0)), st.complex_numbers(max_magnitude=2))
_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                     st.just(torch.tensor(10.0)), st.just(np.float64(10.0)), st.just(np.float32(10.0)))


class _Conditional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin, self.embed = nn.Linear(3, 1), nn.Embedding(3, 3)

    def forward(self, x, y):
        return self.lin(x).squeeze(1) + (self.embed(y) * x).sum(1)


def _penalty_target(name: str, fn, conditional: bool) -> Target:
    torch.manual_seed(0)
    critic = _Conditional() if conditional else nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

    def good() -> dict[str, Any]:
        g = torch.Generator().manual_seed(1)
        return dict(real=torch.randn(B, 3, generator=g), fake=torch.randn(B, 3, generator=g), lam=10.0,
                    alpha=None, one_sided=False,
                    labels=torch.tensor([0, 1, 2, 0, 1]) if conditional else None)

    def run(kw: dict[str, Any]) -> object:
        real, fake = kw.pop("real"), kw.pop("fake")
        if "real_and_fake" in kw:  # both replaced alike: what the critic itself must take
            real = kw.pop("real_and_fake")
            fake = real.flip(0) if isinstance(real, torch.Tensor) else real
        return fn(critic, real, fake, **kw)

    labels = st.one_of(tensors(max_dims=2, dtypes=[torch.int64, torch.int32, torch.float32, torch.bool]),
                       _junk, st.lists(st.integers(-1, 5), min_size=B, max_size=B))
    return Target(
        name=f"{name}[{'conditional' if conditional else 'unconditional'}]",
        run=run,
        good=good,
        wrong={
            "real": st.one_of(tensors(), _junk),
            "fake": st.one_of(tensors(), _junk),
            "real_and_fake": st.one_of(tensors(), _junk),
            "lam": st.one_of(_numbers, _junk),
            "alpha": st.one_of(tensors(), _junk),
            "one_sided": st.one_of(st.booleans(), _junk),
            "labels": labels if conditional else st.one_of(st.none(), labels),
        },
        names={"real_and_fake": ("real", "fake")},
    )


TARGETS = [
    _penalty_target("gradient_penalty", gradient_penalty, conditional=False),
    _penalty_target("gradient_penalty", gradient_penalty, conditional=True),
    _penalty_target("gradient_penalty_functional", gradient_penalty_functional, conditional=False),
    _penalty_target("gradient_penalty_functional", gradient_penalty_functional, conditional=True),
]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_wrong_settings_work_or_name_the_setting(target: Target, data) -> None:
    key = data.draw(st.sampled_from(sorted(target.wrong)), label="setting")
    value = data.draw(target.wrong[key], label=key)
    check_one(target, key, value)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_the_good_settings_work(target: Target) -> None:
    """Negative control: the base every example changes one setting of is itself accepted."""
    target.run(target.good())


def test_the_property_can_fail() -> None:
    """Negative control: an error that does not name the setting, or of another type, fails."""
    def raises(exc):
        def run(kw):
            raise exc
        return run

    quiet = Target("quiet", raises(ValueError("something went wrong")), dict, {"lam": st.none()})
    with pytest.raises(AssertionError, match="without naming lam"):
        check_one(quiet, "lam", None)
    other = Target("other", raises(KeyError("lam")), dict, {"lam": st.none()})
    with pytest.raises(KeyError):
        check_one(other, "lam", None)
    named = Target("named", raises(TypeError("lam must be a float")), dict, {"lam": st.none()})
    check_one(named, "lam", None)
