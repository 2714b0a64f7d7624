"""The SIP UA core as one sans-I/O object (RFC 3261 §8, §12-17, RFC 3581, RFC 4028, RFC 6026).

Input: :meth:`SipEndpoint.receive` (a datagram or one framed TCP message),
:meth:`SipEndpoint.receive_message` (an already parsed message) and
:meth:`SipEndpoint.handle_timer`. Output: :meth:`SipEndpoint.datagrams_to_send`,
:meth:`SipEndpoint.next_timer`, :meth:`SipEndpoint.next_event` / :meth:`SipEndpoint.events`.
Commands (``answer``, ``hangup``, ``invite`` ...) take ``now`` too; nothing here reads a clock.

Who retransmits what (the classic bug, design notes §3):

* the UAS core retransmits its 2xx to an INVITE, T1 doubling up to T2, until the ACK arrives,
  and sends BYE if none arrives within 64*T1 (§13.3.1.4); the INVITE server transaction only
  carries those retransmissions while it is in Accepted (RFC 6026);
* the UAC core ACKs the first 2xx and re-sends that same ACK for every retransmitted 2xx
  (§13.2.2.4); the INVITE client transaction ACKs only non-2xx finals (§17.1.1.3).

Responses go to the top Via with RFC 3581 ``received``/``rport`` (§18.2.2); over TCP they go
back to the source address (the shell maps it to the connection). Session timers follow
RFC 4028: we honour Session-Expires/Min-SE when the peer asks, refresh at half the interval
when we are the refresher (UPDATE if the peer allows it, else re-INVITE), and send BYE when
the peer is the refresher and no refresh arrived ``min(32, interval/3)`` before expiry.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from bridge.sip.auth import (
    AUTH_HEADERS,
    DigestClient,
    DigestCredentials,
    DigestError,
    DigestVerifier,
    VerifyResult,
    select_challenge,
)
from bridge.sip.dialog import Dialog, DialogError, DialogId, DialogInput
from bridge.sip.events import (
    Addr,
    CallAnswered,
    CallEnded,
    CallEstablished,
    CallOffered,
    CallProgress,
    EndReason,
    Event,
    InfoDtmfReceived,
    MessageRejected,
    RegistrationChanged,
    ReinviteFailed,
    ReinviteReceived,
    RemoteSdpChanged,
)
from bridge.sip.headers import NameAddr, Via, parse_int_header, parse_option_tags, parse_params
from bridge.sip.message import REASON_PHRASES, SipParseError, SipRequest, SipResponse
from bridge.sip.parser import parse_message, validate_request, validate_response
from bridge.sip.timers import SipTimers
from bridge.sip.transaction import (
    MAGIC_COOKIE,
    InviteClientTransaction,
    InviteServerTransaction,
    IstState,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    PassToTu,
    SendMessage,
    TimedOut,
    TransactionKey,
    TransportFailed,
    TxOutput,
    client_key,
    server_key,
)
from bridge.sip.uri import SipUri

# Methods we implement, and methods we know but refuse with 405 (§8.2.1); others get 501.
ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE")
KNOWN_METHODS = frozenset(
    {"REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)
ACCEPTED_TYPES = ("application/sdp", "application/dtmf-relay", "application/dtmf")
DTMF_SIGNALS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the shell to send: bytes, destination and transport ("UDP"/"TCP").
    For a response over TCP ``addr`` is the source address of the request (its connection)."""

    data: bytes
    addr: Addr
    transport: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """Digest credentials for a UAC (401/407 retry) or a registration."""

    username: str
    password: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointConfig:
    """Everything the UA core needs to know about itself.

    ``contact_host``/``contact_port`` are the address the world reaches us at (the external
    address behind NAT); they default to ``local_host``/``local_port`` and go into Via and
    Contact. ``authorize(request, source)`` may refuse an out-of-dialog INVITE with a status
    (403 ...); ``inbound_users`` (username -> password) turns on digest authentication of
    incoming INVITEs in ``inbound_realm``.
    """

    local_host: str = "127.0.0.1"
    local_port: int = 5060
    transports: tuple[str, ...] = ("UDP",)
    contact_host: str | None = None
    contact_port: int | None = None
    contact_user: str = "bridge"
    user_agent: str = "bridge"
    authorize: Callable[[SipRequest, Addr], int | None] | None = None
    inbound_realm: str = "bridge"
    inbound_users: Mapping[str, str] | None = None
    inbound_secret: bytes = b""
    supported: tuple[str, ...] = ("timer",)
    session_expires: int = 1800  # RFC 4028 interval we ask for / accept at most
    min_se: int = 90  # RFC 4028 Min-SE we accept
    outbound_proxy: Addr | None = None
    register_retry: float = 60.0  # seconds before retrying a failed registration

    @property
    def sent_by_host(self) -> str:
        return self.contact_host or self.local_host

    @property
    def sent_by_port(self) -> int:
        return self.contact_port if self.contact_port is not None else self.local_port


class CallState(Enum):
    OFFERED = "offered"  # UAS: INVITE received, the application decides
    ANSWERED = "answered"  # UAS: 2xx sent, retransmitting until the ACK (§13.3.1.4)
    CALLING = "calling"  # UAC: INVITE sent, no provisional response with a tag yet
    EARLY = "early"  # UAC: provisional response received
    CONFIRMED = "confirmed"
    ENDED = "ended"


class CallInput(Enum):
    RINGING = "ringing sent"
    ANSWER = "2xx sent"
    ACK = "ACK received"
    PROVISIONAL = "1xx received"
    SUCCESS = "2xx received"
    FINAL_FAILURE = "non-2xx final"
    END = "ended (BYE, CANCEL, timeout, hangup)"


# The call's life in the UA core: every (state, input) pair that can happen is listed; any
# other pair is an error (CallStateError), not silently ignored.
CALL_TABLE: dict[tuple[CallState, CallInput], CallState] = {
    (CallState.OFFERED, CallInput.RINGING): CallState.OFFERED,
    (CallState.OFFERED, CallInput.ANSWER): CallState.ANSWERED,
    (CallState.OFFERED, CallInput.FINAL_FAILURE): CallState.ENDED,
    (CallState.OFFERED, CallInput.END): CallState.ENDED,
    (CallState.ANSWERED, CallInput.ACK): CallState.CONFIRMED,
    (CallState.ANSWERED, CallInput.END): CallState.ENDED,
    (CallState.CALLING, CallInput.PROVISIONAL): CallState.EARLY,
    (CallState.CALLING, CallInput.SUCCESS): CallState.CONFIRMED,
    (CallState.CALLING, CallInput.FINAL_FAILURE): CallState.ENDED,
    (CallState.CALLING, CallInput.END): CallState.ENDED,
    (CallState.EARLY, CallInput.PROVISIONAL): CallState.EARLY,
    (CallState.EARLY, CallInput.SUCCESS): CallState.CONFIRMED,
    (CallState.EARLY, CallInput.FINAL_FAILURE): CallState.ENDED,
    (CallState.EARLY, CallInput.END): CallState.ENDED,
    (CallState.CONFIRMED, CallInput.END): CallState.ENDED,
    # RFC 6026: the INVITE client transaction passes retransmitted 2xx up while Accepted.
    (CallState.CONFIRMED, CallInput.SUCCESS): CallState.CONFIRMED,
    # Late messages of a call that ended on our side (CANCEL raced by 1xx/2xx/final, BYE).
    (CallState.ENDED, CallInput.PROVISIONAL): CallState.ENDED,
    (CallState.ENDED, CallInput.SUCCESS): CallState.ENDED,
    (CallState.ENDED, CallInput.FINAL_FAILURE): CallState.ENDED,
    (CallState.ENDED, CallInput.END): CallState.ENDED,
}


class CallError(ValueError):
    """A command that does not fit the call (answer on an outgoing call ...)."""


class CallStateError(CallError):
    """A (state, input) pair that ``CALL_TABLE`` does not list: a bug, not a peer's fault."""


def next_call_state(state: CallState, event: CallInput) -> CallState:
    try:
        return CALL_TABLE[(state, event)]
    except KeyError:
        raise CallStateError(f"call in state {state.name}: {event.value} is not "
                             "possible") from None


@dataclass(slots=True)
class _SessionTimer:
    """RFC 4028 state of one call."""

    interval: int
    we_refresh: bool
    peer_supports: bool
    refresh_at: float | None = None
    expire_at: float | None = None

    def restart(self, now: float) -> None:
        if self.we_refresh:
            self.refresh_at, self.expire_at = now + self.interval / 2, None
        else:
            # §10: BYE min(32, interval/3) before the expiry if no refresh arrived.
            self.refresh_at = None
            self.expire_at = now + self.interval - min(32.0, self.interval / 3)


@dataclass(slots=True)
class _Pending2xx:
    """A 2xx the UAS core retransmits until its ACK (§13.3.1.4)."""

    response: SipResponse
    cseq: int
    interval: float
    next_send: float
    give_up: float


@dataclass(slots=True)
class _Call:
    handle: str
    uas: bool
    state: CallState
    invite: SipRequest  # the (latest) dialog-creating INVITE, received or sent
    peer: Addr  # where in-dialog requests go when there is no route set
    transport: str
    dialog: Dialog | None = None
    invite_key: TransactionKey | None = None
    pending_2xx: _Pending2xx | None = None
    reinvite_in: SipRequest | None = None  # re-INVITE waiting for the application
    reinvite_in_key: TransactionKey | None = None
    reinvite_out: SipRequest | None = None  # our re-INVITE/UPDATE in progress
    ack_for_2xx: dict[int, SipRequest] = field(default_factory=dict)  # UAC: CSeq -> ACK
    local_sdp: bytes = b""
    remote_sdp: bytes = b""
    offerless: bool = False
    session: _SessionTimer | None = None
    peer_allows_update: bool = False
    credentials: Credentials | None = None
    digest: DigestClient | None = None
    nonces_tried: set[str] = field(default_factory=set)
    se_retried: bool = False
    cancel_pending: bool = False
    cancel_sent: bool = False
    bye_pending: bool = False
    ended_reported: bool = False
    purge_at: float | None = None


class RegistrationState(Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    UNREGISTERING = "unregistering"
    REMOVED = "removed"


@dataclass(slots=True)
class _Registration:
    handle: str
    registrar: SipUri
    aor: str
    credentials: Credentials | None
    expires: int
    call_id: str
    from_tag: str
    dest: Addr
    transport: str
    state: RegistrationState = RegistrationState.REGISTERING
    cseq: int = 0
    granted: int = 0
    refresh_at: float | None = None
    digest: DigestClient | None = None
    nonces_tried: set[str] = field(default_factory=set)


class _Purpose(Enum):
    INVITE = "initial INVITE"
    REINVITE = "re-INVITE"
    REFRESH_UPDATE = "session refresh UPDATE"
    BYE = "BYE"
    CANCEL = "CANCEL"
    REGISTER = "REGISTER"
    OTHER = "other"


@dataclass(slots=True)
class _ClientEntry:
    tx: InviteClientTransaction | NonInviteClientTransaction
    dest: Addr
    purpose: _Purpose
    owner: str | None  # call or registration handle
    key: TransactionKey = ()


@dataclass(slots=True)
class _ServerEntry:
    tx: InviteServerTransaction | NonInviteServerTransaction
    dest: Addr
    call: str | None = None
    key: TransactionKey = ()


def _host_of(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


_TAG_PARAM = re.compile(r";\s*tag\s*=\s*([^;,\s]+)", re.IGNORECASE)


def _to_tag(request: SipRequest, to: str) -> str | None:
    """The To tag; for a To whose URI the UA core cannot use (a non-SIP scheme, answered 416:
    RFC 4475 §3.3.4) the tag parameter read from the text, so the answer can still be made."""
    try:
        return request.to.tag
    except SipParseError:
        if ">" in to:
            to = to.rsplit(">", 1)[1]
        match = _TAG_PARAM.search(to)
        return match.group(1) if match else None


def _header_int(message: SipRequest | SipResponse, name: str) -> int | None:
    value = message.headers.get(name)
    if value is None:
        return None
    try:
        return parse_int_header(value.split(";", 1)[0])
    except SipParseError:
        return None


def _session_expires(message: SipRequest | SipResponse) -> tuple[int | None, str | None]:
    """RFC 4028 §4: ``Session-Expires: delta-seconds *(;se-params)`` -> (seconds, refresher)."""
    value = message.headers.get("Session-Expires")
    if value is None:
        return None, None
    delta, _, rest = value.partition(";")
    try:
        seconds = parse_int_header(delta)
        params = parse_params(";" + rest) if rest else {}
    except SipParseError:
        return None, None
    refresher = params.get("refresher")
    return seconds, refresher.lower() if refresher else None


def _option_tags(message: SipRequest | SipResponse, name: str) -> list[str]:
    tags: list[str] = []
    for value in message.headers.get_all(name):
        try:
            tags.extend(t.lower() for t in parse_option_tags(value))
        except SipParseError:
            continue
    return tags


def _allows(message: SipRequest | SipResponse, method: str) -> bool:
    return any(
        m.strip().upper() == method for v in message.headers.get_all("Allow") for m in v.split(",")
    )


def parse_info_dtmf(content_type: str | None, body: bytes) -> tuple[str, int | None] | None:
    """The digit and duration of an INFO body: ``application/dtmf-relay`` ("Signal=5\\r\\n
    Duration=160") or ``application/dtmf`` ("5"). None when the body carries no digit."""
    text = body.decode("ascii", "replace").strip()
    if content_type == "application/dtmf":
        signal: str | None = text
        duration = None
    elif content_type == "application/dtmf-relay":
        signal, duration = None, None
        for line in text.replace("\r", "\n").split("\n"):
            name, _, value = line.partition("=")
            name, value = name.strip().lower(), value.strip()
            if name == "signal":
                signal = value
            elif name == "duration" and value.isdigit():
                duration = int(value)
    else:
        return None
    if signal is None or not signal:
        return None
    if signal.isdigit() and 10 <= int(signal) <= 15:  # RFC 4733 event codes for * # A-D
        signal = DTMF_SIGNALS[int(signal)]
    signal = signal.upper()
    if len(signal) != 1 or signal not in DTMF_SIGNALS:
        return None
    return signal, duration


class SipEndpoint:
    """A SIP user agent (UAS and UAC) without I/O. See the module docstring."""

    def __init__(
        self,
        config: EndpointConfig,
        timers: SipTimers | None = None,
        *,
        tokens: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.timers = timers or SipTimers()
        self._token = tokens or (lambda: secrets.token_hex(8))
        self._out: list[Outgoing] = []
        self._events: deque[Event] = deque()
        self._client: dict[TransactionKey, _ClientEntry] = {}
        self._server: dict[TransactionKey, _ServerEntry] = {}
        self._calls: dict[str, _Call] = {}
        self._call_ids: Counter[str] = Counter()  # Call-IDs of self._calls (the intake asks)
        self._by_dialog: dict[DialogId, _Call] = {}
        self._registrations: dict[str, _Registration] = {}
        self._verifier: DigestVerifier | None = None
        if config.inbound_users is not None:
            secret = config.inbound_secret or secrets.token_bytes(32)
            self._verifier = DigestVerifier(config.inbound_realm, secret)
        self.rejected = 0  # messages dropped or refused as malformed
        self.stray_responses = 0

    # =========================================================================================
    # Shell interface
    # =========================================================================================
    def receive(self, data: bytes, addr: Addr, transport: str, now: float) -> None:
        """One UDP datagram or one framed TCP message from ``addr``."""
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._reject_input(addr, transport, exc.reason, None)
            return
        self.receive_message(message, addr, transport, now)

    def receive_message(
        self, message: SipRequest | SipResponse, addr: Addr, transport: str, now: float
    ) -> None:
        transport = transport.upper()
        if isinstance(message, SipResponse):
            try:
                validate_response(message)
            except SipParseError as exc:
                self._reject_input(addr, transport, exc.reason, None)
                return
            self._on_response(message, now)
            return
        try:
            validate_request(message)
        except SipParseError as exc:
            self._answer_invalid(message, addr, transport, exc)
            return
        self._on_request(message, addr, transport, now)

    @property
    def has_datagrams(self) -> bool:
        """True when ``datagrams_to_send()`` would return something."""
        return bool(self._out)

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        out = list(self._events)
        self._events.clear()
        return out

    def next_timer(self) -> float | None:
        deadlines: list[float] = []
        for client in self._client.values():
            if (d := client.tx.next_timer()) is not None:
                deadlines.append(d)
        for server in self._server.values():
            if (d := server.tx.next_timer()) is not None:
                deadlines.append(d)
        for call in self._calls.values():
            deadlines.extend(self._call_deadlines(call))
        for reg in self._registrations.values():
            if reg.refresh_at is not None:
                deadlines.append(reg.refresh_at)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        for key, client in list(self._client.items()):
            if (d := client.tx.next_timer()) is not None and d <= now:
                self._client_outputs(client, client.tx.handle_timer(now), now)
            if client.tx.terminated:
                self._client.pop(key, None)
        for key, server in list(self._server.items()):
            if (d := server.tx.next_timer()) is not None and d <= now:
                self._server_outputs(server, server.tx.handle_timer(now), now)
            if server.tx.terminated:
                self._server.pop(key, None)
        for call in list(self._calls.values()):
            self._call_timers(call, now)
        for reg in list(self._registrations.values()):
            if reg.refresh_at is not None and reg.refresh_at <= now:
                reg.refresh_at = None
                self._send_register(reg, now)

    # =========================================================================================
    # UAS commands
    # =========================================================================================
    def ringing(self, call: str, now: float, *, sdp: bytes = b"") -> bool:
        """Send 180 Ringing (183 Session Progress when ``sdp`` carries early media)."""
        c = self._uas_call(call)
        if c is None or c.state is not CallState.OFFERED:
            return False
        status = 183 if sdp else 180
        response = self._dialog_response(c, c.invite, status, sdp)
        self._server_send(c.invite_key, response, now)
        self._move(c, CallInput.RINGING)
        return True

    def answer(self, call: str, sdp: bytes, now: float) -> bool:
        """Send 200 OK with our SDP; the core retransmits it until the ACK (§13.3.1.4).
        Returns False if the call is gone (cancelled meanwhile)."""
        c = self._uas_call(call)
        if c is None or c.state is not CallState.OFFERED:
            return False
        c.local_sdp = sdp
        response = self._dialog_response(c, c.invite, 200, sdp)
        self._send_2xx(c, response, c.invite.cseq.seq, now)
        assert c.dialog is not None
        c.dialog.apply(DialogInput.SUCCESS)
        self._move(c, CallInput.ANSWER)
        if c.session is not None:
            c.session.restart(now)
        return True

    def reject(
        self,
        call: str,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Refuse an offered call with a final non-2xx response (486, 603, 488 ...);
        ``headers`` are added to it, e.g. ``Retry-After`` on a 503 (RFC 3261 §20.33)."""
        if not 300 <= status <= 699:
            raise CallError("reject() needs a status 300-699")
        c = self._uas_call(call)
        if c is None or c.state is not CallState.OFFERED:
            return False
        response = self._response(
            c.invite, status, reason, to_tag=c.dialog.local_tag if c.dialog else None,
            extra=list(headers),
        )
        self._server_send(c.invite_key, response, now)
        self._move(c, CallInput.FINAL_FAILURE)
        self._end(c, "rejected", status, now)
        return True

    def answer_reinvite(self, call: str, sdp: bytes, now: float) -> bool:
        """Answer the pending re-INVITE with 200 and our SDP (retransmitted until ACK)."""
        c = self._calls.get(call)
        if c is None or c.reinvite_in is None or c.state is CallState.ENDED:
            return False
        request = c.reinvite_in
        c.local_sdp = sdp
        response = self._dialog_response(c, request, 200, sdp)
        c.invite_key, c.reinvite_in_key = c.reinvite_in_key, None
        self._send_2xx(c, response, request.cseq.seq, now)
        c.reinvite_in = None
        if c.session is not None:
            c.session.restart(now)
        return True

    def reject_reinvite(self, call: str, status: int, now: float) -> bool:
        """Refuse the pending re-INVITE (488 ...); the call stays as it was."""
        c = self._calls.get(call)
        if c is None or c.reinvite_in is None:
            return False
        response = self._response(c.reinvite_in, status)
        self._server_send(c.reinvite_in_key, response, now)
        c.reinvite_in, c.reinvite_in_key = None, None
        return True

    # =========================================================================================
    # UAC commands
    # =========================================================================================
    def invite(
        self,
        uri: str,
        from_: str,
        sdp: bytes,
        now: float,
        *,
        credentials: Credentials | None = None,
        to: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Call ``uri`` (a SIP URI whose host is an IP address, or any URI when an outbound
        proxy is configured) from ``from_`` (a URI or name-addr) with an SDP offer.
        Returns the call handle."""
        target = SipUri.parse(uri)
        tag = self._token()
        call_id = f"{self._token()}@{self.config.sent_by_host}"
        dest, transport = self._route_to(target)
        request = SipRequest(method="INVITE", uri=target)
        from_party = NameAddr.parse(from_ if "<" in from_ else f"<{from_}>")
        from_party.params["tag"] = tag
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", str(from_party))
        request.headers.add("To", to or f"<{uri}>")
        request.headers.add("Call-ID", call_id)
        request.headers.add("CSeq", "1 INVITE")
        request.headers.add("Contact", self._contact(transport))
        request.headers.add("Allow", ", ".join(ALLOWED_METHODS))
        request.headers.add("Supported", ", ".join(self.config.supported))
        if "timer" in self.config.supported:
            request.headers.add("Session-Expires", str(self.config.session_expires))
            request.headers.add("Min-SE", str(self.config.min_se))
        request.headers.add("User-Agent", self.config.user_agent)
        for name, value in (headers or {}).items():
            request.headers.add(name, value)
        if sdp:
            request.headers.add("Content-Type", "application/sdp")
        request.body = sdp
        call = _Call(
            handle=tag,
            uas=False,
            state=CallState.CALLING,
            invite=request,
            peer=dest,
            transport=transport,
            local_sdp=sdp,
            credentials=credentials,
        )
        if credentials is not None:
            call.digest = DigestClient(
                credentials.username, credentials.password, cnonce_factory=self._token
            )
        self._add_call(call)
        self._start_client(request, dest, transport, _Purpose.INVITE, owner=tag, now=now)
        return tag

    def reinvite(self, call: str, sdp: bytes, now: float) -> bool:
        """Send a re-INVITE with a new offer (hold/unhold); the answer comes back as
        :class:`RemoteSdpChanged`, a refusal as :class:`ReinviteFailed`."""
        c = self._calls.get(call)
        if c is None or c.state is not CallState.CONFIRMED or c.reinvite_out is not None:
            return False
        if c.reinvite_in is not None or c.pending_2xx is not None:
            return False  # §14.1: not while an INVITE transaction is in progress
        c.local_sdp = sdp
        self._send_reinvite(c, now, _Purpose.REINVITE)
        return True

    def hangup(self, call: str, now: float) -> bool:
        """End a call in whatever state it is: CANCEL an early outgoing call, BYE an
        established one, 480 to an unanswered incoming one. Reports CallEnded at once."""
        c = self._calls.get(call)
        if c is None or c.state is CallState.ENDED or c.ended_reported:
            return False
        if c.state is CallState.OFFERED:
            return self.reject(call, 480, now)
        if c.state is CallState.ANSWERED:
            # §15: no BYE before the ACK (or its timeout); it goes out when the ACK arrives.
            c.bye_pending = True
            self._report_end(c, "local_bye", None)
            return True
        if c.state in (CallState.CALLING, CallState.EARLY):
            c.cancel_pending = True
            if c.state is CallState.EARLY:
                self._send_cancel(c, now)
            self._report_end(c, "cancelled", 487)
            return True
        if c.reinvite_in is not None:
            self._server_send(c.reinvite_in_key, self._response(c.reinvite_in, 487), now)
            c.reinvite_in = None
        self._send_bye(c, now)
        self._end(c, "local_bye", None, now)
        return True

    def register(
        self,
        registrar_uri: str,
        aor: str,
        now: float,
        *,
        credentials: Credentials | None = None,
        expires: int = 3600,
    ) -> str:
        """Register ``aor`` at ``registrar_uri`` and keep it refreshed (about half-way
        through the granted expiry). Returns the registration handle."""
        registrar = SipUri.parse(registrar_uri)
        dest, transport = self._route_to(registrar)
        reg = _Registration(
            handle=f"reg-{self._token()}",
            registrar=registrar,
            aor=aor,
            credentials=credentials,
            expires=expires,
            call_id=f"{self._token()}@{self.config.sent_by_host}",
            from_tag=self._token(),
            dest=dest,
            transport=transport,
        )
        if credentials is not None:
            reg.digest = DigestClient(
                credentials.username, credentials.password, cnonce_factory=self._token
            )
        self._registrations[reg.handle] = reg
        self._send_register(reg, now)
        return reg.handle

    def unregister(self, registration: str, now: float) -> bool:
        reg = self._registrations.get(registration)
        if reg is None or reg.state is RegistrationState.REMOVED:
            return False
        reg.state = RegistrationState.UNREGISTERING
        reg.refresh_at = None
        self._send_register(reg, now)
        return True

    def shutdown(self, now: float) -> None:
        """Hang up every call and remove every registration."""
        for handle in list(self._calls):
            self.hangup(handle, now)
        for handle in list(self._registrations):
            self.unregister(handle, now)

    # -- introspection for the shell and tests ------------------------------------------------
    def call_state(self, call: str) -> CallState | None:
        c = self._calls.get(call)
        return c.state if c is not None else None

    def active_calls(self) -> list[str]:
        return [h for h, c in self._calls.items() if c.state is not CallState.ENDED]

    def dialog_peers(self, transport: str = "TCP") -> set[Addr]:
        """The peers (source addresses of connections) of the calls not ended over
        ``transport``: the shell never closes such a connection as idle."""
        transport = transport.upper()
        return {c.peer for c in self._calls.values()
                if c.transport == transport and c.state is not CallState.ENDED}

    def knows_call_id(self, call_id: str) -> bool:
        """Whether a message with this Call-ID belongs to a call (any state) or registration
        of ours: the intake puts such messages ahead of new work (``bridge.sip.intake``)."""
        if self._call_ids[call_id] > 0:
            return True
        return any(reg.call_id == call_id for reg in self._registrations.values())

    def refuse(self, data: bytes | SipRequest | SipResponse, addr: Addr, transport: str,
               status: int, headers: tuple[tuple[str, str], ...] = ()) -> bool:
        """Answer a request with ``status`` without creating a transaction (the intake's 503
        for a source over its limit). Responses, ACKs and unparsable bytes get nothing."""
        try:
            message = parse_message(data) if isinstance(data, bytes) else data
            if not isinstance(message, SipRequest) or message.method == "ACK":
                return False
            self._annotate_via(message, addr)
            response = self._response(message, status, extra=list(headers))
            self._send(response.to_bytes(), self._response_dest(message, addr, transport),
                       transport)
        except SipParseError:
            return False
        return True

    # =========================================================================================
    # Requests in
    # =========================================================================================
    def _on_request(self, request: SipRequest, addr: Addr, transport: str, now: float) -> None:
        self._annotate_via(request, addr)
        if request.method == "ACK":
            entry = self._server.get(server_key(request))
            if entry is not None and entry.tx.state is not IstState.ACCEPTED:
                self._server_outputs(entry, entry.tx.receive_request(request, now), now)
                return
            self._on_ack(request, now)
            return
        key = server_key(request)
        existing = self._server.get(key)
        if existing is not None:  # a retransmission: the transaction answers it
            self._server_outputs(existing, existing.tx.receive_request(request, now), now)
            return
        dest = self._response_dest(request, addr, transport)
        tx: InviteServerTransaction | NonInviteServerTransaction
        if request.method == "INVITE":
            tx = InviteServerTransaction(request, transport=transport, timers=self.timers)
        else:
            tx = NonInviteServerTransaction(request, transport=transport, timers=self.timers)
        entry = _ServerEntry(tx=tx, dest=dest, key=key)
        self._server[key] = entry
        if request.method == "INVITE":
            self._server_send(key, self._response(request, 100), now)  # §17.2.1

        status, extra = self._precheck(request)
        if status is not None:
            self._server_send(key, self._response(request, status, extra=extra), now)
            return
        if request.method == "CANCEL":
            self._on_cancel(request, key, now)
            return
        to_tag = request.to.tag
        if to_tag is not None:
            self._in_dialog(request, key, now)
            return
        self._out_of_dialog(request, key, addr, transport, now)

    def _precheck(self, request: SipRequest) -> tuple[int | None, list[tuple[str, str]]]:
        """§8.2.1-8.2.2: method, merged requests, Require. Max-Forwards is not checked: it
        bounds forwarding (§16.3), and this UA is the request's destination, so a request with
        Max-Forwards 0 is answered as any other (RFC 4475 §3.3.11)."""
        method = request.method
        allow = [("Allow", ", ".join(ALLOWED_METHODS))]
        if method not in ALLOWED_METHODS:
            return (405 if method in KNOWN_METHODS else 501), allow
        if request.to.tag is None and method != "CANCEL" and self._is_merged(request):
            return 482, []
        if method != "CANCEL":
            unsupported = [
                tag
                for tag in _option_tags(request, "Require")
                if tag not in {s.lower() for s in self.config.supported}
            ]
            if unsupported:
                return 420, [("Unsupported", ", ".join(unsupported))]
        return None, []

    def _is_merged(self, request: SipRequest) -> bool:
        """§8.2.2.2: same From tag, Call-ID and CSeq as a transaction in progress but a
        different branch: the request reached us twice through a forking proxy."""
        from_tag, call_id, cseq = request.from_.tag, request.call_id, request.cseq
        own = server_key(request)
        for key, entry in self._server.items():
            other = entry.tx.request
            if key == own or other.method != request.method or entry.tx.terminated:
                continue
            if (
                other.call_id == call_id
                and other.from_.tag == from_tag
                and other.cseq == cseq
                and other.to.tag is None
            ):
                return True
        return False

    def _out_of_dialog(
        self, request: SipRequest, key: TransactionKey, addr: Addr, transport: str, now: float
    ) -> None:
        method = request.method
        if method == "OPTIONS":
            self._server_send(key, self._options_response(request), now)
            return
        if method != "INVITE":
            self._server_send(key, self._response(request, 481), now)  # BYE/INFO/UPDATE
            return
        if self.config.authorize is not None:
            refusal = self.config.authorize(request, addr)
            if refusal is not None:
                self._server_send(key, self._response(request, refusal), now)
                return
        if self._verifier is not None and not self._check_inbound_auth(request, key, now):
            return
        self._new_call(request, key, addr, transport, now)

    def _check_inbound_auth(self, request: SipRequest, key: TransactionKey, now: float) -> bool:
        """RFC 3261 §22.3 with bridge.sip.auth's stateless nonces: 401 unless valid."""
        verifier, users = self._verifier, self.config.inbound_users
        assert verifier is not None and users is not None
        stale = False
        value = request.headers.get("Authorization")
        if value is not None:
            try:
                credentials = DigestCredentials.parse(value)
            except DigestError as exc:
                self._server_send(key, self._response(request, exc.status, exc.reason), now)
                return False
            result = verifier.verify(
                credentials,
                method=request.method,
                password_lookup=users.get,
                now=now,
                body=request.body,
            )
            if result is VerifyResult.OK:
                return True
            stale = result is VerifyResult.STALE_NONCE
        extra = [("WWW-Authenticate", v) for v in verifier.challenges(now, stale=stale)]
        self._server_send(key, self._response(request, 401, extra=extra), now)
        return False

    def _new_call(
        self, request: SipRequest, key: TransactionKey, addr: Addr, transport: str, now: float
    ) -> None:
        session: _SessionTimer | None = None
        se, refresher = _session_expires(request)
        if se is not None and "timer" in self.config.supported:
            if se < self.config.min_se:  # RFC 4028 §8.1
                self._server_send(
                    key,
                    self._response(request, 422, extra=[("Min-SE", str(self.config.min_se))]),
                    now,
                )
                return
            peer_supports = "timer" in _option_tags(request, "Supported")
            session = self._negotiate_session(se, refresher, request, peer_supports)
        handle = self._token()
        try:
            dialog = Dialog.for_uas(request, handle)
        except DialogError as exc:
            self._server_send(key, self._response(request, exc.status, exc.reason), now)
            return
        call = _Call(
            handle=handle,
            uas=True,
            state=CallState.OFFERED,
            invite=request,
            peer=addr,
            transport=transport,
            dialog=dialog,
            invite_key=key,
            remote_sdp=request.body,
            offerless=not request.body,
            session=session,
            peer_allows_update=_allows(request, "UPDATE"),
        )
        self._add_call(call)
        self._by_dialog[dialog.id] = call
        if (entry := self._server.get(key)) is not None:
            entry.call = handle
        uri = request.uri
        from_party = request.from_
        self._events.append(
            CallOffered(
                call=handle,
                call_id=request.call_id,
                request_uri=str(uri),
                user=uri.user if isinstance(uri, SipUri) else None,
                from_uri=str(from_party.uri),
                from_display=from_party.display_name,
                to_uri=str(request.to.uri),
                source=addr,
                transport=transport,
                sdp=request.body,
                request=request,
            )
        )

    def _negotiate_session(
        self, se: int, refresher: str | None, request: SipRequest, peer_supports: bool
    ) -> _SessionTimer:
        """RFC 4028 §9: we may lower the interval, not below the request's Min-SE; the
        refresher is the one asked for, else the UAC when it supports timers, else us."""
        request_min = _header_int(request, "Min-SE") or 90
        interval = max(min(se, self.config.session_expires), request_min)
        if refresher not in ("uac", "uas"):
            refresher = "uac" if peer_supports else "uas"
        if not peer_supports:
            refresher = "uas"
        return _SessionTimer(
            interval=interval, we_refresh=refresher == "uas", peer_supports=peer_supports
        )

    def _on_cancel(self, request: SipRequest, key: TransactionKey, now: float) -> None:
        """§9.2: 200 to the CANCEL; 487 to the INVITE if it has no final response yet."""
        invite_key = server_key(request, method="INVITE")
        invite_entry = self._server.get(invite_key)
        if invite_entry is None:
            self._server_send(key, self._response(request, 481), now)
            return
        self._server_send(key, self._response(request, 200), now)
        if invite_entry.tx.state is not IstState.PROCEEDING:
            return  # a final response already went out: the CANCEL has no effect
        call = self._calls.get(invite_entry.call or "")
        if call is not None and call.reinvite_in is not None and call.reinvite_in_key == invite_key:
            self._server_send(invite_key, self._response(call.reinvite_in, 487), now)
            call.reinvite_in, call.reinvite_in_key = None, None
            return
        tag = call.dialog.local_tag if call is not None and call.dialog is not None else None
        self._server_send(invite_key, self._response(invite_entry.tx.request, 487, to_tag=tag), now)
        if call is not None:
            self._move(call, CallInput.END)
            self._end(call, "cancelled", 487, now)

    def _in_dialog(self, request: SipRequest, key: TransactionKey, now: float) -> None:
        dialog_id = DialogId(request.call_id, request.to.tag or "", request.from_.tag or "")
        call = self._by_dialog.get(dialog_id)
        if call is not None and call.state is CallState.ENDED and request.method == "BYE":
            self._server_send(key, self._response(request, 200), now)  # BYEs crossed
            return
        if call is None or call.dialog is None or call.state is CallState.ENDED:
            self._server_send(key, self._response(request, 481), now)  # §12.2.2
            return
        if (entry := self._server.get(key)) is not None:
            entry.call = call.handle
        if call.dialog.check_remote_cseq(request) is not None:
            self._server_send(key, self._response(request, 500), now)
            return
        method = request.method
        if method == "BYE":
            self._on_bye(call, request, key, now)
        elif method == "INVITE":
            self._on_reinvite(call, request, key, now)
        elif method == "UPDATE":
            self._on_update(call, request, key, now)
        elif method == "INFO":
            self._on_info(call, request, key, now)
        else:  # OPTIONS
            self._server_send(key, self._options_response(request), now)

    def _on_bye(self, call: _Call, request: SipRequest, key: TransactionKey, now: float) -> None:
        """§15.1.2: 200 to the BYE, 487 to any request still pending in the dialog."""
        self._server_send(key, self._response(request, 200), now)
        if call.reinvite_in is not None:
            self._server_send(call.reinvite_in_key, self._response(call.reinvite_in, 487), now)
            call.reinvite_in = None
        if call.state is CallState.OFFERED:
            self._server_send(call.invite_key, self._dialog_response(call, call.invite, 487), now)
        assert call.dialog is not None
        call.dialog.apply(DialogInput.BYE)
        self._move(call, CallInput.END)
        self._end(call, "remote_bye", None, now)

    def _on_reinvite(
        self, call: _Call, request: SipRequest, key: TransactionKey, now: float
    ) -> None:
        if call.reinvite_out is not None:
            self._server_send(key, self._response(request, 491), now)  # §14.2 glare
            return
        if call.reinvite_in is not None or call.state is not CallState.CONFIRMED:
            # §14.2: an INVITE while ours to them is unanswered -> 500 with Retry-After.
            retry = str(secrets.randbelow(11))
            self._server_send(
                key, self._response(request, 500, extra=[("Retry-After", retry)]), now
            )
            return
        assert call.dialog is not None
        call.dialog.refresh_target(request)
        se, refresher = _session_expires(request)
        if se is not None and "timer" in self.config.supported:
            if se < self.config.min_se:
                self._server_send(
                    key,
                    self._response(request, 422, extra=[("Min-SE", str(self.config.min_se))]),
                    now,
                )
                return
            peer_supports = "timer" in _option_tags(request, "Supported")
            # The re-INVITE's UAC is the peer: "uac" means the peer refreshes.
            call.session = self._negotiate_session(se, refresher, request, peer_supports)
        call.reinvite_in, call.reinvite_in_key = request, key
        call.remote_sdp = request.body or call.remote_sdp
        self._events.append(ReinviteReceived(call=call.handle, sdp=request.body))

    def _on_update(self, call: _Call, request: SipRequest, key: TransactionKey, now: float) -> None:
        """RFC 3311 UPDATE as a session refresh (RFC 4028 §7.1): no new SDP supported."""
        if request.body:
            self._server_send(key, self._response(request, 488), now)
            return
        if call.reinvite_out is not None:
            self._server_send(key, self._response(request, 491), now)
            return
        assert call.dialog is not None
        call.dialog.refresh_target(request)
        se, refresher = _session_expires(request)
        if se is not None and "timer" in self.config.supported:
            peer_supports = "timer" in _option_tags(request, "Supported")
            call.session = self._negotiate_session(se, refresher, request, peer_supports)
        response = self._dialog_response(call, request, 200)
        self._server_send(key, response, now)
        if call.session is not None:
            call.session.restart(now)

    def _on_info(self, call: _Call, request: SipRequest, key: TransactionKey, now: float) -> None:
        content_type = request.content_type
        if not request.body:
            self._server_send(key, self._response(request, 200), now)
            return
        if content_type not in ("application/dtmf-relay", "application/dtmf"):
            extra = [("Accept", "application/dtmf-relay, application/dtmf")]
            self._server_send(key, self._response(request, 415, extra=extra), now)
            return
        parsed = parse_info_dtmf(content_type, request.body)
        if parsed is None:
            self._server_send(key, self._response(request, 400, "Bad DTMF body"), now)
            return
        self._server_send(key, self._response(request, 200), now)
        digit, duration = parsed
        self._events.append(InfoDtmfReceived(call=call.handle, digit=digit, duration_ms=duration))

    def _on_ack(self, ack: SipRequest, now: float) -> None:
        """The ACK for a 2xx (§13.3.1.4): stop retransmitting; never answered."""
        dialog_id = DialogId(ack.call_id, ack.to.tag or "", ack.from_.tag or "")
        call = self._by_dialog.get(dialog_id)
        if call is None:
            return
        pending = call.pending_2xx
        if pending is None or ack.cseq.seq != pending.cseq:
            return
        call.pending_2xx = None
        if call.state is CallState.ANSWERED:
            self._move(call, CallInput.ACK)
            if call.offerless and ack.body:
                call.remote_sdp = ack.body
                self._events.append(RemoteSdpChanged(call=call.handle, sdp=ack.body))
            if call.bye_pending:
                self._send_bye(call, now)
                self._end(call, "local_bye", None, now)
            else:
                self._events.append(CallEstablished(call=call.handle))
        elif call.state is CallState.CONFIRMED and ack.body and call.remote_sdp != ack.body:
            call.remote_sdp = ack.body
            self._events.append(RemoteSdpChanged(call=call.handle, sdp=ack.body))

    # =========================================================================================
    # Responses in
    # =========================================================================================
    def _on_response(self, response: SipResponse, now: float) -> None:
        entry = self._client.get(client_key(response))
        if entry is not None:
            self._client_outputs(entry, entry.tx.receive_response(response, now), now)
            if entry.tx.terminated:
                self._client.pop(client_key(response), None)
            return
        # No transaction: a 2xx retransmission after Timer M, or a 2xx from another fork.
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            self._stray_2xx(response, now)
            return
        self.stray_responses += 1

    def _stray_2xx(self, response: SipResponse, now: float) -> None:
        """§13.2.2.4: ACK every 2xx; a 2xx from a dialog we do not want gets ACK + BYE."""
        dialog_id = DialogId(response.call_id, response.from_.tag or "", response.to.tag or "")
        call = self._by_dialog.get(dialog_id)
        seq = response.cseq.seq
        if call is not None:
            # Our dialog: re-send the ACK of that INVITE (never BYE our own dialog).
            if seq in call.ack_for_2xx:
                self._send_to_dialog(call, call.ack_for_2xx[seq])
            else:
                self.stray_responses += 1
            return
        owner = self._calls.get(response.from_.tag or "")
        if owner is not None and not owner.uas:
            self._ack_and_bye(owner, response, now)
            return
        self.stray_responses += 1

    def _client_outputs(self, entry: _ClientEntry, outputs: list[TxOutput], now: float) -> None:
        for out in outputs:
            if isinstance(out, SendMessage):
                self._send(out.message.to_bytes(), entry.dest, entry.tx.transport)
            elif isinstance(out, PassToTu):
                assert isinstance(out.message, SipResponse)
                self._on_client_response(entry, out.message, now)
            elif isinstance(out, TimedOut | TransportFailed):
                self._on_client_failure(entry, now)
        if entry.tx.terminated and self._client.get(entry.key) is entry:
            del self._client[entry.key]

    def _on_client_response(self, entry: _ClientEntry, response: SipResponse, now: float) -> None:
        purpose = entry.purpose
        if purpose is _Purpose.REGISTER:
            reg = self._registrations.get(entry.owner or "")
            if reg is not None:
                self._register_response(reg, entry, response, now)
            return
        call = self._calls.get(entry.owner or "")
        if call is None:
            return
        if purpose is _Purpose.INVITE:
            self._invite_response(call, entry, response, now)
        elif purpose in (_Purpose.REINVITE, _Purpose.REFRESH_UPDATE):
            self._reinvite_response(call, entry, response, now)
        elif purpose is _Purpose.BYE and response.status in (401, 407):
            self._retry_with_auth(call, entry, response, now)

    def _on_client_failure(self, entry: _ClientEntry, now: float) -> None:
        """Timer B/F or a transport error: like a 408 (§8.1.3.1)."""
        if entry.purpose is _Purpose.REGISTER:
            reg = self._registrations.get(entry.owner or "")
            if reg is not None:
                self._registration_failed(reg, 408, now)
            return
        call = self._calls.get(entry.owner or "")
        if call is None:
            return
        if entry.purpose is _Purpose.INVITE:
            self._move(call, CallInput.END)
            self._end(call, "failed", 408, now)
        elif entry.purpose in (_Purpose.REINVITE, _Purpose.REFRESH_UPDATE):
            call.reinvite_out = None
            if call.state is CallState.CONFIRMED:  # §12.2.1.2: 408 ends the dialog
                self._send_bye(call, now)
                self._end(call, "failed", 408, now)

    def _invite_response(
        self, call: _Call, entry: _ClientEntry, response: SipResponse, now: float
    ) -> None:
        status = response.status
        request = entry.tx.request
        if status < 200:
            if status == 100:
                return
            if response.to.tag is not None and call.dialog is None:
                try:
                    call.dialog = Dialog.for_uac(request, response)
                except DialogError:
                    return
                self._by_dialog[call.dialog.id] = call
            self._move(call, CallInput.PROVISIONAL)
            if call.cancel_pending and not call.cancel_sent:
                self._send_cancel(call, now)
            if not call.ended_reported:
                self._events.append(
                    CallProgress(
                        call=call.handle, status=status, reason=response.reason, sdp=response.body
                    )
                )
            return
        if status < 300:
            self._invite_2xx(call, request, response, now)
            return
        if call.ended_reported:  # we hung up meanwhile: finish quietly
            self._move(call, CallInput.FINAL_FAILURE)
            self._end(call, "cancelled", status, now)
            return
        if status in (401, 407) and self._retry_with_auth(call, entry, response, now):
            return
        if status == 422 and not call.se_retried and not call.ended_reported:
            min_se = _header_int(response, "Min-SE")
            if min_se is not None:  # RFC 4028 §7.4: retry with the peer's minimum
                call.se_retried = True
                retry = self._copy_request(request)
                retry.headers.set("Session-Expires", str(min_se))
                retry.headers.set("Min-SE", str(min_se))
                self._resend_invite(call, retry, now)
                return
        if call.dialog is not None:
            self._by_dialog.pop(call.dialog.id, None)
            call.dialog.apply(DialogInput.FAILURE)
        self._move(call, CallInput.FINAL_FAILURE)
        reason: EndReason = "cancelled" if call.cancel_sent and status == 487 else "rejected"
        self._end(call, reason, status, now)

    def _invite_2xx(
        self, call: _Call, request: SipRequest, response: SipResponse, now: float
    ) -> None:
        seq = request.cseq.seq
        tag = response.to.tag or ""
        if call.dialog is not None and call.dialog.remote_tag == tag and seq in call.ack_for_2xx:
            self._send_to_dialog(call, call.ack_for_2xx[seq])  # retransmitted 2xx: same ACK
            return
        if call.state is CallState.CONFIRMED or call.state is CallState.ENDED:
            self._ack_and_bye(call, response, now)  # another fork answered too
            return
        if call.dialog is None or call.dialog.remote_tag != tag:
            try:
                dialog = Dialog.for_uac(request, response)
            except DialogError as exc:
                # A 2xx without To tag cannot be ACKed within a dialog: give the call up.
                self._reject_input(call.peer, call.transport, exc.reason, None)
                self._move(call, CallInput.END)
                self._end(call, "failed", response.status, now)
                return
            if call.dialog is not None:
                self._by_dialog.pop(call.dialog.id, None)
            call.dialog = dialog
            self._by_dialog[dialog.id] = call
        else:
            call.dialog.update_from_response(response)
            call.dialog.apply(DialogInput.SUCCESS)
        call.peer_allows_update = _allows(response, "UPDATE")
        call.nonces_tried.clear()
        self._send_ack(call, request, response)
        self._move(call, CallInput.SUCCESS)
        if call.cancel_pending or call.ended_reported:
            # We hung up while it rang and the 2xx won the race (§9.1): ACK, then BYE.
            self._send_bye(call, now)
            self._end(call, "cancelled", 487, now)
            return
        call.remote_sdp = response.body
        self._uac_session_timer(call, response, now)
        self._events.append(CallAnswered(call=call.handle, sdp=response.body))

    def _uac_session_timer(self, call: _Call, response: SipResponse, now: float) -> None:
        """RFC 4028 §7.2: the 2xx says the interval and who refreshes (we are the UAC)."""
        se, refresher = _session_expires(response)
        if se is None:
            return
        peer_supports = "timer" in _option_tags(response, "Require") or "timer" in _option_tags(
            response, "Supported"
        )
        call.session = _SessionTimer(
            interval=se, we_refresh=refresher != "uas", peer_supports=peer_supports
        )
        call.session.restart(now)

    def _reinvite_response(
        self, call: _Call, entry: _ClientEntry, response: SipResponse, now: float
    ) -> None:
        status = response.status
        if status < 200:
            return
        request = entry.tx.request
        if status < 300:
            if request.method == "INVITE":
                seq = request.cseq.seq
                if seq in call.ack_for_2xx:
                    self._send_to_dialog(call, call.ack_for_2xx[seq])
                    return
                self._send_ack(call, request, response)
            call.reinvite_out = None
            if call.state is CallState.ENDED:
                return
            assert call.dialog is not None
            call.dialog.refresh_target(response)
            if _session_expires(response)[0] is not None:
                self._uac_session_timer(call, response, now)
            elif call.session is not None:
                call.session.restart(now)
            if response.body and response.body != call.remote_sdp:
                call.remote_sdp = response.body
                self._events.append(RemoteSdpChanged(call=call.handle, sdp=response.body))
            return
        if status in (401, 407) and self._retry_with_auth(call, entry, response, now):
            return
        call.reinvite_out = None
        if call.state is CallState.ENDED:
            return
        if status in (481, 408):  # §12.2.1.2: the dialog is gone
            self._end(call, "failed", status, now)
            return
        if entry.purpose is _Purpose.REFRESH_UPDATE:
            # The refresh failed (491 glare, 405 no UPDATE ...): try again soon by re-INVITE.
            call.peer_allows_update = False
            if call.session is not None:
                call.session.refresh_at = now + 2.0
            return
        if entry.purpose is _Purpose.REINVITE:
            self._events.append(ReinviteFailed(call=call.handle, status=status))

    # =========================================================================================
    # Registration
    # =========================================================================================
    def _send_register(
        self, reg: _Registration, now: float, auth: tuple[str, str] | None = None
    ) -> None:
        reg.cseq += 1
        expires = 0 if reg.state is RegistrationState.UNREGISTERING else reg.expires
        request = SipRequest(method="REGISTER", uri=reg.registrar)
        request.headers.add("Max-Forwards", "70")
        aor = reg.aor if "<" in reg.aor else f"<{reg.aor}>"
        request.headers.add("From", f"{aor};tag={reg.from_tag}")
        request.headers.add("To", aor)
        request.headers.add("Call-ID", reg.call_id)
        request.headers.add("CSeq", f"{reg.cseq} REGISTER")
        request.headers.add("Contact", self._contact(reg.transport))
        request.headers.add("Expires", str(expires))
        request.headers.add("User-Agent", self.config.user_agent)
        if auth is not None:
            request.headers.add(*auth)
        self._start_client(
            request, reg.dest, reg.transport, _Purpose.REGISTER, owner=reg.handle, now=now
        )

    def _register_response(
        self, reg: _Registration, entry: _ClientEntry, response: SipResponse, now: float
    ) -> None:
        status = response.status
        if status < 200:
            return
        if 200 <= status < 300:
            reg.nonces_tried.clear()
            if reg.state is RegistrationState.UNREGISTERING:
                reg.state, reg.granted, reg.refresh_at = RegistrationState.REMOVED, 0, None
                self._events.append(
                    RegistrationChanged(
                        registration=reg.handle,
                        aor=reg.aor,
                        registered=False,
                        expires=0,
                        status=status,
                    )
                )
                del self._registrations[reg.handle]
                return
            granted = self._granted_expires(reg, response)
            reg.granted = granted
            reg.state = RegistrationState.REGISTERED if granted > 0 else RegistrationState.FAILED
            reg.refresh_at = now + max(granted / 2, 1.0) if granted > 0 else None
            self._events.append(
                RegistrationChanged(
                    registration=reg.handle,
                    aor=reg.aor,
                    registered=granted > 0,
                    expires=granted,
                    status=status,
                )
            )
            return
        if status in (401, 407) and reg.digest is not None:
            header = self._authorization_for(
                reg.digest, reg.nonces_tried, entry.tx.request, response
            )
            if header is not None:
                reg.cseq = entry.tx.request.cseq.seq
                self._send_register(reg, now, header)
                return
        if status == 423:
            minimum = _header_int(response, "Min-Expires")
            if minimum is not None and minimum > reg.expires:
                reg.expires = minimum
                self._send_register(reg, now)
                return
        self._registration_failed(reg, status, now)

    def _registration_failed(self, reg: _Registration, status: int, now: float) -> None:
        if reg.state is RegistrationState.UNREGISTERING:
            reg.state = RegistrationState.REMOVED
            del self._registrations[reg.handle]
        else:
            reg.state = RegistrationState.FAILED
            reg.refresh_at = now + self.config.register_retry
        reg.nonces_tried.clear()
        self._events.append(
            RegistrationChanged(
                registration=reg.handle, aor=reg.aor, registered=False, expires=0, status=status
            )
        )

    def _granted_expires(self, reg: _Registration, response: SipResponse) -> int:
        """RFC 3261 §10.2.4: our Contact's ``expires`` in the 2xx, else Expires, else ours."""
        ours = SipUri.parse(self._contact_uri(reg.transport))
        for value in response.headers.values("Contact"):
            try:
                contact = NameAddr.parse(value)
            except SipParseError:
                continue
            uri = contact.uri
            if (uri.user, uri.host.lower(), uri.port) == (ours.user, ours.host.lower(), ours.port):
                raw = contact.params.get("expires")
                if raw is not None and raw.isdigit():
                    return int(raw)
        header = _header_int(response, "Expires")
        return header if header is not None else reg.expires

    # =========================================================================================
    # Authentication (UAC side)
    # =========================================================================================
    def _authorization_for(
        self, digest: DigestClient, tried: set[str], request: SipRequest, response: SipResponse
    ) -> tuple[str, str] | None:
        """The (header name, value) answering a 401/407, once per challenge (nonce)."""
        challenge_header, credentials_header = AUTH_HEADERS[response.status]
        challenge = select_challenge(response.headers.get_all(challenge_header))
        # Once per challenge: a second challenge after our credentials means they were
        # refused, unless it only says our nonce went stale (RFC 7616 §3.3).
        if challenge is None or challenge.nonce in tried or len(tried) >= 3:
            return None
        if tried and not challenge.stale:
            return None
        tried.add(challenge.nonce)
        value = digest.authorize(
            challenge, method=request.method, uri=str(request.uri), body=request.body
        )
        return credentials_header, value

    def _retry_with_auth(
        self, call: _Call, entry: _ClientEntry, response: SipResponse, now: float
    ) -> bool:
        """Resend ``entry``'s request with credentials: new branch, CSeq + 1 (§22.2)."""
        if call.digest is None:
            return False
        request = entry.tx.request
        header = self._authorization_for(call.digest, call.nonces_tried, request, response)
        if header is None:
            return False
        retry = self._copy_request(request)
        retry.headers.set(*header)
        if request.method == "INVITE" and entry.purpose is _Purpose.INVITE:
            self._resend_invite(call, retry, now)
            return True
        assert call.dialog is not None
        seq = call.dialog.next_local_cseq()
        retry.headers.set("CSeq", f"{seq} {request.method}")
        self._set_via(retry, entry.tx.transport)
        if entry.purpose in (_Purpose.REINVITE, _Purpose.REFRESH_UPDATE):
            call.reinvite_out = retry
        self._start_client(
            retry, entry.dest, entry.tx.transport, entry.purpose, owner=call.handle, now=now
        )
        return True

    def _resend_invite(self, call: _Call, retry: SipRequest, now: float) -> None:
        """A new initial INVITE: same Call-ID and From tag, next CSeq, new branch."""
        seq = retry.cseq.seq + 1
        retry.headers.set("CSeq", f"{seq} INVITE")
        self._set_via(retry, call.transport)
        call.invite = retry
        if call.dialog is not None:
            self._by_dialog.pop(call.dialog.id, None)
            call.dialog = None
        call.state = CallState.CALLING
        self._start_client(
            retry, call.peer, call.transport, _Purpose.INVITE, owner=call.handle, now=now
        )

    @staticmethod
    def _copy_request(request: SipRequest) -> SipRequest:
        return SipRequest(
            headers=request.headers.copy(),
            body=request.body,
            method=request.method,
            uri=request.uri,
        )

    # =========================================================================================
    # Requests out
    # =========================================================================================
    def _start_client(
        self,
        request: SipRequest,
        dest: Addr,
        transport: str,
        purpose: _Purpose,
        *,
        owner: str | None,
        now: float,
    ) -> None:
        if "Via" not in request.headers:
            self._set_via(request, transport)
        tx: InviteClientTransaction | NonInviteClientTransaction
        if request.method == "INVITE":
            tx = InviteClientTransaction(request, transport=transport, timers=self.timers)
        else:
            tx = NonInviteClientTransaction(request, transport=transport, timers=self.timers)
        key = client_key(request)
        entry = _ClientEntry(tx=tx, dest=dest, purpose=purpose, owner=owner, key=key)
        self._client[key] = entry
        self._client_outputs(entry, tx.start(now), now)

    def _set_via(self, request: SipRequest, transport: str) -> None:
        via = Via(
            transport=transport.upper(),
            host=self.config.sent_by_host,
            port=self.config.sent_by_port,
            params={"branch": f"{MAGIC_COOKIE}{self._token()}", "rport": None},
        )
        request.headers.remove("Via")
        request.headers.add_first("Via", str(via))

    def _in_dialog_request(self, call: _Call, method: str) -> tuple[SipRequest, Addr, str]:
        assert call.dialog is not None
        request = call.dialog.create_request(method)
        dest, transport = self._dialog_dest(call)
        self._set_via(request, transport)
        request.headers.add("User-Agent", self.config.user_agent)
        return request, dest, transport

    def _send_bye(self, call: _Call, now: float) -> None:
        if call.dialog is None:
            return
        request, dest, transport = self._in_dialog_request(call, "BYE")
        call.dialog.apply(DialogInput.BYE)
        call.pending_2xx = None
        self._start_client(request, dest, transport, _Purpose.BYE, owner=call.handle, now=now)

    def _send_reinvite(self, call: _Call, now: float, purpose: _Purpose) -> None:
        method = "UPDATE" if purpose is _Purpose.REFRESH_UPDATE else "INVITE"
        request, dest, transport = self._in_dialog_request(call, method)
        request.headers.add("Contact", self._contact(transport))
        request.headers.add("Allow", ", ".join(ALLOWED_METHODS))
        request.headers.add("Supported", ", ".join(self.config.supported))
        if call.session is not None:
            request.headers.add("Session-Expires", f"{call.session.interval};refresher=uac")
            request.headers.add("Min-SE", str(self.config.min_se))
        if method == "INVITE" and call.local_sdp:
            request.headers.add("Content-Type", "application/sdp")
            request.body = call.local_sdp
        call.reinvite_out = request
        self._start_client(request, dest, transport, purpose, owner=call.handle, now=now)

    def _send_cancel(self, call: _Call, now: float) -> None:
        """§9.1: CANCEL with the INVITE's Request-URI, Call-ID, To, From, CSeq number, top
        Via and Route."""
        if call.cancel_sent:
            return
        invite = call.invite
        cancel = SipRequest(method="CANCEL", uri=invite.uri)
        cancel.headers.add("Via", invite.headers.values("Via")[0])
        for route in invite.headers.get_all("Route"):
            cancel.headers.add("Route", route)
        cancel.headers.add("Max-Forwards", "70")
        cancel.headers.add("From", invite.headers.get("From") or "")
        cancel.headers.add("To", invite.headers.get("To") or "")
        cancel.headers.add("Call-ID", invite.call_id)
        cancel.headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        cancel.headers.add("User-Agent", self.config.user_agent)
        call.cancel_sent = True
        call.purge_at = now + self.timers.timer_b  # §9.1: give up on the INVITE after 64*T1
        self._start_client(
            cancel, call.peer, call.transport, _Purpose.CANCEL, owner=call.handle, now=now
        )

    def _send_ack(self, call: _Call, invite: SipRequest, response: SipResponse) -> None:
        """§13.2.2.4: the ACK for a 2xx, built once per INVITE and re-sent for every 2xx."""
        assert call.dialog is not None
        seq = invite.cseq.seq
        ack = call.dialog.create_request("ACK", cseq=seq)
        dest, transport = self._dialog_dest(call)
        self._set_via(ack, transport)
        for name in ("Authorization", "Proxy-Authorization"):
            value = invite.headers.get(name)
            if value is not None:
                ack.headers.add(name, value)
        if call.offerless and call.local_sdp:
            ack.headers.add("Content-Type", "application/sdp")
            ack.body = call.local_sdp
        call.ack_for_2xx[seq] = ack
        while len(call.ack_for_2xx) > 4:  # the initial INVITE's and the latest re-INVITEs'
            del call.ack_for_2xx[min(call.ack_for_2xx)]
        self._send(ack.to_bytes(), dest, transport)

    def _ack_and_bye(self, call: _Call, response: SipResponse, now: float) -> None:
        """A 2xx from a dialog we do not keep (another fork, or after hangup): ACK it and
        end that dialog with BYE (§13.2.2.4)."""
        request = call.invite
        try:
            dialog = Dialog.for_uac(request, response)
        except DialogError:
            return
        ghost = _Call(
            handle=f"{call.handle}-fork-{self._token()}",
            uas=False,
            state=CallState.CONFIRMED,
            invite=request,
            peer=call.peer,
            transport=call.transport,
            dialog=dialog,
            ended_reported=True,
        )
        self._send_ack(ghost, request, response)
        self._send_bye(ghost, now)
        ghost.state = CallState.ENDED
        ghost.purge_at = now + self.timers.timer_b
        self._add_call(ghost)

    def _send_to_dialog(self, call: _Call, request: SipRequest) -> None:
        dest, transport = self._dialog_dest(call)
        self._send(request.to_bytes(), dest, transport)

    def _dialog_dest(self, call: _Call) -> tuple[Addr, str]:
        """Next hop of an in-dialog request (§12.2.1.1): the first route if there is a route
        set; else, for a call we answered, back to where the INVITE came from (symmetric, so a
        caller behind NAT with a private Contact is reached); else the remote target."""
        assert call.dialog is not None
        if call.dialog.route_set:
            return self._route_to(call.dialog.next_hop)
        if call.uas:
            return call.peer, call.transport
        if self.config.outbound_proxy is not None:
            return self.config.outbound_proxy, call.transport
        target = call.dialog.remote_target
        return (_host_of(target.host), target.port or 5060), call.transport

    # =========================================================================================
    # Responses out
    # =========================================================================================
    def _response(
        self,
        request: SipRequest,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> SipResponse:
        """§8.2.6.2: Via (all, in order), From, To (+ tag), Call-ID, CSeq copied."""
        phrase = reason or REASON_PHRASES.get(status, "Unknown")
        response = SipResponse(status=status, reason=phrase)
        headers = response.headers
        for value in request.headers.get_all("Via"):
            headers.add("Via", value)
        headers.add("From", request.headers.get("From") or "")
        to = request.headers.get("To") or ""
        if status > 100 and _to_tag(request, to) is None:
            # §8.2.6.2: the dialog's tag, or any tag for a response outside a dialog.
            to = f"{to};tag={to_tag or self._token()}"
        headers.add("To", to)
        headers.add("Call-ID", request.headers.get("Call-ID") or "")
        headers.add("CSeq", request.headers.get("CSeq") or "")
        headers.add("Server", self.config.user_agent)
        for name, value in extra or ():
            headers.add(name, value)
        response.body = body
        return response

    def _dialog_response(
        self, call: _Call, request: SipRequest, status: int, sdp: bytes = b""
    ) -> SipResponse:
        """A 1xx/2xx within (or creating) a dialog: To tag, Record-Route, Contact, Allow,
        Supported, Session-Expires (RFC 4028 §9), and the SDP."""
        assert call.dialog is not None
        extra: list[tuple[str, str]] = []
        if status > 100 and request.method == "INVITE":
            extra.extend(("Record-Route", rr) for rr in request.headers.get_all("Record-Route"))
        if status < 300:
            extra.append(("Contact", self._contact(call.transport)))
        if 200 <= status < 300:
            extra.append(("Allow", ", ".join(ALLOWED_METHODS)))
            extra.append(("Supported", ", ".join(self.config.supported)))
            if call.session is not None:
                refresher = "uas" if call.session.we_refresh else "uac"
                extra.append(("Session-Expires", f"{call.session.interval};refresher={refresher}"))
                if call.session.peer_supports:
                    extra.append(("Require", "timer"))
        if sdp:
            extra.append(("Content-Type", "application/sdp"))
        return self._response(request, status, to_tag=call.dialog.local_tag, extra=extra, body=sdp)

    def _options_response(self, request: SipRequest) -> SipResponse:
        """§11.2: 200 with Allow, Accept, Supported (trunk keepalives)."""
        return self._response(
            request,
            200,
            extra=[
                ("Allow", ", ".join(ALLOWED_METHODS)),
                ("Accept", ", ".join(ACCEPTED_TYPES)),
                ("Accept-Language", "en"),
                ("Supported", ", ".join(self.config.supported)),
                ("Contact", self._contact("UDP")),
            ],
        )

    def _server_send(self, key: TransactionKey | None, response: SipResponse, now: float) -> None:
        entry = self._server.get(key) if key is not None else None
        if entry is None:
            return
        self._server_outputs(entry, entry.tx.send_response(response, now), now)

    def _server_outputs(self, entry: _ServerEntry, outputs: list[TxOutput], now: float) -> None:
        for out in outputs:
            if isinstance(out, SendMessage):
                self._send(out.message.to_bytes(), entry.dest, entry.tx.transport)
            elif isinstance(out, PassToTu) and isinstance(out.message, SipRequest):
                self._on_ack(out.message, now)  # an RFC 2543 ACK matched the transaction
            # TimedOut (Timer H, no ACK for a non-2xx) and TransportFailed need no action:
            # the call already ended when the final response was sent.
        if entry.tx.terminated and self._server.get(entry.key) is entry:
            del self._server[entry.key]

    def _send_2xx(self, call: _Call, response: SipResponse, cseq: int, now: float) -> None:
        """Send a 2xx to an INVITE and arm the core's retransmission (§13.3.1.4)."""
        t = self.timers
        call.pending_2xx = _Pending2xx(
            response=response,
            cseq=cseq,
            interval=t.t1,
            next_send=now + t.t1,
            give_up=now + t.ack_timeout,
        )
        self._server_send(call.invite_key, response, now)

    # =========================================================================================
    # Call timers
    # =========================================================================================
    def _call_deadlines(self, call: _Call) -> list[float]:
        out: list[float] = []
        if call.pending_2xx is not None:
            out.extend((call.pending_2xx.next_send, call.pending_2xx.give_up))
        if call.session is not None and call.state is CallState.CONFIRMED:
            out.extend(
                d for d in (call.session.refresh_at, call.session.expire_at) if d is not None
            )
        if call.purge_at is not None:
            out.append(call.purge_at)
        return out

    def _call_timers(self, call: _Call, now: float) -> None:
        pending = call.pending_2xx
        if pending is not None:
            if pending.give_up <= now:
                # §13.3.1.4: no ACK within 64*T1: confirm, then end the session with BYE.
                call.pending_2xx = None
                if call.state is CallState.ANSWERED:
                    self._move(call, CallInput.ACK)
                self._send_bye(call, now)
                self._end(call, "ack_timeout", 408, now)
                return
            if pending.next_send <= now:
                entry = self._server.get(call.invite_key) if call.invite_key else None
                if entry is not None and entry.tx.state is IstState.ACCEPTED:
                    self._server_outputs(entry, entry.tx.send_response(pending.response, now), now)
                else:
                    dest = self._response_dest_of(pending.response, call)
                    self._send(pending.response.to_bytes(), dest, call.transport)
                pending.interval = self.timers.next_interval(pending.interval)
                pending.next_send = now + pending.interval
        session = call.session
        if session is not None and call.state is CallState.CONFIRMED:
            if session.refresh_at is not None and session.refresh_at <= now:
                session.refresh_at = None
                if call.reinvite_out is None and call.reinvite_in is None:
                    purpose = (
                        _Purpose.REFRESH_UPDATE if call.peer_allows_update else _Purpose.REINVITE
                    )
                    self._send_reinvite(call, now, purpose)
                else:
                    session.refresh_at = now + 2.0
            if session.expire_at is not None and session.expire_at <= now:
                session.expire_at = None
                self._send_bye(call, now)
                self._end(call, "session_expired", None, now)
        if call.purge_at is not None and call.purge_at <= now:
            if call.state is not CallState.ENDED:
                self._move(call, CallInput.END)
                self._end(call, "failed", 408, now)
            self._drop_call(call)
            if call.dialog is not None and self._by_dialog.get(call.dialog.id) is call:
                del self._by_dialog[call.dialog.id]

    # =========================================================================================
    # Helpers
    # =========================================================================================
    def _move(self, call: _Call, event: CallInput) -> None:
        """One step of ``CALL_TABLE``; a pair it does not list is a bug of the UA core."""
        call.state = next_call_state(call.state, event)

    def _report_end(self, call: _Call, reason: EndReason, status: int | None) -> None:
        if not call.ended_reported:
            call.ended_reported = True
            self._events.append(CallEnded(call=call.handle, reason=reason, status=status))

    def _end(self, call: _Call, reason: EndReason, status: int | None, now: float) -> None:
        """The call is over: report it once, keep it a while for retransmissions."""
        self._report_end(call, reason, status)
        call.state = CallState.ENDED
        call.session = None
        call.pending_2xx = None
        if call.purge_at is None or call.purge_at > now + self.timers.timer_b:
            call.purge_at = now + self.timers.timer_b

    def _add_call(self, call: _Call) -> None:
        old = self._calls.get(call.handle)
        if old is not None:
            self._drop_call(old)
        self._calls[call.handle] = call
        self._call_ids[call.invite.call_id] += 1

    def _drop_call(self, call: _Call) -> None:
        if self._calls.get(call.handle) is call:
            del self._calls[call.handle]
            cid = call.invite.call_id
            self._call_ids[cid] -= 1
            if self._call_ids[cid] <= 0:
                del self._call_ids[cid]

    def _uas_call(self, handle: str) -> _Call | None:
        call = self._calls.get(handle)
        if call is not None and not call.uas:
            raise CallError("not an incoming call")
        return call

    def _reject_input(self, addr: Addr, transport: str, reason: str, status: int | None) -> None:
        self.rejected += 1
        self._events.append(
            MessageRejected(source=addr, transport=transport, reason=reason, status=status)
        )

    def _answer_invalid(
        self, request: SipRequest, addr: Addr, transport: str, exc: SipParseError
    ) -> None:
        """A request failing validate_request: answer with its status and reason if we can
        (never an ACK), else drop it."""
        status: int | None = None
        if request.method != "ACK":
            try:
                self._annotate_via(request, addr)
                response = self._response(request, exc.status, exc.reason)
                self._send(
                    response.to_bytes(), self._response_dest(request, addr, transport), transport
                )
                status = exc.status
            except SipParseError:
                status = None
        self._reject_input(addr, transport, exc.reason, status)

    def _annotate_via(self, request: SipRequest, addr: Addr) -> None:
        """§18.2.1 + RFC 3581 §4: add ``received`` when the source IP differs from sent-by,
        fill ``rport`` when the client asked for it."""
        values = request.headers.values("Via")
        if not values:
            raise SipParseError("Missing Via")
        via = Via.parse(values[0])
        changed = False
        if _host_of(via.host) != addr[0]:
            via.params["received"] = addr[0]
            changed = True
        if "rport" in via.params and via.params["rport"] is None:
            via.params["rport"] = str(addr[1])
            changed = True
        if changed:
            values[0] = str(via)
            request.headers.set("Via", ", ".join(values))

    def _response_dest(self, request: SipRequest, addr: Addr, transport: str) -> Addr:
        """§18.2.2 + RFC 3581 §4: reliable -> back to the source (its connection); UDP ->
        ``received`` (or sent-by host) and ``rport`` (or sent-by port, or 5060)."""
        if transport.upper() != "UDP":
            return addr
        via = request.top_via
        host = via.params.get("received") or _host_of(via.host)
        rport = via.params.get("rport")
        port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
        return host, port

    def _response_dest_of(self, response: SipResponse, call: _Call) -> Addr:
        if call.transport != "UDP":
            return call.peer
        via = response.top_via
        host = via.params.get("received") or _host_of(via.host)
        rport = via.params.get("rport")
        return host, int(rport) if rport and rport.isdigit() else (via.port or 5060)

    def _route_to(self, uri: SipUri) -> tuple[Addr, str]:
        """Next hop for an out-of-dialog request: the outbound proxy, else the URI's host
        and port (no DNS here: the shell resolves names before calling)."""
        transport = (uri.params.get("transport") or "udp").upper()
        if transport not in {t.upper() for t in self.config.transports}:
            transport = self.config.transports[0].upper()
        if self.config.outbound_proxy is not None:
            return self.config.outbound_proxy, transport
        return (_host_of(uri.host), uri.port or 5060), transport

    def _contact_uri(self, transport: str) -> str:
        c = self.config
        uri = f"sip:{c.contact_user}@{c.sent_by_host}:{c.sent_by_port}"
        if transport.upper() != "UDP":
            uri += f";transport={transport.lower()}"
        return uri

    def _contact(self, transport: str) -> str:
        return f"<{self._contact_uri(transport)}>"

    def _send(self, data: bytes, addr: Addr, transport: str) -> None:
        self._out.append(Outgoing(data=data, addr=addr, transport=transport.upper()))
