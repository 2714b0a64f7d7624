"""DTMF costs: in-band detector per 20 ms frame (one leg and batched), RFC 4733 receiver per packet.

Frames are varied: speech from the talk-off fixtures (45 %), noise (45 %) and DTMF tones of
changing digits and levels (10 %, far more keying than a real conference), cycled so no two
consecutive rounds see the same frame; ``keying`` runs every leg on DTMF frames only (worst
case). ``us_per_leg_frame`` in extra_info is the median round time divided by the legs.
Run: .venv/bin/pytest bench/test_bench_dtmf.py --benchmark-only
"""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from pytest_benchmark.fixture import BenchmarkFixture

from bridge.media.inband_dtmf import (
    DTMF_HIGH_HZ,
    DTMF_LOW_HZ,
    InbandDtmfBank,
    InbandDtmfDetector,
    dbm0_to_amplitude,
)
from bridge.rtp.dtmf import Rfc4733Receiver, Rfc4733Sender, Rfc4733SenderConfig

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "dtmf"
FRAMES = 997  # prime, so batched legs see different phase of the material


def _material() -> NDArray[np.int16]:
    """FRAMES x 160 int16: 45 % speech, 45 % noise, then 10 % DTMF of varied digits."""
    rng = np.random.default_rng(4733)
    with wave.open(str(DATA / "speech_en.wav"), "rb") as w:
        speech = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    n = FRAMES * 160
    t = np.arange(n) / 8000
    out = np.empty(n)
    part = n * 45 // 100 // 160 * 160
    out[:part] = speech[8000 : 8000 + part]
    out[part : 2 * part] = rng.normal(0, 800, part)
    tones = np.zeros(n - 2 * part)
    seg = 800  # 100 ms per digit, with a 50 ms pause
    for i, start in enumerate(range(0, tones.size, seg)):
        fl = DTMF_LOW_HZ[i % 4]
        fh = DTMF_HIGH_HZ[(i // 4) % 4]
        a = dbm0_to_amplitude(-5.0 - (i % 20))
        m = min(400, tones.size - start)
        tt = t[:m]
        tones[start : start + m] = a * (np.sin(2 * np.pi * fl * tt) + np.sin(2 * np.pi * fh * tt))
    out[2 * part :] = tones + rng.normal(0, 50, tones.size)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16).reshape(FRAMES, 160)


def _median(benchmark: BenchmarkFixture) -> float:
    stats = benchmark.stats
    if stats is None:  # --benchmark-disable: a smoke run, nothing measured
        return float("nan")
    return float(stats.stats.median)


@pytest.fixture(scope="module")
def material() -> NDArray[np.int16]:
    return _material()


def test_bench_inband_single_leg(benchmark: BenchmarkFixture, material: NDArray[np.int16]) -> None:
    det = InbandDtmfDetector()
    frames = itertools.cycle(range(FRAMES))
    clock = itertools.count()

    def step() -> None:
        i = next(frames)
        det.detect(material[i], next(clock) * 0.02)

    benchmark(step)
    benchmark.extra_info["us_per_leg_frame"] = _median(benchmark) * 1e6


@pytest.mark.parametrize(
    ("legs", "keying"), [(10, False), (100, False), (1000, False), (100, True)]
)
def test_bench_inband_batch(
    benchmark: BenchmarkFixture, material: NDArray[np.int16], legs: int, keying: bool
) -> None:
    bank = InbandDtmfBank(legs)
    if keying:
        material = material[FRAMES * 90 // 100 + 1 :]
    frames = len(material)
    offsets = (np.arange(legs) * 37) % frames
    block = np.empty((legs, 160), dtype=np.int16)
    tick = itertools.count()

    def step() -> None:
        k = next(tick)
        np.take(material, (offsets + k) % frames, axis=0, out=block)
        bank.detect_batch(block, k * 0.02)

    benchmark(step)
    benchmark.extra_info["us_per_leg_frame"] = _median(benchmark) * 1e6 / legs


def test_bench_rfc4733_receive(benchmark: BenchmarkFixture) -> None:
    tx = Rfc4733Sender(Rfc4733SenderConfig(tone_ms=100, gap_ms=40))
    for d in "0123456789*#ABCD" * 8:
        tx.start(d, 0.0, 0)
    packets = []
    while tx.busy:
        p = tx.next_packet()
        if p is not None:
            packets.append(p)
    rx = Rfc4733Receiver()
    seq = itertools.count()
    stream = itertools.cycle(packets)
    base = itertools.count()

    def step() -> None:
        payload, marker, ts = next(stream)
        n = next(seq)
        rx.receive(marker=marker, timestamp=(ts + (n // len(packets)) * 10**6) & 0xFFFFFFFF,
                   sequence=n & 0xFFFF, payload=payload, now=next(base) * 0.02)

    benchmark(step)
    benchmark.extra_info["us_per_packet"] = _median(benchmark) * 1e6
