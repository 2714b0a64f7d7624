"""RTP packet parse/build (RFC 3550 §5.1, §5.3.1) against real captured bytes and hand vectors."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.rtp.packet import (
    RtpPacket,
    RtpParseError,
    build_rtp,
    is_rtcp,
    parse_rtp,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "rtp"


def _udp_payloads(name: str) -> list[bytes]:
    with (DATA / name).open("rb") as fh:
        out = []
        for _ts, frame in dpkt.pcap.Reader(fh):
            udp = dpkt.ethernet.Ethernet(frame).data.data
            out.append(bytes(udp.data))
        return out


def test_g711a_capture_parses_field_by_field() -> None:
    datagrams = _udp_payloads("g711a.pcap")
    assert len(datagrams) == 236
    packets = [parse_rtp(d) for d in datagrams]
    first = packets[0]
    # Hand-decoded from the first datagram: 80 88 e6fd 000000f0 dee0ee8f
    assert datagrams[0][:12].hex() == "8088e6fd000000f0dee0ee8f"
    assert first.version == 2
    assert first.marker is True
    assert first.payload_type == 8
    assert first.sequence == 0xE6FD
    assert first.timestamp == 240
    assert first.ssrc == 0xDEE0EE8F
    assert first.csrcs == ()
    assert first.extension is False
    assert first.padding == 0
    assert first.payload == datagrams[0][12:]
    assert len(first.payload) == 240
    # Only the first packet carries the marker; sequence +1 and timestamp +240 (30 ms) each.
    assert [p.marker for p in packets].count(True) == 1
    for prev, cur in itertools.pairwise(packets):
        assert cur.sequence == (prev.sequence + 1) & 0xFFFF
        assert cur.timestamp == prev.timestamp + 240
        assert cur.ssrc == first.ssrc
    # serialize(parse(b)) == b for every real packet
    assert all(p.to_bytes() == d for p, d in zip(packets, datagrams, strict=True))


def test_rfc4733_capture_parses() -> None:
    packets = [parse_rtp(d) for d in _udp_payloads("dtmf_2833_1.pcap")]
    assert [p.payload_type for p in packets] == [101] * 10
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert {p.timestamp for p in packets} == {13280}
    assert packets[0].payload == bytes.fromhex("010a0000")


def test_build_vector_matches_hand_assembled_bytes() -> None:
    data = build_rtp(
        payload_type=0, sequence=0x1234, timestamp=0xDEADBEEF, ssrc=0x01020304, payload=b"\xff\xfe"
    )
    assert data == bytes.fromhex("80001234deadbeef01020304fffe")
    marked = build_rtp(payload_type=101, sequence=1, timestamp=2, ssrc=3, payload=b"", marker=True)
    assert marked[1] == 0x80 | 101


def test_full_header_with_csrc_extension_padding() -> None:
    raw = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0x80 | 8])
        + struct.pack("!HII", 7, 8, 9)
        + struct.pack("!II", 0xAAAA, 0xBBBB)
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\x20\x30\x40"
        + b"PAYLOAD"
        + b"\x00\x00\x03"
    )
    p = parse_rtp(raw)
    assert p.csrcs == (0xAAAA, 0xBBBB)
    assert p.extension and p.extension_profile == 0xBEDE
    assert p.extension_data == b"\x10\x20\x30\x40"
    assert p.padding == 3
    assert p.payload == b"PAYLOAD"
    assert p.marker and p.payload_type == 8 and p.sequence == 7
    assert p.to_bytes() == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x80\x00\x00", "too_short"),
        (bytes.fromhex("40001234deadbeef01020304"), "bad_version"),
        (bytes.fromhex("c0001234deadbeef01020304"), "bad_version"),
        (bytes.fromhex("83001234deadbeef01020304") + b"\x00" * 8, "csrc_overflow"),
        (bytes.fromhex("90001234deadbeef01020304") + b"\xbe\xde", "extension_overflow"),
        (bytes.fromhex("90001234deadbeef01020304") + b"\xbe\xde\x00\x02" + b"x" * 4,
         "extension_overflow"),
        (bytes.fromhex("a0001234deadbeef01020304") + b"ab\x00", "bad_padding"),
        (bytes.fromhex("a0001234deadbeef01020304") + b"ab\x09", "bad_padding"),
    ],
)
def test_malformed_packets_raise(raw: bytes, reason: str) -> None:
    with pytest.raises(RtpParseError) as info:
        parse_rtp(raw)
    assert info.value.reason == reason


def test_build_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="payload type"):
        build_rtp(payload_type=128, sequence=0, timestamp=0, ssrc=0, payload=b"")
    with pytest.raises(ValueError, match="multiple of 4"):
        build_rtp(payload_type=0, sequence=0, timestamp=0, ssrc=0, payload=b"",
                  extension_profile=1, extension_data=b"abc")


def test_is_rtcp_demux() -> None:
    assert is_rtcp(bytes.fromhex("80c80006"))  # SR, PT 200
    assert is_rtcp(bytes.fromhex("81c90007"))  # RR
    assert not is_rtcp(bytes.fromhex("80080000"))  # PCMA
    assert not is_rtcp(bytes.fromhex("80e50000"))  # PT 101 with marker
    assert not is_rtcp(b"\x80")


@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_or_raise(data: bytes) -> None:
    try:
        p = parse_rtp(data)
    except RtpParseError:
        return
    # Whatever parsed re-serialises to the same length and header bits.
    assert isinstance(p, RtpPacket)
    out = p.to_bytes()
    assert len(out) == len(data)
    assert out[:2] == data[:2]


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    ext=st.one_of(st.none(), st.integers(0, 0xFFFF)),
    ext_words=st.integers(0, 4),
    padding=st.integers(0, 255),
)
def test_build_parse_agree(
    *,
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool,
    csrcs: tuple[int, ...], ext: int | None, ext_words: int, padding: int,
) -> None:
    ext_data = bytes(range(4 * ext_words)) if ext is not None else b""
    data = build_rtp(
        payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc, payload=payload, marker=marker,
        csrcs=csrcs, extension_profile=ext, extension_data=ext_data, padding=padding,
    )
    assert len(data) == 12 + 4 * len(csrcs) + (4 + len(ext_data) if ext is not None else 0) + len(
        payload
    ) + padding
    # Independent header check with struct, not with parse_rtp.
    b0, b1, s, t, c = struct.unpack_from("!BBHII", data)
    assert b0 >> 6 == 2 and (b0 & 0x0F) == len(csrcs) and bool(b0 & 0x20) == bool(padding)
    assert (b1 & 0x7F, b1 >> 7, s, t, c) == (pt, int(marker), seq, ts, ssrc)
    p = parse_rtp(data)
    assert p == RtpPacket(pt, seq, ts, ssrc, payload, marker, csrcs, ext, ext_data, padding)
