"""gradient_penalty and gradient_penalty_functional validate the same way (one function) and
return the penalty in the inputs' dtype."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastwgan.penalty import gradient_penalty, gradient_penalty_functional
from fastwgan.reference import gradient_penalty as R

B = 5
PATHS = {"eager": gradient_penalty, "functional": gradient_penalty_functional}


class Wide(nn.Module):  # (B, 2): two scores per sample
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x)


class Scalar(nn.Module):  # one score for the whole batch
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        return self.lin(x).sum()


class Doubled(nn.Module):  # (2B,): the batch twice
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        return torch.cat([self.lin(x), self.lin(x)]).reshape(-1)


class IgnoresX(nn.Module):  # a score from the parameters only
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3))

    def forward(self, x):
        return self.w.sum().expand(x.shape[0])


class ZeroGradient(nn.Module):  # depends on x, but its gradient is exactly zero: allowed
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        return self.lin(x).squeeze(1) * 0


class Conditional(nn.Module):
    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.lin, self.embed = nn.Linear(3, 1), nn.Embedding(n_classes, 3)

    def forward(self, x, y):
        return self.lin(x).squeeze(1) + (self.embed(y) * x).sum(1)


BAD = {
    Wide: (ValueError, "one score per sample, shape (5,) or (5, 1), got (5, 2)"),
    Scalar: (ValueError, "one score per sample, shape (5,) or (5, 1), got ()"),
    Doubled: (ValueError, "one score per sample, shape (5,) or (5, 1), got (10,)"),
    IgnoresX: (ValueError, "does not depend on its input"),
}


def _inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, 3, generator=g, dtype=dtype), torch.randn(B, 3, generator=g, dtype=dtype),
            torch.rand(B, generator=g, dtype=dtype))


def _message(fn, *args, **kw) -> tuple[type, str]:
    with pytest.raises((ValueError, TypeError)) as e:
        fn(*args, **kw)
    return type(e.value), str(e.value)


@pytest.mark.parametrize("critic", list(BAD), ids=lambda c: c.__name__)
def test_both_paths_refuse_a_bad_critic_with_the_same_error(critic):
    real, fake, alpha = _inputs()
    kind, text = BAD[critic]
    got = {name: _message(fn, critic(), real, fake, alpha=alpha) for name, fn in PATHS.items()}
    assert got["eager"] == got["functional"]
    assert got["eager"][0] is kind and text in got["eager"][1]


def test_a_zero_gradient_is_not_mistaken_for_an_ignored_input():
    """Negative control: the dependence check is structural, not on values."""
    real, fake, alpha = _inputs()
    m = ZeroGradient()
    for fn in PATHS.values():
        assert fn(m, real, fake, alpha=alpha, lam=10.0).item() == pytest.approx(10.0)


@pytest.mark.parametrize("critic", [IgnoresX, Wide], ids=lambda c: c.__name__)
def test_compiled_functional_path_refuses_without_a_host_sync(critic):
    """Under torch.compile (dynamo tracing; the eager backend keeps it fast) the checks are
    metadata: a graph break lets the ValueError through, fullgraph=True names it in dynamo's
    error; a good critic compiles whole and matches eager."""
    real, fake, alpha = _inputs()
    text = BAD[critic][1]
    torch._dynamo.reset()
    fn = torch.compile(gradient_penalty_functional, backend="eager")
    with pytest.raises(ValueError, match=text.replace("(", r"\(").replace(")", r"\)")):
        fn(critic(), real, fake, alpha=alpha)
    torch._dynamo.reset()
    whole = torch.compile(gradient_penalty_functional, backend="eager", fullgraph=True)
    with pytest.raises(Exception) as e:
        whole(critic(), real, fake, alpha=alpha)
    assert text in str(e.value)
    good = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    torch.testing.assert_close(whole(good, real, fake, alpha=alpha),
                               gradient_penalty_functional(good, real, fake, alpha=alpha), rtol=0, atol=0)


@pytest.mark.parametrize("path", list(PATHS))
def test_input_the_critic_cannot_take_names_real_and_fake(path):
    real, fake, alpha = _inputs()
    critic = nn.Sequential(nn.Linear(4, 1))  # takes 4 features, real has 3
    with pytest.raises(ValueError) as e:
        PATHS[path](critic, real, fake, alpha=alpha)
    msg = str(e.value)
    assert "real and fake" in msg and "(5, 3)" in msg and "mat1 and mat2" in msg
    assert isinstance(e.value.__cause__, RuntimeError)  # the critic's own error, kept
    with pytest.raises(ValueError, match="float64"):
        PATHS[path](nn.Linear(3, 1), real.double(), fake.double(), alpha=alpha.double())


@pytest.mark.parametrize("path", list(PATHS))
def test_labels_are_validated_on_both_paths(path):
    real, fake, alpha = _inputs()
    fn, m = PATHS[path], Conditional()
    ok = fn(m, real, fake, alpha=alpha, labels=torch.tensor([0, 1, 2, 0, 1]))
    assert ok.shape == ()
    with pytest.raises(TypeError, match="labels must be a tensor"):
        fn(m, real, fake, alpha=alpha, labels=[0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match=r"labels must hold one entry per sample, shape \(5,\), got \(4,\)"):
        fn(m, real, fake, alpha=alpha, labels=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="labels must hold one entry per sample"):
        fn(m, real, fake, alpha=alpha, labels=torch.tensor(1))
    with pytest.raises(ValueError, match="labels of shape") as e:  # class 7 of 3
        fn(m, real, fake, alpha=alpha, labels=torch.tensor([0, 1, 7, 0, 1]))
    assert isinstance(e.value.__cause__, IndexError)
    with pytest.raises(ValueError, match="labels of shape"):  # float class ids
        fn(m, real, fake, alpha=alpha, labels=torch.zeros(B))


@pytest.mark.parametrize("path", list(PATHS))
def test_one_sided_must_be_a_bool(path):
    real, fake, alpha = _inputs()
    with pytest.raises(TypeError, match="one_sided must be a bool"):
        PATHS[path](nn.Linear(3, 1), real, fake, alpha=alpha, one_sided="no")


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_penalty_has_the_inputs_dtype(path, dtype):
    real, fake, alpha = _inputs(dtype)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).to(dtype)
    p = PATHS[path](m, real, fake, alpha=alpha, backend="reference") if path == "eager" else \
        PATHS[path](m, real, fake, alpha=alpha)
    assert p.dtype == dtype
    if dtype == torch.float64:
        # computed in float64, not rounded through float32 and cast back: against the textbook
        # formula in float64 it is within a few float64 ulps (float32 would be ~1e-7 away)
        truth = R.gradient_penalty(m, real, fake, alpha=alpha)
        assert abs(p.item() - truth.item()) <= 64 * torch.finfo(torch.float64).eps * abs(truth.item())
