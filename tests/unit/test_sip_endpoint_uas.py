"""The UA core as a UAS fed with real request bytes: the answers of RFC 3261 §8.2 and friends,
response routing (RFC 3581), INFO DTMF, OPTIONS keepalives."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.sip.auth import DigestChallenge, build_authorization
from bridge.sip.endpoint import EndpointConfig, Outgoing, SipEndpoint, parse_info_dtmf
from bridge.sip.events import (
    CallEnded,
    CallEstablished,
    CallOffered,
    InfoDtmfReceived,
    MessageRejected,
    RemoteSdpChanged,
)
from bridge.sip.message import SipRequest, SipResponse
from bridge.sip.parser import parse_message
from bridge.sip.timers import SipTimers

T = SipTimers(t1=0.01, t2=0.08, t4=0.1)
PEER = ("198.51.100.7", 5062)
SDP = b"v=0\r\no=p 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"


def uas(**overrides: Any) -> SipEndpoint:
    counter = itertools.count(1)
    config = EndpointConfig(local_host="192.0.2.10", local_port=5060, **overrides)
    return SipEndpoint(config, T, tokens=lambda: f"t{next(counter)}")


def msg(text: str, body: bytes = b"") -> bytes:
    head = text.strip("\n").replace("\n", "\r\n")
    return head.encode() + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def request(method: str, *, to_tag: str | None = None, cseq: int = 1, extra: str = "",
            branch: str = "z9hG4bKpeer1", call_id: str = "c1@peer", body: bytes = b"",
            via_host: str = "198.51.100.7:5062", content_type: str | None = None) -> bytes:
    to = "<sip:bridge@192.0.2.10>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:bridge@192.0.2.10 SIP/2.0",
        f"Via: SIP/2.0/UDP {via_host};branch={branch};rport",
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=pf1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@198.51.100.7:5062>",
    ]
    if content_type is None and body:
        content_type = "application/sdp"
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if extra:
        lines.extend(extra.strip("\n").split("\n"))
    return msg("\n".join(lines), body)


def responses(out: list[Outgoing]) -> list[SipResponse]:
    parsed = [parse_message(o.data) for o in out]
    assert all(isinstance(p, SipResponse) for p in parsed)
    return [p for p in parsed if isinstance(p, SipResponse)]


def answer_of(ep: SipEndpoint, data: bytes, *, addr: tuple[str, int] = PEER,
              transport: str = "UDP", now: float = 0.0) -> SipResponse:
    ep.receive(data, addr, transport, now)
    out = responses(ep.datagrams_to_send())
    finals = [r for r in out if r.status >= 200]
    assert len(finals) == 1, [r.status for r in out]
    return finals[0]


def established(ep: SipEndpoint) -> tuple[str, str]:
    """Drive an incoming call to Confirmed; return (call handle, our To tag)."""
    ep.receive(request("INVITE", body=SDP), PEER, "UDP", 0.0)
    call = next(e for e in ep.events() if isinstance(e, CallOffered)).call
    ep.answer(call, SDP, 0.0)
    ok = responses(ep.datagrams_to_send())[-1]
    tag = ok.to.tag
    assert ok.status == 200 and tag is not None
    ep.receive(request("ACK", to_tag=tag, branch="z9hG4bKack1"), PEER, "UDP", 0.001)
    assert ep.events() == [CallEstablished(call=call)]
    return call, tag


# --------------------------------------------------------------------------------------------


def test_options_keepalive() -> None:
    ep = uas()
    ok = answer_of(ep, request("OPTIONS"))
    assert ok.status == 200
    assert "INVITE" in (ok.headers.get("Allow") or "")
    assert "OPTIONS" in (ok.headers.get("Allow") or "")
    accept = ok.headers.get("Accept") or ""
    for kind in ("application/sdp", "application/dtmf-relay", "application/dtmf"):
        assert kind in accept
    assert ok.headers.get("Supported") == "timer"
    assert ok.to.tag is not None
    assert ep.events() == []


def test_response_routing_rport_and_received() -> None:
    ep = uas()
    # The client says 10.1.1.1:5060 (behind NAT) and asks for rport; we see 203.0.113.9:40000.
    ep.receive(request("OPTIONS", via_host="10.1.1.1:5060"), ("203.0.113.9", 40000), "UDP", 0)
    (out,) = ep.datagrams_to_send()
    assert out.addr == ("203.0.113.9", 40000)
    response = parse_message(out.data)
    via = response.top_via
    assert via.params["received"] == "203.0.113.9"
    assert via.params["rport"] == "40000"


def test_response_routing_without_rport_uses_via_port() -> None:
    ep = uas()
    data = request("OPTIONS", via_host="10.1.1.1:5070").replace(b";rport", b"")
    ep.receive(data, ("203.0.113.9", 40000), "UDP", 0)
    (out,) = ep.datagrams_to_send()
    assert out.addr == ("203.0.113.9", 5070)
    assert "rport" not in parse_message(out.data).top_via.params


def test_tcp_response_goes_back_to_the_connection() -> None:
    ep = uas(transports=("UDP", "TCP"))
    data = request("OPTIONS", via_host="10.1.1.1:5060").replace(b"UDP 10.1", b"TCP 10.1")
    ep.receive(data, ("203.0.113.9", 40001), "TCP", 0)
    (out,) = ep.datagrams_to_send()
    assert (out.addr, out.transport) == (("203.0.113.9", 40001), "TCP")


def test_invite_gets_100_at_once_and_offer_event() -> None:
    ep = uas()
    ep.receive(request("INVITE", body=SDP), PEER, "UDP", 0.0)
    (trying,) = responses(ep.datagrams_to_send())
    assert trying.status == 100 and trying.to.tag is None
    (event,) = ep.events()
    assert isinstance(event, CallOffered)
    assert event.sdp == SDP and event.user == "bridge" and event.call_id == "c1@peer"
    assert event.request.headers.get("Contact") == "<sip:alice@198.51.100.7:5062>"


def test_unsupported_require_420() -> None:
    ep = uas()
    answer = answer_of(ep, request("INVITE", body=SDP, extra="Require: 100rel, timer"))
    assert answer.status == 420
    assert answer.headers.get("Unsupported") == "100rel"
    assert not any(isinstance(e, CallOffered) for e in ep.events())


def test_unknown_method_501_known_405() -> None:
    ep = uas()
    unknown = answer_of(ep, request("FOO"))
    assert (unknown.status, unknown.reason) == (501, "Not Implemented")
    refused = answer_of(ep, request("SUBSCRIBE", branch="z9hG4bKsub"))
    assert refused.status == 405
    assert "INVITE" in (refused.headers.get("Allow") or "")


def test_unknown_dialog_481() -> None:
    ep = uas()
    assert answer_of(ep, request("BYE", to_tag="nope")).status == 481
    assert answer_of(ep, request("INFO", branch="z9hG4bKi")).status == 481  # no dialog


def test_max_forwards_zero_to_the_bridge_itself_is_served() -> None:
    ep = uas()
    data = request("INVITE", body=SDP).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    ep.receive(data, PEER, "UDP", 0.0)
    assert [r.status for r in responses(ep.datagrams_to_send())] == [100]
    assert any(isinstance(e, CallOffered) for e in ep.events())


RFC4475 = Path(__file__).resolve().parents[1] / "data" / "rfc4475" / "invalid"


def test_rfc4475_zeromf_options_with_max_forwards_0_is_answered_200() -> None:
    """§3.3.11: Max-Forwards 0 in a request to the element itself: answer it."""
    data = (RFC4475 / "zeromf.dat").read_bytes()
    answer = answer_of(uas(), data, addr=("192.0.2.30", 5060))
    assert answer.status == 200
    assert answer.call_id == "zeromf.jfasdlfnm2o2l43r5u0asdfas"
    assert answer.to.tag


def test_rfc4475_unksm2_non_sip_schemes_in_to_from_contact_are_answered() -> None:
    """§3.3.4: isbn: in To, http: in From, name: in Contact. The UA core needs SIP URIs there
    and refuses with 416, but it answers (it dropped the request, unable to build a To tag)."""
    data = (RFC4475 / "unksm2.dat").read_bytes()
    ep = uas()
    answer = answer_of(ep, data, addr=("192.0.2.21", 5060))
    assert answer.status == 416
    assert (answer.headers.get("To") or "").startswith("isbn:2983792873;tag=")
    assert answer.headers.get("From") == "<http://www.example.com>;tag=3234233"
    assert answer.call_id == "unksm2.daksdj@hyphenated-host.example.com"
    assert answer.cseq.seq == 234902 and answer.cseq.method == "REGISTER"


def test_invalid_request_answered_with_parser_status_and_reason() -> None:
    ep = uas()
    data = request("INVITE").replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    answer = answer_of(ep, data)
    assert answer.status == 400
    assert "CSeq" in answer.reason
    (event,) = ep.events()
    assert isinstance(event, MessageRejected) and event.status == 400


def test_garbage_is_counted_not_answered() -> None:
    ep = uas()
    ep.receive(b"\x00\x01 not sip at all", PEER, "UDP", 0.0)
    assert ep.datagrams_to_send() == []
    (event,) = ep.events()
    assert isinstance(event, MessageRejected) and event.status is None
    assert ep.rejected == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_are_answered_or_dropped(data: bytes) -> None:
    ep = uas()
    ep.receive(data, PEER, "UDP", 0.0)
    ep.handle_timer(1.0)
    for out in ep.datagrams_to_send():
        assert isinstance(parse_message(out.data), SipResponse)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8))
def test_mutated_invite_never_breaks_the_core(position: int, noise: bytes) -> None:
    ep = uas()
    data = request("INVITE", body=SDP)
    position = min(position, len(data))
    ep.receive(data[:position] + noise + data[position + len(noise):], PEER, "UDP", 0.0)
    for out in ep.datagrams_to_send():
        assert isinstance(parse_message(out.data), SipResponse)


def test_ack_is_never_answered() -> None:
    ep = uas()
    ep.receive(request("ACK", to_tag="x"), PEER, "UDP", 0.0)
    assert ep.datagrams_to_send() == []


def test_authorize_hook_refuses() -> None:
    seen: list[tuple[str, int]] = []

    def authorize(req: SipRequest, source: tuple[str, int]) -> int | None:
        seen.append(source)
        return 403

    ep = uas(authorize=authorize)
    assert answer_of(ep, request("INVITE", body=SDP)).status == 403
    assert seen == [PEER]
    assert not any(isinstance(e, CallOffered) for e in ep.events())


def test_inbound_digest_auth() -> None:
    ep = uas(inbound_users={"alice": "secret"}, inbound_realm="bridge", inbound_secret=b"k")
    challenge = answer_of(ep, request("INVITE", body=SDP))
    assert challenge.status == 401
    values = challenge.headers.get_all("WWW-Authenticate")
    assert values
    parsed = DigestChallenge.parse(values[-1])
    auth = build_authorization(parsed, method="INVITE", uri="sip:bridge@192.0.2.10",
                               username="alice", password="secret", nc=1, cnonce="abc")
    ep.receive(request("INVITE", body=SDP, cseq=2, branch="z9hG4bKauth",
                       extra=f"Authorization: {auth}"), PEER, "UDP", 0.1)
    assert any(isinstance(e, CallOffered) for e in ep.events())
    bad = build_authorization(parsed, method="INVITE", uri="sip:bridge@192.0.2.10",
                              username="alice", password="wrong", nc=2, cnonce="abc")
    again = answer_of(ep, request("INVITE", body=SDP, cseq=3, branch="z9hG4bKbad",
                                  call_id="c2@peer", extra=f"Authorization: {bad}"))
    assert again.status == 401


def test_cseq_lower_than_remote_500() -> None:
    ep = uas()
    _, tag = established(ep)
    ok = answer_of(ep, request("INFO", to_tag=tag, cseq=5, branch="z9hG4bKi5"))
    assert ok.status == 200
    assert answer_of(ep, request("INFO", to_tag=tag, cseq=4, branch="z9hG4bKi4")).status == 500


def test_merged_request_482() -> None:
    ep = uas()
    ep.receive(request("INVITE", body=SDP), PEER, "UDP", 0.0)
    ep.datagrams_to_send()
    # Same From tag, Call-ID and CSeq through another fork: different branch.
    assert answer_of(ep, request("INVITE", body=SDP, branch="z9hG4bKfork2")).status == 482


@pytest.mark.parametrize(
    ("content_type", "body", "digit", "duration"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5", 160),
        ("application/dtmf-relay", b"Signal= #\r\nDuration= 250", "#", 250),
        ("application/dtmf-relay", b"Signal=10\r\nDuration=100", "*", 100),
        ("application/dtmf", b"7", "7", None),
        ("application/dtmf", b"a\r\n", "A", None),
    ],
)
def test_info_dtmf(content_type: str, body: bytes, digit: str, duration: int | None) -> None:
    ep = uas()
    call, tag = established(ep)
    ok = answer_of(ep, request("INFO", to_tag=tag, cseq=2, branch="z9hG4bKinfo", body=body,
                               content_type=content_type))
    assert ok.status == 200
    assert ep.events() == [InfoDtmfReceived(call=call, digit=digit, duration_ms=duration)]


def test_info_other_types() -> None:
    ep = uas()
    _, tag = established(ep)
    empty = answer_of(ep, request("INFO", to_tag=tag, cseq=2, branch="z9hG4bKe"))
    assert empty.status == 200
    other = answer_of(ep, request("INFO", to_tag=tag, cseq=3, branch="z9hG4bKo",
                                  body=b"<xml/>", content_type="application/xml"))
    assert other.status == 415
    bad = answer_of(ep, request("INFO", to_tag=tag, cseq=4, branch="z9hG4bKb",
                                body=b"Signal=Z", content_type="application/dtmf-relay"))
    assert bad.status == 400
    assert ep.events() == []


def test_parse_info_dtmf_rejects_junk() -> None:
    assert parse_info_dtmf("application/dtmf-relay", b"Duration=100") is None
    assert parse_info_dtmf("application/dtmf", b"55") is None
    assert parse_info_dtmf("text/plain", b"5") is None


def test_remote_bye_and_retransmitted_bye() -> None:
    ep = uas()
    call, tag = established(ep)
    bye = request("BYE", to_tag=tag, cseq=2, branch="z9hG4bKbye")
    assert answer_of(ep, bye).status == 200
    assert ep.events() == [CallEnded(call=call, reason="remote_bye")]
    assert answer_of(ep, bye, now=0.5).status == 200  # the transaction answers the copy
    assert ep.events() == []


def test_cancel_unknown_481() -> None:
    ep = uas()
    assert answer_of(ep, request("CANCEL")).status == 481


def test_offerless_invite_offer_in_ack() -> None:
    ep = uas()
    ep.receive(request("INVITE"), PEER, "UDP", 0.0)
    (event,) = ep.events()
    assert isinstance(event, CallOffered) and event.sdp == b""
    ep.answer(event.call, SDP, 0.0)  # our offer
    ok = responses(ep.datagrams_to_send())[-1]
    assert ok.body == SDP
    ep.receive(request("ACK", to_tag=ok.to.tag, branch="z9hG4bKack", body=b"v=0 answer"),
               PEER, "UDP", 0.001)
    assert ep.events() == [RemoteSdpChanged(call=event.call, sdp=b"v=0 answer"),
                           CallEstablished(call=event.call)]


def test_record_route_copied_and_used_for_bye() -> None:
    ep = uas()
    rr = "Record-Route: <sip:proxy.example:5070;lr>"
    ep.receive(request("INVITE", body=SDP, extra=rr), PEER, "UDP", 0.0)
    call = next(e for e in ep.events() if isinstance(e, CallOffered)).call
    ep.answer(call, SDP, 0.0)
    ok = responses(ep.datagrams_to_send())[-1]
    assert ok.headers.get_all("Record-Route") == ["<sip:proxy.example:5070;lr>"]
    assert ok.headers.get("Contact") == "<sip:bridge@192.0.2.10:5060>"
    ep.receive(request("ACK", to_tag=ok.to.tag, branch="z9hG4bKack"), PEER, "UDP", 0.001)
    ep.hangup(call, 1.0)
    (out,) = ep.datagrams_to_send()
    bye = parse_message(out.data)
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert out.addr == ("proxy.example", 5070)
    assert str(bye.uri) == "sip:alice@198.51.100.7:5062"
    assert bye.headers.get_all("Route") == ["<sip:proxy.example:5070;lr>"]


def test_contact_uses_configured_external_address() -> None:
    ep = uas(contact_host="203.0.113.50", contact_port=5080)
    ep.receive(request("INVITE", body=SDP), PEER, "UDP", 0.0)
    call = next(e for e in ep.events() if isinstance(e, CallOffered)).call
    ep.answer(call, SDP, 0.0)
    ok = responses(ep.datagrams_to_send())[-1]
    assert ok.headers.get("Contact") == "<sip:bridge@203.0.113.50:5080>"


def test_invalid_request_without_via_is_dropped() -> None:
    ep = uas()
    data = b"\r\n".join(
        line for line in request("INVITE").split(b"\r\n") if not line.startswith(b"Via:")
    )
    ep.receive(data, PEER, "UDP", 0.0)
    assert ep.datagrams_to_send() == []
    (event,) = ep.events()
    assert isinstance(event, MessageRejected) and event.status is None
