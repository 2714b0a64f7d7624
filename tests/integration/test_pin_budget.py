"""Issue 14 item 2 end to end: twelve calls placed at once from one source, each typing wrong
PINs, against a real BridgeApp and store on 127.0.0.1. The budget (10 wrong PINs per source in
10 minutes) is reserved before every try and a source holds at most 4 calls in the IVR, so at
most 10 PINs are looked up in total and every other call is refused as too many failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.conference.model import Role, Room
from bridge.store.base import RejectionReason
from tests.integration.test_conference_dialin import NUMBER, Rig, rig, short_prompts

__all__ = ["rig", "short_prompts"]  # the fixtures, shared with the dial-in tests


async def test_twelve_parallel_calls_with_wrong_pins_get_at_most_ten_lookups(rig: Rig) -> None:
    lookups: list[str] = []
    real: Callable[[str], Awaitable[tuple[Room, Role] | None]] = rig.store.find_room_by_pin

    async def counted(pin: str) -> Any:
        lookups.append(pin)
        return await real(pin)

    rig.store.find_room_by_pin = counted  # type: ignore[method-assign]
    callers = [f"+49151000007{i:02d}" for i in range(12)]
    calls = await asyncio.gather(*(rig.phone.dial(NUMBER, c) for c in callers))
    await asyncio.gather(*(c.wait_answered() for c in calls))
    await asyncio.gather(*(
        c.send_digits("2" + f"1122{i:02d}44#" + f"5566{i:02d}88#" + f"9900{i:02d}22#")
        for i, c in enumerate(calls)
    ))
    ended = await asyncio.gather(*(c.wait_ended(timeout=60.0) for c in calls))
    assert {e.reason for e in ended} == {"remote_bye"}  # the bridge hung up on every one

    assert 0 < len(lookups) <= 10
    rejections = await rig.store.list_rejections()
    by_caller: dict[str, list[RejectionReason]] = {c: [] for c in callers}
    for r in sorted(rejections, key=lambda r: r.id):
        [caller] = [c for c in callers if c in r.caller]
        by_caller[caller].append(r.reason)
    wrong = [r for r in rejections if r.reason is RejectionReason.WRONG_PIN]
    assert len(wrong) == len(lookups)
    for caller, reasons in by_caller.items():
        # three wrong PINs, or refused (before or between tries) as too many failures
        assert reasons == [RejectionReason.WRONG_PIN] * 3 or (
            reasons[-1] is RejectionReason.TOO_MANY_FAILURES
            and set(reasons[:-1]) <= {RejectionReason.WRONG_PIN}
        ), (caller, reasons)
    refused = [c for c, reasons in by_caller.items()
               if RejectionReason.TOO_MANY_FAILURES in reasons]
    assert len(refused) >= 12 - 4  # at most 4 calls of the source were in the IVR at once
    # everything reserved was given back: no try in flight, no IVR place held
    assert await rig.store.count_recent_pin_failures("ip:127.0.0.1", 0.0) == len(wrong)
    assert await rig.store.enter_ivr(call_id="probe", source="ip:127.0.0.1", limit=1,
                                     now=0.0, node_id="test-node")
    assert await rig.store.call_history() == []
