"""SIP parse + serialise throughput on varied trunk INVITEs with SDP bodies.

Run: ``.venv/bin/pytest bench/test_bench_sip.py --benchmark-only``. Each round parses and
re-serialises a batch of distinct INVITEs (different Call-IDs, branches, tags, numbers, SDP
addresses/ports/codec lists), so no single cached message is measured. ``messages_per_s`` in
extra_info is the batch size over the mean round time (``messages_per_s_best``: over the
fastest round, less sensitive to a loaded machine). The baseline measured in the same run
is the standard library's e-mail header parser on the same bytes: report the ratio of
``messages_per_s`` between the two.
"""

from __future__ import annotations

import random
from email.parser import BytesParser
from email.policy import compat32
from typing import Any

from bridge.sip.message import SipRequest, SipResponse
from bridge.sip.parser import parse_message, validate_request

BATCH = 200


def _sdp(rng: random.Random, ip: str) -> bytes:
    codecs = rng.sample([(8, "PCMA/8000"), (0, "PCMU/8000"), (18, "G729/8000"),
                         (9, "G722/8000")], k=rng.randint(1, 4))
    dtmf = rng.choice([96, 101])
    pts = " ".join(str(pt) for pt, _ in codecs)
    lines = [
        "v=0",
        f"o=- {rng.randrange(10**9)} {rng.randrange(10**9)} IN IP4 {ip}",
        "s=-",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {rng.randrange(10000, 60000, 2)} RTP/AVP {pts} {dtmf}",
        *(f"a=rtpmap:{pt} {name}" for pt, name in codecs),
        f"a=rtpmap:{dtmf} telephone-event/8000",
        f"a=fmtp:{dtmf} 0-16",
        f"a=ptime:{rng.choice([20, 20, 30])}",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def _invite(rng: random.Random) -> bytes:
    ip = f"203.0.113.{rng.randrange(1, 255)}"
    caller = f"+49{rng.randrange(10**9, 10**10)}"
    callee = f"+4930{rng.randrange(10**6, 10**7)}"
    body = _sdp(rng, ip)
    head = (
        f"INVITE sip:{callee}@192.0.2.10:5060;transport=udp SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{rng.getrandbits(64):016x};rport\r\n"
        "Max-Forwards: 69\r\n"
        f'From: "{caller}" <sip:{caller}@trunk.example.net;user=phone>;'
        f"tag=as{rng.getrandbits(32):08x}\r\n"
        f"To: <sip:{callee}@trunk.example.net;user=phone>\r\n"
        f"Contact: <sip:{caller}@{ip}:5060;transport=udp>\r\n"
        f"Call-ID: {rng.getrandbits(128):032x}@{ip}\r\n"
        f"CSeq: {rng.randrange(1, 10**6)} INVITE\r\n"
        "User-Agent: TrunkSBC 4.2\r\n"
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, PRACK, UPDATE\r\n"
        "Supported: replaces, timer, 100rel\r\n"
        "Session-Expires: 1800;refresher=uac\r\n"
        f'P-Asserted-Identity: "{caller}" <sip:{caller}@trunk.example.net;user=phone>\r\n'
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


INVITES = [_invite(random.Random(seed)) for seed in range(BATCH)]


def _round(messages: list[bytes]) -> int:
    total = 0
    for data in messages:
        total += len(parse_message(data).to_bytes())
    return total


def _round_with_views(messages: list[bytes]) -> int:
    """What the UA core does per INVITE: parse, validate, typed views, serialise."""
    total = 0
    for data in messages:
        message = parse_message(data)
        assert isinstance(message, SipRequest)
        validate_request(message)
        total += len(message.top_via.branch or "") + len(message.from_.tag or "")
        total += len(message.to_bytes())
    return total


def _report(benchmark: Any) -> None:
    if benchmark.stats is None:  # --benchmark-disable: a smoke run, nothing measured
        return
    stats = benchmark.stats.stats
    benchmark.extra_info["messages_per_s"] = round(BATCH / stats.mean)
    benchmark.extra_info["messages_per_s_best"] = round(BATCH / stats.min)


def test_all_invites_distinct_and_round_trip() -> None:
    assert len(set(INVITES)) == BATCH
    for data in INVITES:
        message = parse_message(data)
        assert not isinstance(message, SipResponse)
        assert message.to_bytes() == data


def test_bench_parse_serialize_invite(benchmark: Any) -> None:
    total = benchmark(_round, INVITES)
    assert total == sum(len(m) for m in INVITES)
    _report(benchmark)


def test_bench_parse_validate_views_serialize_invite(benchmark: Any) -> None:
    total = benchmark(_round_with_views, INVITES)
    assert total > sum(len(m) for m in INVITES)
    _report(benchmark)


def _round_stdlib_email(messages: list[bytes]) -> int:
    """Baseline in the same run: the standard library's RFC 5322 header parser (C-accelerated
    where it can be) reading the same INVITEs' start line, headers and body, and writing them
    back. It knows nothing of SIP (no compact forms, no Content-Length framing)."""
    parser = BytesParser(policy=compat32)
    total = 0
    for data in messages:
        line, _, rest = data.partition(b"\r\n")
        message = parser.parsebytes(rest)
        total += len(line) + len(message.as_bytes())
    return total


def test_bench_baseline_stdlib_email_parser(benchmark: Any) -> None:
    total = benchmark(_round_stdlib_email, INVITES)
    assert total > 0
    _report(benchmark)
