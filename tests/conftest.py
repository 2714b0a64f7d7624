"""Shared test helpers: real peers (SIPp, baresip) and free loopback ports."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.pgserver import PgServer, PgUnavailableError
from tests.storebackend import Backend

LOOPBACK = "127.0.0.1"

# Every bridge a test starts serves its web API on an ephemeral port, so parallel test
# bridges never clash on 8080 (a test that wants another address sets it itself).
os.environ.setdefault("BRIDGE_WEB_LISTEN", "127.0.0.1:0")

# CI runs the property tests on a fixed example sequence (a red CI must mean a changed
# behaviour, not an unlucky draw); local runs draw afresh each time and keep finding cases.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("BRIDGE_REQUIRE_PEERS") or os.environ.get("CI"):
    settings.load_profile("ci")


def require_binary(name: str) -> str:
    """Path of an external peer. In CI (CI or BRIDGE_REQUIRE_PEERS set) a missing peer fails
    the test,
    so an interop test can never pass by skipping; elsewhere it skips with the reason."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install sip-tester baresip-core)"
        if peers_required():
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port(kind: int = socket.SOCK_DGRAM, *, even: bool = False, span: int = 1) -> int:
    """A port free for UDP and TCP on 127.0.0.1 (and the ``span - 1`` ports above it)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        if even and port % 2:
            continue
        if port + span > 65535:
            continue
        if all(_is_free(p) for p in range(port, port + span)):
            return port
    raise RuntimeError("no free port found")


def rtp_port_block(size: int = 64) -> tuple[int, int]:
    """A block of ports below the ephemeral range for a bridge's RTP pool. The pool skips
    ports it cannot bind, so the block needs no probing; random blocks keep parallel runs
    apart."""
    low = 2 * random.randrange(10000, 16000 - size)
    return low, low + size - 1


async def wait_until_bound(port: int, timeout: float = 10.0) -> None:
    """Wait until another process has bound ``port`` on 127.0.0.1 (a peer is listening)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _is_free(port):
        if loop.time() > deadline:
            raise TimeoutError(f"nothing bound port {port} within {timeout} s")
        await asyncio.sleep(0.02)


def _is_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def peers_required() -> bool:
    return bool(os.environ.get("BRIDGE_REQUIRE_PEERS") or os.environ.get("CI"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole run (initdb + pg_ctl on a Unix socket). Without the
    binaries the tests that need it skip -- and fail in CI (CI or BRIDGE_REQUIRE_PEERS set)."""
    try:
        server = PgServer().start()
    except PgUnavailableError as exc:
        if peers_required():
            pytest.fail(f"PostgreSQL is required here: {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the test server."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each store test runs on a SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    return Backend("postgresql", request.getfixturevalue("pg_url"))
