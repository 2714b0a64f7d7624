"""CPU time and resident memory of one or several processes, read from Linux ``/proc``.

``/proc/<pid>/stat`` fields 14 and 15 (``utime``, ``stime``) are in clock ticks
(``os.sysconf("SC_CLK_TCK")``); ``/proc/<pid>/status`` ``VmRSS`` is in kB (proc(5)).
A bridge may run several media worker processes; every figure here sums over the pids given.

Typical use around one benchmark step::

    meter = ProcMeter([bridge_pid])
    before = meter.sample()
    ...  # run the step
    after = meter.sample()
    cpu = cpu_percent(before, after)          # percent of one core, summed over the pids
    us = cpu_us_per_participant_tick(after.cpu_seconds - before.cpu_seconds, 400, ticks)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CLOCK_TICKS",
    "ProcMeter",
    "ProcSample",
    "cpu_percent",
    "cpu_percent_by_pid",
    "cpu_us_per_participant_tick",
    "parse_stat_cpu_ticks",
    "parse_status_rss_bytes",
    "read_cpu_seconds",
    "read_rss_bytes",
    "sample",
]

CLOCK_TICKS: int = os.sysconf("SC_CLK_TCK")


def parse_stat_cpu_ticks(text: str) -> tuple[int, int]:
    """``(utime, stime)`` in clock ticks from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself contain spaces and ``)``, so
    the fields are split after the *last* ``)``; field 3 (state) is then index 0 and fields
    14/15 are indexes 11/12.
    """
    close = text.rfind(")")
    if close < 0:
        raise ValueError("not a /proc/<pid>/stat line: no ')'")
    fields = text[close + 1 :].split()
    if len(fields) < 13:
        raise ValueError(f"/proc/<pid>/stat has {len(fields) + 2} fields, need at least 15")
    return int(fields[11]), int(fields[12])


def parse_status_rss_bytes(text: str) -> int:
    """Resident set size in bytes from the text of ``/proc/<pid>/status`` (``VmRSS: N kB``).

    Kernel threads and zombies have no ``VmRSS`` line: that is 0 bytes.
    """
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024
    return 0


def _read(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/{name}", encoding="ascii", errors="replace") as file:
        return file.read()


def read_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by ``pid`` (its threads included)."""
    utime, stime = parse_stat_cpu_ticks(_read(pid, "stat"))
    return (utime + stime) / CLOCK_TICKS


def read_rss_bytes(pid: int) -> int:
    """Current resident memory of ``pid`` in bytes."""
    return parse_status_rss_bytes(_read(pid, "status"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcSample:
    """One reading of a set of processes at monotonic time ``wall`` (seconds).

    ``cpu_by_pid`` holds each pid's cumulative CPU seconds; ``cpu_seconds`` and ``rss_bytes``
    are sums over the pids.
    """

    wall: float
    cpu_by_pid: dict[int, float]
    rss_bytes: int

    @property
    def cpu_seconds(self) -> float:
        """Cumulative CPU seconds summed over the pids."""
        return sum(self.cpu_by_pid.values())


def sample(pids: int | Iterable[int], now: float | None = None) -> ProcSample:
    """Read CPU seconds and RSS of ``pids`` (one pid or several); ``now`` defaults to the
    monotonic clock. Raises ``FileNotFoundError`` (``ProcessLookupError`` semantics) for a
    pid that has exited."""
    pid_list = [pids] if isinstance(pids, int) else list(pids)
    cpu = {pid: read_cpu_seconds(pid) for pid in pid_list}
    rss = sum(read_rss_bytes(pid) for pid in pid_list)
    return ProcSample(wall=time.monotonic() if now is None else now, cpu_by_pid=cpu, rss_bytes=rss)


def cpu_percent(before: ProcSample, after: ProcSample) -> float:
    """CPU use between two samples as percent of ONE core, summed over the pids (two busy
    processes read 200 %)."""
    wall = after.wall - before.wall
    if wall <= 0:
        raise ValueError("samples must be taken at increasing times")
    return 100.0 * (after.cpu_seconds - before.cpu_seconds) / wall


def cpu_percent_by_pid(before: ProcSample, after: ProcSample) -> dict[int, float]:
    """Percent of one core per pid between two samples (the busiest worker decides
    saturation of a multi-process bridge)."""
    wall = after.wall - before.wall
    if wall <= 0:
        raise ValueError("samples must be taken at increasing times")
    return {
        pid: 100.0 * (after.cpu_by_pid[pid] - before.cpu_by_pid.get(pid, 0.0)) / wall
        for pid in after.cpu_by_pid
    }


def cpu_us_per_participant_tick(cpu_seconds: float, participants: int, ticks: int) -> float:
    """CPU microseconds per participant per 20 ms tick: ``cpu / (participants * ticks) * 1e6``."""
    if participants <= 0 or ticks <= 0:
        raise ValueError("participants and ticks must be positive")
    return cpu_seconds / (participants * ticks) * 1e6


class ProcMeter:
    """Samples a fixed set of pids; ``sample()`` is :func:`sample` bound to them."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids: tuple[int, ...] = tuple(pids)
        if not self.pids:
            raise ValueError("ProcMeter needs at least one pid")

    def sample(self, now: float | None = None) -> ProcSample:
        """Read all pids now."""
        return sample(self.pids, now)
