"""The scheduler's rollup of the distinct-member figures (job ``reports-rollup``).

Counting distinct members over a week, month, quarter or year of a chain (tens to
hundreds of thousands of member rows) takes up to seconds; the dashboard and reports
must answer in under one. So for week, month, quarter and year periods these counts are
computed here, per
scope at once (grouped queries), and stored in ``report_rollup``; ``kpis.figures``
reads them (and computes live when a period was never rolled up). Additive figures
(sales, tickets, shares, per-ticket figures) are always live from ``report_store_day``.

Freshness: each run rolls up the periods containing today and the day a week ago (so
the current month, quarter and year, and the previous ones for a week after they
close, take late sales from stores that were offline), and the running month, quarter
and year to today with the previous period and last year's to the same day (what the
dashboard compares to date: 本月至今 against 上月同期 and 去年同期); ``reports-rebuild``
rolls up every whole period. A period to date is keyed by its last day, and a run keeps
one per (kind, start): yesterday's cut of a period goes when today's is written. Sales that arrive later than a week are in the live figures of day
periods at once, and in week/month/quarter/year after ``reports-rebuild --from``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from hq.models import ReportRollup, ReportStoreDay, utcnow
from hq.reports import kpis
from hq.reports.periods import Period, period_containing

ROLLED_KINDS = ("week", "month", "quarter", "year")
TO_DATE_KINDS = ("month", "quarter", "year")  # a week to date is small enough to count live
RECENT_DAYS = 7  # a run also rolls up the periods containing the day this long ago


def rollup(db: pw.Database, period: Period, now: dt.datetime | None = None) -> int:
    """Compute and store one period's rollup rows; the number of rows written."""
    if period.kind not in ROLLED_KINDS:
        raise ValueError(f"only {ROLLED_KINDS} are rolled up, not {period.kind}")
    if period.is_cut and period.kind not in TO_DATE_KINDS:
        raise ValueError(f"a {period.kind} to date is counted live, not rolled up")
    now = now or utcnow()
    until = _until(period)
    rows: list[dict[str, Any]] = []

    def add(scope_kind: str, key: str, data: tuple[int, ...]) -> None:
        rows.append(
            {
                "kind": period.kind,
                "start": period.start,
                "until": until,
                "scope_kind": scope_kind,
                "scope_key": key,
                "data": list(data),
                "computed_at": now,
            }
        )

    chain = kpis.buyers_raw(db, period).get("")
    add("chain", "", chain or (0,) * len(kpis.BUYER_FIELDS))
    for by in ("area", "store"):
        for key, data in kpis.buyers_raw(db, period, None, by).items():
            add(by, key, data)
    for home, data in kpis.base_raw(db, period).items():
        add("home", home, data)
    for by in kpis.GROUP_COLUMNS:  # 贡献率: per store and group, and the chain's own
        for per_store in (False, True):
            for (store, group), data in kpis.group_raw(db, by, period, None, per_store).items():
                add(f"g:{by}", f"{store}|{group}", data)
    R = ReportRollup
    same = (R.kind == period.kind) & (R.start == period.start)
    with db.atomic():
        # the whole period's rows, or every cut of it (one cut kept per period)
        R.delete().where(same & ((R.until == "") if not until else (R.until != ""))).execute()
        for i in range(0, len(rows), 500):
            R.insert_many(rows[i : i + 500]).execute()
    return len(rows)


def _until(period: Period) -> str:
    return period.last_day.isoformat() if period.is_cut else ""


def recent_periods(today: dt.date) -> list[Period]:
    """The whole periods a run rolls up, then the periods to date the dashboard compares:
    each running month, quarter and year to ``today``, the previous one and last year's
    to the same day (kpis.compare)."""
    out: list[Period] = []
    for day in (today, today - dt.timedelta(days=RECENT_DAYS)):
        for kind in ROLLED_KINDS:
            p = period_containing(kind, day)
            if p not in out:
                out.append(p)
    for kind in TO_DATE_KINDS:
        running = period_containing(kind, today)
        if today < running.last_day:  # on its last day the period is compared whole
            cut = running.until(today)
            for q in (cut, cut.previous(), cut.same_last_year()):  # a year's two are one
                if q.is_cut and q not in out:
                    out.append(q)
    return out


def rollup_recent(db: pw.Database, today: dt.date) -> dict[str, int]:
    return {
        f"{p.kind}:{p.key}" + (f":to:{_until(p)}" if p.is_cut else ""): rollup(db, p)
        for p in recent_periods(today)
    }


def rollup_all(db: pw.Database, today: dt.date | None = None) -> int:
    """Roll up every week, month, quarter and year from the first business day with sales
    to ``today``; the number of periods."""
    first = ReportStoreDay.select(pw.fn.MIN(ReportStoreDay.day)).scalar()
    if first is None:
        return 0
    if isinstance(first, str):
        first = dt.date.fromisoformat(first)
    today = today or dt.date.today()
    n = 0
    for kind in ROLLED_KINDS:
        p = period_containing(kind, first)
        while p.start <= today:  # bounded: periods from the first sale to today
            rollup(db, p)
            n += 1
            p = p.next()
    return n


def rollup_job(ctx: Any) -> dict[str, int]:
    """The scheduler job: the recent periods, for the chain's business day."""
    done = rollup_recent(ctx.db, ctx.today())
    return {"periods": len(done), "rows": sum(done.values())}


# ---- reading ------------------------------------------------------------------------


def _of(period: Period) -> Any:
    """The rows of this period: whole, or cut at the same day (a cut rolled up for another
    day is not this period's)."""
    R = ReportRollup
    return (R.kind == period.kind) & (R.start == period.start) & (R.until == _until(period))


def _rolled(db: pw.Database, period: Period) -> bool:
    R = ReportRollup
    return (
        period.kind in ROLLED_KINDS
        and R.select().where(_of(period) & (R.scope_kind == "chain") & (R.scope_key == "")).exists()
    )


def buyers_for(
    db: pw.Database, scope_kind: str, key: str, period: Period
) -> tuple[int, ...] | None:
    """The rolled-up buyers' counts of a chain, area or store scope (zeros when the scope
    had no buyers); None when the period is not rolled up."""
    if not _rolled(db, period):
        return None
    R = ReportRollup
    row = R.get_or_none(_of(period) & (R.scope_kind == scope_kind) & (R.scope_key == key))
    return tuple(row.data) if row is not None else (0,) * len(kpis.BUYER_FIELDS)


def rows_for(db: pw.Database, scope_kind: str, period: Period) -> dict[str, tuple[int, ...]] | None:
    """Every rolled-up row of one scope kind (store, area, home) for the period."""
    if not _rolled(db, period):
        return None
    R = ReportRollup
    query = R.select(R.scope_key, R.data).where(_of(period) & (R.scope_kind == scope_kind))
    return {r.scope_key: tuple(r.data) for r in query}
