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


MAX_PAGE = 200
_SEARCH_TEXT = 64  # the longest filter text (the columns' own width)


def _filter_text(value: str | None, name: str) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > _SEARCH_TEXT or not text.isprintable():
        raise ValidationError(
            f"{name} 须为不超过 {_SEARCH_TEXT} 个可打印字符"
            f" ({name}: at most {_SEARCH_TEXT} printable characters)",
            field=name,
        )
    return text


def _search_query(
    *,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    store: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> pw.ModelSelect:
    """The rows the filters select. ``action`` ending in ``.`` (``user.``) or ``*``
    (``user.*``) matches every action of that family; the other texts match exactly;
    ``since`` is inclusive, ``until`` exclusive (naive UTC, as ``at`` is stored)."""
    query = AuditEntry.select()
    action = _filter_text(action, "action")
    if action:
        if action.endswith(("*", ".")):
            prefix = action.rstrip("*")
            query = query.where(AuditEntry.action.startswith(prefix))
        else:
            query = query.where(AuditEntry.action == action)
    for column, value, name in (
        (AuditEntry.target, target, "target"),
        (AuditEntry.actor, actor, "actor"),
        (AuditEntry.store, store, "store"),
    ):
        text = _filter_text(value, name)
        if text:
            query = query.where(column == text)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    return query


def _row(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "reason": row.reason,
        "store": row.store,
        "details": row.details,
    }


def entries(
    db: pw.Database,
    *,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    store: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The newest audit rows first, optionally filtered (``_search_query``)."""
    query = _search_query(
        action=action, target=target, actor=actor, store=store, since=since, until=until
    ).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    return [_row(row) for row in query.limit(limit).offset(offset)]


def search(
    db: pw.Database,
    *,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    store: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    page: int = 1,
    per_page: int = 50,
) -> dict[str, Any]:
    """One page of the audit log for the console and ``/api/audit``: ``{"entries",
    "total", "page", "per_page", "pages"}``, newest first."""
    if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= 1_000_000:
        raise ValidationError("页码须为正整数 (page must be a positive integer)", field="page")
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= MAX_PAGE:
        raise ValidationError(
            f"每页条数须为 1-{MAX_PAGE} (per_page must be 1..{MAX_PAGE})", field="per_page"
        )
    filters = dict(action=action, target=target, actor=actor, store=store, since=since, until=until)
    total = _search_query(**filters).count()
    rows = entries(db, **filters, limit=per_page, offset=(page - 1) * per_page)
    return {
        "entries": rows,
        "total": total,
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-total // per_page)),
    }
