"""WorkerPool with real media worker processes and real UDP sockets on 127.0.0.1, without SIP:
the moves, prompt tickets and worker deaths of :mod:`bridge.runtime.workers` driven directly
(the end-to-end tests with phones are in ``test_media_workers.py``). Every wait is for an
observable state with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from bridge.codecs.g711 import Codec
from bridge.media.engine import LegMedia, MediaEvent, PromptFinished
from bridge.rtp.packet import is_rtcp, parse_rtp
from bridge.runtime import workers
from bridge.runtime.media import MediaRuntime
from bridge.runtime.workers import WorkerPool
from tests.conftest import LOOPBACK, rtp_port_block
from tests.integration.confclient import until

LONG_CLIP = np.zeros(8000 * 30, dtype=np.int16)  # 30 s: never finishes during a test


@dataclass(eq=False)
class PoolRig:
    runtime: MediaRuntime
    pool: WorkerPool
    peer: socket.socket  # the far end of every leg: where the bridge sends RTP
    events: list[MediaEvent] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    async def open(self, leg: str) -> int:
        """A leg as an answered call starts: its sockets and media in the main process, in a
        room of its own. Returns its RTP port."""
        port = await self.runtime.open_leg(leg)
        media = LegMedia(codec=Codec.PCMU, payload_type=0, telephone_event_pt=101,
                         remote=self.peer.getsockname())
        self.runtime.attach_leg(leg, f"leg:{leg}", media)
        return port

    def finished(self, target: str) -> list[int]:
        """The counts of the PromptFinished events the controller was given for ``target``."""
        return [e.count for e in self.events
                if isinstance(e, PromptFinished) and e.target == target]

    async def worker_legs(self) -> int:
        return sum(s.legs for s in await self.pool.stats())

    def heard_from(self, port: int) -> int:
        """Read what the peer got; how many RTP packets came from the bridge's ``port``."""
        count = 0
        while True:
            try:
                data, addr = self.peer.recvfrom(2048)
            except BlockingIOError:
                return count
            if not is_rtcp(data) and addr[1] == port:
                parse_rtp(data)
                count += 1


@contextlib.asynccontextmanager
async def pool_rig(count: int = 2) -> AsyncIterator[PoolRig]:
    low, high = rtp_port_block()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((LOOPBACK, 0))
    peer.setblocking(False)
    holder: list[PoolRig] = []

    def local(event: MediaEvent) -> None:  # as BridgeApp._on_local_media_event
        holder[0].events.append(holder[0].pool.local_event(event))

    runtime = MediaRuntime(bind_host=LOOPBACK, port_low=low, port_high=high, on_event=local)
    runtime.start()
    rig = PoolRig(runtime=runtime, pool=None, peer=peer)  # type: ignore[arg-type]
    holder.append(rig)
    rig.pool = WorkerPool(runtime, count, on_event=rig.events.append, on_lost=rig.lost.extend)
    try:
        await rig.pool.start()
        yield rig
    finally:
        await rig.pool.close()
        await runtime.close()
        peer.close()
    assert not rig.pool.workers


@pytest.fixture
async def rig() -> AsyncIterator[PoolRig]:
    async with pool_rig() as made:
        yield made


@contextlib.contextmanager
def descriptors_above(limit: int) -> Iterator[None]:
    """Hold every descriptor number up to ``limit``: whatever is opened meanwhile gets a
    number above it (as in a busy bridge whose soft RLIMIT_NOFILE was raised)."""
    held: list[int] = []
    try:
        while not held or held[-1] <= limit:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)


# -- the tests ----------------------------------------------------------------------------------


async def test_prompts_stopped_right_before_a_move_still_wake_the_waiter(rig: PoolRig) -> None:
    # The conference's _enter for a caller released from waiting: stop the hold prompts, then
    # move the leg into the worker, in one step (no media tick in between). A flow waiting
    # for its ticket (LegChannel.play) is woken only by a PromptFinished event.
    await rig.open("a")
    ticket = rig.pool.play("a", [LONG_CLIP])
    rig.pool.stop_prompts("a")
    rig.pool.move_leg("a", "conf:1:1")
    assert rig.pool.worker_of("a") is not None
    assert rig.pool.prompt_count("a") >= ticket
    await until(lambda: any(c >= ticket for c in rig.finished("a")),
                "the waiter told that its prompt is over", timeout=5.0)


async def test_a_leg_moved_back_with_a_queued_prompt_wakes_the_waiter(rig: PoolRig) -> None:
    await rig.open("a")
    rig.pool.move_leg("a", "conf:1:1")
    ticket = rig.pool.play("a", [LONG_CLIP])
    rig.pool.move_leg("a", "leg:a")  # kicked: back to the main process, the prompt dropped
    assert "a" in rig.runtime.engine
    await until(lambda: any(c >= ticket for c in rig.finished("a")),
                "the waiter told that its prompt is over", timeout=5.0)
    # the main process continues the counts: a new prompt's ticket lies beyond
    assert rig.pool.play("a", [LONG_CLIP]) == ticket + 1
    assert rig.pool.prompt_count("a") == ticket


async def test_a_leg_comes_back_over_a_channel_with_a_high_descriptor() -> None:
    # select() takes descriptors below FD_SETSIZE (1024) only; a worker started (or restarted)
    # while the main process holds many sockets gets a control channel above that.
    with descriptors_above(1100):
        async with pool_rig(count=1) as rig:
            assert all(w.channel.fileno() > 1024 for w in rig.pool.workers)
            port = await rig.open("a")
            rig.pool.move_leg("a", "conf:1:1")
            await until(lambda: rig.pool.worker_of("a") is not None, "the leg in the worker")
            rig.pool.move_leg("a", "leg:a")  # a kick: the worker gives the leg back
            assert "a" in rig.runtime.engine and rig.pool.worker_of("a") is None
            assert not rig.lost
            rig.heard_from(port)  # what was sent before
            heard = [0]

            def more() -> bool:
                heard[0] += rig.heard_from(port)
                return heard[0] >= 5

            await until(more, "RTP from the main process again")
            rig.pool.remove_leg("a")


async def test_a_worker_that_died_young_is_replaced_after_a_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "RESTART_HOLDOFF", 600.0)  # every death counts as young
    monkeypatch.setattr(workers, "RESTART_DELAY", 1.5)
    async with pool_rig(count=2) as rig:
        pids = {w.pid for w in rig.pool.workers}
        victim = rig.pool.workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        await until(lambda: rig.pool.deaths == 1, "the death noticed")
        assert len(rig.pool.loads()) == 1  # not replaced at once (a crash loop would spin)
        await until(lambda: len(rig.pool.loads()) == 2, "a replacement after the delay")
        replacement = next(w for w in rig.pool.workers if w.pid not in pids)
        assert replacement.index == victim.index
        await until(replacement.ready.done, "the replacement ready")
        # it takes rooms
        await rig.open("a")
        await rig.open("b")
        rig.pool.move_leg("a", "conf:1:1")
        rig.pool.move_leg("b", "conf:2:1")
        assert {rig.pool.room_worker("conf:1:1"), rig.pool.room_worker("conf:2:1")} == {
            w.pid for w in rig.pool.workers}
        rig.pool.remove_leg("a")
        rig.pool.remove_leg("b")


async def test_the_last_worker_dying_young_is_not_respawned_in_a_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "RESTART_HOLDOFF", 600.0)
    monkeypatch.setattr(workers, "RESTART_DELAY", 1.5)
    async with pool_rig(count=1) as rig:
        [victim] = rig.pool.workers
        os.kill(victim.pid, signal.SIGKILL)
        await until(lambda: rig.pool.deaths == 1, "the death noticed")
        assert rig.pool.loads() == []
        # meanwhile a conference runs in the main process
        await rig.open("a")
        rig.pool.move_leg("a", "conf:1:1")
        assert "a" in rig.runtime.engine and rig.pool.room_worker("conf:1:1") is None
        await until(lambda: len(rig.pool.loads()) == 1, "a replacement after the delay")
        rig.pool.remove_leg("a")
