"""SDP model (RFC 8866): real bodies parse, serialise byte-exactly, and anything else raises
SdpError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sdp.model import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    parse_sdp,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sdp"
FIXTURES = sorted(DATA.glob("*.sdp"))


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_fixtures_present() -> None:
    names = {p.name for p in FIXTURES}
    assert {"asterisk_pjsip.sdp", "freeswitch.sdp", "linphone.sdp", "sipp_uac.sdp"} <= names


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_round_trip_is_byte_exact(path: Path) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\r\n")
    assert parse_sdp(data).to_bytes() == data


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_lf_only_body_parses_like_crlf(path: Path) -> None:
    data = path.read_bytes()
    lf_only = data.replace(b"\r\n", b"\n")
    assert parse_sdp(lf_only) == parse_sdp(data)
    assert parse_sdp(lf_only).to_bytes() == data


def test_asterisk_fields() -> None:
    sdp = parse_sdp(load("asterisk_pjsip.sdp"))
    assert sdp.version == 0
    assert sdp.origin == Origin(
        username="-",
        session_id=1712345678,
        session_version=1712345680,
        nettype="IN",
        addrtype="IP4",
        address="192.0.2.10",
    )
    assert sdp.session_name == "Asterisk"
    assert sdp.connection == Connection(address="192.0.2.10")
    assert sdp.timing == (Timing(start=0, stop=0),)
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.port_count, audio.proto) == (
        "audio",
        10004,
        None,
        "RTP/AVP",
    )
    assert audio.formats == ("0", "8", "3", "101")
    assert audio.rtpmaps[101] == RtpMap(
        payload_type=101, encoding="telephone-event", clock_rate=8000
    )
    assert audio.rtpmaps[3].encoding == "GSM"
    assert audio.fmtp(101) == "0-16"
    assert audio.fmtp("0") is None
    assert audio.ptime == 20.0
    assert audio.maxptime == 150.0
    assert audio.direction is Direction.SENDRECV
    assert audio.rtcp is None
    assert audio.connection is None
    assert sdp.media_connection(audio) == sdp.connection


def test_freeswitch_rtcp_and_fmtp_with_spaces() -> None:
    sdp = parse_sdp(load("freeswitch.sdp"))
    audio = sdp.media[0]
    rtcp = audio.rtcp
    assert rtcp is not None
    assert rtcp.port == 24561
    assert rtcp.connection == Connection(address="198.51.100.20")
    assert audio.rtpmaps[102] == RtpMap(
        payload_type=102, encoding="opus", clock_rate=48000, channels=2
    )
    fmtp = audio.fmtp(102)
    assert fmtp is not None
    assert fmtp.startswith("useinbandfec=1; maxaveragebitrate=30000")


def test_linphone_payload_types_are_per_media() -> None:
    sdp = parse_sdp(load("linphone.sdp"))
    assert [m.media for m in sdp.media] == ["audio", "video"]
    audio, video = sdp.media
    assert audio.rtpmaps[96].encoding == "telephone-event"
    assert audio.rtpmaps[101].clock_rate == 48000
    assert video.rtpmaps[96].encoding == "VP8"
    assert sdp.attribute("record") == "off"
    assert sdp.has_attribute("rtcp-xr")
    assert audio.direction is None
    assert sdp.media_direction(audio) is Direction.SENDRECV
    assert audio.attribute_values("rtcp-fb") == ["* trr-int 1000", "* ccm tmmbr"]


def test_media_level_connection_and_bandwidth() -> None:
    sdp = parse_sdp(load("cisco_cube_hold.sdp"))
    audio = sdp.media[0]
    assert audio.connection == Connection(address="0.0.0.0")
    assert audio.connection.is_hold_address
    baresip = parse_sdp(load("baresip.sdp")).media[0]
    assert [(b.bwtype, b.bandwidth) for b in baresip.bandwidths] == [("AS", 96)]


def test_full_session_level_fields_round_trip() -> None:
    body = (
        b"v=0\r\n"
        b"o=jdoe 3724394400 3724394405 IN IP6 2001:db8::1\r\n"
        b"s=Call to John Smith\r\n"
        b"i=SDP Offer #1\r\n"
        b"u=http://www.jdoe.example.com/home.html\r\n"
        b"e=Jane Doe <jane@jdoe.example.com>\r\n"
        b"p=+1 617 555-6011\r\n"
        b"c=IN IP6 2001:db8::1\r\n"
        b"b=CT:128\r\n"
        b"t=0 0\r\n"
        b"r=7d 1h 0 25h\r\n"
        b"z=2882844526 -1h 2898848070 0\r\n"
        b"k=prompt\r\n"
        b"a=recvonly\r\n"
        b"m=audio 49170/2 RTP/AVP 0\r\n"
        b"i=voice\r\n"
        b"c=IN IP6 2001:db8::2\r\n"
        b"b=AS:64\r\n"
        b"m=video 51372 RTP/AVP 99\r\n"
        b"a=rtpmap:99 h263-1998/90000\r\n"
    )
    sdp = parse_sdp(body)
    assert sdp.to_bytes() == body
    assert sdp.origin.addrtype == "IP6"
    assert sdp.timing[0].repeats == ("7d 1h 0 25h",)
    assert sdp.direction is Direction.RECVONLY
    audio = sdp.media[0]
    assert audio.port_count == 2
    assert audio.information == "voice"
    assert sdp.media_direction(audio) is Direction.RECVONLY
    assert sdp.media_connection(audio) == Connection(addrtype="IP6", address="2001:db8::2")


def test_session_order_is_lenient_but_written_canonically() -> None:
    body = b"v=0\r\ns=-\r\nt=0 0\r\no=- 1 2 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\n"
    sdp = parse_sdp(body)
    assert sdp.to_bytes() == (
        b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    )


def test_built_description_serialises() -> None:
    sdp = SessionDescription(
        origin=Origin(session_id=7, session_version=8, address="192.0.2.1"),
        connection=Connection.for_address("192.0.2.1"),
        media=(
            MediaDescription(
                media="audio",
                port=4000,
                proto="RTP/AVP",
                formats=("8",),
                attributes=(Attribute("rtpmap", "8 PCMA/8000"), Attribute("sendonly")),
            ),
        ),
    )
    assert sdp.to_bytes() == (
        b"v=0\r\no=- 7 8 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendonly\r\n"
    )
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_direction_algebra() -> None:
    d = Direction
    assert d.SENDONLY.reversed() is d.RECVONLY
    assert d.RECVONLY.reversed() is d.SENDONLY
    assert d.SENDRECV.reversed() is d.SENDRECV
    assert d.INACTIVE.reversed() is d.INACTIVE
    assert d.SENDRECV.intersect(d.SENDONLY) is d.SENDONLY
    assert d.SENDONLY.intersect(d.RECVONLY) is d.INACTIVE
    assert d.RECVONLY.intersect(d.SENDRECV) is d.RECVONLY


_GOOD = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\r\n",
        b"o=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n",  # no v=
        b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n",  # version 1
        b"v=0\r\ns=-\r\n",  # no o=
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n",  # no s=
        b"v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n",  # short o=
        b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\n",  # sess-id not a number
        _GOOD + b"c=IN IP4\r\n",
        _GOOD + b"c=IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.5\r\n",  # two session c=
        _GOOD + b"m=audio\r\n",
        _GOOD + b"m=audio 70000 RTP/AVP 0\r\n",
        _GOOD + b"m=audio x RTP/AVP 0\r\n",
        _GOOD + b"m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        _GOOD + b"m=audio 5000 RTP/AVP 0\r\na=rtpmap:200 PCMU/8000\r\n",
        _GOOD + b"m=audio 5000 RTP/AVP 0\r\na=ptime:abc\r\n",
        _GOOD + b"m=audio 5000 RTP/AVP 0\r\na=ptime:0\r\n",
        _GOOD + b"m=audio 5000 RTP/AVP 0\r\na=rtcp:1 IN IP4\r\n",
        _GOOD + b"m=audio 5000 RTP/AVP 0\r\nt=0 0\r\n",  # t= inside media
        _GOOD + b"x=unknown\r\n",
        _GOOD + b"a =sendrecv\r\n",
        _GOOD + b"a=:x\r\n",
        _GOOD + b"b=AS\r\n",
        _GOOD + b"r=1d\r\n" + b"\x00",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\rt=0 0\r\n",  # bare CR
        b"v=0\r\nr=7d\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n",  # r= before t=
        b"v=0\r\n" * 3,
    ],
)
def test_malformed_bodies_raise(body: bytes) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(body)
    assert info.value.status in (400, 413)


def test_oversized_body() -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(_GOOD + b"a=x\r\n" * 20000)
    assert info.value.status == 413


def test_non_utf8_bytes_survive() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=Caf\xe9\r\nt=0 0\r\n"
    assert parse_sdp(body).to_bytes() == body


# ---- fuzz: any bytes either parse or raise SdpError ----------------------------------------

_LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"v=0",
                b"o=- 1 1 IN IP4 1.2.3.4",
                b"s=-",
                b"c=IN IP4 1.2.3.4",
                b"t=0 0",
                b"m=audio 4000 RTP/AVP 0 8 101",
                b"a=rtpmap:101 telephone-event/8000",
                b"a=ptime:20",
                b"a=rtcp:4001",
                b"a=sendonly",
                b"r=7d",
            ]
        ),
        st.binary(max_size=30).map(lambda b: b"a=" + b),
        st.binary(max_size=30),
    ),
    max_size=14,
)


def _check_total(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return
    # whatever parses serialises to something that parses to the same thing
    assert parse_sdp(sdp.to_bytes()) == sdp


@given(st.binary(max_size=400))
def test_parse_random_bytes(data: bytes) -> None:
    _check_total(data)


@given(_LINES, st.sampled_from([b"\r\n", b"\n"]))
def test_parse_sdp_like_lines(lines: list[bytes], sep: bytes) -> None:
    _check_total(b"v=0" + sep + sep.join(lines))


@given(st.sampled_from(FIXTURES), st.data())
def test_parse_mutated_fixtures(path: Path, data: st.DataObject) -> None:
    body = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(body) - 1))
        body[pos] = data.draw(st.integers(0, 255))
    _check_total(bytes(body))
