"""``/api/v1/conferences`` and ``/api/v1/events``: live conferences, commands, the event stream.

Everything goes through the live conference service (``bridge.service.live``): the views are
its snapshots, every command is ``ConferenceService.execute(room, command)`` with
``by="web"``, the same entry point the keypad uses, so the refusals are the keypad's
(a ``CommandRefused`` answers 409). The WebSocket streams the service's ``RoomEvent``s of the
token's account (all rooms for an admin) as JSON objects, in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
from enum import Enum
from typing import Any

from aiohttp import WSMsgType, web

from bridge.conference import commands as cmd
from bridge.conference.events import CommandRefused, Event
from bridge.service.live import (
    ConferenceService,
    ConferenceView,
    NoLiveConference,
    ParticipantView,
    RoomEvent,
)
from bridge.web.api import can_see, path_int, read_json
from bridge.web.problems import ProblemError, bad_request, conflict, invalid, not_found
from bridge.web.state import STATE, account_of

__all__ = ["add_routes", "conference_json", "event_json", "participant_json"]

log = logging.getLogger(__name__)

API = "/api/v1"
ACTOR = "web"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, cmd.Command):
        return {"type": _snake(type(value).__name__), **_fields(value)}
    return value


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def participant_json(p: ParticipantView) -> dict[str, Any]:
    return {
        "id": p.id,
        "caller": p.caller,
        "number_dialed": p.number_dialed,
        "role": p.role.value,
        "language": p.language.value,
        "direction": p.direction.value,
        "joined_at": p.joined_at,
        "muted": p.muted,
        "deaf": p.deaf,
        "talking": p.talking,
        "state": p.state.value,
    }


def conference_json(c: ConferenceView) -> dict[str, Any]:
    return {
        "room_id": c.room_id,
        "account_id": c.account_id,
        "room_name": c.room_name,
        "run_id": c.run_id,
        "opened_at": c.opened_at,
        "locked": c.locked,
        "participants": [participant_json(p) for p in c.participants],
    }


def event_json(item: RoomEvent) -> dict[str, Any]:
    event: Event = item.event
    body = _fields(event)
    return {
        "seq": item.seq,
        "at": item.at,
        "room_id": item.room_id,
        "account_id": item.account_id,
        "run_id": item.run_id,
        "type": _snake(type(event).__name__),
        **{k: v for k, v in body.items() if k not in ("seq", "room_id", "account_id", "type")},
    }


def _service(request: web.Request) -> ConferenceService:
    service: ConferenceService | None = request.app[STATE].service
    if service is None:
        raise ProblemError(503, "the live conference service is not running in this process")
    return service


def _conference(request: web.Request) -> ConferenceView:
    room_id = path_int(request, "room_id")
    view = _service(request).conference(room_id)
    if view is None or not can_see(account_of(request), view.account_id):
        raise not_found(f"no live conference in room {room_id}")
    return view


async def list_conferences(request: web.Request) -> web.Response:
    account = account_of(request)
    views = _service(request).live(None if account.is_admin else account.id)
    return web.json_response({"conferences": [conference_json(v) for v in views]})


async def get_conference(request: web.Request) -> web.Response:
    return web.json_response(conference_json(_conference(request)))


async def list_participants(request: web.Request) -> web.Response:
    view = _conference(request)
    return web.json_response({"participants": [participant_json(p) for p in view.participants]})


def _execute(request: web.Request, view: ConferenceView, command: cmd.Command) -> web.Response:
    try:
        events = _service(request).execute(view.room_id, command)
    except NoLiveConference:
        raise not_found(f"no live conference in room {view.room_id}") from None
    for event in events:
        if isinstance(event, CommandRefused):
            raise conflict(f"refused: {event.reason.value.replace('_', ' ')}",
                           reason=event.reason.value)
    return web.json_response({"events": [{"type": _snake(type(e).__name__), **_fields(e)}
                                         for e in events]})


def _participant(request: web.Request, view: ConferenceView) -> str:
    leg = request.match_info["participant_id"]
    if not any(p.id == leg for p in view.participants):
        raise not_found(f"no participant {leg!r} in room {view.room_id}")
    return leg


def _participant_command(action: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        view = _conference(request)
        leg = _participant(request, view)
        command: cmd.Command
        if action == "kick":
            body = await read_json(request)
            announce = body.get("announce", True)
            unknown = set(body) - {"announce"}
            if unknown or not isinstance(announce, bool):
                raise invalid([{"field": "announce", "message": "expected true or false"}]
                              if not isinstance(announce, bool) else
                              [{"field": k, "message": "unknown field"} for k in sorted(unknown)])
            command = cmd.KickParticipant(by=ACTOR, leg=leg, announce=announce)
        elif action in ("mute", "unmute"):
            command = cmd.MuteParticipant(by=ACTOR, leg=leg, muted=action == "mute")
        else:
            command = cmd.SetDeaf(by=ACTOR, leg=leg, deaf=action == "deafen")
        return _execute(request, view, command)

    handler.__name__ = f"participant_{action}"
    return handler


def _conference_command(action: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        view = _conference(request)
        command: cmd.Command
        if action == "mute-all":
            command = cmd.MuteAllOthers(by=ACTOR, muted=True)
        elif action == "unmute-all":
            command = cmd.MuteAllOthers(by=ACTOR, muted=False)
        elif action == "lock":
            command = cmd.LockConference(by=ACTOR)
        elif action == "unlock":
            command = cmd.UnlockConference(by=ACTOR)
        elif action == "end":
            command = cmd.EndConference(by=ACTOR)
        else:  # pragma: no cover
            raise bad_request(action)
        return _execute(request, view, command)

    handler.__name__ = f"conference_{action.replace('-', '_')}"
    return handler


async def events_socket(request: web.Request) -> web.WebSocketResponse:
    account = account_of(request)
    service = _service(request)
    subscription = service.subscribe()  # before the handshake: nothing after it is missed
    ws = web.WebSocketResponse(heartbeat=30.0)

    async def pump() -> None:
        async for item in subscription:
            if account.is_admin or item.account_id == account.id:
                await ws.send_str(json.dumps(event_json(item)))

    try:
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "subscribed", "account_id": account.id}))
        pumping = asyncio.get_running_loop().create_task(pump())
        reading = asyncio.get_running_loop().create_task(_until_closed(ws))
        try:
            await asyncio.wait({pumping, reading}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, reading):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
        if pumping.done() and not pumping.cancelled() and not ws.closed:
            # the service dropped this subscriber: it could not keep up
            await ws.close(code=1011, message=b"event stream dropped: the client was too slow")
    finally:
        subscription.close()
    return ws


async def _until_closed(ws: web.WebSocketResponse) -> None:
    async for message in ws:  # the client talks only to close
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            return


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{API}/conferences", list_conferences)
    app.router.add_get(f"{API}/conferences/{{room_id}}", get_conference)
    app.router.add_get(f"{API}/conferences/{{room_id}}/participants", list_participants)
    for action in ("mute", "unmute", "deafen", "undeafen", "kick"):
        app.router.add_post(
            f"{API}/conferences/{{room_id}}/participants/{{participant_id}}/{action}",
            _participant_command(action))
    for action in ("mute-all", "unmute-all", "lock", "unlock", "end"):
        app.router.add_post(f"{API}/conferences/{{room_id}}/{action}",
                            _conference_command(action))
    app.router.add_get(f"{API}/events", events_socket)
