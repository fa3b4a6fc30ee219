"""The MNIST quality harness (benchmarks/mnist_quality.py): its criterion reads the curve as
stated (FD <= k x floor AND every class), and a smoke-size run goes end to end into the results
file, the figure and the report. Untimed; skipped under ``--benchmark-only``."""
from __future__ import annotations

import json

import mnist_quality as mq
import report


def _point(step: int, fd: float, classes: int, floor: float = 5.0) -> dict:
    return dict(step=step, seconds=float(step), fd=fd, fd_floor=floor, classes_covered=classes, kl=0.0)


def test_first_reaching_needs_both_the_fd_and_every_class():
    points = [_point(100, 14.0, 9), _point(200, 16.0, 10), _point(300, 14.0, 10), _point(400, float("nan"), 10)]
    assert mq.first_reaching(points, 3, "mnist")["step"] == 300  # 100: a class missing; 200: FD above 15
    assert mq.first_reaching(points, 5, "mnist")["step"] == 200
    assert mq.first_reaching(points, 2, "mnist") is None
    assert mq.first_reaching([_point(1, float("nan"), 10)], 1e9, "mnist") is None  # a diverged run never counts
    stacked = [dict(_point(100, 14.0, 0), modes_covered=3)]
    assert mq.first_reaching(stacked, 3, "stacked-mnist")["step"] == 100  # stacked: FD only


def test_smoke_run_reaches_the_results_and_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    rows = mq.main(["--losses", "wgan-gp", "--contenders", "textbook fp32", "fastwgan fastest", "--steps", "2",
                    "--every", "1", "--n", "20", "--jobs", "1"])
    assert [r["contender"] for r in rows] == ["textbook fp32", "fastwgan fastest"]
    for r in rows:  # an evaluation per step, each with its FD beside the floor and a clock that moves
        assert [p["step"] for p in r["points"]] == [1, 2] and r["final"]["fd"] > r["final"]["fd_floor"] > 0
        assert 0 < r["points"][0]["seconds"] < r["points"][1]["seconds"]
        assert (tmp_path / "mnist_samples" / f"{mq.grid_name('mnist', 'wgan-gp', r['contender'], 2)}.png").exists()
        assert r["grid"] == f"mnist_samples/{mq.grid_name('mnist', 'wgan-gp', r['contender'], 2)}.png"
    lines = [json.loads(x) for x in (tmp_path / "mnist_quality.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["run", "measurement", "measurement"]
    md = report.render(tmp_path, include_smoke=True)
    assert "| mnist wgan-gp, 2 steps | fastwgan fastest |" in md and "not reached (0/1)" in md  # budget in the group


def test_smoke_run_of_the_users_dcgan_example_models(tmp_path, monkeypatch):
    """--models dcgan-example: the PyTorch-example DCGAN-32 passed unchanged, noise (B, 100, 1, 1),
    its own group (never mixed with the preset's models), the mnist preset's recipe."""
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    rows = mq.main(["--models", "dcgan-example", "--width", "4", "--losses", "ns-gan", "--contenders",
                    "textbook fp32", "fastwgan fast, eager", "--steps", "2", "--every", "1", "--n", "20", "--jobs", "1"])
    assert [r["contender"] for r in rows] == ["fastwgan fast, eager"]  # the authors' loop has other models
    (r,) = rows
    assert r["group"] == "mnist ns-gan, dcgan-example models (width 4, 32x32), 2 steps"
    assert r["z_shape"] == [100, 1, 1] and r["models"] == "dcgan-example" and r["batch_size"] == 8  # smoke batch
    assert [p["step"] for p in r["points"]] == [1, 2] and r["final"]["fd"] > r["final"]["fd_floor"] > 0
    assert mq.mnist_recipe("wgan-gp", fast=True)["n_critic"] == 1 and "optimizer" not in mq.mnist_recipe("wgan-gp", True)
