"""Read SIP/RTP traces: capture-file bytes in, calls out (sans-I/O: no file, no clock).

Containers: classic pcap (both byte orders, micro- and nanosecond timestamps) and pcapng
(section header, interface description with ``if_tsresol``, enhanced and simple packet
blocks). Link types: Ethernet (VLAN tags too), Linux cooked SLL and SLL2, BSD loopback/null,
raw IP. Network: IPv4 (fragments reassembled) and IPv6. Transport: SIP over UDP, SIP over TCP
(each direction of a connection reassembled by sequence number and framed by Content-Length
with the SIP stack's own :class:`StreamFramer`), RTP over UDP (RFC 3550) with RFC 4733
telephone-events.

Frames are decoded with dpkt; the container framing is parsed here so that a truncated file
is told apart from a short last packet. Every way a byte string can fail to be a usable trace
(empty, not a capture, truncated, unknown link type, no SIP, unknown Call-ID) raises
:class:`TraceError` with a one-line message; a malformed single frame inside a good capture is
skipped, as a capture tool would show it as undecodable and go on.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import dpkt

from bridge.rtp.dtmf import TelephoneEvent, parse_event
from bridge.rtp.packet import RtpPacket, RtpParseError, is_rtcp, parse_rtp
from bridge.sdp.model import SdpError, SessionDescription, parse_sdp
from bridge.sip.message import SipParseError, SipRequest, SipResponse
from bridge.sip.parser import StreamFramer, parse_message

__all__ = [
    "Call",
    "Digit",
    "Packet",
    "RtpRecord",
    "SipRecord",
    "Trace",
    "TraceError",
    "read_packets",
    "read_trace",
]

Addr = tuple[str, int]

# Link-layer header types (tcpdump.org/linktypes.html); 12 and 14 are DLT_RAW on some systems.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_TYPES = (LINKTYPE_RAW, 12, 14)
SUPPORTED_LINKTYPES = (LINKTYPE_NULL, LINKTYPE_ETHERNET, *_RAW_TYPES, LINKTYPE_LOOP,
                       LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2)

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_IDB = 1
_PCAPNG_PB = 2  # obsolete packet block
_PCAPNG_SPB = 3
_PCAPNG_EPB = 6
_MAX_TCP_PENDING = 256  # out-of-order segments held per direction
_SIP_STARTS = (b"SIP/", b"INVITE ", b"ACK ", b"BYE ", b"CANCEL ", b"OPTIONS ", b"REGISTER ",
               b"INFO ", b"UPDATE ", b"PRACK ", b"SUBSCRIBE ", b"NOTIFY ", b"REFER ",
               b"MESSAGE ", b"PUBLISH ")
# Errors dpkt raises on a frame it cannot decode.
_FRAME_ERRORS = (dpkt.Error, struct.error, ValueError, IndexError, KeyError, TypeError,
                 AttributeError, OverflowError)


class TraceError(ValueError):
    """The input is not a trace that can be used; ``str(error)`` is one line saying why."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One transport payload: a UDP datagram or a contiguous piece of a TCP stream."""

    time: float
    src: Addr
    dst: Addr
    transport: str  # "UDP" | "TCP"
    payload: bytes


@dataclass(frozen=True, slots=True)
class SipRecord:
    time: float
    src: Addr
    dst: Addr
    transport: str
    message: SipRequest | SipResponse

    @property
    def label(self) -> str:
        """``INVITE`` for a request, ``200 INVITE`` for a response."""
        m = self.message
        if isinstance(m, SipRequest):
            return m.method
        return f"{m.status} {m.cseq.method}"


@dataclass(frozen=True, slots=True)
class RtpRecord:
    time: float
    src: Addr
    dst: Addr
    packet: RtpPacket


@dataclass(frozen=True, slots=True)
class Digit:
    """One RFC 4733 event sent by the calling side; ``offset`` is seconds after the answer."""

    digit: str
    time: float
    offset: float
    duration_ms: int


@dataclass(slots=True)
class Call:
    """The messages of one Call-ID, with the calling side (where the first request came from)."""

    call_id: str
    messages: list[SipRecord]
    caller: Addr = ("", 0)
    caller_tag: str = ""
    transport: str = "UDP"
    method: str = "INVITE"  # method of the first request
    caller_media: set[Addr] = field(default_factory=set)  # SDP addresses of the calling side
    callee_media: set[Addr] = field(default_factory=set)
    rtp_out: list[RtpRecord] = field(default_factory=list)  # calling side -> called side
    rtp_in: list[RtpRecord] = field(default_factory=list)  # called side -> calling side
    event_pt: int | None = None  # telephone-event payload type the calling side offered

    def from_caller(self, record: SipRecord) -> bool:
        """True when the calling side sent this message (a request with its From tag, or a
        response to a request of the called side)."""
        tag = _tag(record.message, "From")
        if isinstance(record.message, SipRequest):
            return tag == self.caller_tag
        return tag != self.caller_tag

    @property
    def start(self) -> float:
        return self.messages[0].time

    @property
    def end(self) -> float:
        return self.messages[-1].time

    @property
    def initial_invite(self) -> SipRecord | None:
        for record in self.messages:
            m = record.message
            if isinstance(m, SipRequest) and m.method == "INVITE" and self.from_caller(record):
                return record
        return None

    @property
    def answer_time(self) -> float | None:
        """When the calling side saw the 2xx to its first INVITE."""
        invite = self.initial_invite
        if invite is None:
            return None
        seq = invite.message.cseq.seq
        for record in self.messages:
            m = record.message
            if (isinstance(m, SipResponse) and 200 <= m.status < 300
                    and m.cseq.method == "INVITE" and m.cseq.seq == seq):
                return record.time
        return None

    def responses_to_caller(self) -> list[tuple[str, int]]:
        """(method, status) of each response the calling side received, in order
        (retransmissions of the same final response counted once)."""
        out: list[tuple[str, int]] = []
        seen: set[tuple[int, str, int]] = set()
        for record in self.messages:
            m = record.message
            if isinstance(m, SipResponse) and not self.from_caller(record):
                key = (m.cseq.seq, m.cseq.method, m.status)
                if key in seen:
                    continue
                seen.add(key)
                out.append((m.cseq.method, m.status))
        return out

    def requests_from_caller(self) -> list[SipRecord]:
        """The calling side's requests, retransmissions dropped (same CSeq and method)."""
        out: list[SipRecord] = []
        seen: set[tuple[int, str]] = set()
        for record in self.messages:
            m = record.message
            if isinstance(m, SipRequest) and self.from_caller(record):
                key = (m.cseq.seq, m.method)
                if key not in seen:
                    seen.add(key)
                    out.append(record)
        return out

    def digits(self) -> list[Digit]:
        """RFC 4733 events the calling side sent, one per event (RTP timestamp)."""
        answer = self.answer_time
        base = answer if answer is not None else self.start
        found: dict[tuple[int, int], tuple[str, float, int]] = {}
        for rec in self.rtp_out:
            ev = self._event(rec)
            if ev is None or ev.digit is None:
                continue
            key = (rec.packet.ssrc, rec.packet.timestamp)
            first = found.get(key)
            if first is None:
                found[key] = (ev.digit, rec.time, ev.duration)
            else:
                found[key] = (first[0], first[1], max(first[2], ev.duration))
        return [Digit(digit=d, time=t, offset=t - base, duration_ms=dur // 8)
                for d, t, dur in found.values()]

    def audio_out(self) -> list[RtpRecord]:
        """The calling side's RTP that is not telephone-event."""
        return [r for r in self.rtp_out if self._event(r) is None]

    def _event(self, rec: RtpRecord) -> TelephoneEvent | None:
        if self.event_pt is None or rec.packet.payload_type != self.event_pt:
            return None
        try:
            return parse_event(rec.packet.payload)
        except ValueError:
            return None


@dataclass(slots=True)
class Trace:
    calls: dict[str, Call]  # by Call-ID, in order of first appearance
    packets: int = 0
    sip_messages: int = 0
    rtp_packets: int = 0

    def invite_calls(self) -> list[Call]:
        return [c for c in self.calls.values() if c.method == "INVITE"]

    def select(self, call_ids: Iterable[str] = ()) -> list[Call]:
        """The INVITE calls named (all of them when none is named)."""
        wanted = list(call_ids)
        if not wanted:
            calls = self.invite_calls()
            if not calls:
                raise TraceError("no INVITE call in the capture")
            return calls
        out = []
        for call_id in wanted:
            call = self.calls.get(call_id)
            if call is None:
                raise TraceError(f"unknown Call-ID {call_id!r} (not in the capture)")
            out.append(call)
        return out


# ---------------------------------------------------------------------------------------------
# Containers


def _frames(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    """(time, link type, frame) for every packet of a pcap or pcapng file."""
    if not data:
        raise TraceError("empty file: not a capture")
    magic = data[:4]
    if magic in _PCAP_MAGICS:
        yield from _pcap_frames(data)
    elif len(data) >= 4 and struct.unpack("<I", magic)[0] == _PCAPNG_SHB:
        yield from _pcapng_frames(data)
    else:
        raise TraceError("not a pcap or pcapng capture (unknown file magic)")


def _pcap_frames(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    order, divisor = _PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        raise TraceError("truncated capture: pcap file header is incomplete")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    _check_linktype(linktype)
    record = struct.Struct(order + "IIII")
    pos, n = 24, 0
    while pos < len(data):
        n += 1
        if pos + 16 > len(data):
            raise TraceError(f"truncated capture: packet {n} header is incomplete")
        sec, frac, caplen, _ = record.unpack_from(data, pos)
        pos += 16
        if caplen > 0x4000000:
            raise TraceError(f"corrupt capture: packet {n} claims {caplen} bytes")
        if pos + caplen > len(data):
            raise TraceError(f"truncated capture: packet {n} is cut short")
        yield sec + frac / divisor, linktype, data[pos:pos + caplen]
        pos += caplen


def _pcapng_frames(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    order = "<"
    interfaces: list[tuple[int, float, int]] = []  # (link type, units per second, snaplen)
    pos, n = 0, 0
    while pos < len(data):
        n += 1
        if pos + 12 > len(data):
            raise TraceError(f"truncated capture: pcapng block {n} is incomplete")
        btype = struct.unpack_from(order + "I", data, pos)[0]
        if btype == _PCAPNG_SHB:
            bom = data[pos + 8:pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise TraceError("corrupt capture: pcapng byte-order magic is wrong")
            interfaces = []
        blen = struct.unpack_from(order + "I", data, pos + 4)[0]
        if blen < 12 or blen % 4:
            raise TraceError(f"corrupt capture: pcapng block {n} has length {blen}")
        if pos + blen > len(data):
            raise TraceError(f"truncated capture: pcapng block {n} is cut short")
        body = data[pos + 8:pos + blen - 4]
        pos += blen
        if btype == _PCAPNG_IDB:
            if len(body) < 8:
                raise TraceError(f"corrupt capture: pcapng interface block {n} is too short")
            linktype, _, snaplen = struct.unpack_from(order + "HHI", body, 0)
            interfaces.append((linktype, _tsresol(body[8:], order), snaplen))
        elif btype in (_PCAPNG_EPB, _PCAPNG_PB):
            if len(body) < 20:
                raise TraceError(f"corrupt capture: pcapng packet block {n} is too short")
            if btype == _PCAPNG_EPB:
                iface, high, low, caplen, _ = struct.unpack_from(order + "IIIII", body, 0)
            else:
                iface, _, high, low, caplen, _ = struct.unpack_from(order + "HHIIII", body, 0)
            if iface >= len(interfaces):
                raise TraceError(f"corrupt capture: packet block {n} names no interface")
            if 20 + caplen > len(body):
                raise TraceError(f"corrupt capture: packet block {n} is shorter than its data")
            linktype, units, _ = interfaces[iface]
            _check_linktype(linktype)
            yield ((high << 32) | low) / units, linktype, body[20:20 + caplen]
        elif btype == _PCAPNG_SPB:
            if not interfaces or len(body) < 4:
                raise TraceError(f"corrupt capture: simple packet block {n} without interface")
            linktype, _, snaplen = interfaces[0]
            _check_linktype(linktype)
            (origlen,) = struct.unpack_from(order + "I", body, 0)
            caplen = min(origlen, snaplen) if snaplen else origlen
            yield 0.0, linktype, body[4:4 + caplen]
        # other blocks (name resolution, statistics, custom) carry no packets
    if not interfaces:
        raise TraceError("corrupt capture: pcapng file without an interface")


def _tsresol(options: bytes, order: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        value = options[pos + 4:pos + 4 + length]
        if code == 9 and length >= 1:  # if_tsresol
            v = value[0]
            return float(2 ** (v & 0x7F)) if v & 0x80 else float(10 ** min(v & 0x7F, 30))
        pos += 4 + ((length + 3) & ~3)
    return 1e6


def _check_linktype(linktype: int) -> None:
    if linktype not in SUPPORTED_LINKTYPES:
        raise TraceError(f"unsupported link type {linktype} (Ethernet, Linux cooked, "
                         "loopback and raw IP are read)")


# ---------------------------------------------------------------------------------------------
# Frames -> transport payloads


def _network(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a link-layer frame (None for anything else)."""
    if linktype == LINKTYPE_ETHERNET:
        eth = dpkt.ethernet.Ethernet(frame)
        inner = eth.data
        return bytes(inner) if isinstance(inner, dpkt.ip.IP | dpkt.ip6.IP6) else None
    if linktype == LINKTYPE_LINUX_SLL:
        sll = dpkt.sll.SLL(frame)
        return frame[16:] if sll.ethtype in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_LINUX_SLL2:
        sll2 = dpkt.sll2.SLL2(frame)
        return frame[20:] if sll2.ethtype in (0x0800, 0x86DD) else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return None
        return frame[4:]  # address family in either byte order: the IP version nibble decides
    return frame  # raw IP


_Fragments = dict[tuple[bytes, bytes, int, int], dict[int, tuple[bytes, bool]]]
_MAX_FRAGMENTED = 1024  # datagrams being reassembled at once


def _reassemble(ip4: dpkt.ip.IP, ip_bytes: bytes, fragments: _Fragments) -> object | None:
    """The UDP/TCP segment of a fragmented IPv4 datagram once every fragment has been seen."""
    key = (ip4.src, ip4.dst, ip4.id, ip4.p)
    if key not in fragments and len(fragments) >= _MAX_FRAGMENTED:
        fragments.clear()
    pieces = fragments.setdefault(key, {})
    pieces[ip4.offset * 8] = (ip_bytes[ip4.hl * 4:ip4.len], bool(ip4.mf))
    payload = bytearray()
    while True:
        piece = pieces.get(len(payload))
        if piece is None or (not piece[0] and piece[1]):
            return None  # a gap: wait for more
        payload += piece[0]
        if not piece[1]:
            break
    del fragments[key]
    segment: object = None
    if ip4.p == dpkt.ip.IP_PROTO_UDP:
        segment = dpkt.udp.UDP(bytes(payload))
    elif ip4.p == dpkt.ip.IP_PROTO_TCP:
        segment = dpkt.tcp.TCP(bytes(payload))
    return segment


def _transport(ip_bytes: bytes, fragments: _Fragments) -> tuple[Addr, Addr, object] | None:
    if not ip_bytes:
        return None
    version = ip_bytes[0] >> 4
    if version == 4:
        ip4 = dpkt.ip.IP(ip_bytes)
        src_ip, dst_ip = socket.inet_ntop(socket.AF_INET, ip4.src), socket.inet_ntop(
            socket.AF_INET, ip4.dst)
        inner = _reassemble(ip4, ip_bytes, fragments) if ip4.mf or ip4.offset else ip4.data
    elif version == 6:
        ip6 = dpkt.ip6.IP6(ip_bytes)
        src_ip, dst_ip = socket.inet_ntop(socket.AF_INET6, ip6.src), socket.inet_ntop(
            socket.AF_INET6, ip6.dst)
        inner = ip6.data
    else:
        return None
    if isinstance(inner, dpkt.udp.UDP | dpkt.tcp.TCP):
        return (src_ip, int(inner.sport)), (dst_ip, int(inner.dport)), inner
    return None


@dataclass(slots=True)
class _Direction:
    next_seq: int | None = None
    pending: dict[int, tuple[float, bytes]] = field(default_factory=dict)


def _tcp_accept(flow: _Direction, seq: int, syn: bool, data: bytes, time: float) -> list[bytes]:
    """In-order new stream bytes made available by this segment."""
    if syn:
        flow.next_seq = (seq + 1) & 0xFFFFFFFF
        flow.pending.clear()
        if not data:
            return []
        seq = flow.next_seq
    if not data:
        return []
    if flow.next_seq is None:
        flow.next_seq = seq  # capture started mid-connection
    out: list[bytes] = []
    ahead = (seq - flow.next_seq) & 0xFFFFFFFF
    if ahead >= 0x80000000:  # starts before next_seq: a retransmission, maybe with new bytes
        overlap = (flow.next_seq - seq) & 0xFFFFFFFF
        if overlap >= len(data):
            return []
        data = data[overlap:]
        ahead = 0
    if ahead:
        if len(flow.pending) < _MAX_TCP_PENDING:
            flow.pending.setdefault(seq, (time, data))
        return []
    out.append(data)
    flow.next_seq = (flow.next_seq + len(data)) & 0xFFFFFFFF
    while flow.pending:  # drain what is now contiguous
        progressed = False
        for pseq in list(flow.pending):
            rel = (pseq - flow.next_seq) & 0xFFFFFFFF
            if rel == 0 or rel >= 0x80000000:
                _, pdata = flow.pending.pop(pseq)
                overlap = (flow.next_seq - pseq) & 0xFFFFFFFF
                if overlap < len(pdata):
                    out.append(pdata[overlap:])
                    flow.next_seq = (flow.next_seq + len(pdata) - overlap) & 0xFFFFFFFF
                progressed = True
        if not progressed:
            break
    return out


def read_packets(data: bytes) -> list[Packet]:
    """UDP datagrams and in-order TCP stream pieces of a capture, in capture order."""
    out: list[Packet] = []
    flows: dict[tuple[Addr, Addr], _Direction] = {}
    fragments: _Fragments = {}
    for time, linktype, frame in _frames(data):
        try:
            ip_bytes = _network(linktype, frame)
            found = _transport(ip_bytes, fragments) if ip_bytes is not None else None
        except _FRAME_ERRORS:
            continue  # an undecodable frame
        if found is None:
            continue
        src, dst, seg = found
        if isinstance(seg, dpkt.udp.UDP):
            out.append(Packet(time, src, dst, "UDP", bytes(seg.data)))
            continue
        assert isinstance(seg, dpkt.tcp.TCP)
        flow = flows.setdefault((src, dst), _Direction())
        syn = bool(seg.flags & dpkt.tcp.TH_SYN)
        for piece in _tcp_accept(flow, int(seg.seq), syn, bytes(seg.data), time):
            out.append(Packet(time, src, dst, "TCP", piece))
    return out


# ---------------------------------------------------------------------------------------------
# Packets -> SIP, RTP, calls


def _tag(message: SipRequest | SipResponse, name: str) -> str:
    try:
        return (message.from_ if name == "From" else message.to).tag or ""
    except (SipParseError, ValueError):
        return ""


def _usable(message: SipRequest | SipResponse) -> bool:
    """Has what grouping and the report need: Call-ID, CSeq, From with a tag."""
    try:
        _ = message.call_id, message.cseq, message.to
        return bool(message.from_.tag) and bool(message.call_id)
    except (SipParseError, ValueError):
        return False


def _media_addresses(message: SipRequest | SipResponse) -> tuple[set[Addr], int | None]:
    if not message.body or (message.content_type or "application/sdp") != "application/sdp":
        return set(), None
    try:
        sdp: SessionDescription = parse_sdp(message.body)
    except (SdpError, ValueError):
        return set(), None
    addrs: set[Addr] = set()
    event_pt: int | None = None
    for media in sdp.media:
        if media.media != "audio" or media.port == 0:
            continue
        conn = sdp.media_connection(media)
        if conn is not None:
            addrs.add((conn.host, media.port))
        try:
            maps = media.rtpmaps
        except (SdpError, ValueError):
            continue
        for pt, rtpmap in maps.items():
            if rtpmap.encoding.lower() == "telephone-event" and event_pt is None:
                event_pt = pt
    return addrs, event_pt


def _rtp(payload: bytes) -> RtpPacket | None:
    if len(payload) < 12 or payload[0] >> 6 != 2 or is_rtcp(payload):
        return None
    try:
        return parse_rtp(payload)
    except (RtpParseError, ValueError):
        return None


def read_trace(data: bytes) -> Trace:
    """Group a capture's SIP messages into calls and attach their RTP."""
    packets = read_packets(data)
    calls: dict[str, Call] = {}
    framers: dict[tuple[Addr, Addr], StreamFramer | None] = {}
    candidates: list[tuple[Packet, RtpPacket]] = []
    sip_count = 0

    def add(record: SipRecord) -> None:
        nonlocal sip_count
        message = record.message
        if not _usable(message):
            return
        sip_count += 1
        call_id = message.call_id
        call = calls.get(call_id)
        if call is None:
            if not isinstance(message, SipRequest):
                return  # a response whose request was not captured: no calling side
            call = calls[call_id] = Call(call_id, [], caller=record.src,
                                         caller_tag=_tag(message, "From"),
                                         transport=record.transport, method=message.method)
        call.messages.append(record)
        addrs, event_pt = _media_addresses(message)
        if addrs:
            (call.caller_media if call.from_caller(record) else call.callee_media).update(addrs)
        if event_pt is not None and call.from_caller(record) and call.event_pt is None:
            call.event_pt = event_pt

    for pkt in packets:
        if pkt.transport == "TCP":
            key = (pkt.src, pkt.dst)
            framer = framers.get(key, StreamFramer()) if key in framers or pkt.payload.lstrip(
                b"\r\n").startswith(_SIP_STARTS) else None
            framers[key] = framer
            if framer is None:
                continue
            try:
                messages = framer.feed(pkt.payload)
            except SipParseError:
                framers[key] = None  # not (or no longer) a SIP stream
                continue
            for message in messages:
                add(SipRecord(pkt.time, pkt.src, pkt.dst, "TCP", message))
            continue
        if pkt.payload.lstrip(b"\r\n").startswith(_SIP_STARTS):
            try:
                message = parse_message(pkt.payload)
            except SipParseError:
                continue
            add(SipRecord(pkt.time, pkt.src, pkt.dst, "UDP", message))
            continue
        rtp = _rtp(pkt.payload)
        if rtp is not None:
            candidates.append((pkt, rtp))
    if not calls:
        raise TraceError("no SIP in the capture" if not sip_count else
                         "no SIP request in the capture (only responses)")
    rtp_count = 0
    by_addr: dict[Addr, tuple[Call, bool]] = {}  # media address -> (call, is the caller's)
    for call in calls.values():
        for addr in call.callee_media:
            by_addr[addr] = (call, False)
        for addr in call.caller_media:
            by_addr[addr] = (call, True)
    for pkt, rtp in candidates:
        hit = by_addr.get(pkt.dst)
        if hit is not None:
            call, to_caller = hit
        else:
            hit = by_addr.get(pkt.src)
            if hit is None:
                continue
            call, from_caller = hit
            to_caller = not from_caller
        rtp_count += 1
        (call.rtp_in if to_caller else call.rtp_out).append(
            RtpRecord(pkt.time, pkt.src, pkt.dst, rtp))
    return Trace(calls=calls, packets=len(packets), sip_messages=sip_count,
                 rtp_packets=rtp_count)
