"""How tests/data/store/legacy_v2.sqlite3 was made: run with the store of schema version 2
(main at 12e84a2, the hand-written SqliteStore) -- kept for the record, not run by the tests.

    python tests/data/store/make_legacy_v2.py tests/data/store/legacy_v2.sqlite3

The expected rows are written next to it as legacy_v2.json (what the upgrade must keep).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path

from bridge.conference.model import Language, LeaveReason, Role
from bridge.store.base import RejectionReason
from bridge.store.sqlite import SqliteStore

T0 = 1_700_000_000.0


async def make(path: Path) -> None:
    store = await SqliteStore.open(path)
    try:
        acme = await store.create_account(name="Acme", email="ops@acme.example")
        other = await store.create_account(name="Other", email="it@other.example")
        weekly = await store.create_room(
            account_id=acme.id, name="weekly", participant_pin="482913", moderator_pin="730561",
            max_participants=20, language=Language.DE, wait_for_moderator=True,
        )
        board = await store.create_room(
            account_id=acme.id, name="board", participant_pin="619274", moderator_pin="205837",
            locked=True, starts_at=T0, ends_at=T0 + 3600,
        )
        await store.create_room(
            account_id=other.id, name="standup", participant_pin="394058",
            moderator_pin="857102", intro_path="intro/standup.wav",
        )
        await store.add_access_number(number="+4930123456", country="DE", language=Language.DE)
        await store.add_access_number(
            number="+442071234567", country="GB", language=Language.EN, room_id=board.id
        )
        r1 = await store.open_call_record(
            room_id=weekly.id, leg_id="leg-1", number_dialed="+4930123456",
            caller="sip:alice@example.org", source="192.0.2.10", role=Role.MODERATOR,
            language=Language.DE, joined_at=T0 + 10, node_id="bridge-a",
        )
        await store.close_call_record(r1, left_at=T0 + 610, reason=LeaveReason.HANGUP)
        await store.open_call_record(
            room_id=weekly.id, leg_id="leg-2", number_dialed="+4930123456",
            caller="sip:bob@example.org", source="192.0.2.11", role=Role.PARTICIPANT,
            language=Language.EN, joined_at=T0 + 20, node_id="bridge-a",
        )
        await store.record_rejection(
            at=T0 + 30, number_dialed="+4930123456", caller="sip:eve@example.org",
            source="198.51.100.7", reason=RejectionReason.WRONG_PIN, node_id="bridge-a",
        )
        await store.record_rejection(
            at=T0 + 40, number_dialed="+442071234567", caller="sip:carol@example.org",
            source="192.0.2.12", reason=RejectionReason.LOCKED, node_id="bridge-a",
            room_id=board.id,
        )
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    tables = ["accounts", "rooms", "room_pins", "access_numbers", "call_records", "rejections"]
    dump = {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in tables}
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    path.with_suffix(".json").write_text(json.dumps(dump, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    asyncio.run(make(Path(sys.argv[1])))
