"""The node heartbeat: every ``interval`` seconds this node writes ``now`` to the store, and
closes the legs and runs of any node whose heartbeat is missing for more than ``stale_after``
intervals (it crashed; its records end at its last heartbeat, see
``Store.close_interrupted``). At start-up ``serve`` closes what this node's own previous run
left open, then beats once before taking calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bridge.store.base import Store

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        store: Store,
        node_id: str,
        interval: float = 5.0,
        *,
        stale_after: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError("the heartbeat interval must be positive")
        self.store = store
        self.node_id = node_id
        self.interval = interval
        self.stale_after = stale_after
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> dict[str, int]:
        """One heartbeat; returns the stale nodes cleaned up and how many records each."""
        now = self.clock()
        await self.store.write_heartbeat(self.node_id, now)
        closed: dict[str, int] = {}
        for node in await self.store.stale_nodes(now - self.stale_after * self.interval):
            if node == self.node_id:
                continue
            closed[node] = await self.store.close_interrupted(node, now)
            log.warning("node %s: no heartbeat for over %.0f s; closed %d of its call "
                        "record(s) at its last heartbeat", node,
                        self.stale_after * self.interval, closed[node])
        return closed

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is away: try again next interval
                log.warning("heartbeat of node %s failed: %s", self.node_id, exc)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
