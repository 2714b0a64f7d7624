"""Two SipEndpoints over the in-memory wire: call flows, losses, retransmissions, races.

The heart of it is who retransmits a 2xx and who re-ACKs (RFC 3261 §13.2.2.4, §13.3.1.4):
each test counts exactly what went over the wire.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bridge.sip.endpoint import (
    CALL_TABLE,
    CallInput,
    CallState,
    CallStateError,
    EndpointConfig,
    SipEndpoint,
    next_call_state,
)
from bridge.sip.events import (
    CallAnswered,
    CallEnded,
    CallEstablished,
    CallOffered,
    CallProgress,
    ReinviteFailed,
    ReinviteReceived,
    RemoteSdpChanged,
)
from bridge.sip.message import SipRequest
from bridge.sip.parser import parse_message
from bridge.sip.timers import SipTimers
from tests.unit.sipwire import Rule, Wire

T = SipTimers(t1=0.01, t2=0.08, t4=0.1)
SDP_A = b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" \
        b"m=audio 4000 RTP/AVP 0\r\n"
SDP_B = b"v=0\r\no=b 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n" \
        b"m=audio 5000 RTP/AVP 0\r\n"
SDP_HOLD = SDP_A + b"a=sendonly\r\n"


def tokens(prefix: str) -> Any:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):04d}"


def endpoint(host: str, user: str, **overrides: Any) -> SipEndpoint:
    config = EndpointConfig(local_host=host, local_port=5060, contact_user=user, **overrides)
    return SipEndpoint(config, T, tokens=tokens(user))


def pair(**b_overrides: Any) -> tuple[SipEndpoint, SipEndpoint, Wire]:
    a = endpoint("10.0.0.1", "a")
    b = endpoint("10.0.0.2", "b", **b_overrides)
    return a, b, Wire.connect(a, b)


def of_type(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def offered(wire: Wire, ep: SipEndpoint) -> CallOffered:
    calls = of_type(wire.events_of(ep), CallOffered)
    assert len(calls) == 1
    return calls[0]  # type: ignore[no-any-return]


def establish(a: SipEndpoint, b: SipEndpoint, wire: Wire) -> tuple[str, str]:
    """A calls B, B rings and answers; returns (a_call, b_call) once confirmed."""
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = offered(wire, b).call
    b.ringing(b_call, wire.now)
    b.answer(b_call, SDP_B, wire.now)
    wire.flush()
    assert a.call_state(a_call) is CallState.CONFIRMED
    assert b.call_state(b_call) is CallState.CONFIRMED
    return a_call, b_call


# --------------------------------------------------------------------------------------------
# Basic calls
# --------------------------------------------------------------------------------------------


def test_basic_call_a_to_b() -> None:
    a, b, wire = pair()
    a_call, b_call = establish(a, b, wire)
    offer = offered(wire, b)
    assert offer.sdp == SDP_A
    assert offer.user == "room"
    assert offer.from_uri == "sip:alice@10.0.0.1"
    assert offer.source == ("10.0.0.1", 5060)
    a_events: list[Any] = wire.events_of(a)
    assert [type(e) for e in a_events] == [CallProgress, CallAnswered]
    assert a_events[0].status == 180
    assert a_events[1] == CallAnswered(call=a_call, sdp=SDP_B)
    assert of_type(wire.events_of(b), CallEstablished) == [CallEstablished(call=b_call)]
    assert [d.method for d in wire.log] == ["INVITE", "100 INVITE", "180 INVITE", "200 INVITE",
                                            "ACK"]
    assert a.hangup(a_call, wire.now)
    wire.run(60.0)
    assert of_type(wire.events_of(a), CallEnded) == [CallEnded(call=a_call, reason="local_bye")]
    assert of_type(wire.events_of(b), CallEnded) == [CallEnded(call=b_call, reason="remote_bye")]
    assert [d.method for d in wire.log[5:]] == ["BYE", "200 BYE"]
    # Nothing retransmitted, everything cleaned up.
    assert a.next_timer() is None and b.next_timer() is None
    assert a.active_calls() == [] and b.active_calls() == []


def test_basic_call_b_to_a_and_callee_hangs_up() -> None:
    a, b, wire = pair()
    b_call = b.invite("sip:conf@10.0.0.1", "sip:bob@10.0.0.2", SDP_B, wire.now)
    wire.flush()
    a_call = offered(wire, a).call
    a.answer(a_call, SDP_A, wire.now)
    wire.flush()
    assert of_type(wire.events_of(b), CallAnswered) == [CallAnswered(call=b_call, sdp=SDP_A)]
    a.hangup(a_call, wire.now)  # the UAS hangs up: BYE goes the other way
    wire.run(60.0)
    assert of_type(wire.events_of(b), CallEnded) == [CallEnded(call=b_call, reason="remote_bye")]
    assert of_type(wire.events_of(a), CallEnded) == [CallEnded(call=a_call, reason="local_bye")]
    bye = wire.sent("BYE")[0]
    assert bye.src == ("10.0.0.1", 5060) and bye.dst == ("10.0.0.2", 5060)
    assert len(wire.sent("200 BYE")) == 1


def test_rejected_call() -> None:
    a, b, wire = pair()
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b.reject(offered(wire, b).call, 486, wire.now)
    wire.run(60.0)
    assert of_type(wire.events_of(a), CallEnded) == [
        CallEnded(call=a_call, reason="rejected", status=486)
    ]
    assert len(wire.sent("486 INVITE")) == 1
    assert len(wire.sent("ACK")) == 1  # the INVITE client transaction's own ACK
    assert a.next_timer() is None and b.next_timer() is None


# --------------------------------------------------------------------------------------------
# Who retransmits the 2xx, who re-ACKs
# --------------------------------------------------------------------------------------------


def test_lost_ack_2xx_retransmitted_then_acked_no_bye() -> None:
    a, b, wire = pair()
    wire.drop.append(Rule("ACK"))
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = offered(wire, b).call
    b.answer(b_call, SDP_B, wire.now)
    wire.run(5.0)
    oks = wire.sent("200 INVITE", src=b)
    acks = wire.sent("ACK", src=a)
    assert len(oks) == 2  # the original and one retransmission by the UAS core
    assert oks[1].time == pytest.approx(T.t1)
    assert len(acks) == 2 and acks[0].dropped and not acks[1].dropped
    assert acks[0].data == acks[1].data  # the same ACK re-sent (§13.2.2.4)
    assert wire.sent("BYE") == []
    assert len(of_type(wire.events_of(a), CallAnswered)) == 1
    assert of_type(wire.events_of(b), CallEstablished) == [CallEstablished(call=b_call)]
    assert a.call_state(a_call) is CallState.CONFIRMED


def test_lost_200_invite_retransmitted_200_retransmitted_by_core() -> None:
    a, b, wire = pair()
    wire.drop.extend([Rule("100 INVITE"), Rule("200 INVITE")])
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = offered(wire, b).call
    b.answer(b_call, SDP_B, wire.now)
    wire.run(5.0)
    assert len(wire.sent("INVITE", src=a)) >= 2  # Timer A fired: no 1xx came through
    oks = wire.sent("200 INVITE", src=b)
    assert oks[0].dropped and not oks[1].dropped
    assert len(of_type(wire.events_of(b), CallOffered)) == 1  # retransmission absorbed
    assert of_type(wire.events_of(b), CallEstablished) == [CallEstablished(call=b_call)]
    assert of_type(wire.events_of(a), CallAnswered) == [CallAnswered(call=a_call, sdp=SDP_B)]
    assert wire.sent("BYE") == []


def test_ack_never_arrives_bye_after_64_t1() -> None:
    a, b, wire = pair()
    wire.drop.append(Rule("ACK", count=None))
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = offered(wire, b).call
    answered_at = wire.now
    b.answer(b_call, SDP_B, wire.now)
    wire.run(5.0)
    oks = [d.time - answered_at for d in wire.sent("200 INVITE", src=b)]
    # §13.3.1.4: T1, doubling, capped at T2 ... for 64*T1.
    gaps = [round(y - x, 6) for x, y in itertools.pairwise(oks)]
    assert gaps[:4] == [0.01, 0.02, 0.04, 0.08]
    assert all(g == 0.08 for g in gaps[3:])
    assert oks[-1] < 64 * T.t1
    bye = wire.sent("BYE", src=b)
    assert len(bye) == 1 and bye[0].time - answered_at == pytest.approx(64 * T.t1)
    assert of_type(wire.events_of(b), CallEnded) == [
        CallEnded(call=b_call, reason="ack_timeout", status=408)
    ]
    assert of_type(wire.events_of(b), CallEstablished) == []
    assert of_type(wire.events_of(a), CallEnded) == [CallEnded(call=a_call, reason="remote_bye")]
    # Every 2xx that reached A was ACKed by A (all ACKs lost).
    assert len(wire.sent("ACK", src=a)) == len(oks)


def test_retransmitted_invite_absorbed() -> None:
    a, b, wire = pair()
    wire.duplicate.append(Rule("INVITE", count=None))
    a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    assert len(of_type(wire.events_of(b), CallOffered)) == 1
    assert len(wire.sent("100 INVITE")) == 2  # the transaction answered the copy with its 100


def test_hangup_before_ack_sends_bye_after_ack() -> None:
    a, b, wire = pair()
    wire.drop.append(Rule("ACK"))
    a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = offered(wire, b).call
    b.answer(b_call, SDP_B, wire.now)
    wire.flush()
    b.hangup(b_call, wire.now)
    wire.flush()
    assert wire.sent("BYE") == []  # §15: not before the ACK
    wire.run(5.0)
    bye = wire.sent("BYE", src=b)
    assert len(bye) == 1 and bye[0].time > wire.sent("ACK")[-1].time - 1e-9
    assert of_type(wire.events_of(b), CallEnded) == [CallEnded(call=b_call, reason="local_bye")]


# --------------------------------------------------------------------------------------------
# CANCEL
# --------------------------------------------------------------------------------------------


def test_cancel_early_call() -> None:
    a, b, wire = pair()
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = offered(wire, b).call
    b.ringing(b_call, wire.now)
    wire.flush()
    a.hangup(a_call, wire.now)
    wire.run(60.0)
    assert [d.method for d in wire.log[3:]] == ["CANCEL", "200 CANCEL", "487 INVITE", "ACK"]
    assert of_type(wire.events_of(b), CallEnded) == [
        CallEnded(call=b_call, reason="cancelled", status=487)
    ]
    assert of_type(wire.events_of(a), CallEnded) == [
        CallEnded(call=a_call, reason="cancelled", status=487)
    ]
    assert not b.answer(b_call, SDP_B, wire.now)  # too late: the call is gone
    assert a.next_timer() is None and b.next_timer() is None


def test_cancel_before_any_provisional_waits_for_one() -> None:
    a, b, wire = pair()
    wire.drop.append(Rule("100 INVITE", count=None))
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    a.hangup(a_call, wire.now)
    wire.flush()
    assert wire.sent("CANCEL") == []  # §9.1: not before a provisional response
    b_call = offered(wire, b).call
    b.ringing(b_call, wire.now)
    wire.run(60.0)
    assert len(wire.sent("CANCEL")) == 1
    assert of_type(wire.events_of(b), CallEnded)[0].reason == "cancelled"


def test_cancel_racing_200_answer_first() -> None:
    """B answers while A's CANCEL is in flight: the CANCEL gets 200 but no 487; A ACKs the
    2xx and sends BYE."""
    a, b, wire = pair()
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = offered(wire, b).call
    b.ringing(b_call, wire.now)
    wire.flush()
    b.answer(b_call, SDP_B, wire.now)  # 200 is queued first ...
    a.hangup(a_call, wire.now)  # ... then the CANCEL
    wire.run(60.0)
    assert wire.sent("487 INVITE") == []
    assert len(wire.sent("200 CANCEL")) == 1
    assert len(wire.sent("ACK", src=a)) == 1
    assert len(wire.sent("BYE", src=a)) == 1
    assert of_type(wire.events_of(a), CallAnswered) == []
    assert of_type(wire.events_of(a), CallEnded) == [
        CallEnded(call=a_call, reason="cancelled", status=487)
    ]
    b_events = wire.events_of(b)
    assert of_type(b_events, CallEstablished) == [CallEstablished(call=b_call)]
    assert of_type(b_events, CallEnded) == [CallEnded(call=b_call, reason="remote_bye")]


def test_cancel_racing_200_cancel_first() -> None:
    """The CANCEL reaches B before B answers: 487, and answer() is refused."""
    a, b, wire = pair()
    a_call = a.invite("sip:room@10.0.0.2", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.flush()
    b_call = offered(wire, b).call
    b.ringing(b_call, wire.now)
    wire.flush()
    a.hangup(a_call, wire.now)
    wire.collect()
    for _ in range(1):  # deliver only the CANCEL
        src, out = wire.queue.popleft()
        b.receive(out.data, src, out.transport, wire.now)
    assert not b.answer(b_call, SDP_B, wire.now)
    wire.run(60.0)
    assert wire.sent("200 INVITE") == []
    assert len(wire.sent("487 INVITE")) == 1
    assert wire.sent("BYE") == []
    assert of_type(wire.events_of(b), CallEnded) == [
        CallEnded(call=b_call, reason="cancelled", status=487)
    ]
    assert of_type(wire.events_of(a), CallEnded) == [
        CallEnded(call=a_call, reason="cancelled", status=487)
    ]


# --------------------------------------------------------------------------------------------
# re-INVITE
# --------------------------------------------------------------------------------------------


def test_reinvite_hold_answered() -> None:
    a, b, wire = pair()
    a_call, b_call = establish(a, b, wire)
    assert a.reinvite(a_call, SDP_HOLD, wire.now)
    wire.flush()
    assert of_type(wire.events_of(b), ReinviteReceived) == [
        ReinviteReceived(call=b_call, sdp=SDP_HOLD)
    ]
    b.answer_reinvite(b_call, SDP_B + b"a=recvonly\r\n", wire.now)
    wire.run(1.0)
    assert of_type(wire.events_of(a), RemoteSdpChanged) == [
        RemoteSdpChanged(call=a_call, sdp=SDP_B + b"a=recvonly\r\n")
    ]
    invites = wire.sent("INVITE")
    assert invites[1].cseq == "2 INVITE"
    assert len(wire.sent("ACK")) == 2
    assert b.call_state(b_call) is CallState.CONFIRMED
    assert len(wire.sent("200 INVITE")) == 2  # no retransmission after the ACK


def test_bye_during_reinvite() -> None:
    """A re-INVITEs, B has not answered, A hangs up: B answers 200 to the BYE and 487 to the
    re-INVITE (§15.1.2); A ACKs the 487."""
    a, b, wire = pair()
    a_call, b_call = establish(a, b, wire)
    a.reinvite(a_call, SDP_HOLD, wire.now)
    wire.flush()
    a.hangup(a_call, wire.now)
    wire.run(60.0)
    assert len(wire.sent("487 INVITE")) == 1
    assert len(wire.sent("200 BYE")) == 1
    assert len(wire.sent("ACK")) == 2  # the first call's ACK and the 487's
    assert of_type(wire.events_of(b), CallEnded) == [CallEnded(call=b_call, reason="remote_bye")]
    assert of_type(wire.events_of(a), CallEnded) == [CallEnded(call=a_call, reason="local_bye")]
    assert of_type(wire.events_of(a), ReinviteFailed) == []
    assert not b.answer_reinvite(b_call, SDP_B, wire.now)
    assert a.next_timer() is None and b.next_timer() is None


def test_reinvite_glare_491_both_ways() -> None:
    a, b, wire = pair()
    a_call, b_call = establish(a, b, wire)
    assert a.reinvite(a_call, SDP_HOLD, wire.now)
    assert b.reinvite(b_call, SDP_B + b"a=sendonly\r\n", wire.now)
    wire.run(1.0)
    assert len(wire.sent("491 INVITE")) == 2
    assert of_type(wire.events_of(a), ReinviteFailed) == [ReinviteFailed(call=a_call, status=491)]
    assert of_type(wire.events_of(b), ReinviteFailed) == [ReinviteFailed(call=b_call, status=491)]
    assert of_type(wire.events_of(a), ReinviteReceived) == []
    assert a.call_state(a_call) is CallState.CONFIRMED
    assert b.call_state(b_call) is CallState.CONFIRMED
    # The glare is over: a retry goes through.
    assert a.reinvite(a_call, SDP_HOLD, wire.now)
    wire.flush()
    assert len(of_type(wire.events_of(b), ReinviteReceived)) == 1


def test_shutdown_ends_every_call() -> None:
    a, b, wire = pair()
    _, b_call = establish(a, b, wire)
    a.shutdown(wire.now)
    wire.run(60.0)
    assert of_type(wire.events_of(b), CallEnded) == [CallEnded(call=b_call, reason="remote_bye")]
    assert a.active_calls() == []


# --------------------------------------------------------------------------------------------
# Re-ACK after the transaction is gone, forks, crossing BYEs, TCP
# --------------------------------------------------------------------------------------------


def test_2xx_after_timer_m_is_reacked_by_the_core() -> None:
    a, b, wire = pair()
    establish(a, b, wire)
    wire.run(2.0)  # Timer M (64*T1) ended the INVITE client transaction
    ok = wire.sent("200 INVITE")[0]
    first_ack = wire.sent("ACK")[0]
    a.receive(ok.data, ok.src, "UDP", wire.now)
    (out,) = a.datagrams_to_send()
    assert out.data == first_ack.data and out.addr == ("10.0.0.2", 5060)


def test_2xx_from_a_second_fork_is_acked_and_byed() -> None:
    a, b, wire = pair()
    a_call, _ = establish(a, b, wire)
    ok = wire.sent("200 INVITE")[0].data
    tag = parse_message(ok).to.tag
    assert tag is not None
    forked = ok.replace(f"tag={tag}".encode(), b"tag=fork2")
    a.receive(forked, ("10.0.0.2", 5060), "UDP", wire.now)
    sent = [parse_message(o.data) for o in a.datagrams_to_send()]
    assert [(m.method, m.to.tag) for m in sent if isinstance(m, SipRequest)] == [
        ("ACK", "fork2"), ("BYE", "fork2"),
    ]
    assert a.call_state(a_call) is CallState.CONFIRMED
    assert of_type(a.events(), CallEnded) == []


def test_crossing_byes_both_answered() -> None:
    a, b, wire = pair()
    a_call, b_call = establish(a, b, wire)
    a.hangup(a_call, wire.now)
    b.hangup(b_call, wire.now)
    wire.run(60.0)
    assert len(wire.sent("BYE")) == 2
    assert len(wire.sent("200 BYE")) == 2
    assert wire.sent("481 BYE") == []
    assert of_type(wire.events_of(a), CallEnded) == [CallEnded(call=a_call, reason="local_bye")]
    assert of_type(wire.events_of(b), CallEnded) == [CallEnded(call=b_call, reason="local_bye")]


def test_call_over_tcp_no_transaction_retransmissions() -> None:
    a = endpoint("10.0.0.1", "a", transports=("TCP",))
    b = endpoint("10.0.0.2", "b", transports=("TCP",))
    wire = Wire.connect(a, b)
    wire.drop.append(Rule("100 INVITE"))
    a_call = a.invite("sip:room@10.0.0.2;transport=tcp", "sip:alice@10.0.0.1", SDP_A, wire.now)
    wire.run(0.5)  # less than Timer B: the 100 is lost and nothing is retransmitted
    assert len(wire.sent("INVITE")) == 1  # no Timer A over TCP
    invite = parse_message(wire.sent("INVITE")[0].data)
    assert invite.top_via.transport == "TCP"
    assert invite.headers.get("Contact") == "<sip:a@10.0.0.1:5060;transport=tcp>"
    b_call = offered(wire, b).call
    b.answer(b_call, SDP_B, wire.now)
    wire.run(1.0)
    assert of_type(wire.events_of(a), CallAnswered) == [CallAnswered(call=a_call, sdp=SDP_B)]
    assert all(d.data for d in wire.log)
    a.hangup(a_call, wire.now)
    wire.run(1.0)
    assert [d.method for d in wire.log[-2:]] == ["BYE", "200 BYE"]
    assert a.next_timer() is None and b.next_timer() is None


def test_late_initial_2xx_after_reinvite_is_reacked_not_byed() -> None:
    a, b, wire = pair()
    a_call, b_call = establish(a, b, wire)
    a.reinvite(a_call, SDP_HOLD, wire.now)
    wire.flush()
    b.answer_reinvite(b_call, SDP_B, wire.now)
    wire.run(2.0)
    initial_ok = wire.sent("200 INVITE")[0]
    initial_ack = wire.sent("ACK")[0]
    a.receive(initial_ok.data, initial_ok.src, "UDP", wire.now)
    assert [o.data for o in a.datagrams_to_send()] == [initial_ack.data]
    assert a.call_state(a_call) is CallState.CONFIRMED


# -- the call state table: complete, missing pairs are errors ----------------------------------


@pytest.mark.parametrize("state", list(CallState), ids=lambda s: s.name)
@pytest.mark.parametrize("event", list(CallInput), ids=lambda e: e.name)
def test_every_state_input_pair_is_a_transition_or_an_error(
        state: CallState, event: CallInput) -> None:
    if (state, event) in CALL_TABLE:
        assert next_call_state(state, event) is CALL_TABLE[(state, event)]
    else:
        with pytest.raises(CallStateError):
            next_call_state(state, event)


def test_the_table_ends_every_live_state_and_keeps_ended_absorbing() -> None:
    for state in CallState:
        assert CALL_TABLE[(state, CallInput.END)] is CallState.ENDED
    assert {s for (s, _), n in CALL_TABLE.items() if s is CallState.ENDED} == {CallState.ENDED}
    assert all(n is CallState.ENDED for (s, _), n in CALL_TABLE.items() if s is CallState.ENDED)
    # nothing leaves ENDED, and a UAS-only input never reaches a UAC-only state
    assert (CallState.CALLING, CallInput.ANSWER) not in CALL_TABLE
    assert (CallState.OFFERED, CallInput.SUCCESS) not in CALL_TABLE
