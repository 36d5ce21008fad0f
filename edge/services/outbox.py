"""The outbox: one message per completed fact, in the fact's own transaction."""

from __future__ import annotations

from typing import Any

from core.ids import uuid7
from core.protocol import SCHEMA_VERSION, UpItem, encode_json
from edge.models import Counter, Outbox
from edge.services.context import Till

_NEXT_SQL = 'UPDATE "counter" SET "value" = "value" + 1 WHERE "name" = ? RETURNING "value"'
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
    till.db.execute_sql(_OUTBOX_SQL, (item.seq, item.id, kind, occurred_at, payload))
    return item


def backlog() -> dict[str, Any]:
    pending = Outbox.select().where(Outbox.acked == False).count()  # noqa: E712
    last = Outbox.select(Outbox.seq).order_by(Outbox.seq.desc()).first()
    return {"pending": pending, "last_seq": last.seq if last else 0}
