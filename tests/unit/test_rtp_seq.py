"""RFC 1982 serial-number arithmetic and RFC 3550 A.1 source validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.rtp.seq import SeqConfig, SeqVerdict, SourceValidator, seq_diff, seq_lt, ts_diff, ts_lt


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [(0, 65535, 1), (65535, 0, -1), (5, 3, 2), (3, 5, -2), (0x7FFF, 0, 32767), (0x8000, 0, -32768)],
)
def test_seq_diff_vectors(a: int, b: int, diff: int) -> None:
    assert seq_diff(a, b) == diff
    assert seq_lt(a, b) is (diff < 0)


def test_ts_diff_vectors() -> None:
    assert ts_diff(80, 0xFFFFFFF0) == 96
    assert ts_diff(0xFFFFFFF0, 80) == -96
    assert ts_diff(0x7FFFFFFF, 0) == 0x7FFFFFFF
    assert ts_diff(0x80000000, 0) == -0x80000000
    assert ts_lt(0xFFFFFF00, 10) and not ts_lt(10, 0xFFFFFF00)


@given(st.integers(0, 0xFFFF), st.integers(-32768, 32767))
def test_seq_diff_inverts_addition(base: int, delta: int) -> None:
    assert seq_diff((base + delta) & 0xFFFF, base) == delta


def test_probation_then_valid() -> None:
    v = SourceValidator(1000)
    assert v.update(1000) is SeqVerdict.PROBATION
    assert v.update(1001) is SeqVerdict.VALID
    assert (v.base_seq, v.max_seq, v.received) == (1001, 1001, 1)
    assert v.update(1002) is SeqVerdict.VALID and v.received == 2


def test_probation_restarts_on_non_sequential() -> None:
    v = SourceValidator(10)
    assert v.update(10) is SeqVerdict.PROBATION
    assert v.update(50) is SeqVerdict.PROBATION  # not sequential: probation restarts
    assert v.update(51) is SeqVerdict.VALID
    assert v.base_seq == 51


def _valid(first: int) -> SourceValidator:
    v = SourceValidator(first)
    v.update(first)
    v.update((first + 1) & 0xFFFF)
    return v


def test_wrap_counts_a_cycle() -> None:
    v = _valid(65534)
    assert v.update(0) is SeqVerdict.VALID  # gap of one packet (65535 lost) across the wrap
    assert v.cycles == 65536
    assert v.extended_max == 65536
    assert v.expected == 2  # base 65535 .. ext 65536


def test_dropout_and_misorder_boundaries() -> None:
    v = _valid(100)  # max_seq 101
    assert v.update(101 + 2999) is SeqVerdict.VALID  # udelta < MAX_DROPOUT
    m = v.max_seq
    assert v.update(m - 99) is SeqVerdict.MISORDERED  # within MAX_MISORDER
    assert v.update(m) is SeqVerdict.MISORDERED  # duplicate of the highest
    assert v.update(m - 100) is SeqVerdict.JUMPED  # udelta == 65536 - MAX_MISORDER
    assert v.update(m + 3000) is SeqVerdict.JUMPED
    assert v.max_seq == m


def test_restart_after_two_sequential_packets() -> None:
    v = _valid(100)
    assert v.update(40000) is SeqVerdict.JUMPED
    assert v.update(40001) is SeqVerdict.RESTARTED
    assert (v.base_seq, v.max_seq, v.received, v.cycles) == (40001, 40001, 1, 0)
    assert v.update(40002) is SeqVerdict.VALID


def test_min_sequential_config() -> None:
    v = SourceValidator(7, SeqConfig(min_sequential=1))
    assert v.update(7) is SeqVerdict.VALID


@given(
    start=st.integers(0, 0xFFFF),
    gaps=st.lists(st.integers(1, 2999), min_size=1, max_size=200),
)
def test_extended_max_tracks_absolute_sequence(start: int, gaps: list[int]) -> None:
    v = _valid(start)
    absolute = start + 1
    for g in gaps:
        absolute += g
        assert v.update(absolute & 0xFFFF) is SeqVerdict.VALID
    assert v.extended_max - v.base_seq == absolute - (start + 1)
    assert v.received == len(gaps) + 1
