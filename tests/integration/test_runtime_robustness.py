"""The runtime keeps serving when a peer sends what the sockets cannot use."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest

from bridge.runtime.app import BridgeApp
from bridge.sip.message import SipResponse
from bridge.sip.parser import parse_message
from tests.conftest import LOOPBACK, free_port
from tests.interop.conftest import bridge_config


def _invite(port: int, bridge_port: int, media_line: str) -> bytes:
    body = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
        f"{media_line}\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()
    head = (
        f"INVITE sip:room1@{LOOPBACK}:{bridge_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK-robust-{abs(hash(media_line))}\r\n"
        f"From: <sip:tester@{LOOPBACK}:{port}>;tag=t1\r\n"
        f"To: <sip:room1@{LOOPBACK}:{bridge_port}>\r\n"
        f"Call-ID: robust-{abs(hash(media_line))}@{LOOPBACK}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:tester@{LOOPBACK}:{port}>\r\n"
        "Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _final_status(sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 10)
        message = parse_message(data)
        assert isinstance(message, SipResponse)
        if message.status >= 200:
            return message.status


@pytest.mark.parametrize("media_line", ["c=IN IP4 media.example.invalid", "c=IN IP6 2001:db8::5"])
async def test_unusable_media_address_gets_488_and_the_clock_keeps_ticking(
    tmp_path: Path, media_line: str
) -> None:
    bridge = BridgeApp(bridge_config(tmp_path))
    await bridge.start()
    try:
        await _refused_and_ticking(bridge, media_line)
    finally:
        await bridge.stop()


async def _refused_and_ticking(bridge: BridgeApp, media_line: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        sock.sendto(_invite(sock.getsockname()[1], bridge.local[1], media_line),
                    (LOOPBACK, bridge.local[1]))
        assert await _final_status(sock) == 488
    ticks = bridge.media.ticks
    for _ in range(100):
        await asyncio.sleep(0.02)
        if bridge.media.ticks > ticks + 5:
            break
    assert bridge.media.ticks > ticks + 5, "the media clock stopped"
    assert not bridge.legs


async def test_registrar_given_as_a_host_name_is_resolved(tmp_path: Path) -> None:
    registrar_port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as registrar:
        registrar.bind((LOOPBACK, registrar_port))
        registrar.setblocking(False)
        config = bridge_config(tmp_path)
        config = dataclasses.replace(config, trunk=dataclasses.replace(
            config.trunk, registrar=f"sip:localhost:{registrar_port}",
            aor=f"sip:bridge@localhost:{registrar_port}"))
        app = BridgeApp(config)
        await app.start()
        try:
            loop = asyncio.get_running_loop()
            data = await asyncio.wait_for(loop.sock_recv(registrar, 65535), 10)
        finally:
            await app.stop()
    assert data.startswith(b"REGISTER sip:localhost:")
