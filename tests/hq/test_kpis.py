"""The KPIs (docs/kpis.md) against hand-computed tables, on data ingested the real way
(edge_sim Items -> make_batch -> ingest_batch), so the summary tables the ingest keeps
are tested too; and the rebuild gives the same figures."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction as F

import pytest

from core import protocol as p
from core.ids import uuid7
from hq.ingest import ingest_batch
from hq.models import StaffMember, Store, utcnow
from hq.reports import kpis, rollup, summary
from hq.reports.periods import Period, Scope, period_containing
from tests.hq.edge_sim import TZ, Items

NOW = dt.datetime(2026, 11, 30, 12, 0)
NOV = Period("month", dt.date(2026, 11, 1))
WEEK45 = Period("week", dt.date(2026, 11, 2))


def at(items: Items, day: int, hour: int = 10) -> Items:
    """The next item happens on 2026-11-<day> at <hour>:01 local time."""
    items.clock = dt.datetime(2026, 11, day, hour, 0, tzinfo=TZ)
    return items


def reg(items: Items, day: int, member_id: str, phone: str, **extra) -> dict:
    at(items, day, 9)
    stamp = dt.datetime(2026, 11, day, 9, 1, tzinfo=TZ).isoformat()
    return items.registration(member_id, phone, at=stamp, **extra)


def send(db, store: str, items: list[dict]) -> None:
    outcome = ingest_batch(db, f"hy/v1/{store}/up/tx", store, p.make_batch(store, 1, items), NOW)
    assert outcome.ack.acked_through == items[-1]["seq"], outcome.ack
    assert not outcome.ack.rejected, outcome.ack.rejected


@pytest.fixture
def chain(hq_db):
    """Three stores, November 2026 (hand-computed in the tests below):

    S002 (华东), sent first: m4 registers on the 15th with phone P1 and buys 8000 on the
    16th; m3 registers on the 4th and buys 10000.
    S001 (华东): m1 registers on the 2nd with phone P1 too: the earlier registration wins,
    m4 is merged into m1 mid-period (m4's sale at S002 moves to m1). m1 buys 10000 on the
    2nd, 10th and 20th and returns the 20th's on the 21st; m2 registers on the 3rd and
    buys 5000; walk-ins 20000 (5th) and 4000 (6th).
    S003 (华南): one walk-in, 3000 on the 8th.
    """
    db = hq_db
    m1, m2, m3, m4 = (uuid7() for _ in range(4))
    s2 = Items("S002")
    send(
        db,
        "S002",
        [
            reg(s2, 15, m4, "13100000001", staff_code="E03"),
            at(s2, 16).sale(m4, 8000),
            reg(s2, 4, m3, "13100000003", staff_code="E03", birthday=None),
            at(s2, 4).sale(m3, 10000),
        ],
    )
    s1 = Items("S001")
    items = [reg(s1, 2, m1, "13100000001", staff_code="E01", birthday="1980-05-01")]
    items.append(at(s1, 2).sale(m1, 10000))
    items.append(at(s1, 10).sale(m1, 10000))
    sale20 = at(s1, 20).sale(m1, 10000)
    items.append(sale20)
    items.append(
        at(s1, 21).return_of(sale20["body"], points_reversed=sale20["body"]["points_earned"])
    )
    items.append(reg(s1, 3, m2, "13100000002", staff_code="E02", gender="F", birthday="1990-01-01"))
    items.append(at(s1, 3).sale(m2, 5000))
    items.append(at(s1, 5).sale(None, 20000))
    items.append(at(s1, 6).sale(None, 4000))
    send(db, "S001", items)
    s3 = Items("S003")
    send(db, "S003", [at(s3, 8).sale(None, 3000)])
    Store.update(area="华东").where(Store.code.in_(["S001", "S002"])).execute()
    Store.update(area="华南").where(Store.code == "S003").execute()
    now = utcnow()
    for code, store in (("E01", "S001"), ("E02", "S001"), ("E03", "S002")):
        StaffMember.insert(
            code=code, name=code, store=store, created_at=now, updated_at=now
        ).on_conflict_ignore().execute()
    return {"m1": m1, "m2": m2, "m3": m3, "m4": m4}


def test_chain_month(hq_db, chain):
    f = kpis.figures(hq_db, Scope("chain"), NOV)
    assert f["sales_fen"] == 70000  # 35000 + 24000 - 10000 + 18000 + 3000
    assert f["member_sales_fen"] == 43000
    assert f["returns_fen"] == 10000
    assert f["member_sales_share"] == F(43000, 70000)
    assert f["tickets"] == 9 and f["member_tickets"] == 6
    assert f["avg_ticket"] == 7167  # 43000 / 6 rounded half up
    assert f["all_avg_ticket"] == 7778  # 70000 / 9
    assert f["items_per_ticket"] == F(5, 6)  # 6 items sold, 1 returned
    assert f["avg_item_price"] == 8600
    assert f["attach_rate"] == 1
    assert f["new_members"] == 3  # m1, m2, m3; m4 merged into m1
    assert f["new_member_rate"] == F(3, 9)
    assert f["activation_rate"] == F(1, 3)  # only m1 came back (10th) within 30 days
    assert f["buyers"] == 3  # m1 counted once: his own and m4's sales
    assert f["repeat_rate"] == F(1, 3)
    assert f["repeat_frequency"] == 2  # (4 + 1 + 1) / 3
    assert f["avg_return_days"] == 6  # m1: 2nd .. 20th over 3 intervals
    assert f["avg_age"] == 41  # 46 and 36; m3 without a birthday
    assert f["active_members"] == 3
    assert f["member_growth"] is None  # nobody active at the end of October
    assert f["churn_rate"] is None
    assert f["dormant_members"] == 0 and f["wake_rate"] is None
    assert f["contribution_card_type"] == {"普通卡": F(43000, 70000)}
    assert f["gender_contribution"] == {"F": F(5000, 70000), "M": F(38000, 70000)}
    assert f["coupons_issued"] == 0 and f["coupon_redemption_rate"] is None
    assert all(not isinstance(v, float) for v in f.values())


def test_per_store_and_area(hq_db, chain):
    s1 = kpis.figures(hq_db, Scope("store", "S001"), NOV)
    assert (s1["sales_fen"], s1["member_sales_fen"], s1["tickets"]) == (49000, 25000, 6)
    assert s1["member_sales_share"] == F(25, 49)
    assert (s1["buyers"], s1["repeat_rate"], s1["new_members"]) == (2, F(1, 2), 2)
    assert s1["active_members"] == 2  # home store S001: m1 and m2
    s2 = kpis.figures(hq_db, Scope("store", "S002"), NOV)
    assert (s2["sales_fen"], s2["member_sales_share"], s2["buyers"]) == (18000, 1, 2)
    assert (s2["new_members"], s2["active_members"]) == (1, 1)  # m3 (m4 merged away)
    east = kpis.figures(hq_db, Scope("area", "华东"), NOV)
    assert (east["sales_fen"], east["member_sales_fen"], east["buyers"]) == (67000, 43000, 3)
    assert east["repeat_rate"] == F(1, 3)
    rows = {r["key"]: r for r in kpis.breakdown(hq_db, "store", NOV)}
    assert rows["S001"]["sales_fen"] == 49000 and rows["S001"]["buyers"] == 2
    assert rows["S002"]["new_members"] == 1 and rows["S003"]["buyers"] == 0
    assert [r["key"] for r in kpis.breakdown(hq_db, "store", NOV, Scope("area", "华南"))] == [
        "S003"
    ]
    areas = {r["key"]: r for r in kpis.breakdown(hq_db, "area", NOV)}
    assert areas["华东"]["sales_fen"] == 67000 and areas["华东"]["buyers"] == 3
    assert areas["华南"]["member_sales_share"] == 0


def test_walk_ins_only_and_empty_period(hq_db, chain):
    s3 = kpis.figures(hq_db, Scope("store", "S003"), NOV)
    assert (s3["sales_fen"], s3["member_sales_fen"], s3["tickets"]) == (3000, 0, 1)
    assert s3["member_sales_share"] == 0  # walk-ins count in the denominator
    assert s3["avg_ticket"] is None and s3["items_per_ticket"] is None
    assert s3["buyers"] == 0 and s3["repeat_rate"] is None and s3["activation_rate"] is None
    assert s3["new_member_rate"] == 0
    empty = kpis.figures(hq_db, Scope("chain"), Period("month", dt.date(2026, 1, 1)))
    assert empty["sales_fen"] == 0 and empty["tickets"] == 0 and empty["buyers"] == 0
    for key in ("member_sales_share", "avg_ticket", "repeat_rate", "activation_rate", "avg_age"):
        assert empty[key] is None, key


def test_week_and_compare(hq_db, chain):
    w = kpis.figures(hq_db, Scope("chain"), WEEK45)
    assert (w["sales_fen"], w["member_sales_fen"], w["tickets"], w["buyers"]) == (
        52000,
        25000,
        6,
        3,
    )
    assert w["repeat_rate"] == 0 and w["churn_rate"] is None  # churn is monthly and up
    c = kpis.compare(hq_db, Scope("chain"), NOV, ["sales_fen", "buyers"])
    assert c["current"] == {"sales_fen": 70000, "buyers": 3}
    assert c["previous"] == c["last_year"] == {"sales_fen": 0, "buyers": 0}
    assert c["periods"]["previous"] == Period("month", dt.date(2026, 10, 1))
    points = kpis.series(hq_db, Scope("chain"), "month", 3, dt.date(2026, 11, 30))
    assert [pt["period"].key for pt in points] == ["2026-09", "2026-10", "2026-11"]
    assert [pt["sales_fen"] for pt in points] == [0, 0, 70000]


def test_staff(hq_db, chain):
    e1 = kpis.figures(hq_db, Scope("staff", "E01"), NOV)
    assert e1["new_members"] == 1 and e1["activation_rate"] == 1
    assert e1["recruited_sales_fen"] == 28000  # m1: 30000 - 10000 at S001, 8000 at S002
    assert (e1["maintained_members"], e1["maintained_buyers"], e1["maintained_repeat_rate"]) == (
        1,
        1,
        1,
    )
    e3 = kpis.figures(hq_db, Scope("staff", "E03"), NOV)
    assert e3["new_members"] == 1  # m3; m4 was merged away
    rows = {r["key"]: r for r in kpis.breakdown(hq_db, "staff", NOV, Scope("store", "S001"))}
    assert set(rows) == {"E01", "E02"}
    assert rows["E02"]["recruited_sales_fen"] == 5000 and rows["E02"]["maintained_repeat_rate"] == 0


def test_groups(hq_db, chain):
    rows = kpis.breakdown(hq_db, "gender", NOV)
    assert [(r["key"], r["member_sales_fen"], r["buyers"]) for r in rows] == [
        ("M", 38000, 2),
        ("F", 5000, 1),
    ]
    assert rows[0]["contribution"] == F(38000, 70000)


def _snapshot(db):
    out = {}
    for scope in (
        Scope("chain"),
        Scope("store", "S001"),
        Scope("store", "S002"),
        Scope("area", "华东"),
    ):
        for period in (
            NOV,
            WEEK45,
            period_containing("day", dt.date(2026, 11, 21)),
            Period("year", dt.date(2026, 1, 1)),
        ):
            out[(scope, period)] = kpis.figures(db, scope, period)
    out["staff"] = kpis.figures(db, Scope("staff", "E01"), NOV)
    return out


def test_rebuild_gives_the_same_figures(hq_db, chain):
    before = _snapshot(hq_db)
    counts = summary.rebuild(hq_db)
    assert counts["members"] == 4 and counts["store_days"] == 10
    assert _snapshot(hq_db) == before
    summary.rebuild(hq_db, since=dt.date(2026, 11, 15))
    assert _snapshot(hq_db) == before


def test_each_members_first_and_last_day_bought_by_ingest_rebuild_and_backfill(hq_db, chain):
    """The ingest keeps them (a return moves neither; a merge gives the survivor the
    earliest and latest of both); the rebuild and init-db's backfill give the same."""
    from hq.models import ReportMember

    def days() -> dict[str, tuple]:
        rows = ReportMember.select().where(ReportMember.merged == False)  # noqa: E712
        back = {v: k for k, v in chain.items()}
        return {back[r.member_id]: (str(r.first_day), str(r.last_day)) for r in rows}

    nov = "2026-11-{:02d}".format
    ingested = days()
    # m1: the 2nd to the 20th (the 21st a return); m4's 16th merged in
    assert ingested == {"m1": (nov(2), nov(20)), "m2": (nov(3), nov(3)), "m3": (nov(4), nov(4))}
    summary.rebuild(hq_db)
    assert days() == ingested
    ReportMember.update(last_day=None).execute()
    assert summary.backfill_last_day(hq_db, batch=1) == 3
    assert days() == ingested
    assert summary.backfill_last_day(hq_db) == 0  # nothing left: read once
    # m3 (the 4th) merged into m2 (the 3rd) by staff: m2 has bought from the 3rd to the 4th
    from hq.changes import ChangeSet
    from hq.members import merge_members

    with hq_db.atomic():
        merge_members(hq_db, chain["m3"], chain["m2"], store=None, staff="E9", reason="staff",
                      now=utcnow(), changes=ChangeSet())  # fmt: skip
    assert days() == {"m1": (nov(2), nov(20)), "m2": (nov(3), nov(4))}


def on(items: Items, month: int, day: int) -> Items:
    items.clock = dt.datetime(2026, month, day, 10, 0, tzinfo=TZ)
    return items


@pytest.fixture
def history(hq_db):
    """S001, members registered on 1 July 2026: a buys on 5 July only; b on 6 July and
    5 November (dormant from August to October, woken in November); c on 10 September
    and 10 October."""
    a, b, c = uuid7(), uuid7(), uuid7()
    s = Items("S001")
    stamp = dt.datetime(2026, 7, 1, 9, 0, tzinfo=TZ).isoformat()
    items = [
        on(s, 7, 1).registration(a, "13200000001", at=stamp),
        on(s, 7, 1).registration(b, "13200000002", at=stamp),
        on(s, 7, 1).registration(c, "13200000003", at=stamp),
        on(s, 7, 5).sale(a, 1000),
        on(s, 7, 6).sale(b, 1000),
        on(s, 9, 10).sale(c, 1000),
        on(s, 10, 10).sale(c, 1000),
        on(s, 11, 5).sale(b, 1000),
    ]
    send(hq_db, "S001", items)
    return hq_db


def test_active_churn_growth_and_wake_up(history):
    db = history
    nov = kpis.figures(db, Scope("chain"), NOV)
    assert (nov["active_members"], nov["member_growth"], nov["churn_rate"]) == (2, 1, 0)
    assert (nov["dormant_members"], nov["wake_rate"]) == (2, F(1, 2))  # a and b; b came back
    oct_ = kpis.figures(db, Scope("store", "S001"), Period("month", dt.date(2026, 10, 1)))
    assert (oct_["active_members"], oct_["churn_rate"]) == (1, F(2, 3))  # a and b lapsed
    assert oct_["member_growth"] == F(-2, 3) and oct_["wake_rate"] is None
    q4 = kpis.figures(db, Scope("chain"), Period("quarter", dt.date(2026, 10, 1)))
    assert (q4["active_members"], q4["churn_rate"]) == (2, F(1, 3))  # a lapsed
    week = kpis.figures(db, Scope("chain"), WEEK45)
    assert week["active_members"] is None and week["churn_rate"] is None


def _all_figures(db, live: bool) -> dict:
    out = {}
    periods = [Period("month", dt.date(2026, m, 1)) for m in (7, 9, 10, 11)] + [
        Period("quarter", dt.date(2026, 10, 1)),
        Period("year", dt.date(2026, 1, 1)),
        WEEK45,
        Period("week", dt.date(2026, 11, 16)),
    ]
    for period in periods:
        for scope in (
            Scope("chain"),
            Scope("store", "S001"),
            Scope("store", "S002"),
            Scope("area", "华东"),
        ):
            out[(scope, period)] = kpis.figures(db, scope, period, live=live)
    return out


@pytest.mark.parametrize("data", ["chain", "history"])
def test_rollup_gives_the_live_figures(request, hq_db, data):
    request.getfixturevalue(data)
    Store.update(area="华东").where(Store.code.in_(["S001", "S002"])).execute()
    live = _all_figures(hq_db, live=True)
    bys = ("store", "area", "tier", "card_type", "gender")
    before = {by: kpis.breakdown(hq_db, by, NOV) for by in bys}
    within = kpis.breakdown(hq_db, "gender", NOV, Scope("area", "华东"))
    # weeks, months, quarters and 2026, from the first sale to 5 December
    periods = {"chain": 5 + 2 + 1 + 1, "history": 23 + 6 + 2 + 1}[data]
    assert rollup.rollup_all(hq_db, dt.date(2026, 12, 5)) == periods
    assert _all_figures(hq_db, live=False) == live
    assert {by: kpis.breakdown(hq_db, by, NOV) for by in bys} == before
    assert kpis.breakdown(hq_db, "gender", NOV, Scope("area", "华东")) == within
    recent = rollup.recent_periods(dt.date(2026, 12, 3))
    assert [p.key for p in recent if not p.is_cut] == [
        "2026-W49", "2026-12", "2026-Q4", "2026", "2026-W48", "2026-11",
    ]  # fmt: skip
    # and the running month, quarter and year to the 3rd, with the same days before
    assert [(p.key, p.last_day.isoformat()) for p in recent if p.is_cut] == [
        ("2026-12", "2026-12-03"), ("2026-11", "2026-11-03"), ("2025-12", "2025-12-03"),
        ("2026-Q4", "2026-12-03"), ("2026-Q3", "2026-09-03"), ("2025-Q4", "2025-12-03"),
        ("2026", "2026-12-03"), ("2025", "2025-12-03"),
    ]  # fmt: skip


def test_the_rollup_job_and_the_cli(hq_db, hq_db_url, chain):
    from click.testing import CliRunner

    from hq.cli import main
    from hq.config import HqConfig
    from hq.models import ReportRollup
    from hq.scheduler import JOBS, JobContext

    (job,) = [j for j in JOBS if j.name == "reports-rollup"]
    config = HqConfig(database_url=hq_db_url, timezone="Asia/Shanghai")
    counts = job.run(JobContext(hq_db, config, clock=lambda: dt.datetime(2026, 11, 30, 20, 0)))
    # 1 Dec: its week, December, Q4, 2026; 24 Nov: its week, November; and to date (the
    # 1st): December, November, Dec 2025, Q4, Q3, Q4 2025, 2026, 2025
    assert counts["periods"] == 14
    assert ReportRollup.select().where(ReportRollup.start == NOV.start).exists()
    assert kpis.figures(hq_db, Scope("chain"), NOV) == kpis.figures(
        hq_db, Scope("chain"), NOV, live=True
    )
    runner = CliRunner()
    res = runner.invoke(main, ["--database-url", hq_db_url, "reports-rebuild"])
    assert res.exit_code == 0, res.output
    assert '"members": 4' in res.output
    res = runner.invoke(
        main,
        [
            "--database-url",
            hq_db_url,
            "kpis",
            "--scope",
            "store",
            "--key",
            "S001",
            "--period",
            "2026-11",
        ],
    )
    assert res.exit_code == 0, res.output
    assert '"sales_fen": 49000' in res.output
    res = runner.invoke(
        main, ["--database-url", hq_db_url, "reports-rebuild", "--from", "2026-13-01"]
    )
    assert res.exit_code == 11 and "from" in res.output
