"""SIP message model (RFC 3261 §7, §20): requests, responses and an ordered header multimap.

This module is the contract between the parser (``bridge.sip.parser``), the typed header values
(``bridge.sip.headers``, ``bridge.sip.uri``) and the transaction/dialog layers. It holds data and
serialises it; it does no I/O and reads no clock.

Header values are stored as text exactly as received (after unfolding), so a message that is
forwarded or answered keeps what the peer wrote. Typed views (Via, name-addr, CSeq) are parsed on
demand by the accessors below.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

# SipParseError lives in bridge.sip.errors (so headers and uri need not import this module);
# it is re-exported here, where the parser's callers have always imported it from.
from bridge.sip.errors import SipParseError as SipParseError  # noqa: PLC0414 (re-export)
from bridge.sip.headers import CSeq, NameAddr, Via
from bridge.sip.uri import SipUri

SIP_VERSION = "SIP/2.0"


# RFC 3261 §7.3.3 compact forms, plus those registered later (RFC 3515 Refer-To 'r',
# RFC 3891/4028 'x' Session-Expires, RFC 3892 'b' Referred-By, RFC 3841 'j' Reject-Contact ...).
COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}

# Canonical spelling for well-known headers, keyed by lower-case name.
_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
        "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
        "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
        "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
        "P-Asserted-Identity", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
        "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By",
        "Reply-To", "Require", "Retry-After", "Route", "RSeq", "Server", "Session-Expires",
        "Subject", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
        "Warning", "WWW-Authenticate",
        # Frequent on trunks and in RFC 4475 (kept spelled as registered, for byte-exact output).
        "Content-Transfer-Encoding", "Diversion", "History-Info", "P-Charging-Vector",
        "P-Preferred-Identity", "Path", "Privacy", "Replaces", "Service-Route",
        "Subscription-State",
    )
}
_CANONICAL["call-id"] = "Call-ID"
_CANONICAL["cseq"] = "CSeq"
_CANONICAL["www-authenticate"] = "WWW-Authenticate"


@lru_cache(maxsize=2048)
def canonical_name(name: str) -> str:
    """Map a header name (any case, compact or long form) to its canonical spelling."""
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    known = _CANONICAL.get(lower)
    if known is not None:
        return known
    return "-".join(part[:1].upper() + part[1:] for part in lower.split("-"))


class Headers:
    """Ordered multimap of header fields with case-insensitive, compact-form-aware names.

    Each entry is one header field line (name, value). ``get_all`` returns the field lines;
    ``values`` additionally splits comma-separated list headers (Via, Contact, Route ...) at
    top-level commas, honouring quoted strings and <...>.
    """

    __slots__ = ("_items",)
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name)
        return any(n == key for n, _ in self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = canonical_name(name)
        return [v for n, v in self._items if n == key]

    def values(self, name: str) -> list[str]:
        """All values of a list header, split at top-level commas (RFC 3261 §7.3.1)."""
        out: list[str] = []
        for line in self.get_all(name):
            out.extend(split_header_list(line))
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def add_first(self, name: str, value: str) -> None:
        """Insert before the first field of that name (or at the top): new top Via, Route."""
        key = canonical_name(name)
        for index, (n, _) in enumerate(self._items):
            if n == key:
                self._items.insert(index, (key, value))
                return
        self._items.insert(0, (key, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name by one field, kept at the first one's position."""
        key = canonical_name(name)
        for index, (n, _) in enumerate(self._items):
            if n == key:
                self._items[index] = (key, value)
                self._items = [
                    item for i, item in enumerate(self._items) if i <= index or item[0] != key
                ]
                return
        self._items.append((key, value))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [item for item in self._items if item[0] != key]


def split_header_list(value: str) -> list[str]:
    """Split a header value at commas outside quoted strings and angle brackets."""
    if "," not in value:  # fast path: a single value
        value = value.strip()
        return [value] if value else []
    if '"' not in value and "<" not in value:  # fast path: no quoting, plain split
        return [part for part in (p.strip() for p in value.split(",")) if part]
    parts: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for index, ch in enumerate(value):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            part = value[start:index].strip()
            if part:
                parts.append(part)
            start = index + 1
    last = value[start:].strip()
    if last:
        parts.append(last)
    return parts


@dataclass(slots=True)
class _MessageBase:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # Typed accessors. They raise SipParseError when the header is missing or malformed.
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if value is None:
            raise SipParseError("Missing Call-ID")
        return value.strip()

    @property
    def cseq(self) -> CSeq:

        value = self.headers.get("CSeq")
        if value is None:
            raise SipParseError("Missing CSeq")
        return CSeq.parse(value)

    @property
    def vias(self) -> list[Via]:

        return [Via.parse(v) for v in self.headers.values("Via")]

    @property
    def top_via(self) -> Via:

        values = self.headers.values("Via")
        if not values:
            raise SipParseError("Missing Via")
        return Via.parse(values[0])

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("To")

    @property
    def contacts(self) -> list[NameAddr]:

        return [NameAddr.parse(v) for v in self.headers.values("Contact") if v.strip() != "*"]

    @property
    def record_route(self) -> list[NameAddr]:

        return [NameAddr.parse(v) for v in self.headers.values("Record-Route")]

    @property
    def content_type(self) -> str | None:
        """Media type without parameters, lower-cased (``application/sdp``)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def _name_addr(self, name: str) -> NameAddr:

        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"Missing {name}")
        return NameAddr.parse(value)

    def _serialize(self, start_line: str) -> bytes:
        # Content-Length is rewritten to the real body length, at the position of the first
        # Content-Length field (appended if there was none; further ones dropped). Text that
        # the parser decoded with surrogateescape (non-UTF-8 octets) is re-encoded as it was.
        lines = [start_line]
        length_written = False
        for n, v in self.headers:
            if n != "Content-Length":
                lines.append(f"{n}: {v}")
            elif not length_written:
                lines.append(f"Content-Length: {len(self.body)}")
                length_written = True
        if not length_written:
            lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass(slots=True)
class SipRequest(_MessageBase):
    method: str = "OPTIONS"
    uri: SipUri | str = ""
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        """Serialise with a Content-Length that matches the body."""
        return self._serialize(f"{self.method} {self.uri} {self.version}")


@dataclass(slots=True)
class SipResponse(_MessageBase):
    status: int = 200
    reason: str = "OK"
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        return self._serialize(f"{self.version} {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse

# Reason phrases of RFC 3261 §21 and the extensions the bridge uses.
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 493: "Undecipherable", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}
