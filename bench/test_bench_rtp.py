"""RTP hot paths: parse/build per packet, session receive + jitter put/pop per packet.

Each round processes a batch of distinct packets (varied sequence, timestamp, payload, and for
parse some CSRC/extension/padding headers); packets/s = batch / mean round time.
"""

from __future__ import annotations

import random

from pytest_benchmark.fixture import BenchmarkFixture

from bridge.rtp.packet import build_rtp, parse_rtp
from bridge.rtp.session import PayloadFormat, RtpSession

BATCH = 2000


def _payloads(rng: random.Random) -> list[bytes]:
    return [rng.randbytes(160) for _ in range(BATCH)]


def _report(benchmark: BenchmarkFixture) -> None:
    stats = benchmark.stats
    if stats is not None:
        benchmark.extra_info["packets_per_s"] = round(BATCH / stats.stats.mean)


def test_bench_parse_rtp(benchmark: BenchmarkFixture) -> None:
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
