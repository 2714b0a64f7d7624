"""What did a participant hear? Tone levels over time and "hears A and B, not itself".

Every test participant sends a sine of its own frequency (440, 1000, 1700 Hz ...). The audio a
participant received -- baresip's ``sndfile`` dump, or SIPp's RTP from
:class:`~tests.interop.capture.LoopbackCapture` decoded with ``bridge.codecs.g711`` -- is cut
into 100 ms windows, and each test frequency is measured in each window with a Hann-windowed
single-bin DFT (a Goertzel value computed as one matrix product). A sine of peak ``A`` on the
bin reads ``A``, reported in dBm0 (G.711 digital milliwatt = 0 dBm0).

Only a stretch where everybody is in the room is judged (``start``/``end`` in monotonic
seconds): IVR prompts, join announcements and the PIN phase come before it. Conclusions are
drawn over many windows (a fraction or the median), never from one, so a prompt or a lost
packet cannot decide.
"""

from __future__ import annotations

import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bridge.codecs.g711 import Codec
from tests.interop.capture import CapturedRtp
from tests.interop.pcapgen import RATE, dbm0_peak

__all__ = [
    "HeardAudio",
    "ToneReport",
    "assert_hears",
    "from_capture",
    "from_wav",
    "measure",
    "onset",
    "tone_levels",
]

WINDOW = 800  # 100 ms
SILENT_DBM0 = -90.0  # what a window of digital silence reads


@dataclass(frozen=True, slots=True)
class HeardAudio:
    """Received audio: 8 kHz int16 samples, sample 0 heard at monotonic time ``start``."""

    pcm: npt.NDArray[np.int16]
    start: float
    label: str = ""

    @property
    def end(self) -> float:
        return self.start + self.pcm.size / RATE

    def between(self, start: float, end: float) -> npt.NDArray[np.int16]:
        """The samples heard from ``start`` to ``end`` (clipped to what exists)."""
        first = max(0, round((start - self.start) * RATE))
        last = min(self.pcm.size, round((end - self.start) * RATE))
        return self.pcm[first:max(first, last)]


def from_capture(packets: Sequence[CapturedRtp], *, payload_type: int = 0,
                 codec: Codec = Codec.PCMU, label: str = "") -> HeardAudio:
    """Decode the audio packets of a capture onto one time line.

    Within one SSRC the RTP timestamps place each frame (gaps stay silent, as a phone would
    conceal them); a new SSRC starts where its first packet arrived. Other payload types
    (telephone-events, comfort noise) are left out.
    """
    audio = [p for p in packets if p.packet.payload_type == payload_type]
    if not audio:
        return HeardAudio(np.zeros(0, dtype=np.int16), 0.0, label)
    start = audio[0].arrival
    placed: list[tuple[int, npt.NDArray[np.int16]]] = []
    ssrc: int | None = None
    base_offset = base_ts = 0
    for item in audio:
        rtp = item.packet
        if rtp.ssrc != ssrc:
            ssrc, base_ts = rtp.ssrc, rtp.timestamp
            base_offset = round((item.arrival - start) * RATE)
        delta = (rtp.timestamp - base_ts) % 2**32
        if delta >= 2**31:
            continue  # older than the first packet of its stream
        placed.append((base_offset + delta, codec.decode(rtp.payload)))
    size = max(offset + pcm.size for offset, pcm in placed)
    pcm = np.zeros(size, dtype=np.int16)
    for offset, frame in placed:
        pcm[offset : offset + frame.size] = frame
    return HeardAudio(pcm, start, label)


def from_wav(path: Path, start: float, label: str = "") -> HeardAudio:
    """An 8 kHz mono 16-bit WAV (baresip's ``dump-*-dec.wav``), sample 0 at ``start``."""
    with wave.open(str(path), "rb") as handle:
        if (handle.getframerate(), handle.getnchannels(), handle.getsampwidth()) != (RATE, 1, 2):
            raise ValueError(f"{path}: need 8 kHz mono 16-bit, got {handle.getparams()}")
        data = handle.readframes(handle.getnframes())
    return HeardAudio(np.frombuffer(data, dtype="<i2").astype(np.int16), start, label)


def tone_levels(pcm: npt.NDArray[np.int16], freqs: Sequence[float],
                window: int = WINDOW) -> npt.NDArray[np.float64]:
    """Level in dBm0 of each frequency in each ``window``-sample block: (blocks, freqs)."""
    blocks = pcm.size // window
    if blocks == 0:
        return np.zeros((0, len(freqs)))
    frames = pcm[: blocks * window].reshape(blocks, window).astype(np.float64)
    hann = np.hanning(window)
    n = np.arange(window)
    phase = 2.0 * np.pi * np.outer(n, np.asarray(freqs, dtype=np.float64)) / RATE
    kernel = np.concatenate([np.cos(phase), np.sin(phase)], axis=1) * hann[:, None]
    products = frames @ kernel
    k = len(freqs)
    magnitude = np.hypot(products[:, :k], products[:, k:]) * 2.0 / hann.sum()
    floor = dbm0_peak(SILENT_DBM0)
    return np.asarray(20.0 * np.log10(np.maximum(magnitude, floor) / dbm0_peak(0.0)))


@dataclass(frozen=True, slots=True)
class ToneReport:
    """Per tone: the median level and the fraction of windows above ``present_dbm0``."""

    label: str
    seconds: float
    median_dbm0: dict[str, float]
    present_fraction: dict[str, float]

    def __str__(self) -> str:
        rows = ", ".join(f"{name}: median {self.median_dbm0[name]:.1f} dBm0, present in "
                         f"{100 * self.present_fraction[name]:.0f}%" for name in self.median_dbm0)
        return f"{self.label} over {self.seconds:.1f} s: {rows}"


def measure(heard: HeardAudio, tones: Mapping[str, float], start: float, end: float,
            present_dbm0: float = -40.0) -> ToneReport:
    """Median level and presence of each named tone in ``heard`` between ``start`` and
    ``end``."""
    pcm = heard.between(start, end)
    levels = tone_levels(pcm, list(tones.values()))
    names = list(tones)
    if levels.shape[0] == 0:
        return ToneReport(heard.label, 0.0, dict.fromkeys(names, SILENT_DBM0),
                          dict.fromkeys(names, 0.0))
    return ToneReport(
        heard.label,
        pcm.size / RATE,
        {name: float(np.median(levels[:, i])) for i, name in enumerate(names)},
        {name: float(np.mean(levels[:, i] >= present_dbm0)) for i, name in enumerate(names)},
    )


def assert_hears(
    heard: HeardAudio,
    *,
    hears: Mapping[str, float],
    not_hears: Mapping[str, float],
    start: float,
    end: float,
    present_dbm0: float = -40.0,
    min_fraction: float = 0.8,
    margin_db: float = 25.0,
    min_seconds: float = 2.0,
) -> ToneReport:
    """Assert that between ``start`` and ``end`` ``heard`` contains every tone of ``hears``
    (above ``present_dbm0`` in at least ``min_fraction`` of the 100 ms windows) and none of
    ``not_hears`` (median at least ``margin_db`` below the quietest expected tone's median,
    and present in fewer than 10 % of the windows). Returns the measurements."""
    report = measure(heard, {**hears, **not_hears}, start, end, present_dbm0)
    assert report.seconds >= min_seconds, (
        f"{heard.label}: only {report.seconds:.1f} s of received audio between "
        f"{start - heard.start:.1f} s and {end - heard.start:.1f} s (heard "
        f"{heard.pcm.size / RATE:.1f} s in all)")
    for name in hears:
        assert report.present_fraction[name] >= min_fraction, f"does not hear {name}: {report}"
    quietest = min((report.median_dbm0[name] for name in hears), default=0.0)
    for name in not_hears:
        assert report.median_dbm0[name] <= quietest - margin_db, f"hears {name}: {report}"
        assert report.present_fraction[name] < 0.1, f"hears {name} at times: {report}"
    return report


def onset(heard: HeardAudio, freq: float, *, after: float | None = None,
          present_dbm0: float = -40.0, windows: int = 3) -> float | None:
    """Monotonic time at which ``freq`` starts to be heard (``windows`` consecutive 100 ms
    windows above ``present_dbm0``), looking from ``after``; None if it never is."""
    start = heard.start if after is None else max(after, heard.start)
    pcm = heard.between(start, heard.end)
    present = tone_levels(pcm, [freq])[:, 0] >= present_dbm0
    run = np.convolve(present.astype(np.int64), np.ones(windows, dtype=np.int64), "valid")
    hits = np.flatnonzero(run == windows)
    return None if hits.size == 0 else start + float(hits[0]) * WINDOW / RATE
