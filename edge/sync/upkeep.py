"""What a member change from HQ must not undo at the till (docs/programme/upkeep.md).

HQ's record of a member is as new as the items of this store it has applied
(``through[store]``). A profile edit or a password this till made after that is still in
its outbox: it is laid again over HQ's record, so the cashier's edit does not flicker
back until HQ has it. And HQ's ``password_hash: null`` means no password (a reset at
HQ) once HQ has applied every password this till set for the member.
"""

from __future__ import annotations

import json
from typing import Any

from edge.models import Member, Outbox
from edge.sync.apply import OUTBOX_MEMBER


def _pending(member_id: str, through: int) -> list[tuple[str, dict[str, Any]]]:
    rows = Outbox._meta.database.execute_sql(
        "SELECT kind, json_extract(payload, '$.body') FROM outbox "  # noqa: S608
        f"WHERE {OUTBOX_MEMBER} = ? AND seq > ? AND reject_code IS NULL "
        "AND kind IN ('registration', 'member_update', 'member_password') ORDER BY seq",
        (member_id, through),
    )
    return [(kind, json.loads(body)) for kind, body in rows]


def overlay_pending(member_id: str, data: dict[str, Any], store: str) -> None:
    """After HQ's record of ``member_id`` was written: this store's later edits again,
    and HQ's cleared password where nothing of ours is pending."""
    from edge.services.upkeep import apply_changes

    through = int((data.get("through") or {}).get(store, 0))
    pending = _pending(member_id, through)
    password_pending = any(
        kind == "member_password" or (kind == "registration" and body.get("password_hash"))
        for kind, body in pending
    )
    if "password_hash" in data and data["password_hash"] is None and not password_pending:
        Member.update(password_hash=None).where(Member.id == member_id).execute()
    edits = [body for kind, body in pending if kind in ("member_update", "member_password")]
    if not edits:
        return
    member = Member.get_or_none(Member.id == member_id)
    if member is None:
        return
    for body in edits:
        if "changes" in body:
            apply_changes(member, body["changes"])
        elif body.get("password_hash"):
            member.password_hash = body["password_hash"]
    member.save()
