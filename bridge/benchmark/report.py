"""Capacity benchmark results: per-step records, stop criteria, table, JSON and a PNG curve.

A run ramps participants in steps; each step yields a :class:`StepResult` (tick lateness from
the system under test, loss from the load generator, CPU and RSS from ``/proc``). A run stops
at the first step that breaks a :class:`StopCriteria` (p99 lateness >= 5 ms, loss >= 0.1 % or
CPU >= 85 % of one core by default); its capacity is the largest passing step before that.

The PNG writer is self-contained (zlib + struct, PNG spec / RFC 2083: signature, IHDR, one
IDAT of filter-0 scanlines, IEND, CRC-32 per chunk) so no plotting library is needed.
"""

from __future__ import annotations

import itertools
import json
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bridge.benchmark.procstats import (
    ProcSample,
    cpu_percent,
    cpu_percent_by_pid,
    cpu_us_per_participant_tick,
)

__all__ = [
    "CapacityRun",
    "StepResult",
    "StopCriteria",
    "encode_png",
    "format_table",
    "make_step",
    "render_capacity_png",
    "runs_to_json",
    "write_json",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """One ramp step of one system (``"bridge"`` or ``"relay"``)."""

    system: str
    participants: int
    duration_s: float
    ticks: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    packets_sent: int
    packets_received: int
    packets_expected: int
    loss_pct: float
    cpu_pct: float  # percent of one core used by the busiest process of the system
    cpu_us_per_participant_tick: float
    rss_bytes: int
    failed_calls: int = 0
    loadgen_cpu_pct: float = 0.0  # the generator's own CPU: near 100 % it is the bottleneck

    @property
    def rss_per_participant_bytes(self) -> float:
        """Resident memory divided by participants."""
        return self.rss_bytes / self.participants if self.participants else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StopCriteria:
    """When a step counts as over capacity (all bounds are "reached or exceeded")."""

    max_p99_lateness_ms: float = 5.0
    max_loss_pct: float = 0.1
    max_cpu_pct: float = 85.0

    def violations(self, step: StepResult) -> list[str]:
        """Why ``step`` is over capacity; empty when it passes."""
        reasons = []
        if step.lateness_p99_ms >= self.max_p99_lateness_ms:
            reasons.append(f"p99 lateness {step.lateness_p99_ms:.2f} ms >= "
                           f"{self.max_p99_lateness_ms:g} ms")
        if step.loss_pct >= self.max_loss_pct:
            reasons.append(f"loss {step.loss_pct:.3f} % >= {self.max_loss_pct:g} %")
        if step.cpu_pct >= self.max_cpu_pct:
            reasons.append(f"CPU {step.cpu_pct:.1f} % >= {self.max_cpu_pct:g} %")
        return reasons

    def passes(self, step: StepResult) -> bool:
        """True when ``step`` is within every bound."""
        return not self.violations(step)


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityRun:
    """All steps of one system's ramp, with the criteria they were judged by."""

    system: str
    rooms_of: int
    talkers: int
    steps: tuple[StepResult, ...]
    criteria: StopCriteria = field(default_factory=StopCriteria)

    @property
    def stop_reason(self) -> str | None:
        """The violations of the first failing step, or None when every step passed."""
        for step in self.steps:
            reasons = self.criteria.violations(step)
            if reasons:
                return f"{step.participants} participants: " + "; ".join(reasons)
        return None

    @property
    def capacity(self) -> int:
        """Participants of the last passing step before the first failing one (0 if none)."""
        best = 0
        for step in self.steps:
            if not self.criteria.passes(step):
                break
            best = step.participants
        return best

    @property
    def cpu_us_per_participant_tick(self) -> float:
        """Median over the passing steps (all steps when none passed)."""
        passing = [s for s in self.steps if self.criteria.passes(s)] or list(self.steps)
        if not passing:
            return 0.0
        return float(np.median([s.cpu_us_per_participant_tick for s in passing]))


def make_step(
    *,
    system: str,
    participants: int,
    before: ProcSample,
    after: ProcSample,
    ticks: int,
    lateness_ms: tuple[float, float, float],
    loadgen_window: dict[str, Any],
    failed_calls: int = 0,
    loadgen_samples: tuple[ProcSample, ProcSample] | None = None,
) -> StepResult:
    """Combine one step's measurements: ``/proc`` samples of the system under test taken at
    the start and end of the window, its tick count and lateness ``(p50, p99, max)`` in ms,
    and the load generator's ``stats()["window"]`` over the same window (optionally its own
    ``/proc`` samples, to see whether the generator saturated)."""
    cpu_seconds = after.cpu_seconds - before.cpu_seconds
    return StepResult(
        system=system,
        participants=participants,
        duration_s=after.wall - before.wall,
        ticks=ticks,
        lateness_p50_ms=lateness_ms[0],
        lateness_p99_ms=lateness_ms[1],
        lateness_max_ms=lateness_ms[2],
        packets_sent=int(loadgen_window["packets_sent"]),
        packets_received=int(loadgen_window["packets_received"]),
        packets_expected=int(loadgen_window["packets_expected"]),
        loss_pct=float(loadgen_window["loss_pct"]),
        # The busiest process: a bridge with media workers saturates when one of them does.
        cpu_pct=max(cpu_percent_by_pid(before, after).values()),
        cpu_us_per_participant_tick=(
            cpu_us_per_participant_tick(cpu_seconds, participants, ticks)
            if participants and ticks else 0.0
        ),
        rss_bytes=after.rss_bytes,
        failed_calls=failed_calls,
        loadgen_cpu_pct=cpu_percent(*loadgen_samples) if loadgen_samples else 0.0,
    )


_COLUMNS: tuple[tuple[str, str, Callable[[StepResult], object]], ...] = (
    ("system", "{:<9}", attrgetter("system")),
    ("parts", "{:>6}", attrgetter("participants")),
    ("p50 ms", "{:>7.2f}", attrgetter("lateness_p50_ms")),
    ("p99 ms", "{:>7.2f}", attrgetter("lateness_p99_ms")),
    ("max ms", "{:>7.2f}", attrgetter("lateness_max_ms")),
    ("loss %", "{:>7.3f}", attrgetter("loss_pct")),
    ("CPU %", "{:>6.1f}", attrgetter("cpu_pct")),
    ("us/p-tick", "{:>9.2f}", attrgetter("cpu_us_per_participant_tick")),
    ("RSS MiB", "{:>8.1f}", lambda s: s.rss_bytes / 2**20),
    ("KiB/p", "{:>7.1f}", lambda s: s.rss_per_participant_bytes / 1024),
    ("failed", "{:>6}", attrgetter("failed_calls")),
    ("gen CPU %", "{:>6.1f}", attrgetter("loadgen_cpu_pct")),
)


def format_table(runs: Sequence[CapacityRun]) -> str:
    """A fixed-width terminal table of every step (``*`` marks steps over capacity) and one
    summary line per run."""
    widths = [max(len(fmt.format(getter(_EXAMPLE))), len(name)) for name, fmt, getter in _COLUMNS]
    header = "  ".join(name.rjust(w) if i else name.ljust(w)
                       for i, ((name, _, _), w) in enumerate(zip(_COLUMNS, widths, strict=True)))
    lines = [header, "-" * len(header)]
    for run in runs:
        for step in run.steps:
            cells = [fmt.format(getter(step)).rjust(w)
                     for (_, fmt, getter), w in zip(_COLUMNS, widths, strict=True)]
            mark = "" if run.criteria.passes(step) else "*"
            lines.append("  ".join(cells) + (" " + mark if mark else ""))
    for run in runs:
        reason = run.stop_reason or "no step over capacity"
        lines.append(f"{run.system}: capacity {run.capacity} participants "
                     f"(rooms of {run.rooms_of}, {run.talkers} talkers), "
                     f"{run.cpu_us_per_participant_tick:.2f} us CPU per participant-tick; "
                     f"stop: {reason}")
    return "\n".join(lines)


_EXAMPLE = StepResult(system="bridge", participants=0, duration_s=0, ticks=0, lateness_p50_ms=0,
                      lateness_p99_ms=0, lateness_max_ms=0, packets_sent=0, packets_received=0,
                      packets_expected=0, loss_pct=0, cpu_pct=0, cpu_us_per_participant_tick=0,
                      rss_bytes=0)


def runs_to_json(runs: Sequence[CapacityRun], **meta: Any) -> dict[str, Any]:
    """A JSON-ready document: ``meta`` (machine, versions, ...) and per run its criteria,
    capacity, stop reason, median CPU us per participant-tick and steps."""
    return {
        **meta,
        "runs": [
            {
                "system": run.system,
                "rooms_of": run.rooms_of,
                "talkers": run.talkers,
                "criteria": asdict(run.criteria),
                "capacity": run.capacity,
                "stop_reason": run.stop_reason,
                "cpu_us_per_participant_tick": run.cpu_us_per_participant_tick,
                "steps": [
                    {**asdict(step), "rss_per_participant_bytes": step.rss_per_participant_bytes}
                    for step in run.steps
                ],
            }
            for run in runs
        ],
    }


def write_json(path: str | Path, runs: Sequence[CapacityRun], **meta: Any) -> None:
    """Write :func:`runs_to_json` to ``path``."""
    Path(path).write_text(json.dumps(runs_to_json(runs, **meta), indent=2) + "\n",
                          encoding="utf-8")


# --------------------------------------------------------------------------- PNG

RgbImage = npt.NDArray[np.uint8]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + kind + data + struct.pack(
        "!I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: RgbImage) -> bytes:
    """Encode an ``(height, width, 3)`` uint8 RGB array as a PNG (8-bit truecolour,
    colour type 2, no interlace; every scanline with filter type 0)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("encode_png takes an (height, width, 3) uint8 array")
    height, width = image.shape[:2]
    rows = np.zeros((height, 1 + width * 3), dtype=np.uint8)
    rows[:, 1:] = image.reshape(height, width * 3)
    header = struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join((
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", header),
        _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)),
        _chunk(b"IEND", b""),
    ))


# 3x5 glyphs, rows top to bottom, '#' = ink.
_GLYPHS = {
    "0": "###,#.#,#.#,#.#,###", "1": ".#.,##.,.#.,.#.,###", "2": "###,..#,###,#..,###",
    "3": "###,..#,.##,..#,###", "4": "#.#,#.#,###,..#,..#", "5": "###,#..,###,..#,###",
    "6": "###,#..,###,#.#,###", "7": "###,..#,..#,.#.,.#.", "8": "###,#.#,###,#.#,###",
    "9": "###,#.#,###,..#,###", ".": "...,...,...,...,.#.", "%": "#.#,..#,.#.,#..,#.#",
    " ": "...,...,...,...,...", "A": ".#.,#.#,###,#.#,#.#", "B": "##.,#.#,##.,#.#,##.",
    "C": "###,#..,#..,#..,###", "D": "##.,#.#,#.#,#.#,##.", "E": "###,#..,##.,#..,###",
    "G": "###,#..,#.#,#.#,###", "I": "###,.#.,.#.,.#.,###", "L": "#..,#..,#..,#..,###",
    "M": "#.#,###,###,#.#,#.#", "N": "##.,#.#,#.#,#.#,#.#", "P": "###,#.#,###,#..,#..",
    "R": "##.,#.#,##.,#.#,#.#", "S": "###,#..,###,..#,###", "T": "###,.#.,.#.,.#.,.#.",
    "U": "#.#,#.#,#.#,#.#,###", "Y": "#.#,#.#,.#.,.#.,.#.", "-": "...,...,###,...,...",
    "W": "#.#,#.#,###,###,#.#", "K": "#.#,#.#,##.,#.#,#.#", "O": "###,#.#,#.#,#.#,###",
    "X": "#.#,#.#,.#.,#.#,#.#", "F": "###,#..,##.,#..,#..", "H": "#.#,#.#,###,#.#,#.#",
}
_COLOURS = {"bridge": (31, 119, 180), "relay": (255, 127, 14),
            "bridge-1w": (31, 119, 180), "bridge-2w": (148, 103, 189)}
_OTHER = (44, 160, 44)
_LIMIT = (214, 39, 40)
_INK = (40, 40, 40)
_GRID = (225, 225, 225)


def _text(image: RgbImage, at: tuple[int, int], text: str, colour: tuple[int, int, int],
          scale: int = 2) -> None:
    x, y = at
    for char in text.upper():
        glyph = _GLYPHS.get(char, _GLYPHS[" "])
        for row, bits in enumerate(glyph.split(",")):
            for col, bit in enumerate(bits):
                if bit == "#":
                    y0, x0 = y + row * scale, x + col * scale
                    image[max(y0, 0):max(y0 + scale, 0), max(x0, 0):max(x0 + scale, 0)] = colour
        x += 4 * scale


def _line(image: RgbImage, p0: tuple[float, float], p1: tuple[float, float],
          colour: tuple[int, int, int], *, width: int = 2, dash: int = 0) -> None:
    steps = int(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1]))) + 1
    xs = np.rint(np.linspace(p0[0], p1[0], steps)).astype(np.int64)
    ys = np.rint(np.linspace(p0[1], p1[1], steps)).astype(np.int64)
    if dash:
        keep = (np.arange(steps) // dash) % 2 == 0
        xs, ys = xs[keep], ys[keep]
    height, width_px = image.shape[:2]
    for dy in range(width):
        for dx in range(width):
            yy, xx = ys + dy - width // 2, xs + dx - width // 2
            ok = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width_px)
            image[yy[ok], xx[ok]] = colour


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** np.floor(np.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _label(value: float) -> str:
    return f"{value:g}" if value < 1000 else f"{value:.0f}"


def _panel(image: RgbImage, box: tuple[int, int, int, int], runs: Sequence[CapacityRun], *,
           metric: str, limit: float, title: str) -> None:
    left, top, right, bottom = box
    x_max = _nice_max(max((s.participants for r in runs for s in r.steps), default=1))
    values = [getattr(s, metric) for r in runs for s in r.steps]
    y_max = _nice_max(max([*values, limit * 1.25]))

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (right - left) * x / x_max,
                bottom - (bottom - top) * min(y, y_max) / y_max)

    for k in range(1, 5):  # grid and tick labels
        gy = bottom - (bottom - top) * k / 4
        gx = left + (right - left) * k / 4
        _line(image, (left, gy), (right, gy), _GRID, width=1)
        _line(image, (gx, top), (gx, bottom), _GRID, width=1)
        _text(image, (left - 46, int(gy) - 5), _label(y_max * k / 4).rjust(5), _INK)
        label = _label(x_max * k / 4)
        _text(image, (int(gx) - 4 * len(label), bottom + 8), label, _INK)
    _text(image, (left - 10, bottom + 8), "0", _INK)
    _line(image, (left, top), (left, bottom), _INK)
    _line(image, (left, bottom), (right, bottom), _INK)
    _line(image, to_px(0, limit), to_px(x_max, limit), _LIMIT, width=1, dash=6)
    _text(image, (left + 6, top - 18), title, _INK)
    for run in runs:
        colour = _COLOURS.get(run.system, _OTHER)
        points = [to_px(s.participants, getattr(s, metric)) for s in run.steps]
        for a, b in itertools.pairwise(points):
            _line(image, a, b, colour, width=3)
        for x, y in points:
            image[int(y) - 3:int(y) + 4, int(x) - 3:int(x) + 4] = colour


def render_capacity_png(path: str | Path | None, runs: Sequence[CapacityRun], *,
                        width: int = 960, height: int = 420) -> bytes:
    """Draw participants vs p99 tick lateness (left) and vs CPU % (right), one line per run
    (bridge blue, relay orange), the stop limits dashed red; write it to ``path`` when given
    and return the PNG bytes."""
    if width < 400 or height < 200:
        raise ValueError("the chart needs at least 400 x 200 pixels")
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    criteria = runs[0].criteria if runs else StopCriteria()
    half = width // 2
    _panel(image, (70, 50, half - 30, height - 60), runs,
           metric="lateness_p99_ms", limit=criteria.max_p99_lateness_ms, title="P99 LATENESS MS")
    _panel(image, (half + 70, 50, width - 30, height - 60), runs,
           metric="cpu_pct", limit=criteria.max_cpu_pct, title="CPU %")
    _text(image, (half - 60, height - 26), "PARTICIPANTS", _INK)
    x = width - 30 - 8 * 14
    for run in runs:
        colour = _COLOURS.get(run.system, _OTHER)
        image[14:24, x:x + 10] = colour
        _text(image, (x + 14, 14), run.system, _INK)
        x -= 8 * (len(run.system) + 3)
    data = encode_png(image)
    if path is not None:
        Path(path).write_bytes(data)
    return data
