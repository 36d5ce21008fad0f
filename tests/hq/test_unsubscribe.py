"""Unsubscribing (hq/portal/unsubscribe.py): the signed link every campaign message
carries (hq/portal/links.py), the page in a phone-sized browser, an edited link that
cannot reach anyone else, the consent history kept, and the SMS reply 退订."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from core.errors import ValidationError
from core.member_link import verify_link
from hq import privacy
from hq.api import create_app
from hq.cli import main
from hq.config import HqConfig
from hq.models import AuditEntry, Member, MemberConsent, bind, utcnow
from hq.portal.links import page_url, unsubscribe_url
from hq.portal.unsubscribe import apply_sms_reply, is_unsubscribe_reply
from tests.hq.test_access import _member

PHONE_A, PHONE_B = "13800000101", "13900000202"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ALL_ON = {"sms": True, "wechat": True, "call": True}
FITS = "return document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture
def config(hq_db_url, tmp_path):
    return HqConfig(
        database_url=hq_db_url,
        lookup_key_file=str(tmp_path / "lookup.key"),
        console_secure_cookie=False,
        member_page_url="https://m.example.cn/m/{token}",
    )


@pytest.fixture
def app(hq_db, config):
    app = create_app(config, db=hq_db)
    app.testing = True
    return app


@pytest.fixture
def members(hq_db):
    a = _member(hq_db, "S001", PHONE_A, "张三")
    b = _member(hq_db, "S001", PHONE_B, "李四")
    for m in (a, b):
        privacy.set_consent(hq_db, m, ALL_ON, "E01", utcnow() - dt.timedelta(days=3))
    return a, b


def _path(url: str) -> str:
    return urlsplit(url).path


def _granted(member_id: str) -> dict[str, bool]:
    return {c: s["granted"] for c, s in privacy.consent_state(member_id).items()}


def _post(client, path: str, channel: str, csrf: str | None = None):
    if csrf is None:
        csrf = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    return client.post(path, data={"csrf": csrf, "channel": channel})


def test_the_links_are_signed_for_the_member_and_open_the_pages(app, config, members):
    a, _b = members
    now = utcnow()
    page, unsub = page_url(config, a, now), unsubscribe_url(config, a, now)
    assert page.startswith("https://m.example.cn/m/") and unsub.endswith("/unsubscribe")
    keys = app.extensions["hq_portal_keys"]
    token = _path(page).split("/")[2]
    link = verify_link(keys.link, token, now)
    assert link.member_id == a and link.expires_at.date() == (now + dt.timedelta(days=30)).date()
    # the message's 退订 link: a token of its own key, open for UNSUBSCRIBE_DAYS (400)
    unsub_token = _path(unsub).split("/")[2]
    assert unsub_token != token
    link = verify_link(keys.unsubscribe, unsub_token, now)
    assert link.member_id == a and link.expires_at.date() == (now + dt.timedelta(days=400)).date()
    client = app.test_client()
    assert client.get(_path(page)).status_code == 200
    # it opens the unsubscribe page, never the member's page (points, purchases)
    refused = client.get(f"/m/{unsub_token}")
    assert refused.status_code == 403 and "此链接无效或已过期" in refused.get_data(as_text=True)
    # the member page's own link opens the unsubscribe page too
    assert client.get(_path(page) + "/unsubscribe").status_code == 200
    resp = client.get(_path(unsub))
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "退订营销信息" in text and "短信" in text and "微信" in text and "电话" in text
    assert text.count("已订阅") == 3 and "全部退订" in text
    assert PHONE_A not in text and "张三" not in text  # nothing personal on this page


def test_one_channel_then_all_keeping_the_consent_history_and_the_audit(
    app, config, hq_db, members
):
    a, b = members
    client = app.test_client()
    path = _path(unsubscribe_url(config, a, utcnow()))
    csrf = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    resp = _post(client, path, "sms")
    assert resp.status_code == 200 and "已退订短信" in resp.get_data(as_text=True)
    assert _granted(a) == {"sms": False, "wechat": True, "call": True}
    resp = _post(client, path, "all")
    text = resp.get_data(as_text=True)
    assert "已退订微信公众号消息、电话回访与优惠来电" in text and "您已退订全部营销信息" in text
    assert _granted(a) == {"sms": False, "wechat": False, "call": False}
    assert _granted(b) == ALL_ON  # nobody else touched
    assert not privacy.consented(a, "sms") and a not in privacy.members_consenting("wechat")
    rows = list(
        MemberConsent.select().where(MemberConsent.member_id == a).order_by(MemberConsent.id)
    )
    # the first answers are kept: history, the newest in force
    assert [(r.channel, r.granted, r.source) for r in rows] == [
        ("sms", True, "hq"),
        ("wechat", True, "hq"),
        ("call", True, "hq"),
        ("sms", False, "member"),
        ("wechat", False, "member"),
        ("call", False, "member"),
    ]
    assert {r.by for r in rows[3:]} == {"member:page"}
    assert privacy.MEMBER_SOURCE == "member"  # what a campaign reads as "unsubscribed"
    with pytest.raises(ValidationError):
        privacy.set_consent(hq_db, a, {"sms": False}, "x", utcnow(), source="guess")
    audits = list(AuditEntry.select().where(AuditEntry.action == "consent.unsubscribe"))
    assert [(e.target, e.details["channels"]) for e in audits] == [
        (a, ["sms"]),
        (a, ["wechat", "call"]),
    ]
    # again: nothing left to turn off, nothing written
    assert _post(client, path, "all", csrf=csrf).status_code == 200
    assert MemberConsent.select().where(MemberConsent.member_id == a).count() == 6


def test_an_edited_expired_or_foreign_link_cannot_unsubscribe_anyone(app, config, hq_db, members):
    a, b = members
    client = app.test_client()
    path = _path(unsubscribe_url(config, a, utcnow()))
    csrf = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    token = path.split("/")[2]
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    other = base64.urlsafe_b64decode(_path(page_url(config, b, utcnow())).split("/")[2] + "==")
    swapped = bytes(raw[:9] + other[9:25] + raw[25:])  # B's id under A's signature
    edited = []
    for index in (0, 5, 12, 30, 40):
        flipped = bytearray(raw)
        flipped[index] ^= 0x04
        edited.append(bytes(flipped))
    for forged in [*edited, swapped]:
        bad = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
        for resp in (
            client.get(f"/m/{bad}/unsubscribe"),
            client.post(f"/m/{bad}/unsubscribe", data={"csrf": csrf, "channel": "all"}),
        ):
            assert resp.status_code == 403
            text = resp.get_data(as_text=True)
            assert "此链接无效或已过期" in text and "退订" not in text
    # a message a year old still unsubscribes; one past 400 days does not
    year_old = _path(unsubscribe_url(config, a, utcnow() - dt.timedelta(days=365)))
    assert client.get(year_old).status_code == 200
    expired = _path(unsubscribe_url(config, a, utcnow() - dt.timedelta(days=401)))
    assert _post(client, expired, "all", csrf=csrf).status_code == 403
    assert client.get(expired).status_code == 403
    # B's own link unsubscribes B, never A (the form's channel is all it chooses)
    b_path = _path(unsubscribe_url(config, b, utcnow()))
    assert _post(client, b_path, "all", csrf=csrf).status_code == 403  # A's token's csrf
    assert _post(client, b_path, "wechat").status_code == 200
    assert _granted(a) == ALL_ON
    assert _granted(b) == {"sms": True, "wechat": False, "call": True}


def test_the_form_needs_its_csrf_token_and_a_known_channel(app, config, members):
    a, _b = members
    client = app.test_client()
    path = _path(unsubscribe_url(config, a, utcnow()))
    client.get(path)
    no_token = client.post(path, data={"channel": "all"})
    assert no_token.status_code == 403 and "页面已过期" in no_token.get_data(as_text=True)
    wrong = client.post(path, data={"channel": "all", "csrf": "0" * 64})
    assert wrong.status_code == 403
    unknown = _post(client, path, "email")
    assert unknown.status_code == 400 and "请选择要退订的渠道" in unknown.get_data(as_text=True)
    assert _granted(a) == ALL_ON


@pytest.mark.parametrize(
    ("text", "yes"),
    [
        ("TD", True),
        ("td", True),
        (" T ", True),
        ("退订", True),
        ("ＴＤ", True),
        ("退订。", True),
        ("好的", False),
        ("TDD", False),
        ("", False),
        ("退订吧谢谢", False),
    ],
)
def test_which_replies_say_unsubscribe(text, yes):
    assert is_unsubscribe_reply(text) is yes


def test_an_sms_reply_turns_off_sms_for_that_phones_member_only(hq_db, members, caplog):
    caplog.set_level(logging.DEBUG, logger="hq")  # HQ's own lines (peewee's SQL is not on)
    a, b = members
    now = utcnow()
    assert apply_sms_reply(hq_db, "138 0000 0101", "好的", now) is False
    assert apply_sms_reply(hq_db, "13611110000", "TD", now) is False  # nobody's number
    assert apply_sms_reply(hq_db, "not a phone", "TD", now) is False
    assert _granted(a) == ALL_ON
    assert apply_sms_reply(hq_db, "+86 138 0000 0101", "td", now) is True
    assert _granted(a) == {"sms": False, "wechat": True, "call": True}
    assert _granted(b) == ALL_ON
    assert apply_sms_reply(hq_db, PHONE_A, "退订", now) is False  # already off
    newest = MemberConsent.select().order_by(MemberConsent.id.desc()).first()
    assert (newest.source, newest.by, newest.granted) == ("member", "member:sms-reply", False)
    assert "unsubscribed from ['sms'] (sms-reply)" in caplog.text
    assert PHONE_A not in caplog.text and "13611110000" not in caplog.text


def test_the_sms_reply_command(hq_db, hq_db_url, members):
    a, b = members
    runner = CliRunner()
    done = runner.invoke(main, ["--database-url", hq_db_url, "sms-reply", PHONE_B, "T"])
    assert done.exit_code == 0 and "已退订短信" in done.output
    bind(hq_db, create=False)
    assert _granted(b)["sms"] is False and _granted(a)["sms"] is True
    idle = runner.invoke(main, ["--database-url", hq_db_url, "sms-reply", PHONE_B, "T"])
    assert idle.exit_code == 0 and "无需处理" in idle.output
    bind(hq_db, create=False)


def test_an_erased_member_is_told_nothing_can_change(app, config, hq_db, members):
    a, _b = members
    client = app.test_client()
    path = _path(unsubscribe_url(config, a, utcnow()))
    csrf = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    privacy.erase_member(hq_db, Member.get_by_id(a), "the member asked", "admin", utcnow())
    resp = client.get(path)
    assert resp.status_code == 200 and "您已退订全部营销信息" in resp.get_data(as_text=True)
    assert _post(client, path, "all", csrf=csrf).status_code == 200
    assert MemberConsent.select().where(MemberConsent.member_id == a).count() == 0


@pytest.mark.parametrize("hq_db_url", ["sqlite"], indirect=True)  # one browser run is enough
def test_the_unsubscribe_page_in_a_phone_browser(app, config, members):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium, live_server, shot

    a, b = members
    path = _path(unsubscribe_url(config, a, utcnow()))
    with live_server(app) as base, chromium(390, 844) as driver:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
        driver.get(base + path)
        assert driver.execute_script("return window.innerWidth") <= 390
        for channel in ("sms", "wechat", "call"):
            assert "已订阅" in driver.find_element(By.ID, f"channel-{channel}").text
        assert driver.execute_script(FITS)
        shot(driver, "unsubscribe-page")
        driver.find_element(By.ID, "off-sms").click()
        notice = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "notice"))
        assert notice.text.startswith("已退订短信")
        assert "未订阅" in driver.find_element(By.ID, "channel-sms").text
        assert not driver.find_elements(By.ID, "off-sms")
        shot(driver, "unsubscribe-one-channel")
        driver.find_element(By.ID, "off-all").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "all-off"))
        assert driver.execute_script(FITS)
        shot(driver, "unsubscribe-all")
        driver.get(f"{base}{path[: -len('/unsubscribe') - 2]}AA/unsubscribe")
        assert "此链接无效或已过期" in driver.find_element(By.ID, "refused").text
        logs = driver.get_log("browser")
        assert not [e for e in logs if e["level"] == "SEVERE" and e["source"] != "network"], logs
    assert _granted(a) == {"sms": False, "wechat": False, "call": False}
    assert _granted(b) == ALL_ON
