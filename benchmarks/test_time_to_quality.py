"""The time-to-quality harness (benchmarks/time_to_quality.py): its criterion tells a generator of
the real distribution from a collapsed one, and a smoke-size run goes end to end into the results
file and the report. Untimed; skipped under ``--benchmark-only``."""
from __future__ import annotations

import json

import torch

import report
import time_to_quality as ttq
from fastwgan.data import toy_sample


class _Sampler(torch.nn.Module):
    """A 'generator' that ignores its noise: real samples of ``name``, or one point (collapse)."""

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.name, self.w = name, torch.nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.name is None:
            return torch.zeros(z.shape[0], 2) + self.w
        return toy_sample(self.name, z.shape[0], torch.Generator().manual_seed(int(z[0, 0].abs() * 1e6)))


def test_criterion_accepts_the_real_distribution_and_rejects_a_collapse():
    floor = ttq.floor_w1("8gaussians")
    crit = ttq.CRITERIA["8gaussians"]
    real = ttq.Evaluator("8gaussians", crit, floor).measure(100, _Sampler("8gaussians"))
    assert real["reached"] and real["modes"] == 8 and real["high_quality"] >= 0.95
    assert real["w1"] <= crit.w1_factor * floor
    collapsed = ttq.Evaluator("8gaussians", crit, floor).measure(100, _Sampler(None))
    assert not collapsed["reached"] and collapsed["modes"] == 0
    # 25gaussians asks 25 modes: the 8gaussians distribution covers only 8 of them
    wrong = ttq.Evaluator("25gaussians", ttq.CRITERIA["25gaussians"], floor).measure(100, _Sampler("8gaussians"))
    assert not wrong["reached"]


def test_smoke_run_reaches_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    rows = ttq.main(["--seeds", "0", "--criteria", "8gaussians", "--contenders", "textbook fp32", "fastwgan fp32"])
    assert [(r["contender"], r["reached"]) for r in rows] == [("textbook fp32", True), ("fastwgan fp32", True)]
    for r in rows:  # smoke criteria hold at the first evaluation; its time excludes the evaluation
        assert r["step"] == r["every"] and r["seconds_warm"] > 0 and r["seconds_cold"] == r["seconds_warm"]
    lines = [json.loads(x) for x in (tmp_path / "time_to_quality.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["run", "measurement", "measurement"]
    md = report.render(tmp_path, include_smoke=True)
    summary, per_run = md.split("\n## Time to quality\n")
    assert per_run.count("| 1/1 |") == 2 and "sooner than the textbook loop at the same precision" in per_run
    assert summary.count("| 1/1 |") == 2 and "| 1.00x (baseline) |" in summary  # the summary: both, across runs
