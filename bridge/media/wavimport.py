"""Owner announcement import: any PCM/float WAV -> 8 kHz mono 16-bit, levelled like the prompts.

Sans-I/O: :func:`prepare_announcement` takes a file's bytes and returns the announcement's
(the runtime's ``prompt_files.import_announcement`` reads and writes the files). The pieces are
pure functions so the prompt generator and the tests can use them on bytes/arrays:

- :func:`decode_wav` -- a small RIFF/WAVE reader (Microsoft RIFF spec; ``WAVE_FORMAT_PCM`` 1,
  ``WAVE_FORMAT_IEEE_FLOAT`` 3 and ``WAVE_FORMAT_EXTENSIBLE`` 0xFFFE with a PCM/float sub-format;
  8-bit unsigned, 16/24/32-bit signed integer, 32/64-bit float; any channel count, downmixed).
- :func:`resample` -- rational polyphase resampler with a Kaiser-windowed sinc anti-aliasing
  filter (pass band to 87.5 % of the lower Nyquist frequency, ~80 dB stop band).
- :func:`condition` -- active-level normalisation (-20 dBFS RMS over speech frames), a look-ahead
  peak limiter (peak below -3 dBFS) and trimming of leading/trailing silence to ~100 ms.
- :func:`encode_wav` -- 16-bit PCM mono RIFF/WAVE bytes.

Every failure raises :class:`WavImportError` with a one-line, user-presentable message.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

__all__ = [
    "Announcement",
    "DecodedWav",
    "ImportLimits",
    "LevelTarget",
    "WavImportError",
    "active_rms",
    "condition",
    "convert",
    "decode_wav",
    "encode_wav",
    "prepare_announcement",
    "resample",
    "to_int16",
]

TELEPHONE_RATE = 8000

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# KSDATAFORMAT_SUBTYPE_* GUIDs share this tail after the 2-byte format code (+2 zero bytes).
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


class WavImportError(ValueError):
    """The file cannot be imported; ``str(err)`` is a one-line message for the room owner."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportLimits:
    """Bounds on what the importer accepts."""

    max_seconds: float = 120.0
    min_rate: int = 8000
    max_rate: int = 96000
    max_channels: int = 8
    max_file_bytes: int = 200 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelTarget:
    """Loudness conditioning shared by the IVR prompts and imported announcements."""

    rms_dbfs: float = -20.0  # active (speech) level
    peak_dbfs: float = -3.0  # hard ceiling after the limiter
    active_window_db: float = 35.0  # frames within this of the loudest count as active
    silence_dbfs: float = -50.0  # frames below this are silence for trimming / activity
    keep_silence_s: float = 0.1  # silence kept (or padded) at each end
    fade_s: float = 0.005  # tiny fade at both ends against clicks


@dataclass(frozen=True, slots=True)
class DecodedWav:
    """Samples as float64 in [-1, 1) (float files may exceed), shape (frames, channels)."""

    samples: NDArray[np.float64]
    rate: int
    channels: int
    bits: int
    encoding: str  # "pcm" or "float"

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[0]) / self.rate


@dataclass(frozen=True, slots=True, kw_only=True)
class Announcement:
    """What :func:`prepare_announcement` made: the WAV bytes and the conversion's figures."""

    wav: bytes
    source_rate: int
    source_channels: int
    source_bits: int
    source_encoding: str
    samples: int
    duration_s: float
    gain_db: float
    rms_dbfs: float
    peak_dbfs: float


# --------------------------------------------------------------------------- RIFF reader


def decode_wav(data: bytes, limits: ImportLimits | None = None) -> DecodedWav:
    """Parse RIFF/WAVE bytes; raise :class:`WavImportError` for anything that is not usable."""
    lim = limits if limits is not None else ImportLimits()
    if len(data) < 12 or data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavImportError("not a WAV file (no RIFF/WAVE header)")
    fmt: bytes | None = None
    body: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, pos)
        start = pos + 8
        if cid == b"fmt ":
            if start + size > len(data):
                raise WavImportError("truncated WAV file (fmt chunk cut short)")
            fmt = data[start : start + size]
        elif cid == b"data":
            if fmt is None:
                raise WavImportError("malformed WAV file (data chunk before fmt chunk)")
            if start + size > len(data):
                raise WavImportError(
                    f"truncated WAV file (data chunk declares {size} bytes, "
                    f"only {len(data) - start} present)"
                )
            body = data[start : start + size]
            break
        pos = start + size + (size & 1)  # chunks are word aligned
    if fmt is None:
        raise WavImportError("truncated or malformed WAV file (no fmt chunk)")
    if body is None:
        raise WavImportError("truncated or malformed WAV file (no data chunk)")
    if len(fmt) < 16:
        raise WavImportError("malformed WAV file (fmt chunk too short)")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt, 0)
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise WavImportError("malformed WAV file (short WAVE_FORMAT_EXTENSIBLE header)")
        guid = fmt[24:40]
        if guid[2:16] != _GUID_TAIL:
            raise WavImportError("unsupported WAV encoding (unknown sub-format)")
        tag = struct.unpack_from("<H", guid, 0)[0]
    if tag == _WAVE_FORMAT_PCM and bits in (8, 16, 24, 32):
        encoding = "pcm"
    elif tag == _WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64):
        encoding = "float"
    else:
        raise WavImportError(
            f"unsupported WAV encoding (format tag 0x{tag:04x}, {bits} bits); "
            "use PCM 8/16/24/32-bit or 32-bit float"
        )
    if not 1 <= channels <= lim.max_channels:
        raise WavImportError(f"unsupported channel count {channels}")
    if not lim.min_rate <= rate <= lim.max_rate:
        raise WavImportError(
            f"unsupported sample rate {rate} Hz (allowed {lim.min_rate}-{lim.max_rate} Hz)"
        )
    if block_align != channels * bits // 8:
        raise WavImportError("malformed WAV file (block align does not match format)")
    frames = len(body) // block_align
    if frames == 0:
        raise WavImportError("WAV file contains no audio samples")
    if frames / rate > lim.max_seconds:
        raise WavImportError(
            f"recording too long ({frames / rate:.1f} s, at most {lim.max_seconds:.0f} s)"
        )
    raw = body[: frames * block_align]
    samples = _decode_samples(raw, encoding, bits).reshape(frames, channels)
    if encoding == "float" and not np.all(np.isfinite(samples)):
        raise WavImportError("WAV file contains invalid (NaN/infinite) float samples")
    return DecodedWav(samples, rate, channels, bits, encoding)


def _decode_samples(raw: bytes, encoding: str, bits: int) -> NDArray[np.float64]:
    if encoding == "float":
        return np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    if bits == 8:  # unsigned, offset 128
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if bits == 16:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = (v << 8) >> 8  # sign-extend from 24 bits
        return v.astype(np.float64) / 8388608.0
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0


def encode_wav(samples: NDArray[np.int16], rate: int = TELEPHONE_RATE) -> bytes:
    """16-bit PCM mono RIFF/WAVE bytes (canonical 44-byte header)."""
    pcm = np.asarray(samples, dtype="<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        _WAVE_FORMAT_PCM,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm


# --------------------------------------------------------------------------- resampler


def _kaiser_beta(atten_db: float) -> float:
    if atten_db > 50:
        return 0.1102 * (atten_db - 8.7)
    if atten_db >= 21:
        return float(0.5842 * (atten_db - 21) ** 0.4 + 0.07886 * (atten_db - 21))
    return 0.0


def _phase_table(
    up: int, down: int, rate_in: int, rate_out: int, atten_db: float
) -> tuple[NDArray[np.float64], int]:
    """Per-phase FIR taps, shape (up, 2*half), and ``half``.

    Output sample ``n`` sits at input time ``n*down/up``; with ``k = floor(n*down/up)`` and phase
    ``p = n*down mod up`` it is ``sum_m x[k+m] * g(p/up - m)`` for ``m`` in ``(-half, half]``,
    where ``g`` is a Kaiser-windowed sinc low-pass with its cut-off between 87.5 % and 100 % of
    the lower Nyquist frequency.
    """
    nyq = 0.5 * min(rate_in, rate_out)
    f_pass, f_stop = 0.875 * nyq, nyq
    fc = 0.5 * (f_pass + f_stop) / rate_in  # cycles per input sample
    width = 2 * math.pi * (f_stop - f_pass) / rate_in
    ntaps = math.ceil((atten_db - 7.95) / (2.285 * width)) + 1
    half = max(2, (ntaps + 1) // 2)
    beta = _kaiser_beta(atten_db)
    m = np.arange(-half + 1, half + 1, dtype=np.float64)
    tau = (np.arange(up, dtype=np.float64) / up)[:, None] - m[None, :]
    u = np.clip(tau / half, -1.0, 1.0)
    window = np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta)
    taps = 2.0 * fc * np.sinc(2.0 * fc * tau) * window
    taps /= taps.sum(axis=1, keepdims=True)  # exact unity gain at DC for every phase
    return taps, half


def resample(
    x: NDArray[np.float64], rate_in: int, rate_out: int = TELEPHONE_RATE, atten_db: float = 80.0
) -> NDArray[np.float64]:
    """Resample a 1-D signal by the rational factor ``rate_out/rate_in`` with anti-aliasing."""
    if rate_in == rate_out:
        return np.array(x, dtype=np.float64)
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    taps, half = _phase_table(up, down, rate_in, rate_out, atten_db)
    n_in = int(x.shape[0])
    n_out = -(-n_in * up // down)
    xpad = np.concatenate([np.zeros(half - 1), np.asarray(x, np.float64), np.zeros(half + 1)])
    # windows[k] == x[k-half+1 : k+half+1]
    windows = sliding_window_view(xpad, 2 * half)
    y = np.empty(n_out, dtype=np.float64)
    # Outputs n = r + up*j share one phase and step by `down` input samples per j.
    for r in range(min(up, n_out)):
        k0, phase = divmod(r * down, up)
        count = len(range(r, n_out, up))
        rows = windows[k0 : k0 + down * (count - 1) + 1 : down]
        y[r::up] = rows @ taps[phase]
    return y


# --------------------------------------------------------------------------- levels


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def _frame_rms(x: NDArray[np.float64], frame: int) -> NDArray[np.float64]:
    n = -(-x.shape[0] // frame) * frame
    padded = np.zeros(n)
    padded[: x.shape[0]] = x
    result: NDArray[np.float64] = np.sqrt(np.mean(padded.reshape(-1, frame) ** 2, axis=1))
    return result


def _limit(x: NDArray[np.float64], ceiling: float, rate: int) -> NDArray[np.float64]:
    """Look-ahead peak limiter: |y| <= ceiling, gain changes smoothly over 5 ms blocks.

    Each block's gain is ``min(1, ceiling / max|x|)`` over itself and two blocks either side;
    linear interpolation between block centres therefore never exceeds the gain needed by the
    block a sample belongs to.
    """
    block = max(1, rate // 200)
    env = np.abs(x)
    n = -(-env.shape[0] // block) * block
    padded = np.zeros(n)
    padded[: env.shape[0]] = env
    peak = padded.reshape(-1, block).max(axis=1)
    dil = peak.copy()
    for s in (1, 2):
        dil[s:] = np.maximum(dil[s:], peak[:-s])
        dil[:-s] = np.maximum(dil[:-s], peak[s:])
    gains = np.minimum(1.0, ceiling / np.maximum(dil, 1e-12))
    centres = np.arange(gains.shape[0]) * block + (block - 1) / 2.0
    g = np.interp(np.arange(x.shape[0], dtype=np.float64), centres, gains)
    out: NDArray[np.float64] = np.clip(x * g, -ceiling, ceiling)
    return out


def active_rms(x: NDArray[np.float64], rate: int, target: LevelTarget) -> float:
    """RMS over the frames (20 ms) within ``active_window_db`` of the loudest one."""
    rms = _frame_rms(x, max(1, rate // 50))
    loudest = float(rms.max(initial=0.0))
    if loudest <= 0.0:
        return 0.0
    floor = max(loudest * 10 ** (-target.active_window_db / 20), 10 ** (target.silence_dbfs / 20))
    active = rms[rms >= floor]
    if active.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(active**2)))


def condition(
    x: NDArray[np.float64], rate: int, target: LevelTarget | None = None
) -> tuple[NDArray[np.float64], float]:
    """Normalise, limit and trim a mono float signal; return it and the gain applied in dB.

    Raises :class:`WavImportError` when the signal is silent.
    """
    tgt = target if target is not None else LevelTarget()
    level = active_rms(x, rate, tgt)
    if level < 10 ** (-90 / 20):
        raise WavImportError("recording is silent")
    want = 10 ** (tgt.rms_dbfs / 20)
    ceiling = 10 ** (tgt.peak_dbfs / 20)
    gain = want / level
    y = _limit(x * gain, ceiling, rate)
    # The limiter lowers the level a little; one correction pass (at most +6 dB) gets closer.
    again = min(2.0, want / max(active_rms(y, rate, tgt), 1e-12))
    if again > 1.0:
        y = _limit(y * again, ceiling, rate)
        gain *= again
    y = _trim(y, rate, tgt)
    return y, _db(gain)


def _trim(x: NDArray[np.float64], rate: int, tgt: LevelTarget) -> NDArray[np.float64]:
    frame = max(1, rate // 100)
    rms = _frame_rms(x, frame)
    loud = np.flatnonzero(rms >= 10 ** (tgt.silence_dbfs / 20))
    keep = round(tgt.keep_silence_s * rate)
    if loud.size == 0:
        return np.zeros(2 * keep)
    start = int(loud[0]) * frame
    stop = min(x.shape[0], (int(loud[-1]) + 1) * frame)
    lo, hi = max(0, start - keep), min(x.shape[0], stop + keep)
    core = np.array(x[lo:hi])
    fade = min(core.shape[0] // 2, round(tgt.fade_s * rate))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        core[:fade] *= ramp
        core[-fade:] *= ramp[::-1]
    return np.concatenate([np.zeros(keep - (start - lo)), core, np.zeros(keep - (hi - stop))])


def to_int16(x: NDArray[np.float64]) -> NDArray[np.int16]:
    """Float [-1, 1) to int16 with rounding and saturation."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------- file import


def convert(
    decoded: DecodedWav, target: LevelTarget | None = None
) -> tuple[NDArray[np.int16], float]:
    """Downmix, resample to 8 kHz and condition; return int16 samples and the gain in dB."""
    mono = decoded.samples.mean(axis=1)
    tele = resample(mono, decoded.rate, TELEPHONE_RATE)
    y, gain_db = condition(tele, TELEPHONE_RATE, target)
    return to_int16(y), gain_db


def prepare_announcement(
    data: bytes,
    *,
    limits: ImportLimits | None = None,
    target: LevelTarget | None = None,
) -> Announcement:
    """Convert the bytes of a WAV file into an 8 kHz mono 16-bit announcement (its WAV bytes
    and what was done). Raises :class:`WavImportError` (one-line message) for anything that is
    not a usable WAV recording. Reading and writing the files is the runtime's
    (:func:`bridge.runtime.prompt_files.import_announcement`)."""
    lim = limits if limits is not None else ImportLimits()
    if len(data) > lim.max_file_bytes:
        raise WavImportError(f"file too large ({len(data)} bytes)")
    decoded = decode_wav(data, lim)
    pcm, gain_db = convert(decoded, target)
    f = pcm.astype(np.float64) / 32768.0
    return Announcement(
        wav=encode_wav(pcm),
        source_rate=decoded.rate,
        source_channels=decoded.channels,
        source_bits=decoded.bits,
        source_encoding=decoded.encoding,
        samples=int(pcm.shape[0]),
        duration_s=pcm.shape[0] / TELEPHONE_RATE,
        gain_db=gain_db,
        rms_dbfs=_db(active_rms(f, TELEPHONE_RATE, target or LevelTarget())),
        peak_dbfs=_db(float(np.abs(f).max(initial=0.0))),
    )
