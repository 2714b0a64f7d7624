"""Merging RFC 4733, SIP INFO and in-band digits into one stream (bridge.media.digits)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.media.digits import DigitMergePolicy, DigitMerger, digit_from_info
from bridge.media.inband_dtmf import InbandDtmfDetector, dbm0_to_amplitude
from bridge.rtp.dtmf import (
    DigitReceived,
    DigitSource,
    DigitStarted,
    DtmfError,
    Rfc4733Receiver,
    Rfc4733Sender,
    Rfc4733SenderConfig,
)


def rep(digit: str, source: DigitSource, start: float, ms: int = 100) -> DigitReceived:
    return DigitReceived(digit=digit, source=source, start=start, duration_ms=ms)


class Clock:
    """Feeds the merger in time order, running its timer like the engine would."""

    def __init__(self, policy: DigitMergePolicy | None = None) -> None:
        self.m = DigitMerger(policy)
        self.out: list[DigitReceived] = []

    def at(self, now: float, event: DigitStarted | DigitReceived | None = None) -> None:
        timer = self.m.next_timer()
        while timer is not None and timer <= now:
            self.out += self.m.handle_timer(timer)
            timer = self.m.next_timer()
        if event is not None:
            self.out += self.m.add(event, now)

    @property
    def digits(self) -> str:
        return "".join(e.digit for e in self.out)

    @property
    def sources(self) -> list[str]:
        return [e.source for e in self.out]


def test_rfc4733_is_emitted_at_once() -> None:
    c = Clock()
    c.at(1.0, DigitStarted(digit="5", source="rfc4733", start=1.0))
    assert c.out == []
    c.at(1.1, rep("5", "rfc4733", 1.0))
    assert c.digits == "5" and c.m.next_timer() is None


def test_info_waits_hold_then_is_emitted() -> None:
    c = Clock(DigitMergePolicy(hold=0.2))
    c.at(2.0, rep("7", "info", 2.0))
    assert c.out == [] and c.m.next_timer() == pytest.approx(2.2)
    c.at(2.19)
    assert c.out == []
    c.at(2.2)
    assert c.digits == "7" and c.sources == ["info"]


def test_info_and_rfc4733_same_press_counts_once() -> None:
    c = Clock()
    c.at(1.00, rep("3", "info", 1.00))
    c.at(1.01, DigitStarted(digit="3", source="rfc4733", start=1.01))
    c.at(1.11, rep("3", "rfc4733", 1.01))
    c.at(2.0)
    assert c.digits == "3" and c.sources == ["rfc4733"]
    assert c.m.dropped == 1


def test_rfc4733_then_late_info_counts_once() -> None:
    c = Clock()
    c.at(1.00, DigitStarted(digit="9", source="rfc4733", start=1.00))
    c.at(1.10, rep("9", "rfc4733", 1.00))
    c.at(1.35, rep("9", "info", 1.35))  # INFO delayed 350 ms by the SIP path
    c.at(3.0)
    assert c.digits == "9"


def test_info_emitted_then_rfc4733_duplicate_dropped() -> None:
    c = Clock(DigitMergePolicy(hold=0.1))
    c.at(1.00, rep("4", "info", 1.00))
    c.at(1.20)  # hold expired: INFO digit already delivered
    c.at(1.25, rep("4", "rfc4733", 1.05))  # start packets lost, the end arrives
    assert c.digits == "4" and c.sources == ["info"]


def test_same_digit_twice_sent_both_ways_is_two_digits() -> None:
    c = Clock()
    for start in (1.0, 1.25):
        c.at(start, rep("1", "info", start))
        c.at(start + 0.005, DigitStarted(digit="1", source="rfc4733", start=start + 0.005))
        c.at(start + 0.105, rep("1", "rfc4733", start + 0.005))
    c.at(3.0)
    assert c.digits == "11"


def test_inband_and_rfc4733_same_press_counts_once_policy_off() -> None:
    """With in-band kept on, the tone detected alongside the events is de-duplicated."""
    c = Clock(DigitMergePolicy(inband_off_after_rfc4733=False))
    for i, d in enumerate("123"):
        t = 1.0 + i * 0.3
        c.at(t, DigitStarted(digit=d, source="rfc4733", start=t))
        c.at(t + 0.04, rep(d, "inband", t + 0.002, ms=38))
        c.at(t + 0.1, rep(d, "rfc4733", t))
    c.at(3.0)
    assert c.digits == "123" and set(c.sources) == {"rfc4733"}
    assert c.m.inband_enabled


def test_inband_before_any_rfc4733_is_held_and_claimed() -> None:
    c = Clock()
    c.at(1.04, rep("8", "inband", 1.0, ms=38))  # tone seen before the first event packet
    c.at(1.06, DigitStarted(digit="8", source="rfc4733", start=1.01))
    c.at(1.2, rep("8", "rfc4733", 1.01))
    c.at(2.0)
    assert c.digits == "8" and c.sources == ["rfc4733"]


def test_inband_switched_off_after_rfc4733() -> None:
    c = Clock()
    assert c.m.inband_enabled
    c.at(1.0, DigitStarted(digit="1", source="rfc4733", start=1.0))
    assert not c.m.inband_enabled
    c.at(1.1, rep("1", "rfc4733", 1.0))
    c.at(5.0, rep("2", "inband", 5.0))  # later tones from this leg are ignored entirely
    c.at(6.0)
    assert c.digits == "1"
    c.m.reset()
    assert c.m.inband_enabled


def test_inband_only_leg() -> None:
    c = Clock()
    for i, d in enumerate("2580"):
        c.at(1.0 + 0.2 * i, rep(d, "inband", 1.0 + 0.2 * i - 0.04, ms=40))
    c.at(3.0)
    assert c.digits == "2580" and set(c.sources) == {"inband"}


def test_info_beats_inband_for_the_same_press() -> None:
    c = Clock()
    c.at(1.04, rep("6", "inband", 1.0, ms=40))
    c.at(1.05, rep("6", "info", 1.05))
    c.at(2.0)
    assert c.digits == "6" and c.sources == ["info"]


def test_order_by_start_across_sources() -> None:
    c = Clock()
    c.at(1.00, rep("1", "info", 1.00))  # held
    c.at(1.05, DigitStarted(digit="2", source="rfc4733", start=1.05))
    c.at(1.15, rep("2", "rfc4733", 1.05))  # releases the earlier INFO digit first
    c.at(2.0)
    assert c.digits == "12"


def test_held_report_waits_for_earlier_open_rfc4733_press() -> None:
    c = Clock(DigitMergePolicy(hold=0.05, inband_off_after_rfc4733=False))
    c.at(1.00, DigitStarted(digit="1", source="rfc4733", start=1.00))
    c.at(1.10, rep("2", "info", 1.10))  # a different digit while 1 is still held down
    c.at(1.30)
    assert c.out == []
    c.at(1.50, rep("1", "rfc4733", 1.00))
    c.at(1.60)
    assert c.digits == "12"


def test_different_digits_are_not_merged() -> None:
    c = Clock()
    c.at(1.0, rep("1", "info", 1.0))
    c.at(1.01, DigitStarted(digit="2", source="rfc4733", start=1.01))
    c.at(1.11, rep("2", "rfc4733", 1.01))
    c.at(2.0)
    assert c.digits == "12"


def test_same_source_never_merged() -> None:
    c = Clock()
    c.at(1.0, rep("5", "info", 1.0))
    c.at(1.05, rep("5", "info", 1.05))
    c.at(2.0)
    assert c.digits == "55"


@given(st.lists(st.sampled_from("0123456789*#"), min_size=1, max_size=12),
       st.floats(0.0, 0.15), st.floats(0.0, 0.25))
def test_dual_signalling_counts_each_press_once(
    keys: list[str], info_delay: float, gap: float
) -> None:
    """Every press sent as RFC 4733 and INFO (INFO delayed by up to 150 ms)."""
    c = Clock()
    timeline: list[tuple[float, DigitStarted | DigitReceived]] = []
    t = 1.0
    for k in keys:
        timeline.append((t, DigitStarted(digit=k, source="rfc4733", start=t)))
        timeline.append((t + 0.1, rep(k, "rfc4733", t)))
        timeline.append((t + info_delay, rep(k, "info", t + info_delay)))
        t += 0.1 + 0.06 + gap
    for now, ev in sorted(timeline, key=lambda x: x[0]):
        c.at(now, ev)
    c.at(t + 5)
    assert c.digits == "".join(keys)


# -- SIP INFO bodies ---------------------------------------------------------------------------


def test_info_dtmf_relay() -> None:
    ev = digit_from_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", 3.0)
    assert ev == DigitReceived(digit="5", source="info", start=3.0, duration_ms=160)
    ev = digit_from_info("Application/DTMF-Relay; charset=x", b"Signal= #\nDuration= 250", 0)
    assert ev is not None and (ev.digit, ev.duration_ms) == ("#", 250)
    ev = digit_from_info("application/dtmf-relay", b"Signal=11\r\n", 0.0)
    assert ev is not None and (ev.digit, ev.duration_ms) == ("#", 100)
    ev = digit_from_info("application/dtmf-relay", b"Signal=10\r\n", 0.0)
    assert ev is not None and ev.digit == "*"
    assert digit_from_info("application/dtmf-relay", b"Signal=16\r\n", 0.0) is None


def test_info_dtmf_bare() -> None:
    ev = digit_from_info("application/dtmf", b"a\r\n", 1.5)
    assert ev is not None and ev.digit == "A"


@pytest.mark.parametrize(
    ("ctype", "body", "status"),
    [
        ("text/plain", b"5", 415),
        ("application/dtmf-relay", b"Duration=100", 400),
        ("application/dtmf-relay", b"Signal=x", 400),
        ("application/dtmf-relay", b"Signal=5\nDuration=-4", 400),
        ("application/dtmf-relay", b"Signal=5\nDuration=abc", 400),
        ("application/dtmf-relay", b"Signal=99", 400),
        ("application/dtmf", b"\xff", 400),
        ("application/dtmf", b"55", 400),
    ],
)
def test_info_bad_bodies(ctype: str, body: bytes, status: int) -> None:
    with pytest.raises(DtmfError) as err:
        digit_from_info(ctype, body, 0.0)
    assert err.value.status == status


@given(st.binary(max_size=64))
def test_info_any_body_parses_or_raises(body: bytes) -> None:
    try:
        ev = digit_from_info("application/dtmf-relay", body, 0.0)
    except DtmfError as exc:
        assert exc.status == 400
    else:
        assert ev is None or ev.digit in "0123456789*#ABCD"


# -- end to end: sender -> receiver and in-band tones of the same presses -----------------------


def test_leg_sending_rfc4733_and_tones_yields_each_digit_once() -> None:
    """A phone that sends RFC 4733 and leaves the tones in the audio: one stream, no dupes."""
    keys = "147*"
    tx = Rfc4733Sender(Rfc4733SenderConfig(tone_ms=100, gap_ms=100))
    for k in keys:
        tx.start(k, 0.0, 0)
    rx = Rfc4733Receiver()
    det = InbandDtmfDetector()
    merger = DigitMerger(DigitMergePolicy(inband_off_after_rfc4733=False))
    rng = np.random.default_rng(7)
    out: list[DigitReceived] = []
    amp = dbm0_to_amplitude(-10.0)
    rows = {"1": (697, 1209), "4": (770, 1209), "7": (852, 1209), "*": (941, 1209)}
    phase = 0
    payload_prev = b""
    inband: list[str] = []
    for tick in range(60):
        now = tick * 0.02
        pkt = tx.next_packet()
        frame = rng.normal(0, 30, 160)
        if pkt is not None:
            payload, marker, ts = pkt
            last, payload_prev = payload_prev, payload
            for ev in rx.receive(marker=marker, timestamp=ts, sequence=tick, payload=payload,
                                 now=now):
                out += merger.add(ev, now)
            if payload != last:  # tone while the duration grows; not under end repeats
                code = payload[0]
                fl, fh = rows["0123456789*#"[code]]
                n = np.arange(phase, phase + 160) / 8000
                frame += amp * (np.sin(2 * np.pi * fl * n) + np.sin(2 * np.pi * fh * n))
        phase += 160
        for ev2 in det.detect(np.clip(frame, -32768, 32767).astype(np.int16), now + 0.02):
            inband.append(ev2.digit)
            out += merger.add(ev2, now + 0.02)
        timer = merger.next_timer()
        if timer is not None and timer <= now:
            out += merger.handle_timer(now)
    out += merger.handle_timer(10.0)
    assert "".join(e.digit for e in out) == keys
    assert {e.source for e in out} == {"rfc4733"}
    assert "".join(inband) == keys  # the tones were there and were heard
    assert merger.dropped == len(keys)
