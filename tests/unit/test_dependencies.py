"""The runtime dependencies in pyproject.toml are exactly what the installed package imports.

Every module of bridge/ is parsed; its imports of distributions outside the standard library
are mapped to distribution names (``importlib.metadata.packages_distributions``: argon2 ->
argon2-cffi, prometheus_client -> prometheus-client). An import guarded by ``except
ImportError`` (or ``contextlib.suppress(ImportError)``) is optional: its distribution belongs
to an extra, not to the dependencies. Database drivers that SQLAlchemy loads by the URL's
driver name are counted where the package names that driver.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "bridge"
#: Distributions the package uses without an import statement: the SQLAlchemy dialect's
#: driver named in a database URL ("sqlite+aiosqlite", "postgresql+asyncpg").
DRIVERS = {"aiosqlite": "sqlite+aiosqlite", "asyncpg": "postgresql+asyncpg"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match is not None, spec
    return _normalize(match.group(1))


def _guarded(node: ast.AST) -> bool:
    """A ``try`` that catches ImportError, or ``with contextlib.suppress(ImportError)``."""
    if isinstance(node, ast.Try):
        for handler in node.handlers:
            names = ast.unparse(handler.type) if handler.type is not None else ""
            if "ImportError" in names or "ModuleNotFoundError" in names:
                return True
    if isinstance(node, ast.With):
        return any("suppress" in ast.unparse(item.context_expr)
                   and "ImportError" in ast.unparse(item.context_expr) for item in node.items)
    return False


def _imports(tree: ast.AST, optional: bool = False) -> set[tuple[str, bool]]:
    found: set[tuple[str, bool]] = set()
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import):
            found.update((alias.name.split(".")[0], optional) for alias in child.names)
        elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
            found.add((child.module.split(".")[0], optional))
        guarded = _guarded(child)
        if isinstance(child, ast.Try) and guarded:
            for part in child.body:
                found |= _imports(ast.Module(body=[part], type_ignores=[]), True)
            for rest in (*child.handlers, *child.orelse, *child.finalbody):
                found |= _imports(rest, optional)
        else:
            found |= _imports(child, optional or guarded)
    return found


def _used() -> tuple[set[str], set[str]]:
    """(required, optional) distribution names the package imports."""
    dists = packages_distributions()
    required: set[str] = set()
    optional: set[str] = set()
    sources = sorted(PACKAGE.rglob("*.py"))
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for top, guarded in _imports(tree):
            if top in sys.stdlib_module_names or top in {"bridge", "__future__"}:
                continue
            names = {_normalize(d) for d in dists.get(top, [top])}
            (optional if guarded else required).update(names)
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    required |= {dist for dist, driver in DRIVERS.items() if driver in text}
    return required, optional - required


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = {_requirement_name(s) for s in project["dependencies"]}
    extras = project.get("optional-dependencies", {})
    optional = {_requirement_name(s) for name, specs in extras.items() if name != "test"
                for s in specs}
    return deps, optional


def test_the_dependencies_are_exactly_what_the_package_imports() -> None:
    required, _ = _used()
    declared, _ = _declared()
    assert sorted(required - declared) == [], "imported but not declared in dependencies"
    assert sorted(declared - required) == [], "declared in dependencies but never imported"


def test_optional_imports_are_extras_not_dependencies() -> None:
    _, optional = _used()
    declared, extras = _declared()
    assert optional, "uvloop at least is optional"
    assert sorted(optional - extras) == []
    assert sorted(optional & declared) == []


def test_the_import_walk_sees_guards() -> None:
    tree = ast.parse("import numpy\ntry:\n    import uvloop\nexcept ImportError:\n    pass\n"
                     "def f():\n    with contextlib.suppress(ImportError):\n        import x\n")
    assert _imports(tree) == {("numpy", False), ("uvloop", True), ("x", True)}
