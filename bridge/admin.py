"""The administration commands behind ``bridge rooms|numbers|calls|demo``.

The CLI is an edge: each operation here is a synchronous function that runs one
``asyncio.run`` over the async ``SqlStore``. The running bridge reads rooms and access
numbers from the same SQLite file on every call, so a change made here is seen at once.

Exit codes (``AdminError.exit_code``), documented in the README:

* ``2`` -- bad input: a malformed argument, a trivial PIN, a moderator PIN equal to the
  participant PIN, a number that is not E.164, an unknown country, an intro file that is not
  usable audio. Nothing is written.
* ``1`` -- a refused operation on valid input: a PIN, room name or access number already in
  use, a room that does not exist, an ambiguous room name, a database that cannot be opened.

Rooms belong to an account. Without ``--account`` the account ``admin@localhost`` is used
(created on first use); a named account that does not exist yet is created too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from bridge.conference.model import Language, Room
from bridge.conference.numbers import NumberError, normalize_e164, validate_country
from bridge.conference.pins import WeakPinError, check_pin, check_pin_pair, generate_room_pins
from bridge.config import Config
from bridge.media.wavimport import WavImportError
from bridge.runtime.prompt_files import import_announcement
from bridge.store.base import (
    AccessNumber,
    Account,
    ApiToken,
    CallRecord,
    DuplicateError,
    NotFoundError,
    Store,
    StoreError,
)
from bridge.store.sql import SqlStore

__all__ = [
    "DEFAULT_ACCOUNT_EMAIL",
    "EXIT_INVALID",
    "EXIT_REFUSED",
    "AdminError",
    "CallRow",
    "CreatedRoom",
    "DemoResult",
    "DemoSettings",
    "InvalidInputError",
    "NumberRow",
    "RefusedError",
    "RoomRow",
    "add_number",
    "add_room",
    "check_number",
    "create_account",
    "create_room",
    "create_token",
    "delete_number",
    "delete_room",
    "demo",
    "dial_target",
    "format_calls",
    "format_duration",
    "format_numbers",
    "format_rooms",
    "format_tokens",
    "intro_dir",
    "list_numbers",
    "list_rooms",
    "list_tokens",
    "live_calls",
    "primary_address",
    "regenerate_pins",
    "revoke_token",
]

EXIT_REFUSED = 1
EXIT_INVALID = 2

DEFAULT_ACCOUNT_EMAIL = "admin@localhost"
DEFAULT_ACCOUNT_NAME = "default"

_T = TypeVar("_T")


class AdminError(Exception):
    """A command that cannot be carried out; ``str()`` is the one line shown to the user."""

    exit_code = EXIT_REFUSED


class InvalidInputError(AdminError):
    """Bad input (exit status 2): nothing was written."""

    exit_code = EXIT_INVALID


class RefusedError(AdminError):
    """Valid input the database refuses (exit status 1): a conflict or a missing row."""

    exit_code = EXIT_REFUSED


# --------------------------------------------------------------------------- plumbing


def _run(db_path: Path | str, work: Callable[[SqlStore], Awaitable[_T]]) -> _T:
    """Open the store at ``db_path`` (creating the file and its folder), run ``work``, close."""

    async def go() -> _T:
        async with await SqlStore.open(db_path) as store:
            return await work(store)

    try:
        if isinstance(db_path, Path):
            db_path.parent.mkdir(parents=True, exist_ok=True)
        return asyncio.run(go())
    except WeakPinError as exc:
        raise InvalidInputError(str(exc)) from exc
    except NumberError as exc:
        raise InvalidInputError(str(exc)) from exc
    except (DuplicateError, NotFoundError) as exc:
        raise RefusedError(str(exc)) from exc
    except StoreError as exc:  # e.g. a schema written by a newer bridge
        raise RefusedError(str(exc)) from exc
    except sqlite3.Error as exc:
        raise RefusedError(f"database {db_path}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise RefusedError(f"database: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
    except OSError as exc:
        raise RefusedError(f"database {db_path}: {exc.strerror or exc}") from exc


async def _account(store: SqlStore, email: str | None) -> Account:
    """The named account, or the default one; created on first use."""
    wanted = (email or DEFAULT_ACCOUNT_EMAIL).strip()
    found = await store.find_account_by_email(wanted)
    if found is not None:
        return found
    name = DEFAULT_ACCOUNT_NAME if email is None else wanted.split("@", 1)[0]
    try:
        return await store.create_account(name=name, email=wanted)
    except DuplicateError:  # created meanwhile by another process
        again = await store.find_account_by_email(wanted)
        assert again is not None
        return again


def _check_account(email: str | None) -> None:
    if email is not None:
        local, at, domain = email.strip().partition("@")
        if not at or not local or not domain or " " in email.strip():
            raise InvalidInputError(f"--account: not an e-mail address: {email!r}")


async def _room_named(store: SqlStore, name: str, account: str | None) -> Room:
    """The room called ``name`` (in ``account`` if given; otherwise it must be unambiguous)."""
    if account is not None:
        acct = await store.find_account_by_email(account)
        room = None if acct is None else await store.get_room_by_name(acct.id, name)
        if room is None:
            raise RefusedError(f"no room named {name!r} in account {account}")
        return room
    matches = [r for r in await store.list_rooms() if r.name == name.strip()]
    if not matches:
        raise RefusedError(f"no room named {name!r}")
    if len(matches) > 1:
        raise RefusedError(f"{len(matches)} accounts have a room named {name!r}; give --account")
    return matches[0]


def intro_dir(db_path: Path | str) -> Path:
    """Where imported intros live: ``<folder of the SQLite file>/intros`` (``var/intros``
    for a database server)."""
    if isinstance(db_path, str):
        db_path = Path(db_path.removeprefix("sqlite:///")) if db_path.startswith(
            "sqlite:///") else Path("var/bridge")
    return db_path.resolve().parent / "intros"


# --------------------------------------------------------------------------- rooms


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedRoom:
    room: Room
    account: Account
    generated_pins: bool  # at least one PIN was generated


def create_room(
    db_path: Path | str,
    *,
    name: str,
    pin: str | None = None,
    moderator_pin: str | None = None,
    max_participants: int | None = None,
    language: Language = Language.EN,
    intro: Path | None = None,
    account: str | None = None,
    pin_attempts: int = 5,
) -> CreatedRoom:
    """Create a room, generating the PINs not given (``pins.generate_room_pins``).

    With ``intro``, the WAV file is converted to 8 kHz mono (``import_announcement``) into
    ``intro_dir(db_path)/<room id>.wav`` and that absolute path is stored. Input is checked
    (and the intro converted) before anything is written, so a bad PIN or a file that is not
    audio leaves the database untouched.
    """
    if not name.strip():
        raise InvalidInputError("a room needs a name")
    if max_participants is not None and max_participants < 1:
        raise InvalidInputError("--max-participants must be at least 1")
    _check_account(account)
    try:
        if pin is not None:
            check_pin(pin)
        if moderator_pin is not None:
            check_pin(moderator_pin)
        if pin is not None and moderator_pin is not None:
            check_pin_pair(pin, moderator_pin)
    except WeakPinError as exc:
        raise InvalidInputError(str(exc)) from exc

    staged: Path | None = None
    if intro is not None:
        folder = intro_dir(db_path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RefusedError(f"cannot create {folder}: {exc.strerror or exc}") from exc
        staged = folder / f".import-{secrets.token_hex(8)}.wav"
        try:
            import_announcement(intro, staged)
        except WavImportError as exc:
            staged.unlink(missing_ok=True)
            raise InvalidInputError(f"{intro}: {exc}") from exc

    async def work(store: SqlStore) -> CreatedRoom:
        acct = await _account(store, account)
        generated = pin is None or moderator_pin is None
        try:
            room = await add_room(store, acct, name=name, pin=pin, moderator_pin=moderator_pin,
                                  max_participants=max_participants, language=language,
                                  pin_attempts=pin_attempts)
        except DuplicateError as exc:
            if exc.field == "room_name":
                raise RefusedError(
                    f"account {acct.email} already has a room named {name.strip()!r}"
                ) from exc
            raise
        if staged is not None:
            final = staged.with_name(f"{room.id}.wav")
            os.replace(staged, final)
            room = await store.update_room(_with_intro(room, str(final)))
        return CreatedRoom(room=room, account=acct, generated_pins=generated)

    try:
        return _run(db_path, work)
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)


async def add_room(
    store: Store,
    account: Account,
    *,
    name: str,
    pin: str | None = None,
    moderator_pin: str | None = None,
    max_participants: int | None = None,
    language: Language = Language.EN,
    pin_attempts: int = 5,
    **settings: Any,
) -> Room:
    """Create a room of ``account``, generating the PINs not given; the CLI and the API share
    it. The given PINs must have been checked (``check_pin``/``check_pin_pair``). A generated
    PIN taken meanwhile by another writer is drawn again; otherwise ``DuplicateError``
    (``field`` room_name or pin) goes to the caller. ``settings``: further ``create_room``
    keywords (wait_for_moderator, locked, starts_at, ends_at)."""
    generated = pin is None or moderator_pin is None
    for attempt in range(pin_attempts):
        part, mod = pin, moderator_pin
        if generated:
            drawn = await generate_room_pins(store)
            fresh = [p for p in drawn if p not in (pin, moderator_pin)]
            part = part if part is not None else fresh.pop(0)
            mod = mod if mod is not None else fresh.pop(0)
        assert part is not None and mod is not None
        try:
            return await store.create_room(
                account_id=account.id,
                name=name,
                participant_pin=part,
                moderator_pin=mod,
                max_participants=max_participants,
                language=language,
                **settings,
            )
        except DuplicateError as exc:
            retry = exc.field == "pin" and generated and attempt + 1 < pin_attempts
            if retry and not await _given_pin_taken(store, pin, moderator_pin):
                continue  # a generated PIN was taken by a concurrent writer: draw again
            raise
    raise RefusedError("could not find unused PINs; try again")  # pragma: no cover


async def regenerate_pins(store: Store, room: Room, *, attempts: int = 5) -> Room:
    """Give ``room`` two fresh generated PINs (the old ones stop working at once)."""
    for attempt in range(attempts):
        part, mod = await generate_room_pins(store)
        try:
            return await store.update_room(
                dataclasses.replace(room, participant_pin=part, moderator_pin=mod))
        except DuplicateError as exc:
            if exc.field != "pin" or attempt + 1 == attempts:
                raise
    raise RefusedError("could not find unused PINs; try again")  # pragma: no cover


async def _given_pin_taken(store: Store, *pins: str | None) -> bool:
    for pin in pins:
        if pin is not None and await store.pin_in_use(pin):
            return True
    return False


def _with_intro(room: Room, path: str | None) -> Room:
    return Room(
        id=room.id,
        account_id=room.account_id,
        name=room.name,
        participant_pin=room.participant_pin,
        moderator_pin=room.moderator_pin,
        max_participants=room.max_participants,
        language=room.language,
        intro_path=path,
        wait_for_moderator=room.wait_for_moderator,
        locked=room.locked,
        starts_at=room.starts_at,
        ends_at=room.ends_at,
        created_at=room.created_at,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomRow:
    room: Room
    account_email: str


def list_rooms(db_path: Path | str, *, account: str | None = None) -> list[RoomRow]:
    """Every room (of ``account`` if given), with its account's e-mail address."""
    _check_account(account)

    async def work(store: SqlStore) -> list[RoomRow]:
        emails = {a.id: a.email for a in await store.list_accounts()}
        if account is None:
            rooms = await store.list_rooms()
        else:
            acct = await store.find_account_by_email(account)
            rooms = [] if acct is None else await store.list_rooms(acct.id)
        return [RoomRow(room=r, account_email=emails.get(r.account_id, "?")) for r in rooms]

    return _run(db_path, work)


def delete_room(db_path: Path | str, name: str, *, account: str | None = None) -> Room:
    """Delete a room and its PINs (and its imported intro file); return what was deleted."""
    _check_account(account)

    async def work(store: SqlStore) -> Room:
        room = await _room_named(store, name, account)
        if not await store.delete_room(room.id):
            raise RefusedError(f"room {name!r} was deleted meanwhile")
        return room

    room = _run(db_path, work)
    if room.intro_path is not None:
        intro = Path(room.intro_path)
        if intro.parent == intro_dir(db_path):  # only files we imported ourselves
            intro.unlink(missing_ok=True)
    return room


def format_rooms(rows: Sequence[RoomRow]) -> str:
    if not rows:
        return "no rooms"
    return _table(
        ("NAME", "PIN", "MODERATOR PIN", "MAX", "LANGUAGE", "LOCKED", "INTRO", "ACCOUNT"),
        [
            (
                r.room.name,
                r.room.participant_pin,
                r.room.moderator_pin,
                "-" if r.room.max_participants is None else str(r.room.max_participants),
                r.room.language.value,
                "yes" if r.room.locked else "no",
                r.room.intro_path or "-",
                r.account_email,
            )
            for r in rows
        ],
    )


# --------------------------------------------------------------------------- numbers


def check_number(number: str, country: str) -> str:
    """The country code (upper case) if ``number`` is a valid number of ``country``; else
    ``NumberError``."""
    cc = validate_country(country)
    normalize_e164(number, cc)
    return cc


def _check_number(number: str, country: str) -> str:
    try:
        return check_number(number, country)
    except NumberError as exc:
        raise InvalidInputError(str(exc)) from exc


def add_number(
    db_path: Path | str,
    number: str,
    *,
    country: str,
    language: Language = Language.EN,
    room: str | None = None,
    account: str | None = None,
) -> AccessNumber:
    """Add an access number (normalised to E.164 and checked against its country)."""
    cc = _check_number(number, country)
    _check_account(account)

    async def work(store: SqlStore) -> AccessNumber:
        room_id = None if room is None else (await _room_named(store, room, account)).id
        try:
            return await store.add_access_number(
                number=number, country=cc, language=language, room_id=room_id
            )
        except DuplicateError as exc:
            e164 = normalize_e164(number, cc)
            raise RefusedError(f"access number {e164} exists already") from exc

    return _run(db_path, work)


def delete_number(db_path: Path | str, number: str) -> str:
    """Delete an access number; return its E.164 form."""
    try:
        e164 = normalize_e164(number)
    except NumberError as exc:
        raise InvalidInputError(str(exc)) from exc

    async def work(store: SqlStore) -> str:
        if not await store.delete_access_number(e164):
            raise RefusedError(f"no access number {e164}")
        return e164

    return _run(db_path, work)


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberRow:
    number: AccessNumber
    room_name: str | None


def list_numbers(db_path: Path | str) -> list[NumberRow]:
    async def work(store: SqlStore) -> list[NumberRow]:
        names = {r.id: r.name for r in await store.list_rooms()}
        return [
            NumberRow(number=n, room_name=None if n.room_id is None else names.get(n.room_id))
            for n in await store.list_access_numbers()
        ]

    return _run(db_path, work)


def format_numbers(rows: Sequence[NumberRow]) -> str:
    if not rows:
        return "no access numbers"
    return _table(
        ("NUMBER", "COUNTRY", "LANGUAGE", "ROOM"),
        [
            (r.number.number, r.number.country, r.number.language.value, r.room_name or "-")
            for r in rows
        ],
    )


# --------------------------------------------------------------------------- calls


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRow:
    record: CallRecord
    room_name: str | None


def live_calls(db_path: Path | str) -> list[CallRow]:
    """The open call records: legs in a conference now, on every node using the database."""

    async def work(store: SqlStore) -> list[CallRow]:
        names = {r.id: r.name for r in await store.list_rooms()}
        return [
            CallRow(record=c, room_name=None if c.room_id is None else names.get(c.room_id))
            for c in await store.live_call_records()
        ]

    return _run(db_path, work)


def format_duration(seconds: float) -> str:
    """``45s``, ``12m 03s``, ``2h 05m``; negative (clock skew between nodes) counts as 0."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def format_calls(rows: Sequence[CallRow], now: float) -> str:
    """The live legs; ``now`` is UTC epoch seconds (the records' clock)."""
    if not rows:
        return "no live calls"
    return _table(
        ("ROOM", "CALLER", "NUMBER DIALED", "ROLE", "JOINED", "SINCE"),
        [
            (
                r.room_name or "-",
                r.record.caller or "-",
                r.record.number_dialed or "-",
                r.record.role.value,
                datetime.fromtimestamp(r.record.joined_at).strftime("%Y-%m-%d %H:%M:%S"),
                format_duration(now - r.record.joined_at),
            )
            for r in rows
        ],
    )


# --------------------------------------------------------------------------- accounts, tokens


def _valid_email(email: str) -> str:
    text = email.strip()
    local, at, domain = text.partition("@")
    if not at or not local or not domain or " " in text:
        raise InvalidInputError(f"not an e-mail address: {email!r}")
    return text


def create_account(
    db_path: Path | str, email: str, *, admin: bool = False, password: str | None = None,
    name: str | None = None,
) -> Account:
    """Create an account (``password`` hashed with argon2id; None: no password yet)."""
    wanted = _valid_email(email)
    if password is not None and len(password) < 8:
        raise InvalidInputError("a password needs at least 8 characters")
    from bridge.web.auth import hash_password

    hashed = None if password is None else hash_password(password)

    async def work(store: SqlStore) -> Account:
        try:
            return await store.create_account(
                name=name or wanted.split("@", 1)[0], email=wanted, password_hash=hashed,
                is_admin=admin)
        except DuplicateError as exc:
            raise RefusedError(f"an account {wanted} exists already") from exc

    return _run(db_path, work)


def create_token(db_path: Path | str, email: str, *, name: str = "cli") -> tuple[ApiToken, str]:
    """A new API token of the account ``email``: the stored row and the secret (shown once;
    only its sha256 is stored)."""
    wanted = _valid_email(email)
    if not name.strip():
        raise InvalidInputError("a token needs a name")
    from bridge.web.auth import hash_token, new_token

    secret = new_token()

    async def work(store: SqlStore) -> ApiToken:
        account = await store.find_account_by_email(wanted)
        if account is None:
            raise RefusedError(f"no account {wanted} (bridge accounts create {wanted})")
        return await store.create_api_token(account_id=account.id, name=name.strip(),
                                            token_hash=hash_token(secret),
                                            created_at=time.time())

    return _run(db_path, work), secret


def revoke_token(db_path: Path | str, token_id: int) -> None:
    """Revoke a token: it answers 401 from now on."""

    async def work(store: SqlStore) -> None:
        if not await store.revoke_api_token(token_id, time.time()):
            raise RefusedError(f"no token {token_id} that is not revoked already")

    _run(db_path, work)


def list_tokens(db_path: Path | str, email: str) -> list[ApiToken]:
    wanted = _valid_email(email)

    async def work(store: SqlStore) -> list[ApiToken]:
        account = await store.find_account_by_email(wanted)
        if account is None:
            raise RefusedError(f"no account {wanted}")
        return await store.list_api_tokens(account.id)

    return _run(db_path, work)


def format_tokens(tokens: Sequence[ApiToken]) -> str:
    if not tokens:
        return "no tokens"

    def when(at: float | None) -> str:
        return "-" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")

    return _table(("ID", "NAME", "CREATED", "LAST USED", "REVOKED"),
                  [(str(t.id), t.name, when(t.created_at), when(t.last_used_at),
                    when(t.revoked_at)) for t in tokens])


# --------------------------------------------------------------------------- demo


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSettings:
    """What ``bridge demo`` creates."""

    number: str = "+4930123456"
    country: str = "DE"
    language: Language = Language.EN
    room: str = "demo"


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    room: Room
    number: AccessNumber
    created_room: bool
    created_number: bool


def demo(db_path: Path | str, settings: DemoSettings | None = None) -> DemoResult:
    """Idempotently make sure the demo room and access number exist (PINs generated once)."""
    cfg = settings if settings is not None else DemoSettings()

    async def work(store: SqlStore) -> DemoResult:
        acct = await _account(store, None)
        room = await store.get_room_by_name(acct.id, cfg.room)
        created_room = False
        if room is None:
            part, mod = await generate_room_pins(store)
            try:
                room = await store.create_room(
                    account_id=acct.id,
                    name=cfg.room,
                    participant_pin=part,
                    moderator_pin=mod,
                    language=cfg.language,
                )
                created_room = True
            except DuplicateError as exc:  # another process made it meanwhile
                room = await store.get_room_by_name(acct.id, cfg.room)
                if room is None:
                    raise RefusedError(str(exc)) from exc
        number = await store.lookup_access_number(cfg.number)
        created_number = False
        if number is None:
            try:
                number = await store.add_access_number(
                    number=cfg.number, country=cfg.country, language=cfg.language, room_id=room.id
                )
                created_number = True
            except DuplicateError:
                number = await store.lookup_access_number(cfg.number)
                assert number is not None
        return DemoResult(
            room=room, number=number, created_room=created_room, created_number=created_number
        )

    return _run(db_path, work)


def primary_address() -> str:
    """The machine's primary IPv4 address (the one the default route uses), else 127.0.0.1.

    A UDP ``connect`` sends nothing; 192.0.2.1 is TEST-NET-1 (RFC 5737).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


_ANY = ("0.0.0.0", "::", "")


def dial_target(
    config: Config, primary: Callable[[], str] = primary_address
) -> tuple[str, str | None]:
    """``HOST:PORT`` to dial and an optional note, from the SIP listen configuration.

    ``sip.external_address`` wins (it is what the bridge advertises). A wildcard listen
    address is replaced by the machine's primary address, with a note that 127.0.0.1 works
    from the machine itself.
    """
    port = config.sip.listen_port
    note: str | None = None
    if config.sip.external_address:
        host = config.sip.external_address
    elif config.sip.listen_host in _ANY:
        host = primary()
        if host.startswith("127."):
            note = (
                f"the bridge listens on all addresses ({config.sip.listen_host or '0.0.0.0'}) "
                "but this machine has no network route; dial from this machine"
            )
        else:
            note = (
                f"the bridge listens on all addresses ({config.sip.listen_host or '0.0.0.0'}); "
                f"from this machine you can also dial 127.0.0.1:{port}"
            )
    else:
        host = config.sip.listen_host
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}", note


def dial_line(number: str, target: str, room: Room) -> str:
    """The one line that tells how to dial in."""
    return (
        f"dial sip:{number}@{target}, PIN {room.participant_pin}, "
        f"moderator PIN {room.moderator_pin}"
    )


# --------------------------------------------------------------------------- tables


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)
