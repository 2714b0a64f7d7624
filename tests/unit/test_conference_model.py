"""Conference domain: admission, membership, and the command x role permission matrix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from bridge.conference import commands as cmd
from bridge.conference import events as ev
from bridge.conference.model import (
    PERMISSIONS,
    Admission,
    Conference,
    Language,
    LeaveReason,
    Leg,
    Permission,
    Role,
    Room,
)

T0 = 1_700_000_000.0
ROOM = Room(id=1, account_id=7, name="weekly", participant_pin="482913", moderator_pin="730516")


def leg(leg_id: str, role: Role = Role.PARTICIPANT, at: float = T0) -> Leg:
    return Leg(leg_id=leg_id, role=role, language=Language.DE, joined_at=at)


def conference(room: Room = ROOM, *legs: Leg) -> Conference:
    conf = Conference.open(room)
    for item in legs:
        events = conf.join(item, item.joined_at)
        assert isinstance(events[0], ev.ParticipantJoined)
    return conf


def standard() -> Conference:
    """Moderator m1, then participants p1 and p2 (p2 joined last)."""
    return conference(
        ROOM, leg("m1", Role.MODERATOR), leg("p1", at=T0 + 1), leg("p2", at=T0 + 2)
    )


# -- admission ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("room_changes", "locked", "present", "role", "expected"),
    [
        ({}, False, 0, Role.PARTICIPANT, Admission.ADMITTED),
        ({}, True, 0, Role.PARTICIPANT, Admission.LOCKED),
        ({}, True, 0, Role.MODERATOR, Admission.ADMITTED),  # moderators enter a locked room
        ({"max_participants": 2}, False, 2, Role.PARTICIPANT, Admission.FULL),
        ({"max_participants": 2}, False, 2, Role.MODERATOR, Admission.FULL),
        ({"max_participants": 3}, False, 2, Role.PARTICIPANT, Admission.ADMITTED),
        ({"max_participants": 2}, True, 2, Role.PARTICIPANT, Admission.FULL),
        ({"wait_for_moderator": True}, False, 0, Role.PARTICIPANT, Admission.WAIT_FOR_MODERATOR),
        ({"wait_for_moderator": True}, False, 0, Role.MODERATOR, Admission.ADMITTED),
        ({"wait_for_moderator": True}, True, 0, Role.PARTICIPANT, Admission.LOCKED),
        ({"starts_at": T0 + 60}, False, 0, Role.MODERATOR, Admission.NOT_STARTED),
        ({"ends_at": T0}, False, 0, Role.MODERATOR, Admission.ENDED),
        ({"starts_at": T0 - 60, "ends_at": T0 + 60}, False, 0, Role.PARTICIPANT,
         Admission.ADMITTED),
    ],
)
def test_admission(
    room_changes: dict[str, object], locked: bool, present: int, role: Role, expected: Admission
) -> None:
    conf = Conference.open(replace(ROOM, **room_changes))  # type: ignore[arg-type]
    for i in range(present):
        conf.legs[f"x{i}"] = leg(f"x{i}")
    conf.locked = locked
    assert conf.admit(role, T0) is expected


def test_room_lock_default_carries_into_the_conference() -> None:
    conf = Conference.open(replace(ROOM, locked=True))
    assert conf.locked
    assert conf.admit(Role.PARTICIPANT, T0) is Admission.LOCKED


def test_join_refused_leaves_no_trace() -> None:
    conf = Conference.open(replace(ROOM, locked=True))
    events = conf.join(leg("p1"), T0)
    assert events == [
        ev.JoinRefused(leg="p1", role=Role.PARTICIPANT, admission=Admission.LOCKED, at=T0)
    ]
    assert conf.count == 0


def test_waiting_participants_are_released_by_the_first_moderator() -> None:
    conf = Conference.open(replace(ROOM, wait_for_moderator=True))
    first = conf.join(leg("p1"), T0)
    assert first == [
        ev.ParticipantJoined(leg="p1", role=Role.PARTICIPANT, waiting=True, count=1, at=T0)
    ]
    conf.join(leg("p2"), T0 + 1)
    events = conf.join(leg("m1", Role.MODERATOR), T0 + 2)
    assert events == [
        ev.ParticipantJoined(leg="m1", role=Role.MODERATOR, waiting=False, count=3, at=T0 + 2),
        ev.WaitingEnded(legs=("p1", "p2"), by="m1", at=T0 + 2),
    ]
    assert not any(item.waiting for item in conf.legs.values())
    # once a moderator is there, later participants go straight in
    assert conf.join(leg("p3"), T0 + 3)[0] == ev.ParticipantJoined(
        leg="p3", role=Role.PARTICIPANT, waiting=False, count=4, at=T0 + 3
    )


def test_max_participants_enforced_on_join() -> None:
    conf = conference(replace(ROOM, max_participants=2), leg("p1"), leg("p2"))
    events = conf.join(leg("m1", Role.MODERATOR), T0)
    assert events == [
        ev.JoinRefused(leg="m1", role=Role.MODERATOR, admission=Admission.FULL, at=T0)
    ]
    conf.leave("p1", LeaveReason.HANGUP, T0 + 5)
    assert conf.join(leg("m1", Role.MODERATOR), T0 + 6)[0] == ev.ParticipantJoined(
        leg="m1", role=Role.MODERATOR, waiting=False, count=2, at=T0 + 6
    )


def test_duplicate_and_reserved_leg_ids_are_programming_errors() -> None:
    conf = conference(ROOM, leg("p1"))
    with pytest.raises(ValueError, match="already"):
        conf.join(leg("p1"), T0)
    with pytest.raises(ValueError, match="reserved"):
        conf.join(leg("web"), T0)


def test_leave_reports_remaining_count_and_ignores_unknown_legs() -> None:
    conf = standard()
    assert conf.leave("p1", LeaveReason.HANGUP, T0 + 9) == [
        ev.ParticipantLeft(leg="p1", reason=LeaveReason.HANGUP, count=2, at=T0 + 9)
    ]
    assert conf.leave("p1", LeaveReason.HANGUP, T0 + 9) == []
    assert list(conf.legs) == ["m1", "p2"]


# -- the permission matrix -----------------------------------------------------------------

ALLOWED = "allowed"
Setup = Callable[[Conference], None]


def _nothing(conf: Conference) -> None:
    return None


def _lock(conf: Conference) -> None:
    conf.locked = True


def _mute_p2(conf: Conference) -> None:
    conf.legs["p2"].muted = True


CommandCase = tuple[str, Callable[[str], cmd.Command], Setup]

COMMANDS: list[CommandCase] = [
    ("help", lambda by: cmd.RequestHelp(by=by), _nothing),
    ("count", lambda by: cmd.QueryParticipantCount(by=by), _nothing),
    ("mute p2", lambda by: cmd.MuteParticipant(by=by, leg="p2", muted=True), _nothing),
    ("unmute p2", lambda by: cmd.MuteParticipant(by=by, leg="p2", muted=False), _mute_p2),
    ("toggle-mute p2", lambda by: cmd.MuteParticipant(by=by, leg="p2"), _nothing),
    ("deaf p2", lambda by: cmd.SetDeaf(by=by, leg="p2", deaf=True), _nothing),
    ("mute all others", lambda by: cmd.MuteAllOthers(by=by), _nothing),
    ("kick p2", lambda by: cmd.KickParticipant(by=by, leg="p2"), _nothing),
    ("kick last", lambda by: cmd.KickLastJoined(by=by), _nothing),
    ("lock", lambda by: cmd.LockConference(by=by), _nothing),
    ("unlock", lambda by: cmd.UnlockConference(by=by), _lock),
    ("toggle lock", lambda by: cmd.ToggleLock(by=by), _nothing),
    ("end", lambda by: cmd.EndConference(by=by), _nothing),
]

# actor -> expected outcome per command label. p2 is the target of the per-leg commands, so
# "p2" acting is the self case and "p1" acting the other-participant case.
MATRIX: dict[str, dict[str, str]] = {
    "m1": dict.fromkeys((c[0] for c in COMMANDS), ALLOWED),
    "web": dict.fromkeys((c[0] for c in COMMANDS), ALLOWED),
    "cli": dict.fromkeys((c[0] for c in COMMANDS), ALLOWED),
    "p1": {
        "help": ALLOWED,
        "count": ALLOWED,
        "mute p2": "not_moderator",
        "unmute p2": "not_moderator",
        "toggle-mute p2": "not_moderator",
        "deaf p2": "not_moderator",
        "mute all others": "not_moderator",
        "kick p2": "not_moderator",
        "kick last": "not_moderator",
        "lock": "not_moderator",
        "unlock": "not_moderator",
        "toggle lock": "not_moderator",
        "end": "not_moderator",
    },
    "p2": {
        "help": ALLOWED,
        "count": ALLOWED,
        "mute p2": ALLOWED,  # muting oneself
        "unmute p2": ALLOWED,
        "toggle-mute p2": ALLOWED,
        "deaf p2": ALLOWED,
        "mute all others": "not_moderator",
        "kick p2": "not_moderator",
        "kick last": "not_moderator",
        "lock": "not_moderator",
        "unlock": "not_moderator",
        "toggle lock": "not_moderator",
        "end": "not_moderator",
    },
    "stranger": dict.fromkeys((c[0] for c in COMMANDS), "unknown_actor"),
}


@pytest.mark.parametrize("actor", sorted(MATRIX))
@pytest.mark.parametrize("case", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_permission_matrix(actor: str, case: CommandCase) -> None:
    label, make, setup = case
    conf = standard()
    setup(conf)
    before = (dict((k, (v.muted, v.deaf)) for k, v in conf.legs.items()), conf.locked)
    command = make(actor)
    events = conf.handle(command, T0 + 10)
    expected = MATRIX[actor][label]
    assert events, "every command answers with at least one event"
    if expected == ALLOWED:
        assert not any(isinstance(e, ev.CommandRefused) for e in events), events
    else:
        assert events == [
            ev.CommandRefused(by=actor, command=command, reason=ev.RefusalReason(expected))
        ]
        after = (dict((k, (v.muted, v.deaf)) for k, v in conf.legs.items()), conf.locked)
        assert after == before, "a refused command changes nothing"


def test_every_command_type_has_a_permission_row() -> None:
    command_types = {c for c in vars(cmd).values() if isinstance(c, type)}
    command_types = {c for c in command_types if issubclass(c, cmd.Command)} - {cmd.Command}
    assert set(PERMISSIONS) == command_types
    assert PERMISSIONS[cmd.EndConference] is Permission.MODERATOR


# -- effects of the commands ---------------------------------------------------------------


def test_self_mute_toggles() -> None:
    conf = standard()
    toggle = cmd.MuteParticipant(by="p1", leg="p1")
    assert conf.handle(toggle, T0) == [ev.ParticipantMuted(leg="p1", by="p1")]
    assert conf.legs["p1"].muted
    assert conf.handle(toggle, T0) == [ev.ParticipantUnmuted(leg="p1", by="p1")]
    assert not conf.legs["p1"].muted


def test_setting_the_current_state_is_refused_as_nothing_to_do() -> None:
    conf = standard()
    command = cmd.MuteParticipant(by="m1", leg="p1", muted=False)
    assert conf.handle(command, T0) == [
        ev.CommandRefused(by="m1", command=command, reason=ev.RefusalReason.NOTHING_TO_DO)
    ]
    lock = cmd.UnlockConference(by="web")
    assert conf.handle(lock, T0)[0] == ev.CommandRefused(
        by="web", command=lock, reason=ev.RefusalReason.NOTHING_TO_DO
    )


def test_commands_on_unknown_legs_are_refused() -> None:
    conf = standard()
    for command in (
        cmd.MuteParticipant(by="m1", leg="ghost", muted=True),
        cmd.SetDeaf(by="m1", leg="ghost", deaf=True),
        cmd.KickParticipant(by="m1", leg="ghost"),
    ):
        assert conf.handle(command, T0) == [
            ev.CommandRefused(by="m1", command=command, reason=ev.RefusalReason.UNKNOWN_LEG)
        ]


def test_deafen_and_undeafen() -> None:
    conf = standard()
    assert conf.handle(cmd.SetDeaf(by="cli", leg="p1"), T0) == [
        ev.ParticipantDeafened(leg="p1", by="cli")
    ]
    assert conf.legs["p1"].deaf
    assert conf.handle(cmd.SetDeaf(by="cli", leg="p1", deaf=False), T0) == [
        ev.ParticipantUndeafened(leg="p1", by="cli")
    ]


def test_mute_all_others_spares_issuer_and_moderators_and_toggles() -> None:
    conf = standard()
    conf.join(leg("m2", Role.MODERATOR), T0 + 3)
    conf.legs["p1"].muted = True
    toggle = cmd.MuteAllOthers(by="m1")
    assert conf.handle(toggle, T0) == [ev.AllOthersMuted(by="m1", legs=("p2",))]
    assert [conf.legs[k].muted for k in ("m1", "p1", "p2", "m2")] == [False, True, True, False]
    assert conf.handle(toggle, T0) == [ev.AllOthersUnmuted(by="m1", legs=("p1", "p2"))]
    assert not any(item.muted for item in conf.legs.values())


def test_kick_last_joined_skips_moderators_and_the_issuer() -> None:
    conf = standard()
    conf.join(leg("m2", Role.MODERATOR), T0 + 3)
    events = conf.handle(cmd.KickLastJoined(by="m1"), T0 + 4)
    assert events == [
        ev.ParticipantLeft(leg="p2", reason=LeaveReason.KICKED, count=3, at=T0 + 4, by="m1")
    ]
    assert conf.handle(cmd.KickLastJoined(by="m1"), T0 + 5)[0] == ev.ParticipantLeft(
        leg="p1", reason=LeaveReason.KICKED, count=2, at=T0 + 5, by="m1"
    )
    refused = conf.handle(cmd.KickLastJoined(by="m1"), T0 + 6)
    assert refused == [
        ev.CommandRefused(
            by="m1", command=cmd.KickLastJoined(by="m1"), reason=ev.RefusalReason.NOTHING_TO_DO
        )
    ]
    assert list(conf.legs) == ["m1", "m2"]


def test_kick_participant_removes_the_leg() -> None:
    conf = standard()
    assert conf.handle(cmd.KickParticipant(by="web", leg="p1"), T0) == [
        ev.ParticipantLeft(leg="p1", reason=LeaveReason.KICKED, count=2, at=T0, by="web")
    ]
    assert "p1" not in conf.legs


def test_lock_then_participants_are_refused_but_moderators_enter() -> None:
    conf = standard()
    assert conf.handle(cmd.ToggleLock(by="m1"), T0) == [ev.ConferenceLocked(by="m1")]
    assert conf.join(leg("p3"), T0)[0] == ev.JoinRefused(
        leg="p3", role=Role.PARTICIPANT, admission=Admission.LOCKED, at=T0
    )
    assert isinstance(conf.join(leg("m2", Role.MODERATOR), T0)[0], ev.ParticipantJoined)
    assert conf.handle(cmd.ToggleLock(by="m2"), T0) == [ev.ConferenceUnlocked(by="m2")]
    assert isinstance(conf.join(leg("p3"), T0)[0], ev.ParticipantJoined)


def test_end_conference_disconnects_everyone_and_refuses_everything_after() -> None:
    conf = standard()
    events = conf.handle(cmd.EndConference(by="m1"), T0 + 30)
    assert events == [
        ev.ParticipantLeft(
            leg="m1", reason=LeaveReason.CONFERENCE_ENDED, count=2, at=T0 + 30, by="m1"
        ),
        ev.ParticipantLeft(
            leg="p1", reason=LeaveReason.CONFERENCE_ENDED, count=1, at=T0 + 30, by="m1"
        ),
        ev.ParticipantLeft(
            leg="p2", reason=LeaveReason.CONFERENCE_ENDED, count=0, at=T0 + 30, by="m1"
        ),
        ev.ConferenceEnded(by="m1", at=T0 + 30),
    ]
    assert conf.count == 0
    assert conf.admit(Role.MODERATOR, T0 + 31) is Admission.ENDED
    help_cmd = cmd.RequestHelp(by="web")
    assert conf.handle(help_cmd, T0 + 31) == [
        ev.CommandRefused(by="web", command=help_cmd, reason=ev.RefusalReason.CONFERENCE_ENDED)
    ]


def test_queries_answer_the_issuer() -> None:
    conf = standard()
    assert conf.handle(cmd.QueryParticipantCount(by="p1"), T0) == [
        ev.ParticipantCountReported(by="p1", count=3)
    ]
    assert conf.handle(cmd.RequestHelp(by="m1"), T0) == [
        ev.HelpRequested(by="m1", role=Role.MODERATOR)
    ]
    assert conf.handle(cmd.RequestHelp(by="p2"), T0) == [
        ev.HelpRequested(by="p2", role=Role.PARTICIPANT)
    ]


def test_events_and_commands_are_frozen_keyword_only() -> None:
    event = ev.ConferenceLocked(by="m1")
    with pytest.raises(AttributeError):
        event.by = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cmd.KickParticipant("m1", "p1")  # type: ignore[call-arg]
