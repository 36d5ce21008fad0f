# ruff: noqa: S608 - the SQL text is fixed (dialect pieces and placeholders); values are bound
"""The summary tables the KPIs read (hq/models.py ``# -- reports``), kept by ingest in
the batch's transaction and rebuilt from the sales by ``rebuild`` (``huiyuan-hq
reports-rebuild``).

* ``report_store_day``: per store and business day, all sales (walk-ins too) and the
  members' part: tickets, fen, items, lines; returns on the return's day.
* ``report_member_spend``: per member, store and period (day, month, quarter, year):
  tickets, net fen, items, first and last day bought, the member's groups.
* ``report_member``: per registered member: home store, recruiter, registration day,
  first and last purchase day, merged or not.

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
    if bought is not None:  # the first and last day bought, one statement
        R = ReportMember
        earlier = R.first_day.is_null() | (R.first_day > bought)
        later = R.last_day.is_null() | (R.last_day < bought)
        _send(
            book,
            R.update(
                first_day=pw.Case(None, [(earlier, bought)], R.first_day),
                last_day=pw.Case(None, [(later, bought)], R.last_day),
            ).where((R.member_id == member.id) & (earlier | later)),
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
        if survivor is not None:
            first = [d for d in (survivor.first_day, loser.first_day) if d is not None]
            last = [d for d in (survivor.last_day, loser.last_day) if d is not None]
            survivor.first_day = min(first, default=None)
            survivor.last_day = max(last, default=None)
            survivor.save()


# ---- rebuild ----------------------------------------------------------------------


def _sql_parts(pg: bool) -> dict[str, str]:
    """Dialect pieces of the rebuild's SQL (a row's ``body`` is JSON text)."""
    if pg:
        return {
            "day": "CAST(substr(occurred_at, 1, 10) AS date)",
            "items": "(SELECT COALESCE(SUM(CASE WHEN json_typeof(l->'qty') = 'number'"
            " THEN CAST(l->>'qty' AS bigint) ELSE 1 END), 0)"
            " FROM json_array_elements(CAST(body AS json)->'lines') l)",
            "lines": "COALESCE(json_array_length(CAST(body AS json)->'lines'), 0)",
            "start": "CAST(date_trunc(k.kind, x.day) AS date)",
            "kinds": "(VALUES ('month'), ('quarter'), ('year')) AS k(kind)",
            "by": "CASE WHEN substr(m.birthday, 1, 4) ~ '^[0-9]{4}$' THEN CASE WHEN"
            " CAST(substr(m.birthday, 1, 4) AS integer) BETWEEN 1900 AND 2100 THEN"
            " CAST(substr(m.birthday, 1, 4) AS integer) END END",
            "reg_day": "CAST(substr(m.registered_at, 1, 10) AS date)",
            "true": "TRUE",
        }
    return {
        "day": "substr(occurred_at, 1, 10)",
        "items": "(SELECT COALESCE(SUM(CASE WHEN json_type(l.value, '$.qty') = 'integer'"
        " THEN json_extract(l.value, '$.qty') ELSE 1 END), 0) FROM json_each(body, '$.lines') l)",
        "lines": "COALESCE(json_array_length(body, '$.lines'), 0)",
        "start": "CASE k.kind WHEN 'day' THEN x.day WHEN 'month' THEN strftime('%Y-%m-01', x.day)"
        " WHEN 'quarter' THEN printf('%s-%02d-01', strftime('%Y', x.day),"
        " (CAST(strftime('%m', x.day) AS INTEGER) - 1) / 3 * 3 + 1)"
        " ELSE strftime('%Y-01-01', x.day) END",
        "kinds": "(SELECT 'month' AS kind UNION ALL SELECT 'quarter' UNION ALL SELECT 'year') k",
        "by": "CASE WHEN CAST(substr(m.birthday, 1, 4) AS INTEGER) BETWEEN 1900 AND 2100"
        " AND length(m.birthday) >= 4 AND substr(m.birthday, 1, 4) NOT GLOB '*[^0-9]*'"
        " THEN CAST(substr(m.birthday, 1, 4) AS INTEGER) END",
        "reg_day": "substr(m.registered_at, 1, 10)",
        "true": "1",
    }


def rebuild(db: pw.Database, since: dt.date | None = None) -> dict[str, int]:
    """Rebuild the summaries from the sales, returns and members (they are derived data),
    set based, in one transaction: everything, or (``since``) the periods from the year
    that contains ``since`` on (every period kind starting on or after that year's first
    day), members' rows kept. The member groups (tier, card type, gender, birth year) are
    the member's current ones. Returns the rows written per table."""
    pg = is_postgres(db)
    x = _sql_parts(pg)
    lower = None if since is None else period_containing("year", since).start
    q = "%s" if pg else "?"
    params = [] if lower is None else [lower.isoformat()]
    cond = "" if lower is None else f" AND substr(occurred_at, 1, 10) >= {q}"
    # the sales and returns, one row each: the texts are fixed, the lower day bound
    rows = (
        f"SELECT store, member_id, {x['day']} AS day, 1 AS tk, total AS sf, 0 AS rf,"
        f" {x['items']} AS it, 0 AS ri, {x['lines']} AS ln FROM sale WHERE 1=1{cond}"
        f" UNION ALL SELECT store, member_id, {x['day']}, 0, 0, refund_total, 0, {x['items']}, 0"
        f' FROM "return" WHERE 1=1{cond}'
    )
    with db.atomic():
        if lower is None:
            for model in (ReportStoreDay, ReportMemberSpend, ReportMember):
                model.delete().execute()
            db.execute_sql(
                "INSERT INTO report_member (member_id, home_store, staff, reg_day, first_day,"
                " gender, birth_year, merged)"
                f" SELECT m.id, m.registered_store, COALESCE(r.staff_code, m.staff_code), {x['reg_day']},"
                f" NULL, substr(COALESCE(m.gender, ''), 1, 1), {x['by']}, m.status = 'merged'"
                " FROM member m LEFT JOIN recruitment r ON r.member_id = m.id"
                " WHERE m.registered_at <> ''"
            )
        else:
            ReportStoreDay.delete().where(ReportStoreDay.day >= lower).execute()
            ReportMemberSpend.delete().where(ReportMemberSpend.start >= lower).execute()
        # the sales and returns read (and their JSON parsed) once, into a temporary table
        db.execute_sql("DROP TABLE IF EXISTS report_rebuild_rows")
        db.execute_sql(f"CREATE TEMPORARY TABLE report_rebuild_rows AS {rows}", params * 2)
        m_ = "CASE WHEN member_id IS NOT NULL THEN {} ELSE 0 END"
        db.execute_sql(
            "INSERT INTO report_store_day (store, day, tickets, sales_fen, returns_fen, items,"
            " returned_items, lines, m_tickets, m_sales_fen, m_returns_fen, m_items,"
            " m_returned_items, m_lines) SELECT store, day, SUM(tk), SUM(sf), SUM(rf), SUM(it),"
            f" SUM(ri), SUM(ln), SUM({m_.format('tk')}), SUM({m_.format('sf')}),"
            f" SUM({m_.format('rf')}), SUM({m_.format('it')}), SUM({m_.format('ri')}),"
            f" SUM({m_.format('ln')}) FROM report_rebuild_rows x GROUP BY store, day"
        )
        columns = (
            "INSERT INTO report_member_spend (kind, start, member_id, store, home_store, tickets,"
            " amount, items, first_day, last_day, tier, card_type, gender, birth_year)"
        )
        db.execute_sql(
            f"{columns} SELECT 'day', x.day, x.member_id, x.store, MAX(m.registered_store),"
            " SUM(x.tk), SUM(x.sf - x.rf), SUM(x.it - x.ri),"
            " MIN(CASE WHEN x.tk > 0 THEN x.day END), MAX(CASE WHEN x.tk > 0 THEN x.day END),"
            f" MAX(m.tier), MAX(m.card_type), MAX(COALESCE(m.gender, '')), MAX({x['by']})"
            " FROM report_rebuild_rows x JOIN member m ON m.id = x.member_id"
            " GROUP BY x.day, x.member_id, x.store"
        )
        db.execute_sql("DROP TABLE report_rebuild_rows")
        # months, quarters and years from the days
        start = x["start"].replace("x.day", "d.start")
        since_days = "" if lower is None else f" AND d.start >= {q}"
        db.execute_sql(
            f"{columns} SELECT k.kind, {start}, d.member_id, d.store, MAX(d.home_store),"
            " SUM(d.tickets), SUM(d.amount), SUM(d.items), MIN(d.first_day), MAX(d.last_day),"
            " MAX(d.tier), MAX(d.card_type), MAX(d.gender), MAX(d.birth_year)"
            f" FROM report_member_spend d CROSS JOIN {x['kinds']} WHERE d.kind = 'day'{since_days}"
            f" GROUP BY k.kind, {start}, d.member_id, d.store",
            params,
        )
        db.execute_sql(
            "UPDATE report_member SET first_day = (SELECT MIN(s.first_day) FROM"
            " report_member_spend s WHERE s.kind = 'year' AND s.member_id = report_member.member_id),"
            " last_day = (SELECT MAX(s.last_day) FROM report_member_spend s WHERE s.kind = 'year'"
            " AND s.member_id = report_member.member_id)"
        )
    return {
        "store_days": ReportStoreDay.select().count(),
        "member_periods": ReportMemberSpend.select().count(),
        "members": ReportMember.select().count(),
    }


def backfill_last_day(db: pw.Database, batch: int = 5000) -> int:
    """``report_member.last_day`` of rows from before the column (they have a first day
    bought and no last): the latest of the member's year rows, ``batch`` members per
    statement and transaction, in member order (stopped half way, the next run does the
    rest). Returns how many rows it filled."""
    R = ReportMember
    todo = R.select().where(R.first_day.is_null(False) & R.last_day.is_null())
    q = "%s" if is_postgres(db) else "?"
    filled, after = 0, ""
    for _ in range(todo.count() // batch + 1):
        ids = [
            r.member_id for r in todo.where(R.member_id > after).order_by(R.member_id).limit(batch)
        ]
        if not ids:
            break
        with db.atomic():
            db.execute_sql(
                "UPDATE report_member SET last_day = (SELECT MAX(s.last_day) FROM"
                " report_member_spend s WHERE s.kind = 'year' AND s.member_id ="
                f" report_member.member_id) WHERE first_day IS NOT NULL AND last_day IS NULL"
                f" AND member_id > {q} AND member_id <= {q}",
                (after, ids[-1]),
            )
        filled += len(ids)
        after = ids[-1]
    return filled


__all__ = [
    "SPEND_KINDS",
    "backfill_last_day",
    "book_registration",
    "book_return",
    "book_sale",
    "business_day",
    "merge_reports",
    "rebuild",
    "is_postgres",
]
