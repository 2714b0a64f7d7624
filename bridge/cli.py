"""The ``bridge`` command: ``bridge serve`` and the administration subcommands.

``main(argv) -> int`` never raises for bad input. Exit status: 0 done; 2 bad input (a wrong
argument, a bad configuration, a trivial PIN, a malformed number, an intro that is not audio),
with one line on stderr and nothing written; 1 a refused operation (a PIN, name or number in
use, a room that does not exist, a database that cannot be opened), also one line.

Administration (``bridge.admin``): ``rooms create|list|delete``, ``numbers add|list|delete``,
``calls`` and ``demo``; each takes ``--db`` and ``--config`` like ``serve``.

``bench capacity`` (``bridge.benchmark.capacity``) starts its own bridge and load generator;
exit 1 when a benchmark process fails.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from bridge import __version__
from bridge.config import Config, ConfigError, load_config, with_overrides
from bridge.replay.cli import add_parser as add_replay_parser

EXIT_USAGE = 2
LANGUAGES = ("de", "en", "fr")


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse prints the whole usage on an error; we print one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _add_common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: unset options add no attribute, so ``bridge rooms --db X list`` and
    # ``bridge rooms list --db X`` both work (a subparser's None would overwrite the other).
    parser.add_argument(
        "--config", metavar="FILE.toml", type=Path, default=argparse.SUPPRESS,
        help="configuration file",
    )
    parser.add_argument(
        "--db", metavar="PATH", default=argparse.SUPPRESS,
        help="SQLite file or database URL (postgresql://...)",
    )


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _add_admin(sub: argparse._SubParsersAction[_Parser]) -> None:
    rooms = sub.add_parser("rooms", help="create, list and delete conference rooms")
    _add_common(rooms)
    rooms_sub = rooms.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    rooms_sub.required = True
    create = rooms_sub.add_parser("create", help="create a room; prints its PINs")
    _add_common(create)
    create.add_argument("name", metavar="NAME")
    create.add_argument("--pin", metavar="P", help="participant PIN (default: generated)")
    create.add_argument("--moderator-pin", metavar="M", help="moderator PIN (default: generated)")
    create.add_argument("--max-participants", metavar="N", type=_positive_int)
    create.add_argument("--language", choices=LANGUAGES, default="en")
    create.add_argument("--intro", metavar="FILE.wav", type=Path, help="announcement to play")
    create.add_argument("--account", metavar="EMAIL", help="owner (default: admin@localhost)")
    listing = rooms_sub.add_parser("list", help="list the rooms")
    _add_common(listing)
    listing.add_argument("--account", metavar="EMAIL", help="only this account's rooms")
    delete = rooms_sub.add_parser("delete", help="delete a room")
    _add_common(delete)
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--account", metavar="EMAIL", help="the account the room belongs to")

    numbers = sub.add_parser("numbers", help="manage the dial-in access numbers")
    _add_common(numbers)
    numbers_sub = numbers.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    numbers_sub.required = True
    add = numbers_sub.add_parser("add", help="add an access number (E.164)")
    _add_common(add)
    add.add_argument("number", metavar="NUMBER")
    add.add_argument("--country", metavar="CC", required=True, help="ISO 3166-1 alpha-2")
    add.add_argument("--language", choices=LANGUAGES, default="en", help="menu language")
    add.add_argument("--room", metavar="NAME", help="lead straight to this room")
    add.add_argument("--account", metavar="EMAIL", help="the account of --room")
    nlist = numbers_sub.add_parser("list", help="list the access numbers")
    _add_common(nlist)
    ndelete = numbers_sub.add_parser("delete", help="delete an access number")
    _add_common(ndelete)
    ndelete.add_argument("number", metavar="NUMBER")

    calls = sub.add_parser("calls", help="the live legs of the running bridge")
    _add_common(calls)

    accounts = sub.add_parser("accounts", help="accounts of the API and the web area")
    _add_common(accounts)
    accounts_sub = accounts.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    accounts_sub.required = True
    acreate = accounts_sub.add_parser("create", help="create an account")
    _add_common(acreate)
    acreate.add_argument("email", metavar="EMAIL")
    acreate.add_argument("--admin", action="store_true", help="sees and acts on every room")
    acreate.add_argument("--name", metavar="NAME", help="display name (default: from EMAIL)")
    acreate.add_argument("--password", action="store_true",
                         help="ask for a password (read from stdin when not a terminal)")

    tokens = sub.add_parser("tokens", help="API tokens (Authorization: Bearer)")
    _add_common(tokens)
    tokens_sub = tokens.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    tokens_sub.required = True
    tcreate = tokens_sub.add_parser("create", help="create a token; printed once")
    _add_common(tcreate)
    tcreate.add_argument("email", metavar="EMAIL")
    tcreate.add_argument("--name", metavar="NAME", default="cli", help="what the token is for")
    trevoke = tokens_sub.add_parser("revoke", help="revoke a token")
    _add_common(trevoke)
    trevoke.add_argument("token_id", metavar="ID", type=_positive_int)
    tlist = tokens_sub.add_parser("list", help="the tokens of an account")
    _add_common(tlist)
    tlist.add_argument("email", metavar="EMAIL")

    demo = sub.add_parser("demo", help="create a demo room and number; print how to dial in")
    _add_common(demo)
    demo.add_argument("--sip-listen", metavar="HOST:PORT", help="as for serve")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bridge", description="A pure-Python telephone conference bridge.")
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    serve = sub.add_parser("serve", help="run the bridge (SIP, media, conferences)")
    _add_common(serve)
    serve.add_argument("--sip-listen", metavar="HOST:PORT", help="SIP address (UDP and TCP)")
    serve.add_argument("--rtp-ports", metavar="LOW-HIGH", help="RTP port range")
    serve.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    serve.add_argument("--capture", metavar="PATH.pcap",
                       help="write the SIP traffic to a pcap ([debug] capture_path)")
    _add_admin(sub)
    _add_db(sub)
    _add_conferences(sub)
    _add_bench(sub)
    add_replay_parser(sub)
    return parser


def _add_conferences(sub: argparse._SubParsersAction[_Parser]) -> None:
    conferences = sub.add_parser("conferences", help="live conferences of the running bridge "
                                                     "(through its API)")
    conf_sub = conferences.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    conf_sub.required = True

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", metavar="URL", help="the bridge's web address "
                            "(default: BRIDGE_URL, else http://127.0.0.1:8080)")
        parser.add_argument("--token", metavar="TOKEN", help="API token (default: BRIDGE_TOKEN)")

    common(conf_sub.add_parser("list", help="the live conferences"))
    for action, what in (("show", "one conference and its participants"),
                         ("lock", "lock a conference"), ("unlock", "unlock a conference"),
                         ("end", "end a conference for everyone")):
        parser = conf_sub.add_parser(action, help=what)
        common(parser)
        parser.add_argument("room", metavar="ROOM", help="room id or name")
    mute = conf_sub.add_parser("mute", help="mute a participant (or everyone with --all)")
    common(mute)
    mute.add_argument("room", metavar="ROOM")
    mute.add_argument("participant", metavar="PARTICIPANT", nargs="?",
                      help="participant id or caller")
    mute.add_argument("--all", action="store_true", help="every participant")
    mute.add_argument("--off", action="store_true", help="unmute instead")
    kick = conf_sub.add_parser("kick", help="remove a participant")
    common(kick)
    kick.add_argument("room", metavar="ROOM")
    kick.add_argument("participant", metavar="PARTICIPANT", help="participant id or caller")
    kick.add_argument("--silent", action="store_true",
                      help='without the "you have been removed" prompt')


def _conferences(args: argparse.Namespace) -> int:
    """``bridge conferences ...`` through the HTTP API."""
    from bridge.web.client import ApiError, ConferenceClient, format_conference, format_conferences

    url = args.url or os.environ.get("BRIDGE_URL") or "http://127.0.0.1:8080"
    token = args.token or os.environ.get("BRIDGE_TOKEN")
    if not token:
        raise UsageError("bridge conferences: no token (--token or BRIDGE_TOKEN)")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"bridge conferences: --url must be http(s)://HOST:PORT, got {url!r}")
    if args.action == "mute" and bool(args.all) == bool(args.participant):
        raise UsageError("bridge conferences mute: give a PARTICIPANT or --all")
    client = ConferenceClient(url, token)
    try:
        if args.action == "list":
            print(format_conferences(client.call("GET", "/conferences")["conferences"]))
            return 0
        room = client.room_id(args.room)
        if args.action == "show":
            print(format_conference(client.call("GET", f"/conferences/{room}")))
        elif args.action in ("lock", "unlock", "end"):
            client.call("POST", f"/conferences/{room}/{args.action}")
            print(f"{args.action}: done")
        elif args.action == "mute" and args.all:
            client.call("POST", f"/conferences/{room}/{'unmute-all' if args.off else 'mute-all'}")
            print("unmuted everyone" if args.off else "muted everyone but the moderators")
        else:
            leg = client.participant(room, args.participant)
            if args.action == "mute":
                client.call("POST", f"/conferences/{room}/participants/{leg}/"
                                    f"{'unmute' if args.off else 'mute'}")
                print(f"{'unmuted' if args.off else 'muted'} {leg}")
            else:
                client.call("POST", f"/conferences/{room}/participants/{leg}/kick",
                            {"announce": not args.silent})
                print(f"kicked {leg}")
    except ApiError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_db(sub: argparse._SubParsersAction[_Parser]) -> None:
    db = sub.add_parser("db", help="the database schema: check it, upgrade it")
    _add_common(db)
    db_sub = db.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    db_sub.required = True
    for name, text in (
        ("check", "print the schema revision and the pending migrations (exit 1 if behind)"),
        ("upgrade", "apply the pending migrations"),
    ):
        _add_common(db_sub.add_parser(name, help=text))


def _add_bench(sub: argparse._SubParsersAction[_Parser]) -> None:
    bench = sub.add_parser("bench", help="benchmarks of this machine")
    bench_sub = bench.add_subparsers(dest="action", metavar="BENCHMARK", parser_class=_Parser)
    bench_sub.required = True
    capacity = bench_sub.add_parser(
        "capacity",
        help="ramp SIP callers into a bridge until its media clock breaks (and a bare relay)",
    )
    capacity.add_argument("--rooms-of", metavar="N", type=_positive_int, default=3,
                          help="participants per conference (default 3)")
    capacity.add_argument("--talkers", metavar="K", type=_non_negative_int, default=None,
                          help="talkers per conference (default: everyone)")
    capacity.add_argument("--max-participants", metavar="N", type=_positive_int,
                          help="the last ramp step (default 2100; 600 with --quick)")
    capacity.add_argument("--json", metavar="PATH", help="write the results as JSON")
    capacity.add_argument("--plot", metavar="PATH", help="write the capacity curve as PNG")
    capacity.add_argument("--quick", action="store_true",
                          help="three short steps: done in under a minute")
    capacity.add_argument("--no-baseline", action="store_true",
                          help="skip the bare-relay baseline")
    capacity.add_argument("--direct", action="store_true",
                          help="callers dial their room directly (no IVR, no PIN)")
    capacity.add_argument("--profile", metavar="PATH", type=Path,
                          help="cProfile the bridge over the last step (pstats file)")
    capacity.add_argument("--workers", metavar="N", type=_non_negative_int, default=0,
                          help="run the bridge with N media worker processes "
                               "([media] workers; default 0: one process)")
    capacity.add_argument("--scaling", action="store_true",
                          help="ramp the bridge with --workers (at least 1) and with twice as "
                               "many, and report how capacity scales")


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def _bench(args: argparse.Namespace) -> int:
    """``bridge bench capacity``: progress on stderr, the table on stdout."""
    from bridge.benchmark.capacity import CapacityOptions
    from bridge.benchmark.capacity import main as capacity_main

    talkers = args.rooms_of if args.talkers is None else args.talkers
    if talkers > args.rooms_of:
        raise UsageError(f"bridge bench capacity: --talkers {talkers} is more than "
                         f"--rooms-of {args.rooms_of}")
    changes: dict[str, Any] = {
        "rooms_of": args.rooms_of, "talkers": talkers, "baseline": not args.no_baseline,
        "routing": "direct" if args.direct else "conference", "workers": args.workers,
        "scaling": args.scaling,
    }
    if args.max_participants is not None:
        if args.max_participants < args.rooms_of:
            raise UsageError(f"bridge bench capacity: --max-participants must hold one room "
                             f"of {args.rooms_of}")
        changes["max_participants"] = args.max_participants
    options = (CapacityOptions.quick_run(**changes) if args.quick
               else CapacityOptions(**changes))
    return capacity_main(options, json_path=args.json, plot_path=args.plot,
                         profile=args.profile)


def _config_from(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    return with_overrides(
        config,
        sip_listen=getattr(args, "sip_listen", None),
        rtp_ports=getattr(args, "rtp_ports", None),
        db=getattr(args, "db", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    # numpy's BLAS threads busy-wait on the other cores between the mixer's small products and
    # steal them from the event loop; the bridge wants one thread (set before numpy loads).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "bench":
            return _bench(args)
        if args.command == "conferences":
            return _conferences(args)
        if args.command == "replay":
            from bridge.replay.player import main as replay_main

            return replay_main(args)
        config = _config_from(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":
        from bridge.runtime.serve import serve

        level = args.log_level or config.log_level
        if args.capture:
            config = replace(config, debug=replace(config.debug, capture_path=args.capture))
        return serve(config, log_level=level)
    if args.command == "db":
        from bridge.store import dbcli

        return dbcli.check(config.database) if args.action == "check" else \
            dbcli.run_upgrade(config.database)
    from bridge.admin import AdminError

    try:
        _admin(args, config)
    except AdminError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _admin(args: argparse.Namespace, config: Config) -> None:
    """Run one administration command and print its result on stdout."""
    import time

    from bridge import admin
    from bridge.conference.model import Language

    db = config.database
    command = (args.command, getattr(args, "action", None))
    if command == ("rooms", "create"):
        made = admin.create_room(
            db,
            name=args.name,
            pin=args.pin,
            moderator_pin=args.moderator_pin,
            max_participants=args.max_participants,
            language=Language(args.language),
            intro=args.intro,
            account=args.account,
        )
        room = made.room
        print(f"created room {room.name!r} (account {made.account.email})")
        print(f"participant PIN: {room.participant_pin}")
        print(f"moderator PIN:   {room.moderator_pin}")
        if room.intro_path:
            print(f"intro: {room.intro_path}")
    elif command == ("rooms", "list"):
        print(admin.format_rooms(admin.list_rooms(db, account=args.account)))
    elif command == ("rooms", "delete"):
        gone = admin.delete_room(db, args.name, account=args.account)
        print(f"deleted room {gone.name!r}")
    elif command == ("numbers", "add"):
        number = admin.add_number(
            db,
            args.number,
            country=args.country,
            language=Language(args.language),
            room=args.room,
            account=args.account,
        )
        where = f" -> room {args.room!r}" if args.room else ""
        print(f"added {number.number} ({number.country}, {number.language.value}){where}")
    elif command == ("numbers", "list"):
        print(admin.format_numbers(admin.list_numbers(db)))
    elif command == ("numbers", "delete"):
        print(f"deleted {admin.delete_number(db, args.number)}")
    elif command == ("calls", None):
        print(admin.format_calls(admin.live_calls(db), time.time()))
    elif command == ("accounts", "create"):
        password = _read_password() if args.password else None
        acct = admin.create_account(db, args.email, admin=args.admin, password=password,
                                    name=args.name)
        kind = "admin account" if acct.is_admin else "account"
        print(f"created {kind} {acct.email} (id {acct.id})")
    elif command == ("tokens", "create"):
        token, secret = admin.create_token(db, args.email, name=args.name)
        print(f"token {token.id} ({token.name}) for {args.email.strip()}; shown only once:")
        print(secret)
    elif command == ("tokens", "revoke"):
        admin.revoke_token(db, args.token_id)
        print(f"revoked token {args.token_id}")
    elif command == ("tokens", "list"):
        print(admin.format_tokens(admin.list_tokens(db, args.email)))
    elif command == ("demo", None):
        result = admin.demo(db)
        target, note = admin.dial_target(config)
        fresh = [
            what
            for what, new in (("room", result.created_room), ("number", result.created_number))
            if new
        ]
        state = f"created {' and '.join(fresh)}" if fresh else "already set up"
        print(f"demo database {db}: {state}")
        print(admin.dial_line(result.number.number, target, result.room))
        if note:
            print(f"note: {note}")
    else:  # pragma: no cover
        raise AssertionError(f"unhandled command {command}")


def _read_password() -> str:
    import getpass

    from bridge.admin import InvalidInputError

    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise InvalidInputError("the passwords differ")
        return first
    line = sys.stdin.readline().rstrip("\n")
    if not line:
        raise InvalidInputError("--password: no password on stdin")
    return line


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
