"""A throw-away PostgreSQL server for the tests: ``initdb`` into a temporary directory and
``pg_ctl`` on a Unix socket in it (no TCP port). As root the server runs as the ``postgres``
user (PostgreSQL refuses root), with a directory that user owns.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<v>/bin``) or
``$PG_BIN``. ``PgServer.create_database()`` gives each test a database of its own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["PgServer", "PgUnavailableError", "find_pg_bin"]


class PgUnavailableError(RuntimeError):
    """No PostgreSQL server binaries on this machine (or they cannot run)."""


def find_pg_bin() -> Path | None:
    env = os.environ.get("PG_BIN")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    which = shutil.which("initdb")
    return Path(which).parent if which else None


class PgServer:
    """A running server; ``url(database)`` is a ``postgresql://`` URL over its socket."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable  # fsync on (benchmarks); the tests run with fsync=off
        self.bin = find_pg_bin()
        if self.bin is None:
            raise PgUnavailableError(
                "PostgreSQL server binaries not found (apt-get install postgresql)"
            )
        self._as: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PgUnavailableError("running as root, and there is no postgres user") from exc
            self._as = ["runuser", "-u", "postgres", "--"]
            self._owner = (entry.pw_uid, entry.pw_gid)
        self.root = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root  # short path: a Unix socket path has ~100 bytes at most
        self.port = 5432
        self.user = "postgres"
        self._started = False

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise PgUnavailableError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-400:]}")

    def start(self) -> PgServer:
        assert self.bin is not None
        if self._owner is not None:
            os.chown(self.root, *self._owner)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )
        fsync = "on" if self.durable else "off"
        options = (
            f"-k {self.socket_dir} -c listen_addresses='' -p {self.port} -c fsync={fsync} "
            "-c max_connections=100"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
            "-l", str(self.root / "log"), "start",
        )
        self._started = True
        return self

    def stop(self) -> None:
        if self._started and self.bin is not None:
            with contextlib.suppress(PgUnavailableError, subprocess.TimeoutExpired):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"

    def _psql(self, sql: str) -> None:
        assert self.bin is not None
        psql = shutil.which("psql") or str(self.bin / "psql")
        done = subprocess.run(
            [psql, "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user,
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.split("/", 3)[3].split("?", 1)[0]
        with contextlib.suppress(RuntimeError):
            self._psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
