"""The audit log: every sensitive action at HQ or a till, with who, why and what.

``record`` writes one ``AuditEntry`` inside the caller's transaction, so an action and
its audit row commit together or not at all. Actions that need a reason call
``require_reason`` first: an adjustment without one is refused, not logged blank.
No phone number, PIN or password goes into ``details``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import ValidationError
from hq.models import AuditEntry, utcnow

MAX_REASON = 500


def require_reason(reason: str | None, what: str = "this action") -> str:
    """The reason an action was taken, stripped; refused when empty or too long."""
    text = (reason or "").strip()
    if not text:
        raise ValidationError(f"{what} needs a reason (须填写原因)", field="reason")
    if len(text) > MAX_REASON:
        raise ValidationError(f"reason is longer than {MAX_REASON} characters", field="reason")
    return text


def require_actor(actor: str | None) -> str:
    text = (actor or "").strip()
    if not text:
        raise ValidationError("who did it must be given (须填写操作人)", field="by")
    if len(text) > 64:
        raise ValidationError("actor is longer than 64 characters", field="by")
    return text


def till_actor(store: str, staff: str | None) -> str:
    """How a till's action names who did it: the store and the staff code."""
    return f"store:{store}/staff:{staff or '?'}"


def record(
    db: pw.Database,
    actor: str,
    action: str,
    target: str,
    reason: str = "",
    *,
    store: str | None = None,
    at: dt.datetime | None = None,
    **details: Any,
) -> AuditEntry:
    """Write one audit row (call inside the action's own transaction; the models are
    bound to ``db`` by ``hq.models.bind``)."""
    return AuditEntry.create(
        at=at or utcnow(),
        actor=require_actor(actor),
        action=action,
        target=target,
        reason=reason,
        store=store,
        details=details,
    )


def entries(
    db: pw.Database,
    *,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest audit rows first, optionally filtered."""
    query = AuditEntry.select().order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if action:
        query = query.where(AuditEntry.action == action)
    if target:
        query = query.where(AuditEntry.target == target)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    return [
        {
            "at": row.at.isoformat(),
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "reason": row.reason,
            "store": row.store,
            "details": row.details,
        }
        for row in query.limit(limit)
    ]
