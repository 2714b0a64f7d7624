"""The committed IVR prompt files match the manifest and the telephone format."""

from __future__ import annotations

import tomllib
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge.runtime.prompt_files import PLAYABLE_PROMPTS, load_prompts, missing_prompts

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "bridge" / "prompts"  # package data (the wheel carries it)
SOURCE = REPO / "ivr_prompts"  # manifest.toml and generate.py
LANGS = ("de", "en", "fr")
REQUIRED = {
    "welcome", "choose_language", "enter_pin", "wrong_pin", "too_many_attempts_goodbye",
    "goodbye", "conference_locked", "conference_full", "first_participant", "there_are",
    "there_is_one", "participants", "you_are_muted", "you_are_unmuted", "conference_now_locked",
    "conference_now_unlocked", "all_muted", "all_unmuted", "participant_removed",
    "you_were_removed", "conference_ended", "waiting_for_moderator", "help_participant",
    "help_moderator", "not_allowed",
}  # fmt: skip


def _manifest() -> dict[str, Any]:
    with (SOURCE / "manifest.toml").open("rb") as fh:
        return tomllib.load(fh)


MANIFEST = _manifest()
PROMPT_IDS = sorted(MANIFEST["prompts"])
SHARED_IDS = sorted(MANIFEST.get("shared", {}))


def _read(path: Path) -> tuple[int, int, int, np.ndarray[Any, np.dtype[np.int16]]]:
    with wave.open(str(path), "rb") as w:
        params = (w.getframerate(), w.getnchannels(), w.getsampwidth())
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    return (*params, data)


def _check_audio(path: Path, min_s: float, max_s: float) -> None:
    rate, channels, width, x = _read(path)
    assert (rate, channels, width) == (8000, 1, 2), path
    dur = x.shape[0] / rate
    assert min_s <= dur <= max_s, f"{path}: {dur:.2f} s"
    f = x.astype(np.float64) / 32768
    peak = float(np.abs(f).max())
    assert peak <= 10 ** (-2.9 / 20), f"{path}: peak {20 * np.log10(peak):.1f} dBFS"
    frames = f[: f.shape[0] // 160 * 160].reshape(-1, 160)
    loud = float(np.sqrt((frames**2).mean(axis=1)).max())
    assert loud > 10 ** (-30 / 20), f"{path}: too quiet"
    # silence at both ends was trimmed to ~100 ms (at most 130 ms of 10 ms frames < -50 dBFS)
    short = f[: f.shape[0] // 80 * 80].reshape(-1, 80)
    quiet = np.sqrt((short**2).mean(axis=1)) < 10 ** (-50 / 20)
    lead = int(np.argmin(quiet)) * 80 / rate
    trail = int(np.argmin(quiet[::-1])) * 80 / rate
    assert lead <= 0.13 and trail <= 0.13, f"{path}: lead {lead} trail {trail}"


def test_manifest_lists_every_required_prompt_in_every_language() -> None:
    assert not REQUIRED - set(PROMPT_IDS) - set(SHARED_IDS)
    assert not PLAYABLE_PROMPTS - set(PROMPT_IDS) - set(SHARED_IDS)
    for pid in PROMPT_IDS:
        for lang in LANGS:
            text = MANIFEST["prompts"][pid][lang]
            assert isinstance(text, str) and text.strip(), (pid, lang)
    assert (MANIFEST["numbers"]["first"], MANIFEST["numbers"]["last"]) == (0, 100)


def test_choose_language_has_one_part_per_language() -> None:
    parts = MANIFEST["shared"]["choose_language"]["parts"]
    assert [p["lang"] for p in parts] == ["de", "en", "fr"]
    assert "1" in parts[0]["text"] and "2" in parts[1]["text"] and "3" in parts[2]["text"]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("pid", PROMPT_IDS)
def test_prompt_file_is_telephone_audio(lang: str, pid: str) -> None:
    _check_audio(ROOT / lang / f"{pid}.wav", 0.4, 40.0)


@pytest.mark.parametrize("sid", SHARED_IDS)
def test_shared_prompt_file(sid: str) -> None:
    _check_audio(ROOT / "shared" / f"{sid}.wav", 2.0, 20.0)


@pytest.mark.parametrize("lang", LANGS)
def test_numbers_0_to_100_exist(lang: str) -> None:
    durations = []
    for n in range(101):
        path = ROOT / lang / "numbers" / f"{n}.wav"
        _check_audio(path, 0.2, 3.0)
        with wave.open(str(path)) as w:
            durations.append(w.getnframes())
    # longer words for bigger numbers on the whole: "seventy-seven" is longer than "one"
    assert np.mean(durations[21:100]) > np.mean(durations[1:10])


def test_help_prompts_are_the_longest_and_moderator_help_is_longer() -> None:
    lib = load_prompts(ROOT)
    for lang in LANGS:
        mod = lib.get(lang, "help_moderator").shape[0]
        part = lib.get(lang, "help_participant").shape[0]
        assert mod > part > lib.get(lang, "welcome").shape[0]


def test_languages_sound_different() -> None:
    """The same prompt in three languages is three different recordings."""
    lib = load_prompts(ROOT)
    clips = [lib.get(lang, "welcome") for lang in LANGS]
    assert len({c.tobytes() for c in clips}) == 3


def test_total_size_is_reported_and_bounded() -> None:
    total = sum(p.stat().st_size for p in ROOT.rglob("*.wav"))
    assert 1_000_000 < total < 12_000_000


def test_the_packaged_prompts_are_these_and_complete() -> None:
    packaged = load_prompts()
    assert missing_prompts(packaged) == []
    assert len(packaged) == len(list(ROOT.rglob("*.wav")))
