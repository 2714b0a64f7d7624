"""What a call controller sees of the bridge process: its call legs and the ``CallController``
protocol (``bridge.runtime.app`` implements ``CallHost``; ``bridge.runtime.controller`` and
``DirectRoomController`` implement ``CallController``). A module of its own so that the
process (``app``) and the controllers never import each other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Protocol

from bridge.media.engine import MediaEvent
from bridge.runtime.sip_transport import Addr
from bridge.runtime.workers import MediaControl
from bridge.sdp.model import SessionDescription
from bridge.sdp.negotiate import NegotiatedMedia
from bridge.sip.events import CallOffered

__all__ = ["CallController", "CallHost", "Leg"]


@dataclass(slots=True)
class Leg:
    """One call leg as the application sees it."""

    call: str  # the SIP endpoint's call handle, also the media leg id
    room: str
    outbound: bool
    caller: str
    dialed: str
    source: Addr | None
    local_port: int = 0
    media: NegotiatedMedia | None = None
    local_sdp: SessionDescription | None = None
    session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    established_at: float | None = None
    offer_pending: bool = False  # we sent an offer (dial-out, offerless re-INVITE)


class CallHost(Protocol):
    """The bridge process as a controller uses it (``BridgeApp``)."""

    @property
    def legs(self) -> dict[str, Leg]: ...

    @property
    def media_control(self) -> MediaControl: ...

    def hangup(self, call: str) -> None: ...


class CallController(Protocol):
    """What the application does with calls: the IVR and conferences plug in here.

    ``offered`` runs before the call is answered and may refuse it with a status (404 for an
    unknown access number, 503 when full); ``answered`` gets a leg whose media runs in a room
    of its own (``leg.room``); ``ended`` and ``media_event`` report what happened.
    """

    async def offered(self, app: CallHost, offered: CallOffered) -> int | None: ...

    def answered(self, app: CallHost, leg: Leg) -> None: ...

    def ended(self, app: CallHost, leg: Leg, reason: str) -> None: ...

    def media_event(self, app: CallHost, event: MediaEvent) -> None: ...
