"""Typed header values: Via, name-addr (From/To/Contact/Route), CSeq, and small parse helpers.

Grammar implemented (RFC 3261 §25.1; RFC 3581 for ``rport``)::

    token          =  1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
    SWS  =  [LWS]                      ; sep whitespace
    SLASH = SWS "/" SWS   SEMI = SWS ";" SWS   EQUAL = SWS "=" SWS   COLON = SWS ":" SWS
    LAQUOT = SWS "<"      RAQUOT = ">" SWS
    quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
    quoted-pair    =  "\\" (%x00-09 / %x0B-0C / %x0E-7F)
    generic-param  =  token [ EQUAL gen-value ]
    gen-value      =  token / host / quoted-string

    Via            =  ( "Via" / "v" ) HCOLON via-parm *(COMMA via-parm)
    via-parm       =  sent-protocol LWS sent-by *( SEMI via-params )
    via-params     =  via-ttl / via-maddr / via-received / via-branch / via-extension
    sent-protocol  =  protocol-name SLASH protocol-version SLASH transport
    sent-by        =  host [ COLON port ]
    response-port  =  "rport" [EQUAL 1*DIGIT]                    ; RFC 3581 §3

    from-spec      =  ( name-addr / addr-spec ) *( SEMI from-param )
    name-addr      =  [ display-name ] LAQUOT addr-spec RAQUOT
    display-name   =  *(token LWS)/ quoted-string

    CSeq           =  "CSeq" HCOLON 1*DIGIT LWS Method
    media-type     =  m-type SLASH m-subtype *(SEMI m-parameter)

Header values reach this module already unfolded (the parser replaces CRLF+WSP by a space), so
LWS is plain spaces and tabs here. Every error is a :class:`SipParseError` with status 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bridge.sip.errors import SipParseError
from bridge.sip.uri import SipUri, format_host, parse_hostport

_TOKEN_CLASS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN_RE = re.compile(f"[{_TOKEN_CLASS}]+")
_WS = " \t"
# gen-value = token / host / quoted-string ; host adds ':' '[' ']' for IPv6 references.
_GEN_VALUE_RE = re.compile(rf'[{_TOKEN_CLASS}:\[\]]+|"(?:[^"\\]|\\.)*"', re.DOTALL)
_VIA_RE = re.compile(
    rf"([{_TOKEN_CLASS}]+)[ \t]*/[ \t]*([{_TOKEN_CLASS}]+)[ \t]*/[ \t]*([{_TOKEN_CLASS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]+))?[ \t]*(;.*)?",
    re.DOTALL,
)
_DIGITS_RE = re.compile(r"[0-9]+")
_LWS_RE = re.compile(r"[ \t]+")
_CSEQ_RE = re.compile(rf"[ \t]*([0-9]+)[ \t]+([{_TOKEN_CLASS}]+)[ \t]*")

MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: "MUST be less than 2**31"


def is_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None


def scan_quoted(text: str, start: int) -> tuple[int, str]:
    """Scan a quoted-string whose opening DQUOTE is at ``start``.

    Returns (index after the closing DQUOTE, unescaped content). Raises 400 if unterminated.
    """
    close = text.find('"', start + 1)
    if close >= 0 and text.find("\\", start + 1, close) < 0:  # fast path: no quoted-pair
        return close + 1, text[start + 1 : close]
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return i + 1, "".join(out)
        else:
            out.append(ch)
            i += 1
    raise SipParseError("Unterminated quoted string")


def quote(text: str) -> str:
    """Render ``text`` as a quoted-string, escaping '"' and '\\' (RFC 3261 §25.1)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` characters that are not inside a quoted-string."""
    if '"' not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i, _ = scan_quoted(text, i)
            continue
        if ch == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )``; a leading ';' is optional.

    Names are lower-cased; values are kept as written (a quoted-string keeps its quotes, so
    ``str()`` of the owning header reproduces it). A flag parameter maps to None. Empty
    parameters (``;;``) and malformed names/values raise SipParseError(400). The first
    occurrence of a repeated name wins.
    """
    text = text.strip(_WS)
    if not text:
        return {}
    if text[0] == ";":
        text = text[1:]
    params: dict[str, str | None] = {}
    for item in split_outside_quotes(text, ";"):
        name, eq, value = item.partition("=")
        name = name.strip(_WS)
        if not TOKEN_RE.fullmatch(name):
            raise SipParseError(f"Malformed parameter {item.strip(_WS)!r}")
        key = name.lower()
        if eq:
            value = value.strip(_WS)
            if not _GEN_VALUE_RE.fullmatch(value):
                raise SipParseError(f"Malformed value of parameter {name!r}")
            params.setdefault(key, value)
        else:
            params.setdefault(key, None)
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def unquote_param(value: str | None) -> str | None:
    """The content of a parameter value that may be a quoted-string."""
    if value is not None and value.startswith('"'):
        return scan_quoted(value, 0)[1]
    return value


def parse_int_header(text: str, max_value: int = 2**32 - 1) -> int:
    """``1*DIGIT`` (Max-Forwards, Expires, Content-Length, RSeq ...), bounded by ``max_value``.

    Leading zeros are accepted (RFC 4475 wsinv ``0068``); overlong values raise 400
    (RFC 4475 §3.1.2.4 scalar02).
    """
    text = text.strip(_WS)
    if not _DIGITS_RE.fullmatch(text):
        raise SipParseError(f"Not a number: {text[:40]!r}")
    stripped = text.lstrip("0")
    if len(stripped) > len(str(max_value)):
        raise SipParseError(f"Number too large: {text[:40]!r}")
    value = int(text)
    if value > max_value:
        raise SipParseError(f"Number too large: {value}")
    return value


def parse_option_tags(text: str) -> list[str]:
    """``option-tag *(COMMA option-tag)`` of Require, Proxy-Require, Supported, Unsupported."""
    tags: list[str] = []
    for part in text.split(","):
        tag = part.strip(_WS)
        if not tag:
            continue
        if not TOKEN_RE.fullmatch(tag):
            raise SipParseError(f"Malformed option tag {tag!r}")
        tags.append(tag)
    return tags


def parse_content_type(text: str) -> tuple[str, dict[str, str | None]]:
    """``media-type = m-type SLASH m-subtype *(SEMI m-parameter)``.

    Returns (``"type/subtype"`` lower-cased, parameters with lower-cased names).
    """
    head, semi, rest = text.partition(";")
    mtype, slash, subtype = head.partition("/")
    mtype, subtype = mtype.strip(_WS), subtype.strip(_WS)
    if not slash or not TOKEN_RE.fullmatch(mtype) or not TOKEN_RE.fullmatch(subtype):
        raise SipParseError(f"Malformed media type {head.strip(_WS)!r}")
    params = parse_params(rest) if semi else {}
    return f"{mtype}/{subtype}".lower(), params


@dataclass(slots=True)
class Via:
    transport: str = "UDP"  # upper-cased
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # keys lower-cased

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def rport(self) -> int | None:
        """The ``rport`` value filled in by a server (RFC 3581 §4), None if absent or a flag."""
        value = self.params.get("rport")
        return int(value) if value is not None else None

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one via-parm (the parser has already split the field at top-level commas)."""
        m = _VIA_RE.fullmatch(text.strip(_WS))
        if m is None:
            raise SipParseError(f"Malformed Via {text[:80]!r}")
        _proto, _version, transport, host, port_text, param_text = m.groups()
        host, _ = parse_hostport(host)
        port = parse_int_header(port_text, 65535) if port_text is not None else None
        params = parse_params(param_text) if param_text else {}
        for name in ("rport", "ttl"):
            value = params.get(name)
            if value is not None:
                parse_int_header(value, 65535 if name == "rport" else 255)
        for name in ("branch", "received", "maddr"):
            if name in params and params[name] is None:
                raise SipParseError(f"Via parameter {name} needs a value")
        return cls(transport.upper(), host, port, params)

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {format_host(self.host, self.port)}" + format_params(
            self.params
        )


@dataclass(slots=True)
class NameAddr:
    uri: SipUri
    display_name: str | None = None  # unquoted
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse ``( name-addr / addr-spec ) *( SEMI generic-param )`` (§20.10, §20.20).

        In the bare addr-spec form every ';' parameter belongs to the header, not the URI,
        and the URI may not contain ',', '?' or ';' (§20.10). A non-SIP URI raises 416.
        """
        s = text.strip(_WS)
        display: str | None = None
        if s.startswith('"'):
            end, display = scan_quoted(s, 0)
            rest = s[end:].lstrip(_WS)
            if not rest.startswith("<"):
                raise SipParseError("Display name not followed by <addr-spec>")
            lt = len(s) - len(rest)
        else:
            lt = s.find("<")
            if lt >= 0:
                raw = s[:lt].strip(_WS)
                if raw:
                    words = _LWS_RE.split(raw)
                    if not all(TOKEN_RE.fullmatch(w) for w in words):
                        raise SipParseError(f"Display name is neither token nor quoted: {raw!r}")
                    display = raw
        if lt >= 0:
            gt = s.find(">", lt)
            if gt < 0:
                raise SipParseError("Missing '>' in name-addr")
            uri = SipUri.parse(s[lt + 1 : gt])
            tail = s[gt + 1 :]
            if tail.strip(_WS) and not tail.lstrip(_WS).startswith(";"):
                raise SipParseError("Junk after name-addr")
            return cls(uri, display, parse_params(tail))
        uri_text, semi, tail = s.partition(";")
        uri_text = uri_text.strip(_WS)
        if any(c in uri_text for c in ",? \t"):
            raise SipParseError("addr-spec with ',', '?' or space must be in <> (§20.10)")
        return cls(SipUri.parse(uri_text), None, parse_params(tail) if semi else {})

    def __str__(self) -> str:
        head = f"<{self.uri}>"
        if self.display_name is not None:
            head = f"{quote(self.display_name)} {head}"
        return head + format_params(self.params)


@dataclass(slots=True, frozen=True)
class CSeq:
    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """``CSeq = 1*DIGIT LWS Method`` with the number below 2**31 (§8.1.1.5)."""
        m = _CSEQ_RE.fullmatch(text)
        if m is None:
            raise SipParseError(f"Malformed CSeq {text[:60]!r}")
        return cls(parse_int_header(m.group(1), MAX_CSEQ), m.group(2))

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
