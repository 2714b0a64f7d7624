"""RFC 4733 telephone-events (DTMF over RTP): payload codec, receiver and sender.

Sans-I/O: nothing here reads the clock or touches a socket. The caller filters RTP packets
of the negotiated ``telephone-event`` payload type (PT 101, 96, ... is the SDP's business),
feeds them with the current monotonic time ``now``, and drives timers through
``next_timer()`` / ``handle_timer(now)``.

Payload format (RFC 4733 §2.3)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     event     |E|R| volume    |          duration             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Event codes 0-15 are the DTMF digits ``0-9 * # A-D`` (RFC 4733 §3.2); 16 is hook flash,
which a conference bridge ignores.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final, Literal

__all__ = [
    "DTMF_EVENT_CODES",
    "DigitReceived",
    "DigitSource",
    "DigitStarted",
    "DtmfError",
    "DtmfEvent",
    "Rfc4733Input",
    "Rfc4733Receiver",
    "Rfc4733ReceiverConfig",
    "Rfc4733Sender",
    "Rfc4733SenderConfig",
    "Rfc4733State",
    "TelephoneEvent",
    "build_event",
    "digit_to_event",
    "parse_event",
]

#: Event code -> digit, RFC 4733 §3.2 Table 7 (codes 0-15).
DTMF_EVENT_CODES: Final = "0123456789*#ABCD"
_EVENT_FLASH: Final = 16
_MAX_DURATION: Final = 0xFFFF
_HEADER = struct.Struct("!BBH")

DigitSource = Literal["rfc4733", "info", "inband"]


class DtmfError(ValueError):
    """A telephone-event payload or a digit that cannot be used.

    ``status`` is the SIP answer for a bad digit in a request that carried it (e.g. an INFO).
    """

    status: int = 400


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One decoded telephone-event payload (RFC 4733 §2.3)."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        """The DTMF digit for codes 0-15, ``None`` for any other event (flash, tones)."""
        return DTMF_EVENT_CODES[self.event] if self.event < len(DTMF_EVENT_CODES) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitStarted:
    """A key press has begun (first packet of an RFC 4733 event). Use it to mute audio."""

    digit: str
    source: DigitSource
    start: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitReceived:
    """One key press, counted once, from any source.

    ``start`` is the estimated monotonic time the press began; ``duration_ms`` is how long it
    lasted (RFC 4733, INFO) or had lasted when it was recognised (in-band).
    """

    digit: str
    source: DigitSource
    start: float
    duration_ms: int


DtmfEvent = DigitStarted | DigitReceived


def parse_event(payload: bytes) -> TelephoneEvent:
    """Decode a telephone-event payload (RFC 4733 §2.3).

    Only the first 4 bytes are read; redundant events packed after it (RFC 4733 §2.5.1.5)
    are ignored. Raises :class:`DtmfError` for fewer than 4 bytes.
    """
    if len(payload) < _HEADER.size:
        raise DtmfError(f"telephone-event payload needs 4 bytes, got {len(payload)}")
    event, flags, duration = _HEADER.unpack_from(payload)
    return TelephoneEvent(
        event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration
    )


def build_event(*, event: int, end: bool, volume: int, duration: int) -> bytes:
    """Encode a telephone-event payload (RFC 4733 §2.3); the R bit is sent as zero."""
    if not 0 <= event <= 255:
        raise DtmfError(f"event code out of range: {event}")
    if not 0 <= volume <= 63:
        raise DtmfError(f"volume out of range: {volume}")
    if not 0 <= duration <= _MAX_DURATION:
        raise DtmfError(f"duration out of range: {duration}")
    return _HEADER.pack(event, (0x80 if end else 0) | volume, duration)


def digit_to_event(digit: str) -> int:
    """Map ``0-9 * # A-D`` (case-insensitive) to its RFC 4733 event code."""
    code = DTMF_EVENT_CODES.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    return code


# --------------------------------------------------------------------------------------------
# Receiver (RFC 4733 §2.5.2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Rfc4733ReceiverConfig:
    """Tuning for :class:`Rfc4733Receiver`.

    ``end_timeout``: an event whose end packets were all lost is reported this long after its
    last packet (RFC 4733 §2.5.2.2 lets the receiver end an event that stops being updated).
    ``segment_slack``: timestamp slack (in clock ticks) when joining the segments of an event
    longer than 0xFFFF ticks (RFC 4733 §2.5.1.3).
    """

    clock_rate: int = 8000
    end_timeout: float = 0.5
    segment_slack: int = 1600


class Rfc4733State(Enum):
    """Receiver state for the current event (RFC 4733 §2.5.2)."""

    IDLE = auto()  # no event seen yet
    ACTIVE = auto()  # event in progress, no end packet yet: the leg's audio is suppressed
    ENDED = auto()  # end packet (or timeout) seen: retransmitted end packets are ignored


class Rfc4733Input(Enum):
    """Classified packet (or timer) fed to the receiver state machine."""

    NEW_EVENT = auto()  # marker bit or new timestamp, E bit clear
    NEW_EVENT_ENDED = auto()  # new event whose first surviving packet already has the E bit
    UPDATE = auto()  # same event, E bit clear (duration update, long press)
    END = auto()  # same event, E bit set (any of the three end packets)
    TIMEOUT = auto()  # no end packet within end_timeout


class _Action(Enum):
    BEGIN = auto()
    REPORT_AND_BEGIN = auto()
    REPORT_AND_REPORT_NEW = auto()
    REPORT_NEW = auto()
    EXTEND = auto()
    EXTEND_AND_REPORT = auto()
    REPORT = auto()
    IGNORE = auto()


_S = Rfc4733State
_I = Rfc4733Input
_A = _Action

#: {(state, input): (next_state, action)}; a missing key would be a classification bug.
RECEIVER_TRANSITIONS: Final[
    dict[tuple[Rfc4733State, Rfc4733Input], tuple[Rfc4733State, _Action]]
] = {
    (_S.IDLE, _I.NEW_EVENT): (_S.ACTIVE, _A.BEGIN),
    (_S.IDLE, _I.NEW_EVENT_ENDED): (_S.ENDED, _A.REPORT_NEW),
    (_S.ACTIVE, _I.NEW_EVENT): (_S.ACTIVE, _A.REPORT_AND_BEGIN),
    (_S.ACTIVE, _I.NEW_EVENT_ENDED): (_S.ENDED, _A.REPORT_AND_REPORT_NEW),
    (_S.ACTIVE, _I.UPDATE): (_S.ACTIVE, _A.EXTEND),
    (_S.ACTIVE, _I.END): (_S.ENDED, _A.EXTEND_AND_REPORT),
    (_S.ACTIVE, _I.TIMEOUT): (_S.ENDED, _A.REPORT),
    (_S.ENDED, _I.NEW_EVENT): (_S.ACTIVE, _A.BEGIN),
    (_S.ENDED, _I.NEW_EVENT_ENDED): (_S.ENDED, _A.REPORT_NEW),
    (_S.ENDED, _I.UPDATE): (_S.ENDED, _A.IGNORE),
    (_S.ENDED, _I.END): (_S.ENDED, _A.IGNORE),
}


def _serial_delta(a: int, b: int, bits: int) -> int:
    """Signed distance ``a - b`` in serial-number arithmetic (RFC 1982) modulo 2**bits."""
    half = 1 << (bits - 1)
    return ((a - b + half) % (1 << bits)) - half


class Rfc4733Receiver:
    """Turns a leg's telephone-event packets into one :class:`DigitReceived` per key press.

    * A new event starts on the marker bit or a new (later) timestamp (RFC 4733 §2.5.1.1); a
      marker with the current timestamp is only a new event if its sequence number is newer
      than every packet of the ended event (otherwise it is a retransmitted first packet).
    * Duration updates of a long press and the three end packets (§2.5.1.4) count once.
    * Long events split into segments (§2.5.1.3: new timestamp, no marker) stay one press.
    * A lost first packet is harmless: any later packet starts the event, and its start is
      estimated from the duration field.
    * If every end packet is lost the press is reported when the next event starts or
      ``end_timeout`` after the last packet (``next_timer``/``handle_timer``).
    * Packets older than the current event (reordered) are dropped. Hook flash (16) and
      other non-DTMF events are ignored.

    ``event_active`` is true from the first packet to the end: the engine suppresses the
    leg's audio meanwhile so that tones sent alongside the events never reach the others.
    """

    def __init__(self, config: Rfc4733ReceiverConfig | None = None) -> None:
        self.config = config if config is not None else Rfc4733ReceiverConfig()
        self.state = Rfc4733State.IDLE
        self._code = -1
        self._timestamp = 0  # RTP timestamp of the first segment of the current event
        self._segment_ts = 0  # RTP timestamp of the current segment
        self._last_seq = 0
        self._duration = 0  # total duration in clock ticks, across segments
        self._start = 0.0
        self._last_packet_at = 0.0

    @property
    def event_active(self) -> bool:
        """True while a key press is in progress (audio of this leg should be muted)."""
        return self.state is Rfc4733State.ACTIVE

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or ``None``."""
        if self.state is Rfc4733State.ACTIVE:
            return self._last_packet_at + self.config.end_timeout
        return None

    def handle_timer(self, now: float) -> list[DtmfEvent]:
        """Report an event whose end packets never arrived."""
        deadline = self.next_timer()
        if deadline is None or now < deadline:
            return []
        return self._apply(Rfc4733Input.TIMEOUT, None, 0, 0, now)

    def receive(
        self, *, marker: bool, timestamp: int, sequence: int, payload: bytes, now: float
    ) -> list[DtmfEvent]:
        """Feed one RTP packet of the telephone-event payload type.

        Returns the events it caused: :class:`DigitStarted` when a press begins and
        :class:`DigitReceived` when it is complete. Raises :class:`DtmfError` on a short
        payload.
        """
        ev = parse_event(payload)
        if ev.digit is None:  # flash (16) and non-DTMF tones: not digits for a bridge
            return []
        kind = self._classify(ev, marker, timestamp, sequence)
        if kind is None:
            return []
        return self._apply(kind, ev, timestamp, sequence, now)

    # -- internals ---------------------------------------------------------------------------

    def _classify(
        self, ev: TelephoneEvent, marker: bool, timestamp: int, sequence: int
    ) -> Rfc4733Input | None:
        new = Rfc4733Input.NEW_EVENT_ENDED if ev.end else Rfc4733Input.NEW_EVENT
        if self.state is Rfc4733State.IDLE:
            return new
        same = Rfc4733Input.END if ev.end else Rfc4733Input.UPDATE
        ts_delta = _serial_delta(timestamp, self._segment_ts, 32)
        if ts_delta < 0:
            return None  # reordered packet of an older event
        if ts_delta == 0:
            if (
                marker
                and self.state is Rfc4733State.ENDED
                and _serial_delta(sequence, self._last_seq, 16) > 0
                and not ev.end
            ):
                return new  # sender reused the timestamp for a genuinely new press
            return same if ev.event == self._code else None
        # Later timestamp: a new event, unless it continues a long event (§2.5.1.3).
        slack = self.config.segment_slack
        segment_len = self._duration - _serial_delta(self._segment_ts, self._timestamp, 32)
        if (
            not marker
            and self.state is Rfc4733State.ACTIVE
            and ev.event == self._code
            and segment_len >= _MAX_DURATION - slack
            and ts_delta <= _MAX_DURATION + slack
        ):
            self._segment_ts = timestamp
            return same
        return new

    def _apply(
        self,
        kind: Rfc4733Input,
        ev: TelephoneEvent | None,
        timestamp: int,
        sequence: int,
        now: float,
    ) -> list[DtmfEvent]:
        next_state, action = RECEIVER_TRANSITIONS[(self.state, kind)]
        out: list[DtmfEvent] = []
        if action in (_A.REPORT, _A.REPORT_AND_BEGIN, _A.REPORT_AND_REPORT_NEW):
            out.append(self._report())
        if ev is not None and action in (
            _A.BEGIN,
            _A.REPORT_AND_BEGIN,
            _A.REPORT_NEW,
            _A.REPORT_AND_REPORT_NEW,
        ):
            self._begin(ev, timestamp, now)
            if action in (_A.BEGIN, _A.REPORT_AND_BEGIN):
                out.append(
                    DigitStarted(
                        digit=DTMF_EVENT_CODES[ev.event], source="rfc4733", start=self._start
                    )
                )
        if ev is not None and action in (_A.EXTEND, _A.EXTEND_AND_REPORT):
            offset = _serial_delta(self._segment_ts, self._timestamp, 32)
            self._duration = max(self._duration, offset + ev.duration)
        if action in (_A.REPORT_NEW, _A.REPORT_AND_REPORT_NEW, _A.EXTEND_AND_REPORT):
            out.append(self._report())
        if ev is not None and action is not _A.IGNORE:
            self._last_seq = sequence
            self._last_packet_at = now
        elif ev is not None and _serial_delta(sequence, self._last_seq, 16) > 0:
            self._last_seq = sequence
        self.state = next_state
        return out

    def _begin(self, ev: TelephoneEvent, timestamp: int, now: float) -> None:
        self._code = ev.event
        self._timestamp = timestamp
        self._segment_ts = timestamp
        self._duration = ev.duration
        # A lost first packet: the duration field says how long the press has lasted.
        self._start = now - ev.duration / self.config.clock_rate

    def _report(self) -> DigitReceived:
        return DigitReceived(
            digit=DTMF_EVENT_CODES[self._code],
            source="rfc4733",
            start=self._start,
            duration_ms=self._duration * 1000 // self.config.clock_rate,
        )


# --------------------------------------------------------------------------------------------
# Sender (RFC 4733 §2.5.1)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Rfc4733SenderConfig:
    """Tuning for :class:`Rfc4733Sender`; times in milliseconds.

    ``volume`` is the power level in -dBm0 (RFC 4733 §2.3.4, 0..63).
    """

    tone_ms: int = 100
    gap_ms: int = 60
    packet_ms: int = 20
    volume: int = 10
    end_repeats: int = 3
    clock_rate: int = 8000


class Rfc4733Sender:
    """Generates telephone-event payloads for queued digits, one call per packet tick.

    RFC 4733 §2.5.1: every packet of an event carries the event's start timestamp; the first
    has the marker bit (§2.5.1.1); the duration grows by one packet interval per packet
    (§2.5.1.2); the final packet has the E bit and is sent ``end_repeats`` (3) times with the
    same duration (§2.5.1.4). Digits are separated by ``gap_ms`` of normal audio, during
    which :meth:`next_packet` returns ``None`` and the engine sends audio as usual.
    """

    def __init__(self, config: Rfc4733SenderConfig | None = None) -> None:
        self.config = config if config is not None else Rfc4733SenderConfig()
        cfg = self.config
        if cfg.tone_ms <= 0 or cfg.packet_ms <= 0 or cfg.gap_ms < 0 or cfg.end_repeats < 1:
            raise DtmfError("invalid RFC 4733 sender timing")
        self._step = cfg.clock_rate * cfg.packet_ms // 1000
        self._tone_ticks = cfg.clock_rate * cfg.tone_ms // 1000
        self._tone_packets = -(-cfg.tone_ms // cfg.packet_ms)
        self._gap_packets = -(-cfg.gap_ms // cfg.packet_ms)
        self._queue: deque[int] = deque()
        self._tick_ts = 0  # RTP timestamp of the tick next_packet() is about to serve
        self._code = -1
        self._event_ts = 0
        self._index = 0  # packet index within the current event (or gap)
        self._in_gap = False

    @property
    def busy(self) -> bool:
        """True while a digit is being sent, queued, or its trailing gap is running."""
        return self._code >= 0 or self._in_gap or bool(self._queue)

    @property
    def sending(self) -> bool:
        """True while event packets (not gap) are produced for the current tick."""
        return self._code >= 0

    def start(self, digit: str, now: float, timestamp: int) -> None:
        """Queue ``digit``. ``timestamp`` is the RTP timestamp of the next tick if idle.

        While busy the timestamp is ignored: later digits follow on the sender's own tick
        count. ``now`` is accepted for the sans-I/O calling convention; timing is tick-driven.
        """
        del now
        code = digit_to_event(digit)
        if not self.busy:
            self._tick_ts = timestamp & 0xFFFFFFFF
        self._queue.append(code)

    def next_packet(self) -> tuple[bytes, bool, int] | None:
        """Payload, marker bit and RTP timestamp for this tick, or ``None`` (send audio)."""
        tick_ts = self._tick_ts
        self._tick_ts = (self._tick_ts + self._step) & 0xFFFFFFFF
        if self._code < 0:
            if self._in_gap:
                if self._index < self._gap_packets:
                    self._index += 1
                    return None
                self._in_gap = False
            if not self._queue:
                return None
            self._code = self._queue.popleft()
            self._event_ts = tick_ts
            self._index = 0
        cfg = self.config
        index = self._index
        self._index += 1
        duration = min((index + 1) * self._step, self._tone_ticks)
        end = index >= self._tone_packets - 1
        payload = build_event(event=self._code, end=end, volume=cfg.volume, duration=duration)
        if index >= self._tone_packets - 1 + cfg.end_repeats - 1:
            self._code = -1
            self._index = 0
            self._in_gap = self._gap_packets > 0
        return payload, index == 0, self._event_ts
