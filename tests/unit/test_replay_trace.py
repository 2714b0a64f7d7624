"""The trace reader on real captures: SIPp calls recorded by ``bridge serve --capture``
(tests/data/traces, made by make_traces.py), re-framed into every link type and container the
reader claims, TCP streams re-cut and reordered, and broken files (one error type, one line)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.replay.capture import PcapWriter, build_frame
from bridge.replay.trace import Trace, TraceError, _frames, read_packets, read_trace

DATA = Path(__file__).resolve().parents[1] / "data"
UDP = (DATA / "traces" / "sipp_udp.pcap").read_bytes()
TCP = (DATA / "traces" / "sipp_tcp.pcap").read_bytes()
LABELS = ["INVITE", "100 INVITE", "200 INVITE", "ACK", "BYE", "200 BYE"]
KEYS = "2583902#"


def ip_packets(data: bytes) -> list[tuple[float, bytes]]:
    """(time, IP packet) of every Ethernet frame of a capture."""
    out = []
    for when, linktype, frame in _frames(data):
        assert linktype == 1
        out.append((when, bytes(dpkt.ethernet.Ethernet(frame).data)))
    return out


def pcap(linktype: int, frames: list[tuple[float, bytes]], *, order: str = "<",
         nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for when, frame in frames:
        sec = int(when)
        frac = round((when - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(order + "IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def pcapng(linktype: int, frames: list[tuple[float, bytes]], *, order: str = "<") -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack(order + "II", btype, len(body) + 12) + body + struct.pack(
            order + "I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)),
           # if_tsresol 9 (nanoseconds), then end of options
           block(1, struct.pack(order + "HHI", linktype, 0, 0)
                 + struct.pack(order + "HH", 9, 1) + b"\x09\0\0\0" + b"\0\0\0\0")]
    for when, frame in frames:
        ts = round(when * 1e9)
        out.append(block(6, struct.pack(order + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF,
                                        len(frame), len(frame)) + frame))
    return b"".join(out)


def check_call(trace: Trace, transport: str = "UDP", *, media: bool = True) -> None:
    (call,) = trace.invite_calls()
    assert [r.label for r in call.messages] == LABELS
    assert call.transport == transport
    assert call.responses_to_caller() == [("INVITE", 100), ("INVITE", 200), ("BYE", 200)]
    assert [r.label for r in call.requests_from_caller()] == ["INVITE", "ACK", "BYE"]
    if media:
        assert call.event_pt == 101
        assert "".join(d.digit for d in call.digits()) == KEYS
        offsets = [d.offset for d in call.digits()]
        assert 1.4 < offsets[0] < 1.7 and offsets == sorted(offsets)
        assert len(call.audio_out()) > 150 and len(call.rtp_in) > 150


def test_a_real_udp_call_is_read_with_its_calling_side_rtp_and_digits() -> None:
    trace = read_trace(UDP)
    check_call(trace)
    (call,) = trace.invite_calls()
    invite = call.initial_invite
    assert invite is not None and invite.src == call.caller
    assert call.answer_time is not None and call.answer_time >= invite.time
    assert all(r.src in call.caller_media for r in call.rtp_out)
    assert all(r.dst in call.caller_media for r in call.rtp_in)


def test_a_real_tcp_call_is_reassembled() -> None:
    check_call(read_trace(TCP), "TCP")


@pytest.mark.parametrize("data", [UDP, TCP], ids=["udp", "tcp"])
def test_every_link_type_and_container_gives_the_same_call(data: bytes) -> None:
    transport = "TCP" if data is TCP else "UDP"
    ips = ip_packets(data)
    ethernet = [(t, f) for t, _, f in _frames(data)]

    def sll(ip: bytes) -> bytes:
        return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, 0x0800) + ip

    def sll2(ip: bytes) -> bytes:
        return struct.pack("!HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, b"\0" * 8) + ip

    variants = {
        "sll": pcap(113, [(t, sll(ip)) for t, ip in ips]),
        "sll2": pcap(276, [(t, sll2(ip)) for t, ip in ips]),
        "null": pcap(0, [(t, struct.pack("<I", 2) + ip) for t, ip in ips]),
        "loop": pcap(108, [(t, struct.pack(">I", 2) + ip) for t, ip in ips]),
        "raw": pcap(101, ips),
        "ipv4": pcap(228, ips),
        "big-endian nanosecond pcap": pcap(1, ethernet, order=">", nano=True),
        "pcapng": pcapng(1, ethernet),
        "big-endian pcapng raw": pcapng(101, ips, order=">"),
    }
    for name, variant in variants.items():
        try:
            check_call(read_trace(variant), transport)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
    first = read_trace(data).invite_calls()[0].start
    assert read_trace(variants["pcapng"]).invite_calls()[0].start == pytest.approx(first, abs=1e-6)


def test_ipv6_frames_are_read() -> None:
    frames = []
    for pkt in read_packets(UDP):
        six = (("::1" if pkt.src[0] == "127.0.0.1" else pkt.src[0]), pkt.src[1])
        dst = (("::1" if pkt.dst[0] == "127.0.0.1" else pkt.dst[0]), pkt.dst[1])
        frames.append((pkt.time, build_frame(six, dst, pkt.transport, pkt.payload)))
    trace = read_trace(pcap(1, frames))
    check_call(trace, media=False)
    assert trace.invite_calls()[0].caller[0] == "::1"


def test_tcp_segments_cut_small_reordered_and_retransmitted_give_the_same_messages() -> None:
    rng = random.Random(7)
    frames: list[tuple[float, bytes]] = []
    seqs: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}
    for pkt in read_packets(TCP):
        if pkt.transport != "TCP":
            frames.append((pkt.time, build_frame(pkt.src, pkt.dst, "UDP", pkt.payload)))
            continue
        if (pkt.src, pkt.dst) not in seqs:  # the connection's SYN
            frames.append((pkt.time, build_frame(pkt.src, pkt.dst, "TCP", b"", seq=999,
                                                 syn=True)))
        base = seqs.get((pkt.src, pkt.dst), 1000)
        pieces = []
        pos = 0
        while pos < len(pkt.payload):
            size = rng.randint(1, 40)
            pieces.append((base + pos, pkt.payload[pos:pos + size]))
            pos += size
        seqs[(pkt.src, pkt.dst)] = base + len(pkt.payload)
        rng.shuffle(pieces)
        pieces.append(pieces[0])  # a retransmission
        for seq, piece in pieces:
            frames.append((pkt.time, build_frame(pkt.src, pkt.dst, "TCP", piece, seq=seq)))
    check_call(read_trace(pcap(1, frames)), "TCP")


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty file"),
    (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng"),
    (UDP[:20], "truncated capture"),
    (UDP[:24], "no SIP"),
    (UDP[:-7], "truncated capture"),
    (UDP[:40], "truncated capture"),
    ((DATA / "rtp" / "g711a.pcap").read_bytes(), "no SIP"),
    (pcap(147, [(0.0, b"x")]), "unsupported link type 147"),
])
def test_bad_input_raises_one_error_with_one_line(data: bytes, message: str) -> None:
    with pytest.raises(TraceError) as info:
        read_trace(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_call_id_is_an_error_and_a_known_one_is_selected() -> None:
    trace = read_trace(UDP)
    call_id = trace.invite_calls()[0].call_id
    assert [c.call_id for c in trace.select([call_id])] == [call_id]
    assert trace.select() == trace.invite_calls()
    with pytest.raises(TraceError, match="unknown Call-ID 'nope'"):
        trace.select(["nope"])


SMALL = pcap(1, [(t, f) for t, _, f in list(_frames(UDP))[:40]])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_truncated_and_mutated_captures_give_a_trace_or_the_error(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from([SMALL, pcapng(1, [(t, f) for t, _, f in _frames(SMALL)])]))
    blob = bytearray(base[:data.draw(st.integers(0, len(base)))])
    for _ in range(data.draw(st.integers(0, 8))):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        trace = read_trace(bytes(blob))
    except TraceError as exc:
        assert "\n" not in str(exc)
        return
    for call in trace.calls.values():  # what the report reads must not raise either
        call.responses_to_caller()
        call.requests_from_caller()
        call.digits()
        _ = call.answer_time


def test_the_capture_writer_rotates_by_size_and_every_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    writer = PcapWriter(path, max_bytes=20000, keep=3)
    for pkt in read_packets(UDP):
        writer.tap(pkt.src, pkt.dst, pkt.transport, pkt.payload, when=pkt.time)
    writer.close()
    assert writer.rotations >= 3
    files = [path, *(tmp_path / f"cap.pcap.{n}" for n in (1, 2, 3))]
    assert all(f.exists() and f.stat().st_size <= 20000 for f in files)
    assert not (tmp_path / "cap.pcap.4").exists()
    assert all(read_packets(f.read_bytes()) for f in files)


def fragments(ip: bytes, size: int) -> list[bytes]:
    """An IPv4 packet cut into fragments of ``size`` payload octets (a multiple of 8)."""
    head = dpkt.ip.IP(ip)
    payload = ip[head.hl * 4:head.len]
    out = []
    for pos in range(0, len(payload), size):
        piece = payload[pos:pos + size]
        more = pos + size < len(payload)
        frag = dpkt.ip.IP(src=head.src, dst=head.dst, p=head.p, id=head.id or 7, ttl=64,
                          mf=int(more), offset=pos // 8, data=piece)
        frag.len = 20 + len(piece)
        out.append(bytes(frag))
    return out


def test_fragmented_ipv4_datagrams_are_reassembled_in_any_order() -> None:
    frames: list[tuple[float, bytes]] = []
    for when, ip in ip_packets(UDP):
        pieces = fragments(ip, 200) if b"INVITE sip:" in ip or b"SIP/2.0 200" in ip else [ip]
        frames += [(when, p) for p in reversed(pieces)]
    assert len(frames) > len(ip_packets(UDP)) + 4
    check_call(read_trace(pcap(101, frames)))
    missing = [(t, ip) for t, ip in frames if b"SIP/2.0 200 OK" not in ip]  # a 200's head
    (call,) = read_trace(pcap(101, missing)).calls.values()  # that datagram is not seen
    assert [r.label for r in call.messages] == ["INVITE", "100 INVITE", "ACK", "BYE"]


def test_capture_frames_are_valid_ipv4_udp_tcp_and_ipv6() -> None:
    payload = bytes(range(200))
    for src, dst, transport in ((("127.0.0.1", 4000), ("10.1.2.3", 5060), "UDP"),
                                (("127.0.0.1", 4000), ("10.1.2.3", 5060), "TCP"),
                                (("::1", 4000), ("2001:db8::5", 5060), "UDP")):
        eth = dpkt.ethernet.Ethernet(build_frame(src, dst, transport, payload))
        ip = eth.data
        assert ip.data.sport == 4000 and ip.data.dport == 5060 and ip.data.data == payload
        if isinstance(ip, dpkt.ip.IP):
            sent = ip.sum
            ip.sum = 0
            assert dpkt.ip.IP(bytes(ip)).sum == sent, "IPv4 header checksum"
        [pkt] = read_packets(pcap(1, [(1.0, bytes(eth))]))
        assert (pkt.src, pkt.dst, pkt.transport, pkt.payload) == (src, dst, transport, payload)
