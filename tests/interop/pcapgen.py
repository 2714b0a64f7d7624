"""Generate the RTP a test caller sends, as an Ethernet/IPv4/UDP pcap for SIPp.

SIPp's ``<exec play_pcap_audio="call.pcap"/>`` replays the UDP payloads of a pcap with their
recorded spacing, from its media port to the far end's SDP address. A second
``play_pcap_audio`` cancels the running one, so the audio *and* the key presses of one caller
go into one pcap (see the interop notes).

What a stream holds (one SSRC, one sequence space, 20 ms PCMU frames, RFC 3551 §4.5.14):

* a test tone of the caller's own frequency (``tone_hz``), so a listener can tell the
  participants apart; optionally silent until ``tone_from`` seconds;
* key presses as RFC 4733 telephone-events (§2.3, §2.5.1) on the negotiated payload type
  (101, or 96 as linphone offers): every packet of one event carries the timestamp of its
  first frame, the first has the marker bit, the duration grows by 160 every 20 ms, and the
  end is sent three times with the E bit and the final duration (§2.5.1.4). No audio frames
  are sent while an event lasts; audio resumes afterwards on the running timestamp;
* or (``inband=True``) the same key presses as DTMF tone pairs inside the audio (ITU-T Q.23
  frequencies), each tone at ``dtmf_dbm0`` (about -10 dBm0), replacing the test tone while
  a key sounds.

Levels are in dBm0 against the G.711 digital milliwatt (ITU-T G.711 Table 5: the mu-law
sequence 1E 0B 0B 1E 9E 8B 8B 9E is a 1 kHz sine at 0 dBm0), decoded here so the reference
does not come from the code under test.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dpkt
import numpy as np
import numpy.typing as npt

from bridge.codecs.g711 import ulaw_decode, ulaw_encode

__all__ = [
    "DTMF_FREQS",
    "FRAME",
    "RATE",
    "CallStream",
    "DigitAt",
    "RtpOut",
    "build_stream",
    "dbm0_peak",
    "digits_at",
    "dtmf_pcm",
    "frame",
    "tone_pcm",
    "write_pcap",
    "write_stream_pcap",
]

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
PCAP_EPOCH = 1_700_000_000.0  # fixed capture time: the same spec gives the same bytes

#: ITU-T Q.23: digit -> (low group Hz, high group Hz)
DTMF_FREQS: dict[str, tuple[float, float]] = {
    digit: (low, high)
    for low, row in zip((697.0, 770.0, 852.0, 941.0), ("123A", "456B", "789C", "*0#D"),
                        strict=True)
    for high, digit in zip((1209.0, 1336.0, 1477.0, 1633.0), row, strict=True)
}
_EVENT_CODES = "0123456789*#ABCD"  # RFC 4733 §3.2
_BIG_ENDIAN = sys.byteorder == "big"


def dbm0_peak(dbm0: float) -> float:
    """Peak 16-bit amplitude of a sine at ``dbm0``, from the G.711 digital milliwatt."""
    milliwatt = ulaw_decode(bytes((0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E)))
    rms = float(np.sqrt(np.mean(milliwatt.astype(np.float64) ** 2)))
    return float(rms * math.sqrt(2.0) * 10.0 ** (dbm0 / 20.0))


def tone_pcm(freq: float, seconds: float, dbm0: float = -16.0,
             phase_at: int = 0) -> npt.NDArray[np.int16]:
    """A sine of ``freq`` Hz at ``dbm0`` (8 kHz int16); ``phase_at`` is the first sample's
    index, so consecutive pieces join without a click."""
    n = np.arange(phase_at, phase_at + round(seconds * RATE))
    wave = dbm0_peak(dbm0) * np.sin(2.0 * np.pi * freq * n / RATE)
    return np.round(wave).astype(np.int16)


def dtmf_pcm(digit: str, seconds: float, dbm0_per_tone: float = -10.0) -> npt.NDArray[np.int16]:
    """The Q.23 tone pair of ``digit`` for ``seconds``, each tone at ``dbm0_per_tone``."""
    low, high = DTMF_FREQS[digit.upper()]
    n = np.arange(round(seconds * RATE))
    peak = dbm0_peak(dbm0_per_tone)
    wave = peak * (np.sin(2.0 * np.pi * low * n / RATE) + np.sin(2.0 * np.pi * high * n / RATE))
    return np.round(wave).astype(np.int16)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitAt:
    """One key press: ``digit`` from ``at`` seconds (stream time) for ``seconds``."""

    digit: str
    at: float
    seconds: float = 0.1

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit.upper() not in _EVENT_CODES:
            raise ValueError(f"not a DTMF digit: {self.digit!r}")
        if self.at < 0 or self.seconds < 0.04:
            raise ValueError("a key press starts at >= 0 s and lasts >= 40 ms")


def digits_at(keys: str, start: float, *, on: float = 0.1, off: float = 0.1) -> tuple[DigitAt, ...]:
    """``keys`` pressed one after the other from ``start``: ``on`` seconds each, ``off``
    seconds apart (the 100 ms on / 100 ms off of an automatic dialer)."""
    return tuple(DigitAt(digit=k, at=start + i * (on + off), seconds=on)
                 for i, k in enumerate(keys))


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStream:
    """What one test caller sends for ``seconds`` seconds."""

    seconds: float
    tone_hz: float | None = None
    tone_dbm0: float = -16.0
    tone_from: float = 0.0  # silence (mu-law 0xFF) before this stream time
    digits: tuple[DigitAt, ...] = ()
    event_pt: int = 101  # RFC 4733 telephone-event payload type
    inband: bool = False  # key presses as tone pairs in the audio instead of events
    dtmf_dbm0: float = -10.0  # level of each tone of an in-band pair
    volume: int = 10  # RFC 4733 volume field: -10 dBm0
    audio_pt: int = 0  # PCMU
    ssrc: int = 0x1D00F00D
    first_sequence: int = 1000
    first_timestamp: int = 160_000


@dataclass(frozen=True, slots=True)
class RtpOut:
    """One packet of a stream: ``at`` seconds after the stream start, the RTP bytes."""

    at: float
    data: bytes


def _audio(spec: CallStream) -> npt.NDArray[np.int16]:
    """The whole stream's linear audio (in-band digits mixed in, if asked)."""
    frames = math.ceil(spec.seconds * RATE / FRAME)
    pcm = np.zeros(frames * FRAME, dtype=np.int16)
    if spec.tone_hz is not None:
        start = min(round(spec.tone_from * RATE), pcm.size)
        pcm[start:] = tone_pcm(spec.tone_hz, (pcm.size - start) / RATE, spec.tone_dbm0, start)
    if spec.inband:
        for key in spec.digits:
            begin = round(key.at * RATE)
            tone = dtmf_pcm(key.digit, key.seconds, spec.dtmf_dbm0)[: max(pcm.size - begin, 0)]
            pcm[begin : begin + tone.size] = tone  # the key replaces the voice while it sounds
    return pcm


def build_stream(spec: CallStream) -> list[RtpOut]:
    """The RTP packets of ``spec`` with their send times (see the module docstring)."""
    pcm = _audio(spec)
    codes = ulaw_encode(pcm)
    frames = codes.size // FRAME
    # frame index -> (event payload, marker, first frame of the event) for the frames an
    # RFC 4733 event occupies
    events: dict[int, tuple[bytes, bool, int]] = {}
    if not spec.inband:
        for key in sorted(spec.digits, key=lambda d: d.at):
            first = round(key.at * RATE / FRAME)
            updates = max(1, round(key.seconds * RATE / FRAME))
            code = _EVENT_CODES.index(key.digit.upper())
            final = updates * FRAME
            sends = [(FRAME * (i + 1), False) for i in range(updates)] + [(final, True)] * 3
            for i, (duration, end) in enumerate(sends):
                frame = first + i
                if frame in events:
                    raise ValueError(f"key presses overlap at {key.at:.2f} s")
                payload = bytes((code, (0x80 if end else 0) | spec.volume)) + duration.to_bytes(2)
                # first packet marked; every packet carries the event's start timestamp
                events[frame] = (payload, i == 0, first)
    out: list[RtpOut] = []
    seq = spec.first_sequence
    for frame in range(frames):
        at = frame * FRAME / RATE
        if frame in events:
            body, marker, start_frame = events[frame]
            pt, ts = spec.event_pt, start_frame * FRAME
        else:
            pt, ts = spec.audio_pt, frame * FRAME
            body = codes[frame * FRAME : (frame + 1) * FRAME].tobytes()
            marker = frame == 0
        header = bytes((0x80, pt | (0x80 if marker else 0))) + (seq & 0xFFFF).to_bytes(2) \
            + ((spec.first_timestamp + ts) & 0xFFFFFFFF).to_bytes(4) + spec.ssrc.to_bytes(4)
        out.append(RtpOut(at, header + body))
        seq += 1
    return out


def write_pcap(
    path: Path,
    packets: Sequence[RtpOut],
    *,
    src: tuple[str, int] = ("127.0.0.1", 6000),
    dst: tuple[str, int] = ("127.0.0.1", 6010),
) -> None:
    """Write ``packets`` as Ethernet/IPv4/UDP frames (linktype EN10MB), timestamps
    ``PCAP_EPOCH + at``, with valid IPv4 and UDP checksums. SIPp replaces the addresses and
    ports when it replays them.

    dpkt builds the headers once per payload length; each packet then only gets its UDP
    checksum (RFC 768: one's complement sum of the pseudo-header, header and data), so a
    45 s stream is written in milliseconds without stalling a test's event loop.
    """
    templates: dict[int, tuple[bytes, int]] = {}
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=dpkt.pcap.DLT_EN10MB)
        for packet in packets:
            size = len(packet.data)
            template = templates.get(size)
            if template is None:
                full = frame(bytes(size), src, dst)  # its UDP checksum covers zero data
                header = full[: len(full) - size]
                templates[size] = template = (header, int.from_bytes(header[_UDP_SUM:][:2]))
            header, zero_data_checksum = template
            total = _fold((~zero_data_checksum & 0xFFFF) + _ones_sum(packet.data))
            checksum = (~total & 0xFFFF) or 0xFFFF  # RFC 768: a computed 0 is sent as 0xFFFF
            writer.writepkt(header[:_UDP_SUM] + checksum.to_bytes(2) + header[_UDP_SUM + 2:]
                            + packet.data, ts=PCAP_EPOCH + packet.at)


_UDP_SUM = 14 + 20 + 6  # offset of the UDP checksum in an Ethernet/IPv4 (no options) frame


def _ones_sum(data: bytes) -> int:
    """One's complement sum of the big-endian 16-bit words of ``data`` (zero-padded)."""
    if len(data) % 2:
        data += b"\0"
    total = _fold(sum(memoryview(data).cast("H")))
    # the sum of byte-swapped words is the byte-swapped sum (RFC 1071 §2(B))
    return total if _BIG_ENDIAN else ((total & 0xFF) << 8) | (total >> 8)


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def frame(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """One Ethernet/IPv4/UDP frame carrying ``data``, every field computed by dpkt."""
    udp = dpkt.udp.UDP(sport=src[1], dport=dst[1], data=data)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=_inet(src[0]), dst=_inet(dst[0]), p=dpkt.ip.IP_PROTO_UDP, ttl=64,
                    data=udp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00\x01",
                                 dst=b"\x02\x00\x00\x00\x00\x02",
                                 type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    return bytes(eth)


def write_stream_pcap(path: Path, spec: CallStream) -> list[RtpOut]:
    """Build ``spec`` and write it to ``path``; return the packets for the test's records."""
    packets = build_stream(spec)
    write_pcap(path, packets)
    return packets


def _inet(address: str) -> bytes:
    return bytes(int(part) for part in address.split("."))
