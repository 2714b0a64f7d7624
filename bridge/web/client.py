"""``bridge conferences list|show|mute|kick|lock|unlock|end``: the CLI on the running bridge,
through its HTTP API (``--url``/``BRIDGE_URL``, ``--token``/``BRIDGE_TOKEN``).

Exit codes as for the other commands: 0 done; 2 bad input (no URL or token, a malformed
argument); 1 refused (401, 404, 409 and any other error answer, or a bridge that cannot be
reached), with the problem's detail as the one line on stderr.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["ApiError", "ConferenceClient", "format_conference", "format_conferences"]


class ApiError(Exception):
    """An error answer or an unreachable bridge; ``str()`` is the one line to show."""


@dataclass(frozen=True, slots=True)
class ConferenceClient:
    url: str
    token: str
    timeout: float = 10.0

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url.rstrip("/") + "/api/v1" + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     **({"Content-Type": "application/json"} if data else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.reason
            with contextlib.suppress(ValueError):
                detail = json.loads(exc.read().decode()).get("detail", detail)
            raise ApiError(f"{exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the bridge at {self.url}: {reason}") from None
        return json.loads(text) if text else None

    def room_id(self, room: str) -> int:
        """A room id, or the id of the one room of that name the token sees."""
        if room.isdigit():
            return int(room)
        rooms = [r for r in self.call("GET", "/rooms")["rooms"] if r["name"] == room]
        if len(rooms) != 1:
            raise ApiError(f"no room named {room!r}" if not rooms
                           else f"{len(rooms)} rooms are named {room!r}; give the room id")
        return int(rooms[0]["id"])

    def participant(self, room_id: int, who: str) -> str:
        """A participant id, or the id of the one participant whose caller contains ``who``."""
        view = self.call("GET", f"/conferences/{room_id}")
        found = [p for p in view["participants"] if p["id"] == who] or \
                [p for p in view["participants"] if who in p["caller"]]
        if len(found) != 1:
            raise ApiError(f"no participant {who!r}" if not found
                           else f"{len(found)} participants match {who!r}; give the id")
        return str(found[0]["id"])


def format_conferences(conferences: list[dict[str, Any]]) -> str:
    if not conferences:
        return "no live conferences"
    rows: list[tuple[str, ...]] = [("ROOM", "ID", "PARTICIPANTS", "LOCKED", "OPENED")]
    for c in conferences:
        rows.append((c["room_name"], str(c["room_id"]), str(len(c["participants"])),
                     "yes" if c["locked"] else "no", _when(c["opened_at"])))
    return _table(rows)


def format_conference(c: dict[str, Any]) -> str:
    head = f"room {c['room_name']} (id {c['room_id']}), {'locked' if c['locked'] else 'open'}"
    if not c["participants"]:
        return head + "\nno participants"
    rows: list[tuple[str, ...]] = [("ID", "CALLER", "ROLE", "STATE", "MUTED", "TALKING",
                                    "JOINED")]
    for p in c["participants"]:
        rows.append((p["id"], p["caller"], p["role"], p["state"],
                     "yes" if p["muted"] else "no", "yes" if p["talking"] else "no",
                     _when(p["joined_at"])))
    return head + "\n" + _table(rows)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)
