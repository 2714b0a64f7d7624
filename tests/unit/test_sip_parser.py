"""parse_message / validate_request on the RFC 4475 torture corpus and hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.sip.headers import CSeq
from bridge.sip.message import SipParseError, SipRequest, SipResponse
from bridge.sip.parser import (
    SipLimits,
    parse_message,
    parse_request_line,
    parse_status_line,
    validate_request,
    validate_response,
)
from bridge.sip.uri import SipUri

DATA = Path(__file__).resolve().parent.parent / "data"
RFC4475 = DATA / "rfc4475"
VALID = sorted((RFC4475 / "valid").glob("*.dat"))
INVALID = sorted((RFC4475 / "invalid").glob("*.dat"))


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _validate(message: SipRequest | SipResponse) -> None:
    if isinstance(message, SipRequest):
        validate_request(message)
    else:
        validate_response(message)


# ---------------------------------------------------------------------------------------------
# RFC 4475 §3.1.2 / §3.2 / §3.3 / §3.4: what each "invalid" message must produce.
# stage: "parse" -> parse_message raises; "validate" -> parse_message succeeds and
# validate_request/validate_response raises; "accept" -> both succeed (the message is
# syntactically fine; the UA core answers it later: 420, 415, 401, 406, 483/200 ...).
# ---------------------------------------------------------------------------------------------
EXPECTED: dict[str, tuple[str, int | None, str]] = {
    # §3.1.2 Syntactically invalid messages
    "badinv01": ("validate", 400, "3.1.2.1 extraneous header field separators (;;,;,,)"),
    "clerr": ("parse", 400, "3.1.2.2 Content-Length larger than the datagram"),
    "ncl": ("parse", 400, "3.1.2.3 negative Content-Length"),
    "scalar02": ("validate", 400, "3.1.2.4 overlarge CSeq / Max-Forwards / Expires"),
    "scalarlg": ("validate", 400, "3.1.2.5 overlarge scalars in a response: discard"),
    "quotbal": ("validate", 400, "3.1.2.6 unterminated quoted display name"),
    "ltgtruri": ("parse", 400, "3.1.2.7 <> around the Request-URI"),
    "lwsruri": ("parse", 400, "3.1.2.8 LWS inside the Request-URI"),
    "lwsstart": ("parse", 400, "3.1.2.9 several SP in the Request-Line (reject is allowed)"),
    "trws": ("parse", 400, "3.1.2.10 SP at end of the Request-Line (reject is allowed)"),
    "escruri": ("validate", 400, "3.1.2.11 escaped headers in the Request-URI (400 allowed)"),
    "baddate": ("accept", None, "3.1.2.12 non-GMT Date: be liberal, Date is not used"),
    "regbadct": ("validate", 400, "3.1.2.13 addr-spec with '?' not in <> (400 reasonable)"),
    "badaspec": ("validate", 400, "3.1.2.14 spaces inside <addr-spec> (400 reasonable)"),
    "baddn": ("validate", 400, "3.1.2.15 unquoted non-token display name"),
    "badvers": ("validate", 505, "3.1.2.16 SIP/7.0 -> 505 Version Not Supported"),
    "mismatch01": ("validate", 400, "3.1.2.17 CSeq method != Request-Line method"),
    "mismatch02": ("validate", 400, "3.1.2.18 unknown method and CSeq mismatch"),
    "bigcode": ("parse", 400, "3.1.2.19 status code > 699 in a response: drop"),
    # §3.2 Transaction layer
    "badbranch": ("accept", None, "3.2.1 branch is just the magic cookie: parse it"),
    # §3.3 Application layer semantics
    "insuf": ("validate", 400, "3.3.1 missing Call-ID, From, To"),
    "unkscm": ("validate", 416, "3.3.2 unknown Request-URI scheme"),
    "novelsc": ("validate", 416, "3.3.3 known but atypical Request-URI scheme (soap.beep)"),
    # 3.3.4: syntactically valid; the bridge's UA core needs SIP URIs in From/To/Contact, so
    # validate_request refuses it with 416 (a registrar would answer 400).
    "unksm2": ("validate", 416, "3.3.4 non-SIP schemes in To/From/Contact"),
    "bext01": ("accept", None, "3.3.5 Require/Proxy-Require unknown: UA core answers 420"),
    "invut": ("accept", None, "3.3.6 unknown Content-Type: UA core answers 415"),
    "regaut01": ("accept", None, "3.3.7 unknown auth scheme: registrar answers 401"),
    "multi01": ("validate", 400, "3.3.8 several values in single-valued headers"),
    "mcl01": ("parse", 400, "3.3.9 several conflicting Content-Length values"),
    "bcast": ("accept", None, "3.3.10 200 OK with broadcast Via: accept with care"),
    "zeromf": ("accept", None, "3.3.11 Max-Forwards 0 to a UAS: answer normally"),
    "cparam01": ("accept", None, "3.3.12 Contact header parameter"),
    "cparam02": ("accept", None, "3.3.13 Contact URI parameter"),
    "regescrt": ("accept", None, "3.3.14 escaped Route header in a <>-enclosed Contact URI"),
    "sdp01": ("accept", None, "3.3.15 unacceptable Accept: UA core answers 406"),
    # §3.4 Backward compatibility
    "inv2543": ("accept", None, "3.4.1 RFC 2543 INVITE without branch"),
}


def test_expected_table_covers_every_invalid_file() -> None:
    assert {p.stem for p in INVALID} == set(EXPECTED)
    assert len(VALID) == 13


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_rfc4475_valid_messages_parse_and_validate(path: Path) -> None:
    message = parse_message(_read(path))
    _validate(message)
    # The typed views must work on every valid message.
    assert message.vias
    assert message.call_id
    assert isinstance(message.cseq, CSeq)
    assert message.from_.uri.scheme in ("sip", "sips")


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_rfc4475_valid_messages_round_trip(path: Path) -> None:
    first = parse_message(_read(path))
    again = parse_message(first.to_bytes())
    assert type(again) is type(first)
    assert again.headers == first.headers
    assert again.body == first.body
    if isinstance(first, SipRequest):
        assert isinstance(again, SipRequest)
        assert (again.method, again.uri, again.version) == (first.method, first.uri, first.version)
    else:
        assert isinstance(again, SipResponse)
        assert (again.status, again.reason) == (first.status, first.reason)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_rfc4475_invalid_messages(path: Path) -> None:
    stage, status, _why = EXPECTED[path.stem]
    data = _read(path)
    if stage == "parse":
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.status == status
        return
    message = parse_message(data)
    if stage == "accept":
        _validate(message)
        return
    with pytest.raises(SipParseError) as info:
        _validate(message)
    assert info.value.status == status
    assert info.value.reason


def test_wsinv_values_are_unfolded_and_typed() -> None:
    """RFC 4475 §3.1.1.1: folding, odd LWS everywhere, escaped quotes in display names."""
    message = parse_message(_read(RFC4475 / "valid" / "wsinv.dat"))
    assert isinstance(message, SipRequest)
    assert message.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in message.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert message.to.tag == "1918181833n"
    assert message.from_.display_name == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    assert message.headers.get("NewFangledHeader") == (
        "newfangled value continued newfangled value"
    )
    assert message.headers.get("Max-Forwards") == "0068"
    assert message.headers.get("Subject") == ""
    (contact,) = message.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(message.body) == 150


def test_intmeth_odd_method_and_uri() -> None:
    message = parse_message(_read(RFC4475 / "valid" / "intmeth.dat"))
    assert isinstance(message, SipRequest)
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(message.uri, SipUri)
    assert message.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert message.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert message.uri.host == "example.com"
    assert message.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert message.from_.params["fromparam''~+*_!.-%"] == '"работающий"'


def test_escapes_are_decoded_in_uris() -> None:
    esc01 = parse_message(_read(RFC4475 / "valid" / "esc01.dat"))
    assert isinstance(esc01, SipRequest)
    assert isinstance(esc01.uri, SipUri)
    assert esc01.uri.user == "sips:user@example.com"
    assert esc01.to.uri.user == "user"
    assert esc01.from_.uri.user == "I have spaces"
    (contact,) = esc01.contacts
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    escnull = parse_message(_read(RFC4475 / "valid" / "escnull.dat"))
    assert escnull.to.uri.user == "null-\x00-null"
    assert [c.uri.user for c in escnull.contacts] == ["\x00", "\x00\x00"]


def test_esc02_escaped_method_is_a_token_and_escaped_header_name_is_unknown() -> None:
    message = parse_message(_read(RFC4475 / "valid" / "esc02.dat"))
    assert isinstance(message, SipRequest)
    assert message.method == "RE%47IST%45R"
    assert message.cseq.method == "RE%47IST%45R"
    assert len(message.headers.get_all("Contact")) == 2
    assert message.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert message.to.display_name == "%Z%45"


def test_dblreq_datagram_keeps_only_the_first_message() -> None:
    message = parse_message(_read(RFC4475 / "valid" / "dblreq.dat"))
    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"
    assert message.body == b""


def test_semiuri_user_part_with_semicolon() -> None:
    message = parse_message(_read(RFC4475 / "valid" / "semiuri.dat"))
    assert isinstance(message, SipRequest)
    assert isinstance(message.uri, SipUri)
    assert message.uri.user == "user;par=u@example.net"
    assert message.uri.host == "example.com"
    assert message.uri.params == {}
    assert message.headers.values("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_responses_with_odd_reason_phrases() -> None:
    noreason = parse_message(_read(RFC4475 / "valid" / "noreason.dat"))
    assert isinstance(noreason, SipResponse)
    assert (noreason.status, noreason.reason) == (100, "")
    unreason = parse_message(_read(RFC4475 / "valid" / "unreason.dat"))
    assert isinstance(unreason, SipResponse)
    assert unreason.status == 200
    assert unreason.reason.startswith("= 2**3 * 5**2 но")


def test_mpart01_binary_body_is_exact() -> None:
    data = _read(RFC4475 / "valid" / "mpart01.dat")
    message = parse_message(data)
    assert len(message.body) == 553
    assert data.endswith(message.body)
    assert message.vias[0].params["rport"] is None


# ---------------------------------------------------------------------------------------------
# Byte-exact serialisation of typical messages
# ---------------------------------------------------------------------------------------------
FIXTURES = ["trunk_invite.sip", "trunk_200ok.sip", "bridge_bye.sip"]


@pytest.mark.parametrize("name", FIXTURES)
def test_typical_messages_serialize_byte_exact(name: str) -> None:
    data = (DATA / "sip" / name).read_bytes()
    message = parse_message(data)
    _validate(message)
    assert message.to_bytes() == data


def test_trunk_invite_fields() -> None:
    message = parse_message((DATA / "sip" / "trunk_invite.sip").read_bytes())
    assert isinstance(message, SipRequest)
    assert message.method == "INVITE"
    assert message.uri == SipUri(
        "sip", "+4930901820", None, "192.0.2.10", 5060, {"transport": "udp"}, {}
    )
    via = message.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "203.0.113.45", 5060)
    assert via.branch == "z9hG4bK1a2b3c4d5e6f7081"
    assert "rport" in via.params and via.rport is None
    assert message.from_.display_name == "+49 170 1234567"
    assert message.from_.tag == "as5f3e8a21"
    assert message.from_.uri.params == {"user": "phone"}
    assert message.to.tag is None
    assert message.content_type == "application/sdp"
    assert message.body.startswith(b"v=0\r\n") and message.body.endswith(b"a=sendrecv\r\n")


def test_200ok_via_received_rport() -> None:
    message = parse_message((DATA / "sip" / "trunk_200ok.sip").read_bytes())
    assert isinstance(message, SipResponse)
    via = message.top_via
    assert via.rport == 5060
    assert via.received == "203.0.113.45"
    assert message.to.tag == "b7e41c09d2"


# ---------------------------------------------------------------------------------------------
# Framing, tolerance and bounds
# ---------------------------------------------------------------------------------------------
OPTIONS = (
    b"OPTIONS sip:bridge@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKopt1\r\n"
    b"From: <sip:probe@198.51.100.7>;tag=p1\r\n"
    b"To: <sip:bridge@192.0.2.10>\r\n"
    b"Call-ID: opt-1@198.51.100.7\r\n"
    b"CSeq: 7 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_leading_crlf_keepalives_are_skipped() -> None:
    message = parse_message(b"\r\n\r\n\r\n" + OPTIONS)
    assert isinstance(message, SipRequest)
    assert message.method == "OPTIONS"


def test_only_crlf_is_not_a_message() -> None:
    with pytest.raises(SipParseError):
        parse_message(b"\r\n\r\n")
    with pytest.raises(SipParseError):
        parse_message(b"")


def test_bare_lf_line_ends_are_tolerated() -> None:
    message = parse_message(OPTIONS.replace(b"\r\n", b"\n"))
    assert message.headers == parse_message(OPTIONS).headers


def test_bare_cr_inside_a_header_is_rejected() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(OPTIONS.replace(b"tag=p1", b"tag=p\r1"))
    assert info.value.status == 400


def test_missing_final_empty_line_on_a_datagram_is_tolerated() -> None:
    message = parse_message(OPTIONS[:-2])
    assert message.headers == parse_message(OPTIONS).headers
    with pytest.raises(SipParseError):
        parse_message(OPTIONS[:-4])  # truncated inside the last header line


def test_compact_forms_and_case_insensitive_names() -> None:
    data = (
        b"BYE sip:a@192.0.2.1 SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKc\r\n"
        b"f: <sip:b@192.0.2.2>;tag=1\r\n"
        b"t: <sip:a@192.0.2.1>;tag=2\r\n"
        b"i: compact@192.0.2.2\r\n"
        b"cSeQ: 3 BYE\r\n"
        b"l: 0\r\n"
        b"\r\n"
    )
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    validate_request(message)
    assert message.call_id == "compact@192.0.2.2"
    assert [name for name, _ in message.headers] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Content-Length",
    ]


def test_whitespace_before_colon_and_folding() -> None:
    data = OPTIONS.replace(b"Call-ID: opt-1", b"Call-ID \t :\r\n   opt-1")
    assert parse_message(data).call_id == "opt-1@198.51.100.7"


def test_continuation_before_first_header_is_rejected() -> None:
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n continued\r\n\r\n")


def test_header_without_colon_or_bad_name_is_rejected() -> None:
    with pytest.raises(SipParseError):
        parse_message(OPTIONS.replace(b"Max-Forwards: 70", b"Max-Forwards 70"))
    with pytest.raises(SipParseError):
        parse_message(OPTIONS.replace(b"Max-Forwards:", b"Max Forwards:"))


def test_body_is_cut_to_content_length() -> None:
    data = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 4") + b"abcdEXTRA"
    assert parse_message(data).body == b"abcd"


def test_short_body_is_an_error() -> None:
    data = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 10") + b"abcd"
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400


def test_missing_content_length_on_a_datagram_takes_the_rest() -> None:
    data = OPTIONS.replace(b"Content-Length: 0\r\n", b"") + b"hello"
    assert parse_message(data).body == b"hello"


def test_identical_repeated_content_length_frames_but_does_not_validate() -> None:
    data = OPTIONS.replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl: 0\r\n")
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    with pytest.raises(SipParseError):
        validate_request(message)


def test_message_too_large_is_513() -> None:
    big = OPTIONS + b"x" * 70000
    with pytest.raises(SipParseError) as info:
        parse_message(big)
    assert info.value.status == 513


def test_header_count_and_line_length_bounds() -> None:
    limits = SipLimits(max_headers=10, max_line_length=100)
    many = OPTIONS.replace(b"\r\n\r\n", b"\r\n" + b"X-A: 1\r\n" * 10 + b"\r\n")
    with pytest.raises(SipParseError):
        parse_message(many, limits)
    long_line = OPTIONS.replace(b"Max-Forwards: 70", b"Subject: " + b"s" * 200)
    with pytest.raises(SipParseError):
        parse_message(long_line, limits)
    assert parse_message(OPTIONS, limits).call_id == "opt-1@198.51.100.7"


def test_non_utf8_header_octets_round_trip_exactly() -> None:
    extra = b"Max-Forwards: 70\r\nSubject: caf\xe9 \xff\r\n"
    data = OPTIONS.replace(b"Max-Forwards: 70\r\n", extra)
    message = parse_message(data)
    assert message.headers.get("Subject") == "caf\udce9 \udcff"
    assert message.to_bytes() == data


def test_ipv6_hosts() -> None:
    data = (
        b"INVITE sip:conf@[2001:db8::10]:5062;transport=tcp SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP [2001:db8::7]:5070;branch=z9hG4bK6;received=[2001:db8::8];rport=5071\r\n"
        b"From: \"Ann\" <sip:ann@[2001:db8::7]:5070>;tag=a\r\n"
        b"To: <sip:conf@[2001:db8::10]>\r\n"
        b"Call-ID: v6@2001:db8::7\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    validate_request(message)
    assert isinstance(message.uri, SipUri)
    assert (message.uri.host, message.uri.port) == ("[2001:db8::10]", 5062)
    via = message.top_via
    assert (via.host, via.port, via.received, via.rport) == (
        "[2001:db8::7]", 5070, "[2001:db8::8]", 5071,
    )
    assert message.from_.uri.host == "[2001:db8::7]"
    assert message.to_bytes() == data


# ---------------------------------------------------------------------------------------------
# Start lines
# ---------------------------------------------------------------------------------------------
def test_parse_request_line() -> None:
    method, uri, version = parse_request_line("INVITE sip:a@b.example SIP/2.0")
    assert (method, str(uri), version) == ("INVITE", "sip:a@b.example", "SIP/2.0")
    assert parse_request_line("OPTIONS mailto:x@y.example SIP/2.0")[1] == "mailto:x@y.example"
    for bad in (
        "INVITE sip:a@b SIP/2.0 ",
        "INVITE  sip:a@b SIP/2.0",
        "INVITE <sip:a@b> SIP/2.0",
        "INV(TE sip:a@b SIP/2.0",
        "INVITE sip:a@b SIP/2",
        "INVITE sip:a@b HTTP/1.1",
        "INVITE",
        "",
    ):
        with pytest.raises(SipParseError):
            parse_request_line(bad)


def test_parse_status_line() -> None:
    assert parse_status_line("SIP/2.0 180 Ringing") == ("SIP/2.0", 180, "Ringing")
    assert parse_status_line("SIP/2.0 183") == ("SIP/2.0", 183, "")
    assert parse_status_line("SIP/2.0 200 Very  OK") == ("SIP/2.0", 200, "Very  OK")
    for bad in ("SIP/2.0 99 Low", "SIP/2.0 700 High", "SIP/2.0 2000 OK", "SIP/2.0 OK", "SIP/"):
        with pytest.raises(SipParseError):
            parse_status_line(bad)


def test_http_response_is_not_sip() -> None:
    with pytest.raises(SipParseError):
        parse_message(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


# ---------------------------------------------------------------------------------------------
# validate_request
# ---------------------------------------------------------------------------------------------
def _request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def test_validate_accepts_a_minimal_request_without_max_forwards() -> None:
    validate_request(_request(OPTIONS.replace(b"Max-Forwards: 70\r\n", b"")))


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        (b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKopt1\r\n", b"", 400),
        (b"From: <sip:probe@198.51.100.7>;tag=p1\r\n", b"", 400),
        (b"To: <sip:bridge@192.0.2.10>\r\n", b"", 400),
        (b"Call-ID: opt-1@198.51.100.7\r\n", b"", 400),
        (b"CSeq: 7 OPTIONS\r\n", b"", 400),
        (b"CSeq: 7 OPTIONS", b"CSeq: 7 INVITE", 400),
        (b"CSeq: 7 OPTIONS", b"CSeq: 2147483648 OPTIONS", 400),
        (b"CSeq: 7 OPTIONS", b"CSeq: OPTIONS", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: seventy", 400),
        (b"Via: SIP/2.0/UDP 198.51.100.7:5060", b"Via: SIP/2.0/UDP 198.51.100.7:99999", 400),
        (b"Via: SIP/2.0/UDP", b"Via: SIP/2.0", 400),
        (b"From: <sip:probe@198.51.100.7>", b"From: <sip:probe@198.51.100.7", 400),
        (b"To: <sip:bridge@192.0.2.10>", b"To: <http://example.com/>", 416),
        (b"OPTIONS sip:bridge@192.0.2.10 SIP/2.0", b"OPTIONS sip:bridge@192.0.2.10 SIP/3.0", 505),
        (b"OPTIONS sip:bridge@192.0.2.10 SIP", b"OPTIONS im:bridge@192.0.2.10 SIP", 416),
        (b"Call-ID: opt-1@198.51.100.7", b"Call-ID: opt-1@198.51.100.7\r\ni: other", 400),
        (b"Content-Length: 0\r\n", b"Content-Type: application sdp\r\nContent-Length: 0\r\n", 400),
        (b"Content-Length: 0\r\n", b"Require: 100rel, @bad\r\nContent-Length: 0\r\n", 400),
    ],
)
def test_validate_request_refuses(old: bytes, new: bytes, status: int) -> None:
    assert old in OPTIONS
    request = _request(OPTIONS.replace(old, new))
    with pytest.raises(SipParseError) as info:
        validate_request(request)
    assert info.value.status == status


def test_validate_body_needs_content_type() -> None:
    request = _request(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 3") + b"abc")
    with pytest.raises(SipParseError):
        validate_request(request)
    validate_request(
        _request(
            OPTIONS.replace(b"Content-Length: 0", b"Content-Type: text/plain\r\nContent-Length: 3")
            + b"abc"
        )
    )


def test_validate_content_length_must_match_body() -> None:
    request = _request(OPTIONS)
    validate_request(request)
    request.body = b"late body"
    request.headers.add("Content-Type", "text/plain")
    with pytest.raises(SipParseError) as info:
        validate_request(request)
    assert info.value.status == 400
    assert "Content-Length" in info.value.reason


def test_validate_response() -> None:
    ok = parse_message((DATA / "sip" / "trunk_200ok.sip").read_bytes())
    assert isinstance(ok, SipResponse)
    validate_response(ok)
    ok.version = "SIP/1.0"
    with pytest.raises(SipParseError) as info:
        validate_response(ok)
    assert info.value.status == 505
    ok.version = "SIP/2.0"
    ok.headers.remove("CSeq")
    with pytest.raises(SipParseError):
        validate_response(ok)
