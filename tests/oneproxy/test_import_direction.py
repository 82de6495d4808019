"""Imports go one way (docs/ARCHITECTURE.md, "Dependency direction"):
``oneproxy`` (wiring) → the apps (``channels_app``, ``billing``) → ``core``;
``relay`` is a library that imports nothing of ours and no Django. Inside a
package no two modules import each other, directly or round a loop.

Every import counts, also one inside a function: a lazy import is still a
dependency, only a hidden one.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
# package → the packages of ours it may import (besides itself)
ALLOWED = {
    "oneproxy": {"channels_app", "billing", "core", "relay"},
    "channels_app": {"core", "relay"},
    "billing": {"core", "relay"},
    "core": set(),
    "relay": set(),
}
# Tools outside the layers: the benchmark and the reliability run (they drive
# the whole stack, as tests do).
OURS = set(ALLOWED) | {"bench", "reliability", "tests"}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """Every module of ours that ``path`` imports, at the top or in a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # ``from pkg import mod`` imports the module pkg.mod
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in OURS}


def source_files(package: str) -> list[pathlib.Path]:
    return sorted((ROOT / package).rglob("*.py"))


def graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports (that exist)."""
    files = {module_name(p): p for package in ALLOWED for p in source_files(package)}
    return {name: {m for m in imports_of(path) if m in files and m != name} for name, path in files.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(edges.items()):
        top = module.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != top and other not in ALLOWED[top]:
                wrong.append(f"{module} imports {target}")
    return wrong


def loops(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among modules (each reported once, from its smallest module)."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for target in sorted(edges.get(node, ())):
            if target == start:
                cycle = tuple(path)
                key = tuple(sorted(cycle))
                if key not in seen:
                    seen.add(key)
                    found.append([*path, start])
            elif target > start and target not in path:
                walk(start, target, [*path, target])

    for start in sorted(edges):
        walk(start, start, [start])
    return found


def test_imports_go_one_way():
    assert upward_imports(graph()) == []


def test_no_module_imports_itself_round_a_loop():
    assert [" → ".join(cycle) for cycle in loops(graph())] == []


def test_relay_imports_no_django():
    """relay/ is a library: it runs on plain snapshots, not on Django."""
    for path in source_files("relay"):
        assert not {m for m in _all_imports(path) if m.split(".")[0] == "django"}, f"{path} imports Django"


def test_every_package_of_ours_has_a_place():
    """The checks above see these packages (a renamed or new top-level
    package of ours must be placed in ALLOWED, or its imports go unchecked)."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - {"bench", "reliability", "tests", "docker", "docs"} <= set(ALLOWED)


def _all_imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names
