"""The summary tables the KPIs read (hq/models.py ``# -- reports``), kept by ingest in
the batch's transaction and rebuilt from the sales by ``rebuild`` (``huiyuan-hq
reports-rebuild``).

* ``report_store_day``: per store and business day, all sales (walk-ins too) and the
  members' part: tickets, fen, items, lines; returns on the return's day.
* ``report_member_spend``: per member, store and period (day, month, quarter, year):
  tickets, net fen, items, first and last day bought, the member's groups.
* ``report_member``: per registered member: home store, recruiter, registration day,
  first purchase day, merged or not.

The business day is the local date of the item's ``occurred_at`` (ISO with the
store's offset, as the till wrote it). A merge (hq/members.py) moves the merged
member's rows to the survivor, so a member merged mid-period counts once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from hq.models import (
    Member,
    ReportMember,
    ReportMemberSpend,
    ReportStoreDay,
    Return,
    Sale,
    is_postgres,
)
from hq.reports.periods import period_containing

# the period kinds kept per member (a week is summed from its days)
SPEND_KINDS = ("day", "month", "quarter", "year")


def business_day(occurred_at: str) -> dt.date:
    """The store's local date of an ISO time with offset (its first ten characters)."""
    return dt.date.fromisoformat(str(occurred_at)[:10])


def birth_year(birthday: Any) -> int | None:
    text = str(birthday or "")[:4]
    if len(text) == 4 and text.isdigit() and 1900 <= int(text) <= 2100:
        return int(text)
    return None


def _qty(lines: Any) -> tuple[int, int]:
    """(items, lines) of a sale's or return's lines."""
    items = n = 0
    for line in lines or []:
        if isinstance(line, dict):
            qty = line.get("qty")
            items += qty if isinstance(qty, int) and not isinstance(qty, bool) else 1
            n += 1
    return items, n


def _send(book: Any, query: pw.Query) -> None:
    if book is None:
        query.execute()
    else:
        book.query(query)


def _least(field: pw.Field) -> pw.Node:
    """The earlier of the row's and the new value, either may be null (portable)."""
    new = pw.EXCLUDED[field.column_name]
    return pw.Case(
        None, [(field.is_null(), new), (new.is_null(), field), (new < field, new)], field
    )


def _greatest(field: pw.Field) -> pw.Node:
    new = pw.EXCLUDED[field.column_name]
    return pw.Case(
        None, [(field.is_null(), new), (new.is_null(), field), (new > field, new)], field
    )


def add_store_day(book: Any, store: str, day: dt.date, member: bool, **delta: int) -> None:
    """Add to a store's day: ``tickets``, ``sales_fen``, ``returns_fen``, ``items``,
    ``returned_items``, ``lines``; with ``member`` the same to the ``m_`` columns."""
    row: dict[str, Any] = {"store": store, "day": day}
    for name, value in delta.items():
        row[name] = value
        if member:
            row[f"m_{name}"] = value
    T = ReportStoreDay
    update = {
        T._meta.fields[k]: T._meta.fields[k] + pw.EXCLUDED[k]
        for k in row
        if k not in ("store", "day")
    }
    query = T.insert(**row).on_conflict(conflict_target=[T.store, T.day], update=update)
    _send(book, query)


def add_member_spend(
    book: Any,
    member: Member,
    store: str,
    day: dt.date,
    tickets: int,
    amount: int,
    items: int,
) -> None:
    """Add to a member's day, month, quarter and year at ``store``. A sale (tickets 1)
    moves the first and last day bought; a return (tickets 0) only takes off fen and
    items."""
    T = ReportMemberSpend
    bought = day if tickets > 0 else None
    for kind in SPEND_KINDS:
        row = {
            "kind": kind,
            "start": period_containing(kind, day).start,
            "member_id": member.id,
            "store": store,
            "home_store": member.registered_store,
            "tickets": tickets,
            "amount": amount,
            "items": items,
            "first_day": bought,
            "last_day": bought,
            "tier": member.tier,
            "card_type": member.card_type,
            "gender": member.gender or "",
            "birth_year": birth_year(member.birthday),
        }
        update = {
            T.tickets: T.tickets + pw.EXCLUDED.tickets,
            T.amount: T.amount + pw.EXCLUDED.amount,
            T.items: T.items + pw.EXCLUDED.items,
            T.first_day: _least(T.first_day),
            T.last_day: _greatest(T.last_day),
        }
        if tickets > 0:  # the groups as of the newest sale applied
            for f in (T.tier, T.card_type, T.gender, T.birth_year, T.home_store):
                update[f] = pw.EXCLUDED[f.column_name]
        query = T.insert(**row).on_conflict(
            conflict_target=[T.kind, T.start, T.member_id, T.store], update=update
        )
        _send(book, query)
    if bought is not None:
        R = ReportMember
        _send(
            book,
            R.update(first_day=bought).where(
                (R.member_id == member.id) & (R.first_day.is_null() | (R.first_day > bought))
            ),
        )


# ---- the ingest's hooks (hq/apply.py: apply_sale, apply_return, apply_registration) ----


def book_sale(
    book: Any, store: str, occurred_at: str, body: dict[str, Any], member: Member | None
) -> None:
    """A sale applied: its store's day and, with a member, the member's periods."""
    day = business_day(occurred_at)
    items, lines = _qty(body.get("lines"))
    total = int(body["total"])
    add_store_day(
        book, store, day, member is not None, tickets=1, sales_fen=total, items=items, lines=lines
    )
    if member is not None:
        add_member_spend(book, member, store, day, 1, total, items)


def book_return(
    book: Any, store: str, occurred_at: str, body: dict[str, Any], member: Member | None
) -> None:
    """A return applied: taken off its store's day (and the member's) on the return's day."""
    day = business_day(occurred_at)
    items, _ = _qty(body.get("lines"))
    refund = int(body["refund_total"])
    add_store_day(book, store, day, member is not None, returns_fen=refund, returned_items=items)
    if member is not None:
        add_member_spend(book, member, store, day, 0, -refund, -items)


def book_registration(book: Any, body: dict[str, Any], store: str, survivor: Member) -> None:
    """A registration applied: the member's row (marked merged when the registration was
    merged into an earlier member of the same phone)."""
    member_id = body["member_id"]
    R = ReportMember
    row = {
        "member_id": member_id,
        "home_store": store,
        "staff": body.get("staff_code") or None,
        "reg_day": business_day(body["registered_at"]),
        "first_day": None,
        "gender": str(body.get("gender") or "")[:1],
        "birth_year": birth_year(body.get("birthday")),
        "merged": survivor.id != member_id,
    }
    update = {R.merged: pw.EXCLUDED.merged, R.home_store: pw.EXCLUDED.home_store}
    _send(book, R.insert(**row).on_conflict(conflict_target=[R.member_id], update=update))


def merge_reports(from_id: str, to_id: str) -> None:
    """A merge (hq/members.py ``merge_members``): the merged member's rows are added to
    the survivor's (so the survivor counts once in every period) and the merged member
    no longer counts as a member."""
    T = ReportMemberSpend
    m = Member.get_by_id(to_id)
    survivor = ReportMember.get_or_none(ReportMember.member_id == to_id)
    if survivor is None:  # a registration merged before its own row was written
        ReportMember.insert(
            member_id=to_id,
            home_store=m.registered_store,
            staff=m.staff_code,
            reg_day=business_day(m.registered_at) if m.registered_at else None,
            gender=(m.gender or "")[:1],
            birth_year=birth_year(m.birthday),
        ).on_conflict_ignore().execute()
        survivor = ReportMember.get_by_id(to_id)
    home = survivor.home_store
    for row in list(T.select().where(T.member_id == from_id)):
        query = T.insert(
            kind=row.kind,
            start=row.start,
            member_id=to_id,
            store=row.store,
            home_store=home or row.home_store,
            tickets=row.tickets,
            amount=row.amount,
            items=row.items,
            first_day=row.first_day,
            last_day=row.last_day,
            tier=m.tier,  # the survivor's groups: the rows are the survivor's now
            card_type=m.card_type,
            gender=m.gender or "",
            birth_year=birth_year(m.birthday),
        ).on_conflict(
            conflict_target=[T.kind, T.start, T.member_id, T.store],
            update={
                T.tickets: T.tickets + pw.EXCLUDED.tickets,
                T.amount: T.amount + pw.EXCLUDED.amount,
                T.items: T.items + pw.EXCLUDED.items,
                T.first_day: _least(T.first_day),
                T.last_day: _greatest(T.last_day),
            },
        )
        query.execute()
    T.delete().where(T.member_id == from_id).execute()
    loser = ReportMember.get_or_none(ReportMember.member_id == from_id)
    if loser is not None:
        loser.merged = True
        loser.save()
        if survivor is not None and loser.first_day is not None:
            if survivor.first_day is None or loser.first_day < survivor.first_day:
                survivor.first_day = loser.first_day
                survivor.save()


# ---- rebuild ----------------------------------------------------------------------


def rebuild(db: pw.Database, since: dt.date | None = None, batch: int = 20000) -> dict[str, int]:
    """Rebuild the summaries from the sales, returns and members (they are derived data):
    everything, or only the business days from ``since`` (the periods that contain it
    are rebuilt whole). Sales and returns are read in pages of ``batch`` rows, in one
    transaction. Returns the rows written per table."""
    with db.atomic():
        if since is None:
            ReportStoreDay.delete().execute()
            ReportMemberSpend.delete().execute()
            ReportMember.delete().execute()
            members_written = _rebuild_members(db)
            lower = None
        else:
            # the whole year that contains ``since``: every period kind starts on or after it
            lower = period_containing("year", since).start
            ReportStoreDay.delete().where(ReportStoreDay.day >= lower).execute()
            ReportMemberSpend.delete().where(ReportMemberSpend.start >= lower).execute()
            members_written = 0
        members = {m.id: m for m in _live_members()}
        counts = {"sales": 0, "returns": 0}
        for model, key, hook in (
            (Sale, Sale.sale_id, book_sale),
            (Return, Return.return_id, book_return),
        ):
            last = ""
            while True:  # bounded: every page moves ``last`` forward
                query = model.select().where(key > last).order_by(key).limit(batch)
                rows = list(query)
                if not rows:
                    break
                for r in rows:
                    if lower is not None and business_day(r.occurred_at) < lower:
                        continue
                    member = members.get(r.member_id) if r.member_id else None
                    hook(None, r.store, r.occurred_at, r.body, member)
                    counts["sales" if model is Sale else "returns"] += 1
                last = getattr(rows[-1], key.name)
        _first_days(db)
    counts["members"] = members_written
    return counts


def _live_members() -> list[Member]:
    return list(
        Member.select(
            Member.id,
            Member.registered_store,
            Member.tier,
            Member.card_type,
            Member.gender,
            Member.birthday,
        )
    )


def _rebuild_members(db: pw.Database) -> int:
    rows = []
    n = 0
    query = Member.select(
        Member.id,
        Member.registered_store,
        Member.staff_code,
        Member.registered_at,
        Member.gender,
        Member.birthday,
        Member.status,
    )
    for m in query.iterator():
        if not m.registered_at:
            continue  # made for an unknown member's sale, never registered
        rows.append(
            {
                "member_id": m.id,
                "home_store": m.registered_store,
                "staff": _recruiter(m),
                "reg_day": business_day(m.registered_at),
                "first_day": None,
                "gender": (m.gender or "")[:1],
                "birth_year": birth_year(m.birthday),
                "merged": m.status == "merged",
            }
        )
        if len(rows) >= 1000:
            ReportMember.insert_many(rows).execute()
            n += len(rows)
            rows = []
    if rows:
        ReportMember.insert_many(rows).execute()
        n += len(rows)
    return n


def _recruiter(m: Member) -> str | None:
    from hq.models import Recruitment

    row = Recruitment.get_or_none(Recruitment.member_id == m.id)
    return row.staff_code if row is not None else (m.staff_code or None)


def _first_days(db: pw.Database) -> None:
    """Each member's first purchase day from the day rows."""
    sub = ReportMemberSpend.select(pw.fn.MIN(ReportMemberSpend.first_day)).where(
        (ReportMemberSpend.kind == "year") & (ReportMemberSpend.member_id == ReportMember.member_id)
    )
    ReportMember.update(first_day=sub).execute()


__all__ = [
    "SPEND_KINDS",
    "book_registration",
    "book_return",
    "book_sale",
    "business_day",
    "merge_reports",
    "rebuild",
    "is_postgres",
]
