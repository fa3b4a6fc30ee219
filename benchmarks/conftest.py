"""Benchmark session hooks: machine header, and a ratio table against the plain-PyTorch baseline."""
from __future__ import annotations

from _bench import BASELINES, NOTES, RATIOS, machine


def pytest_report_header(config):
    return f"fastwgan benchmarks on: {machine()}"


def pytest_terminal_summary(terminalreporter):
    if not RATIOS:
        return
    tr = terminalreporter
    tr.section("fastwgan: speed vs the plain-PyTorch baseline (same run)")
    tr.write_line(machine())
    for group, entries in RATIOS.items():
        base = BASELINES.get(group)
        for name, t in entries.items():
            ratio = f"{entries[base] / t:6.2f}x vs {base}" if base in entries else ""
            tr.write_line(f"  {group:40s} {name:28s} {t * 1e3:10.3f} ms/unit  {1 / t:10.2f} units/s  {ratio}"
                          f"  {NOTES.get((group, name), '')}")
