"""The bare relay mixes N-1 correctly: 2 rooms of 3 over 127.0.0.1 with the rtp-mode loadgen.

Each participant must receive ~50 packets/s with ~no loss, and decoding what participant A
receives must show the tones of B and C (its room mates) and neither its own tone nor those of
the other room.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from bridge.benchmark.loadgen import LoadGenConfig, LoadGenerator, talker_tone
from bridge.benchmark.relay import RelayConfig, RelayProcess
from bridge.codecs.g711 import ulaw_decode

ROOMS_OF = 3
PARTICIPANTS = 6
RECORD = 50  # one second of received frames per participant


@pytest.fixture
def workers() -> Iterator[tuple[RelayProcess, LoadGenerator]]:
    relay = RelayProcess(RelayConfig(rooms_of=ROOMS_OF, max_participants=PARTICIPANTS))
    try:
        gen = LoadGenerator(LoadGenConfig(mode="rtp", rooms_of=ROOMS_OF, talkers=ROOMS_OF,
                                          record_frames=RECORD, record_skip=10))
    except BaseException:
        relay.kill()
        raise
    try:
        yield relay, gen
    finally:
        gen.kill()
        relay.kill()


def _band_shares(pcm: np.ndarray, frequencies: list[int]) -> list[float]:
    """Share of the signal's energy within +-15 Hz of each frequency (1 Hz FFT bins)."""
    spectrum = np.abs(np.fft.rfft(pcm)) ** 2
    bins = np.fft.rfftfreq(pcm.size, 1 / 8000.0)
    total = float(spectrum.sum())
    return [float(spectrum[np.abs(bins - f) <= 15].sum()) / total for f in frequencies]


def test_relay_mixes_n_minus_one_per_room(workers: tuple[RelayProcess, LoadGenerator]) -> None:
    relay, gen = workers
    ports = relay.add(PARTICIPANTS)
    assert len(set(ports)) == PARTICIPANTS
    gen.add(PARTICIPANTS, targets=ports)
    # The streams run and the relay has latched every source: each participant hears it.
    deadline = time.monotonic() + 10.0
    while not all(row["window_received"] > 0 for row in
                  gen.stats(mark=False, per_participant=True)["per_participant"]):
        assert time.monotonic() < deadline, "the relay never answered every participant"
        time.sleep(0.02)
    gen.stats(mark=True)
    relay.stats(mark=True)
    start = time.monotonic()
    time.sleep(1.5)
    stats = gen.stats(mark=True, per_participant=True)
    elapsed = time.monotonic() - start
    relay_stats = relay.stats(mark=True)

    assert stats["connected"] == PARTICIPANTS
    for row in stats["per_participant"]:
        rate = row["window_received"] / elapsed
        assert 40 <= rate <= 60, row  # ~50 packets/s (generous: a loaded CI machine)
    assert stats["window"]["loss_pct"] < 2.0
    assert relay_stats.ticks >= 0.8 * elapsed / 0.02
    assert relay_stats.packets_received >= 0.8 * PARTICIPANTS * elapsed / 0.02

    tones = [talker_tone(i)[0] for i in range(PARTICIPANTS)]
    for listener in range(PARTICIPANTS):
        deadline = time.monotonic() + 10.0
        while len(received := gen.recording(listener)) < RECORD * 160:  # skip + record frames
            assert time.monotonic() < deadline, (listener, len(received))
            time.sleep(0.02)
        assert len(received) == RECORD * 160
        pcm = ulaw_decode(received).astype(np.float64)
        room = listener // ROOMS_OF
        mates = [i for i in range(room * ROOMS_OF, (room + 1) * ROOMS_OF) if i != listener]
        others = [i for i in range(PARTICIPANTS) if i // ROOMS_OF != room]
        shares = _band_shares(pcm, tones)
        for mate in mates:
            # B's and C's tones carry most of A's audio (0.4-1.0 swell, different amplitudes)
            assert shares[mate] > 0.10, (listener, mate, shares)
        for absent in [listener, *others]:
            assert shares[absent] < 0.01, (listener, absent, shares)
        assert sum(shares[m] for m in mates) > 0.4

    final = gen.hangup_all()
    assert final["final"]["participants"] == PARTICIPANTS
