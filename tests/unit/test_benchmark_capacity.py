"""``bridge bench capacity`` pieces that need no processes: the ramp plan, the bridge/relay
cost ratio, the recommended admission limit, the benchmark rooms' PINs, the CLI's input
checks."""

from __future__ import annotations

import pytest

from bridge.benchmark.bridge_worker import ACCESS_NUMBER, BridgeWorkerConfig, _rooms, room_pins
from bridge.benchmark.capacity import (
    FULL_STEPS,
    QUICK_STEPS,
    CapacityOptions,
    CapacityReport,
    cost_ratio,
    format_summary,
    plan_steps,
    recommended_limit,
)
from bridge.benchmark.report import CapacityRun, StepResult
from bridge.cli import main as cli_main
from bridge.conference.pins import check_pin_pair


def step(system: str, participants: int, us: float, *, p99: float = 1.0) -> StepResult:
    return StepResult(system=system, participants=participants, duration_s=5.0, ticks=250,
                      lateness_p50_ms=0.5, lateness_p99_ms=p99, lateness_max_ms=p99,
                      packets_sent=0, packets_received=0, packets_expected=0, loss_pct=0.0,
                      cpu_pct=50.0, cpu_us_per_participant_tick=us,
                      rss_bytes=participants * 100_000)


def run(system: str, *steps: StepResult) -> CapacityRun:
    return CapacityRun(system=system, rooms_of=3, talkers=3, steps=steps)


def test_full_plan_is_the_default_steps_up_to_the_maximum() -> None:
    assert plan_steps(CapacityOptions()) == tuple(s // 3 * 3 for s in FULL_STEPS)
    assert plan_steps(CapacityOptions(max_participants=1000)) == (99, 198, 399, 600, 798, 999)


def test_plan_rounds_to_whole_rooms_and_always_ends_at_the_maximum() -> None:
    options = CapacityOptions(rooms_of=5, max_participants=432, steps=(7, 100, 100, 250, 900))
    assert plan_steps(options) == (5, 100, 250, 430)


def test_quick_plan() -> None:
    options = CapacityOptions.quick_run()
    assert options.step_seconds <= 2.0
    assert plan_steps(options) == QUICK_STEPS
    assert plan_steps(CapacityOptions.quick_run(rooms_of=4, max_participants=300)) == (
        88, 240, 300)


@pytest.mark.parametrize("changes", [{"rooms_of": 0}, {"talkers": -1},
                                     {"rooms_of": 10, "max_participants": 9}])
def test_options_refuse_nonsense(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        CapacityOptions(**changes)  # type: ignore[arg-type]


def test_cost_ratio_compares_only_steps_both_passed() -> None:
    bridge = run("bridge", step("bridge", 100, 30.0), step("bridge", 200, 36.0),
                 step("bridge", 400, 90.0, p99=12.0))
    relay = run("relay", step("relay", 100, 15.0), step("relay", 200, 18.0),
                step("relay", 400, 16.0), step("relay", 800, 17.0))
    # 100: 2.0x, 200: 2.0x; the bridge failed 400 so that step is not compared.
    assert cost_ratio(bridge, relay) == pytest.approx(2.0)
    odd = run("relay", step("relay", 150, 10.0))
    assert cost_ratio(bridge, odd) is None


def test_recommended_limit_keeps_headroom() -> None:
    bridge = run("bridge", step("bridge", 300, 30.0), step("bridge", 600, 30.0),
                 step("bridge", 900, 60.0, p99=9.0))
    assert bridge.capacity == 600
    assert recommended_limit(bridge) == 480
    assert recommended_limit(bridge, headroom=0.5) == 300
    assert recommended_limit(run("bridge", step("bridge", 3, 9.0, p99=6.0))) == 0


def test_summary_names_ratio_and_limit() -> None:
    report = CapacityReport(
        bridge=run("bridge", step("bridge", 300, 45.0)),
        relay=run("relay", step("relay", 300, 15.0)),
        meta={},
    )
    text = format_summary(report)
    assert "= 3.00x" in text
    assert "recommended [media] max_participants = 240" in text


def test_room_pins_are_valid_and_unique_across_rooms_and_roles() -> None:
    seen: set[str] = set()
    for index in range(3000):
        participant, moderator = room_pins(index)
        check_pin_pair(participant, moderator)
        seen.update((participant, moderator))
    assert len(seen) == 6000
    with pytest.raises(ValueError):
        room_pins(-1)


def test_rooms_for_the_load_generator() -> None:
    conference = _rooms(BridgeWorkerConfig(rooms=2), 5080)
    assert conference[1] == {"uri": f"sip:{ACCESS_NUMBER}@127.0.0.1:5080",
                             "pin": "2" + room_pins(1)[0]}
    direct = _rooms(BridgeWorkerConfig(rooms=2, routing="direct"), 5080)
    assert direct[0] == {"uri": "sip:bench-0@127.0.0.1:5080", "pin": None}


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--talkers", "4"], "--talkers 4 is more than --rooms-of 3"),
        (["--rooms-of", "0"], "--rooms-of"),
        (["--max-participants", "2"], "--max-participants must hold one room"),
        (["--talkers", "x"], "--talkers"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv: list[str], fragment: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "capacity", *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1


def test_cli_needs_a_benchmark_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench"]) == 2
    assert "required" in capsys.readouterr().err


def test_scaling_compares_capacities_only_when_the_base_run_found_its_limit() -> None:
    base = run("bridge-1w", step("bridge-1w", 300, 15.0), step("bridge-1w", 600, 16.0, p99=9.0))
    double = run("bridge-2w", step("bridge-2w", 600, 15.5), step("bridge-2w", 1200, 16.5, p99=7.0))
    report = CapacityReport(bridge=base, relay=None, meta={}, scaled=double)
    assert report.scaling == pytest.approx(2.0)  # 600 / 300
    assert [r.system for r in report.runs] == ["bridge-1w", "bridge-2w"]
    assert "scaling: bridge-2w 600 vs bridge-1w 300 participants = 2.00x" in format_summary(report)
    unbounded = run("bridge-1w", step("bridge-1w", 300, 15.0), step("bridge-1w", 600, 16.0))
    report = CapacityReport(bridge=unbounded, relay=None, meta={}, scaled=double)
    assert report.scaling is None
    assert "n/a (bridge-1w passed every step" in format_summary(report)


def test_cli_workers_must_be_a_whole_number(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "capacity", "--workers", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers" in err[0]
