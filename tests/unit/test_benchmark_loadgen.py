"""Load generator pieces: RFC 4733 digit packets, loss accounting, SIP/SDP text, tones."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.benchmark import loadgen
from bridge.codecs.g711 import ulaw_decode


def _keyed_packets(digits: str, *, ts0: int = 1000, seq0: int = 65530) -> list[bytes]:
    """The RTP packets the generator's send loop emits for ``digits`` (same code path)."""
    slots = loadgen.digit_frames(digits)
    packets = []
    for offset, slot in enumerate(slots):
        if slot is None:
            continue
        header = struct.pack("!BBHII", 0x80, 101 | (0x80 if slot.marker else 0),
                             (seq0 + offset) & 0xFFFF, ts0 + slot.event_start * 160, 7)
        payload = loadgen.telephone_event_payload(event=slot.event, end=slot.end,
                                                  volume=slot.volume, duration=slot.duration)
        packets.append(header + payload)
    return packets


def test_rfc4733_digit_sequence() -> None:
    slots = loadgen.digit_frames("1#", event_frames=5, gap_frames=5)
    # per digit: 5 growing packets, 3 end packets, 5 audio slots
    assert len(slots) == 2 * (5 + 3 + 5)
    packets = _keyed_packets("1#")
    assert len(packets) == 16
    decoded = []
    for data in packets:
        b0, b1, _seq, ts, _ = struct.unpack("!BBHII", data[:12])
        event, flags, duration = struct.unpack("!BBH", data[12:])
        assert b0 == 0x80 and len(data) == 16  # RFC 4733 §2.3: 4-octet payload
        decoded.append((bool(b1 & 0x80), b1 & 0x7F, ts, event, bool(flags & 0x80),
                        flags & 0x3F, duration))
    for digit_index, event in enumerate((1, 11)):  # '1' and '#' (RFC 4733 §3.2)
        group = decoded[digit_index * 8 : (digit_index + 1) * 8]
        markers = [m for m, *_ in group]
        assert markers == [True] + [False] * 7  # marker on the first packet only
        assert {pt for _, pt, *_ in group} == {101}
        assert len({ts for _, _, ts, *_ in group}) == 1  # one timestamp per event
        assert [e for *_, e, _, _, _ in group] == [event] * 8
        ends = [end for *_, end, _, _ in group]
        assert ends == [False] * 5 + [True] * 3  # final packet sent three times
        durations = [d for *_, d in group]
        assert durations == [160, 320, 480, 640, 800, 800, 800, 800]
        assert {v for *_, v, _ in group} == {10}
    # the second event starts 13 slots (260 ms) after the first
    assert decoded[8][2] - decoded[0][2] == 13 * 160


def test_digit_sequence_numbers_run_on_across_wrap() -> None:
    seqs = [struct.unpack("!H", p[2:4])[0] for p in _keyed_packets("5", seq0=65534)]
    assert seqs == [65534, 65535, 0, 1, 2, 3, 4, 5]


def test_bad_digit_rejected() -> None:
    with pytest.raises(ValueError):
        loadgen.digit_frames("12x")
    with pytest.raises(ValueError):
        loadgen.telephone_event_payload(event=1, end=False, volume=64, duration=0)


def test_seq_tracker_counts_gaps_wrap_duplicates_and_resync() -> None:
    t = loadgen.SeqTracker()
    for seq in (65533, 65534, 0, 1, 3, 3, 2):  # 65535 lost; 3 duplicated; 2 late
        t.update(seq, ssrc=9)
    assert t.expected == 7  # 65533 .. 3
    assert t.received == 7
    assert t.lost == 0  # the duplicate hides one loss, as RFC 3550 §6.4.1 notes
    t2 = loadgen.SeqTracker()
    for seq in (10, 11, 14, 15):
        t2.update(seq, ssrc=1)
    assert (t2.expected, t2.lost) == (6, 2)
    t2.update(20_000, ssrc=1)  # jump past MAX_DROPOUT: a new run, old count kept
    t2.update(20_001, ssrc=1)
    assert t2.expected == 8 and t2.lost == 2
    t2.update(5, ssrc=2)  # new SSRC
    assert t2.expected == 9 and t2.lost == 2


@given(st.lists(st.booleans(), min_size=2, max_size=300), st.integers(0, 0xFFFF))
def test_seq_tracker_loss_equals_dropped_packets(delivered: list[bool], start: int) -> None:
    delivered[0] = delivered[-1] = True  # loss is only visible between received packets
    t = loadgen.SeqTracker()
    for offset, arrives in enumerate(delivered):
        if arrives:
            t.update((start + offset) & 0xFFFF, ssrc=3)
    assert t.expected == len(delivered)
    assert t.lost == delivered.count(False)


def _goertzel_power(pcm: np.ndarray, frequency: float) -> float:
    n = np.arange(pcm.size)
    tone = np.exp(-2j * np.pi * frequency * n / 8000.0)
    return float(abs(np.dot(pcm.astype(np.float64), tone)) ** 2) / pcm.size**2


def test_talkers_send_their_own_tone_and_listeners_near_silence() -> None:
    for index in (0, 1, 7):
        ring = loadgen.payload_ring(index, talker=True)
        assert len(ring) == loadgen.RING_FRAMES and all(len(f) == 160 for f in ring)
        assert len(set(ring)) > 1  # varied frames, not one repeated frame
        pcm = ulaw_decode(b"".join(ring)).astype(np.float64)
        frequency, amplitude = loadgen.talker_tone(index)
        powers = {f: _goertzel_power(pcm, f) for f in (frequency, frequency + 131, 1000.5)}
        assert powers[frequency] > 100 * max(powers[frequency + 131], powers[1000.5])
        rms = float(np.sqrt(np.mean(pcm**2)))
        envelope_rms = np.sqrt(0.7**2 + 0.3**2 / 2)
        assert rms == pytest.approx(amplitude / np.sqrt(2) * envelope_rms, rel=0.05)
    quiet = ulaw_decode(b"".join(loadgen.payload_ring(2, talker=False))).astype(np.float64)
    assert 0 < float(np.sqrt(np.mean(quiet**2))) < 30


def test_tone_ring_loops_seamlessly() -> None:
    ring = loadgen.payload_ring(3, talker=True)
    pcm = ulaw_decode(b"".join(ring + ring[:1])).astype(np.float64)
    frequency, amplitude = loadgen.talker_tone(3)
    # The sample after the ring is the continuation of the sine: no step at the wrap.
    steps = np.abs(np.diff(pcm))
    assert steps[7999] <= steps.max() + 1
    assert steps.max() <= 2 * np.pi * frequency / 8000 * amplitude * 1.1 + 64


INVITE_ARGS = {
    "local_host": "127.0.0.1", "sip_port": 5070, "rtp_port": 40000, "user": "loadgen0",
    "call_id": "abc@loadgen", "from_tag": "ft1", "branch": "z9hG4bKb1", "session": 77,
}


def test_invite_offers_pcmu_and_telephone_event() -> None:
    data = loadgen.build_invite("sip:1000@127.0.0.1:5060", **INVITE_ARGS)  # type: ignore[arg-type]
    message = loadgen.parse_sip(data)
    assert (message.method, message.uri) == ("INVITE", "sip:1000@127.0.0.1:5060")
    assert message.cseq == (1, "INVITE")
    assert "branch=z9hG4bKb1" in message.header("via")
    assert message.header("from").endswith(";tag=ft1")
    assert int(message.header("content-length")) == len(message.body)
    body = message.body.decode()
    assert "m=audio 40000 RTP/AVP 0 101\r\n" in body
    assert "a=rtpmap:101 telephone-event/8000" in body
    assert loadgen.parse_sdp_answer(message.body) == ("127.0.0.1", 40000, 101)


OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb1;rport=5070;received=127.0.0.1\r\n"
    b"f: <sip:loadgen0@127.0.0.1>;tag=ft1\r\n"
    b"t: <sip:1000@127.0.0.1:5060>;tag=bridge9\r\n"
    b"i: abc@loadgen\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:bridge@127.0.0.1:5060;transport=udp>\r\n"
    b"c: application/sdp\r\n"
    b"l: 140\r\n\r\n"
    b"v=0\r\no=bridge 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 96\r\nc=IN IP4 127.0.0.3\r\na=rtpmap:96 telephone-event/8000\r\n"
)


def test_ack_for_2xx_is_a_new_transaction_to_the_contact() -> None:
    invite = loadgen.build_invite("sip:1000@127.0.0.1:5060", **INVITE_ARGS)  # type: ignore[arg-type]
    ok = loadgen.parse_sip(OK_200)
    assert ok.status == 200 and ok.header("to").endswith("tag=bridge9")  # compact forms
    ack = loadgen.parse_sip(loadgen.build_ack(invite, ok, branch="z9hG4bKnew",
                                              uri="sip:bridge@127.0.0.1:5060;transport=udp"))
    assert (ack.method, ack.uri) == ("ACK", "sip:bridge@127.0.0.1:5060;transport=udp")
    assert ack.cseq == (1, "ACK")
    assert "branch=z9hG4bKnew" in ack.header("via")
    assert ack.header("to").endswith("tag=bridge9")
    assert ack.header("call-id") == "abc@loadgen"
    # media-level c= wins over session-level; the answer's telephone-event PT is used
    assert loadgen.parse_sdp_answer(ok.body) == ("127.0.0.3", 30000, 96)


def test_ack_for_non_2xx_reuses_the_invite_branch() -> None:
    invite = loadgen.build_invite("sip:1000@127.0.0.1:5060", **INVITE_ARGS)  # type: ignore[arg-type]
    busy = loadgen.parse_sip(OK_200.replace(b"200 OK", b"486 Busy Here"))
    ack = loadgen.parse_sip(loadgen.build_ack(invite, busy))
    assert ack.uri == "sip:1000@127.0.0.1:5060"
    assert "branch=z9hG4bKb1" in ack.header("via")


def test_response_copies_the_via_stack_and_adds_a_to_tag() -> None:
    request = loadgen.parse_sip(
        b"OPTIONS sip:loadgen0@127.0.0.1:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n"
        b"From: <sip:bridge@10.0.0.1>;tag=x\r\nTo: <sip:loadgen0@127.0.0.1>\r\n"
        b"Call-ID: opt1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    response = loadgen.parse_sip(loadgen.build_response(request, 200, "OK", to_tag="mine"))
    assert response.status == 200
    assert response.all("via") == ["SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa",
                                   "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb"]
    assert response.header("to") == "<sip:loadgen0@127.0.0.1>;tag=mine"
    assert response.cseq == (7, "OPTIONS")


def test_rejected_or_missing_audio_stream() -> None:
    with pytest.raises(ValueError):
        loadgen.parse_sdp_answer(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n")
    with pytest.raises(ValueError):
        loadgen.parse_sdp_answer(b"v=0\r\nm=video 5000 RTP/AVP 96\r\n")


@given(st.binary(max_size=600))
def test_parse_sip_never_raises_anything_but_its_error(data: bytes) -> None:
    with contextlib.suppress(loadgen.SipParseError):
        loadgen.parse_sip(data)
