"""Prompt files -> :class:`~bridge.media.prompts.PromptLibrary` (the adapter that reads them).

The prompts ship as package data (``bridge/prompts/<lang>/<id>.wav``, ``<lang>/numbers/<n>.wav``
and ``shared/<id>.wav``; see ``ivr_prompts/README.md``) and are read with
:mod:`importlib.resources`, so an installed wheel finds them; ``prompts_dir`` in the
configuration points elsewhere. Every file is read and decoded at once: a malformed file is an
error at start, and :func:`missing_prompts` names what the IVR could play but is not there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from bridge.conference import policy
from bridge.ivr import flows
from bridge.media.prompts import (
    NUMBERS_DIR,
    Clip,
    PromptFormatError,
    PromptLibrary,
    PromptNotFoundError,
    decode_clip,
    prompt_key,
    valid_name,
)
from bridge.media.wavimport import ImportLimits, LevelTarget, WavImportError, prepare_announcement

__all__ = [
    "PLAYABLE_PROMPTS",
    "REQUIRED_LANGUAGES",
    "ImportResult",
    "describe",
    "import_announcement",
    "load_clip",
    "load_prompts",
    "missing_prompts",
    "packaged_prompts",
]

#: The IVR's languages: every playable prompt must exist in each.
REQUIRED_LANGUAGES: Final = ("de", "en", "fr")
#: Every prompt id the dial-in script and the conference can play.
PLAYABLE_PROMPTS: Final = flows.PROMPT_IDS | policy.PROMPT_IDS


def packaged_prompts() -> Traversable:
    """The prompts inside the installed package (``bridge/prompts``)."""
    return resources.files("bridge") / "prompts"


def describe(root: Path | Traversable | None) -> str:
    """Where prompts come from, for messages."""
    return "the packaged prompts" if root is None else str(root)


def load_clip(path: Path | Traversable) -> Clip:
    """One WAV file (a room's intro, a prompt)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise PromptNotFoundError(f"{path}: no such prompt file") from exc
    except OSError as exc:
        raise PromptFormatError(f"{path}: cannot be read ({exc.strerror})") from exc
    return decode_clip(data, str(path))


def _wavs(folder: Traversable) -> Iterable[tuple[str, Traversable]]:
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        stem, dot, ext = entry.name.rpartition(".")
        if dot and ext == "wav" and entry.is_file():
            yield stem, entry


def load_prompts(root: Path | Traversable | None = None) -> PromptLibrary:
    """Every prompt under ``root`` (default: the packaged prompts), decoded.

    Raises :class:`~bridge.media.prompts.PromptFormatError` naming the first bad file. A
    missing directory gives an empty library (see :func:`missing_prompts`).
    """
    base: Traversable = packaged_prompts() if root is None else root
    clips: dict[str, Clip] = {}
    if not base.is_dir():
        return PromptLibrary()
    for lang_dir in sorted(base.iterdir(), key=lambda e: e.name):
        if not lang_dir.is_dir() or not valid_name(lang_dir.name):
            continue
        for stem, entry in _wavs(lang_dir):
            if valid_name(stem):
                clips[prompt_key(lang_dir.name, stem)] = load_clip(entry)
        for stem, entry in _wavs(lang_dir / NUMBERS_DIR):
            if stem.isdigit():
                clips[prompt_key(lang_dir.name, int(stem))] = load_clip(entry)
    return PromptLibrary(clips)


def missing_prompts(library: PromptLibrary,
                    langs: Iterable[str] = REQUIRED_LANGUAGES) -> list[str]:
    """The playable prompts (and spoken numbers) ``library`` lacks in ``langs``."""
    return library.missing(langs, PLAYABLE_PROMPTS)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What :func:`import_announcement` did."""

    dst: Path
    source_rate: int
    source_channels: int
    source_bits: int
    source_encoding: str
    samples: int
    duration_s: float
    gain_db: float
    rms_dbfs: float
    peak_dbfs: float


def import_announcement(
    src: Path,
    dst: Path,
    *,
    limits: ImportLimits | None = None,
    target: LevelTarget | None = None,
) -> ImportResult:
    """Convert the WAV file ``src`` into an 8 kHz mono 16-bit announcement at ``dst``
    (:func:`bridge.media.wavimport.prepare_announcement`). ``dst`` is replaced atomically.
    Raises :class:`WavImportError` (one-line message) for anything that is not a usable WAV
    recording."""
    lim = limits if limits is not None else ImportLimits()
    try:
        size = src.stat().st_size
        if size > lim.max_file_bytes:
            raise WavImportError(f"file too large ({size} bytes)")
        data = src.read_bytes()
    except OSError as exc:
        raise WavImportError(f"cannot read file: {exc.strerror or exc}") from exc
    made = prepare_announcement(data, limits=lim, target=target)
    tmp = dst.with_name(dst.name + ".part")
    tmp.write_bytes(made.wav)
    os.replace(tmp, dst)
    return ImportResult(
        dst=dst, source_rate=made.source_rate, source_channels=made.source_channels,
        source_bits=made.source_bits, source_encoding=made.source_encoding,
        samples=made.samples, duration_s=made.duration_s, gain_db=made.gain_db,
        rms_dbfs=made.rms_dbfs, peak_dbfs=made.peak_dbfs)
