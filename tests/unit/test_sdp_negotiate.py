"""RFC 3264 offer/answer against offers from real peers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.codecs.g711 import Codec as G711Codec
from bridge.sdp.model import Connection, Direction, SdpError, parse_sdp
from bridge.sdp.negotiate import (
    PCMA,
    PCMU,
    AnswerPolicy,
    Codec,
    InvalidAnswerError,
    NegotiatedMedia,
    NoCommonCodec,
    NoCommonCodecError,
    accept_answer,
    answer,
    offer,
    reanswer,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sdp"
LOCAL: dict[str, Any] = {"local_address": "203.0.113.99", "local_port": 40000}


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def answer_file(
    name: str, supported: Sequence[Codec] = (PCMU, PCMA)
) -> tuple[bytes, NegotiatedMedia]:
    result = answer(
        parse_sdp(load(name)),
        local_address="203.0.113.99",
        local_port=40000,
        session_id=42,
        session_version=1,
        supported=supported,
    )
    return result.sdp.to_bytes(), result.media


def test_asterisk_offer_exact_answer() -> None:
    body, media = answer_file("asterisk_pjsip.sdp")
    assert body == (
        b"v=0\r\n"
        b"o=- 42 1 IN IP4 203.0.113.99\r\n"
        b"s=-\r\n"
        b"c=IN IP4 203.0.113.99\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    assert media == NegotiatedMedia(
        remote_address="192.0.2.10",
        remote_port=10004,
        codec="PCMU",
        payload_type=0,
        clock_rate=8000,
        telephone_event_pt=101,
        ptime=20,
        remote_ptime=20.0,
        direction=Direction.SENDRECV,
        remote_direction=Direction.SENDRECV,
        hold=False,
        remote_rtcp_address="192.0.2.10",
        remote_rtcp_port=10005,
        media_index=0,
    )


def test_linphone_keeps_pt_96_for_telephone_event_and_rejects_video() -> None:
    body, media = answer_file("linphone.sdp")
    assert body == (
        b"v=0\r\n"
        b"o=- 42 1 IN IP4 203.0.113.99\r\n"
        b"s=-\r\n"
        b"c=IN IP4 203.0.113.99\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 8 96\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:96 telephone-event/8000\r\n"
        b"a=fmtp:96 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
        b"m=video 0 RTP/AVP 96 97\r\n"
    )
    assert (media.codec, media.payload_type, media.telephone_event_pt) == ("PCMA", 8, 96)
    assert (media.remote_rtcp_address, media.remote_rtcp_port) == ("192.168.1.23", 7079)
    assert media.remote_ptime is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # name: (codec, pt, te pt, remote address, port, rtcp address, rtcp port)
        ("freeswitch.sdp", ("PCMU", 0, 101, "198.51.100.20", 24560, "198.51.100.20", 24561)),
        ("sonus_trunk.sdp", ("PCMA", 8, 101, "203.0.113.51", 16384, "203.0.113.51", 16385)),
        ("baresip.sdp", ("PCMU", 0, 101, "192.168.1.50", 20010, "192.168.1.50", 20011)),
        ("sipp_uac.sdp", ("PCMU", 0, 101, "127.0.0.1", 6000, "127.0.0.1", 6001)),
    ],
)
def test_real_offers(name: str, expected: tuple[str, int, int, str, int, str, int]) -> None:
    body, media = answer_file(name)
    got = (
        media.codec,
        media.payload_type,
        media.telephone_event_pt,
        media.remote_address,
        media.remote_port,
        media.remote_rtcp_address,
        media.remote_rtcp_port,
    )
    assert got == expected
    assert media.direction is Direction.SENDRECV
    assert not media.hold
    sdp = parse_sdp(body)
    (audio,) = sdp.media
    assert audio.formats == (str(expected[1]), str(expected[2]))
    assert audio.ptime == 20
    assert audio.fmtp(expected[2]) == "0-15"


def test_supported_order_does_not_override_offerer_preference() -> None:
    _, media = answer_file("asterisk_pjsip.sdp", supported=(PCMA, PCMU))
    assert media.codec == "PCMU"  # the offer lists 0 before 8
    _, media = answer_file("asterisk_pjsip.sdp", supported=(PCMA,))
    assert (media.codec, media.payload_type) == ("PCMA", 8)


def test_g711_codec_enum_satisfies_the_protocol() -> None:
    _, media = answer_file("sonus_trunk.sdp", supported=(G711Codec.PCMU, G711Codec.PCMA))
    assert G711Codec.from_encoding_name(media.codec) is G711Codec.PCMA


def test_hold_with_sendonly() -> None:
    body, media = answer_file("asterisk_pjsip_hold.sdp")
    assert media.hold
    assert media.direction is Direction.RECVONLY
    assert media.remote_direction is Direction.SENDONLY
    assert not media.sends
    assert b"a=recvonly\r\n" in body


def test_rfc2543_hold_with_zero_address() -> None:
    body, media = answer_file("cisco_cube_hold.sdp")
    assert media.hold
    assert media.remote_address == "0.0.0.0"
    assert media.direction is Direction.RECVONLY
    assert not media.sends
    assert media.telephone_event_pt == 101
    assert b"a=recvonly\r\n" in body


OFFER = load("sipp_uac.sdp")


def with_direction(direction: bytes) -> bytes:
    return OFFER.replace(b"a=sendrecv", direction)


@pytest.mark.parametrize(
    ("attribute", "ours", "hold"),
    [
        (b"a=sendrecv", Direction.SENDRECV, False),
        (b"a=sendonly", Direction.RECVONLY, True),
        (b"a=recvonly", Direction.SENDONLY, False),
        (b"a=inactive", Direction.INACTIVE, True),
    ],
)
def test_direction_table(attribute: bytes, ours: Direction, hold: bool) -> None:
    result = answer(parse_sdp(with_direction(attribute)), session_id=1, session_version=1, **LOCAL)
    assert result.media.direction is ours
    assert result.media.hold is hold
    assert result.sdp.media[0].direction is ours


def test_session_level_direction_applies() -> None:
    body = OFFER.replace(b"a=sendrecv\r\n", b"").replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    result = answer(parse_sdp(body), session_id=1, session_version=1, **LOCAL)
    assert result.media.direction is Direction.RECVONLY


def test_local_direction_policy() -> None:
    policy = AnswerPolicy(direction=Direction.SENDONLY)
    result = answer(parse_sdp(OFFER), session_id=1, session_version=1, policy=policy, **LOCAL)
    assert result.media.direction is Direction.SENDONLY


def test_no_common_codec_is_488() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 18 9 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    with pytest.raises(NoCommonCodec) as info:
        answer(parse_sdp(body), session_id=1, session_version=1, **LOCAL)
    assert info.value.status == 488
    assert NoCommonCodec is NoCommonCodecError


@pytest.mark.parametrize(
    "body",
    [
        # SRTP only
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/SAVP 0 8\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
        # video only
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
        # audio disabled by the offerer
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 0 RTP/AVP 0\r\n",
        # no m= at all
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n",
        # PCMU at the wrong clock rate
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 97\r\na=rtpmap:97 PCMU/16000\r\n",
    ],
)
def test_unusable_offers_are_488(body: bytes) -> None:
    with pytest.raises(NoCommonCodecError):
        answer(parse_sdp(body), session_id=1, session_version=1, **LOCAL)


def test_static_payload_types_without_rtpmap_and_dynamic_pcmu() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 8 0\r\n"
    )
    result = answer(parse_sdp(body), session_id=1, session_version=1, **LOCAL)
    assert (result.media.codec, result.media.payload_type) == ("PCMA", 8)
    assert result.media.telephone_event_pt is None
    assert result.sdp.media[0].formats == ("8",)
    dynamic = body.replace(b"8 0\r\n", b"97\r\na=rtpmap:97 pcmu/8000\r\n")
    result = answer(parse_sdp(dynamic), session_id=1, session_version=1, **LOCAL)
    assert (result.media.codec, result.media.payload_type) == ("PCMU", 97)
    assert b"a=rtpmap:97 PCMU/8000" in result.sdp.to_bytes()


def test_first_audio_disabled_second_used_third_rejected() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 0 RTP/AVP 0\r\n"
        b"m=audio 5002 RTP/AVP 8\r\nc=IN IP4 10.0.0.2\r\n"
        b"m=audio 5004 RTP/AVP 0\r\n"
    )
    result = answer(parse_sdp(body), session_id=1, session_version=1, **LOCAL)
    assert [m.port for m in result.sdp.media] == [0, 40000, 0]
    assert result.media.media_index == 1
    assert (result.media.remote_address, result.media.remote_port) == ("10.0.0.2", 5002)


def test_missing_connection_is_an_sdp_error() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
    with pytest.raises(SdpError) as info:
        answer(parse_sdp(body), session_id=1, session_version=1, **LOCAL)
    assert not isinstance(info.value, NoCommonCodecError)


def test_ptime_policy() -> None:
    ptime30 = OFFER.replace(b"a=ptime:20", b"a=ptime:30")
    result = answer(parse_sdp(ptime30), session_id=1, session_version=1, **LOCAL)
    assert result.media.ptime == 20
    assert result.media.remote_ptime == 30.0
    assert result.sdp.media[0].ptime == 20.0
    strict = AnswerPolicy(require_offer_ptime=True)
    with pytest.raises(NoCommonCodecError):
        answer(parse_sdp(ptime30), session_id=1, session_version=1, policy=strict, **LOCAL)
    answer(parse_sdp(OFFER), session_id=1, session_version=1, policy=strict, **LOCAL)
    maxptime10 = OFFER.replace(b"a=ptime:20", b"a=ptime:10\r\na=maxptime:10")
    with pytest.raises(NoCommonCodecError):
        answer(parse_sdp(maxptime10), session_id=1, session_version=1, **LOCAL)


def test_ipv6() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP6 2001:db8::5\r\ns=-\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 0\r\n"
    )
    result = answer(
        parse_sdp(body),
        local_address="2001:db8::1",
        local_port=4000,
        session_id=1,
        session_version=1,
    )
    assert result.media.remote_address == "2001:db8::5"
    assert result.sdp.connection == Connection(addrtype="IP6", address="2001:db8::1")
    assert b"o=- 1 1 IN IP6 2001:db8::1\r\n" in result.sdp.to_bytes()


# ---- UAC side ------------------------------------------------------------------------------


def test_offer_exact() -> None:
    ours = offer(local_address="192.0.2.5", local_port=30000, session_id=9, session_version=9)
    assert ours.to_bytes() == (
        b"v=0\r\n"
        b"o=- 9 9 IN IP4 192.0.2.5\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.5\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


ANSWER_PCMA = (
    b"v=0\r\no=- 77 77 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\n"
    b"m=audio 51000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
)


def test_accept_answer() -> None:
    ours = offer(local_address="192.0.2.5", local_port=30000, session_id=9, session_version=9)
    media = accept_answer(ours, parse_sdp(ANSWER_PCMA))
    assert (media.codec, media.payload_type, media.telephone_event_pt) == ("PCMA", 8, 101)
    assert (media.remote_address, media.remote_port) == ("198.51.100.9", 51000)
    assert media.remote_rtcp_port == 51001
    assert media.direction is Direction.SENDRECV
    held = accept_answer(ours, parse_sdp(ANSWER_PCMA + b"a=recvonly\r\n"))
    assert held.direction is Direction.SENDONLY
    assert not held.hold


def test_accept_answer_rejects_codec_we_did_not_offer() -> None:
    ours = offer(local_address="192.0.2.5", local_port=30000, session_id=9, session_version=9)
    g729 = ANSWER_PCMA.replace(b"RTP/AVP 8 101", b"RTP/AVP 18 101").replace(
        b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:18 G729/8000"
    )
    with pytest.raises(InvalidAnswerError) as info:
        accept_answer(ours, parse_sdp(g729))
    assert info.value.status == 488
    only_pcmu = offer(
        local_address="192.0.2.5", local_port=30000, session_id=9, session_version=9,
        codecs=(PCMU,),
    )
    with pytest.raises(InvalidAnswerError):
        accept_answer(only_pcmu, parse_sdp(ANSWER_PCMA))


def test_accept_answer_rejected_stream_and_mline_count() -> None:
    ours = offer(local_address="192.0.2.5", local_port=30000, session_id=9, session_version=9)
    with pytest.raises(NoCommonCodecError):
        accept_answer(ours, parse_sdp(ANSWER_PCMA.replace(b"m=audio 51000", b"m=audio 0")))
    with pytest.raises(InvalidAnswerError):
        accept_answer(ours, parse_sdp(ANSWER_PCMA + b"m=video 0 RTP/AVP 96\r\n"))


def test_offer_answer_between_two_bridges() -> None:
    ours = offer(local_address="192.0.2.5", local_port=30000, session_id=9, session_version=9)
    their = answer(
        parse_sdp(ours.to_bytes()),
        local_address="192.0.2.6",
        local_port=31000,
        session_id=3,
        session_version=3,
    )
    uac = accept_answer(ours, parse_sdp(their.sdp.to_bytes()))
    assert (uac.codec, uac.payload_type, uac.telephone_event_pt) == ("PCMU", 0, 101)
    assert (uac.remote_address, uac.remote_port) == ("192.0.2.6", 31000)
    assert (their.media.remote_address, their.media.remote_port) == ("192.0.2.5", 30000)


# ---- re-INVITE -----------------------------------------------------------------------------


def test_reinvite_hold_unhold_and_refresh() -> None:
    first = answer(
        parse_sdp(load("asterisk_pjsip.sdp")), session_id=42, session_version=1, **LOCAL
    )
    hold = reanswer(first.sdp, first.media, parse_sdp(load("asterisk_pjsip_hold.sdp")))
    assert hold.sdp.origin.session_id == 42
    assert hold.sdp.origin.session_version == 2
    assert hold.changes.hold_started
    assert hold.changes.direction_changed
    assert not hold.changes.remote_address_changed
    assert not hold.changes.codec_changed
    assert hold.media.direction is Direction.RECVONLY
    assert hold.sdp.media[0].port == 40000

    # the same offer again (e.g. a session refresh): identical answer, same version
    again = reanswer(hold.sdp, hold.media, parse_sdp(load("asterisk_pjsip_hold.sdp")))
    assert again.sdp == hold.sdp
    assert again.sdp.origin.session_version == 2
    assert not again.changes.any
    assert not again.changes.sdp_changed

    unhold = reanswer(again.sdp, again.media, parse_sdp(load("asterisk_pjsip.sdp")))
    assert unhold.changes.hold_ended
    assert unhold.sdp.origin.session_version == 3
    assert unhold.media.direction is Direction.SENDRECV


def test_reinvite_new_remote_address_and_codec() -> None:
    first = answer(parse_sdp(OFFER), session_id=5, session_version=10, **LOCAL)
    moved = OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 127.0.0.2").replace(
        b"RTP/AVP 0 8 101", b"RTP/AVP 8 101"
    )
    result = reanswer(first.sdp, first.media, parse_sdp(moved))
    assert result.changes.remote_address_changed
    assert result.changes.codec_changed
    assert not result.changes.hold_started
    assert result.media.remote_address == "127.0.0.2"
    assert (result.media.codec, result.media.payload_type) == ("PCMA", 8)
    assert result.sdp.origin.session_version == 11


def test_reinvite_zero_address_hold_keeps_our_port() -> None:
    first = answer(parse_sdp(OFFER), session_id=5, session_version=10, **LOCAL)
    held = reanswer(first.sdp, first.media, parse_sdp(replace_c(OFFER, b"0.0.0.0")))
    assert held.changes.hold_started
    assert held.changes.remote_address_changed
    assert held.sdp.media[0].port == LOCAL["local_port"]


def replace_c(body: bytes, address: bytes) -> bytes:
    return body.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 " + address)


def test_negotiated_media_is_frozen() -> None:
    _, media = answer_file("sipp_uac.sdp")
    with pytest.raises(AttributeError):
        media.remote_port = 1  # type: ignore[misc]
    assert replace(media, remote_port=0).rejected
