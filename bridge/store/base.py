"""The storage interface of the bridge: one ``Store`` protocol, several back ends.

``SqliteStore`` (``bridge.store.sqlite``) is the embedded default; a PostgreSQL store shared by
several bridge machines implements the same protocol. Rules every implementation keeps:

* **No caching.** Every call queries the database, so a room or access number changed by the
  CLI or the web panel is seen by a running bridge at once, on every machine.
* **Time** is stored as **UTC epoch seconds** (``float``, ``time.time()`` style) everywhere.
* **Durability.** Every write is committed before the call returns; a call record is written
  when the leg joins and closed when it leaves; after a crash ``close_interrupted(node_id, now)``
  closes the node's records left open as ``interrupted``, so nothing finished is ever lost.
* **Shared counters** (PIN failures) live in the database, never in process memory.
* PINs are unique across all rooms and both roles (one PIN prompt finds room and role).

Errors: ``DuplicateError`` (unique constraint, ``field`` says which), ``NotFoundError``,
``WeakPinError``/``NumberError`` from the domain for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bridge.conference.model import Admission, Language, LeaveReason, Role, Room

__all__ = [
    "AccessNumber",
    "Account",
    "ApiToken",
    "CallRecord",
    "Direction",
    "DuplicateError",
    "NotFoundError",
    "Rejection",
    "RejectionReason",
    "Run",
    "RunEnd",
    "Store",
    "StoreError",
]


class StoreError(Exception):
    """Base of the store's errors."""


class DuplicateError(StoreError):
    """A unique value is taken: ``field`` is one of email, room_name, pin, number."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(StoreError):
    """The row a write refers to does not exist."""


class RejectionReason(StrEnum):
    """Why a call was turned away; stored verbatim in ``rejections.reason``."""

    WRONG_PIN = "wrong_pin"
    LOCKED = "locked"
    FULL = "full"
    UNKNOWN_NUMBER = "unknown_number"
    TOO_MANY_FAILURES = "too_many_failures"
    NOT_STARTED = "not_started"
    ENDED = "ended"

    @classmethod
    def from_admission(cls, admission: Admission) -> RejectionReason:
        """The reason to record for an admission that did not let the caller in."""
        return _FROM_ADMISSION[admission]


_FROM_ADMISSION = {
    Admission.LOCKED: RejectionReason.LOCKED,
    Admission.FULL: RejectionReason.FULL,
    Admission.NOT_STARTED: RejectionReason.NOT_STARTED,
    Admission.ENDED: RejectionReason.ENDED,
}


class Direction(StrEnum):
    """How a leg came to the conference."""

    DIAL_IN = "dial_in"
    DIAL_OUT = "dial_out"
    VOIP_LINK = "voip_link"


class RunEnd(StrEnum):
    """How a conference run ended (``web`` = an API, web or CLI actor; ``interrupted`` = the
    node crashed)."""

    LAST_LEFT = "last_left"
    MODERATOR = "moderator"
    WEB = "web"
    SCHEDULED_END = "scheduled_end"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    id: int
    name: str
    email: str
    password_hash: str | None
    tariff: str
    created_at: float
    is_admin: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One conference run of a room: from its first leg to its end (``ended_at`` None while
    it lasts). ``room_id`` is None once the room was deleted."""

    id: int
    room_id: int | None
    account_id: int
    node_id: str
    opened_at: float
    ended_at: float | None
    end_reason: RunEnd | None
    peak_participants: int

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """An API token; only the sha256 hex of its secret is stored."""

    id: int
    account_id: int
    name: str
    token_hash: str
    created_at: float
    revoked_at: float | None
    last_used_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessNumber:
    """A dial-in number: E.164, its country (ISO 3166-1 alpha-2), its menu language and,
    optionally, the room it leads to directly (the PIN is still asked)."""

    number: str
    country: str
    language: Language
    room_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One leg's stay in a room. ``left_at``/``leave_reason`` are None while it lasts."""

    id: int
    room_id: int | None  # None once the room was deleted
    account_id: int
    leg_id: str
    number_dialed: str
    caller: str
    source: str
    role: Role
    language: Language
    joined_at: float
    left_at: float | None
    leave_reason: LeaveReason | None
    node_id: str
    run_id: int | None = None
    direction: Direction = Direction.DIAL_IN
    answered_at: float | None = None  # the call was answered (the IVR starts)
    conference_at: float | None = None  # conference time starts (None while waiting);
    # billing counts conference_at..left_at
    ended_by: str | None = None  # actor of a kick/end: a leg id, "web", "cli", "scheduler"

    @property
    def is_open(self) -> bool:
        return self.left_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A call turned away. ``source`` is the key PIN failures are counted under
    (``pins.caller_source``)."""

    id: int
    at: float
    number_dialed: str
    caller: str
    source: str
    reason: RejectionReason
    room_id: int | None
    node_id: str


class Store(Protocol):
    """Async storage used by the bridge, the IVR, the web panel and the CLI."""

    async def close(self) -> None: ...

    # accounts
    async def create_account(
        self,
        *,
        name: str,
        email: str,
        password_hash: str | None = None,
        tariff: str = "standard",
        is_admin: bool = False,
    ) -> Account: ...
    async def get_account(self, account_id: int) -> Account | None: ...
    async def find_account_by_email(self, email: str) -> Account | None: ...
    async def list_accounts(self) -> list[Account]: ...

    # rooms
    async def create_room(
        self,
        *,
        account_id: int,
        name: str,
        participant_pin: str,
        moderator_pin: str,
        max_participants: int | None = None,
        language: Language = Language.EN,
        intro_path: str | None = None,
        wait_for_moderator: bool = False,
        locked: bool = False,
        starts_at: float | None = None,
        ends_at: float | None = None,
    ) -> Room: ...
    async def update_room(self, room: Room) -> Room: ...
    async def get_room(self, room_id: int) -> Room | None: ...
    async def get_room_by_name(self, account_id: int, name: str) -> Room | None: ...
    async def list_rooms(self, account_id: int | None = None) -> list[Room]: ...
    async def delete_room(self, room_id: int) -> bool: ...
    async def find_room_by_pin(self, pin: str) -> tuple[Room, Role] | None: ...
    async def pin_in_use(self, pin: str) -> bool: ...

    # access numbers
    async def add_access_number(
        self, *, number: str, country: str, language: Language, room_id: int | None = None
    ) -> AccessNumber: ...
    async def lookup_access_number(self, number: str) -> AccessNumber | None: ...
    async def list_access_numbers(self) -> list[AccessNumber]: ...
    async def delete_access_number(self, number: str) -> bool: ...

    # call records
    async def open_call_record(
        self,
        *,
        room_id: int,
        leg_id: str,
        number_dialed: str,
        caller: str,
        source: str,
        role: Role,
        language: Language,
        joined_at: float,
        node_id: str,
        run_id: int | None = None,
        direction: Direction = Direction.DIAL_IN,
        answered_at: float | None = None,
        conference_at: float | None = None,
    ) -> int: ...
    async def close_call_record(
        self, record_id: int, *, left_at: float, reason: LeaveReason, ended_by: str | None = None
    ) -> bool: ...
    async def mark_in_conference(self, record_id: int, at: float) -> bool: ...
    async def close_interrupted(self, node_id: str, now: float) -> int: ...
    async def live_call_records(self, room_id: int | None = None) -> list[CallRecord]: ...
    async def call_history(
        self,
        *,
        room_id: int | None = None,
        account_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
        run_id: int | None = None,
    ) -> list[CallRecord]: ...

    # conference runs
    async def open_run(self, *, room_id: int, opened_at: float, node_id: str) -> Run: ...
    async def note_run_peak(self, run_id: int, participants: int) -> None: ...
    async def end_run(self, run_id: int, *, ended_at: float, reason: RunEnd) -> bool: ...
    async def get_run(self, run_id: int) -> Run | None: ...
    async def list_runs(
        self,
        *,
        account_id: int | None = None,
        room_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[Run]: ...

    # API tokens
    async def create_api_token(
        self, *, account_id: int, name: str, token_hash: str, created_at: float
    ) -> ApiToken: ...
    async def find_api_token(self, token_hash: str) -> ApiToken | None: ...
    async def list_api_tokens(self, account_id: int) -> list[ApiToken]: ...
    async def revoke_api_token(self, token_id: int, at: float) -> bool: ...
    async def touch_api_token(self, token_id: int, at: float) -> None: ...

    # node heartbeats (crash detection across nodes)
    async def write_heartbeat(self, node_id: str, now: float) -> None: ...
    async def last_heartbeat(self, node_id: str) -> float | None: ...
    async def stale_nodes(self, before: float) -> list[str]: ...

    # rejections and PIN failures
    async def record_rejection(
        self,
        *,
        at: float,
        number_dialed: str,
        caller: str,
        source: str,
        reason: RejectionReason,
        node_id: str,
        room_id: int | None = None,
    ) -> int: ...
    async def count_recent_pin_failures(self, source: str, since: float) -> int: ...
    # PIN budget reserved before every try (in-flight tries count), on every node
    async def reserve_pin_attempt(
        self, *, source: str, since: float, limit: int, now: float, node_id: str
    ) -> int | None: ...
    async def release_pin_attempt(self, attempt_id: int) -> None: ...
    # calls of a source in the IVR at once, on every node
    async def enter_ivr(
        self, *, call_id: str, source: str, limit: int, now: float, node_id: str
    ) -> bool: ...
    async def leave_ivr(self, call_id: str) -> None: ...
    async def list_rejections(
        self, *, since: float | None = None, source: str | None = None, limit: int = 1000
    ) -> list[Rejection]: ...
