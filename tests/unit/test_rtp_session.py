"""Per-leg RTP session: receive filtering, latching, SSRC changes, sending, RTCP."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.rtp.jitter import FrameKind, JitterConfig
from bridge.rtp.packet import build_rtp, parse_rtp
from bridge.rtp.rtcp import (
    Bye,
    ReceiverReport,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_from_unix,
    parse_rtcp,
)
from bridge.rtp.session import PayloadFormat, RtpSession, SessionConfig

DATA = Path(__file__).resolve().parents[1] / "data" / "rtp"
PEER = ("192.0.2.10", 40000)
OTHER = ("198.51.100.7", 40000)
PCMU = PayloadFormat(audio_pt=0, event_pt=101)


def session(
    *,
    ssrc: int = 0x1234,
    payload: PayloadFormat = PCMU,
    remote: tuple[str, int] | None = PEER,
    config: SessionConfig | None = None,
    initial_sequence: int = 0,
    initial_timestamp: int = 0,
    rtcp_seed: int | None = None,
) -> RtpSession:
    return RtpSession(
        ssrc=ssrc, payload=payload, remote=remote, now=0.0, cname="leg1@bridge", config=config,
        initial_sequence=initial_sequence, initial_timestamp=initial_timestamp,
        rtcp_seed=rtcp_seed,
    )


def rtp(seq: int, ts: int, *, pt: int = 0, ssrc: int = 0xAAAA, payload: bytes = b"\xff" * 160,
        marker: bool = False) -> bytes:
    return build_rtp(payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc, payload=payload,
                     marker=marker)


def feed(s: RtpSession, seqs: range, *, ssrc: int = 0xAAAA, addr: tuple[str, int] = PEER,
         ts_offset: int = 0) -> int:
    accepted = 0
    for n in seqs:
        got = s.receive(rtp(n & 0xFFFF, ts_offset + n * 160, ssrc=ssrc), addr, n * 0.02)
        accepted += got is not None
    return accepted


def _capture(name: str) -> list[tuple[float, tuple[str, int], bytes]]:
    with (DATA / name).open("rb") as fh:
        out = []
        for ts, frame in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(frame).data
            src = (".".join(str(b) for b in ip.src), ip.data.sport)
            out.append((ts, src, bytes(ip.data.data)))
        return out


def test_real_g711a_capture_through_session() -> None:
    capture = _capture("g711a.pcap")
    t0 = capture[0][0]
    s = session(payload=PayloadFormat(audio_pt=8, frame_samples=240),
                config=SessionConfig(jitter=JitterConfig(frame_samples=240)), remote=None)
    frames = []
    for ts, src, data in capture:
        s.receive(data, src, ts - t0)
        frames.append(s.pop_frame())
    assert s.latched and s.remote == ("10.1.3.143", 5000)
    assert s.remote_ssrc == 0xDEE0EE8F
    c = s.counters
    assert (c.dropped_probation, c.packets_received) == (1, 235)
    assert c.octets_received == 235 * 240
    stats = s.receiver_stats
    assert stats is not None and (stats.expected, stats.lost) == (235, 0)
    audio = [f for f in frames if f.kind is FrameKind.AUDIO]
    assert len(audio) == 234  # the last one is still queued
    assert audio[0].payload == capture[1][2][12:]
    assert [f.seq for f in audio] == [(0xE6FE + i) & 0xFFFF for i in range(234)]


def test_foreign_source_dropped_after_latching_until_set_remote() -> None:
    s = session(remote=None)
    assert s.remote is None
    feed(s, range(0, 3))
    assert s.latched and s.remote == PEER
    assert s.receive(rtp(3, 480), OTHER, 0.06) is None
    assert s.counters.dropped_foreign_source == 1
    s.set_remote(OTHER)  # re-INVITE
    assert not s.latched and s.remote == OTHER
    assert s.receive(rtp(4, 640), OTHER, 0.08) is not None
    assert s.latched and s.remote == OTHER


def test_non_symmetric_accepts_any_source_and_keeps_sdp_address() -> None:
    s = session(config=SessionConfig(symmetric_rtp=False))
    feed(s, range(0, 3), addr=OTHER)
    assert not s.latched and s.remote == PEER
    assert s.counters.packets_received == 2


def test_drops_are_counted_by_reason() -> None:
    s = session()
    feed(s, range(0, 3))
    assert s.receive(b"\x80\x00", PEER, 1.0) is None
    assert s.receive(rtp(3, 480, pt=8), PEER, 1.0) is None  # PCMA not negotiated
    assert s.receive(rtp(9000, 480), PEER, 1.0) is None  # A.1 jump awaiting confirmation
    c = s.counters
    assert (c.dropped_malformed, c.dropped_payload_type, c.dropped_sequence_jump) == (1, 1, 1)
    assert s.receive(rtp(9001, 640), PEER, 1.02) is not None
    assert c.sequence_restarts == 1


def test_telephone_event_packets_are_returned_separately() -> None:
    s = session(remote=None)
    got = [s.receive(data, src, ts) for ts, src, data in _capture("dtmf_2833_1.pcap")]
    assert got[0] is None  # probation
    events = [g for g in got if g is not None]
    assert len(events) == 9 and all(g.is_event for g in events)
    assert events[-1].packet.payload == bytes.fromhex("018a08c0")
    assert s.counters.events_received == 9
    assert len(s.jitter) == 0  # events never reach the audio buffer
    stats = s.receiver_stats
    assert stats is not None and stats.jitter == 0  # no jitter sampled from event timestamps


def test_ssrc_change_after_new_source_validates() -> None:
    s = session()
    feed(s, range(0, 10))
    assert s.receive(rtp(500, 90000, ssrc=0xBBBB), PEER, 0.2) is None
    assert s.remote_ssrc == 0xAAAA  # a single stray packet does not take over
    assert s.receive(rtp(10, 1600), PEER, 0.2) is not None  # old source still flows
    assert s.receive(rtp(501, 90160, ssrc=0xBBBB), PEER, 0.22) is not None
    assert s.remote_ssrc == 0xBBBB and s.counters.ssrc_changes == 1
    assert len(s.jitter) == 1  # buffer restarted with the new source


def test_timestamp_jump_counted_and_audio_keeps_flowing() -> None:
    s = session()
    frames = []
    for n in range(20):
        ts = n * 160 + (5_000_000 if n >= 10 else 0)
        s.receive(rtp(n, ts), PEER, n * 0.02)
        frames.append(s.pop_frame())
    assert s.counters.timestamp_jumps == 1
    seqs = [f.seq for f in frames if f.kind is FrameKind.AUDIO]
    assert seqs == list(range(1, 19))


def test_rtcp_on_rtp_port_is_demultiplexed() -> None:
    s = session()
    sr = build_rtcp([SenderReport(ssrc=0xAAAA, ntp_timestamp=1 << 40, rtp_timestamp=0,
                                  packet_count=0, octet_count=0)])
    assert s.receive(sr, PEER, 1.0) is None
    assert s.counters.rtcp_received == 1 and s.counters.dropped_malformed == 0


def test_sending_sequence_timestamp_marker_and_gap() -> None:
    s = session(initial_sequence=65534, initial_timestamp=0xFFFFFF60)
    pkts = [parse_rtp(s.build_audio(bytes([n]) * 160, 0.02 * n)) for n in range(4)]
    assert [p.sequence for p in pkts] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in pkts] == [0xFFFFFF60, 0, 160, 320]
    assert [p.marker for p in pkts] == [True, False, False, False]
    assert all(p.ssrc == 0x1234 and p.payload_type == 0 for p in pkts)
    # 1 s pause (e.g. hold): new talkspurt, timestamp advanced by the elapsed samples.
    p = parse_rtp(s.build_audio(b"\x00" * 160, 0.06 + 1.0))
    assert p.marker and p.sequence == 2 and p.timestamp == 320 + 8000
    assert s.counters.packets_sent == 5 and s.counters.octets_sent == 800


def test_event_packets_share_sequence_and_use_start_timestamp() -> None:
    s = session()
    s.build_audio(b"\xff" * 160, 0.0)
    start = s.current_timestamp
    assert start == 160
    ev = [
        parse_rtp(s.build_event(struct.pack("!BBH", 5, 10, 160 * (k + 1)), 0.02 * (k + 1),
                                marker=k == 0, timestamp=start))
        for k in range(3)
    ]
    assert [e.sequence for e in ev] == [1, 2, 3]
    assert {e.timestamp for e in ev} == {160} and [e.marker for e in ev] == [True, False, False]
    assert all(e.payload_type == 101 for e in ev)
    after = parse_rtp(s.build_audio(b"\xff" * 160, 0.08))
    assert (after.sequence, after.timestamp) == (4, 160 * 4)
    with pytest.raises(ValueError, match="telephone-event"):
        session(payload=PayloadFormat(audio_pt=0)).build_event(b"", 0.0, marker=True,
                                                                 timestamp=0)


def test_rtcp_schedule_is_deterministic_and_within_rfc_bounds() -> None:
    s1, s2 = session(rtcp_seed=7), session(rtcp_seed=7)
    assert s1.next_timer() == s2.next_timer()
    first = s1.next_timer()
    assert 2.5 * 0.5 / 1.21828 <= first <= 2.5 * 1.5 / 1.21828
    s1.build_rtcp(first, 1_700_000_000.0)
    gap = s1.next_timer() - first
    assert 5 * 0.5 / 1.21828 <= gap <= 5 * 1.5 / 1.21828
    assert session(rtcp_seed=8).next_timer() != first


def test_receiver_report_before_sending_then_sender_report() -> None:
    s = session()
    feed(s, range(0, 6))
    rr, sdes = parse_rtcp(s.build_rtcp(1.0, 1_700_000_000.0), strict=True)
    assert isinstance(rr, ReceiverReport) and rr.ssrc == 0x1234
    assert rr.reports[0].ssrc == 0xAAAA and rr.reports[0].highest_seq == 5
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "leg1@bridge"
    for n in range(10):
        s.build_audio(b"\xff" * 160, 2.0 + n * 0.02)
    sr = parse_rtcp(s.build_rtcp(2.19, 1_700_000_000.5))[0]
    assert isinstance(sr, SenderReport)
    assert (sr.packet_count, sr.octet_count) == (10, 1600)
    assert sr.ntp_timestamp == ntp_from_unix(1_700_000_000.5)
    assert sr.rtp_timestamp == 9 * 160 + 80  # last frame sent at 2.18 s + 10 ms of samples


def test_lsr_dlsr_and_round_trip_time_between_two_legs() -> None:
    a = session(ssrc=0xA, remote=("192.0.2.2", 5000))
    b = session(ssrc=0xB, remote=("192.0.2.1", 5000))
    for n in range(5):  # media both ways, 10 ms one-way delay
        b.receive(a.build_audio(b"\xff" * 160, n * 0.02), ("192.0.2.1", 5000), n * 0.02 + 0.01)
        a.receive(b.build_audio(b"\xff" * 160, n * 0.02), ("192.0.2.2", 5000), n * 0.02 + 0.01)
    b.receive_rtcp(a.build_rtcp(1.0, 1_700_000_001.0), ("192.0.2.1", 5001), 1.01)
    block = next(p for p in parse_rtcp(b.build_rtcp(1.51, 0.0)) if isinstance(p, SenderReport))
    rb = block.reports[0]
    assert rb.ssrc == 0xA and rb.dlsr == int(0.5 * 65536)
    assert rb.lsr == (ntp_from_unix(1_700_000_001.0) >> 16) & 0xFFFFFFFF
    a.receive_rtcp(build_rtcp([block]), ("192.0.2.2", 5001), 1.52)
    assert a.round_trip_time == pytest.approx(0.02, abs=1e-4)
    assert b.remote_rtcp == ("192.0.2.1", 5001)


def test_bye_both_ways() -> None:
    a, b = session(ssrc=0xA), session(ssrc=0xB)
    b.receive(a.build_audio(b"\xff" * 160, 0.0), PEER, 0.0)
    b.receive(a.build_audio(b"\xff" * 160, 0.02), PEER, 0.02)
    bye = a.build_bye(1.0, 1_700_000_000.0, reason="hangup")
    packets = parse_rtcp(bye, strict=True)
    assert packets[-1] == Bye(ssrcs=(0xA,), reason="hangup")
    b.receive_rtcp(bye, PEER, 1.0)
    assert b.remote_left and b.counters.remote_bye == 1
    assert b.receive_rtcp(b"\x80\xc9", PEER, 1.0) is None and b.counters.rtcp_malformed == 1


@given(st.lists(st.binary(max_size=60), max_size=20))
def test_arbitrary_datagrams_never_raise(datagrams: list[bytes]) -> None:
    s = session()
    for n, d in enumerate(datagrams):
        got = s.receive(d, PEER, n * 0.02)
        assert got is None or got.packet.payload_type in (0, 101)
        s.pop_frame()


# -- the receive fast path against the general path ----------------------------------------------


def _stream(rng_seed: int, n: int) -> list[tuple[bytes, tuple[str, int], float]]:
    """A varied datagram stream: loss, reorder, duplicates, a sequence wrap, markers, padded and
    CSRC headers, telephone events, a foreign source, a large jump + restart, timestamp jumps,
    an SSRC change (with probation) and garbage."""
    import random

    rng = random.Random(rng_seed)
    out: list[tuple[bytes, tuple[str, int], float]] = []
    ssrc, seq, ts = 0xAAAA, 65500, 1000
    now = 0.0
    for i in range(n):
        now += 0.02 + rng.uniform(-0.004, 0.004)
        roll = rng.random()
        seq = (seq + 1) & 0xFFFF
        ts = (ts + 160) & 0xFFFFFFFF
        payload = rng.randbytes(160)
        if i == n // 2:
            ssrc, seq = 0xBBBB, rng.getrandbits(16)  # new source: probation, then takeover
        if roll < 0.03:
            continue  # lost
        if roll < 0.05:
            later = rtp((seq + 1) & 0xFFFF, ts + 160, ssrc=ssrc, payload=payload)
            out.append((later, PEER, now))  # reordered pair
            out.append((rtp(seq, ts, ssrc=ssrc, payload=payload), PEER, now + 0.001))
            seq, ts = (seq + 1) & 0xFFFF, ts + 160
            continue
        if roll < 0.06:
            out.append((rtp(seq, ts, ssrc=ssrc, payload=payload), PEER, now))
            out.append((rtp(seq, ts, ssrc=ssrc, payload=payload), PEER, now))  # duplicate
            continue
        if roll < 0.07:
            out.append((rtp(seq, ts, ssrc=ssrc, payload=payload), OTHER, now))  # foreign
            continue
        if roll < 0.09:
            event = struct.pack("!BBH", 1, 0x0A, 320)
            out.append((rtp(seq, ts, pt=101, ssrc=ssrc, payload=event, marker=True), PEER, now))
            continue
        if roll < 0.10:
            padded = build_rtp(payload_type=0, sequence=seq, timestamp=ts, ssrc=ssrc,
                               payload=payload, csrcs=(7,), padding=4)
            out.append((padded, PEER, now))
            continue
        if roll < 0.105:
            seq = (seq + 5000) & 0xFFFF  # a jump, confirmed by the next packet (restart)
        elif roll < 0.11:
            ts = (ts + 80_000) & 0xFFFFFFFF  # timestamp jump (re-based sender)
        elif roll < 0.115:
            out.append((b"\x80\x00\x01", PEER, now))  # malformed
        elif roll < 0.12:
            out.append((rtp(seq, ts, pt=18, ssrc=ssrc, payload=payload), PEER, now))
            continue
        out.append((rtp(seq, ts, ssrc=ssrc, payload=payload, marker=roll > 0.99), PEER, now))
    return out


def _state(s: RtpSession) -> tuple[object, ...]:
    st = s.receiver_stats
    assert st is not None
    return (s.snapshot(), s.jitter.counters, st.ssrc, st.received, st.expected, st.lost,
            st.validator.extended_max, st.jitter_seconds, s.latched, s.remote)


@pytest.mark.parametrize("seed", range(6))
def test_receive_media_fast_path_matches_general_path(seed: int) -> None:
    general, fast = session(remote=None), session(remote=None)
    slow_calls = 0
    general_receive = fast.receive

    def counting_receive(data: bytes, addr: tuple[str, int], now: float) -> object:
        nonlocal slow_calls
        slow_calls += 1
        return general_receive(data, addr, now)

    fast.receive = counting_receive  # type: ignore[method-assign,assignment]
    stream = _stream(seed, 3000)
    tick = 0.0
    for data, addr, now in stream:
        got = general.receive(data, addr, now)
        event = fast.receive_media(data, addr, now)
        if got is not None and got.is_event:
            assert event == got.packet
        else:
            assert event is None
        while tick <= now:  # play out on the same clock: identical frames
            assert general.pop_frame() == fast.pop_frame()
            tick += 0.02
        assert _state(general) == _state(fast)
    # The fast path carried the bulk of the stream, the general path the rest.
    assert 0 < slow_calls < len(stream) * 0.35
    assert general.counters.ssrc_changes == 1
    assert general.counters.sequence_restarts >= 1
    assert general.counters.timestamp_jumps >= 1
    assert general.jitter.counters.lost > 0 and general.jitter.counters.late >= 0
