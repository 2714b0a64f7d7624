"""RFC 3261 §12 dialogs: creation on both sides, route sets, in-dialog requests, CSeq order."""

from __future__ import annotations

import itertools

import pytest

from bridge.sip.dialog import (
    DIALOG_TABLE,
    Dialog,
    DialogAction,
    DialogError,
    DialogId,
    DialogInput,
    DialogState,
)
from bridge.sip.message import SipRequest, SipResponse
from bridge.sip.parser import parse_message


def _parse(text: str) -> SipRequest | SipResponse:
    return parse_message(text.replace("\n", "\r\n").encode())


INVITE = """INVITE sip:bridge@192.0.2.10 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
Record-Route: <sip:p2.example.com;lr>
Record-Route: <sip:p1.example.com;lr>
From: "Alice" <sip:alice@example.com>;tag=1928301774
To: <sip:bridge@192.0.2.10>
Call-ID: a84b4c76e66710@pc33.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@192.0.2.1:5060>
Content-Length: 0

"""

OK = """SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8
Record-Route: <sip:p2.example.com;lr>
Record-Route: <sip:p1.example.com;lr>
From: <sip:bridge@192.0.2.10>;tag=ours
To: <sip:bob@example.com>;tag=theirs
Call-ID: out-1@192.0.2.10
CSeq: 1 INVITE
Contact: <sip:bob@198.51.100.7:5062>
Content-Length: 0

"""

OUR_INVITE = """INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8
Max-Forwards: 70
From: <sip:bridge@192.0.2.10>;tag=ours
To: <sip:bob@example.com>
Call-ID: out-1@192.0.2.10
CSeq: 1 INVITE
Contact: <sip:bridge@192.0.2.10>
Content-Length: 0

"""


def _uas() -> Dialog:
    request = _parse(INVITE)
    assert isinstance(request, SipRequest)
    return Dialog.for_uas(request, "localtag")


def _uac(ok: str = OK) -> Dialog:
    request, response = _parse(OUR_INVITE), _parse(ok)
    assert isinstance(request, SipRequest) and isinstance(response, SipResponse)
    return Dialog.for_uac(request, response)


@pytest.mark.parametrize(("state", "event"), list(itertools.product(DialogState, DialogInput)))
def test_every_dialog_state_input_pair(state: DialogState, event: DialogInput) -> None:
    dialog = _uas()
    dialog.state = state
    action = dialog.apply(event)
    entry = DIALOG_TABLE.get((state, event))
    if entry is None:
        assert (dialog.state, action, dialog.protocol_errors) == (state, DialogAction.NONE, 1)
    else:
        assert (dialog.state, action, dialog.protocol_errors) == (*entry, 0)


def test_uas_dialog_from_request() -> None:
    dialog = _uas()
    assert dialog.id == DialogId("a84b4c76e66710@pc33.example.com", "localtag", "1928301774")
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5060"
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert dialog.remote_seq == 314159
    assert dialog.local_party == "<sip:bridge@192.0.2.10>;tag=localtag"
    assert dialog.state is DialogState.EARLY


def test_uas_request_without_contact_is_refused() -> None:
    request = _parse(INVITE.replace("Contact: <sip:alice@192.0.2.1:5060>\n", ""))
    assert isinstance(request, SipRequest)
    with pytest.raises(DialogError):
        Dialog.for_uas(request, "x")


def test_uac_dialog_reverses_record_route() -> None:
    dialog = _uac()
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.id == DialogId("out-1@192.0.2.10", "ours", "theirs")
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert dialog.local_seq == 1
    assert dialog.remote_seq is None


def test_loose_routing_request() -> None:
    dialog = _uas()
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:alice@192.0.2.1:5060"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.headers.get("From") == "<sip:bridge@192.0.2.10>;tag=localtag"
    assert bye.headers.get("To") == '"Alice" <sip:alice@example.com>;tag=1928301774'
    assert bye.headers.get("CSeq") == "1 BYE"
    assert dialog.create_request("INFO").headers.get("CSeq") == "2 INFO"
    assert dialog.create_request("ACK", cseq=2).headers.get("CSeq") == "2 ACK"
    assert str(dialog.next_hop) == "sip:p2.example.com;lr"


def test_strict_routing_request() -> None:
    dialog = _uac(OK.replace(";lr>", ">"))
    bye = dialog.create_request("BYE")
    # §12.2.1.1: Request-URI = first route, Route = rest + remote target.
    assert str(bye.uri) == "sip:p1.example.com"
    assert bye.headers.get_all("Route") == [
        "<sip:p2.example.com>",
        "<sip:bob@198.51.100.7:5062>",
    ]
    assert bye.headers.get("CSeq") == "2 BYE"


def test_no_route_set_goes_to_remote_target() -> None:
    dialog = _uac(OK.replace("Record-Route: <sip:p2.example.com;lr>\n", "").replace(
        "Record-Route: <sip:p1.example.com;lr>\n", ""))
    bye = dialog.create_request("BYE")
    assert bye.headers.get_all("Route") == []
    assert str(dialog.next_hop) == "sip:bob@198.51.100.7:5062"


def test_remote_cseq_order() -> None:
    dialog = _uas()
    info = INVITE.replace("INVITE sip", "INFO sip")
    request = _parse(info.replace("314159 INVITE", "314160 INFO"))
    assert isinstance(request, SipRequest)
    assert dialog.check_remote_cseq(request) is None
    assert dialog.remote_seq == 314160
    old = _parse(info.replace("314159 INVITE", "314158 INFO"))
    assert isinstance(old, SipRequest)
    assert dialog.check_remote_cseq(old) == 500
    assert dialog.remote_seq == 314160


def test_target_refresh() -> None:
    dialog = _uas()
    reinvite = _parse(INVITE.replace("192.0.2.1:5060>", "203.0.113.5:6000>"))
    dialog.refresh_target(reinvite)
    assert str(dialog.remote_target) == "sip:alice@203.0.113.5:6000"
