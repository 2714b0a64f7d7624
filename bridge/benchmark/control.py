"""JSON-lines control channel between a benchmark runner and its worker processes.

A worker (load generator or relay) is started as ``python -m <module> --config '<json>'``.
It writes one JSON object per line to stdout: first ``{"event": "ready", ...}``, then exactly
one reply per command it reads from stdin (``{"cmd": "...", ...}``). A reply carries
``"ok": true`` or ``"ok": false, "error": "..."``. Nothing else may be written to stdout
(diagnostics go to stderr). Closing stdin or ``{"cmd": "quit"}`` ends the worker.

:class:`WorkerProcess` is the parent's synchronous side; :func:`serve_commands` the worker's
asyncio side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ControlError", "Handler", "WorkerProcess", "install_uvloop", "serve_commands"]

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(RuntimeError):
    """The worker answered ``ok: false``, died, or did not answer in time."""


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when uvloop is installed; return whether it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def serve_commands(ready: dict[str, Any], handlers: dict[str, Handler]) -> None:
    """Announce ``ready`` then answer commands from stdin until EOF or ``quit``.

    A handler's ``ValueError``/``KeyError``/``OSError`` becomes an ``ok: false`` reply; any
    other exception is a bug and ends the worker with a traceback on stderr.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _emit({"event": "ready", **ready})
    while True:
        line = await reader.readline()
        if not line:
            return
        try:
            command = json.loads(line)
            name = command["cmd"]
        except (ValueError, KeyError, TypeError) as exc:
            _emit({"ok": False, "error": f"bad command line: {exc}"})
            continue
        if name == "quit":
            _emit({"ok": True})
            return
        handler = handlers.get(name)
        if handler is None:
            _emit({"ok": False, "error": f"unknown command {name!r}"})
            continue
        try:
            reply = await handler(command)
        except (ValueError, KeyError, OSError) as exc:
            _emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        _emit({"ok": True, **reply})


class WorkerProcess:
    """A worker started with ``python -m module --config JSON``; call :meth:`request`."""

    def __init__(self, module: str, config: dict[str, Any], *, start_timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--config", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._buffer = b""
        self.ready: dict[str, Any] = self._read_line(start_timeout)
        if self.ready.get("event") != "ready":
            self.kill()
            raise ControlError(f"{module} did not start: {self.ready}")

    @property
    def pid(self) -> int:
        """The worker's process id (for :mod:`bridge.benchmark.procstats`)."""
        return self.process.pid

    def _read_line(self, timeout: float) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlError(f"worker {self.pid} did not answer within {timeout} s")
            readable, _, _ = select.select([stdout], [], [], remaining)
            if readable:
                chunk = os.read(stdout.fileno(), 1 << 16)
                if not chunk:
                    raise ControlError(f"worker {self.pid} exited ({self.process.poll()})")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def request(self, cmd: str, *, reply_timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """Send ``{"cmd": cmd, **args}`` and return the reply within ``reply_timeout`` seconds;
        raise :class:`ControlError` on ``ok: false``, exit or timeout."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        except BrokenPipeError as exc:
            raise ControlError(f"worker {self.pid} exited ({self.process.poll()})") from exc
        reply = self._read_line(reply_timeout)
        if not reply.get("ok"):
            raise ControlError(f"{cmd}: {reply.get('error', reply)}")
        return reply

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to quit, then wait; kill it if it does not go."""
        if self.process.poll() is None:
            with contextlib.suppress(ControlError, OSError):
                self.request("quit", reply_timeout=timeout)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def kill(self) -> None:
        """Kill the worker (this process's own child) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
