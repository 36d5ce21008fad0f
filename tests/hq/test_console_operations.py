"""The console's operations screens (hq/console/operations.py): stores, sales, a sale's
receipt, exceptions and dead letters with their resolve workflow — per role, on SQLite
and PostgreSQL, with data ingested the real way (Items + make_batch + ingest_batch)."""

from __future__ import annotations

import datetime as dt
import re

import peewee as pw
import pytest

from core import protocol as p
from core.ids import uuid7
from core.rules import DEMO_RULES
from hq.api import create_app
from hq.config import HqConfig
from hq.console.ops_data import SaleFilters, decode_cursor, encode_cursor, sales_query
from hq.ingest import ingest_batch
from hq.ledger import recover_debt
from hq.models import (
    AuditEntry,
    DeadLetter,
    HqException,
    Sale,
    Store,
    bind,
    create_schema,
    open_database,
    utcnow,
)
from hq.rules import publish_rules
from tests.browser import chromium, live_server, shot
from tests.hq.edge_sim import Items
from tests.hq.signin import PASSWORD, make_user, session_client, sign_in

NOW = dt.datetime(2026, 11, 23, 6, 0)
SALE_LINK = re.compile(r'href="/sales/([^"?]+)"')


def _ingest(db, items: Items, batch_items: list[dict]) -> None:
    for i in range(0, len(batch_items), 100):
        chunk = batch_items[i : i + 100]
        payload = p.make_batch(items.store, 1, chunk)
        outcome = ingest_batch(db, f"hy/v1/{items.store}/up/tx", items.store, payload, NOW)
        assert outcome.dead_letter is None, outcome
        assert outcome.ack.acked_through == chunk[-1]["seq"]


@pytest.fixture
def app(hq_db, hq_db_url):
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return app


@pytest.fixture
def chain(hq_db):
    return _build_chain(hq_db)


def _build_chain(hq_db) -> dict:
    """Two stores in two areas: S001 with a member's sales (one with stored value), a
    walk-in sale that was returned; S002 with a sale; a malformed batch from each (two
    dead letters) and an open overdraft exception at S001."""
    s1, s2 = Items("S001"), Items("S002")
    member = uuid7()
    reg = s1.registration(member, "13100000001", card_no="K0001", name="李小龙", staff_code="M07")
    top = s1.topup(member, 20000)
    sale_sv = s1.sale(member, 12800, stored_value=(5000, 0))
    walk_in = s1.sale(None, 3000)
    walk_in["body"]["served_by"] = "G05"  # a 导购 named at the till
    back = s1.return_of(walk_in["body"])
    _ingest(hq_db, s1, [reg, top, sale_sv, walk_in, back])
    other = s2.sale(None, 9900)
    _ingest(hq_db, s2, [other])
    Store.update(area="华东").where(Store.code == "S001").execute()
    Store.update(area="华南").where(Store.code == "S002").execute()
    for store in ("S001", "S002"):
        out = ingest_batch(hq_db, f"hy/v1/{store}/up/tx", store, b"\xff\xfe not json", NOW)
        assert out.dead_letter == "malformed"
    overdraft = HqException.create(
        kind="overdraft",
        member_id=member,
        store="S001",
        seq=3,
        ref=sale_sv["body"]["sale_id"],
        balance="points",
        amount=100,
        created_at=NOW,
    )
    return {
        "member": member,
        "sale": sale_sv["body"]["sale_id"],
        "walk_in": walk_in["body"]["sale_id"],
        "other": other["body"]["sale_id"],
        "overdraft": overdraft.id,
        "dead": {d.store: d.id for d in DeadLetter.select()},
    }


def _text(resp) -> str:
    return resp.get_data(as_text=True)


def test_stores_list_and_page_per_role(app, hq_db, chain):
    admin = session_client(app, hq_db, "admin")
    page = _text(admin.get("/stores"))
    assert 'data-store="S001"' in page and 'data-store="S002"' in page
    assert "华东" in page and "华南" in page
    # S001: one open exception, one dead letter, both linked
    assert "/exceptions?store=S001" in page and "/dead-letters?store=S001" in page
    store = _text(admin.get("/stores/S001"))
    assert "在线" in store and "/sales?store=S001" in store
    assert chain["sale"] in store and f"/dead-letters/{chain['dead']['S001']}" in store
    assert f"/exceptions/{chain['overdraft']}" in store
    assert admin.get("/stores?area=华南").get_data(as_text=True).count("data-store=") == 1

    manager = session_client(app, hq_db, "store", "S001")
    mine = _text(manager.get("/stores"))
    assert 'data-store="S001"' in mine and 'data-store="S002"' not in mine
    assert manager.get("/stores/S001").status_code == 200
    refused = manager.get("/stores/S002")
    assert refused.status_code == 403 and "其他门店" in _text(refused)
    assert "<h1>无权限</h1>" in _text(refused)  # a page, not JSON

    area = session_client(app, hq_db, "area", "华南")
    assert 'data-store="S001"' not in _text(area.get("/stores"))
    assert area.get("/stores/S002").status_code == 200
    assert area.get("/stores/S001").status_code == 403
    assert admin.get("/stores/S999").status_code == 404
    assert admin.get("/stores/bad code!").status_code == 400


def test_a_store_manager_sees_only_their_store_in_every_list(app, hq_db, chain):
    manager = session_client(app, hq_db, "store", "S001")
    sales = _text(manager.get("/sales"))
    assert chain["sale"] in sales and chain["other"] not in sales
    assert manager.get(f"/sales/{chain['other']}").status_code == 403
    assert manager.get(f"/sales/{chain['sale']}").status_code == 200
    assert manager.get("/sales?store=S002").status_code == 403
    dead = _text(manager.get("/dead-letters?status=all"))
    assert f'data-id="{chain["dead"]["S001"]}"' in dead
    assert f'data-id="{chain["dead"]["S002"]}"' not in dead
    assert manager.get(f"/dead-letters/{chain['dead']['S002']}").status_code == 403
    exc = _text(manager.get("/exceptions"))
    assert f'data-id="{chain["overdraft"]}"' in exc
    other = HqException.create(kind="unknown_rules", store="S002", ref="9", created_at=NOW)
    assert f'data-id="{other.id}"' not in _text(manager.get("/exceptions?status=all"))
    assert manager.get(f"/exceptions/{other.id}").status_code == 403
    resolve = manager.post(
        f"/api/exceptions/{other.id}/resolve", json={"resolution": "verified", "note": ""}
    )
    assert resolve.status_code == 403
    assert HqException.get_by_id(other.id).resolved_at is None


def test_the_sale_as_its_receipt_showed_it(app, hq_db, chain):
    admin = session_client(app, hq_db, "admin")
    page = _text(admin.get(f"/sales/{chain['sale']}"))
    assert "洗发水" in page and "¥128.00" in page  # the line and the total in yuan
    assert "储值" in page and "¥50.00" in page and "现金" in page and "¥78.00" in page
    assert "李小龙" in page and "131****0001" in page and "13100000001" not in page
    assert "E01" in page  # the cashier
    assert "没有退货" in page
    # the walk-in sale that was returned shows its return
    walk_in = _text(admin.get(f"/sales/{chain['walk_in']}"))
    assert "散客" in walk_in and "退货单号" in walk_in and "有退货" in walk_in
    assert admin.get("/sales/nope").status_code == 404

    listed = _text(admin.get("/sales"))
    assert "李小龙 131****0001" in listed and "13100000001" not in listed

    analyst = session_client(app, hq_db, "analyst")
    assert "李** 131****0001" in _text(analyst.get("/sales"))
    masked = _text(analyst.get(f"/sales/{chain['sale']}"))
    assert "131****0001" in masked and "13100000001" not in masked
    assert "李**" in masked and "李小龙" not in masked


def test_sales_filters(app, hq_db, chain):
    admin = session_client(app, hq_db, "admin")

    def ids(query: str) -> set[str]:
        resp = admin.get("/sales" + query)
        assert resp.status_code == 200, _text(resp)
        return set(SALE_LINK.findall(_text(resp)))

    every = {chain["sale"], chain["walk_in"], chain["other"]}
    assert ids("") == every
    assert ids("?store=S002") == {chain["other"]}
    for q in (chain["member"], "K0001", "131-0000-0001"):
        assert ids(f"?member={q}") == {chain["sale"]}
    nobody = admin.get("/sales?member=13999999999")
    assert nobody.status_code == 200 and "会员不存在" in _text(nobody)
    assert not SALE_LINK.findall(_text(nobody))
    assert ids("?staff=E01") == every  # the cashier of each
    assert ids("?staff=G05") == {chain["walk_in"]}  # the 导购 of one
    assert ids("?staff=M07") == {chain["sale"]}  # the member's 维护人 when they bought
    assert ids("?staff=E99") == set()
    assert ids("?store=S001&staff=E01&from=2026-11-23") == {chain["sale"], chain["walk_in"]}
    # the days are the chain's business days (Asia/Shanghai): the sales are on 2026-11-23
    assert ids("?from=2026-11-23&to=2026-11-23") == every
    assert ids("?from=2026-11-24") == set()
    assert ids("?to=2026-11-22") == set()


BAD_QUERIES = [
    "/sales?from=2026-13-01",
    "/sales?to=yesterday",
    "/sales?from=2026-11-24&to=2026-11-23",
    "/sales?after=%%%",
    "/sales?after=bm90IGEgY3Vyc29y",
    "/sales?store=S%20001",
    "/sales?staff=a%20b",
    "/exceptions?status=weird",
    "/exceptions?kind=DROP%20TABLE",
    "/exceptions?after=-1",
    "/dead-letters?status=x",
    "/dead-letters?after=abc",
    "/dead-letters?code=%3Cscript%3E",
    "/sales?member=%00",
    "/sales?staff=x%00y",
    "/sales/ab%00cd",
    "/stores?area=%00",
    "/stores/S%00",
]


def test_bad_parameters_are_a_400_page_in_chinese(app, hq_db):
    admin = session_client(app, hq_db, "admin")
    for query in BAD_QUERIES:
        resp = admin.get(query)
        assert resp.status_code == 400, (query, resp.status_code)
        text = _text(resp)
        assert "<h1>出错了</h1>" in text and re.search(r"[\u4e00-\u9fff]{2,}", text), query


def test_sales_pages_by_keyset_without_gaps_or_repeats(app, hq_db):
    items = Items("S003")
    _ingest(hq_db, items, [items.sale(None, 1000 + i) for i in range(123)])
    admin = session_client(app, hq_db, "admin")
    seen: list[str] = []
    url = "/sales?store=S003"
    pages = 0
    while url and pages < 10:
        text = _text(admin.get(url))
        seen += SALE_LINK.findall(text)
        match = re.search(r'href="([^"]+)" id="next-page"', text)
        url = match.group(1).replace("&amp;", "&") if match else None
        pages += 1
    assert pages == 3 and len(seen) == 123 and len(set(seen)) == 123
    expected = [
        s.sale_id
        for s in Sale.select()
        .where(Sale.store == "S003")
        .order_by(Sale.occurred_utc.desc(), Sale.sale_id.desc())
    ]
    assert seen == expected  # newest first, in order across the pages


def test_a_page_of_sales_is_read_in_index_order(hq_db):
    """The list's keyset query walks an index in order: no sort of the table, whatever
    its size (on PostgreSQL with sequential and bitmap scans and sorts discouraged, as a
    large table would choose; a plan that cannot avoid a sort still shows one)."""
    zone = HqConfig().zone()
    after = (dt.datetime(2026, 11, 23, 2, 0), "01a2")
    cases = {
        "sale_store_occurred_utc_sale_id": SaleFilters(store="S001", after=after),
        "sale_occurred_utc_sale_id": SaleFilters(after=after),
    }
    for index, filters in cases.items():
        sql, params = sales_query(filters, None, zone).limit(51).sql()
        if isinstance(hq_db, pw.PostgresqlDatabase):
            with hq_db.atomic():
                for knob in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                    hq_db.execute_sql(f"SET LOCAL {knob} = off")
                plan = "\n".join(r[0] for r in hq_db.execute_sql("EXPLAIN " + sql, params))
            assert index in plan and "Sort" not in plan, plan
        else:
            rows = hq_db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            plan = "\n".join(str(r[-1]) for r in rows)
            assert index in plan and "TEMP B-TREE" not in plan, plan


def test_a_cursor_round_trips():
    at = dt.datetime(2026, 11, 23, 2, 1, 0, 5)
    assert decode_cursor(encode_cursor(at, "0193-abc")) == (at, "0193-abc")


def test_membership_resolves_an_exception_and_a_dead_letter_audited(app, hq_db, chain):
    membership = session_client(app, hq_db, "membership")
    exc_id, dead_id = chain["overdraft"], chain["dead"]["S002"]
    # the form in the console
    page = _text(membership.get(f"/exceptions/{exc_id}"))
    assert 'id="resolve-form"' in page
    resp = membership.post(
        f"/exceptions/{exc_id}/resolve", data={"resolution": "contacted", "note": "已电话门店核对"}
    )
    assert resp.status_code == 302
    shown = _text(membership.get(resp.headers["Location"]))
    assert "已联系门店" in shown and "已电话门店核对" in shown and "membership-" in shown
    row = HqException.get_by_id(exc_id)
    assert row.resolution == "contacted" and row.resolved_by.startswith("membership-")
    assert row.status == "open"  # HQ's status is its own: the overdraft is still owed
    entry = AuditEntry.get(AuditEntry.action == "exception.resolve")
    assert entry.target == str(exc_id) and entry.reason == "已电话门店核对"
    assert entry.store == "S001" and entry.details["resolution"] == "contacted"
    # a second resolve is refused: the first one stands
    again = membership.post(
        f"/api/exceptions/{exc_id}/resolve", json={"resolution": "other", "note": "x"}
    )
    assert again.status_code == 409 and "已由" in again.get_json()["message"]
    # the list: no longer waiting, shown as resolved
    assert f'data-id="{exc_id}"' not in _text(membership.get("/exceptions"))
    assert f'data-id="{exc_id}"' in _text(membership.get("/exceptions?status=resolved"))

    # a dead letter through the JSON route
    bad = membership.post(f"/api/dead-letters/{dead_id}/resolve", json={"resolution": "other"})
    assert bad.status_code == 400 and "备注" in bad.get_json()["message"]
    assert membership.post(f"/api/dead-letters/{dead_id}/resolve", data="x").status_code == 400
    nope = membership.post("/api/dead-letters/999999/resolve", json={"resolution": "verified"})
    assert nope.status_code == 404
    done = membership.post(
        f"/api/dead-letters/{dead_id}/resolve",
        json={"resolution": "backfilled", "note": "门店已重发"},
    )
    assert done.status_code == 200, done.get_json()
    body = done.get_json()["dead_letter"]
    assert body["resolution_label"] == "已补录" and body["resolved_by"].startswith("membership-")
    entry = AuditEntry.get(AuditEntry.action == "dead_letter.resolve")
    assert entry.target == str(dead_id) and entry.reason == "门店已重发"
    page = _text(membership.get(f"/dead-letters/{dead_id}"))
    assert "已补录" in page and "门店已重发" in page and 'id="resolve-form"' not in page
    assert f'data-id="{dead_id}"' not in _text(membership.get("/dead-letters"))
    # a bad form: a 400 page in Chinese, nothing recorded
    form = membership.post(
        f"/dead-letters/{chain['dead']['S001']}/resolve", data={"resolution": "nonsense"}
    )
    assert form.status_code == 400 and "请选择处理方式" in _text(form)
    assert DeadLetter.get_by_id(chain["dead"]["S001"]).resolved_at is None


def test_a_manual_resolve_does_not_stop_the_overdraft_recovery(hq_db, chain):
    from hq.access.roles import ROLES, Principal
    from hq.console.ops_data import resolve_exception

    who = Principal("ops", ROLES["membership"])
    resolve_exception(hq_db, chain["overdraft"], who, "verified", "")
    recover_debt(chain["member"], "points", 100, utcnow())
    row = HqException.get_by_id(chain["overdraft"])
    assert (row.status, row.recovered) == ("closed", 100) and row.closed_at is not None
    assert row.resolution == "verified"  # both kept


def test_an_analyst_cannot_resolve(app, hq_db, chain):
    analyst = session_client(app, hq_db, "analyst")
    page = _text(analyst.get(f"/exceptions/{chain['overdraft']}"))
    assert 'id="resolve-form"' not in page and "不能处理" in page
    refused = analyst.post(
        f"/api/exceptions/{chain['overdraft']}/resolve", json={"resolution": "verified"}
    )
    assert refused.status_code == 403
    form = analyst.post(
        f"/dead-letters/{chain['dead']['S001']}/resolve", data={"resolution": "verified"}
    )
    assert form.status_code == 403 and "无权限" in _text(form)
    assert AuditEntry.select().where(AuditEntry.action.endswith(".resolve")).count() == 0


def test_the_sidebar_shows_the_operations_pages_by_permission(app, hq_db, chain):
    admin = _text(session_client(app, hq_db, "admin").get("/stores"))
    for label, key in (("门店", "4"), ("销售", "5"), ("异常", "6")):
        assert f'data-key="{key}"' in admin and label in admin


def test_init_db_fills_the_instant_of_sales_applied_before_the_column(hq_db, chain):
    Sale.update(occurred_utc=None).execute()
    Sale.update(occurred_at="not a time").where(Sale.sale_id == chain["other"]).execute()
    create_schema(hq_db)
    sale = Sale.get_by_id(chain["sale"])
    assert sale.occurred_utc == Sale.utc_of(sale.occurred_at, NOW)
    assert sale.occurred_utc.hour == 2  # 10:0x at +08:00
    assert Sale.get_by_id(chain["other"]).occurred_utc == NOW  # unreadable: the ingest time
    assert Sale.select().where(Sale.occurred_utc.is_null()).count() == 0


def test_browser_stores_sales_a_sale_and_resolving_a_dead_letter(tmp_path):
    """The walk a person takes, once (on SQLite), with screenshots to look at."""
    url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    hq_db = bind(open_database(url))
    publish_rules(hq_db, DEMO_RULES.to_dict())
    chain = _build_chain(hq_db)
    app = create_app(HqConfig(database_url=url, console_secure_cookie=False), db=hq_db)
    make_user(hq_db, "membership", username="wang")
    from selenium.webdriver.common.by import By

    with live_server(app) as base, chromium(1366, 768) as driver:
        driver.get(base + "/login")
        driver.find_element(By.ID, "username").send_keys("wang")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
        assert "wang" in driver.find_element(By.ID, "who").text
        driver.find_element(By.CSS_SELECTOR, 'a[data-key="4"]').click()
        assert driver.find_element(By.ID, "stores").is_displayed()
        shot(driver, "hq-stores")
        driver.find_element(By.LINK_TEXT, "S001").click()
        assert "S001" in driver.find_element(By.TAG_NAME, "h1").text
        shot(driver, "hq-store")
        driver.find_element(By.PARTIAL_LINK_TEXT, "查看本店销售").click()
        assert chain["sale"] in driver.page_source
        driver.get(base + "/sales")
        shot(driver, "hq-sales")
        driver.find_element(By.LINK_TEXT, chain["sale"]).click()
        assert "洗发水" in driver.find_element(By.ID, "sale-lines").text
        shot(driver, "hq-sale-detail")
        driver.get(base + "/exceptions")
        shot(driver, "hq-exceptions")
        driver.find_element(By.LINK_TEXT, f"#{chain['overdraft']}").click()
        shot(driver, "hq-exception")
        driver.get(base + "/exceptions")
        driver.find_element(By.ID, "tab-dead-letters").click()
        shot(driver, "hq-dead-letters")
        driver.find_element(By.LINK_TEXT, f"#{chain['dead']['S001']}").click()
        driver.find_element(By.CSS_SELECTOR, "input[value=contacted]").click()
        driver.find_element(By.ID, "resolve-note").send_keys("门店已确认, 网络故障")
        shot(driver, "hq-dead-letter-resolve")
        driver.find_element(By.ID, "resolve-submit").click()
        assert "门店已确认" in driver.find_element(By.ID, "resolved-note").text
        assert driver.find_element(By.ID, "resolved-by").text == "wang"
        shot(driver, "hq-dead-letter-resolved")
    assert DeadLetter.get_by_id(chain["dead"]["S001"]).resolution == "contacted"


def test_a_signed_out_browser_is_sent_to_sign_in(app, hq_db):
    client = app.test_client()
    for url in ("/stores", "/sales", "/exceptions", "/dead-letters", "/stores/S001"):
        resp = client.get(url)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    signed = sign_in(app.test_client(), make_user(hq_db, "analyst"))
    assert signed.get("/sales").status_code == 200


def test_a_receipt_with_discounts_rounding_coupons_points_and_change(app, hq_db):
    """Every part of a receipt the till prints, from a sale body with all of them (written
    straight to the table: the rendering, not the checks, is under test here)."""
    line = {
        "line_no": 1,
        "sku": "6900000000001",
        "name": "面霜",
        "qty": 2,
        "unit_price": 8800,
        "list_price": 9900,
        "gross": 17600,
        "line_discount": 0,
        "member_discount": 1760,
        "order_discount": 0,
        "manual_adjustment": 0,
        "rounding": 40,
        "amount": 15800,
        "promo": True,
        "earns_points": False,
    }
    body = {
        "sale_id": "S9-0001",
        "cashier": "E02",
        "lines": [line],
        "subtotal": 17600,
        "member_discount": 1760,
        "order_discount": 0,
        "coupon_discount": 0,
        "rounding": 40,
        "total": 15800,
        "tenders": [{"kind": "points", "amount": 800}, {"kind": "cash", "amount": 15000}],
        "change": 5000,
        "points_used": 800,
        "points_earned": 0,
        "coupons": [{"code": "CPN-1", "template_id": "T10", "discount": 0}],
        "card_no": "K12345678",
        "offline": True,
    }
    Store.create(code="S009", name="九店", created_at=NOW)
    Sale.create(
        sale_id="S9-0001",
        store="S009",
        seq=1,
        total=15800,
        rules_version=1,
        offline=True,
        occurred_at="2026-11-23T19:30:05+08:00",
        occurred_utc=dt.datetime(2026, 11, 23, 11, 30, 5),
        body=body,
        ingested_at=NOW,
        cashier="E02",
        served_by="E02",
    )
    text = _text(session_client(app, hq_db, "store", "S009").get("/sales/S9-0001"))
    for shown in (
        "九店",
        "2026-11-23 19:30:05",
        "面霜",
        "特价",
        "¥88.00",  # unit price
        "-¥18.00",  # the line's discounts (gross - amount)
        "¥176.00",  # subtotal
        "-¥17.60",  # member discount
        "-¥0.40",  # 抹零
        "¥158.00",  # total
        "积分抵扣 (800 积分)",
        "¥200.00",  # cash handed over (15000 + change)
        "找零",
        "¥50.00",
        "CPN-1",
        "离线交易",
    ):
        assert shown in text, shown
