"""Balance movements. Every change to a balance writes a ledger entry in the same
transaction, so a member's balances always equal the sums of its ledger.

Spends are applied even when they overdraw (the goods are already gone): the
balance goes negative, an ``overdraft`` exception records the shortfall, and
later credits (top-ups, earned or restored points) pay the debt first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee as pw

from core.errors import NotFound
from hq.models import HqException, LedgerEntry, Member, PointsLot, is_postgres

MAX_MERGE_HOPS = 16


@dataclass(frozen=True)
class Posting:
    """Where a balance movement came from."""

    reason: str
    ref: str | None
    store: str | None
    seq: int | None
    at: dt.datetime


class Book:
    """Where balance movements are written.

    Immediate by default. The ingest uses a deferred book per batch: ledger rows are
    inserted together and each touched member is updated once, at ``flush()`` (always
    before the transaction commits, before a merge and before changes are read)."""

    def __init__(self, deferred: bool = False) -> None:
        self.deferred = deferred
        self.rows: list[dict[str, object]] = []
        self.members: dict[str, Member] = {}
        self.aliases: dict[str, str] = {}
        self.dirty: set[str] = set()
        self.inserts: dict[type[pw.Model], list[dict[str, object]]] = {}
        self.known_lots: set[str] | None = None  # lot ids that exist (prefetched), if known

    def insert(self, model: type[pw.Model], **row: object) -> None:
        if self.deferred:
            self.inserts.setdefault(model, []).append(row)
        else:
            model.create(**row)

    def entry(self, **row: object) -> None:
        row = {"principal": 0, "bonus": 0, "points": 0, "lot_id": None, **row}
        if self.deferred:
            self.rows.append(row)
        else:
            LedgerEntry.create(**row)

    def save(self, member: Member, fields: list[pw.Field]) -> None:
        if self.deferred:
            self.members[member.id] = member
            self.dirty.add(member.id)
        else:
            member.save(only=fields)

    def member(self, db: pw.Database, member_id: str) -> Member:
        """The live member for an id, loaded (and locked) once per batch."""
        key = self.aliases.get(member_id, member_id)
        cached = self.members.get(key)
        if cached is not None:
            return cached
        member = resolve_member(db, member_id)
        self.aliases[member_id] = member.id
        self.members[member.id] = member
        return member

    def flush(self) -> None:
        for model, rows in self.inserts.items():
            for i in range(0, len(rows), 500):
                model.insert_many(rows[i : i + 500]).execute()
        self.inserts.clear()
        for i in range(0, len(self.rows), 500):
            LedgerEntry.insert_many(self.rows[i : i + 500]).execute()
        self.rows.clear()
        for member_id in sorted(self.dirty):
            m = self.members[member_id]
            Member.update(
                sv_principal=m.sv_principal,
                sv_bonus=m.sv_bonus,
                points=m.points,
                through=m.through,
                updated_at=m.updated_at,
            ).where(Member.id == member_id).execute()
        self.dirty.clear()

    def forget(self) -> None:
        """Flush, then drop cached members (a merge is about to change them in the database)."""
        self.flush()
        self.members.clear()
        self.aliases.clear()


IMMEDIATE = Book()


def resolve_member(db: pw.Database, member_id: str, lock: bool = True) -> Member:
    """The live member for an id, following merges; locked for update on PostgreSQL."""
    current = member_id
    for _ in range(MAX_MERGE_HOPS):
        query = Member.select().where(Member.id == current)
        if lock and is_postgres(db):
            query = query.for_update()
        member = query.get_or_none()
        if member is None:
            raise NotFound(f"会员不存在: {member_id}", field="member_id")
        if member.status != "merged" or not member.merged_into:
            return member
        current = member.merged_into
    raise NotFound(f"merge chain too long for member {member_id}", field="member_id")


def _open_exception(kind: str, member: Member, balance: str, amount: int, p: Posting) -> None:
    HqException.create(
        kind=kind,
        member_id=member.id,
        store=p.store,
        seq=p.seq,
        ref=p.ref,
        balance=balance,
        amount=amount,
        details={"reason": p.reason},
        created_at=p.at,
    )


def recover_debt(member_id: str, balance: str, amount: int, at: dt.datetime) -> None:
    """Mark ``amount`` of this member's open overdrafts of ``balance`` as paid back, oldest first."""
    left = amount
    open_rows = (
        HqException.select()
        .where(
            (HqException.member_id == member_id)
            & (HqException.kind == "overdraft")
            & (HqException.balance == balance)
            & (HqException.status == "open")
        )
        .order_by(HqException.id)
    )
    for row in open_rows:
        if left <= 0:
            break
        take = min(left, row.amount - row.recovered)
        row.recovered += take
        left -= take
        if row.recovered >= row.amount:
            row.status = "closed"
            row.closed_at = at
        row.save()


def post_stored_value(
    member: Member, principal: int, bonus: int, p: Posting, book: Book = IMMEDIATE
) -> None:
    """Add (positive) or take (negative) stored value, principal and bonus apart."""
    if principal == 0 and bonus == 0:
        return
    before = member.sv_principal + member.sv_bonus
    book.entry(
        member_id=member.id,
        balance="stored_value",
        principal=principal,
        bonus=bonus,
        reason=p.reason,
        ref=p.ref,
        store=p.store,
        seq=p.seq,
        at=p.at,
    )
    member.sv_principal += principal
    member.sv_bonus += bonus
    member.updated_at = p.at
    book.save(member, [Member.sv_principal, Member.sv_bonus, Member.updated_at])
    after = member.sv_principal + member.sv_bonus
    debt_before, debt_after = max(0, -before), max(0, -after)
    if debt_after > debt_before:
        _open_exception("overdraft", member, "stored_value", debt_after - debt_before, p)
    elif debt_after < debt_before:
        recover_debt(member.id, "stored_value", debt_before - debt_after, p.at)


def _points_entry(member: Member, points: int, lot_id: str | None, p: Posting, book: Book) -> None:
    book.entry(
        member_id=member.id,
        balance="points",
        points=points,
        reason=p.reason,
        ref=p.ref,
        lot_id=lot_id,
        store=p.store,
        seq=p.seq,
        at=p.at,
    )


def spend_points(
    member: Member,
    points: int,
    p: Posting,
    prefer: list[tuple[str, int]] | None = None,
    book: Book = IMMEDIATE,
) -> list[tuple[str, int]]:
    """Take points: first from the lots the till named, then soonest-expiring first.

    What no lot covers becomes a debt (negative balance) and an overdraft exception."""
    if points <= 0:
        return []
    left = points
    taken: list[tuple[str, int]] = []
    for lot_id, wanted in prefer or []:
        if left == 0:
            break
        lot = PointsLot.get_or_none(
            (PointsLot.lot_id == str(lot_id)) & (PointsLot.member_id == member.id)
        )
        if lot is None or lot.remaining <= 0:
            continue
        take = min(int(wanted), lot.remaining, left)
        if take > 0:
            lot.remaining -= take
            lot.save(only=[PointsLot.remaining])
            taken.append((lot.lot_id, take))
            left -= take
    if left:
        lots = (
            PointsLot.select()
            .where((PointsLot.member_id == member.id) & (PointsLot.remaining > 0))
            .order_by(PointsLot.expires_on, PointsLot.earned_on, PointsLot.lot_id)
        )
        for lot in lots:
            if left == 0:
                break
            take = min(lot.remaining, left)
            lot.remaining -= take
            lot.save(only=[PointsLot.remaining])
            taken.append((lot.lot_id, take))
            left -= take
    for lot_id, n in taken:
        _points_entry(member, -n, lot_id, p, book)
    if left:
        _points_entry(member, -left, None, p, book)
    before = member.points
    member.points -= points
    member.updated_at = p.at
    book.save(member, [Member.points, Member.updated_at])
    debt_before, debt_after = max(0, -before), max(0, -member.points)
    if debt_after > debt_before:
        _open_exception("overdraft", member, "points", debt_after - debt_before, p)
    return taken


def credit_points(
    member: Member,
    points: int,
    p: Posting,
    lot_id: str,
    earned_on: dt.date,
    expires_on: dt.date,
    book: Book = IMMEDIATE,
) -> None:
    """Earned or restored points: pay any debt first, the rest into the lot."""
    if points <= 0:
        return
    debt = max(0, -member.points)
    pay = min(debt, points)
    into_lot = points - pay
    if book.known_lots is not None and lot_id not in book.known_lots:
        lot = None  # prefetched: no such lot yet
    else:
        lot = PointsLot.get_or_none(PointsLot.lot_id == lot_id)
    if lot is not None and lot.member_id == member.id:
        lot.remaining += into_lot
        lot.earned += into_lot if p.reason != "return" else 0
        lot.save(only=[PointsLot.remaining, PointsLot.earned])
    else:
        if lot is not None:  # an id collision with another member's lot: keep both apart
            lot_id = f"{lot_id}:{member.id[:8]}"
        PointsLot.create(
            lot_id=lot_id,
            member_id=member.id,
            earned_on=earned_on,
            expires_on=expires_on,
            earned=points,
            remaining=into_lot,
            store=p.store,
        )
        if book.known_lots is not None:
            book.known_lots.add(lot_id)
    _points_entry(member, points, lot_id, p, book)
    member.points += points
    member.updated_at = p.at
    book.save(member, [Member.points, Member.updated_at])
    if pay:
        recover_debt(member.id, "points", pay, p.at)


def ledger_sums(member_id: str) -> dict[str, int]:
    row = (
        LedgerEntry.select(
            pw.fn.COALESCE(pw.fn.SUM(LedgerEntry.principal), 0).alias("principal"),
            pw.fn.COALESCE(pw.fn.SUM(LedgerEntry.bonus), 0).alias("bonus"),
            pw.fn.COALESCE(pw.fn.SUM(LedgerEntry.points), 0).alias("points"),
        )
        .where(LedgerEntry.member_id == member_id)
        .dicts()
        .get()
    )
    return {k: int(v) for k, v in row.items()}
