"""Fused ReLU / LeakyReLU (fastwgan.ops.activations) against torch.nn, first and second order.

Exactness argument used below: the fused modules compute the same forward op and the same
backward kernels (threshold_backward / leaky_relu_backward) as torch; the only change is that the
second-order branch for the input, which autograd fills with ``zeros_like``, is dropped. Adding an
all-zero tensor is exact in IEEE arithmetic (x + 0 == x; the only difference, -0 + 0 = +0, is
invisible to ``torch.equal``), so every gradient must be *bitwise* equal to torch's.

The Functions run only inside ``pruned_double_backward()`` (elsewhere the modules call torch's own
op); every test here runs inside it, except those that check where it applies.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import fastwgan
from fastwgan.ops.activations import LeakyReLU, ReLU, leaky_relu, pruned_double_backward, relu

SLOPES = [0.0, 0.01, 0.2, -0.3]


@pytest.fixture(autouse=True)
def pruning(request):
    if "outside_the_context" in request.node.name:
        yield
        return
    with pruned_double_backward():
        yield


def _fused(slope):
    return ReLU() if slope == 0.0 else LeakyReLU(slope)


def _torch(slope):
    return nn.ReLU() if slope == 0.0 else nn.LeakyReLU(slope)


def _edge_inputs(dtype=torch.float32):
    torch.manual_seed(0)
    x = torch.randn(7, 13, dtype=dtype)
    specials = torch.tensor(
        [0.0, -0.0, 1e-45, -1e-45, float("inf"), -float("inf"), float("nan"), 1.0, -1.0], dtype=dtype
    )
    x[0, : specials.numel()] = specials
    return x


@pytest.mark.parametrize("slope", SLOPES)
def test_forward_and_first_order_bitwise_equal_torch(slope):
    x = _edge_inputs()
    g = torch.randn_like(x)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = _fused(slope)(xa), _torch(slope)(xb)
    assert torch.equal(ya.nan_to_num(7.0), yb.nan_to_num(7.0))
    assert ya.isnan().equal(yb.isnan())
    (ga,) = torch.autograd.grad(ya, xa, g)
    (gb,) = torch.autograd.grad(yb, xb, g)
    assert torch.equal(ga.nan_to_num(7.0), gb.nan_to_num(7.0))


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2])
def test_inplace_matches_torch(slope):
    x = _edge_inputs()
    g = torch.randn_like(x)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ca, cb = a * 1.0, b * 1.0  # non-leaf, so in-place is allowed
    fa = ReLU(inplace=True) if slope == 0 else LeakyReLU(slope, inplace=True)
    fb = nn.ReLU(inplace=True) if slope == 0 else nn.LeakyReLU(slope, inplace=True)
    ya, yb = fa(ca), fb(cb)
    assert ya.data_ptr() == ca.data_ptr()  # really in place
    assert torch.equal(ya.nan_to_num(7.0), yb.nan_to_num(7.0))
    (ga,) = torch.autograd.grad(ya, a, g)
    (gb,) = torch.autograd.grad(yb, b, g)
    assert torch.equal(ga.nan_to_num(7.0), gb.nan_to_num(7.0))


def test_inplace_negative_slope_refused():
    with pytest.raises(ValueError, match="negative_slope >= 0"):
        LeakyReLU(-0.1, inplace=True)(torch.randn(3) * 1.0)


def test_constructor_signatures_match_torch():
    assert ReLU().inplace is False and ReLU(True).inplace is True
    m = LeakyReLU()
    assert m.negative_slope == nn.LeakyReLU().negative_slope and m.inplace is False
    assert LeakyReLU(0.2, True).negative_slope == 0.2
    assert "negative_slope=0.2" in repr(LeakyReLU(0.2))


@pytest.mark.parametrize("slope", SLOPES)
def test_gradcheck_gradgradcheck_float64(slope):
    torch.manual_seed(1)
    # keep away from the kink at 0, where finite differences are meaningless
    x = torch.randn(4, 5, dtype=torch.float64)
    x = torch.where(x.abs() < 0.1, x.sign() * 0.5 + x, x).requires_grad_(True)

    def f(t):
        return leaky_relu(t, slope) if slope else relu(t)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def _mlp(act, width=24, depth=3, in_dim=5, slope=0.0):
    torch.manual_seed(2)
    layers, d = [], in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), act(slope)]
        d = width
    layers += [nn.Linear(d, 1)]
    return nn.Sequential(*layers).double()


def _penalty_grads(model, x):
    """Textbook gradient penalty's parameter gradients (autograd.grad with create_graph)."""
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    ((g.flatten(1).norm(dim=1) - 1) ** 2).mean().backward()
    # the biases get no gradient from the penalty: autograd writes zeros there, the pruned path
    # leaves .grad None (the zeros were never computed); compare both as zeros
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_double_backward_bitwise_equal_torch(slope):
    fused = _mlp(lambda s: _fused(s), slope=slope)
    ref = copy.deepcopy(fused)
    for i, m in enumerate(ref):
        if isinstance(m, (ReLU, LeakyReLU)):
            ref[i] = _torch(slope)
    x = torch.randn(9, 5, dtype=torch.float64)
    ga, gb = _penalty_grads(fused, x), _penalty_grads(ref, x)
    assert len(ga) == len(gb) > 0
    for a, b in zip(ga, gb):
        assert torch.equal(a, b)
    assert any(a.abs().sum() > 0 for a in ga)


class _CountMM(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
            self.n += 1
        return func(*args, **(kwargs or {}))


def _double_backward_mm_count(model, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    p = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    with _CountMM() as c:
        p.backward()
    return c.n


@pytest.mark.parametrize("depth", [1, 3])
def test_pruning_skips_the_zero_matmuls(depth):
    # Textbook: the double backward of each hidden Linear's backward does 2 mm (dW, d grad_out);
    # the zeros from each ReLU's input branch then go through the forward graph: 2 more per
    # hidden Linear (dW on zeros, d input on zeros, the first layer's d input goes to the leaf x).
    # Pruned: those 2 * depth disappear.
    fused = _mlp(lambda s: ReLU(), depth=depth)
    ref = copy.deepcopy(fused)
    for i, m in enumerate(ref):
        if isinstance(m, ReLU):
            ref[i] = nn.ReLU()
    x = torch.randn(6, 5, dtype=torch.float64)
    n_ref, n_fused = _double_backward_mm_count(ref, x), _double_backward_mm_count(fused, x)
    assert n_ref - n_fused == 2 * depth, (n_ref, n_fused)


def test_fused_leaky_relu_keeps_no_extra_saved_tensor():
    # autograd's LeakyReLU saves its input; the fused one saves only its output, which the next
    # Linear saves anyway: count distinct storages kept alive by the graph.
    def saved_storages(act):
        ptrs = set()

        def pack(t):
            ptrs.add(t.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            lin1 = nn.Linear(8, 8)
            lin2 = nn.Linear(8, 1)
            torch.manual_seed(0)
            lin2(act(lin1(torch.randn(4, 8))))
        return len(ptrs)

    assert saved_storages(LeakyReLU(0.2)) == saved_storages(nn.LeakyReLU(0.2)) - 1


def _grad_fn_name(act, x):
    return type(act(x.clone().requires_grad_(True) * 1.0).grad_fn).__name__


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_outside_the_context_torchs_op_runs_and_inside_the_pruned_one(slope):
    x = torch.randn(4, 5)
    outside = _grad_fn_name(_fused(slope), x)
    assert outside == _grad_fn_name(_torch(slope), x)  # torch's own autograd node
    with pruned_double_backward():
        inside = _grad_fn_name(_fused(slope), x)
    assert inside != outside and "Fn" in inside  # the custom Function (negative control of the above)
    assert _grad_fn_name(_fused(slope), x) == outside  # the context is left behind on exit


@pytest.mark.parametrize("depth", [1, 3])
def test_gradient_penalty_prunes_its_forward_outside_the_context(depth):
    # fastwgan.gradient_penalty enters the context itself: its double backward skips 2 matmuls per
    # hidden layer against the same critic with torch's ReLU, as the direct count above shows
    fused = _mlp(lambda s: ReLU(), depth=depth).float()
    ref = copy.deepcopy(fused)
    for i, m in enumerate(ref):
        if isinstance(m, ReLU):
            ref[i] = nn.ReLU()
    torch.manual_seed(3)
    real, fake = torch.randn(6, 5), torch.randn(6, 5)
    counts = []
    for model in (ref, fused):
        p = fastwgan.gradient_penalty(model, real, fake, lam=10.0, alpha=torch.full((6,), 0.3), backend="reference")
        with _CountMM() as c:
            p.backward()
        counts.append(c.n)
    assert counts[0] - counts[1] == 2 * depth, counts


def test_apply_skips_torchs_per_call_signature_binding(monkeypatch):
    # torch's Function.apply binds arguments with inspect.signature on every call of a
    # setup_context Function (ops/_function.py); fastwgan's skip it outside torch.func transforms
    import inspect

    class Plain(torch.autograd.Function):  # negative control: torch's own apply
        @staticmethod
        def forward(x):
            return x * 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return g * 2

    calls = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(4, 3, requires_grad=True)
    y = ReLU()(x * 1.0)
    y.sum().backward()
    assert calls == []
    Plain.apply(x)
    assert calls  # torch's apply does bind: the check above can see it
    # inside a transform torch's apply runs, and the gradient is still right
    g = torch.func.grad(lambda t: ReLU()(t).sum())(x.detach())
    assert torch.equal(g, (x > 0).to(g.dtype))


# -- the compiled form (what torch.compile traces: _select_form) --------------------------------

@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("inplace", [False, True])
def test_select_form_bitwise_equals_torch_first_and_second_order(slope, inplace):
    """The select form computes torch's values, first-order gradients (edge inputs: +-0, +-inf,
    NaN, denormals) and double-backward parameter gradients, bit for bit (see the module
    docstring of this file: the only change is a dropped all-zero branch)."""
    if inplace and slope < 0:
        pytest.skip("in-place LeakyReLU with a negative slope is refused eagerly (tested above)")
    from fastwgan.ops.activations import _select_form

    x = _edge_inputs(torch.float64)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya = _select_form(a * 1.0, slope, inplace)
    yb = _torch(slope)(b * 1.0)
    assert torch.equal(ya.isnan(), yb.isnan()) and torch.equal(ya.nan_to_num(), yb.nan_to_num())
    gy = torch.randn_like(ya)
    (ga,), (gb,) = torch.autograd.grad(ya, a, gy), torch.autograd.grad(yb, b, gy)
    assert torch.equal(ga.isnan(), gb.isnan()) and torch.equal(ga.nan_to_num(), gb.nan_to_num())

    class Select(nn.Module):
        def forward(self, t):
            return _select_form(t, slope, inplace)

    fused = _mlp(lambda s: Select(), slope=slope)
    ref = _mlp(lambda s: _torch(s), slope=slope)
    xs = torch.randn(9, 5, dtype=torch.float64)
    for p, q in zip(_penalty_grads(fused, xs), _penalty_grads(ref, xs), strict=True):
        assert torch.equal(p, q)


def _compiled_penalty_grads(model: nn.Module, x_hat: torch.Tensor) -> tuple[dict, int]:
    """d/dparams of the penalty (||grad_x D(x_hat)|| - 1)^2, written with torch.func as the static
    step writes it and compiled whole; returns the gradients and the number of matrix products
    (mm / addmm nodes) in the graph aot_autograd hands to its compiler."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    products = []

    def count(gm, example_inputs):
        products.append(sum(n.target in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)
                            for n in gm.graph.nodes))
        return make_boxed_func(gm.forward)

    def penalty_grads(params: dict, x: torch.Tensor) -> dict:
        def penalty(params):
            score = lambda t: torch.func.functional_call(model, params, (t,)).sum()  # noqa: E731
            g = torch.func.grad(score)(x)
            return ((g.norm(dim=1) - 1) ** 2).mean()
        return torch.func.grad(penalty)(params)

    torch._dynamo.reset()
    fn = torch.compile(penalty_grads, backend=aot_autograd(fw_compiler=count), fullgraph=True)
    grads = fn({n: p.detach() for n, p in model.named_parameters()}, x_hat)
    assert len(products) == 1
    return grads, products[0]


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("depth", [1, 3])
def test_compiled_double_backward_prunes_the_zero_products(slope, depth):
    """Under torch.compile the built-in activations give aot_autograd a graph without the zero
    branch that torch.nn's activations give it (the negative control: torch's ReLU keeps it), and
    the same gradients as eager torch. Counted: the zeros at each hidden layer's pre-activation
    cost its weight gradient and, but for the first layer, an input gradient (x_hat is an input
    the outer transform does not differentiate): 2 * depth - 1 products fewer."""
    fused = _mlp(lambda s: _fused(s), depth=depth, slope=slope)
    ref = _mlp(lambda s: _torch(s), depth=depth, slope=slope)
    x = torch.randn(7, 5, dtype=torch.float64)
    g_fused, n_fused = _compiled_penalty_grads(fused, x)
    g_ref, n_ref = _compiled_penalty_grads(ref, x)
    assert n_ref - n_fused == 2 * depth - 1, (n_ref, n_fused)
    truth = dict(zip([n for n, _ in ref.named_parameters()], _penalty_grads(ref, x), strict=True))
    for name, t in truth.items():
        torch.testing.assert_close(g_fused[name], t, rtol=0, atol=0)
        torch.testing.assert_close(g_ref[name], t, rtol=0, atol=0)
