"""In-band DTMF detector (bridge.media.inband_dtmf) against ITU-T Q.23/Q.24 test signals.

Signals are two sines at the Q.23 frequencies with the stated per-tone level in dBm0 (0 dBm0 =
the G.711 digital milliwatt, peak ~22 656), white noise at a given SNR against the combined
tone power, passed through real G.711 encode/decode (bridge.codecs.g711).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from bridge.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from bridge.media.inband_dtmf import (
    DTMF_HIGH_HZ,
    DTMF_LOW_HZ,
    InbandDtmfBank,
    InbandDtmfConfig,
    InbandDtmfDetector,
    dbm0_to_amplitude,
)
from bridge.rtp.dtmf import DigitReceived

DATA = Path(__file__).resolve().parents[1] / "data" / "dtmf"
KEYPAD = ("123A", "456B", "789C", "*0#D")
ALL = "0123456789*#ABCD"
RATE = 8000


def _freqs(digit: str) -> tuple[float, float]:
    row = next(i for i, r in enumerate(KEYPAD) if digit in r)
    return DTMF_LOW_HZ[row], DTMF_HIGH_HZ[KEYPAD[row].index(digit)]


def tone(
    digit: str,
    ms: float,
    rng: np.random.Generator,
    *,
    level: float = -20.0,
    twist_db: float = 0.0,
    low_offset: float = 0.0,
    high_offset: float = 0.0,
) -> NDArray[np.float64]:
    """Dual tone; ``twist_db`` > 0 makes the high tone louder (reverse twist)."""
    fl, fh = _freqs(digit)
    t = np.arange(round(ms * RATE / 1000)) / RATE
    a = dbm0_to_amplitude(level)
    return np.asarray(
        a * np.sin(2 * np.pi * fl * (1 + low_offset) * t + rng.uniform(0, 2 * np.pi))
        + a * 10 ** (twist_db / 20) * np.sin(
            2 * np.pi * fh * (1 + high_offset) * t + rng.uniform(0, 2 * np.pi)
        )
    )


def silence(ms: float) -> NDArray[np.float64]:
    return np.zeros(round(ms * RATE / 1000))


def line(
    parts: list[NDArray[np.float64]],
    rng: np.random.Generator,
    *,
    lead: int | None = None,
    snr_db: float | None = 18.0,
    level: float = -20.0,
    law: str = "ulaw",
) -> NDArray[np.int16]:
    """Concatenate, add noise, pad to whole frames, pass through G.711."""
    lead = int(rng.integers(0, 160)) if lead is None else lead
    x = np.concatenate([np.zeros(lead + 400), *parts, np.zeros(800)])
    x = np.concatenate([x, np.zeros(-len(x) % 160)])
    if snr_db is not None:
        tone_power = 2 * dbm0_to_amplitude(level) ** 2 / 2
        x = x + rng.normal(0.0, np.sqrt(tone_power / 10 ** (snr_db / 10)), x.size)
    pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    if law == "ulaw":
        return ulaw_decode(ulaw_encode(pcm))
    return alaw_decode(alaw_encode(pcm))


def detect(
    pcm: NDArray[np.int16], config: InbandDtmfConfig | None = None
) -> list[DigitReceived]:
    det = InbandDtmfDetector(config)
    out: list[DigitReceived] = []
    for i in range(0, pcm.size, 160):
        out += det.detect(pcm[i : i + 160], (i + 160) / RATE)
    return out


def digits(pcm: NDArray[np.int16]) -> str:
    return "".join(e.digit for e in detect(pcm))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    return np.random.default_rng(abs(hash(request.node.name)) % 2**32)


def test_reference_level() -> None:
    # G.711: the mu-law full-scale sine is +3.17 dBm0 (peak 8159 << 2 = 32636 in 16 bit).
    assert dbm0_to_amplitude(3.17) == pytest.approx(32636, rel=1e-6)
    assert dbm0_to_amplitude(0.0) == pytest.approx(22656, abs=2)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_all_sixteen_digits_at_minus20_dbm0_with_noise(law: str, rng: np.random.Generator) -> None:
    for d in ALL:
        for _ in range(3):
            pcm = line([tone(d, 60, rng)], rng, snr_db=15.0, law=law)
            assert digits(pcm) == d


def test_digit_sequence_with_40ms_pauses(rng: np.random.Generator) -> None:
    parts: list[NDArray[np.float64]] = []
    for d in "0123456789*#ABCD1155":
        parts += [tone(d, 50, rng), silence(45)]
    assert digits(line(parts, rng, snr_db=18.0)) == "0123456789*#ABCD1155"


@pytest.mark.parametrize("level", [-3.0, -10.0, -25.0, -28.0])
def test_levels_detected(level: float, rng: np.random.Generator) -> None:
    for d in "159#D":
        pcm = line([tone(d, 80, rng, level=level)], rng, snr_db=18.0, level=level)
        assert digits(pcm) == d


def test_too_weak_rejected(rng: np.random.Generator) -> None:
    for d in ALL:
        pcm = line([tone(d, 200, rng, level=-40.0)], rng, snr_db=None)
        assert digits(pcm) == ""


@pytest.mark.parametrize("lead", range(0, 160, 20))
def test_40ms_accepted_20ms_rejected_at_every_alignment(
    lead: int, rng: np.random.Generator
) -> None:
    for d in ALL:
        assert digits(line([tone(d, 40, rng)], rng, lead=lead, snr_db=20.0)) == d
        assert digits(line([tone(d, 20, rng)], rng, lead=lead, snr_db=20.0)) == ""


@pytest.mark.parametrize("offset", [0.015, -0.015])
def test_frequency_offset_1_5_percent_accepted(offset: float, rng: np.random.Generator) -> None:
    for d in ALL:
        both = tone(d, 70, rng, low_offset=offset, high_offset=offset)
        assert digits(line([both], rng, snr_db=18.0)) == d
        mixed = tone(d, 70, rng, low_offset=offset, high_offset=-offset)
        assert digits(line([mixed], rng, snr_db=18.0)) == d


@pytest.mark.parametrize("offset", [0.035, -0.035])
@pytest.mark.parametrize("group", ["low", "high"])
def test_frequency_offset_3_5_percent_rejected(
    offset: float, group: str, rng: np.random.Generator
) -> None:
    for d in ALL:
        kw = {"low_offset": offset} if group == "low" else {"high_offset": offset}
        sig = tone(d, 100, rng, **kw)
        assert digits(line([sig], rng, snr_db=25.0)) == ""


@pytest.mark.parametrize(
    ("twist_db", "accepted"),
    [(-6.0, True), (-10.0, False), (3.0, True), (6.0, False)],
)
def test_twist_limits(twist_db: float, accepted: bool, rng: np.random.Generator) -> None:
    """Normal twist (low tone louder) up to 8 dB, reverse twist (high louder) up to 4 dB."""
    for d in ALL:
        pcm = line([tone(d, 80, rng, level=-15.0, twist_db=twist_db)], rng, snr_db=30.0)
        assert digits(pcm) == (d if accepted else "")


def test_single_tone_and_three_tones_rejected(rng: np.random.Generator) -> None:
    t = np.arange(800) / RATE
    a = dbm0_to_amplitude(-15.0)
    single = a * np.sin(2 * np.pi * 770 * t)
    triple = single + a * np.sin(2 * np.pi * 1336 * t) + a * np.sin(2 * np.pi * 1477 * t)
    two_low = a * np.sin(2 * np.pi * 697 * t) + a * np.sin(2 * np.pi * 852 * t)
    dial = a * np.sin(2 * np.pi * 350 * t) + a * np.sin(2 * np.pi * 440 * t)  # dial tone
    for sig in (single, triple, two_low, dial):
        assert digits(line([sig], rng, snr_db=30.0)) == ""


def test_short_dropout_is_one_press_and_pause_repeats(rng: np.random.Generator) -> None:
    dropout = [tone("7", 80, rng), silence(10), tone("7", 80, rng)]
    assert digits(line(dropout, rng)) == "7"
    paused = [tone("7", 80, rng), silence(45), tone("7", 80, rng)]
    assert digits(line(paused, rng)) == "77"
    switch = [tone("7", 80, rng), tone("8", 80, rng)]  # no pause, other digit
    assert digits(line(switch, rng)) == "78"


def test_long_tone_reported_once_with_start(rng: np.random.Generator) -> None:
    pcm = line([tone("#", 1500, rng)], rng, lead=0)
    events = detect(pcm)
    assert [e.digit for e in events] == ["#"]
    ev = events[0]
    assert ev.source == "inband"
    assert ev.start == pytest.approx(400 / RATE, abs=0.006)  # tone begins after 400 samples
    assert 25 <= ev.duration_ms <= 50  # how long the tone had lasted when recognised


def test_tone_active_follows_the_tone(rng: np.random.Generator) -> None:
    pcm = line([tone("5", 200, rng)], rng, lead=0, snr_db=20.0)
    det = InbandDtmfDetector()
    active = []
    for i in range(0, pcm.size, 160):
        det.detect(pcm[i : i + 160], i / RATE)
        active.append(det.tone_active)
    # Tone in frames 2.5 .. 12.5 (samples 400..2000); active through it, silent before.
    assert active[:2] == [False, False]
    assert all(active[4:12])
    assert not any(active[16:])


def test_reset_forgets_state(rng: np.random.Generator) -> None:
    pcm = line([tone("3", 100, rng)], rng, lead=0, snr_db=None)
    det = InbandDtmfDetector()
    frames = [pcm[i : i + 160] for i in range(0, 960, 160)]
    for i, f in enumerate(frames[:4]):  # 400..640 of tone: not yet 35 ms of it
        assert det.detect(f, i * 0.02) == []
    det.reset()
    assert not det.tone_active
    assert det.detect(frames[4], 0.1) == []  # the hits before the reset are gone


def test_batch_matches_single_leg_detectors(rng: np.random.Generator) -> None:
    legs = 6
    signals = [
        line([tone(d, 70, rng), silence(60), tone(e, 70, rng)], rng, lead=lead)
        for d, e, lead in zip("159*#0", "2AB3CD", [0, 20, 40, 60, 80, 100], strict=True)
    ]
    n = min(s.size for s in signals) // 160 * 160
    block = np.stack([s[:n] for s in signals])
    bank = InbandDtmfBank(legs)
    got: list[list[str]] = [[] for _ in range(legs)]
    for i in range(0, n, 160):
        for leg, ev in bank.detect_batch(block[:, i : i + 160], (i + 160) / RATE):
            got[leg].append(ev.digit)
    single = [[e.digit for e in detect(s[:n])] for s in signals]
    assert got == single == [list(p) for p in ["12", "5A", "9B", "*3", "#C", "0D"]]


def test_batch_rows_subset(rng: np.random.Generator) -> None:
    a = line([tone("4", 80, rng)], rng, lead=0)
    b = line([tone("6", 80, rng)], rng, lead=0)
    n = min(a.size, b.size) // 160 * 160
    bank = InbandDtmfBank(5)
    rows = np.array([1, 3], dtype=np.intp)
    got = []
    for i in range(0, n, 160):
        frames = np.stack([a[i : i + 160], b[i : i + 160]])
        got += [(leg, ev.digit) for leg, ev in bank.detect_batch(frames, i / RATE, rows)]
    assert got == [(1, "4"), (3, "6")]
    with pytest.raises(ValueError):
        bank.detect_batch(np.zeros((3, 160), dtype=np.int16), 0.0, rows)
    with pytest.raises(ValueError):
        bank.detect_batch(np.zeros((4, 160), dtype=np.int16), 0.0)


# -- talk-off ----------------------------------------------------------------------------------


def _wav(name: str) -> NDArray[np.int16]:
    with wave.open(str(DATA / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


TALKOFF = ["speech_en.wav", "speech_de.wav", "speech_fr.wav", "music.wav"]


@pytest.mark.parametrize("name", TALKOFF)
@pytest.mark.parametrize("gain_db", [0.0, -6.0, -12.0])
def test_talkoff_speech_and_music_give_no_digit(name: str, gain_db: float) -> None:
    x = _wav(name).astype(np.float64) * 10 ** (gain_db / 20)
    pcm = ulaw_decode(ulaw_encode(np.clip(np.rint(x), -32768, 32767).astype(np.int16)))
    pcm = pcm[: pcm.size // 160 * 160]
    # The fixture is real content: long and loud enough to matter.
    assert pcm.size >= 40 * RATE
    rms_dbm0 = 10 * np.log10(np.mean(pcm.astype(np.float64) ** 2) / (22656**2 / 2))
    assert rms_dbm0 > -35 + gain_db
    assert detect(pcm) == []


def test_talkoff_fixtures_total_several_minutes() -> None:
    assert sum(_wav(n).size for n in TALKOFF) / RATE >= 180


def test_tone_over_speech_still_detected(rng: np.random.Generator) -> None:
    """A digit keyed while the speaker talks on (speech 10 dB under the tones)."""
    speech = _wav("speech_en.wav")[8000:16000].astype(np.float64)
    target = 2 * dbm0_to_amplitude(-15.0) ** 2 / 2 / 10
    speech *= np.sqrt(target / np.mean(speech**2))
    sig = np.zeros(8000)
    sig[3000:3800] += tone("9", 100, rng, level=-15.0)
    mix = speech + sig
    assert digits(line([mix], rng, lead=0, snr_db=None)) == "9"

