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

The hysteresis lives in one int32 counter per leg: ``0 <= s < start_frames`` counts a silent
leg's consecutive loud frames, ``s >= start_frames`` means talking with ``s - start_frames``
consecutive quiet frames. One table lookup ``next[loud, s]`` advances every leg, and a silent leg
with a quiet frame always goes to 0, so ``update_subset`` (used by the mixer) only has to touch
the legs that may be loud or are talking.

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

__all__ = ["SubsetResult", "Vad", "VadConfig", "VadResult", "dbov"]

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
        self._state = np.zeros(0, dtype=np.int32)
        self._live = np.zeros(0, dtype=np.intp)  # legs whose state may be non-zero
        self._next = _transition_table(self.config)
        self._span = self.config.start_frames + self.config.hangover_frames
        self._noise = np.zeros(0, dtype=np.float32)
        self._power = np.zeros(0, dtype=np.float32)
        self._level = np.zeros(0, dtype=np.float32)
        self._own_level = np.zeros(0, dtype=np.float32)
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
        self._state = _grown(self._state, capacity, 0)
        self._live = np.nonzero(self._state)[0]
        self._noise = _grown(self._noise, capacity, self.config.initial_noise_dbov)
        self._power = np.zeros(capacity, dtype=np.float32)
        self._level = np.zeros(capacity, dtype=np.float32)
        self._own_level = np.zeros(capacity, dtype=np.float32)
        self._loud = np.zeros(capacity, dtype=np.bool_)
        self._gate = np.zeros(capacity, dtype=np.bool_)
        self._capacity = capacity

    def reset(self, leg: int) -> None:
        """Forget a leg's history (a new participant took the slot)."""
        self._talking[leg] = False
        self._state[leg] = 0
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
        dbov(mean_square, out=level)

        loud = self._loud[:legs]
        np.greater_equal(level, np.float32(cfg.threshold_dbov), out=loud)
        if cfg.adaptive:
            noise = self._noise[:legs]
            loud &= level >= noise + np.float32(cfg.noise_margin_db)
            # The floor follows quieter frames at once and creeps up slowly otherwise.
            np.minimum(noise + np.float32(cfg.noise_rise_db), level, out=noise)
        if active is not None:
            loud &= active

        state = self._state[:legs]
        talking = self._talking[:legs]
        was_talking = talking.copy()
        index = loud.astype(np.intp)
        index *= self._span
        index += state
        np.take(self._next, index, out=state)
        if active is not None:
            state *= active
        np.greater_equal(state, self.config.start_frames, out=talking)
        self._live = np.nonzero(state)[0]

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

    def update_subset(
        self,
        legs: int,
        candidates: npt.NDArray[np.intp],
        mean_square: npt.NDArray[np.float32],
        *,
        dense: bool = False,
    ) -> SubsetResult:
        """Advance legs ``0..legs-1`` by one frame when only ``candidates`` may be loud.

        The caller guarantees that every other leg is quiet this frame and not talking (a
        silent leg with a quiet frame stays at state 0); ``mean_square`` is the candidates'
        power, in the order of ``candidates`` (unique slots, any order). Only the candidates'
        levels are computed (``SubsetResult.level_dbov``, in their order): the caller knows the
        others'. Not for the adaptive gate, whose noise floor follows every leg. Same verdicts as
        ``update_power`` on the full power vector. ``dense`` says that ``candidates`` is
        ``0..legs-1`` in order (everybody may be loud): the state is then updated in place,
        without gathers and scatters.
        """
        cfg = self.config
        if cfg.adaptive:
            raise ValueError("update_subset does not track the adaptive noise floor")
        count = candidates.size
        own = self._own_level[:count]
        dbov(mean_square, out=own)
        loud = self._loud[:count]
        np.greater_equal(own, np.float32(cfg.threshold_dbov), out=loud)
        if dense:
            return self._update_dense(legs, loud, own)

        state = self._state
        before = state[candidates]
        index = np.multiply(loud, self._span, dtype=np.intp)  # next[loud * span + s]
        index += before
        after = self._next[index]
        state[self._live] = 0  # silent legs outside the candidates had a quiet frame
        state[candidates] = after
        self._live = candidates[after != 0]
        talking = after >= cfg.start_frames
        self._talking[candidates] = talking
        gate = talking | loud if cfg.gate_on_onset else talking
        was_talking = before >= cfg.start_frames
        changed = talking ^ was_talking
        if np.count_nonzero(changed):
            started = np.sort(candidates[changed & talking])
            stopped = np.sort(candidates[changed & was_talking])
        else:
            started = stopped = _NONE
        return SubsetResult(
            talking=self._talking[:legs], gate=gate, level_dbov=own, started=started,
            stopped=stopped,
        )

    def _update_dense(
        self, legs: int, loud: npt.NDArray[np.bool_], own: npt.NDArray[np.float32]
    ) -> SubsetResult:
        """``update_subset`` when every leg 0..legs-1 is a candidate, in slot order."""
        cfg = self.config
        state = self._state[:legs]
        talking = self._talking[:legs]
        was_talking = talking.copy()
        index = np.multiply(loud, self._span, dtype=np.intp)  # next[loud * span + s]
        index += state
        self._next.take(index, out=state)
        self._live = state.nonzero()[0]
        np.greater_equal(state, cfg.start_frames, out=talking)
        gate = talking | loud if cfg.gate_on_onset else talking.copy()
        changed = talking ^ was_talking
        if np.count_nonzero(changed):
            started = (changed & talking).nonzero()[0]
            stopped = (changed & was_talking).nonzero()[0]
        else:
            started = stopped = _NONE
        return SubsetResult(
            talking=talking, gate=gate, level_dbov=own, started=started, stopped=stopped
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubsetResult:
    """``Vad.update_subset``'s verdict: ``gate`` and ``level_dbov`` follow the order of the
    candidates, the other arrays are as in ``VadResult`` (views valid until the next update)."""

    talking: npt.NDArray[np.bool_]
    gate: npt.NDArray[np.bool_]
    level_dbov: npt.NDArray[np.float32]
    started: npt.NDArray[np.intp]
    stopped: npt.NDArray[np.intp]


_NONE = np.zeros(0, dtype=np.intp)
_NONE.flags.writeable = False


def dbov(mean_square: npt.NDArray[np.float32], out: npt.NDArray[np.float32]) -> None:
    """Level in dBov (RFC 6464 §3) of mean square sample values, clamped to -127 dBov."""
    np.multiply(mean_square, np.float32(1.0 / FULL_SCALE_POWER), out=out)
    np.maximum(out, np.float32(1e-13), out=out)
    np.log10(out, out=out)
    out *= np.float32(10.0)
    np.maximum(out, np.float32(LEVEL_FLOOR_DBOV), out=out)


def _transition_table(cfg: VadConfig) -> npt.NDArray[np.int32]:
    """``next[loud * span + s]`` for the hysteresis counter ``s`` (see the module docstring)."""
    start, span = cfg.start_frames, cfg.start_frames + cfg.hangover_frames
    s = np.arange(span)
    quiet = np.where((s >= start) & (s + 1 < span), s + 1, 0)
    loud = np.minimum(s + 1, start)
    return np.concatenate((quiet, loud)).astype(np.int32)
