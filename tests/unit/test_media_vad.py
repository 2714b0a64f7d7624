"""Voice-activity gate: levels, hysteresis with hangover, transitions, adaptive noise floor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.media.vad import Vad, VadConfig

SAMPLES = 160


def tone(amplitude: float, legs: int = 1, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(SAMPLES) / 8000.0
    row = np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return np.tile(row, (legs, 1))


def test_levels_in_dbov() -> None:
    vad = Vad(VadConfig(), capacity=4)
    block = np.zeros((4, SAMPLES), dtype=np.int16)
    block[0] = 32767 * np.where(np.arange(SAMPLES) % 2 == 0, 1, -1)  # full-scale square wave
    block[1] = tone(16384)[0]  # half-scale sine: -6.02 - 3.01 dB
    block[3] = tone(33)[0]
    level = vad.update(block).level_dbov
    assert level[0] == pytest.approx(20 * math.log10(32767 / 32768), abs=0.01)
    assert level[1] == pytest.approx(-6.02 - 3.01, abs=0.05)
    assert level[2] == -127.0  # digital silence is clamped to the RFC 6464 floor
    assert level[3] == pytest.approx(20 * math.log10(33 / 32768) - 3.01, abs=0.1)


def test_hysteresis_start_after_n_loud_frames_and_hangover() -> None:
    cfg = VadConfig(threshold_dbov=-40.0, start_frames=5, hangover_frames=40)
    vad = Vad(cfg, capacity=2)
    loud = np.vstack([tone(8000)[0], np.zeros(SAMPLES, np.int16)])
    quiet = np.zeros((2, SAMPLES), dtype=np.int16)
    for _ in range(4):
        res = vad.update(loud)
        assert not res.talking.any() and res.started.size == 0
        assert res.gate.tolist() == [True, False]  # onset frames already feed the mix
    res = vad.update(loud)
    assert res.talking.tolist() == [True, False]
    assert res.started.tolist() == [0] and res.stopped.size == 0
    res = vad.update(loud)
    assert res.started.size == 0  # reported once
    for _ in range(39):
        res = vad.update(quiet)
        assert res.talking.tolist() == [True, False] and res.gate[0]
    res = vad.update(quiet)
    assert res.talking.tolist() == [False, False]
    assert res.stopped.tolist() == [0] and not res.gate.any()


def test_interrupted_onset_restarts_count() -> None:
    vad = Vad(VadConfig(start_frames=3, threshold_dbov=-40.0), capacity=1)
    loud, quiet = tone(8000), np.zeros((1, SAMPLES), np.int16)
    for frame in (loud, loud, quiet, loud, loud):
        assert not vad.update(frame).talking[0]
    assert vad.update(loud).talking[0]


def test_gate_without_onset_follows_talking_only() -> None:
    vad = Vad(VadConfig(start_frames=2, gate_on_onset=False, threshold_dbov=-40.0), capacity=1)
    assert not vad.update(tone(8000)).gate[0]
    assert vad.update(tone(8000)).gate[0]


def test_threshold_separates_quiet_and_loud_legs() -> None:
    vad = Vad(VadConfig(threshold_dbov=-30.0, start_frames=1), capacity=3)
    block = np.vstack([tone(3000)[0], tone(600)[0], tone(20000)[0]])  # -23.8, -37.7, -7.3 dBov
    res = vad.update(block)
    assert res.talking.tolist() == [True, False, True]
    assert res.started.tolist() == [0, 2]


def test_inactive_slots_never_talk() -> None:
    vad = Vad(VadConfig(start_frames=1, threshold_dbov=-40.0), capacity=3)
    active = np.array([True, False, True])
    res = vad.update(tone(8000, legs=3), active)
    assert res.talking.tolist() == [True, False, True]
    assert res.gate.tolist() == [True, False, True]


def test_reset_forgets_history() -> None:
    vad = Vad(VadConfig(start_frames=1, threshold_dbov=-40.0), capacity=1)
    vad.update(tone(8000))
    vad.reset(0)
    res = vad.update(np.zeros((1, SAMPLES), np.int16))
    assert not res.talking[0] and res.stopped.size == 0


def test_adaptive_noise_floor_ignores_steady_noise() -> None:
    cfg = VadConfig(
        threshold_dbov=-50.0, start_frames=1, hangover_frames=1, adaptive=True,
        noise_margin_db=10.0, noise_rise_db=1.0,
    )
    vad = Vad(cfg, capacity=1)
    rng = np.random.default_rng(3)
    noise_talking = []
    for _ in range(60):
        noise = rng.normal(0, 300, (1, SAMPLES)).astype(np.int16)  # about -40 dBov
        noise_talking.append(bool(vad.update(noise).talking[0]))
    assert noise_talking[0]  # loud against the initial floor
    assert not any(noise_talking[-20:])  # the floor has caught up with the noise
    assert vad.update(tone(10000)).talking[0]  # speech well above the floor still passes


def test_resize_keeps_state() -> None:
    vad = Vad(VadConfig(start_frames=1, threshold_dbov=-40.0), capacity=1)
    vad.update(tone(8000))
    vad.resize(4)
    res = vad.update(np.vstack([tone(8000)[0]] + [np.zeros(SAMPLES, np.int16)] * 3))
    assert res.talking.tolist() == [True, False, False, False]
    assert res.started.size == 0
    with pytest.raises(ValueError):
        vad.update(np.zeros((5, SAMPLES), np.int16))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        VadConfig(start_frames=0)


@pytest.mark.parametrize("gate_on_onset", [True, False])
def test_subset_updates_match_the_full_update(gate_on_onset: bool) -> None:
    """Dense (every leg a candidate) and sparse (loud or talking legs only, shuffled) subset
    updates give the verdicts of ``update_power`` on the whole power vector, tick by tick."""
    cfg = VadConfig(start_frames=2, hangover_frames=3, gate_on_onset=gate_on_onset)
    threshold = 32768.0**2 * 10 ** (cfg.threshold_dbov / 10)
    legs = 24
    full, dense, sparse = (Vad(cfg, legs) for _ in range(3))
    rng = np.random.default_rng(5)
    for _tick in range(40):
        power = (threshold * rng.choice([0.0, 0.5, 0.999, 1.001, 3.0], legs)).astype(np.float32)
        want = full.update_power(power)
        got = dense.update_subset(legs, np.arange(legs), power, dense=True)
        maybe = np.nonzero((power >= threshold) | sparse.talking[:legs])[0]
        rng.shuffle(maybe)
        some = sparse.update_subset(legs, maybe, power[maybe])
        for result, order in ((got, np.arange(legs)), (some, maybe)):
            np.testing.assert_array_equal(result.talking[:legs], want.talking)
            np.testing.assert_array_equal(result.gate, want.gate[order])
            np.testing.assert_array_equal(result.level_dbov, want.level_dbov[order])
            assert result.started.tolist() == want.started.tolist()
            assert result.stopped.tolist() == want.stopped.tolist()
