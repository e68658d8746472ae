"""The house reads as its pipeline: module size, one-way imports, no import cycles.

Parses the source (``ast``), so imports inside functions count as much as module-level ones.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("fingerprint", "kernels", "reference_db")
MAX_LINES = 600


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """Modules of ours that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        # a package importing its own submodules (re-exports) and a submodule reading its
        # package's __init__ are not edges between two modules of the pipeline
        graph[name] = {t for t in _imports(name, path, known)
                       if not t.startswith(name + ".") and not name.startswith(t + ".")}
    return graph


def test_the_graph_sees_known_edges():
    """Guard against a parser that finds nothing (then every check below would pass)."""
    graph = _graph()
    assert "kernels.spec" in graph["fingerprint.residual"]
    assert "reference_db.errors" in graph["reference_db.library"] or any(
        t.startswith("reference_db.") for t in graph["reference_db.library"])
    assert len(graph) > 40


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_is_at_most_600_lines(name):
    lines = _modules()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{name}: {lines} lines; split it along its seams"


def test_kernels_and_reference_db_import_nothing_from_fingerprint():
    graph = _graph()
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if a.split(".")[0] in ("kernels", "reference_db") and b.split(".")[0] == "fingerprint")
    assert upward == []


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)
