"""Mixer throughput, payload in -> payload out (decode + VAD + N-1 mix + encode), numpy vs audioop.

Each round writes one of 50 pre-generated payload blocks (varied tones and noise, never one
repeated frame) into the mixer and mixes one tick. ``participant_frames_per_s`` in extra_info is
legs / median round time. Run: .venv/bin/pytest bench/test_bench_mixer.py --benchmark-only
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
from audioop_mixer import AudioopMixer
from pytest_benchmark.fixture import BenchmarkFixture

from bridge.codecs.g711 import Codec
from bridge.media.mixer import Mixer, MixerConfig
from bridge.media.vad import VadConfig

SAMPLES = 160
BLOCKS = 50
VAD = VadConfig()


@dataclass(frozen=True)
class Workload:
    room_sizes: tuple[int, ...]
    talkers_per_room: int | None  # None: everybody talks

    @property
    def legs(self) -> int:
        return sum(self.room_sizes)


WORKLOADS = {
    "1room-10-all": Workload((10,), None),
    "1room-10-3talk": Workload((10,), 3),
    "1room-100-all": Workload((100,), None),
    "1room-100-3talk": Workload((100,), 3),
    "1room-1000-all": Workload((1000,), None),
    "1room-1000-3talk": Workload((1000,), 3),
    "1room-5000-all": Workload((5000,), None),
    "1room-5000-3talk": Workload((5000,), 3),
    "1000rooms-of-3-all": Workload((3,) * 1000, None),
    "1000rooms-of-3-1talk": Workload((3,) * 1000, 1),
}


@functools.cache
def payload_blocks(name: str) -> tuple[np.ndarray, tuple[list[bytes], ...]]:
    """50 encoded (legs x 160) blocks: talkers carry tones + noise, listeners faint noise."""
    work = WORKLOADS[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    talker = np.zeros(work.legs, dtype=np.bool_)
    first = 0
    for size in work.room_sizes:
        count = size if work.talkers_per_room is None else min(size, work.talkers_per_room)
        talker[first + rng.choice(size, count, replace=False)] = True
        first += size
    t = np.arange(SAMPLES, dtype=np.float32) / 8000.0
    freq = rng.uniform(150.0, 1200.0, (work.legs, 2)).astype(np.float32)
    amp = rng.uniform(1500.0, 9000.0, (work.legs, 1)).astype(np.float32)
    blocks = np.empty((BLOCKS, work.legs, SAMPLES), dtype=np.uint8)
    for k in range(BLOCKS):
        phase = (k * SAMPLES / 8000.0 + t)[None, :]
        pcm = rng.normal(0.0, 25.0, (work.legs, SAMPLES)).astype(np.float32)
        tone = np.sin(2 * np.pi * freq[:, :1] * phase)
        tone += 0.5 * np.sin(2 * np.pi * freq[:, 1:] * phase)
        pcm[talker] += (amp * rng.uniform(0.6, 1.0, (work.legs, 1)) * tone)[talker]
        blocks[k] = Codec.PCMU.encode(np.clip(pcm, -32768, 32767).astype(np.int16))
    as_bytes = tuple([row.tobytes() for row in block] for block in blocks)
    return blocks, as_bytes


def rooms_of(work: Workload) -> list[list[tuple[int, Codec]]]:
    rooms, slot = [], 0
    for size in work.room_sizes:
        rooms.append([(slot + i, Codec.PCMU) for i in range(size)])
        slot += size
    return rooms


def record(benchmark: BenchmarkFixture, name: str, impl: str) -> None:
    legs = WORKLOADS[name].legs
    if benchmark.stats is None:  # --benchmark-disable: a smoke run, nothing measured
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        workload=name, impl=impl, legs=legs, participant_frames_per_s=legs / median
    )


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_numpy_mixer(benchmark: BenchmarkFixture, name: str) -> None:
    work = WORKLOADS[name]
    blocks, _ = payload_blocks(name)
    mixer = Mixer(MixerConfig(initial_capacity=work.legs, vad=VAD))
    for room_id, room in enumerate(rooms_of(work)):
        for slot, codec in room:
            assert mixer.add_leg(room_id, codec) == slot
    n = work.legs
    tick = iter(range(10**12))

    def one_tick() -> int:
        np.copyto(mixer.payload_in[:n], blocks[next(tick) % BLOCKS])
        mixer.has_input[:n] = True
        return mixer.mix().encoded

    for _ in range(10):  # let the VAD hysteresis settle
        one_tick()
    benchmark(one_tick)
    record(benchmark, name, "numpy")


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_audioop_mixer(benchmark: BenchmarkFixture, name: str) -> None:
    work = WORKLOADS[name]
    _, frames = payload_blocks(name)
    mixer = AudioopMixer(rooms_of(work), threshold_dbov=VAD.threshold_dbov)
    tick = iter(range(10**12))

    def one_tick() -> int:
        return len(mixer.mix(frames[next(tick) % BLOCKS]))

    benchmark(one_tick)
    record(benchmark, name, "audioop")
