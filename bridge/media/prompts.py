"""IVR prompt library and per-target prompt player (sans-I/O: no clock, no asyncio).

Layout of a prompt directory (see ivr_prompts/README.md)::

    <root>/<lang>/<prompt_id>.wav          one per language (de, en, fr)
    <root>/<lang>/numbers/<n>.wav          spoken numbers 0..100
    <root>/shared/<prompt_id>.wav          multilingual prompts (choose_language)

Every file is 8 kHz mono 16-bit PCM (RFC 3551 section 4.5.14 L16 sampling for G.711 legs).
:class:`PromptLibrary` holds the decoded clips (read-only int16 arrays; the files are read by
the runtime's adapter :mod:`bridge.runtime.prompt_files`, the package data under
``bridge/prompts/`` by default); :class:`PromptPlayer` turns a queue of clips into exactly
one 160-sample (20 ms, RFC 3551 section 4.5.14 default packetisation) frame per media tick.
"""

from __future__ import annotations

import io
import re
import wave
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "COUNT_PROMPTS",
    "FRAME_SAMPLES",
    "HELP_PROMPTS",
    "MAX_NUMBER",
    "NUMBERS_DIR",
    "SAMPLE_RATE",
    "SHARED_DIR",
    "Clip",
    "PromptError",
    "PromptFormatError",
    "PromptLibrary",
    "PromptNotFoundError",
    "PromptPlayer",
    "count_items",
    "decode_clip",
    "prompt_key",
    "valid_name",
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


def decode_clip(data: bytes, name: str = "prompt") -> Clip:
    """Decode an 8 kHz mono 16-bit PCM WAV file's bytes into a read-only int16 array.

    Raises :class:`PromptFormatError` (naming ``name`` and what is wrong) for anything else.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            comp = w.getcomptype()
            if (rate, channels, width, comp) != (SAMPLE_RATE, 1, 2, "NONE"):
                raise PromptFormatError(
                    f"{name}: need 8000 Hz mono 16-bit PCM, got {rate} Hz, {channels} channel(s), "
                    f"{8 * width}-bit {comp}"
                )
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise PromptFormatError(f"{name}: not a valid WAV file ({exc})") from exc
    clip = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    clip.flags.writeable = False
    return clip


def prompt_key(lang: str, prompt_id: str | int) -> str:
    """The library key of a prompt (``en/welcome``) or a spoken number (``en/numbers/7``):
    its path under a prompt directory, without ``.wav``."""
    if isinstance(prompt_id, int):
        return f"{lang}/{NUMBERS_DIR}/{prompt_id}"
    return f"{lang}/{prompt_id}"


def valid_name(name: str) -> bool:
    """A language or prompt id the library accepts (lower case, digits, ``_``, ``-``)."""
    return _NAME.fullmatch(name) is not None


def count_items(others: int, *, joining: bool = True) -> tuple[str | int, ...]:
    """The prompt ids and numbers that say how many *other* participants there are (see
    :meth:`PromptLibrary.participant_count`)."""
    if others < 0:
        raise ValueError(f"negative participant count {others}")
    if others == 0:
        return ("first_participant" if joining else "only_participant",)
    if others == 1:
        return ("there_is_one",)
    if others > MAX_NUMBER:
        return ("many_participants",)
    return ("there_are", others, "participants")


class PromptLibrary:
    """The decoded prompt clips, by key (see :func:`prompt_key`; ``shared/<id>`` for the
    multilingual prompts). Reading files is the runtime's job
    (:mod:`bridge.runtime.prompt_files`); this class only picks clips.

    Clips are shared read-only arrays; never modify them.
    """

    def __init__(self, clips: Mapping[str, Clip] | None = None) -> None:
        self._clips: dict[str, Clip] = dict(clips or {})

    def __len__(self) -> int:
        return len(self._clips)

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages with at least one clip (e.g. ``("de", "en", "fr")``)."""
        return tuple(sorted({k.split("/", 1)[0] for k in self._clips} - {SHARED_DIR}))

    def _key(self, lang: str, prompt_id: str) -> str:
        if not valid_name(lang):
            raise PromptNotFoundError(f"invalid language {lang!r}")
        if not valid_name(prompt_id):
            raise PromptNotFoundError(f"invalid prompt id {prompt_id!r}")
        own = prompt_key(lang, prompt_id)
        if own in self._clips:
            return own
        shared = prompt_key(SHARED_DIR, prompt_id)
        if shared in self._clips:
            return shared
        raise PromptNotFoundError(f"no prompt {prompt_id!r} for language {lang!r}")

    def has(self, lang: str, prompt_id: str) -> bool:
        try:
            self._key(lang, prompt_id)
        except PromptNotFoundError:
            return False
        return True

    def get(self, lang: str, prompt_id: str) -> Clip:
        """``<lang>/<prompt_id>``, else ``shared/<prompt_id>``."""
        return self._clips[self._key(lang, prompt_id)]

    def number(self, lang: str, n: int) -> Clip:
        """The spoken number ``n`` (0..100) in ``lang``."""
        if not 0 <= n <= MAX_NUMBER:
            raise PromptNotFoundError(f"no spoken number {n} (only 0..{MAX_NUMBER})")
        if not valid_name(lang):
            raise PromptNotFoundError(f"invalid language {lang!r}")
        clip = self._clips.get(prompt_key(lang, n))
        if clip is None:
            raise PromptNotFoundError(f"no spoken number {n} for language {lang!r}")
        return clip

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
        return self.sequence(lang, *count_items(others, joining=joining))

    def help(self, lang: str, *, moderator: bool) -> list[Clip]:
        """The keypad help for the caller's role."""
        return self.sequence(lang, "help_moderator" if moderator else "help_participant")

    def missing(self, langs: Iterable[str], prompt_ids: Iterable[str]) -> list[str]:
        """What ``langs`` lack of ``prompt_ids`` (shared fallback allowed) and of the spoken
        numbers 0..100, as keys (``fr/welcome``, ``de/numbers/7``); empty: complete."""
        ids = sorted(set(prompt_ids))
        out: list[str] = []
        for lang in langs:
            out.extend(prompt_key(lang, pid) for pid in ids if not self.has(lang, pid))
            out.extend(prompt_key(lang, n) for n in range(MAX_NUMBER + 1)
                       if prompt_key(lang, n) not in self._clips)
        return out


#: The participant-count announcement's prompts (:meth:`PromptLibrary.participant_count`).
COUNT_PROMPTS: Final = frozenset({"first_participant", "only_participant", "there_is_one",
                                  "there_are", "participants", "many_participants"})
#: The keypad help (:meth:`PromptLibrary.help`).
HELP_PROMPTS: Final = frozenset({"help_participant", "help_moderator"})


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
