"""ITU-T G.711 mu-law and A-law on numpy lookup tables.

The four tables are computed at import from the G.711 companding algorithm (ITU-T G.711 §2-§3,
tables 1a/1b and 2a/2b), in the widely used Sun Microsystems formulation that CPython's
``audioop`` also implements, so results are bit-identical to ``audioop.ulaw2lin``,
``audioop.lin2ulaw``, ``audioop.alaw2lin`` and ``audioop.lin2alaw``:

* decode tables: 256 entries, code (uint8) -> linear sample (int16, full 16-bit scale);
* encode tables: 65,536 entries, indexed by the int16 sample viewed as uint16, so encoding a
  block is one ``np.take``.

Every function works on one frame (1-D) or a batch of frames (2-D, legs x samples) and takes an
optional preallocated ``out=`` array so that the per-tick hot path allocates nothing.

RTP payload types and silence codes follow RFC 3551 §4.5.14 and §6 (PCMU = 0, PCMA = 8).
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "ALAW_PAIR_DECODE",
    "ALAW_WIDE_ENCODE",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "ULAW_PAIR_DECODE",
    "ULAW_WIDE_ENCODE",
    "WIDE_OFFSET",
    "Codec",
    "alaw_decode",
    "alaw_encode",
    "as_payload_array",
    "ulaw_decode",
    "ulaw_encode",
]

PcmArray = npt.NDArray[np.int16]
CodeArray = npt.NDArray[np.uint8]
PayloadLike = bytes | bytearray | memoryview | npt.NDArray[np.uint8]

# Segment end points of the 8 chords (G.711 tables 1 and 2), in the scaled magnitude domain.
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_BIAS = 0x84  # 132: the mu-law bias (33 in the 14-bit domain)
_ULAW_CLIP = 8159  # 14-bit magnitude limit; with the bias it lands past chord 7 and saturates


def _build_ulaw_decode() -> PcmArray:
    """G.711 mu-law expansion: invert the code, then ((mantissa<<3) + 132) << exponent - 132."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = code & 0x80
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode() -> PcmArray:
    """G.711 A-law expansion: toggle the even bits (0x55), rebuild the chord, restore the sign."""
    code = np.arange(256, dtype=np.int32) ^ 0x55
    sign = code & 0x80
    segment = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (mantissa << 4) + 8
    magnitude = np.where(segment >= 1, magnitude + 0x100, magnitude)
    magnitude = np.where(segment >= 2, magnitude << np.maximum(segment - 1, 0), magnitude)
    # In A-law a set sign bit (after the 0x55 toggle) means a positive sample.
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _build_ulaw_encode() -> CodeArray:
    """G.711 mu-law compression of every int16 value, indexed by the value viewed as uint16.

    The sample is reduced to 14 bits (arithmetic shift by 2), the magnitude is clipped to 8159,
    biased by 33, its chord found among the segment end points, and the code word complemented.
    """
    sample = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    pcm14 = sample >> 2
    negative = pcm14 < 0
    magnitude = np.minimum(np.abs(pcm14), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEG_END, magnitude, side="left").astype(np.int32)
    code = (np.minimum(segment, 7) << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)  # beyond the last chord: the largest code
    mask = np.where(negative, 0x7F, 0xFF)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> CodeArray:
    """G.711 A-law compression of every int16 value, indexed by the value viewed as uint16.

    The sample is reduced to 13 bits (arithmetic shift by 3); negative values use the one's
    complement magnitude; values beyond the last chord saturate; the even bits are toggled.
    """
    sample = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    pcm13 = sample >> 3
    negative = pcm13 < 0
    magnitude = np.where(negative, -pcm13 - 1, pcm13)
    segment = np.searchsorted(_ALAW_SEG_END, magnitude, side="left").astype(np.int32)
    shift = np.where(segment < 2, 1, segment)
    code = (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    mask = np.where(negative, 0x55, 0xD5)
    return (code ^ mask).astype(np.uint8)


def _frozen(array: npt.NDArray[np.generic]) -> None:
    array.setflags(write=False)


ULAW_DECODE: PcmArray = _build_ulaw_decode()
ALAW_DECODE: PcmArray = _build_alaw_decode()
ULAW_ENCODE: CodeArray = _build_ulaw_encode()
ALAW_ENCODE: CodeArray = _build_alaw_encode()
for _table in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
    _frozen(_table)
del _table


def _pair_table(table: PcmArray) -> npt.NDArray[np.uint32]:
    """Two decoded samples per entry, indexed by two codes viewed as one uint16 (native order).

    Decoding a contiguous payload through this table needs half the lookups.
    """
    pairs = np.arange(65536, dtype=np.uint16).view(np.uint8).reshape(65536, 2)
    table_pairs = np.ascontiguousarray(table[pairs])
    result: npt.NDArray[np.uint32] = table_pairs.view(np.uint32).reshape(65536)
    result.setflags(write=False)
    return result


ULAW_PAIR_DECODE = _pair_table(ULAW_DECODE)
ALAW_PAIR_DECODE = _pair_table(ALAW_DECODE)
_PAIR_OF = {id(ULAW_DECODE): ULAW_PAIR_DECODE, id(ALAW_DECODE): ALAW_PAIR_DECODE}


WIDE_OFFSET = 65536
"""``*_WIDE_ENCODE[v + WIDE_OFFSET]`` encodes any int32 ``v`` in [-65536, 65536)."""


def _wide_table(table: CodeArray) -> CodeArray:
    """Encode of every value in [-65536, 65536) saturated to int16, indexed by value + 65536.

    A sum of two int16 samples (the N-1 frame of a room with three talkers) is encoded in one
    lookup on its int32 index, without a clip and a cast to int16 first.
    """
    values = np.arange(-WIDE_OFFSET, WIDE_OFFSET, dtype=np.int32)
    saturated = np.clip(values, -32768, 32767).astype(np.int16)
    result: CodeArray = table[saturated.view(np.uint16)]
    result.setflags(write=False)
    return result


ULAW_WIDE_ENCODE = _wide_table(ULAW_ENCODE)
ALAW_WIDE_ENCODE = _wide_table(ALAW_ENCODE)


def as_payload_array(payload: PayloadLike) -> CodeArray:
    """View a payload (bytes-like or uint8 array) as a uint8 array without copying."""
    if isinstance(payload, np.ndarray):
        if payload.dtype != np.uint8:
            raise TypeError(f"G.711 payload must be uint8, got {payload.dtype}")
        return payload
    return np.frombuffer(payload, dtype=np.uint8)


def _decode(table: PcmArray, payload: PayloadLike, out: PcmArray | None) -> PcmArray:
    codes = as_payload_array(payload)
    if out is None:
        out = np.empty(codes.shape, dtype=np.int16)
    if (
        codes.ndim
        and codes.shape[-1] % 2 == 0
        and codes.flags.c_contiguous
        and out.flags.c_contiguous
        and out.shape == codes.shape
    ):
        np.take(_PAIR_OF[id(table)], codes.view(np.uint16), out=out.view(np.uint32), mode="clip")
    else:
        np.take(table, codes, out=out, mode="clip")
    return out


def _encode(table: CodeArray, pcm: PcmArray, out: CodeArray | None) -> CodeArray:
    if pcm.dtype != np.int16:
        raise TypeError(f"G.711 encoders take int16 PCM, got {pcm.dtype}")
    index = pcm.view(np.uint16)
    if out is None:
        return table[index]
    np.take(table, index, out=out)
    return out


def ulaw_decode(payload: PayloadLike, out: PcmArray | None = None) -> PcmArray:
    """Decode mu-law codes (any shape, e.g. 160 or legs x 160) to int16 PCM."""
    return _decode(ULAW_DECODE, payload, out)


def alaw_decode(payload: PayloadLike, out: PcmArray | None = None) -> PcmArray:
    """Decode A-law codes (any shape, e.g. 160 or legs x 160) to int16 PCM."""
    return _decode(ALAW_DECODE, payload, out)


def ulaw_encode(pcm: PcmArray, out: CodeArray | None = None) -> CodeArray:
    """Encode int16 PCM (any shape) to mu-law codes."""
    return _encode(ULAW_ENCODE, pcm, out)


def alaw_encode(pcm: PcmArray, out: CodeArray | None = None) -> CodeArray:
    """Encode int16 PCM (any shape) to A-law codes."""
    return _encode(ALAW_ENCODE, pcm, out)


class Codec(enum.IntEnum):
    """The G.711 codecs by their static RTP payload type (RFC 3551 §6, table 4)."""

    PCMU = 0
    PCMA = 8

    @property
    def payload_type(self) -> int:
        """The static RTP payload type number."""
        return int(self.value)

    @property
    def encoding_name(self) -> str:
        """The SDP rtpmap encoding name (RFC 3551 §6)."""
        return self.name

    @property
    def clock_rate(self) -> int:
        """Sampling rate in Hz (both G.711 laws are 8 kHz)."""
        return 8000

    @property
    def silence_byte(self) -> int:
        """The code of a zero sample: 0xFF for mu-law, 0xD5 for A-law."""
        return 0xFF if self is Codec.PCMU else 0xD5

    @property
    def decode_table(self) -> PcmArray:
        """The 256-entry code -> int16 table."""
        return ULAW_DECODE if self is Codec.PCMU else ALAW_DECODE

    @property
    def encode_table(self) -> CodeArray:
        """The 65,536-entry (int16 viewed as uint16) -> code table."""
        return ULAW_ENCODE if self is Codec.PCMU else ALAW_ENCODE

    def decode(self, payload: PayloadLike, out: PcmArray | None = None) -> PcmArray:
        """Decode codes of this law to int16 PCM."""
        return _decode(self.decode_table, payload, out)

    def encode(self, pcm: PcmArray, out: CodeArray | None = None) -> CodeArray:
        """Encode int16 PCM to codes of this law."""
        return _encode(self.encode_table, pcm, out)

    def silence(self, samples: int = 160) -> bytes:
        """A payload of ``samples`` silent codes (default one 20 ms frame)."""
        return bytes([self.silence_byte]) * samples

    @classmethod
    def from_encoding_name(cls, name: str) -> Codec:
        """Look a codec up by its SDP encoding name, case-insensitively (RFC 4566 §6)."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"not a G.711 encoding name: {name!r}") from None
