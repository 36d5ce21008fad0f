"""The outbox: one message per completed fact, in the fact's own transaction."""

from __future__ import annotations

from typing import Any

from core.errors import ValidationError
from core.ids import uuid7
from core.protocol import MAX_ITEM_BYTES, SCHEMA_VERSION, UpItem, encode_json
from edge.models import Counter, Outbox
from edge.services.context import Till

_NEXT_SQL = 'UPDATE "counter" SET "value" = "value" + 1 WHERE "name" = ? RETURNING "value"'
REFUSALS_SHOWN = 5  # the latest refusals GET /api/v1/status lists
_OUTBOX_SQL = (
    'INSERT INTO "outbox" ("seq", "id", "kind", "occurred_at", "payload", "acked") '
    "VALUES (?, ?, ?, ?, ?, 0)"
)


def next_number(name: str) -> int:
    """A gapless counter: must run inside the transaction that uses the number."""
    row = Counter._meta.database.execute_sql(_NEXT_SQL, (name,)).fetchone()
    if row is not None:
        return row[0]
    Counter.insert(name=name, value=1).execute()
    return 1


def enqueue(
    till: Till, kind: str, body: dict[str, Any], occurred_at: str, rules_version: int
) -> UpItem:
    """Write one outbox message; call inside the transaction that writes the fact."""
    if not till.db.in_transaction():
        raise RuntimeError("enqueue must run inside the fact's transaction")
    item = UpItem(
        v=SCHEMA_VERSION,
        store=till.store,
        seq=next_number("outbox"),
        id=uuid7(),
        kind=kind,
        occurred_at=occurred_at,
        rules_version=rules_version,
        body=body,
    )
    payload = encode_json(item.to_dict()).decode()
    size = len(payload.encode())
    if size > MAX_ITEM_BYTES:
        # HQ would refuse it (a batch of it alone would pass MAX_PAYLOAD_BYTES): refuse it
        # here, before anything of the fact is committed, naming what made it so large
        name, chars = _largest_text(body)
        raise ValidationError(
            f"记录过大, 无法同步到总部: {name} 有 {chars} 个字符 "
            f"(too large to sync: {kind} item of {size} bytes, at most {MAX_ITEM_BYTES}; "
            f"its largest field is {name}, {chars} characters)",
            field=name,
        )
    till.db.execute_sql(_OUTBOX_SQL, (item.seq, item.id, kind, occurred_at, payload))
    return item


def _largest_text(body: dict[str, Any]) -> tuple[str, int]:
    """The dotted path and length of the longest text anywhere in ``body``."""
    best, stack = ("body", 0), [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and len(value) > best[1]:
            best = (path or "body", len(value))
        elif isinstance(value, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return best


def backlog() -> dict[str, Any]:
    """The outbox as GET /api/v1/status shows it: what waits for HQ, and what HQ refused
    (count and the latest few, kept in the outbox with HQ's code and reason)."""
    pending = Outbox.select().where(Outbox.acked == False).count()  # noqa: E712
    last = Outbox.select(Outbox.seq).order_by(Outbox.seq.desc()).first()
    # the oldest item HQ has not acknowledged: how long the store has been cut off, for
    # the screen's offline banner (the till does not see the sync agent's connection)
    oldest = (
        Outbox.select(Outbox.occurred_at)
        .where(Outbox.acked == False)  # noqa: E712
        .order_by(Outbox.seq)
        .first()
    )
    refused = Outbox.select(
        Outbox.seq, Outbox.kind, Outbox.reject_code, Outbox.reject_reason, Outbox.acked_at
    ).where(Outbox.reject_code.is_null(False))
    latest = [
        {
            "seq": r.seq,
            "kind": r.kind,
            "code": r.reject_code,
            "reason": r.reject_reason,
            "refused_at": r.acked_at,
        }
        for r in refused.order_by(Outbox.seq.desc()).limit(REFUSALS_SHOWN)
    ]
    return {
        "pending": pending,
        "last_seq": last.seq if last else 0,
        "oldest_pending_at": oldest.occurred_at if oldest else None,
        "refused": {"count": refused.count(), "latest": latest},
    }
