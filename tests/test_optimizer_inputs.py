"""One rule for what every ClippedRMSprop backend accepts, and state_dicts of another optimizer
refused when loaded (not at the first step)."""
from __future__ import annotations

import pytest
import torch

from fastwgan import backend
from fastwgan.optim import ClippedRMSprop


def _available(be: str) -> bool:
    if be == "cpp":
        return backend.load_extension("clipped_rmsprop") is not None
    if be == "triton":  # on the CPU through the interpreter (conftest sets TRITON_INTERPRET=1)
        return backend.triton_available() and backend.triton_interpret()
    return True


BACKENDS = ["reference", "cpp", "triton"]
PARAMS = [pytest.param(be, marks=pytest.mark.skipif(not _available(be), reason=f"{be} unavailable"))
          for be in BACKENDS]

# (parameter dtype, gradient maker, error type, words of the message)
BAD_GRADS = {
    "int64": (torch.float32, lambda p: torch.ones(p.shape, dtype=torch.int64), TypeError,
              "gradient 0 is torch.int64 but its parameter is torch.float32"),
    "fp64 for fp32": (torch.float32, lambda p: torch.ones(p.shape, dtype=torch.float64), TypeError,
                      "gradient 0 is torch.float64 but its parameter is torch.float32"),
    "fp32 for fp64": (torch.float64, lambda p: torch.ones(p.shape, dtype=torch.float32), TypeError,
                      "gradient 0 is torch.float32 but its parameter is torch.float64"),
    "shape": (torch.float32, lambda p: torch.ones(p.numel() + 1), ValueError, "has shape (8,) but its parameter (7,)"),
    "device": (torch.float32, lambda p: torch.ones(p.shape, device="meta"), ValueError, "is on meta"),
    "sparse": (torch.float32, lambda p: torch.ones(p.shape).to_sparse(), ValueError, "is sparse"),
    "not a tensor": (torch.float32, lambda p: [1.0] * 7, TypeError, "must be a tensor or None, got list"),
}


def _opt(dtype, be):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(7, dtype=dtype) * 0.02)
    return p, ClippedRMSprop([p], lr=0.1, clip=0.01, backend=be)


@pytest.mark.parametrize("case", list(BAD_GRADS))
def test_every_backend_refuses_the_same_gradients_with_the_same_error(case):
    dtype, make, kind, words = BAD_GRADS[case]
    errors = {}
    for be in filter(_available, BACKENDS):
        p, opt = _opt(dtype, be)
        before = p.detach().clone()
        with pytest.raises((TypeError, ValueError)) as e:
            opt.step_with_grads([make(p)])
        errors[be] = (type(e.value), str(e.value))
        assert torch.equal(p.detach(), before) and not opt.state  # refused before any update
    assert "reference" in errors and len(errors) >= 2  # compared across backends, not one
    assert len(set(errors.values())) == 1, errors
    got_kind, msg = errors["reference"]
    assert got_kind is kind and words in msg


def test_wrong_gradient_count_is_refused_on_every_backend():
    for be in ("reference", "cpp"):
        _, opt = _opt(torch.float32, be)
        with pytest.raises(ValueError, match="got 2 gradients for 1 parameters"):
            opt.step_with_grads([torch.ones(7), torch.ones(7)])


@pytest.mark.parametrize("be", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_gradients_in_the_parameters_dtype_are_accepted_everywhere(be, dtype):
    """fp64 runs on the C++ kernels, and through the reference where a kernel lacks the dtype;
    every backend lands where torch's RMSprop + clamp_ does."""
    p, opt = _opt(dtype, be)
    ref = torch.nn.Parameter(p.detach().clone())
    torch_opt = torch.optim.RMSprop([ref], lr=0.1)
    g = torch.randn(7, dtype=torch.float64).to(dtype)
    for _ in range(3):
        opt.step_with_grads([g])
        ref.grad = g.clone()
        torch_opt.step()
        with torch.no_grad():
            ref.clamp_(-0.01, 0.01)
    torch.testing.assert_close(p.detach(), ref.detach())
    assert p.dtype == dtype


@pytest.mark.parametrize("be", PARAMS)
def test_a_gradient_in_another_layout_is_accepted(be):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 6) * 0.02)
    w2 = torch.nn.Parameter(w.detach().clone())
    g = torch.randn(6, 4).t()  # same shape, transposed strides
    ClippedRMSprop([w], lr=0.1, backend=be).step_with_grads([g])
    ClippedRMSprop([w2], lr=0.1, backend=be).step_with_grads([g.contiguous()])
    assert torch.equal(w, w2)


def _adam_state(after_step: bool):
    m = torch.nn.Linear(3, 2)
    adam = torch.optim.Adam(m.parameters(), lr=1e-3)
    if after_step:
        m(torch.randn(4, 3)).sum().backward()
        adam.step()
    return m, adam.state_dict()


@pytest.mark.parametrize("after_step", [False, True])
def test_an_adam_state_dict_is_refused_at_load_time(after_step):
    m, sd = _adam_state(after_step)
    opt = ClippedRMSprop(m.parameters(), lr=5e-5)
    with pytest.raises(ValueError) as e:
        opt.load_state_dict(sd)
    msg = str(e.value)
    assert "not RMSprop's or ClippedRMSprop's" in msg and "'alpha'" in msg and "betas" in msg
    assert opt.param_groups[0]["lr"] == 5e-5 and "betas" not in opt.param_groups[0]  # untouched


def test_adam_state_entries_under_rmsprop_groups_are_named():
    m, sd = _adam_state(True)
    rms = ClippedRMSprop(m.parameters()).state_dict()
    sd["param_groups"] = rms["param_groups"]  # only the per-parameter state is foreign
    with pytest.raises(ValueError, match="exp_avg, exp_avg_sq"):
        ClippedRMSprop(m.parameters()).load_state_dict(sd)


def test_rmsprop_state_dicts_still_load_and_a_missing_buffer_is_named():
    m = torch.nn.Linear(3, 2)
    torch_rms = torch.optim.RMSprop(m.parameters(), lr=1e-3, momentum=0.9)
    m(torch.randn(4, 3)).sum().backward()
    torch_rms.step()
    opt = ClippedRMSprop(m.parameters())
    opt.load_state_dict(torch_rms.state_dict())  # negative control: torch's own RMSprop state
    opt.step()
    plain = ClippedRMSprop(m.parameters())
    plain.step()
    sd = plain.state_dict()
    sd["param_groups"][0]["momentum"] = 0.5
    with pytest.raises(ValueError, match="lacks momentum_buffer"):
        ClippedRMSprop(m.parameters()).load_state_dict(sd)
