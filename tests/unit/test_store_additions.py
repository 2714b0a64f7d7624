"""The Store additions of STORE_INTERFACE.md: admin accounts, conference runs, the richer call
record (run, direction, answer and conference times, who ended it), API tokens, heartbeats and
crash recovery dated by the last heartbeat."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from bridge.conference.model import Language, LeaveReason, Role
from bridge.store.base import (
    Direction,
    DuplicateError,
    NotFoundError,
    RejectionReason,
    RunEnd,
    Store,
)
from tests.storebackend import Backend

T0 = 1_700_000_000.0
NODE = "bridge-a"


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()


async def _room(store: Store, name: str = "weekly", pins: tuple[str, str] = ("482913", "730561"))\
        -> tuple[int, int]:
    account = await store.find_account_by_email("ops@example.org")
    if account is None:
        account = await store.create_account(name="Example", email="ops@example.org")
    room = await store.create_room(
        account_id=account.id, name=name, participant_pin=pins[0], moderator_pin=pins[1]
    )
    return account.id, room.id


async def _record(
    store: Store, room_id: int, leg: str, joined_at: float, node_id: str = NODE, **extra: object
) -> int:
    return await store.open_call_record(
        room_id=room_id,
        leg_id=leg,
        number_dialed="+4930123456",
        caller="sip:alice@example.org",
        source="192.0.2.10",
        role=Role.PARTICIPANT,
        language=Language.EN,
        joined_at=joined_at,
        node_id=node_id,
        **extra,  # type: ignore[arg-type]
    )


async def test_admin_flag(store: Store) -> None:
    plain = await store.create_account(name="A", email="a@example.org")
    admin = await store.create_account(name="B", email="b@example.org", is_admin=True)
    assert not plain.is_admin and admin.is_admin
    found = await store.get_account(admin.id)
    assert found is not None and found.is_admin


async def test_record_defaults_and_new_fields(store: Store) -> None:
    _, room_id = await _room(store)
    plain = await _record(store, room_id, "leg-1", T0)
    [rec] = await store.call_history()
    assert rec.id == plain
    assert (rec.run_id, rec.direction, rec.answered_at, rec.conference_at, rec.ended_by) == (
        None, Direction.DIAL_IN, None, None, None
    )
    run = await store.open_run(room_id=room_id, opened_at=T0, node_id=NODE)
    out = await _record(
        store, room_id, "leg-2", T0 + 5, run_id=run.id, direction=Direction.DIAL_OUT,
        answered_at=T0 + 1,
    )
    assert await store.mark_in_conference(out, T0 + 30)
    assert not await store.mark_in_conference(out, T0 + 40)  # the first start stays
    assert await store.close_call_record(
        out, left_at=T0 + 90, reason=LeaveReason.KICKED, ended_by="web"
    )
    assert not await store.mark_in_conference(out, T0 + 95)  # closed
    [got] = await store.call_history(run_id=run.id)
    assert (got.id, got.direction, got.answered_at, got.conference_at, got.ended_by) == (
        out, Direction.DIAL_OUT, T0 + 1, T0 + 30, "web"
    )
    assert got.left_at == T0 + 90 and got.leave_reason is LeaveReason.KICKED
    with pytest.raises(NotFoundError):
        await store.mark_in_conference(out + 100, T0)


async def test_runs(store: Store) -> None:
    account_id, room_id = await _room(store)
    _, other_room = await _room(store, "other", ("619274", "205837"))
    first = await store.open_run(room_id=room_id, opened_at=T0, node_id=NODE)
    assert (first.room_id, first.account_id, first.node_id, first.opened_at) == (
        room_id, account_id, NODE, T0
    )
    assert first.is_open and first.end_reason is None and first.peak_participants == 0
    await store.note_run_peak(first.id, 3)
    await store.note_run_peak(first.id, 2)  # a peak never goes down
    assert await store.end_run(first.id, ended_at=T0 + 600, reason=RunEnd.LAST_LEFT)
    assert not await store.end_run(first.id, ended_at=T0 + 700, reason=RunEnd.WEB)
    ended = await store.get_run(first.id)
    assert ended is not None
    assert (ended.peak_participants, ended.ended_at, ended.end_reason) == (
        3, T0 + 600, RunEnd.LAST_LEFT
    )
    second = await store.open_run(room_id=room_id, opened_at=T0 + 1000, node_id=NODE)
    third = await store.open_run(room_id=other_room, opened_at=T0 + 2000, node_id="bridge-b")
    assert [r.id for r in await store.list_runs()] == [third.id, second.id, first.id]
    assert [r.id for r in await store.list_runs(room_id=room_id)] == [second.id, first.id]
    assert [r.id for r in await store.list_runs(account_id=account_id, limit=1)] == [third.id]
    assert [r.id for r in await store.list_runs(since=T0 + 500, until=T0 + 1500)] == [second.id]
    assert await store.list_runs(account_id=account_id + 100) == []
    assert await store.get_run(third.id + 100) is None
    with pytest.raises(NotFoundError):
        await store.open_run(room_id=room_id + 100, opened_at=T0, node_id=NODE)
    with pytest.raises(NotFoundError):
        await store.end_run(third.id + 100, ended_at=T0, reason=RunEnd.WEB)
    await store.delete_room(room_id)
    kept = await store.get_run(first.id)
    assert kept is not None and kept.room_id is None and kept.account_id == account_id


async def test_api_tokens(store: Store) -> None:
    account = await store.create_account(name="A", email="a@example.org")
    digest = hashlib.sha256(b"secret-1").hexdigest()
    token = await store.create_api_token(
        account_id=account.id, name="ci", token_hash=digest, created_at=T0
    )
    assert (token.account_id, token.name, token.token_hash, token.created_at) == (
        account.id, "ci", digest, T0
    )
    assert token.revoked_at is None and token.last_used_at is None
    with pytest.raises(DuplicateError) as dup:
        await store.create_api_token(
            account_id=account.id, name="again", token_hash=digest, created_at=T0
        )
    assert dup.value.field == "token_hash"
    other = await store.create_api_token(
        account_id=account.id, name="panel", token_hash="ab" * 32, created_at=T0 + 1
    )
    assert [t.id for t in await store.list_api_tokens(account.id)] == [token.id, other.id]
    await store.touch_api_token(token.id, T0 + 50)
    assert await store.revoke_api_token(token.id, T0 + 60)
    assert not await store.revoke_api_token(token.id, T0 + 70)
    assert not await store.revoke_api_token(other.id + 100, T0)
    found = await store.find_api_token(digest)  # revoked ones are found too
    assert found is not None
    assert (found.last_used_at, found.revoked_at) == (T0 + 50, T0 + 60)
    assert await store.find_api_token("00" * 32) is None
    with pytest.raises(NotFoundError):
        await store.create_api_token(
            account_id=account.id + 100, name="x", token_hash="cd" * 32, created_at=T0
        )


async def test_heartbeats(store: Store) -> None:
    assert await store.last_heartbeat(NODE) is None
    await store.write_heartbeat(NODE, T0)
    await store.write_heartbeat(NODE, T0 + 5)
    await store.write_heartbeat(NODE, T0 + 2)  # a late write never moves it back
    assert await store.last_heartbeat(NODE) == T0 + 5
    await store.write_heartbeat("bridge-b", T0 + 100)
    _, room_id = await _room(store)
    await _record(store, room_id, "a", T0 + 1)
    await _record(store, room_id, "b", T0 + 1, node_id="bridge-b")
    await store.write_heartbeat("bridge-idle", T0)  # stale, but holds nothing
    assert await store.stale_nodes(T0 + 20) == [NODE]
    assert await store.stale_nodes(T0 + 200) == [NODE, "bridge-b"]
    await store.close_interrupted(NODE, T0 + 50)
    assert await store.stale_nodes(T0 + 200) == ["bridge-b"]


async def test_crash_is_dated_by_the_last_heartbeat(store: Store) -> None:
    _, room_id = await _room(store)
    run = await store.open_run(room_id=room_id, opened_at=T0, node_id=NODE)
    early = await _record(store, room_id, "early", T0 + 1, run_id=run.id)
    await store.write_heartbeat(NODE, T0 + 100)
    late = await _record(store, room_id, "late", T0 + 102, run_id=run.id)  # after the beat
    other = await store.open_run(room_id=room_id, opened_at=T0, node_id="bridge-b")
    # restarted three hours later: the records end at the last heartbeat, not now
    assert await store.close_interrupted(NODE, T0 + 3 * 3600) == 2
    by_id = {r.id: r for r in await store.call_history()}
    assert (by_id[early].left_at, by_id[early].leave_reason) == (
        T0 + 100, LeaveReason.INTERRUPTED
    )
    assert by_id[late].left_at == T0 + 102  # never before the join
    ended = await store.get_run(run.id)
    assert ended is not None and (ended.ended_at, ended.end_reason) == (
        T0 + 100, RunEnd.INTERRUPTED
    )
    still = await store.get_run(other.id)
    assert still is not None and still.is_open  # another node's run is not ours


async def test_crash_without_heartbeat_uses_now(store: Store) -> None:
    _, room_id = await _room(store)
    rec = await _record(store, room_id, "a", T0)
    assert await store.close_interrupted(NODE, T0 + 500) == 1
    [got] = await store.call_history()
    assert got.id == rec and got.left_at == T0 + 500


# -- the PIN budget and the IVR places of a source, shared by every node ----------------------


async def test_pin_budget_is_reserved_before_every_try(store: Store) -> None:
    src = "ip:203.0.113.9"
    since = T0 - 600
    held = [
        await store.reserve_pin_attempt(source=src, since=since, limit=10, now=T0, node_id=NODE)
        for _ in range(10)
    ]
    assert all(h is not None for h in held) and len(set(held)) == 10
    # ten tries in flight use the whole budget: the 11th is refused before any lookup
    assert await store.reserve_pin_attempt(
        source=src, since=since, limit=10, now=T0, node_id=NODE
    ) is None
    assert await store.count_recent_pin_failures(src, since) == 10
    # another source has its own budget
    assert await store.reserve_pin_attempt(
        source="ip:198.51.100.1", since=since, limit=10, now=T0, node_id=NODE
    ) is not None
    # a try that failed becomes a wrong_pin rejection, then its reservation goes: still used
    await store.record_rejection(
        at=T0, number_dialed="+4930123456", caller="", source=src,
        reason=RejectionReason.WRONG_PIN, node_id=NODE,
    )
    first = held[0]
    assert first is not None
    await store.release_pin_attempt(first)
    assert await store.count_recent_pin_failures(src, since) == 10
    # a try that succeeded is released without a rejection: the budget comes back
    for attempt in held[1:4]:
        assert attempt is not None
        await store.release_pin_attempt(attempt)
    assert await store.count_recent_pin_failures(src, since) == 7
    got = [
        await store.reserve_pin_attempt(source=src, since=since, limit=10, now=T0, node_id=NODE)
        for _ in range(4)
    ]
    assert [g is not None for g in got] == [True, True, True, False]
    # everything expires with the window
    assert await store.count_recent_pin_failures(src, T0 + 1) == 0


async def test_concurrent_reservations_on_two_connections_never_exceed_the_budget(
    backend: Backend,
) -> None:
    a = await backend.open()
    b = await backend.open()
    try:
        async def one(store: Store) -> int | None:
            return await store.reserve_pin_attempt(
                source="ip:203.0.113.9", since=T0 - 600, limit=10, now=T0, node_id=NODE
            )

        results = await asyncio.gather(*(one(a if i % 2 else b) for i in range(30)))
        assert sum(r is not None for r in results) == 10
        slots = await asyncio.gather(*(
            (a if i % 2 else b).enter_ivr(
                call_id=f"call-{i}", source="ip:203.0.113.9", limit=4, now=T0, node_id=NODE
            )
            for i in range(12)
        ))
        assert sum(slots) == 4
    finally:
        await a.close()
        await b.close()


async def test_ivr_places_of_a_source(store: Store) -> None:
    src = "ip:203.0.113.9"
    taken = [
        await store.enter_ivr(call_id=f"c{i}", source=src, limit=4, now=T0, node_id=NODE)
        for i in range(5)
    ]
    assert taken == [True, True, True, True, False]
    assert await store.enter_ivr(call_id="other", source="ip:192.0.2.1", limit=4, now=T0,
                                 node_id=NODE)
    await store.leave_ivr("c0")
    await store.leave_ivr("c4")  # never entered: nothing happens
    assert await store.enter_ivr(call_id="c5", source=src, limit=4, now=T0, node_id=NODE)
    assert not await store.enter_ivr(call_id="c6", source=src, limit=4, now=T0, node_id=NODE)


async def test_a_crashed_node_gives_back_its_reservations_and_places(store: Store) -> None:
    src = "ip:203.0.113.9"
    for _ in range(3):
        await store.reserve_pin_attempt(source=src, since=T0 - 600, limit=10, now=T0,
                                        node_id="bridge-b")
    await store.reserve_pin_attempt(source=src, since=T0 - 600, limit=10, now=T0, node_id=NODE)
    for i in range(4):
        await store.enter_ivr(call_id=f"b{i}", source=src, limit=4, now=T0, node_id="bridge-b")
    await store.close_interrupted("bridge-b", T0 + 10)
    assert await store.count_recent_pin_failures(src, T0 - 600) == 1
    assert await store.enter_ivr(call_id="a0", source=src, limit=4, now=T0, node_id=NODE)
