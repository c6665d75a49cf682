"""The import structure: floors point down only, and no module imports itself through a circle.

Floors, from the ground up: ``heed.envs`` < ``heed.analysis`` < ``heed.agents`` < ``heed.scripts``.
Every import of a ``heed.*`` module anywhere in a file counts (a lazy import inside a function too).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"envs": 0, "analysis": 1, "agents": 2, "scripts": 3}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "heed." + ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> {heed modules it imports}`` over the four installed folders."""
    files = [p for floor in FLOORS for p in (ROOT / floor).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            targets.update(n for n in names if n in modules and n != name)
        graph[name] = targets
    return graph


def test_floors_point_down_only() -> None:
    up = []
    for source, targets in import_graph().items():
        floor = FLOORS[source.split(".")[1]]
        up += [f"{source} -> {t}" for t in targets if FLOORS[t.split(".")[1]] > floor]
    assert not up, "imports that run up a floor:\n" + "\n".join(sorted(up))


def test_no_import_circles() -> None:
    graph = import_graph()
    # a package's __init__ re-exporting its own submodules is not a circle of ideas: drop parent<->child edges
    edges = {m: {t for t in ts if not t.startswith(m + ".") and not m.startswith(t + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"
