"""SIP message parser (RFC 3261 §7, §18.3, §25; RFC 5626 §4.4.1 keepalives; RFC 4475).

Two layers, kept apart on purpose:

* :func:`parse_message` is *syntax*: framing, start line, header lines, Content-Length. It
  returns a :class:`SipRequest`/:class:`SipResponse` whose header values are the text received
  (unfolded), or raises :class:`SipParseError` when the bytes cannot be a SIP message at all.
* :func:`validate_request` / :func:`validate_response` are *semantics*: mandatory headers,
  version (505), Request-URI scheme (416), CSeq/Via/From/To syntax, single-valued headers ...
  They run on a parsed message, so the UAS still has Via/Call-ID/CSeq to answer with the
  ``status`` and ``reason`` the error carries.

Invariant (fuzzed): any ``bytes`` either parse or raise SipParseError, nothing else. Non-UTF-8
octets in the head are decoded with ``surrogateescape`` and re-encoded the same way on output,
so they survive a round trip byte for byte.

ABNF implemented (RFC 3261 §25.1)::

    SIP-message    =  Request / Response
    Request        =  Request-Line *( message-header ) CRLF [ message-body ]
    Request-Line   =  Method SP Request-URI SP SIP-Version CRLF
    Request-URI    =  SIP-URI / SIPS-URI / absoluteURI
    absoluteURI    =  scheme ":" ( hier-part / opaque-part )
    SIP-Version    =  "SIP" "/" 1*DIGIT "." 1*DIGIT
    Response       =  Status-Line *( message-header ) CRLF [ message-body ]
    Status-Line    =  SIP-Version SP Status-Code SP Reason-Phrase CRLF
    Status-Code    =  3DIGIT                     ; extension-code = 3DIGIT
    Reason-Phrase  =  *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
    message-header =  header-name HCOLON header-value *(COMMA header-value) CRLF
    header-name    =  token
    HCOLON         =  *( SP / HTAB ) ":" SWS
    LWS            =  [*WSP CRLF] 1*WSP          ; linear whitespace (folding)
    Content-Length =  ( "Content-Length" / "l" ) HCOLON 1*DIGIT
    Method         =  INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm / extension-method
    extension-method = token

Tolerances (RFC 3261 §7.5, §18.3, RFC 5626): CRLFs before the start line are skipped; bare LF
line ends are accepted; a datagram that ends right after its last header line (no empty line)
is accepted with an empty body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.sip.headers import (
    TOKEN_RE,
    CSeq,
    NameAddr,
    Via,
    parse_content_type,
    parse_int_header,
    parse_option_tags,
)
from bridge.sip.message import (
    SIP_VERSION,
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    split_header_list,
)
from bridge.sip.uri import SUPPORTED_SCHEMES, SipUri


@dataclass(frozen=True, slots=True)
class SipLimits:
    """Size bounds of the parser (tuning values, passed in; defaults in DEFAULT_LIMITS)."""

    max_message_size: int = 65535  # whole message incl. body -> 513 Message Too Large
    max_headers: int = 256  # header lines (incl. continuation lines) -> 400
    max_line_length: int = 8192  # one physical line -> 400
    max_stream_buffer: int = 131072  # StreamFramer: bytes buffered without a full message


DEFAULT_LIMITS = SipLimits()

_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# absoluteURI characters after the scheme: uric = reserved / unreserved / escaped
_URIC_RE = re.compile(r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,%]+")
_STATUS_RE = re.compile(r"[1-6][0-9][0-9]")
_WS = " \t"

# Header fields of which RFC 3261 §7.3.1 / §20 allows exactly one field value.
SINGLE_VALUED = ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length",
                 "Content-Type", "Expires")


def _find_head_end(data: bytes | bytearray, start: int) -> tuple[int, int]:
    """(end of the last header line, start of the body), or (-1, -1) without an empty line.

    The head ends at the first empty line: ``CRLF CRLF``, or with bare LFs ``LF LF``.
    """
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start, crlf if crlf >= 0 else len(data))
    end, body = (lf, lf + 2) if lf >= 0 else (crlf, crlf + 3)
    if end < 0:
        return -1, -1
    if end > start and data[end - 1] == 13:
        end -= 1  # the CR of the last header line's CRLF
    return end, body


def _skip_keepalive(data: bytes | bytearray, start: int = 0) -> int:
    """Index of the first byte that is not CR or LF (RFC 3261 §7.5 / RFC 5626 keepalives)."""
    n = len(data)
    while start < n and data[start] in (13, 10):
        start += 1
    return start


def parse_request_line(line: str) -> tuple[str, SipUri | str, str]:
    """``Request-Line = Method SP Request-URI SP SIP-Version``; exactly one SP between.

    Returns (method, uri, version). The URI is a :class:`SipUri` for sip/sips/tel and the raw
    text for any other syntactically valid absoluteURI (the UAS answers those 416 in
    :func:`validate_request`). LWS inside the URI, extra/trailing SP, ``<uri>`` -> 400
    (RFC 4475 §3.1.2.7-10).
    """
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Malformed Request-Line")
    method, uri_text, version = parts
    if not TOKEN_RE.fullmatch(method):
        raise SipParseError("Malformed method")
    if not _VERSION_RE.fullmatch(version):
        raise SipParseError("Malformed SIP-Version")
    return method, parse_request_uri(uri_text), version


def parse_request_uri(text: str) -> SipUri | str:
    """``Request-URI = SIP-URI / SIPS-URI / absoluteURI`` (a tel: URI is parsed as well)."""
    scheme, colon, rest = text.partition(":")
    if not colon or not rest or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError("Malformed Request-URI")
    if scheme.lower() in SUPPORTED_SCHEMES:
        return SipUri.parse(text)
    if not _URIC_RE.fullmatch(rest):
        raise SipParseError("Malformed Request-URI")
    return text


def parse_status_line(line: str) -> tuple[str, int, str]:
    """``Status-Line = SIP-Version SP Status-Code SP Reason-Phrase``; returns (version,
    status, reason). A missing final SP before an empty reason is tolerated."""
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SipParseError("Malformed Status-Line")
    version, code = parts[0], parts[1]
    if not _VERSION_RE.fullmatch(version):
        raise SipParseError("Malformed SIP-Version")
    if not _STATUS_RE.fullmatch(code):
        raise SipParseError(f"Malformed Status-Code {code[:20]!r}")
    return version, int(code), parts[2] if len(parts) == 3 else ""


def _split_head(head: bytes, limits: SipLimits) -> tuple[str, list[tuple[str, str]]]:
    """Decode the head, unfold continuation lines, split ``name HCOLON value``."""
    text = head.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SipParseError("Bare CR in message head")
    lines = text.split("\n")
    if len(lines) > limits.max_headers + 1:
        raise SipParseError("Too many header lines")
    if max(map(len, lines)) > limits.max_line_length:
        raise SipParseError("Header line too long")
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            # LWS = [*WSP CRLF] 1*WSP: a folded line continues the previous value (§7.3.1).
            if not items:
                raise SipParseError("Continuation line before the first header")
            cont = line.strip(_WS)
            if cont:
                name, value = items[-1]
                items[-1] = (name, f"{value} {cont}" if value else cont)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError("Header line without ':'")
        name = name.rstrip(_WS)
        if not TOKEN_RE.fullmatch(name):
            raise SipParseError("Malformed header name")
        items.append((name, value.strip(_WS)))
    return lines[0], items


def _content_length(headers: Headers) -> int | None:
    """The Content-Length (``l``) value; several differing values -> 400 (RFC 4475 §3.3.9)."""
    values = headers.get_all("Content-Length")
    if not values:
        return None
    first = values[0]
    for other in values[1:]:
        if other != first:
            raise SipParseError("Conflicting Content-Length values")
    return parse_int_header(first, 2**31 - 1)


def parse_head(head: bytes, limits: SipLimits = DEFAULT_LIMITS) -> SipRequest | SipResponse:
    """Parse start line and headers (everything before the empty line); the body is empty."""
    start_line, items = _split_head(head, limits)
    headers = Headers(items)
    if start_line[:4].upper() == "SIP/":
        version, status, reason = parse_status_line(start_line)
        return SipResponse(headers=headers, status=status, reason=reason, version=version)
    method, uri, version = parse_request_line(start_line)
    return SipRequest(headers=headers, method=method, uri=uri, version=version)


def parse_message(
    data: bytes, limits: SipLimits = DEFAULT_LIMITS
) -> SipRequest | SipResponse:
    """Parse one datagram (RFC 3261 §7, §18.3 for the Content-Length rules on UDP).

    Content-Length present: the body is cut to it (extra octets are ignored, as §18.3 says
    for datagrams); fewer octets than announced -> 400. Absent: the rest of the datagram is
    the body. Oversized datagrams -> 513.
    """
    if len(data) > limits.max_message_size:
        raise SipParseError("Message Too Large", status=513)
    start = _skip_keepalive(data)
    if start == len(data):
        raise SipParseError("Empty message (keepalive)")
    head_end, body_start = _find_head_end(data, start)
    if head_end < 0:
        if data[-1:] != b"\n":
            raise SipParseError("Message head not terminated by an empty line")
        head_end = len(data) - (2 if data.endswith(b"\r\n") else 1)
        body_start = len(data)
    message = parse_head(data[start:head_end], limits)
    body = data[body_start:]
    length = _content_length(message.headers)
    if length is not None:
        if length > len(body):
            raise SipParseError(f"Content-Length {length} but only {len(body)} body octets")
        body = body[:length]
    message.body = body
    return message


class StreamFramer:
    """Frames SIP messages out of a byte stream (TCP/TLS, RFC 3261 §18.3).

    Content-Length is mandatory on streams (missing -> SipParseError). CRLFs between messages
    are skipped; each double-CRLF ``ping`` (RFC 5626 §3.5.1) increments :attr:`pings` so the
    transport can answer with a single CRLF ``pong`` (it should reset or read the counter).
    After a SipParseError the stream cannot be resynchronised: close the connection.
    """

    __slots__ = ("_buffer", "_error", "_limits", "_pending", "_pending_crlf", "pings")

    def __init__(self, limits: SipLimits = DEFAULT_LIMITS) -> None:
        self._buffer = bytearray()
        self._limits = limits
        # A parsed head waiting for its body: (message, body offset, body length).
        self._pending: tuple[SipRequest | SipResponse, int, int] | None = None
        self._pending_crlf = 0  # CRLF octets seen between messages, for ping detection
        self._error: SipParseError | None = None  # raised by the next feed()
        self.pings = 0

    @property
    def buffered(self) -> int:
        """Octets held back, waiting for the rest of a message."""
        return len(self._buffer)

    def take_pings(self) -> int:
        """Return and reset the number of double-CRLF pings received since the last call."""
        pings, self.pings = self.pings, 0
        return pings

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        """Add stream octets; return the complete messages now available, in order.

        Raises SipParseError when the stream is broken (no Content-Length, bad head, too
        large). Messages framed before the broken one in the same call are returned first and
        the error is raised by the next call, so none is lost.
        """
        if self._error is not None:
            raise self._error
        out: list[SipRequest | SipResponse] = []
        try:
            self._frame(data, out)
        except SipParseError as exc:
            self._error = exc
            if not out:
                raise
        return out

    def _frame(self, data: bytes, out: list[SipRequest | SipResponse]) -> None:
        buf = self._buffer
        buf += data
        limits = self._limits
        while buf:
            if self._pending is None:
                start = _skip_keepalive(buf)
                if start == len(buf) and buf[-1] == 13:
                    start -= 1  # a lone trailing CR may be the first half of a CRLF
                if start:
                    self._count_crlf(bytes(buf[:start]))
                    del buf[:start]
                if not buf or buf == b"\r":
                    break
                self._pending_crlf = 0
                head_end, body_start = _find_head_end(buf, 0)
                if head_end < 0:
                    if len(buf) > min(limits.max_stream_buffer, limits.max_message_size):
                        raise SipParseError("Message head too large", status=513)
                    break
                message = parse_head(bytes(buf[:head_end]), limits)
                length = _content_length(message.headers)
                if length is None:
                    raise SipParseError("Missing Content-Length on a stream transport")
                if body_start + length > limits.max_message_size:
                    raise SipParseError("Message Too Large", status=513)
                self._pending = (message, body_start, length)
            message, body_start, length = self._pending
            end = body_start + length
            if len(buf) < end:
                break
            message.body = bytes(buf[body_start:end])
            del buf[:end]
            self._pending = None
            out.append(message)

    def _count_crlf(self, chunk: bytes) -> None:
        """Count RFC 5626 pings: each CRLFCRLF between messages is one ping."""
        count = self._pending_crlf + chunk.count(b"\r\n")
        self.pings += count // 2
        self._pending_crlf = count % 2


# ---------------------------------------------------------------------------------------------
# Semantics
# ---------------------------------------------------------------------------------------------

_REQUIRED_REQUEST = ("Via", "To", "From", "Call-ID", "CSeq")  # §8.1.1; Max-Forwards tolerated
_REQUIRED_RESPONSE = ("Via", "To", "From", "Call-ID", "CSeq")


def _group(message: SipRequest | SipResponse) -> dict[str, list[str]]:
    """Header field values by canonical name, in one pass over the header list."""
    by_name: dict[str, list[str]] = {}
    for name, value in message.headers:
        entry = by_name.get(name)
        if entry is None:
            by_name[name] = [value]
        else:
            entry.append(value)
    return by_name


def _list_values(by_name: dict[str, list[str]], name: str) -> list[str]:
    out: list[str] = []
    for line in by_name.get(name, ()):
        out.extend(split_header_list(line))
    return out


def _check_common(
    message: SipRequest | SipResponse, by_name: dict[str, list[str]], required: tuple[str, ...]
) -> CSeq:
    missing = [name for name in required if name not in by_name]
    if missing:
        raise SipParseError(f"Missing {', '.join(missing)}")
    for name in SINGLE_VALUED:
        if len(by_name.get(name, ())) > 1:
            raise SipParseError(f"Multiple {name} header fields")
    if not by_name["Call-ID"][0].strip(_WS):
        raise SipParseError("Empty Call-ID")
    try:
        cseq = CSeq.parse(by_name["CSeq"][0])
        vias = _list_values(by_name, "Via")
        if not vias:
            raise SipParseError("Empty Via")
        for value in vias:
            Via.parse(value)
        NameAddr.parse(by_name["From"][0])
        NameAddr.parse(by_name["To"][0])
        for value in _list_values(by_name, "Contact"):
            if value != "*":
                NameAddr.parse(value)
        for name in ("Record-Route", "Route"):
            for value in _list_values(by_name, name):
                NameAddr.parse(value)
    except SipParseError as exc:
        # Keep 416 (non-SIP URI in a header) and refine the reason of a syntax error.
        raise SipParseError(f"Bad header: {exc.reason}", exc.status) from exc
    length = by_name.get("Content-Length")
    if length is not None and parse_int_header(length[0], 2**31 - 1) != len(message.body):
        raise SipParseError("Content-Length does not match the body")
    content_type = by_name.get("Content-Type")
    if content_type is not None:
        parse_content_type(content_type[0])
    elif message.body:
        raise SipParseError("Body without Content-Type")
    return cseq


def validate_request(request: SipRequest) -> None:
    """Raise SipParseError(status) if a parsed request must be refused (RFC 3261 §8.2).

    505 for a version other than SIP/2.0 (§8.2 / RFC 4475 §3.1.2.16); 416 for a Request-URI
    scheme other than sip/sips/tel (§8.2.2.1) or a non-SIP URI in From/To/Contact (RFC 4475
    §3.3.4); 400 for a missing mandatory header (§8.1.1), a repeated single-valued header
    (RFC 4475 §3.3.8, §3.3.9), malformed CSeq/Via/From/To/Contact/Max-Forwards/Content-Type,
    CSeq method != request method (§8.1.1.5), headers in the Request-URI (§19.1.1 table),
    a Content-Length that differs from the body (§20.14), a body without Content-Type (§7.4.1).
    """
    if request.version.upper() != SIP_VERSION:
        raise SipParseError("Version Not Supported", status=505)
    uri = request.uri
    if isinstance(uri, str):
        raise SipParseError("Unsupported URI Scheme", status=416)
    if uri.headers:
        raise SipParseError("Request-URI must not contain headers")
    by_name = _group(request)
    cseq = _check_common(request, by_name, _REQUIRED_REQUEST)
    if cseq.method != request.method:
        raise SipParseError("CSeq method does not match the request method")
    max_forwards = by_name.get("Max-Forwards")
    if max_forwards is not None:
        parse_int_header(max_forwards[0], 255)
    expires = by_name.get("Expires")
    if expires is not None:
        parse_int_header(expires[0])
    for name in ("Require", "Proxy-Require", "Supported"):
        for value in by_name.get(name, ()):
            parse_option_tags(value)


def validate_response(response: SipResponse) -> None:
    """Raise SipParseError if a parsed response must be discarded (RFC 3261 §8.1.3, §18.1.2):
    version other than SIP/2.0, a missing mandatory header or malformed Via/CSeq/From/To."""
    if response.version.upper() != SIP_VERSION:
        raise SipParseError("Version Not Supported", status=505)
    _check_common(response, _group(response), _REQUIRED_RESPONSE)
