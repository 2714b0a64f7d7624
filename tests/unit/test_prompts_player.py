"""PromptLibrary loading/validation and PromptPlayer frame accounting."""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.media.prompts import (
    PromptFormatError,
    PromptLibrary,
    PromptNotFoundError,
    PromptPlayer,
)
from bridge.runtime.prompt_files import (
    PLAYABLE_PROMPTS,
    load_clip,
    load_prompts,
    missing_prompts,
    packaged_prompts,
)


def _write(
    path: Path, samples: npt.NDArray[Any], rate: int = 8000, channels: int = 1, width: int = 2
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def _ramp(n: int, start: int = 1) -> npt.NDArray[np.int16]:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


@pytest.fixture
def lib(tmp_path: Path) -> PromptLibrary:
    _write(tmp_path / "en" / "welcome.wav", _ramp(500))
    _write(tmp_path / "de" / "welcome.wav", _ramp(300, 7))
    _write(tmp_path / "shared" / "choose_language.wav", _ramp(200, 3))
    for lang in ("en", "de"):
        for n in range(101):
            _write(tmp_path / lang / "numbers" / f"{n}.wav", np.full(10 + n, n, np.int16))
    for pid in ("there_are", "participants", "there_is_one", "first_participant",
                "only_participant", "many_participants"):  # fmt: skip
        _write(tmp_path / "en" / f"{pid}.wav", np.full(50, len(pid), np.int16))
    (tmp_path / "en" / "notes.txt").write_text("not a prompt")  # ignored
    return load_prompts(tmp_path)


@pytest.fixture
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    _write(root / "stereo.wav", np.zeros(20, np.int16), channels=2)
    _write(root / "wideband.wav", np.zeros(20, np.int16), rate=16000)
    _write(root / "eightbit.wav", np.zeros(20, np.uint8), width=1)
    (root / "garbage.wav").write_bytes(b"this is not audio at all")
    return root


# --------------------------------------------------------------------------- library


def test_the_packaged_prompts_are_package_data() -> None:
    root = packaged_prompts()
    assert root.is_dir() and (root / "en" / "welcome.wav").is_file()
    assert not (root / "manifest.toml").is_file()  # the source stays in ivr_prompts/
    assert load_prompts().languages == ("de", "en", "fr")


def test_get_loads_samples_exactly(lib: PromptLibrary) -> None:
    clip = lib.get("en", "welcome")
    assert clip.dtype == np.int16
    assert np.array_equal(clip, _ramp(500))
    assert lib.get("en", "welcome") is clip  # one decoded clip, shared
    assert not clip.flags.writeable
    assert np.array_equal(lib.get("de", "welcome"), _ramp(300, 7))


def test_shared_fallback_and_languages(lib: PromptLibrary) -> None:
    assert np.array_equal(lib.get("de", "choose_language"), _ramp(200, 3))
    assert lib.get("en", "choose_language") is lib.get("de", "choose_language")
    assert lib.languages == ("de", "en")
    assert lib.has("en", "welcome") and not lib.has("fr", "welcome")


@pytest.mark.parametrize(
    ("lang", "pid"),
    [("fr", "welcome"), ("en", "nope"), ("../en", "welcome"), ("en", "../de/welcome"), ("EN", "x")],
)
def test_missing_or_unsafe_names(lib: PromptLibrary, lang: str, pid: str) -> None:
    with pytest.raises(PromptNotFoundError):
        lib.get(lang, pid)


@pytest.mark.parametrize("pid", ["stereo", "wideband", "eightbit", "garbage"])
def test_wrong_format_is_a_clear_error(bad: Path, pid: str) -> None:
    with pytest.raises(PromptFormatError, match=pid):
        load_clip(bad / f"{pid}.wav")


def test_a_bad_file_fails_the_whole_load(bad: Path) -> None:
    (bad / "en").mkdir()
    (bad / "stereo.wav").rename(bad / "en" / "stereo.wav")
    with pytest.raises(PromptFormatError, match="stereo"):
        load_prompts(bad)


def test_load_clip_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PromptNotFoundError):
        load_clip(tmp_path / "absent.wav")


def test_numbers_and_sequence(lib: PromptLibrary) -> None:
    assert np.array_equal(lib.number("en", 42), np.full(52, 42, np.int16))
    for bad in (-1, 101):
        with pytest.raises(PromptNotFoundError):
            lib.number("en", bad)
    seq = lib.sequence("en", "there_are", 7, "participants")
    assert [c.shape[0] for c in seq] == [50, 17, 50]
    assert seq[1][0] == 7


@pytest.mark.parametrize(
    ("others", "joining", "expected"),
    [
        (0, True, ["first_participant"]),
        (0, False, ["only_participant"]),
        (1, True, ["there_is_one"]),
        (2, True, ["there_are", 2, "participants"]),
        (100, False, ["there_are", 100, "participants"]),
        (101, True, ["many_participants"]),
    ],
)
def test_participant_count(
    lib: PromptLibrary, others: int, joining: bool, expected: list[str | int]
) -> None:
    got = lib.participant_count("en", others, joining=joining)
    want = lib.sequence("en", *expected)
    assert len(got) == len(want)
    assert all(g is w for g, w in zip(got, want, strict=True))


def test_missing_names_what_a_language_lacks(lib: PromptLibrary, tmp_path: Path) -> None:
    assert lib.missing(["en", "de"], ["welcome", "choose_language"]) == []
    assert lib.missing(["de"], ["there_are"]) == ["de/there_are"]
    assert lib.missing(["fr"], [])[:2] == ["fr/numbers/0", "fr/numbers/1"]
    (tmp_path / "en" / "numbers" / "7.wav").unlink()
    assert load_prompts(tmp_path).missing(["en"], []) == ["en/numbers/7"]
    assert len(missing_prompts(lib)) > len(PLAYABLE_PROMPTS)
    nothing = load_prompts(tmp_path / "absent")  # a directory that is not there: nothing
    assert len(missing_prompts(nothing)) == 3 * (len(PLAYABLE_PROMPTS) + 101)
    assert len(PromptLibrary()) == 0


def test_real_library_count_sequence() -> None:
    real = load_prompts()
    clips = real.participant_count("fr", 5)
    assert [c.shape[0] for c in clips] == [
        real.get("fr", "there_are").shape[0],
        real.number("fr", 5).shape[0],
        real.get("fr", "participants").shape[0],
    ]
    assert len(real.help("de", moderator=True)) == 1


# --------------------------------------------------------------------------- player


def _drain(player: PromptPlayer, limit: int = 100_000) -> list[npt.NDArray[np.int16]]:
    frames = []
    while (f := player.next_frame()) is not None:
        frames.append(f.copy())
        assert len(frames) < limit
    return frames


def test_idle_player_returns_none() -> None:
    p = PromptPlayer()
    assert p.done and p.next_frame() is None and p.finished_count == 0


def test_exact_frames_and_zero_padded_tail() -> None:
    p = PromptPlayer()
    clip = _ramp(500)
    ticket = p.enqueue(clip)
    assert ticket == 1 and not p.done
    frames = _drain(p)
    assert len(frames) == 4  # ceil(500/160)
    assert all(f.shape == (160,) and f.dtype == np.int16 for f in frames)
    joined = np.concatenate(frames)
    assert np.array_equal(joined[:500], clip)
    assert not joined[500:].any()
    assert p.finished_count == 1 and p.done


def test_clips_are_not_merged_and_finish_in_the_call_of_their_last_frame() -> None:
    p = PromptPlayer()
    t1 = p.enqueue(_ramp(170))
    t2 = p.enqueue(_ramp(160, 5))
    f = p.next_frame()
    assert f is not None and p.finished_count < t1
    f = p.next_frame()  # 10 samples + padding
    assert f is not None and f[9] == 170 and not f[10:].any()
    assert p.finished_count == t1 < t2
    f = p.next_frame()
    assert f is not None and f[0] == 5 and f[-1] == 164
    assert p.finished_count == t2 and p.done
    assert p.next_frame() is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1000), max_size=8))
def test_frame_accounting_property(lengths: list[int]) -> None:
    p = PromptPlayer()
    clips = [_ramp(n, 1 + i) for i, n in enumerate(lengths)]
    ticket = p.enqueue_all(clips)
    assert ticket == len(lengths)
    frames = _drain(p)
    assert len(frames) == sum(math.ceil(n / 160) for n in lengths)
    expected = np.concatenate(
        [np.concatenate([c, np.zeros(-len(c) % 160, np.int16)]) for c in clips] or [np.zeros(0)]
    )
    assert np.array_equal(np.concatenate(frames or [np.zeros(0, np.int16)]), expected)
    assert p.finished_count == len(lengths) and p.done


def test_stop_is_barge_in() -> None:
    p = PromptPlayer()
    p.enqueue(_ramp(1000))
    last = p.enqueue(_ramp(1000))
    assert p.next_frame() is not None
    assert p.stop() == 2
    assert p.finished_count == last and p.done
    assert p.next_frame() is None
    nxt = p.enqueue(_ramp(10, 9))
    assert nxt == 3
    f = p.next_frame()
    assert f is not None and f[0] == 9  # starts from the beginning of the new clip


@pytest.mark.parametrize("length", [1, 100, 160, 333, 8000])
def test_loop_wraps_seamlessly(length: int) -> None:
    p = PromptPlayer()
    clip = _ramp(length, 11)
    ticket = p.enqueue(clip, loop=True)
    assert p.looping
    frames = []
    for _ in range(60):
        f = p.next_frame()  # valid until the next call: copy it
        assert f is not None
        frames.append(f.copy())
    got = np.concatenate(frames)
    assert got.shape == (60 * 160,)
    expected = np.resize(clip, 60 * 160)  # np.resize repeats the clip cyclically
    assert np.array_equal(got, expected)
    assert p.finished_count < ticket and not p.done


def test_skip_ends_loop_and_continues_with_queue() -> None:
    p = PromptPlayer()
    hold = p.enqueue(_ramp(400), loop=True)
    after = p.enqueue(_ramp(160, 77))
    for _ in range(10):
        assert p.next_frame() is not None
    assert p.skip()
    assert p.finished_count == hold < after
    f = p.next_frame()
    assert f is not None and f[0] == 77
    assert p.finished_count == after and p.done
    assert not p.skip()


def test_enqueue_rejects_bad_clips() -> None:
    p = PromptPlayer()
    with pytest.raises(ValueError):
        p.enqueue(np.zeros(10, np.float32))
    with pytest.raises(ValueError):
        p.enqueue(np.zeros(0, np.int16), loop=True)
    assert p.enqueued_count == 0
