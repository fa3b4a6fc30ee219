"""The package's layout: no import circle among its modules (imports inside functions count too),
and ``fastwgan.reference`` stays the tests' oracle: nothing in the package imports it."""
from __future__ import annotations

import ast
from pathlib import Path

import fastwgan

SRC = Path(fastwgan.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package), for every module of the package."""
    out = {}
    for f in SRC.rglob("*.py"):
        parts = list(f.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (at module level or inside a function)."""
    mods = _modules()
    graph = {}
    for name, (f, is_pkg) in mods.items():
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package ``level - 1`` steps above this module's
                    base = ".".join(here[:len(here) - node.level + 1] + [base]).rstrip(".")
                deps.update(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_sees_a_circle():  # negative control: the check below can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "fastwgan.hardware" in graph["fastwgan.training.precision"]  # the graph sees imports
    assert cycles(graph) == []


def test_reference_is_the_tests_oracle_only():
    graph = import_graph()
    users = sorted(m for m, deps in graph.items() if not m.startswith("fastwgan.reference")
                   and any(d.startswith("fastwgan.reference") for d in deps))
    assert users == []
