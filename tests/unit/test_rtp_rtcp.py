"""RTCP compound parse/build (RFC 3550 §6) against hand-assembled bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_from_unix,
    ntp_middle32,
    parse_rtcp,
    unix_from_ntp,
)

# SR from SSRC 0x11223344 with one report block about 0xAABBCCDD, then SDES CNAME "bob@h",
# assembled by hand from the RFC 3550 §6.4.1 / §6.5 diagrams.
SR_HEX = (
    "81c8000c"  # V=2 P=0 RC=1 PT=200 length=12
    "11223344"  # sender SSRC
    "e1a2b3c4" "80000000"  # NTP: seconds 0xE1A2B3C4, fraction 0.5
    "0000a000"  # RTP timestamp 40960
    "00000064"  # packet count 100
    "00003e80"  # octet count 16000
    "aabbccdd"  # report block: SSRC
    "40fffffe"  # fraction 0x40 (25 %), cumulative lost -2
    "00010005"  # extended highest seq: cycles 1, seq 5
    "0000001e"  # jitter 30
    "b3c48000"  # LSR
    "00018000"  # DLSR 1.5 s
)
SDES_HEX = (
    "81ca0003"  # V=2 SC=1 PT=202 length=3
    "11223344"
    "0105626f62406800"  # CNAME len 5 "bob@h", null terminator (chunk = 4+8 octets)
)
BYE_HEX = (
    "81cb0003"  # V=2 SC=1 PT=203 length=3
    "11223344"
    "06686f6e67757000"  # reason len 6 "hongup" + pad to 32 bits
)
APP_HEX = "80cc000211223344" "6e616d65"  # APP, name "name", no data


def test_parse_hand_assembled_compound() -> None:
    data = bytes.fromhex(SR_HEX + SDES_HEX + APP_HEX + BYE_HEX)
    sr, sdes, bye = parse_rtcp(data, strict=True)
    assert sr == SenderReport(
        ssrc=0x11223344,
        ntp_timestamp=0xE1A2B3C480000000,
        rtp_timestamp=40960,
        packet_count=100,
        octet_count=16000,
        reports=(
            ReportBlock(
                ssrc=0xAABBCCDD,
                fraction_lost=0x40,
                cumulative_lost=-2,
                highest_seq=0x10005,
                jitter=30,
                lsr=0xB3C48000,
                dlsr=0x18000,
            ),
        ),
    )
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].ssrc == 0x11223344 and sdes.chunks[0].cname == "bob@h"
    assert bye == Bye(ssrcs=(0x11223344,), reason="hongup")


def test_build_matches_hand_assembled_bytes() -> None:
    packets = parse_rtcp(bytes.fromhex(SR_HEX + SDES_HEX + BYE_HEX))
    assert build_rtcp(packets).hex() == SR_HEX + SDES_HEX + BYE_HEX


def test_receiver_report_and_sdes_padding() -> None:
    rr = ReceiverReport(ssrc=1, reports=())
    sdes = SourceDescription(chunks=(SdesChunk(ssrc=1, items=((1, b"abcd"),)),))
    data = build_rtcp([rr, sdes])
    assert data.hex() == "80c9000100000001" + "81ca0003" + "00000001" + "0104616263640000"
    assert parse_rtcp(data) == [rr, sdes]


def test_bye_without_reason() -> None:
    data = build_rtcp([Bye(ssrcs=(5, 6))])
    assert data.hex() == "82cb0002" "00000005" "00000006"
    assert parse_rtcp(data) == [Bye(ssrcs=(5, 6), reason=None)]


def test_padding_on_last_packet() -> None:
    data = bytes.fromhex("a0c90002" "00000009" "00000004")  # RR with 4 padding octets
    assert parse_rtcp(data) == [ReceiverReport(ssrc=9)]


@pytest.mark.parametrize(
    ("hexdata", "reason"),
    [
        ("80c9", "too_short"),
        ("40c9000100000001", "bad_version"),
        ("80c9000500000001", "bad_length"),
        ("80c900010000000100", "bad_length"),
        ("a0c9000100000001" + "80c9000100000001", "bad_padding"),
        ("a0c9000100000000", "bad_padding"),
        ("81c9000100000001", "truncated"),
        ("81ca000100000001", "truncated"),
        ("81cb0000", "truncated"),
        ("80c80001" "00000001", "truncated"),
    ],
)
def test_malformed_rtcp(hexdata: str, reason: str) -> None:
    with pytest.raises(RtcpParseError) as info:
        parse_rtcp(bytes.fromhex(hexdata))
    assert info.value.reason == reason


def test_strict_requires_report_first() -> None:
    with pytest.raises(RtcpParseError, match="not_compound"):
        parse_rtcp(bytes.fromhex(SDES_HEX), strict=True)
    assert len(parse_rtcp(bytes.fromhex(SDES_HEX))) == 1


def test_ntp_conversion() -> None:
    # 2000-01-01T00:00:00Z = Unix 946684800 = NTP 3155673600 (0xBC17C200)
    assert ntp_from_unix(946684800.25) == (0xBC17C200 << 32) | 0x40000000
    assert unix_from_ntp((0xBC17C200 << 32) | 0x80000000) == 946684800.5
    assert ntp_middle32(0xE1A2B3C480000000) == 0xB3C48000


@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_raise(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtcpParseError:
        return
    assert isinstance(packets, list)


@given(
    ssrc=st.integers(0, 0xFFFFFFFF),
    lost=st.integers(-0x800000, 0x7FFFFF),
    fraction=st.integers(0, 255),
    cname=st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255),
    reason=st.one_of(st.none(), st.text(max_size=30)),
)
def test_build_parse_agree(
    *, ssrc: int, lost: int, fraction: int, cname: str, reason: str | None
) -> None:
    block = ReportBlock(
        ssrc=ssrc, fraction_lost=fraction, cumulative_lost=lost, highest_seq=7, jitter=8,
        lsr=9, dlsr=10,
    )
    packets: list[RtcpPacket] = [
        ReceiverReport(ssrc=ssrc, reports=(block,)),
        SourceDescription(chunks=(SdesChunk(ssrc=ssrc, items=((1, cname.encode()),)),)),
        Bye(ssrcs=(ssrc,), reason=reason),
    ]
    data = build_rtcp(packets)
    assert len(data) % 4 == 0
    reason_bytes = None if reason is None else reason.encode()[:255].decode("utf-8", "replace")
    expected = [*packets[:2], Bye(ssrcs=(ssrc,), reason=reason_bytes)]
    assert parse_rtcp(data, strict=True) == expected
