"""Periods to date (本月至今 against 上月同期 and 去年同期): the cut-off's offsets and their
clamping, hand-computed figures on data ingested the real way, the rollup never read for
a cut period, and the dashboard and reports on a day inside the month (the console's
"today" pinned with ``app.config["HQ_CLOCK"]``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from fractions import Fraction as F

import pytest

from core import protocol as p
from core.errors import ValidationError
from core.ids import uuid7
from hq.api import create_app
from hq.config import HqConfig
from hq.ingest import ingest_batch
from hq.models import ReportRollup
from hq.reports import kpis, rollup
from hq.reports.periods import Period, Scope, period_containing
from tests.hq.edge_sim import TZ, Items
from tests.hq.signin import session_client

D = dt.date
CHAIN = Scope("chain")
NOW = dt.datetime(2026, 12, 7, 4, 0)
DEC = Period("month", D(2026, 12, 1))
NOV = Period("month", D(2026, 11, 1))
DEC5 = D(2026, 12, 5)


# ---- offsets and clamping (pure) -------------------------------------------------------


def cut(kind: str, day: D) -> Period:
    return period_containing(kind, day).until(day)


def test_a_month_to_date_and_its_same_spans():
    p = cut("month", DEC5)
    assert (p.start, p.end, p.last_day, p.days) == (D(2026, 12, 1), D(2026, 12, 6), DEC5, 5)
    assert p.label == "2026年12月1日-5日" and p.span == "12月1日-5日"
    assert p.previous() == Period("month", D(2026, 11, 1), D(2026, 11, 5))
    assert p.previous().label == "2026年11月1日-5日"
    assert p.same_last_year() == Period("month", D(2025, 12, 1), D(2025, 12, 5))
    assert p.whole() == DEC and p.key == "2026-12"
    assert p.to_dict()["to"] == "2026-12-05" and p.to_dict()["end"] == "2026-12-06"


def test_offsets_clamp_at_month_ends():
    # 30 March: February has no 30th, so the whole of February (28 days in 2026)
    assert cut("month", D(2026, 3, 30)).previous() == Period("month", D(2026, 2, 1))
    # 28 March 2028 against 1-28 February 2028 (a leap year: 29 days)
    assert cut("month", D(2028, 3, 28)).previous() == Period("month", D(2028, 2, 1), D(2028, 2, 28))
    # 29 February 2028 is February's last day: whole; 28 February 2028 is not
    assert period_containing("month", D(2028, 2, 29)).until(D(2028, 2, 29)).is_cut is False
    leap = cut("month", D(2028, 2, 28))
    assert leap.same_last_year() == Period("month", D(2027, 2, 1))  # 1-28 Feb 2027: whole
    # 30 April against 1-30 March (cut), 31 March on its last day is whole
    assert cut("month", D(2026, 4, 29)).previous() == Period("month", D(2026, 3, 1), D(2026, 3, 29))
    assert period_containing("month", D(2026, 3, 31)).until(D(2026, 3, 31)) == Period(
        "month", D(2026, 3, 1)
    )
    # a quarter: the same month offset and day, clamped (31 May -> 28 February)
    q = cut("quarter", D(2026, 5, 30))
    assert q.previous() == Period("quarter", D(2026, 1, 1), D(2026, 2, 28))
    assert q.same_last_year() == Period("quarter", D(2025, 4, 1), D(2025, 5, 30))
    # a year cut on 29 February: last year's to 28 February
    y = cut("year", D(2028, 2, 29))
    assert y.previous() == Period("year", D(2027, 1, 1), D(2027, 2, 28))
    assert y.label == "2028年1月1日-2月29日"


def test_year_boundaries_and_weeks():
    jan = cut("month", D(2027, 1, 5))
    assert jan.previous() == Period("month", D(2026, 12, 1), D(2026, 12, 5))
    assert jan.same_last_year() == Period("month", D(2026, 1, 1), D(2026, 1, 5))
    # ISO week 1 of 2026 starts on Monday 29 December 2025; to Thursday 1 January
    w = cut("week", D(2026, 1, 1))
    assert w.label == "2026年第1周 (2025年12月29日-2026年1月1日)"
    assert w.previous() == Period("week", D(2025, 12, 22), D(2025, 12, 25))
    assert w.same_last_year() == Period("week", D(2024, 12, 30), D(2025, 1, 2))
    # week 53 of 2026 against week 52 of 2025, same weekday
    w53 = cut("week", D(2026, 12, 29))
    assert w53.start == D(2026, 12, 28) and w53.same_last_year() == Period(
        "week", D(2025, 12, 22), D(2025, 12, 23)
    )
    # a day is never cut; Sunday ends a week (whole)
    assert cut("day", DEC5) == Period("day", DEC5)
    assert period_containing("week", D(2026, 12, 6)).until(D(2026, 12, 6)).is_cut is False


def test_a_bad_cut_off_is_refused():
    with pytest.raises(ValidationError):
        DEC.until(D(2026, 11, 30))
    with pytest.raises(ValidationError):
        Period("month", D(2026, 12, 1), D(2026, 12, 31))  # its last day: not a cut
    with pytest.raises(ValidationError):
        Period("month", D(2026, 12, 1), D(2027, 1, 2))


# ---- figures on ingested data ----------------------------------------------------------


def at(items: Items, day: D, hour: int = 10) -> Items:
    items.clock = dt.datetime.combine(day, dt.time(hour, 0), TZ)
    return items


@pytest.fixture
def shop(hq_db):
    """One store S001, through ingest:

    December 2025: walk-ins 9000 (2nd) and 1000 (10th).
    November 2026: m1 registers on the 2nd and buys 10000 (2nd), 6000 (4th), 7000 (20th);
    walk-ins 3000 (3rd), 50000 (25th).
    December 2026: m2 registers on the 1st and buys 4000; m1 buys 2000 (3rd), 1000
    (5th); a walk-in 8000 on the 6th (after the cut-off of the 5th).
    """
    m1, m2 = uuid7(), uuid7()
    s = Items("S001")
    items = [
        at(s, D(2025, 12, 2)).sale(None, 9000),
        at(s, D(2025, 12, 10)).sale(None, 1000),
    ]
    at(s, D(2026, 11, 2), 9)
    items.append(s.registration(m1, "13200000001"))
    items.append(at(s, D(2026, 11, 2)).sale(m1, 10000))
    items.append(at(s, D(2026, 11, 3)).sale(None, 3000))
    items.append(at(s, D(2026, 11, 4)).sale(m1, 6000))
    items.append(at(s, D(2026, 11, 20)).sale(m1, 7000))
    items.append(at(s, D(2026, 11, 25)).sale(None, 50000))
    at(s, D(2026, 12, 1), 9)
    items.append(s.registration(m2, "13200000002"))
    items.append(at(s, D(2026, 12, 1)).sale(m2, 4000))
    items.append(at(s, D(2026, 12, 3)).sale(m1, 2000))
    items.append(at(s, D(2026, 12, 5)).sale(m1, 1000))
    items.append(at(s, D(2026, 12, 6)).sale(None, 8000))
    outcome = ingest_batch(hq_db, "hy/v1/S001/up/tx", "S001", p.make_batch("S001", 1, items), NOW)
    assert outcome.ack.acked_through == items[-1]["seq"], outcome.ack
    assert not outcome.ack.rejected, outcome.ack.rejected
    return {"m1": m1, "m2": m2}


def test_month_to_date_against_the_same_days(hq_db, shop):
    keys = ["sales_fen", "tickets", "member_tickets", "buyers", "repeat_rate", "new_members"]
    c = kpis.compare(hq_db, CHAIN, DEC, keys + ["active_members", "churn_rate"], to_date=DEC5)
    assert c["to_date"] is True
    assert c["periods"]["current"] == Period("month", D(2026, 12, 1), DEC5)
    assert c["periods"]["previous"] == Period("month", D(2026, 11, 1), D(2026, 11, 5))
    assert c["periods"]["last_year"] == Period("month", D(2025, 12, 1), D(2025, 12, 5))
    cur, prev, ly = c["current"], c["previous"], c["last_year"]
    # 1-5 December: m2 4000 (1st), m1 2000 (3rd) and 1000 (5th); the 6th's walk-in not
    assert (cur["sales_fen"], cur["tickets"], cur["member_tickets"]) == (7000, 3, 3)
    assert (cur["buyers"], cur["repeat_rate"], cur["new_members"]) == (2, F(1, 2), 1)
    # 1-5 November: m1 10000 (2nd) and 6000 (4th), a walk-in 3000 (3rd)
    assert (prev["sales_fen"], prev["tickets"], prev["member_tickets"]) == (19000, 3, 2)
    assert (prev["buyers"], prev["repeat_rate"], prev["new_members"]) == (1, F(1, 1), 1)
    # 1-5 December 2025: the walk-in of the 2nd
    assert (ly["sales_fen"], ly["tickets"], ly["buyers"]) == (9000, 1, 0)
    # the whole-month figures are not compared; the month's own as of the 5th instead
    for side in (cur, prev, ly):
        assert side["active_members"] is None and side["churn_rate"] is None
    # active on the 5th: bought in October-December (m1, m2); churn: of m1 (active at
    # November's end), kept
    assert c["as_of"] == {"active_members": 2, "churn_rate": F(0, 1)}
    # the whole months, for contrast: what the old dashboard compared
    whole = kpis.compare(hq_db, CHAIN, DEC, ["sales_fen", "tickets"])
    assert whole["to_date"] is False and whole["as_of"] == {}
    assert whole["current"]["sales_fen"] == 15000 and whole["previous"]["sales_fen"] == 76000
    short = kpis.compare(hq_db, CHAIN, DEC, ["sales_fen"], DEC5, last_year=False)
    assert short["last_year"] == {} and short["previous"] == {"sales_fen": 19000}


def test_a_finished_period_compares_whole_periods(hq_db, shop):
    c = kpis.compare(hq_db, CHAIN, NOV, ["sales_fen", "tickets", "buyers"], to_date=DEC5)
    assert c["to_date"] is False
    assert c["periods"] == {
        "current": NOV,
        "previous": Period("month", D(2026, 10, 1)),
        "last_year": Period("month", D(2025, 11, 1)),
    }
    assert c["current"] == {"sales_fen": 76000, "tickets": 5, "buyers": 1}
    # on the month's last day the month is whole too
    last = kpis.compare(hq_db, CHAIN, DEC, ["sales_fen"], to_date=D(2026, 12, 31))
    assert last["to_date"] is False and last["current"]["sales_fen"] == 15000
    assert last["last_year"]["sales_fen"] == 10000


def test_a_week_to_date(hq_db, shop):
    # Thursday 3 December 2026 is in the week from Monday 30 November; to Thursday
    week = period_containing("week", D(2026, 12, 3))
    c = kpis.compare(hq_db, CHAIN, week, ["sales_fen", "buyers"], to_date=D(2026, 12, 3))
    assert c["periods"]["previous"] == Period("week", D(2026, 11, 23), D(2026, 11, 26))
    assert c["current"] == {"sales_fen": 6000, "buyers": 2}  # 4000 (1st) + 2000 (3rd)
    assert c["previous"] == {"sales_fen": 50000, "buyers": 0}  # 23-26 Nov: the 25th's walk-in


def test_a_cut_period_reads_only_a_rollup_cut_at_the_same_day(hq_db, shop):
    for period in (DEC, NOV):
        rollup.rollup(hq_db, period, NOW)
    # spoil the whole months' rows: a whole month now reads them, a cut one must not
    ReportRollup.update(data=[999, 999, 999, 0, 0, 0, 0]).where(
        ReportRollup.scope_kind == "chain"
    ).execute()
    assert kpis.figures(hq_db, CHAIN, DEC, ["buyers"]) == {"buyers": 999}
    assert kpis.figures(hq_db, CHAIN, DEC.until(DEC5), ["buyers"]) == {"buyers": 2}
    c = kpis.compare(hq_db, CHAIN, DEC, ["buyers", "repeat_rate"], to_date=DEC5)
    assert c["current"] == {"buyers": 2, "repeat_rate": F(1, 2)}
    assert c["previous"] == {"buyers": 1, "repeat_rate": F(1, 1)}
    assert kpis.breakdown(hq_db, "store", DEC.until(DEC5))[0]["buyers"] == 2

    # the job rolls up the running month to date (and November to the same day): the
    # figures read those rows, and equal what was counted live
    done = rollup.rollup_recent(hq_db, DEC5)
    assert "month:2026-12:to:2026-12-05" in done and "month:2026-11:to:2026-11-05" in done
    assert kpis.compare(hq_db, CHAIN, DEC, ["buyers", "repeat_rate"], to_date=DEC5) == c
    cut = ReportRollup.select().where(
        (ReportRollup.until == "2026-12-05") & (ReportRollup.scope_kind == "chain")
    )
    cut_row = cut.get()
    ReportRollup.update(data=[777, *cut_row.data[1:]]).where(
        (ReportRollup.until == "2026-12-05") & (ReportRollup.scope_kind == "chain")
    ).execute()
    assert kpis.figures(hq_db, CHAIN, DEC.until(DEC5), ["buyers"]) == {"buyers": 777}
    # a cut at another day is not this one: counted live
    assert kpis.figures(hq_db, CHAIN, DEC.until(D(2026, 12, 4)), ["buyers"]) == {"buyers": 2}
    # the next day's run replaces the cut (one per period), a week to date stays live
    rollup.rollup_recent(hq_db, D(2026, 12, 6))
    untils = {r.until for r in ReportRollup.select().where(ReportRollup.kind == "month")}
    assert "2026-12-05" not in untils and "2026-12-06" in untils
    with pytest.raises(ValueError, match="counted live"):
        rollup.rollup(hq_db, period_containing("week", DEC5).until(DEC5), NOW)


# ---- the console, on 5 December ---------------------------------------------------------


def clock_at(day: D):
    """Noon in Shanghai on ``day``, as naive UTC."""
    return lambda: dt.datetime.combine(day, dt.time(4, 0))


@pytest.fixture
def app(hq_db, hq_db_url, shop):
    app = create_app(HqConfig(database_url=hq_db_url, timezone="Asia/Shanghai"), db=hq_db)
    app.testing = True
    app.config["HQ_CLOCK"] = clock_at(DEC5)
    return app


def text(resp) -> str:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return resp.get_data(as_text=True)


def test_the_dashboard_on_the_5th_compares_the_same_days(app, hq_db):
    client = session_client(app, hq_db, "analyst")
    html = text(client.get("/"))
    assert "本月 · 2026年12月1日-5日" in html
    assert "本月至今 (12月1日-5日) 对比 上月同期 (11月1日-5日)" in html
    card = html[html.index('id="card-sales_fen"') :][:600]
    assert "¥70.00" in card and "上月同期 ¥190.00" in card
    assert "▼ 63.2%" in card  # 7000 against 19000, not against November's 76000
    assert "上月 ¥760.00" not in html
    # active members: the month's own as of the 5th (m1, m2), not compared
    card = html[html.index('id="card-active_members"') :][:600]
    assert "(截至12月5日)" in card and '<div class="value">2</div>' in card
    assert "上月同期 —" in card
    # the week (30 Nov - 5 Dec, to Saturday) against 23-28 November
    week = text(client.get("/?kind=week"))
    assert "上周同期 (11月23日-28日)" in week
    # on the month's last day: whole months, worded plainly
    app.config["HQ_CLOCK"] = clock_at(D(2026, 11, 30))
    html = text(client.get("/"))
    assert "上月同期" not in html.split('id="glance"')[0]
    assert "本月 (11月) 对比 上月 (10月)" in html
    card = html[html.index('id="card-sales_fen"') :][:600]
    assert "¥760.00" in card and "上月 —" not in card


def test_the_report_of_the_running_month_is_to_date_and_says_so(app, hq_db):
    client = session_client(app, hq_db, "analyst")
    html = text(client.get("/reports?kind=month"))
    for words in ("本期至今 (12月1日-5日)", "上月同期 (11月1日-5日)", "去年同期 (12月1日-5日)"):
        assert words in html
    assert "2026年12月1日-5日 对比 2026年11月1日-5日、2025年12月1日-5日" in html
    assert "有效会员数 (截至12月5日)" in html
    assert 'id="compare-whole"' in html
    assert "2026-12-01 至 2026-12-05" in html
    # whole periods on request
    whole = text(client.get("/reports?kind=month&whole=1"))
    assert "上月同期" not in whole and 'id="compare-to-date"' in whole
    assert "2026-12-01 至 2026-12-31" in whole
    assert "2026年12月 对比 2026年11月、2025年12月" in whole
    # a finished month: whole, no switch
    nov = text(client.get("/reports?kind=month&period=2026-11"))
    assert "上月同期" not in nov and 'id="compare-whole"' not in nov
    assert "2026年11月 对比 2026年10月、2025年11月" in nov
    assert client.get("/reports?kind=month&whole=2").status_code == 400


def test_the_export_names_the_spans_it_compares(app, hq_db):
    client = session_client(app, hq_db, "analyst")
    resp = client.get("/reports/export?kind=month&format=csv")
    assert resp.status_code == 200
    rows = list(csv.reader(io.StringIO(resp.get_data().decode("utf-8-sig"))))
    assert rows[0][1:6] == [
        "本期至今 (12月1日-5日)",
        "上月同期 (11月1日-5日)",
        "环比",
        "去年同期 (12月1日-5日)",
        "同比",
    ]
    sales = next(r for r in rows if r[0] == "销售额")
    assert sales[1:4] == ["70.00", "190.00", sales[3]] and sales[4] == "90.00"
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(client.get("/reports/export?kind=month").get_data()))
    notes = {r[0]: r[1] for r in book["说明"].iter_rows(values_only=True)}
    assert notes["对比"].startswith("2026年12月1日-5日 对比 2026年11月1日-5日、2025年12月1日-5日")


def test_the_dashboard_to_date_in_a_browser(app, hq_db):
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, live_server, shot
    from tests.hq.signin import PASSWORD, make_user

    make_user(hq_db, "membership", username="zhao")
    with live_server(app) as base, chromium(1366, 900) as driver:
        driver.get(f"{base}/")
        driver.find_element(By.ID, "username").send_keys("zhao")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
        spans = driver.find_element(By.ID, "compare-spans").text
        assert "上月同期 (11月1日-5日)" in spans
        card = driver.find_element(By.ID, "card-sales_fen").text
        assert "¥70.00" in card and "上月同期 ¥190.00" in card
        shot(driver, "hq-dashboard-to-date")
        driver.get(f"{base}/reports?kind=month")
        assert "上月同期 (11月1日-5日)" in driver.find_element(By.ID, "report-table").text
        shot(driver, "hq-report-to-date")
