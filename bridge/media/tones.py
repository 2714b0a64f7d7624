"""Synthesised signals at 8 kHz: join/leave beeps, a hold-music loop and comfort noise.

All are deterministic numpy computations (no recordings, so no licensing questions). The join
and leave tones and the hold music are computed on first use and cached as read-only int16
arrays; :class:`ComfortNoise` hands out low-level noise frames for legs that must keep sending
RTP while nothing is playing (trunks hang up after ~30 s without media).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HOLD_MUSIC",
    "JOIN_BEEP",
    "LEAVE_BEEP",
    "RATE",
    "BeepSpec",
    "ComfortNoise",
    "HoldMusicSpec",
    "beep",
    "hold_music",
    "join_tone",
    "leave_tone",
    "render_hold_music",
]

RATE: Final = 8000
FRAME: Final = 160


@dataclass(frozen=True, slots=True, kw_only=True)
class BeepSpec:
    """A two-note beep: ``first_hz`` then ``second_hz``, each with a soft attack and decay."""

    first_hz: float
    second_hz: float
    note_s: float = 0.12
    gap_s: float = 0.03
    level_dbfs: float = -14.0  # peak level of each note
    attack_s: float = 0.008
    release_s: float = 0.06


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldMusicSpec:
    """A gentle chord progression (MIDI note numbers per chord) looped seamlessly."""

    chords: tuple[tuple[int, ...], ...] = (
        (48, 60, 64, 67),  # C major
        (43, 59, 62, 67),  # G major / B
        (45, 60, 64, 69),  # A minor
        (41, 60, 65, 69),  # F major
    )
    chord_s: float = 2.0
    crossfade_s: float = 0.4
    rms_dbfs: float = -24.0
    arpeggio_s: float = 0.25  # melody note length (a soft arpeggio over the chord)


# A rising major sixth for "someone joined", a falling fourth for "someone left".
JOIN_BEEP: Final = BeepSpec(first_hz=659.25, second_hz=1046.5)  # E5 -> C6
LEAVE_BEEP: Final = BeepSpec(first_hz=880.0, second_hz=659.25)  # A5 -> E5
HOLD_MUSIC: Final = HoldMusicSpec()


def _note(freq: float, seconds: float, spec: BeepSpec) -> NDArray[np.float64]:
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    # A little second harmonic makes the beep rounder than a bare sine on a phone speaker.
    wave = np.sin(2 * np.pi * freq * t) + 0.2 * np.sin(4 * np.pi * freq * t)
    env = np.minimum(1.0, t / spec.attack_s) * np.exp(-np.maximum(0.0, t - spec.attack_s) / 0.09)
    tail = round(spec.release_s * RATE)
    env[-tail:] *= np.linspace(1.0, 0.0, tail)
    out: NDArray[np.float64] = wave * env / np.abs(wave * env).max()
    return out


def beep(spec: BeepSpec) -> NDArray[np.int16]:
    """Render a two-note beep as int16 samples at 8 kHz."""
    amp = 32767 * 10 ** (spec.level_dbfs / 20)
    gap = np.zeros(round(spec.gap_s * RATE))
    y = np.concatenate(
        [_note(spec.first_hz, spec.note_s, spec), gap, _note(spec.second_hz, spec.note_s, spec)]
    )
    return _readonly(np.rint(y * amp).astype(np.int16))


@cache
def join_tone() -> NDArray[np.int16]:
    """The tone played to the others when a participant joins (rising two-note beep)."""
    return beep(JOIN_BEEP)


@cache
def leave_tone() -> NDArray[np.int16]:
    """The tone played to the others when a participant leaves (falling two-note beep)."""
    return beep(LEAVE_BEEP)


def _midi_hz(note: int) -> float:
    return float(440.0 * 2 ** ((note - 69) / 12))


def _voice(freq: float, n: int, bright: float) -> NDArray[np.float64]:
    t = np.arange(n) / RATE
    # Soft "electric piano" timbre: fundamental, weak 2nd and 3rd harmonics.
    out: NDArray[np.float64] = (
        np.sin(2 * np.pi * freq * t)
        + bright * 0.35 * np.sin(4 * np.pi * freq * t)
        + bright * 0.12 * np.sin(6 * np.pi * freq * t)
    )
    return out


def render_hold_music(spec: HoldMusicSpec) -> NDArray[np.int16]:
    """A seamless loop: each chord is overlap-added circularly, so the end flows into the start."""
    seg = round(spec.chord_s * RATE)
    fade = round(spec.crossfade_s * RATE)
    total = seg * len(spec.chords)
    acc = np.zeros(total)
    n = seg + fade
    t = np.arange(n) / RATE
    env = np.ones(n)
    env[:fade] = np.sin(np.linspace(0.0, np.pi / 2, fade)) ** 2
    env[-fade:] = np.cos(np.linspace(0.0, np.pi / 2, fade)) ** 2
    arp_n = round(spec.arpeggio_s * RATE)
    for i, chord in enumerate(spec.chords):
        pad = sum(_voice(_midi_hz(m), n, 0.5) for m in chord) / len(chord)
        # Gentle arpeggio one octave up: chord tones in turn, each with a bell-like decay.
        arp = np.zeros(n)
        upper = [m + 12 for m in chord[1:]]
        for k, start in enumerate(range(0, seg, arp_n)):
            m = upper[k % len(upper)] if k % 4 != 3 else upper[1]
            length = min(arp_n * 2, n - start)
            tt = t[:length]
            note = _voice(_midi_hz(m), length, 0.3) * np.exp(-tt / 0.18)
            note[: min(40, length)] *= np.linspace(0.0, 1.0, min(40, length))
            arp[start : start + length] += note
        part = (0.7 * pad + 0.35 * arp) * env
        idx = (np.arange(n) + i * seg - fade // 2) % total
        np.add.at(acc, idx, part)
    rms = float(np.sqrt(np.mean(acc**2)))
    acc *= 32767 * 10 ** (spec.rms_dbfs / 20) / rms
    peak_limit = 32767 * 10 ** (-3 / 20)
    acc = np.clip(acc, -peak_limit, peak_limit)
    return _readonly(np.rint(acc).astype(np.int16))


@cache
def hold_music() -> NDArray[np.int16]:
    """Eight seconds of royalty-free hold music (C-G-Am-F), loop it with ``PromptPlayer``."""
    return render_hold_music(HOLD_MUSIC)


def _readonly(a: NDArray[np.int16]) -> NDArray[np.int16]:
    a.flags.writeable = False
    return a


class ComfortNoise:
    """Deterministic low-level noise frames (default -70 dBFS RMS), one 160-sample frame a call.

    The same ``seed`` gives the same sequence. The returned array is a preallocated buffer that
    is overwritten by the next call; copy it if you keep it.
    """

    __slots__ = ("_buf", "_noise", "_rng", "_scale", "_state")

    def __init__(self, seed: int = 0, level_dbfs: float = -70.0, frame: int = FRAME) -> None:
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._noise = np.empty(frame, dtype=np.float64)
        self._buf = np.empty(frame, dtype=np.int16)
        # A one-pole low-pass (pole 0.5) tilts the noise gently towards low frequencies;
        # its power gain is 1/(1-0.25), compensated in the scale.
        self._scale = 32768 * 10 ** (level_dbfs / 20) * np.sqrt(1 - 0.25)
        self._state = 0.0

    def next_frame(self) -> NDArray[np.int16]:
        self._rng.standard_normal(out=self._noise)
        x = self._noise
        # y[n] = x[n] + 0.5*y[n-1], vectorised via a short recursion over the frame's powers.
        powers = 0.5 ** np.arange(x.shape[0])
        y = np.convolve(x, powers)[: x.shape[0]] + self._state * 0.5 * powers
        self._state = float(y[-1])
        np.rint(y * self._scale, out=y)
        np.clip(y, -32768, 32767, out=y)
        self._buf[:] = y
        return self._buf
