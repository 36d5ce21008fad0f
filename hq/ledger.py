"""Balance movements. Every change to a balance writes a ledger entry in the same
transaction, so a member's balances always equal the sums of its ledger.

Spends are applied even when they overdraw (the goods are already gone): the
balance goes negative, an ``overdraft`` exception records the shortfall, and
later credits (top-ups, earned or restored points) pay the debt first. A return
that takes back points already spent leaves the same kind of debt (a negative
points balance, the till's ``points_debt``) without an exception: nothing for
staff to act on, the next earnings recover it.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import peewee as pw

from core.errors import NotFound
from hq.models import HqException, LedgerEntry, Member, PointsLot, Writes, is_postgres, one_of

MAX_MERGE_HOPS = 16


@dataclass(frozen=True)
class Posting:
    """Where a balance movement came from."""

    reason: str
    ref: str | None
    store: str | None
    seq: int | None
    at: dt.datetime


@dataclass(slots=True)
class Lot:
    """A points lot as the book holds it (a plain object: a batch loads hundreds)."""

    lot_id: str
    member_id: str
    earned_on: dt.date
    expires_on: dt.date
    earned: int
    remaining: int
    store: str | None

    FIELDS: ClassVar[tuple[pw.Field, ...]] = (
        PointsLot.lot_id,
        PointsLot.member_id,
        PointsLot.earned_on,
        PointsLot.expires_on,
        PointsLot.earned,
        PointsLot.remaining,
        PointsLot.store,
    )

    def row(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in self.FIELDS}


class Book:
    """A batch's unit of work, where balance movements are written.

    The ingest keeps one per batch attempt. The members the batch names are loaded
    (and locked, in id order) with one query the first time one is needed, their live
    points lots with one more; balance movements change them in memory, and
    ``flush()`` writes the ledger rows, new and changed lots, touched members and any
    other deferred rows with one statement each (always before the transaction
    commits, before a merge and before changes are read)."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.wanted_members: set[str] = set()  # ids the batch names, loaded together
        self.wanted_lots: set[str] = set()  # lot ids the batch names, loaded together
        self.members: dict[str, Member] = {}  # live id -> member
        self.aliases: dict[str, str] = {}  # any id seen -> live id
        self.missing: set[str] = set()  # ids without a row
        self.lots: dict[str, Lot | None] = {}  # lot id -> lot (None: no such lot)
        self.member_lots: dict[str, dict[str, Lot]] = {}  # live lots, loaded per member
        self.new_lots: dict[str, Lot] = {}
        self.dirty_lots: set[str] = set()
        self.dirty: set[str] = set()
        self.rows: list[dict[str, object]] = []
        self.inserts: dict[type[pw.Model], list[dict[str, object]]] = {}
        self.queries: list[pw.Query] = []  # other writes, sent with the rest (``query``)
        # what registrations look up, when prefetched: card no / phone -> member id or None
        self.card_owners: dict[str, str | None] = {}
        self.phone_owners: dict[str, str | None] = {}

    # ---- deferred rows --------------------------------------------------------------

    def insert(self, model: type[pw.Model], **row: object) -> None:
        self.inserts.setdefault(model, []).append(row)

    def query(self, query: pw.Query) -> None:
        """A write query of the batch (e.g. an upsert that adds to a summary row), sent
        with the others at ``flush`` instead of one round trip now."""
        self.queries.append(query)

    def entry(self, **row: object) -> None:
        self.rows.append({"principal": 0, "bonus": 0, "points": 0, "lot_id": None, **row})

    def save(self, member: Member) -> None:
        self.dirty.add(member.id)

    # ---- members --------------------------------------------------------------------

    def want(self, member_ids: Iterable[str], lot_ids: Iterable[str] = ()) -> None:
        """Ids the batch will ask for: loaded together on the first miss."""
        self.wanted_members.update(member_ids)
        self.wanted_lots.update(lot_ids)

    def member(self, member_id: str) -> Member:
        """The live member for an id (following merges), loaded and locked once per batch."""
        key = self.aliases.get(member_id)
        if key is None:
            self._load_members({member_id} | self.wanted_members)
            key = self.aliases.get(member_id)
        if key is None:
            raise NotFound(f"会员不存在: {member_id}", field="member_id")
        return self.members[key]

    def exists(self, member_id: str) -> bool:
        """Whether a member row has this id (merged or not), without following merges."""
        if member_id not in self.aliases and member_id not in self.missing:
            self._load_members({member_id} | self.wanted_members)
        return member_id not in self.missing

    def adopt(self, member: Member) -> None:
        """A member created in this batch: known, with no lots yet."""
        self.aliases[member.id] = member.id
        self.members[member.id] = member
        self.missing.discard(member.id)
        self.member_lots.setdefault(member.id, {})

    def _load_members(self, ids: set[str]) -> None:
        todo = sorted(i for i in ids if i not in self.aliases and i not in self.missing)
        pending: dict[str, str] = {i: i for i in todo}  # id asked for -> id to look up next
        for _ in range(MAX_MERGE_HOPS):
            if not pending:
                return
            lookup = sorted(set(pending.values()) - set(self.members))
            rows = {}
            if lookup:
                query = Member.select().where(one_of(Member.id, lookup)).order_by(Member.id)
                if is_postgres(self.db):
                    query = query.for_update()  # in id order: no deadlock between batches
                rows = {m.id: m for m in query}
            follow: dict[str, str] = {}
            for asked, current in pending.items():
                member = self.members.get(current) or rows.get(current)
                if member is None:
                    if asked == current:
                        self.missing.add(asked)
                    # else: a merge pointing at a member that is gone; resolve_member's error
                    continue
                if member.status == "merged" and member.merged_into:
                    follow[asked] = member.merged_into
                    continue
                self.members[member.id] = member
                self.aliases[asked] = member.id
            pending = follow
        for asked in pending:  # a chain longer than MAX_MERGE_HOPS: resolve_member says so
            resolve_member(self.db, asked)

    # ---- points lots ----------------------------------------------------------------

    def lot(self, lot_id: str) -> Lot | None:
        """The lot with this id, whoever holds it, or None."""
        if lot_id not in self.lots:
            self._load_lots({lot_id})
        return self.lots.get(lot_id)

    def live_lots(self, member_id: str) -> list[Lot]:
        """A member's lots with points left, soonest-expiring first."""
        if member_id not in self.member_lots:
            self._load_lots(set(), {member_id})
        lots = [lot for lot in self.member_lots[member_id].values() if lot.remaining > 0]
        lots.sort(key=lambda lot: (lot.expires_on, lot.earned_on, lot.lot_id))
        return lots

    def _load_lots(self, lot_ids: set[str], member_ids: set[str] = frozenset()) -> None:
        members = sorted((set(self.members) | member_ids) - set(self.member_lots))
        ids = sorted((lot_ids | self.wanted_lots) - set(self.lots))
        where = []
        if members:
            where.append(one_of(PointsLot.member_id, members) & (PointsLot.remaining > 0))
        if ids:
            where.append(one_of(PointsLot.lot_id, ids))
        if not where:
            return
        query = PointsLot.select(*Lot.FIELDS).where(functools.reduce(operator.or_, where))
        found = [Lot(*row) for row in query.tuples()]
        for member_id in members:
            self.member_lots[member_id] = {}
        for lot in list(self.lots.values()):
            if lot is not None:
                self._keep(lot)
        for lot in found:
            lot = self.lots.get(lot.lot_id) or lot  # an object already cached is the newer
            self._keep(lot)
        for lot_id in ids:
            self.lots.setdefault(lot_id, None)

    def _keep(self, lot: Lot) -> None:
        self.lots[lot.lot_id] = lot
        held = self.member_lots.get(lot.member_id)
        if held is not None:
            held[lot.lot_id] = lot

    def add_lot(self, lot: Lot) -> None:
        self.new_lots[lot.lot_id] = lot
        self._keep(lot)

    def save_lot(self, lot: Lot) -> None:
        if lot.lot_id not in self.new_lots:
            self.dirty_lots.add(lot.lot_id)

    def flush(self, writes: Writes | None = None) -> None:
        """Write what is pending: now, or with ``writes`` when given (sent by the caller)."""
        out = writes or Writes(self.db)
        for model, rows in self.inserts.items():
            out.insert(model, rows)
        self.inserts.clear()
        out.insert(LedgerEntry, self.rows)
        self.rows.clear()
        for query in self.queries:
            out.query(query)
        self.queries.clear()
        out.insert(PointsLot, [lot.row() for lot in self.new_lots.values()])
        self.new_lots.clear()
        if self.dirty_lots:
            changed = [self.lots[i].row() for i in sorted(self.dirty_lots)]
            out.insert(PointsLot, changed, [PointsLot.remaining, PointsLot.earned])
            self.dirty_lots.clear()
        if self.dirty:
            touched = [row_of(self.members[i]) for i in sorted(self.dirty)]
            out.insert(Member, touched, MEMBER_BALANCE_FIELDS)
            self.dirty.clear()
        if writes is None:
            out.send()

    def forget(self) -> None:
        """Flush, then drop what is cached (a merge is about to change it in the database);
        what the batch wants is loaded again on the next miss."""
        self.flush()
        for cache in (self.members, self.aliases, self.lots, self.member_lots):
            cache.clear()
        self.missing.clear()
        self.card_owners.clear()
        self.phone_owners.clear()


MEMBER_BALANCE_FIELDS = [
    Member.sv_principal,
    Member.sv_bonus,
    Member.points,
    Member.through,
    Member.updated_at,
]


def row_of(obj: pw.Model) -> dict[str, object]:
    return {f.name: obj.__data__.get(f.name) for f in type(obj)._meta.sorted_fields}


def survivors(member_ids: Iterable[str]) -> dict[str, Member]:
    """The live member each id names today, following merges (no locks: for reading):
    a merged member's survivor, anyone else themselves. An id not found, or at the end of
    a chain longer than ``MAX_MERGE_HOPS``, is absent. One query per hop, not per id."""
    found: dict[str, Member] = {}
    pending = {i: i for i in member_ids}  # id asked for -> id to look up next
    for _ in range(MAX_MERGE_HOPS + 1):
        if not pending:
            break
        rows = {m.id: m for m in Member.select().where(Member.id.in_(set(pending.values())))}
        follow = {}
        for asked, current in pending.items():
            member = rows.get(current)
            if member is None:
                continue
            if member.status == "merged" and member.merged_into:
                follow[asked] = member.merged_into
            else:
                found[asked] = member
        pending = follow
    return found


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


def post_stored_value(member: Member, principal: int, bonus: int, p: Posting, book: Book) -> None:
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
    book.save(member)
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
    prefer: list[tuple[str, int]] | None,
    book: Book,
    *,
    debt_is_overdraft: bool = True,
    on: dt.date | None = None,
    lock_days: int = 0,
) -> list[tuple[str, int]]:
    """Take points: first from the lots the till named, then soonest-expiring first.
    With ``on`` (the day of the spend), lots whose last day was before it, or still in
    their lock period (``lock_days``), are not taken beyond what the till named: expired
    and locked points are never spent (docs/programme/points.md).

    What no lot covers becomes a debt (negative balance), recovered from later earnings.
    A spend's debt is also an overdraft exception for staff (``debt_is_overdraft``); the
    debt of a return that takes back points already spent is not: the till keeps the
    same debt (its ``points_debt``) and recovers it the same way."""
    if points <= 0:
        return []
    left = points
    taken: list[tuple[str, int]] = []
    for lot_id, wanted in prefer or []:
        if left == 0:
            break
        lot = book.lot(str(lot_id))
        if lot is None or lot.member_id != member.id or lot.remaining <= 0:
            continue
        take = min(int(wanted), lot.remaining, left)
        if take > 0:
            lot.remaining -= take
            book.save_lot(lot)
            taken.append((lot.lot_id, take))
            left -= take
    if left:
        for lot in book.live_lots(member.id):
            if left == 0:
                break
            if on is not None and (
                lot.expires_on < on or lot.earned_on > on - dt.timedelta(days=lock_days)
            ):
                continue  # points (docs/programme/points.md): expired or locked, not spent
            take = min(lot.remaining, left)
            lot.remaining -= take
            book.save_lot(lot)
            taken.append((lot.lot_id, take))
            left -= take
    for lot_id, n in taken:
        _points_entry(member, -n, lot_id, p, book)
    if left:
        _points_entry(member, -left, None, p, book)
    before = member.points
    member.points -= points
    member.updated_at = p.at
    book.save(member)
    debt_before, debt_after = max(0, -before), max(0, -member.points)
    # with ``on``, what no unexpired lot covered is overdrawn even while the balance still
    # counts expired points (the nightly expiry then takes the balance below zero)
    short = max(debt_after - debt_before, left if on is not None else 0)
    if short > 0 and debt_is_overdraft:
        _open_exception("overdraft", member, "points", short, p)
    return taken


def credit_points(
    member: Member,
    points: int,
    p: Posting,
    lot_id: str,
    earned_on: dt.date,
    expires_on: dt.date,
    book: Book,
) -> None:
    """Earned or restored points: pay any debt first, the rest into the lot."""
    if points <= 0:
        return
    debt = max(0, -member.points)
    pay = min(debt, points)
    into_lot = points - pay
    lot = book.lot(lot_id)
    if lot is not None and lot.member_id == member.id:
        lot.remaining += into_lot
        lot.earned += into_lot if p.reason != "return" else 0
        book.save_lot(lot)
    else:
        if lot is not None:  # an id collision with another member's lot: keep both apart
            lot_id = f"{lot_id}:{member.id[:8]}"
        book.add_lot(
            Lot(
                lot_id=lot_id,
                member_id=member.id,
                earned_on=earned_on,
                expires_on=expires_on,
                earned=points,
                remaining=into_lot,
                store=p.store,
            )
        )
    _points_entry(member, points, lot_id, p, book)
    member.points += points
    member.updated_at = p.at
    book.save(member)
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
