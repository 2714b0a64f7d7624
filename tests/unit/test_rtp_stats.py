"""Receiver statistics: RFC 3550 A.3 loss, A.8 jitter, §6.4.1 LSR/DLSR."""

from __future__ import annotations

import pytest

from bridge.rtp.seq import SeqVerdict
from bridge.rtp.stats import ReceiverStats

FRAME = 160
TICK = 0.020


def _feed(stats: ReceiverStats, seqs: list[int], delays: dict[int, float] | None = None) -> None:
    delays = delays or {}
    for s in seqs:
        stats.update(s & 0xFFFF, (s * FRAME) & 0xFFFFFFFF, s * TICK + delays.get(s, 0.0))


def test_constant_transit_gives_zero_jitter() -> None:
    st = ReceiverStats(1, 0)
    _feed(st, list(range(50)))
    assert st.jitter == 0
    assert st.received == 49  # the first packet is the A.1 probation packet


def test_jitter_follows_a8_recurrence() -> None:
    st = ReceiverStats(1, 0)
    _feed(st, [0, 1, 2, 3], delays={2: 0.020})  # packet 2 arrives 160 samples late
    # Samples: p1->p2: |D| = 160 -> J = 160/16 = 10; p2->p3: |D| = 160 -> J = 10 + 150/16.
    assert st.jitter == int(10 + 150 / 16) == 19
    assert st.jitter_seconds == pytest.approx((10 + 150 / 16) / 8000)


def test_jitter_ignores_event_packets_and_wrap() -> None:
    st = ReceiverStats(1, 65534)
    base_ts = 0xFFFFFF00
    for i in range(6):
        st.update((65534 + i) & 0xFFFF, (base_ts + i * FRAME) & 0xFFFFFFFF, i * TICK)
    st.update(4, 12345, 6 * TICK, sample_jitter=False)  # an event packet with odd timestamp
    assert st.jitter == 0
    assert st.validator.cycles == 65536


def test_loss_and_fraction_per_interval() -> None:
    st = ReceiverStats(0xABC, 100)
    seqs = [s for s in range(100, 121) if s not in (105, 106, 110)]
    _feed(st, seqs)
    # base is 101 (after probation), highest 120: expected 20, received 17
    assert (st.expected, st.received, st.lost) == (20, 17, 3)
    block = st.report_block(now=10.0)
    assert block.ssrc == 0xABC
    assert block.cumulative_lost == 3
    assert block.fraction_lost == (3 * 256) // 20
    assert block.highest_seq == 120
    assert (block.lsr, block.dlsr) == (0, 0)
    # Next interval: 10 more, none lost -> fraction 0, cumulative unchanged.
    _feed(st, list(range(121, 131)))
    block = st.report_block(now=11.0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 3)


def test_duplicates_make_negative_interval_loss_report_zero_fraction() -> None:
    st = ReceiverStats(1, 0)
    _feed(st, [0, 1, 2, 2, 2, 3])
    assert st.lost == -2  # duplicates counted as received (A.3)
    assert st.report_block(now=0.0).fraction_lost == 0


def test_lsr_dlsr() -> None:
    st = ReceiverStats(1, 0)
    st.on_sender_report(0xE1A2B3C480000000, now=50.0)
    block = st.report_block(now=51.25)
    assert block.lsr == 0xB3C48000
    assert block.dlsr == int(1.25 * 65536)


def test_restart_resets_counts() -> None:
    st = ReceiverStats(1, 0)
    _feed(st, list(range(10)))
    assert st.update(30000, 0, 1.0) is SeqVerdict.JUMPED
    assert st.update(30001, 160, 1.02) is SeqVerdict.RESTARTED
    assert (st.expected, st.received) == (1, 1)
