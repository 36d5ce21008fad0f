"""Programme benchmark: HQ's nightly jobs on a chain-sized PostgreSQL database.

A fresh PostgreSQL database (``HY_TEST_PG`` admin DSN, as the tests use; created and
dropped by the run) is loaded set-based (``INSERT ... SELECT`` from ``generate_series``,
one statement per table) with ``--members`` members and ``--lots-per-member`` points
lots each (one ledger row per lot, so HQ's ledger equals its balances), and
``--sales-per-member`` sales in the tier window. Then, each against a raw SQL baseline
doing the same set-based update in the same run:

1. Points expiry: ``hq.programme.points.expire_points`` for the business day (what the
   ``points-expiry`` job runs: one ``expiry`` ledger row per lot past its last day that
   still holds points, the lots zeroed, the members' points lowered, every changed
   member's full state written to the change log for the stores). The baseline: the
   same ledger insert, lot update and member update in raw SQL, without the change log,
   rolled back before the job runs. ``--expired-percent`` of the lots are past their
   last day (their last days spread evenly over the ``--expired-percent`` share of a
   year before the business day: a backlog, e.g. the first run after an upgrade).
2. Tier evaluation: ``hq.programme.tiers.evaluate_tiers(db, day)`` with a three-rung
   ladder published as rules version 1 (growth = yuan of net spend in a 365-day window),
   on the spend summary the ingest keeps (``member_day_spend``, rebuilt from the loaded
   sales before timing, as ``rebuild-growth-spend`` does). Timed twice: the first night
   (nearly every member changes tier: growth, tier, a TierChange row and a change record
   for the stores each), and the next night (nothing changes). The baseline: one UPDATE
   that sets each member's growth from its sales in the window and its tier by
   threshold, rolled back.

Prints figures and ratios; the last line is one JSON object with at least ``members``,
``tier_eval_s``, ``expiry_s``, ``baseline_tier_eval_s``, ``baseline_expiry_s``.

    .venv/bin/python bench/programme.py                    # 1,000,000 members, 10,000,000 lots
    .venv/bin/python bench/programme.py --members 10000    # small
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import peewee as pw  # noqa: E402

from core.rules import Rules, TierRules, TierStep  # noqa: E402
from hq.models import LedgerEntry, Member, PointsLot, Sale, bind, open_database  # noqa: E402
from hq.programme.points import expire_points  # noqa: E402
from hq.programme.tiers import evaluate_tiers, rebuild_spend  # noqa: E402
from hq.rules import publish_rules  # noqa: E402

PG_ADMIN_DSN = os.environ.get("HY_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
DAY = dt.date(2026, 12, 5)  # the business day the jobs run for
NOW = dt.datetime(2026, 12, 4, 18, 0, 0)  # 02:00 on the 5th in Shanghai
TIER_WINDOW_DAYS = 365
# the baseline's tiers by growth (yuan spent in the window)
TIER_THRESHOLDS = (("钻石", 20000), ("金卡", 5000), ("银卡", 1000))


def log(msg: str) -> None:
    print(msg, flush=True)


def pg_database(reuse: str | None = None, keep: bool = False) -> tuple[str, Any]:
    """A fresh PostgreSQL database for a benchmark (``HY_TEST_PG``, as the tests use), or
    ``reuse``, one an earlier run kept; its URL and how to drop it (unless ``keep``). The
    benchmarks in bench/ share this one."""
    import psycopg2

    admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=3)
    admin.autocommit = True
    name = reuse or f"hy_bench_{uuid.uuid4().hex[:10]}"
    if not reuse:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    params = admin.get_dsn_parameters()
    url = (
        f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}"
        f":{params.get('port', '5432')}/{name}"
    )

    def drop() -> None:
        if keep:
            log(f"kept database {name} (drop it, or pass --reuse-db {name})")
            admin.close()
            return
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()

    return url, drop


# ---- loading ----------------------------------------------------------------------------


def _literal(field: pw.Field) -> str:
    """A column's value when the load does not set it: the model's constant default."""
    default = field.default
    if default is None or callable(default):
        return "NULL"
    if isinstance(default, bool):
        return "TRUE" if default else "FALSE"
    if isinstance(default, int):
        return str(default)
    if isinstance(default, dict | list):
        return "'" + json.dumps(default) + "'"
    return "'" + str(default).replace("'", "''") + "'"


def insert_select(db: pw.Database, model: type[pw.Model], n: int, exprs: dict[str, str]) -> None:
    """``INSERT INTO model SELECT ... FROM generate_series(1, n) AS i``: every column, set
    by ``exprs`` (SQL over ``i``) or its constant default."""
    fields = [f for f in model._meta.sorted_fields if not isinstance(f, pw.AutoField)]
    cols = ", ".join(f'"{f.column_name}"' for f in fields)
    values = ", ".join(exprs.get(f.name, _literal(f)) for f in fields)
    table = model._meta.table_name
    sql = (
        f'INSERT INTO "{table}" ({cols}) SELECT {values} FROM generate_series(1::bigint, {n}) AS i'  # noqa: S608
    )
    with db.atomic():
        db.execute_sql(sql.replace("%", "%%"), ())  # no parameters: % is SQL's modulo


MEMBER_ID = "md5(({m})::text)::uuid::text"


def load(
    db: pw.Database, members: int, lots_per: int, expired_percent: int, sales_per: int
) -> None:
    day = DAY.isoformat()
    at = f"'{NOW.isoformat(sep=' ')}'"
    insert_select(
        db,
        Member,
        members,
        {
            "id": MEMBER_ID.format(m="i"),
            "name": "'会员' || i",
            "phone": "'139' || lpad(i::text, 8, '0')",
            "card_type": "'普通卡'",
            "registered_at": "'2025-01-01T10:00:00+08:00'",
            "registered_store": "'S' || (i % 200)",
            "through": "'{}'",
            "created_at": at,
            "updated_at": at,
        },
    )
    lots = members * lots_per
    # a lot's last day: the expired share spread over that share of the year before the
    # business day, the rest over the year after it
    span = 365
    past = span * expired_percent // 100
    last_day = (
        f"(DATE '{day}' + ((((i * 7919) % 100) * {span} / 100) - {past} "
        f"- CASE WHEN (i * 7919) % 100 < {expired_percent} THEN 1 ELSE 0 END)::int)"
    )
    insert_select(
        db,
        PointsLot,
        lots,
        {
            "lot_id": "'L' || i",
            "member_id": MEMBER_ID.format(m=f"(i - 1) / {lots_per} + 1"),
            "earned_on": f"{last_day} - 365",
            "expires_on": last_day,
            "earned": "100 + i % 50",
            "remaining": "CASE WHEN i % 7 = 0 THEN 0 ELSE 100 + i % 50 END",
            "store": "'S' || (i % 200)",
        },
    )
    insert_select(
        db,
        LedgerEntry,
        lots,
        {
            "member_id": MEMBER_ID.format(m=f"(i - 1) / {lots_per} + 1"),
            "balance": "'points'",
            "points": "CASE WHEN i % 7 = 0 THEN 0 ELSE 100 + i % 50 END",
            "reason": "'sale'",
            "ref": "'L' || i",
            "lot_id": "'L' || i",
            "at": at,
        },
    )
    if sales_per:
        insert_select(
            db,
            Sale,
            members * sales_per,
            {
                "sale_id": "'SALE' || i",
                "store": "'S' || (i % 200)",
                "seq": "i",
                "member_id": MEMBER_ID.format(m=f"(i - 1) / {sales_per} + 1"),
                "total": "(i * 7919) % 2000000",
                "rules_version": "1",
                "occurred_at": f"to_char(DATE '{day}' - (i % 360)::int - 1, 'YYYY-MM-DD') "
                "|| 'T12:00:00+08:00'",
                "body": "'{}'",
                "ingested_at": at,
            },
        )
    with db.atomic():
        db.execute_sql(
            'UPDATE "member" AS m SET "points" = s.p FROM (SELECT "member_id", SUM("remaining") AS p'
            ' FROM "points_lot" GROUP BY "member_id") AS s WHERE m."id" = s."member_id"'
        )
    ladder = tuple(TierStep(name, n) for name, n in sorted(TIER_THRESHOLDS, key=lambda t: t[1]))
    publish_rules(db, Rules(version=1, tiers=TierRules(ladder=ladder)).to_dict())
    days = rebuild_spend(db)  # what the ingest keeps as it applies sales
    log(f"spend summary rebuilt from the sales: {days:,} member-days")
    db.execute_sql("VACUUM ANALYZE")


# ---- points expiry ------------------------------------------------------------------

BASELINE_EXPIRY_SQL = """
WITH due AS (
    SELECT lot_id, member_id, remaining FROM points_lot
    WHERE remaining > 0 AND expires_on < %(day)s FOR UPDATE
), zeroed AS (
    UPDATE points_lot AS p SET remaining = 0 FROM due WHERE p.lot_id = due.lot_id
    RETURNING due.lot_id, due.member_id, due.remaining
), posted AS (
    INSERT INTO ledger_entry (member_id, balance, principal, bonus, points, reason, ref, lot_id, at)
    SELECT member_id, 'points', 0, 0, -remaining, 'expiry', 'baseline', lot_id, %(at)s FROM zeroed
    RETURNING member_id, points
)
UPDATE member AS m SET points = m.points + s.points, updated_at = %(at)s
FROM (SELECT member_id, SUM(points) AS points FROM posted GROUP BY member_id) AS s
WHERE m.id = s.member_id
"""


def baseline_expiry(db: pw.Database) -> tuple[float, int]:
    """The same set-based update in raw SQL (no change log), rolled back."""
    with db.atomic() as txn:
        start = time.perf_counter()
        cur = db.execute_sql(BASELINE_EXPIRY_SQL, {"day": DAY.isoformat(), "at": NOW})
        changed = cur.rowcount
        elapsed = time.perf_counter() - start
        txn.rollback()
    return elapsed, changed


def bench_expiry(db: pw.Database, result: dict[str, Any]) -> None:
    due = db.execute_sql(
        'SELECT COUNT(*), COUNT(DISTINCT "member_id") FROM "points_lot"'
        ' WHERE "remaining" > 0 AND "expires_on" < %s',
        (DAY,),
    ).fetchone()
    log(f"points expiry for {DAY}: {due[0]:,} lots of {due[1]:,} members past their last day")
    base_s, base_members = baseline_expiry(db)
    db.execute_sql("VACUUM ANALYZE")
    start = time.perf_counter()
    counts = expire_points(db, DAY, NOW)
    job_s = time.perf_counter() - start
    again = time.perf_counter()
    rerun = expire_points(db, DAY, NOW)
    rerun_s = time.perf_counter() - again
    assert counts["members"] == base_members == due[1], (counts, base_members, due)  # noqa: S101
    assert rerun == {"expired_lots": 0, "members": 0}, rerun  # noqa: S101
    diffs = db.execute_sql(
        'SELECT COUNT(*) FROM "member" AS m JOIN (SELECT "member_id", SUM("points") AS p'
        ' FROM "ledger_entry" GROUP BY "member_id") AS l ON l."member_id" = m."id"'
        ' WHERE l.p <> m."points"'
    ).fetchone()[0]
    ratio = job_s / base_s if base_s else None
    log(
        f"  baseline (raw SQL, no change log, rolled back): {base_s:8.2f} s\n"
        f"  expire_points (the job, change log included):  {job_s:8.2f} s"
        f"  ({counts['expired_lots']:,} lots, {counts['members']:,} members sent down)\n"
        f"  ratio {ratio:.2f}x; re-run the same day: {rerun_s:.2f} s, nothing posted; "
        f"members whose points differ from their ledger: {diffs}"
    )
    result.update(
        expiry_s=round(job_s, 3),
        baseline_expiry_s=round(base_s, 3),
        expiry_vs_baseline=round(ratio, 2) if ratio else None,
        expired_lots=counts["expired_lots"],
        expiry_members=counts["members"],
        expiry_rerun_s=round(rerun_s, 3),
        ledger_differences=diffs,
    )


# ---- tier evaluation ------------------------------------------------------------------


def baseline_tiers(db: pw.Database) -> tuple[float, int]:
    """Growth (yuan spent in the window) and tier by threshold for every member, in one
    UPDATE, rolled back."""
    since = (DAY - dt.timedelta(days=TIER_WINDOW_DAYS)).isoformat()
    case = " ".join(f"WHEN s.g >= {n} THEN '{name}'" for name, n in TIER_THRESHOLDS)
    sql = f"""
        UPDATE member AS m SET growth = s.g, tier = CASE {case} ELSE NULL END
        FROM (SELECT mm.id, COALESCE(SUM(x.total), 0) / 100 AS g FROM member AS mm
              LEFT JOIN sale AS x ON x.member_id = mm.id AND x.occurred_at >= %s
              GROUP BY mm.id) AS s
        WHERE m.id = s.id AND (m.growth IS DISTINCT FROM s.g
              OR m.tier IS DISTINCT FROM (CASE {case} ELSE NULL END))
    """  # noqa: S608
    with db.atomic() as txn:
        start = time.perf_counter()
        changed = db.execute_sql(sql, (since,)).rowcount
        elapsed = time.perf_counter() - start
        txn.rollback()
    return elapsed, changed


def bench_tiers(db: pw.Database, result: dict[str, Any]) -> None:
    base_s, changed = baseline_tiers(db)
    log(f"tier evaluation baseline (raw SQL, rolled back): {base_s:8.2f} s ({changed:,} members)")
    result["baseline_tier_eval_s"] = round(base_s, 3)
    start = time.perf_counter()
    counts = evaluate_tiers(db, DAY)
    tier_s = time.perf_counter() - start
    again = time.perf_counter()
    rerun = evaluate_tiers(db, DAY)
    rerun_s = time.perf_counter() - again
    assert rerun["members_changed"] == 0, rerun  # noqa: S101
    ratio = tier_s / base_s if base_s else None
    log(
        f"  evaluate_tiers, first night: {tier_s:8.2f} s {counts}; ratio {ratio:.2f}x\n"
        f"  evaluate_tiers, next night (nothing changes): {rerun_s:8.2f} s\n"
        f"  members changed: {counts['members_changed']:,} (baseline: {changed:,})"
    )
    result.update(
        tier_eval_s=round(tier_s, 3),
        tier_eval_vs_baseline=round(ratio, 2) if ratio else None,
        tier_eval_counts=counts,
        tier_eval_rerun_s=round(rerun_s, 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--lots-per-member", type=int, default=10)
    parser.add_argument(
        "--expired-percent",
        type=int,
        default=10,
        help="share of the lots past their last day on the business day (0..100)",
    )
    parser.add_argument("--sales-per-member", type=int, default=2)
    args = parser.parse_args()
    if not 0 <= args.expired_percent <= 100:
        parser.error("--expired-percent must be 0..100")
    log(
        f"programme benchmark {dt.datetime.now().isoformat(timespec='seconds')} on "
        f"{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}), load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    url, drop = pg_database()
    result: dict[str, Any] = {
        "members": args.members,
        "lots": args.members * args.lots_per_member,
    }
    try:
        db = open_database(url)
        bind(db)
        version = db.execute_sql("SHOW server_version").fetchone()[0]
        log(f"PostgreSQL {version}, a fresh database")
        start = time.perf_counter()
        load(db, args.members, args.lots_per_member, args.expired_percent, args.sales_per_member)
        log(
            f"loaded {args.members:,} members, {result['lots']:,} lots and ledger rows, "
            f"{args.members * args.sales_per_member:,} sales in {time.perf_counter() - start:.1f} s"
        )
        bench_tiers(db, result)  # first: the expiry changes members' points, not tiers
        bench_expiry(db, result)
        db.close()
    finally:
        drop()
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
