# ruff: noqa: S608 - the SQL text is fixed (dialect pieces and placeholders); values are bound
"""The chain's routine lists (seeds/000 and 003), for any month or week, per store or
chain-wide, and the runs the scheduler stores on their day.

- 新会员激活 (``new_members``, month M): the members registered in the month before M.
- 生日祝福 (``birthdays``, month M): birthdays in M, solar or lunar (as celebrated in M).
- 沉睡会员唤醒 (``dormant``, month M): bought before, but nothing in the 3 calendar months
  before M's first (the KPI 沉睡会员's definition, hq/reports/kpis.py).
- 上周新会员回访 (``weekly_new``, the week from Monday W): registered in the week before
  W, with the call day a week (``weekly_call_days``) after their first purchase (or
  their registration when they have not bought).

A stored run (``ListRun``) is the list as it was on its day: its members
(``ListRunMember``) are written once by one INSERT ... SELECT, so a campaign that takes
it reaches the same members however the data moves on. Producing a run twice for the
same list, month and scope returns the first one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import peewee as pw

from core.birthday import Birthday
from core.errors import NotFound, ValidationError
from hq.access.masking import mask_name, mask_phone
from hq.access.roles import Principal
from hq.marketing import audience, settings
from hq.marketing.audience import LISTS, Builder, Part
from hq.models import ListRun, ListRunMember, Store
from hq.reports.export import Column, Table
from hq.reports.periods import add_months

MONTHLY = ("new_members", "birthdays", "dormant")
WEEKLY = ("weekly_new",)
EXPORT_MAX_ROWS = 100_000


def list_spec(kind: str, start: dt.date, store: str | None = None) -> dict[str, Any]:
    """The audience spec of a list for the month (or week) from ``start``."""
    cond: dict[str, Any] = {"kind": "list", "list": kind}
    if kind in WEEKLY:
        cond["week"] = start.isoformat()
    else:
        cond["month"] = start.strftime("%Y-%m")
    conditions: list[dict[str, Any]] = [cond]
    if store:
        conditions.append({"kind": "store", "by": "registered", "values": [store]})
    return {"conditions": conditions}


def describe(kind: str, start: dt.date) -> str:
    """The list's title: 2026-12 新会员激活 (2026-11 注册的会员)."""
    if kind == "segment":
        return f"{start} 分群快照"
    if kind == "new_members":
        return f"{start:%Y-%m} {LISTS[kind]} ({add_months(start, -1):%Y-%m} 注册的会员)"
    if kind == "birthdays":
        return f"{start:%Y-%m} {LISTS[kind]} (本月生日, 含农历)"
    if kind == "dormant":
        return f"{start:%Y-%m} {LISTS[kind]} ({add_months(start, -3):%Y-%m} 起3个月未消费)"
    week = start - dt.timedelta(days=7)
    return f"{start} 当周{LISTS[kind]} ({week} 至 {start - dt.timedelta(days=1)} 注册)"


def current_start(kind: str, today: dt.date) -> dt.date:
    """The month (first) or week (Monday) a list made today is for."""
    if kind in WEEKLY:
        return today - dt.timedelta(days=today.weekday())
    return today.replace(day=1)


def builder(
    db: pw.Database, kind: str, start: dt.date, store: str | None, today: dt.date
) -> Builder:
    return audience.compile_spec(db, list_spec(kind, start, store), settings.current(db), today)


def _day_expr(b: Builder, kind: str, call_days: int) -> str:
    """The list's date for each member, as SQL: the call day (weekly), the registration
    day (new members), none for the others (computed when shown)."""
    if kind == "weekly_new":
        if b.pg:
            return f"(COALESCE(r.first_day, r.reg_day) + {int(call_days)})"
        return f"date(COALESCE(r.first_day, r.reg_day), '+{int(call_days)} days')"
    if kind == "new_members":
        return "r.reg_day"
    return "NULL"


def produce(
    db: pw.Database, kind: str, start: dt.date, now: dt.datetime, by: str, today: dt.date
) -> tuple[ListRun, bool]:
    """Store the chain-wide list ``kind`` for ``start`` (idempotent: an existing run is
    returned as it is). Returns the run and whether this call made it."""
    if kind not in LISTS:
        raise ValidationError(f"未知的名单: {kind} (unknown list)", field="kind")
    b = builder(db, kind, start, None, today)
    day = _day_expr(b, kind, settings.current(db)["weekly_call_days"])
    return _store(db, b, kind, start, "", day, now, by)


def snapshot_segment(
    db: pw.Database, segment: Any, now: dt.datetime, by: str, today: dt.date
) -> tuple[ListRun, bool]:
    """Store a saved segment's members as of ``today`` (a campaign's stable audience;
    one per segment and day: a second call that day returns the first)."""
    b = audience.compile_spec(db, {"conditions": segment.conditions}, settings.current(db), today)
    return _store(db, b, "segment", today, f"segment:{segment.id}", "NULL", now, by)


def _store(
    db: pw.Database,
    b: Builder,
    kind: str,
    start: dt.date,
    scope: str,
    day: str,
    now: dt.datetime,
    by: str,
) -> tuple[ListRun, bool]:
    """The run of ``kind``, ``start`` and ``scope``: found, or made with its members
    (one INSERT ... SELECT)."""
    which = (ListRun.kind == kind) & (ListRun.start == start) & (ListRun.scope == scope)
    found = ListRun.get_or_none(which)
    if found is not None:
        return found, False
    try:
        with db.atomic():
            run = ListRun.create(kind=kind, start=start, scope=scope, made_at=now, made_by=by)
            # the run id as a literal integer: the CTEs' parameters come first in the text
            select = b.sql(f"{int(run.id)}, m.id, {day}")
            insert = f"INSERT INTO list_run_member (run, member_id, day) {select.text}"
            b.execute(Part(insert, select.params))
            run.members = ListRunMember.select().where(ListRunMember.run == run.id).count()
            run.save()
    except pw.IntegrityError:
        # another node made it at the same moment: theirs stands
        return ListRun.get(which), False
    return run, True


def scheduled(db: pw.Database, today: dt.date, now: dt.datetime) -> dict[str, int]:
    """The scheduler's job: this month's three lists (made on the 1st, or on the first
    run after it if HQ was down) and this week's list (Monday, likewise)."""
    made = 0
    for kind in MONTHLY + WEEKLY:
        _, new = produce(db, kind, current_start(kind, today), now, "scheduler", today)
        made += int(new)
    return {"lists_made": made}


def lists_job(ctx: Any) -> dict[str, int]:
    """The scheduler's ``marketing-lists`` job (hq/scheduler.py JOBS, hourly): ``scheduled``
    for the chain's business day."""
    return scheduled(ctx.db, ctx.today(), ctx.clock())


def runs_for(month: dt.date) -> list[ListRun]:
    """The stored runs of a month: its monthly lists and the weeks that run into it."""
    end = add_months(month, 1)
    monthly = ListRun.kind.in_(MONTHLY) & (ListRun.start == month)
    # the weeks that run into the month (a week from Monday 30 November is December's too)
    weekly = ListRun.kind.in_(WEEKLY) & (ListRun.start > month - dt.timedelta(days=7))
    return list(
        ListRun.select()
        .where((monthly | (weekly & (ListRun.start < end))) & (ListRun.scope == ""))
        .order_by(ListRun.start, ListRun.kind)
    )


def get_run(run_id: int) -> ListRun:
    run = ListRun.get_or_none(ListRun.id == run_id)
    if run is None:
        raise NotFound(f"名单不存在: {run_id} (no such list run)", field="run")
    return run


def run_builder(db: pw.Database, run: ListRun, stores: list[str] | None) -> Builder:
    """An audience over a stored run's members (optionally the given stores' only)."""
    b = Builder(db)
    b.joins.append(Part("JOIN list_run_member lm ON lm.member_id = m.id AND lm.run = ?", [run.id]))
    if stores is not None:
        b.where.append(b.one_of("m.registered_store", stores))
    return b


def run_member_ids(run: ListRun, after: str = "", limit: int = 5000) -> list[str]:
    """A campaign's page of a stored run: member ids ascending after ``after``, read
    straight from the run's primary key (an index range, whatever the run's size)."""
    M = ListRunMember
    query = (
        M.select(M.member_id)
        .where((M.run == run.id) & (M.member_id > after))
        .order_by(M.member_id)
        .limit(limit)
    )
    return [mid for (mid,) in query.tuples()]


def iter_run_member_ids(run: ListRun, page: int = 5000) -> Iterator[str]:
    """Every member id of a stored run, page by page (keyset)."""
    return audience.keyset(lambda after, limit: run_member_ids(run, after, limit), page)


# ---- the rows a screen or an export shows ------------------------------------------------


@dataclass(frozen=True)
class Row:
    member_id: str
    name: str
    phone: str | None
    store: str | None
    reg_day: str | None
    first_day: str | None
    last_day: str | None
    birthday: str | None  # the day it is celebrated in the list's month, or masked
    calendar: str
    tier: str | None
    card_type: str | None
    maintainer: str | None
    day: str | None  # the run's date for the member (the call day of the weekly list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:10]


def rows_for(
    db: pw.Database,
    b: Builder,
    principal: Principal,
    kind: str | None = None,
    start: dt.date | None = None,
    after: str = "",
    limit: int = 100,
    with_day: bool = False,
) -> list[Row]:
    """A keyset page of the audience as rows, masked for ``principal``
    (hq/access/masking.py: the phone always, the name and birthday without members.pii)."""
    day = "lm.day" if with_day else "NULL"
    b.where.append(Part("m.id > ?", [after]))
    try:
        found = b.run(
            b.sql(
                "m.id, m.name, m.phone, m.registered_store, r.reg_day, r.first_day, m.birthday,"
                f" m.birthday_calendar, m.birthday_leap_month, m.tier, m.card_type, m.staff_code, {day}",
                Part("ORDER BY m.id LIMIT ?", [int(limit)]),
            )
        )
    finally:
        b.where.pop()
    last = _last_days(b, [r[0] for r in found])
    pii = principal.can("members.pii")
    out = []
    for mid, name, phone, store, reg, first, bday, cal, leap, tier, ctype, staff, d in found:
        out.append(
            Row(
                member_id=mid,
                name=name if pii else (mask_name(name) or ""),
                phone=mask_phone(phone),
                store=store,
                reg_day=_text(reg),
                first_day=_text(first),
                last_day=last.get(mid),
                birthday=_birthday(bday, cal, bool(leap), kind, start, pii),
                calendar="农历" if cal == "lunar" else "公历",
                tier=tier,
                card_type=ctype,
                maintainer=staff,
                day=_text(d),
            )
        )
    return out


def _last_days(b: Builder, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    inside = b.one_of("member_id", ids)
    rows = b.run(
        Part(
            "SELECT member_id, MAX(last_day) FROM report_member_spend WHERE kind = 'year'"
            f" AND {inside.text} GROUP BY member_id",
            inside.params,
        )
    )
    return {mid: str(day)[:10] for mid, day in rows if day is not None}


def _birthday(
    text: str | None, calendar: str, leap: bool, kind: str | None, start: dt.date | None, pii: bool
) -> str | None:
    if not text:
        return None
    if not pii:
        return f"**-{text[-5:-3]}-**" if calendar != "lunar" else "农历**月"
    if kind == "birthdays" and start is not None:
        try:
            b = Birthday.parse(
                text[-5:], calendar if calendar in ("solar", "lunar") else "solar", leap
            )
        except ValidationError:
            return text
        for year in (start.year - 1, start.year):
            day = b.in_year(year)
            if day is not None and (day.year, day.month) == (start.year, start.month):
                label = f"{day.isoformat()}"
                return (
                    f"{label} (农历{'闰' if leap else ''}{b.month}月{b.day}日)"
                    if calendar == "lunar"
                    else label
                )
    return text


COLUMNS = {
    "member_id": Column("member_id", "会员号"),
    "name": Column("name", "姓名"),
    "phone": Column("phone", "手机号"),
    "store": Column("store", "开卡门店"),
    "reg_day": Column("reg_day", "开卡日期"),
    "first_day": Column("first_day", "首次消费"),
    "last_day": Column("last_day", "最近消费"),
    "birthday": Column("birthday", "生日"),
    "calendar": Column("calendar", "历法"),
    "tier": Column("tier", "等级"),
    "card_type": Column("card_type", "卡类型"),
    "maintainer": Column("maintainer", "维护人"),
    "day": Column("day", "回访日"),
}
_WHO = ("member_id", "name", "phone", "store")
LIST_COLUMNS: dict[str | None, tuple[str, ...]] = {
    "new_members": (*_WHO, "reg_day", "first_day", "maintainer", "tier"),
    "birthdays": (*_WHO, "birthday", "calendar", "maintainer", "tier"),
    "dormant": (*_WHO, "last_day", "reg_day", "maintainer", "tier"),
    "weekly_new": (*_WHO, "reg_day", "first_day", "day", "maintainer"),
    None: (*_WHO, "reg_day", "last_day", "tier", "card_type", "maintainer"),
}


def table(title: str, rows: list[Row], kind: str | None, notes: list[tuple[str, str]]) -> Table:
    """The rows as a report table (hq/reports/export.py writes it as .xlsx or CSV)."""
    keys = LIST_COLUMNS[kind]
    out = Table(title, [COLUMNS[k] for k in keys], notes=list(notes))
    for row in rows:
        values = row.to_dict()
        out.rows.append([values[k] for k in keys])
    return out


def all_rows(db: pw.Database, b: Builder, principal: Principal, **kw: Any) -> list[Row]:
    """Every row of an audience for an export (at most ``EXPORT_MAX_ROWS``: a larger one
    is refused, to be narrowed by store)."""
    total = audience.count(b)
    if total > EXPORT_MAX_ROWS:
        raise ValidationError(
            f"名单有 {total} 人, 超过导出上限 {EXPORT_MAX_ROWS}, 请按门店导出"
            f" (too many rows to export: {total}; export per store)",
            field="store",
        )
    rows: list[Row] = []
    after = ""
    while True:
        page = rows_for(db, b, principal, after=after, limit=5000, **kw)
        rows += page
        if len(page) < 5000:
            return rows
        after = page[-1].member_id


def store_names() -> dict[str, str]:
    return {s.code: s.name for s in Store.select(Store.code, Store.name)}
