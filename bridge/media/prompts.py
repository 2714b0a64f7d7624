"""IVR prompt library and per-target prompt player (sans-I/O: no clock, no asyncio).

Layout of a prompt directory (see ivr_prompts/README.md)::

    <root>/<lang>/<prompt_id>.wav          one per language (de, en, fr)
    <root>/<lang>/numbers/<n>.wav          spoken numbers 0..100
    <root>/shared/<prompt_id>.wav          multilingual prompts (choose_language)

Every file is 8 kHz mono 16-bit PCM (RFC 3551 section 4.5.14 L16 sampling for G.711 legs).
:class:`PromptLibrary` loads files lazily and caches them as read-only int16 arrays;
:class:`PromptPlayer` turns a queue of clips into exactly one 160-sample (20 ms, RFC 3551
section 4.5.14 default packetisation) frame per media tick.
"""

from __future__ import annotations

import re
import wave
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "Clip",
    "PromptError",
    "PromptFormatError",
    "PromptLibrary",
    "PromptNotFoundError",
    "PromptPlayer",
    "default_prompts_dir",
    "load_clip",
]

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160
SHARED_DIR: Final = "shared"
NUMBERS_DIR: Final = "numbers"
MAX_NUMBER: Final = 100

Clip = NDArray[np.int16]

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class PromptError(Exception):
    """Base class for prompt problems."""


class PromptNotFoundError(PromptError, LookupError):
    """No such prompt for that language (and no shared fallback)."""


class PromptFormatError(PromptError, ValueError):
    """A prompt file exists but is not 8 kHz mono 16-bit PCM WAV."""


def default_prompts_dir() -> Path:
    """``ivr_prompts/`` next to the ``bridge`` package (the repository root)."""
    return Path(__file__).resolve().parents[2] / "ivr_prompts"


def load_clip(path: Path) -> Clip:
    """Read an 8 kHz mono 16-bit PCM WAV file into a read-only int16 array.

    Raises :class:`PromptNotFoundError` if the file is missing and :class:`PromptFormatError`
    (naming the file and what is wrong) for any other format.
    """
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            comp = w.getcomptype()
            if (rate, channels, width, comp) != (SAMPLE_RATE, 1, 2, "NONE"):
                raise PromptFormatError(
                    f"{path}: need 8000 Hz mono 16-bit PCM, got {rate} Hz, {channels} channel(s), "
                    f"{8 * width}-bit {comp}"
                )
            raw = w.readframes(w.getnframes())
    except FileNotFoundError as exc:
        raise PromptNotFoundError(f"{path}: no such prompt file") from exc
    except (wave.Error, EOFError) as exc:
        raise PromptFormatError(f"{path}: not a valid WAV file ({exc})") from exc
    clip = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    clip.flags.writeable = False
    return clip


class PromptLibrary:
    """Lazy, caching access to the prompt WAVs under ``root``.

    ``root`` defaults to :func:`default_prompts_dir`.

    Clips are shared read-only arrays; never modify them.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._root = (root if root is not None else default_prompts_dir()).resolve()
        self._cache: dict[Path, Clip] = {}

    @property
    def root(self) -> Path:
        return self._root

    @property
    def languages(self) -> tuple[str, ...]:
        """Language folders present under the root (e.g. ``("de", "en", "fr")``)."""
        if not self._root.is_dir():
            return ()
        return tuple(
            sorted(
                p.name
                for p in self._root.iterdir()
                if p.is_dir() and p.name != SHARED_DIR and _NAME.fullmatch(p.name)
            )
        )

    def _path(self, lang: str, prompt_id: str) -> Path:
        if not _NAME.fullmatch(lang):
            raise PromptNotFoundError(f"invalid language {lang!r}")
        if not _NAME.fullmatch(prompt_id):
            raise PromptNotFoundError(f"invalid prompt id {prompt_id!r}")
        own = self._root / lang / f"{prompt_id}.wav"
        if own.is_file():
            return own
        shared = self._root / SHARED_DIR / f"{prompt_id}.wav"
        if shared.is_file():
            return shared
        raise PromptNotFoundError(f"no prompt {prompt_id!r} for language {lang!r} in {self._root}")

    def _load(self, path: Path) -> Clip:
        clip = self._cache.get(path)
        if clip is None:
            clip = load_clip(path)
            self._cache[path] = clip
        return clip

    def has(self, lang: str, prompt_id: str) -> bool:
        try:
            self._path(lang, prompt_id)
        except PromptNotFoundError:
            return False
        return True

    def get(self, lang: str, prompt_id: str) -> Clip:
        """``<lang>/<prompt_id>.wav``, else ``shared/<prompt_id>.wav``."""
        return self._load(self._path(lang, prompt_id))

    def number(self, lang: str, n: int) -> Clip:
        """The spoken number ``n`` (0..100) in ``lang``."""
        if not 0 <= n <= MAX_NUMBER:
            raise PromptNotFoundError(f"no spoken number {n} (only 0..{MAX_NUMBER})")
        if not _NAME.fullmatch(lang):
            raise PromptNotFoundError(f"invalid language {lang!r}")
        return self._load(self._root / lang / NUMBERS_DIR / f"{n}.wav")

    def sequence(self, lang: str, *items: str | int) -> list[Clip]:
        """Clips for a mix of prompt ids (``str``) and numbers (``int``), in order."""
        return [self.number(lang, i) if isinstance(i, int) else self.get(lang, i) for i in items]

    def participant_count(self, lang: str, others: int, *, joining: bool = True) -> list[Clip]:
        """Announce how many *other* participants are in the conference.

        0 -> "You are the first participant" (``joining``) or "... the only participant";
        1 -> "There is currently one other participant ...";
        2..100 -> "There are currently" N "other participants in the conference.";
        more -> "There are currently more than one hundred other participants ...".
        """
        if others < 0:
            raise ValueError(f"negative participant count {others}")
        if others == 0:
            return self.sequence(lang, "first_participant" if joining else "only_participant")
        if others == 1:
            return self.sequence(lang, "there_is_one")
        if others > MAX_NUMBER:
            return self.sequence(lang, "many_participants")
        return self.sequence(lang, "there_are", others, "participants")

    def help(self, lang: str, *, moderator: bool) -> list[Clip]:
        """The keypad help for the caller's role."""
        return self.sequence(lang, "help_moderator" if moderator else "help_participant")

    def preload(self, prompt_ids: Iterable[str], langs: Iterable[str] | None = None) -> int:
        """Load (and so validate) the given prompts and all numbers; return the clip count."""
        count = 0
        ids = list(prompt_ids)
        for lang in langs if langs is not None else self.languages:
            for pid in ids:
                self.get(lang, pid)
                count += 1
            for n in range(MAX_NUMBER + 1):
                self.number(lang, n)
                count += 1
        return count


class PromptPlayer:
    """A queue of clips for one target (a leg or a room) played as 20 ms frames.

    Call :meth:`next_frame` once per media tick: it returns exactly one ``frame``-sample int16
    frame, or ``None`` when idle. A clip of ``L`` samples yields ``ceil(L/frame)`` frames, the
    last one zero-padded; consecutive clips are not merged into one frame. A looping clip wraps
    seamlessly and plays until :meth:`skip` or :meth:`stop`.

    Completion without callbacks: :meth:`enqueue` returns a ticket; the clip has finished
    (played out, skipped or stopped) once ``finished_count >= ticket``. ``finished_count`` only
    ever grows. A clip counts as finished in the call that hands out its last frame.

    The returned frame must not be modified and is valid only until the next call.
    """

    __slots__ = (
        "_buf",
        "_enqueued",
        "_finished",
        "_frame",
        "_pos",
        "_queue",
    )

    def __init__(self, frame: int = FRAME_SAMPLES) -> None:
        if frame <= 0:
            raise ValueError("frame size must be positive")
        self._frame = frame
        self._queue: deque[tuple[Clip, bool]] = deque()
        self._pos = 0  # read position inside the head clip
        self._enqueued = 0
        self._finished = 0
        self._buf = np.zeros(frame, dtype=np.int16)

    # ------------------------------------------------------------------ queue

    def enqueue(self, clip: Clip, *, loop: bool = False) -> int:
        """Append a clip; return its ticket (see the class docstring)."""
        if clip.ndim != 1 or clip.dtype != np.int16:
            raise ValueError("a clip is a 1-D int16 array")
        if loop and clip.shape[0] == 0:
            raise ValueError("cannot loop an empty clip")
        self._queue.append((clip, loop))
        self._enqueued += 1
        return self._enqueued

    def enqueue_all(self, clips: Iterable[Clip]) -> int:
        """Append several clips; return the ticket of the last (current count if none)."""
        ticket = self._enqueued
        for clip in clips:
            ticket = self.enqueue(clip)
        return max(ticket, self._finished)

    def skip(self) -> bool:
        """End the current clip (e.g. hold music) and continue with the next; True if any."""
        if not self._queue:
            return False
        self._queue.popleft()
        self._pos = 0
        self._finished += 1
        return True

    def stop(self) -> int:
        """Barge-in: discard the current and all queued clips; return how many were discarded."""
        dropped = len(self._queue)
        self._queue.clear()
        self._pos = 0
        self._finished += dropped
        return dropped

    # ------------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        """Nothing playing and nothing queued."""
        return not self._queue

    @property
    def finished_count(self) -> int:
        return self._finished

    @property
    def enqueued_count(self) -> int:
        return self._enqueued

    @property
    def pending(self) -> int:
        """Clips not yet finished (the current one included)."""
        return len(self._queue)

    @property
    def looping(self) -> bool:
        """The current clip is a loop."""
        return bool(self._queue) and self._queue[0][1]

    # ------------------------------------------------------------------ tick

    def next_frame(self) -> Clip | None:
        """The next 20 ms frame, or ``None`` when there is nothing to play."""
        n = self._frame
        while self._queue:
            clip, loop = self._queue[0]
            size = clip.shape[0]
            pos = self._pos
            if loop:
                if pos + n <= size:
                    self._pos = (pos + n) % size
                    return clip[pos : pos + n]
                # wrap around (possibly several times for a clip shorter than a frame)
                idx = (np.arange(pos, pos + n) % size).astype(np.intp)
                np.take(clip, idx, out=self._buf)
                self._pos = (pos + n) % size
                return self._buf
            if pos >= size:  # empty clip
                self._queue.popleft()
                self._pos = 0
                self._finished += 1
                continue
            end = pos + n
            if end < size:
                self._pos = end
                return clip[pos:end]
            # last frame of this clip
            self._queue.popleft()
            self._pos = 0
            self._finished += 1
            if end == size:
                return clip[pos:end]
            tail = size - pos
            self._buf[:tail] = clip[pos:]
            self._buf[tail:] = 0
            return self._buf
        return None
