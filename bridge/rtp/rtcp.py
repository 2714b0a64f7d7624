"""RTCP compound packets (RFC 3550 §6): SR, RR, SDES, BYE; APP and other types are skipped.

Implements the packet formats of RFC 3550 §6.4.1 (SR), §6.4.2 (RR), §6.5 (SDES, CNAME §6.5.1),
§6.6 (BYE) and the compound validity checks of Appendix A.2 (version 2, lengths add up to the
datagram, padding only in the last packet; with ``strict=True`` also: first packet SR or RR).

NTP timestamps (§4) are 64-bit fixed point seconds since 1900; the conversion helpers take the
wall-clock time as an argument and never read a clock.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "NTP_UNIX_OFFSET",
    "PT_APP",
    "PT_BYE",
    "PT_RR",
    "PT_SDES",
    "PT_SR",
    "SDES_CNAME",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpParseError",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "build_rtcp",
    "ntp_from_unix",
    "ntp_middle32",
    "parse_rtcp",
    "unix_from_ntp",
]

PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203
PT_APP = 204
SDES_CNAME = 1

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

_HDR = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_SR_INFO = struct.Struct("!IQIII")  # sender SSRC, NTP, RTP ts, packet count, octet count
_BLOCK = struct.Struct("!IIIIII")  # ssrc, fraction<<24|lost, highest, jitter, lsr, dlsr


class RtcpParseError(ValueError):
    """The datagram is not a valid (compound) RTCP packet (RFC 3550 A.2)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# -- NTP time (RFC 3550 §4) ------------------------------------------------------------------


def ntp_from_unix(wallclock: float) -> int:
    """64-bit NTP timestamp for a Unix wall-clock time in seconds (RFC 3550 §4)."""
    seconds = int(wallclock // 1)
    fraction = int((wallclock - seconds) * 4294967296.0)
    return (((seconds + NTP_UNIX_OFFSET) & 0xFFFFFFFF) << 32) | min(fraction, 0xFFFFFFFF)


def unix_from_ntp(ntp: int) -> float:
    """Unix time for a 64-bit NTP timestamp (era 0, i.e. 1900..2036)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 4294967296.0


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as carried in LSR (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


# -- packet model ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # 8-bit fixed point, lost/expected * 256
    cumulative_lost: int  # signed 24-bit
    highest_seq: int  # extended highest sequence number received
    jitter: int  # timestamp units
    lsr: int
    dlsr: int  # 1/65536 s

    def to_bytes(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_seq & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    """SR (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    """RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its (item type, value) list (RFC 3550 §6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        """The CNAME item (§6.5.1) decoded as UTF-8, if present."""
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription:
    """SDES (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """BYE (RFC 3550 §6.6)."""

    ssrcs: tuple[int, ...]
    reason: str | None = None


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye


# -- build -----------------------------------------------------------------------------------


def _header(count: int, packet_type: int, body_len: int) -> bytes:
    if count > 31:
        raise ValueError("at most 31 report blocks / chunks / sources")
    return _HDR.pack(0x80 | count, packet_type, body_len // 4)


def _pad32(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _build_one(packet: RtcpPacket) -> bytes:
    if isinstance(packet, SenderReport):
        body = _SR_INFO.pack(
            packet.ssrc,
            packet.ntp_timestamp & 0xFFFFFFFFFFFFFFFF,
            packet.rtp_timestamp & 0xFFFFFFFF,
            packet.packet_count & 0xFFFFFFFF,
            packet.octet_count & 0xFFFFFFFF,
        ) + b"".join(b.to_bytes() for b in packet.reports)
        return _header(len(packet.reports), PT_SR, len(body)) + body
    if isinstance(packet, ReceiverReport):
        body = _U32.pack(packet.ssrc) + b"".join(b.to_bytes() for b in packet.reports)
        return _header(len(packet.reports), PT_RR, len(body)) + body
    if isinstance(packet, SourceDescription):
        parts = []
        for chunk in packet.chunks:
            items = b"".join(
                bytes((kind, len(value))) + value for kind, value in chunk.items
            )
            # Null item terminates the list; then pad the chunk to a 32-bit boundary (§6.5).
            parts.append(_pad32(_U32.pack(chunk.ssrc) + items + b"\x00"))
        body = b"".join(parts)
        return _header(len(packet.chunks), PT_SDES, len(body)) + body
    body = b"".join(_U32.pack(s) for s in packet.ssrcs)
    if packet.reason is not None:
        text = packet.reason.encode("utf-8")[:255]
        body += _pad32(bytes((len(text),)) + text)
    return _header(len(packet.ssrcs), PT_BYE, len(body)) + body


def build_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialise packets into one compound RTCP datagram (RFC 3550 §6.1)."""
    return b"".join(_build_one(p) for p in packets)


# -- parse -----------------------------------------------------------------------------------


def _blocks(data: bytes, offset: int, count: int, end: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > end:
        raise RtcpParseError("truncated", "report blocks exceed packet length")
    out = []
    for i in range(count):
        ssrc, word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset + 24 * i)
        lost = word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        out.append(
            ReportBlock(
                ssrc=ssrc,
                fraction_lost=word >> 24,
                cumulative_lost=lost,
                highest_seq=highest,
                jitter=jitter,
                lsr=lsr,
                dlsr=dlsr,
            )
        )
    return tuple(out)


def _parse_sdes(data: bytes, offset: int, count: int, end: int) -> SourceDescription:
    chunks = []
    for _ in range(count):
        if offset + 4 > end:
            raise RtcpParseError("truncated", "SDES chunk")
        (ssrc,) = _U32.unpack_from(data, offset)
        pos = offset + 4
        items = []
        while True:
            if pos >= end:
                raise RtcpParseError("truncated", "SDES item list not terminated")
            kind = data[pos]
            if kind == 0:
                pos += 1
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtcpParseError("truncated", "SDES item")
            length = data[pos + 1]
            items.append((kind, bytes(data[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        offset = pos + (-(pos - offset) % 4)  # chunk padded to 32 bits from its start
        chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
    return SourceDescription(chunks=tuple(chunks))


def _parse_bye(data: bytes, offset: int, count: int, end: int) -> Bye:
    if offset + 4 * count > end:
        raise RtcpParseError("truncated", "BYE sources")
    ssrcs = struct.unpack_from(f"!{count}I", data, offset)
    pos = offset + 4 * count
    reason = None
    if pos < end:
        length = data[pos]
        if pos + 1 + length > end:
            raise RtcpParseError("truncated", "BYE reason")
        reason = bytes(data[pos + 1 : pos + 1 + length]).decode("utf-8", "replace")
    return Bye(ssrcs=tuple(ssrcs), reason=reason)


def parse_rtcp(data: bytes | bytearray | memoryview, *, strict: bool = False) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram (RFC 3550 §6.1, validity checks of A.2).

    Returns SR, RR, SDES and BYE packets in order; APP (§6.7) and unknown types (feedback, XR)
    are skipped. Raises :class:`RtcpParseError` on a bad version, lengths that do not add up,
    padding on a packet other than the last, or truncated contents. ``strict`` additionally
    requires the first packet to be SR or RR (a full compound packet, not RFC 5506
    reduced-size).
    """
    data = bytes(data)
    size = len(data)
    if size < 4:
        raise RtcpParseError("too_short", f"{size} octets")
    if size % 4:
        raise RtcpParseError("bad_length", "not a multiple of 32 bits")
    out: list[RtcpPacket] = []
    offset = 0
    while offset < size:
        if offset + 4 > size:
            raise RtcpParseError("truncated", "header")
        b0, packet_type, words = _HDR.unpack_from(data, offset)
        if b0 >> 6 != 2:
            raise RtcpParseError("bad_version", str(b0 >> 6))
        if offset == 0 and strict and packet_type not in (PT_SR, PT_RR):
            raise RtcpParseError("not_compound", f"first packet type {packet_type}")
        end = offset + 4 + 4 * words
        if end > size:
            raise RtcpParseError("bad_length", f"packet of {4 * words + 4} octets overruns")
        count = b0 & 0x1F
        content_end = end
        if b0 & 0x20:
            if end != size:
                raise RtcpParseError("bad_padding", "padding before the last packet")
            pad = data[end - 1]
            if pad == 0 or offset + 4 + pad > end:
                raise RtcpParseError("bad_padding", f"padding count {pad}")
            content_end = end - pad
        body = offset + 4
        if packet_type == PT_SR:
            if body + _SR_INFO.size > content_end:
                raise RtcpParseError("truncated", "sender info")
            ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(data, body)
            out.append(
                SenderReport(
                    ssrc=ssrc,
                    ntp_timestamp=ntp,
                    rtp_timestamp=rtp_ts,
                    packet_count=packets,
                    octet_count=octets,
                    reports=_blocks(data, body + _SR_INFO.size, count, content_end),
                )
            )
        elif packet_type == PT_RR:
            if body + 4 > content_end:
                raise RtcpParseError("truncated", "RR sender SSRC")
            (ssrc,) = _U32.unpack_from(data, body)
            out.append(
                ReceiverReport(ssrc=ssrc, reports=_blocks(data, body + 4, count, content_end))
            )
        elif packet_type == PT_SDES:
            out.append(_parse_sdes(data, body, count, content_end))
        elif packet_type == PT_BYE:
            out.append(_parse_bye(data, body, count, content_end))
        offset = end
    return out
