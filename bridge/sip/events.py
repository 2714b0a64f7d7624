"""Events of the SIP UA core (:class:`bridge.sip.endpoint.SipEndpoint`).

Frozen, slotted, keyword-only dataclasses named in the past tense. ``call`` is the call handle
the endpoint returned or announced (an opaque string, unique per call leg); ``call_id`` is the
SIP Call-ID for logs. SDP bodies are opaque bytes: the application negotiates (RFC 3264).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.sip.message import SipRequest

Addr = tuple[str, int]

EndReason = Literal[
    "remote_bye",  # the peer sent BYE
    "local_bye",  # hangup() on an established (or answered) call
    "cancelled",  # the caller cancelled (UAS) / we cancelled (UAC)
    "ack_timeout",  # our 2xx was never ACKed within 64*T1 (RFC 3261 §13.3.1.4); BYE sent
    "rejected",  # a final non-2xx response ended the call (sent by us or received)
    "failed",  # no answer (Timer B), transport error, 481/408 within the dialog
    "session_expired",  # RFC 4028 §10: no session refresh arrived in time; BYE sent
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOffered:
    """A new INVITE arrived (100 Trying already sent). Answer with ``answer``/``ringing``/
    ``reject``. ``sdp`` is empty for an offerless INVITE (the offer then comes in the ACK,
    surfaced as :class:`RemoteSdpChanged`)."""

    call: str
    call_id: str
    request_uri: str
    user: str | None  # user part of the Request-URI (the dialled number/room)
    from_uri: str
    from_display: str | None
    to_uri: str
    source: Addr
    transport: str
    sdp: bytes
    request: SipRequest  # full header access (P-Asserted-Identity, Diversion ...)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallProgress:
    """UAC: a provisional response (180 Ringing, 183 Session Progress with early media)."""

    call: str
    status: int
    reason: str
    sdp: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    """UAC: the 2xx arrived (and was ACKed); ``sdp`` is the answer."""

    call: str
    sdp: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEstablished:
    """UAS: the ACK for our 2xx arrived; the call is up."""

    call: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    """The call is over (reported once per call). ``status`` is the SIP status involved, if
    any (the rejecting response, 487 for a cancel, 408 for a timeout)."""

    call: str
    reason: EndReason
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReinviteReceived:
    """A re-INVITE (hold/unhold, new address, session refresh) arrived; the application must
    call ``answer_reinvite`` (or ``reject_reinvite``). ``sdp`` may be empty (offerless)."""

    call: str
    sdp: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteSdpChanged:
    """A new remote SDP that needs no answer: the answer to our re-INVITE, or the offer
    carried in the ACK of an offerless INVITE."""

    call: str
    sdp: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReinviteFailed:
    """Our re-INVITE got a final non-2xx (491 on glare: retry later, RFC 3261 §14.1)."""

    call: str
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoDtmfReceived:
    """A SIP INFO with application/dtmf-relay or application/dtmf (answered 200)."""

    call: str
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationChanged:
    """Outcome of a REGISTER (initial, refresh or removal)."""

    registration: str
    aor: str
    registered: bool
    expires: int  # granted seconds (0 when not registered)
    status: int | None  # final status, 408 on timeout


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRejected:
    """Bad input that was dropped or answered with an error (counted)."""

    source: Addr
    transport: str
    reason: str
    status: int | None  # the response sent, None if the input could not be answered


Event = (
    CallOffered
    | CallProgress
    | CallAnswered
    | CallEstablished
    | CallEnded
    | ReinviteReceived
    | RemoteSdpChanged
    | ReinviteFailed
    | InfoDtmfReceived
    | RegistrationChanged
    | MessageRejected
)
