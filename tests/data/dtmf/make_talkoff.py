"""Regenerate the DTMF talk-off fixtures in this folder (8 kHz mono 16-bit WAV).

    .venv/bin/python tests/data/dtmf/make_talkoff.py

* ``speech_en.wav``, ``speech_de.wav``, ``speech_fr.wav``: espeak-ng reading varied prose
  with male and female voice variants at several pitches and speeds, resampled with sox.
* ``music.wav``: a synthetic polyphonic piece (chords with harmonics and vibrato, a bass
  line, a melody that glides through the DTMF bands, drum-like noise bursts), made with
  numpy from a fixed seed.

Neither may make the in-band detector report a digit (ITU-T Q.24 talk-off).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).resolve().parent
RATE = 8000

TEXTS = {
    "en": (
        "Good morning and welcome to the weekly planning call. Before we start, please "
        "mute your microphone if you are not speaking, and say your name when you join. "
        "Our first topic is the budget for the third quarter: travel costs went up by "
        "twelve percent, while the hardware order of four hundred and sixty units arrived "
        "two weeks late. Can everybody hear me clearly? Thank you, Margaret. Next, the "
        "support team reports one thousand two hundred and nine tickets, of which ninety "
        "seven percent were closed within a day. Seven hundred seventy customers answered "
        "the survey; most of them asked for better documentation and shorter waiting "
        "times on the telephone line. Hmm, let me think about that for a moment. Really? "
        "Yes, absolutely! Oh no, the projector is broken again. Whose turn is it to write "
        "the minutes? Please send the slides by Friday evening, and remember that the "
        "office is closed on Monday because of the holiday. Thirteen, thirty, three "
        "hundred and thirty three, nine hundred forty one, one six three three. Anything "
        "else? Then we stop here, goodbye everyone, and have a wonderful weekend."
    ),
    "de": (
        "Guten Tag und herzlich willkommen zur Telefonkonferenz der Abteilung Vertrieb. "
        "Bitte schalten Sie Ihr Mikrofon stumm, solange Sie nicht sprechen. Zuerst "
        "besprechen wir die Zahlen des letzten Monats: Der Umsatz stieg um acht Prozent, "
        "die Kosten für Reisen und Schulungen sanken leicht. Frau Schneider, können Sie "
        "uns kurz den Stand der Ausschreibung erläutern? Ja, gerne. Wir haben "
        "siebenhundertsiebzig Angebote geprüft und zweiundfünfzig davon in die engere "
        "Wahl genommen. Die Lieferung aus Hamburg verzögert sich wegen des Streiks um "
        "ungefähr zehn Tage. Entschuldigung, ich habe Sie schlecht verstanden, könnten "
        "Sie das bitte wiederholen? Natürlich. Außerdem ziehen wir im Herbst in das neue "
        "Gebäude an der Bahnhofstraße um, die Schlüssel gibt es beim Empfang. "
        "Achthundertzweiundfünfzig, neunhunderteinundvierzig, sechzehnhundertdreiunddreißig. "
        "Gibt es noch Fragen? Dann bedanke ich mich für Ihre Aufmerksamkeit und wünsche "
        "allen einen schönen Abend. Auf Wiederhören!"
    ),
    "fr": (
        "Bonjour à toutes et à tous, et bienvenue à cette réunion téléphonique. Merci de "
        "couper votre micro lorsque vous ne parlez pas. Nous allons commencer par le "
        "bilan du trimestre : les ventes ont progressé de onze pour cent, mais les frais "
        "de transport ont fortement augmenté à cause du prix du carburant. Monsieur "
        "Dupont, pouvez-vous nous présenter le nouveau calendrier ? Oui, bien sûr. La "
        "première livraison est prévue pour le quinze mars, la deuxième pour la fin avril. "
        "Six cent quatre-vingt-dix-sept clients ont répondu à notre questionnaire, et la "
        "plupart souhaitent un service plus rapide. Pardon, je n'ai pas bien entendu, "
        "pouvez-vous répéter plus lentement ? Excusez-moi, il y a du bruit dans le train. "
        "Mille deux cent neuf, mille trois cent trente-six, mille quatre cent "
        "soixante-dix-sept. Avez-vous d'autres questions ? Très bien, je vous remercie "
        "pour votre participation, bonne soirée et à la semaine prochaine."
    ),
}

#: (voice variant, pitch 0-99, words per minute) read in turn for each language.
VOICES = (("+m3", 35, 150), ("+f3", 70, 175), ("+m1", 55, 200), ("+f5", 90, 160))


def _read_wav(path: Path) -> NDArray[np.int16]:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def _write_wav(path: Path, samples: NDArray[np.int16]) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def _chunks(text: str, n: int) -> list[str]:
    """Split ``text`` into ``n`` runs of whole sentences of similar length."""
    sentences = re.split(r"(?<=[.?!])\s+", text)
    size = -(-len(sentences) // n)
    return [" ".join(sentences[i : i + size]) for i in range(0, len(sentences), size)]


def make_speech(lang: str) -> NDArray[np.int16]:
    """The text read once, each run of sentences by the next voice of VOICES."""
    parts: list[NDArray[np.int16]] = []
    with tempfile.TemporaryDirectory() as tmp:
        chunks = _chunks(TEXTS[lang], len(VOICES))
        for i, ((variant, pitch, speed), chunk) in enumerate(zip(VOICES, chunks, strict=False)):
            raw = Path(tmp) / f"raw{i}.wav"
            out = Path(tmp) / f"out{i}.wav"
            subprocess.run(
                ["espeak-ng", "-v", lang + variant, "-p", str(pitch), "-s", str(speed),
                 "-w", str(raw), chunk],
                check=True,
            )
            subprocess.run(
                ["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True
            )
            parts.append(_read_wav(out))
    return np.concatenate(parts)


def _note(freq: float, n: int, t: NDArray[np.float64], vib: float) -> NDArray[np.float64]:
    """A note with 5 harmonics, vibrato and an attack/decay envelope."""
    phase = 2 * np.pi * freq * t + vib * np.sin(2 * np.pi * 5.5 * t)
    sig = sum(np.sin(k * phase) / k**1.2 for k in range(1, 6))
    env = np.minimum(1.0, t / 0.02) * np.exp(-t * 1.5)
    return np.asarray(sig * env, dtype=np.float64)[:n]


def make_music(seconds: float = 40.0, seed: int = 4733) -> NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    n_total = int(seconds * RATE)
    out = np.zeros(n_total)
    beat = int(0.25 * RATE)
    # I-vi-IV-V in a few keys; MIDI note numbers of the chord tones.
    progression = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62], [62, 66, 69],
                   [59, 62, 66], [64, 68, 71], [52, 55, 59]]
    pos = 0
    bar = 0
    while pos < n_total:
        chord = progression[bar % len(progression)]
        n = min(4 * beat, n_total - pos)
        t = np.arange(n) / RATE
        for midi in chord:
            f = 440.0 * 2 ** ((midi - 69 + 12 * int(rng.integers(0, 2))) / 12)
            out[pos : pos + n] += 0.12 * _note(f, n, t, vib=rng.uniform(0.5, 3.0))
        bass = 440.0 * 2 ** ((chord[0] - 69 - 24) / 12)
        out[pos : pos + n] += 0.2 * _note(bass, n, t, vib=0.2)
        for b in range(4):  # melody: one note per beat, glides through the DTMF bands
            start = pos + b * beat
            m = min(beat, n_total - start)
            if m <= 0:
                break
            tb = np.arange(m) / RATE
            f0 = 440.0 * 2 ** ((chord[b % 3] - 69 + 12 * int(rng.integers(0, 3))) / 12)
            glide = f0 * (1 + 0.06 * tb / 0.25)
            ph = 2 * np.pi * np.cumsum(glide) / RATE
            mel = np.sin(ph) + 0.5 * np.sin(2 * ph) + 0.3 * np.sin(3 * ph)
            out[start : start + m] += 0.15 * mel * np.exp(-tb * 4)
            # Drum-like bursts: kick on beats 0/2, noisy snare on 1/3.
            if b % 2 == 0:
                kick = np.sin(2 * np.pi * 60 * tb * (1 - tb)) * np.exp(-tb * 25)
                out[start : start + m] += 0.5 * kick
            else:
                snare = rng.normal(0, 1, m) * np.exp(-tb * 30)
                out[start : start + m] += 0.3 * snare
            hat = rng.normal(0, 1, m) * np.exp(-tb * 80)
            out[start : start + m] += 0.08 * np.diff(hat, prepend=0.0)
        pos += n
        bar += 1
    out *= 0.7 * 32767 / np.max(np.abs(out))
    return np.asarray(np.rint(out), dtype=np.int16)


def main() -> None:
    for lang in TEXTS:
        _write_wav(HERE / f"speech_{lang}.wav", make_speech(lang))
    _write_wav(HERE / "music.wav", make_music())


if __name__ == "__main__":
    main()
