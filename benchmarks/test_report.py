"""benchmarks/report.py on hand-made results: ratios only at equal precision, the newest real run,
time-to-quality rows, fragments verbatim. Fast and untimed; skipped under ``--benchmark-only``."""
from __future__ import annotations

import json

import report

ENV = dict(date="2026-01-01 00:00 UTC", machine=dict(cpu="Test CPU", cores=2, isa=["avx512_bf16"], capability="AVX512",
                                                     gpu=None),
           versions=dict(python="3.11", torch="2.13.0", fastwgan="0.1.0", commit="abc"), threads=2)


def _run(run_id: str, smoke: bool = False, suite: str = "train_loop") -> dict:
    return dict(kind="run", suite=suite, run=run_id, command=f"python benchmarks/{suite}.py", smoke=smoke, **ENV)


def _m(run_id: str, contender: str, precision: str, median: float, baseline: bool = False) -> dict:
    return dict(kind="measurement", suite="train_loop", run=run_id, group="toy", contender=contender,
                precision=precision, shapes="MLP", unit="generator iteration", units_per_round=5, warmup=1,
                baseline=baseline, median_s=median, min_s=median, max_s=median, q1_s=median, q3_s=median, rounds=3)


def _write(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_speed_ratios_pair_equal_precisions_and_use_the_newest_real_run(tmp_path):
    _write(tmp_path / "train_loop.jsonl", [
        _run("old"), _m("old", "textbook", "fp32", 9.0, True), _m("old", "fastwgan", "fp32", 1.0),
        _run("new"),
        _m("new", "textbook", "fp32", 0.100, True), _m("new", "fastwgan", "fp32", 0.050),
        _m("new", "textbook", "bf16", 0.040, True), _m("new", "fastwgan", "bf16", 0.020),
        _run("smoke", smoke=True), _m("smoke", "textbook", "fp32", 7.0, True), _m("smoke", "fastwgan", "fp32", 1.0),
    ])
    md = report.render(tmp_path)
    fastwgan_row = next(line for line in md.splitlines() if line.startswith("|  | fastwgan |"))
    assert fastwgan_row.count("2.00x") == 2  # fp32 vs textbook fp32, bf16 vs textbook bf16
    assert "5.00x" not in md  # fastwgan bf16 against textbook fp32 would be a precision change sold as speed
    assert "9.00x" not in md and "7.00x" not in md  # the old run and the smoke run are not reported
    precision_rows = md.split("What the precision change alone buys")[1]
    assert "| toy | textbook | 2.50x |" in precision_rows and "| toy | fastwgan | 2.50x |" in precision_rows
    assert "Command: `python benchmarks/train_loop.py`" in md and "Test CPU, 2 cores" in md


def test_time_to_quality_rows_and_fragments(tmp_path):
    def ttq(contender, precision, seed, warm, reached=True, compile_s=None):
        cold = warm + 30 if compile_s else warm
        r = dict(kind="measurement", suite="time_to_quality", run="r", group="25gaussians", contender=contender,
                 precision=precision, seed=seed, reached=reached, baseline=contender.startswith("textbook"),
                 step=1000 if reached else None, seconds_warm=warm if reached else None,
                 seconds_cold=cold if reached else None)
        if compile_s:
            r.update(compile_seconds=compile_s, compile_seconds_cold=compile_s + 30)
        return r

    _write(tmp_path / "time_to_quality.jsonl", [
        _run("r", suite="time_to_quality"),
        ttq("textbook bf16", "bf16", 0, 100.0), ttq("textbook bf16", "bf16", 1, 120.0),
        ttq("textbook bf16", "bf16", 2, 0, reached=False),
        ttq("fastwgan fastest", "bf16", 0, 40.0, compile_s=10), ttq("fastwgan fastest", "bf16", 1, 60.0, compile_s=10),
        ttq("textbook fp32", "fp32", 0, 500.0),
    ])
    (tmp_path / "notes.md").write_text("Hand-written notes.\n")
    (tmp_path / "gpu_derived.md").write_text("GPU fragment.\n")
    md = report.render(tmp_path)
    tb = next(line for line in md.splitlines() if "| textbook bf16 |" in line)
    assert "| 2/3 |" in tb and "110.0 s [100.0-120.0]" in tb
    fast = next(line for line in md.splitlines() if "| fastwgan fastest |" in line)
    assert "50.0 s [40.0-60.0]" in fast and "80.0 s [70.0-90.0]" in fast  # warm, and cold (+30 s compile)
    assert fast.rstrip(" |").endswith("2.20x | 10.00x")  # 110 / 50 against textbook bf16; 500 / 50 against fp32
    assert md.index("gpu_derived.md") < md.index("notes.md")  # fragments verbatim, the notes last
    assert "Hand-written notes." in md and "GPU fragment." in md


def test_a_partial_run_replaces_only_what_it_measured(tmp_path):
    def m(run_id, group, contender, median):
        return dict(_m(run_id, contender, "fp32", median, baseline=contender == "textbook"), group=group)

    _write(tmp_path / "train_loop.jsonl", [
        _run("whole"), m("whole", "toy", "textbook", 0.4), m("whole", "toy", "fastwgan", 0.2),
        m("whole", "dcgan", "textbook", 3.0), m("whole", "dcgan", "fastwgan", 1.0),
        _run("part"), m("part", "dcgan", "textbook", 3.0), m("part", "dcgan", "fastwgan", 1.5),
    ])
    md = report.render(tmp_path)
    assert "2.00x" in md  # toy: still the whole run's
    assert "3.00x" not in md and md.count("2.00x") == 2  # dcgan: the partial run's (3.0 / 1.5), not 3.0 / 1.0
    assert md.count("Command: `python benchmarks/train_loop.py`") == 2  # each run under its own header


def test_mnist_rows_add_seeds_across_runs_and_bound_a_ratio_the_baseline_never_reached(tmp_path):
    def m(run, contender, seed, hits, final_s, fds, precision="fp32"):
        steps = [1000 * (i + 1) for i in range(len(fds) - 5)] + [9000, 9250, 9500, 9750, 10000]  # last 5: last 10%
        points = [dict(step=step, seconds=final_s * step / 10000, fd=fd, fd_floor=5.0, classes_covered=10, kl=0.01)
                  for step, fd in zip(steps, fds, strict=True)]
        return dict(kind="measurement", suite="mnist_quality", run=run, group="mnist wgan-gp", data="mnist",
                    loss="wgan-gp", contender=contender, seed=seed, precision=precision, step_mode="eager",
                    baseline=contender.startswith("textbook"), points=points, final=points[-1],
                    reached={f"fd_{k}x": (dict(step=250, seconds=s) if s else None) for k, s in hits.items()})

    _write(tmp_path / "mnist_quality.jsonl", [
        _run("a", suite="mnist_quality"),
        m("a", "textbook fp32", 0, {10: 100.0, 3: None}, 200.0, [60, 40, 30, 30, 30, 30, 30]),
        m("a", "fastwgan fastest", 0, {10: 10.0, 3: 40.0}, 50.0, [60, 20, 12, 14, 13, 11, 40], "bf16"),
        _run("b", suite="mnist_quality"),
        *[m("b", "fastwgan fastest", s, {10: 20.0, 3: 50.0}, 60.0, [60, 20, 10, 12, 11, 9, 30], "bf16")
          for s in (1, 2)],
    ])
    md = report.render(tmp_path)
    row = next(line for line in md.splitlines() if line.startswith("| mnist wgan-gp | fastwgan fastest |"))
    assert "| 3 |" in row  # seeds 0 (run a) and 1, 2 (run b) in one row
    assert "> 4.00x at 3x floor (the textbook loop never reached it in 200 s)" in row  # 200 s / median 50 s
    assert "| 11.7 +- 0.9 (5.0) |" in row  # the median of each seed's last 5 FDs (13, 11, 11), not its last spike
