"""Processes for the SIP flood test, run as ``python -m tests.integration.floodtools``.

``flood HOST PORT SOURCE SECONDS``: one socket on SOURCE sends OPTIONS and INVITEs (each with a
Call-ID and branch of its own, no SDP) to the bridge as fast as this Python loop goes, reading
what comes back in between; prints a JSON summary (sent, responses by status, 503s with
Retry-After, responses per second). It runs at nice 10: a real flooder is on another machine,
here it shares the 2 cores with the bridge, and what the test measures is the bridge's
fairness to other sources, not how the kernel splits one core between the two processes (the
flooder still sends as fast as it can on whatever CPU is left: 100,000-250,000 per second).

``probe HOST PORT SOURCE SECONDS INTERVAL``: OPTIONS every INTERVAL seconds from SOURCE, each
sent once (no retransmission); the answer time is taken from the kernel's receive timestamp
(SO_TIMESTAMPNS), so this process's own scheduling does not count; prints the answer times
and how many got none within 2 s.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time

_FLOOD = (
    b"%s sip:1000@%s:%d SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-fl%d;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:flood@%s>;tag=f%d\r\n"
    b"To: <sip:1000@%s>\r\n"
    b"Call-ID: flood-%d@%s\r\n"
    b"CSeq: 1 %s\r\n"
    b"Contact: <sip:flood@%s:%d>\r\n"
    b"Content-Length: 0\r\n\r\n"
)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python lacks the name


def flood(host: str, port: int, source: str, seconds: float) -> dict[str, object]:
    os.nice(10)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    src_port = sock.getsockname()[1]
    h, s = host.encode(), source.encode()
    target = (host, port)
    statuses: dict[str, int] = {}
    retry_after = 0
    per_second: list[int] = [0] * (int(seconds) + 2)
    sent = 0
    start = time.monotonic()
    end = start + seconds
    i = 0
    while True:
        for _ in range(64):
            i += 1
            method = b"INVITE" if i & 1 else b"OPTIONS"
            data = _FLOOD % (method, h, port, s, src_port, i, s, i, h, i, s, method, s, src_port)
            try:
                sock.sendto(data, target)
                sent += 1
            except BlockingIOError:
                pass
        now = time.monotonic()
        while True:
            try:
                reply = sock.recv(65535)
            except BlockingIOError:
                break
            status = reply[8:11].decode()
            statuses[status] = statuses.get(status, 0) + 1
            per_second[int(now - start)] += 1
            if status == "503" and b"\r\nRetry-After:" in reply:
                retry_after += 1
        if now >= end:
            break
    # What still arrives after the flood stopped (answers to the last accepted requests).
    time.sleep(0.3)
    while True:
        try:
            reply = sock.recv(65535)
        except BlockingIOError:
            break
        status = reply[8:11].decode()
        statuses[status] = statuses.get(status, 0) + 1
    return {"sent": sent, "seconds": time.monotonic() - start, "statuses": statuses,
            "retry_after_503": retry_after, "responses_per_second": per_second}


_OPTIONS = (
    b"OPTIONS sip:1000@%s:%d SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-pr%d;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:probe@%s>;tag=p%d\r\n"
    b"To: <sip:1000@%s>\r\n"
    b"Call-ID: probe-%d@%s\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def probe(host: str, port: int, source: str, seconds: float,
          interval: float) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((source, 0))
    sock.setblocking(False)
    src_port = sock.getsockname()[1]
    h, s = host.encode(), source.encode()
    sent_at: dict[int, float] = {}
    answers: dict[int, float] = {}
    start = time.time()
    next_send = start
    i = 0
    while True:
        now = time.time()
        if now >= next_send and now < start + seconds:
            i += 1
            sent_at[i] = time.time()
            sock.sendto(_OPTIONS % (h, port, s, src_port, i, s, i, h, i, s), (host, port))
            next_send += interval
        if now >= start + seconds + 2.0:
            break
        ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send - now, 0.05)))
        while ready:
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(65535, 256)
            except BlockingIOError:
                break
            arrived = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    arrived = sec + nsec / 1e9
            marker = data.find(b"Call-ID: probe-")
            if marker < 0 or not data.startswith(b"SIP/2.0 200"):
                continue
            number = int(data[marker + 15:data.index(b"@", marker)])
            if number in sent_at and number not in answers:
                answers[number] = arrived - sent_at[number]
    latencies = sorted(answers.values())
    return {"sent": len(sent_at), "answered": len(answers),
            "latencies_ms": [round(x * 1000, 3) for x in latencies]}


def main(argv: list[str]) -> int:
    kind, host, port, source, seconds = argv[0], argv[1], int(argv[2]), argv[3], float(argv[4])
    if kind == "flood":
        result = flood(host, port, source, seconds)
    else:
        result = probe(host, port, source, seconds, float(argv[5]))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
