"""Campaigns benchmark, the audience part (issue 14): every list and segment kind over a
chain-sized PostgreSQL database (1,000,000 members, 10,000,000 sales; target: each under
10 s), against a raw SQL baseline measured in the same run.

The chain is loaded by ``bench/reports.py``'s loader (one piece of code: 200 stores,
members registered over two years, sales over the same years) into a fresh database
(``HY_TEST_PG``, as the tests use; ``--reuse-db NAME`` times one an earlier run kept,
``--keep-db`` keeps this one). The marketing fields the loader leaves empty are then
filled set-based: a tenth of the birthdays lunar, 2% of members tagged 投诉 / 退款, each
sale's line categories (``line_goods``). The summary tables are built as ``huiyuan-hq
reports-rebuild`` does (skipped when a reused database has them).

Timed, on the business day 2026-12-05: each list (count, and the scheduler's stored run:
one INSERT ... SELECT of its members), each segment condition and a combination (count),
a keyset walk through the largest stored run, and the baseline: ``SELECT member_id,
count(*) FROM sale GROUP BY member_id`` (one aggregate pass over the sales by member).

The send part comes with the campaigns: ``send_msgs_per_s`` is null until then.
Prints figures and ratios; the last line is one JSON object with ``members``, ``sales``,
``audience_max_s`` (the slowest list or segment), ``baseline_s``, ``send_msgs_per_s``.

    .venv/bin/python bench/campaigns.py                                   # full scale
    .venv/bin/python bench/campaigns.py --members 100000 --sales 1000000  # 1/10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import peewee as pw  # noqa: E402

from bench import reports as chain  # noqa: E402
from bench.programme import pg_database  # noqa: E402
from hq.marketing import audience, lists, settings  # noqa: E402
from hq.models import (  # noqa: E402
    ListRun,
    ListRunMember,
    MarketingSetting,
    Segment,
    bind,
    open_database,
)
from hq.reports import summary  # noqa: E402

DAY = chain.DAY  # 2026-12-05, a Saturday
NOW = dt.datetime(2026, 12, 5, 1, 0)
TARGET_S = 10.0


def log(msg: str) -> None:
    print(msg, flush=True)


def prepare(db: pw.Database) -> None:
    """The marketing fields the reports loader leaves empty (idempotent)."""
    run = chain.run
    if not db.execute_sql(
        "SELECT 1 FROM member WHERE birthday_calendar = 'lunar' LIMIT 1"
    ).fetchone():
        # the loader's birthdays fall in January-September: every eighth moves to
        # December, and every sixteenth becomes lunar 11-07 (2026-12-15) or stays lunar
        # in its month; a sixteenth of the lunar ones born in a leap month
        run(
            db,
            "UPDATE member SET birthday = substr(birthday, 1, 5) || '12-' || substr(birthday, 9, 2)"
            " WHERE substr(id, 2, 1) IN ('1', '2')",
        )
        run(
            db,
            "UPDATE member SET birthday_calendar = 'lunar', birthday_leap_month ="
            " (substr(id, 1, 1) = 'a'), birthday = CASE WHEN substr(id, 3, 1) < '8'"
            " THEN substr(birthday, 1, 5) || '11-07' ELSE birthday END WHERE substr(id, 2, 1) = '0'",
        )
        run(
            db,
            "UPDATE member SET tags = CASE WHEN substr(id, 3, 1) = 'a' THEN '[\"投诉\"]'"
            " ELSE '[\"老客\",\"退款\"]' END WHERE substr(id, 3, 2) IN ('a0', 'b0', 'c0', 'd0', 'e0')",
        )
    if db.execute_sql("SELECT 1 FROM sale WHERE line_goods IS NULL LIMIT 1").fetchone():
        cats = "(ARRAY['药品', '保健品', '器械', '个护', '母婴', '食品'])"
        run(
            db,
            'UPDATE sale SET line_goods = \'[{"category":"\' || '
            f'{cats}[seq % 6 + 1] || \'","cost":null,"line_no":1,"sku":"P1"}}]\''
            " WHERE line_goods IS NULL",
        )


def timed(name: str, fn: Callable[[], Any], result: dict[str, Any]) -> Any:
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    result["audiences"][name] = round(seconds, 3)
    log(
        f"  {name:<44} {seconds:8.3f} s   {value if not isinstance(value, list) else len(value):>10,}"
    )
    return value


SEGMENTS: dict[str, list[dict[str, Any]]] = {
    "segment_lifecycle_dormant": [{"kind": "lifecycle", "values": ["dormant"]}],
    "segment_lifecycle_all_four": [
        {"kind": "lifecycle", "values": ["new", "established", "dormant", "lost"]}
    ],
    "segment_quadrant_lf_hm": [{"kind": "quadrant", "values": ["lf_hm"]}],
    "segment_rfm_r5_m45": [{"kind": "rfm", "r": [5], "m": [4, 5]}],
    "segment_tags": [{"kind": "tags", "values": ["投诉", "退款"]}],
    "segment_card_type": [{"kind": "card_type", "values": ["年卡"]}],
    "segment_tier": [{"kind": "tier", "values": ["金卡", "钻石"]}],
    "segment_store_registered": [{"kind": "store", "by": "registered", "values": ["S002", "S003"]}],
    "segment_store_home": [{"kind": "store", "by": "home", "values": ["S002"]}],
    "segment_maintainer": [{"kind": "maintainer", "values": ["E00010", "E00011"]}],
    "segment_birthday_month": [{"kind": "birthday_month", "values": [3]}],
    "segment_category_3_months": [{"kind": "category", "values": ["器械"], "months": 3}],
    "segment_combined": [
        {"kind": "lifecycle", "values": ["established"]},
        {"kind": "quadrant", "values": ["hf_hm", "lf_hm"]},
        {"kind": "rfm", "r": [4, 5]},
        {"kind": "tier", "values": ["金卡", "钻石"]},
        {"kind": "category", "values": ["药品"], "months": 6},
    ],
}


def bench(db: pw.Database, result: dict[str, Any]) -> None:
    st = settings.current(db)
    log("lists (count, then the stored run as the scheduler makes it):")
    for kind in lists.MONTHLY + lists.WEEKLY:
        start = lists.current_start(kind, DAY)
        timed(
            f"list_{kind}_count",
            lambda k=kind, s=start: audience.count(lists.builder(db, k, s, None, DAY)),
            result,
        )
        ListRun.delete().where((ListRun.kind == kind) & (ListRun.start == start)).execute()
        db.execute_sql("DELETE FROM list_run_member WHERE run NOT IN (SELECT id FROM list_run)")
        timed(
            f"list_{kind}_stored_run",
            lambda k=kind, s=start: lists.produce(db, k, s, NOW, "bench", DAY)[0].members,
            result,
        )
        timed(
            f"list_{kind}_store_S002_count",
            lambda k=kind, s=start: audience.count(lists.builder(db, k, s, "S002", DAY)),
            result,
        )
    log("segments (live count):")
    for name, conditions in SEGMENTS.items():
        timed(
            name,
            lambda c=conditions: audience.count(
                audience.compile_spec(db, {"conditions": c}, st, DAY)
            ),
            result,
        )
    # on 5 December the 12-month window is the calendar year (one year row per member and
    # store); ending in November it is a month, three quarters and two months: the worst
    for name in ("segment_quadrant_lf_hm", "segment_combined"):
        spec = {"conditions": SEGMENTS[name], "as_of": "2026-11-30"}
        timed(
            f"{name}_window_to_november",
            lambda s=spec: audience.count(audience.compile_spec(db, s, st, DAY)),
            result,
        )
    # a campaign's walk through its audience: the biggest stored run, keyset pages of 5,000
    run = ListRun.select().order_by(ListRun.members.desc()).first()
    start = time.perf_counter()
    walked = sum(1 for _ in lists.iter_run_member_ids(run, page=5000))
    seconds = time.perf_counter() - start
    result["walk_run"] = {"kind": run.kind, "members": walked, "s": round(seconds, 3)}
    log(f"  keyset walk of the stored {run.kind} run: {walked:,} ids in {seconds:.3f} s")


def baseline(db: pw.Database, result: dict[str, Any]) -> None:
    start = time.perf_counter()
    (groups,) = db.execute_sql(
        "SELECT count(*) FROM (SELECT member_id, count(*) FROM sale GROUP BY member_id) g"
    ).fetchone()
    seconds = time.perf_counter() - start
    result["baseline_s"] = round(seconds, 3)
    log(
        f"baseline: SELECT member_id, count(*) FROM sale GROUP BY member_id ({groups:,} groups): {seconds:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--sales", type=int, default=10_000_000)
    parser.add_argument("--reuse-db", default=None, help="time a database an earlier run kept")
    parser.add_argument("--keep-db", action="store_true", help="keep the database for --reuse-db")
    args = parser.parse_args()
    if not (1 <= args.stores <= 999 and args.members >= 1 and args.sales >= 1):
        parser.error("--stores 1..999, --members and --sales at least 1")
    log(
        f"campaigns benchmark (audiences) {dt.datetime.now().isoformat(timespec='seconds')} on "
        f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    url, drop = pg_database(args.reuse_db, keep=args.keep_db)
    result: dict[str, Any] = {"members": args.members, "sales": args.sales, "audiences": {}}
    try:
        db = open_database(url)
        # a kept database: only the marketing tables it may lack (``init-db``'s backfills
        # of older rows would rewrite all 10,000,000 sales first)
        bind(db, create=not args.reuse_db)
        db.create_tables([MarketingSetting, ListRun, ListRunMember, Segment], safe=True)
        log(f"PostgreSQL {db.execute_sql('SHOW server_version').fetchone()[0]}, database {url}")
        start = time.perf_counter()
        if args.reuse_db:
            for key, table in (("members", "member"), ("sales", "sale")):
                result[key] = db.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            log(
                f"reusing a loaded database: {result['members']:,} members, {result['sales']:,} sales"
            )
        else:
            chain.load(db, args.stores, args.members, args.sales)
            result["load_s"] = round(time.perf_counter() - start, 1)
            log(f"loaded in {result['load_s']} s")
        start = time.perf_counter()
        prepare(db)
        log(f"marketing fields filled in {time.perf_counter() - start:.1f} s")
        if not db.execute_sql("SELECT 1 FROM report_member LIMIT 1").fetchone():
            start = time.perf_counter()
            db.execute_sql("SET work_mem = '256MB'")
            counts = summary.rebuild(db)
            db.execute_sql("RESET work_mem")
            result["summary_build_s"] = round(time.perf_counter() - start, 1)
            log(f"summaries built (reports-rebuild) in {result['summary_build_s']} s: {counts}")
        db.execute_sql("VACUUM ANALYZE")
        baseline(db, result)
        bench(db, result)
        baseline(db, result)  # again, the cache as warm as the audiences'
        slowest = max(result["audiences"], key=result["audiences"].get)
        result["audience_max_s"] = result["audiences"][slowest]
        result["audience_slowest"] = slowest
        result["under_target"] = result["audience_max_s"] < TARGET_S
        result["send_msgs_per_s"] = None  # the send part comes with the campaigns
        log(
            f"slowest: {slowest} {result['audience_max_s']} s = "
            f"{result['audience_max_s'] / result['baseline_s']:.2f} x the baseline "
            f"({result['baseline_s']} s); target {TARGET_S} s: "
            f"{'met' if result['under_target'] else 'NOT met'}"
        )
        log("send_msgs_per_s: null (the send part of issue 14 is not built yet)")
        db.close()
    finally:
        drop()
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
