"""The ``bridge replay`` arguments (kept apart from the player so ``bridge --help`` stays light)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay", help="replay the calling side of a trace's calls against a target")
    p.add_argument("trace", metavar="TRACE", type=Path, help="pcap or pcapng file")
    p.add_argument("outdir", metavar="OUTDIR", type=Path, nargs="?",
                   help="with --to-sipp: where the scenario and RTP pcap go")
    p.add_argument("--target", metavar="HOST:PORT", help="the SIP address to replay against")
    p.add_argument("--to-sipp", action="store_true",
                   help="write one call (--call) as a SIPp scenario and RTP pcap into OUTDIR")
    p.add_argument("--call", metavar="CALL-ID", action="append", default=[],
                   help="replay only this call (repeatable)")
    p.add_argument("--speed", metavar="X", type=float, default=1.0,
                   help="compress (>1) or stretch (<1) time")
    p.add_argument("--repeat", metavar="N", type=int, default=1,
                   help="play the trace N times, with fresh identities")
    p.add_argument("--json", metavar="PATH", type=Path, help="write the report as JSON")
    p.add_argument("--wav-dir", metavar="DIR", type=Path,
                   help="write the audio each call received as a WAV")
    return p
