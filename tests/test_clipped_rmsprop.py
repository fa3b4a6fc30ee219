"""Fused clipped RMSProp (fastwgan.optim.ClippedRMSprop) against torch.optim.RMSprop + clamp_.

Tolerance (derived, not tuned): the project's flash-attention rule (tests/_rules.py). Every run is done three times
on the same fp32 inputs and the same fp32 gradient sequence: the fused kernel (fp32), the
reference ``torch.optim.RMSprop`` + ``clamp_`` in fp32, and the same reference in fp64. For each
state buffer (param, square_avg, grad_avg, momentum_buffer), over all tensors together:

    max|kernel - ref64| <= 2 * max|torch32 - ref64| + atol,   atol = eps32 * max|ref64|

The kernel does torch's arithmetic with torch's rounding order (csrc/clipped_rmsprop.h), so its
distance from the exact answer is torch's own, up to where one of them fuses a multiply-add (torch's
AVX512 lerp / add-with-alpha use fmadd; nvcc and Triton contract a*b+c on a GPU): a difference of
the same order as torch's own rounding error, hence the factor 2. ``atol`` covers two final
fp32 roundings of the largest value (each at most half an ulp, and ulp(x) <= eps32 * |x|): a stored
fp32 result can be that far from the fp64 value even where torch32 happens to round every element
the right way (tiny tensors, zero updates).

Where fp32 overflows and fp64 does not (gradients of 2e20: ((1-alpha)*g)*g = 4e38 > 3.4e38),
the fp64 run is no reference; there the kernel must equal torch32 exactly: square_avg = inf,
the update is -lr*g/inf = -0, so the parameter and the momentum buffer stay bitwise what torch
leaves them.

Clipping is checked exactly: after every step ``|p| <= float32(clip)``, the value torch's
``clamp_`` itself compares against.

The Triton kernel runs under the interpreter (TRITON_INTERPRET=1, set before triton is imported:
tests/conftest.py does it for the session; the line below does it when this file runs alone). The
interpreter is slow (about 1 s per step at 278011 elements), so the 278011-element case runs for the
plain update and for all options together; each option alone runs on the smaller sizes. The C++
kernel runs every combination.
"""
from __future__ import annotations

import copy
import os
import zlib

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from fastwgan import backend as fw_backend  # noqa: E402
from fastwgan.optim import ClippedRMSprop  # noqa: E402
from fastwgan.reference.clipped_rmsprop import ReferenceClippedRMSprop  # noqa: E402

from _rules import EPS32, assert_fp64_rule  # noqa: E402

LR = 1e-3  # larger than WGAN's 5e-5 so that 7 steps move weights across the clip bound
CLIP = 0.01
C32 = torch.tensor(CLIP, dtype=torch.float32).item()  # what clamp_ compares fp32 against

OPTIONS = {
    "plain": {},
    "momentum": dict(momentum=0.9),
    "centered": dict(centered=True),
    "weight_decay": dict(weight_decay=0.1),
    "all": dict(momentum=0.5, centered=True, weight_decay=0.01),
}
SIZES_SMALL = [(1,), (17,), (4099,), (8, 3, 3, 3)]
SIZES_BIG = SIZES_SMALL + [(278011,)]


def _backend_ok(name: str) -> None:
    """Fail loudly (not skip) when a backend that CI must prove cannot run."""
    fw_backend.resolve("clipped_rmsprop", "cpu", name)


BACKENDS = ["cpp", "triton"]


def _same_strides(p: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A leaf copy of p with p's strides, gaps included (clone() would compact a strided view)."""
    out = torch.empty_strided(p.shape, p.stride(), dtype=dtype, device=p.device)
    return out.copy_(p).requires_grad_()


def _misaligned(p: torch.Tensor) -> torch.nn.Parameter:
    """A contiguous leaf copy of p that starts 4 bytes past a 16-byte boundary (a view at an odd
    offset of a bigger buffer, as a flat-parameter scheme makes)."""
    buf = torch.empty(p.numel() + 1, dtype=p.dtype, device=p.device)
    out = torch.nn.Parameter(buf[1:].view(p.shape).copy_(p))
    assert out.data_ptr() % 16 == 4
    return out


class Trio:
    """The same parameters under the kernel, torch32 and torch64 (both RMSprop + clamp_)."""

    def __init__(self, init: list[torch.Tensor], backend: str, clip: float = CLIP, lr: float = LR,
                 misaligned: bool = False, **kw) -> None:
        make = _misaligned if misaligned else (lambda p: _same_strides(p, p.dtype))
        self.k = [make(p) for p in init]
        self.t = [_same_strides(p, p.dtype) for p in init]
        self.r = [_same_strides(p, torch.float64) for p in init]
        self.clip = clip
        self.ok = ClippedRMSprop(self.k, lr=lr, clip=clip, backend=backend, **kw)
        self.ot = ReferenceClippedRMSprop(self.t, lr=lr, clip=clip, **kw)
        self.or_ = ReferenceClippedRMSprop(self.r, lr=lr, clip=clip, **kw)

    def step(self, grads: list[torch.Tensor]) -> None:
        for k, t, r, g in zip(self.k, self.t, self.r, grads):
            k.grad, t.grad, r.grad = g.clone(), g.clone(), g.double()
        self.ok.step()
        self.ot.step()
        self.or_.step()
        c32 = torch.tensor(self.clip, dtype=torch.float32)
        for k in self.k:
            assert bool((k.abs() <= c32).all()), "a weight left [-clip, clip]"

    def buffers(self, key: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        def cat(ps, opt):
            xs = [p if key == "param" else opt.state[p][key] for p in ps]
            return torch.cat([x.detach().reshape(-1).double() for x in xs])

        return cat(self.k, self.ok), cat(self.t, self.ot), cat(self.r, self.or_)

    def check(self) -> None:
        keys = ["param", "square_avg"]
        group = self.ok.param_groups[0]
        if group["momentum"] > 0:
            keys.append("momentum_buffer")
        if group["centered"]:
            keys.append("grad_avg")
        _, tv, _ = self.buffers("square_avg")
        overflow = ~torch.isfinite(tv)  # fp32 overflowed where fp64 did not
        for key in keys:
            k, t, r = self.buffers(key)
            mask = overflow if key != "grad_avg" else torch.zeros_like(overflow)
            # fp32-overflow elements: bitwise torch32 (inf stays inf, -0 updates)
            assert torch.equal(k[mask], t[mask]), f"{key}: differs from torch where fp32 overflows"
            assert_fp64_rule(k[~mask], t[~mask], r[~mask], what=key)
        for k, t in zip(self.k, self.t):
            assert torch.equal(self.ok.state[k]["step"], self.ot.state[t]["step"])


def _init(shapes, gen, scale=0.01):
    return [torch.randn(s, generator=gen) * scale for s in shapes]


def _grads(shapes, gen):
    return [torch.randn(s, generator=gen) for s in shapes]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("option", list(OPTIONS))
def test_matches_reference(backend, option):
    """Odd sizes, 7 steps, every buffer, each option; clip bound checked after every step."""
    _backend_ok(backend)
    big = backend == "cpp" or option in ("plain", "all")
    shapes = SIZES_BIG if big else SIZES_SMALL
    gen = torch.Generator().manual_seed(zlib.crc32(f"{backend}/{option}".encode()))
    trio = Trio(_init(shapes, gen), backend, **OPTIONS[option])
    for _ in range(7):
        trio.step(_grads(shapes, gen))
        trio.check()
    # the test is not vacuous: weights moved, and some sit on the bound
    k, _, _ = trio.buffers("param")
    assert bool((k.abs() == C32).any())


def _simd_paths() -> list[str]:
    ext = fw_backend.load_extension("clipped_rmsprop")
    assert ext is not None, "the C++ kernels did not build"
    names = ["base", "avx2", "avx512"]
    return names[: names.index(ext.detected_isa()) + 1]


@pytest.mark.parametrize("option", ["plain", "all"])
def test_every_simd_path_of_the_cpp_kernel(option):
    """The C++ kernel picks its SIMD width at run time (16-byte packs on any CPU, AVX2, AVX-512):
    every path this CPU can run passes the same rule, on sizes that leave scalar tails."""
    ext = fw_backend.load_extension("clipped_rmsprop")
    paths = _simd_paths()
    assert ext.isa() == paths[-1]  # the widest path is the default
    try:
        for isa in paths:
            ext.set_isa(isa)
            gen = torch.Generator().manual_seed(29)
            shapes = [(1,), (17,), (4099,), (63,), (8, 3, 3, 3)]
            trio = Trio(_init(shapes, gen), "cpp", **OPTIONS[option])
            for _ in range(7):
                trio.step(_grads(shapes, gen))
                trio.check()
    finally:
        ext.set_isa(paths[-1])
    with pytest.raises(RuntimeError, match="not one of"):
        ext.set_isa("sse9")


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_small_and_few_large(backend):
    """200 small tensors mixed with 2 large ones, in shuffled order: one call covers all."""
    _backend_ok(backend)
    gen = torch.Generator().manual_seed(7)
    sizes = torch.randint(1, 300, (200,), generator=gen).tolist()
    # the interpreter runs one Triton program (1024 elements) at a time: a smaller "large" there
    large = 65537 if backend == "cpp" else 9001
    shapes = [(n,) for n in sizes] + [(large,), (64, 3, 4, 4)]
    order = torch.randperm(len(shapes), generator=gen).tolist()
    shapes = [shapes[i] for i in order]
    trio = Trio(_init(shapes, gen), backend, momentum=0.9, centered=True)
    for _ in range(7):
        trio.step(_grads(shapes, gen))
        trio.check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts(backend):
    """channels_last parameters (dense, not contiguous) are fused; a gradient in another layout
    is copied into the parameter's; a non-dense parameter (a strided view) takes the reference
    path in its own bucket. All of them end where torch ends."""
    gen = torch.Generator().manual_seed(31)
    cl = (torch.randn(4, 3, 5, 5, generator=gen) * 0.01).to(memory_format=torch.channels_last)
    view = (torch.randn(8, 6, generator=gen) * 0.01)[:, ::2]
    plain = torch.randn(17, generator=gen) * 0.01
    trio = Trio([cl, view, plain], backend, momentum=0.9)
    assert trio.k[0].stride() == cl.stride() and not trio.k[1].is_contiguous()
    for _ in range(7):
        gs = [torch.randn(x.shape, generator=gen) for x in (cl, view, plain)]  # contiguous grads
        trio.step(gs)
        trio.check()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])])
def test_triton_misaligned_parameters(device):
    """Parameters not 16-byte aligned run the kernel's unaligned specialization (no vector
    hints, ALIGNED=False); every other test here has aligned ones (ALIGNED=True). Both follow
    the rule, full blocks and masked tails alike."""
    _backend_ok("triton")
    gen = torch.Generator().manual_seed(37)
    shapes = [(17,), (4099,), (3, 5), (2048,)]
    trio = Trio([x.to(device) for x in _init(shapes, gen)], "triton", misaligned=True,
                momentum=0.9, centered=True, weight_decay=0.01)
    for _ in range(5):
        trio.step([g.to(device) for g in _grads(shapes, gen)])
        trio.check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_gradients(backend):
    """g = 0: square_avg decays only, weights stay put (a weight outside the bound is clipped)."""
    _backend_ok(backend)
    gen = torch.Generator().manual_seed(3)
    shapes = [(17,), (4099,)]
    init = _init(shapes, gen, scale=0.02)  # about a third of these start outside [-c, c]
    trio = Trio(init, backend, momentum=0.9, centered=True)
    trio.step(_grads(shapes, gen))  # some history in every buffer first
    for _ in range(7):
        trio.step([torch.zeros(s) for s in shapes])
        trio.check()
    z = Trio(init, backend)
    before = [p.clamp(-CLIP, CLIP) for p in init]
    for _ in range(7):
        z.step([torch.zeros(s) for s in shapes])
        z.check()
    for k, b in zip(z.k, before):
        assert torch.equal(k.detach(), b)  # exact: p + (-lr*0)/(sqrt(0)+eps) = p, then clamp


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("option", ["plain", "momentum", "centered", "all"])
def test_huge_gradients(backend, option):
    """|g| = 1e19 (square_avg huge but finite) and 2e20 (square_avg overflows to inf at step 1,
    the update becomes -0 and the weight freezes, as in torch), mixed with ordinary gradients.

    2e20 and not larger: with centered=True, grad_avg reaches (1 - 0.99^7) * |g| = 0.068 |g| in
    7 steps and ``inf + (-ga) * ga`` is NaN once ga^2 overflows (|ga| > 1.8e19). torch's AVX512
    addcmul is a fused multiply-add whose product does not overflow, so it returns inf there; the
    C++ kernel (no FMA without -march flags) and the interpreter do not. 2e20 keeps ga^2 finite."""
    _backend_ok(backend)
    gen = torch.Generator().manual_seed(11)
    shapes = [(17,), (4099,)]
    trio = Trio(_init(shapes, gen), backend, **OPTIONS[option])
    huge = []
    for s in shapes:
        pick = torch.randint(0, 3, s, generator=gen)
        sign = torch.randint(0, 2, s, generator=gen) * 2 - 1
        huge.append((pick == 1) * 1e19 * sign + (pick == 2) * 2e20 * sign)
    for _ in range(7):
        grads = _grads(shapes, gen)
        grads = [torch.where(h != 0, h, g).float() for h, g in zip(huge, grads)]
        trio.step(grads)
        trio.check()
    _, tv, _ = trio.buffers("square_avg")
    assert bool(torch.isinf(tv).any()) and bool((tv > 1e30).logical_and(tv.isfinite()).any())


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_at_bound(backend):
    """Weights exactly at +-c: pushed outward they stay exactly at +-c; pushed inward they move."""
    _backend_ok(backend)
    n = 4099
    sign = (torch.arange(n) % 2) * 2 - 1.0
    init = [sign * C32]
    # lr 1e-4: 7 normalised steps move a weight by sum_t lr / sqrt(1 - 0.99^t) = 4.5e-3 < 2c, so
    # the inward-pushed ones end strictly inside instead of reaching the opposite bound
    trio = Trio(init, backend, lr=1e-4)
    outward = torch.arange(n) % 4 < 2  # half pushed out, half in
    g = torch.where(outward, -sign, sign).float()  # update = -lr*g/d: g = -sign pushes outward
    for _ in range(7):
        trio.step([g.clone()])
        trio.check()
    p = trio.k[0].detach()
    assert torch.equal(p[outward], (sign * C32)[outward])
    assert bool((p[~outward].abs() < C32).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_params_without_grad_are_clipped_not_stepped(backend):
    _backend_ok(backend)
    a = torch.full((5,), 0.5, requires_grad=True)
    b = torch.zeros(7, requires_grad=True)
    opt = ClippedRMSprop([a, b], lr=LR, clip=CLIP, backend=backend)
    b.grad = torch.ones(7)
    opt.step()
    assert torch.equal(a.detach(), torch.full((5,), C32))
    assert len(opt.state[a]) == 0 and len(opt.state[b]) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_autograd_loop_with_zero_grad(backend):
    """The trainer's loop: autograd makes fresh .grad tensors each step, zero_grad() (set_to_none)
    drops them; lr changed through param_groups midway, as a scheduler would."""
    _backend_ok(backend)

    def critic():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 4, 2, 1), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(8, 16, 4, 2, 1), torch.nn.BatchNorm2d(16), torch.nn.LeakyReLU(0.2),
            torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 1),
        )

    dk, dt, dr = critic(), critic(), critic().double()
    ok = ClippedRMSprop(dk.parameters(), lr=5e-3, clip=CLIP, backend=backend)
    ot = ReferenceClippedRMSprop(dt.parameters(), lr=5e-3, clip=CLIP)
    or_ = ReferenceClippedRMSprop(dr.parameters(), lr=5e-3, clip=CLIP)
    gen = torch.Generator().manual_seed(5)
    for it in range(7):
        x = torch.randn(4, 3, 16, 16, generator=gen)
        if it == 4:
            for o in (ok, ot, or_):
                o.param_groups[0]["lr"] = 1e-3
        for d, o, xx in ((dk, ok, x), (dt, ot, x), (dr, or_, x.double())):
            o.zero_grad()
            assert all(p.grad is None for p in d.parameters())
            d(xx).mean().backward()
            o.step()
        for pk in dk.parameters():
            assert bool((pk.abs() <= C32).all())
    # here each run's gradients come from its own weights; the rule still applies: fp64 is the
    # exact answer to the same sequence of inputs, and torch32 shows what fp32 rounding costs.
    assert_fp64_rule(list(dk.parameters()), list(dt.parameters()), list(dr.parameters()),
                     what="params")
    for key in ("square_avg",):
        assert_fp64_rule([ok.state[p][key] for p in dk.parameters()],
                         [ot.state[p][key] for p in dt.parameters()],
                         [or_.state[p][key] for p in dr.parameters()], what=key)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("direction", ["fused_to_torch", "torch_to_fused"])
def test_state_dict_round_trip(backend, direction):
    """state_dict of ClippedRMSprop loads into torch.optim.RMSprop and back: every buffer arrives
    bitwise, and 3 + 3 steps across the swap stay within the rule of 6 uninterrupted steps."""
    _backend_ok(backend)
    kw = dict(momentum=0.9, centered=True, weight_decay=0.01)
    gen = torch.Generator().manual_seed(13)
    shapes = [(17,), (4099,), (8, 3, 3, 3)]
    init = _init(shapes, gen)
    grads = [_grads(shapes, gen) for _ in range(6)]
    fused = lambda ps: ClippedRMSprop(ps, lr=LR, clip=CLIP, backend=backend, **kw)  # noqa: E731
    torch_ = lambda ps: ReferenceClippedRMSprop(ps, lr=LR, clip=CLIP, **kw)  # noqa: E731
    first, second = (fused, torch_) if direction == "fused_to_torch" else (torch_, fused)

    def set_grads(ps, gs):
        for p, g in zip(ps, gs):
            p.grad = g.clone()

    src_p = [p.clone().requires_grad_() for p in init]
    src = first(src_p)
    for gs in grads[:3]:
        set_grads(src_p, gs)
        src.step()
    sd = src.state_dict()
    dst_p = [p.detach().clone().requires_grad_() for p in src_p]
    dst = second(dst_p)
    dst.load_state_dict(sd)
    for p, q in zip(src_p, dst_p):
        for key in ("step", "square_avg", "momentum_buffer", "grad_avg"):
            assert torch.equal(src.state[p][key], dst.state[q][key]), key
    g0 = dst.param_groups[0]
    assert g0["lr"] == LR and g0["centered"] and g0["clip"] == CLIP
    # a plain torch.optim.RMSprop accepts it too (the extra 'clip' key is ignored)
    plain = torch.optim.RMSprop([p.detach().clone().requires_grad_() for p in src_p], lr=LR)
    plain.load_state_dict(sd)
    assert plain.param_groups[0]["momentum"] == 0.9
    for gs in grads[3:]:
        set_grads(dst_p, gs)
        dst.step()

    # 6 uninterrupted steps in torch32 and fp64 set the yardstick
    t = [p.clone().requires_grad_() for p in init]
    r = [p.double().requires_grad_() for p in init]
    ot, or_ = torch_(t), torch_(r)
    for gs in grads:
        set_grads(t, gs)
        set_grads(r, [g.double() for g in gs])
        ot.step()
        or_.step()
    assert_fp64_rule(dst_p, t, r, what="params")
    for key in ("square_avg", "momentum_buffer", "grad_avg"):
        assert_fp64_rule([dst.state[p][key] for p in dst_p], [ot.state[p][key] for p in t],
                         [or_.state[p][key] for p in r], what=key)
    assert all(float(dst.state[p]["step"]) == 6 for p in dst_p)


def test_state_dict_from_rmsprop_gets_clip_default():
    """A state_dict saved by torch.optim.RMSprop has no 'clip': the constructor's value is kept."""
    p = torch.zeros(3, requires_grad=True)
    src = torch.optim.RMSprop([p], lr=LR)
    p.grad = torch.ones(3)
    src.step()
    dst = ClippedRMSprop([p], lr=LR, clip=0.05, backend="reference")
    dst.load_state_dict(src.state_dict())
    assert dst.param_groups[0]["clip"] == 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_deepcopy_keeps_backend_and_state(backend):
    p = torch.full((4099,), 0.005, requires_grad=True)
    opt = ClippedRMSprop([p], lr=LR, clip=CLIP, backend=backend, momentum=0.9)
    p.grad = torch.ones_like(p)
    opt.step()
    twin = copy.deepcopy(opt)
    assert twin.backend == backend
    q = twin.param_groups[0]["params"][0]
    q.grad = torch.ones_like(q)
    p.grad = torch.ones_like(p)
    opt.step()
    twin.step()
    assert torch.equal(p, q) and torch.equal(opt.state[p]["momentum_buffer"],
                                             twin.state[q]["momentum_buffer"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph_matches_eager(backend):
    """The whole step compiles into one graph (the kernel is a registered op with mutation
    annotations and a fake implementation) and gives bitwise the eager result (same kernel)."""
    _backend_ok(backend)
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(17)
    shapes = [(17,), (4099,), (8, 3, 3, 3)]
    init = _init(shapes, gen)
    kw = dict(momentum=0.9, centered=True)
    a = [p.clone().requires_grad_() for p in init]
    b = [p.clone().requires_grad_() for p in init]
    oa = ClippedRMSprop(a, lr=LR, clip=CLIP, backend=backend, **kw)
    ob = ClippedRMSprop(b, lr=LR, clip=CLIP, backend=backend, **kw)

    @torch.compile(fullgraph=True)
    def compiled_step():
        oa.step()

    for _ in range(4):
        gs = _grads(shapes, gen)
        for x, y, g in zip(a, b, gs):
            x.grad, y.grad = g.clone(), g.clone()
        compiled_step()
        ob.step()
    for x, y in zip(a, b):
        assert torch.equal(x, y)
        for key in ("step", "square_avg", "momentum_buffer", "grad_avg"):
            assert torch.equal(oa.state[x][key], ob.state[y][key]), key


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("backend,op", [("cpp", "fastwgan.clipped_rmsprop_"),
                                        ("triton", "fastwgan.clipped_rmsprop_triton_")])
def test_one_call_for_all_tensors(backend, op):
    """202 tensors: after the first step (state allocation), a step is exactly one op call."""
    _backend_ok(backend)
    ps = [torch.zeros(n % 97 + 1, requires_grad=True) for n in range(200)]
    ps += [torch.zeros(4099, requires_grad=True), torch.zeros(3, 5, requires_grad=True)]
    opt = ClippedRMSprop(ps, lr=LR, clip=CLIP, backend=backend, momentum=0.9, centered=True)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    with _OpLog() as log:
        opt.step()
    # torch.optim.Optimizer's profiler hook records enter/exit markers: not tensor work
    work = [o.rsplit(".", 1)[0] for o in log.ops if not o.startswith("profiler.")]
    assert work == [op], log.ops


@pytest.mark.parametrize("backend", ["cpp", "triton", "reference"])
def test_bad_input(backend):
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="clip"):
        ClippedRMSprop([p], clip=0.0, backend=backend)
    with pytest.raises(ValueError, match="clip"):
        ClippedRMSprop([p], clip=-0.01, backend=backend)
    with pytest.raises(ValueError, match="lr"):
        ClippedRMSprop([p], lr=-1e-3, backend=backend)
    with pytest.raises(TypeError, match="floating-point"):
        ClippedRMSprop([torch.zeros(3, dtype=torch.int64)], backend=backend)
    with pytest.raises(TypeError, match="floating-point"):
        ClippedRMSprop([torch.zeros(3, dtype=torch.complex64)], backend=backend)
    with pytest.raises(ValueError, match="backend"):
        ClippedRMSprop([p], backend="cuda")
    opt = ClippedRMSprop([p], backend=backend)
    with pytest.raises(ValueError, match="clip"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "clip": 0})
    assert len(opt.param_groups) == 1  # the rejected group was not kept
    opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "clip": 0.05})
    assert opt.param_groups[1]["clip"] == 0.05 and opt.param_groups[1]["lr"] == 5e-5
    p.grad = torch.sparse_coo_tensor(torch.tensor([[0]]), torch.tensor([1.0]), (3,))
    with pytest.raises(ValueError, match="sparse"):
        opt.step()
    p.grad = torch.ones(3)
    opt.param_groups[0]["lr"] = -1.0  # a scheduler gone wrong
    with pytest.raises(ValueError, match="lr"):
        opt.step()


def test_cpp_op_checks_its_inputs():
    """The registered C++ op validates what the Python class does not send (direct callers)."""
    from fastwgan.ops.clipped_rmsprop import cpp_op

    op = cpp_op()
    p, g, v, s = torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.zeros(())
    with pytest.raises(RuntimeError, match="clip must be > 0"):
        op([p], [g], [v], [], [], [s], 1e-3, 0.99, 1e-8, 0.0, 0.0, False, 0.0)
    with pytest.raises(RuntimeError, match="shape and strides"):
        op([p], [torch.zeros(5)], [v], [], [], [s], 1e-3, 0.99, 1e-8, 0.0, 0.0, False, 0.01)
    with pytest.raises(RuntimeError, match="float32 and float64"):
        op([p.half()], [g.half()], [v.half()], [], [], [s], 1e-3, 0.99, 1e-8, 0.0, 0.0, False,
           0.01)


def test_float64_and_half_parameters_cpp():
    """float64 runs in the C++ kernel; float16 falls back to the reference in its own bucket.

    float64 has no wider reference here, so torch64 plays fp64's part and the rule is scaled to
    the dtype: rounding error is linear in the unit roundoff, so the kernel64-to-torch64 distance
    may be at most 2 * (torch32-to-torch64 distance) * eps64 / eps32 + eps64 * max|p|.
    """
    gen = torch.Generator().manual_seed(19)
    init = torch.randn(4099, generator=gen, dtype=torch.float64) * 0.01
    p64, q64 = init.clone().requires_grad_(), init.clone().requires_grad_()
    q32 = init.float().requires_grad_()
    p16 = (torch.randn(17, generator=gen) * 0.01).half().requires_grad_()
    q16 = p16.detach().clone().requires_grad_()
    ok = ClippedRMSprop([p64, p16], lr=LR, clip=CLIP, backend="cpp", momentum=0.9)
    ot = ReferenceClippedRMSprop([q64, q16], lr=LR, clip=CLIP, momentum=0.9)
    o32 = ReferenceClippedRMSprop([q32], lr=LR, clip=CLIP, momentum=0.9)
    for _ in range(7):
        g = torch.randn(4099, generator=gen).double()
        g16 = torch.randn(17, generator=gen).half()
        p64.grad, q64.grad, q32.grad = g.clone(), g.clone(), g.float()
        p16.grad, q16.grad = g16, g16.clone()
        ok.step()
        ot.step()
        o32.step()
    assert torch.equal(p16, q16)  # same code (the reference) runs the half bucket
    scale = torch.finfo(torch.float64).eps / EPS32
    err_k = (p64 - q64).abs().max().item()
    err_t = (q32.double() - q64).abs().max().item()
    bound = 2 * err_t * scale + torch.finfo(torch.float64).eps * CLIP
    assert 0 < err_t and err_k <= bound, (err_k, bound)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("option", list(OPTIONS))
def test_triton_cuda_matches_reference(option):
    """The same trio rule on a GPU (covered on the CPU by the interpreter runs above)."""
    gen = torch.Generator().manual_seed(23)
    shapes = SIZES_BIG
    init = [x.cuda() for x in _init(shapes, gen)]
    trio = Trio(init, "triton", **OPTIONS[option])
    for _ in range(7):
        trio.step([g.cuda() for g in _grads(shapes, gen)])
        trio.check()
