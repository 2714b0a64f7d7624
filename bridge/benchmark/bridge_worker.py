"""The bridge under test, in its own process, as a :mod:`bridge.benchmark.control` worker.

``python -m bridge.benchmark.bridge_worker --config JSON`` (fields of
:class:`BridgeWorkerConfig`) prepares a SQLite database in a temporary directory (one account,
``rooms`` rooms with deterministic PINs, one access number), starts a
:class:`~bridge.runtime.app.BridgeApp` on ``host`` with the RTP range ``rtp_low-rtp_high``
and announces::

    {"event": "ready", "pid": ..., "uvloop": true, "sip_port": 5080, "routing": "conference",
     "rooms": [{"uri": "sip:+15550100@127.0.0.1:5080", "pin": "2..."}, ...]}

``rooms[i]`` is what the load generator's ``add(rooms=...)`` wants for room ``i``. With
``routing="conference"`` every room shares the access number and the ``pin`` is the language
key ``2`` (English, typed ahead of the menu) followed by the room's participant PIN: the
caller goes through the whole dial-in IVR (RFC 4733 digits). With ``routing="direct"`` the
Request-URI user names the room (``DirectRoomController``) and there is no PIN.

Commands (one JSON reply each):

``stats``  ``{"mark": true}`` -> since the last mark: ``ticks``, ``skipped_ticks``, tick
    lateness ``lateness_p50_ms``/``lateness_p99_ms``/``lateness_max_ms`` (from
    :attr:`MediaRuntime.lateness`, time.monotonic based), ``packets_sent``,
    ``packets_received``, ``packets_dropped`` (RTP refused by the sessions plus late or
    flushed frames of the jitter buffers), ``cpu_seconds``; now: ``legs`` (media legs),
    ``joined`` (legs moved out of their own room into a conference), ``calls_offered``,
    ``calls_answered``, ``calls_rejected``, ``calls_ended``. With media workers
    (``workers`` > 0): ``workers`` lists each worker's own figures, lateness is the worst of
    the processes carrying media (the main process's only while it holds legs; its own p99 is
    ``main_lateness_p99_ms``), packets sent, ticks skipped and CPU seconds add the workers',
    and ``worker_datagrams_received`` counts what the workers read.
``profile_start`` / ``profile_stop`` ``{"path": "..."}`` -> cProfile of the process between
    the two, dumped with :meth:`cProfile.Profile.dump_stats` (for ``python -m pstats``).
"""

from __future__ import annotations

import os

# One process is one core's worth of bridge: OpenBLAS's worker threads (the in-band DTMF
# detector's matmul) spin on the other core and take it from the load generator. Must be set
# before numpy is first imported; it is inherited by the worker started from this module.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import cProfile
import gc
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from bridge.benchmark.control import Handler, WorkerProcess, install_uvloop, serve_commands
from bridge.conference.enums import Language
from bridge.conference.pins import is_trivial
from bridge.config import Config, MediaConfig, RtpConfig, SipConfig
from bridge.media.clock import lateness_summary
from bridge.runtime.app import BridgeApp, DirectRoomController
from bridge.runtime.calls import CallController
from bridge.runtime.media import LATENESS_RING

__all__ = [
    "ACCESS_NUMBER",
    "LANGUAGE_KEY",
    "BridgeWorker",
    "BridgeWorkerConfig",
    "BridgeWorkerProcess",
    "bridge_config",
    "main",
    "room_pins",
]

Routing = Literal["conference", "direct"]
ACCESS_NUMBER = "+15550100"
LANGUAGE_KEY = "2"  # English in the IVR's language menu (bridge.ivr.flows.LANGUAGE_KEYS)


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeWorkerConfig:
    """Worker settings (JSON-serialisable; passed as ``--config``).

    ``max_participants`` and ``max_lateness_p99_ms`` are the bridge's admission limits
    (``[media]`` of :class:`bridge.config.Config`); 0 turns a limit off, which is what a
    capacity ramp wants (it measures how far the bridge goes, not where it refuses).
    """

    host: str = "127.0.0.1"
    sip_port: int = 0  # 0: any free port
    rtp_low: int = 16000
    rtp_high: int = 29999
    rooms: int = 10
    routing: Routing = "conference"
    max_participants: int = 0
    max_lateness_p99_ms: float = 0.0
    retry_after: int = 30
    workers: int = 0  # [media] workers: media worker processes (0: all in one process)
    db_dir: str | None = None  # None: a temporary directory, removed at exit

    def __post_init__(self) -> None:
        if self.rooms < 1:
            raise ValueError("rooms must be positive")
        if self.workers < 0:
            raise ValueError("workers must not be negative")
        if self.routing not in ("conference", "direct"):
            raise ValueError(f"unknown routing {self.routing!r}")


def room_pins(index: int) -> tuple[str, str]:
    """Deterministic, distinct, non-trivial 8-digit ``(participant, moderator)`` PINs of room
    ``index`` (unique across rooms and roles: participant PINs start with 3, moderator PINs
    with 6)."""
    if not 0 <= index < 1_000_000:
        raise ValueError("room index out of range")
    pins = []
    for lead, tail in (("3", 17), ("6", 59)):
        pin = f"{lead}{index:06d}{tail % 10}"
        if is_trivial(pin):  # e.g. an index that makes a run: change the last digit
            pin = pin[:-1] + str((tail + 3) % 10)
        pins.append(pin)
    return pins[0], pins[1]


def bridge_config(config: BridgeWorkerConfig, db_path: Path) -> Config:
    """The :class:`Config` the worker's bridge runs with (UDP only, no auth, 127.0.0.0/8; the
    load generator is a trunk to the fair intake: it places hundreds of calls per second from
    one address)."""
    return Config(
        sip=SipConfig(listen_host=config.host, listen_port=config.sip_port, transports=("udp",),
                      trunk_networks=(f"{config.host}/32" if ":" not in config.host
                                      else f"{config.host}/128",)),
        rtp=RtpConfig(bind_host=config.host, port_low=config.rtp_low, port_high=config.rtp_high),
        media=MediaConfig(max_participants=config.max_participants,
                          max_lateness_p99_ms=config.max_lateness_p99_ms,
                          retry_after=config.retry_after, workers=config.workers),
        db_path=db_path,
    )  # not validate(): port 0 (any free port) is what a benchmark wants


class BridgeWorker:
    """A started bridge plus the counters behind the ``stats`` command."""

    def __init__(self, app: BridgeApp) -> None:
        self.app = app
        self._mark_ticks = 0
        self._mark_skipped = 0
        self._mark_cpu = time.process_time()
        self._mark_counts = (0, 0, 0)
        self._profile: cProfile.Profile | None = None

    def _packet_counts(self) -> tuple[int, int, int]:
        """``(sent, received, dropped)`` over the current legs (cumulative per leg)."""
        engine = self.app.media.engine
        received = dropped = 0
        for call in self.app.legs:
            if call not in engine:
                continue
            session = engine.session(call)
            c, j = session.counters, session.jitter.counters
            received += c.packets_received
            dropped += (c.dropped_malformed + c.dropped_foreign_source + c.dropped_payload_type
                        + c.dropped_sequence_jump + j.late + j.flushed)
        return engine.counters.packets_sent, received, dropped

    def joined(self) -> int:
        """Legs no longer in the room of their own they start in (``leg:<call>``): in a
        conference room of this process or of a media worker."""
        engine = self.app.media.engine
        pool = self.app.pool
        moved = pool.worker_legs if pool is not None else 0
        return moved + sum(1 for call in self.app.legs
                           if call in engine and call not in engine.room_legs(f"leg:{call}"))

    async def stats(self, *, mark: bool) -> dict[str, Any]:
        media = self.app.media
        ticks = media.ticks - self._mark_ticks
        window = min(ticks, LATENESS_RING)
        recent = media.recent_lateness(window)
        p50, p99, worst = lateness_summary(recent)
        counts = self._packet_counts()
        cpu = time.process_time()
        skipped = media.skipped_ticks - self._mark_skipped
        counters = self.app.counters
        result: dict[str, Any] = {
            "ticks": ticks,
            "skipped_ticks": skipped,
            "lateness_p50_ms": p50,
            "lateness_p99_ms": p99,
            "lateness_max_ms": worst,
            "packets_sent": max(0, counts[0] - self._mark_counts[0]),
            "packets_received": max(0, counts[1] - self._mark_counts[1]),
            "packets_dropped": max(0, counts[2] - self._mark_counts[2]),
            "cpu_seconds": cpu - self._mark_cpu,
            "legs": media.engine.leg_count,
            "joined": self.joined(),
            "calls_offered": counters.calls_offered,
            "calls_answered": counters.calls_answered,
            "calls_rejected": counters.calls_rejected,
            "calls_ended": counters.calls_ended,
            "workers": [],
        }
        pool = self.app.pool
        if pool is not None:
            # Each media worker's own clock: the step's lateness is the worst process's.
            workers = await pool.stats(mark=mark)
            result["workers"] = [asdict(w) for w in workers]
            result["legs"] += sum(w.legs for w in workers)
            # The main process's own clock counts while it carries media (callers in the
            # IVR); with every leg in a worker it ticks for nobody.
            main = [result] if media.engine.leg_count else []
            result["main_lateness_p99_ms"] = p99
            for key in ("lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms"):
                result[key] = max([*(r[key] for r in main), *(getattr(w, key) for w in workers)],
                                  default=0.0)
            result["skipped_ticks"] += sum(w.skipped_ticks for w in workers)
            result["packets_sent"] += sum(w.packets_sent for w in workers)
            # A worker counts datagrams read (RTCP and refused packets too), not accepted RTP
            # as the main process's sessions do: kept apart, not added up.
            result["worker_datagrams_received"] = sum(w.packets_received for w in workers)
            result["cpu_seconds"] += sum(w.cpu_seconds for w in workers)
        if mark:
            self._mark_ticks, self._mark_skipped = media.ticks, media.skipped_ticks
            self._mark_cpu, self._mark_counts = cpu, counts
        return result

    def profile_start(self) -> None:
        if self._profile is not None:
            raise ValueError("a profile is already running")
        self._profile = cProfile.Profile()
        self._profile.enable()

    def profile_stop(self, path: str) -> None:
        if self._profile is None:
            raise ValueError("no profile is running")
        self._profile.disable()
        self._profile.dump_stats(path)
        self._profile = None


async def _prepare_db(config: BridgeWorkerConfig, path: Path) -> None:
    """Account, rooms and the access number (store API, as an administrator would)."""
    from bridge.store.sqlite import SqliteStore

    store = await SqliteStore.open(path)
    try:
        account = await store.create_account(name="Benchmark", email="bench@localhost")
        for index in range(config.rooms):
            participant, moderator = room_pins(index)
            await store.create_room(account_id=account.id, name=f"bench-{index}",
                                    participant_pin=participant, moderator_pin=moderator)
        await store.add_access_number(number=ACCESS_NUMBER, country="US",
                                      language=Language.EN)
    finally:
        await store.close()


def _rooms(config: BridgeWorkerConfig, sip_port: int) -> list[dict[str, str | None]]:
    hostport = f"{config.host}:{sip_port}"
    if config.routing == "direct":
        return [{"uri": f"sip:bench-{i}@{hostport}", "pin": None} for i in range(config.rooms)]
    return [{"uri": f"sip:{ACCESS_NUMBER}@{hostport}", "pin": LANGUAGE_KEY + room_pins(i)[0]}
            for i in range(config.rooms)]


async def _serve(config: BridgeWorkerConfig, uvloop: bool, directory: Path) -> None:
    db_path = directory / "bench.sqlite3"
    await _prepare_db(config, db_path)
    bridge = bridge_config(config, db_path)
    controller: CallController
    store = None
    if config.routing == "conference":
        from bridge.runtime.controller import ConferenceController, ControllerConfig
        from bridge.runtime.prompt_files import load_prompts
        from bridge.store.sqlite import SqliteStore

        store = await SqliteStore.open(db_path)
        # Every caller comes from 127.0.0.1: count PIN failures per caller (From), not per
        # source address, or a few mistyped PINs would lock every later caller out.
        controller = ConferenceController(
            store, ControllerConfig(node_id="bench", trusted_networks=("127.0.0.0/8",)),
            load_prompts(bridge.prompts_dir))
    else:
        controller = DirectRoomController()
    app = BridgeApp(bridge, controller)
    _, sip_port = await app.start()
    gc.freeze()  # as `bridge serve` does once it has started
    worker = BridgeWorker(app)

    async def stats(command: dict[str, Any]) -> dict[str, Any]:
        return await worker.stats(mark=bool(command.get("mark", True)))

    async def profile_start(command: dict[str, Any]) -> dict[str, Any]:
        worker.profile_start()
        return {}

    async def profile_stop(command: dict[str, Any]) -> dict[str, Any]:
        worker.profile_stop(str(command["path"]))
        return {"path": str(command["path"])}

    handlers: dict[str, Handler] = {
        "stats": stats, "profile_start": profile_start, "profile_stop": profile_stop,
    }
    ready = {"pid": os.getpid(), "uvloop": uvloop, "sip_port": sip_port,
             "routing": config.routing, "rooms": _rooms(config, sip_port),
             "worker_pids": [w.pid for w in await app.pool.stats()] if app.pool else []}
    try:
        await serve_commands(ready, handlers)
    finally:
        await app.stop()
        drain = getattr(controller, "drain", None)
        if drain is not None:
            await drain()
        if store is not None:
            await store.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bridge.benchmark.bridge_worker --config JSON``."""
    parser = argparse.ArgumentParser(prog="python -m bridge.benchmark.bridge_worker")
    parser.add_argument("--config", default="{}", help="BridgeWorkerConfig fields as JSON")
    args = parser.parse_args(argv)
    config = BridgeWorkerConfig(**json.loads(args.config))
    uvloop = install_uvloop()
    if config.db_dir is not None:
        asyncio.run(_serve(config, uvloop, Path(config.db_dir)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as directory:
        asyncio.run(_serve(config, uvloop, Path(directory)))
    return 0


class BridgeWorkerProcess(WorkerProcess):
    """The bridge worker in its own process: ``rooms`` for the load generator, ``stats()``."""

    def __init__(self, config: BridgeWorkerConfig | None = None,
                 *, start_timeout: float = 60.0) -> None:
        self.config = config or BridgeWorkerConfig()
        super().__init__("bridge.benchmark.bridge_worker", asdict(self.config),
                         start_timeout=start_timeout)
        self.sip_port = int(self.ready["sip_port"])
        self.rooms: list[dict[str, Any]] = list(self.ready["rooms"])
        self.worker_pids: list[int] = [int(p) for p in self.ready.get("worker_pids", [])]

    def stats(self, *, mark: bool = True) -> dict[str, Any]:
        """Counters since the last mark (see the module docstring)."""
        return self.request("stats", mark=mark)

    def profile_start(self) -> None:
        """Start a cProfile of the bridge process."""
        self.request("profile_start")

    def profile_stop(self, path: str | Path) -> None:
        """Stop the profile and dump its stats to ``path``."""
        self.request("profile_stop", path=str(path))



if __name__ == "__main__":
    raise SystemExit(main())
