"""The event hub of the live conference service: numbering, fan-out, bounded queues."""

from __future__ import annotations

import asyncio

from bridge.conference import events as ev
from bridge.service.live import EventHub, RoomEvent


def _publish(hub: EventHub, leg: str) -> RoomEvent:
    return hub.publish(at=1.0, room_id=7, account_id=3, run_id=None,
                       event=ev.TalkingStarted(leg=leg))


async def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = EventHub()
    a, b = hub.subscribe(), hub.subscribe()
    sent = [_publish(hub, f"leg{i}") for i in range(5)]
    assert [e.seq for e in sent] == [1, 2, 3, 4, 5]
    for sub in (a, b):
        got = [await anext(sub) for _ in range(5)]
        assert got == sent


async def test_a_waiting_subscriber_wakes_up_and_close_ends_the_iteration() -> None:
    hub = EventHub()
    sub = hub.subscribe()

    async def read() -> list[RoomEvent]:
        return [e async for e in sub]

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    first = _publish(hub, "a")
    await asyncio.sleep(0)
    sub.close()
    assert await asyncio.wait_for(reader, 1) == [first]
    assert hub.subscribers == 0
    _publish(hub, "b")  # nobody listens: nothing breaks


async def test_a_slow_subscriber_is_dropped_not_the_others() -> None:
    hub = EventHub(queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    for i in range(3):
        _publish(hub, str(i))
        assert (await anext(fast)).seq == i + 1
    _publish(hub, "overflow")
    assert slow.dropped and slow.closed and not fast.dropped
    assert [e async for e in slow] == []  # a dropped subscription ends at once
    assert (await anext(fast)).seq == 4
    assert hub.subscribers == 1
