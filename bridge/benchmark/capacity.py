"""``bridge bench capacity``: ramp real SIP calls into a bridge, find where its clock breaks.

The runner starts the bridge (:mod:`bridge.benchmark.bridge_worker`) and the load generator
(:mod:`bridge.benchmark.loadgen`, sip mode) in processes of their own. Each ramp step adds
callers until the step's participant count: every caller dials the access number, keys the
language and its room's PIN as RFC 4733 events, goes through the IVR into its conference and
streams PCMU every 20 ms (rooms of ``rooms_of``, the first ``talkers`` of each room talking).
When every caller of the step has joined, the runner waits ``settle_seconds`` and measures
over ``step_seconds``: the bridge's tick lateness p50/p99/max, packet loss seen by the
callers, the bridge process's CPU % and resident memory per participant (``/proc``). The ramp
stops at the first step that breaks the :class:`~bridge.benchmark.report.StopCriteria`
(p99 lateness >= 5 ms, loss >= 0.1 % or CPU >= 85 %; a failing step is measured once more
before it counts, so one hiccup of a shared machine does not end the ramp).

The baseline is measured in the same run with the same steps: the bare relay
(:func:`bridge.benchmark.baseline.measure_relay`, no SIP). The bridge's cost is reported as
the ratio of CPU microseconds per participant-tick, bridge over relay, at the steps both
passed (:func:`cost_ratio`), and :func:`recommended_limit` turns the bridge's capacity into a
value for ``[media] max_participants``.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from bridge.benchmark.baseline import measure_relay
from bridge.benchmark.bridge_worker import BridgeWorkerConfig, BridgeWorkerProcess, Routing
from bridge.benchmark.control import ControlError
from bridge.benchmark.loadgen import LoadGenConfig, LoadGenerator
from bridge.benchmark.procstats import ProcMeter
from bridge.benchmark.report import (
    CapacityRun,
    StepResult,
    StopCriteria,
    format_table,
    make_step,
    render_capacity_png,
    write_json,
)

__all__ = [
    "FULL_STEPS",
    "HEADROOM",
    "QUICK_STEPS",
    "CapacityOptions",
    "CapacityReport",
    "cost_ratio",
    "format_summary",
    "measure_bridge",
    "plan_steps",
    "recommended_limit",
    "run_capacity",
]

FULL_STEPS = (100, 200, 400, 600, 800, 1000, 1200, 1500, 1800, 2100)
QUICK_STEPS = (90, 240, 480)
HEADROOM = 0.8  # the admission limit recommended from a measured capacity
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityOptions:
    """What ``bridge bench capacity`` runs (the CLI flags, and tuning for tests).

    ``steps`` None: :data:`FULL_STEPS` (``QUICK_STEPS`` when ``quick``) up to
    ``max_participants``, see :func:`plan_steps`.
    """

    rooms_of: int = 3
    talkers: int = 3
    max_participants: int = 2100
    quick: bool = False
    steps: tuple[int, ...] | None = None
    step_seconds: float = 5.0
    settle_seconds: float = 1.0
    join_timeout: float = 60.0
    call_rate: float = 200.0
    routing: Routing = "conference"
    workers: int = 0  # media worker processes of the bridge ([media] workers)
    scaling: bool = False  # then also ramp the bridge with twice the workers (at least 1 -> 2)
    baseline: bool = True
    confirm_failures: int = 1
    criteria: StopCriteria = field(default_factory=StopCriteria)

    def __post_init__(self) -> None:
        if self.rooms_of < 1 or self.talkers < 0:
            raise ValueError("rooms_of must be positive and talkers not negative")
        if self.max_participants < self.rooms_of:
            raise ValueError("max_participants must hold at least one room")

    @classmethod
    def quick_run(cls, **changes: Any) -> CapacityOptions:
        """``--quick``: three short steps per system, the whole run well under a minute."""
        return cls(**{"quick": True, "step_seconds": 2.0, "settle_seconds": 0.5,
                      "max_participants": QUICK_STEPS[-1], **changes})


def plan_steps(options: CapacityOptions) -> tuple[int, ...]:
    """The ramp: the given or default steps, rounded down to whole rooms, at most
    ``max_participants`` (which is always the last step), increasing, no duplicates."""
    base = options.steps or (QUICK_STEPS if options.quick else FULL_STEPS)
    n = options.rooms_of
    top = options.max_participants // n * n
    steps = sorted({s // n * n for s in base if n <= s <= top} | {top})
    return tuple(steps)


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityReport:
    """Both runs of one ``bridge bench capacity``."""

    bridge: CapacityRun
    relay: CapacityRun | None
    meta: dict[str, Any]
    scaled: CapacityRun | None = None  # --scaling: the bridge with twice the workers

    @property
    def runs(self) -> list[CapacityRun]:
        return [r for r in (self.bridge, self.scaled, self.relay) if r is not None]

    @property
    def scaling(self) -> float | None:
        """Capacity with twice the media workers over capacity with the base count; None
        unless the base run found its limit (a ramp that never failed has no capacity to
        compare, only the top step it was given)."""
        if self.scaled is None or self.bridge.stop_reason is None or not self.bridge.capacity:
            return None
        return self.scaled.capacity / self.bridge.capacity

    @property
    def ratio(self) -> float | None:
        """Bridge over relay CPU per participant-tick (see :func:`cost_ratio`)."""
        return cost_ratio(self.bridge, self.relay) if self.relay is not None else None


def cost_ratio(bridge: CapacityRun, relay: CapacityRun) -> float | None:
    """Median over the participant counts both runs passed of bridge / relay CPU us per
    participant-tick (same load, same run); None when they share no passing step."""
    relay_cost = {s.participants: s.cpu_us_per_participant_tick
                  for s in relay.steps if relay.criteria.passes(s)}
    ratios = [s.cpu_us_per_participant_tick / relay_cost[s.participants]
              for s in bridge.steps
              if bridge.criteria.passes(s) and relay_cost.get(s.participants, 0.0) > 0]
    return float(np.median(ratios)) if ratios else None


def recommended_limit(run: CapacityRun, headroom: float = HEADROOM) -> int:
    """A ``[media] max_participants`` for this machine: the measured capacity with headroom
    for signalling bursts, prompts and neighbours (0 when nothing passed)."""
    return int(run.capacity * headroom)


def _echo(stream: TextIO) -> Progress:
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {line}", file=stream, flush=True)
    return progress


def _wait_joined(bridge: BridgeWorkerProcess, total: int, timeout: float) -> dict[str, Any]:
    """Poll the bridge until ``total`` legs sit in their conferences (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = bridge.stats(mark=False)
        if stats["joined"] >= total or time.monotonic() >= deadline:
            return stats
        time.sleep(0.25)


def _measure_step(
    *, system: str, bridge: BridgeWorkerProcess, gen: LoadGenerator, meter: ProcMeter,
    gen_meter: ProcMeter, participants: int, seconds: float, failed_calls: int,
) -> StepResult:
    gen.stats(mark=True)
    bridge.stats(mark=True)
    before, gen_before = meter.sample(), gen_meter.sample()
    time.sleep(seconds)
    after, gen_after = meter.sample(), gen_meter.sample()
    stats = bridge.stats(mark=True)
    window = gen.stats(mark=True)["window"]
    return make_step(
        system=system, participants=participants, before=before, after=after,
        ticks=int(stats["ticks"]),
        lateness_ms=(float(stats["lateness_p50_ms"]), float(stats["lateness_p99_ms"]),
                     float(stats["lateness_max_ms"])),
        loadgen_window=window, failed_calls=failed_calls,
        loadgen_samples=(gen_before, gen_after),
    )


def _describe(step: StepResult, criteria: StopCriteria) -> str:
    verdict = "ok" if criteria.passes(step) else "OVER: " + "; ".join(criteria.violations(step))
    return (f"p99 {step.lateness_p99_ms:.2f} ms, loss {step.loss_pct:.3f} %, "
            f"CPU {step.cpu_pct:.0f} %, {step.cpu_us_per_participant_tick:.1f} us/p-tick, "
            f"{step.rss_per_participant_bytes / 1024:.0f} KiB/p -> {verdict}")


def measure_bridge(options: CapacityOptions, progress: Progress | None = None,
                   *, profile: Path | None = None, system: str = "bridge") -> CapacityRun:
    """Ramp the bridge through :func:`plan_steps` with real SIP calls (see the module
    docstring). ``profile``: a cProfile of the bridge over the last measured step is dumped
    there (its overhead inflates that step's CPU)."""
    say = progress or (lambda _line: None)
    steps = plan_steps(options)
    rooms = -(-steps[-1] // options.rooms_of)
    criteria = options.criteria
    results: list[StepResult] = []
    say(f"{system}: starting ({options.routing} routing, {rooms} rooms of {options.rooms_of}, "
        f"{options.talkers} talkers, {options.workers} media workers, "
        f"steps {', '.join(map(str, steps))})")
    bridge = BridgeWorkerProcess(BridgeWorkerConfig(rooms=rooms, routing=options.routing,
                                                    workers=options.workers))
    try:
        gen = LoadGenerator(LoadGenConfig(
            mode="sip", rooms_of=options.rooms_of, talkers=options.talkers,
            call_rate=options.call_rate, pin_delay=0.5,
        ))
        try:
            meter = ProcMeter([bridge.pid, *bridge.worker_pids])
            gen_meter = ProcMeter([gen.pid])
            room_map = dict(enumerate(bridge.rooms))
            current = failed = 0
            for total in steps:
                added = total - current
                say(f"{system}: {total} participants: placing {added} calls")
                reply = gen.add(added, rooms=room_map, timeout=options.join_timeout)
                current = total
                failed += int(reply["states"].get("failed", 0))
                joined = _wait_joined(bridge, total - failed, options.join_timeout)
                say(f"{system}: {total} participants: {joined['joined']} joined, "
                    f"{failed} failed calls; measuring {options.step_seconds:g} s")
                time.sleep(options.settle_seconds)
                last = total == steps[-1]
                for attempt in range(1 + options.confirm_failures):
                    if profile is not None and last:
                        bridge.profile_start()
                    step = _measure_step(
                        system=system, bridge=bridge, gen=gen, meter=meter,
                        gen_meter=gen_meter,
                        participants=int(joined["joined"]), seconds=options.step_seconds,
                        failed_calls=failed,
                    )
                    if profile is not None and last:
                        bridge.profile_stop(profile)
                    say(f"{system}: {total} participants: {_describe(step, criteria)}")
                    if criteria.passes(step) or attempt == options.confirm_failures:
                        break
                    say(f"{system}: {total} participants: measuring again")
                results.append(step)
                if not criteria.passes(step):
                    break
            gen.hangup_all()
        finally:
            gen.close()
    finally:
        bridge.close(timeout=30.0)
    return CapacityRun(system=system, rooms_of=options.rooms_of, talkers=options.talkers,
                       steps=tuple(results), criteria=criteria)


def run_capacity(options: CapacityOptions, progress: Progress | None = None,
                 *, profile: Path | None = None) -> CapacityReport:
    """The bridge ramp, then the relay ramp over the bridge's steps (the baseline)."""
    say = progress or (lambda _line: None)
    started = time.monotonic()
    scaled = None
    if options.scaling:
        base = max(1, options.workers)
        options = replace(options, workers=base)
        bridge = measure_bridge(options, progress, system=f"bridge-{base}w")
        # Twice the workers, twice each step (whole rooms): the same load per worker.
        n = options.rooms_of
        double = replace(options, workers=2 * base,
                         steps=tuple(2 * s // n * n for s in plan_steps(options)),
                         max_participants=2 * options.max_participants // n * n)
        scaled = measure_bridge(double, progress, profile=profile,
                                system=f"bridge-{2 * base}w")
    else:
        bridge = measure_bridge(options, progress, profile=profile)
    relay = None
    if options.baseline:
        # The relay ramps the same participant counts the bridge reached, and goes on to the
        # planned top so both curves cover the same range.
        steps = plan_steps(options)
        say(f"relay: baseline ramp {', '.join(map(str, steps))} (no SIP)")
        relay = measure_relay(steps, rooms_of=options.rooms_of, talkers=options.talkers,
                              step_seconds=options.step_seconds,
                              settle_seconds=options.settle_seconds,
                              criteria=options.criteria,
                              confirm_failures=options.confirm_failures)
        for step in relay.steps:
            say(f"relay: {step.participants} participants: {_describe(step, relay.criteria)}")
    meta = {
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpus": _cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "options": {**asdict(options), "criteria": asdict(options.criteria)},
        "started": time.time(),
        "elapsed_s": 0.0,
    }
    report = CapacityReport(bridge=bridge, relay=relay, meta=meta, scaled=scaled)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    meta["ratio_bridge_over_relay"] = report.ratio
    meta["scaling_capacity_ratio"] = report.scaling
    meta["recommended_max_participants"] = recommended_limit(bridge)
    return report


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))


def format_summary(report: CapacityReport) -> str:
    """The table, then the ratio and the recommended admission limit."""
    lines = [format_table(report.runs)]
    ratio = report.ratio
    if ratio is not None:
        lines.append(f"cost: bridge / relay CPU per participant-tick = {ratio:.2f}x "
                     f"(median over the steps both passed)")
    scaled = report.scaled
    if scaled is not None:
        base = report.bridge
        scaling = report.scaling
        lines.append(
            f"scaling: {scaled.system} {scaled.capacity} vs {base.system} {base.capacity} "
            "participants = " + (f"{scaling:.2f}x" if scaling is not None else
                                 f"n/a ({base.system} passed every step: raise "
                                 "--max-participants)")
            + f"; CPU per participant-tick {scaled.cpu_us_per_participant_tick:.2f} vs "
            f"{base.cpu_us_per_participant_tick:.2f} us")
    lines.append(f"recommended [media] max_participants = {recommended_limit(report.bridge)} "
                 f"({HEADROOM:.0%} of the bridge's capacity {report.bridge.capacity})")
    return "\n".join(lines)


def main(options: CapacityOptions, *, json_path: str | None = None,
         plot_path: str | None = None, stream: TextIO | None = None,
         profile: Path | None = None) -> int:
    """Run, print the table and summary on stdout, write JSON and PNG; 1 when a worker
    failed (one line on stderr)."""
    out = stream or sys.stdout
    try:
        report = run_capacity(options, _echo(sys.stderr), profile=profile)
    except ControlError as exc:
        print(f"bridge bench capacity: {exc}", file=sys.stderr)
        return 1
    print(format_summary(report), file=out)
    if json_path:
        write_json(json_path, report.runs, **report.meta)
    if plot_path:
        render_capacity_png(plot_path, report.runs)
    return 0

