"""G.711 tables and functions checked against CPython's audioop and ITU-T G.711 values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.codecs.g711 import (
    ALAW_DECODE,
    ALAW_ENCODE,
    ALAW_WIDE_ENCODE,
    ULAW_DECODE,
    ULAW_ENCODE,
    ULAW_WIDE_ENCODE,
    WIDE_OFFSET,
    Codec,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16)


def _pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def test_ulaw_decode_all_256_codes_match_audioop() -> None:
    expected = _pcm(audioop.ulaw2lin(ALL_CODES, 2))
    np.testing.assert_array_equal(ULAW_DECODE, expected)
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def test_alaw_decode_all_256_codes_match_audioop() -> None:
    expected = _pcm(audioop.alaw2lin(ALL_CODES, 2))
    np.testing.assert_array_equal(ALAW_DECODE, expected)
    np.testing.assert_array_equal(alaw_decode(ALL_CODES), expected)


def test_ulaw_encode_all_65536_samples_match_audioop() -> None:
    expected = np.frombuffer(audioop.lin2ulaw(ALL_SAMPLES.astype("<i2").tobytes(), 2), np.uint8)
    np.testing.assert_array_equal(ULAW_ENCODE, expected)
    np.testing.assert_array_equal(ulaw_encode(ALL_SAMPLES), expected)


def test_alaw_encode_all_65536_samples_match_audioop() -> None:
    expected = np.frombuffer(audioop.lin2alaw(ALL_SAMPLES.astype("<i2").tobytes(), 2), np.uint8)
    np.testing.assert_array_equal(ALAW_ENCODE, expected)
    np.testing.assert_array_equal(alaw_encode(ALL_SAMPLES), expected)


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),  # G.711: zero is 0xFF in mu-law, 0xD5 in A-law
        (32767, 0x80, 0xAA),  # positive full scale -> largest positive code
        (-32768, 0x00, 0x2A),  # negative full scale -> largest negative code
    ],
)
def test_itu_spot_values(sample: int, ulaw: int, alaw: int) -> None:
    pcm = np.array([sample], dtype=np.int16)
    assert int(ulaw_encode(pcm)[0]) == ulaw
    assert int(alaw_encode(pcm)[0]) == alaw


def test_itu_decoded_extremes() -> None:
    # G.711 mu-law spans +-8031 in 14-bit units (x4 = 32124); A-law +-4032 in 13 bits (x8).
    assert int(ULAW_DECODE[0x80]) == 32124
    assert int(ULAW_DECODE[0x00]) == -32124
    assert int(ULAW_DECODE[0xFF]) == 0
    assert int(ALAW_DECODE[0xAA]) == 32256
    assert int(ALAW_DECODE[0x2A]) == -32256
    assert int(ALAW_DECODE[0xD5]) == 8  # A-law has no zero code: the smallest step is +-8
    assert int(ALAW_DECODE[0x55]) == -8


def test_decode_is_monotonic_within_each_sign() -> None:
    # mu-law positive codes 0xFF..0x80 increase in magnitude as the code decreases.
    positive = ULAW_DECODE[0x80:][::-1].astype(np.int32)
    assert np.all(np.diff(positive) > 0)
    # the encoder inverts the decoder on every decoded value (0x7F, "negative zero", gives 0xFF)
    codes = np.arange(256)
    expected = np.where(codes == 0x7F, 0xFF, codes)
    np.testing.assert_array_equal(ULAW_ENCODE[ULAW_DECODE.view(np.uint16)], expected)
    np.testing.assert_array_equal(ALAW_ENCODE[ALAW_DECODE.view(np.uint16)], codes)


def test_batched_equals_per_frame() -> None:
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, size=(37, 160), dtype=np.uint8)
    pcm = rng.integers(-32768, 32768, size=(37, 160), dtype=np.int16)
    for codec in Codec:
        dec = codec.decode(codes)
        enc = codec.encode(pcm)
        assert dec.shape == (37, 160) and dec.dtype == np.int16
        assert enc.shape == (37, 160) and enc.dtype == np.uint8
        for row in range(37):
            np.testing.assert_array_equal(dec[row], codec.decode(codes[row].tobytes()))
            np.testing.assert_array_equal(enc[row], codec.encode(pcm[row]))


def test_out_buffers_are_filled_in_place() -> None:
    codes = np.arange(320, dtype=np.int32).astype(np.uint8).reshape(2, 160)
    pcm_out = np.empty((2, 160), dtype=np.int16)
    code_out = np.empty((2, 160), dtype=np.uint8)
    assert ulaw_decode(codes, out=pcm_out) is pcm_out
    np.testing.assert_array_equal(pcm_out, ULAW_DECODE[codes])
    assert ulaw_encode(pcm_out, out=code_out) is code_out
    np.testing.assert_array_equal(code_out, ULAW_ENCODE[pcm_out.view(np.uint16)])
    assert alaw_decode(codes, out=pcm_out) is pcm_out
    assert alaw_encode(pcm_out, out=code_out) is code_out
    np.testing.assert_array_equal(code_out, ALAW_ENCODE[pcm_out.view(np.uint16)])


def test_wrong_dtypes_are_rejected() -> None:
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(160, dtype=np.int32))
    with pytest.raises(TypeError):
        alaw_decode(np.zeros(160, dtype=np.int16))


def test_tables_are_read_only() -> None:
    for table in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
        with pytest.raises(ValueError):
            table[0] = 1


def test_codec_registry() -> None:
    assert Codec.PCMU.payload_type == 0 and Codec(0) is Codec.PCMU
    assert Codec.PCMA.payload_type == 8 and Codec(8) is Codec.PCMA
    assert Codec.PCMU.silence_byte == 0xFF and Codec.PCMA.silence_byte == 0xD5
    assert Codec.PCMU.silence() == b"\xff" * 160
    assert Codec.from_encoding_name("pcma") is Codec.PCMA
    assert Codec.PCMU.encoding_name == "PCMU" and Codec.PCMA.clock_rate == 8000
    with pytest.raises(ValueError):
        Codec.from_encoding_name("opus")
    assert not Codec.PCMU.decode(Codec.PCMU.silence(4)).any()
    np.testing.assert_array_equal(Codec.PCMA.decode(Codec.PCMA.silence(2)), [8, 8])


@given(st.binary(max_size=480))
def test_decode_wire_bytes_matches_audioop(payload: bytes) -> None:
    np.testing.assert_array_equal(ulaw_decode(payload), _pcm(audioop.ulaw2lin(payload, 2)))
    np.testing.assert_array_equal(alaw_decode(payload), _pcm(audioop.alaw2lin(payload, 2)))


@pytest.mark.parametrize(
    ("wide", "lin2law"),
    [(ULAW_WIDE_ENCODE, "lin2ulaw"), (ALAW_WIDE_ENCODE, "lin2alaw")],
)
def test_wide_encode_saturates_like_audioop(wide: np.ndarray, lin2law: str) -> None:
    """The int32-indexed table equals audioop's encoding of the value saturated to int16."""
    values = np.arange(-WIDE_OFFSET, WIDE_OFFSET, dtype=np.int64)
    saturated = np.clip(values, -32768, 32767).astype("<i2")
    expected = np.frombuffer(getattr(audioop, lin2law)(saturated.tobytes(), 2), np.uint8)
    assert wide.shape == (2 * WIDE_OFFSET,)
    np.testing.assert_array_equal(wide, expected)
    assert not wide.flags.writeable
