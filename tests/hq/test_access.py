"""Sign-in, roles and the guard in front of every HQ route (hq/access/)."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from core.ids import uuid7
from hq.access import users
from hq.access.guard import PUBLIC_ENDPOINTS
from hq.access.masking import mask_phone
from hq.access.roles import ROLES
from hq.api import create_app
from hq.changes import ChangeSet, flush_changes
from hq.cli import main
from hq.config import HqConfig
from hq.members import register_member
from hq.models import AuditEntry, HqSession, HqUser, Store, bind, utcnow
from tests.browser import chromium, live_server, shot
from tests.hq.signin import (
    FORM_CSRF,
    PASSWORD,
    bearer_client,
    make_user,
    session_client,
    sign_in,
)


@pytest.fixture
def app(hq_db, hq_db_url):
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return app


def _member(db, store: str, phone: str, name: str = "张三") -> str:
    member_id = uuid7()
    changes = ChangeSet()
    with db.atomic():
        register_member(
            db,
            {
                "member_id": member_id,
                "name": name,
                "phone": phone,
                "birthday": "1990-05-17",
                "registered_at": "2026-11-23T11:00:00+08:00",
            },
            store,
            1,
            utcnow(),
            changes,
        )
        flush_changes(db, changes, utcnow())
    return member_id


def _sample_url(rule) -> str:
    url = rule.rule
    for arg in rule.arguments:
        url = url.replace(f"<{arg}>", "x").replace(f"<path:{arg}>", "x")
        url = url.replace(f"<int:{arg}>", "1")
    return url


def test_every_route_refuses_a_request_that_is_not_signed_in(app):
    """Walk the whole URL map: every route but the few public ones (each authenticates
    its own way) answers 401 under /api and sends a browser to the sign-in page."""
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            resp = client.open(_sample_url(rule), method=method)
            if rule.rule.startswith("/api"):
                assert resp.status_code == 401, (rule.rule, method)
                assert resp.get_json()["error"] == "unauthenticated"
            else:
                assert resp.status_code == 302, (rule.rule, method)
                assert resp.headers["Location"].startswith("/login?next=")
            checked += 1
    assert checked >= 12
    # a bearer token that is not one is refused the same way
    bogus = client.get("/api/stores", headers={"Authorization": "Bearer hyt_000000000000_x"})
    assert bogus.status_code == 401


def test_every_route_declares_a_known_permission(app):
    from hq.access.roles import PERMISSIONS

    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        view = app.view_functions[rule.endpoint]
        assert getattr(view, "hy_permission", None) in PERMISSIONS, rule.endpoint


def test_sign_in_sign_out_and_the_csrf_token(app, hq_db):
    client = session_client(app, hq_db, "admin")
    assert client.get("/api/stores").status_code == 200
    # a change without the CSRF token is refused, even with the session cookie
    token = client.environ_base.pop("HTTP_X_CSRF_TOKEN")
    refused = client.post("/api/merges", json={"from": uuid7(), "to": uuid7()})
    assert refused.status_code == 403 and "CSRF" in refused.get_json()["message"]
    client.environ_base["HTTP_X_CSRF_TOKEN"] = token
    out = client.post("/logout")
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/api/stores").status_code == 401
    assert HqSession.select().where(HqSession.ended_at.is_null()).count() == 0


def test_the_session_cookie_is_httponly_strict_and_secure(app, hq_db):
    client = app.test_client()
    make_user(hq_db, "admin", username="ops")
    form = client.get("/login").get_data(as_text=True)
    csrf = FORM_CSRF.search(form).group(1)
    resp = client.post("/login", data={"username": "ops", "password": PASSWORD, "csrf": csrf})
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("hy_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    # only a hash of the cookie's token is stored
    token = cookie.split(";")[0].split("=", 1)[1]
    assert HqSession.select().where(HqSession.token_hash == token).count() == 0


def test_the_sign_in_form_needs_its_own_csrf_token_and_goes_only_to_this_site(app, hq_db):
    make_user(hq_db, "admin", username="ops")
    client = app.test_client()
    client.get("/login")
    forged = client.post("/login", data={"username": "ops", "password": PASSWORD})
    assert forged.status_code == 401 and "hy_session" not in str(forged.headers)
    form = client.get("/login?next=//evil.example/x").get_data(as_text=True)
    resp = client.post(
        "/login?next=//evil.example/x",
        data={"username": "ops", "password": PASSWORD, "csrf": FORM_CSRF.search(form).group(1)},
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/"


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(hq_db):
    make_user(hq_db, "analyst", username="ann")
    now = dt.datetime(2026, 12, 5, 9, 0)
    for _ in range(users.MAX_FAILURES):
        with pytest.raises(users.SignInRefused):
            users.authenticate(hq_db, "ann", "wrong-password-1", now)
    # locked: even the right password is refused, with the same message
    with pytest.raises(users.SignInRefused) as locked:
        users.authenticate(hq_db, "ann", PASSWORD, now + dt.timedelta(minutes=14))
    assert "锁定" in locked.value.message
    entry = AuditEntry.get(AuditEntry.action == "user.locked")
    assert entry.target == "ann" and PASSWORD not in str(entry.details)
    assert users.authenticate(hq_db, "ann", PASSWORD, now + dt.timedelta(minutes=16))
    assert HqUser.get_by_id("ann").failed_logins == 0
    # an unknown name is refused with the same words
    with pytest.raises(users.SignInRefused) as unknown:
        users.authenticate(hq_db, "nobody", PASSWORD, now)
    assert unknown.value.message == locked.value.message


def test_passwords_are_scrypt_hashed_and_must_be_long_enough(hq_db):
    make_user(hq_db, "admin", username="root1")
    stored = HqUser.get_by_id("root1").password_hash
    assert stored.startswith(f"scrypt${users.PASSWORD_N}$8$1$") and PASSWORD not in stored
    for weak in ("short", "1234567890123", "aaaaaaaaaaaa"):
        with pytest.raises(users.ValidationError):
            users.add_user(hq_db, f"u{len(weak)}", weak, "admin", by="test")


def test_what_each_role_may_do(app, hq_db):
    Store.create(code="S001", name="一店", area="华东", created_at=utcnow())
    Store.create(code="S002", name="二店", area="华南", created_at=utcnow())
    mine, theirs = _member(hq_db, "S001", "13800001111"), _member(hq_db, "S002", "13800002222")
    analyst = session_client(app, hq_db, "analyst")
    store = session_client(app, hq_db, "store", "S001")
    area = session_client(app, hq_db, "area", "华南")
    admin = bearer_client(app, hq_db, "admin")

    # an analyst sees members masked and cannot change anything
    body = analyst.get(f"/api/members/{mine}").get_json()
    assert body["member"]["phone"] == "138****1111"
    assert body["member"]["name"] == "张*" and body["member"]["birthday"] == "****-05-**"
    assert analyst.post(f"/api/members/{mine}/reveal-phone").status_code == 403
    assert analyst.post("/api/merges", json={"from": theirs, "to": mine}).status_code == 403
    # a store manager sees their store's members, not another store's
    assert store.get(f"/api/members/{mine}").get_json()["member"]["name"] == "张三"
    refused = store.get(f"/api/members/{theirs}")
    assert refused.status_code == 403 and "其他门店" in refused.get_json()["message"]
    assert [s["code"] for s in store.get("/api/stores").get_json()["stores"]] == ["S001"]
    # an area manager sees the stores of their area
    assert [s["code"] for s in area.get("/api/stores").get_json()["stores"]] == ["S002"]
    assert area.get(f"/api/members/{theirs}").status_code == 200
    assert area.get(f"/api/members/{mine}").status_code == 403
    # revealing a phone is allowed to the store manager for their member, and audited
    shown = store.post(f"/api/members/{mine}/reveal-phone").get_json()
    assert shown["value"] == "13800001111"
    entry = AuditEntry.get(AuditEntry.action == "member.reveal_phone")
    assert entry.target == mine and entry.actor.startswith("store-")
    # an integration token acts as its role
    assert len(admin.get("/api/stores").get_json()["stores"]) == 2


def test_every_role_is_described(app):
    assert set(ROLES) == {"admin", "membership", "analyst", "area", "store"}
    assert mask_phone("13812345678") == "138****5678" and mask_phone(None) is None


def test_cli_makes_the_first_admin_and_changes_roles(hq_db, hq_db_url, tmp_path):
    runner = CliRunner()
    base = ["--database-url", hq_db_url]
    made = runner.invoke(main, [*base, "add-user", "boss", "--role", "admin", "--generate"])
    assert made.exit_code == 0, made.output
    password = made.output.rsplit("password: ", 1)[1].strip()
    bind(hq_db, create=False)  # the CLI bound the models to its own connection
    assert users.authenticate(hq_db, "boss", password).role == "admin"
    need_scope = runner.invoke(main, [*base, "set-role", "boss", "--role", "store"])
    assert need_scope.exit_code != 0 and "--scope" in need_scope.output
    moved = runner.invoke(main, [*base, "set-role", "boss", "--role", "store", "--scope", "S001"])
    assert moved.exit_code == 0, moved.output
    bind(hq_db, create=False)
    assert (HqUser.get_by_id("boss").role, HqUser.get_by_id("boss").scope) == ("store", "S001")
    new_pw = tmp_path / "pw"
    new_pw.write_text("another-Pass-99\n")
    reset = runner.invoke(main, [*base, "reset-password", "boss", "--password-file", str(new_pw)])
    assert reset.exit_code == 0 and "another-Pass-99" not in reset.output
    bind(hq_db, create=False)
    assert users.authenticate(hq_db, "boss", "another-Pass-99")
    actions = [e.action for e in AuditEntry.select().order_by(AuditEntry.id)]
    assert actions == ["user.add", "user.set_role", "user.reset_password"]
    token = runner.invoke(main, [*base, "add-token", "bi-export", "--role", "analyst"])
    assert token.exit_code == 0 and "hyt_" in token.output
    bind(hq_db, create=False)


def test_a_signed_in_browser_reaches_the_console_and_signs_out(app, hq_db):
    """Chromium keeps the Secure cookie on http://127.0.0.1 as it does on HTTPS."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    make_user(hq_db, "membership", username="li")
    with live_server(app) as base, chromium() as driver:
        driver.get(f"{base}/members")
        assert "/login" in driver.current_url
        driver.find_element(By.ID, "username").send_keys("li")
        driver.find_element(By.ID, "password").send_keys("wrong-password-x\n")
        error = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "login-error"))
        assert "用户名或密码错误" in error.text
        shot(driver, "hq-login-refused")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
        who = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "who"))
        assert "会员/营销" in who.text
        shot(driver, "hq-signed-in")
        driver.find_element(By.ID, "logout").click()
        WebDriverWait(driver, 10).until(lambda d: "/login" in d.current_url)
        driver.get(f"{base}/")
        assert "/login" in driver.current_url


def test_sign_in_keeps_nothing_secret_in_the_log(app, hq_db, caplog):
    make_user(hq_db, "admin", username="ops")
    with caplog.at_level("DEBUG"):
        sign_in(app.test_client(), "ops")
    assert PASSWORD not in caplog.text
