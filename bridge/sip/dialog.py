"""SIP dialogs (RFC 3261 §12): state, identity, route set, remote target, CSeq bookkeeping.

* Creation: :meth:`Dialog.for_uas` (§12.1.1, from the dialog-creating request and our To tag)
  and :meth:`Dialog.for_uac` (§12.1.2, from our request and the 1xx/2xx that carried a To tag;
  the Record-Route list is reversed for the UAC).
* Requests within the dialog: :meth:`Dialog.create_request` (§12.2.1.1, loose routing when the
  first route carries ``lr``, strict routing otherwise) and :meth:`Dialog.next_hop`.
* Requests received within the dialog: :meth:`Dialog.check_remote_cseq` (§12.2.2: a CSeq lower
  than the remote sequence number is answered 500) and :meth:`Dialog.refresh_target`
  (target refresh requests and their 2xx update the remote target, §12.2).
* State: Early -> Confirmed -> Terminated driven by :data:`DIALOG_TABLE`.

The dialog carries no I/O and no clock; the UA core adds Via, Contact and body.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from bridge.sip.headers import NameAddr
from bridge.sip.message import SipMessage, SipRequest, SipResponse
from bridge.sip.uri import SipUri


class DialogState(Enum):
    EARLY = "Early"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class DialogInput(Enum):
    PROVISIONAL = "1xx with To tag"  # §12.1: creates/keeps an early dialog
    SUCCESS = "2xx"  # confirms (or is a 2xx to a re-INVITE)
    FAILURE = "non-2xx final to the dialog-creating INVITE"  # §12.3: early dialog ends
    BYE = "BYE sent or received"  # §15
    GONE = "481 or 408 to an in-dialog request"  # §12.2.1.2


class DialogAction(Enum):
    NONE = "nothing"
    CONFIRM = "the dialog is confirmed"
    END = "the dialog ended"


DIALOG_TABLE: dict[tuple[DialogState, DialogInput], tuple[DialogState, DialogAction]] = {
    (DialogState.EARLY, DialogInput.PROVISIONAL): (DialogState.EARLY, DialogAction.NONE),
    (DialogState.EARLY, DialogInput.SUCCESS): (DialogState.CONFIRMED, DialogAction.CONFIRM),
    (DialogState.EARLY, DialogInput.FAILURE): (DialogState.TERMINATED, DialogAction.END),
    (DialogState.EARLY, DialogInput.BYE): (DialogState.TERMINATED, DialogAction.END),
    (DialogState.EARLY, DialogInput.GONE): (DialogState.TERMINATED, DialogAction.END),
    (DialogState.CONFIRMED, DialogInput.SUCCESS): (DialogState.CONFIRMED, DialogAction.NONE),
    (DialogState.CONFIRMED, DialogInput.BYE): (DialogState.TERMINATED, DialogAction.END),
    (DialogState.CONFIRMED, DialogInput.GONE): (DialogState.TERMINATED, DialogAction.END),
}


@dataclass(frozen=True, slots=True)
class DialogId:
    """§12: Call-ID, local tag and remote tag."""

    call_id: str
    local_tag: str
    remote_tag: str


class DialogError(ValueError):
    """A message that cannot create or belong to a dialog; ``status`` is the answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _with_tag(value: str, tag: str) -> str:
    party = NameAddr.parse(value)
    if party.tag is None:
        party.params["tag"] = tag
    return str(party)


def _contact_uri(message: SipMessage) -> SipUri | None:
    contacts = message.contacts
    return contacts[0].uri if contacts else None


@dataclass(slots=True)
class Dialog:
    """One dialog as seen by this UA. Header values (``local_party``, ``remote_party``,
    ``route_set``) are kept as text so they are replayed exactly as agreed."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_party: str  # From of our requests (with our tag)
    remote_party: str  # To of our requests (with their tag, once known)
    remote_target: SipUri
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    state: DialogState = DialogState.EARLY
    secure: bool = False
    protocol_errors: int = 0

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def for_uas(cls, request: SipRequest, local_tag: str, *, local_seq: int = 0) -> Dialog:
        """§12.1.1: the UAS side of a dialog created by ``request`` (our response gets
        ``local_tag`` in its To). Route set = Record-Route in order; remote target = Contact."""
        target = _contact_uri(request)
        if target is None:
            raise DialogError("Dialog-creating request without Contact")
        remote_tag = request.from_.tag
        if remote_tag is None:
            raise DialogError("From without tag")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=_with_tag(request.headers.get("To") or "", local_tag),
            remote_party=request.headers.get("From") or "",
            remote_target=target,
            route_set=request.headers.values("Record-Route"),
            local_seq=local_seq,
            remote_seq=request.cseq.seq,
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
        )

    @classmethod
    def for_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """§12.1.2: the UAC side, from our request and a 1xx/2xx with a To tag. Route set =
        Record-Route of the response in reverse order; remote target = its Contact."""
        remote_tag = response.to.tag
        if remote_tag is None:
            raise DialogError("Response without To tag cannot create a dialog")
        local_tag = request.from_.tag or ""
        target = _contact_uri(response)
        if target is None:
            # An early dialog from a 1xx without Contact keeps the Request-URI as target.
            if isinstance(request.uri, SipUri):
                target = request.uri
            else:
                raise DialogError("No remote target")
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=request.headers.get("From") or "",
            remote_party=response.headers.get("To") or "",
            remote_target=target,
            route_set=list(reversed(response.headers.values("Record-Route"))),
            local_seq=request.cseq.seq,
            remote_seq=None,
            state=state,
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
        )

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # -- state ----------------------------------------------------------------------------------
    def apply(self, event: DialogInput) -> DialogAction:
        """Drive the state machine; a missing entry is counted and ignored."""
        entry = DIALOG_TABLE.get((self.state, event))
        if entry is None:
            self.protocol_errors += 1
            return DialogAction.NONE
        self.state, action = entry
        return action

    def update_from_response(self, response: SipResponse) -> None:
        """§12.1.2/§12.2.1.2: a 2xx to the dialog-creating INVITE confirms the dialog and its
        route set (taken from the 2xx, the final word) and remote target."""
        if self.state is DialogState.EARLY and 200 <= response.status < 300:
            self.route_set = list(reversed(response.headers.values("Record-Route")))
            self.remote_party = response.headers.get("To") or self.remote_party
        self.refresh_target(response)

    def refresh_target(self, message: SipMessage) -> None:
        """Target refresh (re-INVITE, UPDATE and their 2xx): a new Contact replaces the
        remote target."""
        target = _contact_uri(message)
        if target is not None:
            self.remote_target = target

    # -- requests received ------------------------------------------------------------------
    def check_remote_cseq(self, request: SipRequest) -> int | None:
        """§12.2.2: None if ``request`` is in order (and record its CSeq), 500 if it is lower
        than the remote sequence number. ACK and CANCEL reuse an earlier number and are not
        checked."""
        if request.method in ("ACK", "CANCEL"):
            return None
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return 500
        self.remote_seq = seq
        return None

    # -- requests sent ------------------------------------------------------------------------
    def next_local_cseq(self) -> int:
        self.local_seq += 1
        return self.local_seq

    @property
    def next_hop(self) -> SipUri:
        """Where the request goes first (§12.2.1.1, §8.1.2): the first route, else the
        remote target."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).uri
        return self.remote_target

    def create_request(self, method: str, *, cseq: int | None = None) -> SipRequest:
        """§12.2.1.1: a request within the dialog, without Via/Contact/body (the core adds
        them). ``cseq`` defaults to the next local sequence number; an ACK for a 2xx passes
        the INVITE's number."""
        seq = cseq if cseq is not None else self.next_local_cseq()
        uri, routes = self._request_uri_and_routes()
        request = SipRequest(method=method, uri=uri)
        for route in routes:
            request.headers.add("Route", route)
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", self.local_party)
        request.headers.add("To", self.remote_party)
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{seq} {method}")
        return request

    def _request_uri_and_routes(self) -> tuple[SipUri, list[str]]:
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if "lr" in first.uri.params:
            # Loose routing: Request-URI = remote target, Route = route set.
            return self.remote_target, list(self.route_set)
        # Strict routing: Request-URI = first route (without headers), the remote target
        # goes to the end of the Route list.
        uri = replace(first.uri, params=dict(first.uri.params), headers={})
        uri.params.pop("method", None)
        routes = [*self.route_set[1:], f"<{self.remote_target}>"]
        return uri, routes
