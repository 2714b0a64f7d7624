"""Sans-I/O RTP session of one call leg (RFC 3550 §5-§6, RFC 4961 symmetric RTP).

One :class:`RtpSession` holds everything the media engine needs per leg:

* receive: parse (RFC 3550 §5.1), filter by negotiated payload type, validate the source
  (A.1 probation, SSRC change after the new source validates), latch the remote address on the
  first valid packet (symmetric RTP, RFC 4961 §3 / "comedia") and then drop other sources,
  gather receiver statistics (A.3, A.8) and queue audio in the leg's :class:`JitterBuffer`;
  RFC 4733 telephone-event packets are handed back to the caller for the DTMF receiver.
* send: one packet per media tick with continuous sequence numbers and a timestamp derived from
  the sample count (RFC 3550 §5.1); the marker bit starts each talkspurt (RFC 3551 §4.1) and a
  gap in sending advances the timestamp by the elapsed time. Event packets (RFC 4733 §2.3)
  share the sequence space and carry the event's start timestamp.
* RTCP: SR (or RR before we sent anything) + SDES CNAME at the RFC 3550 §6.2/§6.3 interval
  (minimum 5 s, first at half, randomised over [0.5, 1.5] and divided by e - 3/2 = 1.21828),
  with a random generator seeded from the constructor; LSR/DLSR bookkeeping (§6.4.1), RTT from
  report blocks about us, BYE (§6.6) at hangup.

Every call that needs time takes ``now`` (monotonic seconds); wall-clock time for NTP
timestamps is passed in as ``wallclock``.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from bridge.rtp.jitter import Frame, JitterBuffer, JitterConfig
from bridge.rtp.packet import (
    RtpPacket,
    RtpParseError,
    build_rtp,
    is_rtcp,
    parse_rtp,
)
from bridge.rtp.rtcp import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_from_unix,
    ntp_middle32,
    parse_rtcp,
)
from bridge.rtp.seq import SeqConfig, SeqVerdict, ts_diff
from bridge.rtp.stats import ReceiverStats

__all__ = [
    "Address",
    "PayloadFormat",
    "ReceivedPacket",
    "RtpSession",
    "SessionConfig",
    "SessionCounters",
]

Address = tuple[str, int]

_RTCP_COMPENSATION = 2.718281828459045 - 1.5  # RFC 3550 §6.3.1, e - 3/2
_MAX_SR_REMEMBERED = 8
_HEADER = struct.Struct("!BBHII")  # RFC 3550 §5.1 fixed header
_SEQ_TS_SSRC = struct.Struct("!HII")  # octets 2..11 of the fixed header


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadFormat:
    """The negotiated payload types (RFC 3264 answer) for this leg."""

    audio_pt: int
    clock_rate: int = 8000
    event_pt: int | None = None  # telephone-event (RFC 4733), if negotiated
    frame_samples: int = 160  # samples per packet sent (ptime 20 ms at 8 kHz)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """Per-leg tuning. ``jitter`` and ``seq`` tune the buffer and RFC 3550 A.1."""

    symmetric_rtp: bool = True  # latch to the first valid source, drop others (RFC 4961)
    max_timestamp_jump: int = 8000  # samples; larger audio jumps are counted (buffer resyncs)
    talkspurt_gap: float = 0.1  # seconds without sending that start a new talkspurt
    rtcp_interval: float = 5.0  # RFC 3550 §6.2 minimum interval
    jitter: JitterConfig = field(default_factory=JitterConfig)
    seq: SeqConfig = field(default_factory=SeqConfig)


@dataclass(slots=True)
class SessionCounters:
    """Cumulative counters for metrics (read-only for callers; see also ``jitter.counters``)."""

    packets_received: int = 0  # accepted RTP packets (audio + events)
    octets_received: int = 0  # payload octets of accepted packets
    events_received: int = 0
    dropped_malformed: int = 0
    dropped_foreign_source: int = 0  # from another address after latching
    dropped_payload_type: int = 0  # payload type not negotiated
    dropped_probation: int = 0  # RFC 3550 A.1 probation (new source or new SSRC)
    dropped_sequence_jump: int = 0  # A.1 large jump awaiting confirmation
    ssrc_changes: int = 0
    sequence_restarts: int = 0
    timestamp_jumps: int = 0
    packets_sent: int = 0
    octets_sent: int = 0  # payload octets (the SR octet count)
    rtcp_sent: int = 0
    rtcp_received: int = 0
    rtcp_malformed: int = 0
    remote_bye: int = 0


class ReceivedPacket(NamedTuple):
    """An accepted RTP packet. Audio is already queued in the jitter buffer.

    Immutable; a ``NamedTuple`` because one is built per received packet.
    """

    packet: RtpPacket
    addr: Address
    arrival: float
    is_event: bool  # RFC 4733 telephone-event: feed the DTMF receiver


class RtpSession:
    """Per-leg RTP/RTCP state; see the module docstring."""

    def __init__(
        self,
        *,
        ssrc: int,
        payload: PayloadFormat,
        remote: Address | None,
        now: float,
        cname: str,
        config: SessionConfig | None = None,
        initial_sequence: int = 0,
        initial_timestamp: int = 0,
        rtcp_seed: int | None = None,
        last_send: float | None = None,
    ) -> None:
        self.config = config if config is not None else SessionConfig()
        self.ssrc = ssrc & 0xFFFFFFFF
        self.cname = cname
        self.counters = SessionCounters()
        self.jitter = JitterBuffer(self.config.jitter)
        self._payload = payload
        self._set_fast_fields(payload)
        # Where to send RTP: the latched source, else the SDP address. A plain attribute (read
        # per leg per tick); change it with set_remote.
        self.remote = remote
        self._remote_rtcp: Address | None = None
        self._latched = False
        self._stats: ReceiverStats | None = None
        self._candidate: ReceiverStats | None = None
        self._last_audio_ts: int | None = None
        # send side
        self._seq = initial_sequence & 0xFFFF
        self._ts = initial_timestamp & 0xFFFFFFFF  # timestamp of the next audio frame
        self._last_send = last_send  # a continued stream (another process sent before)
        # RTCP
        self._rng = random.Random(self.ssrc if rtcp_seed is None else rtcp_seed)
        self._next_rtcp = now + self._rtcp_interval(initial=True)
        self._sr_sent: dict[int, float] = {}
        self.round_trip_time: float | None = None
        self.remote_left = False

    # -- addresses and negotiation ---------------------------------------------------------

    @property
    def remote_rtcp(self) -> Address | None:
        """Where to send RTCP: the latched RTCP source, else RTP port + 1 (RFC 3550 §11)."""
        if self._remote_rtcp is not None:
            return self._remote_rtcp
        if self.remote is None:
            return None
        return (self.remote[0], self.remote[1] + 1)

    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def payload_format(self) -> PayloadFormat:
        return self._payload

    @property
    def remote_ssrc(self) -> int | None:
        return None if self._stats is None else self._stats.ssrc

    @property
    def receiver_stats(self) -> ReceiverStats | None:
        """Statistics about the current remote source."""
        return self._stats

    def set_remote(self, addr: Address | None) -> None:
        """New SDP address (re-INVITE): send there and latch again on the next valid packet."""
        self.remote = addr
        self._remote_rtcp = None
        self._latched = False

    def set_payload_format(self, payload: PayloadFormat) -> None:
        """Payload types renegotiated (re-INVITE)."""
        self._payload = payload
        self._set_fast_fields(payload)

    def _set_fast_fields(self, payload: PayloadFormat) -> None:
        # Plain attributes for the per-packet fast paths (one lookup instead of two).
        self._audio_pt = payload.audio_pt
        self._frame_samples = payload.frame_samples

    # -- receive ---------------------------------------------------------------------------

    def receive(self, data: bytes, addr: Address, now: float) -> ReceivedPacket | None:
        """Handle one datagram from the RTP port; return it if accepted, else ``None``.

        Drops are counted in :attr:`counters` by reason. RTCP multiplexed on the RTP port
        (RFC 5761) is passed to :meth:`receive_rtcp`.
        """
        c = self.counters
        if self._latched and addr != self.remote:
            c.dropped_foreign_source += 1
            return None
        if is_rtcp(data):
            self.receive_rtcp(data, addr, now)
            return None
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            c.dropped_malformed += 1
            return None
        pt = packet.payload_type
        fmt = self._payload
        if pt == fmt.audio_pt:
            is_event = False
        elif pt == fmt.event_pt:
            is_event = True
        else:
            c.dropped_payload_type += 1
            return None
        stats = self._stats
        seq = packet.sequence
        if stats is None:
            stats = self._stats = ReceiverStats(
                packet.ssrc, seq, clock_rate=fmt.clock_rate, seq=self.config.seq
            )
        elif packet.ssrc != stats.ssrc:
            # A new SSRC takes over once it has passed A.1 probation on its own.
            cand = self._candidate
            if cand is None or cand.ssrc != packet.ssrc:
                cand = self._candidate = ReceiverStats(
                    packet.ssrc, seq, clock_rate=fmt.clock_rate, seq=self.config.seq
                )
            if not cand.update(seq, packet.timestamp, now, sample_jitter=not is_event).accepted:
                c.dropped_probation += 1
                return None
            self._stats, stats, self._candidate = cand, cand, None
            c.ssrc_changes += 1
            self.jitter.reset()
            self._last_audio_ts = None
            return self._accept(packet, addr, now, is_event)
        verdict = stats.update(seq, packet.timestamp, now, sample_jitter=not is_event)
        if verdict is SeqVerdict.PROBATION:
            c.dropped_probation += 1
            return None
        if verdict is SeqVerdict.JUMPED:
            c.dropped_sequence_jump += 1
            return None
        if verdict is SeqVerdict.RESTARTED:
            c.sequence_restarts += 1
        return self._accept(packet, addr, now, is_event)

    def receive_media(self, data: bytes, addr: Address, now: float) -> RtpPacket | None:
        """As :meth:`receive`, for the media engine: returns only accepted RFC 4733
        telephone-event packets (for the DTMF receiver); accepted audio is queued in the
        jitter buffer and, like every drop, returns ``None``.

        Fast path for the common packet: from the latched source, a plain 12-byte header
        (V=2, no padding, extension or CSRC, marker clear) with the audio payload type, the
        current SSRC and the next sequence number. Such a packet passes every RFC 3550 A.1
        check of the general path with the verdict VALID, so it is accounted exactly as
        :meth:`receive` would (same counters, A.8 jitter, jitter-buffer put) without building
        an :class:`RtpPacket`. Anything else takes the general path.
        """
        stats = self._stats
        if (
            len(data) >= 12
            and data[1] == self._audio_pt  # also rules out RTCP (RFC 5761: 192..223)
            and data[0] == 0x80
            and self._latched
            and stats is not None
            and addr == self.remote
        ):
            seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
            if ssrc == stats.ssrc and stats.update_next(seq, ts, now):
                c = self.counters
                c.packets_received += 1
                c.octets_received += len(data) - 12
                last = self._last_audio_ts
                if (
                    last is not None
                    and abs(((ts - last + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
                    > self.config.max_timestamp_jump
                ):
                    c.timestamp_jumps += 1
                self._last_audio_ts = ts
                self.jitter.put(seq, ts, data[12:], now)
                return None
        received = self.receive(data, addr, now)
        if received is None or not received.is_event:
            return None
        return received.packet

    def _accept(
        self, packet: RtpPacket, addr: Address, now: float, is_event: bool
    ) -> ReceivedPacket:
        c = self.counters
        if self.config.symmetric_rtp and not self._latched:
            self.remote = addr
            self._latched = True
        c.packets_received += 1
        c.octets_received += len(packet.payload)
        if is_event:
            c.events_received += 1
        else:
            ts = packet.timestamp
            last = self._last_audio_ts
            if last is not None and abs(ts_diff(ts, last)) > self.config.max_timestamp_jump:
                c.timestamp_jumps += 1
            self._last_audio_ts = ts
            self.jitter.put(packet.sequence, ts, packet.payload, now)
        return ReceivedPacket(packet, addr, now, is_event)

    def pop_frame(self) -> Frame:
        """The audio frame to play this tick (call once per tick)."""
        return self.jitter.pop()

    # -- send ------------------------------------------------------------------------------

    @property
    def current_timestamp(self) -> int:
        """RTP timestamp the next audio frame will carry (an RFC 4733 event's start)."""
        return self._ts

    @property
    def next_sequence(self) -> int:
        return self._seq

    @property
    def last_send(self) -> float | None:
        """When the last audio packet was built (the ``now`` given to it), if any."""
        return self._last_send

    def _next_audio_header(self, now: float, marker: bool | None) -> tuple[int, int, bool]:
        fs = self._payload.frame_samples
        last = self._last_send
        gap = last is None or now - last > self.config.talkspurt_gap
        if last is not None and gap:
            # Keep the timestamp on the sampling clock across a pause (RFC 3550 §5.1).
            frame_time = fs / self._payload.clock_rate
            skipped = max(0, round((now - last) / frame_time) - 1)
            self._ts = (self._ts + skipped * fs) & 0xFFFFFFFF
        seq, ts = self._seq, self._ts
        self._seq = (seq + 1) & 0xFFFF
        self._ts = (ts + fs) & 0xFFFFFFFF
        self._last_send = now
        return seq, ts, gap if marker is None else marker

    def build_audio(self, payload: bytes, now: float, *, marker: bool | None = None) -> bytes:
        """Next audio packet: seq + 1, timestamp + frame_samples, marker on a new talkspurt."""
        last = self._last_send
        if marker is None and last is not None and now - last <= self.config.talkspurt_gap:
            # Inside a talkspurt (the common case): what _next_audio_header and build_rtp do
            # for it, without the tuple and the keyword call.
            seq = self._seq
            ts = self._ts
            self._seq = (seq + 1) & 0xFFFF
            self._ts = (ts + self._frame_samples) & 0xFFFFFFFF
            self._last_send = now
            c = self.counters
            c.packets_sent += 1
            c.octets_sent += len(payload)
            return _HEADER.pack(0x80, self._audio_pt, seq, ts, self.ssrc) + payload
        seq, ts, mark = self._next_audio_header(now, marker)
        self.counters.packets_sent += 1
        self.counters.octets_sent += len(payload)
        return build_rtp(
            payload_type=self._payload.audio_pt,
            sequence=seq,
            timestamp=ts,
            ssrc=self.ssrc,
            payload=payload,
            marker=mark,
        )

    def build_event(
        self,
        payload: bytes,
        now: float,
        *,
        marker: bool,
        timestamp: int,
        advance_clock: bool = True,
    ) -> bytes:
        """An RFC 4733 packet: next sequence number, the event's start ``timestamp``.

        With ``advance_clock`` the packet takes the place of this tick's audio frame, so the
        audio timestamp still advances by one frame. Raises ``ValueError`` if telephone-event
        was not negotiated.
        """
        pt = self._payload.event_pt
        if pt is None:
            raise ValueError("telephone-event was not negotiated")
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        if advance_clock:
            self._ts = (self._ts + self._payload.frame_samples) & 0xFFFFFFFF
            self._last_send = now
        self.counters.packets_sent += 1
        self.counters.octets_sent += len(payload)
        return build_rtp(
            payload_type=pt,
            sequence=seq,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )

    # -- RTCP ------------------------------------------------------------------------------

    def _rtcp_interval(self, *, initial: bool = False) -> float:
        base = self.config.rtcp_interval / (2.0 if initial else 1.0)
        return base * self._rng.uniform(0.5, 1.5) / _RTCP_COMPENSATION

    def next_timer(self) -> float:
        """When the next RTCP report is due (monotonic seconds)."""
        return self._next_rtcp

    def _report_packets(self, now: float, wallclock: float) -> list[RtcpPacket]:
        blocks: tuple[ReportBlock, ...] = ()
        if self._stats is not None and self._stats.received > 0:
            blocks = (self._stats.report_block(now),)
        first: RtcpPacket
        if self.counters.packets_sent:
            ntp = ntp_from_unix(wallclock)
            rtp_ts = self._ts
            if self._last_send is not None:
                # The timestamp "now" on the sampling clock: last frame sent + elapsed samples.
                elapsed = (now - self._last_send) * self._payload.clock_rate
                rtp_ts = self._ts - self._payload.frame_samples + round(elapsed)
            first = SenderReport(
                ssrc=self.ssrc,
                ntp_timestamp=ntp,
                rtp_timestamp=rtp_ts & 0xFFFFFFFF,
                packet_count=self.counters.packets_sent,
                octet_count=self.counters.octets_sent,
                reports=blocks,
            )
            if len(self._sr_sent) >= _MAX_SR_REMEMBERED:
                del self._sr_sent[next(iter(self._sr_sent))]
            self._sr_sent[ntp_middle32(ntp)] = now
        else:
            first = ReceiverReport(ssrc=self.ssrc, reports=blocks)
        cname = SdesChunk(ssrc=self.ssrc, items=((SDES_CNAME, self.cname.encode()[:255]),))
        return [first, SourceDescription(chunks=(cname,))]

    def build_rtcp(self, now: float, wallclock: float) -> bytes:
        """Compound SR/RR + SDES CNAME (RFC 3550 §6.1) and schedule the next report."""
        self._next_rtcp = now + self._rtcp_interval()
        self.counters.rtcp_sent += 1
        return build_rtcp(self._report_packets(now, wallclock))

    def build_bye(self, now: float, wallclock: float, reason: str | None = None) -> bytes:
        """Compound report + SDES + BYE for hangup (RFC 3550 §6.6)."""
        self.counters.rtcp_sent += 1
        packets = self._report_packets(now, wallclock)
        packets.append(Bye(ssrcs=(self.ssrc,), reason=reason))
        return build_rtcp(packets)

    def receive_rtcp(self, data: bytes, addr: Address, now: float) -> list[RtcpPacket] | None:
        """Handle one RTCP datagram: LSR from the remote SR, RTT from blocks about us, BYE.

        Returns the parsed packets, or ``None`` if malformed (counted).
        """
        try:
            packets = parse_rtcp(data)
        except RtcpParseError:
            self.counters.rtcp_malformed += 1
            return None
        self.counters.rtcp_received += 1
        if self.config.symmetric_rtp and self._remote_rtcp is None:
            self._remote_rtcp = addr
        remote = self.remote_ssrc
        for p in packets:
            if isinstance(p, SenderReport | ReceiverReport):
                if isinstance(p, SenderReport) and p.ssrc == remote and self._stats is not None:
                    self._stats.on_sender_report(p.ntp_timestamp, now)
                for block in p.reports:
                    sent = self._sr_sent.get(block.lsr) if block.lsr else None
                    if block.ssrc == self.ssrc and sent is not None:
                        self.round_trip_time = max(0.0, now - sent - block.dlsr / 65536)
            elif isinstance(p, Bye) and remote is not None and remote in p.ssrcs:
                self.remote_left = True
                self.counters.remote_bye += 1
        return packets

    def snapshot(self) -> SessionCounters:
        """A copy of the counters."""
        return replace(self.counters)
