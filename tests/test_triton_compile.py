"""Every Triton kernel of fastwgan.ops compiled for sm_80 and sm_90, with no GPU.

The interpreter tests (TRITON_INTERPRET=1) prove the kernels' arithmetic but not that the real
compiler accepts them, nor how they touch memory. Triton compiles for a named target without a
driver (``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))``; the ptxas in the
wheel builds the cubin), so here every specialization the launch sites can produce
(tests/_triton_specs.py: dtypes, 16-byte alignment, row-length classes, flags) is compiled for
both targets and held to:

* it compiles (fp16/bf16 inputs included);
* no register spills: the cubin's stack frame and local memory are 0 bytes (``cuobjdump``'s
  record of ptxas's allocation; a spill needs a stack frame, and a register cap that forces
  spills is shown to be detected);
* the numeric policy of the module docstrings: no ``sqrt.approx`` (square roots round to
  nearest), no flush-to-zero, no FMA contraction (``enable_fp_fusion=False``);
* the clipped-RMSProp kernel moves 128-bit vectors (``ld.global.v4`` / ``st.global.v4``)
  whenever its launcher found every address 16-byte aligned, and the gradient-penalty kernels do
  on aligned rows whose length is a multiple of 16;
* every ``@triton.jit`` of fastwgan.ops is covered, with the expected number of specializations.

All compilations run once per session in one child process (a module-scoped fixture), which spreads
its 280 single-threaded compilations over the machine's cores (tests/_triton_specs.py).
"""
from __future__ import annotations

import os

import pytest

pytest.importorskip("triton")

import _triton_specs as S  # noqa: E402

ARCHS = list(S.TARGETS)  # "sm_80", "sm_90"


@pytest.fixture(scope="module")
def compiled() -> dict:
    """All specializations for both targets, compiled once per session in a child process
    (TRITON_INTERPRET unset there; see tests/_triton_specs.py for why not in this process)."""
    return S.collect(archs=tuple(S.TARGETS.values()))


@pytest.fixture(scope="module")
def specs(compiled) -> list[dict]:
    return compiled["specs"]


# Specializations per kernel, from the classes the launch sites produce (tests/_triton_specs.py):
#   dtypes 4 (fp32, fp64, fp16, bf16); a data pointer 16-byte aligned or not (2); row length N
#   = 1 (a constant), a multiple of 16, other (3). Output buffers are fresh allocations
#   (aligned); alpha / coef / the optimizer's int64 tables are scalar loads, not specialized.
EXPECTED = {
    "interp_kernel": 4 * 2 * 2 * 3,  # real, fake alignment
    "norm_kernel": 4 * 2 * (1 + 2 * 2),  # N = 1 is never split; else SPLIT on/off
    "norm_finish_kernel": 2 * 2,  # fp32/fp64 partial sums; S a multiple of 16 or not
    "backward_kernel": 4 * 2 * 3,
    # centered (with its two lerp forms) or not, momentum, weight decay, ALIGNED
    "clipped_rmsprop_kernel": (2 + 1) * 2 * 2 * 2,
}


def test_every_kernel_is_covered(compiled, specs):
    """Each module's @triton.jit functions are all returned by its define_triton_kernels, each
    kernel has a row in EXPECTED, and the launch-site grid reached every class of each."""
    mods = S.kernel_modules()
    assert {"gradient_penalty", "clipped_rmsprop"} <= set(mods) == set(compiled["modules"])
    for m, mod in mods.items():
        names = compiled["modules"][m]
        assert S.jit_decorator_count(mod) == len(names), (
            f"fastwgan.ops.{m} has {S.jit_decorator_count(mod)} @triton.jit functions but "
            f"define_triton_kernels returns {names}: return every kernel (and add its launches "
            "to tests/_triton_specs.py)"
        )
    kernels = {k for names in compiled["modules"].values() for k in names}
    assert kernels == set(EXPECTED), "a kernel without an EXPECTED count (or a stale one)"
    counts = {k: sum(s["kernel"] == k for s in specs) for k in kernels}
    assert counts == EXPECTED
    n = sum(len(s["targets"]) for s in specs)
    assert n == len(specs) * len(ARCHS)
    print(f"\n{len(specs)} specializations x {len(ARCHS)} targets = {n} compilations")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kernel", sorted(EXPECTED))
def test_compiles_without_spills_or_approximations(specs, kernel, arch):
    bad = []
    for spec in (s for s in specs if s["kernel"] == kernel):
        r = spec["targets"][arch]
        if not r["ok"]:
            bad.append(f"{spec['id']}: {r['error']}")
            continue
        problems = [
            f"stack frame {r['stack_bytes']} B (spills)" if r["stack_bytes"] else "",
            f"local memory {r['local_bytes']} B" if r["local_bytes"] else "",
            "sqrt.approx" if r["sqrt_approx"] else "",
            "flush-to-zero" if r["ftz"] else "",
            "FMA contraction" if r["fma"] else "",
        ]
        if any(problems):
            bad.append(f"{spec['id']}: {', '.join(p for p in problems if p)}")
    assert not bad, f"{arch}:\n" + "\n".join(bad)


@pytest.mark.parametrize("arch", ARCHS)
def test_clipped_rmsprop_moves_128_bit_vectors(specs, arch):
    """ALIGNED launches load and store 128-bit vectors; the unaligned ones (negative control:
    same code without the alignment hints) do not, so the check can fail."""
    seen = {True: 0, False: 0}
    for spec in (s for s in specs if s["kernel"] == "clipped_rmsprop_kernel"):
        r = spec["targets"][arch]
        aligned = spec["constexprs"]["ALIGNED"] == "True"
        seen[aligned] += 1
        vec = (r["ld_v4_b32"], r["st_v4_b32"])
        assert vec == (aligned, aligned), f"{arch} {spec['id']}: v4 (ld, st) = {vec}"
    assert seen[True] and seen[False]


@pytest.mark.parametrize("arch", ARCHS)
def test_penalty_kernels_vectorize_aligned_rows(specs, arch):
    """Rows whose start is 16-byte aligned (aligned base, N a multiple of 16) are read in
    128-bit vectors by the streaming kernels; with nothing known aligned they are not."""
    checked = {True: 0, False: 0}
    for spec in specs:
        if spec["kernel"] not in ("interp_kernel", "norm_kernel", "backward_kernel"):
            continue
        rows = {n for n, t in spec["signature"].items()  # the streamed inputs
                if t.startswith("*") and n not in ("alpha_ptr", "coef_ptr", "out_ptr")}
        div = set(spec["divisible"])
        bits = spec["targets"][arch]["ld_global_bits"]
        if rows <= div and "N" in div:
            assert 128 in bits, f"{arch} {spec['id']}: {bits}"
            checked[True] += 1
        elif not rows & div and "N" not in div:  # negative control
            assert 128 not in bits, f"{arch} {spec['id']}: {bits}"
            checked[False] += 1
    assert checked[True] and checked[False]


def test_spill_check_detects_spills(compiled):
    """Negative control: capping the clipped-RMSProp kernel at 24 registers forces ptxas to
    spill, and the stack-frame check used above sees it."""
    r = compiled["spill_control"]
    assert r["registers"] <= 24 and r["stack_bytes"] > 0, r


def test_norm_grid_fills_an_h100():
    """Batch 64 of 3x64x64 gradients: the split norm launches at least 132 programs (the SMs
    of an H100), where one program per sample gave 64."""
    from fastwgan.ops.gradient_penalty import BLOCK, norm_split

    s, chunk = norm_split(64, 3 * 64 * 64)
    assert 64 * s >= 132 and chunk % BLOCK == 0 and (s - 1) * chunk < 3 * 64 * 64 <= s * chunk
    for B, N in [(1, 1), (1, 10**6), (7, 5000), (256, 3 * 32 * 32), (4096, 2)]:
        s, c = norm_split(B, N)
        assert 1 <= s and (s - 1) * c < max(N, 1) <= s * c  # every element in exactly one chunk


def test_this_session_stays_interpreted(compiled):
    """The compilations ran in a child: this session's kernels are still interpreted (the CPU
    tests depend on it)."""
    from fastwgan.ops import gradient_penalty as gp

    if os.environ.get("TRITON_INTERPRET") == "1":
        assert type(gp._triton_kernels()["norm_kernel"]).__name__ == "InterpretedFunction"
