"""RFC 3261 §17 / RFC 6026 transactions: every (state, input) pair of every table, timers on a
fake clock, matching keys."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bridge.sip.message import SipRequest, SipResponse
from bridge.sip.timers import SipTimers
from bridge.sip.transaction import (
    ICT_TABLE,
    IST_TABLE,
    NICT_TABLE,
    NIST_TABLE,
    Act,
    IctInput,
    IctState,
    InviteClientTransaction,
    InviteServerTransaction,
    IstInput,
    IstState,
    NictInput,
    NictState,
    NistInput,
    NistState,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    PassToTu,
    SendMessage,
    TimedOut,
    Timer,
    TransportFailed,
    client_key,
    server_key,
)

T = SipTimers(t1=0.5, t2=4.0, t4=5.0)


def request(method: str = "INVITE", branch: str = "z9hG4bKabc", to_tag: str | None = None,
            via_host: str = "192.0.2.1") -> SipRequest:
    req = SipRequest(method=method, uri="sip:bob@192.0.2.2")
    req.headers.add("Via", f"SIP/2.0/UDP {via_host}:5060;branch={branch};rport")
    req.headers.add("Route", "<sip:proxy.example;lr>")
    req.headers.add("Max-Forwards", "70")
    req.headers.add("From", "<sip:alice@192.0.2.1>;tag=ft")
    req.headers.add("To", "<sip:bob@192.0.2.2>" + (f";tag={to_tag}" if to_tag else ""))
    req.headers.add("Call-ID", "call-1@192.0.2.1")
    req.headers.add("CSeq", f"7 {method}")
    return req


def response(req: SipRequest, status: int) -> SipResponse:
    resp = SipResponse(status=status, reason="X")
    for name in ("Via", "From", "Call-ID", "CSeq"):
        for value in req.headers.get_all(name):
            resp.headers.add(name, value)
    to = req.headers.get("To") or ""
    resp.headers.add("To", to if status == 100 or ";tag=" in to else to + ";tag=tt")
    return resp


# --------------------------------------------------------------------------------------------
# Table coverage: every (state, input) pair, present or missing
# --------------------------------------------------------------------------------------------

_TIMER_OF: dict[Act, Timer] = {
    Act.START_A: Timer.A, Act.START_B: Timer.B, Act.START_D: Timer.D, Act.START_E: Timer.E,
    Act.START_F: Timer.F, Act.START_K: Timer.K, Act.START_G: Timer.G, Act.START_H: Timer.H,
    Act.START_I: Timer.I, Act.START_J: Timer.J, Act.START_L: Timer.L, Act.START_M: Timer.M,
}

_ICT_MESSAGE = {IctInput.PROVISIONAL: 180, IctInput.SUCCESS: 200, IctInput.FAILURE: 486}
_NICT_MESSAGE = {NictInput.PROVISIONAL: 180, NictInput.FINAL: 404}
_IST_MESSAGE = {IstInput.TU_PROVISIONAL: 180, IstInput.TU_SUCCESS: 200, IstInput.TU_FAILURE: 486}
_NIST_MESSAGE = {NistInput.TU_PROVISIONAL: 180, NistInput.TU_FINAL: 200}


def _make(kind: str) -> tuple[Any, SipRequest]:
    if kind == "ict":
        req = request("INVITE")
        return InviteClientTransaction(req, transport="UDP", timers=T), req
    if kind == "nict":
        req = request("BYE", to_tag="tt")
        return NonInviteClientTransaction(req, transport="UDP", timers=T), req
    if kind == "ist":
        req = request("INVITE")
        ist = InviteServerTransaction(req, transport="UDP", timers=T)
        ist.last_response = response(req, 100)
        return ist, req
    req = request("OPTIONS")
    nist = NonInviteServerTransaction(req, transport="UDP", timers=T)
    nist.last_response = response(req, 100)
    return nist, req


def _message_for(kind: str, event: Any, req: SipRequest) -> Any:
    all_statuses: dict[str, dict[Any, int]] = {
        "ict": dict(_ICT_MESSAGE), "nict": dict(_NICT_MESSAGE),
        "ist": dict(_IST_MESSAGE), "nist": dict(_NIST_MESSAGE),
    }
    statuses = all_statuses[kind]
    if event in statuses:
        return response(req, statuses[event])
    if event is IstInput.ACK:
        ack = request("ACK", to_tag="tt")
        return ack
    if event in (IstInput.INVITE, NistInput.REQUEST):
        return req
    return None


CASES = [
    (kind, state, event)
    for kind, states, inputs in (
        ("ict", IctState, IctInput),
        ("nict", NictState, NictInput),
        ("ist", IstState, IstInput),
        ("nist", NistState, NistInput),
    )
    for state, event in itertools.product(states, inputs)
]
TABLES: dict[str, dict[Any, Any]] = {
    "ict": ICT_TABLE, "nict": NICT_TABLE, "ist": IST_TABLE, "nist": NIST_TABLE,
}


@pytest.mark.parametrize(("kind", "state", "event"), CASES,
                         ids=[f"{k}-{s.name}-{e.name}" for k, s, e in CASES])
def test_every_state_input_pair(kind: str, state: Any, event: Any) -> None:
    tx, req = _make(kind)
    tx.state = state
    previous_response = tx.last_response
    message = _message_for(kind, event, req)
    now = 100.0
    outputs = tx.apply(event, now, message)
    entry = TABLES[kind].get((state, event))
    if entry is None:
        # A missing key is a protocol error: ignored (no output, no state change) and counted.
        assert outputs == []
        assert tx.state is state
        assert tx.protocol_errors == 1
        return
    next_state, actions = entry
    assert tx.state is next_state
    assert tx.protocol_errors == 0
    expected: list[Any] = []
    for action in actions:
        if action is Act.RETRANSMIT_REQUEST:
            expected.append(SendMessage(message=req))
        elif action is Act.SEND_ACK:
            assert tx.ack is not None
            expected.append(SendMessage(message=tx.ack))
        elif action is Act.SEND_RESPONSE:
            expected.append(SendMessage(message=message))
        elif action is Act.RESEND_RESPONSE:
            expected.append(SendMessage(message=previous_response))
        elif action is Act.PASS_UP:
            expected.append(PassToTu(message=message))
        elif action is Act.REPORT_TIMEOUT:
            expected.append(TimedOut())
        elif action is Act.REPORT_TRANSPORT_ERROR:
            expected.append(TransportFailed())
        else:
            deadline = tx.timer_deadline(_TIMER_OF[action])
            assert deadline is not None and deadline > now, action
    assert outputs == expected
    if next_state.name == "TERMINATED":
        assert tx.terminated
        assert tx.next_timer() is None


def test_tables_name_only_reachable_states() -> None:
    for table in TABLES.values():
        for (state, _), (next_state, _) in table.items():
            assert state.name != "TERMINATED"
            assert type(next_state) is type(state)


# --------------------------------------------------------------------------------------------
# INVITE client transaction timers
# --------------------------------------------------------------------------------------------


def _run(tx: Any, until: float) -> list[tuple[Any, Any]]:
    """Advance a fake clock from timer to timer, recording outputs with their times."""
    log: list[tuple[Any, Any]] = []
    while (deadline := tx.next_timer()) is not None and deadline <= until:
        for out in tx.handle_timer(deadline):
            log.append((deadline, out))
    return log


def test_ict_udp_retransmits_with_doubling_then_timer_b() -> None:
    req = request()
    tx = InviteClientTransaction(req, transport="UDP", timers=T)
    assert tx.start(0.0) == [SendMessage(message=req)]
    log = _run(tx, 100.0)
    sends = [when for when, out in log if isinstance(out, SendMessage)]
    assert sends == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert log[-1] == (pytest.approx(32.0), TimedOut())
    assert tx.state is IctState.TERMINATED


def test_ict_tcp_never_retransmits() -> None:
    tx = InviteClientTransaction(request(), transport="TCP", timers=T)
    tx.start(0.0)
    log = _run(tx, 100.0)
    assert log == [(32.0, TimedOut())]


def test_ict_provisional_stops_retransmission_and_timer_b() -> None:
    req = request()
    tx = InviteClientTransaction(req, transport="UDP", timers=T)
    tx.start(0.0)
    out = tx.receive_response(response(req, 180), 0.2)
    assert [type(o) for o in out] == [PassToTu]
    assert tx.next_timer() is None  # no retransmission, no Timer B in Proceeding


def test_ict_failure_acks_once_and_reacks_retransmissions() -> None:
    req = request()
    tx = InviteClientTransaction(req, transport="UDP", timers=T)
    tx.start(0.0)
    busy = response(req, 486)
    out = tx.receive_response(busy, 0.1)
    assert isinstance(out[0], SendMessage) and isinstance(out[1], PassToTu)
    ack = out[0].message
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK"
    assert str(ack.uri) == "sip:bob@192.0.2.2"
    assert ack.headers.get("To") == busy.headers.get("To")
    assert ack.headers.get("CSeq") == "7 ACK"
    assert ack.headers.get_all("Via") == req.headers.get_all("Via")
    assert ack.headers.get_all("Route") == ["<sip:proxy.example;lr>"]
    # A retransmitted 486 is re-ACKed with the very same ACK and not passed up.
    assert tx.receive_response(busy, 1.0) == [SendMessage(message=ack)]
    assert tx.timer_deadline(Timer.D) == pytest.approx(32.1)
    assert _run(tx, 100.0) == []
    assert tx.terminated


def test_ict_failure_over_tcp_terminates_at_once() -> None:
    req = request()
    tx = InviteClientTransaction(req, transport="TCP", timers=T)
    tx.start(0.0)
    out = tx.receive_response(response(req, 603), 0.1)
    assert [type(o) for o in out] == [SendMessage, PassToTu]
    assert tx.terminated


def test_ict_2xx_goes_to_accepted_and_passes_retransmissions_up() -> None:
    req = request()
    tx = InviteClientTransaction(req, transport="UDP", timers=T)
    tx.start(0.0)
    ok = response(req, 200)
    assert tx.receive_response(ok, 0.1) == [PassToTu(message=ok)]  # no ACK for 2xx
    assert tx.state is IctState.ACCEPTED
    assert tx.receive_response(ok, 0.6) == [PassToTu(message=ok)]
    assert tx.next_timer() == pytest.approx(0.1 + 64 * 0.5)
    _run(tx, 100.0)
    assert tx.terminated


# --------------------------------------------------------------------------------------------
# non-INVITE client transaction timers
# --------------------------------------------------------------------------------------------


def test_nict_timer_e_doubles_to_t2_then_timer_f() -> None:
    req = request("OPTIONS")
    tx = NonInviteClientTransaction(req, transport="UDP", timers=T)
    tx.start(0.0)
    log = _run(tx, 100.0)
    sends = [when for when, out in log if isinstance(out, SendMessage)]
    # intervals 0.5, 1, 2, 4, 4, 4 ... until Timer F at 32 s.
    assert sends[:5] == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5])
    assert all(b - a == pytest.approx(4.0) for a, b in itertools.pairwise(sends[3:]))
    assert log[-1] == (pytest.approx(32.0), TimedOut())


def test_nict_proceeding_retransmits_every_t2() -> None:
    req = request("OPTIONS")
    tx = NonInviteClientTransaction(req, transport="UDP", timers=T)
    tx.start(0.0)
    tx.receive_response(response(req, 100), 0.1)
    assert tx.state is NictState.PROCEEDING
    log = _run(tx, 12.0)
    sends = [when for when, out in log if isinstance(out, SendMessage)]
    assert sends == pytest.approx([0.5, 4.5, 8.5])
    assert tx.timer_deadline(Timer.F) == pytest.approx(32.0)  # F survives Trying->Proceeding


def test_nict_final_waits_timer_k_then_terminates() -> None:
    req = request("OPTIONS")
    tx = NonInviteClientTransaction(req, transport="UDP", timers=T)
    tx.start(0.0)
    ok = response(req, 200)
    assert tx.receive_response(ok, 0.2) == [PassToTu(message=ok)]
    assert tx.receive_response(ok, 0.3) == []  # absorbed
    assert tx.next_timer() == pytest.approx(5.2)  # Timer K = T4
    _run(tx, 10.0)
    assert tx.terminated


def test_nict_tcp_final_terminates_at_once() -> None:
    req = request("OPTIONS")
    tx = NonInviteClientTransaction(req, transport="TCP", timers=T)
    tx.start(0.0)
    tx.receive_response(response(req, 200), 0.2)
    assert tx.terminated


# --------------------------------------------------------------------------------------------
# Server transactions
# --------------------------------------------------------------------------------------------


def test_ist_failure_retransmitted_until_ack_then_timer_i() -> None:
    req = request()
    tx = InviteServerTransaction(req, transport="UDP", timers=T)
    busy = response(req, 486)
    assert tx.send_response(busy, 0.0) == [SendMessage(message=busy)]
    log = _run(tx, 8.0)
    assert [when for when, _ in log] == pytest.approx([0.5, 1.5, 3.5, 7.5])  # G capped at T2
    assert tx.receive_request(request("ACK", to_tag="tt"), 8.0) == []
    assert tx.state is IstState.CONFIRMED
    assert tx.next_timer() == pytest.approx(13.0)  # Timer I = T4
    assert tx.receive_request(request("ACK", to_tag="tt"), 9.0) == []  # absorbed
    _run(tx, 20.0)
    assert tx.terminated


def test_ist_timer_h_reports_missing_ack() -> None:
    req = request()
    tx = InviteServerTransaction(req, transport="UDP", timers=T)
    tx.send_response(response(req, 486), 0.0)
    log = _run(tx, 100.0)
    assert log[-1] == (pytest.approx(32.0), TimedOut())
    assert tx.terminated


def test_ist_tcp_failure_no_retransmission_ack_terminates() -> None:
    req = request()
    tx = InviteServerTransaction(req, transport="TCP", timers=T)
    tx.send_response(response(req, 486), 0.0)
    assert tx.next_timer() == pytest.approx(32.0)  # only Timer H
    tx.receive_request(request("ACK", to_tag="tt"), 1.0)
    assert tx.terminated


def test_ist_retransmitted_invite_gets_last_provisional() -> None:
    req = request()
    tx = InviteServerTransaction(req, transport="UDP", timers=T)
    trying = response(req, 100)
    tx.send_response(trying, 0.0)
    assert tx.receive_request(req, 0.5) == [SendMessage(message=trying)]


def test_ist_2xx_accepted_absorbs_invites_and_sends_tu_retransmissions() -> None:
    req = request()
    tx = InviteServerTransaction(req, transport="UDP", timers=T)
    ok = response(req, 200)
    assert tx.send_response(ok, 0.0) == [SendMessage(message=ok)]
    assert tx.state is IstState.ACCEPTED
    assert tx.receive_request(req, 0.4) == []  # the 2xx is the core's to retransmit
    assert tx.send_response(ok, 0.5) == [SendMessage(message=ok)]
    assert tx.next_timer() == pytest.approx(32.0)  # Timer L
    _run(tx, 40.0)
    assert tx.terminated


def test_nist_timer_j_udp_and_tcp() -> None:
    req = request("OPTIONS")
    tx = NonInviteServerTransaction(req, transport="UDP", timers=T)
    ok = response(req, 200)
    tx.send_response(ok, 1.0)
    assert tx.receive_request(req, 2.0) == [SendMessage(message=ok)]
    assert tx.next_timer() == pytest.approx(33.0)
    _run(tx, 40.0)
    assert tx.terminated
    tcp = NonInviteServerTransaction(req, transport="TCP", timers=T)
    tcp.send_response(ok, 1.0)
    assert tcp.terminated


def test_transport_error_terminates() -> None:
    req = request()
    tx = InviteClientTransaction(req, transport="UDP", timers=T)
    tx.start(0.0)
    assert tx.transport_error(0.1) == [TransportFailed()]
    assert tx.terminated


def test_timers_derivation() -> None:
    t = SipTimers(t1=0.01, t2=0.08, t4=0.1)
    assert t.timer_a == 0.01 and t.timer_b == pytest.approx(0.64)
    assert t.timer_f == t.timer_h == t.timer_l == t.timer_m == pytest.approx(0.64)
    assert t.timer_d(reliable=False) == 32.0 and t.timer_d(reliable=True) == 0.0
    assert t.timer_i(reliable=False) == t.timer_k(reliable=False) == 0.1
    assert t.timer_i(reliable=True) == t.timer_k(reliable=True) == t.timer_j(reliable=True) == 0
    assert t.timer_j(reliable=False) == pytest.approx(0.64)
    assert t.next_interval(0.04) == 0.08 and t.next_interval(0.08) == 0.08
    with pytest.raises(ValueError):
        SipTimers(t1=1.0, t2=0.5)


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------


def test_server_key_folds_ack_onto_invite_and_keeps_cancel_apart() -> None:
    invite = request("INVITE")
    ack = request("ACK", to_tag="tt")
    cancel = request("CANCEL")
    assert server_key(invite) == server_key(ack)
    assert server_key(cancel) != server_key(invite)
    assert server_key(cancel, method="INVITE") == server_key(invite)


def test_server_key_sent_by_and_branch_matter() -> None:
    assert server_key(request(via_host="192.0.2.9")) != server_key(request())
    assert server_key(request(branch="z9hG4bKother")) != server_key(request())


def test_server_key_rfc2543_fallback() -> None:
    old = request("INVITE", branch="1")
    old_ack = request("ACK", branch="1", to_tag="tt")
    assert server_key(old)[0] == "server-2543"
    assert server_key(old) == server_key(old_ack)
    bye = request("BYE", branch="1", to_tag="tt")
    other_bye = request("BYE", branch="1", to_tag="zz")
    assert server_key(bye) != server_key(other_bye)


def test_client_key_branch_and_method() -> None:
    invite = request("INVITE")
    assert client_key(response(invite, 180)) == client_key(invite)
    assert client_key(response(request("CANCEL"), 200)) != client_key(invite)
