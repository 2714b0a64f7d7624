"""The HTTP API over loopback: a real server on an ephemeral port, a real SQLite file,
accounts and tokens made by the real CLI. Errors are RFC 9457 problem details."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.web.problems import PROBLEM_JSON
from tests.conftest import require_binary
from tests.integration.webclient import Api, account_token, api_server, cli


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bridge.sqlite3"


@pytest.fixture
async def api(db: Path) -> AsyncIterator[Api]:
    token = account_token(db, "alice@example.org")
    async with api_server(db) as (running, _store), aiohttp.ClientSession() as session:
        yield Api(session, running.url, token)


def assert_problem(reply: object, status: int) -> dict[str, object]:
    from tests.integration.webclient import Reply

    assert isinstance(reply, Reply)
    assert reply.status == status, reply.body
    assert reply.content_type == PROBLEM_JSON
    body = reply.body
    assert isinstance(body, dict)
    assert body["status"] == status and body["title"] and body["detail"]
    return body


async def test_no_token_unknown_token_and_revoked_token_are_401(db: Path, api: Api) -> None:
    assert (await api.get("/api/v1/rooms")).status == 200
    problem = await api.as_token(None).get("/api/v1/rooms")
    assert_problem(problem, 401)
    assert problem.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(await api.as_token("brg_not-a-token").get("/api/v1/rooms"), 401)

    token = account_token(db, "bob@example.org")
    bob = api.as_token(token)
    assert (await bob.get("/api/v1/me")).body["email"] == "bob@example.org"
    code, out, _ = cli("tokens", "list", "bob@example.org", "--db", str(db))
    assert code == 0
    token_id = out.splitlines()[1].split()[0]
    assert cli("tokens", "revoke", token_id, "--db", str(db))[0] == 0
    assert_problem(await bob.get("/api/v1/me"), 401)
    assert cli("tokens", "revoke", token_id, "--db", str(db))[0] == 1  # already revoked


def test_only_the_sha256_of_a_token_is_stored(db: Path) -> None:
    token = account_token(db, "carol@example.org")
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump


def test_cli_usage_and_refusals(db: Path) -> None:
    assert cli("accounts", "create", "not-an-email", "--db", str(db))[0] == 2
    assert cli("tokens", "create", "nobody@example.org", "--db", str(db))[0] == 1
    assert cli("accounts", "create", "dave@example.org", "--db", str(db))[0] == 0
    code, _, err = cli("accounts", "create", "dave@example.org", "--db", str(db))
    assert code == 1 and err.count("\n") == 1
    code, _, err = cli("tokens", "revoke", "x", "--db", str(db))
    assert code == 2 and err.count("\n") == 1


async def test_rooms_crud_and_pin_rules(api: Api) -> None:
    made = await api.post("/api/v1/rooms", {"name": "board", "max_participants": 10,
                                            "language": "de"})
    assert made.status == 201, made.body
    room = made.body
    assert made.headers["Location"] == f"/api/v1/rooms/{room['id']}"
    assert room["participant_pin"] != room["moderator_pin"]
    assert (room["name"], room["max_participants"], room["language"]) == ("board", 10, "de")
    assert (await api.get(f"/api/v1/rooms/{room['id']}")).body == room

    listed = await api.get("/api/v1/rooms")
    assert [r["id"] for r in listed.body["rooms"]] == [room["id"]]

    changed = await api.call("PATCH", f"/api/v1/rooms/{room['id']}",
                             {"participant_pin": "40719362", "locked": True})
    assert changed.status == 200, changed.body
    assert changed.body["participant_pin"] == "40719362" and changed.body["locked"] is True

    fresh = await api.post(f"/api/v1/rooms/{room['id']}/pins")
    assert fresh.status == 200
    assert fresh.body["participant_pin"] not in ("40719362", room["participant_pin"])

    # 409: a PIN in use (by this room or any other)
    other = await api.post("/api/v1/rooms", {"name": "other",
                                             "participant_pin": fresh.body["moderator_pin"]})
    body = assert_problem(other, 409)
    assert body["field"] == "pin"
    assert_problem(await api.post("/api/v1/rooms", {"name": "board"}), 409)
    second = (await api.post("/api/v1/rooms", {"name": "second"})).body
    taken = await api.call("PATCH", f"/api/v1/rooms/{second['id']}",
                           {"moderator_pin": fresh.body["participant_pin"]})
    assert assert_problem(taken, 409)["field"] == "pin"
    renamed = await api.call("PATCH", f"/api/v1/rooms/{second['id']}", {"name": "board"})
    assert assert_problem(renamed, 409)["field"] == "name"
    assert (await api.call("DELETE", f"/api/v1/rooms/{second['id']}")).status == 204

    # 422: invalid values, every field listed
    bad = await api.post("/api/v1/rooms", {"name": "", "participant_pin": "123456",
                                           "max_participants": 0, "language": "xx",
                                           "colour": "red"})
    body = assert_problem(bad, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    fields = {e["field"] for e in errors}
    assert fields == {"name", "participant_pin", "max_participants", "language", "colour"}
    same = await api.post("/api/v1/rooms", {"name": "x", "participant_pin": "40719362",
                                            "moderator_pin": "40719362"})
    assert_problem(same, 422)

    # 400: malformed bodies
    assert_problem(await api.call("POST", "/api/v1/rooms", raw=b"{not json"), 400)
    assert_problem(await api.post("/api/v1/rooms", [1, 2]), 400)

    assert (await api.call("DELETE", f"/api/v1/rooms/{room['id']}")).status == 204
    assert_problem(await api.get(f"/api/v1/rooms/{room['id']}"), 404)
    assert_problem(await api.get("/api/v1/rooms/abc"), 404)
    assert_problem(await api.get("/api/v1/nothing-here"), 404)
    assert_problem(await api.call("PUT", "/api/v1/rooms"), 405)


async def test_another_accounts_room_is_404_and_an_admin_sees_all(db: Path, api: Api) -> None:
    mine = (await api.post("/api/v1/rooms", {"name": "mine"})).body
    eve = api.as_token(account_token(db, "eve@example.org"))
    theirs = (await eve.post("/api/v1/rooms", {"name": "theirs"})).body
    for method in ("GET", "PATCH", "DELETE"):
        reply = await eve.call(method, f"/api/v1/rooms/{mine['id']}",
                               {"locked": True} if method == "PATCH" else None)
        assert_problem(reply, 404)
    assert_problem(await eve.post(f"/api/v1/rooms/{mine['id']}/pins"), 404)
    assert [r["name"] for r in (await eve.get("/api/v1/rooms")).body["rooms"]] == ["theirs"]
    admin = api.as_token(account_token(db, "root@example.org", admin=True))
    names = {r["name"] for r in (await admin.get("/api/v1/rooms")).body["rooms"]}
    assert names == {"mine", "theirs"}
    assert (await admin.get(f"/api/v1/rooms/{theirs['id']}")).status == 200


async def test_access_numbers(db: Path, api: Api) -> None:
    room = (await api.post("/api/v1/rooms", {"name": "sales"})).body
    made = await api.post("/api/v1/numbers", {"number": "030 1234567", "country": "DE",
                                              "language": "de", "room_id": room["id"]})
    assert made.status == 201, made.body
    assert made.body == {"number": "+49301234567", "country": "DE", "language": "de",
                         "room_id": room["id"]}
    assert_problem(await api.post("/api/v1/numbers", {"number": "030 1234567",
                                                      "country": "DE",
                                                      "room_id": room["id"]}), 409)
    bad = await api.post("/api/v1/numbers", {"number": "12", "country": "DE",
                                             "room_id": room["id"]})
    assert_problem(bad, 422)
    assert_problem(await api.post("/api/v1/numbers", {"number": "+4930999", "country": "DE"}),
                   422)  # a number without a room: admins only
    listed = (await api.get("/api/v1/numbers")).body["numbers"]
    assert [n["number"] for n in listed] == ["+49301234567"]
    eve = api.as_token(account_token(db, "eve@example.org"))
    assert (await eve.get("/api/v1/numbers")).body["numbers"] == []
    assert_problem(await eve.call("DELETE", "/api/v1/numbers/+49301234567"), 404)
    assert_problem(await eve.post("/api/v1/numbers", {"number": "+4930999", "country": "DE",
                                                      "room_id": room["id"]}), 422)
    assert (await api.call("DELETE", "/api/v1/numbers/+49301234567")).status == 204
    assert_problem(await api.get("/api/v1/numbers/+49301234567"), 404)


async def test_runs_and_rejections_are_scoped(db: Path, api: Api) -> None:
    from bridge.conference.model import Language, Role
    from bridge.store.base import RejectionReason
    from bridge.store.sqlite import SqliteStore

    room = (await api.post("/api/v1/rooms", {"name": "weekly"})).body
    async with await SqliteStore.open(db) as store:
        run = await store.open_run(room_id=room["id"], opened_at=1000.0, node_id="n1")
        await store.open_call_record(room_id=room["id"], leg_id="leg-1", number_dialed="+49301",
                                     caller="+4915", source="127.0.0.1", role=Role.MODERATOR,
                                     language=Language.EN, joined_at=1001.0, node_id="n1",
                                     run_id=run.id)
        await store.record_rejection(at=1002.0, number_dialed="+49301", caller="+4916",
                                     source="127.0.0.2", reason=RejectionReason.LOCKED,
                                     node_id="n1", room_id=room["id"])
    runs = (await api.get("/api/v1/runs")).body["runs"]
    assert [r["id"] for r in runs] == [run.id]
    one = await api.get(f"/api/v1/runs/{run.id}")
    assert [leg["leg_id"] for leg in one.body["legs"]] == ["leg-1"]
    assert one.body["legs"][0]["role"] == "moderator"
    rejected = (await api.get("/api/v1/rejections")).body["rejections"]
    assert [r["reason"] for r in rejected] == ["locked"]
    eve = api.as_token(account_token(db, "eve@example.org"))
    assert_problem(await eve.get(f"/api/v1/runs/{run.id}"), 404)
    assert (await eve.get("/api/v1/runs")).body["runs"] == []
    assert (await eve.get("/api/v1/rejections")).body["rejections"] == []
    assert_problem(await api.get("/api/v1/runs?limit=0"), 422)


async def test_healthz_and_metrics_without_a_bridge(api: Api) -> None:
    health = await api.as_token(None).get("/healthz")
    assert health.status == 200, health.body
    assert health.body["checks"]["database"]["ok"] is True
    metrics = await api.as_token(None).get("/metrics")
    assert metrics.status == 200
    names = {f.name for f in text_string_to_metric_families(metrics.body)}
    assert {"bridge_calls_answered", "bridge_tick_lateness_seconds",
            "bridge_rtp_packets_lost"} <= names


async def test_healthz_is_503_when_the_loop_stalls(api: Api) -> None:
    import time

    await asyncio.sleep(0.25)  # the lag monitor is running
    time.sleep(0.7)  # block the loop on purpose
    await asyncio.sleep(0.15)
    health = await api.as_token(None).get("/healthz")
    assert health.status == 503, health.body
    assert health.body["checks"]["event_loop"]["ok"] is False


async def test_tls_from_the_configured_certificate(tmp_path: Path) -> None:
    import ssl
    import subprocess

    from bridge.config import Config, WebConfig

    openssl = require_binary("openssl")  # it makes the test certificate; CI fails without it
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    db = tmp_path / "bridge.sqlite3"
    token = account_token(db, "alice@example.org")
    config = Config(web=WebConfig(listen="127.0.0.1:0", tls_cert=str(cert), tls_key=str(key)),
                    db_path=db).validate()
    context = ssl.create_default_context(cafile=str(cert))
    async with api_server(db, config=config) as (running, _), aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context)) as session:
        assert running.url.startswith("https://127.0.0.1:")
        reply = await Api(session, running.url, token).get("/api/v1/me")
        assert reply.status == 200 and reply.body["email"] == "alice@example.org"
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served
            async with session.get(running.url.replace("https://", "http://") + "/healthz"):
                pass


async def test_hostile_input_is_a_400_422_or_404_problem_never_a_500(api: Api) -> None:
    rooms = "/api/v1/rooms"
    for raw in (b"[" * 100_000 + b"]" * 100_000,  # deeper than the JSON parser goes
                b'{"max_participants": ' + b"9" * 5000 + b"}",  # beyond int("...") digits
                b'{"starts_at": NaN}', b'{"ends_at": Infinity}'):
        assert_problem(await api.call("POST", rooms, raw=raw), 400)
    for body in ({"name": "big", "max_participants": 10**30},
                 {"name": "far", "starts_at": 10**400}):
        problem = assert_problem(await api.post(rooms, body), 422)
        assert problem["errors"], problem
    assert_problem(await api.post("/api/v1/numbers", {"number": "+4930123450", "country": "DE",
                                                      "room_id": 10**30}), 422)
    for path in ("/api/v1/rooms/\u00b2", "/api/v1/rooms/99999999999999999999"):
        assert_problem(await api.get(path), 404)
    for query in ("limit=\u00b2", "room_id=\u00b2", "room_id=99999999999999999999",
                  "since=nan", "until=inf"):
        assert_problem(await api.get(f"/api/v1/runs?{query}"), 422)
