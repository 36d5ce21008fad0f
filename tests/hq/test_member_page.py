"""The member's own page (hq/portal/) through the Flask test client: the signed link,
what it shows, what an edited link shows (nothing), and binding a phone against the fake
SMS gateway the test starts."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re

import pytest

from core.ids import uuid7
from core.member_link import sign_link
from hq.api import create_app
from hq.channels.fake_gateway import FakeSmsGateway
from hq.config import HqConfig
from hq.models import (
    Campaign,
    CampaignRecipient,
    Coupon,
    ListRun,
    Member,
    MemberPageCode,
    Sale,
    Store,
    utcnow,
)
from hq.portal import binding
from hq.services import staff_merge
from tests.hq.test_access import _member  # one way to register a member at HQ in tests

PHONE_A, PHONE_B = "13800000001", "13900000002"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CODE = re.compile(r"验证码是 (\d{6})")
# the page fits the phone's width: nothing scrolls sideways
FITS = "return document.documentElement.scrollWidth <= window.innerWidth"
WIDTHS = "return [document.documentElement.scrollWidth, window.innerWidth, window.outerWidth]"


@pytest.fixture
def gateway():
    with FakeSmsGateway(token="s3cret") as gw:
        yield gw


@pytest.fixture
def app(hq_db, hq_db_url, tmp_path, gateway):
    creds = tmp_path / "sms.token"
    creds.write_text("s3cret\n")
    config = HqConfig(
        database_url=hq_db_url,
        lookup_key_file=str(tmp_path / "lookup.key"),
        console_secure_cookie=False,
        sms_gateway_url=gateway.url,
        sms_credentials_file=str(creds),
        sms_timeout=1.0,
    )
    app = create_app(config, db=hq_db)
    app.testing = True
    return app


@pytest.fixture
def members(hq_db):
    a = _member(hq_db, "S001", PHONE_A, "张三")
    b = _member(hq_db, "S001", PHONE_B, "李四")
    Store.get_or_create(code="S001", defaults={"name": "会员示范店", "created_at": utcnow()})
    Member.update(points=1234, sv_principal=5000, sv_bonus=500, growth=40).where(
        Member.id == a
    ).execute()
    Member.update(points=77, sv_principal=99900).where(Member.id == b).execute()
    Coupon.create(code="CP-A", member_id=a, value=1000, status="issued")
    Sale.create(
        sale_id="sale-a-1",
        store="S001",
        seq=1,
        member_id=a,
        total=14030,
        rules_version=1,
        occurred_at="2026-11-23T10:07:00+08:00",
        body={"lines": [{"qty": 3}]},
        ingested_at=utcnow(),
    )
    return a, b


def _token(app, member_id: str, days: float = 30) -> str:
    key = app.extensions["hq_portal_keys"].link
    return sign_link(key, member_id, utcnow() + dt.timedelta(days=days))


def _refused(resp) -> None:
    text = resp.get_data(as_text=True)
    assert resp.status_code == 403
    assert "此链接无效或已过期" in text
    assert "1234" not in text and "积分" not in text


def test_the_link_shows_points_tier_and_coupons_not_money_until_bound(app, members):
    a, _b = members
    client = app.test_client()
    resp = client.get(f"/m/{_token(app, a)}")
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "1234" in text and "可抵 ¥12.34" in text  # DEMO rules: 100 points a yuan
    assert "1 张可用" in text and "生日" in text
    assert "¥55.00" not in text and "最近消费" not in text and "13800000001" not in text
    assert "获取验证码" in text
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    data = client.get(f"/m/{_token(app, a)}.json").get_json()
    assert data["points"] == 1234 and data["points_worth"] == 1234 and not data["bound"]
    assert "stored_value" not in data and "recent_sales" not in data
    css = client.get("/m/static/member.css")
    assert css.status_code == 200
    css.close()


def _birthday_campaign(member_id: str, benefit: dict, ref: str | None, **fields) -> None:
    """A campaign to this year's May 生日祝福 list, the member treated in it."""
    year = utcnow().year
    run = ListRun.create(
        kind="birthdays", start=dt.date(year, 5, 1), scope="", members=1,
        made_at=utcnow(), made_by="scheduler",
    )  # fmt: skip
    campaign = Campaign.create(
        name="五月生日", audience={"run": run.id}, run_id=run.id, benefit=benefit,
        channels=["sms"], send_at=utcnow(), status="done", created_by="hq-li",
        created_at=utcnow(), **fields,
    )  # fmt: skip
    CampaignRecipient.create(campaign=campaign.id, member_id=member_id, benefit_ref=ref)


@pytest.mark.parametrize(
    ("benefit", "ref", "coupon_status", "shown"),
    [
        ({"coupon": "BDAY"}, "CP-BDAY", "issued", "今年的生日礼券已发放"),
        ({"coupon": "BDAY"}, "CP-BDAY", "used", "今年的生日礼券已使用"),
        ({"points": 500}, "lot-1", None, "今年的生日礼: 500 积分, 已到账"),
        ({"gift": "保温杯一个"}, "gift", None, "今年的生日礼: 保温杯一个, 请到店领取"),
        ({"coupon": "BDAY"}, None, None, "生日礼将随生日祝福一起送达"),
    ],
)
def test_the_birthday_gift_is_what_this_years_birthday_campaign_gave(
    app, members, benefit, ref, coupon_status, shown
):
    a, b = members
    if coupon_status:
        Coupon.create(code="CP-BDAY", member_id=a, value=2000, status=coupon_status)
    _birthday_campaign(a, benefit, ref)
    text = app.test_client().get(f"/m/{_token(app, a)}").get_data(as_text=True)
    assert shown in text
    other = app.test_client().get(f"/m/{_token(app, b)}").get_data(as_text=True)
    assert "生日礼将在生日月发放" in other  # b is in no birthday campaign


def test_an_edited_expired_or_foreign_link_shows_nothing(app, members):
    a, b = members
    client = app.test_client()
    token = _token(app, a)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for index in (0, 3, 7, 12, 24, 30, 40):
        flipped = bytearray(raw)
        flipped[index] ^= 0x04
        edited = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        _refused(client.get(f"/m/{edited}"))
        assert client.get(f"/m/{edited}.json").status_code == 403
    other = bytearray(base64.urlsafe_b64decode(_token(app, b) + "=="))
    swapped = raw[:9] + other[9:25] + raw[25:]  # B's id under A's signature
    _refused(client.get("/m/" + base64.urlsafe_b64encode(bytes(swapped)).rstrip(b"=").decode()))
    _refused(client.get(f"/m/{_token(app, a, days=-1)}"))  # expired yesterday
    _refused(client.get(f"/m/{_token(app, uuid7())}"))  # signed, but no such member
    _refused(client.get("/m/" + "A" * 55))
    _refused(client.get("/m/%00%00"))
    foreign = sign_link(b"\x01" * 32, a, utcnow() + dt.timedelta(days=1))
    _refused(client.get(f"/m/{foreign}"))


def test_a_merged_members_link_shows_the_survivor(app, hq_db, members):
    a, b = members
    staff_merge(hq_db, b, a, "admin", utcnow())
    data = app.test_client().get(f"/m/{_token(app, b)}.json").get_json()
    assert data["points"] == Member.get_by_id(a).points


def _csrf(client, token: str) -> str:
    return CSRF.search(client.get(f"/m/{token}").get_data(as_text=True)).group(1)


def _ask_code(client, token: str, phone: str):
    return client.post(f"/m/{token}/code", data={"csrf": _csrf(client, token), "phone": phone})


def _bind(client, token: str, code: str):
    return client.post(f"/m/{token}/bind", data={"csrf": _csrf(client, token), "code": code})


def test_binding_the_phone_shows_the_whole_page_and_only_that_members(
    app, members, gateway, caplog
):
    caplog.set_level(logging.DEBUG)
    a, b = members
    client = app.test_client()
    token = _token(app, a)
    resp = _ask_code(client, token, "138 0000 0001")
    assert resp.status_code == 200 and "验证码已发送" in resp.get_data(as_text=True)
    assert [m["to"] for m in gateway.sent] == [PHONE_A]
    code = CODE.search(gateway.sent[0]["text"]).group(1)
    row = MemberPageCode.get()
    assert code not in row.code_hash and PHONE_A not in row.phone_hash
    wrong = "000000" if code != "000000" else "111111"
    resp = _bind(client, token, wrong)
    assert resp.status_code == 400 and "验证码不正确, 还可以再试4次" in resp.get_data(as_text=True)
    form_csrf = _csrf(client, token)
    resp = _bind(client, token, code)
    assert resp.status_code == 303
    page = client.get(f"/m/{token}").get_data(as_text=True)
    assert (
        "¥55.00" in page
        and "最近消费" in page
        and "¥140.30" in page
        and "会员示范店 · 3 件" in page
    )
    assert "138****0001" in page and "张*" in page
    # the cookie binds A: B's link in the same browser shows B, unbound, never A's data
    page_b = client.get(f"/m/{_token(app, b)}").get_data(as_text=True)
    assert "77" in page_b and "¥999.00" not in page_b and "¥55.00" not in page_b
    assert "获取验证码" in page_b
    # a code is used once (the bound page has no form: post as the form did)
    resp = client.post(f"/m/{token}/bind", data={"csrf": form_csrf, "code": code})
    assert resp.status_code == 400
    assert PHONE_A not in caplog.text


def test_a_phone_that_is_not_the_members_gets_the_same_answer_and_no_sms(app, members, gateway):
    a, _b = members
    client = app.test_client()
    resp = _ask_code(client, _token(app, a), PHONE_B)
    assert resp.status_code == 200 and "验证码已发送" in resp.get_data(as_text=True)
    assert gateway.sent == []
    for _ in range(4):
        assert _bind(client, _token(app, a), "123456").status_code == 400


def test_five_wrong_codes_lock_the_binding(app, members, gateway):
    a, _b = members
    client = app.test_client()
    token = _token(app, a)
    _ask_code(client, token, PHONE_A)
    code = CODE.search(gateway.sent[0]["text"]).group(1)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        assert _bind(client, token, wrong).status_code == 400
    resp = _bind(client, token, wrong)
    assert resp.status_code == 403 and "错误次数过多" in resp.get_data(as_text=True)
    resp = _bind(client, token, code)  # even the right code now
    assert resp.status_code == 403 and "hy_member" not in resp.headers.get("Set-Cookie", "")
    MemberPageCode.update(created_at=utcnow() - dt.timedelta(minutes=2)).execute()
    assert _ask_code(client, token, PHONE_A).status_code == 403
    assert len(gateway.sent) == 1


def test_codes_are_rate_limited_per_member_and_per_phone_and_expire(app, hq_db, members, gateway):
    a, _b = members
    client = app.test_client()
    token = _token(app, a)
    assert _ask_code(client, token, PHONE_A).status_code == 200
    resp = _ask_code(client, token, PHONE_A)
    assert resp.status_code == 429 and "秒后再获取" in resp.get_data(as_text=True)
    for _ in range(binding.PER_HOUR - 1):
        MemberPageCode.update(created_at=utcnow() - dt.timedelta(minutes=2)).execute()
        assert _ask_code(client, token, PHONE_A).status_code == 200
    MemberPageCode.update(created_at=utcnow() - dt.timedelta(minutes=2)).execute()
    resp = _ask_code(client, token, PHONE_A)
    assert resp.status_code == 429 and "一小时后再试" in resp.get_data(as_text=True)
    assert len(gateway.sent) == binding.PER_HOUR
    # per phone: another member's page asking for this phone counts the same hour
    other = _member(hq_db, "S001", "13700000003", "王五")
    resp = _ask_code(client, _token(app, other), PHONE_A)
    assert resp.status_code == 429
    # an expired code is refused
    code = CODE.search(gateway.sent[-1]["text"]).group(1)
    MemberPageCode.update(expires_at=utcnow() - dt.timedelta(seconds=1)).execute()
    resp = _bind(client, token, code)
    assert resp.status_code == 400 and "验证码已过期" in resp.get_data(as_text=True)


@pytest.mark.parametrize("fault", [500, "timeout"])
def test_a_gateway_failure_is_told_in_chinese(app, members, gateway, fault):
    a, _b = members
    client = app.test_client()
    gateway.fail_next(fault, seconds=3)
    resp = _ask_code(client, _token(app, a), PHONE_A)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 503 and "短信发送失败, 请稍后再试" in text
    assert "SMS send" not in text


def test_the_forms_need_their_csrf_token(app, members, gateway):
    a, _b = members
    client = app.test_client()
    token = _token(app, a)
    client.get(f"/m/{token}")
    resp = client.post(f"/m/{token}/code", data={"phone": PHONE_A, "csrf": "forged"})
    assert resp.status_code == 403 and "页面已过期" in resp.get_data(as_text=True)
    fresh = app.test_client()  # no CSRF cookie: another site's form
    resp = fresh.post(f"/m/{token}/code", data={"phone": PHONE_A, "csrf": _csrf(client, token)})
    assert resp.status_code == 403
    assert gateway.sent == []


def test_a_bad_phone_is_a_chinese_400(app, members):
    a, _b = members
    resp = _ask_code(app.test_client(), _token(app, a), "12345")
    assert resp.status_code == 400
    assert "手机号" in resp.get_data(as_text=True)


@pytest.mark.parametrize("hq_db_url", ["sqlite"], indirect=True)  # one browser run is enough
def test_the_page_in_a_phone_browser_binds_and_refuses(app, members, gateway):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium, live_server, shot

    a, _b = members
    token = _token(app, a)
    with live_server(app) as base, chromium(390, 844) as driver:
        # headless chromium keeps a window at least 500 px wide: emulate the phone's viewport
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
        driver.get(f"{base}/m/{token}")
        assert driver.execute_script("return window.innerWidth") <= 390
        assert driver.find_element(By.ID, "points-value").text == "1234"
        assert driver.execute_script(FITS), driver.execute_script(WIDTHS)
        shot(driver, "member-page-unbound")
        driver.find_element(By.ID, "phone").send_keys(PHONE_A)
        driver.find_element(By.ID, "send-code").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "code"))
        assert "验证码已发送" in driver.find_element(By.ID, "notice").text
        code = CODE.search(gateway.sent[0]["text"]).group(1)
        driver.find_element(By.ID, "code").send_keys("000000" if code != "000000" else "111111")
        driver.find_element(By.ID, "bind-submit").click()
        error = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "error"))
        assert error.text.startswith("验证码不正确")
        shot(driver, "member-page-wrong-code")
        driver.find_element(By.ID, "code").send_keys(code)
        driver.find_element(By.ID, "bind-submit").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "purchases"))
        assert "¥55.00" in driver.find_element(By.ID, "stored-value").text
        assert driver.execute_script(FITS), driver.execute_script(WIDTHS)
        shot(driver, "member-page-bound")
        driver.get(f"{base}/m/{token[:-2]}AA")
        assert "此链接无效或已过期" in driver.find_element(By.ID, "refused").text
        shot(driver, "member-page-refused")
        # the wrong code (400) and the edited link (403) are answered as such on purpose;
        # anything else (a CSP violation, a missing asset) is a defect
        logs = driver.get_log("browser")
        assert not [e for e in logs if e["level"] == "SEVERE" and e["source"] != "network"], logs
        assert not [e for e in logs if "member.css" in e["message"]], logs


def test_tier_progress_names_the_next_rung():
    from core.rules import Rules, TierRules, TierStep
    from hq.portal.view import _tier

    rules = Rules(tiers=TierRules(ladder=(TierStep("银卡", 0), TierStep("金卡", 1000))))
    member = Member(tier="银卡", growth=250)
    assert _tier(rules, member) == {
        "name": "银卡",
        "growth": 250,
        "next": "金卡",
        "next_threshold": 1000,
        "to_next": 750,
        "progress_pct": 25,
    }
    top = _tier(rules, Member(tier="金卡", growth=1500))
    assert top["next"] == "" and top["progress_pct"] == 100
    # a tier held above what the growth earns (given by hand): the next rung is above it,
    # as the till's glance says (core.tiers.progress)
    held = _tier(rules, Member(tier="金卡", growth=250))
    assert held["next"] == "" and held["progress_pct"] == 100
