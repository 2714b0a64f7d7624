"""Administration commands: argument handling (bad input -> one line, exit 2, nothing written)
and the pure formatting helpers of ``bridge.admin``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bridge import admin
from bridge.cli import main
from bridge.conference.model import Language, Role, Room
from bridge.config import Config, SipConfig
from bridge.store.base import AccessNumber, CallRecord


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rooms"], "required: ACTION"),
        (["rooms", "rename", "x"], "invalid choice: 'rename'"),
        (["rooms", "create"], "required: NAME"),
        (["rooms", "create", "  "], "a room needs a name"),
        (["rooms", "create", "r", "--pin", "123456"], "sequence or a repeated pattern"),
        (["rooms", "create", "r", "--pin", "111111"], "repeats one digit"),
        (["rooms", "create", "r", "--pin", "4829"], "at least 6 digits"),
        (["rooms", "create", "r", "--pin", "48a913"], "digits 0-9 only"),
        (["rooms", "create", "r", "--moderator-pin", "121212"], "repeated pattern"),
        (
            ["rooms", "create", "r", "--pin", "482913", "--moderator-pin", "482913"],
            "must differ from the participant PIN",
        ),
        (["rooms", "create", "r", "--max-participants", "0"], "at least 1, got '0'"),
        (["rooms", "create", "r", "--max-participants", "ten"], "got 'ten'"),
        (["rooms", "create", "r", "--language", "es"], "invalid choice: 'es'"),
        (["rooms", "create", "r", "--account", "nobody"], "not an e-mail address"),
        (["rooms", "list", "extra"], "unrecognized arguments: extra"),
        (["rooms", "delete"], "required: NAME"),
        (["numbers"], "required: ACTION"),
        (["numbers", "add", "+4930123456"], "required: --country"),
        (["numbers", "add", "+4930123456", "--country", "XX"], "unknown country code 'XX'"),
        (["numbers", "add", "+4930123456", "--country", "Germany"], "two letters"),
        (["numbers", "add", "12", "--country", "DE"], "national DE number starts with one 0"),
        (["numbers", "add", "+49 30 12x", "--country", "DE"], "other than digits"),
        (["numbers", "add", "+4930123456", "--country", "DE", "--language", "it"], "'it'"),
        (["numbers", "list", "--room", "x"], "unrecognized arguments: --room"),
        (["numbers", "delete", "abc"], "is not international"),
        (["calls", "now"], "unrecognized arguments: now"),
        (["demo", "--sip-listen", "127.0.0.1:0"], "bad port"),
        (["demo", "--pin", "482913"], "unrecognized arguments: --pin"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "sub" / "b.sqlite3"
    assert main([*argv, "--db", str(db)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("bridge")
    assert message in captured.err
    assert captured.out == ""
    assert not db.parent.exists()


def test_bad_config_file_exits_2_for_admin_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text("db_path = 5\n")
    assert main(["rooms", "list", "--config", str(config)]) == 2
    assert capsys.readouterr().err == "bridge: db_path: expected a path string\n"


def test_unusable_database_path_is_refused_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["rooms", "list", "--db", str(blocker / "b.sqlite3")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bridge: database ")


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-3.0, "0s"), (0.9, "0s"), (59.99, "59s"), (60, "1m 00s"), (725, "12m 05s"),
     (3599, "59m 59s"), (3600, "1h 00m"), (7530, "2h 05m"), (90061, "25h 01m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert admin.format_duration(seconds) == text


def _room(**changes: object) -> Room:
    base = Room(id=7, account_id=1, name="board", participant_pin="48291375",
                moderator_pin="90314425")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_format_rooms_aligns_columns() -> None:
    rows = [
        admin.RoomRow(room=_room(), account_email="admin@localhost"),
        admin.RoomRow(
            room=_room(id=8, name="sales weekly", max_participants=12, language=Language.DE,
                       locked=True, intro_path="/var/intros/8.wav"),
            account_email="a@b.c",
        ),
    ]
    lines = admin.format_rooms(rows).splitlines()
    assert lines[0].split() == ["NAME", "PIN", "MODERATOR", "PIN", "MAX", "LANGUAGE", "LOCKED",
                                "INTRO", "ACCOUNT"]
    assert lines[1].split() == ["board", "48291375", "90314425", "-", "en", "no", "-",
                                "admin@localhost"]
    assert lines[2].startswith("sales weekly  48291375")
    assert lines[2].split()[4:] == ["12", "de", "yes", "/var/intros/8.wav", "a@b.c"]
    # every column starts at the same offset in every line
    pin_col = lines[0].index("PIN")
    assert lines[1][pin_col:].startswith("48291375")
    assert lines[2][pin_col:].startswith("48291375")
    lang_col = lines[0].index("LANGUAGE")
    assert lines[1][lang_col:lang_col + 2] == "en"
    assert lines[2][lang_col:lang_col + 2] == "de"
    assert admin.format_rooms([]) == "no rooms"


def test_format_numbers() -> None:
    rows = [
        admin.NumberRow(number=AccessNumber(number="+4930123456", country="DE",
                                            language=Language.DE, room_id=7), room_name="board"),
        admin.NumberRow(number=AccessNumber(number="+33123456789", country="FR",
                                            language=Language.FR), room_name=None),
    ]
    lines = admin.format_numbers(rows).splitlines()
    assert [line.split() for line in lines] == [
        ["NUMBER", "COUNTRY", "LANGUAGE", "ROOM"],
        ["+4930123456", "DE", "de", "board"],
        ["+33123456789", "FR", "fr", "-"],
    ]
    assert admin.format_numbers([]) == "no access numbers"


def test_format_calls_shows_room_caller_number_role_and_time_in_room() -> None:
    record = CallRecord(
        id=1, room_id=7, account_id=1, leg_id="leg-1", number_dialed="+4930123456",
        caller="sip:+491701234567@trunk", source="ip:192.0.2.9", role=Role.MODERATOR,
        language=Language.DE, joined_at=1_700_000_000.0, left_at=None, leave_reason=None,
        node_id="n1",
    )
    text = admin.format_calls([admin.CallRow(record=record, room_name="board")],
                              now=1_700_000_000.0 + 754)
    header, row = text.splitlines()
    assert header.split() == ["ROOM", "CALLER", "NUMBER", "DIALED", "ROLE", "JOINED", "SINCE"]
    assert row.split()[:4] == ["board", "sip:+491701234567@trunk", "+4930123456", "moderator"]
    assert row.endswith("12m 34s")
    assert admin.format_calls([], now=0.0) == "no live calls"


# --------------------------------------------------------------------------- dial target


def _config(**sip: object) -> Config:
    return Config(sip=replace(SipConfig(), **sip))  # type: ignore[arg-type]


def test_dial_target_wildcard_uses_primary_address_with_a_note() -> None:
    target, note = admin.dial_target(_config(), primary=lambda: "192.168.1.20")
    assert target == "192.168.1.20:5060"
    assert note is not None and "127.0.0.1:5060" in note and "0.0.0.0" in note


def test_dial_target_without_a_route_says_so() -> None:
    target, note = admin.dial_target(_config(listen_port=5070), primary=lambda: "127.0.0.1")
    assert target == "127.0.0.1:5070"
    assert note is not None and "no network route" in note


def test_dial_target_specific_host_and_external_address() -> None:
    def boom() -> str:
        raise AssertionError("primary address must not be probed")

    assert admin.dial_target(_config(listen_host="10.1.2.3"), primary=boom) == (
        "10.1.2.3:5060", None)
    assert admin.dial_target(_config(listen_host="::1", listen_port=5062), primary=boom) == (
        "[::1]:5062", None)
    assert admin.dial_target(
        _config(external_address="203.0.113.5", listen_port=5080), primary=boom
    ) == ("203.0.113.5:5080", None)


def test_dial_line() -> None:
    assert admin.dial_line("+4930123456", "127.0.0.1:5060", _room()) == (
        "dial sip:+4930123456@127.0.0.1:5060, PIN 48291375, moderator PIN 90314425"
    )


def test_primary_address_is_an_ipv4_address() -> None:
    import ipaddress

    assert ipaddress.ip_address(admin.primary_address()).version == 4
