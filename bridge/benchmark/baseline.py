"""Ramp the bare relay (:mod:`bridge.benchmark.relay`) with the rtp-mode load generator.

This is the baseline half of ``bridge bench capacity``: the same ramp steps and stop criteria
as the bridge run, against the bare numpy relay, so the bridge's CPU per participant-tick can
be divided by the relay's. CPU and RSS are read from ``/proc`` for the relay process only.

``python -m bridge.benchmark.baseline --rooms-of 3 --steps 100,200,400,800,1200`` prints the
table (and writes ``--json``/``--plot`` when given).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from bridge.benchmark.loadgen import LoadGenConfig, LoadGenerator
from bridge.benchmark.procstats import ProcMeter
from bridge.benchmark.relay import RelayConfig, RelayProcess
from bridge.benchmark.report import (
    CapacityRun,
    StepResult,
    StopCriteria,
    format_table,
    make_step,
    render_capacity_png,
    write_json,
)

__all__ = ["DEFAULT_STEPS", "QUICK_STEPS", "main", "measure_relay"]

DEFAULT_STEPS = (100, 200, 400, 800, 1200, 1600, 2000)
QUICK_STEPS = (100, 200, 400, 800, 1200)


def measure_relay(
    steps: Sequence[int] = QUICK_STEPS,
    *,
    rooms_of: int = 3,
    talkers: int = 3,
    step_seconds: float = 5.0,
    settle_seconds: float = 1.0,
    criteria: StopCriteria | None = None,
    stop_on_failure: bool = True,
    confirm_failures: int = 1,
) -> CapacityRun:
    """Ramp the relay through ``steps`` (total participants, increasing) and measure each step
    over ``step_seconds`` after ``settle_seconds``; stop after the first failing step unless
    ``stop_on_failure`` is False. A failing step is measured again up to ``confirm_failures``
    times (a shared machine's hiccup should not end the ramp); the last measurement counts."""
    criteria = criteria or StopCriteria()
    results: list[StepResult] = []
    relay = RelayProcess(RelayConfig(rooms_of=rooms_of, max_participants=max(steps)))
    try:
        gen = LoadGenerator(LoadGenConfig(mode="rtp", rooms_of=rooms_of, talkers=talkers))
        try:
            meter, gen_meter = ProcMeter([relay.pid]), ProcMeter([gen.pid])
            current = 0
            for total in steps:
                if total <= current:
                    raise ValueError("steps must increase")
                ports = relay.add(total - current)
                gen.add(total - current, targets=ports)
                current = total
                time.sleep(settle_seconds)
                for _attempt in range(1 + confirm_failures):
                    gen.stats(mark=True)
                    relay.stats(mark=True)
                    before, gen_before = meter.sample(), gen_meter.sample()
                    time.sleep(step_seconds)
                    after, gen_after = meter.sample(), gen_meter.sample()
                    relay_stats = relay.stats(mark=True)
                    window = gen.stats(mark=True)["window"]
                    step = make_step(
                        system="relay", participants=total, before=before, after=after,
                        ticks=relay_stats.ticks,
                        lateness_ms=(relay_stats.lateness_p50_ms, relay_stats.lateness_p99_ms,
                                     relay_stats.lateness_max_ms),
                        loadgen_window=window,
                        loadgen_samples=(gen_before, gen_after),
                    )
                    if criteria.passes(step):
                        break
                results.append(step)
                if stop_on_failure and not criteria.passes(step):
                    break
            gen.hangup_all()
        finally:
            gen.close()
    finally:
        relay.close()
    return CapacityRun(system="relay", rooms_of=rooms_of, talkers=talkers,
                       steps=tuple(results), criteria=criteria)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bridge.benchmark.baseline``."""
    parser = argparse.ArgumentParser(prog="python -m bridge.benchmark.baseline")
    parser.add_argument("--rooms-of", type=int, default=3)
    parser.add_argument("--talkers", type=int, default=3)
    parser.add_argument("--steps", default=",".join(map(str, QUICK_STEPS)))
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    run = measure_relay([int(s) for s in args.steps.split(",")], rooms_of=args.rooms_of,
                        talkers=args.talkers, step_seconds=args.step_seconds)
    print(format_table([run]))
    if args.json:
        write_json(args.json, [run])
    if args.plot:
        render_capacity_png(args.plot, [run])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
