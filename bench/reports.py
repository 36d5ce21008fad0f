"""Reports benchmark: every KPI report and dashboard call on a chain-sized PostgreSQL
database (issue 12: 200 stores, 1,000,000 members, 10,000,000 sales, p95 < 1 s).

A fresh PostgreSQL database (``HY_TEST_PG`` admin DSN, as the tests use; created and
dropped by the run) is loaded set-based (``INSERT ... SELECT`` from ``generate_series``):
``--stores`` stores in 10 areas with 10 staff each, ``--members`` members registered over
the two years before the business day (home store, recruiter, gender, birthday, card
type, tier), ``--sales`` sales over the same two years (30% walk-ins, the rest by a member
on or after their registration day, 1 to 3 lines), 1% of them returned, and coupons
(one per 5 sales, a quarter from campaigns, 30% used). The KPIs' summary tables are then
built with ``hq.reports.summary.rebuild`` and every month, quarter and year rolled up
(what ``huiyuan-hq reports-rebuild`` runs; the ingest keeps the summaries up to date as
it applies each sale, the ``reports-rollup`` job the rollup every 30 minutes: one run
of it is timed too).

Then each report is timed ``--runs`` times with varied periods (day, week, month,
quarter, year ending in the last two years) and stores / areas / staff, and its p95
taken. In the same run, the raw baseline: one full aggregate scan over the sales table
(``SELECT count(*), sum(total) FROM sale``).

Prints figures and ratios; the last line is one JSON object with ``members``, ``sales``,
``stores``, ``reports`` (name -> p95 ms), ``max_p95_ms`` and ``baseline_scan_ms``.

    .venv/bin/python bench/reports.py                                   # full scale
    .venv/bin/python bench/reports.py --stores 20 --members 20000 --sales 200000   # quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import peewee as pw  # noqa: E402

from bench.programme import pg_database  # noqa: E402
from hq.models import bind, open_database  # noqa: E402
from hq.reports import kpis, rollup, summary  # noqa: E402
from hq.reports.periods import Scope, period_containing  # noqa: E402

DAY = dt.date(2026, 12, 5)  # the business day: history is the 730 days before it
HISTORY_DAYS = 730
AREAS = ("华东", "华南", "华北", "华中", "西南", "西北", "东北", "京津", "长三角", "珠三角")


def log(msg: str) -> None:
    print(msg, flush=True)


# ---- loading ----------------------------------------------------------------------------


def run(db: pw.Database, sql: str) -> None:
    with db.atomic():
        db.execute_sql(sql.replace("%", "%%"), ())  # no parameters: % is SQL's modulo


MEMBER_ID = "md5(({m})::text)::uuid::text"
STORE = "'S' || lpad((({n}) % {stores})::text, 3, '0')"


def load(db: pw.Database, stores: int, members: int, sales: int) -> None:
    at = "'2026-12-04 18:00:00'"
    day = DAY.isoformat()
    areas = "ARRAY[" + ", ".join(f"'{a}'" for a in AREAS) + "]"
    run(
        db,
        "INSERT INTO store (code, name, epoch, acked_through, reported_seq, online, down_cursor,"
        f" created_at, area) SELECT {STORE.format(n='i', stores=stores)}, '门店' || i, 1, 0, 0,"
        f" FALSE, 0, {at}, ({areas})[i % 10 + 1] FROM generate_series(0, {stores - 1}) i",
    )
    run(
        db,
        "INSERT INTO staff_member (code, name, store, role, status, created_at, updated_at)"
        f" SELECT 'E' || lpad(i::text, 5, '0'), '店员' || i, {STORE.format(n='i / 10', stores=stores)},"
        f" 'guide', 'active', {at}, {at} FROM generate_series(0, {stores * 10 - 1}) i",
    )
    # member i: registered r(i) = (i * 7919) % 700 days before the business day's eve
    reg = f"(DATE '{day}' - 1 - ((i * 7919) % {HISTORY_DAYS - 30})::int)"
    run(
        db,
        "INSERT INTO member (id, name, phone, gender, birthday, birthday_calendar,"
        " birthday_leap_month, card_type, tier, staff_code, registered_at, registered_utc,"
        " registered_store, status, sv_principal, sv_bonus, points, through, created_at,"
        " updated_at, growth, occupation, notes, profile_score)"
        f" SELECT {MEMBER_ID.format(m='i')}, '会员' || i, '139' || lpad(i::text, 8, '0'),"
        " CASE WHEN i % 3 = 0 THEN 'M' ELSE 'F' END,"
        " (1950 + i % 55)::text || '-0' || (1 + i % 9)::text || '-15', 'solar', FALSE,"
        " (ARRAY['普通卡', '银卡', '年卡'])[i % 3 + 1],"
        " CASE WHEN i % 4 = 0 THEN NULL ELSE (ARRAY['银卡', '金卡', '钻石'])[i % 3 + 1] END,"
        f" 'E' || lpad(((i % {stores}) * 10 + i % 7)::text, 5, '0'),"
        f" to_char({reg}, 'YYYY-MM-DD') || 'T10:00:00+08:00', {reg} + TIME '02:00',"
        f" {STORE.format(n='i', stores=stores)}, 'active', 0, 0, 0, '{{}}', {at}, {at}, 0, '', '', 0"
        f" FROM generate_series(1::bigint, {members}) i",
    )
    # sale i: a walk-in when i % 10 < 3, else member m(i) on a day from their registration
    m = f"(((i * 104729) % {members}) + 1)"
    reg_m = f"((({m}) * 7919) % {HISTORY_DAYS - 30})::int"  # member m's r(m)
    sale_day = f"(DATE '{day}' - 1 - {reg_m} + ((i * 31) % ({reg_m} + 1))::int)"
    walk_day = f"(DATE '{day}' - 1 - ((i * 7) % {HISTORY_DAYS})::int)"
    body = (
        'CASE i % 3 WHEN 0 THEN \'{"lines": [{"qty": 1}]}\' WHEN 1 THEN'
        ' \'{"lines": [{"qty": 2}, {"qty": 1}]}\' ELSE'
        ' \'{"lines": [{"qty": 1}, {"qty": 1}, {"qty": 3}]}\' END'
    )
    run(
        db,
        "INSERT INTO sale (sale_id, store, seq, member_id, total, rules_version, offline,"
        " occurred_at, body, ingested_at)"
        f" SELECT 'SALE' || i,"
        f" CASE WHEN i % 10 < 3 THEN {STORE.format(n='i', stores=stores)}"
        f" ELSE {STORE.format(n=m, stores=stores)} END, i,"
        f" CASE WHEN i % 10 < 3 THEN NULL ELSE {MEMBER_ID.format(m=m)} END,"
        " 500 + (i * 7919) % 40000, 1, FALSE,"
        f" to_char(CASE WHEN i % 10 < 3 THEN {walk_day} ELSE {sale_day} END, 'YYYY-MM-DD')"
        f" || 'T' || lpad((9 + i % 12)::text, 2, '0') || ':30:00+08:00', {body}, {at}"
        f" FROM generate_series(1::bigint, {sales}) i",
    )
    run(
        db,
        'INSERT INTO "return" (return_id, sale_id, store, seq, member_id, refund_total,'
        " occurred_at, body, ingested_at) SELECT 'RET' || sale_id, sale_id, store, seq, member_id,"
        ' total / 2, occurred_at, \'{"lines": [{"qty": 1}]}\', ingested_at FROM sale'
        " WHERE seq % 100 = 7",
    )
    coupons = max(1, sales // 5)
    run(
        db,
        "INSERT INTO coupon (code, member_id, value, status, issued_at, source, issued_store)"
        f" SELECT 'C' || i, {MEMBER_ID.format(m=f'(i % {members}) + 1')}, 1000,"
        " CASE WHEN i % 10 < 3 THEN 'used' ELSE 'issued' END,"
        f" TIMESTAMP '{day} 00:00' - ((i * 13) % {HISTORY_DAYS * 24}) * INTERVAL '1 hour',"
        " CASE WHEN i % 4 = 0 THEN 'campaign' ELSE 'hq' END,"
        f" {STORE.format(n='i', stores=stores)} FROM generate_series(1::bigint, {coupons}) i",
    )


# ---- timing -----------------------------------------------------------------------------


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(0.95 * len(ordered))) - 1))]


def reports(stores: int) -> dict[str, Callable[[pw.Database, random.Random], Any]]:
    """Each report or dashboard call, with its period and scope varied by ``rng``."""

    def day(rng: random.Random) -> dt.date:
        return DAY - dt.timedelta(days=1 + rng.randrange(HISTORY_DAYS - 400))

    def store(rng: random.Random) -> Scope:
        return Scope("store", f"S{rng.randrange(stores):03d}")

    def area(rng: random.Random) -> Scope:
        return Scope("area", AREAS[rng.randrange(min(10, stores))])

    def staff(rng: random.Random) -> Scope:
        return Scope("staff", f"E{rng.randrange(stores * 10):05d}")

    def p(kind: str, rng: random.Random):  # noqa: ANN202
        return period_containing(kind, day(rng))

    def to_date(db: pw.Database, kind: str, scope: Scope) -> Any:
        """The dashboard on the business day: the running period so far against the
        previous one and last year's to the same day (read from the rollup the
        reports-rollup job wrote for today; counted live were it missing)."""
        return kpis.compare(db, scope, period_containing(kind, DAY), dash, to_date=DAY)

    dash = kpis.DASHBOARD_KEYS
    return {
        "dashboard_chain_day": lambda db, r: kpis.compare(db, Scope("chain"), p("day", r), dash),
        "dashboard_chain_week": lambda db, r: kpis.compare(db, Scope("chain"), p("week", r), dash),
        "dashboard_chain_month": lambda db, r: kpis.compare(
            db, Scope("chain"), p("month", r), dash
        ),
        "dashboard_store_month": lambda db, r: kpis.compare(db, store(r), p("month", r), dash),
        "dashboard_area_week": lambda db, r: kpis.compare(db, area(r), p("week", r), dash),
        "figures_chain_month": lambda db, r: kpis.figures(db, Scope("chain"), p("month", r)),
        "figures_chain_quarter": lambda db, r: kpis.figures(db, Scope("chain"), p("quarter", r)),
        "figures_chain_year": lambda db, r: kpis.figures(db, Scope("chain"), p("year", r)),
        "figures_area_month": lambda db, r: kpis.figures(db, area(r), p("month", r)),
        "figures_store_month": lambda db, r: kpis.figures(db, store(r), p("month", r)),
        "figures_store_year": lambda db, r: kpis.figures(db, store(r), p("year", r)),
        "figures_staff_month": lambda db, r: kpis.figures(db, staff(r), p("month", r)),
        "compare_chain_month_all": lambda db, r: kpis.compare(db, Scope("chain"), p("month", r)),
        "breakdown_store_month": lambda db, r: kpis.breakdown(db, "store", p("month", r)),
        "breakdown_area_quarter": lambda db, r: kpis.breakdown(db, "area", p("quarter", r)),
        "breakdown_tier_month": lambda db, r: kpis.breakdown(db, "tier", p("month", r)),
        "breakdown_gender_year": lambda db, r: kpis.breakdown(db, "gender", p("year", r)),
        "breakdown_staff_store_month": lambda db, r: kpis.breakdown(
            db, "staff", p("month", r), store(r)
        ),
        "series_chain_12_months": lambda db, r: kpis.series(
            db, Scope("chain"), "month", 12, day(r)
        ),
        "series_store_30_days": lambda db, r: kpis.series(db, store(r), "day", 30, day(r)),
        "dashboard_chain_month_to_date": lambda db, r: to_date(db, "month", Scope("chain")),
        "dashboard_store_month_to_date": lambda db, r: to_date(db, "month", store(r)),
        "dashboard_area_month_to_date": lambda db, r: to_date(db, "month", area(r)),
        "dashboard_chain_quarter_to_date": lambda db, r: to_date(db, "quarter", Scope("chain")),
        "dashboard_chain_year_to_date": lambda db, r: to_date(db, "year", Scope("chain")),
    }


def bench(db: pw.Database, runs: int, stores: int, result: dict[str, Any]) -> None:
    rng = random.Random(12)
    out: dict[str, float] = {}
    sample: dict[str, Any] = {}
    for name, call in reports(stores).items():
        call(db, rng)  # one warm-up (the first touch of a table's pages)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            value = call(db, rng)
            times.append((time.perf_counter() - start) * 1000)
        out[name] = round(p95(times), 1)
        sample[name] = value
        log(f"  {name:32s} p95 {out[name]:8.1f} ms  (median {sorted(times)[len(times) // 2]:.1f})")
    result["reports"] = out
    result["max_p95_ms"] = max(out.values())
    month = sample["figures_chain_month"]
    log(
        "  a chain month's figures, e.g.: "
        + ", ".join(f"{k}={kpis.as_json(month[k])}" for k in list(month)[:12])
    )


def baseline(db: pw.Database, result: dict[str, Any]) -> None:
    start = time.perf_counter()
    count, total = db.execute_sql("SELECT count(*), sum(total) FROM sale").fetchone()
    ms = (time.perf_counter() - start) * 1000
    result["baseline_scan_ms"] = round(ms, 1)
    log(f"baseline: one full aggregate scan over sale ({count:,} rows, {total:,} fen): {ms:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--sales", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per report")
    parser.add_argument("--load-only", action="store_true", help="load, keep the database, stop")
    parser.add_argument("--reuse-db", default=None, help="time a database a --load-only run kept")
    args = parser.parse_args()
    if not (1 <= args.stores <= 999 and args.members >= 1 and args.sales >= 1):
        parser.error("--stores 1..999, --members and --sales at least 1")
    log(
        f"reports benchmark {dt.datetime.now().isoformat(timespec='seconds')} on "
        f"{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}), load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    url, drop = pg_database(args.reuse_db, keep=args.load_only)
    result: dict[str, Any] = {"members": args.members, "sales": args.sales, "stores": args.stores}
    try:
        db = open_database(url)
        bind(db)
        log(f"PostgreSQL {db.execute_sql('SHOW server_version').fetchone()[0]}, database {url}")
        start = time.perf_counter()
        if args.reuse_db:
            for key, table in (("stores", "store"), ("members", "member"), ("sales", "sale")):
                result[key] = db.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            log(f"reusing a loaded database: {result}")
        else:
            load(db, args.stores, args.members, args.sales)
            result["load_s"] = round(time.perf_counter() - start, 1)
            log(f"loaded {args.stores} stores, {args.members:,} members, {args.sales:,} sales")
            log(f"  in {result['load_s']} s")
        if args.load_only:
            db.close()
            return
        start = time.perf_counter()
        db.execute_sql("SET work_mem = '256MB'")
        counts = summary.rebuild(db)
        result["summary_build_s"] = round(time.perf_counter() - start, 1)
        result["summary_rows"] = counts
        log(f"summaries built (reports-rebuild) in {result['summary_build_s']} s: {counts}")
        db.execute_sql("VACUUM ANALYZE")
        start = time.perf_counter()
        periods = rollup.rollup_all(db, DAY)
        result["rollup_all_s"] = round(time.perf_counter() - start, 1)
        log(f"rolled up {periods} weeks, months, quarters and years in {result['rollup_all_s']} s")
        start = time.perf_counter()
        done = rollup.rollup_recent(db, DAY)
        result["rollup_job_s"] = round(time.perf_counter() - start, 1)
        log(f"one reports-rollup job run ({len(done)} periods): {result['rollup_job_s']} s")
        db.execute_sql("RESET work_mem")
        db.execute_sql("VACUUM ANALYZE")
        baseline(db, result)
        log(f"reports ({args.runs} runs each, varied periods and scopes):")
        bench(db, args.runs, args.stores, result)
        baseline(db, result)  # again after: the scan with the cache as warm as the reports'
        ratio = result["max_p95_ms"] / result["baseline_scan_ms"]
        log(
            f"slowest report p95 {result['max_p95_ms']} ms = {ratio:.3f} x one aggregate scan "
            f"of the sales ({result['baseline_scan_ms']} ms)"
        )
        result["max_p95_over_scan"] = round(ratio, 4)
        db.close()
    finally:
        drop()
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
