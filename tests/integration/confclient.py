"""A small SIP + RTP test phone for the conference integration tests.

The SIP side is the project's own sans-I/O ``SipEndpoint`` as a UAC over a real UDP socket;
the offer comes from ``bridge.sdp.negotiate.offer``; digits are RFC 4733 telephone-events
(``bridge.rtp.dtmf.build_event`` in ``bridge.rtp.packet.build_rtp`` packets). Audio received
from the bridge is counted, not played.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.rtp.dtmf import build_event, digit_to_event
from bridge.rtp.packet import build_rtp
from bridge.sdp.model import parse_sdp
from bridge.sdp.negotiate import NegotiatedMedia, accept_answer, offer
from bridge.sip.endpoint import EndpointConfig, SipEndpoint
from bridge.sip.events import CallAnswered, CallEnded

Addr = tuple[str, int]
HOST = "127.0.0.1"


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition of the system under test (polled; the timeout is generous and
    only bounds a failing test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Addr], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.on_datagram(data, (str(addr[0]), int(addr[1])))


@dataclass(eq=False)
class PhoneCall:
    phone: Phone
    handle: str
    rtp: asyncio.DatagramTransport
    local_sdp: bytes
    answered: asyncio.Future[NegotiatedMedia]
    ended: asyncio.Future[CallEnded]
    media: NegotiatedMedia | None = None
    packets_received: int = 0
    _seq: int = field(default_factory=lambda: secrets.randbelow(2**16))
    _ts: int = field(default_factory=lambda: secrets.randbelow(2**32))
    _ssrc: int = field(default_factory=lambda: secrets.randbits(32))

    async def wait_answered(self, timeout: float = 10.0) -> NegotiatedMedia:
        waiting: set[asyncio.Future[NegotiatedMedia] | asyncio.Future[CallEnded]] = {
            self.answered, self.ended}
        done, _ = await asyncio.wait(waiting, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self.answered in done:
            self.media = self.answered.result()
            return self.media
        if self.ended in done:
            raise AssertionError(f"call ended before the answer: {self.ended.result()}")
        raise AssertionError("no answer")

    async def wait_ended(self, timeout: float = 20.0) -> CallEnded:
        return await asyncio.wait_for(asyncio.shield(self.ended), timeout)

    def _send_rtp(self, payload_type: int, payload: bytes, marker: bool = False) -> None:
        assert self.media is not None
        self._seq = (self._seq + 1) & 0xFFFF
        packet = build_rtp(payload_type=payload_type, sequence=self._seq, timestamp=self._ts,
                           ssrc=self._ssrc, payload=payload, marker=marker)
        self.rtp.sendto(packet, (self.media.remote_address, self.media.remote_port))

    async def send_digits(self, keys: str, *, step: float = 0.01) -> None:
        """Press ``keys`` as RFC 4733 events: three updates and the end packet three times,
        packets ``step`` apart (the bridge's receiver needs no real-time pacing)."""
        assert self.media is not None and self.media.telephone_event_pt is not None
        pt = self.media.telephone_event_pt
        for key in keys:
            event = digit_to_event(key)
            for i in range(3):
                self._send_rtp(pt, build_event(event=event, end=False, volume=10,
                                               duration=160 * (i + 1)), marker=i == 0)
                await asyncio.sleep(step)
            for _ in range(3):
                self._send_rtp(pt, build_event(event=event, end=True, volume=10, duration=640))
            self._ts = (self._ts + 800) & 0xFFFFFFFF
            await asyncio.sleep(step * 2)

    def hang_up(self) -> None:
        self.phone.endpoint.hangup(self.handle, self.phone.now())
        self.phone.pump()


class Phone:
    """A UAC on 127.0.0.1 calling the bridge at ``bridge``."""

    def __init__(self, bridge: Addr) -> None:
        self.bridge = bridge
        self.calls: dict[str, PhoneCall] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._endpoint: SipEndpoint | None = None

    @property
    def endpoint(self) -> SipEndpoint:
        assert self._endpoint is not None
        return self._endpoint

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_sip), local_addr=(HOST, 0))
        self._transport = transport
        port = int(transport.get_extra_info("sockname")[1])
        self._endpoint = SipEndpoint(EndpointConfig(local_host=HOST, local_port=port,
                                                    transports=("UDP",),
                                                    user_agent="confclient"))

    async def close(self) -> None:
        for call in self.calls.values():
            call.rtp.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()

    def _on_sip(self, data: bytes, addr: Addr) -> None:
        self.endpoint.receive(data, addr, "UDP", self.now())
        self.pump()

    def pump(self) -> None:
        endpoint = self.endpoint
        assert self._transport is not None
        while True:
            for out in endpoint.datagrams_to_send():
                self._transport.sendto(out.data, out.addr)
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
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.endpoint.handle_timer(self.now())
        self.pump()

    def _on_event(self, event: object) -> None:
        match event:
            case CallAnswered(call=handle, sdp=sdp):
                call = self.calls.get(handle)
                if call is not None and not call.answered.done():
                    media = accept_answer(parse_sdp(call.local_sdp), parse_sdp(sdp))
                    call.answered.set_result(media)
            case CallEnded(call=handle):
                call = self.calls.get(handle)
                if call is not None and not call.ended.done():
                    call.ended.set_result(event)
            case _:
                pass

    async def dial(self, number: str, caller: str = "+4915112345678", *,
                   rtp_port: int | None = None) -> PhoneCall:
        """Call ``number``; ``rtp_port``: offer that port (a socket of the test's own) instead
        of the call's RTP transport."""
        loop = asyncio.get_running_loop()
        holder: list[PhoneCall] = []

        def on_rtp(data: bytes, addr: Addr) -> None:
            if holder:
                holder[0].packets_received += 1

        rtp, _ = await loop.create_datagram_endpoint(lambda: _Udp(on_rtp), local_addr=(HOST, 0))
        port = rtp_port or int(rtp.get_extra_info("sockname")[1])
        sdp = offer(local_address=HOST, local_port=port, session_id=secrets.randbelow(2**31),
                    session_version=1).to_bytes()
        handle = self.endpoint.invite(f"sip:{number}@{self.bridge[0]}:{self.bridge[1]}",
                                      f"sip:{caller}@{HOST}", sdp, self.now())
        call = PhoneCall(phone=self, handle=handle, rtp=rtp, local_sdp=sdp,
                         answered=loop.create_future(), ended=loop.create_future())
        holder.append(call)
        self.calls[handle] = call
        self.pump()
        return call
