"""The HTTP server of ``bridge serve``: the JSON API under ``/api/v1``, /healthz and /metrics.

:func:`create_app` builds the aiohttp application from a store (and, in a running bridge, the
live conference service and a health probe); :func:`start_web` is the hook the composition
root calls: it listens on ``[web] listen`` (``BRIDGE_WEB_LISTEN`` overrides; port 0 picks a
free port, which is logged), with TLS when a certificate and key are configured, and returns
an awaitable closer.

Every ``/api/v1`` call but the OpenAPI document needs ``Authorization: Bearer <token>``
(the WebSocket may pass ``?access_token=`` instead): a missing, unknown or revoked token is
401. The token's account sees only its own rooms (another account's room is 404, never 403);
an admin account sees all.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.config import Config, ConfigError, parse_hostport
from bridge.store.base import Store
from bridge.web.auth import hash_token
from bridge.web.problems import Handler, problem_middleware, unauthorized
from bridge.web.state import (
    ACCOUNT,
    STATE,
    LoopLag,
    WebState,
    client_address,
)

__all__ = [
    "ACCOUNT",
    "STATE",
    "LoopLag",
    "WebState",
    "client_address",
    "create_app",
    "start_web",
]

log = logging.getLogger("bridge.web")

API = "/api/v1"
PUBLIC = frozenset({f"{API}/openapi.json"})
TOUCH_EVERY = 60.0  # seconds between writes of a token's last_used_at


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.path == f"{API}/events":
        return request.query.get("access_token") or None
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API + "/") or request.path in PUBLIC:
        return await handler(request)
    token = bearer_token(request)
    if token is None:
        raise unauthorized("this API needs a bearer token (Authorization: Bearer ...)")
    state = request.app[STATE]
    found = await state.store.find_api_token(hash_token(token))
    if found is None or found.revoked_at is not None:
        log.info("refused an unknown or revoked token from %s", client_address(request))
        raise unauthorized("the token is unknown or revoked")
    account = await state.store.get_account(found.account_id)
    if account is None:
        raise unauthorized("the token's account no longer exists")
    now = time.time()
    if now - state.touched.get(found.id, 0.0) >= TOUCH_EVERY:
        state.touched[found.id] = now
        await state.store.touch_api_token(found.id, now)
    request[ACCOUNT] = account
    return await handler(request)


def create_app(
    store: Store,
    config: Config,
    *,
    service: Any = None,
    health: Any = None,
    metrics: Any = None,
    node_id: str = "",
) -> web.Application:
    """The aiohttp application (not yet listening)."""
    from bridge.web import api, openapi, ops

    app = web.Application(middlewares=[problem_middleware, auth_middleware],
                          client_max_size=256 * 1024)
    nets = tuple(ipaddress.ip_network(n, strict=False) for n in config.web.trusted_proxies)
    state = WebState(store=store, config=config, service=service, health=health,
                     metrics=metrics, node_id=node_id, trusted_proxies=nets)
    app[STATE] = state
    api.add_routes(app)
    _add_live_routes(app)
    ops.add_routes(app)
    openapi.add_routes(app)

    async def on_startup(_app: web.Application) -> None:
        state.loop_lag.start()

    async def on_cleanup(_app: web.Application) -> None:
        await state.loop_lag.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def _add_live_routes(app: web.Application) -> None:
    import importlib

    try:
        live = importlib.import_module("bridge.web.live")
    except ImportError:  # the live conference service is not part of this build yet
        return
    live.add_routes(app)


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.web.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.web.tls_cert, config.web.tls_key)
    return context


@dataclass(slots=True)
class RunningWeb:
    """A listening web server: its address and its closer."""

    runner: web.AppRunner
    host: str
    port: int
    scheme: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve_app(app: web.Application, config: Config) -> RunningWeb | None:
    """Listen on the configured address; None when the web server is switched off."""
    listen = os.environ.get("BRIDGE_WEB_LISTEN", config.web.listen)
    if not listen.strip():
        log.info("web server off ([web] listen is empty)")
        return None
    try:
        host, port = parse_hostport(listen, 8080, allow_zero=True)
    except ConfigError as exc:
        raise ConfigError(f"web.listen: {exc}") from None
    context = _ssl_context(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=context, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname() if sockets else (host, port)
    running = RunningWeb(runner=runner, host=str(bound[0]), port=int(bound[1]),
                         scheme="https" if context else "http")
    log.warning("web API on %s%s", running.url, API)  # shown at every log level
    app[STATE].extra["url"] = running.url
    return running


async def start_web(
    service: Any, store: Store, health: Any, config: Config
) -> Callable[[], Awaitable[None]]:
    """The composition root's hook: serve the API; returns the coroutine function that stops it."""
    from bridge.web.probe import RuntimeMetrics

    node_id = config.conference.node_id or socket.gethostname()
    bridge_app = getattr(health, "app", None)
    metrics = None if bridge_app is None else RuntimeMetrics(bridge_app)
    app = create_app(store, config, service=service, health=health, metrics=metrics,
                     node_id=node_id)
    running = await serve_app(app, config)

    async def close() -> None:
        if running is not None:
            await running.close()

    return close
