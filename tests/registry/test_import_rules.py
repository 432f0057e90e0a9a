"""The registry's import rules (issue 24): no import cycle inside models_registry, counting
imports inside functions; no service imports a task module (tasks are sent by name).

grimp (import-linter's graph) reads every import statement of a module, function-level
ones included; the checks below find the strongly connected components of that graph.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp
import pytest

from models_registry import dispatch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return grimp.build_graph("models_registry", cache_dir=None)


def _edges(graph: grimp.ImportGraph) -> dict[str, list[str]]:
    modules = sorted(graph.modules)
    return {
        m: sorted(x for x in graph.find_modules_directly_imported_by(m) if x in graph.modules)
        for m in modules
    }


def import_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, []):
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in edges:
        if node not in index:
            visit(node)
    return cycles


def test_the_checker_finds_a_cycle() -> None:
    assert import_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert import_cycles({"a": ["a"]}) == [["a"]]
    assert import_cycles({"a": ["b"], "b": []}) == []


def test_the_graph_counts_imports_inside_functions(graph: grimp.ImportGraph) -> None:
    # admin.py imports the hosts task inside a method only.
    assert "models_registry.tasks.hosts" in graph.find_modules_directly_imported_by(
        "models_registry.admin"
    )


def test_no_import_cycle_inside_models_registry(graph: grimp.ImportGraph) -> None:
    assert import_cycles(_edges(graph)) == []


def test_no_service_imports_a_task_module(graph: grimp.ImportGraph) -> None:
    found = [
        (service, imported)
        for service in sorted(graph.find_descendants("models_registry.services"))
        for imported in graph.find_modules_directly_imported_by(service)
        if imported.startswith("models_registry.tasks")
    ]
    assert found == []


def test_every_dispatched_name_is_a_registered_task() -> None:
    from tradebot.celery import app

    app.loader.import_default_modules()
    assert set(dispatch.TASK_NAMES) <= set(app.tasks)
