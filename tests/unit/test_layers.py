"""Layers point one way: no import circles, no import of a higher layer, no other module's private name.

Reads every module of ``asgard_ray`` with ``ast`` (imports inside functions count too) and checks the
layers of the design, from the bottom: the root modules, then ``storage`` and ``gold``, then the jobs
core (which knows no kind), then ``features`` and ``registry``, then the capabilities, then the ways in.
A module may import its own layer or a lower one; the graph of files must have no cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "asgard_ray"

LAYERS: list[set[str]] = [
    {"", "config", "types", "errors", "durable", "heap", "lineage", "runtime", "metrics"},
    {"storage", "gold"},
    {"jobs"},
    {"features", "registry"},
    {"training", "scoring", "serving", "monitoring"},
    {"api", "cli", "entrypoints", "demo", "local"},
]
"""Each top-level module or package of ``asgard_ray`` (``""``: the package itself), bottom layer first."""


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Module -> the ``(module, name)`` pairs it imports from ``asgard_ray``."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        here = _module(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out[here].update((a.name, "") for a in node.names if a.name.startswith("asgard_ray"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                if base.startswith("asgard_ray"):
                    out[here].update((base, a.name) for a in node.names)
    return out


def _known(modules: set[str], name: str) -> str | None:
    """The module that ``name`` (a module, or a module's attribute) resolves to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    top = _top(module)
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{module}: {top!r} is in no layer of LAYERS; place it")


def test_every_module_has_a_layer() -> None:
    for path in ROOT.rglob("*.py"):
        _layer(_module(path))


def test_no_module_imports_a_higher_layer() -> None:
    imports = _imports()
    modules = {_module(p) for p in ROOT.rglob("*.py")}
    upward = []
    for source, targets in imports.items():
        for target, name in targets:
            module = _known(modules, f"{target}.{name}" if name else target) or target
            if _layer(module) > _layer(source):
                upward.append(f"{source} -> {module}")
    assert not upward, "imports of a higher layer:\n" + "\n".join(sorted(upward))


def test_jobs_storage_gold_and_the_root_modules_import_no_capability() -> None:
    capabilities = LAYERS[3] | LAYERS[4] | LAYERS[5]
    imports = _imports()
    found = [
        f"{source} -> {target}"
        for source, targets in imports.items()
        if _layer(source) <= 2
        for target, _ in targets
        if _top(target) in capabilities
    ]
    assert not found, "\n".join(sorted(found))


def test_no_module_imports_another_modules_private_name() -> None:
    private = [
        f"{source} imports {target}.{name}"
        for source, targets in _imports().items()
        for target, name in targets
        if name.startswith("_") and not name.startswith("__") and target != source
    ]
    assert not private, "\n".join(sorted(private))


def test_the_import_graph_has_no_cycle() -> None:
    imports = _imports()
    modules = {_module(p) for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for source, targets in imports.items():
        for target, name in targets:
            module = _known(modules, f"{target}.{name}" if name else target)
            # a package's modules may import its face (its __init__); the face imports them
            if module and module != source and not (module == source.rpartition(".")[0]):
                graph[source].add(module)
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, [*path, nxt]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if node not in state and visit(node, [node]):
            break
    assert not cycle, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_the_layers_do_not_overlap(layer: int) -> None:
    for other in range(layer + 1, len(LAYERS)):
        assert not LAYERS[layer] & LAYERS[other]
