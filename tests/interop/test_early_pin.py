"""Issue 14 acceptance: the caller who types early. A real SIPp caller typing the PIN from the
invitation 1 s after the answer (during the welcome, no language key) joins; one pressing
nothing hears the PIN prompt within 5 s of the answer.

The PIN prompt is found in what the caller received (a loopback capture, decoded) by
correlating it with the ``enter_pin`` clip in the number's language; the answer is the first
RTP packet from the bridge (a leg gets a packet every 20 ms from its answer on).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bridge.codecs.g711 import Codec
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from bridge.runtime.prompt_files import load_prompts
from bridge.store.base import RejectionReason
from tests.conftest import free_port, require_binary
from tests.interop.audio import from_capture
from tests.interop.capture import LoopbackCapture, require_capture
from tests.interop.conftest import bridge_config
from tests.interop.pcapgen import CallStream, digits_at, write_stream_pcap
from tests.interop.peers import run_sipp
from tests.interop.test_conference_e2e import NUMBER, Dialin, live_count, prepare_store, until

PIN = "58302917"


@pytest.fixture
async def early(tmp_path: Path) -> AsyncIterator[Dialin]:
    require_capture()
    config = bridge_config(tmp_path)
    config = dataclasses.replace(
        config, media=dataclasses.replace(config.media, max_lateness_p99_ms=0.0))
    store, account = await prepare_store(config.db_path)
    controller = ConferenceController(store, ControllerConfig(node_id="early-node"))
    app = BridgeApp(config, controller)
    await app.start()
    try:
        yield Dialin(app, controller, store, account, tmp_path)
    finally:
        await app.stop()
        await controller.drain()
        await store.close()


async def _call(dialin: Dialin, name: str, keys: str, *, at: float, hold: float,
                media_port: int) -> asyncio.Task[object]:
    workdir = dialin.tmp / name
    workdir.mkdir()
    stream = CallStream(seconds=hold + 2.0, tone_hz=440.0, tone_from=0.0,
                        digits=digits_at(keys, at) if keys else (), event_pt=101,
                        inband=False, ssrc=0x5EED0440)
    await asyncio.to_thread(write_stream_pcap, workdir / "call.pcap", stream)
    require_binary("sipp")
    return asyncio.create_task(run_sipp(
        "conf_caller.xml", dialin.target, tmp=workdir, service=NUMBER,
        keys={"te_pt": "101", "caller": f"+4989{free_port():07d}"},
        pause_ms=int(hold * 1000), media_port=media_port, timeout=hold + 20.0))


def prompt_onset(pcm: npt.NDArray[np.int16], clip: npt.NDArray[np.int16]) -> float | None:
    """Seconds into ``pcm`` where ``clip`` (as PCMU carries it) starts, by normalised
    correlation of its first loud second at 20 ms steps; None when it is not there."""
    heard_clip = Codec.PCMU.decode(Codec.PCMU.encode(clip)).astype(np.float64)
    loud = int(np.argmax(np.abs(heard_clip) > 1000))
    lead = loud - loud % 160  # frame-aligned, as the bridge sends the clip
    ref = heard_clip[lead:lead + 8000]
    ref = ref - ref.mean()
    norm = float(np.sqrt((ref * ref).sum()))
    signal = pcm.astype(np.float64)
    best, where = 0.0, None
    for offset in range(0, signal.size - ref.size, 160):
        window = signal[offset:offset + ref.size]
        window = window - window.mean()
        denom = norm * float(np.sqrt((window * window).sum()))
        if denom == 0.0:
            continue
        score = float((window * ref).sum()) / denom
        if score > best:
            best, where = score, offset
    if where is None or best < 0.8:
        return None
    return (where - lead) / 8000


async def test_a_sipp_caller_typing_the_pin_one_second_after_the_answer_joins(
        early: Dialin) -> None:
    room = await early.room("Early", participant_pin=PIN, moderator_pin="40718263")
    port = free_port(even=True, span=4)
    call = await _call(early, "early", PIN + "#", at=1.0, hold=7.0, media_port=port)
    try:
        live = await until(lambda: live_count(early, room, 1), "the early typist's join",
                           timeout=15.0)
        assert len(live) == 1
    finally:
        result = await call
    assert result.returncode == 0, result.stdout + result.stderr + result.logs  # type: ignore[attr-defined]
    rejections = await early.rejections()
    assert not [r for r in rejections if r.reason is RejectionReason.WRONG_PIN]


async def test_a_sipp_caller_pressing_nothing_hears_the_pin_prompt_within_5_s(
        early: Dialin) -> None:
    port = free_port(even=True, span=4)
    with LoopbackCapture([port]) as capture:
        call = await _call(early, "silent", "", at=0.0, hold=7.0, media_port=port)
        result = await call
    assert result.returncode == 0, result.stdout + result.stderr + result.logs  # type: ignore[attr-defined]
    heard = from_capture(capture.packets(port))
    assert heard.pcm.size > 5 * 8000, "the bridge sent less than 5 s of audio"
    clip = load_prompts().get("de", "enter_pin")  # the access number's language
    onset = prompt_onset(heard.pcm, clip)
    assert onset is not None, "the PIN prompt was not heard"
    print(f"\nPIN prompt heard {onset:.2f} s after the answer")
    assert onset < 5.0
    # and the welcome came first, from the answer on
    welcome = prompt_onset(heard.pcm, load_prompts().get("de", "welcome"))
    assert welcome is not None and welcome < 0.5
