"""Imports run one way: cli/flows → display/review → warehouse/experiment/tuning → finetune → cascade → llm → ontology → db → config.

Read from the source with ``ast`` (function-level imports included), so a new upward or sideways
import, or an import cycle, fails here rather than in a reviewer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "etlnorm"

# Lower number: lower layer. A module may import its own part and any lower layer, nothing else.
LAYERS = {
    "errors": 0, "files": 1, "config": 1, "threads": 1, "db": 2, "ontology": 3, "llm": 4, "cascade": 5, "finetune": 6,
    "warehouse": 7, "experiment": 7, "tuning": 7, "display": 8, "review": 8, "demo": 9, "cli": 10, "__main__": 11, "__init__": 11,
}  # fmt: skip
TOP_LEVEL_MODULES_AT_MOST = 9


def part(module: str) -> str:
    """``etlnorm.cascade.lexical`` → ``cascade``; ``etlnorm`` → ``__init__``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every etlnorm module ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("etlnorm")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("etlnorm"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from etlnorm.x import module`
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_every_part_is_known_and_the_top_level_is_small():
    modules = graph()
    parts = {part(m) for m in modules}
    assert parts <= set(LAYERS), parts - set(LAYERS)
    top = [p for p in PACKAGE.glob("*.py")]
    assert len(top) <= TOP_LEVEL_MODULES_AT_MOST + 1, sorted(p.name for p in top)  # + __main__


def test_imports_run_one_way():
    wrong = []
    for module, targets in graph().items():
        here = part(module)
        for target in targets:
            there = part(target)
            if there != here and not LAYERS[there] < LAYERS[here] and there != "__init__":
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_flows_only_call_the_library():
    """Flows are shells: they import etlnorm's public parts, and nothing imports them back."""
    for flow in (ROOT / "flows").glob("*.py"):
        for target in imports(flow):
            assert part(target) in {"config", "threads", "db", "ontology", "cascade", "warehouse"}, (flow.name, target)
    for path in PACKAGE.rglob("*.py"):
        assert "import flows" not in path.read_text() and "from flows" not in path.read_text(), path
