"""Issue 14: every answered call ends joined or failed within its IVR time limit. A store
lookup that never returns (the fault injected here) used to leave the caller in the IVR for
ever; the limit hangs it up. A prompt whose end the media never reports does not stall the
script either."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bridge.conference.enums import Language
from bridge.config import Config, RtpConfig, SipConfig
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig, LegChannel
from bridge.store.sqlite import SqliteStore
from tests.conftest import LOOPBACK, free_port, rtp_port_block
from tests.integration.confclient import Phone

NUMBER = "+493012345678"
PIN = "48151623"
LIMIT = 3.0


async def test_a_call_whose_pin_lookup_hangs_is_hung_up_at_the_ivr_time_limit(
        tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bridge.sqlite3")
    account = await store.create_account(name="Acme", email="ops@acme.example")
    await store.create_room(account_id=account.id, name="r1", participant_pin=PIN,
                            moderator_pin="59263748")
    await store.add_access_number(number=NUMBER, country="DE", language=Language.DE)
    hung = asyncio.Event()

    async def never(pin: str) -> object:  # the fault: the lookup never comes back
        hung.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    store.find_room_by_pin = never  # type: ignore[method-assign,assignment]
    low, high = rtp_port_block()
    config = Config(sip=SipConfig(listen_host=LOOPBACK, listen_port=free_port(),
                                  transports=("udp",)),
                    rtp=RtpConfig(bind_host=LOOPBACK, port_low=low, port_high=high),
                    db_path=tmp_path / "bridge.sqlite3")
    controller = ConferenceController(store, ControllerConfig(node_id="n", ivr_time_limit=LIMIT))
    app = BridgeApp(config, controller)
    host, port = await app.start()
    phone = Phone((host, port))
    await phone.start()
    loop = asyncio.get_running_loop()
    try:
        call = await phone.dial(NUMBER)
        await call.wait_answered()
        answered_at = loop.time()
        await call.send_digits(PIN + "#")  # during the welcome: the PIN, at once
        await asyncio.wait_for(hung.wait(), 10)
        ended = await call.wait_ended(timeout=LIMIT + 10)
        took = loop.time() - answered_at
        assert ended.reason == "remote_bye"  # the bridge hung up
        assert LIMIT - 0.5 <= took <= LIMIT + 2.0, took
        assert controller.ivr_overdue == 1
        assert not controller.calls
    finally:
        await app.stop()
        await controller.drain()
        await phone.close()
        await store.close()


class _SilentMedia:
    """Media that accepts a prompt and never reports its end."""

    def __contains__(self, leg: object) -> bool:
        return True

    def play(self, leg: str, clips: Sequence[object], loop: bool = False) -> int:
        return 1

    def prompt_count(self, leg: str) -> int:
        return 0

    def stop_prompts(self, leg: str) -> None:
        return None


class _Host:
    media_control = _SilentMedia()
    legs: dict[str, object] = {}


async def test_a_prompt_whose_end_never_comes_does_not_stall_the_script() -> None:
    channel = LegChannel(_Host(), "leg", grace=0.2)  # type: ignore[arg-type]
    clip = np.zeros(800, dtype=np.int16)  # 0.1 s
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.wait_for(channel.play([clip]), 5.0)
    assert 0.25 <= loop.time() - start < 2.0
