"""The sync agent's link as the till's screen reads it (edge/services/sync_link.py): written
when it changes and as a heartbeat, stale when no agent writes it."""

from __future__ import annotations

import datetime as dt

from edge.api import create_app
from edge.models import Setting
from edge.services.sync_link import HEARTBEAT_S, KEY, STALE_S, LinkNote, link_status
from tests.edge.conftest import sign_in


def test_the_link_is_written_when_it_changes_and_as_a_heartbeat(till, clock):
    note = LinkNote()
    assert link_status(clock()) is None  # no agent ever ran: the screen goes by the outbox
    assert note.note(True, True, clock(), mono=0.0)
    first = Setting.get_by_id(KEY).value
    assert first == {"connected": True, "hq_online": True, "since": first["at"], "at": first["at"]}
    # the same state within the heartbeat: nothing written
    clock.advance(seconds=5)
    assert not note.note(True, True, clock(), mono=5.0)
    # the broker lost: written at once, a new `since`
    clock.advance(seconds=1)
    assert note.note(False, True, clock(), mono=6.0)
    lost = Setting.get_by_id(KEY).value
    assert lost["connected"] is False and lost["since"] == lost["at"] != first["since"]
    # still lost a heartbeat later: written again, `since` kept
    clock.advance(seconds=HEARTBEAT_S)
    assert note.note(False, True, clock(), mono=6.0 + HEARTBEAT_S)
    again = Setting.get_by_id(KEY).value
    assert again["since"] == lost["since"] and again["at"] > lost["at"]
    assert link_status(clock())["stale"] is False
    clock.advance(seconds=STALE_S + 1)
    assert link_status(clock())["stale"] is True  # no agent wrote it for a minute


def test_the_status_carries_the_link(demo_till, clock):
    client = create_app(demo_till).test_client()
    headers = sign_in(client)
    assert client.get("/api/v1/status", headers=headers).json["sync"] is None
    LinkNote().note(False, None, clock(), mono=0.0)
    link = client.get("/api/v1/status", headers=headers).json["sync"]
    assert link["connected"] is False and link["hq_online"] is None and not link["stale"]
    assert dt.datetime.fromisoformat(link["since"]) == clock().replace(microsecond=0)
