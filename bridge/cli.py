"""The ``bridge`` command: ``bridge serve`` and the administration subcommands.

``main(argv) -> int`` never raises for bad input: a wrong argument or a bad configuration gives
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from bridge import __version__
from bridge.config import Config, ConfigError, load_config, with_overrides

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse prints the whole usage on an error; we print one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.toml", type=Path, help="configuration file")
    parser.add_argument("--db", metavar="PATH", help="SQLite database file")


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
    return parser


def _config_from(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    return with_overrides(
        config,
        sip_listen=getattr(args, "sip_listen", None),
        rtp_ports=getattr(args, "rtp_ports", None),
        db=args.db,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        config = _config_from(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":
        from bridge.runtime.app import serve

        level = args.log_level or config.log_level
        return serve(config, log_level=level)
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
