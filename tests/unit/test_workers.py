"""Media workers: the ``[media] workers`` setting, per-process admission, and the control
channel's framing (pickled messages and descriptors over a real SEQPACKET socket pair)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

from bridge.codecs.g711 import Codec
from bridge.config import Config, ConfigError, MediaConfig, load_config
from bridge.media.engine import LegMedia, LegTransfer, PromptFinished
from bridge.runtime.admission import admission_refusal
from bridge.runtime.media_worker import CHUNK, Channel, Events, ImportLeg, MediaWorker, Play, Quit

NO_LATENESS = np.zeros(0)


def test_workers_default_to_none() -> None:
    assert Config().validate().media.workers == 0


def test_workers_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text("[media]\nworkers = 2\n", encoding="utf-8")
    assert load_config(path, env={}).validate().media.workers == 2


def test_negative_workers_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"media\.workers"):
        Config(media=MediaConfig(workers=-1)).validate()


def test_workers_must_be_an_integer(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[media]\nworkers = "two"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"media\.workers"):
        load_config(path, env={})


def test_admission_counts_the_main_process_alone() -> None:
    config = MediaConfig(max_participants=10)
    assert admission_refusal(config, participants=9, recent_lateness=NO_LATENESS,
                             worker_participants=(10, 3)) is None
    refused = admission_refusal(config, participants=10, recent_lateness=NO_LATENESS,
                                worker_participants=(0, 0))
    assert refused is not None and refused.status == 503


def test_admission_refuses_when_every_worker_is_full() -> None:
    config = MediaConfig(max_participants=10, retry_after=7)
    refused = admission_refusal(config, participants=0, recent_lateness=NO_LATENESS,
                                worker_participants=(10, 12))
    assert refused is not None
    assert refused.headers == (("Retry-After", "7"),)
    assert "every media worker" in refused.reason
    assert admission_refusal(MediaConfig(max_participants=0), participants=0,
                             recent_lateness=NO_LATENESS, worker_participants=(99,)) is None


@pytest.fixture
def pair() -> tuple[Channel, Channel]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return Channel(a), Channel(b)


def _receive_all(channel: Channel, count: int) -> list[tuple[object, list[int]]]:
    got: list[tuple[object, list[int]]] = []
    while len(got) < count:
        got.extend(channel.receive())
    return got


def test_a_big_clip_travels_in_chunks(pair: tuple[Channel, Channel]) -> None:
    ours, theirs = pair
    ours.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 100_000)  # smaller than the clip
    clip = (np.arange(8000 * 20) % 3000).astype(np.int16)  # 20 s: 320 kB, many datagrams
    assert clip.nbytes > 4 * CHUNK
    ours.send(Play(leg_id="a", clips=(clip,), loop=True))
    ours.send(Quit())
    assert ours.pending  # the socket took part of it: the rest is queued, not blocked on
    got: list[tuple[object, list[int]]] = []
    while len(got) < 2:
        got.extend(theirs.receive())
        ours.flush()
    assert not ours.pending
    [(first, fds), (second, _)] = got
    assert isinstance(first, Play) and fds == []
    assert first.loop and np.array_equal(first.clips[0], clip)
    assert second == Quit()


def test_events_round_trip(pair: tuple[Channel, Channel]) -> None:
    ours, theirs = pair
    events = (PromptFinished(target="room:conf:1:1", count=3),)
    theirs.send(Events(events=events))
    [(message, _)] = _receive_all(ours, 1)
    assert message == Events(events=events)


def test_sockets_travel_with_a_message(pair: tuple[Channel, Channel]) -> None:
    ours, theirs = pair
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp.bind(("127.0.0.1", 0))
    names = (rtp.getsockname(), rtcp.getsockname())
    state = LegTransfer(
        leg_id="a", room="conf:1:1",
        media=LegMedia(codec=Codec.PCMU, payload_type=0, telephone_event_pt=101,
                       remote=("127.0.0.1", 4000)),
        remote=("127.0.0.1", 4000), ssrc=0x1234, sequence=77, timestamp=16000,
        last_send=1.5, cname="bridge-a", muted=True, deaf=False, gain=1.0,
        packets_sent=10, octets_sent=1600)
    sent = [rtp.detach(), rtcp.detach()]
    ours.send(ImportLeg(state=state), sent)  # the channel owns them: closed once sent
    assert not ours.pending
    for fd in sent:  # no descriptor left open in the sender (checked before any is reused)
        with pytest.raises(OSError):
            os.fstat(fd)
    [(message, fds)] = _receive_all(theirs, 1)
    assert message == ImportLeg(state=state)
    received = [socket.socket(fileno=fd) for fd in fds]
    try:
        assert tuple(s.getsockname() for s in received) == names
        # the same bound socket: a datagram to its port arrives at the passed descriptor
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"rtp", names[0])
            assert received[0].recv(16) == b"rtp"
    finally:
        for sock in received:
            sock.close()


def test_a_closed_end_is_the_end_of_the_channel(pair: tuple[Channel, Channel]) -> None:
    ours, theirs = pair
    theirs.close()
    with pytest.raises(EOFError):
        ours.receive()


def test_worker_stats_count_send_errors_since_the_mark(pair: tuple[Channel, Channel]) -> None:
    _, theirs = pair
    worker = MediaWorker(theirs)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp.bind(("127.0.0.1", 0))
    handle, _ = worker.io.adopt("a", rtp, rtcp)
    try:
        worker.io.send([(handle, b"x", ("127.0.0.1", 0))] * 3)  # port 0: EINVAL, counted
        assert worker.stats(mark=True).send_errors == 3
        worker.io.send([(handle, b"x", ("127.0.0.1", 0))])
        assert worker.stats(mark=False).send_errors == 1  # like every figure: since the mark
    finally:
        worker.io.close_all()
