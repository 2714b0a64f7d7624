"""procstats: CPU % and RSS from /proc against a busy and an idle child process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bridge.benchmark import procstats

# Spins; on each line from stdin prints its own CPU seconds (time.process_time), the oracle.
BUSY = """
import os, selectors, sys, time
sel = selectors.DefaultSelector()
sel.register(sys.stdin, selectors.EVENT_READ)
while True:
    for _ in range(20000):
        pass
    if sel.select(0):
        sys.stdin.readline()
        print(time.process_time(), flush=True)
"""
IDLE = "import time; time.sleep(60)"


@pytest.fixture
def children() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {
        "busy": subprocess.Popen([sys.executable, "-c", BUSY], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE),
        "idle": subprocess.Popen([sys.executable, "-c", IDLE]),
    }
    try:
        time.sleep(0.3)  # let both start; the measurement below does not depend on this
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def _self_reported_cpu(proc: subprocess.Popen[bytes]) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def test_busy_child_reads_high_and_idle_near_zero(
    children: dict[str, subprocess.Popen[bytes]],
) -> None:
    busy, idle = children["busy"], children["idle"]
    meter = procstats.ProcMeter([busy.pid, idle.pid])
    own_before = _self_reported_cpu(busy)
    before = meter.sample()
    time.sleep(2.0)
    after = meter.sample()
    own_after = _self_reported_cpu(busy)
    per_pid = procstats.cpu_percent_by_pid(before, after)
    # Oracle: the child's own CPU clock over a window that encloses ours (+2 clock ticks).
    measured = after.cpu_by_pid[busy.pid] - before.cpu_by_pid[busy.pid]
    assert measured <= own_after - own_before + 2 / procstats.CLOCK_TICKS
    assert measured >= (own_after - own_before) * 0.5 - 2 / procstats.CLOCK_TICKS
    # Alone on a 2-core machine a spinning loop reads ~100 %; other work on the machine can
    # take a share, so the lower bound is generous. One thread cannot exceed one core.
    assert 20.0 < per_pid[busy.pid] < 110.0
    assert per_pid[idle.pid] < 10.0
    assert per_pid[busy.pid] > 5 * per_pid[idle.pid]
    assert procstats.cpu_percent(before, after) == pytest.approx(sum(per_pid.values()))
    assert after.rss_bytes > 2 * 2**20  # two Python interpreters


def test_rss_sums_over_pids(children: dict[str, subprocess.Popen[bytes]]) -> None:
    busy, idle = children["busy"].pid, children["idle"].pid
    one = procstats.read_rss_bytes(busy)
    both = procstats.sample([busy, idle]).rss_bytes
    assert 1 * 2**20 < one < 200 * 2**20
    assert both > one


def test_cpu_seconds_match_rusage_of_own_process() -> None:
    start = time.process_time()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    mine = procstats.read_cpu_seconds(os.getpid())
    # /proc counts in clock ticks (1/100 s); process_time is at least as fine.
    assert mine >= time.process_time() - start - 0.05
    assert mine <= time.process_time() + 2 / procstats.CLOCK_TICKS


def test_parse_stat_with_parentheses_and_spaces_in_the_name() -> None:
    # proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime ...
    line = "4242 (evil) name (x)) R 1 2 3 4 5 6 7 8 9 10 1234 567 0 0 20 0 1 0 99 0 0\n"
    assert procstats.parse_stat_cpu_ticks(line) == (1234, 567)
    with pytest.raises(ValueError):
        procstats.parse_stat_cpu_ticks("no parenthesis here")


def test_parse_status_rss() -> None:
    text = "Name:\tpython\nVmPeak:\t  999 kB\nVmRSS:\t   2048 kB\nThreads:\t1\n"
    assert procstats.parse_status_rss_bytes(text) == 2048 * 1024
    assert procstats.parse_status_rss_bytes("Name:\tkthreadd\n") == 0


def test_cpu_us_per_participant_tick() -> None:
    # 1.0 s of CPU over 100 participants and 250 ticks: 1e6 / 25000 = 40 us.
    assert procstats.cpu_us_per_participant_tick(1.0, 100, 250) == pytest.approx(40.0)
    with pytest.raises(ValueError):
        procstats.cpu_us_per_participant_tick(1.0, 0, 250)


def test_cpu_percent_rejects_non_increasing_samples() -> None:
    a = procstats.ProcSample(wall=10.0, cpu_by_pid={1: 1.0}, rss_bytes=0)
    b = procstats.ProcSample(wall=12.0, cpu_by_pid={1: 2.5}, rss_bytes=0)
    assert procstats.cpu_percent(a, b) == pytest.approx(75.0)
    with pytest.raises(ValueError):
        procstats.cpu_percent(b, a)


def test_exited_pid_raises() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(FileNotFoundError):
        procstats.sample(proc.pid)
