"""Property tests: wire bytes either parse or raise SipParseError, nothing else.

Inputs are random bytes and mutations of real messages (RFC 4475 corpus and the trunk
fixtures): byte flips, truncations, inserted CR/LF/NUL/separators, duplicated header lines.
Whatever parses must also survive the typed accessors, validation and a serialise/re-parse
round trip. The StreamFramer must frame a stream identically however it is chunked.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.sip.headers import NameAddr, Via
from bridge.sip.message import SipParseError, SipRequest, SipResponse
from bridge.sip.parser import (
    StreamFramer,
    parse_message,
    validate_request,
    validate_response,
)
from bridge.sip.uri import SipUri

DATA = Path(__file__).resolve().parent.parent / "data"
CORPUS = [p.read_bytes() for p in sorted((DATA / "rfc4475").glob("*/*.dat"))] + [
    p.read_bytes() for p in sorted((DATA / "sip").glob("*.sip"))
]
FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

Message = SipRequest | SipResponse


def _without_length(message: Message) -> list[tuple[str, str]]:
    return [item for item in message.headers if item[0] != "Content-Length"]


def _exercise(data: bytes) -> Message | None:
    """Parse, and if that works use every typed view; only SipParseError may escape."""
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 599
        return None
    for view in ("call_id", "cseq", "vias", "top_via", "from_", "to", "contacts",
                 "record_route", "content_type"):
        try:
            value = getattr(message, view)
        except SipParseError:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Via):
                assert Via.parse(str(item)) == item
            elif isinstance(item, NameAddr):
                assert NameAddr.parse(str(item)) == item
    try:
        if isinstance(message, SipRequest):
            validate_request(message)
        else:
            validate_response(message)
    except SipParseError:
        pass
    if isinstance(message, SipRequest) and isinstance(message.uri, SipUri):
        assert SipUri.parse(str(message.uri)) == message.uri
    again = parse_message(message.to_bytes())
    assert type(again) is type(message)
    assert _without_length(again) == _without_length(message)
    assert again.body == message.body
    return message


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _exercise(data)


@FUZZ
@given(
    st.sampled_from([b"INVITE sip:a@b.example SIP/2.0\r\n", b"SIP/2.0 200 OK\r\n", b""]),
    st.lists(
        st.tuples(
            st.sampled_from(["Via", "v", "From", "To", "t", "CSeq", "Call-ID", "Contact",
                             "Content-Length", "l", "Route", "X"]),
            st.binary(max_size=40),
        ),
        max_size=8,
    ),
    st.binary(max_size=40),
)
def test_random_headers(start: bytes, headers: list[tuple[str, bytes]], body: bytes) -> None:
    data = start + b"".join(n.encode() + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + body
    _exercise(data)


_INSERTS = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b";", b",", b'"', b"<", b">",
            b"%", b"\\", b"@", b"[", b"\xff", b"\r\n ", b"\r\n\r\n"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(_INSERTS))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            lines = bytes(data).split(b"\r\n")
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_corpus(data: bytes) -> None:
    _exercise(data)


def test_every_corpus_message_is_exercised() -> None:
    parsed = [_exercise(data) for data in CORPUS]
    # clerr ncl ltgtruri lwsruri lwsstart trws mcl01 bigcode are refused by parse_message.
    assert sum(m is not None for m in parsed) == len(CORPUS) - 8


# --- StreamFramer ----------------------------------------------------------------------------
def _stream_messages() -> list[bytes]:
    """Every corpus message that parses, re-serialised (so it carries a Content-Length)."""
    out = []
    for data in CORPUS:
        try:
            out.append(parse_message(data).to_bytes())
        except SipParseError:
            continue
    return out


STREAM_MESSAGES = _stream_messages()


def _feed_all(chunks: list[bytes]) -> tuple[list[Message], bool, int]:
    framer = StreamFramer()
    got: list[Message] = []
    try:
        for chunk in chunks:
            got.extend(framer.feed(chunk))
        got.extend(framer.feed(b""))
    except SipParseError:
        return got, True, framer.pings
    return got, False, framer.pings


def _chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(STREAM_MESSAGES), st.sampled_from([b"", b"\r\n", b"\r\n\r\n"])),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(0, 10**6), max_size=30),
)
def test_chunked_stream_equals_whole_stream(
    parts: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(ping + message for message, ping in parts)
    expected = [parse_message(message) for message, _ in parts]
    whole, whole_error, whole_pings = _feed_all([stream])
    assert not whole_error
    assert whole == expected
    assert whole_pings == sum(ping == b"\r\n\r\n" for _, ping in parts)
    chunked, chunked_error, chunked_pings = _feed_all(_chunk(stream, cuts))
    assert (chunked, chunked_error, chunked_pings) == (whole, whole_error, whole_pings)


@FUZZ
@given(st.lists(st.one_of(mutated(), st.binary(max_size=200)), min_size=1, max_size=4),
       st.lists(st.integers(0, 10**6), max_size=30))
def test_broken_streams_only_raise_sip_parse_error(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    whole = _feed_all([stream])
    chunked = _feed_all(_chunk(stream, cuts))
    assert chunked[:2] == whole[:2]
