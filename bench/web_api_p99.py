"""The API's p99 latency of a participant list while the bridge carries 300 legs, and the
media clock's p99 tick lateness meanwhile.

    .venv/bin/python -m bench.web_api_p99 [--legs 300] [--rooms-of 10] [--requests 500]

Starts ``bridge serve`` (a real process, web API on an ephemeral port) on a fresh SQLite file,
places the legs with the benchmark load generator (real SIP calls through the IVR, PIN as
RFC 4733, G.711 every 20 ms), then times GET /api/v1/conferences/{room}/participants one
after another. The tick lateness comes from the bridge's /metrics histogram (bucket bound).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bridge.benchmark.loadgen import LoadGenConfig, LoadGenerator
from bridge.conference.enums import Language
from bridge.store.sqlite import SqliteStore
from bridge.web.auth import hash_token, new_token
from tests.conftest import free_port, rtp_port_block

NUMBER = "+493012345678"


async def prepare(db: Path, rooms: int) -> tuple[str, list[tuple[int, str]]]:
    async with await SqliteStore.open(db) as store:
        account = await store.create_account(name="bench", email="bench@example.org")
        secret = new_token()
        await store.create_api_token(account_id=account.id, name="bench",
                                     token_hash=hash_token(secret), created_at=time.time())
        made = []
        for i in range(rooms):
            pin, mod = f"4{i:04d}719", f"5{i:04d}826"
            room = await store.create_room(account_id=account.id, name=f"room{i}",
                                           participant_pin=pin, moderator_pin=mod)
            made.append((room.id, pin))
        await store.add_access_number(number=NUMBER, country="DE", language=Language.EN)
        return secret, made


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def lateness_buckets(text: str) -> list[tuple[float, float]]:
    """The tick lateness histogram's cumulative buckets ``(le, count)`` of one scrape."""
    for family in text_string_to_metric_families(text):
        if family.name == "bridge_tick_lateness_seconds":
            return sorted((float(s.labels["le"]), s.value) for s in family.samples
                          if s.name.endswith("_bucket"))
    raise RuntimeError("no lateness histogram")


def lateness_p99(before: str, after: str) -> tuple[float, int]:
    """The upper bound of the bucket holding the 99th percentile of the ticks between two
    scrapes, and how many ticks that was."""
    old = dict(lateness_buckets(before))
    delta = [(le, count - old.get(le, 0.0)) for le, count in lateness_buckets(after)]
    total = delta[-1][1]
    for bound, count in delta:
        if count >= 0.99 * total:
            return bound, int(total)
    return float("inf"), int(total)  # pragma: no cover


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--legs", type=int, default=300)
    parser.add_argument("--rooms-of", type=int, default=10)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--workers", type=int, default=0, help="[media] workers")
    parser.add_argument("--call-rate", type=float, default=20.0, help="calls per second")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="web-bench-"))
    db = folder / "bridge.sqlite3"
    rooms = args.legs // args.rooms_of
    token, made = asyncio.run(prepare(db, rooms))
    sip_port = free_port()
    low, high = rtp_port_block(2 * args.legs + 64)
    config = folder / "bridge.toml"
    config.write_text(f'db_path = "{db}"\n[sip]\nlisten_host = "127.0.0.1"\n'
                      f'listen_port = {sip_port}\ntransports = ["udp"]\n'
                      'trunk_networks = ["127.0.0.0/8"]\n'
                      f'[rtp]\nbind_host = "127.0.0.1"\nport_low = {low}\nport_high = {high}\n'
                      f'[conference]\ntrusted_networks = ["127.0.0.0/8"]\n'
                      f'[media]\nmax_participants = 0\nworkers = {args.workers}\n'
                      '[web]\nlisten = "127.0.0.1:0"\n')
    env = {**os.environ, "BRIDGE_WEB_LISTEN": "127.0.0.1:0"}
    bridge = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(config),
                               "--log-level", "WARNING"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert bridge.stderr is not None
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            line = bridge.stderr.readline()
            found = re.search(r"web API on (http://\S+?)/api/v1", line)
            if found:
                url = found.group(1)
        assert url, "the bridge did not start its web API"
        # keep reading its log, or a full pipe stalls the bridge
        log_path = folder / "bridge.log"
        print(f"bridge log: {log_path}", file=sys.stderr)

        def keep_log() -> None:
            with log_path.open("w") as log:
                for line in bridge.stderr or ():
                    log.write(line)

        threading.Thread(target=keep_log, daemon=True).start()
        gen = LoadGenerator(LoadGenConfig(mode="sip", rooms_of=args.rooms_of,
                                          talkers=min(3, args.rooms_of),
                                          call_rate=args.call_rate, caller_prefix="+49151",
                                          pin_delay=0.5))
        try:
            uri = f"sip:{NUMBER}@127.0.0.1:{sip_port}"
            room_map = {i: {"uri": uri, "pin": "2" + pin} for i, (_, pin) in enumerate(made)}
            reply = gen.add(args.legs, rooms=room_map, timeout=60.0 + args.legs / args.call_rate)
            print(f"placed {args.legs} legs: {reply.get('states')}", file=sys.stderr)
            time.sleep(3.0)
            room_id = made[0][0]
            request = urllib.request.Request(
                f"{url}/api/v1/conferences/{room_id}/participants",
                headers={"Authorization": f"Bearer {token}"})
            def scrape() -> str:
                with urllib.request.urlopen(f"{url}/metrics") as r:
                    return str(r.read().decode())

            def worker_p99(text: str) -> dict[str, float]:
                return {s.labels["process"]: round(1000 * s.value, 2)
                        for f in text_string_to_metric_families(text)
                        if f.name == "bridge_worker_tick_lateness_p99_seconds"
                        for s in f.samples}

            idle_start = scrape()  # the ramp's ticks are left out
            time.sleep(args.requests * 0.02)  # as long as the request window, no requests
            before = scrape()
            idle_main, _ = lateness_p99(idle_start, before)
            idle_workers = worker_p99(before)
            timings = []
            count = 0
            for _ in range(args.requests):
                start = time.perf_counter()
                with urllib.request.urlopen(request) as response:
                    body = json.loads(response.read())
                timings.append(time.perf_counter() - start)
                count = len(body["participants"])
                time.sleep(0.01)
            metrics = scrape()
            late_bound, ticks = lateness_p99(before, metrics)
            families = {f.name: f for f in text_string_to_metric_families(metrics)}
            legs = {s.labels["process"]: int(s.value) for s in families["bridge_legs"].samples}
            rejected = {s.labels["reason"]: int(s.value)
                        for s in families["bridge_calls_rejected"].samples if s.value}
            workers_p99 = worker_p99(metrics)
            result = {
                "workers": args.workers, "legs": legs,
                "calls_active": int(families["bridge_calls_active"].samples[0].value),
                "rejected": rejected, "participants_listed": count, "requests": len(timings),
                "api_p50_ms": round(1000 * sorted(timings)[len(timings) // 2], 2),
                "api_p99_ms": round(1000 * p99(timings), 2),
                "main_tick_lateness_p99_ms_at_most": 1000 * late_bound, "main_ticks": ticks,
                "worker_tick_lateness_p99_ms": workers_p99,
                "idle_main_tick_lateness_p99_ms_at_most": 1000 * idle_main,
                "idle_worker_tick_lateness_p99_ms": idle_workers,
            }
            print(json.dumps(result))
        finally:
            gen.hangup_all()
            gen.close()
    finally:
        bridge.terminate()
        bridge.wait(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
