"""Imports point down: no cycle between factscope's packages or between its modules.

Every import counts, also one inside a function (it hides a cycle, it does not remove it).
Package ``__init__`` modules, which gather their package's names, are left out of the
module-level check.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "factscope"


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("factscope"):
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages():
    modules = _modules()
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}

    def package(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if ".".join(parts[:2]) in packages else name

    graph: dict[str, set[str]] = defaultdict(set)
    for source, targets in _imports(modules).items():
        for target in targets:
            a, b = package(source), package(target)
            if a != b and "factscope" not in (a, b):
                graph[a].add(b)
    assert _cycles(graph) == []


def test_no_import_cycle_between_modules():
    modules = _modules()
    inits = {name for name, path in modules.items() if path.name == "__init__.py"}
    graph = {m: {t for t in ts if t not in inits} for m, ts in _imports(modules).items() if m not in inits}
    assert _cycles(graph) == []


def test_no_import_of_another_packages_private_module():
    """A private module (``_name``) is imported only from inside its own package; others use the package's names."""
    modules = _modules()
    offenders = []
    for source, targets in _imports(modules).items():
        for target in targets:
            parts = target.split(".")
            private = [i for i, part in enumerate(parts) if part.startswith("_") and part != "__init__"]
            if not private:
                continue
            owner = ".".join(parts[: private[0]])
            if source != owner and not source.startswith(owner + "."):
                offenders.append(f"{source} -> {target}")
    assert offenders == []
