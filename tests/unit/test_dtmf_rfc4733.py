"""RFC 4733 telephone-event receiver and sender (bridge.rtp.dtmf)."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.rtp.dtmf import (
    RECEIVER_TRANSITIONS,
    DigitReceived,
    DigitStarted,
    DtmfError,
    DtmfEvent,
    Rfc4733Input,
    Rfc4733Receiver,
    Rfc4733ReceiverConfig,
    Rfc4733Sender,
    Rfc4733SenderConfig,
    Rfc4733State,
    build_event,
    digit_to_event,
    parse_event,
)
from bridge.rtp.packet import RtpPacket, build_rtp, parse_rtp

DATA = Path(__file__).resolve().parents[1] / "data" / "dtmf"
PCAPS = {
    **{f"dtmf_2833_{d}.pcap": d for d in "0123456789"},
    "dtmf_2833_pound.pcap": "#",
    "dtmf_2833_star.pcap": "*",
}


def _pcap_rtp(path: Path) -> list[tuple[float, RtpPacket]]:
    out: list[tuple[float, RtpPacket]] = []
    with path.open("rb") as fh:
        for ts, frame in dpkt.pcap.Reader(fh):
            udp = dpkt.ethernet.Ethernet(frame).data.data
            out.append((float(ts), parse_rtp(bytes(udp.data))))
    return out


def _digits(events: list[DtmfEvent]) -> str:
    return "".join(e.digit for e in events if isinstance(e, DigitReceived))


def _pkt(code: int, *, end: bool = False, duration: int = 0, volume: int = 10) -> bytes:
    return build_event(event=code, end=end, volume=volume, duration=duration)


class _Feeder:
    """Drives a receiver like the engine does: packets, then timers, fake clock."""

    def __init__(self, config: Rfc4733ReceiverConfig | None = None) -> None:
        self.rx = Rfc4733Receiver(config)
        self.events: list[DtmfEvent] = []
        self.seq = 1000

    def send(
        self, code: int, ts: int, now: float, *, marker: bool = False, end: bool = False,
        duration: int = 0, seq: int | None = None,
    ) -> None:
        timer = self.rx.next_timer()
        if timer is not None and timer <= now:
            self.events += self.rx.handle_timer(timer)
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.events += self.rx.receive(
            marker=marker, timestamp=ts, sequence=seq,
            payload=_pkt(code, end=end, duration=duration), now=now,
        )

    def press(self, code: int, ts: int, now: float, packets: int = 5) -> float:
        """A normal press: marker, updates every 20 ms, three end packets."""
        for i in range(packets):
            self.send(code, ts, now + 0.02 * i, marker=i == 0, duration=160 * (i + 1))
        for _ in range(3):
            self.send(code, ts, now + 0.02 * packets, end=True, duration=160 * packets)
        return now + 0.02 * packets

    @property
    def digits(self) -> str:
        return _digits(self.events)


# -- payload -----------------------------------------------------------------------------------


def test_parse_event_fields() -> None:
    ev = parse_event(bytes.fromhex("0b8a08c0"))
    assert (ev.event, ev.end, ev.volume, ev.duration, ev.digit) == (11, True, 10, 2240, "#")
    ev = parse_event(bytes.fromhex("10 3f ff ff"))
    assert (ev.event, ev.end, ev.volume, ev.duration, ev.digit) == (16, False, 63, 65535, None)


@pytest.mark.parametrize("short", [b"", b"\x01", b"\x01\x8a", b"\x01\x8a\x00"])
def test_parse_event_too_short(short: bytes) -> None:
    with pytest.raises(DtmfError):
        parse_event(short)


def test_build_event_matches_rfc_layout() -> None:
    # RFC 4733 §2.3: event | E R volume(6) | duration(16)
    assert build_event(event=5, end=True, volume=10, duration=800) == b"\x05\x8a\x03\x20"
    assert build_event(event=10, end=False, volume=0, duration=0) == b"\x0a\x00\x00\x00"
    with pytest.raises(DtmfError):
        build_event(event=1, end=False, volume=64, duration=0)
    with pytest.raises(DtmfError):
        build_event(event=1, end=False, volume=1, duration=0x10000)


def test_digit_codes() -> None:
    assert [digit_to_event(d) for d in "0123456789*#ABCDa"] == [*range(16), 12]
    for bad in ("E", "", "12", " "):
        with pytest.raises(DtmfError):
            digit_to_event(bad)


@given(st.binary(max_size=12))
def test_parse_event_any_bytes(data: bytes) -> None:
    if len(data) < 4:
        with pytest.raises(DtmfError):
            parse_event(data)
    else:
        ev = parse_event(data)
        assert ev.event == data[0] and ev.end == bool(data[1] & 0x80)
        assert ev.duration == int.from_bytes(data[2:4], "big")


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF),
                  st.binary(max_size=8)),
        max_size=40,
    )
)
def test_receiver_any_wire_packets(packets: list[tuple[bool, int, int, bytes]]) -> None:
    """Bytes from the wire either feed the machine or raise DtmfError, nothing else."""
    rx = Rfc4733Receiver()
    now = 0.0
    for marker, ts, seq, payload in packets:
        now += 0.02
        try:
            events = rx.receive(marker=marker, timestamp=ts, sequence=seq, payload=payload,
                                now=now)
        except DtmfError:
            assert len(payload) < 4
            continue
        for e in events:
            assert e.digit in "0123456789*#ABCD"
    events = rx.handle_timer(now + 10.0)
    assert not rx.event_active
    assert all(isinstance(e, DigitReceived) for e in events)


# -- real captures -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "digit"), sorted(PCAPS.items()))
def test_sipp_capture_yields_its_digit_once(name: str, digit: str) -> None:
    packets = _pcap_rtp(DATA / name)
    assert {p.payload_type for _, p in packets} == {101}  # SIPp sends PT 101
    assert sum(p.payload[1] & 0x80 != 0 for _, p in packets) == 3  # three end packets
    rx = Rfc4733Receiver()
    t0 = packets[0][0]
    events: list[DtmfEvent] = []
    for ts, p in packets:
        events += rx.receive(
            marker=p.marker, timestamp=p.timestamp, sequence=p.sequence, payload=p.payload,
            now=ts - t0,
        )
    assert [type(e) for e in events] == [DigitStarted, DigitReceived]
    done = events[1]
    assert isinstance(done, DigitReceived)
    assert (done.digit, done.source, done.start) == (digit, "rfc4733", 0.0)
    assert done.duration_ms == 2240 // 8  # final duration field 0x08c0 at 8 kHz
    assert not rx.event_active and rx.next_timer() is None
    assert rx.handle_timer(100.0) == []


def test_capture_with_first_packet_lost_still_yields_digit() -> None:
    packets = _pcap_rtp(DATA / "dtmf_2833_7.pcap")[1:]
    rx = Rfc4733Receiver()
    events: list[DtmfEvent] = []
    t0 = packets[0][0]
    for ts, p in packets:
        events += rx.receive(marker=p.marker, timestamp=p.timestamp, sequence=p.sequence,
                             payload=p.payload, now=ts - t0)
    assert _digits(events) == "7"
    started = events[0]
    assert isinstance(started, DigitStarted)
    # Second packet says 320 ticks (40 ms) had elapsed: the start is estimated before it.
    assert started.start == pytest.approx(-0.04)


def test_all_captures_in_one_stream_in_order() -> None:
    """The captures of 0 and 2..# share one RTP timestamp line (one call): fed in time
    order to one receiver they give 11 digits. Capture 1 is another stream (timestamps
    from 13280 at the same instant as 0), so it is left out."""
    merged = sorted(
        ((ts, p) for name in PCAPS if name != "dtmf_2833_1.pcap" for ts, p in
         _pcap_rtp(DATA / name)),
        key=lambda item: item[0],
    )
    rx = Rfc4733Receiver()
    events: list[DtmfEvent] = []
    for ts, p in merged:
        events += rx.receive(marker=p.marker, timestamp=p.timestamp, sequence=p.sequence,
                             payload=p.payload, now=ts)
    events += rx.handle_timer(merged[-1][0] + 5)
    assert _digits(events) == "023456789*#"


# -- synthetic streams -------------------------------------------------------------------------


def test_end_packets_repeated_count_once() -> None:
    f = _Feeder()
    f.press(5, ts=8000, now=1.0)
    assert f.digits == "5"
    assert [type(e) for e in f.events] == [DigitStarted, DigitReceived]
    done = f.events[-1]
    assert isinstance(done, DigitReceived) and done.duration_ms == 100
    assert f.rx.state is Rfc4733State.ENDED


def test_event_active_only_during_press() -> None:
    f = _Feeder()
    assert not f.rx.event_active
    f.send(3, 100, 0.0, marker=True, duration=160)
    assert f.rx.event_active
    assert f.rx.next_timer() == pytest.approx(0.5)
    f.send(3, 100, 0.02, end=True, duration=320)
    assert not f.rx.event_active and f.rx.next_timer() is None


def test_long_press_is_one_digit() -> None:
    f = _Feeder()
    for i in range(150):  # 3 s of updates every 20 ms
        f.send(9, 4000, 0.02 * i, marker=i == 0, duration=160 * (i + 1))
    for _ in range(3):
        f.send(9, 4000, 3.0, end=True, duration=160 * 150)
    assert f.digits == "9"
    done = f.events[-1]
    assert isinstance(done, DigitReceived) and done.duration_ms == 3000


def test_very_long_press_segments_are_one_digit() -> None:
    """RFC 4733 §2.5.1.3: past 0xFFFF ticks the event continues with a new timestamp."""
    f = _Feeder()
    ts = 1000
    dur = 0
    now = 0.0
    for i in range(420):  # 8.4 s: beyond 65535 ticks (8.19 s)
        dur = 160 * (i + 1)
        if dur > 0xFFFF:
            break
        f.send(4, ts, now, marker=i == 0, duration=dur)
        now += 0.02
    f.send(4, ts, now, duration=0xFFFF)  # segment 1 ends at the maximum duration
    ts2 = ts + 0xFFFF
    for j in range(10):
        now += 0.02
        f.send(4, ts2, now, duration=160 * (j + 1))
    for _ in range(3):
        f.send(4, ts2, now, end=True, duration=1600)
    assert f.digits == "4"
    done = f.events[-1]
    assert isinstance(done, DigitReceived)
    assert done.duration_ms == (0xFFFF + 1600) // 8


def test_lost_first_packet_still_yields_digit() -> None:
    f = _Feeder()
    f.send(2, 500, 1.04, duration=480)  # packets 1 and 2 (marker) lost
    f.send(2, 500, 1.06, duration=640)
    for _ in range(3):
        f.send(2, 500, 1.08, end=True, duration=800)
    assert f.digits == "2"
    started = f.events[0]
    assert isinstance(started, DigitStarted) and started.digit == "2"
    assert started.start == pytest.approx(1.04 - 480 / 8000)


def test_only_end_packets_arrive() -> None:
    f = _Feeder()
    for _ in range(3):
        f.send(8, 900, 2.0, end=True, duration=800)
    assert f.digits == "8"
    assert [type(e) for e in f.events] == [DigitReceived]
    assert f.rx.event_active is False


def test_lost_end_packets_reported_after_timeout() -> None:
    cfg = Rfc4733ReceiverConfig(end_timeout=0.3)
    f = _Feeder(cfg)
    for i in range(5):
        f.send(1, 160, 0.02 * i, marker=i == 0, duration=160 * (i + 1))
    assert f.digits == ""
    assert f.rx.next_timer() == pytest.approx(0.08 + 0.3)
    assert f.rx.handle_timer(0.35) == []  # not yet
    events = f.rx.handle_timer(0.38)
    assert _digits(events) == "1"
    assert isinstance(events[0], DigitReceived) and events[0].duration_ms == 100
    assert not f.rx.event_active
    # A late end packet of that event is a retransmission, not a new digit.
    f.events = []
    f.send(1, 160, 0.5, end=True, duration=800)
    assert f.events == []


def test_lost_end_then_next_event_reports_both() -> None:
    f = _Feeder()
    for i in range(3):
        f.send(6, 1000, 0.02 * i, marker=i == 0, duration=160 * (i + 1))
    f.press(6, ts=3000, now=0.2)  # same digit again: new timestamp, marker
    assert f.digits == "66"
    first = f.events[1]
    assert isinstance(first, DigitReceived) and first.duration_ms == 60


def test_two_same_digits_in_a_row() -> None:
    f = _Feeder()
    now = f.press(0, ts=10_000, now=0.0)
    f.press(0, ts=10_000 + 1600, now=now + 0.1)
    assert f.digits == "00"


def test_new_timestamp_without_marker_is_new_event() -> None:
    f = _Feeder()
    f.press(1, ts=100, now=0.0)
    # Second press: its marker packet was lost; the timestamp alone starts the event.
    f.send(1, 2000, 0.5, duration=320)
    for _ in range(3):
        f.send(1, 2000, 0.54, end=True, duration=640)
    assert f.digits == "11"


def test_retransmitted_marker_packet_is_not_a_new_event() -> None:
    f = _Feeder()
    f.send(5, 100, 0.0, marker=True, duration=160, seq=10)
    f.send(5, 100, 0.0, marker=True, duration=160, seq=10)  # duplicate
    f.send(5, 100, 0.02, duration=320, seq=11)
    for _ in range(3):
        f.send(5, 100, 0.04, end=True, duration=480, seq=12)
    f.send(5, 100, 0.05, marker=True, duration=160, seq=10)  # late duplicate after end
    assert f.digits == "5"


def test_marker_with_reused_timestamp_and_newer_sequence_is_new_event() -> None:
    f = _Feeder()
    f.press(5, ts=100, now=0.0)
    f.press(5, ts=100, now=0.5)  # broken sender reusing the timestamp; sequence moves on
    assert f.digits == "55"


def test_reordered_packet_of_older_event_ignored() -> None:
    f = _Feeder()
    f.send(1, 1000, 0.0, marker=True, duration=160)
    f.send(1, 1000, 0.02, end=True, duration=320)
    f.send(2, 2000, 0.2, marker=True, duration=160)
    f.send(1, 1000, 0.21, end=True, duration=320)  # late copy of the first event
    f.send(2, 2000, 0.22, end=True, duration=320)
    assert f.digits == "12"


def test_timestamp_wraparound() -> None:
    f = _Feeder()
    f.press(3, ts=2**32 - 400, now=0.0)
    f.press(4, ts=1200, now=0.3)  # wrapped: still later in serial arithmetic
    assert f.digits == "34"


def test_flash_and_non_dtmf_events_ignored() -> None:
    f = _Feeder()
    f.send(16, 100, 0.0, marker=True, duration=160)
    f.send(16, 100, 0.02, end=True, duration=320)
    f.send(40, 300, 0.1, marker=True, duration=160)  # a tone event, not a digit
    assert f.events == [] and not f.rx.event_active
    f.press(12, ts=500, now=0.2)  # A-D are events 12-15
    f.press(15, ts=900, now=0.5)
    assert f.digits == "AD"


def test_all_sixteen_codes() -> None:
    f = _Feeder()
    now = 0.0
    for code in range(16):
        now = f.press(code, ts=1000 + 2000 * code, now=now + 0.1)
    assert f.digits == "0123456789*#ABCD"


def test_transition_table_is_total_for_reachable_inputs() -> None:
    reachable = {
        Rfc4733State.IDLE: {Rfc4733Input.NEW_EVENT, Rfc4733Input.NEW_EVENT_ENDED},
        Rfc4733State.ACTIVE: set(Rfc4733Input),
        Rfc4733State.ENDED: set(Rfc4733Input) - {Rfc4733Input.TIMEOUT},
    }
    for state, inputs in reachable.items():
        for inp in inputs:
            assert (state, inp) in RECEIVER_TRANSITIONS
    assert RECEIVER_TRANSITIONS[(Rfc4733State.ENDED, Rfc4733Input.END)][0] is Rfc4733State.ENDED


# -- sender ------------------------------------------------------------------------------------


def _drain(tx: Rfc4733Sender, ticks: int) -> list[tuple[bytes, bool, int] | None]:
    return [tx.next_packet() for _ in range(ticks)]


def test_sender_packet_sequence_rfc4733_2_5() -> None:
    tx = Rfc4733Sender(Rfc4733SenderConfig(tone_ms=100, gap_ms=60, volume=10))
    tx.start("5", 0.0, 48_000)
    out = _drain(tx, 9)
    sent = [p for p in out if p is not None]
    assert out[7:] == [None, None]
    assert len(sent) == 7  # 5 packets of tone (the 5th already E) + 2 repeats of the end
    assert [m for _, m, _ in sent] == [True] + [False] * 6  # §2.5.1.1 marker on the first
    assert {ts for _, _, ts in sent} == {48_000}  # §2.5.1.2 event timestamp throughout
    evs = [parse_event(p) for p, _, _ in sent]
    assert [e.duration for e in evs] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in evs] == [False] * 4 + [True] * 3  # §2.5.1.4 end sent 3 times
    assert {(e.event, e.volume) for e in evs} == {(5, 10)}
    assert sent[4][0] == sent[5][0] == sent[6][0] == bytes.fromhex("058a0320")


def test_sender_queue_gap_and_timestamps() -> None:
    tx = Rfc4733Sender(Rfc4733SenderConfig(tone_ms=60, gap_ms=40))
    tx.start("1", 0.0, 1000)
    tx.start("#", 0.0, 999_999)  # ignored timestamp: the sender is busy
    assert tx.busy
    out = _drain(tx, 20)
    # digit 1: ticks 0-4 (3 tone packets, 2 more end), gap ticks 5-6, '#' from tick 7
    assert [p is None for p in out[:12]] == [False] * 5 + [True] * 2 + [False] * 5
    first, second = out[0], out[7]
    assert first is not None and second is not None
    assert first[1:] == (True, 1000)
    assert second[1:] == (True, 1000 + 7 * 160)
    assert parse_event(second[0]).event == 11
    assert not tx.busy and out[12:] == [None] * 8


def test_sender_rejects_bad_digit() -> None:
    tx = Rfc4733Sender()
    with pytest.raises(DtmfError):
        tx.start("x", 0.0, 0)
    assert not tx.busy and tx.next_packet() is None


def test_sender_to_receiver_over_rtp_each_digit_once() -> None:
    """Round trip through real RTP packets (PT 101); end repeats count once."""
    tx = Rfc4733Sender(Rfc4733SenderConfig(tone_ms=80, gap_ms=40))
    rx = Rfc4733Receiver()
    for d in "1*#90A":
        tx.start(d, 0.0, 160_000)
    seq = 7
    events: list[DtmfEvent] = []
    active_ticks = 0
    for tick in range(200):
        now = tick * 0.02
        pkt = tx.next_packet()
        if pkt is None:
            continue
        payload, marker, ts = pkt
        wire = build_rtp(payload_type=101, sequence=seq, timestamp=ts, ssrc=0x1234,
                         payload=payload, marker=marker)
        seq += 1
        p = parse_rtp(wire)
        events += rx.receive(marker=p.marker, timestamp=p.timestamp, sequence=p.sequence,
                             payload=p.payload, now=now)
        active_ticks += rx.event_active
    assert _digits(events) == "1*#90A"
    assert all(e.duration_ms == 80 for e in events if isinstance(e, DigitReceived))
    assert active_ticks == 6 * 3  # 4 tone packets, 3 of them before the first end


def test_sender_wraps_timestamp() -> None:
    tx = Rfc4733Sender(Rfc4733SenderConfig(tone_ms=20, gap_ms=0))
    tx.start("2", 0.0, 2**32 - 160)
    tx.start("3", 0.0, 0)
    out = [p for p in _drain(tx, 8) if p is not None]
    assert out[0][2] == 2**32 - 160
    assert out[3][1] is True and out[3][2] == (2**32 - 160 + 3 * 160) % 2**32
    assert struct.unpack("!BBH", out[3][0]) == (3, 0x8A, 160)
