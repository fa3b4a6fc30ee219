"""Fused clipped RMSProp: the WGAN critic update in one pass over memory.

WGAN (Arjovsky et al. 2017, "Wasserstein GAN", Algorithm 1) updates the critic with RMSProp and
then clips every weight to ``[-c, c]``. Per element, in torch.optim.RMSprop's rounding order (see
``csrc/clipped_rmsprop.h`` for the line-by-line correspondence)::

    g  <- g + wd * p                                   (weight_decay != 0)
    v  <- alpha * v + (1 - alpha) * g^2
    ga <- lerp(ga, g, 1 - alpha);  d = sqrt(v - ga^2) + eps      (centered)
                                   d = sqrt(v) + eps             (otherwise)
    b  <- mom * b + g / d;         p <- p - lr * b               (momentum > 0)
                                   p <- p - lr * g / d           (otherwise)
    p  <- clamp(p, -c, c)

Memory: this reads p, g, v and writes p, v (20 bytes per fp32 parameter; 28 / 36 with the centred
average and the momentum buffer); ``RMSprop(foreach=True)`` + per-tensor ``clamp_`` moves ~60.

Why a pointer table and not a flat buffer
-----------------------------------------
A flat buffer (parameters re-pointed as views into one allocation) needs the gradients in a flat
buffer too. Autograd allocates a fresh ``.grad`` per backward after ``zero_grad(set_to_none=True)``
(the default the trainer keeps), so the gradients would have to be gathered into it every step:
+8 bytes per element, 40% more traffic than the 20 the step needs, and the module's parameters
would be silently re-pointed behind the user's back. A table of pointers costs neither: each call
takes the tensor lists as they are, and

* C++ (CPU): cuts every tensor into 16K-element chunks and runs one ``at::parallel_for`` over the
  chunk table: one parallel region per group, whatever the tensor count;
* Triton (CUDA, or the CPU under ``TRITON_INTERPRET=1``): one launch whose grid is the total block
  count; each program reads its (tensor, block) pair from a block table and the tensor's five base
  addresses from an address table (int64, cast to pointers in the kernel). The block table depends
  only on the tensor sizes and is built once; the address table (5 x n int64) is rebuilt only when
  a pointer changes (fresh ``.grad`` allocations) and copied host-to-device from pinned memory
  without a sync. So the step is one launch plus at most one small copy. The table hides the
  alignment of each tensor from the compiler, so the launcher checks it (torch's allocator
  returns 16-byte aligned storage; a view at an odd offset is not) and, when every address is a
  multiple of 16 bytes, specializes the kernel with ``ALIGNED``: the pointers are then marked
  ``tl.multiple_of(ptr, 16)`` and every full block, read and written without a mask, moves
  128-bit vectors (``ld.global.v4`` / ``st.global.v4``, checked in the PTX by
  tests/test_triton_compile.py); the last block of each tensor is masked.

FMA contraction policy (Triton): the kernel is launched with ``enable_fp_fusion=False``, so no
``a*b + c`` is fused: each product and each sum is rounded on its own, as in the interpreter the
tests run and in the C++ kernel (no FMA without -march flags). With sqrt and division correctly
rounded (sqrt_rn, div_rn) the kernel then gives on a GPU, by construction (no GPU has run it
yet), bitwise what the interpreter tests verify. torch's own CUDA RMSprop is built by nvcc with
contraction on and its AVX-512 CPU kernels use fmadd, so equality with *torch* is not claimed
bitwise: the tests hold every backend to the rule (at most twice torch32's error against fp64
plus one fp32 epsilon at the tensor's scale), which absorbs one FMA's difference (at most
u*|a*b| per contracted pair, of the order of torch's own rounding).

Both are registered with ``torch.library`` (``fastwgan::clipped_rmsprop_`` from C++,
``fastwgan::clipped_rmsprop_triton_`` here) with mutation annotations and fake implementations,
so ``torch.compile(fullgraph=True)`` keeps an optimizer step whole. Each op also adds 1 to every
``state["step"]`` tensor, as torch.optim.RMSprop does, so the state stays loadable by torch.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any

import torch
from torch.optim.rmsprop import rmsprop as _torch_rmsprop

from fastwgan import backend

Tensors = list[torch.Tensor]

# 1024 fp32 elements = 4 KiB per stream per program: enough in flight per SM on a GPU for a
# streaming kernel; and under the interpreter (which runs programs one by one) larger blocks mean
# fewer Python-level iterations.
TRITON_BLOCK = 1024

# --------------------------------------------------------------------------------------------
# Triton kernel
# --------------------------------------------------------------------------------------------
def define_triton_kernels() -> dict:
    """Define the Triton kernel (uncached; ``triton_kernel`` caches it for the launcher).

    TRITON_INTERPRET is read when a kernel is defined, so the launcher's kernel follows the
    session's mode; ``tests/test_triton_compile.py`` calls this with the variable unset to get
    the compilable JITFunction (compiled there for sm_80/sm_90 in every specialization).
    """
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["T", "NB"],
                do_not_specialize_on_alignment=["addr_ptr", "numel_ptr", "blk_ptr"])
    def clipped_rmsprop_kernel(
        addr_ptr,  # int64 [5, T]: base addresses of p, g, v, grad_avg, momentum_buffer
        numel_ptr,  # int64 [T]
        blk_ptr,  # int64 [2, NB]: tensor index, block index inside that tensor
        T,
        NB,
        lr_neg,
        alpha,
        one_minus_alpha,
        eps,
        weight_decay,
        momentum,
        lerp_w_compl,
        clip,
        CENTERED: tl.constexpr,
        MOMENTUM: tl.constexpr,
        WEIGHT_DECAY: tl.constexpr,
        LERP_SMALL: tl.constexpr,
        ALIGNED: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        # T and NB are not specialized (no recompilation when the model changes); the three
        # int64 tables are read by scalar loads, so their alignment does not matter.
        pid = tl.program_id(0)
        t = tl.load(blk_ptr + pid)
        bi = tl.load(blk_ptr + NB + pid)
        n = tl.load(numel_ptr + t)
        fp = tl.pointer_type(tl.float32)
        p_base = tl.load(addr_ptr + t).to(fp)
        g_base = tl.load(addr_ptr + T + t).to(fp)
        v_base = tl.load(addr_ptr + 2 * T + t).to(fp)
        ga_base = tl.load(addr_ptr + 3 * T + t).to(fp)  # 0 (unused) unless CENTERED
        b_base = tl.load(addr_ptr + 4 * T + t).to(fp)  # 0 (unused) unless MOMENTUM
        if ALIGNED:
            # every address of this launch is a multiple of 16 bytes (checked by the launcher);
            # the int64 table hides that from the compiler's alignment analysis
            p_base = tl.multiple_of(p_base, 16)
            g_base = tl.multiple_of(g_base, 16)
            v_base = tl.multiple_of(v_base, 16)
            ga_base = tl.multiple_of(ga_base, 16)
            b_base = tl.multiple_of(b_base, 16)
        offs = bi * BLOCK + tl.arange(0, BLOCK)  # int64: tensors over 2^31 elements are fine
        mask = offs < n
        # All blocks but a tensor's last are full: read and written without a mask, so that
        # (ALIGNED) each thread moves 128-bit vectors. Both branches load the same values.
        full = (bi + 1) * BLOCK <= n
        if full:
            p = tl.load(p_base + offs)
            g = tl.load(g_base + offs)
            v = tl.load(v_base + offs)
        else:
            p = tl.load(p_base + offs, mask=mask, other=0.0)
            g = tl.load(g_base + offs, mask=mask, other=0.0)
            v = tl.load(v_base + offs, mask=mask, other=0.0)
        # Same order of roundings as csrc/clipped_rmsprop.h (and torch.optim.RMSprop); sqrt and
        # division round to nearest (sqrt_rn / div_rn), as torch's CUDA and CPU kernels do; no
        # a*b+c is contracted into an FMA (the launcher passes enable_fp_fusion=False).
        if WEIGHT_DECAY:
            g = g + weight_decay * p
        v = v * alpha
        v = v + (one_minus_alpha * g) * g
        if CENTERED:
            if full:
                ga = tl.load(ga_base + offs)
            else:
                ga = tl.load(ga_base + offs, mask=mask, other=0.0)
            if LERP_SMALL:
                ga = ga + one_minus_alpha * (g - ga)
            else:
                ga = g - (g - ga) * lerp_w_compl
            if full:
                tl.store(ga_base + offs, ga)
            else:
                tl.store(ga_base + offs, ga, mask=mask)
            d = tl.sqrt_rn(v + (-ga) * ga)
        else:
            d = tl.sqrt_rn(v)
        d = d + eps
        if MOMENTUM:
            if full:
                b = tl.load(b_base + offs)
            else:
                b = tl.load(b_base + offs, mask=mask, other=0.0)
            b = b * momentum
            b = b + tl.div_rn(g, d)
            if full:
                tl.store(b_base + offs, b)
            else:
                tl.store(b_base + offs, b, mask=mask)
            p = p + lr_neg * b
        else:
            p = p + tl.div_rn(lr_neg * g, d)
        # NaN-keeping clamp, like torch.clamp_: comparisons with NaN are false.
        p = tl.where(p < -clip, -clip, p)
        p = tl.where(clip < p, clip, p)
        if full:
            tl.store(p_base + offs, p)
            tl.store(v_base + offs, v)
        else:
            tl.store(p_base + offs, p, mask=mask)
            tl.store(v_base + offs, v, mask=mask)

    return {"clipped_rmsprop_kernel": clipped_rmsprop_kernel}


@functools.lru_cache(maxsize=None)
def triton_kernel() -> Any:
    """The Triton kernel, defined on first use: triton is imported only when a Triton step runs,
    and TRITON_INTERPRET is read then (the interpreter is chosen when a kernel is defined)."""
    if not backend.triton_available():
        raise RuntimeError(
            "the Triton clipped RMSProp kernel needs triton: `pip install triton==3.7.1`"
        )
    return define_triton_kernels()["clipped_rmsprop_kernel"]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=32)
def _block_table(numels: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """int64 [2, NB]: for each program, its tensor index and its block index in that tensor."""
    nblocks = torch.tensor([_cdiv(n, TRITON_BLOCK) for n in numels], dtype=torch.int64)
    nb = int(nblocks.sum())
    tensor_of = torch.repeat_interleave(torch.arange(len(numels)), nblocks)
    first = torch.cumsum(nblocks, 0) - nblocks
    block_in = torch.arange(nb) - torch.repeat_interleave(first, nblocks)
    return torch.stack([tensor_of, block_in]).to(device)


class _AddressCache:
    """The last few address tables, keyed by the pointers they hold (so a step whose gradients
    were reallocated at the same addresses, the common case with a caching allocator, copies
    nothing)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.tables: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, addrs: tuple[int, ...], device: torch.device) -> torch.Tensor:
        key = (device, addrs)
        hit = self.tables.get(key)
        if hit is not None:
            self.tables.move_to_end(key)
            return hit
        host = torch.tensor(addrs, dtype=torch.int64)
        if device.type == "cuda":
            # pinned + non_blocking: no host sync; the caching host allocator keeps the pinned
            # block alive until the copy has run.
            table = host.pin_memory().to(device, non_blocking=True)
        else:
            table = host.to(device)
        self.tables[key] = table
        if len(self.tables) > self.size:
            self.tables.popitem(last=False)
        return table


_addresses = _AddressCache()


def _launch_triton(
    params: Tensors,
    grads: Tensors,
    square_avgs: Tensors,
    grad_avgs: Tensors,
    momentum_buffers: Tensors,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    clip: float,
) -> None:
    kernel = triton_kernel()
    n = len(params)
    if n == 0:
        return
    device = params[0].device
    use_m = momentum > 0
    for i, p in enumerate(params):
        if p.dtype != torch.float32:
            raise TypeError(f"the Triton kernel runs float32 parameters; params[{i}] is {p.dtype}")
        for name, lst, on in (
            ("grads", grads, True),
            ("square_avgs", square_avgs, True),
            ("grad_avgs", grad_avgs, centered),
            ("momentum_buffers", momentum_buffers, use_m),
        ):
            if on:
                x = lst[i]
                if (x.device != device or x.dtype != p.dtype or x.shape != p.shape
                        or x.stride() != p.stride()):
                    raise ValueError(
                        f"{name}[{i}] must be a {p.dtype} tensor on {device} with the shape and "
                        f"strides of params[{i}]"
                    )
        if p.device != device or not dense(p):
            raise ValueError(f"params[{i}] must be dense (no gaps or overlaps) and on {device}")
    zeros = [0] * n
    addrs = tuple(
        [p.data_ptr() for p in params]
        + [g.data_ptr() for g in grads]
        + [v.data_ptr() for v in square_avgs]
        + ([a.data_ptr() for a in grad_avgs] if centered else zeros)
        + ([b.data_ptr() for b in momentum_buffers] if use_m else zeros)
        + [p.numel() for p in params]
    )
    table = _addresses.get(addrs, device)
    blocks = _block_table(tuple(p.numel() for p in params), device)
    nb = blocks.shape[1]
    w = 1.0 - float(alpha)
    # Python floats throughout: an int (momentum=0 from a config) would be specialized by the JIT
    # as an integer argument (1 even as a compile-time constant) and compile another kernel.
    kernel[(nb,)](
        table,
        table[5 * n:],
        blocks,
        n,
        nb,
        -float(lr),
        float(alpha),
        w,
        float(eps),
        float(weight_decay),
        float(momentum),
        1.0 - w,
        float(clip),
        CENTERED=bool(centered),
        MOMENTUM=use_m,
        WEIGHT_DECAY=weight_decay != 0,
        LERP_SMALL=bool(centered) and abs(w) < 0.5,  # only the centred average uses it
        ALIGNED=all(a % 16 == 0 for a in addrs[: 5 * n]),
        BLOCK=TRITON_BLOCK,
        enable_fp_fusion=False,  # FMA policy: module docstring
    )


def plain_clipped_rmsprop_(params: Tensors, grads: Tensors, square_avgs: Tensors, grad_avgs: Tensors,
                           momentum_buffers: Tensors, steps: Tensors, *, lr: float, alpha: float, eps: float,
                           weight_decay: float, momentum: float, centered: bool, clip: float) -> None:
    """The ``"reference"`` backend (plain PyTorch): torch.optim.RMSprop's functional step, its own
    arithmetic untouched, on the given state, then ``p.clamp_(-clip, clip)`` per tensor."""
    _torch_rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, steps, lr=lr, alpha=alpha, eps=eps,
                   weight_decay=weight_decay, momentum=momentum, centered=centered)
    for p in params:
        p.clamp_(-clip, clip)


def dense(t: torch.Tensor) -> bool:
    """True when ``t`` covers its storage span with no gaps or overlaps (any dim order): then
    element i of p, g, v, ... laid out with the same strides sit at the same flat offset."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


_ONE = torch.tensor(1.0)


@torch.library.custom_op(
    "fastwgan::clipped_rmsprop_triton_",
    mutates_args=("params", "square_avgs", "grad_avgs", "momentum_buffers", "steps"),
)
def clipped_rmsprop_triton_(
    params: Tensors,
    grads: Tensors,
    square_avgs: Tensors,
    grad_avgs: Tensors,
    momentum_buffers: Tensors,
    steps: Tensors,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    clip: float,
) -> None:
    """One Triton launch for all of ``params`` (float32, one device), then ``steps += 1``."""
    _launch_triton(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps,
                   weight_decay, momentum, centered, clip)
    if steps:
        if steps[0].device.type == "cpu":
            torch._foreach_add_(steps, _ONE, alpha=1.0)  # one wrapped scalar, as torch does
        else:
            torch._foreach_add_(steps, 1)


@clipped_rmsprop_triton_.register_fake
def _(params, grads, square_avgs, grad_avgs, momentum_buffers, steps, lr, alpha, eps,
      weight_decay, momentum, centered, clip) -> None:
    return None


# --------------------------------------------------------------------------------------------
# C++ kernel (csrc/clipped_rmsprop.cpp): torch.ops.fastwgan.clipped_rmsprop_
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def cpp_op() -> Any:
    """The C++ op, loading (or JIT-building) the extension and registering its fake once."""
    if backend.load_extension("clipped_rmsprop") is None:
        raise RuntimeError(
            "the C++ clipped RMSProp kernel is not built: `pip install --no-build-isolation -e .`"
        )
    op = torch.ops.fastwgan.clipped_rmsprop_

    @torch.library.register_fake("fastwgan::clipped_rmsprop_")
    def _fake(params, grads, square_avgs, grad_avgs, momentum_buffers, steps, lr, alpha, eps,
              weight_decay, momentum, centered, clip) -> None:
        return None

    return op


def triton_op() -> Any:
    return torch.ops.fastwgan.clipped_rmsprop_triton_
