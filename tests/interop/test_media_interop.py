"""The media engine over real UDP with real phones: baresip participants send their own test
tone; each must hear the others' tones and not its own (checked on the audio it decoded)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from bridge.runtime.app import BridgeApp
from tests.conftest import LOOPBACK
from tests.interop.peers import Baresip, write_tone_wav

TONES = (440.0, 1000.0, 1700.0)


def tone_db(pcm: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Power of one frequency (Goertzel via a single DFT bin over a Hann window), in dB."""
    n = len(pcm)
    window = np.hanning(n)
    t = np.arange(n) / rate
    bin_value = np.sum(pcm * window * np.exp(-2j * np.pi * freq * t))
    return float(20 * np.log10(np.abs(bin_value) / np.sum(window) + 1e-9))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        rate = w.getframerate()
        channels = w.getnchannels()
    pcm = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    if channels > 1:
        pcm = pcm.reshape(-1, channels)[:, 0]
    return pcm, rate


@pytest.mark.parametrize("participants", [2, 3], ids=["relay", "mix"])
async def test_each_phone_hears_the_others_not_itself(
    bridge: BridgeApp, tmp_path: Path, participants: int
) -> None:
    phones: list[Baresip] = []
    try:
        for i in range(participants):
            wav = tmp_path / f"tone{i}.wav"
            write_tone_wav(wav, TONES[i], 60.0, amplitude=6000)
            phone = Baresip(tmp_path / f"phone{i}", wav)
            await phone.start()
            phones.append(phone)
        for phone in phones:
            await phone.command("dial", f"sip:room7@{LOOPBACK}:{bridge.local[1]}")
            await phone.wait_event("CALL_ESTABLISHED")
        for _ in range(200):
            if len(bridge.media.engine.room_legs("room7")) == participants:
                break
            await asyncio.sleep(0.02)
        assert len(bridge.media.engine.room_legs("room7")) == participants
        await asyncio.sleep(3.0)  # audio flows both ways for a few seconds
        for phone in phones:
            await phone.command("hangup")
            await phone.wait_event("CALL_CLOSED")
    finally:
        for phone in phones:
            await phone.stop()
    for i, phone in enumerate(phones):
        dumps = phone.received_wavs()
        assert dumps, f"phone {i} wrote no received audio: {phone.log()}"
        pcm, rate = read_wav(dumps[-1])
        assert rate == 8000
        # The last 1.5 s of the call, when everyone was in the room.
        tail = pcm[-int(2.0 * rate):-int(0.5 * rate)]
        assert len(tail) > rate, f"phone {i}: only {len(pcm)} samples received"
        own = tone_db(tail, TONES[i], rate)
        others = [tone_db(tail, TONES[j], rate) for j in range(participants) if j != i]
        for level in others:
            assert level > own + 30, (
                f"phone {i} ({TONES[i]} Hz): others {others} dB, own {own} dB")
        assert min(others) > 40, f"phone {i} hears the others too faintly: {others}"
