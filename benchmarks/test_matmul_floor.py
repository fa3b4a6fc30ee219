"""benchmarks/matmul_floor.py: the product FLOP it counts for a textbook WGAN-GP iteration is the
closed form of that iteration's products (so the floor divides the right numerator), and its
smoke run writes one row per group and precision through the harness and into the report.
Untimed (a smoke run's figures are not measurements)."""
from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

import matmul_floor
import report
import train_loop


def textbook_mlp_flop(batch: int, width: int) -> int:
    """FLOP of the matrix products in one textbook toy iteration (5 critic steps, 1 generator step),
    gan_toy's MLPs D: 2-w-w-w-1, G: 2-w-w-w-2; a layer i -> o costs L = 2 B i o per product.

    Critic step: G(z) forward (F_G); D forward on real, fake, x_hat (3 F_D); the penalty's input
    gradient, every layer's input product (F_D); backward of D(real), D(fake): weight products of
    every layer and input products above the first (2 F_D + 2 (F_D - L_D0)); backward of the
    penalty (the double backward): the head's weight product, weight and input products of the
    other layers' input-gradient products (L_D3 + 2 (L_D0 + L_D1 + L_D2)), and the zero gradient
    ReLU's backward returns for its input taken back through the forward of D(x_hat), weight and
    input products of layers 0-2 (x_hat is a leaf that requires grad: 2 (L_D0 + L_D1 + L_D2)).
    Generator step: G and D forward (F_G + F_D), D's input products (F_D, D frozen), G's weight
    products and input products above the first (F_G + F_G - L_G0).
    At batch 256, width 512: 18,837,929,984 FLOP = 18.84 GFLOP."""
    def layers(out):
        return [2 * batch * i * o for i, o in zip((2, width, width, width), (width, width, width, out))]

    d, g = layers(1), layers(2)
    fd, fg = sum(d), sum(g)
    critic = fg + 3 * fd + fd + (2 * fd + 2 * (fd - d[0])) + (d[3] + 2 * sum(d[:3])) + 2 * sum(d[:3])
    generator = fg + fd + fd + fg + (fg - g[0])
    return 5 * critic + generator


def test_the_counted_flop_is_the_closed_form_of_the_textbook_iteration():
    assert textbook_mlp_flop(256, 512) == 18_837_929_984  # the docstring's figure, the benchmark's size
    g = train_loop.replace(train_loop.GROUPS["WGAN-GP toy MLP"], batch=16, width=24)
    calls, gflop, by_op = matmul_floor.record(g)
    assert math.isclose(gflop * 1e9, textbook_mlp_flop(16, 24), rel_tol=1e-12), (gflop * 1e9, textbook_mlp_flop(16, 24))
    assert set(by_op) == {"aten.mm", "aten.addmm"} and len(calls) > 100


def test_fastwgans_iteration_does_the_textbook_products_less_the_zero_branch():
    """fastwgan's own iteration (the pruned double backward) does the textbook's products less the
    zero gradient's: weight and input products of layers 0-2 of D(x_hat) per critic step,
    5 x 2 (L_D0 + L_D1 + L_D2) (see textbook_mlp_flop). At batch 256, width 512: 16.15 GFLOP."""
    b, w = 16, 24
    zero_branch = 5 * 2 * sum(2 * b * i * o for i, o in ((2, w), (w, w), (w, w)))
    g = train_loop.replace(train_loop.GROUPS["WGAN-GP toy MLP"], batch=b, width=w)
    _, gflop, _ = matmul_floor.record_fastwgan(g)
    assert math.isclose(gflop * 1e9, textbook_mlp_flop(b, w) - zero_branch, rel_tol=1e-12)


def test_smoke_run_writes_each_group_and_precision_and_the_report_sets_it_beside_fastwgan(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    rows = matmul_floor.main([])
    kinds = (matmul_floor.CONTENDER, matmul_floor.PRUNED, matmul_floor.FASTEST, matmul_floor.BEST)
    assert sorted((r["group"], r["contender"], r["precision"]) for r in rows) == sorted(
        (name, c, p) for name in ("WGAN-GP toy MLP", "WGAN-GP DCGAN-32") for c in kinds for p in ("fp32", "bf16"))
    for r in rows:
        assert r["gflop"] > 0 and r["median_s"] > 0 and r["rounds"] == 2
        if r["contender"] != matmul_floor.BEST:
            assert r["products"] >= r["distinct_products"]
    for name in ("WGAN-GP toy MLP", "WGAN-GP DCGAN-32"):  # fastwgan's iteration does fewer products
        gflop = {r["contender"]: r["gflop"] for r in rows if r["group"] == name}
        assert gflop[matmul_floor.PRUNED] < gflop[matmul_floor.CONTENDER]
        assert gflop[matmul_floor.BEST] == gflop[matmul_floor.PRUNED] == gflop[matmul_floor.FASTEST]
    dcgan = next(r for r in rows if r["group"] == "WGAN-GP DCGAN-32")
    assert {"aten.convolution", "aten.convolution_backward"} <= set(dcgan["gflop_by_op"])
    lines = [json.loads(x) for x in (tmp_path / "matmul_floor.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["run"] + ["measurement"] * 16
    md = report.render(tmp_path, include_smoke=True)
    assert "## " + report.TITLES["matmul_floor"] in md and "GFLOP per iteration (counted)" in md


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_onednn_form_is_the_same_product_and_a_wrong_one_is_caught(dtype):
    """Every product form of fastwgan's toy iteration (odd sizes, transposed views, 1-D bias) run by
    oneDNN's linear passes the rounding bound against torch; negative controls: the product of the
    untransposed operand, and a dropped bias, fail it."""
    torch.manual_seed(0)
    m, k, n = 37, 29, 23
    a, w, g, bias = (torch.randn(*s).to(dtype) for s in ((m, k), (n, k), (m, n), (n,)))
    aten = torch.ops.aten
    cases = [(aten.addmm.default, (bias, a, w.t())), (aten.mm.default, (g, w)), (aten.mm.default, (g.t(), a)),
             (aten.mm.default, (a, w.t()))]
    for func, args in cases:
        form = matmul_floor._onednn_form(func, args, {})
        assert form is not None and matmul_floor._same_product(func, args, form()), func
    assert matmul_floor._onednn_form(aten.addmm.default, (g, a, w.t()), {}) is None  # a 2-D addend: no such form
    assert matmul_floor._onednn_form(aten.addmm.default, (bias, a, w.t()), {"beta": 2}) is None  # scaled
    assert matmul_floor._onednn_form(aten.addmm.default, (bias, a, w.t(), 2), {}) is None
    sq = torch.randn(k, k).to(dtype)
    wrong = torch.ops.mkldnn._linear_pointwise(a, sq, None, "none", [], "")  # a @ sq^T, not a @ sq
    assert not matmul_floor._same_product(aten.mm.default, (a, sq), wrong)
    no_bias = torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")
    assert not matmul_floor._same_product(aten.addmm.default, (bias + 1, a, w.t()), no_bias)


def test_paired_smoke_run_times_the_compiled_step_between_the_floors(tmp_path, monkeypatch):
    """--paired: the compiled step and both floors, round by round, one ratio per round, and the
    report sets each floor against the step of its own run (not train_loop's)."""
    monkeypatch.setenv("FASTWGAN_BENCH_SMOKE", "1")
    monkeypatch.setenv("FASTWGAN_BENCH_RESULTS", str(tmp_path))
    rows = matmul_floor.main(["--paired", "--groups", "WGAN-GP toy MLP", "--precisions", "bf16"])
    by = {r["contender"]: r for r in rows}
    assert set(by) == {matmul_floor.CONTENDER, matmul_floor.PRUNED, matmul_floor.PAIRED}
    step = by.pop(matmul_floor.PAIRED)
    assert step["rounds"] == 2 and step["median_s"] > 0
    for r in by.values():
        assert r["paired_with"] == matmul_floor.PAIRED and len(r["floor_over_step_by_round"]) == r["rounds"] == 2
        for f, t, got in zip(r["round_seconds"], step["round_seconds"], r["floor_over_step_by_round"]):
            # the stored seconds are rounded to 1 us and the ratio to 4 digits
            assert abs(f / t - got) <= f / t * (0.5e-6 / f + 0.5e-6 / t) + 0.5e-4, (f, t, got)
    md = report.render(tmp_path, include_smoke=True)
    assert md.count(f"({matmul_floor.PAIRED}); by round") == 2
    pct = {r["contender"]: f"{100 * statistics.median(r['floor_over_step_by_round']):.0f}%" for r in by.values()}
    every = md.split("Every `--paired` run")[1].splitlines()
    listed = [line for line in every if line.startswith("| WGAN-GP toy MLP | bf16 |")]
    assert sorted(listed) == sorted(f"| WGAN-GP toy MLP | bf16 | {c} | 1 | {v} | {v} |" for c, v in pct.items())
