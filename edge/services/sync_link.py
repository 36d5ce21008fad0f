"""The sync agent's link to the broker and to HQ, as the cashier's screen shows it.

The agent is a process of its own (edge/sync/agent.py); the till sees what it writes in the
shared database: a ``Setting`` row ``sync_link``, written when the link changes and at
least every ``HEARTBEAT_S`` while it lasts. GET /api/v1/status reads it, so the screen's
offline banner shows the moment the agent loses the broker, not a minute later when the
outbox has aged. A row older than ``STALE_S`` means no agent is writing it (stopped or
stuck); with no row at all (a store without sync) the screen goes by the outbox alone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from edge.models import Setting

KEY = "sync_link"
HEARTBEAT_S = 20.0
STALE_S = 3 * HEARTBEAT_S


class LinkNote:
    """The agent's side: ``note`` writes the row when the link changed or the last write is
    ``HEARTBEAT_S`` old; the monotonic clock paces it, the till's clock stamps it."""

    def __init__(self) -> None:
        self.state: tuple[bool, bool | None] | None = None
        self.since = ""
        self.written = float("-inf")

    def note(self, connected: bool, hq_online: bool | None, now: dt.datetime, mono: float) -> bool:
        state = (connected, hq_online)
        if state == self.state and mono - self.written < HEARTBEAT_S:
            return False
        stamp = now.isoformat(timespec="seconds")
        if state != self.state:
            self.state, self.since = state, stamp
        value = {"connected": connected, "hq_online": hq_online, "since": self.since, "at": stamp}
        Setting.insert(key=KEY, value=value).on_conflict_replace().execute()
        self.written = mono
        return True


def link_status(now: dt.datetime) -> dict[str, Any] | None:
    """What the agent last wrote, and whether it is ``stale``; None when no agent ever ran."""
    row = Setting.get_or_none(Setting.key == KEY)
    if row is None:
        return None
    value = dict(row.value)
    at = dt.datetime.fromisoformat(value["at"])
    value["stale"] = (now - at).total_seconds() > STALE_S
    return value
