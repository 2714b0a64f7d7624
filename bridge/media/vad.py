"""Vectorised voice-activity gate over every leg of a mixer at once.

One call per 20 ms tick takes the decoded block (legs x samples, int16) and, in a handful of
numpy operations over the whole block:

* measures each leg's frame level in dBov (mean square relative to a full-scale square wave,
  the unit of RFC 6464 §3, clamped to the RFC's -127 dBov floor);
* compares it with an absolute threshold, optionally raised by a per-leg adaptive noise floor;
* runs the hysteresis of FreeSWITCH's conference talk detection: a leg starts *talking* after
  ``start_frames`` consecutive loud frames and stops after ``hangover_frames`` quiet ones;
* reports the legs that started or stopped talking this tick as index arrays, which the engine
  turns into ``TalkingStarted``/``TalkingStopped`` events.

The *gate* (which legs feed the mix) is ``talking | loud``: a loud frame opens the gate at once
so the first syllable of an utterance is not cut while the talking state is still being
confirmed, and the hangover keeps it open through the short pauses inside speech.

Pure computation: no clock, no I/O; the tick is the unit of time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["Vad", "VadConfig", "VadResult"]

FULL_SCALE_POWER = 32768.0 * 32768.0
LEVEL_FLOOR_DBOV = -127.0  # RFC 6464 §3: levels below -127 dBov are reported as -127


@dataclass(frozen=True, slots=True, kw_only=True)
class VadConfig:
    """Tuning of the gate; times are counted in frames (ticks)."""

    threshold_dbov: float = -42.0
    """A frame at or above this level is loud (absolute threshold)."""
    start_frames: int = 5
    """Consecutive loud frames before a leg is reported as talking."""
    hangover_frames: int = 40
    """Consecutive quiet frames before a talking leg is reported as silent."""
    gate_on_onset: bool = True
    """Let a loud frame into the mix before the talking state is confirmed."""
    adaptive: bool = False
    """Also require the level to exceed the leg's own noise floor by ``noise_margin_db``."""
    noise_margin_db: float = 12.0
    noise_rise_db: float = 0.05
    """How fast the noise floor creeps up per frame (it drops at once to a quieter frame)."""
    initial_noise_dbov: float = -70.0

    def __post_init__(self) -> None:
        if self.start_frames < 1 or self.hangover_frames < 1:
            raise ValueError("start_frames and hangover_frames must be >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class VadResult:
    """The gate's verdict for one tick; arrays are views valid until the next update."""

    talking: npt.NDArray[np.bool_]
    gate: npt.NDArray[np.bool_]
    level_dbov: npt.NDArray[np.float32]
    started: npt.NDArray[np.intp]
    stopped: npt.NDArray[np.intp]


_T = TypeVar("_T", bound=np.generic)


def _grown(old: npt.NDArray[_T], capacity: int, fill: float) -> npt.NDArray[_T]:
    """A copy of ``old`` resized to ``capacity``, new entries set to ``fill``."""
    new = np.full(capacity, fill, dtype=old.dtype)
    keep = min(capacity, old.shape[0])
    new[:keep] = old[:keep]
    return new


class Vad:
    """Per-leg voice-activity state for up to ``capacity`` legs, updated in one pass per tick."""

    def __init__(self, config: VadConfig | None = None, capacity: int = 64) -> None:
        self.config = config if config is not None else VadConfig()
        self._capacity = 0
        self._talking = np.zeros(0, dtype=np.bool_)
        self._loud_run = np.zeros(0, dtype=np.int32)
        self._quiet_run = np.zeros(0, dtype=np.int32)
        self._noise = np.zeros(0, dtype=np.float32)
        self._power = np.zeros(0, dtype=np.float32)
        self._level = np.zeros(0, dtype=np.float32)
        self._loud = np.zeros(0, dtype=np.bool_)
        self._gate = np.zeros(0, dtype=np.bool_)
        self._scratch = np.zeros((0, 0), dtype=np.float32)
        self.resize(capacity)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def talking(self) -> npt.NDArray[np.bool_]:
        """Per leg: talking after the last update (a view; do not write)."""
        return self._talking

    def resize(self, capacity: int) -> None:
        """Grow (or shrink) the per-leg state, keeping the state of the first legs."""
        self._talking = _grown(self._talking, capacity, 0)
        self._loud_run = _grown(self._loud_run, capacity, 0)
        self._quiet_run = _grown(self._quiet_run, capacity, 0)
        self._noise = _grown(self._noise, capacity, self.config.initial_noise_dbov)
        self._power = np.zeros(capacity, dtype=np.float32)
        self._level = np.zeros(capacity, dtype=np.float32)
        self._loud = np.zeros(capacity, dtype=np.bool_)
        self._gate = np.zeros(capacity, dtype=np.bool_)
        self._capacity = capacity

    def reset(self, leg: int) -> None:
        """Forget a leg's history (a new participant took the slot)."""
        self._talking[leg] = False
        self._loud_run[leg] = 0
        self._quiet_run[leg] = 0
        self._noise[leg] = self.config.initial_noise_dbov

    def update(
        self, pcm: npt.NDArray[np.int16], active: npt.NDArray[np.bool_] | None = None
    ) -> VadResult:
        """Advance every leg by one frame.

        ``pcm`` is the (legs x samples) block of the first ``legs`` slots; ``active`` masks out
        free slots (they are forced silent and never reported).
        """
        legs, samples = pcm.shape
        if legs > self._capacity:
            raise ValueError(f"{legs} legs exceed the VAD capacity {self._capacity}")
        if self._scratch.shape != pcm.shape:
            self._scratch = np.empty(pcm.shape, dtype=np.float32)
        scratch = self._scratch
        np.copyto(scratch, pcm, casting="unsafe")
        power = self._power[:legs]
        np.einsum("ij,ij->i", scratch, scratch, out=power)
        power *= np.float32(1.0 / samples)
        return self.update_power(power, active)

    def update_power(
        self, mean_square: npt.NDArray[np.float32], active: npt.NDArray[np.bool_] | None = None
    ) -> VadResult:
        """Advance every leg by one frame given each leg's mean square sample value.

        The mixer measures power straight from the G.711 codes (a table of squared decoded
        values), without decoding the legs that turn out to be silent.
        """
        cfg = self.config
        legs = mean_square.shape[0]
        if legs > self._capacity:
            raise ValueError(f"{legs} legs exceed the VAD capacity {self._capacity}")
        level = self._level[:legs]
        np.multiply(mean_square, np.float32(1.0 / FULL_SCALE_POWER), out=level)
        np.maximum(level, np.float32(1e-13), out=level)
        np.log10(level, out=level)
        level *= np.float32(10.0)
        np.maximum(level, np.float32(LEVEL_FLOOR_DBOV), out=level)

        loud = self._loud[:legs]
        np.greater_equal(level, np.float32(cfg.threshold_dbov), out=loud)
        if cfg.adaptive:
            noise = self._noise[:legs]
            loud &= level >= noise + np.float32(cfg.noise_margin_db)
            # The floor follows quieter frames at once and creeps up slowly otherwise.
            np.minimum(noise + np.float32(cfg.noise_rise_db), level, out=noise)
        if active is not None:
            loud &= active

        loud_run = self._loud_run[:legs]
        quiet_run = self._quiet_run[:legs]
        loud_run += 1
        loud_run *= loud
        quiet_run += 1
        quiet_run *= ~loud
        talking = self._talking[:legs]
        was_talking = talking.copy()
        starting = loud_run >= cfg.start_frames
        continuing = quiet_run < cfg.hangover_frames
        talking[:] = np.where(was_talking, continuing, starting)
        if active is not None:
            talking &= active

        gate = self._gate[:legs]
        if cfg.gate_on_onset:
            np.logical_or(talking, loud, out=gate)
        else:
            np.copyto(gate, talking)
        changed = talking ^ was_talking
        started = np.nonzero(changed & talking)[0]
        stopped = np.nonzero(changed & was_talking)[0]
        return VadResult(
            talking=talking, gate=gate, level_dbov=level, started=started, stopped=stopped
        )
