"""The import graph runs one way: CLI -> benchmark/grid -> tasks/executors -> measure -> plugins -> core.

Read from the source (``ast``), counting imports inside functions too: a lazy
import that closes a circle is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "attacks", "baselines", "watermarks", "fingerprints")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (``harness.report`` for ``harness.report.data``'s parent too)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> dict[str, set[str]]:
    """module -> {imported project module: names imported from it}."""
    tree = ast.parse(MODULES[module].read_text())
    out: dict[str, set[str]] = {}
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    out.setdefault(target, set())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}") or _resolve(base)
                if target and target != module:
                    names = out.setdefault(target, set())
                    if target == _resolve(base):
                        names.add(alias.name)
    out.pop(module, None)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def _top(module: str) -> str:
    """A package's modules count as one node (``harness.report.data`` -> ``harness.report``)."""
    for pkg in ("harness.report", "harness.models", "harness.datasets", "harness.explainers", "harness.triggers"):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return module


def _collapsed() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        node = _top(module)
        graph.setdefault(node, set()).update(_top(t) for t in targets if _top(t) != node)
    return graph


def test_no_import_cycle():
    graph = _collapsed()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_imports_another_modules_private_name():
    offenders = [f"{m} imports {name} from {t}" for m, targets in GRAPH.items() for t, names in targets.items()
                 for name in names if name.startswith("_") and not name.startswith("__")
                 and _top(t) != _top(m) and MODULES[t].name != "__init__.py"]
    assert offenders == []


# Top to bottom; a module may import only modules of its own layer or below.
LAYERS = [
    {"harness.cli", "harness.__main__"},
    {"harness.runner"},
    {"harness.grid", "harness.certify"},
    {"harness.tasks", "harness.executors", "harness.report", "harness.summary", "harness.artifact_guard",
     "harness.bench", "harness.bench_train"},
    {"harness.leaderboard"},
    {"harness.measure"},
]


def _layer(module: str) -> int:
    node = _top(module)
    for i, layer in enumerate(LAYERS):
        if node in layer:
            return i
    return len(LAYERS)  # plugins and core


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_downwards(module):
    upward = sorted(t for t in GRAPH[module] if _layer(t) < _layer(module))
    assert upward == [], f"{module} (layer {_layer(module)}) imports a module above it: {upward}"


def test_the_run_layer_keeps_its_order():
    """The middle of the picture, which used to be a circle: tasks never reach up to the grid or runner."""
    assert "harness.grid" not in GRAPH["harness.tasks"] and "harness.runner" not in GRAPH["harness.tasks"]
    assert not {"harness.grid", "harness.tasks", "harness.runner"} & set(GRAPH["harness.executors"])
    assert not {"harness.tasks", "harness.grid", "harness.executors"} & set(GRAPH["harness.measure"])


def test_plugins_depend_on_the_core_never_on_each_other():
    families = ("attacks", "baselines", "watermarks", "fingerprints")
    for module, targets in GRAPH.items():
        family = module.split(".")[0]
        if family in families:
            crossing = [t for t in targets if t.split(".")[0] in families and t.split(".")[0] != family]
            assert crossing == [], f"{module} imports another plugin family: {crossing}"


def test_runner_holds_only_benchmark():
    tree = ast.parse(MODULES["harness.runner"].read_text())
    public = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]
    assert public == ["benchmark"]


def print_graph() -> str:  # pragma: no cover - for the closing note: python -c "from tests.test_layering import print_graph as p; print(p())"
    return "\n".join(f"{m} -> {', '.join(sorted(t for t in g))}" for m, g in sorted(_collapsed().items())
                     if m.startswith("harness"))
