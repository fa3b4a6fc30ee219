"""The docs name tests as evidence (docs/guide.md's table of errors, the porting guide): every
``tests/test_x.py::name`` they cite, and each ``::name`` after it in the same table cell, is a test
function in that file, so a renamed or deleted test cannot leave a row citing nothing."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def cited_tests(text: str) -> list[tuple[str, str]]:
    """(file, function) for each full citation and each ``::name`` that follows it in its cell."""
    out = []
    for cell in re.split(r"\|", text):
        current = None
        for m in re.finditer(r"`(tests/test_\w+\.py)?::(\w+)", cell):
            current = m.group(1) or current
            if current:
                out.append((current, m.group(2)))
    return out


def test_the_citation_parser_finds_full_and_following_citations():  # negative control for the test below
    cell = "| `tests/test_a.py::test_one`, `::test_two[x]`; `tests/test_b.py::test_three` |"
    assert cited_tests(cell) == [("tests/test_a.py", "test_one"), ("tests/test_a.py", "test_two"),
                                 ("tests/test_b.py", "test_three")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_cited_test_exists(doc):
    missing = [f"{f}::{name}" for f, name in cited_tests(doc.read_text())
               if not (ROOT / f).exists() or not re.search(rf"^def {name}\(", (ROOT / f).read_text(), re.M)]
    assert not missing, f"{doc.name} cites tests that do not exist: {missing}"
