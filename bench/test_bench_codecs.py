"""G.711 throughput on a (1000 legs x 160) block: numpy tables vs audioop frame by frame.

Rotates through 50 different blocks of random codes / speech-like PCM. extra_info records
samples_per_s. Run: .venv/bin/pytest bench/test_bench_codecs.py --benchmark-only
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bridge.codecs.g711 import Codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

LEGS = 1000
SAMPLES = 160
BLOCKS = 50
RNG = np.random.default_rng(11)
CODES = RNG.integers(0, 256, (BLOCKS, LEGS, SAMPLES), dtype=np.uint8)
_T = np.arange(SAMPLES) / 8000.0
PCM = np.clip(
    RNG.normal(0, 3000, (BLOCKS, LEGS, 1)) * np.sin(2 * np.pi * 440 * _T)
    + RNG.normal(0, 200, (BLOCKS, LEGS, SAMPLES)),
    -32768,
    32767,
).astype(np.int16)

AUDIOOP_DECODE: dict[Codec, Callable[[bytes, int], bytes]] = {
    Codec.PCMU: audioop.ulaw2lin,
    Codec.PCMA: audioop.alaw2lin,
}
AUDIOOP_ENCODE: dict[Codec, Callable[[bytes, int], bytes]] = {
    Codec.PCMU: audioop.lin2ulaw,
    Codec.PCMA: audioop.lin2alaw,
}


def record(benchmark: BenchmarkFixture, impl: str) -> None:
    if benchmark.stats is None:  # --benchmark-disable: a smoke run, nothing measured
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(impl=impl, samples_per_s=LEGS * SAMPLES / median)


@pytest.mark.parametrize("codec", list(Codec))
def test_numpy_decode(benchmark: BenchmarkFixture, codec: Codec) -> None:
    out = np.empty((LEGS, SAMPLES), dtype=np.int16)
    tick = iter(range(10**12))
    benchmark(lambda: codec.decode(CODES[next(tick) % BLOCKS], out=out))
    record(benchmark, "numpy")


@pytest.mark.parametrize("codec", list(Codec))
def test_numpy_encode(benchmark: BenchmarkFixture, codec: Codec) -> None:
    out = np.empty((LEGS, SAMPLES), dtype=np.uint8)
    tick = iter(range(10**12))
    benchmark(lambda: codec.encode(PCM[next(tick) % BLOCKS], out=out))
    record(benchmark, "numpy")


@pytest.mark.parametrize("codec", list(Codec))
def test_audioop_decode(benchmark: BenchmarkFixture, codec: Codec) -> None:
    frames = [[row.tobytes() for row in block] for block in CODES]
    decode = AUDIOOP_DECODE[codec]
    tick = iter(range(10**12))
    benchmark(lambda: [decode(f, 2) for f in frames[next(tick) % BLOCKS]])
    record(benchmark, "audioop")


@pytest.mark.parametrize("codec", list(Codec))
def test_audioop_encode(benchmark: BenchmarkFixture, codec: Codec) -> None:
    frames = [[row.tobytes() for row in block] for block in PCM]
    encode = AUDIOOP_ENCODE[codec]
    tick = iter(range(10**12))
    benchmark(lambda: [encode(f, 2) for f in frames[next(tick) % BLOCKS]])
    record(benchmark, "audioop")
