"""Member search benchmark: the console's search box (hq/member_search.py) and member page
on a chain-sized PostgreSQL database.

A fresh PostgreSQL database (``HY_TEST_PG`` admin DSN, as the tests use; created and
dropped by the run) is loaded set-based (``INSERT ... SELECT`` from ``generate_series``)
with ``--members`` members spread over 200 stores, each with a card and a phone key; the
names come from a pool of common surnames and given names, their search keys computed by
``hq.member_search.search_keys`` (the code registration uses). Then each kind of query
is timed ``--repeat`` times through ``search_members`` (p50 and p95, ms), the search page
and a member page through the console (a signed-in test client, templates rendered),
and, in the same run, a raw baseline: one full scan of the member table for the same
initials (``position('zs' in name_initials) = 1``, which no index answers). Finally the
keys of ``--backfill`` members are cleared and ``backfill_search_keys`` (what init-db
runs) is timed.

Prints figures; the last line is one JSON object with ``members``, ``queries`` (name ->
{p50_ms, p95_ms, found}), ``max_p95_ms``, ``baseline_scan_ms``, ``backfill_rows_per_s``.

    .venv/bin/python bench/member_search.py                   # 1,000,000 members
    .venv/bin/python bench/member_search.py --members 20000   # small
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.programme import MEMBER_ID, insert_select, log, pg_database  # noqa: E402
from hq.member_search import backfill_search_keys, search_keys, search_members  # noqa: E402
from hq.models import Card, Member, PhoneKey, bind, open_database  # noqa: E402

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红建华文辉力建国三丰小明晓东志强海燕俊杰雪梅春梅国庆立新宇浩子涵欣怡梓萱"
STORES = 200


def name_pool() -> list[tuple[str, str, str]]:
    """(name, full pinyin, initials) for surname x one given character, and surname x two."""
    given = list(dict.fromkeys(GIVEN))
    # the five commonest surnames carry about a third of the chain, as in life
    surnames = list(SURNAMES) + list(SURNAMES[:5]) * 10
    names = [s + g for s in surnames for g in given]
    names += [s + g + h for s in surnames for g in given[:24] for h in given[24:48]]
    out = []
    for name in names:
        keys = search_keys(name, None)
        out.append((name, keys["name_pinyin"], keys["name_initials"]))
    return out


def load(db, members: int) -> None:
    pool = name_pool()
    db.execute_sql("CREATE TABLE bench_name (k integer PRIMARY KEY, name text, py text, ini text)")
    with db.atomic():  # one statement: the pool as arrays
        db.execute_sql(
            "INSERT INTO bench_name SELECT t.k - 1, t.name, t.py, t.ini"
            " FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY"
            " AS t(name, py, ini, k)",
            ([r[0] for r in pool], [r[1] for r in pool], [r[2] for r in pool]),
        )
    n = len(pool)
    pick = f"(SELECT {{col}} FROM bench_name WHERE k = (i * 7919) % {n})"
    phone = "('13' || lpad(i::text, 9, '0'))"
    at = "'2026-01-01 00:00:00'"
    insert_select(
        db,
        Member,
        members,
        {
            "id": MEMBER_ID.format(m="i"),
            "name": pick.format(col="name"),
            "name_pinyin": pick.format(col="py"),
            "name_initials": pick.format(col="ini"),
            "phone": phone,
            "phone_last4": f"right({phone}, 4)",
            "registered_at": "'2026-01-01T08:00:00+08:00'",
            "registered_utc": at,
            "registered_store": f"('S' || lpad((i % {STORES})::text, 3, '0'))",
            "card_type": "'普通卡'",
            "through": "'{}'",
            "created_at": at,
            "updated_at": at,
            "points": "(i % 500)",
        },
    )
    insert_select(
        db,
        Card,
        members,
        {
            "card_no": "('C' || lpad(i::text, 7, '0'))",
            "member_id": MEMBER_ID.format(m="i"),
            "card_type": "'普通卡'",
            "status": "'active'",
            "issued_store": f"('S' || lpad((i % {STORES})::text, 3, '0'))",
        },
    )
    insert_select(db, PhoneKey, members, {"phone": phone, "member_id": MEMBER_ID.format(m="i")})
    db.execute_sql("DROP TABLE bench_name")
    db.execute_sql("ANALYZE")


def timed(fn, repeat: int) -> tuple[float, float, object]:
    times = []
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--backfill", type=int, default=100_000, help="rows re-keyed (timed)")
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its URL)")
    args = parser.parse_args()

    url, drop = pg_database()
    db = open_database(url)
    try:
        bind(db)
        log(f"loading {args.members:,} members into {url.rsplit('/', 1)[-1]} ...")
        start = time.perf_counter()
        load(db, args.members)
        log(f"loaded in {time.perf_counter() - start:.1f} s")

        some = Member.select().order_by(Member.id).offset(args.members // 2).first()
        card = Card.get(Card.member_id == some.id).card_no
        queries = {
            "initials_zs": ("zs", None),
            "initials_zsf": ("zsf", None),
            "pinyin_zhangsan": ("zhangsan", None),
            "name_张三": ("张三", None),
            "name_王芳": ("王芳", None),
            "phone_last4": (some.phone[-4:], None),
            "phone_full": (some.phone, None),
            "phone_prefix": (some.phone[:7], None),
            "card": (card, None),
            "card_lower": (card.lower(), None),
            "member_id": (some.id, None),
            "initials_zs_one_store": ("zs", frozenset({"S001"})),
            "initials_w_one_store": ("w", frozenset({"S001"})),
            "initials_z_area_10_stores": ("z", frozenset(f"S{i:03d}" for i in range(10))),
            "initials_wx_one_store": ("wx", frozenset({"S001"})),
            "initials_wf_area_10_stores": ("wf", frozenset(f"S{i:03d}" for i in range(10))),
            "nothing": ("qqqq", None),
        }
        results = {}
        with db.connection_context():
            for name, (q, stores) in queries.items():
                p50, p95, page = timed(lambda q=q, s=stores: search_members(q, s), args.repeat)
                results[name] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
                results[name]["found"] = page.found  # type: ignore[attr-defined]
                log(f"{name:28} {q!r:28} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  found {page.found}")  # type: ignore[attr-defined]
                for n in (2, 10):  # later pages cost the same ranges
                    if page.pages >= n:  # type: ignore[attr-defined]
                        p50, p95, _ = timed(
                            lambda q=q, s=stores, n=n: search_members(q, s, n), args.repeat
                        )
                        results[f"{name}_page{n}"] = {
                            "p50_ms": round(p50, 2),
                            "p95_ms": round(p95, 2),
                        }
                        log(
                            f"{name + ' page ' + str(n):28} {'':28} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms"
                        )
            base50, base95, count = timed(
                lambda: db.execute_sql(
                    "SELECT count(*) FROM member WHERE position('zs' in name_initials) = 1"
                ).fetchone()[0],
                max(3, args.repeat // 5),
            )
            log(
                f"{'baseline full scan (zs)':28} {'':28} p50 {base50:7.2f} ms  p95 {base95:7.2f} ms  rows {count}"
            )

        # the console's pages, rendered, through a signed-in client
        from hq.api import create_app
        from hq.config import HqConfig, MqttSettings
        from tests.hq.signin import session_client

        app = create_app(
            HqConfig(database_url=url, mqtt=MqttSettings(url="mqtt://127.0.0.1:1")), db=db
        )
        app.testing = True
        with db.connection_context():
            client = session_client(app, db, "membership")
        pages = {
            "page_search_zs": "/members?q=zs",
            "page_search_zs_p10": "/members?q=zs&page=10&list=1",
            "page_member": f"/members/{some.id}",
        }
        for name, path in pages.items():

            def get(path: str = path) -> int:
                resp = client.get(path)
                assert resp.status_code == 200, (path, resp.status_code)
                return resp.status_code

            p50, p95, _ = timed(get, args.repeat)
            results[name] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
            log(f"{name:28} {path[:28]:28} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")

        with db.connection_context():
            cut = Member.select(Member.id).order_by(Member.id).limit(1).offset(args.backfill)
            edge = cut.scalar() or "~"
            Member.update(name_pinyin=None, name_initials=None, phone_last4=None).where(
                Member.id < edge
            ).execute()
            start = time.perf_counter()
            done = backfill_search_keys(db)
            took = time.perf_counter() - start
            log(f"backfill of {done:,} members: {took:.1f} s ({done / took:,.0f} rows/s)")

        result = {
            "members": args.members,
            "stores": STORES,
            "repeat": args.repeat,
            "queries": results,
            "max_p95_ms": max(r["p95_ms"] for r in results.values()),
            "baseline_scan_ms": round(base50, 2),
            "backfill_rows": done,
            "backfill_rows_per_s": round(done / took),
            "python": platform.python_version(),
        }
        print(json.dumps(result, ensure_ascii=False))
    finally:
        db.close()
        if args.keep:
            log(f"kept {url}")
        else:
            drop()


if __name__ == "__main__":
    main()
