"""Join/leave beeps, hold music and comfort noise: distinct, pitched as specified, sane levels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from bridge.media.tones import (
    JOIN_BEEP,
    LEAVE_BEEP,
    BeepSpec,
    ComfortNoise,
    beep,
    hold_music,
    join_tone,
    leave_tone,
)


def _dbfs(x: npt.NDArray[np.int16]) -> tuple[float, float]:
    f = x.astype(np.float64) / 32768
    return 20 * np.log10(np.sqrt(np.mean(f**2))), 20 * np.log10(np.abs(f).max())


def _dominant_hz(x: npt.NDArray[np.float64]) -> float:
    n = 1 << 15  # zero-padded FFT: 0.24 Hz bins
    spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[0]), n))
    return float(np.argmax(spec) * 8000 / n)


@pytest.mark.parametrize(("tone", "spec"), [(join_tone, JOIN_BEEP), (leave_tone, LEAVE_BEEP)])
def test_beep_notes_and_level(tone: object, spec: BeepSpec) -> None:
    assert callable(tone)
    x = tone()
    assert x.dtype == np.int16 and x.ndim == 1
    assert 0.15 <= x.shape[0] / 8000 <= 0.5  # short
    rms, peak = _dbfs(x)
    assert -30 < rms < -15 and -16 < peak < -10  # moderate, far from clipping
    note = round(spec.note_s * 8000)
    first = x[:note].astype(np.float64)
    second = x[-note:].astype(np.float64)
    assert abs(_dominant_hz(first) - spec.first_hz) < 3
    assert abs(_dominant_hz(second) - spec.second_hz) < 3
    assert x[0] == 0 and abs(int(x[-1])) < 200  # soft edges, no click


def test_join_rises_leave_falls_and_they_differ() -> None:
    assert JOIN_BEEP.second_hz > JOIN_BEEP.first_hz
    assert LEAVE_BEEP.second_hz < LEAVE_BEEP.first_hz
    j, lv = join_tone(), leave_tone()
    assert j.tobytes() != lv.tobytes()
    assert join_tone() is j  # cached
    assert not j.flags.writeable


def test_custom_beep_frequency() -> None:
    x = beep(BeepSpec(first_hz=500.0, second_hz=1500.0, level_dbfs=-20.0))
    assert abs(_dominant_hz(x[:900].astype(np.float64)) - 500) < 3
    assert abs(_dbfs(x)[1] + 20) < 0.1


def test_hold_music_loop() -> None:
    x = hold_music()
    assert x.dtype == np.int16
    assert 4.0 <= x.shape[0] / 8000 <= 20.0
    assert x.shape[0] % 160 == 0  # whole frames
    rms, peak = _dbfs(x)
    assert -30 < rms < -18 and peak < -3
    # seamless: the step across the loop boundary is no bigger than steps inside the music
    steps = np.abs(np.diff(x.astype(np.int32)))
    assert abs(int(x[0]) - int(x[-1])) <= np.percentile(steps, 99.9)
    # it is music, not a constant tone: the spectrum changes from chord to chord
    seg = 2 * 8000
    peaks = {round(_dominant_hz(x[i : i + seg].astype(np.float64))) for i in range(0, len(x), seg)}
    assert len(peaks) >= 3
    assert hold_music() is x  # deterministic and cached


def test_comfort_noise_is_deterministic_low_and_not_silent() -> None:
    a, b, c = ComfortNoise(seed=7), ComfortNoise(seed=7), ComfortNoise(seed=8)
    fa = np.concatenate([a.next_frame().copy() for _ in range(50)])
    fb = np.concatenate([b.next_frame().copy() for _ in range(50)])
    fc = np.concatenate([c.next_frame().copy() for _ in range(50)])
    assert np.array_equal(fa, fb) and not np.array_equal(fa, fc)
    assert fa.dtype == np.int16 and fa.shape == (50 * 160,)
    rms, peak = _dbfs(fa)
    assert -74 < rms < -66 and peak < -50
    # consecutive frames differ (not one repeated frame)
    assert not np.array_equal(fa[:160], fa[160:320])


def test_comfort_noise_level_option() -> None:
    n = ComfortNoise(seed=1, level_dbfs=-50.0)
    x = np.concatenate([n.next_frame().copy() for _ in range(100)])
    assert abs(_dbfs(x)[0] + 50) < 1.0
