"""No import circle among the suite's modules, read statically with `ast`.

Every import counts, at module level or inside a function (a function-level import only postpones a
circle to the first call), except those under `if TYPE_CHECKING:`, which never run. Importing
`a.b.c` also runs the `__init__` of `a.b` (unless the importer lives inside that package), so that
edge counts too. `analysis/` is in the graph as `grporm.analysis` (how it is installed): it and the rest
of `grporm` import each other's modules, and a circle through both is still a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# folder -> the package it is installed as (pyproject.toml: analysis/ is grporm.analysis)
PACKAGES = {"grporm": "grporm", "analysis": "grporm.analysis"}


def module_names(root: Path, packages) -> dict[str, Path]:
    """Module name -> file; ``packages``: folder names, or {folder: installed package name}."""
    out = {}
    for folder, package in (packages.items() if isinstance(packages, dict) else ((p, p) for p in packages)):
        for path in (root / folder).rglob("*.py"):
            parts = (*package.split("."), *path.relative_to(root / folder).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement may load (a `from x import y` may load module x.y)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = module.split(".")[: None if is_package else -1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def import_graph(root: Path, packages) -> dict[str, set[str]]:
    """module -> the modules of `packages` that importing it (or calling its functions) imports."""
    modules = module_names(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            for target in _imported(node, name, path.name == "__init__.py"):
                while target and target not in modules:  # an attribute of a module -> that module
                    target = target.rpartition(".")[0]
                if not target or target == name:
                    continue
                graph[name].add(target)
                parts = target.split(".")
                for i in range(1, len(parts)):  # the packages on the way run their __init__
                    parent = ".".join(parts[:i])
                    if parent in modules and not (name + ".").startswith(parent + "."):
                        graph[name].add(parent)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_in_the_package():
    graph = import_graph(ROOT, PACKAGES)
    assert "grporm.config" in graph and graph["grporm.plan.experiment"] and "grporm.resolve" not in graph  # the graph was really read
    assert cycles(graph) == []


# Leaves every module may import: they import no module of the suite, so they can never close a circle.
LEAVES = ("grporm.config", "grporm.process.interrupts", "grporm.errors", "grporm.process.locks")


def test_the_models_and_the_interrupts_import_nothing_of_the_suite():
    graph = import_graph(ROOT, PACKAGES)
    assert {leaf: graph[leaf] for leaf in LEAVES} == {leaf: set() for leaf in LEAVES}
    assert "grporm.plan.experiment" not in graph["grporm.tuning.decisions"] | graph["grporm.tuning.trials"]  # the rules sit below loading


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_finds_circles_at_module_and_function_level(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import thing\n",
        "pkg/b.py": "def thing():\n    from pkg import a\n    return a\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import x\n",
        "pkg/d.py": "from pkg.c import y\n",
        "pkg/sub/__init__.py": "from pkg.e import z\n",
        "pkg/sub/leaf.py": "",
        "pkg/e.py": "from pkg.sub.leaf import w\n",
        "pkg/f.py": "from . import g\n",
        "pkg/g.py": "from .f import h\n",
    })
    found = cycles(import_graph(tmp_path, ("pkg",)))
    assert ["pkg.a", "pkg.b"] in found  # function-level import closes the circle
    assert ["pkg.e", "pkg.sub"] in found  # importing pkg.sub.leaf runs pkg/sub/__init__.py
    assert ["pkg.f", "pkg.g"] in found  # relative imports
    assert not any("pkg.c" in c for c in found)  # TYPE_CHECKING-only import is no circle
    assert len(found) == 3
