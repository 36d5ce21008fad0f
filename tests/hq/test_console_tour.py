"""Issue 12's "done when", walked in a real browser: a head of membership signs in, sees
the chain's figures for this month against last, opens a store, finds a member by
pinyin, sees their ledger, and exports the month's report to Excel — and a request
that is not signed in is refused."""

from __future__ import annotations

import io
import urllib.error
import urllib.request

import openpyxl
import pytest

from core.names import pinyin_keys
from hq.access.guard import SESSION_COOKIE
from hq.api import create_app
from hq.config import HqConfig
from hq.demo_history import HISTORY_STORES, generate
from hq.models import AuditEntry, LedgerEntry, Member
from tests.browser import chromium, live_server, shot
from tests.hq.signin import PASSWORD, make_user


@pytest.fixture
def chain(hq_db, hq_db_url):
    """Six months of six stores, written through HQ's ingest (the demo's history)."""
    generate(hq_db, live=[("S001", "会员示范店·北京", "华北")])
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    return app


def _member_with_ledger() -> Member:
    """A member of the history whose initials find few others, with ledger entries."""
    for member in Member.select().where(Member.status == "active").order_by(Member.id):
        found = Member.select().where(Member.name_initials.startswith(pinyin_keys(member.name)[1]))
        if (
            found.count() <= 20  # on the first page of results
            and LedgerEntry.select().where(LedgerEntry.member_id == member.id).count() >= 2
        ):
            return member
    raise AssertionError("the history has no member with a ledger")


def _get(url: str, cookie: str | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url)
    if cookie:
        req.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(req, timeout=20) as res:  # noqa: S310 (a local server)
            return res.status, res.read(), res.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")


@pytest.mark.parametrize("hq_db_url", ["sqlite"], indirect=True)
def test_a_head_of_membership_runs_the_month_from_the_console(chain, hq_db):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    make_user(hq_db, "membership", username="head")
    member = _member_with_ledger()
    store_code, store_name, _ = HISTORY_STORES[0]
    with live_server(chain) as base, chromium() as driver:
        wait = WebDriverWait(driver, 20)
        # not signed in: the API refuses, the console sends the browser to sign in
        status, body, kind = _get(f"{base}/api/members/{member.id}")
        assert status == 401 and kind.startswith("application/json")
        driver.get(f"{base}/")
        wait.until(lambda d: "/login" in d.current_url)

        driver.find_element(By.ID, "username").send_keys("head")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
        # this month against last: the member sales share first, with last month's figure
        share = wait.until(lambda d: d.find_element(By.ID, "card-member_sales_share"))
        assert "会员交易额占有率" in share.text and "上月" in share.text
        assert "%" in share.find_element(By.CLASS_NAME, "value").text
        shot(driver, "hq-tour-1-dashboard")

        # a store
        driver.find_element(By.CSS_SELECTOR, "a[data-key='4']").click()
        wait.until(lambda d: d.current_url.endswith("/stores"))
        driver.find_element(By.LINK_TEXT, store_code).click()
        wait.until(lambda d: d.current_url.endswith(f"/stores/{store_code}"))
        assert store_name in driver.find_element(By.TAG_NAME, "main").text
        shot(driver, "hq-tour-2-store")

        # a member by the pinyin initials of their name, then their ledger
        driver.find_element(By.CSS_SELECTOR, "a[data-key='3']").click()
        box = wait.until(lambda d: d.find_element(By.ID, "q"))
        box.send_keys(pinyin_keys(member.name)[1] + "\n")
        wait.until(lambda d: d.find_elements(By.ID, "results"))
        driver.find_element(By.CSS_SELECTOR, f"a[href='/members/{member.id}']").click()
        wait.until(lambda d: d.find_elements(By.ID, "ledger-table"))
        assert driver.find_element(By.ID, "member-name").text == member.name
        rows = driver.find_elements(By.CSS_SELECTOR, "#ledger-table tbody tr")
        assert len(rows) == min(
            20, LedgerEntry.select().where(LedgerEntry.member_id == member.id).count()
        )
        assert member.phone not in driver.page_source  # masked until revealed
        shot(driver, "hq-tour-3-member")

        # the month's report, exported to Excel through the page's own link
        driver.find_element(By.CSS_SELECTOR, "a[data-key='2']").click()
        wait.until(lambda d: d.find_elements(By.ID, "report-filters"))
        driver.find_element(By.ID, "tab-month").click()
        link = wait.until(lambda d: d.find_element(By.ID, "export-xlsx"))
        shot(driver, "hq-tour-4-report")
        session = next(c for c in driver.get_cookies() if c["name"] == SESSION_COOKIE)
        status, body, kind = _get(
            link.get_attribute("href"), f"{SESSION_COOKIE}={session['value']}"
        )
        assert status == 200 and "spreadsheetml" in kind
        book = openpyxl.load_workbook(io.BytesIO(body))
        sheet = book.worksheets[0]
        # this month: to date (本期至今 / 上月同期) unless today is its last day
        head = [c.value for c in sheet[1]][:3]
        assert head[0] == "指标" and head[1].startswith("本期") and head[2].startswith("上月")
        names = [str(row[0]) for row in sheet.iter_rows(min_row=2, values_only=True)]
        assert any(name.startswith("会员交易额占有率") for name in names), names
        assert AuditEntry.select().where(AuditEntry.action == "report.export").count() == 1
