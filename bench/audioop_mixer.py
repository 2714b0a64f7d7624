"""Baseline: the same N-1 conference mix written the straightforward way with ``audioop``.

Per room, per leg: ``ulaw2lin``/``alaw2lin`` to decode, ``rms`` against the same absolute
threshold as the VAD (no hysteresis: a cost the baseline is spared), ``add`` to sum the talkers,
``add(total, mul(own, -1))`` for each talker's N-1 frame, ``lin2ulaw``/``lin2alaw`` to encode.
Listeners of a room share one encoded frame per codec, as in the numpy mixer, so the comparison
measures the vectorisation and not a different algorithm. Note that ``audioop.add`` saturates
as it goes (the inexact Asterisk scheme); the numpy mixer does not.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.codecs.g711 import Codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["AudioopMixer"]

_DECODE = {Codec.PCMU: audioop.ulaw2lin, Codec.PCMA: audioop.alaw2lin}
_ENCODE = {Codec.PCMU: audioop.lin2ulaw, Codec.PCMA: audioop.lin2alaw}


@dataclass
class _Leg:
    slot: int
    codec: Codec


class AudioopMixer:
    """Mixes lists of payloads (index = slot) room by room, leg by leg."""

    def __init__(self, rooms: Sequence[Sequence[tuple[int, Codec]]], threshold_dbov: float):
        self.rooms = [[_Leg(slot, codec) for slot, codec in room] for room in rooms]
        # rms (of int16 samples) at the threshold: 32768 * 10^(dBov/20)
        self.threshold_rms = 32768.0 * 10 ** (threshold_dbov / 20.0)
        self.silence = b"\x00" * 320

    def mix(self, payloads: Sequence[bytes]) -> list[bytes]:
        out: list[bytes] = [b""] * len(payloads)
        for room in self.rooms:
            decoded = [_DECODE[leg.codec](payloads[leg.slot], 2) for leg in room]
            talking = [audioop.rms(pcm, 2) >= self.threshold_rms for pcm in decoded]
            total = self.silence
            for pcm, talks in zip(decoded, talking, strict=True):
                if talks:
                    total = audioop.add(total, pcm, 2)
            shared: dict[Codec, bytes] = {}
            for leg, pcm, talks in zip(room, decoded, talking, strict=True):
                if talks:
                    own = audioop.add(total, audioop.mul(pcm, 2, -1), 2)
                    out[leg.slot] = _ENCODE[leg.codec](own, 2)
                else:
                    frame = shared.get(leg.codec)
                    if frame is None:
                        frame = shared[leg.codec] = _ENCODE[leg.codec](total, 2)
                    out[leg.slot] = frame
        return out
