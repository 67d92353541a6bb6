"""Imports flow one way: no two modules of the function package or of local/ import each other,
directly or around a circle, counting imports under TYPE_CHECKING and inside functions (a
circle that only type checking sees is still two modules that each need the other). A
package's `__init__`, which re-exports its modules, is left out."""

from __future__ import annotations

import ast
from pathlib import Path

from wababind_local.fc_emulator import ROOT

CODE_ROOTS = (ROOT / "functions" / "bind_waba", ROOT / "local")


def modules() -> dict[str, Path]:
    found = {}
    for root in CODE_ROOTS:
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts and parts[-1] != "__init__":
                found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules that `name` imports, wherever the import statement stands."""
    package = name.rpartition(".")[0]
    seen: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base] if base else parents)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        seen.update(t for t in targets if t in known and t != name)
    return seen


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in order:
            visit(node)
    return found


def test_no_two_modules_import_each_other() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    assert len(graph) > 50  # both trees were read
    assert circles(graph) == []


def test_the_checker_finds_a_circle() -> None:
    graph = {"a.server": {"a.backend"}, "a.backend": {"a.server"}, "a.main": {"a.server"}}
    assert circles(graph) == [["a.backend", "a.server"]]
