"""The whole-iteration benchmark (benchmarks/train_loop.py) end to end at smoke size: every
contender's rounds reach the results file through the one harness, and the report compares them at
equal precision. Untimed (the figures of a smoke run are not measurements); skipped under
``--benchmark-only``. The timed run is ``python benchmarks/train_loop.py`` (see its docstring)."""
from __future__ import annotations

import json
import sys

import pytest

import report
import train_loop


def test_smoke_run_writes_every_contender_and_the_report_pairs_equal_precisions(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    rows = train_loop.main(["--groups", "WGAN-GP toy MLP", "--contenders", "textbook", "fastwgan eager"])
    assert {(r["contender"], r["precision"]) for r in rows} == {
        ("textbook", "fp32"), ("textbook", "bf16"), ("fastwgan eager", "fp32"), ("fastwgan eager", "bf16")}
    g = train_loop.smoke_size(train_loop.GROUPS["WGAN-GP toy MLP"])
    for r in rows:  # the warm-up round dropped, the others kept, statistics consistent with them
        assert len(r["round_seconds"]) == r["rounds"] == g.rounds
        assert r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["min_s"] > 0 and r["units_per_round"] == g.iters
    lines = [json.loads(x) for x in (tmp_path / "train_loop.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["run"] + ["measurement"] * 4
    run = lines[0]
    assert run["smoke"] is True and run["threads"] >= 1 and run["machine"]["cores"] >= 1
    assert {"python", "torch", "commit"} <= set(run["versions"])

    md = report.render(tmp_path, include_smoke=True)
    assert md.count("1.00x (baseline)") == 2  # textbook fp32 and textbook bf16, each its own baseline
    assert "What the precision change alone buys" in md
    section = "## " + report.TITLES["train_loop"]
    assert section in md and section not in report.render(tmp_path)  # a smoke run never lands in RESULTS.md


def test_the_jax_contender_runs_through_the_harness_and_meets_fastwgan_in_the_report(tmp_path, monkeypatch):
    pytest.importorskip("jax", reason="the jax.jit contender needs jax: pip install 'fastwgan[bench-jax]'")
    pytest.importorskip("optax", reason="the jax.jit contender needs optax: pip install 'fastwgan[bench-jax]'")
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    rows = train_loop.main(["--groups", "WGAN-GP toy MLP", "--contenders", "textbook", "fastwgan eager", "jax.jit",
                            "--precisions", "fp32"])
    jax_row = next(r for r in rows if r["contender"] == "jax.jit")
    assert jax_row["compile_seconds"] > 0 and jax_row["rounds"] == train_loop.smoke_size(
        train_loop.GROUPS["WGAN-GP toy MLP"]).rounds and not jax_row["baseline"]
    md = report.render(tmp_path, include_smoke=True)
    line = next(x for x in md.splitlines() if x.startswith("| WGAN-GP toy MLP | fp32 | fastwgan eager |"))
    ratio = jax_row["median_s"] / next(r for r in rows if r["contender"] == "fastwgan eager")["median_s"]
    assert f"| {ratio:.2f}x |" in line and "| same run |" in line


def test_without_jax_the_contender_is_skipped_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax raises ImportError, as where it is not installed
    assert train_loop.main(["--groups", "WGAN-GP toy MLP", "WGAN toy MLP", "--contenders", "jax.jit"]) == []
    out = capsys.readouterr().out
    assert 'jax.jit skipped: jax is not installed (pip install "fastwgan[bench-jax]")' in out
    assert "jax.jit is written for the WGAN-GP groups only" in out
