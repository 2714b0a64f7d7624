"""The end-to-end test tooling: pcap generator, loopback capture, tone analysis.

The generated pcaps are read back with dpkt (an independent pcap/Ethernet/IP/UDP parser),
the RTP with ``parse_rtp``, the telephone-events with ``parse_event`` and the RFC 4733
receiver; the audio is checked with numpy's FFT against the G.711 digital milliwatt.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.codecs.g711 import ulaw_decode
from bridge.media.inband_dtmf import InbandDtmfDetector
from bridge.rtp.dtmf import DigitReceived, Rfc4733Receiver, parse_event
from bridge.rtp.packet import RtpPacket, build_rtp, parse_rtp
from tests.interop.audio import (
    HeardAudio,
    assert_hears,
    from_capture,
    measure,
    onset,
    tone_levels,
)
from tests.interop.capture import CapturedRtp, LoopbackCapture, require_capture, udp_port_filter
from tests.interop.pcapgen import (
    DTMF_FREQS,
    PCAP_EPOCH,
    CallStream,
    DigitAt,
    RtpOut,
    build_stream,
    dbm0_peak,
    digits_at,
    frame,
    tone_pcm,
    write_pcap,
    write_stream_pcap,
)


def read_pcap(path: Path) -> list[tuple[float, RtpPacket]]:
    """(pcap time, RTP packet) of every frame, checking the Ethernet/IPv4/UDP framing."""
    out = []
    with path.open("rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        for ts, frame in reader:
            eth = dpkt.ethernet.Ethernet(frame)
            assert eth.type == dpkt.ethernet.ETH_TYPE_IP
            ip = eth.data
            assert isinstance(ip, dpkt.ip.IP) and ip.p == dpkt.ip.IP_PROTO_UDP
            assert ip.len == len(bytes(ip))
            udp = ip.data
            assert udp.ulen == 8 + len(udp.data)
            out.append((float(ts), parse_rtp(bytes(udp.data))))
    return out


def test_dbm0_reference_is_the_digital_milliwatt() -> None:
    # G.711: the milliwatt sequence decodes to a sine of peak ~22 650 (0 dBm0); 3.17 dB
    # above it is the mu-law overload point (14-bit peak 8159 * 4).
    assert dbm0_peak(0.0) == pytest.approx(22651, abs=2)
    assert dbm0_peak(3.17) == pytest.approx(8159 * 4, rel=0.003)
    assert dbm0_peak(-20.0) == pytest.approx(2265.1, abs=0.3)


def test_audio_only_stream_round_trips_through_dpkt(tmp_path: Path) -> None:
    spec = CallStream(seconds=2.0, tone_hz=1000.0, tone_dbm0=-16.0)
    write_stream_pcap(tmp_path / "a.pcap", spec)
    packets = read_pcap(tmp_path / "a.pcap")
    assert len(packets) == 100
    times = np.array([t for t, _ in packets]) - PCAP_EPOCH
    assert np.allclose(np.diff(times), 0.02, atol=2e-6) and times[0] == pytest.approx(0.0)
    rtp = [p for _, p in packets]
    assert {p.payload_type for p in rtp} == {0} and {p.ssrc for p in rtp} == {spec.ssrc}
    assert [p.sequence for p in rtp] == list(range(1000, 1100))
    assert [p.timestamp for p in rtp] == [160_000 + 160 * i for i in range(100)]
    assert [p.marker for p in rtp] == [True] + [False] * 99
    pcm = np.concatenate([ulaw_decode(p.payload) for p in rtp]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert np.argmax(spectrum) * 8000 / pcm.size == pytest.approx(1000.0, abs=1)
    rms_dbm0 = 20 * np.log10(np.sqrt(np.mean(pcm**2)) * np.sqrt(2) / 22651)
    assert rms_dbm0 == pytest.approx(-16.0, abs=0.3)


@pytest.mark.parametrize("event_pt", [101, 96])
def test_rfc4733_digits_in_the_pcap(tmp_path: Path, event_pt: int) -> None:
    keys = digits_at("2", 1.0) + digits_at("48151623#", 2.0)
    spec = CallStream(seconds=6.0, tone_hz=440.0, digits=keys, event_pt=event_pt)
    write_stream_pcap(tmp_path / "d.pcap", spec)
    packets = read_pcap(tmp_path / "d.pcap")
    rtp = [p for _, p in packets]
    # one packet per 20 ms slot, one sequence space and one SSRC for audio and events
    assert [p.sequence for p in rtp] == list(range(1000, 1000 + 300))
    assert {p.ssrc for p in rtp} == {spec.ssrc}
    assert {p.payload_type for p in rtp} == {0, event_pt}
    events = [(t - PCAP_EPOCH, p) for t, p in packets if p.payload_type == event_pt]
    by_ts: dict[int, list[tuple[float, RtpPacket]]] = {}
    for item in events:
        by_ts.setdefault(item[1].timestamp, []).append(item)
    assert len(by_ts) == 10
    for key, (ts, group) in zip(keys, sorted(by_ts.items()), strict=True):
        decoded = [parse_event(p.payload) for _, p in group]
        assert {e.digit for e in decoded} == {key.digit}
        assert ts == 160_000 + round(key.at * 50) * 160  # the timestamp of the first frame
        assert group[0][0] == pytest.approx(key.at)
        assert [p.marker for _, p in group] == [True] + [False] * (len(group) - 1)
        # 100 ms: durations 160..800 every 20 ms, then the end three times
        assert [e.duration for e in decoded] == [160, 320, 480, 640, 800, 800, 800, 800]
        assert [e.end for e in decoded] == [False] * 5 + [True] * 3
        assert {e.volume for e in decoded} == {10}
    # audio resumes after each event on the running timestamp
    audio = [p for p in rtp if p.payload_type == 0]
    assert all((p.timestamp - 160_000) == 160 * (p.sequence - 1000) for p in audio)
    assert audio[-1].sequence == 1299
    # and the bridge's own RFC 4733 receiver sees exactly the digits
    receiver = Rfc4733Receiver()
    got: list[str] = []
    for at, p in events:
        for event in receiver.receive(marker=p.marker, timestamp=p.timestamp,
                                      sequence=p.sequence, payload=p.payload, now=at):
            if isinstance(event, DigitReceived):
                got.append(event.digit)
    assert "".join(got) == "248151623#"


@settings(max_examples=100, deadline=None)
@given(payloads=st.lists(st.binary(min_size=0, max_size=400), min_size=1, max_size=20))
def test_fast_pcap_writer_matches_dpkt_frame_by_frame(payloads: list[bytes]) -> None:
    """Headers reused per length, checksums patched: the same bytes as dpkt building every
    frame (IPv4 header checksum, UDP checksum over the pseudo-header), odd lengths too."""
    path = Path(f"/tmp/e2e-pcap-{os.getpid()}.pcap")
    src, dst = ("127.0.0.1", 40000), ("127.0.0.2", 50002)
    try:
        write_pcap(path, [RtpOut(i * 0.02, p) for i, p in enumerate(payloads)], src=src,
                   dst=dst)
        with path.open("rb") as handle:
            frames = [bytes(f) for _, f in dpkt.pcap.Reader(handle)]
    finally:
        path.unlink(missing_ok=True)
    assert frames == [frame(p, src, dst) for p in payloads]
    for raw in frames:
        udp = dpkt.ethernet.Ethernet(raw).data.data
        assert udp.sum != 0  # a checksum is always present


def test_overlapping_key_presses_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        build_stream(CallStream(seconds=2.0, digits=(DigitAt(digit="1", at=0.5),
                                                     DigitAt(digit="2", at=0.6))))
    with pytest.raises(ValueError):
        DigitAt(digit="x", at=0.0)


def test_inband_digits_are_q23_pairs_at_minus_10_dbm0(tmp_path: Path) -> None:
    keys = digits_at("3", 0.5) + digits_at("9517#", 1.5)
    spec = CallStream(seconds=4.0, tone_hz=1700.0, tone_from=3.0, digits=keys, inband=True)
    write_stream_pcap(tmp_path / "i.pcap", spec)
    rtp = [p for _, p in read_pcap(tmp_path / "i.pcap")]
    assert {p.payload_type for p in rtp} == {0}
    pcm = np.concatenate([ulaw_decode(p.payload) for p in rtp]).astype(np.float64)
    for key in keys:
        piece = pcm[round(key.at * 8000) : round((key.at + 0.1) * 8000)]
        # zero-padded to 1 Hz bins: the Q.23 frequencies fall on bins, no scalloping loss
        spectrum = np.abs(np.fft.rfft(piece, n=8000)) * 2 / piece.size
        freqs = np.fft.rfftfreq(8000, 1 / 8000)
        low, high = DTMF_FREQS[key.digit]
        for f in (low, high):
            level = 20 * np.log10(spectrum[round(f)] / 22651)
            assert level == pytest.approx(-10.0, abs=0.3)
        # nothing else within 30 dB (Hann window: its side lobes are below -31 dB)
        smooth = np.abs(np.fft.rfft(piece * np.hanning(piece.size), n=8000))
        elsewhere = (np.abs(freqs - low) > 30) & (np.abs(freqs - high) > 30)
        assert np.max(smooth[elsewhere]) < smooth[round(low)] / 10**1.5
        gap = pcm[round((key.at + 0.1) * 8000) + 8 : round((key.at + 0.2) * 8000) - 8]
        assert np.max(np.abs(gap)) < 10  # 100 ms off is silence
    assert np.max(np.abs(pcm[: round(0.5 * 8000)])) < 10  # silent before the tone starts
    # the bridge's in-band detector, fed frame by frame, finds exactly the keys
    detector = InbandDtmfDetector()
    found: list[str] = []
    for i in range(pcm.size // 160):
        frame = pcm[i * 160 : (i + 1) * 160].astype(np.int16)
        found += [d.digit for d in detector.detect(frame, (i + 1) * 0.02)]
    assert "".join(found) == "39517#"


def test_tone_levels_measure_each_frequency() -> None:
    pcm = (tone_pcm(440.0, 1.0, -20.0).astype(np.int32)
           + tone_pcm(1000.0, 1.0, -30.0)).astype(np.int16)
    levels = tone_levels(pcm, [440.0, 1000.0, 1700.0])
    assert levels.shape == (10, 3)
    assert np.allclose(levels[:, 0], -20.0, atol=0.2)
    assert np.allclose(levels[:, 1], -30.0, atol=0.2)
    assert np.all(levels[:, 2] < -70.0)


def _heard(parts: dict[float, float], seconds: float = 4.0) -> HeardAudio:
    pcm = np.zeros(round(seconds * 8000), dtype=np.int32)
    for freq, dbm0 in parts.items():
        pcm += tone_pcm(freq, seconds, dbm0)
    return HeardAudio(pcm.astype(np.int16), 100.0, "test")


def test_assert_hears_accepts_the_others_and_rejects_an_echo_of_oneself() -> None:
    others = {"A": 440.0, "B": 1000.0}
    me = {"C": 1700.0}
    report = assert_hears(_heard({440.0: -20, 1000.0: -22}), hears=others, not_hears=me,
                          start=100.5, end=104.0)
    assert report.median_dbm0["A"] == pytest.approx(-20, abs=0.3)
    assert report.seconds == pytest.approx(3.5)
    with pytest.raises(AssertionError, match="hears C"):
        assert_hears(_heard({440.0: -20, 1000.0: -22, 1700.0: -40}), hears=others,
                     not_hears=me, start=100.5, end=104.0)
    with pytest.raises(AssertionError, match="does not hear B"):
        assert_hears(_heard({440.0: -20}), hears=others, not_hears=me, start=100.5, end=104.0)
    with pytest.raises(AssertionError, match=r"only 0\.5 s"):
        assert_hears(_heard({440.0: -20, 1000.0: -22}), hears=others, not_hears=me,
                     start=103.5, end=110.0)


def test_measure_counts_the_windows_a_tone_is_present() -> None:
    pcm = np.concatenate([tone_pcm(440.0, 1.0, -20.0), np.zeros(3 * 8000, dtype=np.int16)])
    report = measure(HeardAudio(pcm, 0.0), {"A": 440.0}, 0.0, 4.0)
    assert report.present_fraction["A"] == pytest.approx(0.25)


def test_onset_finds_where_a_tone_starts() -> None:
    pcm = np.concatenate([tone_pcm(1000.0, 1.0, -20.0), np.zeros(8000, dtype=np.int16),
                          tone_pcm(440.0, 0.15, -20.0), np.zeros(4000, dtype=np.int16),
                          tone_pcm(440.0, 1.0, -20.0)])
    heard = HeardAudio(pcm, 50.0)
    assert onset(heard, 1000.0) == pytest.approx(50.0)
    # a 150 ms blip is not an onset; the tone from 2.65 s is (first full window 2.7 s)
    assert onset(heard, 440.0) == pytest.approx(52.7, abs=0.11)
    assert onset(heard, 1000.0, after=51.0) is None
    assert onset(heard, 1700.0) is None


def _captured(seq: int, ts: int, arrival: float, *, ssrc: int = 7, pt: int = 0,
              fill: int = 0x00) -> CapturedRtp:
    packet = parse_rtp(build_rtp(payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc,
                                 payload=bytes([fill]) * 160))
    return CapturedRtp(arrival, ("127.0.0.1", 1), ("127.0.0.1", 2), packet)


def test_from_capture_places_frames_by_timestamp_and_leaves_gaps_silent() -> None:
    packets = [
        _captured(1, 2**32 - 160, 10.0),  # timestamps wrap
        _captured(2, 0, 10.02),
        _captured(3, 320, 10.06),  # one frame lost
        _captured(4, 320, 10.06, pt=101),  # not audio
        _captured(1, 5000, 10.10, ssrc=8),  # new source starts where it arrived
    ]
    heard = from_capture(packets, label="x")
    loud = ulaw_decode(b"\x00")[0]
    assert heard.start == 10.0 and heard.label == "x"
    assert heard.pcm.size == 5 * 160 + 160
    assert np.all(heard.pcm[:320] == loud) and np.all(heard.pcm[320:480] == 0)
    assert np.all(heard.pcm[480:640] == loud) and np.all(heard.pcm[800:960] == loud)
    assert from_capture([]).pcm.size == 0


@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=0, max_size=300))
def test_from_capture_survives_any_payload(data: bytes) -> None:
    """Wire bytes of any length decode (odd lengths included) without an error."""
    packet = parse_rtp(build_rtp(payload_type=0, sequence=1, timestamp=0, ssrc=1, payload=data))
    heard = from_capture([CapturedRtp(1.0, ("a", 1), ("b", 2), packet)])
    assert heard.pcm.size == len(data)


def test_bpf_program_shape() -> None:
    program = udp_port_filter([5004, 5000, 5004])
    assert len(program) == 6 + 2 + 2
    assert [k for code, _, _, k in program if code == 0x15][1:] == [5000, 5004]
    with pytest.raises(ValueError):
        udp_port_filter([])


def test_loopback_capture_sees_only_the_watched_port() -> None:
    require_capture()
    tx_port = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        other.bind(("127.0.0.1", 0))
        tx.bind(("127.0.0.1", 0))
        port, other_port = rx.getsockname()[1], other.getsockname()[1]
        tx_port = tx.getsockname()[1]
        capture = LoopbackCapture([port])
        with capture:
            before = time.monotonic()
            for i in range(20):
                packet = build_rtp(payload_type=0, sequence=i, timestamp=160 * i, ssrc=99,
                                   payload=bytes([i]) * 160)
                tx.sendto(packet, ("127.0.0.1", port))
                tx.sendto(packet, ("127.0.0.1", other_port))
                tx.sendto(b"\x80\xc8" + bytes(26), ("127.0.0.1", port))  # RTCP SR: skipped
            deadline = time.monotonic() + 5
            while len(capture.packets()) < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            after = time.monotonic()
    # Other programs on the shared loopback may hit the same port by chance: judge only what
    # came from our sender.
    got = [p for p in capture.packets(port) if p.src == ("127.0.0.1", tx_port)]
    assert [p.packet.sequence for p in got] == list(range(20))
    assert [p.packet.payload[0] for p in got] == list(range(20))
    assert {p.dst for p in got} == {("127.0.0.1", port)}
    assert all(before - 0.01 <= p.arrival <= after + 0.01 for p in got)
    assert capture.packets(other_port) == []
    assert capture.dropped_by_kernel == 0
    assert capture.passed_filter >= 40  # RTP + RTCP to the port (both copies on old kernels)
