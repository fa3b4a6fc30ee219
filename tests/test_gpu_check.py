"""The GPU day's one command, checked without a GPU: benchmarks/gpu_check.sh's plan fits the lent
machine's 8 minutes and lists every step; its pack step returns at most the 8 files the device tool
brings back, with the outcomes read right; benchmarks/gpu_profile.py's numbers (busy time, gaps)
are right on a made-up timeline and its reduced CPU mode runs; and a missing optional package skips
exactly the tests that use it (tests/_optional.py)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import _optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402
import gpu_profile  # noqa: E402

STEPS = ["install", "info", "tests", "bench", "profile", "pack"]
BUDGET_S = 480  # the 8 minutes of one GPU call the plan must fit
STEP = re.compile(r"^step (\d+) (\S+)\s+limit\s+(\d+) s \(\+(\d+) s to kill\): (.*)$")


def dry_run() -> str:
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], capture_output=True,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_plan_lists_every_step_with_limits_that_fit_8_minutes():
    out = dry_run()
    steps = [STEP.match(line).groups() for line in out.splitlines() if STEP.match(line)]
    assert [s[1] for s in steps] == STEPS  # all six, in order: an empty parse cannot pass
    worst = sum(int(limit) + int(grace) for _, _, limit, grace, _ in steps)
    assert worst <= BUDGET_S
    assert f"total: {worst} s of {BUDGET_S} s" in out and worst <= BUDGET_S - 10  # room for the glue between steps
    cmd = {name: c for _, name, _, _, c in steps}
    assert "pip install" in cmd["install"] and "--no-deps" in cmd["install"] and "--no-build-isolation" in cmd["install"]
    assert "-m pytest tests -m cuda" in cmd["tests"]
    assert "-m pytest benchmarks/ --benchmark-only" in cmd["bench"]  # the whole benchmark suite
    assert "benchmarks/gpu_profile.py" in cmd["profile"]
    returned = re.search(r"^returns \((\d+) files.*: (.*)$", out, re.M)
    assert int(returned.group(1)) == len(gpu_check.RETURNED) <= 8
    assert returned.group(2).split() == list(gpu_check.RETURNED)


def _junit(path: Path) -> None:
    path.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2">x</failure></testcase>'
        '<testcase classname="tests.test_a" name="test_skip"><skipped message="needs a CUDA device"/></testcase>'
        '</testsuite></testsuites>')


def test_pack_reads_the_outcomes_and_returns_at_most_8_files(tmp_path):
    work, dest = tmp_path / "work", tmp_path / "out"
    (work / "profile").mkdir(parents=True)
    (work / "steps.tsv").write_text("tests\t120\t1\t95\tpython -m pytest tests -m cuda\n"
                                    "bench\t150\t124\t150\tpython -m pytest benchmarks/ --benchmark-only\n")
    _junit(work / "tests.xml")
    (work / "bench.json").write_text(json.dumps({"benchmarks": [
        {"fullname": "benchmarks/test_gpu.py::test_x", "group": "g", "extra_info": {},
         "stats": {"min": 1.0, "median": 2.0, "mean": 2.0, "stddev": 0.1, "rounds": 5, "data": [1, 2]}}]}))
    (work / "info_fastwgan.json").write_text(json.dumps({"python": "3.12.3", "torch": "2.11.0+cu130"}))
    (work / "kernels.txt").write_text("C++ kernels: built and loaded; ...\n")
    (work / "tests.log").write_text("log of the tests\n")
    (work / "profile" / "gpu_profile.md").write_text("# profile\n")
    (work / "profile" / "gpu_profile.json").write_text("{}")
    (work / "profile" / "trace_dcgan32.json").write_text("{}")
    results = ROOT / "benchmarks" / "results"
    (work / "jsonl_before.txt").write_text("".join(
        f"{f} {len(f.read_text().splitlines())}\n" for f in results.glob("*.jsonl")))

    s = gpu_check.pack(work, dest)
    assert s["steps"]["bench"]["timed_out"] and not s["steps"]["tests"]["timed_out"]
    assert s["tests"]["passed"] == ["tests.test_a::test_ok"]
    assert s["tests"]["failed"] == [{"test": "tests.test_a::test_bad", "message": "assert 1 == 2"}]
    assert s["tests"]["skipped"][0]["reason"] == "needs a CUDA device"
    assert s["benchmarks"][0]["stats_s"] == {"min": 1.0, "median": 2.0, "mean": 2.0, "stddev": 0.1, "rounds": 5}
    assert s["machine"]["torch"] == "2.11.0+cu130" and s["kernels"].startswith("C++ kernels: built")
    files = sorted(p.name for p in dest.iterdir())
    assert set(files) == set(gpu_check.RETURNED) - {"gpu_check.log"}  # the log is the shell script's tee
    with tarfile.open(dest / "extras.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["extras/tests.log", "extras/trace_dcgan32.json"]  # no new result rows


def test_timeline_busy_time_and_gaps():
    # [0, 10], [12, 20] overlapping [15, 30], then [40, 41]: busy 10 + 18 + 1, gaps 2 and 10
    t = gpu_profile.timeline([(40, 41), (0, 10), (15, 30), (12, 20)])
    assert t["busy_us"] == 29 and t["span_us"] == 41
    assert t["idle_share"] == round(1 - 29 / 41, 4)
    assert t["gaps"] == {"count": 2, "total_us": 12, "median_us": 6, "p90_us": 2, "max_us": 10}
    assert gpu_profile.timeline([(0, 5), (5, 9)])["gaps"] == {"count": 0}  # back to back: no gap
    assert gpu_profile.timeline([])["busy_us"] == 0


def test_the_profile_runs_reduced_on_the_cpu(tmp_path):
    r = gpu_profile.run("cpu", tmp_path, traces=True, cases=("toy cuda-graph", "dcgan32"), warmup=1)
    assert r["cases"]["toy cuda-graph"] == {"skipped": "CUDA graphs need a CUDA device"}
    c = r["cases"]["dcgan32"]
    assert c["step_mode"] == "eager" and c["asked"] == "auto" and c["sizes"] == gpu_profile.REDUCED["dcgan32"]
    assert c["count"] > 0 and c["kernels"] == c["count"] and 0 < c["busy_us"] <= c["span_us"]
    assert any("conv" in t["name"] for t in c["top"])  # a DCGAN's time goes to its convolutions
    assert sum(t["share"] for t in c["top"]) <= 1.0 + 1e-6
    text = (tmp_path / "gpu_profile.md").read_text()
    assert "| dcgan32 | eager |" in text and "skipped: CUDA graphs need a CUDA device" in text
    assert json.loads((tmp_path / "gpu_profile.json").read_text())["cases"]["dcgan32"]["count"] == c["count"]
    assert (tmp_path / "trace_dcgan32.json").stat().st_size > 0


@pytest.mark.slow
def test_the_compiled_toy_case_profiles_on_the_cpu(tmp_path):
    c = gpu_profile.run("cpu", tmp_path, traces=False, cases=("toy compiled",), warmup=1)["cases"]["toy compiled"]
    assert c["step_mode"] == "compiled" and c["warnings"] == [] and c["count"] > 0  # no fallback to eager


def test_a_fallback_to_eager_is_shown_next_to_the_mode_asked_for():
    case = {"asked": "compiled", "step_mode": "eager", "precision": "fp32", "iteration_wall_ms": 1.0, "count": 1,
            "kernels": 1, "copies_and_sets": 0, "host_launch_calls": {}, "busy_us": 1.0, "span_us": 1.0,
            "idle_share": 0.0, "gaps": {"count": 0}, "warnings": ["fastwgan: torch.compile is off for this run"]}
    text = gpu_profile.markdown({"command": "c", "machine": {"device": "cpu", "torch": "t", "python": "p"},
                                 "warmup": 1, "cases": {"toy compiled": case}})
    assert "| toy compiled | eager (asked: compiled; it fell back" in text
    assert "- toy compiled: fastwgan: torch.compile is off for this run" in text
    ok = gpu_profile.markdown({"command": "c", "machine": {"device": "cpu", "torch": "t", "python": "p"}, "warmup": 1,
                               "cases": {"toy compiled": {**case, "step_mode": "compiled", "warnings": []}}})
    assert "| toy compiled | compiled |" in ok and "fell back" not in ok  # the negative control


def test_a_missing_package_skips_at_its_first_use_naming_the_fix(monkeypatch):
    name = "fastwgan_no_such_package"
    monkeypatch.setitem(_optional.NEEDED, name, ("a test package", "pip install nothing"))
    monkeypatch.setitem(_optional.SUBMODULES, name, ("data",))
    monkeypatch.setattr(_optional, "MISSING", [])
    try:
        assert _optional.install_stand_ins() == [name] == _optional.MISSING  # POT / mlxtend: done at start-up
        import importlib

        module = importlib.import_module(f"{name}.data")
        with pytest.raises(pytest.skip.Exception,
                           match=r"needs a test package, which is not installed here \(`pip install nothing`\)"):
            module.load()
        with pytest.raises(AttributeError):  # tools that probe modules get a plain miss, not a skip
            module.__file__
    finally:
        sys.modules.pop(name, None)
        sys.modules.pop(f"{name}.data", None)
    assert not isinstance(sys.modules["json"], _optional.MissingPackage)  # an installed one is left alone
