"""The load generator's SIP mode against a scripted UAS on 127.0.0.1.

Three calls: the first two are answered (100, 180, 200 with PT 96 for telephone-event), the
third is rejected with 486. Checks: every 2xx, first and retransmitted, is ACKed; the 486 is
ACKed; OPTIONS is answered; the PIN arrives as RFC 4733 events on PT 96 before audio on PT 0;
a BYE from the UAS is answered; ``hangup_all`` sends BYE for the remaining call and counts the
answer.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from bridge.benchmark.loadgen import (
    LoadGenConfig,
    LoadGenerator,
    SipMessage,
    build_response,
    parse_sip,
)

PIN = "1234"


class FakeUas:
    def __init__(self) -> None:
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.settimeout(5.0)
        self.port = self.sip.getsockname()[1]
        self.rtp = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for sock in self.rtp:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.2)

    def recv(self) -> tuple[SipMessage, tuple[str, int]]:
        data, addr = self.sip.recvfrom(65536)
        return parse_sip(data), addr

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sip.sendto(data, addr)

    def answer(self, invite: SipMessage, rtp_port: int, tag: str) -> bytes:
        sdp = (
            "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"
        ).encode()
        contact = f"Contact: <sip:uas-{tag}@127.0.0.1:{self.port}>"
        return build_response(invite, 200, "OK", to_tag=tag, body=sdp, extra=(contact,))

    def close(self) -> None:
        self.sip.close()
        for sock in self.rtp:
            sock.close()


@pytest.fixture
def uas() -> Iterator[FakeUas]:
    fake = FakeUas()
    yield fake
    fake.close()


def _drain_rtp(sock: socket.socket, seconds: float) -> list[bytes]:
    packets = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            packets.append(sock.recv(2048))
        except TimeoutError:
            continue
    return packets


def test_sip_calls_pin_and_hangups(uas: FakeUas) -> None:
    config = LoadGenConfig(mode="sip", uri=f"sip:1000@127.0.0.1:{uas.port}", pin=PIN,
                           rooms_of=3, talkers=3, pin_delay=0.1, call_rate=50.0)
    gen = LoadGenerator(config)
    try:
        gen.add(3, wait=False)
        invites: dict[str, SipMessage] = {}
        acks: dict[str, int] = {}
        source: tuple[str, int] = ("127.0.0.1", 0)
        order: list[str] = []
        options_answered = False

        def note(message: SipMessage) -> None:
            nonlocal options_answered
            if message.method == "ACK":
                acks[message.header("call-id")] = acks.get(message.header("call-id"), 0) + 1
                if message.header("to").endswith(";tag=busy"):  # non-2xx: the INVITE's URI
                    assert message.uri == f"sip:1000@127.0.0.1:{uas.port}"
                else:  # 2xx: a new transaction to the Contact (RFC 3261 §13.2.2.4)
                    assert message.uri.startswith("sip:uas-t")
                    assert message.header("to").endswith((";tag=t1", ";tag=t2"))
            elif message.status == 200 and message.header("call-id") == "options-1":
                options_answered = True

        while len(order) < 3:
            message, source = uas.recv()
            note(message)
            if message.method == "INVITE" and message.header("call-id") not in invites:
                call_id = message.header("call-id")
                invites[call_id] = message
                order.append(call_id)
                uas.send(build_response(message, 100, "Trying"), source)
                if len(order) <= 2:
                    uas.send(build_response(message, 180, "Ringing", to_tag=f"t{len(order)}"),
                             source)
                    ok = uas.answer(message, uas.rtp[len(order) - 1].getsockname()[1],
                                    f"t{len(order)}")
                    uas.send(ok, source)
                    uas.send(ok, source)  # a retransmitted 2xx must be ACKed again
                else:
                    uas.send(build_response(message, 486, "Busy Here", to_tag="busy"), source)
        uas.send(b"OPTIONS sip:loadgen@127.0.0.1 SIP/2.0\r\n"
                 b"Via: SIP/2.0/UDP 127.0.0.1:" + str(uas.port).encode() + b";branch=z9hG4bKo\r\n"
                 b"From: <sip:uas@127.0.0.1>;tag=o\r\nTo: <sip:loadgen@127.0.0.1>\r\n"
                 b"Call-ID: options-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", source)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and (sum(acks.values()) < 5 or not options_answered):
            note(uas.recv()[0])
        assert acks == {order[0]: 2, order[1]: 2, order[2]: 1}
        assert options_answered

        packets = _drain_rtp(uas.rtp[0], 2.5)
        events, audio_after = [], 0
        for data in packets:
            pt = data[1] & 0x7F
            if pt == 96:
                event, flags, duration = struct.unpack("!BBH", data[12:16])
                events.append((bool(data[1] & 0x80), event, bool(flags & 0x80), duration))
            elif pt == 0 and events:
                audio_after += 1
        starts = [e for marker, e, _, _ in events if marker]
        assert starts == [1, 2, 3, 4, 11]  # "1234#" (RFC 4733 §3.2: '#' = 11)
        assert sum(1 for _, _, end, _ in events if end) == 15  # 3 end packets per digit
        assert audio_after > 10

        stats = gen.stats()
        assert stats["connected"] == 2
        assert stats["failed_calls"] == 1 and stats["failures"] == {"486": 1}

        # The UAS hangs up the first call.
        invite = invites[order[0]]
        bye = (
            f"BYE sip:loadgen0@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{uas.port};branch=z9hG4bKbye1\r\n"
            f"From: {invite.header('to')};tag=t1\r\nTo: {invite.header('from')}\r\n"
            f"Call-ID: {order[0]}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        uas.send(bye, source)
        message, _ = uas.recv()
        assert (message.status, message.cseq) == (200, (1, "BYE"))

        # hangup_all sends BYE on the remaining call; answer it from another thread.
        result: dict[str, object] = {}
        worker = threading.Thread(target=lambda: result.update(gen.hangup_all(timeout=5.0)))
        worker.start()
        message, addr = uas.recv()
        while message.method != "BYE":
            message, addr = uas.recv()
        assert message.header("call-id") == order[1]
        assert message.uri == "sip:uas-t2@127.0.0.1:" + str(uas.port)
        assert message.header("to").endswith(";tag=t2")
        uas.send(build_response(message, 200, "OK"), addr)
        worker.join(20)
        assert result["byes"] == 1 and result["byes_answered"] == 1
        final = result["final"]
        assert isinstance(final, dict)
        assert final["states"] == {"remote_bye": 1, "hung_up": 1, "failed": 1}
    finally:
        gen.kill()
