"""The console's 营销 · 活动 pages (hq/marketing/campaign_pages.py) on SQLite and PostgreSQL,
over the fixed chain of tests/hq/marketing_data.py (the December dormant list is E, J and
K; E and K registered at S1 with maintainer E1, J at S2 with E2): who may see and do
what, the form's errors in Chinese beside their field, the 营销 pages' 用作活动受众
buttons, the call list (printable and .xlsx, masked, scoped, audited) and, in a real
browser, the dormant list turned into a campaign with a coupon by SMS and launched."""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re

import pytest
from openpyxl import load_workbook

from hq.access import roles
from hq.api import create_app
from hq.config import HqConfig
from hq.marketing import api as marketing_api
from hq.marketing import audience, campaigns, lists, segments, settings
from hq.models import AuditEntry, Campaign, CampaignRecipient
from hq.privacy import set_consent
from hq.programme.coupons import add_template
from tests.browser import chromium, live_server, shot
from tests.hq import marketing_data as md
from tests.hq.signin import browser_sign_in, make_user, session_client

COUPON = {"id": "WAKE20", "name": "唤醒券满100减20", "kind": "amount", "amount": 2000,
          "min_spend": 10000, "valid_days": 30, "per_member_limit": 1}  # fmt: skip


@pytest.fixture
def app(hq_db, hq_db_url, monkeypatch):
    md.load(hq_db)
    add_template(hq_db, COUPON, by="test", now=md.NOW)
    monkeypatch.setattr(marketing_api, "today", lambda: md.TODAY)
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return app


def form(**changes: object) -> dict[str, object]:
    """The 新建活动 form as a browser sends it: the December dormant list, a coupon, SMS."""
    data: dict[str, object] = {
        "name": "十二月沉睡唤醒",
        "audience_kind": "list",
        "list_kind": "dormant",
        "list_month": "2026-12",
        "list_week": "",
        "benefit_kind": "coupon",
        "coupon": "WAKE20",
        "channels": ["sms"],
        "text": "{name}您好, 送您一张满100减20券, 欢迎回店。",
        "send_at": "2026-12-02T10:00",
        "window_days": "14",
        "control_pct": "0",
        "message_cost": "0.05",
    }
    data.update(changes)
    return data


def post(client, url: str, data: dict[str, object]):
    return client.post(url, data={**data, "csrf": client.environ_base["HTTP_X_CSRF_TOKEN"]})


def made(client, **changes: object) -> Campaign:
    resp = post(client, "/marketing/campaigns", form(**changes))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    campaign_id = int(resp.headers["Location"].split("/")[-1].split("?")[0])
    return Campaign.get_by_id(campaign_id)


# ---- the form -----------------------------------------------------------------------------


def test_the_form_becomes_a_draft_with_cost_in_fen(app, hq_db):
    client = session_client(app, hq_db, "membership")
    page = client.get("/marketing/campaigns/new")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "新建活动" in text and "唤醒券满100减20" in text and "{name}" in text
    assert "campaigns.js" in text and "<script>" not in text
    c = made(client, message_cost="¥0.05", benefit_kind="coupon", channels=["sms", "call"])
    assert c.status == "draft" and c.message_cost_fen == 5
    assert c.audience == {"list": "dormant", "start": "2026-12-01"}
    assert c.benefit == {"coupon": "WAKE20"} and c.channels == ["sms", "call"]
    assert c.send_at == dt.datetime(2026, 12, 2, 2, 0)  # 10:00 in Shanghai
    assert c.window_days == 14 and c.control_pct == 0
    listed = client.get("/marketing/campaigns").get_data(as_text=True)
    assert "十二月沉睡唤醒" in listed and "草稿" in listed and "2026-12-02 10:00" in listed
    # a draft goes back into the form and is saved again
    edit = client.get(f"/marketing/campaigns/{c.id}/edit").get_data(as_text=True)
    assert 'value="0.05"' in edit and 'value="2026-12-02T10:00"' in edit
    resp = post(
        client,
        f"/marketing/campaigns/{c.id}",
        form(name="改名了", benefit_kind="points", points="50"),
    )
    assert resp.status_code == 302
    again = campaigns.get(int(resp.headers["Location"].split("/")[-1].split("?")[0]))
    assert again.name == "改名了" and again.benefit == {"points": 50}
    # a gift with what one costs (yuan on the form, fen in the campaign), back in the form
    gift = made(client, benefit_kind="gift", gift="到店领毛巾", gift_cost="12.5", text="{name}您好")
    assert gift.benefit == {"gift": "到店领毛巾", "gift_cost_fen": 1250}
    edit = client.get(f"/marketing/campaigns/{gift.id}/edit").get_data(as_text=True)
    assert 'id="gift-cost" inputmode="decimal" maxlength="12" value="12.50"' in edit
    assert made(client, benefit_kind="gift", gift="毛巾", gift_cost="").benefit == {"gift": "毛巾"}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"name": "  "}, "name", "请填写活动名称"),
        ({"channels": []}, "channels", "请至少选择一个渠道"),
        ({"channels": ["fax"]}, "channels", "请至少选择一个渠道"),
        ({"message_cost": "五毛"}, "message_cost", "不是金额"),
        ({"message_cost": "0.055"}, "message_cost", "两位小数"),
        ({"message_cost": "-1"}, "message_cost", "不能为负"),
        ({"list_month": "2026-13"}, "list_month", "YYYY-MM"),
        ({"audience_kind": ""}, "audience_kind", "请选择活动受众"),
        ({"benefit_kind": "points", "points": "0"}, "points", "赠送积分须大于0"),
        ({"benefit_kind": "coupon", "coupon": ""}, "coupon", "请填写优惠券模板"),
        ({"benefit_kind": "gift", "gift": "毛巾", "gift_cost": "一块"}, "gift_cost", "不是金额"),
        (
            {"benefit_kind": "gift", "gift": "毛巾", "gift_cost": "-3"},
            "gift_cost",
            "礼品成本不能为负",
        ),
        ({"window_days": "两周"}, "window_days", "统计天数须为非负整数"),
        ({"control_pct": "-5"}, "control_pct", "对照组比例须为非负整数"),
        # the engine's checks, shown beside the form's field all the same
        ({"control_pct": "80"}, "control_pct", "对照组比例须为0到50"),
        ({"text": "{nick}您好"}, "text", "未知的占位符"),
        ({"text": ""}, "text", "短信或微信渠道须填写文案"),
        ({"coupon": "NOPE"}, "benefit", "券模板不存在"),
        ({"send_at": "明天"}, "send_at", "发送时间格式无效"),
    ],
)
def test_form_errors_are_chinese_beside_their_field(app, hq_db, changes, field, message):
    client = session_client(app, hq_db, "membership")
    resp = post(client, "/marketing/campaigns", form(**changes))
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert message in page
    # the field's own error line, and the values typed stay in the form
    shown = re.search(r'<span class="cp-err" id="err-(\w+)">([^<]*)</span>', page)
    assert shown is not None and message in shown.group(2), page
    assert shown.group(1) == field
    assert 'aria-invalid="true"' in page
    assert "十二月沉睡唤醒" in page or changes.get("name") == "  "
    assert Campaign.select().count() == 0


# ---- who may do what ----------------------------------------------------------------------


def test_pages_by_role(app, hq_db):
    owner = session_client(app, hq_db, "membership")
    c = made(owner)
    store = session_client(app, hq_db, "store", "S1")
    listed = store.get("/marketing/campaigns")
    assert listed.status_code == 200 and "十二月沉睡唤醒" in listed.get_data(as_text=True)
    assert 'id="new-campaign"' not in listed.get_data(as_text=True)
    page = store.get(f"/marketing/campaigns/{c.id}").get_data(as_text=True)
    assert "受众" in page and 'id="launch"' not in page and 'id="cancel"' not in page
    assert store.get("/marketing/campaigns/new").status_code == 403
    refused = post(store, f"/marketing/campaigns/{c.id}/launch", {})
    assert refused.status_code == 403 and "创建、发送和停止营销活动" in refused.get_data(
        as_text=True
    )
    assert post(store, f"/marketing/campaigns/{c.id}/cancel", {}).status_code == 403
    assert post(store, "/marketing/campaigns", form()).status_code == 403
    assert campaigns.get(c.id).status == "draft"
    # the lists and segments pages offer the button only to campaigns.manage
    lists.produce(hq_db, "dormant", dt.date(2026, 12, 1), md.NOW, "scheduler", md.TODAY)
    assert "用作活动受众" not in store.get("/marketing?month=2026-12").get_data(as_text=True)
    assert session_client(app, hq_db, "analyst").get("/marketing/campaigns").status_code == 403
    # no session: the sign-in page
    anonymous = app.test_client().get(f"/marketing/campaigns/{c.id}")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    # the manager launches and cancels; a launched campaign is no longer editable
    page = owner.get(f"/marketing/campaigns/{c.id}").get_data(as_text=True)
    assert 'id="launch"' in page and "data-confirm" in page
    assert post(owner, f"/marketing/campaigns/{c.id}/launch", {}).status_code == 302
    assert campaigns.get(c.id).status == "scheduled"
    page = owner.get(f"/marketing/campaigns/{c.id}").get_data(as_text=True)
    assert "已排期" in page and 'id="launch"' not in page and 'id="cancel"' in page
    assert 'id="progress"' in page and 'id="results"' in page
    # the results of a store manager's are over their store's members: E and K of S1's
    # (the dormant list's J is S2's)
    twin = store.get(f"/marketing/campaigns/{c.id}.json").get_json()
    assert twin["campaign"]["status_label"] == "已排期"
    assert (twin["results"]["treated"], twin["results"]["stores"]) == (2, ["S1"])
    assert 'id="r-scope">仅 S1 开卡的会员' in store.get(f"/marketing/campaigns/{c.id}").get_data(
        as_text=True
    )
    chain = owner.get(f"/marketing/campaigns/{c.id}.json").get_json()["results"]
    assert (chain["treated"], chain["stores"]) == (3, None) and 'id="r-scope"' not in page
    assert twin["progress"]["by_channel"] == {"sms": {"pending": 3}}
    assert owner.get(f"/marketing/campaigns/{c.id}/edit").status_code == 302
    assert post(owner, f"/marketing/campaigns/{c.id}/cancel", {}).status_code == 302
    assert campaigns.get(c.id).status == "cancelled"
    assert "已取消" in owner.get("/marketing/campaigns").get_data(as_text=True)
    assert owner.get("/marketing/campaigns/9999").status_code == 404


def test_use_as_audience_opens_the_form_prefilled(app, hq_db):
    run, _ = lists.produce(hq_db, "dormant", dt.date(2026, 12, 1), md.NOW, "scheduler", md.TODAY)
    client = session_client(app, hq_db, "membership")
    page = client.get("/marketing?month=2026-12").get_data(as_text=True)
    assert f'href="/marketing/campaigns/new?run={run.id}"' in page
    view = client.get("/marketing?kind=birthdays&month=2026-12").get_data(as_text=True)
    assert 'href="/marketing/campaigns/new?list=birthdays&amp;month=2026-12"' in view
    saved = client.post(
        "/api/marketing/segments",
        json={"name": "沉睡", "conditions": [{"kind": "lifecycle", "values": ["dormant"]}]},
    ).get_json()["segment"]
    segs = client.get("/marketing/segments").get_data(as_text=True)
    assert f'href="/marketing/campaigns/new?segment={saved["id"]}"' in segs
    prefilled = client.get(f"/marketing/campaigns/new?run={run.id}").get_data(as_text=True)
    assert re.search(r'value="run" id="aud-run" checked', prefilled)
    assert re.search(rf'<option value="{run.id}" data-count="3" selected>', prefilled)
    by_segment = client.get(f"/marketing/campaigns/new?segment={saved['id']}").get_data(
        as_text=True
    )
    # a saved segment carries its conditions, counted when picked (not on every load)
    option = re.search(
        rf'<option value="{saved["id"]}" data-conditions="([^"]+)" selected>', by_segment
    )
    assert option and html.unescape(option.group(1)) == json.dumps(saved["conditions"])
    c = made(client, audience_kind="run", run=str(run.id))
    assert c.audience == {"run": run.id}


# ---- the call list ------------------------------------------------------------------------


@pytest.fixture
def calling(app, hq_db):
    """A launched campaign with SMS and calls to the December dormant list (E, J, K), all
    of whom agree to calls and SMS."""
    for name in ("E", "J", "K"):
        set_consent(hq_db, md.MEMBER_ID[name], {"sms": True, "call": True}, "test", md.NOW)
    client = session_client(app, hq_db, "membership")
    c = made(client, channels=["sms", "call"])
    assert post(client, f"/marketing/campaigns/{c.id}/launch", {}).status_code == 302
    return c.id, client


def test_call_list_grouped_by_maintainer_then_store(app, hq_db, calling):
    campaign_id, client = calling
    resp = client.get(f"/marketing/campaigns/{campaign_id}/calls")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "维护人: E1" in page and "维护人: E2" in page
    assert (
        page.index("维护人: E1")
        < page.index("门店 S1")
        < page.index("维护人: E2")
        < page.index("门店 S2")
    )
    # membership has members.pii: the phone in full, to dial
    assert "13800000069" in page and "会员E" in page and "13800000074" in page  # E, J
    assert 'id="call-total">3<' in page and "@media print" not in page  # print CSS is a file
    entry = AuditEntry.get(AuditEntry.action == "marketing.export")
    assert entry.target == f"campaign:{campaign_id}:calls"
    # a store manager: their store's members only
    store = session_client(app, hq_db, "store", "S2")
    mine = store.get(f"/marketing/campaigns/{campaign_id}/calls").get_data(as_text=True)
    assert "会员J" in mine and "会员E" not in mine and 'id="call-total">1<' in mine


def test_call_list_masks_the_phone_without_members_pii(app, hq_db, calling, monkeypatch):
    campaign_id, _ = calling
    perms = frozenset({"marketing.read", "members.read"})
    monkeypatch.setitem(roles.ROLES, "caller", roles.Role("caller", "营销助理", perms))
    client = session_client(app, hq_db, "caller")
    page = client.get(f"/marketing/campaigns/{campaign_id}/calls").get_data(as_text=True)
    assert "138****0069" in page and "13800000069" not in page and "会员E" not in page
    book = client.get(f"/marketing/campaigns/{campaign_id}/calls.xlsx")
    sheet = load_workbook(io.BytesIO(book.data)).worksheets[0]
    phones = [row[4].value for row in sheet.iter_rows(min_row=2)]
    assert phones and all("****" in p for p in phones)
    rows = client.get(f"/api/marketing/campaigns/{campaign_id}/calls").get_json()["rows"]
    assert rows and all("****" in r["phone"] and r["name"] != "会员E" for r in rows)
    audit = (
        AuditEntry.select().where(AuditEntry.actor.startswith("caller-")).order_by(AuditEntry.id)
    )
    assert [e.target for e in audit] == [f"campaign:{campaign_id}:calls"] * 3


def test_call_list_xlsx(app, hq_db, calling):
    campaign_id, client = calling
    resp = client.get(f"/marketing/campaigns/{campaign_id}/calls.xlsx")
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(resp.data)).worksheets[0]
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:5] == ["维护人", "门店", "会员号", "姓名", "手机号"]
    assert [(r[0], r[1], r[3]) for r in rows[1:]] == [
        ("E1", "S1 一店", "会员E"),
        ("E1", "S1 一店", "会员K"),
        ("E2", "S2 二店", "会员J"),
    ]
    assert rows[1][6].startswith("券 WAKE20 (")
    formats = [e.details.get("format") for e in AuditEntry.select().order_by(AuditEntry.id)
               if e.action == "marketing.export"]  # fmt: skip
    assert formats == ["xlsx"]


def test_no_call_list_without_the_call_channel(app, hq_db):
    client = session_client(app, hq_db, "membership")
    c = made(client)
    resp = client.get(f"/marketing/campaigns/{c.id}/calls")
    assert resp.status_code == 400 and "没有电话渠道" in resp.get_data(as_text=True)
    assert client.get(f"/marketing/campaigns/{c.id}/calls.xlsx").status_code == 400


# ---- in a browser -------------------------------------------------------------------------


def test_dormant_list_to_a_launched_campaign_in_a_browser(app, hq_db):
    """A marketing user opens the stored dormant list, uses it as a campaign's audience
    (its count shows), picks the coupon and SMS, types the message (counted), saves the
    draft, launches it after the confirm, and sees the campaign's page."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    run, _ = lists.produce(hq_db, "dormant", dt.date(2026, 12, 1), md.NOW, "scheduler", md.TODAY)
    for name in ("E", "J", "K"):
        set_consent(hq_db, md.MEMBER_ID[name], {"sms": True}, "test", md.NOW)
    bought = [{"kind": "lifecycle", "values": ["established", "dormant"]}]
    segments.save(hq_db, {"name": "消费过的会员", "conditions": bought}, "t", md.NOW, md.TODAY)
    buyers = audience.count(audience.compile_spec(hq_db, {"conditions": bought},
                                                  settings.current(hq_db), md.TODAY))  # fmt: skip
    assert buyers > 3
    username = make_user(hq_db, "membership")
    with live_server(app) as base, chromium(1366, 900) as driver:
        wait = WebDriverWait(driver, 10)
        browser_sign_in(driver, f"{base}/marketing?month=2026-12", username)
        runs = wait.until(ec.presence_of_element_located((By.ID, "runs")))
        runs.find_element(By.CSS_SELECTOR, "tr[data-kind=dormant] a.use-audience").click()
        wait.until(ec.presence_of_element_located((By.ID, "campaign-form")))
        count = driver.find_element(By.ID, "audience-count")
        wait.until(lambda d: count.text == "3")
        assert driver.find_element(By.ID, "aud-run").is_selected()
        # a saved segment is counted when picked; back to the stored list
        Select(driver.find_element(By.ID, "segment")).select_by_visible_text("消费过的会员")
        wait.until(lambda d: driver.find_element(By.ID, "aud-segment").is_selected())
        wait.until(lambda d: count.text == str(buyers))
        Select(driver.find_element(By.ID, "run")).select_by_value(str(run.id))
        driver.find_element(By.ID, "aud-run").click()
        wait.until(lambda d: count.text == "3")
        shot(driver, "campaign-form-audience")
        driver.find_element(By.ID, "name").send_keys("十二月沉睡唤醒")
        driver.find_element(By.ID, "ben-coupon").click()
        Select(driver.find_element(By.ID, "coupon")).select_by_value("WAKE20")
        assert driver.find_element(By.ID, "ch-sms").is_selected()
        text = driver.find_element(By.ID, "text")
        driver.find_element(By.CSS_SELECTOR, "button[data-insert='{name}']").click()
        text.send_keys("您好, 好久不见! 送您一张满100减20券, 30天内有效。")
        wait.until(
            lambda d: (
                d.find_element(By.ID, "char-count").text == str(len(text.get_attribute("value")))
            )
        )
        assert text.get_attribute("value").startswith("{name}您好")
        assert driver.find_element(By.ID, "sms-parts").text == "1"
        shot(driver, "campaign-form")
        # a cost that is not an amount: the form comes back, the error beside the field
        cost = driver.find_element(By.ID, "message-cost")
        cost.clear()
        cost.send_keys("五毛")
        driver.find_element(By.ID, "save-campaign").click()
        error = wait.until(ec.presence_of_element_located((By.ID, "err-message_cost")))
        assert "不是金额" in error.text
        cost = driver.find_element(By.ID, "message-cost")
        assert cost.get_attribute("aria-invalid") == "true"
        assert driver.find_element(By.ID, "ben-coupon").is_selected()  # what was typed stays
        assert driver.find_element(By.ID, "text").get_attribute("value").startswith("{name}")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cost)
        shot(driver, "campaign-form-error")
        cost.clear()
        cost.send_keys("0.05")
        driver.find_element(By.ID, "save-campaign").click()
        wait.until(ec.presence_of_element_located((By.ID, "launch")))
        assert driver.find_element(By.ID, "status").text == "草稿"
        assert "券 WAKE20" in driver.find_element(By.ID, "fact-benefit").text
        shot(driver, "campaign-draft")
        driver.find_element(By.ID, "launch").click()
        alert = wait.until(ec.alert_is_present())
        assert "确定发送活动" in alert.text
        alert.accept()
        wait.until(ec.presence_of_element_located((By.ID, "progress")))
        assert driver.find_element(By.ID, "status").text == "已排期"
        assert driver.find_element(By.ID, "treated").text == "3"
        assert "短信" in driver.find_element(By.ID, "progress-table").text
        assert "沉睡会员唤醒" in driver.find_element(By.ID, "fact-audience").text
        shot(driver, "campaign-detail")
        driver.execute_script("document.getElementById('results').scrollIntoView()")
        assert driver.find_element(By.ID, "r-cost").text == "¥0.00"
        shot(driver, "campaign-results")
        driver.find_element(By.ID, "tab-campaigns").click()
        row = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#campaigns tr[data-campaign]"))
        )
        assert "十二月沉睡唤醒" in row.text and "已排期" in row.text
        # the figures come from the campaign's JSON twin
        groups = row.find_element(By.CSS_SELECTOR, "td.r-groups")
        wait.until(lambda d: groups.text == "3 / 0")
        assert row.find_element(By.CSS_SELECTOR, "td.r-sends").text == "0 / 0"
        assert row.find_element(By.CSS_SELECTOR, "td.r-back").text == "0 (0.0%) / 0 (—)"
        shot(driver, "campaign-list")
        # Alt+N: 新建活动 from the keyboard
        ActionChains(driver).key_down(Keys.ALT).send_keys("n").key_up(Keys.ALT).perform()
        wait.until(ec.presence_of_element_located((By.ID, "campaign-form")))
    (c,) = Campaign.select()
    assert c.status == "scheduled" and c.benefit == {"coupon": "WAKE20"} and c.channels == ["sms"]
    assert CampaignRecipient.select().where(CampaignRecipient.campaign == c.id).count() == 3


def test_call_list_prints_one_maintainer_a_page(app, hq_db, calling):
    """The printable call list in a browser, as printed (print media): no sidebar, no
    buttons, one maintainer's members per page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    campaign_id, _ = calling
    username = make_user(hq_db, "membership")
    with live_server(app) as base, chromium(1000, 1200) as driver:
        browser_sign_in(driver, f"{base}/marketing/campaigns/{campaign_id}/calls", username)
        WebDriverWait(driver, 10).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "section.cp-group"))
        )
        groups = driver.find_elements(By.CSS_SELECTOR, "section.cp-group")
        assert [g.get_attribute("data-maintainer") for g in groups] == ["E1", "E2"]
        assert driver.find_element(By.CSS_SELECTOR, "nav.side").is_displayed()
        shot(driver, "campaign-calls")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        assert not driver.find_element(By.CSS_SELECTOR, "nav.side").is_displayed()
        assert not driver.find_element(By.ID, "print").is_displayed()
        breaks = driver.execute_script(
            "return Array.from(document.querySelectorAll('section.cp-group'))"
            ".map(function (g) { return getComputedStyle(g).breakAfter; })"
        )
        assert breaks == ["page", "auto"]
        shot(driver, "campaign-calls-print")
