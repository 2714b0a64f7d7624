"""The OpenAPI 3.1 document of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Written by hand next to the handlers; ``tests/integration/test_web_openapi.py`` holds it
against the router (every route documented, every documented path routed) and validates
real responses against these schemas.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge import __version__

__all__ = ["DOCUMENT", "add_routes", "document"]

API = "/api/v1"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_LANG = {"type": "string", "enum": ["de", "en", "fr"]}
_ROLE = {"type": "string", "enum": ["participant", "moderator"]}


def _obj(props: dict[str, Any], required: list[str] | None = None,
         extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required,
            "additionalProperties": extra}


SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "properties": {
            "type": _STR, "title": _STR, "status": _INT, "detail": _STR, "instance": _STR,
            "errors": {"type": "array", "items": _obj({"field": _STR, "message": _STR})},
        },
        "required": ["type", "title", "status", "detail"],
    },
    "Account": _obj({"id": _INT, "email": _STR, "name": _STR, "is_admin": _BOOL,
                     "now": _NUM}),
    "Room": _obj({
        "id": _INT, "account_id": _INT, "name": _STR, "participant_pin": _STR,
        "moderator_pin": _STR, "max_participants": _nullable("integer"), "language": _LANG,
        "wait_for_moderator": _BOOL, "locked": _BOOL, "starts_at": _nullable("number"),
        "ends_at": _nullable("number"), "created_at": _NUM, "has_intro": _BOOL,
    }),
    "RoomInput": {
        "type": "object",
        "properties": {
            "name": _STR, "participant_pin": _STR, "moderator_pin": _STR,
            "max_participants": _nullable("integer"), "language": _LANG,
            "wait_for_moderator": _BOOL, "locked": _BOOL, "starts_at": _nullable("number"),
            "ends_at": _nullable("number"),
        },
        "additionalProperties": False,
    },
    "RoomList": _obj({"rooms": {"type": "array", "items": _ref("Room")}}),
    "AccessNumber": _obj({"number": _STR, "country": _STR, "language": _LANG,
                          "room_id": _nullable("integer")}),
    "AccessNumberInput": _obj({"number": _STR, "country": _STR, "language": _LANG,
                               "room_id": _nullable("integer")}, required=["number", "country"]),
    "AccessNumberList": _obj({"numbers": {"type": "array", "items": _ref("AccessNumber")}}),
    "Participant": _obj({
        "id": _STR, "caller": _STR, "number_dialed": _STR, "role": _ROLE, "language": _LANG,
        "direction": {"type": "string", "enum": ["dial_in", "dial_out", "voip_link"]},
        "joined_at": _NUM, "muted": _BOOL, "deaf": _BOOL, "talking": _BOOL,
        "state": {"type": "string", "enum": ["ivr", "waiting", "in_conference"]},
    }),
    "ParticipantList": _obj({"participants": {"type": "array",
                                              "items": _ref("Participant")}}),
    "Conference": _obj({
        "room_id": _INT, "account_id": _INT, "room_name": _STR,
        "run_id": _nullable("integer"), "opened_at": _NUM, "locked": _BOOL,
        "participants": {"type": "array", "items": _ref("Participant")},
    }),
    "ConferenceList": _obj({"conferences": {"type": "array", "items": _ref("Conference")}}),
    "CommandResult": _obj({"events": {"type": "array", "items": {
        "type": "object", "properties": {"type": _STR}, "required": ["type"]}}}),
    "KickInput": {"type": "object", "properties": {"announce": _BOOL},
                  "additionalProperties": False},
    "CallRecord": _obj({
        "id": _INT, "room_id": _nullable("integer"), "run_id": _nullable("integer"),
        "leg_id": _STR,
        "direction": {"type": "string", "enum": ["dial_in", "dial_out", "voip_link"]},
        "caller": _STR, "number_dialed": _STR, "role": _ROLE, "language": _LANG,
        "joined_at": _NUM, "answered_at": _nullable("number"),
        "conference_at": _nullable("number"), "left_at": _nullable("number"),
        "leave_reason": _nullable("string"), "ended_by": _nullable("string"),
        "node_id": _STR,
    }),
    "Run": _obj({
        "id": _INT, "room_id": _nullable("integer"), "account_id": _INT, "node_id": _STR,
        "opened_at": _NUM, "ended_at": _nullable("number"), "end_reason": _nullable("string"),
        "peak_participants": _INT,
    }),
    "RunList": _obj({"runs": {"type": "array", "items": _ref("Run")}}),
    "RunWithLegs": {"allOf": [_ref("Run")], "type": "object",
                    "properties": {"legs": {"type": "array", "items": _ref("CallRecord")}},
                    "required": ["legs"]},
    "Rejection": _obj({
        "id": _INT, "at": _NUM, "number_dialed": _STR, "caller": _STR, "source": _STR,
        "reason": _STR, "room_id": _nullable("integer"), "node_id": _STR,
    }),
    "RejectionList": _obj({"rejections": {"type": "array", "items": _ref("Rejection")}}),
}


def _json(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema)}}}


_PROBLEM = {"description": "Problem details (RFC 9457)",
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _PROBLEM for code in (401, *codes)}


def _op(summary: str, responses: dict[str, Any], *, body: str | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, kind: str = "integer") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _query(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}}


_ROOM = [_path_param("room_id")]
_LEG = [_path_param("room_id"), _path_param("participant_id", "string")]
_NO_CONTENT = {"204": {"description": "Deleted"}}


def _participant_ops() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for action, what in (("mute", "Mute"), ("unmute", "Unmute"), ("deafen", "Deafen"),
                         ("undeafen", "Undeafen"), ("kick", "Remove")):
        paths[f"{API}/conferences/{{room_id}}/participants/{{participant_id}}/{action}"] = {
            "post": _op(f"{what} a participant", {"200": _json("CommandResult"),
                                                  **_errors(404, 409, 422)},
                        body="KickInput" if action == "kick" else None, params=_LEG)}
    for action, what in (("mute-all", "Mute every participant but the moderators"),
                         ("unmute-all", "Unmute every participant"),
                         ("lock", "Lock the conference"), ("unlock", "Unlock the conference"),
                         ("end", "End the conference for everyone")):
        paths[f"{API}/conferences/{{room_id}}/{action}"] = {
            "post": _op(what, {"200": _json("CommandResult"), **_errors(404, 409)},
                        params=_ROOM)}
    return paths


PATHS: dict[str, Any] = {
    f"{API}/me": {"get": _op("The token's account", {"200": _json("Account"), **_errors()})},
    f"{API}/rooms": {
        "get": _op("List the rooms", {"200": _json("RoomList"), **_errors()}),
        "post": _op("Create a room (PINs not given are generated)",
                    {"201": _json("Room", "Created"), **_errors(400, 409, 422)},
                    body="RoomInput"),
    },
    f"{API}/rooms/{{room_id}}": {
        "get": _op("One room", {"200": _json("Room"), **_errors(404)}, params=_ROOM),
        "patch": _op("Change a room", {"200": _json("Room"), **_errors(400, 404, 409, 422)},
                     body="RoomInput", params=_ROOM),
        "delete": _op("Delete a room", {**_NO_CONTENT, **_errors(404)}, params=_ROOM),
    },
    f"{API}/rooms/{{room_id}}/pins": {
        "post": _op("Generate new PINs", {"200": _json("Room"), **_errors(404)}, params=_ROOM),
    },
    f"{API}/numbers": {
        "get": _op("List the access numbers", {"200": _json("AccessNumberList"), **_errors()}),
        "post": _op("Add an access number", {"201": _json("AccessNumber", "Created"),
                                             **_errors(400, 409, 422)},
                    body="AccessNumberInput"),
    },
    f"{API}/numbers/{{number}}": {
        "get": _op("One access number", {"200": _json("AccessNumber"), **_errors(404)},
                   params=[_path_param("number", "string")]),
        "delete": _op("Delete an access number", {**_NO_CONTENT, **_errors(404)},
                      params=[_path_param("number", "string")]),
    },
    f"{API}/conferences": {
        "get": _op("The live conferences", {"200": _json("ConferenceList"), **_errors(503)}),
    },
    f"{API}/conferences/{{room_id}}": {
        "get": _op("One live conference", {"200": _json("Conference"), **_errors(404)},
                   params=_ROOM),
    },
    f"{API}/conferences/{{room_id}}/participants": {
        "get": _op("The participants of a live conference",
                   {"200": _json("ParticipantList"), **_errors(404)}, params=_ROOM),
    },
    **_participant_ops(),
    f"{API}/runs": {
        "get": _op("Conference runs, newest first", {"200": _json("RunList"),
                                                     **_errors(404, 422)},
                   params=[_query("room_id", "integer"), _query("since", "number"),
                           _query("until", "number"), _query("limit", "integer")]),
    },
    f"{API}/runs/{{run_id}}": {
        "get": _op("One run with its legs", {"200": _json("RunWithLegs"), **_errors(404)},
                   params=[_path_param("run_id")]),
    },
    f"{API}/rejections": {
        "get": _op("Calls turned away, newest first", {"200": _json("RejectionList"),
                                                       **_errors(422)},
                   params=[_query("since", "number"), _query("limit", "integer")]),
    },
    f"{API}/events": {
        "get": _op("WebSocket: the domain events of the account's rooms as JSON objects, "
                   "in order (`seq`); the token may be given as `?access_token=`",
                   {"101": {"description": "Switching to the WebSocket protocol"},
                    **_errors(503)},
                   params=[_query("access_token", "string")]),
    },
    f"{API}/openapi.json": {
        "get": {"summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {}}}}},
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "bridge API", "version": __version__,
             "description": "The live conference bridge: rooms, access numbers, live "
                            "conferences and their commands, runs and rejections."},
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}


LIVE_PREFIXES = (f"{API}/conferences", f"{API}/events")


def document(*, live: bool = True) -> dict[str, Any]:
    """The document; without ``live`` (a build without the live conference service) the
    conference and event paths are left out, as they are not routed."""
    if live:
        return DOCUMENT
    paths = {p: v for p, v in PATHS.items() if not p.startswith(LIVE_PREFIXES)}
    return {**DOCUMENT, "paths": paths}


def add_routes(app: web.Application) -> None:
    live = any(getattr(r, "canonical", "").startswith(LIVE_PREFIXES)
               for r in app.router.resources())
    served = document(live=live)

    async def openapi_json(_request: web.Request) -> web.Response:
        return web.json_response(served)

    app.router.add_get(f"{API}/openapi.json", openapi_json)
