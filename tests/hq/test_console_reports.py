"""The console's dashboard (``/``), reports (``/reports``) and their export
(``/reports/export``), signed in as each role, on figures ingested the real way."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from fractions import Fraction

import pytest
from openpyxl import load_workbook

from core import protocol as p
from core.ids import uuid7
from hq.api import create_app
from hq.config import HqConfig
from hq.ingest import ingest_batch
from hq.models import AuditEntry, Store, utcnow
from hq.programme.staff import add_staff
from hq.reports import kpis
from hq.reports.periods import Scope, period_containing
from tests.browser import chromium, live_server, shot
from tests.hq.edge_sim import TZ, Items
from tests.hq.signin import make_user, session_client, sign_in

STORES = {
    "S001": ("南京西路店", "华东"),
    "S002": ("徐家汇店", "华东"),
    "S003": ("王府井店", "华北"),
}
# per store and month: (member sale, walk-in sale) in fen
SALES = {"S001": (10000, 5000), "S002": (5000, 15000), "S003": (20000, 0)}
MONTHS = 5  # this month and the four before


def business_today(app) -> dt.date:
    return app.config["HQ"].business_day(utcnow())


def month_start(day: dt.date, back: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - back
    return dt.date(index // 12, index % 12 + 1, 1)


def seed_chain(db, today: dt.date) -> None:
    """Three stores in two areas, five months of members and sales, through ingest: each
    month every store registers a member who buys, last month's member buys again, and a
    walk-in buys (S003 has no walk-ins)."""
    for code, (member_fen, walk_in_fen) in SALES.items():
        add_staff(db, f"G{code}", f"导购{code[-1]}号", code, "guide", "test", utcnow())
        items = Items(code)
        batch = []
        previous = None
        for back in range(MONTHS - 1, -1, -1):
            # the 10th of past months; today for this month (just after midnight)
            day = today if back == 0 else month_start(today, back) + dt.timedelta(days=9)
            items.clock = dt.datetime.combine(day, dt.time(0, 5), TZ)
            member = uuid7()
            phone = f"139{int(code[1:]):02d}{back:02d}{len(batch):04d}"[:11]
            batch.append(
                items.registration(member, phone, name=f"会员{code}{back}", staff_code=f"G{code}")
            )
            # a little more each month, so the figures move
            batch.append(items.sale(member, member_fen + 1000 * (MONTHS - back)))
            if previous is not None:
                batch.append(items.sale(previous, member_fen))
            if walk_in_fen:
                batch.append(items.sale(None, walk_in_fen))
            previous = member
        outcome = ingest_batch(
            db, f"hy/v1/{code}/up/tx", code, p.make_batch(code, 1, batch), utcnow()
        )
        assert outcome.ack.acked_through == len(batch), outcome
        name, area = STORES[code]
        Store.update(name=name, area=area).where(Store.code == code).execute()


@pytest.fixture
def app(hq_db, hq_db_url):
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    seed_chain(hq_db, business_today(app))
    return app


def page(resp) -> str:
    return resp.get_data(as_text=True)


def month_key(app) -> str:
    return period_containing("month", business_today(app)).key


def summary_headers(app) -> list[str]:
    """A summary of this month: to date (against the same days of last month) unless
    today is the month's last day (docs/console.md "Reports")."""
    today = business_today(app)
    month = period_containing("month", today)
    if today == month.last_day:
        return ["指标", "本期", "上月"]
    cut = month.until(today)
    return ["指标", f"本期至今 ({cut.span})", f"上月同期 ({cut.previous().span})"]


def test_the_analyst_sees_the_chain_this_month_against_last(app, hq_db):
    client = session_client(app, hq_db, "analyst")
    resp = client.get("/")
    assert resp.status_code == 200
    html = page(resp)
    # the lead card is the member sales share, and it is the engine's figure
    period = period_containing("month", business_today(app))
    got = kpis.compare(hq_db, Scope("chain"), period)
    share = got["current"]["member_sales_share"]
    assert share is not None
    tenths = int(share * 1000 + Fraction(1, 2))
    assert re.search(
        r'id="card-member_sales_share">\s*<div class="label">会员交易额占有率</div>\s*'
        rf'<div class="value">{tenths // 10}\.{tenths % 10}%</div>',
        html,
    ), html
    sales = got["current"]["sales_fen"]
    assert f"¥{sales // 100:,}.{sales % 100:02d}" in html
    assert "上月" in html
    # today, this week and this month side by side
    glance = html[html.index('id="glance"') : html.index("</table>", html.index('id="glance"'))]
    assert all(word in glance for word in ("今日", "本周", "本月", "昨日", "上周", "上月"))
    # the charts are inline SVG, one per panel, with every store as a bar
    assert html.count("<svg") == 4
    for code, (name, _) in STORES.items():
        assert f"{code} {name}" in html
    for kind in ("day", "week"):
        assert client.get(f"/?kind={kind}").status_code == 200
    # the console's CSP: no inline style or script anywhere on these pages
    for url in ("/", "/reports", "/reports?by=store"):
        text = page(client.get(url))
        assert "style=" not in text and "<style" not in text
        assert re.findall(r"<script(?![^>]*\bsrc=)", text) == []


def test_each_report_cadence_and_breakdown_opens(app, hq_db):
    client = session_client(app, hq_db, "analyst")
    for kind in ("day", "week", "month", "quarter", "year"):
        resp = client.get(f"/reports?kind={kind}")
        assert resp.status_code == 200, (kind, page(resp))
    html = page(client.get(f"/reports?kind=month&period={month_key(app)}"))
    assert "去年同期" in html and "同比" in html and "环比" in html
    # tracking is against the previous period only; the review against last year
    html = page(client.get("/reports?kind=week"))
    assert "上周" in html and "环比" in html and "去年同期" not in html
    assert "会员交易额占有率" in html and "有效会员数" not in html  # tracking figures only
    html = page(client.get("/reports?kind=year"))
    assert "去年" in html and "同比" in html and "环比" not in html
    assert "会员交易额占有率" in html and "有效会员数" in html and "流失率" in html
    # the table, then its trend chart, both in the page's main part
    assert html.count("<svg") == 1
    assert html.index('id="report-table"') < html.index("<svg") < html.index("</main>")
    for by in ("store", "area", "staff", "tier", "card_type", "gender"):
        resp = client.get(f"/reports?kind=month&period={month_key(app)}&by={by}")
        assert resp.status_code == 200, (by, page(resp))
    html = page(client.get(f"/reports?kind=month&period={month_key(app)}&by=store"))
    for code, (name, _) in STORES.items():
        assert f"{code} {name}" in html
    html = page(client.get(f"/reports?kind=month&period={month_key(app)}&by=area"))
    assert "华东" in html and "华北" in html
    html = page(client.get(f"/reports?kind=month&period={month_key(app)}&by=staff"))
    assert "发展会员数" in html and "导购1号 (S001)" in html and "导购3号 (S003)" in html


def test_an_empty_period_shows_dashes_not_an_error(app, hq_db):
    client = session_client(app, hq_db, "analyst")
    resp = client.get("/reports?kind=year&period=2019")
    assert resp.status_code == 200
    html = page(resp)
    assert "2019年" in html and "—" in html
    resp = client.get("/reports?kind=month&period=2019-03&by=store")
    assert resp.status_code == 200
    assert "本期没有数据" in page(resp)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("/reports?kind=decade", "周期"),
        ("/reports?kind=month&period=2026-13", "周期无效"),
        ("/reports?kind=month&period=" + "9" * 40, "周期无效"),
        ("/reports?kind=year&period=0001", "期间须在"),
        ("/reports?kind=day&period=9999-12-31", "期间须在"),
        ("/reports?kind=week&period=2026-W60", "周期无效"),
        ("/reports/export?kind=quarter&period=2026-Q5&format=csv", "周期无效"),
        ("/reports?by=planet", "维度"),
        ("/reports?scope=galaxy", "范围"),
        ("/reports?scope=store:S999", "门店不存在"),
        ("/reports/export?format=pdf", "导出格式"),
        ("/?kind=quarter", "周期"),
    ],
)
def test_bad_parameters_are_a_chinese_400_page(app, hq_db, query, words):
    client = session_client(app, hq_db, "analyst")
    resp = client.get(query)
    assert resp.status_code == 400, page(resp)
    assert resp.mimetype == "text/html"
    assert words in page(resp)


def test_a_store_manager_sees_only_their_store(app, hq_db):
    client = session_client(app, hq_db, "store", "S001")
    html = page(client.get("/"))
    assert "S001 南京西路店" in html
    assert "S002" not in html and "S003" not in html and "全连锁" not in html
    # their figures are the store's
    period = period_containing("month", business_today(app))
    sales = kpis.figures(hq_db, Scope("store", "S001"), period)["sales_fen"]
    assert f"¥{sales // 100:,}.{sales % 100:02d}" in html
    html = page(client.get("/reports"))
    assert 'value="store:S001" selected' in html and "store:S002" not in html
    html = page(client.get("/reports?by=staff"))
    assert "导购1号 (S001)" in html and "导购2号" not in html
    assert "按区域" not in html  # no area breakdown within one store
    for query in (
        "/?scope=store:S002",
        "/?scope=chain",
        "/?scope=area:华东",
        "/reports?scope=store:S003",
        "/reports?scope=chain&by=store",
        "/reports/export?scope=store:S002&format=csv",
    ):
        resp = client.get(query)
        assert resp.status_code == 403, query
        assert "无权" in page(resp)
    assert not AuditEntry.select().where(AuditEntry.action == "report.export").exists()


def test_an_area_manager_sees_their_area_and_its_stores(app, hq_db):
    client = session_client(app, hq_db, "area", "华东")
    html = page(client.get("/"))
    assert "区域 华东" in html and "S001" in html and "S002" in html
    assert "S003" not in html and "华北" not in html
    assert client.get("/?scope=store:S002").status_code == 200
    assert client.get("/?scope=store:S003").status_code == 403
    assert client.get("/reports?scope=area:华北").status_code == 403
    html = page(client.get(f"/reports?kind=month&period={month_key(app)}&by=store"))
    assert "S001 南京西路店" in html and "S003" not in html
    # the area's export: its file name says which area (RFC 5987 for the Chinese)
    resp = client.get(f"/reports/export?kind=month&period={month_key(app)}&format=csv")
    assert resp.status_code == 200
    disposition = resp.headers["Content-Disposition"]
    assert "filename*=UTF-8''" in disposition and "%E5%8D%8E%E4%B8%9C" in disposition
    disposition.encode("latin-1")  # a header a WSGI server can send


def test_the_export_is_a_real_workbook_with_the_figures_and_is_audited(app, hq_db):
    username = make_user(hq_db, "analyst")
    client = sign_in(app.test_client(), username)
    key = month_key(app)
    resp = client.get(f"/reports/export?kind=month&period={key}&scope=chain&by=store&format=xlsx")
    assert resp.status_code == 200, page(resp)
    assert resp.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in resp.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(resp.data))
    sheet = book.worksheets[0]
    headers = [c.value for c in sheet[1]]
    assert headers[0] == "门店" and "销售额 (元)" in headers and "会员交易额占有率" in headers
    period = period_containing("month", business_today(app))
    by_store = {r["key"]: r for r in kpis.breakdown(hq_db, "store", period)}
    sales_col = headers.index("销售额 (元)")
    share_col = headers.index("会员交易额占有率")
    seen = 0
    for row in sheet.iter_rows(min_row=2):
        code = row[0].value.split()[0]
        want = by_store[code]
        assert Decimal(str(row[sales_col].value)) == Decimal(want["sales_fen"]) / 100
        assert row[sales_col].number_format == "#,##0.00"
        if want["member_sales_share"] is None:
            assert row[share_col].value is None
        else:
            assert row[share_col].value == pytest.approx(float(want["member_sales_share"]))
            assert row[share_col].number_format == "0.0%"
        seen += 1
    assert seen == 3
    # the summary (no breakdown): one row per figure, the current month in 本期
    resp = client.get(f"/reports/export?kind=month&period={key}&format=xlsx")
    sheet = load_workbook(io.BytesIO(resp.data)).worksheets[0]
    assert [c.value for c in sheet[1]][:3] == summary_headers(app)
    rows = {r[0].value: r for r in sheet.iter_rows(min_row=2)}
    sales = kpis.figures(hq_db, Scope("chain"), period)["sales_fen"]
    assert Decimal(str(rows["销售额"][1].value)) == Decimal(sales) / 100
    entries = list(AuditEntry.select().where(AuditEntry.action == "report.export"))
    assert len(entries) == 2
    assert entries[0].actor == username
    assert "月报" in entries[0].target and entries[0].details["format"] == "xlsx"
    assert entries[0].details["by"] == "store"


def test_the_csv_export_opens_in_excel_as_chinese(app, hq_db):
    client = session_client(app, hq_db, "store", "S001")
    key = month_key(app)
    resp = client.get(f"/reports/export?kind=month&period={key}&format=csv")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(resp.data.decode("utf-8-sig"))))
    assert rows[0][:3] == summary_headers(app)
    by_name = {r[0]: r for r in rows[1:]}
    period = period_containing("month", business_today(app))
    sales = kpis.figures(hq_db, Scope("store", "S001"), period)["sales_fen"]
    assert by_name["销售额"][1] == f"{sales // 100}.{sales % 100:02d}"
    entry = AuditEntry.get(AuditEntry.action == "report.export")
    assert entry.store == "S001" and entry.details["format"] == "csv"
    # a member group breakdown: each gender's share of all sales, walk-ins included
    resp = client.get(f"/reports/export?kind=month&period={key}&by=gender&format=csv")
    rows = list(csv.reader(io.StringIO(resp.data.decode("utf-8-sig"))))
    assert rows[0][0] == "性别" and "贡献率" in rows[0]
    share = rows[1][rows[0].index("贡献率")]
    assert share.endswith("%") and 0 < float(share[:-1]) < 100


def test_the_export_needs_its_own_permission(app):
    assert app.view_functions["reports.export"].hy_permission == "reports.export"
    assert app.view_functions["reports.reports_page"].hy_permission == "reports.read"


def test_the_dashboard_and_a_monthly_report_in_a_browser(app, hq_db):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.hq.signin import PASSWORD

    make_user(hq_db, "membership", username="wang")
    with live_server(app) as base, chromium(1366, 768) as driver:
        driver.get(f"{base}/")
        driver.find_element(By.ID, "username").send_keys("wang")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
        card = driver.find_element(By.ID, "card-member_sales_share")
        assert "会员交易额占有率" in card.text and "%" in card.text
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) == 4
        shot(driver, "hq-dashboard")
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        shot(driver, "hq-dashboard-charts")
        # switch store from the keyboard: pick it, Tab to 查看, Enter
        scope = driver.find_element(By.ID, "scope")
        Select(scope).select_by_value("store:S002")
        scope.send_keys(Keys.TAB, Keys.TAB)
        assert driver.switch_to.active_element.get_attribute("id") == "dashboard-go"
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        WebDriverWait(driver, 10).until(lambda d: "scope=store%3AS002" in d.current_url)
        assert "门店 S002 徐家汇店" in driver.find_element(By.ID, "period-label").text
        shot(driver, "hq-dashboard-store")
        driver.find_element(By.ID, "open-report").click()
        assert "/reports" in driver.current_url
        assert "月报" in driver.find_element(By.ID, "report-name").text
        assert driver.find_element(By.ID, "report-table").is_displayed()
        shot(driver, "hq-report-month")
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        shot(driver, "hq-report-month-trend")
        # Enter on a drop-down submits its form (reports.js)
        period = driver.find_element(By.ID, "period")
        Select(period).select_by_index(1)
        wanted = period.get_attribute("value")
        driver.find_element(By.ID, "period").send_keys(Keys.ENTER)
        WebDriverWait(driver, 10).until(lambda d: f"period={wanted}" in d.current_url)
        Select(driver.find_element(By.ID, "scope")).select_by_value("chain")
        Select(driver.find_element(By.ID, "by")).select_by_value("store")
        driver.find_element(By.ID, "report-go").click()
        WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: "按门店" in d.find_element(By.ID, "report-name").text
        )
        rows = driver.find_elements(By.CSS_SELECTOR, "#report-table tbody tr")
        assert len(rows) == 3
        shot(driver, "hq-report-month-stores")
        driver.find_element(By.ID, "tab-year").click()
        WebDriverWait(driver, 10).until(lambda d: "kind=year" in d.current_url)
        assert "年报" in driver.find_element(By.ID, "report-name").text
        shot(driver, "hq-report-year")
        # a store manager: their store only, nothing else to pick
        make_user(hq_db, "store", "S001", username="zhou")
        driver.find_element(By.ID, "logout").click()
        WebDriverWait(driver, 10).until(lambda d: "/login" in d.current_url)
        driver.find_element(By.ID, "username").send_keys("zhou")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "scope"))
        options = Select(driver.find_element(By.ID, "scope")).options
        assert [o.text for o in options] == ["门店 S001 南京西路店"]
        assert not driver.find_elements(By.CSS_SELECTOR, "svg.bars")
        shot(driver, "hq-dashboard-store-manager")


def test_a_new_chain_with_no_sales_shows_dashes(hq_db, hq_db_url):
    """Before any store has sent anything: every figure "—" or 0, the charts say 暂无数据,
    and a store manager of a store HQ has not heard from yet still sees their page."""
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    client = session_client(app, hq_db, "admin")
    resp = client.get("/")
    assert resp.status_code == 200
    html = page(resp)
    assert re.search(
        r'id="card-member_sales_share">\s*<div class="label">[^<]+</div>\s*'
        r'<div class="value">—</div>',
        html,
    ), html
    assert "暂无数据" in html
    for kind in ("day", "week", "month", "quarter", "year"):
        assert client.get(f"/reports?kind={kind}").status_code == 200
    assert client.get("/reports?by=store").status_code == 200
    manager = session_client(app, hq_db, "store", "S404")
    resp = manager.get("/")
    assert resp.status_code == 200 and "门店 S404" in page(resp)
