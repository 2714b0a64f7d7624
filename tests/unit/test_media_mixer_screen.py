"""The mixer's quiet-leg screen: a leg is skipped only when it provably cannot be loud.

The screen looks at the codes alone (``(code ^ key) & 0x7F``); these tests check its tables
against the decoders and that gating decisions are exactly those of full measurement.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.codecs.g711 import Codec
from bridge.media.mixer import (
    Mixer,
    MixerConfig,
    screen_limit,
    screen_magnitudes,
    screen_words,
)
from bridge.media.vad import FULL_SCALE_POWER, Vad, VadConfig

SAMPLES = 160


@pytest.mark.parametrize("codec", list(Codec))
def test_screen_magnitudes_fall_and_match_every_code(codec: Codec) -> None:
    mags = screen_magnitudes(codec)
    assert (np.diff(mags) <= 0).all()
    assert mags[0] == np.abs(codec.decode_table.astype(np.int32)).max()
    codes = np.arange(256, dtype=np.uint8)
    masked = (codes ^ {Codec.PCMU: 0, Codec.PCMA: 0x2A}[codec]) & 0x7F
    np.testing.assert_array_equal(mags[masked], np.abs(codec.decode_table.astype(np.int32)))


@pytest.mark.parametrize("codec", list(Codec))
@pytest.mark.parametrize("dbov", [-60.0, -42.0, -30.0, -6.0])
def test_screened_frames_are_quieter_than_the_threshold(codec: Codec, dbov: float) -> None:
    threshold = FULL_SCALE_POWER * 10 ** (dbov / 10)
    limit, bound = screen_limit(codec, threshold)
    mags = screen_magnitudes(codec).astype(np.float64)
    assert mags[limit] ** 2 >= 0.999 * threshold  # the limit code itself may be loud
    assert bound == mags[limit + 1] ** 2 < 0.999 * threshold  # every code past it is quiet


@pytest.mark.parametrize("codec", list(Codec))
@pytest.mark.parametrize("limit", [0, 1, 63, 64, 102, 111, 126, 127])
def test_word_screen_flags_exactly_what_the_byte_screen_flags(codec: Codec, limit: int) -> None:
    """Every ordered pair of codes side by side, at even and odd byte offsets: a borrow from one
    byte into its neighbour would show up as a wrong flag."""
    pairs = np.arange(65536, dtype=np.uint16).view(np.uint8)
    for payload in (pairs, np.roll(pairs, 1)):
        block = payload.reshape(-1, 16)
        out = np.full((block.shape[0], 2), 0x1234, dtype=np.uint64)
        screen_words(block, codec, limit, out=out)
        masked = (block ^ {Codec.PCMU: 0, Codec.PCMA: 0x2A}[codec]) & 0x7F
        expected = np.where(masked <= limit, 0x80, 0).astype(np.uint8)
        np.testing.assert_array_equal(out.view(np.uint8).reshape(block.shape), expected)


def test_hangover_keeps_a_quiet_talker_in_the_mix() -> None:
    # the quiet frames of a talking leg are screened as quiet but must still be mixed
    vad = VadConfig(threshold_dbov=-42.0, start_frames=1, hangover_frames=5)
    mixer = Mixer(MixerConfig(vad=vad))
    codec = Codec.PCMU
    a, b, _ = (mixer.add_leg(1, codec) for _ in range(3))
    for value, talking in ((3000, True), (40, True)):
        mixer.payload_in[a] = codec.encode(np.full(SAMPLES, value, np.int16))
        mixer.has_input[a] = True
        out = mixer.mix()
        assert bool(out.talking[a]) is talking
        heard = codec.decode(out.payload(b))
        np.testing.assert_array_equal(
            heard, codec.decode(codec.encode(np.full(SAMPLES, value, np.int16)))
        )
        assert out.payload(a) == codec.silence()


@settings(max_examples=100, deadline=None)
@given(
    amplitudes=st.lists(st.integers(0, 2000), min_size=1, max_size=30),
    codecs=st.lists(st.sampled_from(list(Codec)), min_size=30, max_size=30),
    adaptive=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_levels_and_gate_match_full_measurement(
    amplitudes: list[int], codecs: list[Codec], adaptive: bool, seed: int
) -> None:
    """Levels near the threshold: the mixer's VAD verdict equals a VAD fed every leg's pcm."""
    rng = np.random.default_rng(seed)
    vad = VadConfig(threshold_dbov=-42.0, start_frames=2, hangover_frames=3, adaptive=adaptive)
    mixer = Mixer(MixerConfig(initial_capacity=2, vad=vad, relay_two_party=False))
    reference = Vad(vad, len(amplitudes))
    slots = [mixer.add_leg(0, codecs[i]) for i in range(len(amplitudes))]
    for tick in range(4):
        pcm = np.zeros((len(slots), SAMPLES), dtype=np.int16)
        for slot, amp in zip(slots, amplitudes, strict=True):
            scale = amp * (1 + tick % 2)
            frame = rng.integers(-scale, scale + 1, SAMPLES).astype(np.int16)
            codec = codecs[slot]
            mixer.payload_in[slot] = codec.encode(frame)
            mixer.has_input[slot] = True
            pcm[slot] = codec.decode(codec.encode(frame))
        out = mixer.mix()
        expected = reference.update(pcm)
        np.testing.assert_array_equal(out.talking[: len(slots)], expected.talking)
        loud = expected.level_dbov >= -42.0
        np.testing.assert_allclose(
            out.level_dbov[: len(slots)][loud], expected.level_dbov[loud], atol=1e-3
        )
        assert (out.level_dbov[: len(slots)][~loud] < -42.0).all()
        assert out.started.tolist() == expected.started.tolist()
        assert out.stopped.tolist() == expected.stopped.tolist()


@pytest.mark.parametrize("codec", list(Codec))
def test_every_screen_route_matches_the_general_path(codec: Codec) -> None:
    """The lean tick skips the screen when everybody talks, finds few loud legs with ``nonzero``
    and many with a reduction; over phases that take each route, it must agree exactly with a
    twin on the general path (one extra leg with a gain, alone in its room)."""
    rng = np.random.default_rng(7)
    vad = VadConfig(threshold_dbov=-42.0, start_frames=2, hangover_frames=3)
    lean = Mixer(MixerConfig(initial_capacity=4, vad=vad))
    general = Mixer(MixerConfig(initial_capacity=4, vad=vad))
    rooms = [0] * 40 + [1] * 20 + [2] * 3
    slots = [lean.add_leg(room, codec) for room in rooms]
    assert [general.add_leg(room, codec) for room in rooms] == slots
    general.set_gain(general.add_leg(9, codec), 0.5)
    n = len(slots)
    everybody = np.ones(n, dtype=np.bool_)
    one = np.zeros(n, dtype=np.bool_)
    one[5] = True
    some = rng.random(n) < 0.5
    phases = [everybody] * 4 + [one] * 6 + [some] * 3 + [one] * 2 + [everybody] * 3
    for loud in phases:
        loud_spans = [8000, 32768] if loud.all() else [200, 300, 8000, 32768]
        spans = np.where(loud, rng.choice(loud_spans, n), 20)
        sending = everybody if loud.all() else rng.random(n) < 0.9
        for slot in slots:
            pcm = rng.integers(-spans[slot], spans[slot], SAMPLES).astype(np.int16)
            for mixer in (lean, general):
                mixer.payload_in[slot] = codec.encode(pcm)
                mixer.has_input[slot] = bool(sending[slot])
        a, b = lean.mix(), general.mix()
        for slot in slots:
            assert a.payload(slot) == b.payload(slot), slot
        np.testing.assert_array_equal(a.talking[:n], b.talking[:n])
        np.testing.assert_array_equal(a.level_dbov[:n], b.level_dbov[:n])
        assert a.started.tolist() == b.started.tolist()
        assert a.stopped.tolist() == b.stopped.tolist()
