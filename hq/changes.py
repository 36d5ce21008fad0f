"""The change log: what HQ tells every store, in one ordered sequence.

Services record changes in a ``ChangeSet`` while they work; ``flush_changes``
writes them at the end of the same transaction, taking change seqs from a
counter row locked until commit, so seqs become visible in order (a reader
never sees n+1 before n).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import peewee as pw

from core.protocol import MEMBER_PROGRAMME_FIELDS, SNAPSHOT_THRESHOLD, Change, ChangePage
from hq.models import (
    Card,
    CardType,
    ChangeRecord,
    Counter,
    Coupon,
    Member,
    Merge,
    OfflinePolicyRow,
    PointsLot,
    Product,
    RulesVersion,
    Tier,
    Writes,
    insert_rows,
    is_postgres,
)

if TYPE_CHECKING:
    from hq.ledger import Book
    from hq.lookup import ChainLookup

CHANGE_COUNTER = "change_seq"


@dataclass
class ChangeSet:
    """Changes of one transaction, keyed so that each entity goes down once, last state wins.

    Members are recorded by id only; their full state is read at flush time, after
    every balance movement of the transaction."""

    records: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = field(default_factory=dict)

    def add(self, entity: str, key: str, data: dict[str, Any] | None, op: str = "upsert") -> None:
        self.records.pop((entity, key), None)  # re-insert at the end: order of last change
        self.records[(entity, key)] = (op, data)

    def member(self, member_id: str) -> None:
        self.add("member", member_id, None)

    def __bool__(self) -> bool:
        return bool(self.records)


def _live_lots():
    return (
        PointsLot.select()
        .where(PointsLot.remaining > 0)
        .order_by(PointsLot.expires_on, PointsLot.earned_on, PointsLot.lot_id)
    )


def member_state(member: Member, lots: list[PointsLot] | None = None) -> dict[str, Any]:
    if lots is None:
        lots = list(_live_lots().where(PointsLot.member_id == member.id))
    return {
        "member_id": member.id,
        "name": member.name,
        "phone": member.phone,
        "gender": member.gender,
        "birthday": member.birthday,
        "birthday_calendar": member.birthday_calendar,
        "birthday_leap_month": member.birthday_leap_month,
        "card_type": member.card_type,
        "tier": member.tier,
        "staff_code": member.staff_code,
        "password_hash": member.password_hash,
        "registered_at": member.registered_at,
        "registered_store": member.registered_store,
        "status": member.status,
        "merged_into": member.merged_into,
        "stored_value": {"principal": member.sv_principal, "bonus": member.sv_bonus},
        "points": member.points,
        "points_debt": max(0, -member.points),
        "points_lots": [
            {
                "lot_id": lot.lot_id,
                "earned_on": lot.earned_on.isoformat(),
                "expires_on": lot.expires_on.isoformat(),
                "remaining": lot.remaining,
            }
            for lot in lots
        ],
        "through": dict(member.through or {}),
    } | {name: _wire(getattr(member, name)) for name in MEMBER_PROGRAMME_FIELDS}


def _wire(value: Any) -> Any:
    """A member column as JSON: dates as ISO text."""
    return value.isoformat() if isinstance(value, dt.date) else value


def card_state(card: Card) -> dict[str, Any]:
    return {
        "card_no": card.card_no,
        "member_id": card.member_id,
        "card_type": card.card_type,
        "status": card.status,
        "issued_store": card.issued_store,
    }


def coupon_state(coupon: Coupon) -> dict[str, Any]:
    return {
        "code": coupon.code,
        "member_id": coupon.member_id,
        "value": coupon.value,
        "status": coupon.status,
        "expires_on": coupon.expires_on.isoformat() if coupon.expires_on else None,
    } | _coupon_programme_fields(coupon)


def _coupon_programme_fields(coupon: Coupon) -> dict[str, Any]:
    """-- coupons (issue 11): the template and dates a till prices and lists a coupon by;
    only for coupons issued from a template (older coupons go down as before)."""
    if not coupon.template_id:
        return {}
    return {
        "template_id": coupon.template_id,
        "valid_from": _wire(coupon.valid_from),
        "issued_at": _wire(coupon.issued_at),
        "source": coupon.source,
        "used_sale": coupon.used_sale,
        "used_store": coupon.used_store,
    }


def offline_policy_state(row: OfflinePolicyRow) -> dict[str, Any]:
    """An offline policy as it goes down: ``OfflinePolicy`` plus its scope (``store``:
    null for the chain's) and who published which version when."""
    return {
        "kind": row.kind,
        "mode": row.mode,
        "daily_limit": row.daily_limit,
        "store": row.store,
        "version": row.version,
        "published_at": row.published_at.isoformat() + "Z",
        "published_by": row.published_by,
    }


def merge_state(merge: Merge) -> dict[str, Any]:
    return {
        "from_member_id": merge.from_member,
        "to_member_id": merge.to_member,
        "store": merge.store,
        "staff": merge.staff,
        "reason": merge.reason,
        "at": merge.at.isoformat() + "Z",
    }


def _take_change_seqs(db: pw.Database, n: int, writes: Writes | None = None) -> int:
    """Reserve ``n`` change seqs and return the first; the counter row stays locked until
    commit, so seqs commit in order. On PostgreSQL the update goes with ``writes``."""
    if is_postgres(db):
        bump = (
            Counter.update(value=Counter.value + n)
            .where(Counter.name == CHANGE_COUNTER)
            .returning(Counter.value)
        )
        bumped = (writes or Writes(db)).send(bump).fetchone()
        if bumped is not None:
            return bumped[0] - n + 1
    Counter.insert(name=CHANGE_COUNTER, value=0).on_conflict_ignore().execute()
    query = Counter.select().where(Counter.name == CHANGE_COUNTER)
    if is_postgres(db):
        query = query.for_update()
    counter = query.get()
    Counter.update(value=counter.value + n).where(Counter.name == CHANGE_COUNTER).execute()
    return counter.value + 1


def flush_changes(
    db: pw.Database,
    changes: ChangeSet,
    now: dt.datetime,
    book: Book | None = None,
    writes: Writes | None = None,
) -> list[Change]:
    """Write the transaction's changes to the log; call last, inside the transaction.

    A member's state comes from ``book`` when it holds the member (flushed, perhaps
    into ``writes``), else from the database. ``writes`` still pending go with the
    counter's update."""
    if not changes:
        return []
    rows: list[tuple[str, str, str, dict[str, Any]]] = []
    for (entity, key), (op, data) in changes.records.items():
        if entity == "member" and data is None:
            cached = book.members.get(key) if book is not None else None
            if cached is not None:
                data = member_state(cached, book.live_lots(key))
            else:
                member = Member.get_or_none(Member.id == key)
                if member is None:
                    continue
                data = member_state(member)
        rows.append((entity, key, op, data or {}))
    if not rows:
        return []
    first = _take_change_seqs(db, len(rows))
    out = []
    for i, (entity, key, op, data) in enumerate(rows):
        out.append(Change(first + i, entity, key, op, data))
    insert_rows(
        ChangeRecord,
        [
            {
                "seq": c.seq,
                "entity": c.entity,
                "key": c.key,
                "op": c.op,
                "data": c.data,
                "created_at": now,
            }
            for c in out
        ],
    )
    changes.records.clear()
    return out


def latest_change_seq() -> int:
    row = Counter.get_or_none(Counter.name == CHANGE_COUNTER)
    return row.value if row else 0


def changes_after(after: int, limit: int, lookup: ChainLookup) -> ChangePage:
    """The page after a store's cursor, or a demand for a snapshot when it is too far behind;
    member records as a store receives them (``lookup``: no phone in clear)."""
    latest = latest_change_seq()
    oldest = ChangeRecord.select(pw.fn.MIN(ChangeRecord.seq)).scalar() or 1
    too_far = (
        after > latest
        or latest - after > SNAPSHOT_THRESHOLD
        or (after < oldest - 1)
        or (after == 0 and Member.select().exists())
    )
    if too_far:
        return ChangePage(0, 0, (), False, latest, snapshot_required=True)
    rows = list(
        ChangeRecord.select()
        .where(ChangeRecord.seq > after)
        .order_by(ChangeRecord.seq)
        .limit(limit)
    )
    changes = tuple(
        lookup.change_for_store(Change(r.seq, r.entity, r.key, r.op, r.data)) for r in rows
    )
    to_seq = changes[-1].seq if changes else after
    return ChangePage(after + 1, to_seq, changes, to_seq < latest, latest)


def snapshot_records(db: pw.Database, lookup: ChainLookup) -> tuple[int, Iterator[dict[str, Any]]]:
    """Every live entity as change-shaped records, and the change seq they are as new as;
    members as a store receives them (``lookup``: no phone in clear).

    Consume the records inside the same read transaction (REPEATABLE READ on
    PostgreSQL); they are generated lazily, members without caching model rows."""
    cursor = latest_change_seq()

    def rec(entity: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"seq": cursor, "entity": entity, "key": key, "op": "upsert", "data": data}

    def generate() -> Iterator[dict[str, Any]]:
        for r in RulesVersion.select().order_by(RulesVersion.version):
            yield rec("rules", str(r.version), r.data)
        for p in OfflinePolicyRow.select().order_by(OfflinePolicyRow.key):
            # a removed store override goes as a delete: a store holding it drops it
            op = "delete" if p.removed else "upsert"
            yield rec("offline_policy", p.key, offline_policy_state(p)) | {"op": op}
        for ct in CardType.select():
            yield rec("card_type", ct.name, {"name": ct.name, **ct.data})
        for t in Tier.select():
            yield rec("tier", t.name, {"name": t.name, **t.data})
        for prod in Product.select():
            yield rec(
                "product",
                prod.sku,
                {"sku": prod.sku, "name": prod.name, "unit_price": prod.unit_price, **prod.data},
            )
        lots_by_member: dict[str, list[PointsLot]] = {}
        for lot in _live_lots().iterator():
            lots_by_member.setdefault(lot.member_id, []).append(lot)
        for m in Member.select().order_by(Member.id).iterator():
            state = member_state(m, lots_by_member.pop(m.id, []))
            yield rec("member", m.id, lookup.member_for_store(state))
        for c in Card.select().iterator():
            yield rec("card", c.card_no, card_state(c))
        for cp in Coupon.select().iterator():
            yield rec("coupon", cp.code, coupon_state(cp))
        for mg in Merge.select().order_by(Merge.id).iterator():
            yield rec("merge", mg.from_member, merge_state(mg))
        # ---- the programme's entities (issue 11), one block per part:
        # -- tiers (tiers, growth value, member day)

        # -- cards (card types as products, card replacement)

        # -- points (points rules, gifts, referral)
        from hq.programme.points import gift_records  # it imports this module

        for key, data in gift_records():
            yield rec("gift", key, data)

        # -- coupons (coupons)
        from hq.programme.coupons import TemplateRow, template_state

        for tpl in TemplateRow.select().order_by(TemplateRow.id):
            yield rec("coupon_template", tpl.id, template_state(tpl))

        # -- upkeep (stored value, profile, password)

        # -- staff (maintainers, categories and cost)
        from hq.programme.staff import snapshot_records as staff_records

        yield from staff_records(rec)
        # ---- end of the programme's entities
        # -- follow-ups (issue 14): the open tasks
        from hq.followups.tasks import snapshot_records as followup_records

        for key, data in followup_records():
            yield rec("followup", key, data)

    return cursor, generate()
