"""Fused elementwise pieces of the gradient penalty: kernels, dispatch and autograd.Functions.

WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Alg. 1):

    x_hat = alpha * real + (1 - alpha) * fake          alpha ~ U[0, 1], one per sample
    P     = lam / B * sum_b (||g_b||_2 - 1)^2          g = grad_x D(x_hat), norm per sample
    (one-sided, WGAN-LP, Petzka et al. 2018: max(0, ||g_b|| - 1)^2)

Three kernels, each one pass over memory (fp32 bytes per element in brackets):
  * ``interpolate``:   x_hat from real, fake and alpha (12 B; the broadcast expression moves 28)
  * ``norm_penalty``:  per-sample norm + penalty scalar (4 B: read g once)
  * its backward:      dP/dg = gout * 2 lam / B * gap_b / n_b * g_b (8 B; autograd's chain ~24)

Triton specifics:
  * fp16/bf16 data is loaded as is and computed in float32 (the sum of squares would overflow
    fp16 at |g| > 256), fp64 in float64; norms are returned in that accumulator dtype.
  * Square roots round to nearest (``sqrt_rn``; ``tl.sqrt`` would be ``sqrt.approx.ftz.f32``), as
    torch's do.
  * The norm is row-parallel: a row is cut into S chunks (``norm_split``) so that the grid has at
    least TARGET_PROGRAMS programs (batch 64 of 3x64x64: 64 x 4 = 256 >= 132 SMs); a second, tiny
    kernel sums the S partial sums of each row in a fixed order and takes the root. Forward and
    backward stay deterministic (no atomics). The backward is a (B, N / BLOCK) grid already.
  * FMA contraction policy: every launch passes ``enable_fp_fusion=False``, so each product and each
    sum is rounded on its own, as in the interpreter the tests run and in the plain-PyTorch
    reference (one op per rounding). For fp32/fp64 data the elementwise kernels therefore give on a
    GPU, by construction (the same correctly rounded operations in the same order; no GPU has run
    them yet), bitwise what the interpreter tests verify; the norms differ from the interpreter only
    in the order of the tree reduction, which the tests' rule (twice plain fp32's error) covers.
    With contraction on, each ``a*b + c`` would instead be within u*|a*b| of the unfused value, a
    difference of the order of plain fp32's own rounding that the same rule would also absorb. Off
    costs one extra instruction per uncontracted pair in kernels bound by memory traffic, not
    arithmetic.

Backends: C++ (``csrc/gradient_penalty.cpp``, registered as ``torch.ops.fastwgan.*`` with fake
implementations so ``torch.compile`` keeps them in the graph), Triton (GPU, or CPU under
``TRITON_INTERPRET=1``), and the plain-PyTorch reference.

Zero-gradient convention: at ``g_b = 0`` we define ``d||g_b||/dg_b = 0`` (a subgradient). The sample
then adds ``lam / B`` to P (two-sided) and exactly zero gradient. A hand-written
``sqrt(sum g^2)`` gives 0/0 = NaN there (the derivative of sqrt at 0 is infinite, times a zero); torch's ``norm`` backward and
:func:`safe_norm` use the same convention as these kernels.

Norms are kept in float64 (B values) by the C++ kernel so that the backward coefficient gap/n is
not limited by an fp32 rounding of n (up to u*n/|gap| relative error, 16u at n = 0.94).
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

from .. import backend as _backend
from ._function import Function

__all__ = ["interpolate", "norm_penalty", "plain_interpolate", "safe_norm"]

_OP = "gradient_penalty"


# --------------------------------------------------------------------------------------------
# C++ backend
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _cpp_ops():
    """Load the extension once and register the fake (meta) implementations of its ops."""
    if _backend.load_extension(_OP) is None:
        raise RuntimeError(
            "the C++ gradient-penalty kernels are not built: run "
            "`pip install --no-build-isolation -e .`, or use backend='reference'"
        )
    ops = torch.ops.fastwgan

    @torch.library.register_fake("fastwgan::gradient_penalty_interpolate")
    def _(real, fake, alpha):
        return torch.empty_like(real)

    @torch.library.register_fake("fastwgan::gradient_penalty_forward")
    def _(grad, lam, one_sided):  # norms in float64, see csrc/gradient_penalty.cpp
        return grad.new_empty(()), grad.new_empty(grad.shape[:1], dtype=torch.float64)

    @torch.library.register_fake("fastwgan::gradient_penalty_backward")
    def _(gout, grad, norm, lam, one_sided):
        return torch.empty_like(grad)

    return ops


# --------------------------------------------------------------------------------------------
# Triton backend
# --------------------------------------------------------------------------------------------
def define_triton_kernels() -> dict:
    """Define the Triton kernels (uncached; ``_triton_kernels`` caches them for the launchers).

    TRITON_INTERPRET is read when a kernel is defined, so the launchers' kernels follow the
    session's mode, and ``tests/test_triton_compile.py`` calls this with the variable unset to get
    compilable JITFunctions (each kernel returned here is compiled there for sm_80 and sm_90).

    Every kernel computes in ``ACC`` (float32 for fp16/bf16/fp32 data, float64 for fp64 data),
    loads and stores in the data's dtype, and is launched with ``enable_fp_fusion=False`` (see
    the module docstring).
    """
    import triton
    import triton.language as tl

    # alpha and coef are read once per program (a scalar load): their alignment does not matter,
    # so it is not a specialization (one compiled kernel fewer per case)
    @triton.jit(do_not_specialize_on_alignment=["alpha_ptr"])
    def interp_kernel(real_ptr, fake_ptr, alpha_ptr, out_ptr, N, BLOCK: tl.constexpr,
                      ACC: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < N
        a = tl.load(alpha_ptr + row).to(ACC)
        r = tl.load(real_ptr + row * N + offs, mask=m, other=0.0).to(ACC)
        f = tl.load(fake_ptr + row * N + offs, mask=m, other=0.0).to(ACC)
        # same expression and order as the reference a*r + (1-a)*f
        tl.store(out_ptr + row * N + offs, a * r + (1.0 - a) * f, mask=m)

    @triton.jit
    def norm_kernel(g_ptr, out_ptr, N, CHUNK, BLOCK: tl.constexpr, ACC: tl.constexpr,
                    SPLIT: tl.constexpr):
        # Program (b, s) sums the squares of row b's elements [s*CHUNK, (s+1)*CHUNK): BLOCK
        # partial sums, then a tree reduction (the error order of torch's cascade sum). SPLIT:
        # store that partial sum at out[b*S + s] for norm_finish_kernel; else (one program per
        # row) store the row's norm at out[b].
        row = tl.program_id(0).to(tl.int64)
        s = tl.program_id(1).to(tl.int64)
        acc = tl.zeros([BLOCK], dtype=ACC)
        for start in range(0, CHUNK, BLOCK):
            offs = s * CHUNK + start + tl.arange(0, BLOCK)
            x = tl.load(g_ptr + row * N + offs, mask=offs < N, other=0.0).to(ACC)
            acc += x * x
        total = tl.sum(acc, axis=0)
        if SPLIT:
            tl.store(out_ptr + row * tl.num_programs(1) + s, total)
        elif ACC == tl.float64:
            tl.store(out_ptr + row, tl.sqrt(total))  # sqrt.rn.f64: PTX has no other f64 sqrt
        else:
            tl.store(out_ptr + row, tl.sqrt_rn(total))

    @triton.jit
    def norm_finish_kernel(part_ptr, norm_ptr, S, SBLOCK: tl.constexpr, ACC: tl.constexpr):
        # norm[b] = sqrt(sum_s part[b, s]), S <= SBLOCK partial sums per row
        row = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, SBLOCK)
        x = tl.load(part_ptr + row * S + offs, mask=offs < S, other=0.0)
        total = tl.sum(x, axis=0)
        if ACC == tl.float64:
            tl.store(norm_ptr + row, tl.sqrt(total))
        else:
            tl.store(norm_ptr + row, tl.sqrt_rn(total))

    @triton.jit(do_not_specialize_on_alignment=["coef_ptr"])
    def backward_kernel(g_ptr, coef_ptr, out_ptr, N, BLOCK: tl.constexpr, ACC: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < N
        c = tl.load(coef_ptr + row).to(ACC)
        x = tl.load(g_ptr + row * N + offs, mask=m, other=0.0).to(ACC)
        tl.store(out_ptr + row * N + offs, c * x, mask=m)

    return {"interp_kernel": interp_kernel, "norm_kernel": norm_kernel,
            "norm_finish_kernel": norm_finish_kernel, "backward_kernel": backward_kernel}


@functools.lru_cache(maxsize=None)
def _triton_kernels() -> dict:
    return define_triton_kernels()


BLOCK = 1024
# The split norm: a row of N elements is cut into S chunks of whole BLOCKs, so that B * S is at
# least TARGET_PROGRAMS (two programs per SM of a 132-SM H100; it also fills a 108-SM A100).
# A fixed target, not the device's SM count: the summation order (hence the bits of the norm)
# then depends only on (B, N), not on which GPU runs it. S <= MAX_SPLITS = SBLOCK of the finish.
TARGET_PROGRAMS = 264
MAX_SPLITS = 64


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in: float64 for float64 data, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tl_acc(dtype: torch.dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def norm_split(B: int, N: int) -> tuple[int, int]:
    """(S, CHUNK): programs per row and elements per program of the norm; the grid is (B, S)."""
    nblocks = max(1, -(-N // BLOCK))
    want = min(nblocks, MAX_SPLITS, max(1, -(-TARGET_PROGRAMS // max(B, 1))))
    chunk = -(-nblocks // want) * BLOCK  # whole blocks per program
    return -(-max(N, 1) // chunk), chunk


# the FMA policy (module docstring): every launch rounds each product and each sum on its own
_LAUNCH_OPTS = {"enable_fp_fusion": False}


def _row_length(t: Tensor) -> tuple[int, int]:
    """(B, N) of a (B, N) tensor, refusing rows the kernels' int32 row length cannot hold."""
    B, N = t.shape
    if N >= 2**31:
        raise ValueError(
            f"a sample of {N} elements (>= 2^31) is too long for the Triton gradient-penalty "
            "kernels (int32 row length): use backend='reference'"
        )
    return B, N


def _triton_interpolate(real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    import triton

    k = _triton_kernels()["interp_kernel"]
    B, N = _row_length(real)
    out = torch.empty_like(real)
    k[(B, triton.cdiv(N, BLOCK))](real, fake, alpha, out, N, BLOCK=BLOCK,
                                  ACC=_tl_acc(real.dtype), **_LAUNCH_OPTS)
    return out


def _triton_norm(g: Tensor) -> Tensor:
    """Per-row L2 norms of g (B, N), in ``acc_dtype(g.dtype)``."""
    ks = _triton_kernels()
    B, N = _row_length(g)
    acc = acc_dtype(g.dtype)
    norm = torch.empty(B, dtype=acc, device=g.device)
    S, chunk = norm_split(B, N)
    if S == 1:
        ks["norm_kernel"][(B, 1)](g, norm, N, chunk, BLOCK=BLOCK, ACC=_tl_acc(g.dtype),
                                  SPLIT=False, **_LAUNCH_OPTS)
        return norm
    part = torch.empty(B, S, dtype=acc, device=g.device)
    ks["norm_kernel"][(B, S)](g, part, N, chunk, BLOCK=BLOCK, ACC=_tl_acc(g.dtype), SPLIT=True,
                              **_LAUNCH_OPTS)
    ks["norm_finish_kernel"][(B,)](part, norm, S, SBLOCK=MAX_SPLITS, ACC=_tl_acc(g.dtype),
                                   **_LAUNCH_OPTS)
    return norm


def _triton_scale_rows(g: Tensor, coef: Tensor) -> Tensor:
    import triton

    k = _triton_kernels()["backward_kernel"]
    B, N = _row_length(g)
    out = torch.empty_like(g)
    k[(B, triton.cdiv(N, BLOCK))](g, coef.contiguous(), out, N, BLOCK=BLOCK,
                                  ACC=_tl_acc(g.dtype), **_LAUNCH_OPTS)
    return out


# --------------------------------------------------------------------------------------------
# plain PyTorch: the "reference" backend, and the form the static (compiled) step traces
# --------------------------------------------------------------------------------------------
def plain_interpolate(real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """x_hat = alpha * real + (1 - alpha) * fake, alpha of shape (B,) broadcast per sample."""
    a = alpha.reshape(-1, *([1] * (real.dim() - 1)))
    return a * real + (1 - a) * fake


def safe_norm(g: Tensor) -> Tensor:
    """Per-sample L2 norm over all non-batch axes with d||g||/dg := 0 where g = 0.

    The double ``where`` keeps sqrt's derivative (1 / (2 sqrt(s)) = inf at s = 0) out of the graph
    at zero rows: the inner where feeds sqrt a 1 there, the outer selects 0. Differentiable to any
    order (torch's ``norm`` backward has the same convention, but only to first order); equal to
    ``g.flatten(1).norm(dim=1)`` in value.
    """
    s = g.reshape(g.shape[0], -1).square().sum(1)
    pos = s > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, s, torch.ones_like(s))), torch.zeros_like(s))


# --------------------------------------------------------------------------------------------
# O(B) epilogues shared by the Triton and reference paths (the C++ op does them in-kernel)
# --------------------------------------------------------------------------------------------
def _gap(norm: Tensor, one_sided: bool) -> Tensor:
    gap = norm - 1
    return gap.clamp(min=0) if one_sided else gap


def _penalty_from_norm(norm: Tensor, lam: float, one_sided: bool) -> Tensor:
    return lam * _gap(norm, one_sided).square().mean()


def _backward_coef(gout: Tensor, norm: Tensor, lam: float, one_sided: bool) -> Tensor:
    """Per-sample factor c_b with dP/dg_b = c_b * g_b; 0 where the norm is 0 (the convention)."""
    B = norm.shape[0]
    pos = norm > 0
    inv = torch.where(pos, 1.0 / torch.where(pos, norm, torch.ones_like(norm)), 0.0)
    # gout in the norm's dtype first: a half-precision upstream gradient is not rounded again
    return gout.to(norm.dtype) * (2.0 * lam / B) * _gap(norm, one_sided) * inv


def _ref_norm_penalty(g: Tensor, lam: float, one_sided: bool) -> Tensor:
    """Differentiable plain-PyTorch version (any order), same zero-gradient convention."""
    return _penalty_from_norm(safe_norm(g), lam, one_sided)


# --------------------------------------------------------------------------------------------
# autograd.Functions
# --------------------------------------------------------------------------------------------
class _Interpolate(Function):
    @staticmethod
    def forward(real: Tensor, fake: Tensor, alpha: Tensor, backend: str) -> Tensor:
        if backend == "cpp":
            return _cpp_ops().gradient_penalty_interpolate(real, fake, alpha)
        if backend == "triton":
            return _triton_interpolate(real, fake, alpha)
        return plain_interpolate(real, fake, alpha)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        real, fake, alpha, _ = inputs
        ctx.save_for_backward(real, fake, alpha)

    @staticmethod
    def backward(ctx, go: Tensor):
        # Not on the hot path (the penalty detaches real and fake, as Alg. 1 does): plain torch.
        real, fake, alpha = ctx.saved_tensors
        a = alpha[:, None]
        gr = go * a if ctx.needs_input_grad[0] else None
        gf = go * (1 - a) if ctx.needs_input_grad[1] else None
        ga = (go * (real - fake)).sum(1) if ctx.needs_input_grad[2] else None
        return gr, gf, ga, None


class _NormPenalty(Function):
    @staticmethod
    def forward(g: Tensor, lam: float, one_sided: bool, backend: str):
        if backend == "cpp":
            penalty, norm = _cpp_ops().gradient_penalty_forward(g, lam, one_sided)
            return penalty, norm
        if backend == "triton":
            norm = _triton_norm(g)
        else:
            # the textbook's own op (its backward also returns 0 at a zero norm)
            norm = torch.linalg.vector_norm(g, dim=1)
        return _penalty_from_norm(norm, lam, one_sided).to(g.dtype), norm

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        g, lam, one_sided, backend = inputs
        _, norm = output
        ctx.mark_non_differentiable(norm)
        ctx.save_for_backward(g, norm)
        ctx.lam, ctx.one_sided, ctx.backend = lam, one_sided, backend

    @staticmethod
    def backward(ctx, gout: Tensor, _gnorm):
        g, norm = ctx.saved_tensors
        lam, one_sided = ctx.lam, ctx.one_sided
        if torch.is_grad_enabled():
            # create_graph=True (third order w.r.t. the critic; gradgradcheck): a differentiable
            # formula. The fused kernel below is the ordinary path.
            with torch.enable_grad():
                gd = g.detach().requires_grad_(True) if not g.requires_grad else g
                p = _ref_norm_penalty(gd, lam, one_sided)
                (dg,) = torch.autograd.grad(p, gd, gout, create_graph=True)
            return dg, None, None, None
        if ctx.backend == "cpp":
            dg = _cpp_ops().gradient_penalty_backward(gout, g, norm, lam, one_sided)
        else:
            coef = _backward_coef(gout, norm, lam, one_sided)
            if ctx.backend == "triton":
                dg = _triton_scale_rows(g, coef)
            else:
                dg = coef[:, None].to(g.dtype) * g
        return dg, None, None, None


def _kernel_backend(backend: str, t: Tensor) -> str:
    # The C++ kernels are written for fp32/fp64 (the gradient w.r.t. an fp32 x_hat is fp32 even
    # under autocast); other dtypes (fp16/bf16 data) take the plain-PyTorch path.
    if backend == "cpp" and t.dtype not in (torch.float32, torch.float64):
        return "reference"
    return backend


def _channels_last(t: Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _rows(t: Tensor) -> Tensor:
    """(B, N) rows of the per-sample elements, without a copy for NCHW- or NHWC-contiguous t.

    Every op here is per sample and independent of the element order inside a sample, so a
    channels_last tensor (a user's channels_last critic) is used through its NHWC view, which is
    contiguous, rather than copied to NCHW: a copy would cost 8 B/elem on every call.
    """
    if _channels_last(t):
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
    return t.reshape(t.shape[0], -1).contiguous()


def interpolate(real: Tensor, fake: Tensor, alpha: Tensor, backend: str = "reference") -> Tensor:
    """x_hat = alpha[b] * real[b] + (1 - alpha[b]) * fake[b]; real/fake (B, ...), alpha (B,).

    Differentiable w.r.t. all three inputs. ``backend`` is a resolved backend name. The result
    keeps the inputs' memory format when both are channels_last.
    """
    shape = real.shape
    B = shape[0]
    backend = _kernel_backend(backend, real)
    nhwc = _channels_last(real) and _channels_last(fake)
    r, f = (_rows(real), _rows(fake)) if nhwc else (real.reshape(B, -1).contiguous(), fake.reshape(B, -1).contiguous())
    out = _Interpolate.apply(r, f, alpha.reshape(B).contiguous(), backend)
    if nhwc:
        b, c, h, w = shape
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)
    return out.reshape(shape)


def norm_penalty(
    grad: Tensor, lam: float, one_sided: bool = False, backend: str = "reference"
) -> Tensor:
    """lam * mean_b (||grad_b|| - 1)^2 (one-sided: clamped at 0), norm over all non-batch axes.

    Returns the scalar penalty; differentiable w.r.t. ``grad`` to any order.
    """
    backend = _kernel_backend(backend, grad)
    penalty, _ = _NormPenalty.apply(_rows(grad), float(lam), one_sided, backend)
    return penalty
