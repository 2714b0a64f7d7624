"""The fair SIP intake: token buckets per source, 503 then silence, trunks and dialogs first."""

from __future__ import annotations

from pathlib import Path

from bridge.sip.intake import IntakeLimits, Peek, SipIntake, TokenBucket, Verdict, peek
from bridge.sip.parser import parse_message

DATA = Path(__file__).resolve().parents[1] / "data"

INVITE = Peek(method="INVITE", call_id="c1")
ACK = Peek(method="ACK", call_id="c1")
RESPONSE = Peek(method=None, call_id="c1")


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert not bucket.take(0.1)
    assert bucket.full(100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_a_source_over_its_limit_gets_503s_then_silence() -> None:
    intake = SipIntake(IntakeLimits(rate=10.0, burst=5, refusal_rate=1.0, refusal_burst=2))
    verdicts = [intake.admit("192.0.2.1", INVITE, False, 0.0) for _ in range(10)]
    assert verdicts == [Verdict.ACCEPT] * 5 + [Verdict.REFUSE] * 2 + [Verdict.DROP] * 3
    # another source is not affected
    assert intake.admit("192.0.2.2", INVITE, False, 0.0) is Verdict.ACCEPT
    # an ACK or a response over the limit is never answered
    assert intake.admit("192.0.2.1", ACK, False, 0.0) is Verdict.DROP
    assert intake.admit("192.0.2.1", RESPONSE, False, 0.0) is Verdict.DROP
    # one second later: ten new tokens at 10/s
    later = [intake.admit("192.0.2.1", INVITE, False, 1.0) for _ in range(12)]
    assert later.count(Verdict.ACCEPT) == 5  # burst 5 caps the refill
    c = intake.counters
    assert (c.accepted_new, c.refused) == (11, 3)


def test_known_dialogs_are_not_new_work_but_are_bounded_too() -> None:
    intake = SipIntake(IntakeLimits(rate=1.0, burst=1, dialog_rate=100.0, dialog_burst=50))
    assert intake.admit("192.0.2.1", INVITE, False, 0.0) is Verdict.ACCEPT
    assert intake.admit("192.0.2.1", INVITE, False, 0.0) is not Verdict.ACCEPT
    in_dialog = [intake.admit("192.0.2.1", ACK, True, 0.0) for _ in range(60)]
    assert in_dialog.count(Verdict.ACCEPT) == 50
    assert in_dialog[-1] is Verdict.DROP  # a flood of in-dialog messages is dropped, no 503
    assert intake.counters.accepted_dialog == 50


def test_trunks_have_a_large_bucket_of_their_own() -> None:
    intake = SipIntake(IntakeLimits(rate=1.0, burst=1, trunk_rate=1000.0, trunk_burst=500),
                       is_trunk=lambda s: s.startswith("10."))
    assert sum(intake.admit("10.0.0.1", INVITE, False, 0.0) is Verdict.ACCEPT
               for _ in range(600)) == 500
    assert intake.counters.accepted_trunk == 500


def test_one_report_per_source_and_interval() -> None:
    intake = SipIntake(IntakeLimits(rate=1.0, burst=1, refusal_rate=1.0, refusal_burst=1,
                                    log_interval=10.0))
    assert intake.reports(0.0) == []
    for _ in range(100):
        intake.admit("192.0.2.1", INVITE, False, 1.0)
    intake.admit("192.0.2.2", INVITE, False, 1.0)  # within its limit: no report
    assert intake.reports(5.0) == []  # not a full interval yet
    reports = intake.reports(10.0)
    assert [(r.source, r.accepted, r.refused, r.dropped) for r in reports] == [
        ("192.0.2.1", 1, 1, 98)]
    assert "192.0.2.1" in str(reports[0]) and "98 dropped" in str(reports[0])
    assert intake.reports(20.0) == []  # counts were reset; idle sources are forgotten
    assert intake.sources == 0


def test_many_sources_at_once_share_one_bucket_beyond_the_tracked_count() -> None:
    intake = SipIntake(IntakeLimits(rate=1.0, burst=1, refusal_rate=0.0, refusal_burst=0,
                                    max_sources=10))
    verdicts = [intake.admit(f"192.0.2.{i}", INVITE, False, 0.0) for i in range(30)]
    assert verdicts[:10] == [Verdict.ACCEPT] * 10
    assert verdicts[10:].count(Verdict.ACCEPT) == 1  # the shared "*" bucket
    assert intake.sources == 11


def test_a_full_table_is_swept_for_idle_sources_at_most_once_a_second() -> None:
    intake = SipIntake(IntakeLimits(rate=1.0, burst=1, refusal_rate=0.0, refusal_burst=0,
                                    max_sources=10))
    for i in range(10):  # ten sources, each bucket empty until t = 1.0
        intake.admit(f"192.0.2.{i}", INVITE, False, 0.0)
    intake.admit("198.51.100.1", INVITE, False, 0.5)  # full: a sweep (none idle), then "*"
    assert intake.sources == 11
    # at 1.2 s the ten are idle again, but the last sweep was 0.7 s ago: no pass over the
    # table for this newcomer (a spoofed flood would pay it per datagram)
    intake.admit("198.51.100.2", INVITE, False, 1.2)
    assert intake.sources == 11
    intake.admit("198.51.100.3", INVITE, False, 1.6)  # a second after the sweep: swept
    assert intake.sources < 11


def test_peek_reads_method_and_call_id_of_real_messages() -> None:
    for path in sorted((DATA / "sip").glob("*.sip")) + sorted((DATA / "rfc4475").rglob("*.dat")):
        data = path.read_bytes()
        try:
            message = parse_message(data)
        except ValueError:
            continue
        seen = peek(data)
        call_id = message.headers.get("Call-ID")
        if call_id is not None and len(message.headers.get_all("Call-ID")) == 1:
            assert seen.call_id == call_id.strip(), path.name
        method = getattr(message, "method", None)
        assert seen.method == (method.upper() if method else None), path.name


def test_peek_of_garbage_and_compact_forms() -> None:
    assert peek(b"") == Peek(None, None)
    assert peek(b"\x00\x01junk") == Peek(method="\x00\x01JUNK", call_id=None)
    compact = b"OPTIONS sip:a@b SIP/2.0\r\ni: abc@h\r\nv: SIP/2.0/UDP h\r\n\r\ni: body\r\n"
    assert peek(compact) == Peek(method="OPTIONS", call_id="abc@h")
    assert peek(b"SIP/2.0 200 OK\r\nCall-ID:  x \r\n\r\n") == Peek(method=None, call_id="x")


def test_a_sustained_flood_is_blocked_for_a_while_then_gets_a_new_chance() -> None:
    intake = SipIntake(IntakeLimits(rate=1.0, burst=1, refusal_rate=1.0, refusal_burst=1,
                                    block_after=100, block_seconds=10.0),
                       is_trunk=lambda s: s == "10.0.0.1")
    assert intake.blocked(0.0) is None
    for _ in range(102):  # 1 accepted, 1 refused, 100 dropped
        intake.admit("192.0.2.1", INVITE, False, 0.0)
        intake.admit("10.0.0.1", INVITE, False, 0.0)  # a trunk is never blocked
    assert intake.blocked(0.1) == frozenset({"192.0.2.1"})
    assert intake.blocked(0.2) is None  # unchanged
    assert intake.blocks == 1
    assert intake.blocked(10.0) == frozenset()  # expired
    assert intake.admit("192.0.2.1", INVITE, False, 10.0) is Verdict.ACCEPT
    assert intake.blocked(10.0) is None
