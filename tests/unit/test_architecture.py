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


# -- no import circles; no I/O in the sans-I/O cores ------------------------------------------

#: The packages that must not touch files, sockets, the clock or the event loop.
SANS_IO = ("sip", "sdp", "rtp", "media", "codecs", "conference", "ivr")
SANS_IO_FORBIDDEN_IMPORTS = {"asyncio", "socket", "pathlib", "os", "shutil", "tempfile",
                             "selectors", "subprocess", "threading", "time", "uvloop",
                             "sqlite3", "aiosqlite", "aiohttp"}
#: Calls that read or write files (``Path`` methods and friends), whatever the receiver.
FILE_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob",
                "rglob", "mkdir", "unlink", "touch", "stat", "exists", "is_file", "is_dir"}
#: Known import circles, each with the reason it may stay for now. Remove an entry as soon as
#: its circle is gone (the test then fails if it comes back).
KNOWN_CIRCLES: list[set[str]] = []  # none left: a new circle fails the test


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _import_targets(path: Path, modules: dict[str, Path]) -> set[str]:
    """The bridge modules ``path`` imports anywhere (module level, functions, TYPE_CHECKING):
    for ``from a.b import c`` the module ``a.b.c`` when it is one, else ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if not name.startswith("bridge"):
                continue
            for alias in node.names:
                sub = f"{name}.{alias.name}"
                if sub in modules:
                    out.add(sub)
                elif name in modules:
                    out.add(name)
    out.discard(me)
    return out


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_in_bridge() -> None:
    modules = _all_modules()
    graph = {name: _import_targets(path, modules) for name, path in modules.items()}
    circles = [c for c in _circles(graph) if c not in KNOWN_CIRCLES]
    assert circles == [], "import circles: " + "; ".join(
        " <-> ".join(sorted(c)) for c in circles)


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [{"a", "b", "c"}]
    assert _circles({"a": {"b"}, "b": set()}) == []


def _io_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""])
            problems += [f"line {node.lineno}: imports {n}" for n in names
                         if n.split(".")[0] in SANS_IO_FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                problems.append(f"line {node.lineno}: open()")
            elif isinstance(func, ast.Attribute) and func.attr in FILE_METHODS:
                problems.append(f"line {node.lineno}: .{func.attr}()")
            elif isinstance(func, ast.Attribute) and func.attr == "open":
                # wave.open / gzip.open on a file name; an in-memory buffer is fine
                first = node.args[0] if node.args else None
                in_memory = (isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute)
                             and first.func.attr in ("BytesIO", "StringIO"))
                if not in_memory and not (isinstance(func.value, ast.Name)
                                          and func.value.id[:1].isupper()):
                    problems.append(f"line {node.lineno}: {ast.unparse(func)}()")
    return problems


@pytest.mark.parametrize("path", _modules(SANS_IO), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_sans_io_cores_do_no_io(path: Path) -> None:
    assert _io_in(path) == []


def test_the_io_check_sees_file_access(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom pathlib import Path\nopen('x')\nPath('y').read_bytes()\n"
                   "import wave\nwave.open('z.wav')\nwave.open(io.BytesIO(b''))\n"
                   "Conference.open(room)\n")
    assert _io_in(bad) == ["line 1: imports time", "line 2: imports pathlib", "line 3: open()",
                           "line 4: .read_bytes()", "line 6: wave.open()"]
