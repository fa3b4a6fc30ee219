"""GPU figures derived on paper (no GPU has run these kernels) and the operator counts behind them.

    python benchmarks/launch_counts.py [--steps 2]

writes ``benchmarks/results/gpu_derived.md`` (benchmarks/report.py puts it into RESULTS.md) and
``benchmarks/results/launch_counts.json``:

1. Each fused kernel's bytes moved at stated representative sizes, and its time if it ran at the
   HBM bandwidth of an H100 SXM (3.35 TB/s) or an A100 (2.0 TB/s): a lower bound, derived, not
   measured.
2. The ATen operators dispatched per toy WGAN-GP iteration (gan_toy's MLPs at width 512, batch
   256, 5 critic steps per generator step) on the CPU, as a stand-in for GPU kernel launches:
   (a) the textbook loop (benchmarks/_textbook.py), (b) ``fastwgan.train(compile=False)`` (the
   eager trainer), (c) ``fastwgan.train(compile=True)`` (the static step, compiled). Each is
   counted over N and 2N iterations and differenced, so set-up and teardown cancel. (a) and (b)
   use a TorchDispatchMode; (c) cannot (Dynamo skips frames while a dispatch mode is active, and
   the static step compiles with fullgraph=True, which then refuses to run), so it is counted with
   the profiler: the operators that run outside the compiled graphs plus, inside them, inductor's
   generated kernels and its calls into ATen (matmuls).
3. What a launch costs at a stated ~5 us per launch, and what replaying the iteration from one
   CUDA graph saves: derived, not measured.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

COMMAND = "python benchmarks/launch_counts.py"
BANDWIDTH = {"H100 SXM (3.35 TB/s)": 3.35e12, "A100 (2.0 TB/s)": 2.0e12}
LAUNCH_US = 5.0  # stated cost of one kernel launch from Python through the dispatcher (host side)
WIDTH, BATCH, N_CRITIC = 512, 256, 5

# representative sizes
DCGAN64_IMAGES = 64 * 3 * 64 * 64  # batch 64 of 3x64x64: the penalty kernels' case
DCGAN64_CRITIC = [  # benchmarks/test_clipped_rmsprop.py's DCGAN64 case
    (64, 3, 4, 4), (128, 64, 4, 4), (256, 128, 4, 4), (512, 256, 4, 4), (1, 512, 4, 4),
    (128,), (128,), (256,), (256,), (512,), (512,)]


# ------------------------------------------------------------------------------------------------
# 1. bytes moved
# ------------------------------------------------------------------------------------------------
def kernel_bytes() -> list[dict]:
    """Bytes each kernel reads + writes once (fp32 data), from the kernels' own loads/stores."""
    from fastwgan.ops.gradient_penalty import norm_split

    B, n = 64, DCGAN64_IMAGES
    S, _ = norm_split(B, n // B)
    critic = sum(math.prod(s) for s in DCGAN64_CRITIC)
    rows = [
        ("interp_kernel", "x_hat of 64 x 3x64x64 (fp32)", 12 * n + 4 * B,
         "read real, fake; write x_hat (+ alpha per sample); the broadcast expression: 28 B/elem"),
        ("norm_kernel + norm_finish_kernel", f"norms of 64 x 3x64x64, split S={S}",
         4 * n + 2 * 4 * B * S + 4 * B,
         "read g once; partial sums written and read; one norm per sample"),
        ("backward_kernel", "dP/dg for 64 x 3x64x64", 8 * n + 4 * B,
         "read g, write dP/dg (+ one coefficient per sample); autograd's chain ~24 B/elem"),
        ("clipped_rmsprop_kernel", f"DCGAN-64 critic, {critic:,} params", 20 * critic,
         "read p, g, v; write p, v (20 B/param); foreach RMSprop + clamp ~60"),
        ("clipped_rmsprop_kernel", "same, centered + momentum", 36 * critic,
         "+ grad_avg and momentum buffer read and written (36 B/param)"),
        ("clipped_rmsprop_kernel", "50M params (flat)", 20 * 50_000_000, "20 B/param"),
    ]
    out = []
    for kernel, case, nbytes, note in rows:
        times = {gpu: nbytes / bw * 1e6 for gpu, bw in BANDWIDTH.items()}
        out.append({"kernel": kernel, "case": case, "bytes": nbytes, "us_at_bandwidth": times,
                    "note": note})
    return out


# ------------------------------------------------------------------------------------------------
# 2. operators per iteration
# ------------------------------------------------------------------------------------------------
def _is_metadata_only(func) -> bool:
    """Views, aliases and bare allocations: no GPU kernel behind them."""
    name = func.name()
    if name.startswith("profiler::") or name.split("::")[-1].split(".")[0] in (
            "empty", "empty_like", "empty_strided", "lift_fresh", "_to_copy_meta"):
        return True
    rets = func._schema.returns
    return bool(rets) and all(r.alias_info is not None and not r.alias_info.is_write for r in rets)


class OpCount(TorchDispatchMode):
    """Counts every ATen operator dispatched, by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _kinds(ops: Counter, funcs: dict) -> dict:
    total = sum(ops.values())
    meta = sum(c for k, c in ops.items() if _is_metadata_only(funcs[k]))
    sync = sum(c for k, c in ops.items() if "_local_scalar_dense" in k)
    return {"dispatched": total, "launching": total - meta - sync, "metadata_only": meta,
            "host_syncs": sync}


def _per_iteration(run, steps: int) -> dict:
    """Counts over ``steps`` and ``2 * steps`` iterations, differenced, per iteration."""
    counts, funcs = [], {}
    for n in (steps, 2 * steps):
        with OpCount() as c:
            run(n)
        counts.append(c.ops)
    for name in set(counts[0]) | set(counts[1]):
        funcs[name] = _resolve(name)
    diff = Counter(counts[1])
    diff.subtract(counts[0])
    kinds = {k: v / steps for k, v in _kinds(diff, funcs).items()}
    top = {k: v / steps for k, v in diff.most_common(12)}
    return {**kinds, "top_ops": top}


def _resolve(name: str):
    ns, rest = name.split(".", 1)
    op, overload = rest.rsplit(".", 1) if "." in rest else (rest, "default")
    return getattr(getattr(getattr(torch.ops, ns), op), overload)


def _models():
    from fastwgan.models import MLPCritic, MLPGenerator

    torch.manual_seed(0)
    return (MLPGenerator(z_dim=2, out_dim=2, width=WIDTH, depth=3),
            MLPCritic(in_dim=2, width=WIDTH, depth=3))


def step_counters() -> int:
    """Adam step counters touched per iteration: one per parameter tensor per optimizer step
    (the critic's N_CRITIC steps, the generator's one)."""
    G, D = _models()
    return len(list(D.parameters())) * N_CRITIC + len(list(G.parameters()))


def _eight_gaussians(n: int) -> torch.Tensor:
    """gan_toy's 8 Gaussians (sampled with torch ops, as a GPU loop would)."""
    angles = torch.arange(8) * (math.pi / 4)
    centers = torch.stack([angles.cos(), angles.sin()], 1) * 2.0
    return centers[torch.randint(0, 8, (n,))] + 0.02 * torch.randn(n, 2)


def textbook_run():
    from _textbook import TextbookLoop, mlp

    torch.manual_seed(0)
    loop = TextbookLoop(mlp(2, 2, WIDTH), mlp(2, 1, WIDTH), _eight_gaussians, batch=BATCH,
                        n_critic=N_CRITIC)
    return loop.run


def trainer_run(compile: bool):
    import fastwgan

    def run(n: int) -> None:
        G, D = _models()
        fastwgan.train(G, D, "8gaussians", steps=n, batch_size=BATCH, n_critic=N_CRITIC,
                       compile=compile, eval_samples=0, plots=False, progress=False, device="cpu",
                       log_every=n, eval_every=n)

    return run


def compiled_per_iteration(steps: int) -> dict:
    """(c) with the profiler: top-level operators plus inductor's kernels and ATen calls."""
    import torch._inductor.config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    inductor_config.cpp.enable_kernel_profile = True  # name each generated C++ kernel
    run = trainer_run(True)
    counts = []
    for n in (steps, 2 * steps):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(n)
        counts.append(_profiled_launches(prof))
    keys = ("launching", "generated_kernels", "aten_launching", "metadata_only", "host_syncs")
    return {k: (counts[1][k] - counts[0][k]) / steps for k in keys}  # Counter: 0 when absent


def _profiled_launches(prof) -> Counter:
    """Kernels an event list would launch on a GPU: generated kernels (``cpp_fused_*``) and
    top-level ATen operators (not nested in another ATen operator; views excluded)."""
    out = Counter()
    for e in prof.events():
        if _GENERATED.search(e.name):  # e.g. graph_0_cpp_fused_relu_1
            out["generated_kernels"] += 1
        elif e.name.startswith("aten::") and not nested_in_aten(e):
            name = e.name.split("::")[1]
            if name in ("view", "t", "detach", "expand", "as_strided", "reshape", "transpose",
                        "permute", "unsqueeze", "squeeze", "select", "slice", "alias",
                        "_unsafe_view", "empty", "empty_like", "empty_strided", "lift_fresh",
                        "resolve_conj", "resolve_neg"):
                out["metadata_only"] += 1
            elif name in ("item", "_local_scalar_dense"):
                out["host_syncs"] += 1
            else:
                out["aten_launching"] += 1
    out["launching"] = out["generated_kernels"] + out["aten_launching"]
    return out


_GENERATED = re.compile(r"(^|_)(cpp_fused|triton_)")


def nested_in_aten(e) -> bool:
    """Whether a profiler event runs inside another aten operator (counted with that one)."""
    p = e.cpu_parent
    while p is not None:
        if p.name.startswith("aten::"):
            return True
        p = p.cpu_parent
    return False


# ------------------------------------------------------------------------------------------------
# 3. the markdown fragment
# ------------------------------------------------------------------------------------------------
def render(kb: list[dict], counts: dict, steps: int) -> str:
    gpus = list(BANDWIDTH)
    lines = [
        "### GPU figures derived on paper (derived, not measured)",
        "",
        f"Regenerate: `{COMMAND} --steps {steps}`. No GPU has run these kernels: every time below "
        "is bytes / bandwidth (a lower bound for a memory-bound kernel) or launches x a stated "
        "cost, **derived, not measured**. The operator counts are measured, on the CPU.",
        "",
        "#### Bytes moved per call and time at the HBM bandwidth limit (derived, not measured)",
        "",
        "| kernel | case | MB moved | " + " | ".join(f"us on {g}" for g in gpus)
        + " | what moves |",
        "|---|---|---|" + "---|" * len(gpus) + "---|",
    ]
    for r in kb:
        t = " | ".join(f"{r['us_at_bandwidth'][g]:.2f}" for g in gpus)
        lines.append(f"| `{r['kernel']}` | {r['case']} | {r['bytes'] / 1e6:.2f} | {t} "
                     f"| {r['note']} |")
    lines += [
        "",
        f"At a few MB a call these kernels would take 1-5 us at the bandwidth limit: the same "
        f"order as one launch (~{LAUNCH_US:.0f} us, below), so on a GPU the number of launches "
        "per iteration matters as much as the bytes. bf16 data halves the bytes of the penalty "
        "kernels.",
        "",
        "#### ATen operators per toy WGAN-GP iteration (measured on the CPU; launches derived)",
        "",
        f"gan_toy's MLPs at width {WIDTH}, batch {BATCH}, {N_CRITIC} critic steps per generator "
        f"step; counted over {steps} and {2 * steps} iterations and differenced. *launching*: "
        "operators that would launch a GPU kernel (views, aliases, bare allocations and profiler "
        "markers excluded); *device syncs*: `.item()` reads of device values (each a "
        "device-to-host copy that waits for the GPU). torch.optim.Adam, as it runs eagerly, "
        "increments and reads (`.item()`) one step counter per parameter per step "
        f"({step_counters()} per iteration here); on a GPU those counters stay on the host, so "
        "rows (a) and (b) leave them out of both columns. On the CPU torch runs Adam one tensor "
        "at a time; on CUDA it defaults to the multi-tensor (foreach) form, which would cut the "
        "optimizer's share of (a) and (b) alike.",
        "",
        f"| loop | dispatched | launching | device syncs | launch cost at {LAUNCH_US:.0f} us "
        "(derived, not measured) | replayed from one CUDA graph (derived, not measured) |",
        "|---|---|---|---|---|---|",
    ]
    for label, c in counts.items():
        host = c.get("adam_step_counters", 0)  # host-side on a GPU: not launches, not syncs
        launching, syncs = c["launching"] - host, c["host_syncs"] - host
        launch_ms = launching * LAUNCH_US / 1e3
        if "compile=True" in label:
            graph = (f"1 launch: saves {(launching - 1) * LAUNCH_US / 1e3:.2f} ms per iteration"
                     if syncs == 0 else "not capturable (device syncs)")
        else:
            graph = "eager: not captured" + (" (and it syncs)" if syncs else "")
        disp = f"{c['dispatched']:.0f}" if "dispatched" in c else "-"
        lines.append(f"| {label} | {disp} | {launching:.0f} | {syncs:.0f} | "
                     f"{launch_ms:.2f} ms | {graph} |")
    lines += [
        "",
        "The compiled static step is counted with the profiler (a dispatch mode turns compilation "
        "off): its *launching* column is inductor's generated kernels plus the ATen operators it "
        "calls (matmuls) and those outside the graph; inductor fuses differently for a GPU, so "
        "that row is a stand-in. A CUDA graph replays a captured iteration with one launch, "
        "which needs an iteration without host syncs (the static step keeps its metrics on the "
        "device); the saving is the launch overhead above, not any of the arithmetic.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2, help="N: count over N and 2N iterations")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--skip-compiled", action="store_true", help="leave out (c) (inductor build)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    counts = {
        "(a) textbook loop (benchmarks/_textbook.py)": _per_iteration(textbook_run(), a.steps),
        "(b) fastwgan.train, eager (compile=False)": _per_iteration(trainer_run(False), a.steps),
    }
    for c in counts.values():
        c["adam_step_counters"] = step_counters()
    if not a.skip_compiled:
        counts["(c) fastwgan.train, static step (compile=True)"] = compiled_per_iteration(a.steps)
    kb = kernel_bytes()
    a.results.mkdir(parents=True, exist_ok=True)
    (a.results / "launch_counts.json").write_text(json.dumps(
        {"steps": a.steps, "launch_us": LAUNCH_US, "bandwidth": BANDWIDTH, "kernel_bytes": kb,
         "per_iteration": counts}, indent=1))
    md = render(kb, counts, a.steps)
    (a.results / "gpu_derived.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
