"""Fused clipped RMSProp vs the plain PyTorch ways, on the CPU (and Triton where CUDA is present).

    pytest benchmarks/test_clipped_rmsprop.py --benchmark-only

Contenders, each one WGAN critic update (RMSProp step + clip to [-c, c]) on the same sizes:
  * ``fused``            ClippedRMSprop(backend="cpp"): one pass, 20 bytes per fp32 parameter
  * ``foreach_clamp``    torch.optim.RMSprop(foreach=True).step() + per-tensor ``clamp_``
  * ``compiled_foreach`` the same two lines under ``torch.compile`` (compile time excluded)
  * ``copy``             ``dst.copy_(src)`` over as many elements: the bandwidth yardstick

Cases: (a) the DCGAN-64 critic's 11 parameter tensors (pytorch/examples discriminator, ndf=64,
3 channels, BatchNorm; 2.77M elements), (b) one 50M-element buffer (200 MB per fp32 stream).

GB/s counts the bytes the update must move at the least: 20 per element for every optimizer
(read p, g, v; write p, v), 8 for the copy (read src, write dst). A summary with the ratios is
printed at the end of the module (terminal reporter, shown also without -s); every measurement
is appended to benchmarks/results/clipped_rmsprop.jsonl (benchmarks/_bench.py) for
benchmarks/report.py.
"""
from __future__ import annotations

import gc
from contextlib import nullcontext as _nullcontext

import pytest
import torch

from fastwgan.optim import ClippedRMSprop

from _bench import record

LR, CLIP = 5e-5, 0.01
BYTES_PER_ELEM_STEP = 20  # read p, g, v; write p, v (fp32)
BYTES_PER_ELEM_COPY = 8  # read src, write dst

DCGAN64 = [  # conv weights, then BatchNorm weight + bias after conv 2, 3, 4
    (64, 3, 4, 4), (128, 64, 4, 4), (256, 128, 4, 4), (512, 256, 4, 4), (1, 512, 4, 4),
    (128,), (128,), (256,), (256,), (512,), (512,),
]
CASES = {
    "dcgan64": dict(shapes=DCGAN64, rounds=40, warmup=5),
    "flat50m": dict(shapes=[(50_000_000,)], rounds=8, warmup=2),
}
RESULTS: dict[tuple[str, str], float] = {}  # (case, contender) -> best round, seconds


def _numel(shapes) -> int:
    return sum(torch.Size(s).numel() for s in shapes)


def _params(shapes, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    ps = [(torch.randn(s, generator=gen) * CLIP).to(device).requires_grad_() for s in shapes]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=gen).to(device)
    return ps


def _record(benchmark, case: str, name: str, nbytes: int) -> None:
    if getattr(benchmark, "disabled", False) or benchmark.stats is None:
        return  # --benchmark-disable (CI's smoke run): ran once, nothing timed
    best = benchmark.stats.stats.min
    RESULTS[(case, name)] = best
    benchmark.extra_info["GB/s (best round)"] = round(nbytes / best / 1e9, 2)
    cfg = CASES[case]
    record(benchmark, f"clipped_rmsprop {case}", name, baseline=name.startswith("foreach_clamp"),
           shapes=f"{len(cfg['shapes'])} tensors, {_numel(cfg['shapes']):,} fp32 elements", unit="optimizer step",
           warmup=cfg["warmup"], bytes_moved=nbytes)


def _run(benchmark, case: str, name: str, fn, nbytes: int, sync=None) -> None:
    cfg = CASES[case]

    def once():
        fn()
        if sync is not None:
            sync()

    benchmark.pedantic(once, rounds=cfg["rounds"], iterations=1, warmup_rounds=cfg["warmup"])
    _record(benchmark, case, name, nbytes)


@pytest.fixture(autouse=True)
def _free_memory():
    yield
    gc.collect()  # the 50M case holds ~1 GB per contender: free it before the next


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or not RESULTS:
        return
    lines = [
        "",
        f"clipped_rmsprop summary: {torch.get_num_threads()} threads, torch {torch.__version__}; "
        "best round of each (the machine is shared: the minimum is the least disturbed); GB/s "
        "counts 20 B/element for a step, 8 for the copy",
    ]
    for case, cfg in CASES.items():
        n = _numel(cfg["shapes"])
        t = {k[1]: v for k, v in RESULTS.items() if k[0] == case}
        if "copy" not in t:
            continue
        copy_gbs = BYTES_PER_ELEM_COPY * n / t["copy"] / 1e9
        lines.append(
            f"  {case}: {n:,} elements; copy {t['copy'] * 1e3:.3f} ms = {copy_gbs:.1f} GB/s"
        )
        for name in ("fused", "foreach_clamp", "compiled_foreach"):
            if name not in t:
                continue
            gbs = BYTES_PER_ELEM_STEP * n / t[name] / 1e9
            line = (f"    {name:17s} {t[name] * 1e3:9.3f} ms {gbs:7.1f} GB/s "
                    f"{gbs / copy_gbs:6.0%} of copy")
            if name != "fused" and "fused" in t:
                line += f"   fused is {t[name] / t['fused']:.2f}x faster"
            lines.append(line)
        if "fused_triton_cuda" in t and "foreach_clamp_cuda" in t:
            lines.append(f"    cuda: triton {t['fused_triton_cuda'] * 1e3:.3f} ms, foreach+clamp "
                         f"{t['foreach_clamp_cuda'] * 1e3:.3f} ms "
                         f"({t['foreach_clamp_cuda'] / t['fused_triton_cuda']:.2f}x)")
    with capman.global_and_fixture_disabled() if capman else _nullcontext():
        for line in lines:
            tr.write_line(line)


@pytest.mark.parametrize("case", list(CASES))
def test_copy(benchmark, case):
    n = _numel(CASES[case]["shapes"])
    src, dst = torch.randn(n), torch.empty(n)
    _run(benchmark, case, "copy", lambda: dst.copy_(src), BYTES_PER_ELEM_COPY * n)


@pytest.mark.parametrize("case", list(CASES))
def test_fused(benchmark, case):
    ps = _params(CASES[case]["shapes"])
    opt = ClippedRMSprop(ps, lr=LR, clip=CLIP, backend="cpp")
    opt.step()  # allocate the state outside the timing
    _run(benchmark, case, "fused", opt.step, BYTES_PER_ELEM_STEP * _numel(CASES[case]["shapes"]))


def _foreach_step(ps):
    opt = torch.optim.RMSprop(ps, lr=LR, foreach=True)

    def step():
        opt.step()
        for p in ps:
            p.data.clamp_(-CLIP, CLIP)

    return opt, step


@pytest.mark.parametrize("case", list(CASES))
def test_foreach_clamp(benchmark, case):
    ps = _params(CASES[case]["shapes"])
    _, step = _foreach_step(ps)
    step()
    _run(benchmark, case, "foreach_clamp", step,
         BYTES_PER_ELEM_STEP * _numel(CASES[case]["shapes"]))


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_foreach(benchmark, case):
    ps = _params(CASES[case]["shapes"])
    opt, _ = _foreach_step(ps)

    @torch.compile
    def step():
        opt.step()
        with torch.no_grad():
            for p in ps:
                p.clamp_(-CLIP, CLIP)

    step()  # compile (excluded from the timing)
    step()
    _run(benchmark, case, "compiled_foreach", step,
         BYTES_PER_ELEM_STEP * _numel(CASES[case]["shapes"]))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", list(CASES))
def test_fused_triton_cuda(benchmark, case):
    shapes = CASES[case]["shapes"]
    ps = _params(shapes, "cuda")
    opt = ClippedRMSprop(ps, lr=LR, clip=CLIP, backend="triton")
    opt.step()
    _run(benchmark, case, "fused_triton_cuda", opt.step, BYTES_PER_ELEM_STEP * _numel(shapes),
         sync=torch.cuda.synchronize)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", list(CASES))
def test_foreach_clamp_cuda(benchmark, case):
    ps = _params(CASES[case]["shapes"], "cuda")
    _, step = _foreach_step(ps)
    step()
    _run(benchmark, case, "foreach_clamp_cuda", step,
         BYTES_PER_ELEM_STEP * _numel(CASES[case]["shapes"]), sync=torch.cuda.synchronize)
