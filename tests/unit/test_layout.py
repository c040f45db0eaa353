"""The package's shape (issue 16): the root holds only the API and its registries, no module imports another
module's private names, and no two modules import each other, not even through a function-level import."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "edgeport"
ROOT_MODULES = {"__init__.py", "__main__.py", "api.py", "errors.py", "registry.py"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = f
    return out


def _imports(path: Path, mods: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported edgeport module, names taken from it) for every import statement, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgeport"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, []) if sub in mods else (node.module, [alias.name]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("edgeport")]
    return found


def test_root_holds_only_the_api_and_registries():
    assert {f.name for f in PKG.glob("*.py")} == ROOT_MODULES


def test_no_private_names_cross_modules():
    mods = _modules()
    bad = [f"{name} imports {n} from {target}" for name, path in mods.items() for target, names in _imports(path, mods)
           for n in names if n.startswith("_") and not n.startswith("__") and target != name]
    assert not bad, bad


def _package_of(mod: str, mods: dict[str, Path]) -> str:
    return mod if mods[mod].name == "__init__.py" else mod.rpartition(".")[0]


def test_no_import_cycles_between_modules():
    """Module A importing B (anywhere in A) and B importing A is a cycle however late the import runs.
    Imports of a package's own __init__ (its re-exports, its registry) from inside it are not counted."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for target, _ in _imports(path, mods):
            while target not in mods and "." in target:
                target = target.rpartition(".")[0]
            if target in mods and target != name and not name.startswith(target + ".") and target != "edgeport":
                deps.add(target)
        graph[name] = deps
    # a package __init__ that imports its own submodules to register them is a re-export, not a dependency
    for name in graph:
        if mods[name].name == "__init__.py":
            graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
