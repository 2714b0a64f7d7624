"""SIP transactions (RFC 3261 §17, with the RFC 6026 Accepted states).

Four state machines, each an ``Enum`` of states, an ``Enum`` of inputs and an explicit table
``{(state, input): (next_state, actions)}``:

* INVITE client transaction (ICT, §17.1.1, RFC 6026 §7.2): Calling, Proceeding, Completed,
  Accepted, Terminated. It builds and sends the ACK for a non-2xx final response itself
  (§17.1.1.3); it never ACKs a 2xx (the UAC core does, §13.2.2.4).
* non-INVITE client transaction (NICT, §17.1.2): Trying, Proceeding, Completed, Terminated.
* INVITE server transaction (IST, §17.2.1, RFC 6026 §7.1): Proceeding, Completed, Confirmed,
  Accepted, Terminated. It never retransmits a 2xx on its own (the UAS core does, §13.3.1.4);
  in Accepted it sends the retransmissions the core hands it.
* non-INVITE server transaction (NIST, §17.2.2): Trying, Proceeding, Completed, Terminated.

An input with no table entry is a protocol error: it is ignored and counted in
``protocol_errors`` (a stray 1xx after the final response, a TU answering twice ...).

Transactions are sans-I/O: each input method takes ``now`` and returns the list of outputs
(:class:`SendMessage`, :class:`PassToTu`, :class:`TimedOut`, :class:`TransportFailed`); timers
are deadlines exposed through ``next_timer()`` and fired by ``handle_timer(now)``.
Retransmission timers (A, E, G) run only over unreliable transports; the wait timers D, I, J
and K are zero over reliable ones (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).

Matching (§17.1.3, §17.2.3) is done on keys: :func:`client_key` (top Via branch + CSeq method)
and :func:`server_key` (branch + sent-by + method, ACK folded onto INVITE), with the RFC 2543
fallback for branches without the ``z9hG4bK`` magic cookie.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Generic, TypeVar

from bridge.sip.message import SipMessage, SipRequest, SipResponse
from bridge.sip.timers import SipTimers

MAGIC_COOKIE = "z9hG4bK"
RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "WS", "WSS"})


def is_reliable(transport: str) -> bool:
    return transport.upper() in RELIABLE_TRANSPORTS


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendMessage:
    """Hand this message to the transport (to the transaction's destination)."""

    message: SipMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class PassToTu:
    """Deliver this message to the transaction user (the UA core)."""

    message: SipMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut:
    """Timer B/F/H fired: tell the TU (a client TU treats it as a 408)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed:
    """The transport reported a failure for this transaction (§17.1.4, §17.2.4)."""


TxOutput = SendMessage | PassToTu | TimedOut | TransportFailed


class Act(Enum):
    """Primitive actions named in the transition tables."""

    RETRANSMIT_REQUEST = "retransmit the request"
    SEND_ACK = "send the ACK for a non-2xx final response"
    SEND_RESPONSE = "send the response the TU handed over"
    RESEND_RESPONSE = "resend the last response"
    PASS_UP = "pass the message to the TU"
    REPORT_TIMEOUT = "tell the TU the transaction timed out"
    REPORT_TRANSPORT_ERROR = "tell the TU about the transport error"
    START_A = "(re)start Timer A"
    START_B = "start Timer B"
    START_D = "start Timer D"
    START_E = "(re)start Timer E"
    START_F = "start Timer F"
    START_K = "start Timer K"
    START_G = "(re)start Timer G"
    START_H = "start Timer H"
    START_I = "start Timer I"
    START_J = "start Timer J"
    START_L = "start Timer L"
    START_M = "start Timer M"


class Timer(Enum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - RFC 3261 name
    J = "J"
    K = "K"
    L = "L"
    M = "M"


# --------------------------------------------------------------------------------------------
# States, inputs and tables
# --------------------------------------------------------------------------------------------


class IctState(Enum):
    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class IctInput(Enum):
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_M = "Timer M"
    TRANSPORT_ERROR = "transport error"


class NictState(Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class NictInput(Enum):
    PROVISIONAL = "1xx"
    FINAL = "200-699"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_K = "Timer K"
    TRANSPORT_ERROR = "transport error"


class IstState(Enum):
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class IstInput(Enum):
    INVITE = "INVITE retransmission"
    ACK = "ACK"
    TU_PROVISIONAL = "1xx from TU"
    TU_SUCCESS = "2xx from TU"
    TU_FAILURE = "300-699 from TU"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_L = "Timer L"
    TRANSPORT_ERROR = "transport error"


class NistState(Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class NistInput(Enum):
    REQUEST = "request retransmission"
    TU_PROVISIONAL = "1xx from TU"
    TU_FINAL = "200-699 from TU"
    TIMER_J = "Timer J"
    TRANSPORT_ERROR = "transport error"


A = Act
_ICT, _ICI = IctState, IctInput
# RFC 3261 Figure 5 with RFC 6026 Figure 5 (Accepted).
ICT_TABLE: dict[tuple[IctState, IctInput], tuple[IctState, tuple[Act, ...]]] = {
    (_ICT.CALLING, _ICI.TIMER_A): (_ICT.CALLING, (A.RETRANSMIT_REQUEST, A.START_A)),
    (_ICT.CALLING, _ICI.TIMER_B): (_ICT.TERMINATED, (A.REPORT_TIMEOUT,)),
    (_ICT.CALLING, _ICI.PROVISIONAL): (_ICT.PROCEEDING, (A.PASS_UP,)),
    (_ICT.CALLING, _ICI.SUCCESS): (_ICT.ACCEPTED, (A.PASS_UP, A.START_M)),
    (_ICT.CALLING, _ICI.FAILURE): (_ICT.COMPLETED, (A.SEND_ACK, A.PASS_UP, A.START_D)),
    (_ICT.CALLING, _ICI.TRANSPORT_ERROR): (_ICT.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (_ICT.PROCEEDING, _ICI.PROVISIONAL): (_ICT.PROCEEDING, (A.PASS_UP,)),
    (_ICT.PROCEEDING, _ICI.SUCCESS): (_ICT.ACCEPTED, (A.PASS_UP, A.START_M)),
    (_ICT.PROCEEDING, _ICI.FAILURE): (_ICT.COMPLETED, (A.SEND_ACK, A.PASS_UP, A.START_D)),
    (_ICT.COMPLETED, _ICI.FAILURE): (_ICT.COMPLETED, (A.SEND_ACK,)),
    (_ICT.COMPLETED, _ICI.TIMER_D): (_ICT.TERMINATED, ()),
    (_ICT.COMPLETED, _ICI.TRANSPORT_ERROR): (_ICT.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (_ICT.ACCEPTED, _ICI.SUCCESS): (_ICT.ACCEPTED, (A.PASS_UP,)),
    (_ICT.ACCEPTED, _ICI.TIMER_M): (_ICT.TERMINATED, ()),
}

_NCT, _NCI = NictState, NictInput
# RFC 3261 Figure 6.
NICT_TABLE: dict[tuple[NictState, NictInput], tuple[NictState, tuple[Act, ...]]] = {
    (_NCT.TRYING, _NCI.TIMER_E): (_NCT.TRYING, (A.RETRANSMIT_REQUEST, A.START_E)),
    (_NCT.TRYING, _NCI.TIMER_F): (_NCT.TERMINATED, (A.REPORT_TIMEOUT,)),
    (_NCT.TRYING, _NCI.PROVISIONAL): (_NCT.PROCEEDING, (A.PASS_UP,)),
    (_NCT.TRYING, _NCI.FINAL): (_NCT.COMPLETED, (A.PASS_UP, A.START_K)),
    (_NCT.TRYING, _NCI.TRANSPORT_ERROR): (_NCT.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (_NCT.PROCEEDING, _NCI.TIMER_E): (_NCT.PROCEEDING, (A.RETRANSMIT_REQUEST, A.START_E)),
    (_NCT.PROCEEDING, _NCI.TIMER_F): (_NCT.TERMINATED, (A.REPORT_TIMEOUT,)),
    (_NCT.PROCEEDING, _NCI.PROVISIONAL): (_NCT.PROCEEDING, (A.PASS_UP,)),
    (_NCT.PROCEEDING, _NCI.FINAL): (_NCT.COMPLETED, (A.PASS_UP, A.START_K)),
    (_NCT.PROCEEDING, _NCI.TRANSPORT_ERROR): (_NCT.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (_NCT.COMPLETED, _NCI.FINAL): (_NCT.COMPLETED, ()),
    (_NCT.COMPLETED, _NCI.TIMER_K): (_NCT.TERMINATED, ()),
}

_IST, _ISI = IstState, IstInput
# RFC 3261 Figure 7 with RFC 6026 Figure 7 (Accepted).
IST_TABLE: dict[tuple[IstState, IstInput], tuple[IstState, tuple[Act, ...]]] = {
    (_IST.PROCEEDING, _ISI.INVITE): (_IST.PROCEEDING, (A.RESEND_RESPONSE,)),
    (_IST.PROCEEDING, _ISI.TU_PROVISIONAL): (_IST.PROCEEDING, (A.SEND_RESPONSE,)),
    (_IST.PROCEEDING, _ISI.TU_SUCCESS): (_IST.ACCEPTED, (A.SEND_RESPONSE, A.START_L)),
    (_IST.PROCEEDING, _ISI.TU_FAILURE): (
        _IST.COMPLETED,
        (A.SEND_RESPONSE, A.START_G, A.START_H),
    ),
    (_IST.PROCEEDING, _ISI.TRANSPORT_ERROR): (_IST.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (_IST.COMPLETED, _ISI.INVITE): (_IST.COMPLETED, (A.RESEND_RESPONSE,)),
    (_IST.COMPLETED, _ISI.TIMER_G): (_IST.COMPLETED, (A.RESEND_RESPONSE, A.START_G)),
    (_IST.COMPLETED, _ISI.TIMER_H): (_IST.TERMINATED, (A.REPORT_TIMEOUT,)),
    (_IST.COMPLETED, _ISI.ACK): (_IST.CONFIRMED, (A.START_I,)),
    (_IST.COMPLETED, _ISI.TRANSPORT_ERROR): (_IST.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (_IST.CONFIRMED, _ISI.ACK): (_IST.CONFIRMED, ()),
    (_IST.CONFIRMED, _ISI.INVITE): (_IST.CONFIRMED, ()),
    (_IST.CONFIRMED, _ISI.TIMER_I): (_IST.TERMINATED, ()),
    # RFC 6026 §7.1: INVITE retransmissions are absorbed, 2xx retransmissions from the TU are
    # sent, an ACK (only an RFC 2543 peer's would match) goes to the TU.
    (_IST.ACCEPTED, _ISI.INVITE): (_IST.ACCEPTED, ()),
    (_IST.ACCEPTED, _ISI.TU_SUCCESS): (_IST.ACCEPTED, (A.SEND_RESPONSE,)),
    (_IST.ACCEPTED, _ISI.ACK): (_IST.ACCEPTED, (A.PASS_UP,)),
    (_IST.ACCEPTED, _ISI.TIMER_L): (_IST.TERMINATED, ()),
}

_NST, _NSI = NistState, NistInput
# RFC 3261 Figure 8.
NIST_TABLE: dict[tuple[NistState, NistInput], tuple[NistState, tuple[Act, ...]]] = {
    (_NST.TRYING, _NSI.REQUEST): (_NST.TRYING, ()),
    (_NST.TRYING, _NSI.TU_PROVISIONAL): (_NST.PROCEEDING, (A.SEND_RESPONSE,)),
    (_NST.TRYING, _NSI.TU_FINAL): (_NST.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
    (_NST.PROCEEDING, _NSI.REQUEST): (_NST.PROCEEDING, (A.RESEND_RESPONSE,)),
    (_NST.PROCEEDING, _NSI.TU_PROVISIONAL): (_NST.PROCEEDING, (A.SEND_RESPONSE,)),
    (_NST.PROCEEDING, _NSI.TU_FINAL): (_NST.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
    (_NST.PROCEEDING, _NSI.TRANSPORT_ERROR): (_NST.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (_NST.COMPLETED, _NSI.REQUEST): (_NST.COMPLETED, (A.RESEND_RESPONSE,)),
    (_NST.COMPLETED, _NSI.TIMER_J): (_NST.TERMINATED, ()),
    (_NST.COMPLETED, _NSI.TRANSPORT_ERROR): (_NST.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
}
del A


# --------------------------------------------------------------------------------------------
# The machine shared by all four
# --------------------------------------------------------------------------------------------

S = TypeVar("S", IctState, NictState, IstState, NistState)
I = TypeVar("I", IctInput, NictInput, IstInput, NistInput)  # noqa: E741


class Transaction(Generic[S, I]):
    """Common engine: table lookup, timers, outputs. Subclasses bind the table and inputs."""

    TABLE: ClassVar[dict[tuple[S, I], tuple[S, tuple[Act, ...]]]]
    TERMINATED: ClassVar[S]
    TIMER_INPUTS: ClassVar[dict[Timer, I]]
    STATE_TIMERS: ClassVar[dict[S, frozenset[Timer]]]

    def __init__(
        self,
        request: SipRequest,
        state: S,
        *,
        transport: str,
        timers: SipTimers,
    ) -> None:
        self.request = request
        self.state: S = state
        self.transport = transport.upper()
        self.reliable = is_reliable(transport)
        self.timers = timers
        self.protocol_errors = 0
        self.last_response: SipResponse | None = None
        self._deadlines: dict[Timer, float] = {}
        self._intervals: dict[Timer, float] = {}

    # -- public --------------------------------------------------------------------------------
    @property
    def terminated(self) -> bool:
        return self.state is self.TERMINATED

    def next_timer(self) -> float | None:
        return min(self._deadlines.values()) if self._deadlines else None

    def handle_timer(self, now: float) -> list[TxOutput]:
        """Fire every timer due at ``now`` (earliest first)."""
        out: list[TxOutput] = []
        while self._deadlines:
            timer, deadline = min(self._deadlines.items(), key=lambda item: item[1])
            if deadline > now:
                break
            del self._deadlines[timer]
            out.extend(self._step(self.TIMER_INPUTS[timer], now, None))
        return out

    def transport_error(self, now: float) -> list[TxOutput]:
        return self._fire_named("TRANSPORT_ERROR", now)

    def timer_deadline(self, timer: Timer) -> float | None:
        return self._deadlines.get(timer)

    # -- engine --------------------------------------------------------------------------------
    def _fire_named(self, name: str, now: float) -> list[TxOutput]:
        inputs = type(next(iter(self.TIMER_INPUTS.values())))
        return self.apply(inputs[name], now, None)

    def apply(self, event: I, now: float, message: SipMessage | None) -> list[TxOutput]:
        """Apply one input, then fire zero-length timers (reliable transports) at once."""
        out = self._step(event, now, message)
        out.extend(self.handle_timer(now))
        return out

    def _step(self, event: I, now: float, message: SipMessage | None) -> list[TxOutput]:
        entry = self.TABLE.get((self.state, event))
        if entry is None:
            self.protocol_errors += 1
            return []
        next_state, actions = entry
        if next_state is not self.state:
            # Timers that mean nothing in the new state stop (Timer B in Proceeding ...).
            keep = self.STATE_TIMERS[next_state]
            self._deadlines = {k: v for k, v in self._deadlines.items() if k in keep}
        self.state = next_state
        out: list[TxOutput] = []
        for action in actions:
            self._perform(action, now, message, out)
        return out

    def _perform(
        self, action: Act, now: float, message: SipMessage | None, out: list[TxOutput]
    ) -> None:
        t = self.timers
        if action is Act.RETRANSMIT_REQUEST:
            out.append(SendMessage(message=self.request))
        elif action is Act.SEND_ACK:
            out.append(SendMessage(message=self._ack(message)))
        elif action is Act.SEND_RESPONSE:
            assert isinstance(message, SipResponse)
            self.last_response = message
            out.append(SendMessage(message=message))
        elif action is Act.RESEND_RESPONSE:
            if self.last_response is not None:
                out.append(SendMessage(message=self.last_response))
        elif action is Act.PASS_UP:
            assert message is not None
            out.append(PassToTu(message=message))
        elif action is Act.REPORT_TIMEOUT:
            out.append(TimedOut())
        elif action is Act.REPORT_TRANSPORT_ERROR:
            out.append(TransportFailed())
        elif action is Act.START_A:
            self._retransmit_timer(Timer.A, t.timer_a, now, cap=None)
        elif action is Act.START_E:
            if self.state is NictState.PROCEEDING and not self.reliable:
                # §17.1.2.2: in Proceeding, Timer E is reset with T2.
                self._intervals[Timer.E] = t.t2
                self._deadlines[Timer.E] = now + t.t2
            else:
                self._retransmit_timer(Timer.E, t.timer_e, now, cap=t.t2)
        elif action is Act.START_G:
            self._retransmit_timer(Timer.G, t.timer_g, now, cap=t.t2)
        else:
            self._deadlines[_WAIT_TIMERS[action]] = now + self._wait(action)

    def _wait(self, action: Act) -> float:
        t, reliable = self.timers, self.reliable
        return {
            Act.START_B: t.timer_b,
            Act.START_D: t.timer_d(reliable=reliable),
            Act.START_F: t.timer_f,
            Act.START_K: t.timer_k(reliable=reliable),
            Act.START_H: t.timer_h,
            Act.START_I: t.timer_i(reliable=reliable),
            Act.START_J: t.timer_j(reliable=reliable),
            Act.START_L: t.timer_l,
            Act.START_M: t.timer_m,
        }[action]

    def _retransmit_timer(
        self, timer: Timer, initial: float, now: float, cap: float | None
    ) -> None:
        """First start uses ``initial``; each restart doubles (capped). Unreliable only."""
        if self.reliable:
            return
        previous = self._intervals.get(timer)
        if previous is None:
            interval = initial
        else:
            interval = 2 * previous if cap is None else min(2 * previous, cap)
        self._intervals[timer] = interval
        self._deadlines[timer] = now + interval

    def _ack(self, response: SipMessage | None) -> SipRequest:
        raise NotImplementedError  # only the INVITE client transaction sends ACKs


_WAIT_TIMERS: dict[Act, Timer] = {
    Act.START_B: Timer.B,
    Act.START_D: Timer.D,
    Act.START_F: Timer.F,
    Act.START_K: Timer.K,
    Act.START_H: Timer.H,
    Act.START_I: Timer.I,
    Act.START_J: Timer.J,
    Act.START_L: Timer.L,
    Act.START_M: Timer.M,
}


# --------------------------------------------------------------------------------------------
# Client transactions
# --------------------------------------------------------------------------------------------


class InviteClientTransaction(Transaction[IctState, IctInput]):
    """§17.1.1 + RFC 6026. Create it, send ``start(now)``'s outputs, feed responses."""

    TABLE = ICT_TABLE
    TERMINATED = IctState.TERMINATED
    TIMER_INPUTS = {
        Timer.A: IctInput.TIMER_A,
        Timer.B: IctInput.TIMER_B,
        Timer.D: IctInput.TIMER_D,
        Timer.M: IctInput.TIMER_M,
    }
    STATE_TIMERS = {
        IctState.CALLING: frozenset({Timer.A, Timer.B}),
        IctState.PROCEEDING: frozenset(),
        IctState.COMPLETED: frozenset({Timer.D}),
        IctState.ACCEPTED: frozenset({Timer.M}),
        IctState.TERMINATED: frozenset(),
    }

    def __init__(self, request: SipRequest, *, transport: str, timers: SipTimers) -> None:
        super().__init__(request, IctState.CALLING, transport=transport, timers=timers)
        self.ack: SipRequest | None = None

    def start(self, now: float) -> list[TxOutput]:
        """Send the INVITE; start Timer A (unreliable only) and Timer B."""
        self._perform(Act.START_A, now, None, [])
        self._perform(Act.START_B, now, None, [])
        return [SendMessage(message=self.request)]

    def receive_response(self, response: SipResponse, now: float) -> list[TxOutput]:
        if response.status < 200:
            event = IctInput.PROVISIONAL
        elif response.status < 300:
            event = IctInput.SUCCESS
        else:
            event = IctInput.FAILURE
        return self.apply(event, now, response)

    def _ack(self, response: SipMessage | None) -> SipRequest:
        """§17.1.1.3: the ACK for a non-2xx final response, built once and resent as is."""
        if self.ack is not None:
            return self.ack
        assert isinstance(response, SipResponse)
        original = self.request
        ack = SipRequest(method="ACK", uri=original.uri)
        ack.headers.add("Via", original.headers.values("Via")[0])
        for route in original.headers.get_all("Route"):
            ack.headers.add("Route", route)
        ack.headers.add("Max-Forwards", original.headers.get("Max-Forwards") or "70")
        ack.headers.add("From", original.headers.get("From") or "")
        ack.headers.add("To", response.headers.get("To") or "")
        ack.headers.add("Call-ID", original.headers.get("Call-ID") or "")
        ack.headers.add("CSeq", f"{original.cseq.seq} ACK")
        self.ack = ack
        return ack


class NonInviteClientTransaction(Transaction[NictState, NictInput]):
    """§17.1.2. Create it, send ``start(now)``'s outputs, feed responses."""

    TABLE = NICT_TABLE
    TERMINATED = NictState.TERMINATED
    TIMER_INPUTS = {
        Timer.E: NictInput.TIMER_E,
        Timer.F: NictInput.TIMER_F,
        Timer.K: NictInput.TIMER_K,
    }
    STATE_TIMERS = {
        NictState.TRYING: frozenset({Timer.E, Timer.F}),
        NictState.PROCEEDING: frozenset({Timer.E, Timer.F}),
        NictState.COMPLETED: frozenset({Timer.K}),
        NictState.TERMINATED: frozenset(),
    }

    def __init__(self, request: SipRequest, *, transport: str, timers: SipTimers) -> None:
        super().__init__(request, NictState.TRYING, transport=transport, timers=timers)

    def start(self, now: float) -> list[TxOutput]:
        """Send the request; start Timer E (unreliable only) and Timer F."""
        self._perform(Act.START_E, now, None, [])
        self._perform(Act.START_F, now, None, [])
        return [SendMessage(message=self.request)]

    def receive_response(self, response: SipResponse, now: float) -> list[TxOutput]:
        event = NictInput.PROVISIONAL if response.status < 200 else NictInput.FINAL
        return self.apply(event, now, response)


# --------------------------------------------------------------------------------------------
# Server transactions
# --------------------------------------------------------------------------------------------


class InviteServerTransaction(Transaction[IstState, IstInput]):
    """§17.2.1 + RFC 6026. Created in Proceeding for a new INVITE; the TU sends the 100."""

    TABLE = IST_TABLE
    TERMINATED = IstState.TERMINATED
    TIMER_INPUTS = {
        Timer.G: IstInput.TIMER_G,
        Timer.H: IstInput.TIMER_H,
        Timer.I: IstInput.TIMER_I,
        Timer.L: IstInput.TIMER_L,
    }
    STATE_TIMERS = {
        IstState.PROCEEDING: frozenset(),
        IstState.COMPLETED: frozenset({Timer.G, Timer.H}),
        IstState.CONFIRMED: frozenset({Timer.I}),
        IstState.ACCEPTED: frozenset({Timer.L}),
        IstState.TERMINATED: frozenset(),
    }

    def __init__(self, request: SipRequest, *, transport: str, timers: SipTimers) -> None:
        super().__init__(request, IstState.PROCEEDING, transport=transport, timers=timers)

    def receive_request(self, request: SipRequest, now: float) -> list[TxOutput]:
        """A retransmitted INVITE or an ACK matched to this transaction."""
        event = IstInput.ACK if request.method == "ACK" else IstInput.INVITE
        return self.apply(event, now, request)

    def send_response(self, response: SipResponse, now: float) -> list[TxOutput]:
        if response.status < 200:
            event = IstInput.TU_PROVISIONAL
        elif response.status < 300:
            event = IstInput.TU_SUCCESS
        else:
            event = IstInput.TU_FAILURE
        return self.apply(event, now, response)


class NonInviteServerTransaction(Transaction[NistState, NistInput]):
    """§17.2.2. Created in Trying for a new non-INVITE request (not ACK)."""

    TABLE = NIST_TABLE
    TERMINATED = NistState.TERMINATED
    TIMER_INPUTS = {Timer.J: NistInput.TIMER_J}
    STATE_TIMERS = {
        NistState.TRYING: frozenset(),
        NistState.PROCEEDING: frozenset(),
        NistState.COMPLETED: frozenset({Timer.J}),
        NistState.TERMINATED: frozenset(),
    }

    def __init__(self, request: SipRequest, *, transport: str, timers: SipTimers) -> None:
        super().__init__(request, NistState.TRYING, transport=transport, timers=timers)

    def receive_request(self, request: SipRequest, now: float) -> list[TxOutput]:
        return self.apply(NistInput.REQUEST, now, request)

    def send_response(self, response: SipResponse, now: float) -> list[TxOutput]:
        event = NistInput.TU_PROVISIONAL if response.status < 200 else NistInput.TU_FINAL
        return self.apply(event, now, response)


ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
ServerTransaction = InviteServerTransaction | NonInviteServerTransaction


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------

TransactionKey = tuple[str, ...]


def client_key(message: SipMessage) -> TransactionKey:
    """§17.1.3: a response matches the client transaction whose request had the same top Via
    branch and the same CSeq method (a CANCEL has a transaction of its own)."""
    branch = message.top_via.branch or ""
    return ("client", branch, message.cseq.method)


def server_key(request: SipRequest, method: str | None = None) -> TransactionKey:
    """§17.2.3: the key of the server transaction a request belongs to.

    With the magic cookie: branch + sent-by + method, where an ACK is folded onto the INVITE.
    Without it (RFC 2543 peers): Request-URI, From tag, Call-ID, CSeq number, method and top Via
    (transport and sent-by); the To tag takes part except for INVITE/ACK, whose To tag the UAS
    chose only in its response. ``method`` overrides the request's method (the UA core looks
    up the INVITE a CANCEL refers to with ``method="INVITE"``).
    """
    via = request.top_via
    name = method or request.method
    if name == "ACK":
        name = "INVITE"
    sent_by = (via.host.lower(), str(via.port or ""))
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return ("server", branch, *sent_by, name)
    cseq = request.cseq
    to_tag = "" if name == "INVITE" else (request.to.tag or "")
    return (
        "server-2543",
        str(request.uri),
        request.from_.tag or "",
        to_tag,
        request.call_id,
        str(cseq.seq),
        name,
        via.transport,
        *sent_by,
    )
