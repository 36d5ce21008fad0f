"""Members at HQ: registration from a till, consolidation of duplicates (merge)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import Conflict, NotFound, ValidationError
from core.ids import is_uuid
from core.phone import normalise_phone
from hq.changes import ChangeSet, card_state, merge_state
from hq.ledger import Book, recover_debt, resolve_member, row_of
from hq.member_search import search_keys
from hq.models import (
    Authorization,
    Card,
    Coupon,
    HqException,
    LedgerEntry,
    Member,
    MemberWechat,
    Merge,
    PhoneKey,
    PointsLot,
    Return,
    Sale,
    TopUp,
    is_postgres,
    one_of,
)


def parse_instant(text: str, field: str = "registered_at") -> dt.datetime:
    """ISO 8601 with offset -> naive UTC."""
    try:
        value = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValidationError(f"{field} is not an ISO 8601 time: {text!r}", field=field) from None
    if value.tzinfo is None:
        raise ValidationError(f"{field} needs a UTC offset: {text!r}", field=field)
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def touch_through(member: Member, store: str, seq: int, book: Book) -> None:
    through = dict(member.through or {})
    if seq > through.get(store, 0):
        through[store] = seq
        member.through = through
        book.save(member)


def prefetch_owners(
    book_cache: dict[str, str | None], model: type[pw.Model], key: pw.Field, values: set[str]
) -> None:
    """Who holds each of a batch's card numbers or phones, in one query (None: nobody),
    so that ``_owner`` finds them without a query per item."""
    book_cache.update(dict.fromkeys(values))
    book_cache.update(model.select(key, model.member_id).where(one_of(key, values)).tuples())


def _owner(book_cache: dict[str, str | None], model: type[pw.Model], key: pw.Field, value: str):
    """Who holds a card number or phone: from what the batch prefetched, else the database."""
    if value not in book_cache:
        row = model.get_or_none(key == value)
        book_cache[value] = row.member_id if row is not None else None
    return book_cache[value]


def registration_profile(body: dict[str, Any]) -> dict[str, Any]:
    from hq.programme.upkeep import registration_profile as profile  # it imports this module

    return profile(body)


def register_member(
    db: pw.Database,
    body: dict[str, Any],
    store: str,
    seq: int,
    now: dt.datetime,
    changes: ChangeSet,
    book: Book | None = None,
) -> Member:
    """Create the member a till registered; merge with an existing member of the same phone.

    In a batch, the new member, its card and its phone key are written with the batch's
    other rows (a concurrent registration of the same phone or card then fails the
    batch's flush with an IntegrityError; the ingest retries the batch, finds the key
    and merges). Without a book they are written before this returns."""
    if book is None:
        book = Book(db)
        member = register_member(db, body, store, seq, now, changes, book)
        book.flush()
        return member
    member_id = body["member_id"]
    if not is_uuid(member_id):
        raise ValidationError("member_id is not a UUID", field="member_id")
    phone = normalise_phone(body["phone"])
    registered_utc = parse_instant(body["registered_at"])
    if book.exists(member_id):
        raise Conflict(f"member {member_id} is already registered", field="member_id")
    card_no = body.get("card_no")
    if card_no:
        owner = _owner(book.card_owners, Card, Card.card_no, card_no)
        if owner is not None and owner != member_id:
            raise Conflict(f"card {card_no} belongs to another member", field="card_no")
        if owner is None:
            card = Card(
                card_no=card_no,
                member_id=member_id,
                card_type=body.get("card_type"),
                issued_store=store,
                status="active",
                blocked_reason=None,
            )
            book.insert(Card, **row_of(card))
            book.card_owners[card_no] = member_id
            changes.add("card", card.card_no, card_state(card))
    member = Member(
        id=member_id,
        name=str(body.get("name") or ""),
        phone=phone,
        gender=str(body.get("gender") or ""),
        birthday=body.get("birthday"),
        birthday_calendar=body.get("birthday_calendar") or "solar",
        birthday_leap_month=bool(body.get("birthday_leap_month")),
        card_type=body.get("card_type"),
        tier=body.get("tier"),
        staff_code=body.get("staff_code"),
        password_hash=body.get("password_hash"),
        registered_at=body["registered_at"],
        registered_utc=registered_utc,
        registered_store=store,
        through={store: seq},
        created_at=now,
        updated_at=now,
        **registration_profile(body),  # upkeep: the richer profile, referrer, score
        **search_keys(str(body.get("name") or ""), phone),  # members: the console's search
    )
    book.insert(Member, **row_of(member))
    book.adopt(member)
    changes.member(member_id)
    key_owner = _owner(book.phone_owners, PhoneKey, PhoneKey.phone, phone)
    if key_owner is None:
        book.insert(PhoneKey, phone=phone, member_id=member_id)
        book.phone_owners[phone] = member_id
        return member
    book.forget()  # the merge reads and moves rows in the database: write what is pending
    other = resolve_member(db, key_owner)
    if other.id == member_id:
        return member
    member = Member.get_by_id(member_id)
    first, second = sorted(
        [member, other], key=lambda m: (m.registered_utc or dt.datetime.max, m.id)
    )
    merge_members(
        db,
        second.id,
        first.id,
        store=store,
        staff=body.get("staff_code"),
        reason="same_phone",
        now=now,
        changes=changes,
    )
    return Member.get_by_id(first.id)


def _lock(db: pw.Database, member_id: str) -> Member:
    query = Member.select().where(Member.id == member_id)
    if is_postgres(db):
        query = query.for_update()
    member = query.get_or_none()
    if member is None:
        raise NotFound(f"会员不存在: {member_id}", field="member_id")
    return member


def merge_members(
    db: pw.Database,
    from_id: str,
    to_id: str,
    *,
    store: str | None,
    staff: str | None,
    reason: str,
    now: dt.datetime,
    changes: ChangeSet,
) -> Merge:
    """Move everything of ``from_id`` to ``to_id`` (the survivor) and record who, where, when."""
    if from_id == to_id:
        raise ValidationError("cannot merge a member into itself", field="to")
    a, b = sorted([from_id, to_id])  # lock in id order: no deadlock between two merges
    locked = {a: _lock(db, a), b: _lock(db, b)}
    loser, survivor = locked[from_id], locked[to_id]
    for m in (loser, survivor):
        if m.status == "merged":
            raise Conflict(f"会员 {m.id} 已合并到 {m.merged_into}", field="member_id")
    for model in (LedgerEntry, PointsLot, Card, Sale, Return, TopUp, Authorization, Coupon):
        model.update(member_id=survivor.id).where(model.member_id == loser.id).execute()
    HqException.update(member_id=survivor.id).where(HqException.member_id == loser.id).execute()
    from hq.programme.tiers import merge_growth  # (tiers) growth goes with the member

    merge_growth(loser.id, survivor.id)
    from hq.reports.summary import merge_reports  # -- reports: the survivor counts once

    merge_reports(loser.id, survivor.id)
    from hq.followups.tasks import merge_followups  # -- follow-ups: the survivor's calls

    merge_followups(loser.id, survivor.id, now, changes)
    # -- campaigns: the loser's WeChat openid serves the survivor, unless it has its own
    if not MemberWechat.select().where(MemberWechat.member_id == survivor.id).exists():
        MemberWechat.update(member_id=survivor.id).where(
            MemberWechat.member_id == loser.id
        ).execute()
    Member.update(merged_into=survivor.id).where(Member.merged_into == loser.id).execute()

    sv_debt_before = max(0, -(survivor.sv_principal + survivor.sv_bonus)) + max(
        0, -(loser.sv_principal + loser.sv_bonus)
    )
    pts_debt_before = max(0, -survivor.points) + max(0, -loser.points)
    survivor.sv_principal += loser.sv_principal
    survivor.sv_bonus += loser.sv_bonus
    survivor.points += loser.points
    # the survivor's own password stands; without one, it takes the other record's
    survivor.password_hash = survivor.password_hash or loser.password_hash
    through = dict(survivor.through or {})
    for code, seq in (loser.through or {}).items():
        through[code] = max(seq, through.get(code, 0))
    survivor.through = through
    survivor.updated_at = now
    from hq.programme.cards import merge_cards  # -- cards (it builds on this module)

    merge_cards(loser, survivor, now)
    survivor.save()
    # one side's debt is now netted against the other side's balance
    sv_netted = sv_debt_before - max(0, -(survivor.sv_principal + survivor.sv_bonus))
    if sv_netted > 0:
        recover_debt(survivor.id, "stored_value", sv_netted, now)
    pts_netted = pts_debt_before - max(0, -survivor.points)
    if pts_netted > 0:
        _burn_lots(survivor.id, pts_netted)
        recover_debt(survivor.id, "points", pts_netted, now)

    loser.status = "merged"
    loser.merged_into = survivor.id
    loser.sv_principal = loser.sv_bonus = loser.points = 0
    loser.updated_at = now
    loser.save()
    if loser.phone:
        PhoneKey.update(member_id=survivor.id).where(PhoneKey.phone == loser.phone).execute()
    merge = Merge.create(
        from_member=loser.id,
        to_member=survivor.id,
        store=store,
        staff=staff,
        reason=reason,
        at=now,
    )
    changes.member(loser.id)
    changes.member(survivor.id)
    for card in Card.select().where(Card.member_id == survivor.id):
        changes.add("card", card.card_no, card_state(card))
    changes.add("merge", loser.id, merge_state(merge))
    return merge


def _burn_lots(member_id: str, points: int) -> None:
    """Lots that paid another record's debt when two members became one (no ledger move:
    the ledger already nets to the combined balance)."""
    left = points
    lots = (
        PointsLot.select()
        .where((PointsLot.member_id == member_id) & (PointsLot.remaining > 0))
        .order_by(PointsLot.expires_on, PointsLot.earned_on, PointsLot.lot_id)
    )
    for lot in lots:
        if left <= 0:
            break
        take = min(left, lot.remaining)
        lot.remaining -= take
        lot.save(only=[PointsLot.remaining])
        left -= take
