"""The UA core as a UAC: digest retry on 401/407, REGISTER with refresh, 422, and RFC 4028
session timers (refresh and expiry) on a fake clock."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.sip.auth import DigestCredentials, DigestVerifier, VerifyResult
from bridge.sip.endpoint import CallState, Credentials, EndpointConfig, SipEndpoint
from bridge.sip.events import (
    CallAnswered,
    CallEnded,
    CallEstablished,
    CallOffered,
    RegistrationChanged,
)
from bridge.sip.message import SipRequest, SipResponse
from bridge.sip.parser import parse_message
from bridge.sip.timers import SipTimers
from tests.unit.sipwire import Rule, Wire

T = SipTimers(t1=0.01, t2=0.08, t4=0.1)
SDP_A = b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n"
SDP_B = b"v=0\r\no=b 1 1 IN IP4 10.0.0.2\r\ns=-\r\nt=0 0\r\n"
REGISTRAR = ("10.0.0.9", 5060)


def tokens(prefix: str) -> Any:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):04d}"


def endpoint(host: str, user: str, **overrides: Any) -> SipEndpoint:
    config = EndpointConfig(local_host=host, local_port=5060, contact_user=user, **overrides)
    return SipEndpoint(config, T, tokens=tokens(user))


def of_type(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def reply(request: SipRequest, status: int, *headers: tuple[str, str], to_tag: str = "srv"
          ) -> bytes:
    """A response as a simple server would build it."""
    response = SipResponse(status=status, reason="X")
    for name in ("Via", "From", "Call-ID", "CSeq"):
        for value in request.headers.get_all(name):
            response.headers.add(name, value)
    response.headers.add("To", f"{request.headers.get('To')};tag={to_tag}")
    for name, value in headers:
        response.headers.add(name, value)
    return response.to_bytes()


def advance_until_output(ep: SipEndpoint, limit: float) -> float:
    """Fire timers in order until the endpoint has something to send; return that time."""
    while (deadline := ep.next_timer()) is not None and deadline <= limit:
        ep.handle_timer(deadline)
        if ep.has_datagrams:
            return deadline
    raise AssertionError("nothing was sent")


def sent_requests(ep: SipEndpoint) -> list[SipRequest]:
    out = []
    for o in ep.datagrams_to_send():
        message = parse_message(o.data)
        assert isinstance(message, SipRequest)
        out.append(message)
    return out


# --------------------------------------------------------------------------------------------
# Digest authentication
# --------------------------------------------------------------------------------------------


def test_invite_401_retried_with_credentials() -> None:
    a = endpoint("10.0.0.1", "a")
    b = endpoint("10.0.0.2", "b", inbound_users={"alice": "s3cret"}, inbound_secret=b"key")
    wire = Wire.connect(a, b)
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now,
                      credentials=Credentials("alice", "s3cret"))
    wire.flush()
    invites = [d for d in wire.sent("INVITE")]
    assert len(invites) == 2
    first, second = (parse_message(d.data) for d in invites)
    assert first.headers.get("Authorization") is None
    assert second.headers.get("Authorization") is not None
    assert (first.cseq.seq, second.cseq.seq) == (1, 2)  # new CSeq ...
    assert first.call_id == second.call_id  # ... same Call-ID and From tag
    assert first.from_.tag == second.from_.tag
    assert first.top_via.branch != second.top_via.branch
    assert len(wire.sent("401 INVITE")) == 1 and len(wire.sent("ACK")) == 1
    call = of_type(wire.events_of(b), CallOffered)[0].call
    b.answer(call, SDP_B, wire.now)
    wire.run(1.0)
    assert of_type(wire.events_of(a), CallAnswered) == [CallAnswered(call=a_call, sdp=SDP_B)]


def test_invite_wrong_password_fails_after_one_retry() -> None:
    a = endpoint("10.0.0.1", "a")
    b = endpoint("10.0.0.2", "b", inbound_users={"alice": "s3cret"}, inbound_secret=b"key")
    wire = Wire.connect(a, b)
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now,
                      credentials=Credentials("alice", "wrong"))
    wire.run(1.0)
    assert len(wire.sent("INVITE")) == 2
    assert of_type(wire.events_of(a), CallEnded) == [
        CallEnded(call=a_call, reason="rejected", status=401)
    ]


def test_invite_407_retried_with_proxy_authorization() -> None:
    a = endpoint("10.0.0.1", "a")
    a_call = a.invite("sip:bob@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, 0.0,
                      credentials=Credentials("alice", "pw"))
    (invite,) = sent_requests(a)
    challenge = 'Digest realm="proxy", nonce="n1", qop="auth", algorithm=MD5'
    a.receive(reply(invite, 407, ("Proxy-Authenticate", challenge)), ("10.0.0.2", 5060),
              "UDP", 0.05)
    ack, retry = sent_requests(a)
    assert ack.method == "ACK" and ack.headers.get("CSeq") == "1 ACK"
    assert retry.method == "INVITE" and retry.cseq.seq == 2
    credentials = DigestCredentials.parse(retry.headers.get("Proxy-Authorization") or "")
    assert (credentials.username, credentials.realm, credentials.nonce) == ("alice", "proxy", "n1")
    assert credentials.uri == "sip:bob@10.0.0.2"
    assert retry.body == SDP_A
    # The same challenge again means the credentials were refused: no second retry.
    a.receive(reply(retry, 407, ("Proxy-Authenticate", challenge)), ("10.0.0.2", 5060),
              "UDP", 0.1)
    assert [r.method for r in sent_requests(a)] == ["ACK"]
    assert a.events() == [CallEnded(call=a_call, reason="rejected", status=407)]


def test_invite_without_credentials_is_rejected_on_401() -> None:
    a = endpoint("10.0.0.1", "a")
    a_call = a.invite("sip:bob@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, 0.0)
    (invite,) = sent_requests(a)
    a.receive(reply(invite, 401, ("WWW-Authenticate", 'Digest realm="r", nonce="n"')),
              ("10.0.0.2", 5060), "UDP", 0.05)
    assert [r.method for r in sent_requests(a)] == ["ACK"]
    assert a.events() == [CallEnded(call=a_call, reason="rejected", status=401)]


def test_invite_timeout_fails_with_408() -> None:
    a = endpoint("10.0.0.1", "a")
    wire = Wire.connect(a)  # nobody at 10.0.0.2
    a_call = a.invite("sip:bob@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.run(10.0)
    assert len(wire.sent("INVITE")) == 7  # Timer A: 0, T1, 3T1 ... 63T1
    assert of_type(wire.events_of(a), CallEnded) == [
        CallEnded(call=a_call, reason="failed", status=408)
    ]


# --------------------------------------------------------------------------------------------
# REGISTER
# --------------------------------------------------------------------------------------------


class FakeRegistrar:
    """Challenges, verifies with bridge.sip.auth and grants ``grant`` seconds."""

    def __init__(self, grant: int) -> None:
        self.verifier = DigestVerifier("reg.example", b"secret")
        self.grant = grant
        self.requests: list[SipRequest] = []

    def handle(self, ep: SipEndpoint, now: float) -> None:
        for out in ep.datagrams_to_send():
            assert out.addr == REGISTRAR
            request = parse_message(out.data)
            assert isinstance(request, SipRequest) and request.method == "REGISTER"
            self.requests.append(request)
            ep.receive(self._answer(request, now), REGISTRAR, "UDP", now)

    def _answer(self, request: SipRequest, now: float) -> bytes:
        value = request.headers.get("Authorization")
        if value is not None:
            result = self.verifier.verify(DigestCredentials.parse(value), method="REGISTER",
                                          password_lookup={"alice": "pw"}.get, now=now)
            if result is VerifyResult.OK:
                contact = f"{request.headers.get('Contact')};expires={self.grant}"
                return reply(request, 200, ("Contact", contact))
        return reply(request, 401, ("WWW-Authenticate", self.verifier.challenge(now)))


def test_register_with_auth_and_refresh_at_half_expiry() -> None:
    a = endpoint("10.0.0.1", "a")
    registrar = FakeRegistrar(grant=120)
    reg = a.register("sip:10.0.0.9", "sip:alice@example.com", 0.0,
                     credentials=Credentials("alice", "pw"), expires=3600)
    registrar.handle(a, 0.0)  # REGISTER -> 401
    registrar.handle(a, 0.0)  # REGISTER with Authorization -> 200
    assert a.events() == [RegistrationChanged(registration=reg, aor="sip:alice@example.com",
                                              registered=True, expires=120, status=200)]
    first, second = registrar.requests
    assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
    assert first.headers.get("Expires") == "3600"
    deadline = advance_until_output(a, 1000.0)
    assert 59.0 <= deadline <= 61.0  # about half of the 120 s granted
    registrar.handle(a, deadline)  # the refresh, challenged again (fresh nonce)
    registrar.handle(a, deadline)
    refreshes = registrar.requests[2:]
    assert [r.cseq.seq for r in refreshes] == [3, 4]
    assert all(r.call_id == first.call_id for r in refreshes)
    assert a.events()[-1] == RegistrationChanged(
        registration=reg, aor="sip:alice@example.com", registered=True, expires=120, status=200)
    # Unregister: Expires 0.
    a.unregister(reg, deadline + 1)
    (out,) = a.datagrams_to_send()
    unreg = parse_message(out.data)
    assert unreg.headers.get("Expires") == "0"


def test_register_failure_retries_later() -> None:
    a = endpoint("10.0.0.1", "a", register_retry=30.0)
    reg = a.register("sip:10.0.0.9", "sip:alice@example.com", 0.0)
    (out,) = a.datagrams_to_send()
    request = parse_message(out.data)
    assert isinstance(request, SipRequest)
    a.receive(reply(request, 403), REGISTRAR, "UDP", 0.01)
    assert a.events() == [RegistrationChanged(registration=reg, aor="sip:alice@example.com",
                                              registered=False, expires=0, status=403)]
    assert advance_until_output(a, 100.0) == 30.01
    assert [parse_message(o.data).headers.get("CSeq") for o in a.datagrams_to_send()] == [
        "2 REGISTER"
    ]


# --------------------------------------------------------------------------------------------
# Session timers (RFC 4028)
# --------------------------------------------------------------------------------------------


def test_session_refresh_by_uac_keeps_call_up() -> None:
    a = endpoint("10.0.0.1", "a", session_expires=120)
    b = endpoint("10.0.0.2", "b")
    wire = Wire.connect(a, b)
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = of_type(wire.events_of(b), CallOffered)[0].call
    b.answer(b_call, SDP_B, wire.now)
    wire.flush()
    ok = parse_message(wire.sent("200 INVITE")[0].data)
    assert ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    wire.run(500.0)
    updates = wire.sent("UPDATE", src=a)
    assert len(updates) >= 7  # every 60 s
    gaps = [round(y.time - x.time, 3) for x, y in itertools.pairwise(updates)]
    assert all(g == 60.0 for g in gaps)
    assert wire.sent("BYE") == []
    assert a.call_state(a_call) is CallState.CONFIRMED
    assert b.call_state(b_call) is CallState.CONFIRMED


def test_session_expires_when_refresher_goes_silent() -> None:
    a = endpoint("10.0.0.1", "a", session_expires=120)
    b = endpoint("10.0.0.2", "b")
    wire = Wire.connect(a, b)
    wire.drop.append(Rule("UPDATE", count=None))
    wire.drop.append(Rule("BYE", count=None))  # A's own give-up BYE is lost too
    a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = of_type(wire.events_of(b), CallOffered)[0].call
    answered = wire.now
    b.answer(b_call, SDP_B, wire.now)
    wire.run(200.0)
    ended = of_type(wire.events_of(b), CallEnded)
    assert ended == [CallEnded(call=b_call, reason="session_expired")]
    bye = wire.sent("BYE", src=b)
    # §10: BYE min(32, interval/3) = 32 s before the 120 s expiry.
    assert bye[0].time - answered == 88.0


def test_we_refresh_by_reinvite_when_peer_has_no_update() -> None:
    b = endpoint("10.0.0.2", "b")
    peer = ("10.0.0.1", 5060)
    invite = (
        "INVITE sip:room@10.0.0.2 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:old@10.0.0.1>;tag=o1\r\nTo: <sip:room@10.0.0.2>\r\n"
        "Call-ID: old-1\r\nCSeq: 1 INVITE\r\nContact: <sip:old@10.0.0.1>\r\n"
        "Session-Expires: 100\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP_A)}\r\n\r\n"
    ).encode() + SDP_A
    b.receive(invite, peer, "UDP", 0.0)
    call = of_type(b.events(), CallOffered)[0].call
    b.answer(call, SDP_B, 0.0)
    ok = parse_message(b.datagrams_to_send()[-1].data)
    # The UAC does not support timers: we refresh, and no Require: timer.
    assert ok.headers.get("Session-Expires") == "100;refresher=uas"
    assert ok.headers.get("Require") is None
    ack = (
        "ACK sip:room@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa1\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:old@10.0.0.1>;tag=o1\r\nTo: {ok.headers.get('To')}\r\n"
        "Call-ID: old-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    b.receive(ack, peer, "UDP", 0.001)
    assert of_type(b.events(), CallEstablished)
    assert advance_until_output(b, 1000.0) == 50.0
    (out,) = b.datagrams_to_send()
    refresh = parse_message(out.data)
    assert isinstance(refresh, SipRequest) and refresh.method == "INVITE"
    assert refresh.body == SDP_B  # the same offer again
    assert refresh.headers.get("Session-Expires") == "100;refresher=uac"
    assert out.addr == peer


def test_session_interval_too_small_422_and_uac_retry() -> None:
    a = endpoint("10.0.0.1", "a", session_expires=30, min_se=30)
    b = endpoint("10.0.0.2", "b", min_se=90)
    wire = Wire.connect(a, b)
    a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    too_small = wire.sent("422 INVITE")
    assert len(too_small) == 1
    assert parse_message(too_small[0].data).headers.get("Min-SE") == "90"
    retry = parse_message(wire.sent("INVITE")[1].data)
    assert retry.headers.get("Session-Expires") == "90"
    assert retry.cseq.seq == 2
    assert len(of_type(wire.events_of(b), CallOffered)) == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.binary(min_size=1, max_size=8))
def test_mutated_responses_never_break_the_uac(position: int, noise: bytes) -> None:
    a = endpoint("10.0.0.1", "a")
    a.invite("sip:bob@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, 0.0)
    (invite,) = sent_requests(a)
    data = reply(invite, 200, ("Contact", "<sip:bob@10.0.0.2>"),
                 ("Session-Expires", "90;refresher=uac"))
    position = min(position, len(data))
    a.receive(data[:position] + noise + data[position + len(noise):], ("10.0.0.2", 5060),
              "UDP", 0.01)
    a.handle_timer(100.0)
    for out in a.datagrams_to_send():
        assert isinstance(parse_message(out.data), SipRequest)


def test_2xx_without_to_tag_gives_the_call_up() -> None:
    a = endpoint("10.0.0.1", "a")
    a_call = a.invite("sip:bob@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, 0.0)
    (invite,) = sent_requests(a)
    data = reply(invite, 200, ("Contact", "<sip:bob@10.0.0.2>")).replace(b";tag=srv", b"")
    a.receive(data, ("10.0.0.2", 5060), "UDP", 0.01)
    events = a.events()
    assert events[-1] == CallEnded(call=a_call, reason="failed", status=200)
    assert a.datagrams_to_send() == []
