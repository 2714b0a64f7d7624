"""Owner WAV import: formats, resampling (checked by FFT), levels and rejection of non-audio.

Input files are written independently of the code under test: with the stdlib ``wave`` module
or with hand-packed RIFF headers (for float and WAVE_FORMAT_EXTENSIBLE).
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.media.wavimport import (
    ImportLimits,
    WavImportError,
    decode_wav,
    resample,
)
from bridge.runtime.prompt_files import import_announcement

F64 = npt.NDArray[np.float64]


def _tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> F64:
    t = np.arange(round(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def _write_int(path: Path, x: F64, rate: int, width: int, channels: int = 1) -> None:
    """x: shape (n,) or (n, channels) floats in [-1, 1)."""
    frames = x.reshape(x.shape[0], -1)
    if frames.shape[1] != channels:
        frames = np.repeat(frames, channels, axis=1)
    if width == 1:
        raw = np.clip(np.rint(frames * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.rint(frames * 32767).astype("<i2").tobytes()
    elif width == 3:
        v = np.rint(frames * 8388607).astype("<i4").reshape(-1)
        triples = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1)
        raw = triples.astype(np.uint8).tobytes()
    else:
        raw = np.rint(frames * 2147483647).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def _riff(fmt_chunk: bytes, data: bytes, extra: bytes = b"") -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + extra
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _float_wav(x: F64, rate: int, channels: int = 1, extensible: bool = False) -> bytes:
    frames = np.repeat(x.reshape(-1, 1), channels, axis=1).astype("<f4")
    block = 4 * channels
    if extensible:
        guid = struct.pack("<H", 3) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, 32, 22, 32, 3)
        fmt += guid
    else:
        fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * block, block, 32)
    # a LIST chunk with odd size before data exercises chunk skipping and padding
    extra = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"
    return _riff(fmt, frames.tobytes(), extra)


def _read_out(path: Path) -> tuple[int, int, int, F64]:
    with wave.open(str(path), "rb") as w:
        params = (w.getframerate(), w.getnchannels(), w.getsampwidth())
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768
    return (*params, x)


def _spectrum_peak(x: F64, rate: int) -> tuple[float, F64]:
    seg = x[len(x) // 4 : 3 * len(x) // 4]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.shape[0])))
    return float(np.argmax(spec) * rate / seg.shape[0]), spec


def _assert_telephone_1k(dst: Path) -> None:
    rate, channels, width, y = _read_out(dst)
    assert (rate, channels, width) == (8000, 1, 2)
    peak_hz, spec = _spectrum_peak(y, 8000)
    assert abs(peak_hz - 1000) <= 8
    # nothing else of note: energy outside 1 kHz +- 50 Hz is > 50 dB down
    freqs = np.fft.rfftfreq(2 * (spec.shape[0] - 1), 1 / 8000)
    off = spec[np.abs(freqs - 1000) > 50]
    assert 20 * np.log10(off.max() / spec.max()) < -50
    # levelled like the prompts: sine RMS -20 dBFS means peak ~ -17 dBFS; below -3 dBFS
    mid = y[2000:-2000]
    rms_db = 20 * np.log10(np.sqrt(np.mean(mid**2)))
    assert -21.0 < rms_db < -19.0
    assert np.abs(y).max() < 10 ** (-3 / 20)


def test_44k1_stereo_16bit(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    left, right = _tone(1000, 44100), _tone(1000, 44100, amp=0.3)
    _write_int(src, np.stack([left, right], axis=1), 44100, 2, channels=2)
    res = import_announcement(src, dst)
    assert (res.source_rate, res.source_channels, res.source_bits) == (44100, 2, 16)
    assert res.source_encoding == "pcm"
    assert abs(res.duration_s - 1.0) < 0.25
    assert -21 < res.rms_dbfs < -19 and res.peak_dbfs < -3
    _assert_telephone_1k(dst)


def test_48k_float(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    src.write_bytes(_float_wav(_tone(1000, 48000, amp=0.9), 48000))
    res = import_announcement(src, dst)
    assert (res.source_rate, res.source_bits, res.source_encoding) == (48000, 32, "float")
    _assert_telephone_1k(dst)


def test_48k_float_extensible_stereo(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    src.write_bytes(_float_wav(_tone(1000, 48000), 48000, channels=2, extensible=True))
    res = import_announcement(src, dst)
    assert (res.source_channels, res.source_encoding) == (2, "float")
    _assert_telephone_1k(dst)


def test_8bit_unsigned(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    _write_int(src, _tone(1000, 11025, amp=0.8), 11025, 1)
    res = import_announcement(src, dst)
    assert res.source_bits == 8
    rate, _, _, y = _read_out(dst)
    assert rate == 8000
    assert abs(_spectrum_peak(y, 8000)[0] - 1000) <= 8


def test_22k05_24bit(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    _write_int(src, _tone(1000, 22050, amp=0.25), 22050, 3)
    res = import_announcement(src, dst)
    assert (res.source_rate, res.source_bits) == (22050, 24)
    _assert_telephone_1k(dst)


def test_32bit_int_and_8k_passthrough_rate(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    _write_int(src, _tone(1000, 8000, amp=0.1), 8000, 4)
    res = import_announcement(src, dst)
    assert (res.source_rate, res.source_bits) == (8000, 32)
    _assert_telephone_1k(dst)


def test_24bit_sign_extension_exact() -> None:
    """Known 24-bit little-endian samples decode to known values."""
    raw = bytes([0x00, 0x00, 0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x01, 0x00, 0x00])
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 24000, 3, 24)
    got = decode_wav(_riff(fmt, raw)).samples[:, 0] * 8388608
    assert got.tolist() == [-8388608, -1, 8388607, 1]


def test_anti_aliasing_removes_6k_tone(tmp_path: Path) -> None:
    """A 6 kHz tone at 44.1 kHz would alias to 2 kHz; the filter must suppress it > 40 dB."""
    src = tmp_path / "in.wav"
    _write_int(src, _tone(1000, 44100, amp=0.4) + _tone(6000, 44100, amp=0.4), 44100, 2)
    res = import_announcement(src, tmp_path / "out.wav")
    _, _, _, y = _read_out(res.dst)
    _, spec = _spectrum_peak(y, 8000)
    freqs = np.fft.rfftfreq(2 * (spec.shape[0] - 1), 1 / 8000)
    at = {f: spec[np.abs(freqs - f) < 30].max() for f in (1000, 2000)}
    assert 20 * np.log10(at[2000] / at[1000]) < -40


@pytest.mark.parametrize("rate", [16000, 22050, 32000, 44100, 48000])
def test_resampler_passband_and_stopband(rate: int) -> None:
    for freq, lo, hi in ((300, -0.1, 0.1), (3300, -0.5, 0.1), (4500, -200, -60)):
        y = resample(_tone(freq, rate), rate)
        assert y.shape[0] == 8000
        gain = 20 * np.log10(np.sqrt(np.mean(y[500:-500] ** 2)) / (0.5 / np.sqrt(2)))
        assert lo < gain < hi, (rate, freq, gain)


def test_resampler_keeps_timing() -> None:
    """An impulse at 0.5 s stays at 0.5 s (the filter is zero-phase/centred)."""
    x = np.zeros(44100)
    x[22050] = 1.0
    y = resample(x, 44100)
    assert int(np.argmax(np.abs(y))) == 4000


# --------------------------------------------------------------------------- rejection


def _expect_error(tmp_path: Path, data: bytes, match: str, **limits: float) -> None:
    src = tmp_path / "in.wav"
    src.write_bytes(data)
    with pytest.raises(WavImportError, match=match) as info:
        import_announcement(src, tmp_path / "out.wav", limits=ImportLimits(**limits))  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.wav").exists()


def _pcm16(x: F64, rate: int = 8000) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return _riff(fmt, np.rint(x * 32767).astype("<i2").tobytes())


def test_text_file(tmp_path: Path) -> None:
    _expect_error(tmp_path, b"Hello, this is a text file.\n" * 20, "not a WAV")


def test_mp3_header(tmp_path: Path) -> None:
    _expect_error(tmp_path, b"ID3\x04\x00\x00\x00\x00\x00\x21" + b"\xff\xfb\x90\x64" + bytes(400),
                  "not a WAV")  # fmt: skip


def test_truncated_wav(tmp_path: Path) -> None:
    data = _pcm16(_tone(1000, 8000))
    _expect_error(tmp_path, data[: len(data) // 2], "truncated")
    _expect_error(tmp_path, data[:30], "truncated")
    _expect_error(tmp_path, data[:12], "no fmt")


def test_zero_length(tmp_path: Path) -> None:
    _expect_error(tmp_path, b"", "not a WAV")
    _expect_error(tmp_path, _pcm16(np.zeros(0)), "no audio samples")


def test_silent(tmp_path: Path) -> None:
    _expect_error(tmp_path, _pcm16(np.zeros(8000)), "silent")


def test_too_long(tmp_path: Path) -> None:
    _expect_error(tmp_path, _pcm16(_tone(1000, 8000, seconds=3.0)), "too long", max_seconds=2.0)


def test_unsupported_encodings(tmp_path: Path) -> None:
    alaw = _riff(struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8), bytes(800))
    _expect_error(tmp_path, alaw, "unsupported WAV encoding")
    pcm12 = _riff(struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 12), bytes(800))
    _expect_error(tmp_path, pcm12, "unsupported WAV encoding")
    low_rate = _riff(struct.pack("<HHIIHH", 1, 1, 4000, 8000, 2, 16), bytes(800))
    _expect_error(tmp_path, low_rate, "sample rate")


def test_nan_float(tmp_path: Path) -> None:
    x = _tone(1000, 8000)
    x[100] = np.nan
    _expect_error(tmp_path, _float_wav(x, 8000), "NaN")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WavImportError, match="cannot read"):
        import_announcement(tmp_path / "absent.wav", tmp_path / "out.wav")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_any_bytes_decode_or_raise(data: bytes) -> None:
    for blob in (data, b"RIFF" + data[:4] + b"WAVE" + data[4:]):
        try:
            decoded = decode_wav(blob)
        except WavImportError:
            continue
        assert decoded.samples.shape[1] == decoded.channels
        assert decoded.samples.shape[0] > 0


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=60))
def test_fuzz_mutated_header(noise: bytes, pos: int) -> None:
    data = bytearray(_pcm16(_tone(1000, 8000, seconds=0.05)))
    data[pos : pos + len(noise)] = noise
    try:
        decoded = decode_wav(bytes(data))
    except WavImportError:
        return
    assert np.all(np.isfinite(decoded.samples))
