"""Load generator for the capacity benchmark: SIP calls + RTP streams, in its own process.

Run it with ``python -m bridge.benchmark.loadgen --config JSON`` (fields of
:class:`LoadGenConfig`) and drive it over JSON lines (:mod:`bridge.benchmark.control`), or from
Python with :class:`LoadGenerator`, whose methods map one-to-one to the commands::

    add(n, targets=None, rooms=None, wait=True)   {"cmd": "add", "n": 100}
    stats(mark=True, per_participant=False)       {"cmd": "stats", "mark": true}
    recording(index)                              {"cmd": "recording", "index": 0}
    hangup_all(timeout=10)                        {"cmd": "hangup_all"}

It runs on asyncio with uvloop when installed, so it never shares the bridge's event loop.

Modes
    ``"sip"``: each participant places a real SIP call over UDP (RFC 3261) to its room's URI
    (``config.uri`` or ``rooms[room]["uri"]``): INVITE with an SDP offer (RFC 3264/8866) of
    PCMU/0 and telephone-event/101; 1xx stop the INVITE retransmissions (§17.1.1.2); every 2xx,
    first or retransmitted, is ACKed (§13.2.2.4); a non-2xx final response is ACKed on the
    INVITE transaction (§17.1.1.3) and counts as a failed call. The generator answers the
    bridge's BYE, OPTIONS, INFO and re-INVITE, and ``hangup_all`` sends BYE and waits for its
    final response. After the ACK and ``pin_delay`` it keys ``pin + "#"`` as RFC 4733 events
    (:func:`digit_frames`), then streams audio. Calls start at most ``call_rate`` per second.
    ``"rtp"``: no SIP; ``add`` gets the RTP ports to stream to (e.g. the bare relay's).

Streams
    Every participant has its own UDP socket (a bridge latches on the source address per leg)
    and sends PCMU every 20 ms. All participants share ONE send loop on absolute deadlines
    ``start + k * 20 ms`` (the due frame comes from the monotonic clock, never from
    accumulated sleeps); sequence numbers and timestamps are continuous (RFC 3550 §5.1).
    Participant ``i`` sits in room ``i // rooms_of``; the first ``talkers`` of each room send a
    tone of their own frequency and amplitude (:func:`talker_tone`), the others low-level noise.

Receive accounting
    Per participant: packets received, loss as expected (from the sender's extended highest
    sequence number, RFC 3550 §A.1) minus received, and interarrival jitter (§A.8).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Literal

import numpy as np

from bridge.benchmark.control import Handler, WorkerProcess, install_uvloop, serve_commands
from bridge.codecs.g711 import ulaw_encode
from bridge.media.clock import lateness_summary

__all__ = [
    "DigitFrame",
    "LoadGenConfig",
    "LoadGenerator",
    "SeqTracker",
    "SipMessage",
    "SipParseError",
    "build_ack",
    "build_invite",
    "build_request",
    "build_response",
    "digit_frames",
    "main",
    "parse_sdp_answer",
    "parse_sip",
    "payload_ring",
    "talker_tone",
    "telephone_event_payload",
]

FRAME_SECONDS = 0.020
SAMPLES = 160
RING_FRAMES = 50  # one second: integer-Hz tones repeat seamlessly
PCMU = 0
_RTP = struct.Struct("!BBHII")
_EVENT = struct.Struct("!BBH")
DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 §3.2 table 7
MAX_DROPOUT = 3000  # RFC 3550 §A.1
MAX_CATCH_UP = 3  # frames a late send tick still sends; beyond that frames are skipped


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadGenConfig:
    """Generator settings (all JSON-serialisable; passed to the process as ``--config``)."""

    mode: Literal["sip", "rtp"] = "rtp"
    local_host: str = "127.0.0.1"
    rtp_host: str = "127.0.0.1"  # rtp mode: where the fixed ports are
    uri: str = ""  # sip mode: default Request-URI, e.g. "sip:1000@127.0.0.1:5060"
    pin: str | None = None  # keyed followed by "#" after the call is up
    rooms_of: int = 3
    talkers: int = 3
    call_rate: float = 50.0  # calls started per second at most
    t1: float = 0.5  # RFC 3261 T1
    t2: float = 4.0  # RFC 3261 T2
    call_timeout: float = 32.0  # Timer B (64 * T1)
    pin_delay: float = 1.0  # seconds between ACK and the first digit
    digit_frames: int = 5  # 100 ms per digit
    gap_frames: int = 5  # 100 ms between digits
    record_frames: int = 0  # keep this many received payloads per participant
    record_skip: int = 25  # ... after skipping the first ones
    seed: int = 1
    # The From user of participant i: the E.164 number prefix + i (8 digits), so a bridge
    # that trusts the generator as a trunk counts PIN tries and IVR places per caller, not
    # for all callers of its one address (four at once in the IVR by default); with an
    # empty prefix "loadgen<i>".
    caller_prefix: str = "+49151"


# --------------------------------------------------------------------------- audio


def talker_tone(index: int) -> tuple[int, int]:
    """``(frequency Hz, amplitude)`` of participant ``index``'s tone: integer Hz (so one second
    of frames loops seamlessly), 131 Hz apart for neighbours, amplitude 3000-7999."""
    return 200 + (index * 131) % 3200, 3000 + (index * 977) % 5000


def payload_ring(index: int, *, talker: bool, seed: int = 1) -> list[bytes]:
    """One second (50 frames) of PCMU payloads for participant ``index``: its tone with a
    1 Hz swell (0.4-1.0 of the amplitude) when a talker, else noise of amplitude <= 24
    (about -63 dBov)."""
    t = np.arange(RING_FRAMES * SAMPLES, dtype=np.float64) / 8000.0
    if talker:
        frequency, amplitude = talker_tone(index)
        envelope = 0.7 + 0.3 * np.sin(2 * np.pi * t)  # 1 Hz swell: no two frames alike
        pcm = np.rint(amplitude * envelope * np.sin(2 * np.pi * frequency * t + index))
        pcm = pcm.astype(np.int16)
    else:
        rng = np.random.default_rng([seed, index])
        pcm = rng.integers(-24, 25, size=t.size).astype(np.int16)
    codes = ulaw_encode(pcm).tobytes()
    return [codes[k * SAMPLES : (k + 1) * SAMPLES] for k in range(RING_FRAMES)]


# --------------------------------------------------------------------------- RFC 4733


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitFrame:
    """One 20 ms slot of a digit sequence that carries a telephone-event packet.

    ``event_start`` is the slot index where this event began: its RTP timestamp is the
    timestamp of that slot for every packet of the event (RFC 4733 §2.5.1.2).
    """

    event: int
    marker: bool
    end: bool
    duration: int
    event_start: int
    volume: int


def telephone_event_payload(*, event: int, end: bool, volume: int, duration: int) -> bytes:
    """The 4-octet RFC 4733 §2.3 payload: event, E bit, R=0, volume, duration."""
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= 0xFFFF:
        raise ValueError("telephone-event field out of range")
    return _EVENT.pack(event, (0x80 if end else 0) | volume, duration)


def digit_frames(
    digits: str,
    *,
    event_frames: int = 5,
    gap_frames: int = 5,
    end_repeats: int = 3,
    volume: int = 10,
    samples_per_frame: int = SAMPLES,
) -> list[DigitFrame | None]:
    """The 20 ms slots that key ``digits`` (RFC 4733 §2.5.1): per digit ``event_frames``
    packets with growing duration (the first with the marker bit, §2.5.1.3), then the final
    packet ``end_repeats`` times with the E bit and the final duration (§2.5.1.4), then
    ``gap_frames`` slots of audio (``None``)."""
    slots: list[DigitFrame | None] = []
    for digit in digits:
        event = DTMF_EVENTS.find(digit.upper())
        if event < 0:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        start = len(slots)
        for k in range(1, event_frames + 1):
            slots.append(
                DigitFrame(event=event, marker=k == 1, end=False, duration=k * samples_per_frame,
                           event_start=start, volume=volume)
            )
        final = event_frames * samples_per_frame
        slots.extend(
            DigitFrame(event=event, marker=False, end=True, duration=final, event_start=start,
                       volume=volume)
            for _ in range(end_repeats)
        )
        slots.extend([None] * gap_frames)
    return slots


# --------------------------------------------------------------------------- RTP receive


class SeqTracker:
    """Expected vs received packets of one incoming stream (RFC 3550 §A.1, simplified).

    A forward jump of more than ``MAX_DROPOUT`` or a new SSRC restarts the count (the bridge
    may switch sources, e.g. from a prompt to the mix): the expected count so far is kept.
    Late and duplicate packets count as received, so ``lost`` may be negative.
    """

    __slots__ = ("base", "cycles", "highest", "prior_expected", "received", "ssrc")

    def __init__(self) -> None:
        self.base = -1
        self.highest = 0
        self.cycles = 0
        self.received = 0
        self.prior_expected = 0
        self.ssrc = -1

    def update(self, seq: int, ssrc: int) -> None:
        """Account one packet with sequence number ``seq`` from ``ssrc``."""
        self.received += 1
        if self.base < 0 or ssrc != self.ssrc:
            self._restart(seq, ssrc)
            return
        delta = (seq - self.highest) & 0xFFFF
        if delta == 0 or delta >= 0x8000:
            return  # duplicate or late
        if delta > MAX_DROPOUT:
            self._restart(seq, ssrc)
            return
        if seq < self.highest:
            self.cycles += 0x10000
        self.highest = seq

    def _restart(self, seq: int, ssrc: int) -> None:
        if self.base >= 0:
            self.prior_expected += self.cycles + self.highest - self.base + 1
        self.base = self.highest = seq
        self.cycles = 0
        self.ssrc = ssrc

    @property
    def expected(self) -> int:
        """Packets the sender sent since the first one we saw (extended highest - base + 1)."""
        if self.base < 0:
            return self.prior_expected
        return self.prior_expected + self.cycles + self.highest - self.base + 1

    @property
    def lost(self) -> int:
        """``expected - received`` (RFC 3550 §6.4.1 cumulative number of packets lost)."""
        return self.expected - self.received


# --------------------------------------------------------------------------- SIP text

_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length", "c": "content-type", "k": "supported"}


class SipParseError(ValueError):
    """A datagram the generator cannot read as SIP (it is dropped, as RFC 3261 §18.1.2 says)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SipMessage:
    """A parsed SIP message: ``status`` is 0 for a request; headers keep order and raw values
    with lower-case full names."""

    method: str
    uri: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        """The first value of header ``name`` ('' when absent)."""
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def all(self, name: str) -> list[str]:
        """Every value of header ``name`` in order (e.g. the Via stack)."""
        return [value for key, value in self.headers if key == name]

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq number and method."""
        number, method = self.header("cseq").split()
        return int(number), method.upper()


def parse_sip(data: bytes) -> SipMessage:
    """Parse the start line, headers and body of one SIP datagram (RFC 3261 §7)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipParseError("no end of headers")
    lines = head.decode("utf-8", "replace").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) != 3:
        raise SipParseError(f"bad start line {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"bad header line {line!r}")
        key = name.strip().lower()
        headers.append((_COMPACT.get(key, key), value.strip()))
    if parts[0] == "SIP/2.0":
        if not parts[1].isdigit():
            raise SipParseError(f"bad status line {lines[0]!r}")
        return SipMessage(method="", uri="", status=int(parts[1]), reason=parts[2],
                          headers=headers, body=body)
    if parts[2] != "SIP/2.0":
        raise SipParseError(f"bad request line {lines[0]!r}")
    return SipMessage(method=parts[0].upper(), uri=parts[1], status=0, reason="",
                      headers=headers, body=body)


def _param(value: str, name: str) -> str:
    for piece in value.split(";")[1:]:
        key, _, param = piece.partition("=")
        if key.strip().lower() == name:
            return param.strip()
    return ""


def _uri_of(name_addr: str) -> str:
    start, end = name_addr.find("<"), name_addr.find(">")
    if 0 <= start < end:
        return name_addr[start + 1 : end]
    return name_addr.split(";", maxsplit=1)[0].strip()


def _random_token() -> str:
    return f"{random.getrandbits(64):016x}"


def _sdp(local_host: str, rtp_port: int, session: int, version: int) -> bytes:
    return (
        "v=0\r\n"
        f"o=loadgen {session} {version} IN IP4 {local_host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {local_host}\r\n"
        "t=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    ).encode()


def build_request(
    method: str,
    uri: str,
    *,
    via_host: str,
    via_port: int,
    branch: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    contact: str = "",
    body: bytes = b"",
    content_type: str = "application/sdp",
) -> bytes:
    """A SIP request (RFC 3261 §8.1.1) with the mandatory headers, ``rport`` (RFC 3581)."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {via_host}:{via_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if method in ("INVITE", "OPTIONS"):
        lines.append("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO")
    lines.append("User-Agent: bridge-loadgen")
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_invite(
    uri: str, *, local_host: str, sip_port: int, rtp_port: int, user: str, call_id: str,
    from_tag: str, branch: str, session: int,
) -> bytes:
    """The initial INVITE with an SDP offer of PCMU/0 and telephone-event/101 (RFC 3264 §5)."""
    return build_request(
        "INVITE", uri, via_host=local_host, via_port=sip_port, branch=branch,
        from_=f"<sip:{user}@{local_host}>;tag={from_tag}", to=f"<{uri}>", call_id=call_id,
        cseq=1, contact=f"<sip:{user}@{local_host}:{sip_port}>",
        body=_sdp(local_host, rtp_port, session, 1),
    )


def build_ack(invite: bytes, response: SipMessage, *, branch: str | None = None,
              uri: str | None = None) -> bytes:
    """ACK for ``response`` to ``invite``.

    For a 2xx (``branch`` and ``uri`` given) it is a new transaction to the remote target
    (RFC 3261 §13.2.2.4); for a non-2xx it reuses the INVITE's branch and Request-URI
    (§17.1.1.3). Both copy From/Call-ID, take To from the response and use CSeq ``n ACK``.
    """
    sent = parse_sip(invite)
    number, _ = sent.cseq
    via = sent.header("via")
    if branch is not None:
        via = via.replace(f"branch={_param(via, 'branch')}", f"branch={branch}")
    lines = [
        f"ACK {uri or sent.uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: {sent.header('from')}",
        f"To: {response.header('to')}",
        f"Call-ID: {sent.header('call-id')}",
        f"CSeq: {number} ACK",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def build_response(request: SipMessage, status: int, reason: str, *, to_tag: str = "",
                   body: bytes = b"", extra: tuple[str, ...] = ()) -> bytes:
    """A response echoing Via stack, From, To (+ our tag if it has none), Call-ID and CSeq
    (RFC 3261 §8.2.6.2)."""
    to = request.header("to")
    if to_tag and not _param(to, "tag"):
        to = f"{to};tag={to_tag}"
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {via}" for via in request.all("via")]
    lines += [
        f"From: {request.header('from')}",
        f"To: {to}",
        f"Call-ID: {request.header('call-id')}",
        f"CSeq: {request.header('cseq')}",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_sdp_answer(body: bytes) -> tuple[str, int, int | None]:
    """``(rtp host, rtp port, telephone-event PT or None)`` of the first audio stream of an SDP
    answer (RFC 8866 §5.7 ``c=``, §5.14 ``m=``, RFC 4733 §7 ``rtpmap``). Raises ``ValueError``
    when there is no usable audio stream (port 0 = rejected, RFC 3264 §6)."""
    session_host = media_host = ""
    port = -1
    event_pt: int | None = None
    in_audio = False
    for raw in body.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if port >= 0:
                break  # only the first audio stream
            fields = line[2:].split()
            in_audio = fields[0] == "audio"
            if in_audio:
                port = int(fields[1])
        elif line.startswith("c=") and len(line.split()) >= 3:
            if in_audio:
                media_host = line.split()[2].split("/")[0]
            elif port < 0:
                session_host = line.split()[2].split("/")[0]
        elif in_audio and line.lower().startswith("a=rtpmap:"):
            pt, _, encoding = line[9:].partition(" ")
            if encoding.lower().startswith("telephone-event/"):
                event_pt = int(pt)
    host = media_host or session_host
    if port <= 0 or not host:
        raise ValueError("SDP answer has no accepted audio stream")
    return host, port, event_pt


# --------------------------------------------------------------------------- participants


class CallState(Enum):
    """Where a participant's call is (RFC 3261 §13 UAC view, condensed)."""

    QUEUED = "queued"
    CALLING = "calling"  # INVITE sent, no response
    PROCEEDING = "proceeding"  # 1xx received
    KEYING = "keying"  # 2xx ACKed, PIN being keyed
    CONNECTED = "connected"  # streaming audio
    FAILED = "failed"  # non-2xx, timeout or bad SDP
    REMOTE_BYE = "remote_bye"  # the bridge hung up
    HUNG_UP = "hung_up"  # we sent BYE and it was answered (or timed out)


_STREAMING = (CallState.KEYING, CallState.CONNECTED)


class _Participant(asyncio.DatagramProtocol):
    """One participant: its RTP socket, outgoing stream, receive counters and call state."""

    def __init__(self, gen: _Engine, index: int, talker: bool) -> None:
        self.gen = gen
        self.index = index
        self.room = index // gen.config.rooms_of
        self.talker = talker
        self.ring = payload_ring(index, talker=talker, seed=gen.config.seed)
        self.silence = b"\xff" * SAMPLES
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts0 = random.getrandbits(32)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.target: tuple[str, int] | None = None
        self.state = CallState.QUEUED
        self.status = 0
        self.event_pt = 101
        self.keying: list[DigitFrame | None] | None = None
        self.keying_start = 0
        self.tracker = SeqTracker()
        self.transit = -1.0
        self.jitter = 0.0  # in timestamp units
        self.record: list[bytes] | None = [] if gen.config.record_frames else None
        self.window_expected = 0
        self.window_received = 0
        # SIP
        self.call_id = f"{_random_token()}@loadgen"
        self.from_tag = _random_token()[:10]
        self.uri = ""
        self.pin: str | None = None
        self.invite = b""
        self.ack = b""
        self.bye = b""
        self.remote_target = ""
        self.to_header = ""
        self.timer: asyncio.TimerHandle | None = None
        self.settled = asyncio.get_running_loop().create_future()
        self.bye_done = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 12 or 192 <= data[1] <= 223:  # not RTP, or RTCP (RFC 5761 §4)
            return
        _, _, seq, timestamp, ssrc = _RTP.unpack_from(data)
        self.tracker.update(seq, ssrc)
        arrival = time.monotonic() * 8000.0
        transit = arrival - timestamp
        if self.transit >= 0:  # RFC 3550 §A.8
            self.jitter += (abs(transit - self.transit) - self.jitter) / 16.0
        self.transit = transit
        record = self.record
        if (
            record is not None
            and self.tracker.received > self.gen.config.record_skip
            and len(record) < self.gen.config.record_frames
        ):
            record.append(data[12:])

    def settle(self, state: CallState) -> None:
        self.state = state
        if not self.settled.done():
            self.settled.set_result(state)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _SipSocket(asyncio.DatagramProtocol):
    def __init__(self, gen: _Engine) -> None:
        self.gen = gen

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if data.strip():  # RFC 5626 keepalive CRLFs are ignored
            self.gen.on_sip(data, (str(addr[0]), int(addr[1])))


class _Engine:
    """The generator inside a running loop (what the worker process runs)."""

    def __init__(self, config: LoadGenConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.participants: list[_Participant] = []
        self.active: list[_Participant] = []  # streaming, in send order
        self.calls: dict[str, _Participant] = {}
        self.sip: asyncio.DatagramTransport | None = None
        self.sip_port = 0
        self.rooms: dict[int, dict[str, Any]] = {}
        self.failures: Counter[str] = Counter()
        self.queue: asyncio.Queue[_Participant] = asyncio.Queue()
        self.session = random.getrandbits(30)
        self.sent = 0
        self.window_sent = 0
        self.start = time.monotonic()  # uvloop's loop.time() is cached and in whole ms
        self.frame = 0
        self.missed = 0
        self.lateness: list[float] = []
        self.timer = self.loop.call_later(FRAME_SECONDS, self._on_tick)
        self.dialer: asyncio.Task[None] | None = None

    async def open_sip(self) -> None:
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _SipSocket(self), local_addr=(self.config.local_host, 0)
        )
        self.sip = transport
        self.sip_port = int(transport.get_extra_info("sockname")[1])
        self.dialer = asyncio.create_task(self._dial())

    # ---------------------------------------------------------------- send loop
    def _on_tick(self) -> None:
        now = time.monotonic()
        due = int((now - self.start) / FRAME_SECONDS)
        if due <= self.frame:  # fired early (uvloop): re-arm for the real deadline
            delay = self.start + (self.frame + 1) * FRAME_SECONDS - now
            self.timer = self.loop.call_later(delay, self._on_tick)
            return
        self.lateness.append(now - (self.start + due * FRAME_SECONDS))
        first = max(self.frame + 1, due - MAX_CATCH_UP + 1)
        self.missed += first - self.frame - 1
        for frame in range(first, due + 1):
            self._send_frame(frame)
        self.frame = due
        delay = self.start + (due + 1) * FRAME_SECONDS - time.monotonic()
        self.timer = self.loop.call_later(max(0.0, delay), self._on_tick)

    def _send_frame(self, frame: int) -> None:
        pack = _RTP.pack
        slot = frame % RING_FRAMES
        sent = 0
        for p in self.active:
            transport, target = p.transport, p.target
            if transport is None or target is None:
                continue
            if p.keying is None:
                payload = p.ring[slot] if p.state is CallState.CONNECTED else p.silence
                data = pack(0x80, PCMU, p.seq & 0xFFFF, (p.ts0 + frame * SAMPLES) & 0xFFFFFFFF,
                            p.ssrc) + payload
            else:
                data = self._keying_packet(p, frame)
            p.seq += 1
            transport.sendto(data, target)
            sent += 1
        self.sent += sent

    def _keying_packet(self, p: _Participant, frame: int) -> bytes:
        assert p.keying is not None
        offset = frame - p.keying_start
        digit = p.keying[offset] if offset < len(p.keying) else None
        if offset >= len(p.keying) - 1:
            p.keying = None
            p.state = CallState.CONNECTED
            p.settle(CallState.CONNECTED)
        ts = (p.ts0 + frame * SAMPLES) & 0xFFFFFFFF
        if digit is None:
            return _RTP.pack(0x80, PCMU, p.seq & 0xFFFF, ts, p.ssrc) + p.silence
        event_ts = (p.ts0 + (p.keying_start + digit.event_start) * SAMPLES) & 0xFFFFFFFF
        return _RTP.pack(
            0x80, p.event_pt | (0x80 if digit.marker else 0), p.seq & 0xFFFF, event_ts, p.ssrc
        ) + telephone_event_payload(event=digit.event, end=digit.end, volume=digit.volume,
                                    duration=digit.duration)

    # ---------------------------------------------------------------- participants
    async def add(self, count: int, targets: list[int] | None,
                  rooms: dict[int, dict[str, Any]] | None, wait: bool,
                  timeout: float) -> dict[str, Any]:
        if self.config.mode == "rtp" and (targets is None or len(targets) != count):
            raise ValueError("rtp mode: add needs one target port per participant")
        if rooms:
            self.rooms.update(rooms)
        new: list[_Participant] = []
        for k in range(count):
            index = len(self.participants)
            talker = index % self.config.rooms_of < self.config.talkers
            p = _Participant(self, index, talker)
            transport, _ = await self.loop.create_datagram_endpoint(
                _factory(p), local_addr=(self.config.local_host, 0)
            )
            p.transport = transport
            p.port = int(transport.get_extra_info("sockname")[1])
            self.participants.append(p)
            new.append(p)
            if targets is not None:
                p.target = (self.config.rtp_host, int(targets[k]))
                p.settle(CallState.CONNECTED)
                self.active.append(p)
            else:
                room = self.rooms.get(p.room, {})
                p.uri = str(room.get("uri", self.config.uri))
                pin = room.get("pin", self.config.pin)
                p.pin = None if pin is None else str(pin)
                if not p.uri:
                    raise ValueError("sip mode needs a uri (config.uri or rooms)")
                self.queue.put_nowait(p)
        if wait and new:
            await asyncio.wait([p.settled for p in new], timeout=timeout)
        states = Counter(p.state.value for p in new)
        return {"added": count, "ports": [p.port for p in new], "states": dict(states)}

    async def _dial(self) -> None:
        interval = 1.0 / self.config.call_rate
        next_start = self.loop.time()
        while True:
            p = await self.queue.get()
            delay = next_start - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            next_start = max(next_start + interval, self.loop.time() - interval)
            self._invite(p)

    def _user(self, p: _Participant) -> str:
        """The From (and Contact) user of participant ``p``, the same in every request."""
        prefix = self.config.caller_prefix
        return f"{prefix}{p.index:08d}" if prefix else f"loadgen{p.index}"

    def _invite(self, p: _Participant) -> None:
        user = self._user(p)
        p.invite = build_invite(
            p.uri, local_host=self.config.local_host, sip_port=self.sip_port, rtp_port=p.port,
            user=user, call_id=p.call_id, from_tag=p.from_tag, branch=f"z9hG4bK{_random_token()}",
            session=self.session + p.index,
        )
        p.state = CallState.CALLING
        self.calls[p.call_id] = p
        _host, _port = _sip_destination(p.uri)
        self._retransmit(p, p.invite, (_host, _port), self.config.t1, self.loop.time())

    def _retransmit(self, p: _Participant, data: bytes, dest: tuple[str, int], interval: float,
                    started: float) -> None:
        """Send ``data`` and re-send it at T1, 2*T1, ... (capped at T2 for non-INVITE)
        until a response cancels the timer or Timer B/F (call_timeout) fires."""
        assert self.sip is not None
        self.sip.sendto(data, dest)
        if self.loop.time() - started + interval > self.config.call_timeout:
            p.timer = self.loop.call_later(
                max(0.0, started + self.config.call_timeout - self.loop.time()),
                self._timed_out, p)
            return
        cap = self.config.t2 if not data.startswith(b"INVITE") else float("inf")
        p.timer = self.loop.call_later(interval, self._retransmit, p, data, dest,
                                       min(interval * 2, cap), started)

    def _timed_out(self, p: _Participant) -> None:
        p.timer = None
        if p.state in (CallState.CALLING, CallState.PROCEEDING):
            self.failures["timeout"] += 1
            p.settle(CallState.FAILED)
        elif not p.bye_done.done():
            p.state = CallState.HUNG_UP
            p.bye_done.set_result(False)

    def on_sip(self, data: bytes, source: tuple[str, int]) -> None:
        try:
            message = parse_sip(data)
            p = self.calls.get(message.header("call-id"))
            if message.status:
                if p is not None:
                    self._on_response(p, message, source)
            else:
                self._on_request(p, message, source)
        except (SipParseError, ValueError) as exc:
            print(f"loadgen: dropped SIP datagram: {exc}", file=sys.stderr)

    def _reply(self, data: bytes, request: SipMessage, source: tuple[str, int]) -> None:
        """Send a response to the top Via's ``received``/``rport`` or the source (RFC 3581)."""
        assert self.sip is not None
        self.sip.sendto(data, source)

    def _on_request(self, p: _Participant | None, message: SipMessage,
                    source: tuple[str, int]) -> None:
        method = message.method
        if method == "ACK":
            return
        if method == "OPTIONS":
            extra = ("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO", "Accept: application/sdp")
            self._reply(build_response(message, 200, "OK", to_tag=_random_token()[:10],
                                       extra=extra), message, source)
            return
        if p is None:
            self._reply(build_response(message, 481, "Call/Transaction Does Not Exist",
                                       to_tag=_random_token()[:10]), message, source)
            return
        if method == "BYE":
            self._reply(build_response(message, 200, "OK"), message, source)
            if p.state not in (CallState.HUNG_UP, CallState.REMOTE_BYE, CallState.FAILED):
                self._stop_stream(p)
                p.settle(CallState.REMOTE_BYE)
                p.state = CallState.REMOTE_BYE
            return
        if method == "INVITE":  # re-INVITE: accept the new target, offer the same media
            if message.body:
                host, port, event_pt = parse_sdp_answer(message.body)
                p.target = (host, port)
                p.event_pt = event_pt or p.event_pt
            body = _sdp(self.config.local_host, p.port, self.session + p.index, 2)
            contact = f"Contact: <sip:{self._user(p)}@{self.config.local_host}:{self.sip_port}>"
            self._reply(build_response(message, 200, "OK", body=body, extra=(contact,)),
                        message, source)
            return
        self._reply(build_response(message, 200, "OK"), message, source)  # INFO, UPDATE, ...

    def _on_response(self, p: _Participant, message: SipMessage,
                     source: tuple[str, int]) -> None:
        _, method = message.cseq
        assert self.sip is not None
        if method == "BYE":
            if message.status >= 200:
                p.cancel_timer()
                p.state = CallState.HUNG_UP
                if not p.bye_done.done():
                    p.bye_done.set_result(True)
            return
        if method != "INVITE":
            return
        if message.status < 200:
            if p.state is CallState.CALLING:
                p.cancel_timer()  # §17.1.1.2: a provisional response stops Timer A
                p.timer = self.loop.call_later(self.config.call_timeout, self._timed_out, p)
                p.state = CallState.PROCEEDING
            return
        if message.status >= 300:
            self.sip.sendto(build_ack(p.invite, message), source)
            if p.state in (CallState.CALLING, CallState.PROCEEDING):
                p.cancel_timer()
                self.failures[str(message.status)] += 1
                p.settle(CallState.FAILED)
            return
        if p.ack:  # retransmitted 2xx: ACK it again (§13.2.2.4)
            self.sip.sendto(p.ack, source)
            return
        p.cancel_timer()
        p.remote_target = _uri_of(message.header("contact")) or p.uri
        p.to_header = message.header("to")
        p.ack = build_ack(p.invite, message, branch=f"z9hG4bK{_random_token()}",
                          uri=p.remote_target)
        self.sip.sendto(p.ack, source)
        try:
            host, port, event_pt = parse_sdp_answer(message.body)
        except ValueError:
            self.failures["bad-sdp"] += 1
            p.settle(CallState.FAILED)
            self._send_bye(p)
            return
        p.target = (host, port)
        if event_pt is not None:
            p.event_pt = event_pt
        self.active.append(p)
        if p.pin is None:
            p.settle(CallState.CONNECTED)
        else:
            p.state = CallState.KEYING
            self.loop.call_later(self.config.pin_delay, self._start_keying, p)

    def _start_keying(self, p: _Participant) -> None:
        if p.state is not CallState.KEYING or p.pin is None:
            return
        p.keying = digit_frames(p.pin + "#", event_frames=self.config.digit_frames,
                                gap_frames=self.config.gap_frames)
        p.keying_start = self.frame + 1

    def _stop_stream(self, p: _Participant) -> None:
        if p in self.active:
            self.active.remove(p)

    def _send_bye(self, p: _Participant) -> None:
        self._stop_stream(p)
        p.cancel_timer()
        to = p.to_header
        p.bye = build_request(
            "BYE", p.remote_target or p.uri, via_host=self.config.local_host,
            via_port=self.sip_port, branch=f"z9hG4bK{_random_token()}",
            from_=f"<sip:{self._user(p)}@{self.config.local_host}>;tag={p.from_tag}", to=to,
            call_id=p.call_id, cseq=2,
        )
        host, port = _sip_destination(p.remote_target or p.uri)
        self._retransmit(p, p.bye, (host, port), self.config.t1, self.loop.time())

    async def hangup_all(self, timeout: float) -> dict[str, Any]:
        pending = [p.settled for p in self.participants if not p.settled.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        byes = []
        for p in self.participants:
            if self.config.mode == "sip" and p.state in _STREAMING:
                self._send_bye(p)
                byes.append(p.bye_done)
            elif p.state in _STREAMING:
                p.state = CallState.HUNG_UP
        self.active.clear()
        if byes:
            await asyncio.wait(byes, timeout=timeout)
        answered = sum(1 for f in byes if f.done() and f.result())
        summary = self.stats(mark=True, per_participant=False)
        for p in self.participants:
            p.cancel_timer()
            if p.transport is not None:
                p.transport.close()
        self.participants.clear()
        self.calls.clear()
        return {"byes": len(byes), "byes_answered": answered, "final": summary}

    # ---------------------------------------------------------------- stats
    def stats(self, *, mark: bool, per_participant: bool) -> dict[str, Any]:
        states = Counter(p.state.value for p in self.participants)
        expected = received = lost_window_expected = window_received = 0
        jitters = []
        rows = []
        for p in self.participants:
            t = p.tracker
            exp, rec = t.expected, t.received
            expected += exp
            received += rec
            lost_window_expected += exp - p.window_expected
            window_received += rec - p.window_received
            if rec > 1:
                jitters.append(p.jitter / 8.0)  # timestamp units -> ms
            if per_participant:
                rows.append({"index": p.index, "room": p.room, "state": p.state.value,
                             "received": rec, "expected": exp, "lost": max(0, exp - rec),
                             "window_received": rec - p.window_received,
                             "window_expected": exp - p.window_expected,
                             "jitter_ms": p.jitter / 8.0})
            if mark:
                p.window_expected, p.window_received = exp, rec
        p50, p99, worst = lateness_summary(self.lateness)
        result: dict[str, Any] = {
            "participants": len(self.participants),
            "states": dict(states),
            "connected": states.get(CallState.CONNECTED.value, 0),
            "failed_calls": states.get(CallState.FAILED.value, 0),
            "failures": dict(self.failures),
            "packets_sent": self.sent,
            "packets_received": received,
            "packets_expected": expected,
            "loss_pct": _loss_pct(expected, received),
            "window": {
                "packets_sent": self.sent - self.window_sent,
                "packets_received": window_received,
                "packets_expected": lost_window_expected,
                "loss_pct": _loss_pct(lost_window_expected, window_received),
                "send_lateness_p50_ms": p50,
                "send_lateness_p99_ms": p99,
                "send_lateness_max_ms": worst,
                "missed_frames": self.missed,
            },
            "jitter_ms_mean": float(np.mean(jitters)) if jitters else 0.0,
            "jitter_ms_max": float(np.max(jitters)) if jitters else 0.0,
        }
        if per_participant:
            result["per_participant"] = rows
        if mark:
            self.window_sent = self.sent
            self.lateness = []
            self.missed = 0
        return result

    def recording(self, index: int) -> bytes:
        record = self.participants[index].record
        return b"".join(record or [])


def _loss_pct(expected: int, received: int) -> float:
    return 100.0 * max(0, expected - received) / expected if expected > 0 else 0.0


def _factory(p: _Participant) -> Callable[[], _Participant]:
    return lambda: p


def _sip_destination(uri: str) -> tuple[str, int]:
    """Host and port of a ``sip:`` URI (RFC 3263 without DNS: port 5060 by default)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    hostport = rest.split("@", 1)[-1].split(";", 1)[0].split("?", 1)[0]
    host, _, port = hostport.partition(":")
    return host, int(port) if port else 5060


# --------------------------------------------------------------------------- process


async def _serve(config: LoadGenConfig, uvloop: bool) -> None:
    engine = _Engine(config)
    if config.mode == "sip":
        await engine.open_sip()

    async def add(command: dict[str, Any]) -> dict[str, Any]:
        rooms = {int(k): v for k, v in (command.get("rooms") or {}).items()}
        return await engine.add(int(command["n"]), command.get("targets"), rooms,
                                bool(command.get("wait", True)),
                                float(command.get("timeout", 60.0)))

    async def stats(command: dict[str, Any]) -> dict[str, Any]:
        return engine.stats(mark=bool(command.get("mark", True)),
                            per_participant=bool(command.get("per_participant", False)))

    async def recording(command: dict[str, Any]) -> dict[str, Any]:
        data = engine.recording(int(command["index"]))
        return {"payload": base64.b64encode(data).decode()}

    async def hangup_all(command: dict[str, Any]) -> dict[str, Any]:
        return await engine.hangup_all(float(command.get("timeout", 10.0)))

    ready = {"pid": os.getpid(), "uvloop": uvloop, "sip_port": engine.sip_port}
    handlers: dict[str, Handler] = {
        "add": add, "stats": stats, "recording": recording, "hangup_all": hangup_all,
    }
    try:
        await serve_commands(ready, handlers)
    finally:
        engine.timer.cancel()
        if engine.dialer is not None:
            engine.dialer.cancel()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bridge.benchmark.loadgen --config JSON``."""
    parser = argparse.ArgumentParser(prog="python -m bridge.benchmark.loadgen")
    parser.add_argument("--config", default="{}", help="LoadGenConfig fields as a JSON object")
    args = parser.parse_args(argv)
    config = LoadGenConfig(**json.loads(args.config))
    uvloop = install_uvloop()
    asyncio.run(_serve(config, uvloop))
    return 0


class LoadGenerator(WorkerProcess):
    """The load generator in its own process (see the module docstring for the commands)."""

    def __init__(self, config: LoadGenConfig | None = None) -> None:
        self.config = config or LoadGenConfig()
        super().__init__("bridge.benchmark.loadgen", asdict(self.config))

    def add(self, count: int, *, targets: list[int] | None = None,
            rooms: dict[int, dict[str, Any]] | None = None, wait: bool = True,
            timeout: float = 60.0) -> dict[str, Any]:
        """Add ``count`` participants (a ramp step). rtp mode: ``targets`` are the RTP ports
        on ``rtp_host``, one per participant. sip mode: calls are queued at ``call_rate``;
        ``rooms`` maps room index to ``{"uri": ..., "pin": ...}`` overriding the config; with
        ``wait`` the reply comes when every new call is connected (PIN keyed) or failed."""
        return self.request("add", reply_timeout=timeout + 30.0, n=count, targets=targets,
                            rooms={str(k): v for k, v in (rooms or {}).items()}, wait=wait,
                            timeout=timeout)

    def stats(self, *, mark: bool = True, per_participant: bool = False) -> dict[str, Any]:
        """Counters (totals, and ``window`` since the last mark): participants by state,
        failed calls, packets sent/received/expected, loss %, jitter, send lateness."""
        return self.request("stats", mark=mark, per_participant=per_participant)

    def recording(self, index: int) -> bytes:
        """The recorded received payloads of participant ``index`` (``record_frames``)."""
        return base64.b64decode(self.request("recording", index=index)["payload"])

    def hangup_all(self, timeout: float = 10.0) -> dict[str, Any]:
        """End every call (BYE and wait for the answers in sip mode) and close the sockets."""
        return self.request("hangup_all", reply_timeout=timeout * 3 + 30.0, timeout=timeout)


if __name__ == "__main__":
    raise SystemExit(main())
