"""Read-side services for the API and the CLI, plus the staff merge."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import NotFound, ValidationError
from core.ids import is_uuid
from core.phone import normalise_phone
from core.protocol import Change
from hq import audit
from hq.changes import ChangeSet, flush_changes, member_state
from hq.ledger import resolve_member
from hq.members import merge_members
from hq.models import (
    Card,
    DeadLetter,
    HeldItem,
    HqException,
    LedgerEntry,
    Member,
    Merge,
    PhoneKey,
    Store,
)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def list_stores(stores: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Every store, or only ``stores`` (a store or area manager's)."""
    held = dict(
        HeldItem.select(HeldItem.store, pw.fn.COUNT(HeldItem.id)).group_by(HeldItem.store).tuples()
    )
    return [
        {
            "code": s.code,
            "name": s.name,
            "epoch": s.epoch,
            "acked_through": s.acked_through,
            "reported_seq": s.reported_seq,
            "backlog": max(0, s.reported_seq - s.acked_through),
            "held_after_gap": held.get(s.code, 0),
            "down_cursor": s.down_cursor,
            "online": s.online,
            "last_seen": _iso(s.last_seen),
            # -- tiers: the rules version it prices with and any it refused (null: never said)
            "rules_version": s.rules_version,
            "rules_refused_version": s.rules_refused_version,
            "rules_refused_reason": s.rules_refused_reason,
            "area": s.area,
        }
        for s in Store.select().order_by(Store.code)
        if stores is None or s.code in stores
    ]


def find_member(query: str) -> Member:
    """By member id, card number or phone; a merged id leads to the survivor."""
    query = query.strip()
    if is_uuid(query):
        return resolve_member(Member._meta.database, query, lock=False)
    card = Card.get_or_none(Card.card_no == query)
    if card is not None:
        return resolve_member(Member._meta.database, card.member_id, lock=False)
    try:
        phone = normalise_phone(query)
    except ValidationError:
        raise NotFound(f"会员不存在: {query}", field="q") from None
    key = PhoneKey.get_or_none(PhoneKey.phone == phone)
    if key is None:
        raise NotFound(f"会员不存在: {query}", field="q")
    return resolve_member(Member._meta.database, key.member_id, lock=False)


def member_detail(member: Member, ledger_limit: int = 200) -> dict[str, Any]:
    entries = (
        LedgerEntry.select()
        .where(LedgerEntry.member_id == member.id)
        .order_by(LedgerEntry.id.desc())
        .limit(ledger_limit)
    )
    state = member_state(member)
    # staff see whether a password is set, never its hash
    state["has_password"] = bool(state.pop("password_hash"))
    return {
        "member": state,
        "cards": [
            {"card_no": c.card_no, "status": c.status, "card_type": c.card_type}
            for c in Card.select().where(Card.member_id == member.id)
        ],
        "merged_from": [
            m.id for m in Member.select(Member.id).where(Member.merged_into == member.id)
        ],
        "ledger": [
            {
                "id": e.id,
                "balance": e.balance,
                "principal": e.principal,
                "bonus": e.bonus,
                "points": e.points,
                "reason": e.reason,
                "ref": e.ref,
                "lot_id": e.lot_id,
                "store": e.store,
                "seq": e.seq,
                "at": _iso(e.at),
            }
            for e in entries
        ],
    }


def list_dead_letters(
    store: str | None = None, limit: int = 100, stores: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    query = DeadLetter.select().order_by(DeadLetter.id.desc()).limit(limit)
    if store:
        query = query.where(DeadLetter.store == store)
    if stores is not None:
        query = query.where(DeadLetter.store.in_(sorted(stores)))
    return [
        {
            "id": d.id,
            "topic": d.topic,
            "store": d.store,
            "seq": d.seq,
            "code": d.code,
            "reason": d.reason,
            "payload_size": d.payload_size,
            "payload_preview": bytes(d.payload[:200]).decode("utf-8", "replace"),
            "received_at": _iso(d.received_at),
            **_resolution(d),
        }
        for d in query
    ]


def list_exceptions(
    kind: str | None = None,
    status: str | None = None,
    limit: int = 200,
    stores: frozenset[str] | None = None,
) -> list[dict[str, Any]]:
    query = HqException.select().order_by(HqException.id.desc()).limit(limit)
    if stores is not None:
        query = query.where(HqException.store.in_(sorted(stores)))
    if kind:
        query = query.where(HqException.kind == kind)
    if status:
        query = query.where(HqException.status == status)
    return [
        {
            "id": e.id,
            "kind": e.kind,
            "status": e.status,
            "member_id": e.member_id,
            "store": e.store,
            "seq": e.seq,
            "ref": e.ref,
            "balance": e.balance,
            "amount": e.amount,
            "recovered": e.recovered,
            "details": e.details,
            "created_at": _iso(e.created_at),
            "closed_at": _iso(e.closed_at),
            **_resolution(e),
        }
        for e in query
    ]


def _resolution(row: Any) -> dict[str, Any]:
    """Who resolved an exception or dead letter in the console, when, how (hq/console/
    operations.py); all null while nobody has."""
    return {
        "resolved_at": _iso(row.resolved_at),
        "resolved_by": row.resolved_by,
        "resolution": row.resolution,
        "resolution_note": row.resolution_note,
    }


def list_merges(limit: int = 200, stores: frozenset[str] | None = None) -> list[dict[str, Any]]:
    query = Merge.select().order_by(Merge.id.desc()).limit(limit)
    if stores is not None:
        query = query.where(Merge.store.in_(sorted(stores)))
    return [
        {
            "id": m.id,
            "from_member_id": m.from_member,
            "to_member_id": m.to_member,
            "store": m.store,
            "staff": m.staff,
            "reason": m.reason,
            "at": _iso(m.at),
        }
        for m in query
    ]


def staff_merge(
    db: pw.Database, from_id: str, to_id: str, staff: str, now: dt.datetime
) -> tuple[Merge, list[Change]]:
    """A merge done by HQ staff (console or CLI): recorded with who and when, pushed down."""
    for name, value in (("from", from_id), ("to", to_id)):
        if not is_uuid(value):
            raise ValidationError(f"{name} must be a member id (UUID)", field=name)
    if not staff:
        raise ValidationError("staff (who merges) is required", field="staff")
    with db.atomic():
        changes = ChangeSet()
        merge = merge_members(
            db, from_id, to_id, store=None, staff=staff, reason="manual", now=now, changes=changes
        )
        audit.record(db, staff, "member.merge", to_id, at=now, merged=from_id)
        return merge, flush_changes(db, changes, now)


def block_card(
    db: pw.Database, card_no: str, blocked: bool, reason: str, now: dt.datetime, by: str = "hq"
) -> list[Change]:
    """Block (挂失) or unblock a card chain-wide; the block goes down to every store
    (``hq.programme.cards.set_card_blocked``, the path the tills' items take too)."""
    from hq.programme.cards import set_card_blocked

    with db.atomic():
        card = Card.get_or_none(Card.card_no == card_no)
        if card is None:
            raise NotFound(f"卡不存在: {card_no}", field="card_no")
        changes = ChangeSet()
        set_card_blocked(card, blocked, reason, changes)
        action = "card.block" if blocked else "card.unblock"
        audit.record(db, by, action, card_no, reason, at=now, member=card.member_id)
        return flush_changes(db, changes, now)


def issue_coupon(
    db: pw.Database,
    code: str,
    value: int,
    member_id: str | None,
    expires_on: dt.date | None,
    now: dt.datetime,
) -> list[Change]:
    """Issue a coupon (to one member, or to anyone when ``member_id`` is None)."""
    from hq.changes import coupon_state
    from hq.models import Coupon

    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError("coupon value must be a positive integer of fen", field="value")
    if not code or len(code) > 64:
        raise ValidationError("coupon code must be 1..64 characters", field="code")
    with db.atomic():
        if member_id is not None:
            member_id = resolve_member(db, member_id).id
        if Coupon.get_or_none(Coupon.code == code) is not None:
            from core.errors import Conflict

            raise Conflict(f"优惠券已存在: {code}", field="code")
        coupon = Coupon.create(code=code, member_id=member_id, value=value, expires_on=expires_on)
        changes = ChangeSet()
        changes.add("coupon", code, coupon_state(coupon))
        return flush_changes(db, changes, now)
