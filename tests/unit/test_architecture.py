"""Imports point inward (design notes §1): the protocol cores are sans-I/O."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "bridge"
CORES = ("sip", "sdp", "rtp", "codecs", "media")
DOMAIN = ("conference", "ivr", "billing", "store")
# Modules that do I/O or read the clock: only the edges may import them.
FORBIDDEN_IN_CORES = {"asyncio", "socket", "time", "threading", "selectors", "subprocess",
                      "uvloop", "aiohttp", "sqlite3", "aiosqlite"}
EDGES = ("runtime", "web", "cli", "admin", "benchmark", "__main__")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(packages: tuple[str, ...]) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(CORES), ids=lambda p: str(p.relative_to(ROOT)))
def test_cores_import_only_stdlib_numpy_and_cores(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN_IN_CORES, f"{path.name} imports {name}: cores are sans-I/O"
        if top == "bridge":
            layer = name.split(".")[1] if "." in name else ""
            assert layer in CORES, f"{path.name} imports {name}: cores import only cores"
        else:
            assert top in sys.stdlib_module_names or top == "numpy", (
                f"{path.name} imports {name}: cores use only the standard library and numpy"
            )


@pytest.mark.parametrize("path", _modules(DOMAIN), ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_does_not_import_the_edges(path: Path) -> None:
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "bridge" and len(parts) > 1:
            assert parts[1] not in EDGES, f"{path.name} imports {name}: the domain is inward"
