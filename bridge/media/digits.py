"""One digit stream per leg from RFC 4733 events, SIP INFO and in-band tones.

A phone (or a trunk) may signal the same key press more than one way: RFC 4733 events plus
the tone left in the audio, or SIP INFO plus RFC 4733. :class:`DigitMerger` turns all of it
into one stream of :class:`~bridge.rtp.dtmf.DigitReceived`, each press counted once.

Policy (explicit, see :class:`DigitMergePolicy`):

1. Priority ``rfc4733 > info > inband``. A report from ``rfc4733`` is emitted at once. A
   lower-priority report waits ``hold`` seconds for a better source to claim the same press,
   then is emitted.
2. Two reports from *different* sources are the same press when they name the same digit
   and their time spans ``[start, start + duration]`` overlap, with ``window`` seconds of
   slack. Each press absorbs at most one report per source, so ``11`` pressed quickly and
   sent both ways is still two digits. Reports from one source are never merged: each
   source's own machinery (RFC 4733 timestamps, Goertzel pause) already delimits presses.
3. An RFC 4733 press in progress (:class:`~bridge.rtp.dtmf.DigitStarted`) claims matching
   lower-priority reports before its end packet arrives.
4. Once a leg has sent an RFC 4733 event, its in-band reports are dropped and
   :attr:`DigitMerger.inband_enabled` turns false so the engine can stop running the
   detector for the leg (``inband_off_after_rfc4733``).
5. Digits come out in order of their start time.

SIP INFO bodies (``application/dtmf-relay``, ``application/dtmf``) are decoded by
:func:`digit_from_info`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from bridge.rtp.dtmf import (
    DTMF_EVENT_CODES,
    DigitReceived,
    DigitSource,
    DigitStarted,
    DtmfError,
)

__all__ = ["DigitMergePolicy", "DigitMerger", "digit_from_info"]

PRIORITY: Final[dict[DigitSource, int]] = {"rfc4733": 3, "info": 2, "inband": 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitMergePolicy:
    """How reports from several sources are merged (seconds).

    ``hold``: how long an ``info`` or ``inband`` report waits for a better source.
    ``window``: slack when deciding whether two reports overlap in time.
    ``inband_off_after_rfc4733``: drop in-band digits once the leg has used RFC 4733.
    ``history``: how many emitted presses are remembered for matching late reports.
    """

    hold: float = 0.2
    window: float = 0.3
    inband_off_after_rfc4733: bool = True
    history: int = 32


@dataclass(slots=True, kw_only=True)
class _Press:
    digit: str
    start: float
    end: float
    sources: set[DigitSource] = field(default_factory=set)
    event: DigitReceived | None = None
    deadline: float = math.inf


class DigitMerger:
    """Per-leg merger of digit reports into one de-duplicated stream (sans-I/O)."""

    def __init__(self, policy: DigitMergePolicy | None = None) -> None:
        self.policy = policy if policy is not None else DigitMergePolicy()
        self._emitted: deque[_Press] = deque(maxlen=self.policy.history)
        self._pending: list[_Press] = []
        self._open: _Press | None = None  # RFC 4733 press started, not yet ended
        self._rfc4733_seen = False
        self.dropped = 0  # reports absorbed as duplicates or filtered by policy

    @property
    def inband_enabled(self) -> bool:
        """Whether in-band detection is still useful for this leg."""
        return not (self.policy.inband_off_after_rfc4733 and self._rfc4733_seen)

    @property
    def rfc4733_seen(self) -> bool:
        """Whether the leg has sent an RFC 4733 digit."""
        return self._rfc4733_seen

    def rfc4733_proven(self) -> None:
        """The leg sent RFC 4733 digits before (the same call, in another engine)."""
        self._rfc4733_seen = True

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` should run to release held reports.

        Reports that started after an RFC 4733 press still in progress have no timer: the
        end of that press (or its receiver's timeout) releases them, keeping the order.
        """
        return min((p.deadline for p in self._pending if not self._blocked(p)), default=None)

    def handle_timer(self, now: float) -> list[DigitReceived]:
        """Release held reports whose ``hold`` has expired."""
        return self._release(now, before=None)

    def add(self, event: DigitStarted | DigitReceived, now: float) -> list[DigitReceived]:
        """Feed one report; return the digits that are now final, in order."""
        if isinstance(event, DigitStarted):
            self._started(event)
            return self._release(now, before=None)
        if event.source == "rfc4733":
            self._rfc4733_seen = True
        elif event.source == "inband" and not self.inband_enabled:
            self.dropped += 1
            return []
        span = _Press(
            digit=event.digit,
            start=event.start,
            end=event.start + event.duration_ms / 1000.0,
            sources={event.source},
            event=event,
        )
        if event.source == "rfc4733" and self._open is not None:
            if self._open.digit == event.digit and self._overlaps(self._open, span):
                span.sources |= self._open.sources
            self._open = None
        for press in self._emitted:
            if self._matches(press, span, event.source):
                press.sources.add(event.source)
                self.dropped += 1
                return self._release(now, before=None)
        if self._open is not None and self._matches(self._open, span, event.source):
            self._open.sources.add(event.source)  # the RFC 4733 end will deliver it
            self.dropped += 1
            return self._release(now, before=None)
        for held in self._pending:
            if self._matches(held, span, event.source):
                self.dropped += 1
                held.sources.add(event.source)
                if held.event is None or PRIORITY[event.source] > PRIORITY[held.event.source]:
                    held.event = event
                    held.start = min(held.start, span.start)
                    held.end = max(held.end, span.end)
                if event.source == "rfc4733":
                    held.deadline = now
                return self._release(now, before=None)
        if event.source == "rfc4733":
            out = self._release(now, before=span.start)
            self._emitted.append(span)
            out.append(event)
            return out + self._release(now, before=None)
        span.deadline = now + self.policy.hold
        self._pending.append(span)
        return self._release(now, before=None)

    def reset(self) -> None:
        """Forget everything (the leg was re-used or re-INVITEd to a new media session)."""
        self._emitted.clear()
        self._pending.clear()
        self._open = None
        self._rfc4733_seen = False

    # -- internals ---------------------------------------------------------------------------

    def _started(self, event: DigitStarted) -> None:
        if event.source == "rfc4733":
            self._rfc4733_seen = True
        press = _Press(digit=event.digit, start=event.start, end=math.inf, sources={event.source})
        # Held lower-priority reports of this press are now the RFC 4733 press's business.
        for held in list(self._pending):
            if held.event is not None and self._matches(press, held, held.event.source):
                press.sources |= held.sources
                self._pending.remove(held)
                self.dropped += 1
        self._open = press

    def _blocked(self, held: _Press) -> bool:
        return self._open is not None and self._open.start <= held.start

    def _overlaps(self, a: _Press, b: _Press) -> bool:
        w = self.policy.window
        return a.start <= b.end + w and b.start <= a.end + w

    def _matches(self, press: _Press, span: _Press, source: DigitSource) -> bool:
        return (
            press.digit == span.digit
            and source not in press.sources
            and self._overlaps(press, span)
        )

    def _release(self, now: float, *, before: float | None) -> list[DigitReceived]:
        """Emit held reports in start order: those due now, or else (``before`` given) those
        that started before a digit about to be emitted."""
        out: list[DigitReceived] = []
        self._pending.sort(key=lambda p: p.start)
        while self._pending:
            head = self._pending[0]
            if before is not None:
                due = head.start < before
            else:
                due = head.deadline <= now and not self._blocked(head)
            if not due:
                break
            self._pending.pop(0)
            self._emitted.append(head)
            assert head.event is not None
            out.append(head.event)
        return out


def digit_from_info(
    content_type: str, body: bytes, now: float, *, default_duration_ms: int = 100
) -> DigitReceived | None:
    """Decode a SIP INFO DTMF body into a report (``None`` for hook flash).

    ``application/dtmf-relay`` carries ``Signal=5`` and optionally ``Duration=160`` (ms)
    lines; ``application/dtmf`` carries the bare digit. ``*``/``#`` are also accepted as the
    codes 10/11 some phones send. Raises :class:`DtmfError` with ``status`` 415 for another
    content type and 400 for a body without a usable digit.
    """
    ctype = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DtmfError("INFO body is not ASCII") from exc
    signal: str | None = None
    duration = default_duration_ms
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if not sep:
                continue
            key = name.strip().lower()
            if key == "signal":
                signal = value.strip()
            elif key == "duration":
                try:
                    duration = int(value.strip())
                except ValueError as exc:
                    raise DtmfError(f"bad Duration in INFO: {value!r}") from exc
                if duration < 0:
                    raise DtmfError(f"bad Duration in INFO: {value!r}")
    elif ctype == "application/dtmf":
        signal = text.strip()
    else:
        err = DtmfError(f"unsupported DTMF INFO content type {content_type!r}")
        err.status = 415
        raise err
    if signal is None:
        raise DtmfError("INFO body carries no Signal")
    if signal.isdigit() and len(signal) > 1:
        code = int(signal)
        if code == 16:
            return None  # hook flash
        if code >= len(DTMF_EVENT_CODES):
            raise DtmfError(f"unknown DTMF signal {signal!r}")
        signal = DTMF_EVENT_CODES[code]
    signal = signal.upper()
    if len(signal) != 1 or signal not in DTMF_EVENT_CODES:
        raise DtmfError(f"unknown DTMF signal {signal!r}")
    return DigitReceived(digit=signal, source="info", start=now, duration_ms=duration)
