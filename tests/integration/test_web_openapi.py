"""The OpenAPI document against the router and against real responses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import aiohttp
import jsonschema
import pytest

from bridge.config import Config
from bridge.store.sqlite import SqliteStore
from bridge.web.app import create_app
from bridge.web.openapi import DOCUMENT, document
from tests.integration.webclient import Api, account_token, api_server, check_schema

METHODS = {"get", "post", "patch", "put", "delete"}


def live_service_built() -> bool:
    try:
        return importlib.util.find_spec("bridge.service.live") is not None
    except ModuleNotFoundError:  # no bridge.service package yet
        return False


async def routed(tmp_path: Path) -> set[tuple[str, str]]:
    async with await SqliteStore.open(tmp_path / "routes.sqlite3") as store:
        app = create_app(store, Config(), service=object())
        found: set[tuple[str, str]] = set()
        for route in app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("path") or info.get("formatter")
            if route.method.lower() in METHODS and path and path.startswith("/api/v1/"):
                found.add((path, route.method.lower()))
        return found


def documented() -> set[tuple[str, str]]:
    served = document(live=live_service_built())
    return {(path, method) for path, item in served["paths"].items()
            for method in item if method in METHODS}


async def test_every_route_is_documented_and_every_documented_path_is_routed(
        tmp_path: Path) -> None:
    routes = await routed(tmp_path)
    assert routes - documented() == set(), "routes missing from the OpenAPI document"
    assert documented() - routes == set(), "documented paths that no route serves"
    kick = ("/api/v1/conferences/{room_id}/participants/{participant_id}/kick", "post")
    assert (kick in routes) == live_service_built()
    assert len(routes) >= 14


def test_the_document_is_openapi_31_with_valid_schemas() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    for name, schema in DOCUMENT["components"]["schemas"].items():
        assert name and jsonschema.Draft202012Validator.check_schema(schema) is None
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)


@pytest.mark.parametrize("with_token", [True, False])
async def test_responses_validate_against_the_document(tmp_path: Path, with_token: bool) -> None:
    db = tmp_path / "bridge.sqlite3"
    token = account_token(db, "alice@example.org")
    async with api_server(db) as (running, _), aiohttp.ClientSession() as session:
        api = Api(session, running.url, token if with_token else None)
        served = await api.get("/api/v1/openapi.json")
        assert served.status == 200
        assert served.body == document(live=live_service_built())
        made = await api.post("/api/v1/rooms", {"name": "r1"})
        check_schema(made, "/api/v1/rooms", "post")
        check_schema(await api.get("/api/v1/rooms"), "/api/v1/rooms", "get")
        check_schema(await api.get("/api/v1/me"), "/api/v1/me", "get")
        if not with_token:
            assert made.status == 401
            return
        rid = made.body["id"]
        check_schema(await api.get(f"/api/v1/rooms/{rid}"), "/api/v1/rooms/{room_id}", "get")
        check_schema(await api.call("PATCH", f"/api/v1/rooms/{rid}", {"language": "nope"}),
                     "/api/v1/rooms/{room_id}", "patch")
        check_schema(await api.call("PATCH", f"/api/v1/rooms/{rid}", {"locked": True}),
                     "/api/v1/rooms/{room_id}", "patch")
        check_schema(await api.post(f"/api/v1/rooms/{rid}/pins"),
                     "/api/v1/rooms/{room_id}/pins", "post")
        check_schema(await api.post("/api/v1/rooms", {"name": "r1"}), "/api/v1/rooms", "post")
        number = await api.post("/api/v1/numbers", {"number": "+49301234567", "country": "DE",
                                                    "room_id": rid})
        check_schema(number, "/api/v1/numbers", "post")
        check_schema(await api.get("/api/v1/numbers"), "/api/v1/numbers", "get")
        check_schema(await api.get("/api/v1/numbers/+49301234567"),
                     "/api/v1/numbers/{number}", "get")
        check_schema(await api.get("/api/v1/runs"), "/api/v1/runs", "get")
        check_schema(await api.get("/api/v1/runs/99"), "/api/v1/runs/{run_id}", "get")
        check_schema(await api.get("/api/v1/rejections"), "/api/v1/rejections", "get")
        check_schema(await api.call("DELETE", "/api/v1/numbers/+49301234567"),
                     "/api/v1/numbers/{number}", "delete")
        check_schema(await api.call("DELETE", f"/api/v1/rooms/{rid}"),
                     "/api/v1/rooms/{room_id}", "delete")
