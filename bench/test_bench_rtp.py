"""RTP hot paths: parse/build per packet, session receive + jitter put/pop per packet, and the
media engine's per-leg paths (receive_rtp per packet, tick per leg-tick).

Each round processes a batch of distinct packets (varied sequence, timestamp, payload, and for
parse some CSRC/extension/padding headers); packets/s = batch / mean round time.
"""

from __future__ import annotations

import random

import dpkt
from pytest_benchmark.fixture import BenchmarkFixture

from bridge.codecs.g711 import Codec
from bridge.media.engine import LegMedia, MediaEngine
from bridge.rtp.packet import build_rtp, parse_rtp
from bridge.rtp.session import PayloadFormat, RtpSession

BATCH = 2000


def _payloads(rng: random.Random) -> list[bytes]:
    return [rng.randbytes(160) for _ in range(BATCH)]


def _report(benchmark: BenchmarkFixture) -> None:
    stats = benchmark.stats
    if stats is not None:
        benchmark.extra_info["packets_per_s"] = round(BATCH / stats.stats.mean)


def _varied_packets() -> list[bytes]:
    """Varied packets: PCMU/PCMA, markers, and every tenth with CSRCs, an extension and padding."""
    rng = random.Random(1)
    packets = []
    for i, payload in enumerate(_payloads(rng)):
        if i % 10 == 0:
            packets.append(
                build_rtp(payload_type=0, sequence=i, timestamp=i * 160, ssrc=rng.getrandbits(32),
                          payload=payload, csrcs=(1, 2), extension_profile=0xBEDE,
                          extension_data=b"\x10\xff\x00\x00", padding=4)
            )
            continue
        packets.append(
            build_rtp(payload_type=rng.choice((0, 8)), sequence=i, timestamp=i * 160,
                      ssrc=rng.getrandbits(32), payload=payload, marker=i % 50 == 0)
        )
    return packets


def test_bench_baseline_dpkt_parse_rtp(benchmark: BenchmarkFixture) -> None:
    """Baseline in the same run: dpkt's RTP parser on the same packets."""
    packets = _varied_packets()

    def run() -> int:
        total = 0
        for data in packets:
            total += dpkt.rtp.RTP(data).seq
        return total

    assert benchmark(run) == sum(range(BATCH))
    _report(benchmark)


def test_bench_parse_rtp(benchmark: BenchmarkFixture) -> None:
    packets = _varied_packets()

    def run() -> int:
        total = 0
        for data in packets:
            total += parse_rtp(data).sequence
        return total

    assert benchmark(run) == sum(range(BATCH))
    _report(benchmark)


def test_bench_build_rtp(benchmark: BenchmarkFixture) -> None:
    rng = random.Random(2)
    payloads = _payloads(rng)
    ssrcs = [rng.getrandbits(32) for _ in range(BATCH)]

    def run() -> int:
        size = 0
        for i, payload in enumerate(payloads):
            size += len(build_rtp(payload_type=8, sequence=i, timestamp=i * 160, ssrc=ssrcs[i],
                                  payload=payload))
        return size

    assert benchmark(run) == BATCH * 172
    _report(benchmark)


def _lossy_stream(rng: random.Random) -> list[bytes]:
    """BATCH packets with 1 % loss, 2 % one-tick reordering and a marker every 50."""
    payloads = _payloads(rng)
    order = list(range(BATCH))
    for i in range(1, BATCH - 1):
        if rng.random() < 0.02:
            order[i], order[i + 1] = order[i + 1], order[i]
    keep = [i for i in order if rng.random() >= 0.01]
    return [
        build_rtp(payload_type=0, sequence=(i + 65000) & 0xFFFF, timestamp=i * 160, ssrc=0xAAAA,
                  payload=payloads[i], marker=i % 50 == 0)
        for i in keep
    ]


def test_bench_session_receive_media(benchmark: BenchmarkFixture) -> None:
    """The engine's entry (fast path for in-order audio); us/packet in extra_info."""
    datagrams = _lossy_stream(random.Random(4))
    peer = ("192.0.2.10", 40000)

    def run() -> int:
        s = RtpSession(ssrc=1, payload=PayloadFormat(audio_pt=0, event_pt=101), remote=peer,
                       now=0.0, cname="bench")
        now = 0.0
        for data in datagrams:
            s.receive_media(data, peer, now)
            now += 0.02
        return s.counters.packets_received

    # All but the probation packet and the stragglers behind the A.1 window are accepted.
    assert len(datagrams) * 0.97 < benchmark(run) < len(datagrams)
    stats = benchmark.stats
    if stats is not None:
        benchmark.extra_info["us_per_packet"] = round(stats.stats.median / len(datagrams) * 1e6, 3)


LEGS = 300  # rooms of 3


def _engine_with_stream(ticks: int) -> tuple[MediaEngine, list[list[bytes]], list[tuple[str, int]]]:
    rng = random.Random(5)
    engine = MediaEngine()
    addrs = [("10.0.0.1", 20000 + 2 * k) for k in range(LEGS)]
    for k in range(LEGS):
        engine.add_leg(f"l{k}", f"r{k // 3}",
                       LegMedia(codec=Codec.PCMU, payload_type=0, telephone_event_pt=101,
                                remote=addrs[k]), ssrc=k + 1, now=0.0)
    pool = [rng.randbytes(160) for _ in range(97)]
    packets = [
        [build_rtp(payload_type=0, sequence=t, timestamp=t * 160, ssrc=0x100 + k,
                   payload=pool[(t * 31 + k) % 97]) for k in range(LEGS)]
        for t in range(ticks)
    ]
    return engine, packets, addrs


def test_bench_engine_receive_and_tick(benchmark: BenchmarkFixture) -> None:
    """A participant-tick: receive_rtp for every leg, then tick; us per participant-tick."""
    ticks = 200
    engine, packets, addrs = _engine_with_stream(ticks)
    ids = [f"l{k}" for k in range(LEGS)]
    state = {"t": 0}

    def run() -> None:
        t = state["t"] % ticks
        state["t"] += 1
        now = state["t"] * 0.02
        row = packets[t]
        receive = engine.receive_rtp
        for k in range(LEGS):
            receive(ids[k], row[k], addrs[k], now)
        engine.tick(now, 1.7e9 + now)

    benchmark.pedantic(run, rounds=ticks, iterations=1, warmup_rounds=5)  # type: ignore[no-untyped-call]
    if benchmark.disabled:  # a smoke run calls run() once: run enough ticks to check the stream
        for _ in range(ticks):
            run()
    assert engine.session("l0").counters.packets_received > ticks / 2
    stats = benchmark.stats
    if stats is not None:
        benchmark.extra_info["us_per_participant_tick"] = round(
            stats.stats.median / LEGS * 1e6, 3)


def test_bench_engine_tick(benchmark: BenchmarkFixture) -> None:
    """MediaEngine.tick alone (mixer included), every leg talking; us/leg-tick in extra_info."""
    ticks = 200
    engine, packets, addrs = _engine_with_stream(ticks)
    ids = [f"l{k}" for k in range(LEGS)]
    state = {"t": 0}

    def feed() -> None:
        t = state["t"] % ticks
        state["t"] += 1
        row = packets[t]
        now = state["t"] * 0.02
        for k in range(LEGS):
            engine.receive_rtp(ids[k], row[k], addrs[k], now)

    def run() -> int:
        now = state["t"] * 0.02
        return len(engine.tick(now, 1.7e9 + now))

    benchmark.pedantic(  # type: ignore[no-untyped-call]
        run, setup=feed, rounds=ticks, iterations=1, warmup_rounds=5)
    assert run() >= LEGS
    stats = benchmark.stats
    if stats is not None:
        benchmark.extra_info["us_per_leg_tick"] = round(stats.stats.median / LEGS * 1e6, 3)


def test_bench_session_receive_and_jitter(benchmark: BenchmarkFixture) -> None:
    rng = random.Random(3)
    payloads = _payloads(rng)
    peer = ("192.0.2.10", 40000)
    # A stream with 1 % loss and 2 % one-tick reordering.
    order = list(range(BATCH))
    for i in range(1, BATCH - 1):
        if rng.random() < 0.02:
            order[i], order[i + 1] = order[i + 1], order[i]
    keep = [i for i in order if rng.random() >= 0.01]
    datagrams = [
        build_rtp(payload_type=0, sequence=i & 0xFFFF, timestamp=i * 160, ssrc=0xAAAA,
                  payload=payloads[i])
        for i in keep
    ]

    def run() -> int:
        s = RtpSession(ssrc=1, payload=PayloadFormat(audio_pt=0), remote=peer, now=0.0,
                       cname="bench")
        played = 0
        now = 0.0
        for data in datagrams:
            s.receive(data, peer, now)
            played += s.pop_frame().payload is not None
            now += 0.02
        return played

    assert benchmark(run) > BATCH * 0.9
    _report(benchmark)
