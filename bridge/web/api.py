"""``/api/v1``: rooms, access numbers, runs and rejections as JSON.

Room rules are the CLI's (``bridge.admin.add_room``, ``regenerate_pins``, the PIN checks of
``bridge.conference.pins``): the API adds no second copy. Another account's room, number or
run answers 404 like one that does not exist; an admin account sees everything.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bridge.admin import add_room, check_number, regenerate_pins
from bridge.conference.model import Language, Room
from bridge.conference.numbers import NumberError, normalize_e164
from bridge.conference.pins import WeakPinError, check_pin, check_pin_pair
from bridge.store.base import (
    AccessNumber,
    Account,
    CallRecord,
    DuplicateError,
    Rejection,
    Run,
)
from bridge.web.problems import FieldError, ProblemError, bad_request, conflict, invalid, not_found
from bridge.web.state import STATE, account_of

__all__ = [
    "add_routes",
    "call_json",
    "can_see",
    "read_json",
    "room_json",
    "room_of",
]

API = "/api/v1"
LANGUAGES = [lang.value for lang in Language]


# --------------------------------------------------------------------------- helpers


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _loads(text: str) -> Any:
    """Strict JSON: NaN and Infinity (which json accepts by default) are refused."""
    return json.loads(text, parse_constant=_no_constant)


ID_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII digits only (str.isdigit takes "²")
MOST_INT = 2**31 - 1  # ids and counts: what an integer column holds in both databases


def ascii_int(text: str) -> int | None:
    """``text`` as an id or count (ASCII digits, at most ``MOST_INT``), else None."""
    if ID_DIGITS.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= MOST_INT else None


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 when it is not one."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json(loads=_loads)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # ValueError: JSONDecodeError, NaN/Infinity, an integer of more than 4,300 digits;
        # RecursionError: nesting deeper than the parser goes
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def can_see(account: Account, owner_id: int | None) -> bool:
    return account.is_admin or owner_id == account.id


def path_int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    value = ascii_int(text)
    if value is None:
        raise not_found(f"no such {name.removesuffix('_id')} {text!r}")
    return value


async def room_of(request: web.Request, name: str = "room_id") -> Room:
    """The room of the path, if the caller may see it (else 404)."""
    room_id = path_int(request, name)
    room = await request.app[STATE].store.get_room(room_id)
    if room is None or not can_see(account_of(request), room.account_id):
        raise not_found(f"no room {room_id}")
    return room


def query_float(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise invalid([{"field": name, "message": "expected a number (UTC epoch seconds)"}])
    return value


def query_limit(request: web.Request, default: int = 100, most: int = 1000) -> int:
    text = request.query.get("limit")
    if text is None:
        return default
    value = ascii_int(text)
    if value is None or not 1 <= value <= most:
        raise invalid([{"field": "limit", "message": f"expected 1..{most}"}])
    return value


def room_json(room: Room) -> dict[str, Any]:
    return {
        "id": room.id,
        "account_id": room.account_id,
        "name": room.name,
        "participant_pin": room.participant_pin,
        "moderator_pin": room.moderator_pin,
        "max_participants": room.max_participants,
        "language": room.language.value,
        "wait_for_moderator": room.wait_for_moderator,
        "locked": room.locked,
        "starts_at": room.starts_at,
        "ends_at": room.ends_at,
        "created_at": room.created_at,
        "has_intro": room.intro_path is not None,
    }


def number_json(number: AccessNumber) -> dict[str, Any]:
    return {"number": number.number, "country": number.country,
            "language": number.language.value, "room_id": number.room_id}


def call_json(record: CallRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "room_id": record.room_id,
        "run_id": record.run_id,
        "leg_id": record.leg_id,
        "direction": record.direction.value,
        "caller": record.caller,
        "number_dialed": record.number_dialed,
        "role": record.role.value,
        "language": record.language.value,
        "joined_at": record.joined_at,
        "answered_at": record.answered_at,
        "conference_at": record.conference_at,
        "left_at": record.left_at,
        "leave_reason": None if record.leave_reason is None else record.leave_reason.value,
        "ended_by": record.ended_by,
        "node_id": record.node_id,
    }


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "room_id": run.room_id,
        "account_id": run.account_id,
        "node_id": run.node_id,
        "opened_at": run.opened_at,
        "ended_at": run.ended_at,
        "end_reason": None if run.end_reason is None else run.end_reason.value,
        "peak_participants": run.peak_participants,
    }


def rejection_json(rejection: Rejection) -> dict[str, Any]:
    return {
        "id": rejection.id,
        "at": rejection.at,
        "number_dialed": rejection.number_dialed,
        "caller": rejection.caller,
        "source": rejection.source,
        "reason": rejection.reason.value,
        "room_id": rejection.room_id,
        "node_id": rejection.node_id,
    }


class _Fields:
    """Collects the field errors of one body (422 lists them all at once)."""

    def __init__(self, body: Mapping[str, Any], allowed: frozenset[str]) -> None:
        self.body = body
        self.errors: list[FieldError] = []
        for key in body:
            if key not in allowed:
                self.error(key, "unknown field")

    def error(self, name: str, message: str) -> None:
        self.errors.append({"field": name, "message": message})

    def text(self, name: str, *, required: bool = False, most: int = 200) -> str | None:
        value = self.body.get(name)
        if value is None:
            if required:
                self.error(name, "required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(name, "expected a non-empty string")
            return None
        if len(value) > most:
            self.error(name, f"at most {most} characters")
            return None
        return value.strip()

    def pin(self, name: str) -> str | None:
        value = self.body.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(name, "expected a string of digits")
            return None
        try:
            check_pin(value)
        except WeakPinError as exc:
            self.error(name, str(exc))
            return None
        return value

    def positive(self, name: str) -> int | None:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MOST_INT:
            self.error(name, f"expected a whole number from 1 to {MOST_INT} (or null)")
            return None
        return value

    def flag(self, name: str) -> bool | None:
        value = self.body.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error(name, "expected true or false")
            return None
        return value

    def time(self, name: str) -> float | None:
        value = self.body.get(name)
        if value is None:
            return None
        try:
            seconds = -1.0 if isinstance(value, bool) else float(value)
        except (TypeError, ValueError, OverflowError):  # not a number; an int beyond a float
            seconds = -1.0
        if not (math.isfinite(seconds) and seconds >= 0):
            self.error(name, "expected UTC epoch seconds (or null)")
            return None
        return seconds

    def language(self, name: str) -> Language | None:
        value = self.body.get(name)
        if value is None:
            return None
        if value not in LANGUAGES:
            self.error(name, f"expected one of {', '.join(LANGUAGES)}")
            return None
        return Language(value)

    def done(self) -> None:
        if self.errors:
            raise invalid(self.errors)


def _duplicate(exc: DuplicateError) -> ProblemError:
    if exc.field == "pin":
        return conflict("this PIN is already in use; choose another", field="pin")
    if exc.field == "room_name":
        return conflict("the account already has a room of this name", field="name")
    if exc.field == "number":
        return conflict("this access number exists already", field="number")
    return conflict(str(exc), field=exc.field)


# --------------------------------------------------------------------------- rooms

ROOM_FIELDS = frozenset({
    "name", "participant_pin", "moderator_pin", "max_participants", "language",
    "wait_for_moderator", "locked", "starts_at", "ends_at",
})


def _check_window(fields: _Fields, starts: float | None, ends: float | None) -> None:
    if starts is not None and ends is not None and ends <= starts:
        fields.error("ends_at", "must be after starts_at")


async def list_rooms(request: web.Request) -> web.Response:
    account = account_of(request)
    store = request.app[STATE].store
    rooms = await store.list_rooms(None if account.is_admin else account.id)
    return web.json_response({"rooms": [room_json(r) for r in rooms]})


async def create_room(request: web.Request) -> web.Response:
    account = account_of(request)
    body = await read_json(request)
    fields = _Fields(body, ROOM_FIELDS)
    name = fields.text("name", required=True)
    pin = fields.pin("participant_pin")
    moderator_pin = fields.pin("moderator_pin")
    if pin is not None and moderator_pin is not None:
        try:
            check_pin_pair(pin, moderator_pin)
        except WeakPinError as exc:
            fields.error("moderator_pin", str(exc))
    max_participants = fields.positive("max_participants")
    language = fields.language("language") or Language.EN
    settings: dict[str, Any] = {}
    for flag in ("wait_for_moderator", "locked"):
        value = fields.flag(flag)
        if value is not None:
            settings[flag] = value
    starts, ends = fields.time("starts_at"), fields.time("ends_at")
    _check_window(fields, starts, ends)
    fields.done()
    assert name is not None
    store = request.app[STATE].store
    try:
        room = await add_room(store, account, name=name, pin=pin, moderator_pin=moderator_pin,
                              max_participants=max_participants, language=language,
                              starts_at=starts, ends_at=ends, **settings)
    except DuplicateError as exc:
        raise _duplicate(exc) from None
    return web.json_response(room_json(room), status=201,
                             headers={"Location": f"{API}/rooms/{room.id}"})


async def get_room(request: web.Request) -> web.Response:
    return web.json_response(room_json(await room_of(request)))


async def update_room(request: web.Request) -> web.Response:
    room = await room_of(request)
    body = await read_json(request)
    fields = _Fields(body, ROOM_FIELDS)
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = fields.text("name", required=True)
    for name in ("participant_pin", "moderator_pin"):
        if name in body:
            if body[name] is None:
                fields.error(name, "a room always has this PIN; POST .../pins for new ones")
            changes[name] = fields.pin(name)
    if "max_participants" in body:
        changes["max_participants"] = fields.positive("max_participants")
    if "language" in body:
        changes["language"] = fields.language("language")
        if changes["language"] is None:
            fields.error("language", "required")
    for flag in ("wait_for_moderator", "locked"):
        if flag in body:
            changes[flag] = fields.flag(flag)
            if changes[flag] is None:
                fields.error(flag, "expected true or false")
    for moment in ("starts_at", "ends_at"):
        if moment in body:
            changes[moment] = fields.time(moment)
    fields.done()
    updated = dataclasses.replace(room, **changes)
    try:
        check_pin_pair(updated.participant_pin, updated.moderator_pin)
    except WeakPinError as exc:
        raise invalid([{"field": "moderator_pin", "message": str(exc)}]) from None
    if updated.starts_at is not None and updated.ends_at is not None \
            and updated.ends_at <= updated.starts_at:
        raise invalid([{"field": "ends_at", "message": "must be after starts_at"}])
    try:
        saved = await request.app[STATE].store.update_room(updated)
    except DuplicateError as exc:
        raise _duplicate(exc) from None
    return web.json_response(room_json(saved))


async def delete_room(request: web.Request) -> web.Response:
    room = await room_of(request)
    if not await request.app[STATE].store.delete_room(room.id):
        raise not_found(f"no room {room.id}")
    return web.Response(status=204)


async def new_pins(request: web.Request) -> web.Response:
    room = await room_of(request)
    try:
        saved = await regenerate_pins(request.app[STATE].store, room)
    except DuplicateError as exc:  # pragma: no cover - five collisions in a row
        raise _duplicate(exc) from None
    return web.json_response(room_json(saved))


# --------------------------------------------------------------------------- numbers


async def _visible_room_ids(request: web.Request) -> set[int] | None:
    """The ids of the rooms the caller may see; None for an admin (all)."""
    account = account_of(request)
    if account.is_admin:
        return None
    return {r.id for r in await request.app[STATE].store.list_rooms(account.id)}


async def list_numbers(request: web.Request) -> web.Response:
    mine = await _visible_room_ids(request)
    numbers = await request.app[STATE].store.list_access_numbers()
    shown = [n for n in numbers if mine is None or n.room_id in mine]
    return web.json_response({"numbers": [number_json(n) for n in shown]})


async def create_number(request: web.Request) -> web.Response:
    account = account_of(request)
    body = await read_json(request)
    fields = _Fields(body, frozenset({"number", "country", "language", "room_id"}))
    number = fields.text("number", required=True, most=40)
    country = fields.text("country", required=True, most=2)
    language = fields.language("language") or Language.EN
    room_id = body.get("room_id")
    if room_id is not None and (isinstance(room_id, bool) or not isinstance(room_id, int)
                                or not 1 <= room_id <= MOST_INT):
        fields.error("room_id", "expected a room id (or null)")
        room_id = None
    elif room_id is None and not account.is_admin:
        fields.error("room_id", "required: the number leads to one of your rooms")
    e164 = ""
    if number is not None and country is not None:
        try:
            cc = check_number(number, country)
            e164 = normalize_e164(number, cc)
            country = cc
        except NumberError as exc:
            fields.error("number", str(exc))
    fields.done()
    store = request.app[STATE].store
    if room_id is not None:
        room = await store.get_room(room_id)
        if room is None or not can_see(account, room.account_id):
            raise invalid([{"field": "room_id", "message": f"no room {room_id}"}])
    assert country is not None
    try:
        added = await store.add_access_number(number=e164, country=country, language=language,
                                              room_id=room_id)
    except DuplicateError as exc:
        raise _duplicate(exc) from None
    return web.json_response(number_json(added), status=201,
                             headers={"Location": f"{API}/numbers/{added.number}"})


async def _number_of(request: web.Request) -> AccessNumber:
    text = request.match_info["number"]
    try:
        e164 = normalize_e164(text)
    except NumberError:
        raise not_found(f"no access number {text!r}") from None
    found = await request.app[STATE].store.lookup_access_number(e164)
    mine = await _visible_room_ids(request)
    if found is None or (mine is not None and found.room_id not in mine):
        raise not_found(f"no access number {e164}")
    return found


async def get_number(request: web.Request) -> web.Response:
    return web.json_response(number_json(await _number_of(request)))


async def delete_number(request: web.Request) -> web.Response:
    found = await _number_of(request)
    if not await request.app[STATE].store.delete_access_number(found.number):
        raise not_found(f"no access number {found.number}")
    return web.Response(status=204)


# --------------------------------------------------------------------------- runs, rejections


async def list_runs(request: web.Request) -> web.Response:
    account = account_of(request)
    store = request.app[STATE].store
    room_id: int | None = None
    if "room_id" in request.query:
        room_id = ascii_int(request.query["room_id"])
        if room_id is None:
            raise invalid([{"field": "room_id", "message": "expected a room id"}])
        room = await store.get_room(room_id)
        if room is None or not can_see(account, room.account_id):
            raise not_found(f"no room {room_id}")
    runs = await store.list_runs(
        account_id=None if account.is_admin else account.id, room_id=room_id,
        since=query_float(request, "since"), until=query_float(request, "until"),
        limit=query_limit(request))
    return web.json_response({"runs": [run_json(r) for r in runs]})


async def get_run(request: web.Request) -> web.Response:
    run_id = path_int(request, "run_id")
    store = request.app[STATE].store
    run = await store.get_run(run_id)
    if run is None or not can_see(account_of(request), run.account_id):
        raise not_found(f"no run {run_id}")
    legs = await store.call_history(run_id=run.id, limit=10000)
    legs.sort(key=lambda r: (r.joined_at, r.id))
    return web.json_response({**run_json(run), "legs": [call_json(c) for c in legs]})


async def list_rejections(request: web.Request) -> web.Response:
    mine = await _visible_room_ids(request)
    store = request.app[STATE].store
    limit = query_limit(request)
    rejections = await store.list_rejections(since=query_float(request, "since"),
                                             limit=limit if mine is None else 10 * limit)
    shown = [r for r in rejections if mine is None or r.room_id in mine][:limit]
    return web.json_response({"rejections": [rejection_json(r) for r in shown]})


async def me(request: web.Request) -> web.Response:
    account = account_of(request)
    return web.json_response({"id": account.id, "email": account.email, "name": account.name,
                              "is_admin": account.is_admin, "now": time.time()})


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{API}/me", me)
    app.router.add_get(f"{API}/rooms", list_rooms)
    app.router.add_post(f"{API}/rooms", create_room)
    app.router.add_get(f"{API}/rooms/{{room_id}}", get_room)
    app.router.add_patch(f"{API}/rooms/{{room_id}}", update_room)
    app.router.add_delete(f"{API}/rooms/{{room_id}}", delete_room)
    app.router.add_post(f"{API}/rooms/{{room_id}}/pins", new_pins)
    app.router.add_get(f"{API}/numbers", list_numbers)
    app.router.add_post(f"{API}/numbers", create_number)
    app.router.add_get(f"{API}/numbers/{{number}}", get_number)
    app.router.add_delete(f"{API}/numbers/{{number}}", delete_number)
    app.router.add_get(f"{API}/runs", list_runs)
    app.router.add_get(f"{API}/runs/{{run_id}}", get_run)
    app.router.add_get(f"{API}/rejections", list_rejections)
