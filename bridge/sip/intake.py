"""Fair SIP intake: per-source token buckets in front of the SIP endpoint (sans-I/O).

One source must not be able to starve the others (a flood of OPTIONS or INVITEs from one
address). Every message that reached the shell is classified before the endpoint parses it:

* **dialog**: its Call-ID belongs to a call or registration the endpoint knows (in-dialog
  requests of established calls, ACK, CANCEL, retransmissions, responses). Limited per source
  by a generous bucket (``dialog_rate``); over it the message is dropped.
* **new**: everything else (a new INVITE, OPTIONS, REGISTER, stray responses, garbage).
  Limited per source by ``rate``/``burst``. Over the limit a request (not an ACK) is answered
  ``503 Service Unavailable`` with Retry-After while a small refusal bucket
  (``refusal_rate``) lasts, and dropped silently beyond it: a flooder gets 503s, then silence.
* **trunk**: any message from a configured trunk network goes through one large bucket of its
  own (``trunk_rate``), ahead of the per-source limits for everyone else.

A source with ``block_after`` messages dropped within one log interval is flooding: it is
blocked for ``block_seconds`` (:meth:`SipIntake.blocked` gives the set; the shell then drops
its datagrams in the kernel, so the flood neither costs CPU nor fills the socket buffer that
everyone shares). Trunks are never blocked.

The shell (``bridge.runtime``) reads the clock and passes ``now``; it also bounds how many
queued messages one source gets processed per turn of the event loop (the fair queue lives
in ``bridge.runtime.sip_transport``). Counters are plain attributes; :meth:`SipIntake.reports`
yields one summary per source that had messages refused or dropped in the last interval, for
one log line per source and interval instead of one per packet.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum

from bridge.sip.message import SipRequest, SipResponse

PEEK_BYTES = 4096  # the head of a datagram the classification looks at
# A header line "Call-ID: ..." or its compact form "i: ..." (RFC 3261 §7.3.3, §20.8).
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class Verdict(Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"  # answer 503 + Retry-After without a transaction
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Peek:
    """What the intake needs from a message, read without parsing it."""

    method: str | None  # None: a response (or not SIP at all when ``call_id`` is None too)
    call_id: str | None


def peek(data: bytes) -> Peek:
    """Method and Call-ID of a datagram by a quick scan of its head (a few microseconds).
    Anything unrecognisable gives ``Peek(None, None)``: new work, for the parser to refuse."""
    head = data[:PEEK_BYTES].lstrip(b"\r\n")
    end = _HEAD_END.search(head)
    if end is not None:
        head = head[: end.start() + 1]
    line_end = head.find(b"\n")
    first = head if line_end < 0 else head[:line_end]
    method: str | None = None
    if not first.startswith(b"SIP/"):
        token = first.split(b" ", 1)[0]
        method = token.decode("ascii", "replace").upper() if token else None
    match = _CALL_ID.search(head)
    call_id = match.group(1).strip().decode("utf-8", "surrogateescape") if match else None
    return Peek(method=method, call_id=call_id or None)


def peek_message(message: SipRequest | SipResponse) -> Peek:
    """The same for a message already framed and parsed (TCP)."""
    call_id = message.headers.get("Call-ID")
    method = message.method.upper() if isinstance(message, SipRequest) else None
    return Peek(method=method, call_id=call_id.strip() if call_id else None)


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """Per-source limits (messages per second, bucket depth). See the module docstring."""

    rate: float = 20.0
    burst: int = 60
    dialog_rate: float = 200.0
    dialog_burst: int = 400
    refusal_rate: float = 5.0
    refusal_burst: int = 10
    trunk_rate: float = 2000.0
    trunk_burst: int = 4000
    log_interval: float = 10.0
    max_sources: int = 20_000  # tracked sources; beyond it new ones share one bucket
    # A source with this many messages dropped within one interval is a flood: it is blocked
    # for block_seconds (the shell drops its datagrams in the kernel). 0: never block.
    block_after: int = 500
    block_seconds: float = 10.0


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; a message takes one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass(slots=True)
class _Source:
    trunk: bool
    new: TokenBucket
    dialog: TokenBucket
    refusals: TokenBucket
    last_seen: float
    blocked_until: float = 0.0
    accepted: int = 0
    refused: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class SourceReport:
    """One source's refused or dropped messages in the last interval (one log line)."""

    source: str
    accepted: int
    refused: int
    dropped: int
    seconds: float
    blocked: bool = False

    def __str__(self) -> str:
        return (f"SIP intake: source {self.source} over its limit: {self.refused} refused "
                f"(503), {self.dropped} dropped, {self.accepted} accepted in the last "
                f"{self.seconds:.0f} s" + ("; blocked (a flood)" if self.blocked else ""))


@dataclass(slots=True)
class IntakeCounters:
    accepted_new: int = 0
    accepted_dialog: int = 0
    accepted_trunk: int = 0
    refused: int = 0  # answered 503 + Retry-After
    dropped: int = 0  # over every limit: silence

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class SipIntake:
    """Admission of SIP messages per source address (``admit``), with counters."""

    limits: IntakeLimits = field(default_factory=IntakeLimits)
    is_trunk: Callable[[str], bool] = lambda _source: False
    counters: IntakeCounters = field(default_factory=IntakeCounters)
    _sources: dict[str, _Source] = field(default_factory=dict)
    _interval_start: float | None = None
    _blocked: dict[str, float] = field(default_factory=dict)  # source -> blocked until
    _blocked_changed: bool = False
    _full_swept_at: float | None = None  # last sweep for room when max_sources were tracked
    blocks: int = 0  # times a source was blocked

    def admit(self, source: str, message: Peek, known: bool, now: float) -> Verdict:
        """Decide for one message from ``source`` (an IP address). ``known``: the endpoint
        knows its Call-ID (an existing call, transaction or registration)."""
        state = self._source(source, now)
        state.last_seen = now
        counters = self.counters
        if state.trunk:
            if state.new.take(now):
                counters.accepted_trunk += 1
                state.accepted += 1
                return Verdict.ACCEPT
        elif known:
            if state.dialog.take(now):
                counters.accepted_dialog += 1
                state.accepted += 1
                return Verdict.ACCEPT
            counters.dropped += 1
            state.dropped += 1
            return Verdict.DROP
        elif state.new.take(now):
            counters.accepted_new += 1
            state.accepted += 1
            return Verdict.ACCEPT
        if message.method not in (None, "ACK") and state.refusals.take(now):
            counters.refused += 1
            state.refused += 1
            return Verdict.REFUSE
        counters.dropped += 1
        state.dropped += 1
        limits = self.limits
        if (limits.block_after and not state.trunk and state.dropped >= limits.block_after
                and source != "*" and source not in self._blocked):
            self._blocked[source] = now + limits.block_seconds
            self._blocked_changed = True
            self.blocks += 1
        return Verdict.DROP

    def blocked(self, now: float) -> frozenset[str] | None:
        """The sources to drop before they reach the shell (a flood), when that set changed
        since the last call (blocks expire after ``block_seconds``); else None."""
        expired = [s for s, until in self._blocked.items() if until <= now]
        for source in expired:
            del self._blocked[source]
            state = self._sources.get(source)
            if state is not None:
                state.dropped = 0  # a new chance; a flood that goes on is blocked again
        if not (expired or self._blocked_changed):
            return None
        self._blocked_changed = False
        return frozenset(self._blocked)

    def reports(self, now: float) -> list[SourceReport]:
        """Once per ``log_interval``: the sources that had messages refused or dropped since
        the last call (the interval's counts are reset). Empty between intervals."""
        if self._interval_start is None:
            self._interval_start = now
            return []
        seconds = now - self._interval_start
        if seconds < self.limits.log_interval:
            return []
        self._interval_start = now
        out: list[SourceReport] = []
        for source, state in self._sources.items():
            if state.refused or state.dropped:
                out.append(SourceReport(source, state.accepted, state.refused, state.dropped,
                                        seconds, source in self._blocked))
            state.accepted = state.refused = state.dropped = 0
        self._forget_idle(now)
        return out

    @property
    def sources(self) -> int:
        return len(self._sources)

    def _source(self, source: str, now: float) -> _Source:
        state = self._sources.get(source)
        if state is not None:
            return state
        if len(self._sources) >= self.limits.max_sources:
            # a sweep passes over every source: at most once a second, or a flood from
            # spoofed addresses would pay it on every datagram
            if self._full_swept_at is None or now - self._full_swept_at >= 1.0:
                self._full_swept_at = now
                self._forget_idle(now)
            if len(self._sources) >= self.limits.max_sources:
                source = "*"  # too many sources at once: the newcomers share one bucket
                state = self._sources.get(source)
                if state is not None:
                    return state
        limits = self.limits
        trunk = source != "*" and self.is_trunk(source)
        if trunk:
            new = TokenBucket(limits.trunk_rate, limits.trunk_burst, now)
        else:
            new = TokenBucket(limits.rate, limits.burst, now)
        state = _Source(
            trunk=trunk,
            new=new,
            dialog=TokenBucket(limits.dialog_rate, limits.dialog_burst, now),
            refusals=TokenBucket(limits.refusal_rate, limits.refusal_burst, now),
            last_seen=now,
        )
        self._sources[source] = state
        return state

    def _forget_idle(self, now: float) -> None:
        """Sources whose buckets are all full again carry no state worth keeping."""
        idle = [s for s, st in self._sources.items()
                if not (st.refused or st.dropped) and s not in self._blocked
                and st.new.full(now) and st.dialog.full(now) and st.refusals.full(now)]
        for source in idle:
            del self._sources[source]
