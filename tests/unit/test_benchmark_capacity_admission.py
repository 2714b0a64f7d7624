"""Admission control: the 503 + Retry-After decision (RFC 3261 §21.5.4, §20.33), the
``[media]`` settings, ``SipEndpoint.reject(headers=...)`` on the wire, and the runtime's ring
of recent tick lateness the guard reads."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from bridge.config import Config, ConfigError, MediaConfig, load_config
from bridge.runtime.admission import admission_refusal
from bridge.runtime.media import LATENESS_RING, MediaRuntime
from bridge.sip.endpoint import EndpointConfig, SipEndpoint
from bridge.sip.events import CallEnded, CallOffered
from bridge.sip.message import SipResponse
from bridge.sip.parser import parse_message
from bridge.sip.timers import SipTimers

QUIET = np.full(50, 0.001)  # one second of 1 ms lateness


def test_below_the_limit_is_admitted() -> None:
    config = MediaConfig(max_participants=10, max_lateness_p99_ms=5.0)
    assert admission_refusal(config, participants=9, recent_lateness=QUIET) is None


def test_at_the_limit_is_503_with_retry_after() -> None:
    config = MediaConfig(max_participants=10, retry_after=17)
    refusal = admission_refusal(config, participants=10, recent_lateness=QUIET)
    assert refusal is not None
    assert refusal.status == 503
    assert refusal.headers == (("Retry-After", "17"),)
    assert "limit of 10" in refusal.reason


def test_zero_means_no_participant_limit() -> None:
    config = MediaConfig(max_participants=0, max_lateness_p99_ms=0.0)
    assert admission_refusal(config, participants=10**6, recent_lateness=QUIET) is None


def test_late_ticks_refuse_even_below_the_limit() -> None:
    config = MediaConfig(max_participants=1000, max_lateness_p99_ms=5.0,
                         lateness_window_ticks=50)
    late = QUIET.copy()
    late[-3:] = 0.012  # three ticks of 12 ms in the last second: p99 above 5 ms
    refusal = admission_refusal(config, participants=1, recent_lateness=late)
    assert refusal is not None and refusal.status == 503
    assert "p99 tick lateness" in refusal.reason


def test_only_the_last_window_counts_and_a_partial_window_is_not_judged() -> None:
    config = MediaConfig(max_participants=0, max_lateness_p99_ms=5.0, lateness_window_ticks=50)
    old_spike = np.concatenate([np.full(10, 0.05), QUIET])  # the spike is older than 50 ticks
    assert admission_refusal(config, participants=1, recent_lateness=old_spike) is None
    assert admission_refusal(config, participants=1, recent_lateness=np.full(49, 0.05)) is None


def test_guard_off() -> None:
    config = MediaConfig(max_participants=0, max_lateness_p99_ms=0.0)
    assert admission_refusal(config, participants=1, recent_lateness=np.full(50, 1.0)) is None


def test_media_section_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text("[media]\nmax_participants = 700\nmax_lateness_p99_ms = 8\n"
                    "retry_after = 5\n", encoding="utf-8")
    media = load_config(path, env={}).validate().media
    assert media == MediaConfig(max_participants=700, max_lateness_p99_ms=8.0,
                                lateness_window_ticks=MediaConfig().lateness_window_ticks,
                                retry_after=5)
    assert isinstance(media.max_lateness_p99_ms, float)


def test_default_limit_is_on_and_the_lateness_guard_off() -> None:
    assert Config().media.max_participants > 0
    assert Config().media.max_lateness_p99_ms == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_participants = -1", "media.max_participants"),
        ("max_lateness_p99_ms = -2.5", "media.max_lateness_p99_ms"),
        ("lateness_window_ticks = 0", "media.lateness_window_ticks"),
        ("max_lateness_p99_ms = \"fast\"", "expected a number"),
        ("max_participants = 1.5", "expected an integer"),
        ("limit = 3", "unknown setting 'media.limit'"),
    ],
)
def test_bad_media_settings(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(f"[media]\n{text}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={}).validate()


INVITE = (
    "INVITE sip:+15550100@192.0.2.10 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKadm1;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@example.com>;tag=pf1\r\n"
    "To: <sip:+15550100@192.0.2.10>\r\n"
    "Call-ID: adm1@peer\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice@198.51.100.7:5062>\r\n"
    "Content-Type: application/sdp\r\n"
)
SDP = b"v=0\r\no=p 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"


def test_reject_carries_retry_after_on_the_wire() -> None:
    counter = itertools.count(1)
    ep = SipEndpoint(EndpointConfig(local_host="192.0.2.10", local_port=5060),
                     SipTimers(t1=0.01, t2=0.08, t4=0.1), tokens=lambda: f"t{next(counter)}")
    data = (INVITE + f"Content-Length: {len(SDP)}\r\n\r\n").encode() + SDP
    ep.receive(data, ("198.51.100.7", 5062), "UDP", 0.0)
    ep.datagrams_to_send()
    offered = [e for e in ep.events() if isinstance(e, CallOffered)]
    assert len(offered) == 1
    assert ep.reject(offered[0].call, 503, 0.1, headers=[("Retry-After", "30")])
    finals = [parse_message(o.data) for o in ep.datagrams_to_send()]
    assert len(finals) == 1
    response = finals[0]
    assert isinstance(response, SipResponse)
    assert response.status == 503
    assert response.headers.get("Retry-After") == "30"
    assert response.headers.get("Call-ID") == "adm1@peer"
    assert any(isinstance(e, CallEnded) for e in ep.events())


def test_recent_lateness_is_the_last_ticks_oldest_first_across_the_ring() -> None:
    runtime = MediaRuntime(bind_host="127.0.0.1", port_low=40000, port_high=40010,
                           on_event=lambda _event: None)
    assert runtime.recent_lateness(50).size == 0
    total = LATENESS_RING + 7
    for k in range(total):  # what _on_clock does per tick
        runtime.lateness[runtime.ticks % LATENESS_RING] = float(k)
        runtime.ticks += 1
    np.testing.assert_array_equal(runtime.recent_lateness(5),
                                  np.arange(total - 5, total, dtype=np.float64))
    whole = runtime.recent_lateness(10**6)
    assert whole.size == LATENESS_RING
    assert whole[0] == total - LATENESS_RING and whole[-1] == total - 1
