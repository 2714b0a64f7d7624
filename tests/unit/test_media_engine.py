"""The media engine end to end: real RTP bytes in, real RTP bytes out, on a fake 20 ms clock.

Every test drives :class:`bridge.media.engine.MediaEngine` as the runtime would: datagrams from
each leg's own address go to ``receive_rtp`` and ``tick(now)`` runs at ``now = k * 0.02``; what
``tick`` returns is parsed with ``parse_rtp`` and decoded with the G.711 tables, and the audio is
checked with single-bin DFTs (exact bins: 0.5 s windows and tones on multiples of 2 Hz).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.codecs.g711 import Codec
from bridge.media.engine import (
    EngineConfig,
    LegDigitReceived,
    LegMedia,
    MediaEngine,
    PromptFinished,
    TalkingChanged,
)
from bridge.media.inband_dtmf import dbm0_to_amplitude
from bridge.rtp.dtmf import build_event, digit_to_event
from bridge.rtp.packet import RtpPacket, build_rtp, parse_rtp
from bridge.rtp.rtcp import Bye, SenderReport, SourceDescription, parse_rtcp

RATE = 8000
FRAME = 160
TICK = 0.02
WALL0 = 1_700_000_000.0
Pcm = npt.NDArray[np.int16]


# -- signals and measurements --------------------------------------------------------------------


def tone(freq: float, amp: float, start: int, n: int = FRAME, phase: float = 0.0) -> Pcm:
    t = np.arange(start, start + n, dtype=np.float64)
    return np.rint(amp * np.sin(2 * np.pi * freq * t / RATE + phase)).astype(np.int16)


def dual(low: float, high: float, amp: float, start: int) -> Pcm:
    t = np.arange(start, start + FRAME, dtype=np.float64)
    x = amp * (np.sin(2 * np.pi * low * t / RATE) + np.sin(2 * np.pi * high * t / RATE))
    return np.rint(x).astype(np.int16)


def power(x: npt.NDArray[np.generic], freq: float) -> float:
    """Sine power A^2/2 at ``freq`` (single-bin DFT over all of ``x``)."""
    xf = np.asarray(x, dtype=np.float64)
    n = np.arange(xf.size)
    c = np.dot(xf, np.exp(-2j * np.pi * freq * n / RATE))
    return float(abs(c) ** 2 * 2 / xf.size**2)


def db(p: float) -> float:
    return 10 * math.log10(max(p, 1e-12))


def rms(x: npt.NDArray[np.generic]) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def exact(codec: Codec, value: int) -> tuple[bytes, int]:
    """A constant frame of ``value``'s G.711 code and the value it decodes to exactly."""
    code = codec.encode(np.full(FRAME, value, dtype=np.int16))
    return code.tobytes(), int(codec.decode(code)[0])


# -- the harness ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Peer:
    """The far end of one leg: sends from ``addr``, records what the engine sends to it."""

    leg: str
    addr: tuple[str, int]
    codec: Codec
    te_pt: int | None
    ssrc: int
    seq: int = 4000
    ts: int = 90_000
    samples: int = 0  # samples of tone generated so far
    packets: list[RtpPacket] = field(default_factory=list)
    got: list[int] = field(default_factory=list)  # packets received per tick
    audio: list[Pcm] = field(default_factory=list)  # one decoded frame per tick (or empty)
    rtcp: list[bytes] = field(default_factory=list)

    @property
    def pt(self) -> int:
        return self.codec.payload_type

    def rtp(self, payload: bytes, *, pt: int | None = None, marker: bool = False,
            advance: bool = True) -> bytes:
        data = build_rtp(payload_type=self.pt if pt is None else pt, sequence=self.seq,
                         timestamp=self.ts, ssrc=self.ssrc, payload=payload, marker=marker)
        self.seq = (self.seq + 1) & 0xFFFF
        if advance:
            self.ts = (self.ts + FRAME) & 0xFFFFFFFF
        return data

    def pcm(self, pcm: Pcm) -> bytes:
        return self.rtp(self.codec.encode(pcm).tobytes())

    def tone(self, freq: float, amp: float = 8000.0) -> bytes:
        frame = tone(freq, amp, self.samples)
        self.samples += FRAME
        return self.pcm(frame)

    def event(self, digit: str, *, ts: int, duration: int, end: bool, marker: bool) -> bytes:
        assert self.te_pt is not None
        payload = build_event(event=digit_to_event(digit), end=end, volume=10,
                              duration=duration)
        data = build_rtp(payload_type=self.te_pt, sequence=self.seq, timestamp=ts,
                         ssrc=self.ssrc, payload=payload, marker=marker)
        self.seq = (self.seq + 1) & 0xFFFF
        return data

    def heard(self, ticks: int) -> Pcm:
        """The decoded audio of the last ``ticks`` ticks."""
        return np.concatenate(self.audio[-ticks:])


class Rig:
    """An engine on a fake clock plus the peers of its legs."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.engine = MediaEngine(config)
        self.k = 0
        self.peers: dict[str, Peer] = {}
        self.events: list[object] = []
        self._next_host = 1

    @property
    def now(self) -> float:
        return self.k * TICK

    def add(self, leg: str, room: str, *, codec: Codec = Codec.PCMU, te_pt: int | None = 101,
            remote: bool = True) -> Peer:
        addr = (f"192.0.2.{self._next_host}", 20000 + 2 * self._next_host)
        self._next_host += 1
        peer = Peer(leg=leg, addr=addr, codec=codec, te_pt=te_pt, ssrc=0x1000 + self._next_host,
                    seq=(1000 * self._next_host) & 0xFFFF)
        media = LegMedia(codec=codec, payload_type=codec.payload_type, telephone_event_pt=te_pt,
                         remote=addr if remote else None)
        self.engine.add_leg(leg, room, media, ssrc=0xA000 + self._next_host, now=self.now,
                            rtp_handle=("rtp", leg), rtcp_handle=("rtcp", leg))
        self.peers[leg] = peer
        return peer

    def deliver(self, leg: str, data: bytes, addr: tuple[str, int] | None = None) -> None:
        peer = self.peers[leg]
        self.engine.receive_rtp(leg, data, peer.addr if addr is None else addr, self.now)

    def tick(self, sends: dict[str, bytes | list[bytes]] | None = None) -> None:
        """Deliver this tick's datagrams, run one tick, and hand the output to the peers."""
        for leg, data in (sends or {}).items():
            for d in [data] if isinstance(data, bytes) else data:
                self.deliver(leg, d)
        out = self.engine.tick(self.now, WALL0 + self.now)
        self.k += 1
        counts = dict.fromkeys(self.peers, 0)
        frames: dict[str, Pcm] = {}
        for handle, data, addr in out:
            assert isinstance(handle, tuple)
            kind, leg = handle
            peer = self.peers[leg]
            if kind == "rtcp":
                assert addr == (peer.addr[0], peer.addr[1] + 1)
                peer.rtcp.append(data)
                continue
            assert kind == "rtp"
            assert addr == peer.addr
            packet = parse_rtp(data)
            assert packet.payload_type == peer.pt
            assert len(packet.payload) == FRAME
            peer.packets.append(packet)
            counts[leg] += 1
            frames[leg] = peer.codec.decode(packet.payload)
        for leg, peer in self.peers.items():
            peer.got.append(counts[leg])
            peer.audio.append(frames.get(leg, np.zeros(0, dtype=np.int16)))
        self.events.extend(self.engine.events())

    def run(self, ticks: int, talk: dict[str, float] | None = None) -> None:
        """``ticks`` ticks in which each leg of ``talk`` sends its tone."""
        talk = talk or {}
        for _ in range(ticks):
            self.tick({leg: self.peers[leg].tone(f) for leg, f in talk.items()})

    def digits(self) -> list[LegDigitReceived]:
        return [e for e in self.events if isinstance(e, LegDigitReceived)]


TONES = {"a": 440.0, "b": 1000.0, "c": 1700.0}
WINDOW = 25  # ticks = 0.5 s: exact DFT bins for every tone used here


# -- 1. who hears whom ---------------------------------------------------------------------------


@pytest.mark.parametrize("legs", [2, 3])
def test_each_leg_hears_the_others_and_not_itself(legs: int) -> None:
    rig = Rig()
    names = list(TONES)[:legs]
    for name in names:
        rig.add(name, "r1")
    rig.run(60, {n: TONES[n] for n in names})
    for name in names:
        peer = rig.peers[name]
        assert peer.got == [1] * 60
        heard = peer.heard(WINDOW)
        own = power(heard, TONES[name])
        for other in names:
            if other == name:
                continue
            p = power(heard, TONES[other])
            assert db(p) == pytest.approx(db(8000**2 / 2), abs=1.0)  # the tone at full level
            assert db(own) < db(p) - 40


def test_alone_hears_silence_and_still_gets_a_packet_every_tick() -> None:
    rig = Rig()
    alone = rig.add("a", "r1")
    rig.run(50, {"a": 440.0})
    assert alone.got == [1] * 50
    assert np.abs(alone.heard(50)).max() == 0
    seqs = [p.sequence for p in alone.packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))


def test_leg_without_a_remote_latches_on_first_packet_and_then_gets_packets() -> None:
    rig = Rig()
    rig.add("a", "r1")
    late = rig.add("b", "r1", remote=False)
    rig.run(5, {"a": 440.0})
    assert late.got == [0] * 5  # nowhere to send yet
    rig.run(10, {"a": 440.0, "b": 1000.0})
    # RFC 3550 A.1 probation: the source is valid (and latched) from its second packet on
    assert late.got[5:] == [0] + [1] * 9
    assert rig.engine.session("b").latched


# -- 2. exact N-1 through the whole engine ---------------------------------------------------------


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
def test_exact_n_minus_one(codec: Codec) -> None:
    rig = Rig()
    values = {"a": 3900, "b": -1000, "c": 700}
    frames = {leg: exact(codec, v) for leg, v in values.items()}
    for leg in values:
        rig.add(leg, "r1", codec=codec)
    for _ in range(10):
        rig.tick({leg: rig.peers[leg].rtp(frames[leg][0]) for leg in values})
    decoded = {leg: frames[leg][1] for leg in values}
    for leg in values:
        want = sum(v for other, v in decoded.items() if other != leg)
        # the sum is re-encoded once: it decodes to the code of the exact sum
        code, heard = exact(codec, want)
        last = rig.peers[leg].packets[-1].payload
        assert last == code
        assert (rig.peers[leg].audio[-1] == heard).all()


# -- 3. a continuous tone stays continuous -------------------------------------------------------


@pytest.mark.parametrize("legs", [2, 3], ids=["relay", "mix"])
def test_ten_seconds_of_tone_arrive_without_gap_or_click(legs: int) -> None:
    rig = Rig()
    names = list(TONES)[:legs]
    for name in names:
        rig.add(name, "r1")
    amp = 8000.0
    rig.run(500, {"a": 1000.0})
    rig.run(10)  # drain the jitter buffer
    b = rig.peers["b"]
    assert b.got == [1] * 510
    for p, q in itertools.pairwise(b.packets):
        assert (q.sequence - p.sequence) & 0xFFFF == 1
        assert (q.timestamp - p.timestamp) & 0xFFFFFFFF == FRAME
        assert q.ssrc == p.ssrc
    start = next(i for i, f in enumerate(b.audio) if np.abs(f).max() > 0)
    assert start <= 3  # the jitter buffer starts playing within 40-60 ms
    # packet 0 is dropped by RFC 3550 A.1 probation; packets 1..499 all play, in order
    audio = b.audio[start : start + 499]
    want_rms = amp / math.sqrt(2)
    for frame in audio:
        assert rms(frame) == pytest.approx(want_rms, rel=0.02)  # G.711 error is ~-38 dB
    signal = np.concatenate(audio).astype(np.int64)
    # the largest step of an ideal 1 kHz sine is 2*A*sin(pi*f/fs); G.711 adds at most two
    # half-steps of its segment (< 3.2 % of the value each at this level)
    ideal_step = 2 * amp * math.sin(math.pi * 1000 / RATE)
    margin = 2 * 0.032 * amp
    steps = np.abs(np.diff(signal))
    at_boundary = steps[FRAME - 1 :: FRAME]
    assert at_boundary.size == 498
    assert at_boundary.max() <= ideal_step + margin
    assert steps.max() <= ideal_step + margin
    # one continuous sine: the best-fitting 1 kHz sine leaves only quantisation noise
    n = np.arange(signal.size)
    basis = np.stack([np.sin(2 * np.pi * 1000 * n / RATE), np.cos(2 * np.pi * 1000 * n / RATE)])
    coef, *_ = np.linalg.lstsq(basis.T, signal.astype(np.float64), rcond=None)
    assert float(np.hypot(*coef)) == pytest.approx(amp, rel=0.01)
    residual = signal - coef @ basis
    assert db(float(np.mean(residual**2))) < db(amp**2 / 2) - 30
    # the end of the stream: concealment fades out (1.0, 0.5, 0.25 of the last frame) and
    # then silence, never a burst or a stuck frame
    tail = [rms(f) for f in b.audio[start + 499 :]]
    assert tail[3:] == [0.0] * (len(tail) - 3)
    assert all(t <= want_rms * 1.02 for t in tail[:3])


# -- 4. jitter -----------------------------------------------------------------------------------


def _noise_frames(count: int, seed: int) -> list[Pcm]:
    rng = np.random.default_rng(seed)
    return [np.clip(rng.normal(0, 4000, FRAME), -32768, 32767).astype(np.int16)
            for _ in range(count)]


@pytest.mark.parametrize("legs", [2, 3], ids=["relay", "mix"])
def test_reorder_duplicate_and_loss_within_bounds(legs: int) -> None:
    rig = Rig()
    names = list(TONES)[:legs]
    for name in names:
        rig.add(name, "r1")
    a, b = rig.peers["a"], rig.peers["b"]
    count = 300
    frames = _noise_frames(count, seed=7)
    packets = [a.pcm(f) for f in frames]
    key = {a.codec.decode(a.codec.encode(f)).tobytes(): k for k, f in enumerate(frames)}
    lost = 151
    # arrival schedule: send tick of each packet (swap neighbours, duplicate, lose one)
    schedule: dict[int, list[bytes]] = {k: [packets[k]] for k in range(count)}
    for k in range(20, count - 20, 25):
        schedule[k], schedule[k + 1] = [packets[k + 1]], [packets[k]]  # reordered by a tick
    for k in range(30, count - 20, 40):
        schedule[k + 1] = [*schedule[k + 1], packets[k]]  # duplicated a tick later
    schedule[lost] = []
    for k in range(count + 5):
        rig.tick({"a": schedule.get(k, [])})
    assert b.got == [1] * (count + 5)
    delays: dict[int, int] = {}
    concealed: list[int] = []
    for tick, frame in enumerate(b.audio):
        idx = key.get(frame.tobytes())
        if idx is not None and idx not in delays:
            delays[idx] = tick - idx
        elif np.abs(frame).max() > 0 and idx is None:
            concealed.append(tick)
    # packet 0 is the RFC 3550 A.1 probation packet (dropped by the session)
    assert set(delays) == set(range(1, count)) - {lost}
    # bounded latency, no creep: the same small delay at the end as at the start
    assert max(delays.values()) <= 3
    assert delays[count - 1] <= delays[5] + 1
    # the lost frame is concealed (not silence) in its own playout slot
    slot = lost + delays[lost - 1]
    assert slot in concealed or b.audio[slot].tobytes() == b.audio[slot - 1].tobytes()
    assert np.abs(b.audio[slot]).max() > 0
    session = rig.engine.session("a")
    assert session.jitter.counters.duplicate >= 1
    assert session.jitter.counters.concealed >= 1


def test_late_burst_does_not_build_up_latency() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    a, b = rig.peers["a"], rig.peers["b"]
    frames = _noise_frames(200, seed=3)
    key = {a.codec.decode(a.codec.encode(f)).tobytes(): k for k, f in enumerate(frames)}
    packets = [a.pcm(f) for f in frames]
    for k in range(200):
        if 50 <= k < 55:
            sends = []  # a 100 ms stall ...
        elif k == 55:
            sends = packets[50:56]  # ... then everything at once
        else:
            sends = [packets[k]]
        rig.tick({"a": sends})
    rig.run(5)
    delays: dict[int, int] = {}
    for tick, frame in enumerate(b.audio):
        idx = key.get(frame.tobytes())
        if idx is not None:
            delays.setdefault(idx, tick - idx)
    assert b.got == [1] * 205
    assert max(delays.values()) <= 4
    assert delays[199] <= delays[10] + 1


@pytest.mark.parametrize("legs", [2, 3], ids=["relay", "mix"])
def test_fast_sender_clock_does_not_creep(legs: int) -> None:
    """The sender's clock runs 2 % fast (51 packets per 50 ticks): latency stays bounded."""
    rig = Rig()
    for name in list(TONES)[:legs]:
        rig.add(name, "r1")
    a, b = rig.peers["a"], rig.peers["b"]
    frames = _noise_frames(1050, seed=11)
    key = {a.codec.decode(a.codec.encode(f)).tobytes(): k for k, f in enumerate(frames)}
    sent_at: dict[int, int] = {}
    k = 0
    for tick in range(1000):
        burst = 2 if tick % 50 == 49 else 1
        sends = []
        for _ in range(burst):
            sends.append(a.pcm(frames[k]))
            sent_at[k] = tick
            k += 1
        rig.tick({"a": sends})
    assert b.got == [1] * 1000
    delays = []
    for tick, frame in enumerate(b.audio):
        idx = key.get(frame.tobytes())
        if idx is not None:
            delays.append(tick - sent_at[idx])
    assert len(delays) > 900
    assert max(delays[-100:]) <= 3  # frames are dropped, latency does not grow


# -- 5. DTMF ---------------------------------------------------------------------------------------


def _send_event(rig: Rig, leg: str, digit: str, *, ticks: int = 5, with_tone: bool = True,
                info: bool = False) -> None:
    """A 100 ms RFC 4733 press (end packet x3) with a loud tone sent alongside."""
    peer = rig.peers[leg]
    ts = peer.ts
    for i in range(ticks):
        sends = [peer.event(digit, ts=ts, duration=(i + 1) * FRAME, end=False, marker=i == 0)]
        if with_tone:
            sends.append(peer.tone(1000.0, 12000.0))
        else:
            peer.ts += FRAME
        if info and i == 1:
            rig.engine.add_info_digit(leg, digit, 100, rig.now)
        rig.tick({leg: sends})
    end = [peer.event(digit, ts=ts, duration=ticks * FRAME, end=True, marker=False)
           for _ in range(3)]
    rig.tick({leg: [*end, peer.tone(1000.0, 12000.0) if with_tone else b""][: 3 + with_tone]})


@pytest.mark.parametrize(("te_pt", "legs"), [(101, "abc"), (96, "abc"), (101, "ab")])
def test_rfc4733_digit_counts_once_and_its_audio_is_kept_out(te_pt: int, legs: str) -> None:
    rig = Rig()
    rig.add("a", "r1", te_pt=te_pt)
    for other in legs[1:]:
        rig.add(other, "r1")
    rig.run(10)
    _send_event(rig, "a", "5")
    rig.run(40)
    digits = rig.digits()
    assert digits == [LegDigitReceived(leg="a", digit="5", source="rfc4733")]
    for other in legs[1:]:
        heard = rig.peers[other].heard(60)
        assert np.abs(heard).max() == 0  # not one sample of the tone sent alongside
    session = rig.engine.session("a")
    # 8 event packets sent; the very first datagram of a source is A.1 probation
    assert session.counters.events_received == 7
    assert session.counters.dropped_probation == 1


def test_two_legs_with_different_event_payload_types() -> None:
    rig = Rig()
    rig.add("a", "r1", te_pt=101)
    rig.add("b", "r1", te_pt=96)
    rig.add("c", "r1", te_pt=None)
    rig.run(5)
    _send_event(rig, "a", "1")
    rig.run(5)
    _send_event(rig, "b", "#")
    rig.run(5)
    # PT 96 sent to a leg that negotiated 101 is not an event: dropped, no digit
    peer = rig.peers["a"]
    wrong = build_rtp(payload_type=96, sequence=peer.seq, timestamp=peer.ts, ssrc=peer.ssrc,
                      payload=build_event(event=9, end=True, volume=10, duration=160),
                      marker=True)
    peer.seq += 1
    rig.tick({"a": wrong})
    rig.run(20)
    assert rig.digits() == [
        LegDigitReceived(leg="a", digit="1", source="rfc4733"),
        LegDigitReceived(leg="b", digit="#", source="rfc4733"),
    ]
    assert rig.engine.session("a").counters.dropped_payload_type == 1
    assert np.abs(rig.peers["c"].heard(40)).max() == 0


def test_audio_resumes_after_the_digit() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    rig.run(10, {"a": 440.0})
    _send_event(rig, "a", "7", with_tone=False)
    rig.run(30, {"a": 440.0})
    heard = rig.peers["b"].heard(25)
    assert db(power(heard, 440.0)) == pytest.approx(db(8000**2 / 2), abs=1.0)


def test_info_and_rfc4733_for_the_same_press_count_once() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    rig.run(5)
    _send_event(rig, "a", "3", info=True)
    rig.run(30)
    # and INFO first, RFC 4733 a tick later
    rig.engine.add_info_digit("a", "8", 120, rig.now)
    _send_event(rig, "a", "8")
    rig.run(30)
    assert rig.digits() == [
        LegDigitReceived(leg="a", digit="3", source="rfc4733"),
        LegDigitReceived(leg="a", digit="8", source="rfc4733"),
    ]


def test_info_digit_alone() -> None:
    rig = Rig()
    rig.add("a", "r1")
    rig.add("b", "r1")
    rig.engine.add_info_digit("a", "*", None, rig.now)
    rig.run(30)
    assert rig.digits() == [LegDigitReceived(leg="a", digit="*", source="info")]


DTMF_FREQS = {"1": (697.0, 1209.0), "5": (770.0, 1336.0), "9": (852.0, 1477.0),
              "#": (941.0, 1477.0)}


@pytest.mark.parametrize(("codec", "legs"), [(Codec.PCMU, "abc"), (Codec.PCMA, "abc"),
                                              (Codec.PCMU, "ab")])
def test_inband_digits_detected_and_kept_out(codec: Codec, legs: str) -> None:
    rig = Rig()
    a = rig.add("a", "r1", codec=codec, te_pt=None)
    rig.add("b", "r1", codec=codec)
    if "c" in legs:
        rig.add("c", "r1", codec=Codec.PCMU)
    amp = dbm0_to_amplitude(-10.0)
    quiet = np.zeros(FRAME, dtype=np.int16)
    for _ in range(10):  # a streams silence: its jitter buffer is playing when the tones come
        rig.tick({"a": a.pcm(quiet)})
    tone_ticks: list[int] = []
    for digit in "159#":
        low, high = DTMF_FREQS[digit]
        start = len(rig.peers["b"].audio)
        for i in range(5):  # 100 ms
            rig.tick({"a": a.pcm(dual(low, high, amp, i * FRAME))})
        for _ in range(5):  # 100 ms pause
            rig.tick({"a": a.pcm(quiet)})
        tone_ticks.append(start)
    for _ in range(20):
        rig.tick({"a": a.pcm(quiet)})
    assert rig.digits() == [LegDigitReceived(leg="a", digit=d, source="inband")
                            for d in "159#"]
    tone_power = amp**2 / 2
    for other in legs[1:]:
        peer = rig.peers[other]
        for digit, start in zip("159#", tone_ticks, strict=True):
            # the tone reaches the mix after the jitter delay; skip its first 3 ticks
            window = np.concatenate(peer.audio[start + 3 : start + 9])
            for f in DTMF_FREQS[digit]:
                assert db(power(window, f)) < db(tone_power) - 20


def test_inband_detector_ignores_speech_like_tones() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1", te_pt=None)
    rig.run(100, TONES)
    assert rig.digits() == []


# -- 6. bad input ----------------------------------------------------------------------------------


def test_bad_input_is_dropped_and_counted() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    a, b = rig.peers["a"], rig.peers["b"]
    rig.run(20, {"a": 440.0, "b": 1000.0})

    def garbage() -> list[bytes]:
        """Bad datagrams sent alongside a's regular stream (same SSRC, plausible seq)."""
        return [
            build_rtp(payload_type=0, sequence=a.seq, timestamp=a.ts, ssrc=a.ssrc,
                      payload=bytes(160))[:9],  # truncated header
            build_rtp(payload_type=18, sequence=a.seq, timestamp=a.ts, ssrc=a.ssrc,
                      payload=bytes(20)),  # G.729: not negotiated
            build_rtp(payload_type=101, sequence=a.seq, timestamp=a.ts, ssrc=a.ssrc,
                      payload=b"\x05\x0a"),  # a 2-byte telephone-event
        ]

    for _ in range(3):
        rig.tick({"a": [*garbage(), a.tone(440.0)], "b": b.tone(1000.0)})
    rig.deliver("a", a.tone(440.0), ("198.51.100.66", 40000))  # foreign source
    rig.run(1, {"b": 1000.0})
    # a 30 ms (240-byte) frame in the stream, in the place of one 20 ms frame
    big = a.rtp(a.codec.encode(tone(440.0, 8000.0, a.samples, 240)).tobytes())
    a.samples += FRAME
    rig.tick({"a": big, "b": b.tone(1000.0)})
    rig.run(40, {"a": 440.0, "b": 1000.0})

    counters = rig.engine.session("a").counters
    assert counters.dropped_malformed == 3
    assert counters.dropped_payload_type == 3
    assert counters.dropped_foreign_source == 1
    assert rig.engine.counters.bad_events == 3
    assert rig.engine.counters.bad_frames == 1
    assert rig.digits() == []
    # the clock kept ticking for everyone ...
    total = 20 + 3 + 1 + 1 + 40
    for name in "abc":
        assert rig.peers[name].got == [1] * total
    # ... c heard b all along, at full level, every single frame
    full = db(8000**2 / 2)
    for frame in rig.peers["c"].audio[3:]:
        assert db(power(frame, 1000.0)) > full - 3
    # c heard a except in the slots of the foreign and the 240-byte packets (no more than 4)
    missing = [i for i, f in enumerate(rig.peers["c"].audio[3:])
               if db(power(f, 440.0)) < full - 3]
    assert 1 <= len(missing) <= 4
    # and a is heard in full once its stream is clean again
    assert db(power(b.heard(WINDOW), 440.0)) == pytest.approx(full, abs=1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=8))
def test_wire_garbage_never_breaks_the_tick(datagrams: list[bytes]) -> None:
    rig = Rig()
    for name in "ab":
        rig.add(name, "r1")
    rig.run(3, {"b": 1000.0})
    for d in datagrams:
        rig.tick({"a": d, "b": rig.peers["b"].tone(1000.0)})
    rig.run(3, {"b": 1000.0})
    assert rig.peers["a"].got == [1] * (6 + len(datagrams))
    assert rig.peers["b"].got == [1] * (6 + len(datagrams))


# -- 7. prompts ------------------------------------------------------------------------------------


def _clip(freq: float, frames: int, amp: float = 6000.0) -> Pcm:
    return tone(freq, amp, 0, frames * FRAME)


def test_private_prompt_heard_only_by_its_leg() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    ticket = rig.engine.play("a", [_clip(600.0, 25), _clip(800.0, 25)])
    assert ticket == 2
    rig.run(25)
    assert db(power(rig.peers["a"].heard(25), 600.0)) == pytest.approx(db(6000**2 / 2), abs=1)
    rig.run(25)
    assert db(power(rig.peers["a"].heard(25), 800.0)) == pytest.approx(db(6000**2 / 2), abs=1)
    for other in "bc":
        assert np.abs(rig.peers[other].heard(50)).max() == 0
    rig.run(2)
    finished = [e for e in rig.events if isinstance(e, PromptFinished)]
    assert finished == [PromptFinished(target="a", count=1), PromptFinished(target="a", count=2)]
    assert rig.engine.prompt_count("a") == ticket
    assert np.abs(rig.peers["a"].heard(2)).max() == 0


def test_private_prompt_in_a_two_party_room_with_talk() -> None:
    rig = Rig()
    rig.add("a", "r1")
    rig.add("b", "r1")
    rig.engine.play("a", [_clip(600.0, 30)])
    rig.run(30, {"b": 1000.0})
    heard_a = rig.peers["a"].heard(WINDOW)
    assert db(power(heard_a, 600.0)) == pytest.approx(db(6000**2 / 2), abs=1)
    assert db(power(heard_a, 1000.0)) == pytest.approx(db(8000**2 / 2), abs=1)
    assert db(power(rig.peers["b"].heard(WINDOW), 600.0)) < db(6000**2 / 2) - 60


def test_room_prompt_heard_by_the_room_only() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    for name in "de":
        rig.add(name, "r2")
    ticket = rig.engine.play_room("r1", [_clip(600.0, 25)])
    assert ticket == 1
    rig.run(27)
    for name in "abc":
        heard = rig.peers[name].heard(27)[: 25 * FRAME]
        assert db(power(heard, 600.0)) == pytest.approx(db(6000**2 / 2), abs=1)
    for name in "de":
        assert np.abs(rig.peers[name].heard(27)).max() == 0
    finished = [e for e in rig.events if isinstance(e, PromptFinished)]
    assert finished == [PromptFinished(target="room:r1", count=1)]
    assert rig.engine.prompt_count("room:r1") == 1


def test_stop_prompts_stops_at_once() -> None:
    rig = Rig()
    rig.add("a", "r1")
    rig.add("b", "r1")
    ticket = rig.engine.play("a", [_clip(600.0, 50), _clip(700.0, 50)])
    rig.run(10)
    assert np.abs(rig.peers["a"].audio[-1]).max() > 0
    rig.engine.stop_prompts("a")
    rig.run(5)
    assert all(np.abs(f).max() == 0 for f in rig.peers["a"].audio[-5:])
    finished = [e for e in rig.events if isinstance(e, PromptFinished)]
    assert finished == [PromptFinished(target="a", count=ticket)]
    # a new prompt after the stop gets the next ticket
    assert rig.engine.play("a", [_clip(600.0, 2)]) == ticket + 1


def test_looping_room_prompt_and_a_talker() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    rig.engine.play_room("r1", [_clip(600.0, 3)], loop=True)
    rig.run(50, {"a": 1000.0})
    heard_a = rig.peers["a"].heard(WINDOW)
    heard_b = rig.peers["b"].heard(WINDOW)
    assert db(power(heard_a, 600.0)) == pytest.approx(db(6000**2 / 2), abs=1)
    assert db(power(heard_a, 1000.0)) < db(8000**2 / 2) - 40  # still not itself
    assert db(power(heard_b, 1000.0)) == pytest.approx(db(8000**2 / 2), abs=1)


# -- 8. mute and deaf ------------------------------------------------------------------------------


def test_muted_leg_is_not_heard_and_deaf_leg_hears_silence() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    rig.engine.set_muted("a", True)
    rig.engine.set_deaf("c", True)
    rig.run(40, TONES)
    b_heard = rig.peers["b"].heard(WINDOW)
    assert db(power(b_heard, 440.0)) < db(8000**2 / 2) - 60
    assert db(power(b_heard, 1700.0)) == pytest.approx(db(8000**2 / 2), abs=1)
    assert rig.peers["c"].got == [1] * 40
    assert np.abs(rig.peers["c"].heard(40)).max() == 0
    # a (muted) still hears the others
    a_heard = rig.peers["a"].heard(WINDOW)
    assert db(power(a_heard, 1000.0)) == pytest.approx(db(8000**2 / 2), abs=1)
    # unmute: heard again
    rig.engine.set_muted("a", False)
    rig.engine.set_deaf("c", False)
    rig.run(30, TONES)
    assert db(power(rig.peers["b"].heard(WINDOW), 440.0)) == pytest.approx(
        db(8000**2 / 2), abs=1)
    assert db(power(rig.peers["c"].heard(WINDOW), 440.0)) == pytest.approx(
        db(8000**2 / 2), abs=1)


def test_mute_and_deaf_in_a_two_party_room() -> None:
    rig = Rig()
    rig.add("a", "r1")
    rig.add("b", "r1")
    rig.engine.set_muted("a", True)
    rig.run(40, {"a": 440.0, "b": 1000.0})
    assert np.abs(rig.peers["b"].heard(WINDOW)).max() == 0
    assert db(power(rig.peers["a"].heard(WINDOW), 1000.0)) == pytest.approx(
        db(8000**2 / 2), abs=1)
    rig.engine.set_muted("a", False)
    rig.engine.set_deaf("b", True)
    rig.run(40, {"a": 440.0, "b": 1000.0})
    assert np.abs(rig.peers["b"].heard(WINDOW)).max() == 0
    assert rig.peers["b"].got == [1] * 80


def test_gain_scales_what_the_others_hear() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    rig.engine.set_gain("a", 0.5)
    rig.run(40, {"a": 440.0})
    assert db(power(rig.peers["b"].heard(WINDOW), 440.0)) == pytest.approx(
        db(4000**2 / 2), abs=1)


def test_talking_events() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    rig.run(20, {"a": 440.0})
    rig.run(60)
    talking = [e for e in rig.events if isinstance(e, TalkingChanged)]
    assert [(e.leg, e.talking) for e in talking] == [("a", True), ("a", False)]
    assert talking[0].level_dbov > -20


# -- 9. RTCP ---------------------------------------------------------------------------------------


def test_rtcp_sender_reports_about_every_five_seconds_and_bye_on_remove() -> None:
    rig = Rig()
    for name in "ab":
        rig.add(name, "r1")
    rig.run(1500, {"a": 440.0})  # 30 s
    a = rig.peers["a"]
    count = 0
    for data in a.rtcp:
        packets = parse_rtcp(data)
        assert isinstance(packets[0], SenderReport)
        assert isinstance(packets[1], SourceDescription)
        sr = packets[0]
        assert sr.packet_count >= count
        count = sr.packet_count
    assert 4 <= len(a.rtcp) <= 12  # RFC 3550 §6.3: 5 s * [0.5, 1.5] / 1.218 -> 2-6 s apart
    sr_a = parse_rtcp(a.rtcp[-1])[0]
    assert isinstance(sr_a, SenderReport)
    assert len(sr_a.reports) == 1  # a report block on what the engine receives from a
    assert sr_a.reports[0].ssrc == a.ssrc
    sr_b = parse_rtcp(rig.peers["b"].rtcp[-1])[0]
    assert isinstance(sr_b, SenderReport)
    assert sr_b.reports == ()  # b never sent anything
    out = rig.engine.remove_leg("a", rig.now, WALL0 + rig.now)
    assert len(out) == 1
    handle, data, addr = out[0]
    assert handle == ("rtcp", "a")
    assert addr == (a.addr[0], a.addr[1] + 1)
    packets = parse_rtcp(data)
    byes = [p for p in packets if isinstance(p, Bye)]
    assert len(byes) == 1
    assert "a" not in rig.engine
    # b stays, alone now: still one packet per tick
    del rig.peers["a"]
    rig.run(5)
    assert rig.peers["b"].got[-5:] == [1] * 5


def test_rtcp_interval_bounds() -> None:
    rig = Rig()
    for name in "ab":
        rig.add(name, "r1")
    sent_at: list[float] = []
    for _ in range(2000):
        before = len(rig.peers["a"].rtcp)
        rig.run(1, {"a": 440.0, "b": 1000.0})
        if len(rig.peers["a"].rtcp) > before:
            sent_at.append(rig.now - TICK)
    gaps = np.diff(sent_at)
    low, high = 0.5 * 5 / (math.e - 1.5), 1.5 * 5 / (math.e - 1.5)
    assert sent_at[0] <= high / 2 + TICK
    assert all(low - TICK <= g <= high + TICK for g in gaps)
    assert 3.0 <= float(np.mean(gaps)) <= 5.5


def test_remove_leg_that_never_sent_gives_no_bye() -> None:
    rig = Rig()
    rig.add("a", "r1", remote=False)
    assert rig.engine.remove_leg("a", rig.now, WALL0) == []
    assert rig.engine.remove_leg("nobody", rig.now, WALL0) == []


# -- 10. rooms in parallel ------------------------------------------------------------------------


def test_rooms_never_hear_each_other() -> None:
    rig = Rig()
    # G.711 error of a periodic signal lands on multiples of the gcd of its tones: r1's tones
    # are multiples of 20 Hz, which no other tone is; the others are prime, so their error is
    # spread thinly over every 1 Hz bin of the 1 s window
    rooms = {"r1": {"a": 440.0, "b": 1000.0, "c": 1700.0},
             "r2": {"d": 613.0, "e": 1319.0, "f": 2111.0},
             "r3": {"g": 829.0, "h": 1531.0},  # relayed pair
             "r4": {"i": 293.0, "j": 2477.0}}  # two codecs: mixed, not relayed
    for room, legs in rooms.items():
        for leg in legs:
            rig.add(leg, room, codec=Codec.PCMA if leg in "ei" else Codec.PCMU)
    talk = {leg: f for legs in rooms.values() for leg, f in legs.items()}
    rig.run(75, talk)
    for legs in rooms.values():
        for leg in legs:
            heard = rig.peers[leg].heard(50)
            for other, f in talk.items():
                p = db(power(heard, f))
                if other in legs and other != leg:
                    assert p == pytest.approx(db(8000**2 / 2), abs=1)
                else:
                    assert p < db(8000**2 / 2) - 40, (leg, other)


def test_leg_ids_and_room_membership() -> None:
    rig = Rig()
    rig.add("a", "r1")
    with pytest.raises(ValueError, match="exists"):
        rig.engine.add_leg("a", "r1", LegMedia(codec=Codec.PCMU, payload_type=0,
                                               telephone_event_pt=None, remote=None),
                           ssrc=1, now=0.0)
    rig.add("b", "r1")
    assert rig.engine.room_legs("r1") == {"a", "b"}
    assert rig.engine.leg_count == 2
    rig.engine.remove_leg("a", 0.0, WALL0)
    rig.engine.remove_leg("b", 0.0, WALL0)
    assert rig.engine.room_legs("r1") == set()
    assert rig.engine.leg_count == 0


# -- renegotiation and policies -------------------------------------------------------------------


def test_update_leg_codec_change_keeps_mute_deaf_and_gain() -> None:
    rig = Rig()
    for name in "abc":
        rig.add(name, "r1")
    rig.engine.set_muted("a", True)
    rig.engine.set_deaf("b", True)
    rig.engine.set_gain("c", 0.5)
    for name in "abc":
        peer = rig.peers[name]
        peer.codec = Codec.PCMA
        rig.engine.update_leg(name, LegMedia(codec=Codec.PCMA, payload_type=8,
                                             telephone_event_pt=101, remote=peer.addr))
    rig.run(40, TONES)
    full = db(8000**2 / 2)
    b = rig.peers["b"]
    assert all(p.payload == Codec.PCMA.silence(FRAME) for p in b.packets[-WINDOW:])  # deaf
    heard_c = rig.peers["c"].heard(WINDOW)
    assert db(power(heard_c, 440.0)) < full - 60  # a still muted
    assert db(power(heard_c, 1000.0)) == pytest.approx(full, abs=1)
    heard_a = rig.peers["a"].heard(WINDOW)
    assert db(power(heard_a, 1700.0)) == pytest.approx(db(4000**2 / 2), abs=1)  # gain kept


def test_update_leg_hold_and_new_address() -> None:
    rig = Rig()
    a = rig.add("a", "r1")
    rig.add("b", "r1")
    rig.run(5, {"a": 440.0})
    rig.engine.update_leg("a", LegMedia(codec=Codec.PCMU, payload_type=0,
                                        telephone_event_pt=101, remote=a.addr, sends=False))
    rig.run(5, {"a": 440.0})
    assert a.got[-5:] == [0] * 5  # on hold: nothing sent to it
    a.addr = ("203.0.113.9", 30000)
    rig.engine.update_leg("a", LegMedia(codec=Codec.PCMU, payload_type=0,
                                        telephone_event_pt=101, remote=a.addr))
    rig.run(5, {"a": 440.0})
    assert a.got[-5:] == [1] * 5  # to the new address (checked by the rig)
    assert db(power(rig.peers["b"].heard(5), 440.0)) == pytest.approx(db(8000**2 / 2), abs=1)


def test_rfc4733_with_the_tone_in_band_counts_once() -> None:
    rig = Rig()
    a = rig.add("a", "r1", te_pt=101)
    rig.add("b", "r1")
    rig.add("c", "r1")
    rig.run(10, {"a": 440.0})
    amp = dbm0_to_amplitude(-10.0)
    ts = a.ts
    for i in range(5):
        ev = a.event("5", ts=ts, duration=(i + 1) * FRAME, end=False, marker=i == 0)
        rig.tick({"a": [ev, a.pcm(dual(770.0, 1336.0, amp, i * FRAME))]})
    ends = [a.event("5", ts=ts, duration=5 * FRAME, end=True, marker=False) for _ in range(3)]
    rig.tick({"a": [*ends, a.pcm(np.zeros(FRAME, dtype=np.int16))]})
    rig.run(40, {"a": 440.0})
    assert rig.digits() == [LegDigitReceived(leg="a", digit="5", source="rfc4733")]


def test_inband_policy_auto_and_off() -> None:
    amp = dbm0_to_amplitude(-10.0)
    for policy, te_pt, want in (("auto", None, ["1"]), ("auto", 101, []), ("off", None, [])):
        rig = Rig(EngineConfig(inband_dtmf=policy))  # type: ignore[arg-type]
        a = rig.add("a", "r1", te_pt=te_pt)
        rig.add("b", "r1")
        rig.run(5)
        for i in range(5):
            rig.tick({"a": a.pcm(dual(697.0, 1209.0, amp, i * FRAME))})
        rig.run(20)
        assert [d.digit for d in rig.digits()] == want, policy


def test_legs_added_beyond_the_mixer_capacity() -> None:
    from bridge.media.mixer import MixerConfig

    rig = Rig(EngineConfig(mixer=MixerConfig(initial_capacity=2)))
    names = "abcdef"
    for name in names[:2]:
        rig.add(name, "r1", te_pt=None)
    rig.run(3)
    for name in names[2:]:
        rig.add(name, "r1", te_pt=None)  # the mixer (and the DTMF bank) grow
    freqs = {"a": 440.0, "b": 1000.0}
    rig.run(40, freqs)
    for name in names[2:]:
        heard = rig.peers[name].heard(WINDOW)
        for f in freqs.values():
            assert db(power(heard, f)) == pytest.approx(db(8000**2 / 2), abs=1)
    a = rig.peers["a"]
    amp = dbm0_to_amplitude(-10.0)
    for i in range(5):
        rig.tick({"a": a.pcm(dual(852.0, 1336.0, amp, i * FRAME))})
    rig.run(20)
    assert rig.digits() == [LegDigitReceived(leg="a", digit="8", source="inband")]


def test_a_held_leg_does_not_put_an_rtcp_pass_into_every_tick() -> None:
    """RTCP due on a leg that is not sending (hold) is looked at again a second later."""
    engine = MediaEngine()
    held = LegMedia(codec=Codec.PCMU, payload_type=0, telephone_event_pt=None, remote=None,
                    sends=False)
    engine.add_leg("held", "r", held, ssrc=1, now=0.0)
    due = engine._rtcp_next
    assert due < 10.0
    now = 0.0
    while now < due:
        now += 0.02
        engine.tick(now, 1.7e9 + now)
    # The report came due while the leg is not sending: no per-tick re-check.
    assert engine._rtcp_next >= now + 0.9


# -- moving a leg to another engine (another process) ---------------------------------------------


def test_exported_leg_continues_its_stream_in_another_engine() -> None:
    rig = Rig()
    a, b = rig.add("a", "r"), rig.add("b", "r")
    rig.engine.set_muted("a", True)
    rig.run(10, talk={"a": 440.0, "b": 1000.0})
    state = rig.engine.export_leg("a")
    assert "a" not in rig.engine and rig.engine.room_legs("r") == {"b"}
    assert state.room == "r" and state.muted and state.remote == a.addr
    assert state.packets_sent == 10

    other = MediaEngine()
    other.import_leg(state, now=rig.now, rtp_handle="rtp-a", rtcp_handle="rtcp-a")
    out = other.tick(rig.now, WALL0 + rig.now)
    assert [(handle, addr) for handle, _, addr in out] == [("rtp-a", a.addr)]
    moved = parse_rtp(out[0][1])
    last = a.packets[-1]
    assert moved.ssrc == last.ssrc
    assert moved.sequence == (last.sequence + 1) & 0xFFFF
    assert moved.timestamp == (last.timestamp + FRAME) & 0xFFFFFFFF
    assert other.session("a").counters.packets_sent == 11
    # Its mute came along: a talks in the new engine, c (unmuted, same room) hears silence.
    c_addr = ("192.0.2.99", 30000)
    other.import_leg(dataclasses.replace(state, leg_id="c", muted=False, ssrc=7,
                                         remote=c_addr), now=rig.now)
    heard = []
    for k in range(1, 30):
        now = rig.now + k * TICK
        other.receive_rtp("a", a.tone(440.0), a.addr, now)
        for _handle, data, addr in other.tick(now, WALL0 + now):
            if addr == c_addr:
                heard.append(Codec.PCMU.decode(parse_rtp(data).payload))
    assert len(heard) == 29 and rms(np.concatenate(heard)) < 10
    assert b.packets  # b stayed behind


@pytest.mark.parametrize("proven", [True, False])
def test_a_leg_that_sent_rfc4733_keeps_inband_detection_off_after_a_move(proven: bool) -> None:
    rig = Rig()
    a = rig.add("a", "r")
    rig.add("b", "r")
    if proven:
        _send_event(rig, "a", "5")
    rig.run(10)
    state = rig.engine.export_leg("a")
    assert state.rfc4733_seen is proven
    other = MediaEngine()
    other.import_leg(state, now=rig.now)
    amp = dbm0_to_amplitude(-10.0)
    low, high = DTMF_FREQS["1"]
    digits: list[object] = []
    for k in range(1, 31):  # a new source in the new engine (probation), then 100 ms of "1"
        now = rig.now + k * TICK
        pcm = dual(low, high, amp, k * FRAME) if 10 <= k < 15 else np.zeros(FRAME, np.int16)
        other.receive_rtp("a", a.pcm(pcm), a.addr, now)
        other.tick(now, WALL0 + now)
        digits += [e for e in other.events() if isinstance(e, LegDigitReceived)]
    expected = [] if proven else [LegDigitReceived(leg="a", digit="1", source="inband")]
    assert digits == expected
