"""Helpers of the web API tests: accounts and tokens made with the real CLI, an API server on
an ephemeral loopback port over a real SQLite file, and a small JSON client."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bridge.cli import main
from bridge.config import Config, WebConfig
from bridge.store.sqlite import SqliteStore
from bridge.web.app import RunningWeb, create_app, serve_app

TOKEN = re.compile(r"^(brg_\S+)$", re.M)


def cli(*argv: str) -> tuple[int, str, str]:
    """``bridge ARGV`` in this process (in a thread of its own: the CLI runs its own event
    loop, and the tests call it from theirs)."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def account_token(db: Path, email: str, *, admin: bool = False) -> str:
    """Create the account (if new) and a token with ``bridge accounts|tokens create``."""
    code, _, err = cli("accounts", "create", email, "--db", str(db), *(["--admin"] * admin))
    assert code == 0 or "exists already" in err, err
    code, out, err = cli("tokens", "create", email, "--db", str(db), "--name", "test")
    assert code == 0, err
    match = TOKEN.search(out)
    assert match, out
    return match.group(1)


@dataclass
class Reply:
    status: int
    content_type: str
    body: Any
    headers: dict[str, str]


class Api:
    """A JSON client of one server, one token."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None) -> None:
        self.session = session
        self.base = base
        self.token = token

    def as_token(self, token: str | None) -> Api:
        return Api(self.session, self.base, token)

    async def call(self, method: str, path: str, body: Any = None, *,
                   raw: bytes | None = None) -> Reply:
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        data: bytes | None = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, data=data,
                                        headers=headers) as response:
            text = await response.text()
            parsed: Any = json.loads(text) if text and "json" in response.content_type else text
            return Reply(response.status, response.content_type, parsed, dict(response.headers))

    async def get(self, path: str) -> Reply:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None) -> Reply:
        return await self.call("POST", path, body)


@contextlib.asynccontextmanager
async def api_server(db: Path, *, service: Any = None, health: Any = None,
                     config: Config | None = None) -> AsyncIterator[tuple[RunningWeb, Any]]:
    """The web app on 127.0.0.1:<ephemeral> over the SQLite file ``db``."""
    cfg = config or Config(web=WebConfig(listen="127.0.0.1:0"), db_path=db)
    store = await SqliteStore.open(db)
    try:
        app = create_app(store, cfg, service=service, health=health, node_id="test-node")
        running = await serve_app(app, cfg)
        assert running is not None
        try:
            yield running, store
        finally:
            await running.close()
    finally:
        await store.close()


def check_schema(reply: Reply, path: str, method: str) -> None:
    """Validate ``reply`` against the OpenAPI document's schema for this path, method and
    status (jsonschema, draft 2020-12 as OpenAPI 3.1 uses)."""
    import jsonschema

    from bridge.web.openapi import DOCUMENT

    operation = DOCUMENT["paths"][path][method.lower()]
    response = operation["responses"].get(str(reply.status))
    assert response is not None, f"{method} {path}: status {reply.status} is not documented"
    content = response.get("content")
    if not content:
        assert reply.body in ("", None), f"{method} {path}: undocumented body {reply.body!r}"
        return
    assert reply.content_type in content, (
        f"{method} {path}: {reply.content_type} is not documented for {reply.status}")
    schema = content[reply.content_type].get("schema")
    if schema is None:
        return
    root = {**schema, "components": DOCUMENT["components"]}
    jsonschema.Draft202012Validator(root).validate(reply.body)


async def acli(*argv: str) -> tuple[int, str, str]:
    """``bridge ARGV`` in a thread while this loop keeps serving (for commands that talk to
    a server on this loop)."""
    import asyncio

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)
