"""Where one training iteration spends its time on a GPU: torch.profiler over ONE generator
iteration (n_critic critic steps, then one generator step) of ``fastwgan.train``, after warm-up
iterations that compile or capture it.

    python benchmarks/gpu_profile.py                      # on a GPU: the three cases below
    python benchmarks/gpu_profile.py --device cpu         # reduced sizes on the CPU (a check that it runs)
    python benchmarks/gpu_profile.py --out DIR --traces   # + one Chrome trace per case (chrome://tracing)

Cases (the sizes of benchmarks/test_gpu.py and benchmarks/test_gradient_penalty.py):

* ``toy compiled``: gan_toy's WGAN-GP (MLP 2-512x3 on 8gaussians, batch 256, n_critic 5, lam 0.1),
  ``compile=True, cuda_graphs=False``;
* ``toy cuda-graph``: the same, ``compile=False, cuda_graphs=True`` (CUDA only: skipped on the CPU);
* ``dcgan32``: DCGAN-32 with the LayerNorm critic on 3x32x32 images, batch 64, n_critic 5, lam 10,
  ``compile`` and ``cuda_graphs`` left at ``"auto"`` (what a user gets).

For each: the GPU activities in the iteration (kernels, and memory copies / sets apart), how many
launch calls the host made (``cudaLaunchKernel``, ``cudaGraphLaunch``...), the GPU's busy time (the
union of the activity intervals) against the span from the first activity's start to the last one's
end, the idle gaps between consecutive activities (the GPU waiting for the host: launch overhead,
Python, synchronisation), and the activities that take the most GPU time. On the CPU there are no
kernels: the outermost ATen operators (those Python dispatched, not called by another operator)
stand in for them, so the same numbers read "operators" and "host time between operators"; the
sizes are cut (``REDUCED``) so the check takes seconds. The iteration is delimited with ``on_eval`` (called after every step here, with
``eval_samples=0``: the trainer's per-log host sync ends the iteration before the profiler stops).

Writes ``gpu_profile.md`` (the summary) and ``gpu_profile.json`` (the numbers) to ``--out``
(default benchmarks/results); numbers from a GPU are measured, on the CPU they only show the script works.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import fastwgan
from fastwgan.models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator
from launch_counts import nested_in_aten

HERE = Path(__file__).resolve().parent
WARMUP = 3  # iterations before the profiled one: the compile / capture happens in the first
TOP = 10  # activities listed per case
# the host's calls that put work on the GPU (a CUDA-graph replay is one cudaGraphLaunch)
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                "cudaGraphLaunch", "cudaMemcpyAsync", "cudaMemsetAsync")

# case -> (model sizes, batch, lam, train settings); REDUCED: the CPU check's sizes
FULL = {"toy": dict(width=512, batch=256), "dcgan32": dict(ndf=64, batch=64)}
REDUCED = {"toy": dict(width=64, batch=64), "dcgan32": dict(ndf=8, batch=8)}
CASES = ("toy compiled", "toy cuda-graph", "dcgan32")


class OneIteration:
    """``on_eval`` hook: starts the profiler after iteration ``warmup`` and stops it after the next
    one, ending the run there."""

    def __init__(self, warmup: int, activities: list[ProfilerActivity]) -> None:
        self.warmup = warmup
        self.prof = profile(activities=activities)
        self.wall_s = 0.0

    def __call__(self, step: int, _generator, _metrics=None) -> bool:
        if step == self.warmup:
            self.prof.start()
            self.wall_s = -time.perf_counter()
            return False
        if step == self.warmup + 1:
            self.wall_s += time.perf_counter()
            self.prof.stop()
            return True
        return False


def _models(case: str, sizes: dict) -> tuple[torch.nn.Module, torch.nn.Module, Any, float]:
    """(generator, critic, data, lam) of a case."""
    if case.startswith("toy"):
        w = sizes["toy"]["width"]
        return MLPGenerator(z_dim=2, width=w), MLPCritic(in_dim=2, width=w), "8gaussians", 0.1
    ndf, batch = sizes["dcgan32"]["ndf"], sizes["dcgan32"]["batch"]
    images = torch.rand(16 * batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return (DCGANGenerator(z_dim=100, img_size=32, channels=3, ngf=ndf),
            DCGANCritic(img_size=32, channels=3, ndf=ndf, norm="layer"), images, 10.0)


def _settings(case: str) -> dict:
    if case == "toy compiled":
        return dict(compile=True, cuda_graphs=False)
    if case == "toy cuda-graph":
        return dict(compile=False, cuda_graphs=True)
    return dict(compile="auto", cuda_graphs="auto")


def _asked(case: str) -> str:
    """The step mode the case asks for ("auto": whatever the trainer picks)."""
    return {"toy compiled": "compiled", "toy cuda-graph": "cuda-graph"}.get(case, "auto")


def profile_case(case: str, device: str, sizes: dict, warmup: int = WARMUP) -> tuple[Any, dict]:
    """Train ``warmup + 1`` iterations of ``case``, profiling the last one: (profiler, run facts).
    fastwgan's warnings are kept: a compile or capture that fell back to the eager step says so
    there, and the profile is then not of the mode asked for."""
    torch.manual_seed(0)
    G, D, data, lam = _models(case, sizes)
    key = "toy" if case.startswith("toy") else "dcgan32"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    hook = OneIteration(warmup, activities)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = fastwgan.train(G, D, data, steps=warmup + 2, batch_size=sizes[key]["batch"], n_critic=5, lam=lam,
                           device=device, eval_samples=0, log_every=1, eval_every=1, on_eval=hook,
                           progress=False, plots=False, seed=0, **_settings(case))
    said = [str(w.message) for w in caught if str(w.message).startswith("fastwgan")]
    for message in said:
        print(f"{case}: {message}", file=sys.stderr)
    if r.steps_done != warmup + 1:
        raise RuntimeError(f"{case}: the run stopped at step {r.steps_done}, not after the profiled "
                           f"iteration {warmup + 1}")
    facts = {"asked": _asked(case), "step_mode": r.step_mode, "precision": r.config["precision"],
             "batch": sizes[key]["batch"], "n_critic": 5, "iteration_wall_ms": round(hook.wall_s * 1e3, 3),
             "run_wall_s": round(time.perf_counter() - t0, 2), "sizes": sizes[key], "warnings": said}
    return hook.prof, facts


def activities_of(prof, device: str) -> list:
    """The profile's GPU activities (kernels, copies, sets) on CUDA; on the CPU its outermost ATen
    operators (those no other ATen operator called: what Python dispatched, one after another)."""
    events = prof.events()
    if device == "cuda":
        return [e for e in events if e.device_type == DeviceType.CUDA]
    return [e for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::")
            and not nested_in_aten(e)]


def timeline(intervals: list[tuple[float, float]]) -> dict:
    """Busy time (union of the intervals), span, and the idle gaps between consecutive intervals
    (sorted by start; overlapping ones leave no gap), all in microseconds."""
    if not intervals:
        return {"busy_us": 0.0, "span_us": 0.0, "idle_share": None, "gaps": {"count": 0}}
    spans = sorted(intervals)
    busy, gaps = 0.0, []
    cur_start, cur_end = spans[0]
    for start, end in spans[1:]:
        if start > cur_end:
            busy += cur_end - cur_start
            gaps.append(start - cur_end)
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    busy += cur_end - cur_start
    span = max(e for _, e in spans) - spans[0][0]
    out = {"busy_us": round(busy, 1), "span_us": round(span, 1),
           "idle_share": round(1 - busy / span, 4) if span > 0 else 0.0, "gaps": {"count": len(gaps)}}
    if gaps:
        gaps.sort()
        out["gaps"].update(total_us=round(sum(gaps), 1), median_us=round(statistics.median(gaps), 2),
                           p90_us=round(gaps[int(0.9 * (len(gaps) - 1))], 2), max_us=round(gaps[-1], 1))
    return out


def is_copy(name: str) -> bool:
    return name.startswith(("Memcpy", "Memset", "memcpy", "memset"))


def summarize(prof, device: str, facts: dict) -> dict:
    """A case's numbers: activity counts, host launch calls, busy / span / gaps, top activities."""
    acts = activities_of(prof, device)
    per_name: dict[str, list[float]] = {}
    for e in acts:
        per_name.setdefault(e.name, []).append(e.time_range.end - e.time_range.start)
    total = sum(sum(v) for v in per_name.values()) or 1.0
    top = sorted(per_name.items(), key=lambda kv: -sum(kv[1]))[:TOP]
    launches = {}
    if device == "cuda":
        for e in prof.events():
            if e.device_type == DeviceType.CPU and e.name in LAUNCH_CALLS:
                launches[e.name] = launches.get(e.name, 0) + 1
    return {**facts,
            "unit": "GPU activity" if device == "cuda" else "outermost ATen operator (CPU stand-in for a kernel)",
            "count": len(acts), "kernels": sum(1 for e in acts if not is_copy(e.name)),
            "copies_and_sets": sum(1 for e in acts if is_copy(e.name)), "host_launch_calls": launches,
            **timeline([(e.time_range.start, e.time_range.end) for e in acts]),
            "top": [{"name": n, "calls": len(v), "total_us": round(sum(v), 1), "share": round(sum(v) / total, 4)}
                    for n, v in top]}


def machine(device: str) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "fastwgan": fastwgan.__version__,
           "device": device}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        pass
    return out


def _short(name: str, n: int = 90) -> str:
    return name if len(name) <= n else name[: n - 3] + "..."


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"### One training iteration under torch.profiler ({m['device']})", "",
             f"Generated by `{result['command']}` on {m.get('gpu', platform.processor() or 'CPU')}, torch "
             f"{m['torch']}, triton {m.get('triton', '-')}, Python {m['python']}. One generator iteration "
             f"(n_critic 5 critic steps + 1 generator step) after {result['warmup']} warm-up iterations.", ""]
    if m["device"] != "cuda":
        lines += ["On the CPU, at reduced sizes: the outermost ATen operators stand in for kernels; this only "
                  "shows the script runs, it is no measurement of a GPU.", ""]
    lines += ["| case | mode | precision | host wall | activities (kernels + copies) | host launch calls | busy | "
              "span | idle | gaps: count, median, max |", "|---|---|---|---|---|---|---|---|---|---|"]
    for case, c in result["cases"].items():
        if "skipped" in c:
            lines.append(f"| {case} | skipped: {c['skipped']} | | | | | | | | |")
            continue
        if "error" in c:
            lines.append(f"| {case} | failed: {c['error'][:200]} | | | | | | | | |")
            continue
        g = c["gaps"]
        calls = ", ".join(f"{k} {v}" for k, v in c["host_launch_calls"].items()) or "-"
        gap = f"{g['count']}, {g.get('median_us', 0):.1f} us, {g.get('max_us', 0):.0f} us" if g["count"] else "0"
        idle = f"{c['idle_share']:.0%}" if c["idle_share"] is not None else "-"
        mode = c["step_mode"] if c["asked"] in ("auto", c["step_mode"]) else \
            f"{c['step_mode']} (asked: {c['asked']}; it fell back, see the warnings below)"
        lines.append(f"| {case} | {mode} | {c['precision']} | {c['iteration_wall_ms']:.1f} ms | "
                     f"{c['count']} ({c['kernels']} + "
                     f"{c['copies_and_sets']}) | {calls} | {c['busy_us'] / 1e3:.3f} ms | {c['span_us'] / 1e3:.3f} ms "
                     f"| {idle} | {gap} |")
    said = [(case, w) for case, c in result["cases"].items() for w in c.get("warnings", [])]
    if said:
        lines += ["", "fastwgan's warnings:", ""] + [f"- {case}: {w}" for case, w in said]
    for case, c in result["cases"].items():
        if "top" not in c:
            continue
        lines += ["", f"Top {len(c['top'])} of `{case}` by time ({c['unit']}):", "",
                  "| name | calls | total | share |", "|---|---|---|---|"]
        lines += [f"| `{_short(t['name'])}` | {t['calls']} | {t['total_us']:.1f} us | {t['share']:.1%} |"
                  for t in c["top"]]
    return "\n".join(lines) + "\n"


def run(device: str, out: Path, traces: bool, cases: tuple[str, ...] = CASES, warmup: int = WARMUP,
        command: str = "python benchmarks/gpu_profile.py") -> dict:
    """Profile each case (a failing case is recorded, and the others still run); write the files."""
    sizes = FULL if device == "cuda" else REDUCED
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"command": command, "machine": machine(device), "warmup": warmup, "cases": {}}
    for case in cases:
        if "cuda-graph" in case and device != "cuda":
            result["cases"][case] = {"skipped": "CUDA graphs need a CUDA device"}
            continue
        try:
            prof, facts = profile_case(case, device, sizes, warmup)
        except Exception as e:  # noqa: BLE001 - one case failing must not cost the others' profiles
            result["cases"][case] = {"error": f"{type(e).__name__}: {e}"}
            continue
        result["cases"][case] = summarize(prof, device, facts)
        if traces:
            prof.export_chrome_trace(str(out / f"trace_{case.replace(' ', '_')}.json"))
    (out / "gpu_profile.json").write_text(json.dumps(result, indent=1))
    (out / "gpu_profile.md").write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, help="folder for the results (default: benchmarks/results on CUDA, "
                    "a temporary folder on the CPU, whose numbers are no measurement)")
    ap.add_argument("--traces", action="store_true", help="also write one Chrome trace per case")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible to torch here; use --device cpu for the reduced check")
    out = a.out or (HERE / "results" if a.device == "cuda" else Path(tempfile.gettempdir()) / "fastwgan-gpu-profile")
    command = "python benchmarks/gpu_profile.py" + (" --device cpu" if a.device == "cpu" else "")
    result = run(a.device, out, a.traces, tuple(a.cases), command=command)
    print(markdown(result))
    print(f"wrote {out / 'gpu_profile.md'} and {out / 'gpu_profile.json'}")
    return 1 if any("error" in c for c in result["cases"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
