"""Every specialization the Triton launch sites of ``fastwgan.ops`` can produce, and its compilation
for a named GPU with no GPU present (used by tests/test_triton_compile.py and
benchmarks/triton_report.py).

How a launch becomes a compiled kernel (triton 3.7.1, ``runtime/jit.py``): the JIT binds the
arguments, asks ``specialize_impl`` for each one (a tensor gives ``*fp32`` plus ``D`` when its
address is a multiple of 16 bytes; an int gives ``i32``/``i64`` plus ``D`` when divisible by 16, or
becomes the constant 1; a float is ``fp32``) and compiles ``ASTSource(fn, signature, constexprs,
attrs)`` with the launch's options. Here the real launchers run with a recording stand-in for each
kernel, on meta tensors (no memory), over a grid of inputs that reaches every class: each dtype,
aligned and misaligned views, row lengths 1 / a multiple of 16 / other, batch sizes that do and do
not split the norm, every optimizer flag. Each recorded launch is turned into its compile key with
the JIT's own ``specialize_impl``, so a change at a launch site changes what is compiled here.

Rows of 2^31 elements or more (an ``i64`` row length) are refused by the launchers, so they are
not a specialization to cover.

Compilation runs in a child process (``collect``; ``python tests/_triton_specs.py --json PATH``)
with TRITON_INTERPRET unset. It cannot run in a session that set TRITON_INTERPRET=1
(tests/conftest.py): triton.language defines its own helpers (the combine functions of
``tl.sum`` ...) with ``@triton.jit`` when it is first imported, as interpreter functions in that
mode, and the compiler then fails on any reduction; the other way round, importing triton in
compiler mode first breaks the interpreter for the rest of the session. One process per mode.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

TARGETS = {"sm_80": 80, "sm_90": 90}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def kernel_modules() -> dict[str, Any]:
    """fastwgan.ops modules that define Triton kernels (each has ``define_triton_kernels``)."""
    import importlib
    import pkgutil

    import fastwgan.ops as ops

    found = {}
    for info in pkgutil.iter_modules(ops.__path__):
        mod = importlib.import_module(f"fastwgan.ops.{info.name}")
        src = open(mod.__file__).read()
        if "triton.jit" in src:
            found[info.name] = mod
    return found


def jit_decorator_count(mod) -> int:
    """How many ``@triton.jit`` decorators the module's source has (the coverage cross-check)."""
    return len(re.findall(r"^\s*@triton\.jit\b", open(mod.__file__).read(), re.MULTILINE))


def define_all() -> dict[str, Any]:
    """{kernel name: JITFunction} for every module (in the compiling child process)."""
    assert not os.environ.get("TRITON_INTERPRET"), "compile in a process without TRITON_INTERPRET"
    out = {}
    for mod in kernel_modules().values():
        for name, fn in mod.define_triton_kernels().items():
            assert name not in out, f"two kernels named {name}"
            out[name] = fn
    return out


# ------------------------------------------------------------------------------------------------
# recording the launch sites
# ------------------------------------------------------------------------------------------------
class _Recorder:
    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append((self.name, grid, args, kwargs))

        return launch


def _view(shape, dtype, aligned: bool) -> torch.Tensor:
    """A contiguous meta tensor whose address is (not) a multiple of 16 bytes."""
    n = 1
    for s in shape:
        n *= s
    if aligned:
        return torch.empty(shape, dtype=dtype, device="meta")
    return torch.empty(n + 1, dtype=dtype, device="meta")[1:].view(shape)  # +itemsize bytes


def _record_gradient_penalty(log: list) -> None:
    from fastwgan.ops import gradient_penalty as gp

    orig = gp._triton_kernels
    names = ("interp_kernel", "norm_kernel", "norm_finish_kernel", "backward_kernel")
    gp._triton_kernels = lambda: {n: _Recorder(n, log) for n in names}
    try:
        # N: 1, a multiple of 16 with 1 or many blocks, other; B: 1 / 64 / 300 splits a long row
        # into 64, 4 or 1 programs (S a multiple of 16 or not)
        shapes = [(b, n) for b in (1, 64, 300) for n in (1, 17, 48, 4099, 12288, 65536)]
        for dtype in DTYPES:
            acc = gp.acc_dtype(dtype)
            for B, N in shapes:
                for ra in (True, False):
                    for fa in (True, False):
                        gp._triton_interpolate(_view((B, N), dtype, ra), _view((B, N), dtype, fa),
                                               _view((B,), dtype, fa))
                    gp._triton_norm(_view((B, N), dtype, ra))
                    for ca in (True, False):
                        gp._triton_scale_rows(_view((B, N), dtype, ra), _view((B,), acc, ca))
    finally:
        gp._triton_kernels = orig


def _record_clipped_rmsprop(log: list) -> None:
    from fastwgan.ops import clipped_rmsprop as cr

    orig = cr.triton_kernel
    cr.triton_kernel = lambda: _Recorder("clipped_rmsprop_kernel", log)
    try:
        for centered in (False, True):
            for momentum in (0.0, 0.9):
                for wd in (0.0, 0.01):
                    for alpha in (0.99, 0.2):  # |1 - alpha| < 0.5 or not: the two lerp forms
                        for aligned in (True, False):
                            for n_tensors in (1, 2, 3):  # T = 1 (constant 1 if specialized)
                                ps = [_view((5 + i,), torch.float32, aligned or i > 0)
                                      for i in range(n_tensors)]
                                like = [torch.empty_like(p) for p in ps]
                                cr._launch_triton(ps, like, like, like if centered else [],
                                                  like if momentum else [], 1e-3, alpha, 1e-8,
                                                  wd, momentum, centered, 0.01)
    finally:
        cr.triton_kernel = orig


@dataclass(frozen=True)
class Spec:
    """One compile key: kernel, signature, constexprs, attrs (16-byte divisibility), options."""

    kernel: str
    signature: tuple  # ((arg name, type), ...) with "constexpr" for compile-time constants
    constexprs: tuple  # ((arg name, value), ...)
    divisible: tuple  # arg names specialized as multiples of 16 (bytes for pointers)
    options: tuple  # ((name, value), ...)

    @property
    def id(self) -> str:
        sig = ",".join(f"{n}:{t}{'/16' if n in self.divisible else ''}"
                       for n, t in self.signature if t != "constexpr")
        const = ",".join(f"{n}={_short(v)}" for n, v in self.constexprs)
        return f"{self.kernel}({sig}|{const})"


def _short(v) -> str:
    return str(v).replace("triton.language.", "").replace("tl.", "")


def _to_spec(jit, name: str, args: tuple, kwargs: dict) -> Spec:
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    bound = dict(zip(jit.arg_names, args))
    bound.update({k: v for k, v in kwargs.items() if k in jit.arg_names})
    options = tuple(sorted((k, v) for k, v in kwargs.items() if k not in jit.arg_names))
    missing = [a for a in jit.arg_names if a not in bound]
    assert not missing, f"{name}: launch without {missing}"
    sig, const, div = [], [], []
    for p in jit.params:
        v = bound[p.name]
        if p.is_constexpr:
            sig.append((p.name, "constexpr"))
            const.append((p.name, v))
            continue
        # as runtime/jit.py's binder does (the backend's get_*_specialization are the base ones)
        ty, attr = native_specialize_impl(BaseBackend, v, p.is_const, not p.do_not_specialize,
                                          not p.do_not_specialize_on_alignment)
        if ty == "constexpr":  # an int equal to 1
            sig.append((p.name, "constexpr"))
            const.append((p.name, attr))
            continue
        sig.append((p.name, ty))
        if attr and "D" in attr:
            div.append(p.name)
    return Spec(name, tuple(sig), tuple(const), tuple(div), options)


def enumerate_specs(kernels: dict[str, Any] | None = None) -> list[Spec]:
    """Every distinct compile key the launch sites produce over the input grid (sorted)."""
    kernels = kernels or define_all()
    log: list = []
    _record_gradient_penalty(log)
    _record_clipped_rmsprop(log)
    specs = {_to_spec(kernels[n], n, a, kw) for n, _, a, kw in log}
    return sorted(specs, key=lambda s: s.id)


# ------------------------------------------------------------------------------------------------
# compiling one specialization
# ------------------------------------------------------------------------------------------------
_GLOBAL_ACCESS = re.compile(r"\b(ld|st)\.global(?:\.[a-z]+)*?(?:\.(v[248]))?\.([bfsu])(\d+)\b")


def global_access_bits(ptx: str) -> dict[str, list[int]]:
    """Bit widths of the global loads and stores in ``ptx`` ({"ld": [...], "st": [...]},
    distinct, sorted): ``ld.global.v4.b32`` is 128 bits, ``ld.global.b16`` 16."""
    out: dict[str, set[int]] = {"ld": set(), "st": set()}
    for op, vec, _, bits in _GLOBAL_ACCESS.findall(ptx):
        out[op].add(int(bits) * (int(vec[1]) if vec else 1))
    return {k: sorted(v) for k, v in out.items()}


def _resource_usage(cubin: bytes, name: str) -> dict[str, int]:
    """REG / STACK / SHARED / LOCAL of the kernel from ``cuobjdump --dump-resource-usage``
    (the cubin's own record of what ptxas allocated; spills would need a stack frame)."""
    from triton.backends.nvidia.compiler import get_ptxas

    tool = os.path.join(os.path.dirname(get_ptxas(90).path), "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                             text=True, check=True).stdout
    m = re.search(rf"Function {re.escape(name)}:\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) "
                  r"LOCAL:(\d+)", out)
    assert m, f"no resource usage for {name} in:\n{out}"
    return dict(zip(("registers", "stack_bytes", "shared_bytes", "local_bytes"),
                    map(int, m.groups())))


def compile_spec(jit, spec: Spec, arch: int) -> dict:
    """Compile ``spec`` for sm_<arch> (no GPU needed) and summarise it."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    attrs = {(jit.arg_names.index(n),): [["tt.divisibility", 16]] for n in spec.divisible}
    src = ASTSource(jit, dict(spec.signature), dict(spec.constexprs), attrs)
    k = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(spec.options))
    ptx = k.asm["ptx"]
    res = _resource_usage(k.asm["cubin"], k.metadata.name)
    res["dynamic_shared_bytes"] = k.metadata.shared
    res["num_warps"] = k.metadata.num_warps
    res.update({f"{op}_global_bits": bits for op, bits in global_access_bits(ptx).items()})
    res["fma"] = bool(re.search(r"\bfma\.rn\.f(32|64)\b", ptx))
    res["sqrt_approx"] = "sqrt.approx" in ptx
    res["ftz"] = ".ftz." in ptx
    res["ld_v4_b32"] = "ld.global.v4.b32" in ptx
    res["st_v4_b32"] = "st.global.v4.b32" in ptx
    return res


# ------------------------------------------------------------------------------------------------
# the child process and its caller
# ------------------------------------------------------------------------------------------------
_WORK: tuple[dict[str, Any], list[Spec]] | None = None  # (kernels, specs), set before the pool forks


def _compile_one(job: tuple[int, int]) -> dict:
    """Compile specs[i] for sm_<arch> in a pool worker; a failure is reported, not raised."""
    kernels, specs = _WORK
    i, arch = job
    try:
        return {**compile_spec(kernels[specs[i].kernel], specs[i], arch), "ok": True}
    except Exception as e:  # noqa: BLE001 -- reported per specialization
        return {"ok": False, "error": f"{type(e).__name__}: {str(e)[-2000:]}"}


def _compile_all(archs: list[int]) -> dict:
    """Everything the test and the report need, as JSON-ready data."""
    import dataclasses
    import multiprocessing

    import triton

    global _WORK
    kernels = define_all()
    specs = enumerate_specs(kernels)
    # Each compilation is single-threaded (Triton's passes, then ptxas and cuobjdump), so the
    # jobs are spread over the machine's cores: forked workers inherit the kernels and specs
    _WORK = (kernels, specs)
    jobs = [(i, arch) for i in range(len(specs)) for arch in archs]
    workers = max(1, min(len(os.sched_getaffinity(0)), 8))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        done = dict(zip(jobs, pool.map(_compile_one, jobs, chunksize=4), strict=True))
    rows = []
    for i, spec in enumerate(specs):
        rows.append({"id": spec.id, "kernel": spec.kernel, "signature": dict(spec.signature),
                     "constexprs": {n: _short(v) for n, v in spec.constexprs},
                     "divisible": list(spec.divisible), "options": dict(spec.options),
                     "targets": {f"sm_{arch}": done[(i, arch)] for arch in archs}})
    # negative control for the spill check: a register cap that forces ptxas to spill
    spec = next(s for s in specs if s.kernel == "clipped_rmsprop_kernel"
                and dict(s.constexprs).get("CENTERED") and dict(s.constexprs).get("MOMENTUM"))
    capped = dataclasses.replace(spec, options=spec.options + (("maxnreg", 24),))
    control = compile_spec(kernels[spec.kernel], capped, 90)
    mods = {m: sorted(mod.define_triton_kernels()) for m, mod in kernel_modules().items()}
    return {"triton_version": triton.__version__, "modules": mods, "specs": rows,
            "spill_control": {"id": capped.id, "maxnreg": 24, **control}}


def collect(json_path: str | None = None, archs=(80, 90), timeout: float = 1200) -> dict:
    """Run the compiling child (TRITON_INTERPRET removed from its environment), return its
    JSON (also written to ``json_path`` when given)."""
    import json
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    with tempfile.TemporaryDirectory() as d:
        out = json_path or os.path.join(d, "specs.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--json", out,
               "--archs", ",".join(map(str, archs))]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"compiling child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        with open(out) as f:
            return json.load(f)


def main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--archs", default="80,90", help="compute capabilities, e.g. 80,90")
    args = ap.parse_args()
    os.environ.pop("TRITON_INTERPRET", None)  # before anything imports triton
    data = _compile_all([int(a) for a in args.archs.split(",")])
    with open(args.json, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
