"""Record the checked-in traces: real SIPp calls through a bridge started with a capture.

Run from the repository root (root needed: SIPp plays RTP from a raw socket)::

    .venv/bin/python -m tests.data.traces.make_traces

Each trace is one SIPp conference caller (tests/data/sipp/conf_caller.xml) dialling the access
number, typing the language key and the PIN ``583902#`` as RFC 4733 events (PT 101) over its
440 Hz tone, holding 8 s (it is in the room after about 5 s) and hanging up; SIP over UDP
(``sipp_udp.pcap``) and TCP (``sipp_tcp.pcap``); the bridge captured SIP and RTP
(``capture_rtp = true``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from tests.conftest import LOOPBACK, free_port
from tests.interop.conftest import bridge_config
from tests.interop.pcapgen import CallStream, digits_at, write_stream_pcap
from tests.interop.peers import run_sipp
from tests.interop.test_conference_e2e import NUMBER, prepare_store

HERE = Path(__file__).resolve().parent
PIN = "583902"


async def record(transport: str, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = bridge_config(tmp)
        config = dataclasses.replace(
            config, media=dataclasses.replace(config.media, max_lateness_p99_ms=0.0),
            debug=dataclasses.replace(config.debug, capture_path=str(tmp / "bridge.pcap"),
                                      capture_rtp=True))
        store, account = await prepare_store(config.db_path)
        room = await store.create_room(account_id=account.id, name="Trace", participant_pin=PIN,
                                moderator_pin="902716")
        controller = ConferenceController(store, ControllerConfig(node_id="trace"))
        app = BridgeApp(config, controller)
        await app.start()
        try:
            stream = CallStream(seconds=10.0, tone_hz=440.0,
                                digits=digits_at("2", 1.5) + digits_at(PIN + "#", 2.0),
                                ssrc=0x5EED01B8)
            await asyncio.to_thread(write_stream_pcap, tmp / "call.pcap", stream)
            result = await run_sipp(
                "conf_caller.xml", f"{LOOPBACK}:{app.local[1]}", tmp=tmp, service=NUMBER,
                transport=transport, keys={"te_pt": "101", "caller": "+498900000440"},
                pause_ms=8000, media_port=free_port(even=True, span=4), timeout=30)
            if result.returncode != 0:
                sys.exit(f"SIPp failed ({result.returncode}):\n{result.stdout}{result.logs}")
            await asyncio.sleep(0.5)
            if not await store.call_history(room_id=room.id):
                sys.exit("the caller did not get into the room")
        finally:
            await app.stop()
            await controller.drain()
            await store.close()
        shutil.copy(tmp / "bridge.pcap", out)


async def main() -> None:
    await record("u1", HERE / "sipp_udp.pcap")
    await record("t1", HERE / "sipp_tcp.pcap")


if __name__ == "__main__":
    asyncio.run(main())
