"""The composition root of ``bridge serve``: store, prompts, the conference controller (the
live conference service), the bridge process and the web hook, wired in one asyncio loop.

The web layer plugs in through :data:`StartWeb`: ``start_web(service, store, health, config)``
returns an awaitable closer, called (and awaited) at shutdown before the calls are hung up.
By default :func:`serve` uses ``bridge.web.start_web`` when the web package provides one,
and nothing otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import cast

from bridge.config import Config
from bridge.media.prompts import PromptError, PromptLibrary
from bridge.runtime import prompt_files
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from bridge.runtime.heartbeat import Heartbeat
from bridge.service.live import ConferenceService, Health
from bridge.store.base import Store

__all__ = ["LOOP_PROBE_INTERVAL", "ProcessHealth", "StartWeb", "serve"]

log = logging.getLogger("bridge")

LOOP_PROBE_INTERVAL = 0.5  # seconds between two probes of the event loop's lag

Closer = Callable[[], Awaitable[None]]
StartWeb = Callable[[ConferenceService, Store, Health, Config], Awaitable[Closer]]


class ProcessHealth:
    """The media clock's last tick and the event loop's lag of this process (``Health``)."""

    def __init__(self, app: BridgeApp) -> None:
        self._app = app
        self._lag = 0.0
        self._task: asyncio.Task[None] | None = None
        self._started_at: float | None = None  # loop time of start(): a clock that never
        # ticks ages from there, so it turns /healthz 503 like one that stopped

    @property
    def app(self) -> BridgeApp:
        """The bridge process (its counters and media feed /metrics)."""
        return self._app

    def media_tick_age(self) -> float:
        last = self._app.media.last_tick_at
        if last is None:
            last = self._started_at
        if last is None:
            return 0.0
        return max(0.0, asyncio.get_running_loop().time() - last)

    def loop_lag(self) -> float:
        return self._lag

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        self._task = loop.create_task(self._probe())

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LOOP_PROBE_INTERVAL
            await asyncio.sleep(LOOP_PROBE_INTERVAL)
            self._lag = max(0.0, loop.time() - due)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def _no_web(service: ConferenceService, store: Store, health: Health,
                  config: Config) -> Closer:
    async def close() -> None:
        return None

    return close


def default_start_web() -> StartWeb:
    """``bridge.web.start_web`` if the web package has it, else a hook that starts nothing."""
    web = importlib.import_module("bridge.web")
    hook = getattr(web, "start_web", None)
    return cast(StartWeb, hook) if hook is not None else _no_web


def load_prompts(config: Config) -> PromptLibrary | None:
    """Every prompt, read and decoded now (package data, or ``prompts_dir``). A malformed
    file, or any prompt the IVR can play missing for de, en or fr, is one error line at start
    (None), never a running bridge that fails in the middle of somebody's call."""
    where = prompt_files.describe(config.prompts_dir)
    try:
        prompts = prompt_files.load_prompts(config.prompts_dir)
    except PromptError as exc:
        log.error("prompts: %s", exc)
        return None
    missing = prompt_files.missing_prompts(prompts)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        log.error("prompts missing in %s: %s", where, shown)
        return None
    log.info("%d prompts loaded from %s", len(prompts), where)
    return prompts


def serve(config: Config, *, log_level: str = "INFO",
          start_web: StartWeb | None = None) -> int:
    """``bridge serve``: run until SIGINT/SIGTERM, then hang up every call and exit 0."""
    from bridge.logs import setup_logging

    setup_logging(log_level, config.log_format)  # log_format = "json": one object per line
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    hook = start_web if start_web is not None else default_start_web()
    return asyncio.run(_main(config, hook))


async def _main(config: Config, start_web: StartWeb) -> int:
    prompts = load_prompts(config)
    if prompts is None:
        return 1
    from bridge.store.sql import open_for_serving  # after the check: its imports log at INFO

    store = await open_for_serving(config.database)
    if store is None:
        return 1
    conference = config.conference
    # Stable across restarts, so crash recovery finds the records this node left open.
    node_id = conference.node_id or socket.gethostname()
    controller: ConferenceController | None = None
    heartbeat: Heartbeat | None = None
    try:
        interrupted = await store.close_interrupted(node_id, time.time())
        if interrupted:
            log.info("closed %d call record(s) left open by a previous run", interrupted)
        heartbeat = Heartbeat(store, node_id, conference.heartbeat_interval)
        await heartbeat.beat()  # after the recovery above: it dated the crash by the last beat
        heartbeat.start()
        controller = ConferenceController(
            store,
            ControllerConfig(node_id=node_id,
                             default_country=conference.default_country or None,
                             trusted_networks=conference.trusted_networks,
                             ivr_calls_per_source=conference.ivr_calls_per_source),
            prompts,
        )
        app = BridgeApp(config, controller)
        controller.attach(app)
        try:
            host, port = await app.start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", config.sip.listen_host,
                      config.sip.listen_port, exc.strerror or exc)
            return 1
        health = ProcessHealth(app)
        health.start()
        try:
            close_web = await start_web(controller, store, health, config)
        except Exception as exc:
            log.error("cannot start the web server: %s", exc)
            health.stop()
            await app.stop()
            return 1
        sent_by = app.endpoint.config.sent_by_host if app.endpoint else host
        print(f"bridge: SIP on {host}:{port}; dial sip:+NUMBER@{sent_by}:{port}", flush=True)
        # What exists now (modules, prompts, the store) lives as long as the process: keep it
        # out of the cyclic collector's full passes, whose pauses would delay the media clock
        # (the objects of calls are still collected as usual).
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await close_web()
        health.stop()
        log.info("shutting down: hanging up %d call(s)", len(app.legs))
        await app.stop()
        return 0
    finally:
        if heartbeat is not None:
            await heartbeat.stop()
        if controller is not None:
            await controller.drain()
        await store.close()
