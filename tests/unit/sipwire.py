"""An in-memory wire between SipEndpoints with a fake clock and a loss/duplication pattern.

Not a test module: the endpoint tests import it. Messages are delivered in FIFO order; the
clock only moves when nothing is in flight, jumping to the earliest timer of any endpoint.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bridge.sip.endpoint import Outgoing, SipEndpoint
from bridge.sip.events import Addr, Event


def start_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode("utf-8", "replace")


def cseq_of(data: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"cseq:"):
            return line[5:].strip().decode("utf-8", "replace")
    return ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message put on the wire (delivered or dropped)."""

    time: float
    src: Addr
    dst: Addr
    start: str  # start line: "INVITE sip:..." or "SIP/2.0 200 OK"
    cseq: str  # "1 INVITE"
    data: bytes
    dropped: bool

    @property
    def method(self) -> str:
        """Request method, or "<status> <cseq method>" for a response ("200 INVITE")."""
        words, cseq = self.start.split(), self.cseq.split()
        if self.start.startswith("SIP/2.0") and len(words) > 1 and cseq:
            return f"{words[1]} {cseq[-1]}"
        return words[0] if words else ""


@dataclass(slots=True)
class Rule:
    """Drop (or duplicate) the first ``count`` messages whose :attr:`Delivery.method` equals
    ``method`` (e.g. "ACK", "200 INVITE"); ``count=None`` means all of them."""

    method: str
    count: int | None = 1
    hits: int = 0

    def __call__(self, method: str) -> bool:
        if method != self.method:
            return False
        if self.count is not None and self.hits >= self.count:
            return False
        self.hits += 1
        return True


@dataclass
class Wire:
    endpoints: dict[Addr, SipEndpoint]
    now: float = 0.0
    drop: list[Rule] = field(default_factory=list)
    duplicate: list[Rule] = field(default_factory=list)
    log: list[Delivery] = field(default_factory=list)
    events: dict[Addr, list[Event]] = field(default_factory=dict)
    queue: deque[tuple[Addr, Outgoing]] = field(default_factory=deque)
    transport: str = "UDP"
    on_event: Callable[[Addr, Event], None] | None = None

    @classmethod
    def connect(cls, *endpoints: SipEndpoint) -> Wire:
        return cls({(ep.config.local_host, ep.config.local_port): ep for ep in endpoints})

    def addr_of(self, endpoint: SipEndpoint) -> Addr:
        return (endpoint.config.local_host, endpoint.config.local_port)

    def collect(self) -> None:
        """Take every endpoint's outgoing messages and new events."""
        for addr, endpoint in self.endpoints.items():
            for out in endpoint.datagrams_to_send():
                self.queue.append((addr, out))
            for event in endpoint.events():
                self.events.setdefault(addr, []).append(event)
                if self.on_event is not None:
                    self.on_event(addr, event)

    def flush(self) -> None:
        """Deliver everything in flight (and whatever that triggers) at the current time."""
        self.collect()
        while self.queue:
            src, out = self.queue.popleft()
            delivery = Delivery(self.now, src, out.addr, start_line(out.data), cseq_of(out.data),
                                out.data, dropped=False)
            if any(rule(delivery.method) for rule in self.drop):
                self.log.append(replace(delivery, dropped=True))
                continue
            self.log.append(delivery)
            copies = 2 if any(rule(delivery.method) for rule in self.duplicate) else 1
            target = self.endpoints.get(out.addr)
            for _ in range(copies):
                if target is not None:
                    target.receive(out.data, src, out.transport, self.now)
            self.collect()

    def next_timer(self) -> float | None:
        deadlines = [d for ep in self.endpoints.values() if (d := ep.next_timer()) is not None]
        return min(deadlines) if deadlines else None

    def run(self, duration: float, max_steps: int = 100_000) -> None:
        """Deliver, then advance the fake clock from timer to timer for ``duration`` seconds."""
        until = self.now + duration
        self.flush()
        for _ in range(max_steps):
            deadline = self.next_timer()
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            for endpoint in self.endpoints.values():
                endpoint.handle_timer(self.now)
            self.flush()
        else:  # pragma: no cover - a timer loop that never settles is a bug
            raise AssertionError("timers did not settle")
        self.now = max(self.now, until)

    def sent(self, method: str, *, src: SipEndpoint | None = None, dropped: bool | None = None
             ) -> list[Delivery]:
        """Messages of a kind ("INVITE", "200 INVITE" ...) put on the wire."""
        return [
            d for d in self.log
            if d.method == method
            and (src is None or d.src == self.addr_of(src))
            and (dropped is None or d.dropped == dropped)
        ]

    def events_of(self, endpoint: SipEndpoint) -> list[Event]:
        self.collect()
        return self.events.get(self.addr_of(endpoint), [])
