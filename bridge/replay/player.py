"""``bridge replay``: play the calling side of each call in a trace against a target.

Each call is placed by the project's own SIP user agent (:class:`SipEndpoint` over
:class:`SipTransport`, UDP or TCP as in the trace) with a new Call-ID, tags and branches and
this host's addresses in Via, Contact and SDP (the trace's offer with its own c=/o=/m= port).
After the answer the trace's calling-side RTP goes out at its original offsets from the
answer (divided by ``--speed``), re-stamped with our own SSRC and continuous sequence numbers
and timestamps; RFC 4733 event packets keep their payloads, so each digit is sent at its
original offset with its original duration. A BYE from the calling side in the trace becomes
our BYE at the same offset; BYE, re-INVITE, OPTIONS and INFO from the target are answered by
the endpoint (a re-INVITE with our SDP again).

Calls start at their relative start times in the trace (a load replay); ``--repeat`` plays
the whole trace again with fresh identities. The report compares, per call, the responses
the target sent (status codes in order, 100 Trying left out: it is hop-by-hop) with the ones
in the trace, who ended the call, the answer delay and duration, lists the digits sent and
measures the audio received (seconds, silent or not; a WAV per call with ``--wav-dir``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import secrets
import socket
import sys
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from bridge.codecs.g711 import alaw_decode, ulaw_decode
from bridge.replay.trace import Call, RtpRecord, TraceError, read_trace
from bridge.rtp.dtmf import parse_event
from bridge.rtp.packet import build_rtp, is_rtcp, parse_rtp
from bridge.runtime.sip_transport import Addr, SipTransport
from bridge.sip.endpoint import EndpointConfig, SipEndpoint
from bridge.sip.events import CallAnswered, CallEnded, Event, ReinviteReceived
from bridge.sip.message import SipMessage, SipParseError, SipRequest, SipResponse
from bridge.sip.parser import parse_message
from bridge.sip.uri import SipUri

log = logging.getLogger(__name__)

EXIT_OK, EXIT_DIFFERS, EXIT_BAD_INPUT = 0, 1, 2
SILENCE_RMS = 100.0  # linear 16-bit RMS below which received audio counts as silent
WAIT_FOR_TARGET_BYE = 10.0  # seconds past the trace's offset to wait for the target's BYE
ANSWER_TIMEOUT = 32.0  # Timer B


@dataclass
class CallResult:
    """What one replayed call did, beside what the trace says."""

    trace_call_id: str
    repeat: int
    transport: str
    call_id: str = ""
    trace_start: float = 0.0  # seconds after the trace's first call started
    start: float = 0.0  # seconds after this repetition began, when our INVITE went out
    trace_statuses: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    trace_answer_delay: float | None = None
    answer_delay: float | None = None
    trace_duration: float | None = None
    duration: float | None = None
    trace_ended_by: str = ""
    ended_by: str = ""
    digits_sent: list[dict[str, Any]] = field(default_factory=list)
    packets_sent: int = 0
    audio_seconds: float = 0.0
    audio_rms: float = 0.0
    trace_audio_silent: bool = True
    wav: str | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def audio_silent(self) -> bool:
        return self.audio_rms < SILENCE_RMS

    @property
    def verdict(self) -> str:
        return "same" if not self.differences else "differs"

    def judge(self) -> None:
        d = self.differences
        if self.statuses != self.trace_statuses:
            d.append(f"responses {self.statuses} instead of {self.trace_statuses}")
        if self.ended_by != self.trace_ended_by:
            d.append(f"ended by {self.ended_by or 'nobody'} instead of "
                     f"{self.trace_ended_by or 'nobody'}")
        if not self.trace_audio_silent and self.audio_silent:
            d.append("received silence where the trace's caller received audio")

    def as_dict(self) -> dict[str, Any]:
        return {
            "trace_call_id": self.trace_call_id, "call_id": self.call_id,
            "repeat": self.repeat, "transport": self.transport,
            "trace_start": _r(self.trace_start), "start": _r(self.start),
            "trace_statuses": self.trace_statuses, "statuses": self.statuses,
            "trace_answer_delay": _r(self.trace_answer_delay),
            "answer_delay": _r(self.answer_delay),
            "trace_duration": _r(self.trace_duration), "duration": _r(self.duration),
            "trace_ended_by": self.trace_ended_by, "ended_by": self.ended_by,
            "digits_sent": self.digits_sent, "packets_sent": self.packets_sent,
            "audio_received": {"seconds": round(self.audio_seconds, 2),
                               "rms": round(self.audio_rms, 1), "silent": self.audio_silent,
                               "wav": self.wav},
            "verdict": self.verdict, "differences": self.differences,
        }

    def text(self) -> str:
        digits = "".join(d["digit"] for d in self.digits_sent) or "-"
        lines = [
            f"call {self.trace_call_id} (repeat {self.repeat}, {self.transport}) "
            f"-> {self.call_id}: {self.verdict.upper()}",
            f"  started at {self.start:.2f} s (trace {self.trace_start:.2f} s)",
            f"  responses: {' '.join(self.statuses) or '-'} "
            f"(trace: {' '.join(self.trace_statuses) or '-'})",
            f"  answer after {_ms(self.answer_delay)} (trace {_ms(self.trace_answer_delay)}), "
            f"lasted {_s(self.duration)} (trace {_s(self.trace_duration)}), ended by "
            f"{self.ended_by or '-'} (trace {self.trace_ended_by or '-'})",
            f"  digits sent: {digits}; RTP packets sent: {self.packets_sent}",
            f"  audio received: {self.audio_seconds:.1f} s, "
            f"{'silent' if self.audio_silent else 'not silent'} (rms {self.audio_rms:.0f})"
            + (f", {self.wav}" if self.wav else ""),
        ]
        lines += [f"  differs: {d}" for d in self.differences]
        return "\n".join(lines)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def audio_rms(payloads: list[tuple[int, bytes]]) -> tuple[float, np.ndarray[Any, Any]]:
    """RMS of decoded G.711 payloads (PT 0 / 8) and the decoded PCM."""
    parts = [ulaw_decode(p) if pt == 0 else alaw_decode(p) for pt, p in payloads
             if pt in (0, 8)]
    if not parts:
        return 0.0, np.zeros(0, dtype=np.int16)
    pcm = np.concatenate(parts)
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))), pcm


def trace_statuses(call: Call) -> list[str]:
    return [f"{status} {method}" for method, status in call.responses_to_caller()
            if status != 100]


def trace_ended_by(call: Call) -> str:
    for record in reversed(call.messages):
        m = record.message
        if isinstance(m, SipRequest) and m.method in ("BYE", "CANCEL"):
            return "caller" if call.from_caller(record) else "target"
    return ""


def _offer(call: Call, host: str, port: int) -> bytes:
    """The trace's SDP offer with our address and port (and a fresh origin)."""
    invite = call.initial_invite
    body = invite.message.body if invite is not None else b""
    text = body.decode("utf-8", "replace") if body else (
        "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        "m=audio 0 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")
    family = "IP6" if ":" in host else "IP4"
    session = secrets.randbelow(2**31)
    text = re.sub(r"(?m)^c=IN IP[46] \S+", f"c=IN {family} {host}", text)
    text = re.sub(r"(?m)^o=(\S+) \S+ \S+ IN IP[46] \S+",
                  lambda m: f"o={m.group(1)} {session} {session} IN {family} {host}", text)
    text = re.sub(r"(?m)^m=audio \d+", f"m=audio {port}", text, count=1)
    return text.encode()


def _answer_media(sdp: bytes) -> Addr | None:
    text = sdp.decode("utf-8", "replace")
    conn = re.search(r"(?m)^c=IN IP[46] (\S+)", text)
    media = re.search(r"(?m)^m=audio (\d+)", text)
    if conn is None or media is None:
        return None
    return conn.group(1).strip(), int(media.group(1))


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, leg: _Leg) -> None:
        self.leg = leg

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if is_rtcp(data):
            return
        try:
            packet = parse_rtp(data)
        except ValueError:
            return
        self.leg.received.append((packet.payload_type, packet.payload))


@dataclass
class _Leg:
    call: Call
    result: CallResult
    handle: str = ""
    tag: str = ""
    sent_at: float = 0.0
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    answer_at: float | None = None
    ended_at: float | None = None
    remote_media: Addr | None = None
    local_sdp: bytes = b""
    received: list[tuple[int, bytes]] = field(default_factory=list)
    seen: set[tuple[int, str, int]] = field(default_factory=set)


class Player:
    """One user agent (one SIP port) playing many calls."""

    def __init__(self, target: Addr, *, speed: float = 1.0, wav_dir: Path | None = None,
                 local_host: str | None = None) -> None:
        self.target = target
        self.speed = speed
        self.wav_dir = wav_dir
        self.local_host = local_host or _local_address_towards(target[0])
        self.transport = SipTransport(self._deliver)
        self.endpoint: SipEndpoint | None = None
        self.legs: dict[str, _Leg] = {}  # by endpoint handle (= our From tag)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.began = 0.0  # loop time the current repetition began
        self.first = 0.0  # trace time of the first call

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        local = await self.transport.start(self.local_host, 0, ("udp", "tcp"))
        self.endpoint = SipEndpoint(EndpointConfig(
            local_host=self.local_host, local_port=local[1], transports=("UDP", "TCP"),
            contact_user="replay", user_agent="bridge-replay", supported=()))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.transport.close()

    # -- SIP plumbing ---------------------------------------------------------------------------

    def _deliver(self, data: bytes | SipMessage, addr: Addr, transport: str) -> None:
        assert self._loop is not None and self.endpoint is not None
        now = self._loop.time()
        message: SipMessage | None
        if isinstance(data, bytes):
            try:
                message = parse_message(data)
            except SipParseError:
                message = None
        else:
            message = data
        if isinstance(message, SipResponse):
            self._note_response(message, now)
        if isinstance(data, bytes):
            self.endpoint.receive(data, addr, transport, now)
        else:
            self.endpoint.receive_message(data, addr, transport, now)
        self._pump()

    def _note_response(self, response: SipResponse, now: float) -> None:
        try:
            leg = self.legs.get(response.from_.tag or "")
            cseq = response.cseq
        except (SipParseError, ValueError):
            return
        if leg is None:
            return
        if not leg.result.call_id:
            with contextlib.suppress(SipParseError):
                leg.result.call_id = response.call_id
        key = (cseq.seq, cseq.method, response.status)
        if key in leg.seen:
            return  # a retransmission
        leg.seen.add(key)
        if response.status != 100:
            leg.result.statuses.append(f"{response.status} {cseq.method}")

    def _pump(self) -> None:
        endpoint = self.endpoint
        assert endpoint is not None and self._loop is not None
        while True:
            for out in endpoint.datagrams_to_send():
                self.transport.send(out.data, out.addr, out.transport)
            events = endpoint.events()
            if not events:
                break
            for event in events:
                self._on_event(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = endpoint.next_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None and self.endpoint is not None
        self._timer = None
        self.endpoint.handle_timer(self._loop.time())
        self._pump()

    def _on_event(self, event: Event) -> None:
        assert self._loop is not None and self.endpoint is not None
        leg = self.legs.get(getattr(event, "call", ""))
        if leg is None:
            return
        now = self._loop.time()
        if isinstance(event, CallAnswered):
            leg.answer_at = now
            leg.remote_media = _answer_media(event.sdp)
            leg.answered.set()
        elif isinstance(event, ReinviteReceived):
            if event.sdp:
                leg.remote_media = _answer_media(event.sdp) or leg.remote_media
            self.endpoint.answer_reinvite(event.call, leg.local_sdp, now)
        elif isinstance(event, CallEnded):
            leg.ended_at = now
            if event.reason == "remote_bye":
                leg.result.ended_by = "target"
            elif event.reason in ("local_bye", "cancelled"):
                leg.result.ended_by = "caller"
            leg.ended.set()

    # -- one call -------------------------------------------------------------------------------

    async def play(self, call: Call, repeat: int) -> CallResult:
        assert self._loop is not None and self.endpoint is not None
        loop = self._loop
        result = CallResult(trace_call_id=call.call_id, repeat=repeat, transport=call.transport,
                            trace_statuses=trace_statuses(call),
                            trace_ended_by=trace_ended_by(call))
        invite = call.initial_invite
        answer = call.answer_time
        if invite is not None and answer is not None:
            result.trace_answer_delay = answer - invite.time
            result.trace_duration = call.end - answer
        result.trace_audio_silent = audio_rms(
            [(r.packet.payload_type, r.packet.payload) for r in call.rtp_in])[0] < SILENCE_RMS
        family = socket.AF_INET6 if ":" in self.local_host else socket.AF_INET
        rtp_sock, rtcp_sock = _port_pair(self.local_host, family)
        leg = _Leg(call, result)
        rtp_transport, _ = await loop.create_datagram_endpoint(
            lambda: _RtpProtocol(leg), sock=rtp_sock)
        rtcp_transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, sock=rtcp_sock)
        try:
            await self._run(call, leg, rtp_transport)
        finally:
            rtp_transport.close()
            rtcp_transport.close()
        self._finish(leg)
        return result

    async def _run(self, call: Call, leg: _Leg, rtp: asyncio.DatagramTransport) -> None:
        assert self._loop is not None and self.endpoint is not None
        loop = self._loop
        speed = self.speed
        port = int(rtp.get_extra_info("sockname")[1])
        leg.local_sdp = _offer(call, self.local_host, port)
        invite = call.initial_invite
        user = _user_of(invite.message if invite is not None else None)
        caller = _from_user(invite.message if invite is not None else None)
        host = self.target[0] if ":" not in self.target[0] else f"[{self.target[0]}]"
        uri = f"sip:{user}@{host}:{self.target[1]}"
        if call.transport == "TCP":
            uri += ";transport=tcp"
        leg.sent_at = loop.time()
        leg.result.start = leg.sent_at - self.began
        leg.result.trace_start = call.start - self.first
        handle = self.endpoint.invite(uri, f"<sip:{caller}@{self.local_host}>", leg.local_sdp,
                                      leg.sent_at, to=f"<sip:{user}@{host}:{self.target[1]}>")
        leg.handle = handle
        self.legs[handle] = leg
        self._pump()
        answered = asyncio.create_task(leg.answered.wait())
        ended = asyncio.create_task(leg.ended.wait())
        cancel_at = _caller_request_offset(call, "CANCEL", invite.time if invite else call.start)
        await asyncio.wait({answered, ended}, return_when=asyncio.FIRST_COMPLETED,
                           timeout=ANSWER_TIMEOUT if cancel_at is None else cancel_at / speed)
        answered.cancel()
        if leg.answer_at is None:
            if not leg.ended.is_set():
                self.endpoint.hangup(handle, loop.time())
                self._pump()
            ended.cancel()
            return
        leg.result.answer_delay = leg.answer_at - leg.sent_at
        trace_answer = call.answer_time or call.start
        sender = asyncio.create_task(self._send_media(call, leg, rtp, trace_answer))
        bye_offset = _caller_request_offset(call, "BYE", trace_answer)
        try:
            if bye_offset is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(ended), bye_offset / speed)
            else:
                last = max([call.end, *(r.time for r in call.rtp_out)]) - trace_answer
                wait = last / speed + (WAIT_FOR_TARGET_BYE if leg.result.trace_ended_by else 0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(ended), wait)
            if not leg.ended.is_set():
                self.endpoint.hangup(handle, loop.time())
                self._pump()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            ended.cancel()
        await asyncio.sleep(0.3)  # the 200 to our BYE

    async def _send_media(self, call: Call, leg: _Leg, rtp: asyncio.DatagramTransport,
                          trace_answer: float) -> None:
        """The trace's calling-side RTP at its offsets from the answer, re-stamped."""
        assert self._loop is not None
        loop = self._loop
        start = leg.answer_at or loop.time()
        ssrc = secrets.randbits(32)
        seq = secrets.randbelow(0x8000)
        ts_base = secrets.randbits(31)
        timestamps: dict[tuple[int, int], int] = {}
        last_sent = -1.0
        records: list[RtpRecord] = sorted(
            (r for r in call.rtp_out if r.time >= trace_answer - 0.5), key=lambda r: r.time)
        for record in records:
            if leg.remote_media is None:
                return
            offset = max(0.0, record.time - trace_answer) / self.speed
            is_event = call.event_pt is not None and record.packet.payload_type == call.event_pt
            if not is_event and self.speed > 1 and offset - last_sent < 0.018:
                continue  # compressed time: keep one audio packet per 20 ms
            delay = start + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            key = (record.packet.ssrc, record.packet.timestamp)
            ts = timestamps.get(key)
            if ts is None:
                ts = timestamps[key] = (ts_base + round(offset * 50) * 160) & 0xFFFFFFFF
                if is_event:
                    self._note_digit(leg, record, offset)
            packet = build_rtp(payload_type=record.packet.payload_type, sequence=seq,
                               timestamp=ts, ssrc=ssrc, payload=record.packet.payload,
                               marker=record.packet.marker)
            seq = (seq + 1) & 0xFFFF
            rtp.sendto(packet, leg.remote_media)
            leg.result.packets_sent += 1
            if not is_event:
                last_sent = offset

    @staticmethod
    def _note_digit(leg: _Leg, record: RtpRecord, offset: float) -> None:
        try:
            event = parse_event(record.packet.payload)
        except ValueError:
            return
        if event.digit is not None:
            leg.result.digits_sent.append({"digit": event.digit, "offset": round(offset, 3)})

    def _finish(self, leg: _Leg) -> None:
        result = leg.result
        if leg.answer_at is not None:
            end = leg.ended_at if leg.ended_at is not None else (self._loop.time()
                                                                 if self._loop else 0.0)
            result.duration = end - leg.answer_at
        rms, pcm = audio_rms(leg.received)
        result.audio_rms = rms
        result.audio_seconds = len(pcm) / 8000
        if self.wav_dir is not None:
            self.wav_dir.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{result.trace_call_id}-{result.repeat}")
            path = self.wav_dir / f"{name}.wav"
            with wave.open(str(path), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(8000)
                out.writeframes(pcm.astype("<i2").tobytes())
            result.wav = str(path)
        result.judge()
        self.legs.pop(leg.handle, None)


def _caller_request_offset(call: Call, method: str, since: float) -> float | None:
    """Seconds from ``since`` to the calling side's first ``method`` request in the trace."""
    for record in call.messages:
        m = record.message
        if isinstance(m, SipRequest) and m.method == method and call.from_caller(record):
            return max(0.0, record.time - since)
    return None


def _user_of(message: SipMessage | None) -> str:
    if isinstance(message, SipRequest) and isinstance(message.uri, SipUri):
        return message.uri.user or "replay"
    return "replay"


def _from_user(message: SipMessage | None) -> str:
    if message is None:
        return "replay"
    try:
        return message.from_.uri.user or "replay"
    except (SipParseError, ValueError, AttributeError):
        return "replay"


def _port_pair(host: str, family: int) -> tuple[socket.socket, socket.socket]:
    for _ in range(100):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        rtp.bind((host, 0))
        port = int(rtp.getsockname()[1])
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
            else:
                rtp.setblocking(False)
                rtcp.setblocking(False)
                return rtp, rtcp
        rtp.close()
    raise OSError("no free RTP port pair")


def _local_address_towards(peer_host: str) -> str:
    family = socket.AF_INET6 if ":" in peer_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer_host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"


async def replay(calls: list[Call], target: Addr, *, speed: float = 1.0, repeat: int = 1,
                 wav_dir: Path | None = None) -> list[CallResult]:
    """Play ``calls`` ``repeat`` times against ``target``, keeping relative start times."""
    player = Player(target, speed=speed, wav_dir=wav_dir)
    await player.start()
    results: list[CallResult] = []
    try:
        player.first = first = min(c.start for c in calls)
        loop = asyncio.get_running_loop()
        for n in range(1, repeat + 1):
            player.began = began = loop.time()

            async def delayed(call: Call, n: int = n, began: float = began) -> CallResult:
                await asyncio.sleep(max(0.0, began + (call.start - first) / speed - loop.time()))
                return await player.play(call, n)

            results += await asyncio.gather(*(delayed(c) for c in calls))
    finally:
        await player.close()
    return results


def parse_target(text: str) -> Addr:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise TraceError(f"--target {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _to_sipp(calls: list[Call], outdir: Path) -> int:
    from bridge.replay.tosipp import write_sipp

    if len(calls) != 1:
        raise TraceError(f"--to-sipp writes one call: name it with --call "
                         f"({len(calls)} calls in the trace)")
    try:
        scenario, pcap = write_sipp(calls[0], outdir)
    except OSError as exc:
        raise TraceError(f"cannot write to {outdir}: {exc.strerror}") from None
    flag = "t1" if calls[0].transport == "TCP" else "u1"
    print(f"wrote {scenario} and {pcap}; run from {outdir}: sipp HOST:PORT -sf "
          f"{scenario.name} -t {flag} -m 1 -i IP -mi IP")
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    try:
        if not args.speed > 0 or args.repeat < 1:
            raise TraceError("--speed must be > 0 and --repeat >= 1")
        if args.to_sipp:
            if args.outdir is None:
                raise TraceError("--to-sipp needs TRACE and OUTDIR")
        elif args.target is None or args.outdir is not None:
            raise TraceError("expected TRACE --target HOST:PORT (or --to-sipp TRACE OUTDIR)")
        target = parse_target(args.target) if not args.to_sipp else ("", 0)
        try:
            data = args.trace.read_bytes()
        except OSError as exc:
            raise TraceError(f"cannot read {args.trace}: {exc.strerror}") from None
        calls = read_trace(data).select(args.call)
        if args.to_sipp:
            return _to_sipp(calls, cast(Path, args.outdir))
    except TraceError as exc:
        print(f"bridge replay: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    results = asyncio.run(replay(calls, target, speed=args.speed, repeat=args.repeat,
                                 wav_dir=args.wav_dir))
    for result in results:
        print(result.text())
    same = sum(r.verdict == "same" for r in results)
    print(f"{same} of {len(results)} calls behaved like the trace")
    if args.json is not None:
        args.json.write_text(json.dumps({"target": args.target, "speed": args.speed,
                                         "calls": [r.as_dict() for r in results]}, indent=2))
    return EXIT_OK if same == len(results) else EXIT_DIFFERS
