"""StreamFramer: RFC 3261 §18.3 framing on TCP/TLS, RFC 5626 CRLF keepalive pings."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.sip.message import SipParseError, SipRequest, SipResponse
from bridge.sip.parser import SipLimits, StreamFramer, parse_message

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"
INVITE = (DATA / "trunk_invite.sip").read_bytes()
OK = (DATA / "trunk_200ok.sip").read_bytes()
BYE = (DATA / "bridge_bye.sip").read_bytes()


def test_whole_messages_in_one_feed() -> None:
    framer = StreamFramer()
    messages = framer.feed(INVITE + OK + BYE)
    assert messages == [parse_message(INVITE), parse_message(OK), parse_message(BYE)]
    assert isinstance(messages[0], SipRequest) and messages[0].method == "INVITE"
    assert isinstance(messages[1], SipResponse) and messages[1].status == 200
    assert framer.buffered == 0


def test_byte_by_byte_feeding() -> None:
    framer = StreamFramer()
    got: list[SipRequest | SipResponse] = []
    for i in range(len(INVITE + BYE)):
        got.extend(framer.feed((INVITE + BYE)[i : i + 1]))
        if i < len(INVITE) - 1:
            assert got == []
    assert got == [parse_message(INVITE), parse_message(BYE)]


def test_body_waits_for_content_length() -> None:
    framer = StreamFramer()
    head, body = INVITE.split(b"\r\n\r\n", 1)
    assert framer.feed(head + b"\r\n\r\n" + body[:10]) == []
    assert framer.buffered == len(head) + 4 + 10
    (message,) = framer.feed(body[10:])
    assert message.body == body


def test_double_crlf_pings_are_counted_single_crlf_ignored() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pings == 1
    assert framer.feed(b"\r\n\r") == []
    assert framer.feed(b"\n") == []
    assert framer.take_pings() == 2
    assert framer.pings == 0
    # A lone CRLF before a message is tolerated (RFC 3261 §7.5) but is not a ping.
    assert framer.feed(b"\r\n" + BYE) == [parse_message(BYE)]
    assert framer.pings == 0
    assert framer.feed(b"\r\n\r\n\r\n\r\n" + OK) == [parse_message(OK)]
    assert framer.take_pings() == 2


def test_missing_content_length_is_an_error_on_streams() -> None:
    framer = StreamFramer()
    without = BYE.replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError) as info:
        framer.feed(without)
    assert info.value.status == 400


def test_error_after_good_messages_is_deferred_to_the_next_feed() -> None:
    framer = StreamFramer()
    bad = b"NOT A SIP MESSAGE\r\n\r\n"
    assert framer.feed(BYE + bad) == [parse_message(BYE)]
    with pytest.raises(SipParseError):
        framer.feed(b"")
    with pytest.raises(SipParseError):
        framer.feed(OK)  # the stream stays broken: the transport closes it


def test_buffer_is_bounded_without_a_head_end() -> None:
    framer = StreamFramer(SipLimits(max_stream_buffer=1000))
    assert framer.feed(b"INVITE sip:a@b SIP/2.0\r\nSubject: " + b"x" * 900) == []
    with pytest.raises(SipParseError) as info:
        framer.feed(b"x" * 200)
    assert info.value.status == 513


def test_announced_body_too_large_is_513_before_buffering_it() -> None:
    framer = StreamFramer(SipLimits(max_message_size=2000))
    huge = BYE.replace(b"Content-Length: 0", b"Content-Length: 1000000")
    with pytest.raises(SipParseError) as info:
        framer.feed(huge)
    assert info.value.status == 513
