"""N-1 mixer: exact maths, no self-echo, flags, prompts, relay, shared frames, codec mix.

The property test compares every output frame with a straightforward int64 reference mixer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.codecs.g711 import Codec
from bridge.media.mixer import SILENCE_ROW, Mixer, MixerConfig, MixOutput
from bridge.media.vad import VadConfig

SAMPLES = 160
# Gate = "loud this frame": start after 1 frame, no hangover, so one tick is deterministic.
INSTANT = VadConfig(threshold_dbov=-42.0, start_frames=1, hangover_frames=1)


def instant_mixer(capacity: int = 4, relay: bool = True) -> Mixer:
    return Mixer(MixerConfig(initial_capacity=capacity, vad=INSTANT, relay_two_party=relay))


def const(value: int) -> np.ndarray:
    return np.full(SAMPLES, value, dtype=np.int16)


def send(mixer: Mixer, slot: int, codec: Codec, pcm: np.ndarray) -> None:
    mixer.payload_in[slot] = codec.encode(pcm.astype(np.int16))
    mixer.has_input[slot] = True


def heard(out: MixOutput, slot: int, codec: Codec) -> np.ndarray:
    return codec.decode(out.payload(slot)).astype(np.int64)


def encoded(codec: Codec, value: int) -> bytes:
    return codec.encode(const(int(np.clip(value, -32768, 32767)))).tobytes()


# ------------------------------------------------------------------------------- exact N-1


def test_exact_n_minus_one_with_brief_values() -> None:
    mixer = instant_mixer()
    codec = Codec.PCMU
    a, b, c = (mixer.add_leg(1, codec) for _ in range(3))
    for slot, value in ((a, 30000), (b, 30000), (c, -100)):
        send(mixer, slot, codec, const(value))
    out = mixer.mix()
    da, db, dc = (int(codec.decode(codec.encode(const(v)))[0]) for v in (30000, 30000, -100))
    assert out.payload(a) == encoded(codec, db + dc)  # 30076 - 100 -> the code of 29976
    assert out.payload(b) == encoded(codec, da + dc)
    assert out.payload(c) == encoded(codec, da + db)  # clip(60152) = 32767
    assert out.payload(c) == b"\x80" * SAMPLES


def test_exact_n_minus_one_never_saturates_on_the_way() -> None:
    # Values that are exact mu-law codes, so the decoded output shows the exact sum.
    mixer = instant_mixer()
    codec = Codec.PCMU
    a, b, c = (mixer.add_leg(7, codec) for _ in range(3))
    send(mixer, a, codec, const(32124))
    send(mixer, b, codec, const(32124))
    send(mixer, c, codec, const(-32124))
    out = mixer.mix()
    # a saturating "add then subtract" would give 32767 - 32124 - ... != 0 here
    assert (heard(out, a, codec) == 0).all()
    assert (heard(out, b, codec) == 0).all()
    assert (heard(out, c, codec) == 32124).all()  # clip(64248) -> largest code


def test_exact_small_values() -> None:
    vad = VadConfig(threshold_dbov=-60.0, start_frames=1, hangover_frames=1)
    mixer = Mixer(MixerConfig(vad=vad))
    codec = Codec.PCMU
    a, b, c = (mixer.add_leg(0, codec) for _ in range(3))
    send(mixer, a, codec, const(876))
    send(mixer, b, codec, const(-96))
    send(mixer, c, codec, const(0))  # silent: not a talker
    out = mixer.mix()
    assert (heard(out, a, codec) == -96).all()
    assert (heard(out, b, codec) == 876).all()
    assert (heard(out, c, codec) == 780).all()  # 876 - 96, an exact mu-law value


def test_alone_hears_silence_and_nobody_hears_themselves() -> None:
    mixer = instant_mixer(relay=False)
    codec = Codec.PCMU
    alone = mixer.add_leg(1, codec)
    legs = [mixer.add_leg(2, codec) for _ in range(4)]
    rng = np.random.default_rng(1)
    tones = {slot: rng.integers(-8000, 8000, SAMPLES).astype(np.int16) for slot in legs}
    send(mixer, alone, codec, rng.integers(-8000, 8000, SAMPLES).astype(np.int16))
    for slot, pcm in tones.items():
        send(mixer, slot, codec, pcm)
    out = mixer.mix()
    assert out.payload(alone) == Codec.PCMU.silence()
    decoded = {s: codec.decode(codec.encode(p)).astype(np.int64) for s, p in tones.items()}
    for slot in legs:
        others = sum(decoded[o] for o in legs if o != slot)
        expected = codec.encode(np.clip(others, -32768, 32767).astype(np.int16))
        assert out.payload(slot) == expected.tobytes()


# ------------------------------------------------------------------------ flags and gain


def test_mute_deaf_gain() -> None:
    mixer = instant_mixer()
    codec = Codec.PCMU
    a, b, c, d = (mixer.add_leg(3, codec) for _ in range(4))
    for slot, value in ((a, 876), (b, 780), (c, 396), (d, 0)):
        send(mixer, slot, codec, const(value))
    mixer.set_muted(a, True)
    mixer.set_deaf(b, True)
    mixer.set_gain(c, 2.0)
    out = mixer.mix()
    assert out.payload(a) == encoded(codec, 780 + 792)  # muted still hears everyone
    assert out.payload(b) == Codec.PCMU.silence()  # deaf: silence frame, still a packet
    assert (heard(out, c, codec) == 780).all()  # a is muted, c does not hear itself
    assert out.payload(d) == encoded(codec, 780 + 792)
    assert out.talking[a]  # the VAD still sees the muted talker
    mixer.set_muted(a, False)
    mixer.set_deaf(b, False)
    mixer.set_gain(c, 0.0)
    for slot, value in ((a, 876), (b, 780), (c, 396), (d, 0)):
        send(mixer, slot, codec, const(value))
    out = mixer.mix()
    assert (heard(out, b, codec) == 876).all()
    with pytest.raises(ValueError):
        mixer.set_gain(a, -1.0)


def test_missing_input_is_silence() -> None:
    mixer = instant_mixer(relay=False)
    codec = Codec.PCMU
    a, b = mixer.add_leg(1, codec), mixer.add_leg(1, codec)
    send(mixer, a, codec, const(876))
    assert (heard(mixer.mix(), b, codec) == 876).all()
    out = mixer.mix()  # nobody sent anything: has_input was cleared
    assert out.payload(a) == out.payload(b) == Codec.PCMU.silence()


# ----------------------------------------------------------------- relay and shared frames


def test_two_party_relay_is_byte_identical() -> None:
    mixer = instant_mixer()
    rng = np.random.default_rng(5)
    a, b = mixer.add_leg(9, Codec.PCMA), mixer.add_leg(9, Codec.PCMA)
    pa = rng.integers(0, 256, SAMPLES, dtype=np.uint8)
    pb = rng.integers(0, 256, SAMPLES, dtype=np.uint8)
    mixer.payload_in[a], mixer.payload_in[b] = pa, pb
    mixer.has_input[a] = mixer.has_input[b] = True
    out = mixer.mix()
    assert out.payload(a) == pb.tobytes() and out.payload(b) == pa.tobytes()
    assert out.encoded == 0
    # the engine may overwrite payload_in right away: the output keeps its own copy
    mixer.payload_in[a] = 0
    assert out.payload(b) == pa.tobytes()


def test_two_party_with_different_codecs_or_mute_is_mixed() -> None:
    mixer = instant_mixer()
    a, b = mixer.add_leg(1, Codec.PCMU), mixer.add_leg(1, Codec.PCMA)
    send(mixer, a, Codec.PCMU, const(876))
    send(mixer, b, Codec.PCMA, const(-1008))
    out = mixer.mix()
    assert out.payload(b) == encoded(Codec.PCMA, 876)
    assert out.payload(a) == encoded(Codec.PCMU, -1008)
    c, d = mixer.add_leg(2, Codec.PCMU), mixer.add_leg(2, Codec.PCMU)
    mixer.set_muted(c, True)
    send(mixer, c, Codec.PCMU, const(876))
    send(mixer, d, Codec.PCMU, const(876))
    out = mixer.mix()
    assert out.payload(d) == Codec.PCMU.silence()
    assert (heard(out, c, Codec.PCMU) == 876).all()


def test_shared_frame_is_encoded_once_per_room_and_codec() -> None:
    mixer = instant_mixer()
    talker = mixer.add_leg(4, Codec.PCMU)
    listeners_u = [mixer.add_leg(4, Codec.PCMU) for _ in range(5)]
    listeners_a = [mixer.add_leg(4, Codec.PCMA) for _ in range(3)]
    send(mixer, talker, Codec.PCMU, const(876))
    out = mixer.mix()
    assert len({int(out.rows[s]) for s in listeners_u}) == 1
    assert len({int(out.rows[s]) for s in listeners_a}) == 1
    assert out.rows[listeners_u[0]] != out.rows[listeners_a[0]]
    assert out.encoded == 3  # talker's N-1 frame + one shared frame per codec
    assert out.payload(listeners_u[0]) == encoded(Codec.PCMU, 876)
    assert out.payload(listeners_a[0]) == encoded(Codec.PCMA, 876)
    assert out.payload(talker) == Codec.PCMU.silence()


def test_quiet_room_shares_the_silence_rows() -> None:
    mixer = instant_mixer()
    slots = [mixer.add_leg(room, Codec.PCMU) for room in (1, 1, 1, 2, 2, 2)]
    out = mixer.mix()
    assert {int(out.rows[s]) for s in slots} == {SILENCE_ROW[Codec.PCMU]}
    assert out.encoded == 0


# --------------------------------------------------------------------------------- prompts


def test_private_prompt_reaches_only_its_leg() -> None:
    mixer = instant_mixer()
    codec = Codec.PCMU
    a, b, c = (mixer.add_leg(5, codec) for _ in range(3))
    send(mixer, a, codec, const(876))
    mixer.play_private(b, const(-96))
    mixer.play_private(a, const(396))
    out = mixer.mix()
    assert (heard(out, b, codec) == 780).all()  # room (876) + its prompt (-96)
    assert (heard(out, a, codec) == 396).all()  # its own voice removed, prompt added
    assert (heard(out, c, codec) == 876).all()  # no prompt for c
    out = mixer.mix()  # prompts last one tick
    assert out.payload(b) == Codec.PCMU.silence()


def test_private_prompt_reaches_a_deaf_leg_without_the_room() -> None:
    mixer = instant_mixer()
    codec = Codec.PCMA
    a, b, _c = (mixer.add_leg(5, codec) for _ in range(3))
    send(mixer, a, codec, const(1008))
    mixer.set_deaf(b, True)
    mixer.play_private(b, const(-1008))
    out = mixer.mix()
    assert (heard(out, b, codec) == -1008).all()


def test_room_broadcast_reaches_every_listening_leg_of_that_room() -> None:
    mixer = instant_mixer()
    codec = Codec.PCMU
    a, b, deaf = (mixer.add_leg(6, codec) for _ in range(3))
    other = mixer.add_leg(8, codec)
    mixer.set_deaf(deaf, True)
    send(mixer, a, codec, const(876))
    mixer.play_room(6, const(-96))
    out = mixer.mix()
    assert (heard(out, a, codec) == -96).all()
    assert (heard(out, b, codec) == 780).all()
    assert out.payload(deaf) == Codec.PCMU.silence()
    assert out.payload(other) == Codec.PCMU.silence()


def test_prompt_in_two_party_room_suspends_relay() -> None:
    mixer = instant_mixer()
    codec = Codec.PCMU
    a, b = mixer.add_leg(1, codec), mixer.add_leg(1, codec)
    send(mixer, a, codec, const(876))
    mixer.play_room(1, const(-96))
    out = mixer.mix()
    assert (heard(out, b, codec) == 780).all()
    assert (heard(out, a, codec) == -96).all()


def test_prompt_frames_are_validated() -> None:
    mixer = instant_mixer()
    a = mixer.add_leg(1, Codec.PCMU)
    with pytest.raises(ValueError):
        mixer.play_private(a, np.zeros(80, dtype=np.int16))
    with pytest.raises(ValueError):
        mixer.play_room(1, np.zeros(SAMPLES, dtype=np.int32))


# ------------------------------------------------------------------- membership and growth


def test_slots_are_reused_and_capacity_grows() -> None:
    mixer = instant_mixer(capacity=2)
    slots = [mixer.add_leg(i % 7, Codec.PCMU) for i in range(50)]
    assert slots == list(range(50)) and mixer.capacity >= 50
    mixer.remove_leg(10)
    mixer.remove_leg(3)
    assert mixer.add_leg(1, Codec.PCMA) == 3
    with pytest.raises(KeyError):
        mixer.set_muted(10, True)
    out = mixer.mix()
    assert out.rows[10] == -1
    with pytest.raises(KeyError):
        out.payload(10)
    assert mixer.room_of(3) == 1


def test_vad_hysteresis_drives_talking_events() -> None:
    mixer = Mixer(MixerConfig(vad=VadConfig(threshold_dbov=-42.0, start_frames=3)))
    codec = Codec.PCMU
    a, b, c = (mixer.add_leg(1, codec) for _ in range(3))
    started = []
    for _ in range(3):
        send(mixer, a, codec, const(876))
        out = mixer.mix()
        started.append(out.started.tolist())
        assert (heard(out, b, codec) == 876).all()  # onset frames feed the mix at once
    assert started == [[], [], [a]]
    assert out.talking.tolist() == [True, False, False]
    assert out.level_dbov[a] > -42.0 > out.level_dbov[c]


# ---------------------------------------------------------- property test vs a reference


@dataclass
class Leg:
    room: int
    codec: Codec
    muted: bool
    deaf: bool
    gain: float
    loud: bool
    has_input: bool
    private: bool


def reference(
    legs: dict[int, Leg],
    payloads: dict[int, np.ndarray],
    privates: dict[int, np.ndarray],
    broadcasts: dict[int, np.ndarray],
    relay_on: bool,
) -> dict[int, bytes]:
    """The obvious int64 mixer: per room, per leg, no tricks."""
    contribution: dict[int, np.ndarray] = {}
    for slot, leg in legs.items():
        if not leg.has_input:
            pcm = np.zeros(SAMPLES, dtype=np.int64)
        else:
            pcm = leg.codec.decode(payloads[slot]).astype(np.int64)
        if leg.gain != 1.0:
            scaled = np.rint(pcm.astype(np.float32) * np.float32(leg.gain))
            pcm = np.clip(scaled, -32768, 32767).astype(np.int64)
        contribution[slot] = pcm
    members: dict[int, list[int]] = {}
    for slot, leg in legs.items():
        members.setdefault(leg.room, []).append(slot)
    result: dict[int, bytes] = {}
    for room, slots in members.items():
        prompted = room in broadcasts or any(legs[s].private for s in slots)
        pair = [legs[s] for s in slots]
        if (
            relay_on
            and len(slots) == 2
            and not prompted
            and pair[0].codec == pair[1].codec
            and all(not p.muted and not p.deaf and p.gain == 1.0 for p in pair)
        ):
            for me, other in ((slots[0], slots[1]), (slots[1], slots[0])):
                have = legs[other].has_input
                result[me] = payloads[other].tobytes() if have else legs[me].codec.silence()
            continue
        feeding = [s for s in slots if legs[s].loud and legs[s].has_input and not legs[s].muted]
        total = sum((contribution[s] for s in feeding), np.zeros(SAMPLES, dtype=np.int64))
        if room in broadcasts:
            total = total + broadcasts[room]
        for slot in slots:
            leg = legs[slot]
            frame = np.zeros(SAMPLES, dtype=np.int64) if leg.deaf else total.copy()
            if slot in feeding and not leg.deaf:
                frame -= contribution[slot]
            if leg.private:
                frame += privates[slot]
            clipped = np.clip(frame, -32768, 32767).astype(np.int16)
            result[slot] = leg.codec.encode(clipped).tobytes()
    return result


leg_strategy = st.builds(
    Leg,
    room=st.integers(0, 5),
    codec=st.sampled_from(list(Codec)),
    muted=st.booleans(),
    deaf=st.booleans(),
    gain=st.sampled_from([1.0, 1.0, 1.0, 0.5, 2.0, 0.0]),
    loud=st.booleans(),
    has_input=st.booleans(),
    private=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(
    legs=st.lists(leg_strategy, min_size=1, max_size=40),
    removed=st.sets(st.integers(0, 39), max_size=5),
    broadcast_rooms=st.sets(st.integers(0, 6), max_size=2),
    relay_on=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_mixer_matches_int64_reference(
    legs: list[Leg], removed: set[int], broadcast_rooms: set[int], relay_on: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    mixer = instant_mixer(capacity=3, relay=relay_on)
    slots = [mixer.add_leg(leg.room, leg.codec) for leg in legs]
    for slot in removed:
        if slot < len(slots):
            mixer.remove_leg(slot)
    live = {slot: leg for slot, leg in zip(slots, legs, strict=True) if slot not in removed}
    payloads: dict[int, np.ndarray] = {}
    privates: dict[int, np.ndarray] = {}
    for slot, leg in live.items():
        mixer.set_muted(slot, leg.muted)
        mixer.set_deaf(slot, leg.deaf)
        mixer.set_gain(slot, leg.gain)
        span = 32768 if leg.loud else 20
        pcm = rng.integers(-span, span, SAMPLES).astype(np.int16)
        payloads[slot] = leg.codec.encode(pcm)
        if leg.has_input:
            mixer.payload_in[slot] = payloads[slot]
            mixer.has_input[slot] = True
        if leg.private:
            privates[slot] = rng.integers(-20000, 20000, SAMPLES).astype(np.int16)
            mixer.play_private(slot, privates[slot])
    broadcasts = {
        room: rng.integers(-20000, 20000, SAMPLES).astype(np.int16) for room in broadcast_rooms
    }
    for room, frame in broadcasts.items():
        mixer.play_room(room, frame)
    # a leg whose gain is 0 is silent after gain, so the gate (which sees post-gain audio) closes
    for leg in live.values():
        leg.loud = leg.loud and leg.gain != 0.0
    present_rooms = {leg.room for leg in live.values()}
    expected = reference(
        live,
        payloads,
        privates,
        {r: f.astype(np.int64) for r, f in broadcasts.items() if r in present_rooms},
        relay_on,
    )
    out = mixer.mix()
    for slot, leg in live.items():
        got = out.payload(slot)
        assert got == expected[slot], (slot, leg)
        np.testing.assert_array_equal(leg.codec.decode(got), leg.codec.decode(expected[slot]))
    for slot in removed:
        if slot < len(slots):
            assert slot >= out.rows.size or out.rows[slot] == -1


# ----------------------------------------------- the lean tick equals the general path


@settings(max_examples=60, deadline=None)
@given(
    rooms=st.lists(st.integers(0, 6), min_size=1, max_size=30),
    codec=st.sampled_from(list(Codec)),
    flags=st.lists(st.sampled_from(["", "", "", "muted", "deaf"]), min_size=30, max_size=30),
    relay_on=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_lean_tick_matches_general_path(
    rooms: list[int], codec: Codec, flags: list[str], relay_on: bool, seed: int
) -> None:
    """One codec, no gain, no prompt: the lean tick. A twin mixer with one extra leg carrying a
    gain (in a room of its own, never sending) takes the general path; over ticks with
    hysteresis, missing packets and loudness near the threshold both must agree exactly."""
    rng = np.random.default_rng(seed)
    vad = VadConfig(threshold_dbov=-42.0, start_frames=2, hangover_frames=3)
    lean = Mixer(MixerConfig(initial_capacity=2, vad=vad, relay_two_party=relay_on))
    general = Mixer(MixerConfig(initial_capacity=2, vad=vad, relay_two_party=relay_on))
    slots = [lean.add_leg(room, codec) for room in rooms]
    assert [general.add_leg(room, codec) for room in rooms] == slots
    odd = general.add_leg(99, codec)
    general.set_gain(odd, 0.5)
    for slot, flag in zip(slots, flags, strict=False):
        for mixer in (lean, general):
            mixer.set_muted(slot, flag == "muted")
            mixer.set_deaf(slot, flag == "deaf")
    for _tick in range(6):
        spans = rng.choice([3, 150, 200, 300, 8000, 32768], len(slots))
        sending = rng.random(len(slots)) < 0.8
        for slot, span, send_now in zip(slots, spans, sending, strict=True):
            pcm = rng.integers(-span, span, SAMPLES).astype(np.int16)
            for mixer in (lean, general):
                mixer.payload_in[slot] = codec.encode(pcm)
                mixer.has_input[slot] = bool(send_now)
        a, b = lean.mix(), general.mix()
        for slot in slots:
            assert a.payload(slot) == b.payload(slot), slot
        n = len(slots)
        np.testing.assert_array_equal(a.talking[:n], b.talking[:n])
        np.testing.assert_array_equal(a.level_dbov[:n], b.level_dbov[:n])
        assert a.started.tolist() == b.started.tolist()
        assert a.stopped.tolist() == b.stopped.tolist()


@pytest.mark.parametrize("codec", list(Codec))
@pytest.mark.parametrize("sizes", [(3,) * 5, (7,), (2, 4, 4, 1)])
def test_lean_tick_matches_int64_reference(codec: Codec, sizes: tuple[int, ...]) -> None:
    """Equal and unequal talker counts per room, one codec, no flags: against the reference."""
    rng = np.random.default_rng(sum(sizes))
    mixer = instant_mixer(capacity=2, relay=False)
    legs: dict[int, Leg] = {}
    payloads: dict[int, np.ndarray] = {}
    for room, size in enumerate(sizes):
        for _ in range(size):
            slot = mixer.add_leg(room, codec)
            loud = bool(rng.random() < 0.7)
            legs[slot] = Leg(room, codec, False, False, 1.0, loud, True, False)
            span = 32768 if loud else 20
            payloads[slot] = codec.encode(rng.integers(-span, span, SAMPLES).astype(np.int16))
            mixer.payload_in[slot] = payloads[slot]
            mixer.has_input[slot] = True
    expected = reference(legs, payloads, {}, {}, relay_on=False)
    out = mixer.mix()
    for slot in legs:
        assert out.payload(slot) == expected[slot], slot


@pytest.mark.parametrize("codec", list(Codec))
@pytest.mark.parametrize(
    ("sizes", "talkers"),
    [((3,) * 6, 3), ((4,) * 5, 2), ((5,), 3), ((6,), 3), ((6, 6), 3), ((9,), 4), ((9,) * 2, 4)],
)
def test_lean_tick_saturates_like_the_reference(
    codec: Codec, sizes: tuple[int, ...], talkers: int
) -> None:
    """Rooms with the same number of talkers (the padded block, with and without the wide
    encode table, with and without listeners), full-scale in even rooms: every N-1 and shared
    frame equals the int64 reference's, saturated at both ends of the range."""
    rng = np.random.default_rng(len(sizes) * 10 + talkers)
    mixer = instant_mixer(capacity=2, relay=False)
    legs: dict[int, Leg] = {}
    payloads: dict[int, np.ndarray] = {}
    for room, size in enumerate(sizes):
        for index in range(size):
            slot = mixer.add_leg(room, codec)
            loud = index < talkers
            legs[slot] = Leg(room, codec, False, False, 1.0, loud, True, False)
            if loud and room % 2 == 0:  # mostly one sign: sums run far past int16 both ways
                sign = 1 if (room // 2 + index) % 2 else -1
                pcm = sign * rng.integers(20000, 32768, SAMPLES)
                pcm[rng.random(SAMPLES) < 0.2] *= -1
            elif loud:  # small sums, where the quantisation steps are fine
                pcm = rng.integers(-700, 700, SAMPLES)
            else:
                pcm = rng.integers(-20, 20, SAMPLES)
            payloads[slot] = codec.encode(pcm.astype(np.int16))
            mixer.payload_in[slot] = payloads[slot]
            mixer.has_input[slot] = True
    expected = reference(legs, payloads, {}, {}, relay_on=False)
    out = mixer.mix()
    for slot in legs:
        assert out.payload(slot) == expected[slot], slot
    extremes = {codec.encode(const(v))[0] for v in (-32768, 32767)}
    assert extremes <= {byte for slot in legs for byte in out.payload(slot)}


@pytest.mark.parametrize("gain", [1.0, 0.5])  # the lean tick and the general path
def test_levels_are_built_once_per_tick(gain: float) -> None:
    """``level_dbov`` is computed on first read and then the same array: a leg with a packet
    has its level (exact for the measured, a bound below the threshold for screened ones), a
    leg without one the RFC 6464 floor."""
    mixer = instant_mixer(relay=False)
    codec = Codec.PCMU
    loud, faint, absent = (mixer.add_leg(1, codec) for _ in range(3))
    mixer.set_gain(loud, gain)
    send(mixer, loud, codec, const(3000))
    send(mixer, faint, codec, const(5))
    out = mixer.mix()
    levels = out.level_dbov
    assert out.level_dbov is levels
    expected = 20 * np.log10(gain * float(codec.decode(codec.encode(const(3000)))[0]) / 32768)
    assert levels[loud] == pytest.approx(expected, abs=1e-3)
    assert -127.0 < levels[faint] < -42.0
    assert levels[absent] == -127.0
