"""SDP session descriptions (RFC 8866, which obsoletes RFC 4566): model, parser, serialiser.

Grammar implemented (RFC 8866 §9, lenient where real peers are)::

    session-description = version-field origin-field session-name-field
                          [information-field] [uri-field] *email-field *phone-field
                          [connection-field] *bandwidth-field 1*time-description
                          [key-field] *attribute-field *media-description
    time-description    = time-field [repeat-description]      ; "t=" then "r=" lines
    media-description   = media-field [information-field] *connection-field
                          *bandwidth-field [key-field] *attribute-field
    media-field         = %s"m" "=" media SP port ["/" integer] SP proto 1*(SP fmt) CRLF

Leniency: LF-only line ends and blank lines are accepted, the session-level fields may come in
any order (they are written back in the RFC order), ``s=`` may be empty, ``t=`` may be missing,
and an ``m=`` line may have no formats. ``to_bytes()`` always writes CRLF, so for a body written
in the RFC order ``parse_sdp(b).to_bytes() == b``.

Attributes are kept as an ordered list of ``(name, value)``; the ones the media engine needs are
read through typed accessors: ``a=rtpmap`` (§6.6), ``a=fmtp`` (§6.15), ``a=ptime`` (§6.4),
``a=maxptime`` (§6.5), the direction attributes (§6.7) and ``a=rtcp`` (RFC 3605). These are
checked when parsing, so an accessor of a parsed description never raises.

Bytes that are not UTF-8 are kept with ``surrogateescape`` and written back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "MAX_SDP_SIZE",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "Rtcp",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "parse_sdp",
]

#: Largest body we parse (a SIP message over UDP cannot be larger).
MAX_SDP_SIZE = 65536
#: Most lines we accept (a real offer has a few dozen).
MAX_SDP_LINES = 2048


class SdpError(ValueError):
    """The one error type of the SDP parser. ``status`` is the SIP answer to a request whose
    body cannot be read (400 Bad Request; negotiation failures use 488)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Direction(Enum):
    """Media direction attributes (RFC 8866 §6.7, RFC 3264 §5.1), from the writer's view."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        if receives:
            return cls.RECVONLY
        return cls.INACTIVE

    def reversed(self) -> Direction:
        """The direction seen from the other end (sendonly <-> recvonly)."""
        return Direction.from_flags(sends=self.receives, receives=self.sends)

    def intersect(self, other: Direction) -> Direction:
        """What both allow."""
        return Direction.from_flags(
            sends=self.sends and other.sends, receives=self.receives and other.receives
        )


_DIRECTIONS = {d.value: d for d in Direction}


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``
    (RFC 8866 §5.2)."""

    username: str = "-"
    session_id: int
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 8866 §5.7). ``address`` keeps a
    multicast ``/ttl/count`` suffix as written."""

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(addrtype="IP6" if ":" in address else "IP4", address=address)

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl`` suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_hold_address(self) -> bool:
        """RFC 2543 hold: c= 0.0.0.0 (RFC 3264 §8.4 says still to understand it)."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (RFC 8866 §5.8), kbit/s for AS/CT."""

    bwtype: str
    bandwidth: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """``t=<start-time> <stop-time>`` plus its ``r=`` lines (RFC 8866 §5.9, §5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` (property) or ``a=<name>:<value>`` (RFC 8866 §5.13)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`` (RFC 8866 §6.6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        pt_text, sep, rest = value.partition(" ")
        parts = rest.strip().split("/")
        if not sep or len(parts) not in (2, 3) or not parts[0]:
            raise SdpError(f"malformed rtpmap {value!r}")
        payload_type = _parse_uint(pt_text, "rtpmap payload type")
        if payload_type > 127:
            raise SdpError(f"rtpmap payload type {payload_type} out of range")
        clock_rate = _parse_uint(parts[1], "rtpmap clock rate")
        channels = _parse_uint(parts[2], "rtpmap channels") if len(parts) == 3 else None
        return cls(
            payload_type=payload_type, encoding=parts[0], clock_rate=clock_rate, channels=channels
        )

    def __str__(self) -> str:
        tail = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <connection-address>]`` (RFC 3605 §2.1)."""

    port: int
    connection: Connection | None = None

    @classmethod
    def parse(cls, value: str) -> Rtcp:
        parts = value.split()
        if len(parts) not in (1, 4):
            raise SdpError(f"malformed rtcp attribute {value!r}")
        port = _parse_port(parts[0])
        connection = None
        if len(parts) == 4:
            connection = Connection(nettype=parts[1], addrtype=parts[2], address=parts[3])
        return cls(port=port, connection=connection)


def _parse_uint(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise SdpError(f"{what} is not a number: {text!r}")
    return int(text)


def _parse_port(text: str) -> int:
    port = _parse_uint(text, "port")
    if port > 65535:
        raise SdpError(f"port {port} out of range")
    return port


def _parse_ms(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SdpError(f"{what} is not a number: {text!r}") from None
    if not text.isascii() or not text.replace(".", "", 1).isdigit() or not 0 < value < 100000:
        raise SdpError(f"{what} out of range: {text!r}")
    return value


class _AttributeAccess:
    """Typed readers over an ordered attribute list (shared by session and media level)."""

    __slots__ = ()

    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name:value`` (or "" for a property attribute), else None."""
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def attribute_values(self, name: str) -> list[str]:
        return [attr.value or "" for attr in self.attributes if attr.name == name]

    def has_attribute(self, name: str) -> bool:
        return any(attr.name == name for attr in self.attributes)

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written at this level, if any (the last one wins)."""
        found = None
        for attr in self.attributes:
            direction = _DIRECTIONS.get(attr.name)
            if direction is not None and attr.value is None:
                found = direction
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDescription(_AttributeAccess):
    """One ``m=`` section (RFC 8866 §5.14). ``formats`` are the fmt tokens as written (RTP
    payload type numbers for RTP/AVP)."""

    media: str
    port: int
    port_count: int | None = None
    proto: str
    formats: tuple[str, ...] = ()
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    @property
    def connection(self) -> Connection | None:
        return self.connections[0] if self.connections else None

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """``a=rtpmap`` by payload type (the first one for a payload type wins)."""
        found: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rtpmap = RtpMap.parse(value)
            found.setdefault(rtpmap.payload_type, rtpmap)
        return found

    def fmtp(self, fmt: str | int) -> str | None:
        """The parameters of ``a=fmtp:<fmt> <parameters>``, or None."""
        key = str(fmt)
        for value in self.attribute_values("fmtp"):
            head, _, params = value.partition(" ")
            if head == key:
                return params.strip()
        return None

    @property
    def ptime(self) -> float | None:
        """``a=ptime`` in milliseconds (RFC 8866 §6.4)."""
        value = self.attribute("ptime")
        return None if value is None else _parse_ms(value.strip(), "ptime")

    @property
    def maxptime(self) -> float | None:
        """``a=maxptime`` in milliseconds (RFC 8866 §6.5)."""
        value = self.attribute("maxptime")
        return None if value is None else _parse_ms(value.strip(), "maxptime")

    @property
    def rtcp(self) -> Rtcp | None:
        """``a=rtcp`` (RFC 3605), or None when absent (RTCP then goes to port + 1)."""
        value = self.attribute("rtcp")
        return None if value is None else Rtcp.parse(value)

    def lines(self) -> list[str]:
        count = "" if self.port_count is None else f"/{self.port_count}"
        fmts = "".join(f" {fmt}" for fmt in self.formats)
        out = [f"m={self.media} {self.port}{count} {self.proto}{fmts}"]
        if self.information is not None:
            out.append(f"i={self.information}")
        out.extend(f"c={c}" for c in self.connections)
        out.extend(f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(f"a={a}" for a in self.attributes)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription(_AttributeAccess):
    """A whole SDP body (RFC 8866 §5)."""

    version: int = 0
    origin: Origin
    session_name: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timing: tuple[Timing, ...] = (Timing(),)
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    def media_connection(self, media: MediaDescription) -> Connection | None:
        """The c= that applies to ``media``: its own, else the session's (RFC 8866 §5.7)."""
        return media.connection or self.connection

    def media_direction(self, media: MediaDescription) -> Direction:
        """Effective direction of ``media``: its own attribute, else the session-level one,
        else sendrecv (RFC 3264 §5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def lines(self) -> list[str]:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out.extend(f"e={e}" for e in self.emails)
        out.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={b}" for b in self.bandwidths)
        for timing in self.timing:
            out.append(f"t={timing.start} {timing.stop}")
            out.extend(f"r={r}" for r in timing.repeats)
        if self.zone is not None:
            out.append(f"z={self.zone}")
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(f"a={a}" for a in self.attributes)
        for media in self.media:
            out.extend(media.lines())
        return out

    def to_bytes(self) -> bytes:
        """The body with CRLF line ends (RFC 8866 §5)."""
        return ("\r\n".join(self.lines()) + "\r\n").encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------------------------
# parser

_TYPE_LETTERS = frozenset("vosiuepcbtrzkam")
_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`{|}~"
)


def _is_token(text: str) -> bool:
    return bool(text) and all(ch in _TOKEN_CHARS for ch in text)


def _parse_origin(value: str) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise SdpError(f"malformed o= line {value!r}")
    return Origin(
        username=parts[0],
        session_id=_parse_uint(parts[1], "sess-id"),
        session_version=_parse_uint(parts[2], "sess-version"),
        nettype=parts[3],
        addrtype=parts[4],
        address=parts[5],
    )


def _parse_connection(value: str) -> Connection:
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SdpError(f"malformed c= line {value!r}")
    return Connection(nettype=parts[0], addrtype=parts[1], address=parts[2])


def _parse_bandwidth(value: str) -> Bandwidth:
    bwtype, sep, amount = value.partition(":")
    if not sep or not _is_token(bwtype):
        raise SdpError(f"malformed b= line {value!r}")
    return Bandwidth(bwtype=bwtype, bandwidth=_parse_uint(amount, "bandwidth"))


def _parse_timing(value: str) -> Timing:
    parts = value.split(" ")
    if len(parts) != 2:
        raise SdpError(f"malformed t= line {value!r}")
    start = _parse_uint(parts[0], "start-time")
    return Timing(start=start, stop=_parse_uint(parts[1], "stop-time"))


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if not _is_token(name):
        raise SdpError(f"malformed attribute {value!r}")
    attr = Attribute(name, rest if sep else None)
    # check the attributes the media engine reads, so that accessors never raise later
    if name == "rtpmap":
        RtpMap.parse(rest)
    elif name in ("ptime", "maxptime"):
        _parse_ms(rest.strip(), name)
    elif name == "rtcp":
        Rtcp.parse(rest)
    return attr


def _parse_media_line(value: str) -> tuple[str, int, int | None, str, tuple[str, ...]]:
    parts = value.split(" ")
    if len(parts) < 3 or not all(parts):
        raise SdpError(f"malformed m= line {value!r}")
    media, port_text, proto = parts[0], parts[1], parts[2]
    if not _is_token(media):
        raise SdpError(f"malformed media type {media!r}")
    port_part, sep, count_part = port_text.partition("/")
    port = _parse_port(port_part)
    port_count = _parse_uint(count_part, "port count") if sep else None
    if any(not ch.isprintable() for ch in proto):
        raise SdpError("malformed proto")
    return media, port, port_count, proto, tuple(parts[3:])


def _split_lines(data: bytes) -> list[tuple[str, str]]:
    if len(data) > MAX_SDP_SIZE:
        raise SdpError("SDP body too large", status=413)
    if b"\x00" in data:
        raise SdpError("NUL byte in SDP body")
    text = data.decode("utf-8", "surrogateescape")
    raw_lines = text.split("\n")
    if len(raw_lines) > MAX_SDP_LINES:
        raise SdpError("too many SDP lines", status=413)
    out: list[tuple[str, str]] = []
    for raw in raw_lines:
        line = raw.removesuffix("\r")
        if not line.strip():
            continue  # blank lines (and the empty string after the last CRLF)
        if "\r" in line:
            raise SdpError("bare CR in SDP line")
        if len(line) < 2 or line[1] != "=" or line[0] not in _TYPE_LETTERS:
            raise SdpError(f"malformed SDP line {line[:40]!r}")
        out.append((line[0], line[2:]))
    return out


class _MediaBuilder:
    """Accumulates the lines of one m= section."""

    def __init__(self, value: str) -> None:
        self.media, self.port, self.port_count, self.proto, self.formats = _parse_media_line(
            value
        )
        self.information: str | None = None
        self.connections: list[Connection] = []
        self.bandwidths: list[Bandwidth] = []
        self.key: str | None = None
        self.attributes: list[Attribute] = []

    def add(self, kind: str, value: str) -> None:
        if kind == "i" and self.information is None:
            self.information = value
        elif kind == "c":
            self.connections.append(_parse_connection(value))
        elif kind == "b":
            self.bandwidths.append(_parse_bandwidth(value))
        elif kind == "k" and self.key is None:
            self.key = value
        elif kind == "a":
            self.attributes.append(_parse_attribute(value))
        else:
            raise SdpError(f"unexpected {kind}= line in media section")

    def build(self) -> MediaDescription:
        return MediaDescription(
            media=self.media,
            port=self.port,
            port_count=self.port_count,
            proto=self.proto,
            formats=self.formats,
            information=self.information,
            connections=tuple(self.connections),
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            attributes=tuple(self.attributes),
        )


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body; raise :class:`SdpError` for anything malformed."""
    lines = _split_lines(data)
    if not lines or lines[0][0] != "v":
        raise SdpError("SDP must start with v=")
    if lines[0][1] != "0":
        raise SdpError(f"unsupported SDP version {lines[0][1]!r}")
    singles: dict[str, str] = {}
    emails: list[str] = []
    phones: list[str] = []
    bandwidths: list[Bandwidth] = []
    timings: list[Timing] = []
    attributes: list[Attribute] = []
    media: list[MediaDescription] = []
    current: _MediaBuilder | None = None
    for kind, value in lines[1:]:
        if kind == "m":
            if current is not None:
                media.append(current.build())
            current = _MediaBuilder(value)
        elif current is not None:
            current.add(kind, value)
        elif kind in "osiuzkc":
            if kind in singles:
                raise SdpError(f"more than one {kind}= line")
            singles[kind] = value
        elif kind == "e":
            emails.append(value)
        elif kind == "p":
            phones.append(value)
        elif kind == "b":
            bandwidths.append(_parse_bandwidth(value))
        elif kind == "t":
            timings.append(_parse_timing(value))
        elif kind == "r":
            if not timings:
                raise SdpError("r= without t=")
            last = timings[-1]
            timings[-1] = Timing(start=last.start, stop=last.stop, repeats=(*last.repeats, value))
        elif kind == "a":
            attributes.append(_parse_attribute(value))
        else:  # a second v=
            raise SdpError(f"unexpected {kind}= line")
    if current is not None:
        media.append(current.build())
    if "o" not in singles:
        raise SdpError("SDP without o= line")
    if "s" not in singles:
        raise SdpError("SDP without s= line")
    connection = _parse_connection(singles["c"]) if "c" in singles else None
    return SessionDescription(
        version=0,
        origin=_parse_origin(singles["o"]),
        session_name=singles["s"],
        information=singles.get("i"),
        uri=singles.get("u"),
        emails=tuple(emails),
        phones=tuple(phones),
        connection=connection,
        bandwidths=tuple(bandwidths),
        timing=tuple(timings),
        zone=singles.get("z"),
        key=singles.get("k"),
        attributes=tuple(attributes),
        media=tuple(media),
    )
