"""Fused gradient penalty (fastwgan.penalty, fastwgan.ops.gradient_penalty) against the textbook.

Tolerance rule (tests/_rules.py, flash-attention's): with the textbook penalty in float64 as the truth,

    err(fused, fp32) <= 2 * err(textbook, fp32) + atol,   atol = eps32 * max|truth|

err(textbook, fp32) is what plain PyTorch loses to fp32 rounding on the same inputs; the fused path
may differ from it in summation order and in where it rounds (the C++ kernel accumulates the norm
in double), so it is allowed twice that. atol (one fp32 epsilon at the tensor's scale, i.e. two
half-ulps of its largest element) covers tensors that plain fp32 happens to get exactly right.
Every backend (cpp, triton under TRITON_INTERPRET=1, reference) is held to it.
"""
from __future__ import annotations


import pytest
import torch
from torch import nn

from fastwgan import backend as B_
from fastwgan.models import DCGANCritic, MLPCritic
from fastwgan.ops import activations as A
from fastwgan.ops import gradient_penalty as O
from fastwgan.penalty import gradient_penalty, gradient_penalty_functional
from fastwgan.reference import gradient_penalty as R

from _rules import EPS32, U32, assert_fp64_rule

BACKENDS = ["cpp", "triton", "reference"]


def _backend_or_fail(be):
    # an explicitly requested backend must resolve on the CPU test machine (triton through the
    # interpreter set up by conftest.py, cpp through the JIT build); failing here is a real failure
    return B_.resolve("gradient_penalty", "cpu", be)


def test_the_rule_can_fail():
    """Negative control for tests/_rules.py: the rule rejects an error just over 2x plain fp32's,
    a NaN where the truth is finite, and an empty comparison."""
    truth = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    ref = truth + torch.tensor([0.0, 1e-3, 0.0], dtype=torch.float64)
    atol = EPS32 * 4.0
    assert_fp64_rule(truth + 2e-3, ref, truth)  # exactly at the bound
    with pytest.raises(AssertionError, match="allowed"):
        assert_fp64_rule(truth + 2e-3 + 2 * atol, ref, truth)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_fp64_rule(torch.tensor([1.0, float("nan"), 4.0]), ref, truth)
    with pytest.raises(AssertionError, match="nothing to compare"):
        assert_fp64_rule(torch.ones(0), torch.ones(0), torch.ones(0))


def _penalty_atol(norms64, lam, one_sided, u=U32):
    """atol for the scalar penalty P = lam/B sum_b gap_b^2, gap_b = n_b - 1 (clamped one-sided).

    A single scalar makes the plain rule fragile (plain fp32 can land within 1e-8 of the truth by
    luck). Any fp32 implementation rounds each norm at least twice (its sum of squares, its sqrt;
    2u relative) and the result once, so first-order perturbation gives
        |dP| <= lam/B * sum_b 2 |gap_b| * 2u n_b  +  u P
    which is the atol used for P (``u``: the unit roundoff of the dtype the result is stored in).
    """
    gap = norms64 - 1
    if one_sided:
        gap = gap.clamp(min=0)
    P = lam * gap.square().mean()
    return (lam * (2 * gap.abs() * 2 * u * norms64).mean() + u * P).item()


def _truth_norms(model64, real, fake, alpha, labels):
    x = R.interpolate(real.double(), fake.double(), alpha.double()).requires_grad_(True)
    out = model64(x) if labels is None else model64(x, labels)
    (g,) = torch.autograd.grad(out.sum(), x)
    return g.flatten(1).norm(dim=1)


def _textbook(critic):
    """A copy of ``critic`` with torch.nn activations: the textbook (unpruned) critic."""
    return A.with_torch_activations(critic)


def _grads(model):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def _critic(kind):
    critic, shape, n_classes = _build_critic(kind)
    # Scale the output layer so that the gradient norms at the test inputs straddle 1 (about half
    # the samples below, half above): otherwise the one-sided penalty is identically 0 at init.
    # (calibrated on the first batch of test_matches_textbook: same generator, same draws)
    gen = torch.Generator().manual_seed(5)
    real = torch.randn(shape, generator=gen)
    fake = torch.randn(shape, generator=gen) * 0.5
    alpha = torch.rand(shape[0], generator=gen)
    y = None if n_classes is None else torch.randint(0, n_classes, (shape[0],), generator=gen)
    x = R.interpolate(real, fake, alpha).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x, y).sum(), x)
    scale = 1.0 / g.flatten(1).norm(dim=1).median().item()
    with torch.no_grad():
        for p in critic.proj.parameters():
            p.mul_(scale)
    return critic, shape, n_classes


def _build_critic(kind):
    torch.manual_seed(3)
    if kind == "mlp":
        return MLPCritic(in_dim=2, width=32, depth=3), (6, 2), None
    if kind == "mlp-cond":
        return MLPCritic(in_dim=2, width=32, depth=3, n_classes=3), (6, 2), 3
    if kind == "dcgan-ln":
        return DCGANCritic(img_size=16, channels=3, ndf=4, norm="layer"), (3, 3, 16, 16), None
    if kind == "dcgan-cond":
        return DCGANCritic(img_size=8, channels=1, ndf=4, norm="none", n_classes=4), (3, 1, 8, 8), 4
    raise AssertionError(kind)


# ------------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------------
SHAPES = [(1, 1), (5, 2), (4, 3, 7, 9), (3, 3 * 33 * 33), (2, 1025)]  # odd sizes, > one Triton block


HALF = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64] + HALF)
def test_interpolate_kernel(be, shape, dtype):
    be = _backend_or_fail(be)
    torch.manual_seed(0)
    real = torch.randn(shape, dtype=dtype) * 3
    fake = torch.randn(shape, dtype=dtype)
    alpha = torch.rand(shape[0], dtype=dtype)
    alpha[0] = 0.0  # edge values: pure fake, pure real
    if shape[0] > 1:
        alpha[1] = 1.0
    got = O.interpolate(real, fake, alpha, be)
    want = R.interpolate(real, fake, alpha)
    a = alpha.reshape(-1, *([1] * (len(shape) - 1)))
    # Both compute a*r + (1-a)*f: two products and one sum, each rounded (no FMA on the CPU
    # build / the interpreter / the GPU build, see the module docstring), so each is within
    # 2u*(|a r| + |(1-a) f|) + u*|1-a| of the exact value and they are within twice that of each
    # other. (fp16/bf16: Triton computes in fp32 and rounds once, so it is only closer.)
    u = torch.finfo(dtype).eps / 2
    bound = 2 * (2 * u * (a.abs() * real.abs() + (1 - a).abs() * fake.abs()) + u * fake.abs())
    assert ((got - want).abs() <= bound).all()
    assert torch.equal(got[0], fake[0])
    if shape[0] > 1:
        assert torch.equal(got[1], real[1])


def _grad_rows(shape, dtype):
    torch.manual_seed(1)
    g = torch.randn(shape, dtype=dtype)
    g[0] = 0.0  # zero-gradient row
    if shape[0] > 2:
        g[1] *= 0.3 / g[1].norm()  # norm below 1 (one-sided: clamped)
        g[2] *= 1e-20  # tiny but non-zero
    return g


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 3, 7, 9), (5, 2), (3, 3 * 33 * 33), (1, 1)])
@pytest.mark.parametrize("one_sided", [False, True])
def test_norm_penalty_kernel(be, shape, one_sided):
    be = _backend_or_fail(be)
    g64 = _grad_rows(shape, torch.float64)
    outs = {}
    for name, dtype, backend in [("truth", torch.float64, None), ("ref", torch.float32, None),
                                 ("got", torch.float32, be)]:
        g = g64.to(dtype).requires_grad_(True)
        if backend is None:
            p = R.row_norm(g)
            gap = (p - 1).clamp(min=0) if one_sided else p - 1
            p = 10.0 * gap.square().mean()
        else:
            p = O.norm_penalty(g, 10.0, one_sided, backend)
        (dg,) = torch.autograd.grad(p * 0.7, g)  # non-unit upstream gradient
        outs[name] = (p.detach(), dg)
        assert torch.isfinite(dg).all() and torch.isfinite(p)
        assert (dg[0] == 0).all()  # the convention at a zero row
    atol = _penalty_atol(g64.flatten(1).norm(dim=1), 10.0, one_sided)
    assert_fp64_rule(outs["got"][0], outs["ref"][0], outs["truth"][0], what="penalty", atol=atol)
    assert_fp64_rule(outs["got"][1], outs["ref"][1], outs["truth"][1], what="d penalty / d grad")


def _norm_rows(shape, dtype):
    """Rows with a zero row, a tiny row and a row whose squares overflow fp16 (|g| ~ 300: the
    sum of squares in fp16 is inf, in fp32 it is exact enough)."""
    torch.manual_seed(12)
    g = torch.randn(shape)
    g[0] = 0.0
    if shape[0] > 2:
        g[1] *= 1e-3
        g[2] = g[2].sign() * 300.0 + g[2]
    return g.to(dtype)


# the split norm: (5, 2) one program per row; the others cut each row into S > 1 programs
NORM_SHAPES = [(5, 2), (3, 3 * 33 * 33), (64, 3 * 64 * 64), (1, 70001)]


@pytest.mark.parametrize("shape", NORM_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32] + HALF)
def test_triton_norm_split_and_half_inputs(shape, dtype):
    """The Triton norm (split or not) of fp32/fp16/bf16 rows, accumulated in fp32, against the
    fp64 norm of the same values, with plain PyTorch fp32 (vector_norm of the upcast rows) as
    the yardstick of the rule."""
    _backend_or_fail("triton")
    g = _norm_rows(shape, dtype)
    S, _ = O.norm_split(*shape)
    assert (S > 1) == (shape != (5, 2))  # the split path is what runs here
    got = O._triton_norm(g)
    assert got.dtype == torch.float32
    ref32 = torch.linalg.vector_norm(g.float(), dim=1)
    truth = torch.linalg.vector_norm(g.double(), dim=1)
    assert_fp64_rule(got, ref32, truth, what=f"{dtype} norms {shape}")
    assert got[0] == 0
    if dtype == torch.float16 and shape[0] > 2:  # the data does reach fp16's overflow
        assert torch.isinf((g[2] * g[2]).sum()) and torch.isfinite(got[2])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shape", NORM_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32] + HALF)
def test_cuda_triton_norm_split_and_half_inputs(shape, dtype):
    """The compiled norm on a GPU (split and fp16/bf16 included), same rule as under the
    interpreter; plain PyTorch fp32 on the GPU is the yardstick."""
    g = _norm_rows(shape, dtype).cuda()
    got = O._triton_norm(g).cpu()
    ref32 = torch.linalg.vector_norm(g.float(), dim=1).cpu()
    truth = torch.linalg.vector_norm(g.cpu().double(), dim=1)
    assert_fp64_rule(got, ref32, truth, what=f"cuda {dtype} norms {shape}")


@pytest.mark.parametrize("be", ["triton", "reference"])
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("one_sided", [False, True])
def test_norm_penalty_half_inputs(be, dtype, one_sided):
    """fp16/bf16 gradients through norm_penalty and its backward, held to the rule with the
    data's own epsilon (the outputs are stored in fp16/bf16; plain PyTorch on the same half
    tensors is the yardstick)."""
    be = _backend_or_fail(be)
    g64 = _norm_rows((6, 3 * 11 * 13), torch.float64)
    # norms 0, ~0.04, 2.5, 0.3, ~21, ~21: a penalty fp16 can hold (a norm of 300 would make it
    # overflow in any fp16 result; the fp16 sum-of-squares overflow is tested on the norm above)
    g64[2] *= 2.5 / g64[2].norm()
    g64[3] *= 0.3 / g64[3].norm()  # a norm below 1 (one-sided: clamped)
    g64 = g64.to(dtype).double()  # exactly representable in the half dtype
    outs = {}
    for name, dt, backend in [("truth", torch.float64, "reference"), ("ref", dtype, "reference"),
                              ("got", dtype, be)]:
        g = g64.to(dt).requires_grad_(True)
        p = O.norm_penalty(g, 10.0, one_sided, backend)
        (dg,) = torch.autograd.grad(p * 0.7, g)
        assert p.dtype == dt and dg.dtype == dt
        outs[name] = (p.detach(), dg)
    eps = torch.finfo(dtype).eps
    atol = _penalty_atol(g64.norm(dim=1), 10.0, one_sided, u=eps / 2)
    assert_fp64_rule(outs["got"][0], outs["ref"][0], outs["truth"][0], what="penalty", atol=atol,
                     eps=eps)
    assert_fp64_rule(outs["got"][1], outs["ref"][1], outs["truth"][1], what="d penalty / d grad",
                     eps=eps)
    assert (outs["got"][1][0] == 0).all()


@pytest.mark.parametrize("be", BACKENDS)
def test_gradcheck_gradgradcheck_kernels_float64(be):
    be = _backend_or_fail(be)
    torch.manual_seed(2)
    real = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    fake = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(3, dtype=torch.float64, requires_grad=True)
    f = lambda r, fk, a: O.interpolate(r, fk, a, be)  # noqa: E731
    assert torch.autograd.gradcheck(f, (real, fake, alpha))
    assert torch.autograd.gradgradcheck(f, (real, fake, alpha))
    # away from the kinks (g = 0, and ||g|| = 1 for the one-sided form)
    g = (torch.randn(4, 3, 2, dtype=torch.float64) * 0.8).requires_grad_(True)
    for one_sided in (False, True):
        h = lambda x: O.norm_penalty(x, 3.0, one_sided, be)  # noqa: E731
        assert torch.autograd.gradcheck(h, (g,))
        assert torch.autograd.gradgradcheck(h, (g,))


@pytest.mark.parametrize("be", BACKENDS)
def test_gradcheck_gradgradcheck_penalty_wrt_critic_params(be):
    """The whole penalty as a function of the critic's parameters (fused ReLU MLP), float64."""
    be = _backend_or_fail(be)
    torch.manual_seed(4)
    shapes = [(6, 3), (6,), (6, 6), (6,), (1, 6)]
    params = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    real = torch.randn(5, 3, dtype=torch.float64)
    fake = torch.randn(5, 3, dtype=torch.float64)
    alpha = torch.rand(5, dtype=torch.float64)

    def f(w1, b1, w2, b2, w3):
        def critic(x):
            h = A.relu(x @ w1.T + b1)
            h = A.relu(h @ w2.T + b2)
            return (h @ w3.T).reshape(-1)

        return gradient_penalty(critic, real, fake, lam=2.0, alpha=alpha, backend=be)

    assert torch.autograd.gradcheck(f, params)
    assert torch.autograd.gradgradcheck(f, params)


# ------------------------------------------------------------------------------------------------
# the whole penalty against the textbook autograd.grad(create_graph=True) version
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("kind", ["mlp", "dcgan-ln", "mlp-cond", "dcgan-cond"])
@pytest.mark.parametrize("one_sided", [False, True])
def test_matches_textbook(be, kind, one_sided):
    be = _backend_or_fail(be)
    fused32, shape, n_classes = _critic(kind)
    truth64 = _textbook(fused32).double()
    text32 = _textbook(fused32)
    gen = torch.Generator().manual_seed(5)
    # The whole gradient (every parameter, both steps) is held to the rule as one tensor: a single
    # small tensor (a LayerNorm gain of 8 values) is too few samples of plain fp32's error, which
    # then lands near 0 by luck on some seeds.
    flat = {"got": [], "ref": [], "truth": []}
    for step in range(2):  # fresh inputs each step, after a parameter update
        real = torch.randn(shape, generator=gen)
        fake = torch.randn(shape, generator=gen) * 0.5
        alpha = torch.rand(shape[0], generator=gen)
        labels = None if n_classes is None else torch.randint(0, n_classes, (shape[0],), generator=gen)
        res = {}
        for name, model, fn in [
            ("truth", truth64, lambda m, r, f, a: R.gradient_penalty(
                m, r, f, lam=10.0, one_sided=one_sided, alpha=a, labels=labels)),
            ("ref", text32, lambda m, r, f, a: R.gradient_penalty(
                m, r, f, lam=10.0, one_sided=one_sided, alpha=a, labels=labels)),
            ("got", fused32, lambda m, r, f, a: gradient_penalty(
                m, r, f, lam=10.0, one_sided=one_sided, alpha=a, labels=labels, backend=be)),
        ]:
            dt = next(model.parameters()).dtype
            model.zero_grad(set_to_none=True)
            p = fn(model, real.to(dt), fake.to(dt), alpha.to(dt))
            p.backward()
            res[name] = (p.detach(), _grads(model))
        atol = _penalty_atol(_truth_norms(truth64, real, fake, alpha, labels), 10.0, one_sided)
        assert_fp64_rule(res["got"][0], res["ref"][0], res["truth"][0],
                         what=f"{kind} step {step} penalty", atol=atol)
        if step == 0:
            assert res["truth"][0] > 0
        for g, r, t in zip(res["got"][1], res["ref"][1], res["truth"][1]):
            # each parameter scaled by its largest |truth| (the rule is scale-free per tensor)
            s = t.abs().max().clamp(min=1e-300)
            flat["got"].append((g.double() / s).flatten())
            flat["ref"].append((r.double() / s).flatten())
            flat["truth"].append((t / s).flatten())
        if step == 0:  # (after the update, a one-sided penalty may be 0 everywhere)
            assert any(t.abs().sum() > 0 for t in res["truth"][1])
        # update all three the same way (from the truth's gradients) for the next step
        with torch.no_grad():
            for ps in zip(truth64.parameters(), text32.parameters(), fused32.parameters(),
                          res["truth"][1]):
                t, r, g, d = ps
                t.sub_(1e-3 * d)  # small: a large step lowers every norm below 1
                r.copy_(t)
                g.copy_(t)
    assert_fp64_rule(flat["got"], flat["ref"], flat["truth"], what=f"{kind}: all parameter gradients")


# ------------------------------------------------------------------------------------------------
# the known bugs of other libraries
# ------------------------------------------------------------------------------------------------
class _Recorder(nn.Module):
    """D(x)_b = 0.5 * ||x_b||^2 (so grad_x D = x), recording the x_hat it was called with."""

    def __init__(self):
        super().__init__()
        self.seen = None
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        self.seen = x.detach().clone()
        return 0.5 * self.w * x.flatten(1).square().sum(1)


@pytest.mark.parametrize("be", BACKENDS)
def test_alpha_is_one_uniform_draw_per_sample(be):
    """Not one scalar for the whole batch (torchgan), not one per pixel."""
    _backend_or_fail(be)
    rec = _Recorder()
    real = torch.ones(64, 3, 4, 4)
    fake = torch.zeros(64, 3, 4, 4)
    gradient_penalty(rec, real, fake, backend=be)
    a = rec.seen  # x_hat = alpha_b everywhere in sample b
    per_sample = a.flatten(1)
    assert torch.equal(per_sample, per_sample[:, :1].expand_as(per_sample)), "alpha varies per pixel"
    alphas = per_sample[:, 0]
    assert alphas.unique().numel() == 64, "alpha shared across the batch"
    assert 0 <= alphas.min() and alphas.max() < 1


def test_alpha_of_the_wrong_shape_is_refused():
    rec = _Recorder()
    real, fake = torch.ones(4, 3, 2, 2), torch.zeros(4, 3, 2, 2)
    for bad in (torch.tensor(0.5), torch.rand(4, 3, 2, 2), torch.rand(5), torch.rand(1)):
        with pytest.raises(ValueError, match="one weight per sample"):
            gradient_penalty(rec, real, fake, alpha=bad)
    gradient_penalty(rec, real, fake, alpha=torch.rand(4, 1, 1, 1))  # per-sample, broadcastable


@pytest.mark.parametrize("be", BACKENDS)
def test_norm_is_per_sample_over_all_non_batch_axes(be):
    be = _backend_or_fail(be)
    torch.manual_seed(6)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    alpha = torch.ones(5, dtype=torch.float64)  # x_hat = real = x, so grad_x D = x
    rec = _Recorder().double()
    got = gradient_penalty(rec, x, torch.zeros_like(x), lam=1.0, alpha=alpha, backend=be)
    want = sum((float(x[b].square().sum()) ** 0.5 - 1) ** 2 for b in range(5)) / 5
    # fp64 evaluation of the same sum of 48 squares and 5 terms: relative error < 100 u64
    assert abs(got.item() - want) <= 100 * 2.0**-53 * want
    # the wrong formulas are far from it, so the assertion above can fail
    whole_batch = (x.norm() - 1) ** 2
    per_channel = ((x.flatten(2).norm(dim=2) - 1) ** 2).mean()
    per_pixel = ((x.norm(dim=1) - 1) ** 2).mean()
    for wrong in (whole_batch, per_channel, per_pixel):
        assert abs(wrong.item() - want) > 0.1 * want


@pytest.mark.parametrize("be", BACKENDS)
def test_two_and_one_sided_values(be):
    be = _backend_or_fail(be)
    x = torch.zeros(2, 4, dtype=torch.float64)
    x[0, 0], x[1, 1] = 0.5, 2.0  # ||g|| = 0.5 and 2
    rec = _Recorder().double()
    ones = torch.ones(2, dtype=torch.float64)
    two = gradient_penalty(rec, x, x, lam=4.0, alpha=ones, backend=be).item()
    one = gradient_penalty(rec, x, x, lam=4.0, alpha=ones, one_sided=True, backend=be).item()
    assert two == 4.0 * (0.25 + 1.0) / 2  # exact: every intermediate is a dyadic rational
    assert one == 4.0 * (0.0 + 1.0) / 2


def _naive_sqrt_penalty(critic, real, fake, *, lam, one_sided, alpha):
    """The penalty as many implementations write it, norm = sqrt(sum g^2): NaN at g = 0.
    (torch's own ``Tensor.norm`` backward already returns 0 at a zero norm, the same convention
    as ours, so the reference's ``.norm(dim=1)`` agrees with the fused path there.)"""
    x = R.interpolate(real, fake, alpha).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    gap = g.flatten(1).square().sum(1).sqrt() - 1
    if one_sided:
        gap = gap.clamp(min=0)
    return lam * gap.square().mean()


def _dead_row_critic(dtype):
    """A ReLU critic whose gradient is exactly zero at sample 0 (every unit is off there)."""
    torch.manual_seed(7)
    c = nn.Sequential(nn.Linear(2, 16), A.ReLU(), nn.Linear(16, 1), nn.Flatten(0)).to(dtype)
    real = torch.randn(4, 2, dtype=dtype)
    real[0] = torch.tensor([50.0, 50.0])
    with torch.no_grad():
        w = c[0].weight
        w[:, :] = -w.abs()  # all units negative at (50, 50) ...
        c[0].bias.fill_(1.0)  # ... and on elsewhere for some samples
    return c, real


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("one_sided", [False, True])
def test_zero_gradient_gives_no_nan(be, one_sided):
    be = _backend_or_fail(be)
    res = {}
    for name, dtype in [("truth", torch.float64), ("ref", torch.float32), ("got", torch.float32),
                        ("textbook", torch.float64)]:
        c, real = _dead_row_critic(dtype)
        alpha = torch.ones(4, dtype=dtype)
        x = real.clone().requires_grad_(True)
        (g0,) = torch.autograd.grad(c(x).sum(), x)
        assert (g0[0] == 0).all() and (g0[1:] != 0).any()
        kw = dict(lam=10.0, one_sided=one_sided, alpha=alpha)
        if name == "got":
            p = gradient_penalty(c, real, real, backend=be, **kw)
        elif name == "textbook":
            p = _naive_sqrt_penalty(c, real, real, **kw)
        else:
            p = R.gradient_penalty(c, real, real, **kw)
        c.zero_grad()
        p.backward()
        res[name] = (p.detach(), _grads(c))
    got_p, got_g = res["got"]
    assert torch.isfinite(got_p) and all(torch.isfinite(t).all() for t in got_g)
    c64, real64 = _dead_row_critic(torch.float64)
    n64 = _truth_norms(c64, real64, real64, torch.ones(4, dtype=torch.float64), None)
    assert_fp64_rule(got_p, res["ref"][0], res["truth"][0], what="penalty",
                     atol=_penalty_atol(n64, 10.0, one_sided))
    for g, r, t in zip(got_g, res["ref"][1], res["truth"][1]):
        assert_fp64_rule(g, r, t, what="grad")
    # the common hand-written norm sqrt(sum g^2) gives NaN here: the check above is not vacuous
    assert any(torch.isnan(t).any() for t in res["textbook"][1])


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_bad_input_errors():
    c = MLPCritic(in_dim=2, width=8, depth=1)
    real, fake = torch.randn(4, 2), torch.randn(4, 2)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(c, real, torch.randn(5, 2))
    with pytest.raises(ValueError, match="lam"):
        gradient_penalty(c, real, fake, lam=-1.0)
    with pytest.raises(ValueError, match="lam"):
        gradient_penalty(c, real, fake, lam=float("nan"))
    with pytest.raises(TypeError, match="floating-point"):
        gradient_penalty(c, real.long(), fake.long())
    with pytest.raises(ValueError, match="unknown backend"):
        gradient_penalty(c, real, fake, backend="cuda-magic")

    class Ignores(nn.Module):  # output depends on the parameters only
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return self.b.expand(x.shape[0])

    with pytest.raises(ValueError, match="does not depend on its input"):
        gradient_penalty(Ignores(), real, fake)
    with pytest.raises(ValueError, match="does not depend on its input"):
        gradient_penalty(lambda x: torch.zeros(x.shape[0]), real, fake)
    with pytest.raises(ValueError, match="one score per sample"):
        gradient_penalty(lambda x: x.sum(), real, fake)
    with pytest.raises(ValueError, match="one score per sample"):
        gradient_penalty(lambda x: x * 2, real, fake)
    with pytest.raises(TypeError, match="nn.Module"):
        gradient_penalty_functional(lambda x: x.sum(1), real, fake)


# ------------------------------------------------------------------------------------------------
# the compilable formulation
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "dcgan-ln", "mlp-cond"])
def test_functional_matches_textbook(kind):
    fused32, shape, n_classes = _critic(kind)
    truth64 = _textbook(fused32).double()
    text32 = _textbook(fused32)
    torch.manual_seed(8)
    real, fake, alpha = torch.randn(shape), torch.randn(shape), torch.rand(shape[0])
    labels = None if n_classes is None else torch.randint(0, n_classes, (shape[0],))
    res = {}
    for name, m in [("truth", truth64), ("ref", text32), ("got", fused32)]:
        dt = next(m.parameters()).dtype
        fn = gradient_penalty_functional if name == "got" else R.gradient_penalty
        m.zero_grad(set_to_none=True)
        p = fn(m, real.to(dt), fake.to(dt), lam=10.0, alpha=alpha.to(dt), labels=labels)
        p.backward()
        res[name] = (p.detach(), _grads(m))
    atol = _penalty_atol(_truth_norms(truth64, real, fake, alpha, labels), 10.0, False)
    assert_fp64_rule(res["got"][0], res["ref"][0], res["truth"][0], what="penalty", atol=atol)
    for g, r, t in zip(res["got"][1], res["ref"][1], res["truth"][1]):
        assert_fp64_rule(g, r, t, what="grad")


@pytest.mark.parametrize("kind", ["mlp", "mlp-cond"])
def test_functional_compiles_fullgraph_and_matches_eager(kind):
    """torch.compile(fullgraph=True) traces the whole critic loss (Wasserstein + penalty); the
    fused activations fall back to torch's ops while compiling (see ops/activations.py) -- this
    test is what caught wrong second-order gradients from a custom Function inside func.grad."""
    torch._dynamo.reset()
    fused32, shape, n_classes = _critic(kind)
    truth64 = _textbook(fused32).double()
    text32 = _textbook(fused32)
    torch.manual_seed(9)
    real, fake, alpha = torch.randn(shape), torch.randn(shape), torch.rand(shape[0])
    labels = None if n_classes is None else torch.randint(0, n_classes, (shape[0],))

    def loss_fn(m, r, f, a):
        return (m(f, labels).mean() - m(r, labels).mean()
                + gradient_penalty_functional(m, r, f, lam=10.0, alpha=a, labels=labels))

    def text_loss(m, r, f, a):
        return (m(f, labels).mean() - m(r, labels).mean()
                + R.gradient_penalty(m, r, f, lam=10.0, alpha=a, labels=labels))

    # aot_eager: dynamo + aot_autograd (the part that rejects double backward), without inductor's
    # C++ code generation, which takes ~1 min on the 2-core CI machine
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    res = {}
    for name, m, fn in [("truth", truth64, text_loss), ("ref", text32, text_loss),
                        ("got", fused32, compiled)]:
        dt = next(m.parameters()).dtype
        m.zero_grad(set_to_none=True)
        loss = fn(m, real.to(dt), fake.to(dt), alpha.to(dt))
        loss.backward()
        res[name] = (loss.detach(), _grads(m))
    # the loss adds E[D(fake)] - E[D(real)] (rounded once more in fp32: + u * |those terms|)
    atol = _penalty_atol(_truth_norms(truth64, real, fake, alpha, labels), 10.0, False)
    with torch.no_grad():
        d = (truth64(fake.double(), labels).mean().abs() + truth64(real.double(), labels).mean().abs())
    assert_fp64_rule(res["got"][0], res["ref"][0], res["truth"][0], what="loss",
                     atol=atol + 2 * U32 * d.item())
    for g, r, t in zip(res["got"][1], res["ref"][1], res["truth"][1]):
        assert_fp64_rule(g, r, t, what="grad")


# ------------------------------------------------------------------------------------------------
# CUDA (the same logic runs above on the CPU: triton under the interpreter)
# ------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["mlp", "dcgan-ln"])
def test_cuda_triton_matches_textbook(kind):
    fused32, shape, n_classes = _critic(kind)
    truth64 = _textbook(fused32).double()
    text32 = _textbook(fused32).cuda()
    fused32 = fused32.cuda()
    gen = torch.Generator().manual_seed(5)
    real, fake = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen) * 0.5
    alpha = torch.rand(shape[0], generator=gen)
    res = {}
    for name, model, dev in [("truth", truth64, "cpu"), ("ref", text32, "cuda"), ("got", fused32, "cuda")]:
        dt = next(model.parameters()).dtype
        r, f, a = (t.to(dev, dt) for t in (real, fake, alpha))
        model.zero_grad(set_to_none=True)
        if name == "got":
            p = gradient_penalty(model, r, f, lam=10.0, alpha=a, backend="triton")
        else:
            p = R.gradient_penalty(model, r, f, lam=10.0, alpha=a)
        p.backward()
        res[name] = (p.detach().cpu(), [g.cpu() for g in _grads(model)])
    atol = _penalty_atol(_truth_norms(truth64, real, fake, alpha, None), 10.0, False)
    assert_fp64_rule(res["got"][0], res["ref"][0], res["truth"][0], what="penalty", atol=atol)
    scale = [t.abs().max().clamp(min=1e-300) for t in res["truth"][1]]
    cat = {k: torch.cat([(g.double() / s).flatten() for g, s in zip(res[k][1], scale)]) for k in res}
    assert_fp64_rule(cat["got"], cat["ref"], cat["truth"], what="all parameter gradients")
