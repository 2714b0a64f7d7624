"""Jitter buffer: loss, reorder, duplicate, burst, backlog, timestamp jumps, restarts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtp.jitter import Frame, FrameKind, JitterBuffer, JitterConfig, PutResult

FS = 160
SEQ0 = 65530  # wraps during the tests
TS0 = 0xFFFFF000  # wraps during the tests


def pkt(i: int, *, seq0: int = SEQ0, ts0: int = TS0) -> tuple[int, int, bytes]:
    """Frame i of a sender: (seq, timestamp, payload that names i)."""
    return (seq0 + i) & 0xFFFF, (ts0 + i * FS) & 0xFFFFFFFF, i.to_bytes(4, "big")


def idx(frame: Frame) -> int:
    assert frame.payload is not None
    return int.from_bytes(frame.payload, "big")


def run(jb: JitterBuffer, arrivals: Sequence[Iterable[int]]) -> list[Frame]:
    """Tick by tick: put the frames arriving in this tick, then pop once."""
    out = []
    for tick, frames in enumerate(arrivals):
        for i in frames:
            seq, ts, payload = pkt(i)
            jb.put(seq, ts, payload, now=tick * 0.02)
            assert jb.depth <= jb.config.max_depth
        out.append(jb.pop())
    return out


def describe(frames: list[Frame]) -> list[str]:
    names = []
    for f in frames:
        if f.kind is FrameKind.AUDIO:
            names.append(str(idx(f)))
        elif f.kind is FrameKind.REPEAT:
            names.append(f"R{idx(f)}@{f.gain}")
        else:
            names.append("-")
    return names


def test_steady_stream_has_one_frame_of_buffering() -> None:
    jb = JitterBuffer()
    out = run(jb, [[i] for i in range(8)])
    assert describe(out) == ["-", "0", "1", "2", "3", "4", "5", "6"]
    assert out[1].seq == SEQ0 and out[1].timestamp == TS0 and out[1].gain == 1.0
    assert jb.counters.played == 7 and jb.counters.lost == 0


def test_single_loss_is_concealed_by_repeat_and_counted() -> None:
    jb = JitterBuffer()
    out = run(jb, [[i] if i != 4 else [] for i in range(8)])
    assert describe(out) == ["-", "0", "1", "2", "3", "R3@1.0", "5", "6"]
    assert out[5].seq == (SEQ0 + 4) & 0xFFFF  # concealment frame carries the expected seq
    assert (jb.counters.lost, jb.counters.concealed) == (1, 1)


def test_burst_loss_fades_then_silence_then_rebuffers() -> None:
    jb = JitterBuffer()
    arrivals = [[i] if not 3 <= i <= 8 else [] for i in range(13)]
    out = run(jb, arrivals)
    assert describe(out) == [
        "-", "0", "1", "2", "R2@1.0", "R2@0.5", "R2@0.25", "-", "-", "-", "9", "10", "11",
    ]
    assert out[7].kind is not FrameKind.AUDIO
    assert jb.counters.lost == 6 and jb.counters.concealed == 3 and jb.counters.underruns == 1


def test_reorder_within_depth_is_fixed() -> None:
    jb = JitterBuffer()
    out = run(jb, [[0], [1], [3], [2], [4], [5], [6]])
    assert describe(out) == ["-", "0", "1", "2", "3", "4", "5"]
    assert jb.counters.late == 0 and jb.counters.lost == 0


def test_duplicates_and_late_packets_are_dropped() -> None:
    jb = JitterBuffer()
    run(jb, [[0], [1], [2]])
    seq, ts, payload = pkt(2)
    assert jb.put(seq, ts, payload, 0.0) is PutResult.DUPLICATE
    seq, ts, payload = pkt(0)
    assert jb.put(seq, ts, payload, 0.0) is PutResult.LATE  # already played
    assert (jb.counters.duplicate, jb.counters.late) == (1, 1)
    assert describe([jb.pop()]) == ["2"]


def test_backlog_is_flushed_to_target_depth() -> None:
    jb = JitterBuffer()
    arrivals: list[Iterable[int]] = [[0], [1], [2], range(3, 9), [9], [10], [11]]
    out = run(jb, arrivals)
    # 6 frames at once on top of frame 2: each time the depth would pass 3 (60 ms) the oldest
    # are dropped back to 2 (40 ms): 2, 3 go when 5 arrives, 4, 5 when 7 arrives.
    assert describe(out) == ["-", "0", "1", "6", "7", "8", "9"]
    assert jb.counters.flushed == 4
    assert jb.counters.lost == 0  # flushed frames are not counted as lost


def test_depth_above_target_shrinks_after_a_while() -> None:
    jb = JitterBuffer(JitterConfig(shrink_after=5))
    # One extra frame sent early (sender drift): depth 3 before each pop from tick 2 on.
    arrivals: list[Iterable[int]] = [[0], [1, 2], *[[i] for i in range(3, 12)]]
    out = run(jb, arrivals)
    # Depth 3 before the pops of ticks 1..5; at the fifth such tick frame 4 is dropped.
    assert describe(out) == ["-", "0", "1", "2", "3", "5", "6", "7", "8", "9", "10"]
    assert jb.counters.flushed == 1


def test_late_burst_after_stall_does_not_add_latency() -> None:
    jb = JitterBuffer()
    arrivals: list[Iterable[int]] = [[0], [1], [2], [], [], [], [], range(3, 8), [8], [9]]
    out = run(jb, arrivals)
    assert describe(out) == ["-", "0", "1", "2", "R2@1.0", "R2@0.5", "R2@0.25", "6", "7", "8"]
    assert jb.counters.late == 3  # slots 3..5 were already concealed


def test_silence_suppression_gap_resumes_without_loss() -> None:
    jb = JitterBuffer()
    talk = [[i] for i in range(4)] + [[] for _ in range(40)]
    out = run(jb, talk)
    # Second talkspurt: timestamps 44 frames on, sequence numbers continue.
    frames = []
    for n in range(5):
        seq = (SEQ0 + 4 + n) & 0xFFFF
        ts = (TS0 + (44 + n) * FS) & 0xFFFFFFFF
        jb.put(seq, ts, (100 + n).to_bytes(4, "big"), 0.0)
        frames.append(jb.pop())
    assert describe(out[-3:]) == ["-", "-", "-"]
    assert describe(frames) == ["-", "100", "101", "102", "103"]
    assert jb.counters.lost == 0 and jb.counters.resyncs == 0


@pytest.mark.parametrize("jump", [10_000_000, -10_000_000, 2**31 - 1])
def test_timestamp_jump_resyncs_without_stall(jump: int) -> None:
    jb = JitterBuffer()
    out = run(jb, [[i] for i in range(5)])
    for n in range(5, 12):
        seq, ts, payload = pkt(n)
        jb.put(seq, (ts + jump) & 0xFFFFFFFF, payload, 0.0)
        out.append(jb.pop())
    assert describe(out) == ["-", *[str(i) for i in range(11)]]
    assert jb.counters.resyncs == 1 and jb.counters.late == 0


def test_sequence_restart_with_continuous_timestamps() -> None:
    jb = JitterBuffer()
    out = run(jb, [[i] for i in range(5)])
    for n in range(5, 10):
        _, ts, payload = pkt(n)
        jb.put(1000 + n, ts, payload, 0.0)
        out.append(jb.pop())
    assert describe(out) == ["-", *[str(i) for i in range(9)]]
    assert jb.counters.lost == 0


def test_sender_restart_of_both_seq_and_timestamp() -> None:
    jb = JitterBuffer()
    out = run(jb, [[i] for i in range(5)])
    for n in range(5, 10):
        jb.put(30000 + n, 123456 + n * FS, n.to_bytes(4, "big"), 0.0)
        out.append(jb.pop())
    assert describe(out) == ["-", *[str(i) for i in range(9)]]
    assert jb.counters.resyncs == 1


def test_reset_starts_buffering_again() -> None:
    jb = JitterBuffer()
    run(jb, [[0], [1], [2]])
    jb.reset()
    assert jb.pop().kind is FrameKind.SILENCE and jb.depth == 0
    seq, ts, payload = pkt(0)
    assert jb.put(seq, ts, payload, 0.0) is PutResult.QUEUED  # no longer "late"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="target_depth"):
        JitterConfig(target_depth=4, max_depth=3)
    with pytest.raises(ValueError, match="frame_samples"):
        JitterConfig(frame_samples=0)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(5, 120),
    data=st.data(),
    max_delay=st.integers(0, 6),
    target=st.integers(1, 3),
    extra=st.integers(0, 3),
    shrink=st.sampled_from([10, 10_000]),
)
def test_random_arrivals_keep_order_and_bounded_depth(
    *, n: int, data: st.DataObject, max_delay: int, target: int, extra: int, shrink: int
) -> None:
    cfg = JitterConfig(target_depth=target, max_depth=target + extra, shrink_after=shrink)
    jb = JitterBuffer(cfg)
    delays = data.draw(st.lists(st.integers(0, max_delay), min_size=n, max_size=n))
    dropped = data.draw(st.sets(st.integers(0, n - 1), max_size=n // 4))
    dups = data.draw(st.sets(st.integers(0, n - 1), max_size=n // 4))
    arrivals: list[list[int]] = [[] for _ in range(n + max_delay + cfg.max_depth + 2)]
    for i, d in enumerate(delays):
        if i not in dropped:
            arrivals[i + d].append(i)
        if i in dups and i not in dropped:
            arrivals[min(i + d + 1, len(arrivals) - 1)].append(i)
    for frames in arrivals:
        frames[:] = data.draw(st.permutations(frames))
    out = run(jb, arrivals)  # asserts depth <= max after every put
    played = [idx(f) for f in out if f.kind is FrameKind.AUDIO]
    assert played == sorted(set(played)), "output must be strictly increasing"
    assert set(played) <= set(range(n)) - dropped
    c = jb.counters
    assert c.played == len(played)
    received = n - len(dropped) + len(dups - dropped)
    assert c.queued + c.late + c.duplicate == received
    assert c.queued == c.played + c.flushed + len(jb)
    if max_delay <= target - 1 and extra >= 1 and shrink > n and not dropped:
        # Jitter within the target depth and headroom above it: everything is played in
        # order, nothing concealed between the first and the last frame; only the extra
        # copies are dropped (as duplicates, or as late once the original was played).
        assert played == list(range(n))
        first = next(k for k, f in enumerate(out) if f.kind is FrameKind.AUDIO)
        assert all(f.kind is FrameKind.AUDIO for f in out[first : first + n])
        assert c.late + c.duplicate == len(dups)


def test_buffering_starts_playout_when_the_first_frame_has_waited_the_target_depth() -> None:
    """Found by the property above: the first two frames on time, the next two 40 ms late.
    Waiting for three frames queued stalled until the late ones and the next on-time frame
    came together, and the backlog flush then dropped the first two. Playout starts when the
    oldest frame has waited ``target_depth`` ticks; every frame is played, in order."""
    jb = JitterBuffer(JitterConfig(target_depth=3, max_depth=4, shrink_after=10))
    out = run(jb, [[0], [1], [], [], [2, 4], [3], [], [], [], []])
    kinds = [f.kind for f in out]
    assert kinds[:2] == [FrameKind.SILENCE, FrameKind.SILENCE]
    assert [idx(f) for f in out[2:7]] == [0, 1, 2, 3, 4]
    assert jb.counters.flushed == 0 and jb.counters.played == 5


# -- the in-order fast path of put against the general path ---------------------------------------


def _jb_state(jb: JitterBuffer) -> tuple[object, ...]:
    return (jb.counters, jb.playing, jb.depth, len(jb),
            tuple(getattr(jb, name) for name in JitterBuffer.__slots__ if name != "counters"))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from((0, 0, 0, 0, 0, 1, 2, 3, -1, -2, 60, -60)), max_size=5),
        max_size=120,
    ),
    st.sampled_from((JitterConfig(), JitterConfig(target_depth=1, max_depth=1, max_jump=3),
                     JitterConfig(target_depth=3, max_depth=6, shrink_after=4))),
)
def test_put_fast_path_matches_general_path(
    ticks: list[list[int]], config: JitterConfig
) -> None:
    """Steps ahead of the last frame put (0 = the next frame: the fast path; bursts of those
    reach the flush) then one pop; ``_put`` alone is the general path."""
    fast, general = JitterBuffer(config), JitterBuffer(config)
    i = 10_000  # steps go back too; pkt() names frames with unsigned ints
    results: list[PutResult] = []
    for steps in ticks:
        for step in steps:
            i += 1 + step
            seq, ts, payload = pkt(i)
            result = fast.put(seq, ts, payload, now=0.0)
            assert general._put(seq, ts, payload) is result
            results.append(result)
            assert _jb_state(fast) == _jb_state(general)
        assert fast.pop() == general.pop()
        assert _jb_state(fast) == _jb_state(general)
    if len(results) > 40:
        assert PutResult.QUEUED in results
