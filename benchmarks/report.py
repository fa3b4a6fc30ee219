"""Generate benchmarks/RESULTS.md from the results files (never edit RESULTS.md by hand).

    python benchmarks/report.py [--results benchmarks/results] [--out benchmarks/RESULTS.md]

For each ``<suite>.jsonl`` written by the harness (benchmarks/_bench.py) the newest run that is
not a smoke run gives one section: its command, machine, versions, date and thread count, then a
table with one row per (group, contender) and, per precision, the median seconds per unit with
the quartiles of the rounds and the ratio against the group's plain-PyTorch baseline *at that
precision* (fastwgan bf16 against textbook bf16, fp32 against fp32). What a precision change buys
is a table of its own (the same contender, bf16 against fp32), never folded into a speed-up.
Time-to-quality runs (time_to_quality*.jsonl) get their own table. The whole-iteration section
opens with fastwgan's fastest contender against the ``jax.jit`` program at each precision (ratio
of medians, each side naming its run); the matrix-product floor (matmul_floor.jsonl) is set beside
fastwgan's fastest iteration at the same precision (% of floor). Each (group, contender) comes
from the newest run that measured it, so a run of part of a suite (``--criteria 8gaussians``, one
candidate recipe) replaces only what it measured; each run shown has its own header.
A summary comes first: each time-to-quality criterion's contenders against the textbook fp32 loop,
with the ratio of medians computed here even where the two come from separate runs (each row names
the runs' dates and CPUs), so that no ratio is ever divided by hand.
Then every Markdown fragment in the results folder (``*.md``, written by another script, which says
so in its first lines) is included verbatim under a heading naming its file. Hand-written notes
live in benchmarks/NOTES.md, never here: a fragment that does not say it is generated is refused.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRECISIONS = ("fp32", "bf16", "fp16")
TITLES = {
    "train_loop": "Whole training iterations: fastwgan against the textbook loop, at equal precision",
    "train_loop_scaling": "Whole WGAN-GP iterations over batch and width, at equal precision",
    "gradient_penalty": "Gradient-penalty critic step and its kernels",
    "clipped_rmsprop": "Fused clipped RMSProp (the WGAN critic update)",
    "time_to_quality": "Time to quality",
    "time_to_quality_to_end": "Time to quality and the final quality at equal steps (runs to the full budget)",
    "mnist_quality": "MNIST and Stacked MNIST: image quality at equal steps and time to quality",
    "compile_cache": "Compile cache: compiling the training step cold, and loading it in the next process",
    "matmul_floor": "The matrix-product floor of one iteration: counted GFLOP at this CPU's product rate",
}
COMMANDS = (
    ("pytest benchmarks/ --benchmark-only", "every kernel and critic step against plain PyTorch (minutes)"),
    ("python benchmarks/train_loop.py", "whole iterations, 8 contenders x 3 groups (jax.jit: WGAN-GP groups, with "
     "`pip install \"fastwgan[bench-jax]\"`), compile time apart (about 15 minutes on 2 idle cores, most of it "
     "compiling on a fresh cache)"),
    ("python benchmarks/matmul_floor.py", "GFLOP of matrix products per WGAN-GP iteration (counted) and this CPU's "
     "rate at those products' shapes, fp32 and bf16: the floor an iteration cannot beat (a few minutes)"),
    ("python benchmarks/train_loop.py --scaling", "the same over batch and width (about 25 minutes)"),
    ("python benchmarks/time_to_quality.py", "time to quality, 2 criteria x 4 contenders x 3 seeds (about 1.5-2 "
     "hours on 2 idle cores)"),
    ("python benchmarks/time_to_quality.py --to-end --criteria 8gaussians", "the same run to the full budget, "
     "with the final W1 at equal steps (quality parity)"),
    ("python benchmarks/mnist_quality.py", "MNIST: FD against step and wall time, 3 losses and their contenders, "
     "two runs at a time on one core each (about 1 hour; its docstring has the stacked-mnist, image-folder and "
     "20000-step runs)"),
    ("python benchmarks/profile_step.py", "where a default 25gaussians run's compiled step spends its time "
     "(torch.profiler, about 1 minute)"),
    ("python benchmarks/compile_cache.py", "compile time of the default step: cold, warm from fastwgan's cache in "
     "a new process, and cold with one compile thread (about 10 minutes)"),
)
ORDER = ("mnist_quality", "time_to_quality", "time_to_quality_to_end", "compile_cache", "train_loop", "matmul_floor",
         "train_loop_scaling", "gradient_penalty", "clipped_rmsprop")


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_runs(path: Path, include_smoke: bool = False) -> list[tuple[dict, list[dict]]]:
    """Every run in ``path``, oldest first, each with its measurements (withdrawn ones are listed
    apart: withdrawn_section); smoke runs only with ``include_smoke``."""
    runs: dict[str, dict] = {}
    rows: dict[str, list[dict]] = defaultdict(list)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}:{n}: not JSON ({e}); delete or fix that line and run report.py again")
        if rec.get("kind") == "run":
            runs[rec["run"]] = rec
        elif rec.get("kind") == "measurement" and not rec.get("withdrawn"):
            rows[rec["run"]].append(rec)
    return [(run, rows[name]) for name, run in runs.items() if include_smoke or not run.get("smoke")]


def newest_runs(path: Path, include_smoke: bool = False) -> list[tuple[dict, list[dict]]]:
    """The runs in ``path`` that hold the newest measurements of some (group, contender, precision,
    seed), oldest first, each with those measurements: a run of part of a suite (one criterion, one
    candidate recipe, one precision, more seeds) replaces only what it measured."""
    def key(r: dict) -> tuple:  # what one measurement stands for: seeds of one contender add up
        return r.get("group"), r.get("contender"), r.get("precision"), r.get("seed")

    every = read_runs(path, include_smoke)
    newest = {key(r): run["run"] for run, rows in every for r in rows}
    return [(run, [r for r in rows if newest[key(r)] == run["run"]])
            for run, rows in every if run["run"] in newest.values()]


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------
def fmt_time(s: float) -> str:
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms" if s < 0.1 else f"{s * 1e3:.0f} ms"
    return f"{s * 1e6:.3g} us"


def fmt_cell(m: dict) -> str:
    return f"{fmt_time(m['median_s'])} [{fmt_time(m['q1_s'])}-{fmt_time(m['q3_s'])}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def run_header(run: dict) -> list[str]:
    m, v = run["machine"], run["versions"]
    gpu = f"; GPU {m['gpu']}" if m.get("gpu") else "; no GPU"
    return [
        f"Command: `{run['command']}`",
        "",
        f"Run {run['date']}: {m['cpu']}, {m['cores']} cores (bf16 instructions: {', '.join(m['isa']) or 'none'}; "
        f"torch CPU capability {m['capability']}{gpu}), {run['threads']} threads; Python {v['python']}, "
        f"torch {v['torch']}, fastwgan {v['fastwgan']} at {v['commit']}.",
        "",
    ]


# ------------------------------------------------------------------------------------------------
# speed tables (every suite but time_to_quality)
# ------------------------------------------------------------------------------------------------
def _by_key(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["group"], r["contender"], r["precision"]): r for r in rows}


def _extra(r: dict) -> str:
    bits = []
    if "compile_seconds" in r:
        bits.append(f"compile {r['compile_seconds']:.1f} s")
    if "step_mode" in r and "compiled" in r["contender"] and r["step_mode"] != "compiled":
        bits.append(f"**ran {r['step_mode']}: the compile fell back**")
    if "peak_mib" in r and r["peak_mib"] == r["peak_mib"]:
        bits.append(f"peak {r['peak_mib']} MiB")
    if "bytes_moved" in r or "fused_bytes" in r:
        nbytes = r.get("bytes_moved", r.get("fused_bytes"))
        bits.append(f"{nbytes / r['median_s'] / 1e9:.1f} GB/s")
    return ", ".join(bits)


def speed_section(rows: list[dict]) -> list[str]:
    """One row per (group, contender); per precision: median [quartiles] and the ratio against the
    baseline of the same group at the same precision."""
    precisions = [p for p in PRECISIONS if any(r["precision"] == p for r in rows)]
    by = _by_key(rows)
    base = {(r["group"], r["precision"]): r for r in rows if r.get("baseline")}
    groups = list(dict.fromkeys(r["group"] for r in rows))
    header = ["group (unit)", "contender"]
    for p in precisions:
        header += [f"{p} median [quartiles]", f"{p} speed-up vs baseline {p}"]
    header.append("notes")
    out_rows = []
    for g in groups:
        first = next(r for r in rows if r["group"] == g)
        label = f"{g}: {first['shapes']} (per {first['unit']})" if first.get("shapes") else f"{g} (per {first['unit']})"
        for c in dict.fromkeys(r["contender"] for r in rows if r["group"] == g):
            cells, notes = [label, c], []
            for p in precisions:
                r, b = by.get((g, c, p)), base.get((g, p))
                cells.append(fmt_cell(r) if r else "")
                ratio = ""
                if r and b:
                    ratio = "1.00x (baseline)" if b is r else f"{b['median_s'] / r['median_s']:.2f}x"
                cells.append(ratio)
                if r and _extra(r):
                    notes.append(f"{p}: {_extra(r)}")
            out_rows.append(cells + ["; ".join(notes)])
            label = ""
    lines = table(header, out_rows)
    lines += precision_section(rows)
    return lines


def precision_section(rows: list[dict]) -> list[str]:
    """What bf16 buys: the same contender, fp32 time / bf16 time (a precision change, not a speed-up
    of fastwgan over anything)."""
    by = _by_key(rows)
    out_rows = []
    for (g, c, p), r in by.items():
        if p != "bf16" or (g, c, "fp32") not in by:
            continue
        out_rows.append([g, c, f"{by[(g, c, 'fp32')]['median_s'] / r['median_s']:.2f}x"])
    if not out_rows:
        return []
    return ["", "What the precision change alone buys (the same contender, fp32 median / bf16 median; "
            "not a speed-up of fastwgan):", ""] + table(["group", "contender", "bf16 vs fp32"], out_rows)


# ------------------------------------------------------------------------------------------------
# whole iterations: fastwgan's best against the JAX program; the matrix-product floor
# ------------------------------------------------------------------------------------------------
JAX = "jax.jit"


def _where(run: dict) -> str:
    return f"{run['date']}, {run['machine']['cpu']}"


def best_fastwgan(found: list[tuple[dict, list[dict]]]) -> dict[tuple[str, str], tuple[dict, dict]]:
    """(group, precision) -> (row, run) of the fastest fastwgan contender in the newest rows."""
    best: dict[tuple[str, str], tuple[dict, dict]] = {}
    for run, rows in found:
        for r in rows:
            k = (r["group"], r["precision"])
            if r["contender"].startswith("fastwgan") and (k not in best or r["median_s"] < best[k][0]["median_s"]):
                best[k] = (r, run)
    return best


def jax_section(found: list[tuple[dict, list[dict]]]) -> list[str]:
    """Per group and precision: fastwgan's fastest contender against the jax.jit program at the
    same precision, ratio = jax.jit median / fastwgan best median (> 1: fastwgan is faster), across
    the suite's newest rows (each side names its run)."""
    jax = {(r["group"], r["precision"]): (r, run) for run, rows in found for r in rows if r["contender"] == JAX}
    best = best_fastwgan(found)
    out_rows = []
    for (g, p), (j, jrun) in jax.items():
        if (g, p) not in best:
            continue
        f, frun = best[(g, p)]
        same = "same run" if frun is jrun else f"{_where(frun)} / {_where(jrun)}"
        out_rows.append([g, p, f["contender"], fmt_cell(f), fmt_cell(j), f"{j['median_s'] / f['median_s']:.2f}x",
                         f"{f['compile_seconds']:.1f} s" if "compile_seconds" in f else "none (eager)",
                         f"{j['compile_seconds']:.1f} s" if "compile_seconds" in j else "", same])
    if not out_rows:
        return []
    return ["fastwgan's best path against the whole iteration as one `jax.jit` program (benchmarks/jax_loop.py), "
            "at equal precision:", "",
            *table(["group", "precision", "fastwgan best", "its median [quartiles]", "jax.jit median [quartiles]",
                    "fastwgan best / jax.jit (speed: jax.jit median / fastwgan median)", "fastwgan compile",
                    "jax.jit compile", "runs (fastwgan / jax.jit)"], out_rows), ""]


def floor_section(rows: list[dict], train: list[tuple[dict, list[dict]]]) -> list[str]:
    """Per group, precision and program (the textbook's products, fastwgan's pruned ones, fastwgan's
    at this CPU's best rate for one product): GFLOP of matrix products per iteration (counted), the
    rate, the floor (GFLOP / rate), and fastwgan's best iteration at
    the same precision from the newest whole-iteration rows: % of floor = floor / fastwgan; for a
    ``--paired`` run, fastwgan's compiled step timed between the floors' rounds in the same process,
    with the ratio's range over the rounds."""
    best = best_fastwgan(train)
    paired = {(r["group"], r["precision"]): r for r in rows if "iters_per_round" in r}  # matmul_floor --paired
    out_rows = []
    for r in rows:
        if "iters_per_round" in r:
            continue  # the step timed beside the floors: shown in their rows
        b = [paired[(r["group"], r["precision"])]] if "paired_with" in r else best.get((r["group"], r["precision"]))
        pct = f"{100 * r['median_s'] / b[0]['median_s']:.0f}% ({b[0]['contender']})" if b else ""
        if "floor_over_step_by_round" in r:
            by_round = r["floor_over_step_by_round"]
            pct += f"; by round {100 * min(by_round):.0f}-{100 * max(by_round):.0f}%"
        out_rows.append([r["group"], r["precision"], r["contender"], f"{r['gflop']:.2f}", f"{r['gflop'] / r['median_s']:.0f}",
                         f"{r['median_s'] * 1e3:.1f} [{r['q1_s'] * 1e3:.1f}-{r['q3_s'] * 1e3:.1f}]",
                         f"{b[0]['median_s'] * 1e3:.1f}" if b else "", pct, r.get("counted", "")])
    return table(["group", "precision", "products of", "GFLOP per iteration (counted)", "GFLOP/s (at its product shapes)",
                  "floor ms [quartiles]", "fastwgan best ms (same precision)", "% of floor (floor / fastwgan)",
                  "products counted"], out_rows)


def paired_section(path: Path, include_smoke: bool = False) -> list[str]:
    """Every ``--paired`` run of matmul_floor.py, not only the newest: the compiled step's speed
    depends on the process (its memory layout: benchmarks/NOTES.md), so each process's ratio is
    listed (the median over its rounds of floor / step), oldest first."""
    per = defaultdict(list)
    for _, rows in read_runs(path, include_smoke):
        for r in rows:
            if "floor_over_step_by_round" in r:
                per[(r["group"], r["precision"], r["contender"])].append(statistics.median(r["floor_over_step_by_round"]))
    rows = [[g, p, c, str(len(v)), ", ".join(f"{100 * x:.0f}%" for x in v), f"{100 * statistics.median(v):.0f}%"]
            for (g, p, c), v in per.items()]
    if not rows:
        return []
    return ["Every `--paired` run (one process each), oldest first:", "",
            *table(["group", "precision", "products of", "processes", "floor / compiled step, per process",
                    "median over processes"], rows), ""]


# ------------------------------------------------------------------------------------------------
# time to quality
# ------------------------------------------------------------------------------------------------
def _median_spread(xs: list[float]) -> str:
    if not xs:
        return "not reached"
    if len(xs) == 1:
        return f"{xs[0]:.1f} s"
    return f"{statistics.median(xs):.1f} s [{min(xs):.1f}-{max(xs):.1f}]"


def ttq_section(rows: list[dict]) -> list[str]:
    """One row per (criterion, contender): runs that reached it, median [min-max] time to it with
    a warm and with a cold compile cache, steps, and the ratio of medians (warm) against the textbook
    loop at the same precision, and against the textbook fp32 recipe: time to the same quality is
    what a user waits for whatever the precision, so that second ratio is not a per-iteration
    speed-up and is labelled as what it is."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["group"], r["contender"], r["precision"])].append(r)
    med = {k: statistics.median(x["seconds_warm"] for x in v if x["reached"])
           for k, v in groups.items() if any(x["reached"] for x in v)}
    base_of = {(g, p): c for (g, c, p), v in groups.items() if any(x.get("baseline") for x in v)}
    has_final = any("final_w1" in r for r in rows)
    out_rows = []
    for (g, c, p), runs in groups.items():
        ok = [x for x in runs if x["reached"]]
        warm = [x["seconds_warm"] for x in ok]
        cold = [x["seconds_cold"] for x in ok]
        steps = sorted(x["step"] for x in ok)
        b = base_of.get((g, p))
        base = med.get((g, b, p)) if b else None
        ratio = f"{base / med[(g, c, p)]:.2f}x" if base and (g, c, p) in med and c != b else ""
        b32 = base_of.get((g, "fp32"))
        base32 = med.get((g, b32, "fp32")) if b32 else None
        ratio32 = f"{base32 / med[(g, c, p)]:.2f}x" if base32 and (g, c, p) in med and c != b32 else ""
        compile_s = [x["compile_seconds"] for x in runs if x.get("compile_seconds")]
        cold_s = [x["compile_seconds_cold"] for x in runs if x.get("compile_seconds_cold")]
        comp = (f"{statistics.median(compile_s):.0f} s warm / {statistics.median(cold_s):.0f} s cold"
                if compile_s and cold_s else "")
        crit = f"{g}: {runs[0]['criterion']}" if runs[0].get("criterion") else g
        finals = [x["final_w1"] for x in runs if "final_w1" in x]
        final = f"{statistics.mean(finals):.3f} +- {statistics.pstdev(finals):.3f}" if finals else ""
        out_rows.append([crit, c, p, f"{len(ok)}/{len(runs)}", _median_spread(warm), _median_spread(cold),
                         ", ".join(str(s) for s in steps), comp, ratio, ratio32] + ([final] if has_final else []))
    header = ["criterion", "contender", "precision", "seeds reaching it", "time to it, warm cache: median [min-max]",
              "cold cache", "steps", "compile (included)", "sooner than the textbook loop at the same precision",
              "sooner than the textbook fp32 recipe (same quality)"]
    header += ["final W1 at the budget (5 draws), mean +- std over seeds"] if has_final else []
    return table(header, out_rows)


def ttq_summary(found: list[tuple[dict, list[dict]]]) -> list[str]:
    """Per criterion, each contender's median time to it (warm cache, the seeds that reached it)
    and the ratio against the textbook fp32 loop's median on the same criterion, across runs: the
    newest measurement of each (criterion, contender, seed) wherever it was taken."""
    when: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for run, rows in found:
        for r in rows:
            k = (r["group"], r["contender"], r["precision"])
            groups[k].append(r)
            when[k].add(f"{run['date'][:10]}, {run['machine']['cpu']}")
    med = {k: statistics.median(x["seconds_warm"] for x in v if x["reached"])
           for k, v in groups.items() if any(x["reached"] for x in v)}
    out_rows = []
    for (g, c, p), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "textbook fp32")):
        base = med.get((g, "textbook fp32", "fp32"))
        ratio = "1.00x (baseline)" if c == "textbook fp32" else (
            f"{base / med[(g, c, p)]:.2f}x" if base and (g, c, p) in med else "")
        reached = [x["seconds_warm"] for x in runs if x["reached"]]
        crit = f"{g}: {runs[0]['criterion']}" if runs[0].get("criterion") else g
        out_rows.append([crit, c, p, f"{len(reached)}/{len(runs)}", _median_spread(reached), ratio,
                         "; ".join(sorted(when[(g, c, p)]))])
    return table(["criterion", "contender", "precision", "seeds reaching it", "time to it, warm cache: median [min-max]",
                  "sooner than the textbook fp32 loop (same criterion)", "measured (date, CPU)"], out_rows)


def _mean_std(xs: list[float], fmt: str = ".1f") -> str:
    if not xs:
        return ""
    if len(xs) == 1:
        return f"{xs[0]:{fmt}}"
    return f"{statistics.mean(xs):{fmt}} +- {statistics.pstdev(xs):{fmt}}"


def _seconds_per_step(points: list[dict]) -> float:
    """The steady rate between the first and the last evaluation (set-up and compiling, which
    come before the first, left out); the whole run's rate when there is one evaluation."""
    a, b = points[0], points[-1]
    if b["step"] > a["step"]:
        return (b["seconds"] - a["seconds"]) / (b["step"] - a["step"])
    return b["seconds"] / b["step"]


LATE = 5  # evaluations at the end of a run behind its final FD (one FD scatters by tens of percent)


def _late(points: list[dict]) -> list[float]:
    """The FDs of a run's last LATE evaluations that lie in its last 10% of steps (at least the last one)."""
    end = points[-1]["step"]
    return [p["fd"] for p in points[-LATE:] if p["step"] >= 0.9 * end] or [points[-1]["fd"]]


def _late_fd(points: list[dict]) -> float:
    """The median of :func:`_late`: a run's final quality, robust to one spike."""
    return statistics.median(_late(points))


def _late_spread(runs: list[dict]) -> str:
    """min-max of :func:`_late` per seed: how much one evaluation scatters at the end."""
    return "; ".join(f"{min(_late(x['points'])):.1f}-{max(_late(x['points'])):.1f}" for x in runs)


def _hits(runs: list[dict], k: int) -> list[float]:
    """Seconds to FD <= k x floor of the runs that reached it."""
    return [x["reached"][f"fd_{k}x"]["seconds"] for x in runs if x["reached"].get(f"fd_{k}x")]


def _median_time(runs: list[dict], k: int) -> float | None:
    """The median time to FD <= k x floor when every run reached it, else None."""
    hits = _hits(runs, k)
    return statistics.median(hits) if len(hits) == len(runs) else None


def _sooner(runs: list[dict], base: list[dict], factors: list[int]) -> str:
    """How much sooner ``runs`` reach the tightest FD factor that both reached (median over
    seeds); where only ``runs`` reached it, a lower bound from the baseline's whole run."""
    for k in sorted(factors):
        mine, theirs = _median_time(runs, k), _median_time(base, k)
        if mine and theirs:
            return f"{theirs / mine:.2f}x at {k}x floor"
        if mine and not _hits(base, k):
            ran = statistics.median(x["final"]["seconds"] for x in base)
            return f"> {ran / mine:.2f}x at {k}x floor (the textbook loop never reached it in {ran:.0f} s)"
    return ""


def mnist_section(rows: list[dict]) -> list[str]:
    """One row per (data and loss, contender): the final FD (mean +- std over seeds) beside its
    floor, classes or modes covered and KL, all at the same step for every contender; then the
    time to FD <= k x floor with every class covered (median over the seeds that reached it), and
    how much sooner than the textbook loop at the same precision, and than the textbook fp32 loop,
    at the tightest k both reached (a time to the same quality, never a per-iteration speed-up)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["group"], r["contender"])].append(r)
    factors = sorted({int(k.split("_")[1][:-1]) for r in rows for k in r["reached"]}, reverse=True)

    def order(gc: tuple[str, str]) -> tuple:  # real data first, then each loss: textbook, fastwgan fp32, the rest
        g, c = gc
        words = g.replace(",", "").split()
        loss = next((i for i, name in enumerate(("wgan-gp", "wgan", "ns-gan")) if name in words), 9)
        return words[0], "real" not in words, loss, g, not c.startswith("textbook"), c != "fastwgan fp32", c

    out_rows = []
    for (g, c), runs in sorted(groups.items(), key=lambda item: order(item[0])):
        base = groups.get((g, "textbook fp32"))
        fin = [x["final"] for x in runs]
        count = "classes_covered" if "classes_covered" in fin[0] else "modes_covered"
        cells = [g, c, runs[0]["precision"], runs[0]["step_mode"], str(len(runs)), str(fin[0]["step"]),
                 "-" if runs[0]["step_mode"] == "no training" else
                 f"{statistics.median(_seconds_per_step(x['points']) for x in runs) * 1e3:.0f} ms",
                 ", ".join(f"{x['compile_seconds']:.0f} s" for x in runs if x.get("compile_seconds")),
                 f"{_mean_std([_late_fd(x['points']) for x in runs])} ({fin[0]['fd_floor']:.1f})",
                 _late_spread(runs),
                 _mean_std([float(f[count]) for f in fin]), _mean_std([f["kl"] for f in fin], ".3f")]
        for k in factors:
            hits = _hits(runs, k)
            cells.append(f"{_median_spread(hits)} ({len(hits)}/{len(runs)})" if hits
                         else f"not reached (0/{len(runs)})")
        same = groups.get((g, f"textbook {runs[0]['precision']}"))
        cells.append(_sooner(runs, same, factors) if same and same is not runs else "")
        cells.append(_sooner(runs, base, factors) if base and base is not runs else "")
        out_rows.append(cells)
    header = ["data and loss", "contender", "precision", "step", "seeds", "steps", "time per step",
              "compile (included, per seed)",
              f"final FD: median of the last {LATE} evaluations in the last 10% of steps, mean +- std over "
              "seeds (floor)",
              "one evaluation's scatter: min-max of those, per seed", "classes / modes covered at the end",
              "KL at the end"]
    header += [f"time to FD <= {k}x floor, all classes: median [min-max]" for k in factors]
    header += ["sooner than the textbook loop at the same precision",
               "sooner than the textbook fp32 loop (same criterion)"]
    return table(header, out_rows)


def mnist_pictures(rows: list[dict], results: Path) -> list[str]:
    """The FD curves (mnist_quality.py draws them) and each row's sample grid at its last step
    (seed 0), as images linked relative to RESULTS.md."""
    rel = "results" if results.resolve() == (HERE / "results").resolve() else str(results)
    out = []
    if (results / "mnist_fd.png").exists():
        out += ["", f"![FD / floor against step and wall time]({rel}/mnist_fd.png)"]
    newest = {r["grid"]: (r["group"], r["contender"]) for r in rows if r.get("grid")}  # the run that wrote it last
    grids = [(g, c, path) for path, (g, c) in newest.items() if (results / path).exists()]
    if grids:
        out += ["", "Samples at the last step, seed 0 (the same noise for every row):", "",
                *table(["data and loss", "contender", "samples"],
                       [[g, c, f"![{g}, {c}]({rel}/{path})"] for g, c, path in grids])]
    return out


# ------------------------------------------------------------------------------------------------
# the document
# ------------------------------------------------------------------------------------------------
def render(results: Path, include_smoke: bool = False) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python benchmarks/report.py` from the results files in `benchmarks/results/` "
        "(one JSON line per measurement, written by the one harness in `benchmarks/_bench.py`); do not "
        "edit by hand. Each section holds the newest measurement of every group and contender of its suite, under the "
        "command and run that produced it. "
        "Speed-ups compare contenders at the same precision only; the median of the timed rounds is the "
        "headline, the quartiles of the rounds are in brackets.",
        "",
        "Reproduce (each appends to its results file; then `python benchmarks/report.py`):",
        "",
        *[f"- `{cmd}`: {what}" for cmd, what in COMMANDS],
        "",
        "How the recipes were found, and published figures to read ours beside, are hand-written notes in "
        "[NOTES.md](NOTES.md).",
        "",
    ]
    files = sorted(results.glob("*.jsonl"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    ttq = results / "time_to_quality.jsonl"
    if ttq.exists() and newest_runs(ttq, include_smoke):
        lines += ["## Summary: time to quality against the textbook fp32 loop", "",
                  "Every criterion's newest measurements, wherever they were taken; ratios of medians computed "
                  "here (the runs behind each row are in \"Time to quality\" below).", "",
                  *ttq_summary(newest_runs(ttq, include_smoke)), ""]
    for path in files:
        found = newest_runs(path, include_smoke)
        if found:
            lines += [f"## {TITLES.get(path.stem, path.stem)}", ""]
        if path.stem == "mnist_quality":  # one table: a run of more seeds adds rows to the earlier runs' groups
            every = [r for _, rows in found for r in rows]
            for run, _ in found:
                lines += run_header(run)
            lines += mnist_section(every) + mnist_pictures(every, results) + [""]
            continue
        if path.stem == "train_loop":
            lines += jax_section(found)
        train = results / "train_loop.jsonl"
        for run, rows in found:
            lines += run_header(run)
            if path.stem == "matmul_floor":
                lines += floor_section(rows, newest_runs(train, include_smoke) if train.exists() else [])
            else:
                lines += ttq_section(rows) if path.stem.startswith("time_to_quality") else speed_section(rows)
            lines.append("")
        if path.stem == "matmul_floor":
            lines += paired_section(path, include_smoke)
    lines += withdrawn_section(files)
    for frag in sorted(results.glob("*.md")):
        lines += [f"## From `benchmarks/results/{frag.name}`", "", generated_fragment(frag), ""]
    return "\n".join(lines).rstrip() + "\n"


def withdrawn_section(files: list[Path]) -> list[str]:
    """Measurements found wrong after they were taken: kept in their results files with a
    ``withdrawn`` reason, left out of every table above, listed here with that reason."""
    rows = []
    for path in files:
        for line in path.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            if rec.get("kind") == "measurement" and rec.get("withdrawn"):
                who, precision = str(rec.get("contender")), rec.get("precision") or ""
                rows.append([path.name, str(rec.get("group")), who if precision in who else f"{who} {precision}",
                             str(rec.get("seed", "")), rec["run"], rec["withdrawn"]])
    if not rows:
        return []
    return ["## Withdrawn measurements", "", "Left out of every table above, for the reason given.", "",
            *table(["file", "group", "contender", "seed", "run", "why"], rows), ""]


def generated_fragment(path: Path) -> str:
    """The text of a fragment another script wrote; it says so ("Generated by" / "Regenerate:") in
    its first lines. Hand-written text belongs in benchmarks/NOTES.md, not in generated results."""
    text = path.read_text().rstrip()
    if not any(w in "\n".join(text.splitlines()[:5]) for w in ("Generated by", "Regenerate:")):
        raise SystemExit(f"{path}: a results fragment must say which command generated it (\"Generated by `...`\" "
                         "in its first lines); hand-written notes go in benchmarks/NOTES.md")
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--include-smoke", action="store_true", help="also use smoke runs (tests of this script)")
    a = ap.parse_args(argv)
    if not a.results.is_dir():
        raise SystemExit(f"no results folder {a.results}: run a benchmark first (see benchmarks/RESULTS.md)")
    a.out.write_text(render(a.results, a.include_smoke))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
