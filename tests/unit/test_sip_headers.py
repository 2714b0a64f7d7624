"""Via, name-addr, CSeq and the small header parse helpers (RFC 3261 §20, §25; RFC 3581)."""

from __future__ import annotations

import pytest

from bridge.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    parse_content_type,
    parse_int_header,
    parse_option_tags,
    parse_params,
    unquote_param,
)
from bridge.sip.message import SipParseError
from bridge.sip.uri import SipUri


# --- Via -------------------------------------------------------------------------------------
def test_via_basic() -> None:
    via = Via.parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport")
    params = {"branch": "z9hG4bK776asdhds", "rport": None}
    assert via == Via("UDP", "pc33.atlanta.com", 5066, params)
    assert via.branch == "z9hG4bK776asdhds"
    assert via.rport is None
    assert str(via) == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport"


def test_via_lws_around_slashes_and_params() -> None:
    via = Via.parse("SIP  / 2.0  / tcp     spindle.example.com   ; branch  =   z9hG4bK9ikj8 ")
    assert (via.transport, via.host, via.port) == ("TCP", "spindle.example.com", None)
    assert via.params == {"branch": "z9hG4bK9ikj8"}
    assert str(via) == "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8"


def test_via_rport_received_maddr_ttl_ipv6() -> None:
    via = Via.parse(
        "SIP/2.0/UDP [2001:db8::9] : 5060;received=[2001:db8::1];rport=61000;maddr=224.2.0.1;ttl=16"
    )
    assert (via.host, via.port) == ("[2001:db8::9]", 5060)
    assert via.received == "[2001:db8::1]"
    assert via.rport == 61000
    assert via.params["maddr"] == "224.2.0.1"
    assert via.params["ttl"] == "16"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 192.0.2.1",
        "SIP/2.0/UDP 192.0.2.1;;",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP 192.0.2.1;branch",
        "SIP/2.0/UDP 192.0.2.1;rport=x",
        "SIP/2.0/UDP 192.0.2.1;ttl=256",
        "SIP/2.0/UDP 192.0.2.1:70000",
        "SIP/2.0/UDP 192.0.2.1 junk",
        "SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK1",
        "SIP/2.0/UDP a.example, SIP/2.0/UDP b.example",
    ],
)
def test_via_malformed(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        Via.parse(text)
    assert info.value.status == 400


# --- name-addr -------------------------------------------------------------------------------
def test_name_addr_quoted_display_with_escapes() -> None:
    value = NameAddr.parse('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert value.display_name == 'J Rosenberg \\"'
    assert value.uri == SipUri(user="jdrosen", host="example.com")
    assert value.params == {"tag": "98asjd8"}
    assert value.tag == "98asjd8"
    assert str(value) == '"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8'


def test_name_addr_token_display_and_no_space_before_laquot() -> None:
    value = NameAddr.parse("caller<sip:caller@example.com>;tag=323")
    assert value.display_name == "caller"
    assert value.tag == "323"
    value = NameAddr.parse("Bob Smith <sip:bob@example.com>")
    assert value.display_name == "Bob Smith"
    assert str(value) == '"Bob Smith" <sip:bob@example.com>'


def test_name_addr_comma_inside_quotes() -> None:
    value = NameAddr.parse('"Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423')
    assert value.display_name == "Bell, Alexander"


def test_addr_spec_params_belong_to_the_header() -> None:
    """§20.10: without <>, ';' parameters are header parameters, not URI parameters."""
    value = NameAddr.parse("sip:+12125551212@server.phone2net.com;tag=887s")
    assert value.uri.params == {}
    assert value.params == {"tag": "887s"}
    enclosed = NameAddr.parse("<sip:+12125551212@server.phone2net.com;user=phone>;tag=887s")
    assert enclosed.uri.params == {"user": "phone"}
    assert enclosed.params == {"tag": "887s"}


def test_name_addr_uri_escaped_header_inside_brackets() -> None:
    value = NameAddr.parse("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>")
    assert value.uri.headers == {"Route": "<sip:sip.example.com>"}


def test_contact_params_quoted_value_kept() -> None:
    value = NameAddr.parse(
        '<sip:a@192.0.2.1>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";q=0.7'
    )
    assert value.params["q"] == "0.7"
    instance = value.params["+sip.instance"]
    assert instance == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    assert unquote_param(instance) == "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    assert NameAddr.parse(str(value)) == value


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ('"Mr. J. User <sip:j.user@example.com>', 400),
        ("Bell, Alexander <sip:a.g.bell@example.com>;tag=43", 400),
        ('"Watson, Thomas" < sip:t.watson@example.org >', 400),
        ("sip:user@example.com?Route=%3Csip:sip.example.com%3E", 400),
        ('"Joe" <sip:joe@example.org>;;;;', 400),
        ("<sip:joe@example.org", 400),
        ("<sip:joe@example.org> junk", 400),
        ('"Joe" sip:joe@example.org', 400),
        ("<http://www.example.com>;tag=3234233", 416),
        ("isbn:2983792873", 416),
        ("", 400),
    ],
)
def test_name_addr_malformed(text: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        NameAddr.parse(text)
    assert info.value.status == status


# --- CSeq ------------------------------------------------------------------------------------
def test_cseq() -> None:
    assert CSeq.parse("4711 INVITE") == CSeq(4711, "INVITE")
    assert CSeq.parse(" 0009   INVITE ") == CSeq(9, "INVITE")
    assert CSeq.parse(f"{2**31 - 1} BYE") == CSeq(2**31 - 1, "BYE")
    assert str(CSeq(5, "ACK")) == "5 ACK"


@pytest.mark.parametrize(
    "text",
    ["", "INVITE", "1", "-1 INVITE", "1 INVITE x", "2147483648 INVITE", "36893488147419103232 R",
     "1 INV<TE", "0x10 INVITE"],
)
def test_cseq_malformed(text: str) -> None:
    with pytest.raises(SipParseError):
        CSeq.parse(text)


# --- helpers ---------------------------------------------------------------------------------
def test_parse_params() -> None:
    assert parse_params("") == {}
    assert parse_params(";lr") == {"lr": None}
    assert parse_params("; Tag = abc ;Q=0.5;flag") == {"tag": "abc", "q": "0.5", "flag": None}
    assert parse_params('a="x;y,z";b=1') == {"a": '"x;y,z"', "b": "1"}
    assert parse_params(";received=[2001:db8::1]") == {"received": "[2001:db8::1]"}
    assert parse_params(";tag=1;tag=2") == {"tag": "1"}
    for bad in (";;", ";=x", ";a=", ";a b=c", ';a="open', ";a=<x>"):
        with pytest.raises(SipParseError):
            parse_params(bad)


def test_parse_int_header() -> None:
    assert parse_int_header(" 0068 ") == 68
    assert parse_int_header("70", 255) == 70
    assert parse_int_header("4294967295") == 2**32 - 1
    for bad, limit in (("256", 255), ("-1", 255), ("", 255), ("1e3", 2**32), ("9" * 400, 2**32)):
        with pytest.raises(SipParseError):
            parse_int_header(bad, limit)


def test_parse_option_tags() -> None:
    assert parse_option_tags("100rel, timer,replaces") == ["100rel", "timer", "replaces"]
    assert parse_option_tags("") == []
    with pytest.raises(SipParseError):
        parse_option_tags("100rel, tim er")


def test_parse_content_type() -> None:
    assert parse_content_type("application/SDP") == ("application/sdp", {})
    assert parse_content_type("multipart/mixed;boundary=7a9cbec02ceef655") == (
        "multipart/mixed",
        {"boundary": "7a9cbec02ceef655"},
    )
    assert parse_content_type('text/plain ; charset="UTF-8"') == (
        "text/plain",
        {"charset": '"UTF-8"'},
    )
    for bad in ("application", "application/", "/sdp", "appli cation/sdp", "a/b;;"):
        with pytest.raises(SipParseError):
            parse_content_type(bad)
