#!/usr/bin/env python3
"""Regenerate the IVR prompts from ivr_prompts/manifest.toml with espeak-ng and sox.

    python ivr_prompts/generate.py            # (re)generate everything, write changed files only
    python ivr_prompts/generate.py --check    # verify every manifest entry has a valid file
    python ivr_prompts/generate.py --only de  # one language (plus the shared prompts)

Pipeline per file: espeak-ng (22.05 kHz) -> sox ``highpass 100 rate -v 8000`` (no dither, so the
output is bit-for-bit reproducible) -> bridge.media.wavimport.condition (active level -20 dBFS,
peak limiter at -3 dBFS, silence trimmed to 100 ms) -> 8 kHz mono 16-bit PCM WAV.

Outputs (under bridge/prompts/, package data of the wheel): <lang>/<prompt_id>.wav,
<lang>/numbers/<n>.wav and shared/<id>.wav (multilingual prompts such as the language menu, each
part in its own voice). Standard library + numpy only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "bridge" / "prompts"  # where the package finds them (importlib.resources)
sys.path.insert(0, str(HERE.parent))

from bridge.media.wavimport import (  # noqa: E402
    LevelTarget,
    WavImportError,
    condition,
    decode_wav,
    encode_wav,
    to_int16,
)

RATE = 8000


@dataclass(frozen=True, slots=True)
class Voice:
    name: str
    speed: int
    pitch: int


@dataclass(frozen=True, slots=True)
class Job:
    out: Path
    parts: tuple[tuple[Voice, str], ...]
    gap_s: float = 0.0
    keep_silence_s: float | None = None  # overrides the manifest's [format] value


def load_manifest(root: Path) -> dict[str, Any]:
    with (root / "manifest.toml").open("rb") as fh:
        return tomllib.load(fh)


def build_jobs(root: Path, manifest: dict[str, Any], langs: list[str]) -> list[Job]:
    """The files to make under ``root`` (the output directory)."""
    voices = {
        lang: Voice(str(v["voice"]), int(v["speed"]), int(v["pitch"]))
        for lang, v in manifest["voices"].items()
    }
    jobs: list[Job] = []
    for pid, texts in manifest["prompts"].items():
        for lang in langs:
            text = str(texts.get(f"say_{lang}", texts[lang]))
            jobs.append(Job(root / lang / f"{pid}.wav", ((voices[lang], text),)))
    nums = manifest["numbers"]
    keep = float(nums["keep_silence_s"]) if "keep_silence_s" in nums else None
    for lang in langs:
        for n in range(int(nums["first"]), int(nums["last"]) + 1):
            out = root / lang / "numbers" / f"{n}.wav"
            jobs.append(Job(out, ((voices[lang], str(n)),), keep_silence_s=keep))
    for sid, spec in manifest.get("shared", {}).items():
        parts = tuple((voices[p["lang"]], str(p["text"])) for p in spec["parts"])
        jobs.append(Job(root / "shared" / f"{sid}.wav", parts, float(spec.get("gap_s", 0.3))))
    return jobs


def synthesise(voice: Voice, text: str, tmp: Path) -> np.ndarray[Any, np.dtype[np.float64]]:
    raw, tele = tmp / "raw.wav", tmp / "tele.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch),
         "-w", str(raw), text],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["sox", "-D", str(raw), "-b", "16", "-c", "1", str(tele),
         "highpass", "100", "rate", "-v", str(RATE)],
        check=True,
        capture_output=True,
    )
    decoded = decode_wav(tele.read_bytes())
    if decoded.rate != RATE:
        raise RuntimeError(f"sox produced {decoded.rate} Hz")
    mono: np.ndarray[Any, np.dtype[np.float64]] = decoded.samples.mean(axis=1)
    return mono


def render(job: Job, target: LevelTarget) -> bytes:
    if job.keep_silence_s is not None:
        target = replace(target, keep_silence_s=job.keep_silence_s)
    with tempfile.TemporaryDirectory(prefix="ivrgen") as td:
        pieces = []
        for i, (voice, text) in enumerate(job.parts):
            sub = Path(td) / str(i)
            sub.mkdir()
            y, _ = condition(synthesise(voice, text, sub), RATE, target)
            pieces.append(y)
    if len(pieces) > 1:
        gap = np.zeros(max(0, round(job.gap_s * RATE) - 2 * round(target.keep_silence_s * RATE)))
        joined = [pieces[0]]
        for p in pieces[1:]:
            joined += [gap, p]
        audio, _ = condition(np.concatenate(joined), RATE, target)
    else:
        audio = pieces[0]
    return encode_wav(to_int16(audio), RATE)


def generate(source: Path, root: Path, langs: list[str], jobs_n: int) -> int:
    manifest = load_manifest(source)
    fmt = manifest["format"]
    target = LevelTarget(
        rms_dbfs=float(fmt["rms_dbfs"]),
        peak_dbfs=float(fmt["peak_dbfs"]),
        keep_silence_s=float(fmt["keep_silence_s"]),
    )
    jobs = build_jobs(root, manifest, langs)

    def run(job: Job) -> bool:
        data = render(job, target)
        job.out.parent.mkdir(parents=True, exist_ok=True)
        if job.out.exists() and job.out.read_bytes() == data:
            return False
        job.out.write_bytes(data)
        return True

    with ThreadPoolExecutor(max_workers=jobs_n) as pool:
        changed = sum(pool.map(run, jobs))
    total = sum(j.out.stat().st_size for j in jobs)
    print(f"{len(jobs)} prompts, {changed} changed, {total / 1e6:.2f} MB")
    return 0


def check(source: Path, root: Path, langs: list[str]) -> int:
    manifest = load_manifest(source)
    jobs = build_jobs(root, manifest, langs)
    problems = 0
    for job in jobs:
        rel = job.out.relative_to(root)
        if not job.out.is_file():
            print(f"missing: {rel}")
            problems += 1
            continue
        try:
            wav = decode_wav(job.out.read_bytes())
        except WavImportError as exc:
            print(f"invalid: {rel}: {exc}")
            problems += 1
            continue
        if (wav.rate, wav.channels, wav.bits, wav.encoding) != (RATE, 1, 16, "pcm"):
            print(f"wrong format: {rel}: {wav.rate} Hz, {wav.channels} ch, {wav.bits} bit")
            problems += 1
    expected = {j.out for j in jobs}
    for wav_path in sorted(root.rglob("*.wav")):
        if wav_path not in expected and wav_path.parent.name != "tmp":
            print(f"not in manifest (stray): {wav_path.relative_to(root)}")
    total = sum(j.out.stat().st_size for j in jobs if j.out.is_file())
    print(f"{len(jobs)} entries checked, {problems} problem(s), {total / 1e6:.2f} MB")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--check", action="store_true", help="verify files, generate nothing")
    ap.add_argument("--only", action="append", metavar="LANG", help="restrict to a language")
    ap.add_argument("--jobs", type=int, default=4, help="parallel synthesis jobs")
    ap.add_argument("--root", type=Path, default=HERE, help="directory of manifest.toml")
    ap.add_argument("--out", type=Path, default=OUT, help="output directory (bridge/prompts)")
    args = ap.parse_args(argv)
    source: Path = args.root.resolve()
    out: Path = args.out.resolve()
    langs = sorted(load_manifest(source)["voices"])
    if args.only:
        langs = [lang for lang in langs if lang in args.only]
    if args.check:
        return check(source, out, langs)
    return generate(source, out, langs, max(1, args.jobs))


if __name__ == "__main__":
    sys.exit(main())
