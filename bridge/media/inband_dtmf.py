"""In-band DTMF detection (ITU-T Q.23 frequencies, Q.24 acceptance) for 8 kHz int16 audio.

For trunks that send tones in the audio instead of RFC 4733 events. Sans-I/O and vectorised:
:class:`InbandDtmfBank` analyses all legs of a tick with one matrix product;
:class:`InbandDtmfDetector` is the one-leg wrapper.

Method. Every 10 ms (two analyses per 20 ms frame) each of the 8 DTMF frequencies is
measured with a single-bin DFT (the Goertzel value, computed as a dot product with
precomputed cos/sin tables) over the most recent ``Q / f`` samples, so every tone gets the
same *relative* resolution (about 205 samples at 697 Hz, 87 at 1633 Hz). Two extra bins at
``f * (1 +- side_offset)`` (default ±5 %, half-way to the next DTMF frequency) measure where
the tone really is: the centre bin must beat both side bins, which accepts a tone within
±1.5 % and rejects one off by ±3.5 % (Q.24), and also rejects a tone that fills only part of
the window (a truncated sine has a broad spectrum) so that too-short tones fail.

An analysis is a *hit* for a digit when, for the strongest tone of each group,

* level: each tone is at least ``min_tone_dbm0``;
* twist (Q.24): the low tone is at most ``normal_twist_db`` above the high tone, and the
  high tone at most ``reverse_twist_db`` above the low tone;
* purity: the two tones hold at least ``min_tone_ratio`` of the total energy (talk-off);
* group peak: every other tone of the group is ``group_margin_db`` below the strongest;
* frequency: the centre bin exceeds both side bins by ``side_margin_db``.

A digit is reported once, after ``min_hits`` consecutive hits (about 40 ms of tone); the
same digit may repeat only after ``pause_misses`` analyses without it (about 40 ms pause).
Short drop-outs inside a press do not split it. ``tone_active`` is true while a tone is
seen or a press is in progress, so the engine can keep DTMF out of the other legs' mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bridge.rtp.dtmf import DigitReceived

__all__ = [
    "DTMF_HIGH_HZ",
    "DTMF_LOW_HZ",
    "InbandDtmfBank",
    "InbandDtmfConfig",
    "InbandDtmfDetector",
    "dbm0_to_amplitude",
]

DTMF_LOW_HZ = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
_DIGITS = "".join(_KEYPAD)  # digit index = 4 * low_index + high_index

SAMPLE_RATE = 8000
FRAME = 160
#: Peak amplitude (16-bit linear) of a 0 dBm0 sine: the G.711 digital milliwatt. The mu-law
#: full-scale sine (14-bit peak 8159, shifted to 16 bits) is +3.17 dBm0, so 0 dBm0 is
#: 32636 * 10**(-3.17/20) ~= 22 656.
DBM0_PEAK = 32636.0 * 10.0 ** (-3.17 / 20.0)


def dbm0_to_amplitude(dbm0: float) -> float:
    """Peak 16-bit amplitude of a sine at ``dbm0`` (G.711 mu-law reference)."""
    return float(DBM0_PEAK * 10.0 ** (dbm0 / 20.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class InbandDtmfConfig:
    """Acceptance limits of the detector (defaults follow ITU-T Q.24 typical values).

    ``q_cycles``: each tone is measured over ``q_cycles`` periods of it (17.86 periods is
    205 samples at 697 Hz, 87 at 1633 Hz). ``hop``: samples between analyses (must divide
    160). ``min_hits`` consecutive hits report a digit: with a 5 ms hop, 5 hits need about
    35-40 ms of tone, so 40 ms tones are always found and 25 ms tones never.
    ``pause_misses`` analyses without the digit end the press (about 30 ms of silence at a
    5 ms hop, given the window overhang, so a 40 ms pause separates two equal digits).
    """

    min_tone_dbm0: float = -33.0
    normal_twist_db: float = 8.0
    reverse_twist_db: float = 4.0
    min_tone_ratio: float = 0.6
    group_margin_db: float = 8.0
    side_offset: float = 0.05
    side_margin_db: float = 3.0
    q_cycles: float = 17.86
    hop: int = 40
    min_hits: int = 5
    pause_misses: int = 6


def _tables(
    cfg: InbandDtmfConfig,
) -> tuple[NDArray[np.float32], NDArray[np.float32], int, NDArray[np.int64]]:
    """Kernel matrix (window, 2*24) with cos/sin columns; bin scale; longest window; and
    per digit, how many samples of tone precede its first hit (about 70 % of the low tone's
    window, measured), used to estimate when the press began."""
    freqs = np.array(DTMF_LOW_HZ + DTMF_HIGH_HZ)
    lengths = np.rint(cfg.q_cycles * SAMPLE_RATE / freqs).astype(np.int64)
    window = int(lengths.max())
    # Bin k = 3*tone + (0 centre, 1 lower side, 2 upper side)
    factors = np.array([1.0, 1.0 - cfg.side_offset, 1.0 + cfg.side_offset])
    bin_freq = (freqs[:, None] * factors[None, :]).ravel()
    bin_len = np.repeat(lengths, 3)
    kernel = np.zeros((window, 2 * bin_freq.size), dtype=np.float64)
    for k, (f, length) in enumerate(zip(bin_freq, bin_len, strict=True)):
        # Each bin looks at the newest `length` samples of the longest window.
        phase = 2.0 * np.pi * f * np.arange(length) / SAMPLE_RATE
        kernel[window - length :, 2 * k] = np.cos(phase)
        kernel[window - length :, 2 * k + 1] = np.sin(phase)
    # |X|^2 * 2 / N^2 -> A^2 / 2 for a sine of amplitude A centred on the bin.
    scale = (2.0 / bin_len.astype(np.float64) ** 2).astype(np.float32)
    lead = np.repeat(np.rint(0.7 * lengths[:4]).astype(np.int64), 4)
    return kernel.astype(np.float32), scale, window, lead


class InbandDtmfBank:
    """DTMF detectors for ``legs`` legs, fed one (legs x 160) int16 block per 20 ms tick.

    :meth:`detect_batch` may also be given ``rows``, the leg indices the frames belong to,
    to analyse only the legs that need in-band detection.
    """

    def __init__(self, legs: int, config: InbandDtmfConfig | None = None) -> None:
        self.config = cfg = config if config is not None else InbandDtmfConfig()
        if FRAME % cfg.hop:
            raise ValueError("hop must divide the 160-sample frame")
        self._kernel, self._scale, self._window, self._lead = _tables(cfg)
        self._hops = FRAME // cfg.hop
        # One GEMM per tick: the kernel placed at every hop's window inside the
        # (history + frame) buffer, so no strided window copies are needed.
        win = self._window
        cols = self._kernel.shape[1]
        self._frame_kernel = np.zeros((win + FRAME, self._hops * cols), dtype=np.float32)
        for h in range(self._hops):
            start = (h + 1) * cfg.hop
            self._frame_kernel[start : start + win, h * cols : (h + 1) * cols] = self._kernel
        self._min_power = (dbm0_to_amplitude(cfg.min_tone_dbm0) ** 2) / 2.0
        self._normal_twist = 10.0 ** (cfg.normal_twist_db / 10.0)
        self._reverse_twist = 10.0 ** (cfg.reverse_twist_db / 10.0)
        self._group_margin = 10.0 ** (-cfg.group_margin_db / 10.0)
        self._side_margin = 10.0 ** (cfg.side_margin_db / 10.0)
        self.legs = legs
        self._history = np.zeros((legs, self._window), dtype=np.float32)
        self._buf = np.zeros((legs, self._window + FRAME), dtype=np.float32)
        self._cand = np.full(legs, -1, dtype=np.int8)
        self._hits = np.zeros(legs, dtype=np.int16)
        self._misses = np.zeros(legs, dtype=np.int16)
        self._reported = np.zeros(legs, dtype=np.bool_)
        self._onset = np.zeros(legs, dtype=np.int64)  # sample index where the press began
        self._clock = np.zeros(legs, dtype=np.int64)  # samples analysed per leg
        self.tone_active = np.zeros(legs, dtype=np.bool_)
        self._all_rows = np.arange(legs, dtype=np.intp)
        self._spec = np.zeros((legs, self._frame_kernel.shape[1]), dtype=np.float32)
        # Mean-square per analysis window, also as a matrix product on the squared buffer.
        self._window_mean = np.zeros((win + FRAME, self._hops), dtype=np.float32)
        for h in range(self._hops):
            start = (h + 1) * cfg.hop
            self._window_mean[start : start + win, h] = 1.0 / win

    def reset(self, leg: int) -> None:
        """Forget a leg's audio and state (the row is reused for a new leg)."""
        self._history[leg] = 0.0
        self._cand[leg] = -1
        self._hits[leg] = 0
        self._misses[leg] = 0
        self._reported[leg] = False
        self._onset[leg] = 0
        self._clock[leg] = 0
        self.tone_active[leg] = False

    def _powers(self, spec: NDArray[np.float32]) -> NDArray[np.float32]:
        """(..., 48) cos/sin dot products -> (..., 8 tones, 3 bins) sine power A^2/2."""
        sq = np.square(spec)
        power = sq[..., 0::2] + sq[..., 1::2]
        power *= self._scale
        out: NDArray[np.float32] = power.reshape(*spec.shape[:-1], 8, 3)
        return out

    def _gate(self, power: NDArray[np.float32], total: NDArray[np.float32]) -> NDArray[np.bool_]:
        """Cheap necessary condition (level and purity of the best tone pair)."""
        lp = power[..., :4, 0].max(axis=-1)
        hp = power[..., 4:, 0].max(axis=-1)
        ok: NDArray[np.bool_] = (np.minimum(lp, hp) >= self._min_power) & (
            lp + hp >= self.config.min_tone_ratio * total
        )
        return ok

    def _decide(self, power: NDArray[np.float32], total: NDArray[np.float32]) -> NDArray[np.int8]:
        """All acceptance checks; power (..., 8, 3), total (...) -> digit index or -1."""
        centre = power[..., 0]
        side = np.maximum(power[..., 1], power[..., 2])
        low = centre[..., :4]
        high = centre[..., 4:]
        li = np.argmax(low, axis=-1)
        hi = np.argmax(high, axis=-1)
        lp = np.take_along_axis(low, li[..., None], axis=-1)[..., 0]
        hp = np.take_along_axis(high, hi[..., None], axis=-1)[..., 0]
        ls = np.take_along_axis(side[..., :4], li[..., None], axis=-1)[..., 0]
        hs = np.take_along_axis(side[..., 4:], hi[..., None], axis=-1)[..., 0]
        low_second = np.sort(low, axis=-1)[..., -2]
        high_second = np.sort(high, axis=-1)[..., -2]
        ok = (lp >= self._min_power) & (hp >= self._min_power)
        ok &= lp <= hp * self._normal_twist
        ok &= hp <= lp * self._reverse_twist
        ok &= (lp + hp) >= self.config.min_tone_ratio * total
        ok &= (low_second <= lp * self._group_margin) & (high_second <= hp * self._group_margin)
        ok &= (lp >= ls * self._side_margin) & (hp >= hs * self._side_margin)
        return np.where(ok, li * 4 + hi, -1).astype(np.int8)

    def detect_batch(
        self,
        frames: NDArray[np.int16],
        now: float,
        rows: NDArray[np.intp] | None = None,
    ) -> list[tuple[int, DigitReceived]]:
        """Analyse one 20 ms frame per leg; return ``(leg, DigitReceived)`` for new digits.

        ``frames`` is (legs, 160) int16, or (len(rows), 160) with ``rows`` naming the legs.
        ``now`` is the time of the frames' last sample. ``tone_active`` is updated for the
        analysed legs.

        Cost is kept per tick, not per leg: one matrix product for all windows, a cheap gate
        (level and purity of the best pair), and the full checks and the press state machine
        only for legs that pass the gate or have a press in progress.
        """
        cfg = self.config
        win = self._window
        if rows is None:
            if frames.shape != (self.legs, FRAME):
                raise ValueError(f"expected frames of shape ({self.legs}, {FRAME})")
            leg_ids: NDArray[np.intp] = self._all_rows
            buf = self._buf
            buf[:, :win] = self._history
            buf[:, win:] = frames
            self._history[:] = buf[:, FRAME:]
            spec = np.matmul(buf, self._frame_kernel, out=self._spec)
        else:
            if frames.shape != (rows.size, FRAME):
                raise ValueError(f"expected frames of shape ({rows.size}, {FRAME})")
            leg_ids = rows
            buf = np.empty((rows.size, win + FRAME), dtype=np.float32)
            buf[:, :win] = self._history[rows]
            buf[:, win:] = frames
            self._history[rows] = buf[:, FRAME:]
            spec = buf @ self._frame_kernel
        power = self._powers(spec.reshape(len(leg_ids), self._hops, -1))  # (n, hops, 8, 3)
        total = np.square(buf) @ self._window_mean  # (n, hops) mean power per window
        gate = self._gate(power, total)

        self._clock[leg_ids] += FRAME
        busy = gate.any(axis=1) | (self._cand[leg_ids] >= 0)
        idle_legs = leg_ids[~busy]
        self._misses[idle_legs] = cfg.pause_misses
        self._hits[idle_legs] = 0
        self.tone_active[idle_legs] = False
        if not busy.any():
            return []
        pick = np.flatnonzero(busy)
        legs = leg_ids[pick]
        digits = np.full(gate[pick].shape, -1, dtype=np.int8)
        sub_gate = gate[pick]
        digits[sub_gate] = self._decide(power[pick][sub_gate], total[pick][sub_gate])
        return self._advance(legs, digits, now)

    def _advance(
        self, legs: NDArray[np.intp], digits: NDArray[np.int8], now: float
    ) -> list[tuple[int, DigitReceived]]:
        """Run the press state machine over this frame's hops for ``legs``."""
        cfg = self.config
        cand = self._cand[legs]
        hits = self._hits[legs]
        misses = self._misses[legs]
        reported = self._reported[legs]
        onset = self._onset[legs]
        clock = self._clock[legs]  # already advanced past this frame
        frame_start = clock - FRAME
        seen = np.zeros(cand.shape, dtype=np.bool_)
        new_digit = np.zeros(cand.shape, dtype=np.bool_)
        found = np.full(cand.shape, -1, dtype=np.int8)
        found_len = np.zeros(cand.shape, dtype=np.int64)
        for h in range(self._hops):
            d = digits[:, h]
            end = frame_start + (h + 1) * cfg.hop
            valid = d >= 0
            seen |= valid
            same = valid & (d == cand)
            diff = valid & ~same
            hits = np.where(same, hits + 1, np.where(diff, 1, np.where(reported, hits, 0)))
            misses = np.where(valid, 0, np.minimum(misses + 1, cfg.pause_misses))
            onset = np.where(diff, end - self._lead[np.maximum(d, 0)], onset)
            reported &= ~diff
            cand = np.where(diff, d, cand)
            gone = ~valid & (misses >= cfg.pause_misses)
            cand = np.where(gone, -1, cand)
            reported &= ~gone
            fire = (cand >= 0) & ~reported & (hits >= cfg.min_hits)
            if fire.any():
                found = np.where(fire, cand, found)
                found_len = np.where(fire, end - onset, found_len)
                reported |= fire
                new_digit |= fire
        self._cand[legs] = cand
        self._hits[legs] = hits
        self._misses[legs] = misses
        self._reported[legs] = reported
        self._onset[legs] = onset
        self.tone_active[legs] = seen | (reported & (cand >= 0))

        out: list[tuple[int, DigitReceived]] = []
        for i in np.flatnonzero(new_digit):
            tail = int(clock[i] - onset[i])
            out.append(
                (
                    int(legs[i]),
                    DigitReceived(
                        digit=_DIGITS[int(found[i])],
                        source="inband",
                        start=now - tail / SAMPLE_RATE,
                        duration_ms=int(found_len[i]) * 1000 // SAMPLE_RATE,
                    ),
                )
            )
        return out


class InbandDtmfDetector:
    """One leg's in-band DTMF detector: :meth:`detect` once per 160-sample frame."""

    def __init__(self, config: InbandDtmfConfig | None = None) -> None:
        self._bank = InbandDtmfBank(1, config)
        self._frame = np.zeros((1, FRAME), dtype=np.int16)

    @property
    def config(self) -> InbandDtmfConfig:
        return self._bank.config

    @property
    def tone_active(self) -> bool:
        """True while a DTMF tone is present or a press is in progress (mute the leg)."""
        return bool(self._bank.tone_active[0])

    def reset(self) -> None:
        self._bank.reset(0)

    def detect(self, frame: NDArray[np.int16], now: float) -> list[DigitReceived]:
        """Analyse one 160-sample int16 frame ending at ``now``; return new digits."""
        self._frame[0] = frame
        return [ev for _, ev in self._bank.detect_batch(self._frame, now)]
