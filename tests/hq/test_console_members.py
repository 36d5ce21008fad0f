"""The console's Members screens (hq/console/members.py, hq/member_search.py): search by
name, pinyin initials, phone, last four digits, card and id; the member page; the actions
each role may take, audited and pushed; on SQLite and PostgreSQL, with the members
ingested the way stores send them."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from core import protocol as p
from core.ids import uuid7
from hq import services
from hq.access.masking import mask_phone
from hq.api import create_app
from hq.ingest import ingest_batch
from hq.member_search import MAX_RESULTS, backfill_search_keys, search_keys, search_members
from hq.models import (
    AuditEntry,
    Card,
    ChangeRecord,
    LedgerEntry,
    Member,
    Merge,
    TierChange,
    create_schema,
)
from tests.browser import chromium, live_server, shot
from tests.hq.conftest import hq_config
from tests.hq.edge_sim import Items
from tests.hq.signin import PASSWORD, make_user, session_client

NOW = dt.datetime(2026, 11, 23, 2, 0)
ZS_PHONE = "13800135678"
LS_PHONE = "13900001234"
WW_PHONE = "13700004321"
ZSF_PHONE = "13600002222"


def ingest(db, store: str, items: list[dict]) -> None:
    batch = p.make_batch(store, 1, items)
    ack = ingest_batch(db, f"hy/v1/{store}/up/tx", store, batch, NOW).ack
    assert ack.rejected == (), ack.rejected


@pytest.fixture
def chain(hq_db):
    """张三 (card C0001, money and a sale) and 李四 at S001; 王五 and 张三丰 at S002."""
    ids = {name: uuid7() for name in ("zs", "ls", "ww", "zsf")}
    s1, s2 = Items("S001"), Items("S002")
    ingest(
        hq_db,
        "S001",
        [
            s1.registration(ids["zs"], ZS_PHONE, name="张三", card_no="C0001"),
            s1.topup(ids["zs"], 10000),
            s1.sale(ids["zs"], 5000),
            s1.registration(ids["ls"], LS_PHONE, name="李四", card_no="C0002"),
        ],
    )
    ingest(
        hq_db,
        "S002",
        [
            s2.registration(ids["ww"], WW_PHONE, name="王五", card_no="D0003"),
            s2.registration(ids["zsf"], ZSF_PHONE, name="张三丰"),
        ],
    )
    return ids


@pytest.fixture
def app(hq_db, hq_db_url):
    # a broker that is not there: pushes are best effort, stores page the change log
    app = create_app(hq_config(hq_db_url, None), db=hq_db)
    app.testing = True
    return app


def names_found(client, q: str) -> list[str]:
    resp = client.get("/members", query_string={"q": q, "list": 1})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return re.findall(r'class="member-link">([^<]+)<', resp.get_data(as_text=True))


# ---- search --------------------------------------------------------------------------


def test_search_by_initials_pinyin_name_last_four_card_and_phone(app, hq_db, chain):
    client = session_client(app, hq_db, "membership")
    assert names_found(client, "zs") == ["张三", "张三丰"]  # initials, as a prefix
    assert names_found(client, "ZSF") == ["张三丰"]
    assert names_found(client, "zhangsan") == ["张三", "张三丰"]  # full pinyin
    assert names_found(client, "张三") == ["张三", "张三丰"]  # the characters
    assert names_found(client, "张三丰") == ["张三丰"]
    assert names_found(client, " 张 三丰") == ["张三丰"]
    assert names_found(client, "5678") == ["张三"]  # the phone's last four digits
    assert names_found(client, "c0001") == ["张三"]  # a card number with letters
    assert names_found(client, ZS_PHONE) == ["张三"]
    assert names_found(client, "+86 138-0013-5678") == ["张三"]
    assert names_found(client, chain["ls"]) == ["李四"]
    assert names_found(client, "1380013") == ["张三"]  # the phone's first digits
    assert names_found(client, "qq") == []
    page = client.get("/members", query_string={"q": "zs"}).get_data(as_text=True)
    assert mask_phone(ZS_PHONE) in page and ZS_PHONE not in page
    # the page's JSON twin: the same rows, masked alike
    twin = client.get("/api/member-search", query_string={"q": "zs"}).get_json()
    assert [m["name"] for m in twin["members"]] == ["张三", "张三丰"]
    assert twin["members"][0]["phone"] == mask_phone(ZS_PHONE)
    assert twin["members"][0]["cards"] == ["C0001"] and twin["found"] == 2
    bad = client.get("/api/member-search", query_string={"q": "x" * 65})
    assert bad.status_code == 400 and bad.get_json()["field"] == "q"
    # a whole card number, phone or id that finds one member opens the member's page
    for q in ("C0001", ZS_PHONE, chain["zs"]):
        resp = client.get("/members", query_string={"q": q})
        assert resp.status_code == 302 and resp.location.endswith(f"/members/{chain['zs']}")


def test_search_is_paginated_and_capped(hq_db, chain):
    items = Items("S003")
    extra = [items.registration(uuid7(), f"1350000{i:04d}", name="周上") for i in range(45)]
    ingest(hq_db, "S003", extra)
    first = search_members("zs", None, 1, page_size=20)
    assert (first.found, first.pages, first.capped, len(first.members)) == (47, 3, False, 20)
    third = search_members("zs", None, 3, page_size=20)
    assert len(third.members) == 7
    seen = {m.id for n in (1, 2, 3) for m in search_members("zs", None, n, 20).members}
    assert len(seen) == 47  # stable order: every member once
    scoped = search_members("zs", frozenset({"S002"}))
    assert [m.name for m in scoped.members] == ["张三丰"]
    assert MAX_RESULTS == 200


def test_bad_search_input_is_a_400_page_in_chinese(app, hq_db, chain):
    client = session_client(app, hq_db, "membership")
    long = client.get("/members", query_string={"q": "x" * 65})
    assert long.status_code == 400 and "最多 64 个字符" in long.get_data(as_text=True)
    bad_page = client.get("/members", query_string={"q": "zs", "page": "abc"})
    assert bad_page.status_code == 400 and "页码" in bad_page.get_data(as_text=True)
    nobody = client.get("/members/00000000-0000-0000-0000-000000000000")
    assert nobody.status_code == 404 and "会员不存在" in nobody.get_data(as_text=True)
    nul = client.get("/members", query_string={"q": "a\x00b"})
    assert nul.status_code == 400


# ---- the member page -------------------------------------------------------------------


def test_member_page_shows_profile_cards_balances_ledger_and_sales(app, hq_db, chain):
    client = session_client(app, hq_db, "membership")
    resp = client.get(f"/members/{chain['zs']}")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200, page
    assert "张三" in page and mask_phone(ZS_PHONE) in page and ZS_PHONE not in page
    assert f'data-reveal="/api/members/{chain["zs"]}/reveal-phone"' in page
    assert "C0001" in page and "普通卡" in page
    member = Member.get_by_id(chain["zs"])
    assert member.sv_principal == 10000
    assert "¥100.00" in page  # the principal topped up
    assert page.count("<tr><td>") >= 1
    sale_id = re.search(r'href="/sales/([^"]+)"', page).group(1)
    assert sale_id  # links to the sale's page
    ledger = LedgerEntry.select().where(LedgerEntry.member_id == chain["zs"]).count()
    assert f"共 {ledger} 笔" in page and "充值" in page and "消费" in page
    # the reveal is the existing audited API
    reveal = client.post(f"/api/members/{chain['zs']}/reveal-phone")
    assert reveal.get_json()["value"] == ZS_PHONE
    assert AuditEntry.get(AuditEntry.action == "member.reveal_phone").target == chain["zs"]


def test_ledger_is_paginated(app, hq_db, chain):
    items = Items("S001")
    items.seq = 4
    ingest(hq_db, "S001", [items.topup(chain["zs"], 100, bonus=0) for _ in range(25)])
    client = session_client(app, hq_db, "membership")
    first = client.get(f"/members/{chain['zs']}").get_data(as_text=True)
    total = LedgerEntry.select().where(LedgerEntry.member_id == chain["zs"]).count()
    assert total > 20
    assert "第 1 / 2 页" in first
    second = client.get(f"/members/{chain['zs']}", query_string={"lp": 2}).get_data(as_text=True)
    rows = re.search(r'<table id="ledger-table">(.*?)</table>', second, re.S).group(1)
    assert rows.count("<tr>") - 1 == total - 20
    assert client.get(f"/members/{chain['zs']}", query_string={"lp": 0}).status_code == 400


# ---- roles -----------------------------------------------------------------------------


def test_store_manager_sees_only_their_stores_members(app, hq_db, chain):
    client = session_client(app, hq_db, "store", "S002")
    assert names_found(client, "zs") == ["张三丰"]
    twin = client.get("/api/member-search", query_string={"q": "zs"}).get_json()
    assert [m["id"] for m in twin["members"]] == [chain["zsf"]]
    assert names_found(client, "5678") == []
    assert names_found(client, "C0001") == []  # a card of another store's member
    refused = client.get(f"/members/{chain['zs']}")
    assert refused.status_code == 403 and "无权查看其他门店" in refused.get_data(as_text=True)
    assert client.get("/members/C0001").status_code == 403
    for path, form in (
        (f"/members/{chain['zs']}/edit", {"name": "改名"}),
        (f"/members/{chain['zs']}/cards/C0001/block", {"blocked": "1", "reason": "挂失"}),
    ):
        assert client.post(path, data=form).status_code == 403
    assert Member.get_by_id(chain["zs"]).name == "张三"
    assert Card.get_by_id("C0001").status == "active"
    own = client.get(f"/members/{chain['ww']}").get_data(as_text=True)
    assert "王五" in own and 'id="edit-form"' in own and 'id="points-form"' not in own


def test_analyst_sees_masked_data_and_no_actions(app, hq_db, chain):
    client = session_client(app, hq_db, "analyst")
    search = client.get("/members", query_string={"q": "zs"}).get_data(as_text=True)
    assert "张*" in search and "张三" not in search and ZS_PHONE not in search
    twin = client.get("/api/member-search", query_string={"q": "zs"}).get_json()
    assert [m["name"] for m in twin["members"]] == ["张*", "张**"]
    page = client.get(f"/members/{chain['zs']}").get_data(as_text=True)
    assert "张*" in page and "张三" not in page and mask_phone(ZS_PHONE) in page
    for marker in ('<form method="post" class', "data-reveal", 'id="edit-form"', "挂失</button>"):
        assert marker not in page
    for path, form in (
        (f"/members/{chain['zs']}/edit", {"name": "改名"}),
        (f"/members/{chain['zs']}/cards/C0001/block", {"blocked": "1", "reason": "挂失"}),
        (f"/members/{chain['zs']}/points", {"delta": "100", "reason": "x"}),
        (f"/members/{chain['zs']}/stored-value/clear", {"reason": "x"}),
        (f"/members/{chain['zs']}/merge", {"other": chain["ls"], "direction": "into_this"}),
    ):
        assert client.post(path, data=form).status_code == 403, path
    assert client.post(f"/api/members/{chain['zs']}/reveal-phone").status_code == 403
    assert not AuditEntry.select().where(AuditEntry.actor.startswith("analyst")).exists()


def test_membership_adjusts_points_with_a_reason_audited_and_sent_down(app, hq_db, chain):
    client = session_client(app, hq_db, "membership")
    before = Member.get_by_id(chain["zs"]).points
    url = f"/members/{chain['zs']}/points"
    no_reason = client.post(url, data={"delta": "100", "reason": "  "})
    assert no_reason.status_code == 400 and "须填写原因" in no_reason.get_data(as_text=True)
    not_a_number = client.post(url, data={"delta": "十", "reason": "补积分"})
    assert not_a_number.status_code == 400 and "整数" in not_a_number.get_data(as_text=True)
    too_many = client.post(url, data={"delta": f"-{before + 1}", "reason": "扣"})
    assert too_many.status_code == 400 and "积分不足" in too_many.get_data(as_text=True)
    assert Member.get_by_id(chain["zs"]).points == before
    assert not AuditEntry.select().where(AuditEntry.action == "points.adjust").exists()
    seq = ChangeRecord.select().count()
    done = client.post(url, data={"delta": "+100", "reason": "补积分"})
    assert done.status_code == 302 and "done=points" in done.location
    assert Member.get_by_id(chain["zs"]).points == before + 100
    audit = AuditEntry.get(AuditEntry.action == "points.adjust")
    assert audit.reason == "补积分" and audit.actor.startswith("membership-")
    assert audit.target == chain["zs"] and audit.details["delta"] == 100
    assert ChangeRecord.select().count() > seq  # the member goes down to the stores
    page = client.get(done.location).get_data(as_text=True)
    assert "积分已调整" in page and "+100" in page


def test_membership_blocks_and_unblocks_a_card(app, hq_db, chain):
    client = session_client(app, hq_db, "membership")
    url = f"/members/{chain['zs']}/cards/C0001/block"
    assert client.post(url, data={"blocked": "1", "reason": ""}).status_code == 400
    done = client.post(url, data={"blocked": "1", "reason": "顾客挂失"})
    assert done.status_code == 302
    card = Card.get_by_id("C0001")
    assert (card.status, card.blocked_reason) == ("blocked", "顾客挂失")
    audit = AuditEntry.get(AuditEntry.action == "card.block")
    assert (audit.target, audit.reason) == ("C0001", "顾客挂失")
    assert audit.actor.startswith("membership-")
    page = client.get(done.location).get_data(as_text=True)
    assert "卡已挂失" in page and "解挂</button>" in page
    assert client.post(url, data={"blocked": "0", "reason": "找回"}).status_code == 302
    assert Card.get_by_id("C0001").status == "active"
    # another member's card is not this member's to block
    other = client.post(
        f"/members/{chain['ls']}/cards/C0001/block", data={"blocked": "1", "reason": "x"}
    )
    assert other.status_code == 400 and "此会员没有卡" in other.get_data(as_text=True)


def test_stored_value_clear_needs_a_reason_and_is_audited(app, hq_db, chain):
    client = session_client(app, hq_db, "membership")
    url = f"/members/{chain['zs']}/stored-value/clear"
    assert client.post(url, data={"reason": ""}).status_code == 400
    assert client.post(url, data={"reason": "会员注销"}).status_code == 302
    member = Member.get_by_id(chain["zs"])
    assert (member.sv_principal, member.sv_bonus) == (0, 0)
    assert AuditEntry.get(AuditEntry.action == "stored_value.clear").reason == "会员注销"
    again = client.post(url, data={"reason": "再来"})
    assert again.status_code == 400 and "无需清零" in again.get_data(as_text=True)


# ---- edits keep the search keys ----------------------------------------------------------


def test_an_edit_at_hq_moves_the_search_keys(app, hq_db, chain):
    client = session_client(app, hq_db, "store", "S001")
    url = f"/members/{chain['ls']}/edit"
    taken = client.post(url, data={"name": "李四", "phone": ZS_PHONE})
    assert taken.status_code == 409 and "手机号已属于另一位会员" in taken.get_data(as_text=True)
    done = client.post(url, data={"name": "曾小贤", "gender": "M", "phone": "13911119999"})
    assert done.status_code == 302, done.get_data(as_text=True)
    assert names_found(client, "zxx") == ["曾小贤"]  # the surname read as a surname
    assert names_found(client, "9999") == ["曾小贤"]
    assert names_found(client, "1234") == []
    assert AuditEntry.get(AuditEntry.action == "member.update").actor.startswith("store-")
    unchanged = client.post(url, data={"name": "曾小贤", "gender": "M"})
    assert "done=edit-none" in unchanged.location


def test_a_till_edit_moves_the_search_keys(hq_db, chain):
    items = Items("S001")
    items.seq = 4
    body = {
        "member_id": chain["ls"],
        "changes": {"name": "欧阳娜娜"},
        "changed_at": "2026-11-23T12:00:00+08:00",
        "cashier": "E01",
    }
    ingest(hq_db, "S001", [items._item("member_update", body)])
    assert [m.name for m in search_members("oynn", None).members] == ["欧阳娜娜"]
    assert search_members("ls", None).members == []


def test_merge_from_the_page_shows_the_survivor_and_leaves_the_search(app, hq_db, chain):
    client = session_client(app, hq_db, "membership")
    url = f"/members/{chain['zs']}/merge"
    itself = client.post(url, data={"other": "C0001", "direction": "into_this"})
    assert itself.status_code == 400 and "不能与自己合并" in itself.get_data(as_text=True)
    done = client.post(url, data={"other": LS_PHONE, "direction": "into_this"})
    assert done.status_code == 302 and chain["zs"] in done.location
    merge = Merge.get(Merge.from_member == chain["ls"])
    assert merge.to_member == chain["zs"] and merge.staff.startswith("membership-")
    assert AuditEntry.get(AuditEntry.action == "member.merge").details["merged"] == chain["ls"]
    # the merged id leads to the survivor, whose page lists the merge
    moved = client.get(f"/members/{chain['ls']}")
    assert moved.status_code == 302 and moved.location.endswith(f"/members/{chain['zs']}")
    page = client.get(f"/members/{chain['zs']}").get_data(as_text=True)
    assert "并入本会员" in page and chain["ls"] in page and "C0002" in page
    assert names_found(client, "ls") == []  # the merged record is not a result
    assert names_found(client, "C0002") == ["张三"]  # its card went to the survivor


# ---- the keys of rows from before the columns, and of erased members ----------------------


def test_init_db_backfills_the_search_keys(hq_db, chain):
    Member.update(name_pinyin=None, name_initials=None, phone_last4=None).execute()
    assert search_members("zs", None).members == []
    assert backfill_search_keys(hq_db, batch=3) == 4
    assert [m.name for m in search_members("zs", None).members] == ["张三", "张三丰"]
    assert backfill_search_keys(hq_db) == 0
    # what init-db runs (after an upgrade added the columns, null on the old rows)
    Member.update(name_pinyin=None, name_initials=None, phone_last4=None).execute()
    create_schema(hq_db)
    assert [m.name for m in search_members("5678", None).members] == ["张三"]
    assert search_keys("张三", ZS_PHONE) == {
        "name_pinyin": "zhangsan",
        "name_initials": "zs",
        "phone_last4": "5678",
    }


def test_an_erased_member_cannot_be_found_by_name_or_phone(hq_db, chain):
    from hq.privacy import erase_member

    erase_member(hq_db, Member.get_by_id(chain["zs"]), "会员要求删除", "dpo", NOW)
    assert [m.name for m in search_members("zs", None).members] == ["张三丰"]
    assert search_members("5678", None).members == []
    m = Member.get_by_id(chain["zs"])
    assert (m.name_pinyin, m.name_initials, m.phone_last4) == ("", "", None)


# ---- a real browser --------------------------------------------------------------------


def test_membership_finds_zhang_san_by_initials_in_a_browser(app, hq_db, chain):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    username = make_user(hq_db, "membership")
    with live_server(app) as base, chromium(1366, 768) as driver:
        driver.get(f"{base}/members")
        driver.find_element(By.NAME, "username").send_keys(username)
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "q")))
        box = driver.find_element(By.ID, "q")
        box.send_keys("zs")
        driver.find_element(By.ID, "search").click()
        WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "results")))
        links = driver.find_elements(By.CSS_SELECTOR, "a.member-link")
        assert [a.text for a in links] == ["张三", "张三丰"]
        shot(driver, "hq-member-search")
        links[0].click()
        WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "ledger-table")))
        assert driver.find_element(By.ID, "phone").text == mask_phone(ZS_PHONE)
        driver.find_element(By.ID, "reveal").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "phone").text == ZS_PHONE)
        ledger = driver.find_element(By.ID, "ledger-table").text
        assert "充值" in ledger and "消费" in ledger
        shot(driver, "hq-member-page")
        driver.find_element(By.CSS_SELECTOR, '.section-nav a[href="#cards"]').click()
        shot(driver, "hq-member-cards")
        driver.find_element(By.CSS_SELECTOR, '.section-nav a[href="#actions"]').click()
        assert driver.find_element(By.ID, "points-form").is_displayed()
        shot(driver, "hq-member-actions")
    audit = AuditEntry.get(AuditEntry.action == "member.reveal_phone")
    assert (audit.actor, audit.target) == (username, chain["zs"])


def test_member_page_lists_card_type_and_tier_history_coupons_and_consents(app, hq_db, chain):
    from hq.programme.cards import set_card_type

    set_card_type(hq_db, chain["zs"], "金卡", "membership-x", "VIP 客户", NOW)
    assert services.issue_coupon(hq_db, "CPN-ZS-1", 500, chain["zs"], None, NOW)
    # a tier change as the nightly evaluation writes it (the demo rules have no ladder)
    TierChange.create(
        member_id=chain["zs"],
        from_tier=None,
        to_tier="银卡会员",
        reason="upgrade",
        growth=1200,
        day=NOW.date(),
        at=NOW,
    )
    items = Items("S001")
    items.seq = 4
    consent = {"member_id": chain["zs"], "consent": {"sms": True, "wechat": False, "call": False}}
    ingest(
        hq_db,
        "S001",
        [
            items._item(
                "consent", consent | {"changed_at": "2026-11-23T12:00:00+08:00", "cashier": "E01"}
            )
        ],
    )
    page = session_client(app, hq_db, "membership").get(f"/members/{chain['zs']}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200, text
    history = re.search(r'<table class="compact" id="card-type-history">(.*?)</table>', text, re.S)
    assert history and "金卡" in history.group(1) and "手动" in history.group(1)
    tiers = re.search(r'id="tier-history">(.*?)</table>', text, re.S).group(1)
    assert "银卡会员" in tiers and "升级" in tiers
    coupons = re.search(r'id="coupon-table">(.*?)</table>', text, re.S).group(1)
    assert "CPN-ZS-1" in coupons and "¥5.00" in coupons and "未使用" in coupons
    consents = re.search(r'id="consent-table">(.*?)</table>', text, re.S).group(1)
    assert "短信" in consents and "同意" in consents and "微信" in consents
