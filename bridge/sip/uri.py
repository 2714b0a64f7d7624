"""SIP/SIPS/tel URIs (RFC 3261 §19.1, §25.1; RFC 3966).

Grammar implemented (RFC 3261 §25.1)::

    SIP-URI          =  "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    SIPS-URI         =  "sips:" [ userinfo ] hostport uri-parameters [ headers ]
    userinfo         =  ( user / telephone-subscriber ) [ ":" password ] "@"
    user             =  1*( unreserved / escaped / user-unreserved )
    user-unreserved  =  "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
    password         =  *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
    hostport         =  host [ ":" port ]
    host             =  hostname / IPv4address / IPv6reference
    uri-parameters   =  *( ";" uri-parameter)
    other-param      =  pname [ "=" pvalue ]
    pname            =  1*paramchar
    pvalue           =  1*paramchar
    paramchar        =  param-unreserved / unreserved / escaped
    param-unreserved =  "[" / "]" / "/" / ":" / "&" / "+" / "$"
    headers          =  "?" header *( "&" header )
    header           =  hname "=" hvalue
    hname            =  1*( hnv-unreserved / unreserved / escaped )
    hvalue           =  *( hnv-unreserved / unreserved / escaped )
    hnv-unreserved   =  "[" / "]" / "/" / "?" / ":" / "+" / "$"
    unreserved       =  alphanum / mark
    mark             =  "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
    escaped          =  "%" HEXDIG HEXDIG

The user part, password, parameter names/values and header names/values are stored unescaped
(§19.1.2); ``str()`` re-escapes every character outside the set allowed for that component.
A ``tel:`` URI (RFC 3966) keeps the number in ``user`` and its parameters in ``params``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bridge.sip.errors import SipParseError

_ALPHANUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_MARK = "-_.!~*'()"
_UNRESERVED = frozenset(_ALPHANUM + _MARK)
_USER_SAFE = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_SAFE = _UNRESERVED | frozenset("&=+$,")
_PARAM_SAFE = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_SAFE = _UNRESERVED | frozenset("[]/?:+$")
# What may appear raw (unescaped) on the wire in each component: the safe set plus '%'.
_USER_WIRE = _USER_SAFE | {"%"}
_PASSWORD_WIRE = _PASSWORD_SAFE | {"%"}
_PARAM_WIRE = _PARAM_SAFE | {"%"}
_HEADER_WIRE = _HEADER_SAFE | {"%"}

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )   (RFC 3261 §25.1, RFC 2396)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# hostname = *( domainlabel "." ) toplabel [ "." ]; IPv4address; IPv6reference = "[" IPv6address "]"
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.?")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]")
_HEX = frozenset("0123456789abcdefABCDEF")
# RFC 3966 global-number-digits / local-number-digits: visual separators, digits, '*#', hex for
# local numbers; we accept the union loosely and let the UA core decide.
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")

SUPPORTED_SCHEMES = ("sip", "sips", "tel")


def unescape(text: str) -> str:
    """Decode ``escaped = "%" HEXDIG HEXDIG`` (RFC 3261 §25.1) into characters.

    Escapes are decoded as UTF-8 octets; octets that are not valid UTF-8 are kept as
    surrogate escapes so that :func:`escape` reproduces them exactly. A '%' not followed by two
    hex digits raises SipParseError(400).
    """
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            if i + 2 >= n:
                raise SipParseError(f"Truncated escape in {text!r}")
            hi, lo = text[i + 1], text[i + 2]
            if hi not in _HEX or lo not in _HEX:
                raise SipParseError(f"Bad escape in {text!r}")
            out.append(int(hi + lo, 16))
            i += 3
        else:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def escape(text: str, safe: frozenset[str]) -> str:
    """Percent-encode every character of ``text`` outside ``safe`` (as its UTF-8 octets)."""
    if all(ch in safe for ch in text):
        return text
    parts: list[str] = []
    for ch in text:
        if ch in safe:
            parts.append(ch)
        else:
            parts.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(parts)


def _wire_re(allowed: frozenset[str]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(ch) for ch in sorted(allowed)) + "]*")


_WIRE_RES: dict[frozenset[str], re.Pattern[str]] = {
    charset: _wire_re(charset)
    for charset in (_USER_WIRE, _PASSWORD_WIRE, _PARAM_WIRE, _HEADER_WIRE)
}


def _check_wire(text: str, allowed: frozenset[str], what: str) -> None:
    if _WIRE_RES[allowed].fullmatch(text) is None:
        raise SipParseError(f"Illegal character in URI {what}: {text[:40]!r}")


def _parse_uri_params(text: str) -> dict[str, str | None]:
    """``uri-parameters = *( ";" uri-parameter )``; ``text`` is what follows the first ';'."""
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError("Empty URI parameter")
        _check_wire(name, _PARAM_WIRE, "parameter name")
        if eq:
            if not value:
                raise SipParseError("Empty URI parameter value")
            _check_wire(value, _PARAM_WIRE, "parameter value")
            params.setdefault(unescape(name).lower(), unescape(value))
        else:
            params.setdefault(unescape(name).lower(), None)
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    """``headers = "?" header *( "&" header )``; ``text`` is what follows the '?'."""
    headers: dict[str, str] = {}
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not name or not eq:
            raise SipParseError("Malformed URI header")
        _check_wire(name, _HEADER_WIRE, "header name")
        _check_wire(value, _HEADER_WIRE, "header value")
        headers[unescape(name)] = unescape(value)
    return headers


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise SipParseError(f"Bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise SipParseError(f"Port out of range: {port}")
    return port


def parse_hostport(text: str) -> tuple[str, int | None]:
    """``hostport = host [ ":" port ]``; IPv6 references keep their brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("Unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise SipParseError(f"Bad IPv6 reference {host!r}")
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError(f"Junk after IPv6 reference: {rest!r}")
        return host, _parse_port(rest[1:])
    host, colon, port = text.partition(":")
    if not _HOSTNAME_RE.fullmatch(host):
        raise SipParseError(f"Bad host {host!r}")
    return host, (_parse_port(port) if colon else None)


def format_host(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


@dataclass(slots=True)
class SipUri:
    scheme: str = "sip"  # "sip", "sips" or "tel", lower-cased
    user: str | None = None  # unescaped user part (or the tel number)
    password: str | None = None
    host: str = ""  # hostname, IPv4, or IPv6 reference WITH brackets ("[::1]")
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # keys lower-cased
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raise SipParseError (status 416 for a scheme that is not sip/sips/tel,
        400 for bad syntax)."""
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.fullmatch(scheme):
            raise SipParseError(f"Not a URI: {text!r}")
        scheme = scheme.lower()
        if scheme == "tel":
            return cls._parse_tel(rest)
        if scheme not in ("sip", "sips"):
            raise SipParseError(f"Unsupported URI scheme {scheme!r}", status=416)
        # The first '@' ends the userinfo: neither user nor password may hold a raw '@'.
        user: str | None = None
        password: str | None = None
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            raw_user, pcolon, raw_password = userinfo.partition(":")
            if not raw_user:
                raise SipParseError("Empty user part in URI")
            _check_wire(raw_user, _USER_WIRE, "user")
            user = unescape(raw_user)
            if pcolon:
                _check_wire(raw_password, _PASSWORD_WIRE, "password")
                password = unescape(raw_password)
        rest, qmark, raw_headers = rest.partition("?")
        hostport, semi, raw_params = rest.partition(";")
        host, port = parse_hostport(hostport)
        params = _parse_uri_params(raw_params) if semi else {}
        headers = _parse_uri_headers(raw_headers) if qmark else {}
        return cls(scheme, user, password, host, port, params, headers)

    @classmethod
    def _parse_tel(cls, rest: str) -> SipUri:
        """RFC 3966: ``telephone-uri = "tel:" telephone-subscriber`` (number *par)."""
        number, semi, raw_params = rest.partition(";")
        if not _TEL_NUMBER_RE.fullmatch(number):
            raise SipParseError(f"Bad telephone number {number!r}")
        params = _parse_uri_params(raw_params) if semi else {}
        return cls("tel", number, None, "", None, params, {})

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(self.user or "")
        else:
            if self.user is not None:
                parts.append(escape(self.user, _USER_SAFE))
                if self.password is not None:
                    parts.append(":")
                    parts.append(escape(self.password, _PASSWORD_SAFE))
                parts.append("@")
            parts.append(format_host(self.host, self.port))
        for name, value in self.params.items():
            parts.append(";")
            parts.append(escape(name, _PARAM_SAFE))
            if value is not None:
                parts.append("=")
                parts.append(escape(value, _PARAM_SAFE))
        if self.headers:
            parts.append("?")
            parts.append(
                "&".join(
                    f"{escape(n, _HEADER_SAFE)}={escape(v, _HEADER_SAFE)}"
                    for n, v in self.headers.items()
                )
            )
        return "".join(parts)


# RFC 3261 §19.1.4: these URI parameters, when present in either URI, must match.
_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def uri_equal(a: SipUri, b: SipUri) -> bool:
    """URI comparison of RFC 3261 §19.1.4.

    Scheme and host/params case-insensitive, userinfo case-sensitive (after unescaping), ports
    compared as given (an omitted port does not match an explicit 5060), the parameters user,
    ttl, method, maddr and transport must match when either URI has them, other parameters
    must match only when both have them, and the header components must be equal.
    """
    if a.scheme != b.scheme:
        return False
    if a.scheme == "tel":
        return (a.user or "").replace("-", "").replace(".", "") == (b.user or "").replace(
            "-", ""
        ).replace(".", "") and _params_lower(a) == _params_lower(b)
    if a.user != b.user or a.password != b.password:
        return False
    if a.host.lower() != b.host.lower() or a.port != b.port:
        return False
    pa, pb = _params_lower(a), _params_lower(b)
    for name in _MUST_MATCH_PARAMS:
        if (name in pa or name in pb) and pa.get(name) != pb.get(name):
            return False
    for name in pa.keys() & pb.keys():
        if pa[name] != pb[name]:
            return False
    ha = {n.lower(): v for n, v in a.headers.items()}
    hb = {n.lower(): v for n, v in b.headers.items()}
    return ha == hb


def _params_lower(uri: SipUri) -> dict[str, str | None]:
    return {k: (v.lower() if v is not None else None) for k, v in uri.params.items()}
