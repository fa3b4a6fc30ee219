"""benchmarks/profile_step.py: operators land in the right groups, and a smoke-size run profiles only
its window of steps into the results fragment. Untimed; skipped under ``--benchmark-only``."""
from __future__ import annotations

import profile_step


def test_operators_are_grouped_by_what_they_are():
    assert profile_step.kind_of("aten::mm") == profile_step.kind_of("aten::addmm") == "matrix products"
    assert profile_step.kind_of("## Call CompiledFxGraph f2umkl ##") == "compiled fused kernels (inductor)"
    assert profile_step.kind_of("aten::normal_") == "random draws and data"
    assert profile_step.kind_of("aten::copy_") == "copies and casts"
    assert profile_step.kind_of("aten::threshold_backward") == "other"  # not a matrix product: no prefix match
    assert profile_step.kind_of("aten::t") == "other"  # "to" is matched whole, not as a prefix of "t"


def test_a_smoke_run_profiles_its_window_into_the_fragment(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    monkeypatch.setattr(profile_step, "WARMUP", 10)
    profile_step.main(["--data", "8gaussians", "--steps", "20"])
    text = (tmp_path / "profile_8gaussians.md").read_text()
    assert "steps 10-30 profiled" in text and "Run: eager" in text  # 8gaussians' default run is eager
    assert "| matrix products |" in text and "`aten::addmm`" in text
