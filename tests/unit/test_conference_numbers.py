"""E.164 normalisation of access numbers and Request-URI users; ISO 3166 country codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.conference.numbers import (
    NumberError,
    country_of,
    normalize_e164,
    normalize_request_user,
    validate_country,
)


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+49 30 1234567", None, "+49301234567"),
        ("+49 (0)30 1234 5678", None, "+493012345678"),  # "(0)": the trunk prefix, dropped
        ("0049 (0) 30 1234567", None, "+49301234567"),
        ("0049-30-123.4567", None, "+49301234567"),
        ("+44 (20) 7946 0958", None, "+442079460958"),
        ("  +33 1 23 45 67 89 ", None, "+33123456789"),
        ("+1 (212) 555-0100", None, "+12125550100"),
        ("+41/44/668 18 00", None, "+41446681800"),
        ("030 1234567", "DE", "+49301234567"),
        ("030 1234567", "de", "+49301234567"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("1 212 555 0100", "US", "+12125550100"),
        ("0043 1 234567", "DE", "+431234567"),  # international wins over the default
        ("+431234567", "AT", "+431234567"),
        ("+123456789012345", None, "+123456789012345"),  # 15 digits, the maximum
    ],
)
def test_normalise(raw: str, country: str | None, expected: str) -> None:
    assert normalize_e164(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country", "message"),
    [
        ("", None, "empty"),
        ("   ", None, "empty"),
        ("030 1234567", None, "not international"),
        ("12345678", None, "not international"),
        ("+49 30 ABC", None, "other than digits"),
        ("+49-30-12x4567", None, "other than digits"),
        ("+0 30 1234567", None, "never starts with 0"),
        ("000 30 1234567", None, "never starts with 0"),
        ("+49 30", None, "7 to 15 digits"),
        ("+1234567890123456", None, "7 to 15 digits"),
        ("+", None, "digits"),
        ("++4930123456", None, "other than digits"),
        ("+49\u0663\u0663\u0663\u0663\u0663\u0663", None, "other than digits"),  # Arabic digits
        ("30 1234567", "DE", "starts with one 0"),
        ("555-0100", "US", "10 digits"),
        ("030 1234567", "ZZ", "unknown country"),
        ("030 1234567", "JP", "no national numbering rules"),
        ("tel:+4930123456", None, "not international"),
    ],
)
def test_bad_numbers(raw: str, country: str | None, message: str) -> None:
    with pytest.raises(NumberError, match=message):
        normalize_e164(raw, country)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:+49301234567@gw.example.net;user=phone", "+49301234567"),
        ("sips:+49301234567@gw.example.net:5061", "+49301234567"),
        ("sip:0049301234567@10.0.0.1", "+49301234567"),
        ("SIP:+44-20-7946-0958@gw", "+442079460958"),
        ("sip:%2B33123456789@gw", "+33123456789"),
        ("tel:+49-30-1234567", "+49301234567"),
        ("tel:+1-212-555-0100;ext=22", "+12125550100"),
        ("tel:1234567;phone-context=+4930", "+49301234567"),
        ("tel:123-4567;phone-context=+49-30", "+49301234567"),
        ("sip:1234567;phone-context=+4930@gw.example.net;user=phone", "+49301234567"),
        ("+49301234567", "+49301234567"),
        ("+49301234567@gw", "+49301234567"),
    ],
)
def test_request_uri_users(uri: str, expected: str) -> None:
    assert normalize_request_user(uri) == expected


def test_request_uri_user_with_default_country() -> None:
    assert normalize_request_user("sip:0301234567@gw", "DE") == "+49301234567"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sip:gw.example.net", "no user part"),
        ("sip:alice@example.com", "not international"),
        ("sip:@gw", "empty number"),
        ("tel:1234;phone-context=example.com", "domain context"),
        ("tel:1234567;phone-context=+", "bad phone-context"),
        ("tel:1234567;phone-context=+0x", "bad phone-context"),
        ("mailto:+49301234567@example.com", "only sip:"),
        ("http://+49301234567", "only sip:"),
        ("tel:", "empty number"),
    ],
)
def test_bad_request_uris(uri: str, message: str) -> None:
    with pytest.raises(NumberError, match=message):
        normalize_request_user(uri)


@pytest.mark.parametrize(
    ("code", "expected"),
    [("DE", "DE"), ("gb", "GB"), (" fr ", "FR"), ("US", "US"), ("CH", "CH"), ("AT", "AT")],
)
def test_valid_countries(code: str, expected: str) -> None:
    assert validate_country(code) == expected


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("UK", "unknown country"),  # the ISO code is GB
        ("EU", "unknown country"),
        ("XX", "unknown country"),
        ("DEU", "two letters"),
        ("D", "two letters"),
        ("D1", "two letters"),
        ("", "two letters"),
        ("ÄÖ", "two letters"),
    ],
)
def test_invalid_countries(code: str, message: str) -> None:
    with pytest.raises(NumberError, match=message):
        validate_country(code)


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+49301234567", "DE"),
        ("+442079460958", "GB"),
        ("+33123456789", "FR"),
        ("+12125550100", "US"),
        ("+41446681800", "CH"),
        ("+431234567", "AT"),
        ("+4231234567", "LI"),  # longest prefix wins over +42x
        ("+81312345678", None),
    ],
)
def test_country_of(number: str, country: str | None) -> None:
    assert country_of(number) == country


@given(st.text(max_size=40))
def test_any_text_normalises_or_raises_number_error(text: str) -> None:
    try:
        out = normalize_e164(text)
    except NumberError:
        return
    assert out[0] == "+" and out[1:].isdigit() and 7 <= len(out) - 1 <= 15
    assert out[1] != "0"


@given(st.binary(max_size=60))
def test_wire_bytes_as_request_uri_normalise_or_raise(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        out = normalize_request_user(text)
    except NumberError:
        return
    assert out[0] == "+" and out[1:].isascii() and out[1:].isdigit()
