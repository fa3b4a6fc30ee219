"""The matrix-product floor of one WGAN-GP generator iteration on this CPU.

    python benchmarks/matmul_floor.py                  # both WGAN-GP groups, fp32 and bf16 (a few minutes)
    python benchmarks/matmul_floor.py --paired --groups "WGAN-GP toy MLP" --precisions bf16   # % of floor, one process
    FASTWGAN_BENCH_SMOKE=1 python benchmarks/matmul_floor.py   # tiny sizes: checks it runs (not a measurement)
    python benchmarks/report.py                        # the floor table, beside fastwgan's best iteration

What is counted: one iteration of the textbook loop (benchmarks/_textbook.py: 5 critic steps with
the penalty's ``autograd.grad(create_graph=True)`` and its double backward, 1 generator step) of
the group in benchmarks/train_loop.py, under ``torch.utils.flop_counter.FlopCounterMode``: every
matrix product and convolution torch dispatches (aten.mm, addmm, bmm, baddbmm, convolution and
convolution_backward; 2 m k n FLOP per m x k @ k x n product), forward, backward and the double
backward alike, including the products of the double backward that multiply the zero gradient
torch's ReLU / LeakyReLU backward returns for its input (work the textbook does; fastwgan's own
activations prune it). Elementwise work, reductions and the optimizer are not counted.

What is timed: every product of that iteration again, at its own shapes, strides and arguments
(recorded as it ran), in fp32 and with the same tensors in bf16, by torch on this CPU with
torch's thread count. A round times each distinct product back to back (enough calls for a
stable reading) and adds count x seconds per call over all of them: one iteration's products at
this CPU's rate, nothing else. floor = median over rounds; GFLOP/s = GFLOP / floor. No iteration
that does these products can run faster than the floor (a program that does fewer products,
e.g. by pruning the zero products, can: the counted GFLOP says which products are in it).

A second program is counted and timed the same way: fastwgan's own iteration (the static step's
update functions, run eagerly, fastwgan's activations): the pruned double backward, the least
product work of the iteration (the jax.jit program's optimized HLO does the same products:
``jax_loop.product_gflop``). Those products are timed a second time with each one also run by
oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, in torch's CPU build; checked to give the
same product), taking per round the faster of torch.mm and oneDNN for each: for fp32, torch's
products go to MKL, and oneDNN is the other product kernel torch offers. And this CPU's best rate
for one product (square sizes, median of rounds, the best size): ``pruned GFLOP / best rate``
bounds every program that does the pruned products, at any product shapes.

``--paired`` measures the ratio the floor is for, in one process: fastwgan's compiled step and
the two floors' replays take turns round by round (measure_paired), so that both sides of
"% of floor" come from the same minutes of this machine.

Results go through the one harness (benchmarks/_bench.py) into results/matmul_floor.jsonl;
report.py sets the floor beside fastwgan's best iteration at the same precision
(results/train_loop.jsonl): % of floor = floor / fastwgan.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))

from fastwgan.data import as_data_source  # noqa: E402
from fastwgan.distributed import DistInfo  # noqa: E402
from fastwgan.ops.activations import with_torch_activations  # noqa: E402
from fastwgan.training.inputs import Draws  # noqa: E402
from fastwgan.training.precision import Amp  # noqa: E402
from fastwgan.training.static import StaticStep  # noqa: E402

import _bench  # noqa: E402
import train_loop  # noqa: E402
from _textbook import TextbookLoop  # noqa: E402

SUITE = "matmul_floor"
CONTENDER = "matrix products alone (torch)"  # the textbook iteration's products
PRUNED = "fastwgan's products alone (torch)"  # fastwgan's own iteration's (the pruned double backward)
FASTEST = "fastwgan's products, faster of torch and oneDNN"  # per product: torch.mm or oneDNN's linear
BEST = "best rate of one product (torch)"  # square products: this CPU's best rate, any shape
PAIRED = "fastwgan compiled, timed between the floors' rounds"  # --paired: % of floor from one process
SQUARE = (1024, 2048)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GROUPS = {k: g for k, g in train_loop.GROUPS.items() if g.loss == "wgan-gp"}


class _Spec:
    """A tensor argument as recorded: what rebuilds one like it (shape, strides, dtype)."""

    def __init__(self, t: torch.Tensor) -> None:
        self.shape, self.stride, self.dtype = tuple(t.shape), tuple(t.stride()), t.dtype

    def __repr__(self) -> str:
        return f"T{self.shape}{self.stride}{str(self.dtype).removeprefix('torch.')}"

    def build(self, dtype: torch.dtype | None) -> torch.Tensor:
        dt = dtype if dtype is not None and self.dtype.is_floating_point else self.dtype
        need = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) if all(self.shape) else 0
        return torch.randn(max(need, 1)).to(dt).as_strided(self.shape, self.stride)  # expanded views kept


class _Products(TorchDispatchMode):
    """Records every call of the counted products: (op, argument specs) and its FLOP."""

    def __init__(self, registry: dict) -> None:
        super().__init__()
        self.registry, self.calls = registry, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = self.registry.get(func._overloadpacket)
        if count is not None:
            flop = count(*args, **kwargs, out_val=out)
            spec = tree_map(lambda a: _Spec(a) if isinstance(a, torch.Tensor) else a, (args, kwargs))
            self.calls.append((func, spec, flop))
        return out


class _GlobalOnly:
    """Stands in for FlopCounterMode's ModuleTracker: its backward hooks make ``autograd.grad`` on a
    leaf input (the penalty's x_hat) raise "A leaf node was passed to _will_engine_execute_node";
    the per-module split is not needed here, the total is ("Global")."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count(run_once: Callable[[], None]) -> tuple[list, float, dict[str, float]]:
    """The products of one call of ``run_once`` (after one warm-up call): the product calls,
    FlopCounterMode's GFLOP and its GFLOP per op."""
    run_once()
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter, _Products(counter.flop_registry) as rec:
        run_once()
    total = counter.get_total_flops()
    recorded = sum(f for _, _, f in rec.calls)
    if recorded != total:  # the recorder and the counter must see the same products
        raise RuntimeError(f"recorded {recorded} FLOP of products but FlopCounterMode counted {total}")
    by_op = {str(k): v / 1e9 for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return rec.calls, total / 1e9, by_op


def record(g: train_loop.Group) -> tuple[list, float, dict[str, float]]:
    """One textbook iteration of ``g`` in fp32 (torch's activations: the unpruned products)."""
    G, D = (with_torch_activations(m) for m in train_loop.models(g))
    source = as_data_source(train_loop.data(g), batch_size=g.batch, seed=0)
    loop = TextbookLoop(G, D, lambda n: source.next_batch(n)[0], z_dim=g.z_dim, batch=g.batch, lam=g.lam,
                        lr=g.lr, betas=g.betas)
    return count(lambda: loop.run(1))


def fastwgan_iteration(g: train_loop.Group, precision: str = "fp32", compile: bool = False) -> Callable[[], None]:
    """One iteration of fastwgan's static step on ``g`` per call: its draws staged, then the update
    (eager: the code torch.compile traces; compiled: what ``train(compile=True)`` runs; the first
    call compiles)."""
    G, D = train_loop.models(g)
    source = as_data_source(train_loop.data(g), batch_size=g.batch, seed=0)
    x0, _ = source.next_batch(1)
    cpu = torch.device("cpu")
    draws = Draws(g.batch, g.z_dim, penalty=True, device=cpu, data_dtype=torch.float32, z_dtype=torch.float32,
                  info=DistInfo())
    adam = dict(lr=g.lr, betas=g.betas)
    step = StaticStep(G, D, torch.optim.Adam(D.parameters(), **adam), torch.optim.Adam(G.parameters(), **adam),
                      loss=g.loss, lam=g.lam, n_critic=5, draws=draws, sample_shape=tuple(x0.shape[1:]),
                      labelled=False, amp=Amp(precision, cpu), compile=compile)

    def once() -> None:
        step.stage(source)
        step()
    return once


def record_fastwgan(g: train_loop.Group) -> tuple[list, float, dict[str, float]]:
    """One iteration of fastwgan's static step (the code torch.compile traces), run eagerly in
    fp32 with fastwgan's activations: the pruned double backward."""
    return count(fastwgan_iteration(g))


def best_rate(dtype: torch.dtype, rounds: int, min_seconds: float, sizes=SQUARE) -> tuple[int, list[float]]:
    """This CPU's best rate for one product: per square size n, seconds per n x n @ n x n over
    ``rounds`` rounds; returns the size with the best median rate and its round rates (GFLOP/s)."""
    best: tuple[int, list[float]] = (0, [0.0])
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        out = torch.empty(n, n, dtype=dtype)
        torch.mm(a, b, out=out)  # warm
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        reps = max(1, round(min_seconds / max(time.perf_counter() - t0, 1e-7)))
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b, out=out)
            rates.append(2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9)
        if statistics.median(rates) > statistics.median(best[1]):
            best = (n, rates)
    return best


def _onednn_form(func, args: tuple, kwargs: dict) -> Callable[[], torch.Tensor] | None:
    """The same product by oneDNN's linear (``mkldnn._linear_pointwise``: a @ w^T + bias), which
    torch's CPU build ships but calls for fp32 products only at reduced precision; None where the
    product has no such form (convolutions, a 2-D addend, scaled products, no oneDNN)."""
    if not torch.backends.mkldnn.is_available() or kwargs:
        return None
    linear = torch.ops.mkldnn._linear_pointwise
    if func._overloadpacket is torch.ops.aten.mm:
        a, b = args
        return lambda: linear(a, b.t(), None, "none", [], "")
    if func._overloadpacket is torch.ops.aten.addmm and len(args) == 3 and args[0].dim() == 1:  # beta = alpha = 1
        c, a, b = args
        return lambda: linear(a, b.t(), c, "none", [], "")
    return None


def _same_product(func, args: tuple, got: torch.Tensor) -> bool:
    """``got`` is ``func(*args)`` up to rounding: |got - ref| <= (2 K u + u_out) (|a| |b| + |c|)
    elementwise, Higham's bound for two K-term sums in fp32 (u = 2^-24) plus one rounding of the
    output (u_out, its dtype's). A wrong transpose or bias is off by O(|a| |b|), far outside it."""
    ref = func(*args)
    *addend, a, b = args
    k = a.shape[-1]
    scale = a.float().abs() @ b.float().abs() + (addend[0].float().abs() if addend else 0)
    u_out = torch.finfo(ref.dtype).eps / 2
    return got.shape == ref.shape and bool(((got.float() - ref.float()).abs() <= (2 * k * 2.0 ** -24 + u_out) * scale).all())


def replay_programs(calls: list, dtype: torch.dtype, min_seconds: float,
                    with_onednn: bool = False) -> list[tuple[list, int]]:
    """Per distinct product: its callables (torch's; ``with_onednn``: also oneDNN's linear, checked
    to be the same product), each with enough back-to-back calls to last ``min_seconds``, and how
    many times the iteration calls it."""
    kinds = Counter((func, repr(spec)) for func, spec, _ in calls)
    programs = []
    for (func, key), n in kinds.items():
        spec = next(s for f, s, _ in calls if f is func and repr(s) == key)
        args, kwargs = tree_map(lambda a: a.build(dtype) if isinstance(a, _Spec) else a, spec)
        fns = [(lambda f, a, k: lambda: f(*a, **k))(func, args, kwargs)]
        other = _onednn_form(func, args, kwargs) if with_onednn else None
        if other is not None:
            if not _same_product(func, args, other()):
                raise RuntimeError(f"oneDNN's linear does not reproduce {func} on {key}")
            fns.append(other)
        timed = []
        for fn in fns:
            fn()  # warm: oneDNN primitive creation, weight packing
            t0 = time.perf_counter()
            fn()
            timed.append((fn, max(1, round(min_seconds / max(time.perf_counter() - t0, 1e-7)))))
        programs.append((timed, n))
    return programs


def replay_round(programs: list[tuple[list, int]]) -> float:
    """One round: sum over the distinct products of (calls of it in the iteration) x (seconds per
    call over its back-to-back calls; the faster callable where it has two)."""
    total = 0.0
    for timed, n in programs:
        per_call = []
        for fn, reps in timed:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            per_call.append((time.perf_counter() - t0) / reps)
        total += n * min(per_call)
    return total


def replay_rounds(calls: list, dtype: torch.dtype, rounds: int, min_seconds: float,
                  with_onednn: bool = False) -> list[float]:
    """``rounds`` rounds of :func:`replay_round` on the iteration's products at ``dtype``."""
    programs = replay_programs(calls, dtype, min_seconds, with_onednn)
    return [replay_round(programs) for _ in range(rounds)]


def _counted(calls: list, gflop: float, by_op: dict[str, float]) -> dict:
    """What a floor row says it counted: GFLOP in all and per op, product calls, distinct products."""
    return dict(gflop=round(gflop, 4), gflop_by_op={k: round(v, 4) for k, v in by_op.items()}, products=len(calls),
                distinct_products=len({(f, repr(s)) for f, s, _ in calls}),
                counted=", ".join(f"{op} {v:.2f}" for op, v in sorted(by_op.items(), key=lambda kv: -kv[1])))


def _floor_rows(name: str, g: train_loop.Group, contender: str, calls: list, gflop: float,
                by_op: dict[str, float], precisions: list[str], rounds: int, min_seconds: float,
                with_onednn: bool = False) -> list[dict]:
    what = _counted(calls, gflop, by_op)
    print(f"{name} ({contender}): {gflop:.2f} GFLOP of products per iteration ({len(calls)} calls; {what['counted']})",
          flush=True)
    out = []
    for p in precisions:
        secs = replay_rounds(calls, DTYPES[p], rounds + 1, min_seconds, with_onednn)
        m = _bench.measurement(group=name, contender=contender, precision=p, shapes=g.shapes(),
                               unit=train_loop.UNIT, units=1, warmup=1, round_seconds=secs[1:], **what)
        _bench.append(SUITE, m)
        print(f"{name:18s} {p}  floor {m['median_s'] * 1e3:8.1f} ms/it  ({gflop / m['median_s']:.0f} GFLOP/s; "
              f"rounds {m['min_s'] * 1e3:.1f}-{m['max_s'] * 1e3:.1f} ms)", flush=True)
        out.append(m)
    return out


def _best_rate_rows(name: str, g: train_loop.Group, gflop: float, precisions: list[str], rounds: int,
                    min_seconds: float, sizes) -> list[dict]:
    """The pruned products at this CPU's best rate for one product (any shape): seconds per
    iteration = pruned GFLOP / best rate, per round."""
    out = []
    for p in precisions:
        n, rates = best_rate(DTYPES[p], rounds, min_seconds, sizes)
        m = _bench.measurement(group=name, contender=BEST, precision=p, shapes=g.shapes(), unit=train_loop.UNIT,
                               units=1, warmup=1, round_seconds=[gflop / r for r in rates], gflop=round(gflop, 4),
                               counted=f"fastwgan's products at the rate of {n} x {n} @ {n} x {n}",
                               best_size=n, best_gflops=round(statistics.median(rates), 1))
        _bench.append(SUITE, m)
        print(f"{name:18s} {p}  best rate {statistics.median(rates):.0f} GFLOP/s ({n}^3): "
              f"{m['median_s'] * 1e3:.1f} ms/it for {gflop:.2f} GFLOP", flush=True)
        out.append(m)
    return out


def measure(name: str, g: train_loop.Group, precisions: list[str], rounds: int, min_seconds: float,
            sizes=SQUARE) -> list[dict]:
    out = _floor_rows(name, g, CONTENDER, *record(g), precisions, rounds, min_seconds)
    calls, gflop, by_op = record_fastwgan(g)
    out += _floor_rows(name, g, PRUNED, calls, gflop, by_op, precisions, rounds, min_seconds)
    out += _floor_rows(name, g, FASTEST, calls, gflop, by_op, precisions, rounds, min_seconds, with_onednn=True)
    return out + _best_rate_rows(name, g, gflop, precisions, rounds, min_seconds, sizes)


def measure_paired(name: str, g: train_loop.Group, precision: str, rounds: int, min_seconds: float) -> list[dict]:
    """% of floor from one process: round by round, ``g.iters`` iterations of fastwgan's compiled
    step, then one round of each floor (the textbook's products, fastwgan's), so that the machine's
    drift from minute to minute moves both sides of the ratio (separate runs of train_loop.py and
    of this script can be minutes apart). The first round warms and is dropped."""
    floors = {CONTENDER: record(g), PRUNED: record_fastwgan(g)}
    programs = {c: replay_programs(calls, DTYPES[precision], min_seconds) for c, (calls, _, _) in floors.items()}
    step = fastwgan_iteration(g, precision, compile=True)
    step()  # traces and compiles
    secs: dict[str, list[float]] = {c: [] for c in (PAIRED, *floors)}
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        for _ in range(g.iters):
            step()
        secs[PAIRED].append((time.perf_counter() - t0) / g.iters)
        for c, progs in programs.items():
            secs[c].append(replay_round(progs))
    out = []
    for c, (calls, gflop, by_op) in floors.items():
        pct = [f / t for f, t in zip(secs[c][1:], secs[PAIRED][1:])]
        m = _bench.measurement(group=name, contender=c, precision=precision, shapes=g.shapes(), unit=train_loop.UNIT,
                               units=1, warmup=1, round_seconds=secs[c][1:], **_counted(calls, gflop, by_op),
                               paired_with=PAIRED, floor_over_step_by_round=[round(x, 4) for x in pct])
        _bench.append(SUITE, m)
        out.append(m)
        print(f"{name:18s} {precision}  {c}: floor {m['median_s'] * 1e3:.1f} ms; floor / step by round "
              f"{min(pct):.0%}-{max(pct):.0%}, median {statistics.median(pct):.0%}", flush=True)
    m = _bench.measurement(group=name, contender=PAIRED, precision=precision, shapes=g.shapes(), unit=train_loop.UNIT,
                           units=1, warmup=1, round_seconds=secs[PAIRED][1:], iters_per_round=g.iters)
    _bench.append(SUITE, m)
    print(f"{name:18s} {precision}  {PAIRED}: {m['median_s'] * 1e3:.1f} ms/it", flush=True)
    return out + [m]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    ap.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-seconds", type=float, default=0.05, help="time each distinct product for this long per round")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--paired", action="store_true",
                    help="instead: fastwgan's compiled step timed round by round between the floors' rounds")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    smoke = _bench.smoke()
    print(_bench.machine(), flush=True)
    out = []
    for name in a.groups:
        g = train_loop.smoke_size(GROUPS[name]) if smoke else GROUPS[name]
        rounds, min_seconds = (2, 1e-4) if smoke else (a.rounds, a.min_seconds)
        if a.paired:
            out += [m for p in a.precisions for m in measure_paired(name, g, p, rounds, min_seconds)]
        else:
            out += measure(name, g, a.precisions, rounds, min_seconds, sizes=(64,) if smoke else SQUARE)
    print(f"results: {_bench.results_dir() / (SUITE + '.jsonl')}", flush=True)
    return out


if __name__ == "__main__":
    main()
