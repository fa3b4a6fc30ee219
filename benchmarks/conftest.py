"""Benchmark session hooks: machine header, and a ratio table against the plain-PyTorch baseline
of the same precision (fp32 against fp32, bf16 against bf16), all from this run."""
from __future__ import annotations

from _bench import BASELINES, NOTES, PRECISION, RATIOS, machine


def pytest_report_header(config):
    return f"fastwgan benchmarks on: {machine()}"


def pytest_terminal_summary(terminalreporter):
    if not RATIOS:
        return
    tr = terminalreporter
    tr.section("fastwgan: speed vs the plain-PyTorch baseline at the same precision (same run)")
    tr.write_line(machine())
    for group, entries in RATIOS.items():
        for name, t in entries.items():
            precision = PRECISION.get((group, name), "fp32")
            base = BASELINES.get((group, precision))
            ratio = f"{entries[base] / t:6.2f}x vs {base}" if base in entries else ""
            tr.write_line(f"  {group:40s} {name:28s} {precision:5s} {t * 1e3:10.3f} ms/unit  {ratio}"
                          f"  {NOTES.get((group, name), '')}")
    tr.write_line("Results appended to benchmarks/results/<suite>.jsonl; python benchmarks/report.py "
                  "regenerates benchmarks/RESULTS.md from them.")
