"""SipUri parse/str, escaping (RFC 3261 §19.1.2) and comparison (§19.1.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sip.message import SipParseError
from bridge.sip.uri import SipUri, escape, unescape, uri_equal


def test_full_sip_uri() -> None:
    uri = SipUri.parse("sip:alice:secret@atlanta.example.com:5070;transport=tcp;lr?subject=hi&x=y")
    assert uri == SipUri(
        scheme="sip",
        user="alice",
        password="secret",
        host="atlanta.example.com",
        port=5070,
        params={"transport": "tcp", "lr": None},
        headers={"subject": "hi", "x": "y"},
    )
    assert str(uri) == "sip:alice:secret@atlanta.example.com:5070;transport=tcp;lr?subject=hi&x=y"


def test_host_only_and_ipv4() -> None:
    uri = SipUri.parse("sips:192.0.2.4")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sips", None, "192.0.2.4", None)
    assert str(uri) == "sips:192.0.2.4"


def test_ipv6_reference_keeps_brackets() -> None:
    uri = SipUri.parse("sip:bob@[2001:db8::1]:5061;maddr=[2001:db8::2]")
    assert (uri.host, uri.port) == ("[2001:db8::1]", 5061)
    assert uri.params == {"maddr": "[2001:db8::2]"}
    assert str(uri) == "sip:bob@[2001:db8::1]:5061;maddr=[2001:db8::2]"


def test_scheme_and_param_names_are_lower_cased_values_kept() -> None:
    uri = SipUri.parse("SIP:Bob@Biloxi.Example.COM;Transport=TCP;MyFlag")
    assert uri.scheme == "sip"
    assert uri.user == "Bob"
    assert uri.host == "Biloxi.Example.COM"
    assert uri.params == {"transport": "TCP", "myflag": None}
    assert str(uri) == "sip:Bob@Biloxi.Example.COM;transport=TCP;myflag"


def test_escaped_components_are_decoded_and_re_escaped() -> None:
    # RFC 4475 esc01 / escnull / semiuri style escapes.
    uri = SipUri.parse("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips:user@example.com"
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"
    assert SipUri.parse("sip:%75se%72@example.com").user == "user"
    assert str(SipUri.parse("sip:%75se%72@example.com")) == "sip:user@example.com"
    null = SipUri.parse("sip:null-%00-null@example.com")
    assert null.user == "null-\x00-null"
    assert str(null) == "sip:null-%00-null@example.com"
    spaces = SipUri(user="I have spaces", host="example.net")
    assert str(spaces) == "sip:I%20have%20spaces@example.net"
    assert SipUri.parse("sip:h.example;n%61me=v%61lue%25%34%31").params == {"name": "value%41"}


def test_user_unreserved_characters_stay_raw() -> None:
    text = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1@example.com"
    uri = SipUri.parse(text)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1"
    assert str(uri) == text


def test_uri_headers_unescaped() -> None:
    uri = SipUri.parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    assert uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    "text",
    ["http://example.com/", "isbn:2983792873", "name:John_Smith", "soap.beep://192.0.2.103:3002"],
)
def test_other_schemes_are_416(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.status == 416


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip",
        "sip:",
        " sip:a@b.example",
        "sip:a@b.example ",
        "sip:@b.example",
        "sip:a b@c.example",
        "sip:a@b.example:port",
        "sip:a@b.example:65536",
        "sip:a@[2001:db8::1",
        "sip:a@[zz]",
        "sip:a@b.example;;lr",
        "sip:a@b.example;x=",
        "sip:a@b.example;x=%G1",
        "sip:a@b.example;x=%4",
        "sip:a@b.example?noequals",
        "sip:a@b.example?a=<b>",
        "sip:a@b..example",
        "sip:a@b_c.example",
        "tel:call-me-maybe;x",
        "<sip:a@b.example>",
        "1sip:a@b",
    ],
)
def test_malformed_uris_are_400(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.status == 400


def test_escape_unescape_helpers() -> None:
    assert unescape("a%20b%2fc") == "a b/c"
    assert unescape("%E2%82%AC") == "€"
    assert escape("€ x", frozenset("x")) == "%E2%82%AC%20x"
    assert unescape("%FF") == "\udcff"
    assert escape("\udcff", frozenset()) == "%FF"


# RFC 3261 §19.1.4 examples.
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
]
DIFFERENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_uri_equal_rfc3261_equivalent(a: str, b: str) -> None:
    assert uri_equal(SipUri.parse(a), SipUri.parse(b))
    assert uri_equal(SipUri.parse(b), SipUri.parse(a))


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_uri_equal_rfc3261_different(a: str, b: str) -> None:
    assert not uri_equal(SipUri.parse(a), SipUri.parse(b))
    assert not uri_equal(SipUri.parse(b), SipUri.parse(a))


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_host = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
_text = st.text(min_size=1, max_size=12)


@given(
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | _text,
    password=st.none() | st.text(max_size=8),
    host=_host,
    port=st.none() | st.integers(0, 65535),
    params=st.dictionaries(
        _text.map(str.lower).filter(lambda s: s == s.lower()), st.none() | _text, max_size=3
    ),
    headers=st.dictionaries(_text, st.text(max_size=8), max_size=2),
)
def test_str_then_parse_is_identity(
    *,
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: dict[str, str | None],
    headers: dict[str, str],
) -> None:
    """Any unescaped component survives escaping by str() and unescaping by parse()."""
    uri = SipUri(scheme, user, password if user is not None else None, host, port, params, headers)
    assert SipUri.parse(str(uri)) == uri
