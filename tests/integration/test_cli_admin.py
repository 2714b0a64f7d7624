"""The administration CLI end to end: ``main(argv)`` (and ``python -m bridge``) against a real
SQLite file, checked through the store the running bridge uses."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re
import subprocess
import sys
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from bridge.cli import main
from bridge.conference.model import Language, LeaveReason, Role
from bridge.conference.pins import check_pin
from bridge.store.sqlite import SqliteStore

_T = TypeVar("_T")
PINS = re.compile(r"participant PIN: (\d+)\nmoderator PIN: +(\d+)\n")
DIAL = re.compile(r"^dial sip:(\+\d+)@([^,]+), PIN (\d+), moderator PIN (\d+)$", re.M)


def with_store(db: Path, work: Callable[[SqliteStore], Awaitable[_T]]) -> _T:
    async def go() -> _T:
        async with await SqliteStore.open(db) as store:
            return await work(store)

    return asyncio.run(go())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "var" / "bridge.sqlite3"


def create(capsys: pytest.CaptureFixture[str], db: Path, name: str, *extra: str) -> tuple[str, str]:
    code, out, err = run(capsys, "rooms", "create", name, "--db", str(db), *extra)
    assert code == 0, err
    match = PINS.search(out)
    assert match, out
    return match.group(1), match.group(2)


# --------------------------------------------------------------------------- rooms


def test_create_list_delete_room(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pin, mod = create(capsys, db, "board", "--max-participants", "12", "--language", "de")
    for p in (pin, mod):
        assert len(p) >= 6 and check_pin(p) == p
    assert pin != mod

    async def look(store: SqliteStore) -> None:
        found = await store.find_room_by_pin(pin)
        assert found is not None
        room, role = found
        assert (room.name, role, room.max_participants, room.language) == (
            "board", Role.PARTICIPANT, 12, Language.DE)
        assert await store.find_room_by_pin(mod) == (room, Role.MODERATOR)
        accounts = await store.list_accounts()
        assert [a.email for a in accounts] == ["admin@localhost"]
        assert room.account_id == accounts[0].id

    with_store(db, look)

    # --db before the action works too
    code, out, _ = run(capsys, "rooms", "--db", str(db), "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:3] == ["NAME", "PIN", "MODERATOR"]
    assert row.split() == ["board", pin, mod, "12", "de", "no", "-", "admin@localhost"]

    code, out, err = run(capsys, "rooms", "delete", "board", "--db", str(db))
    assert (code, out, err) == (0, "deleted room 'board'\n", "")
    assert with_store(db, lambda s: s.list_rooms()) == []
    assert run(capsys, "rooms", "list", "--db", str(db))[1] == "no rooms\n"
    code, _, err = run(capsys, "rooms", "delete", "board", "--db", str(db))
    assert (code, err) == (1, "bridge: no room named 'board'\n")


def test_given_pins_are_kept_and_conflicts_refused(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create(capsys, db, "a", "--pin", "482913", "--moderator-pin", "905514") == (
        "482913", "905514")
    pin, mod = create(capsys, db, "b", "--pin", "730261")
    assert pin == "730261" and mod not in ("730261", "482913", "905514") and check_pin(mod)
    # a PIN of another room, in either role, is refused (exit 1) and nothing is created
    for argv in (["--pin", "905514"], ["--moderator-pin", "482913"], ["--pin", mod]):
        code, out, err = run(capsys, "rooms", "create", "c", "--db", str(db), *argv)
        assert (code, out) == (1, ""), err
        assert err == "bridge: this PIN is already in use; choose another\n"
    code, _, err = run(capsys, "rooms", "create", "a", "--db", str(db))
    assert code == 1 and err == "bridge: account admin@localhost already has a room named 'a'\n"
    names = [r.name for r in with_store(db, lambda s: s.list_rooms())]
    assert names == ["a", "b"]


def test_generated_pins_are_unique_across_rooms_and_roles(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pins: list[str] = []
    for i in range(25):
        pins.extend(create(capsys, db, f"room{i}"))
    assert len(set(pins)) == 50
    assert all(check_pin(p) == p and len(p) >= 6 for p in pins)


def test_rooms_belong_to_accounts(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create(capsys, db, "weekly", "--account", "alice@example.org")
    create(capsys, db, "weekly", "--account", "bob@example.org")
    create(capsys, db, "solo")
    accounts = with_store(db, lambda s: s.list_accounts())
    assert sorted(a.email for a in accounts) == [
        "admin@localhost", "alice@example.org", "bob@example.org"]
    code, out, _ = run(capsys, "rooms", "list", "--db", str(db), "--account", "bob@example.org")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["NAME", "weekly"]
    assert out.splitlines()[1].endswith("bob@example.org")
    # an ambiguous name needs --account; with it, only that room goes
    code, _, err = run(capsys, "rooms", "delete", "weekly", "--db", str(db))
    assert code == 1 and "give --account" in err
    code, _, _ = run(capsys, "rooms", "delete", "weekly", "--db", str(db),
                     "--account", "alice@example.org")
    assert code == 0
    rooms = with_store(db, lambda s: s.list_rooms())
    owner = {a.id: a.email for a in accounts}
    assert sorted((r.name, owner[r.account_id]) for r in rooms) == [
        ("solo", "admin@localhost"), ("weekly", "bob@example.org")]


# --------------------------------------------------------------------------- intro


def write_wav_stdlib(path: Path, *, rate: int, seconds: float, freq: float) -> None:
    """A 16-bit stereo tone written with the standard library's ``wave`` (the oracle)."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    tone = np.rint(0.3 * 32767 * np.sin(2 * math.pi * freq * t)).astype("<i2")
    stereo = np.column_stack([tone, tone]).ravel()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stereo.tobytes())


def test_intro_is_converted_to_8khz_mono_next_to_the_database(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "hello.wav"
    write_wav_stdlib(src, rate=44100, seconds=1.5, freq=440.0)
    create(capsys, db, "with-intro", "--intro", str(src))
    (room,) = with_store(db, lambda s: s.list_rooms())
    assert room.intro_path == str(db.resolve().parent / "intros" / f"{room.id}.wav")
    with wave.open(room.intro_path, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        frames = w.readframes(w.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    assert abs(len(samples) / 8000 - 1.5) < 0.25
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak_hz = np.argmax(spectrum) * 8000 / len(samples)
    assert abs(peak_hz - 440.0) < 5.0
    assert list((db.parent / "intros").iterdir()) == [Path(room.intro_path)]
    code, out, _ = run(capsys, "rooms", "list", "--db", str(db))
    assert code == 0 and room.intro_path in out
    # deleting the room removes the file it imported
    assert run(capsys, "rooms", "delete", "with-intro", "--db", str(db))[0] == 0
    assert not Path(room.intro_path).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just some text, not audio\n", "not a WAV file (no RIFF/WAVE header)"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "no fmt chunk"),
        (None, "cannot read file"),
    ],
)
def test_intro_that_is_not_audio_is_refused_and_nothing_is_written(
    content: bytes | None, message: str, db: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "intro.wav"
    if content is not None:
        src.write_bytes(content)
    code, out, err = run(capsys, "rooms", "create", "r", "--db", str(db), "--intro", str(src))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"bridge: {src}: ") and message in err
    assert with_store(db, lambda s: s.list_rooms()) == []
    assert list((db.parent / "intros").iterdir()) == []


# --------------------------------------------------------------------------- numbers


def test_numbers_add_and_list(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create(capsys, db, "board")
    code, out, err = run(capsys, "numbers", "add", "030 1234-567", "--country", "de",
                         "--language", "de", "--room", "board", "--db", str(db))
    assert (code, out, err) == (0, "added +49301234567 (DE, de) -> room 'board'\n", "")
    assert run(capsys, "numbers", "add", "0033 1 23 45 67 89", "--country", "FR",
               "--language", "fr", "--db", str(db))[0] == 0
    code, out, _ = run(capsys, "numbers", "list", "--db", str(db))
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["NUMBER", "COUNTRY", "LANGUAGE", "ROOM"],
        ["+49301234567", "DE", "de", "board"],
        ["+33123456789", "FR", "fr", "-"],
    ]

    async def look(store: SqliteStore) -> None:
        found = await store.lookup_access_number("+49 30 1234567")
        room = await store.get_room(found.room_id or -1) if found else None
        assert found is not None and room is not None and room.name == "board"

    with_store(db, look)
    # the same number in another spelling is a conflict; a wrong country or room is refused
    code, _, err = run(capsys, "numbers", "add", "+49 30 1234567", "--country", "DE",
                       "--db", str(db))
    assert (code, err) == (1, "bridge: access number +49301234567 exists already\n")
    code, _, err = run(capsys, "numbers", "add", "+4930999999", "--country", "FR", "--db", str(db))
    assert (code, err) == (2, "bridge: +4930999999 is a DE number, not FR\n")
    code, _, err = run(capsys, "numbers", "add", "+4930999999", "--country", "DE",
                       "--room", "nope", "--db", str(db))
    assert (code, err) == (1, "bridge: no room named 'nope'\n")
    assert len(with_store(db, lambda s: s.list_access_numbers())) == 2
    assert run(capsys, "numbers", "delete", "+33 1 23 45 67 89", "--db", str(db))[:2] == (
        0, "deleted +33123456789\n")
    assert run(capsys, "numbers", "delete", "+33123456789", "--db", str(db))[0] == 1


# --------------------------------------------------------------------------- calls


def test_calls_lists_the_open_call_records(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create(capsys, db, "board")
    assert run(capsys, "calls", "--db", str(db))[1] == "no live calls\n"
    now = time.time()

    async def calls(store: SqliteStore) -> None:
        (room,) = await store.list_rooms()

        async def leg(leg_id: str, caller: str, role: Role, ago: float) -> int:
            return await store.open_call_record(
                room_id=room.id, leg_id=leg_id, number_dialed="+4930123456", caller=caller,
                source="ip:192.0.2.7", role=role, language=Language.DE, joined_at=now - ago,
                node_id="node-a",
            )

        await leg("l1", "sip:+491701111111@trunk", Role.MODERATOR, 125)
        gone = await leg("l2", "sip:+491702222222@trunk", Role.PARTICIPANT, 60)
        await leg("l3", "sip:anonymous@anonymous.invalid", Role.PARTICIPANT, 5)
        await store.close_call_record(gone, left_at=now, reason=LeaveReason.HANGUP)

    with_store(db, calls)
    code, out, _ = run(capsys, "calls", "--db", str(db))
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split() == ["ROOM", "CALLER", "NUMBER", "DIALED", "ROLE", "JOINED", "SINCE"]
    assert first.split()[:4] == ["board", "sip:+491701111111@trunk", "+4930123456", "moderator"]
    assert re.search(r"2m 0[4-9]s$", first), first
    assert second.split()[:4] == [
        "board", "sip:anonymous@anonymous.invalid", "+4930123456", "participant"]
    assert "+491702222222" not in out


# --------------------------------------------------------------------------- demo


def test_demo_is_idempotent_and_prints_the_dial_line(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first, err = run(capsys, "demo", "--db", str(db), "--sip-listen", "127.0.0.1:5080")
    assert (code, err) == (0, "")
    assert first.splitlines()[0] == f"demo database {db}: created room and number"
    match = DIAL.search(first)
    assert match is not None, first
    number, target, pin, mod = match.groups()
    assert (number, target) == ("+4930123456", "127.0.0.1:5080")
    assert "note:" not in first  # a specific listen address needs no note

    code, second, _ = run(capsys, "demo", "--db", str(db), "--sip-listen", "127.0.0.1:5080")
    assert code == 0
    assert second.splitlines()[0] == f"demo database {db}: already set up"
    assert second.splitlines()[1:] == first.splitlines()[1:]

    async def look(store: SqliteStore) -> None:
        (room,) = await store.list_rooms()
        assert (room.name, room.participant_pin, room.moderator_pin) == ("demo", pin, mod)
        (access,) = await store.list_access_numbers()
        assert (access.number, access.country, access.room_id) == (number, "DE", room.id)
        assert await store.find_room_by_pin(mod) == (room, Role.MODERATOR)

    with_store(db, look)


def test_demo_dials_the_configured_address(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(f'db_path = "{db}"\n[sip]\nlisten_port = 5070\n'
                      'external_address = "203.0.113.9"\n')
    code, out, _ = run(capsys, "demo", "--config", str(config))
    assert code == 0
    match = DIAL.search(out)
    assert match is not None and match.group(2) == "203.0.113.9:5070", out
    # the same database through the config file: rooms list sees the demo room
    assert run(capsys, "rooms", "list", "--config", str(config))[1].splitlines()[1].startswith(
        "demo ")


def test_demo_on_all_addresses_names_a_real_address_and_notes_loopback(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "demo", "--db", str(db), "--sip-listen", "0.0.0.0:5099")
    assert code == 0
    match = DIAL.search(out)
    assert match is not None, out
    host = match.group(2).rsplit(":", 1)[0]
    assert ipaddress.ip_address(host).version == 4 and host != "0.0.0.0"
    assert re.search(r"^note: .*0\.0\.0\.0", out, re.M), out


def test_python_m_bridge_runs_the_real_command(db: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--db", str(db), "--sip-listen",
         "127.0.0.1:5090"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert DIAL.search(proc.stdout) is not None
    bad = subprocess.run(
        [sys.executable, "-m", "bridge", "rooms", "create", "x", "--pin", "000000", "--db",
         str(db)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr == "bridge: 000000 repeats one digit; choose another PIN\n"
