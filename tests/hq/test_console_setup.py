"""The console's setup screens: programme rules (validate, diff, publish, which stores
have it), offline policies, the audit log, accounts and tokens, store enrolment codes."""

from __future__ import annotations

import datetime as dt
import html
import json
import re

import pytest

from core import protocol as p
from core.rules import DEMO_RULES
from hq import audit
from hq.access import users
from hq.api import create_app
from hq.config import HqConfig
from hq.enrol import check_code
from hq.ingest import ingest_batch
from hq.models import AuditEntry, ChangeRecord, HqUser, OfflinePolicyRow, RulesVersion, utcnow
from hq.rules import publish_rules
from tests.browser import chromium, live_server, shot
from tests.hq.edge_sim import Items
from tests.hq.signin import PASSWORD, make_user, session_client, sign_in

NOW = dt.datetime(2026, 11, 23, 2, 0)
LADDER = {
    "ladder": [{"name": "银卡会员", "threshold": 1000}, {"name": "金卡会员", "threshold": 5000}]
}


@pytest.fixture
def app(hq_db, hq_db_url):
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return app


@pytest.fixture
def admin(app, hq_db):
    return sign_in(app.test_client(), make_user(hq_db, "admin", username="boss"))


def _document(**changes) -> str:
    doc = DEMO_RULES.to_dict() | {"version": 2} | changes
    return json.dumps(doc, ensure_ascii=False)


def _problem(page: str) -> str:
    found = re.search(r'id="problem">([^<]*)<', page)
    return found.group(1) if found else ""


def _report(store: str, version: int, refused: int | None = None, reason: str = "") -> None:
    """A store's rules_status item, ingested the way the worker does."""
    items = Items(store)
    body = {
        "version_in_force": version,
        "refused_version": refused,
        "reason": reason,
        "at": "2026-11-23T10:00:00+08:00",
    }
    batch = p.make_batch(store, 1, [items._item("rules_status", body)])
    outcome = ingest_batch(RulesVersion._meta.database, p.up_topic(store, "tx"), store, batch, NOW)
    assert outcome.ack is not None and outcome.ack.rejected == (), outcome


# ---- programme rules


def test_the_rules_in_force_are_shown_by_section(admin):
    page = admin.get("/setup/rules").get_data(as_text=True)
    assert 'id="version-in-force">1<' in page
    for title in ("卡类型", "等级与成长值", "积分", "会员日", "充值赠送", "离线策略"):
        assert title in page
    assert "充 ¥500.00 送 ¥100.00" in page  # the demo's top-up bonuses
    assert 'id="document"' in page  # the editor, for an admin


def test_publishing_valid_rules_makes_a_version_change_records_and_an_audit_row(admin, hq_db):
    before = ChangeRecord.select().count()
    preview = admin.post("/setup/rules/preview", data={"document": _document()})
    assert preview.status_code == 200
    assert "发布版本 2" in preview.get_data(as_text=True)
    resp = admin.post("/setup/rules/publish", data={"document": _document()})
    assert resp.status_code == 303
    page = admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert "规则版本 2 已发布" in page
    assert 'id="version-in-force">2<' in page
    assert RulesVersion.get_by_id(2).data["version"] == 2
    records = list(ChangeRecord.select().where(ChangeRecord.seq > 0).order_by(ChangeRecord.seq))
    assert len(records) > before
    assert any(r.entity == "rules" and r.key == "2" for r in records)
    (row,) = AuditEntry.select().where(AuditEntry.action == "rules.publish")
    assert (row.actor, row.target, row.details["was_version"]) == ("boss", "rules:2", 1)


BAD_DOCUMENTS = [
    (_document(tier_discount={"钻石": 1200}), "tier_discount.钻石"),
    (_document(bonus_rungs=[1]), "bonus_rungs"),
    (
        _document(
            schema=2,
            tiers={"ladder": [{"name": "银", "threshold": 500}, {"name": "金", "threshold": 100}]},
        ),
        "tiers.ladder[1].threshold",
    ),
    (_document(tiers={"rungs": []}, schema=2), "tiers.rungs"),
    (_document(version=1), "version"),
    (_document(version="3"), "version"),
    (_document(member_day_weekdays=[9]), "member_day_weekdays"),
    (_document(member_day_points_multiplier="2"), "member_day_points_multiplier"),
    (_document(topup_bonuses=[[50000]]), "topup_bonuses[0]"),
    (_document(rounding="half"), "rounding"),
    (_document(schema=9), "schema"),
    ('{"version": 2,', "document"),
    ("[1, 2]", "document"),
    ("", "document"),
]


@pytest.mark.parametrize(("text", "field"), BAD_DOCUMENTS)
def test_invalid_rules_are_refused_with_the_field_named_and_nothing_published(
    admin, hq_db, text, field
):
    for url in ("/setup/rules/preview", "/setup/rules/publish"):
        resp = admin.post(url, data={"document": text})
        page = resp.get_data(as_text=True)
        assert resp.status_code == 400, page[:2000]
        problem = _problem(page)
        assert re.search(r"[\u4e00-\u9fff]", problem) and "(" in problem, problem
        if field != "document":
            assert f'id="bad-field">{field}<' in page, problem
    assert [v.version for v in RulesVersion.select()] == [1]
    assert not AuditEntry.select().where(AuditEntry.action == "rules.publish").exists()


def test_the_diff_shows_the_changed_key(admin, hq_db):
    publish_rules(hq_db, DEMO_RULES.to_dict() | {"version": 2, "schema": 2, "tiers": LADDER})
    ladder = json.loads(json.dumps(LADDER))
    ladder["ladder"][1]["threshold"] = 6000
    doc = DEMO_RULES.to_dict() | {"version": 3, "schema": 2, "tiers": ladder}
    page = admin.post(
        "/setup/rules/preview", data={"document": json.dumps(doc, ensure_ascii=False)}
    ).get_data(as_text=True)
    rows = re.findall(
        r'<tr class="(\w+)"><td><code>([^<]+)</code></td>'
        r'<td class="was">([^<]*)</td><td class="now">([^<]*)</td>',
        page,
    )
    assert rows == [("chg", "tiers.ladder[1].threshold", "5000", "6000")]
    assert '<tr class="add"><td><pre>+' in page  # the line-by-line diff too
    # a past version shows its own diff against the one before
    history = admin.get("/setup/rules/2").get_data(as_text=True)
    assert "tiers.ladder[1].threshold" in history and "与版本 1 的差异" in history


def test_which_stores_have_taken_each_version(admin, hq_db):
    publish_rules(hq_db, DEMO_RULES.to_dict() | {"version": 2})
    _report("S001", 2)
    _report("S002", 1, refused=2, reason="unknown rules keys: ['tiers']")
    page = admin.get("/setup/rules").get_data(as_text=True)
    table = page.split('id="store-status"')[1].split("</table>")[0]
    assert re.search(r"S001.*?<td class=\"num\">2</td>.*?最新", table, re.S)
    assert re.search(
        r"S002.*?<td class=\"num\">1</td>.*?落后.*?版本 2: unknown rules keys", table, re.S
    )
    assert 'id="stores-on-newest">1<' in page


def test_an_analyst_views_the_rules_but_may_not_publish(app, hq_db):
    analyst = session_client(app, hq_db, "analyst")
    page = analyst.get("/setup/rules")
    assert page.status_code == 200
    assert 'id="document"' not in page.get_data(as_text=True)
    for url in ("/setup/rules/preview", "/setup/rules/publish"):
        resp = analyst.post(url, data={"document": _document()})
        assert resp.status_code == 403
        assert "无权限" in resp.get_data(as_text=True)
    resp = analyst.post("/setup/offline", data={"kind": "points", "mode": "online_only"})
    assert resp.status_code == 403
    assert [v.version for v in RulesVersion.select()] == [1]


def test_a_store_manager_sees_only_their_own_stores_status(app, hq_db):
    _report("S001", 1)
    _report("S002", 1)
    page = session_client(app, hq_db, "store", "S001").get("/setup/rules").get_data(as_text=True)
    table = page.split('id="store-status"')[1].split("</table>")[0]
    assert "S001" in table and "S002" not in table


def test_offline_policies_are_published_and_removed_with_an_audit_row(admin, hq_db):
    resp = admin.post(
        "/setup/offline",
        data={"kind": "stored_value", "mode": "floor_limit", "daily_limit": "5000"},
    )
    assert resp.status_code == 303
    resp = admin.post(
        "/setup/offline", data={"kind": "stored_value", "mode": "online_only", "store": "S009"}
    )
    assert resp.status_code == 303
    page = admin.get("/setup/rules").get_data(as_text=True)
    table = page.split('id="policies"')[1].split("</table>")[0]
    assert "全连锁" in table and "¥50.00" in table and "门店 S009" in table
    assert (
        admin.post(
            "/setup/offline/remove", data={"kind": "stored_value", "store": "S009"}
        ).status_code
        == 303
    )
    assert OfflinePolicyRow.get_by_id("stored_value@S009").removed
    actions = [e["action"] for e in audit.entries(hq_db, action="offline_policy.")]
    assert actions == ["offline_policy.remove", "offline_policy.set", "offline_policy.set"]
    bad = admin.post("/setup/offline", data={"kind": "gold", "mode": "online_only"})
    assert bad.status_code == 400 and "余额种类" in _problem(bad.get_data(as_text=True))
    bad = admin.post(
        "/setup/offline", data={"kind": "points", "mode": "floor_limit", "daily_limit": "-1"}
    )
    assert bad.status_code == 400 and "每日限额" in _problem(bad.get_data(as_text=True))
    gone = admin.post("/setup/offline/remove", data={"kind": "points", "store": "S009"})
    assert gone.status_code == 404


def test_the_section_forms_edit_one_part_and_show_the_diff(admin, hq_db):
    publish_rules(hq_db, DEMO_RULES.to_dict() | {"version": 2, "schema": 2, "tiers": LADDER})
    page = admin.get("/setup/rules").get_data(as_text=True)
    assert 'value="5000"' in page and 'value="500.00"' in page  # the forms start from v2

    def changed(data) -> list[tuple[str, str, str]]:
        resp = admin.post("/setup/rules/section", data=data)
        page = resp.get_data(as_text=True)
        assert resp.status_code == 200, _problem(page)
        rows = re.findall(
            r'<tr class="\w+"><td><code>([^<]+)</code></td>'
            r'<td class="was">([^<]*)</td><td class="now">([^<]*)</td>',
            page,
        )
        return [tuple(html.unescape(cell) for cell in row) for row in rows]

    tiers = {
        "section": "tiers",
        "rung_name": ["银卡会员", "金卡会员", "钻石会员", ""],
        "rung_threshold": ["1000", "5000", "20000", ""],
        "tier_name": ["钻石", "钻石会员"],
        "tier_rate": ["880", "850"],
    }
    assert sorted(changed(tiers)) == [
        ("tier_discount.钻石会员", "—", "850"),
        ("tiers.ladder[2].name", "—", '"钻石会员"'),
        ("tiers.ladder[2].threshold", "—", "20000"),
    ]
    member_day = {
        "section": "member_day",
        "weekday": ["2", "5"],
        "month_days": "8，18",
        "multiplier": "3",
        "day_rate": "950",
    }
    assert sorted(changed(member_day)) == [
        ("member_day_discount", "—", "950"),
        ("member_day_month_days[0]", "—", "8"),
        ("member_day_month_days[1]", "—", "18"),
        ("member_day_points_multiplier", "2", "3"),
        ("member_day_weekdays[1]", "—", "5"),
    ]
    topup = {
        "section": "topup",
        "topup_threshold": ["500", "1000.5"],
        "topup_bonus": ["120", "250"],
    }
    assert changed(topup) == [
        ("topup_bonuses[0][1]", "10000", "12000"),
        ("topup_bonuses[1][0]", "100000", "100050"),
    ]
    cards = {
        "section": "card_types",
        "card_name": ["普通卡", "银卡", "金卡"],
        "card_rate": ["1000", "950", "880"],
    }
    assert changed(cards) == [("card_type_discount.金卡", "900", "880")]
    for data, field in (
        (tiers | {"rung_threshold": ["1000", "500", "20000"]}, "tiers.ladder[1].threshold"),
        (cards | {"card_rate": ["1000", "950", "1200"]}, "card_type_discount.金卡"),
        (topup | {"topup_threshold": ["5块"]}, "topup_bonuses[0]"),
        (member_day | {"weekday": ["7"]}, "member_day_weekdays"),
        ({"section": "everything"}, "section"),
    ):
        resp = admin.post("/setup/rules/section", data=data)
        assert resp.status_code == 400, data
        assert field in _problem(resp.get_data(as_text=True)), data
    assert [v.version for v in RulesVersion.select().order_by(RulesVersion.version)] == [1, 2]


# ---- accounts and tokens


def test_only_an_admin_manages_accounts(app, hq_db):
    membership = session_client(app, hq_db, "membership")
    assert membership.get("/setup/users").status_code == 403
    resp = membership.post("/setup/users", data={"username": "x1", "role": "admin"})
    assert resp.status_code == 403
    assert not HqUser.select().where(HqUser.username == "x1").exists()
    assert membership.post("/setup/tokens", data={"name": "bi", "role": "admin"}).status_code == 403
    assert membership.get("/setup/enrol").status_code == 403


def test_an_admin_adds_a_user_whose_generated_password_is_shown_once(app, admin, hq_db):
    resp = admin.post(
        "/setup/users",
        data={"username": "wang", "display_name": "王芳", "role": "store", "scope": "S001"},
    )
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200, _problem(page)
    password = re.search(r'id="secret-value">([^<]+)<', page).group(1)
    assert password not in admin.get("/setup/users").get_data(as_text=True)
    wang = sign_in(app.test_client(), "wang", password)
    assert "店长" in wang.get("/setup/rules").get_data(as_text=True)
    assert audit.entries(hq_db, action="user.add", target="wang")[0]["actor"] == "boss"
    # a typed password is not shown back
    resp = admin.post(
        "/setup/users", data={"username": "zhao", "role": "analyst", "password": PASSWORD}
    )
    page = resp.get_data(as_text=True)
    assert PASSWORD not in page and "已设为您输入的密码" in page
    # refusals keep the form and name the field
    for data, words in (
        ({"username": "wang", "role": "analyst"}, "账号已存在"),
        ({"username": "li", "role": "store"}, "scope"),
        ({"username": "li", "role": "king"}, "unknown role"),
        ({"username": "li", "role": "analyst", "password": "short"}, "密码须为"),
        ({"username": "张三", "role": "analyst"}, "用户名"),
    ):
        resp = admin.post("/setup/users", data=data)
        assert resp.status_code == 400, data
        assert words in _problem(resp.get_data(as_text=True)), data


def test_a_role_change_is_audited_and_takes_effect_on_the_next_request(app, admin, hq_db):
    make_user(hq_db, "membership", username="chen")
    chen = sign_in(app.test_client(), "chen")
    assert chen.get("/audit").status_code == 200
    resp = admin.post("/setup/users/chen/role", data={"role": "analyst", "scope": ""})
    assert resp.status_code == 303
    assert chen.get("/audit").status_code == 403  # the same session, the new role
    assert chen.post("/setup/rules/preview", data={"document": _document()}).status_code == 403
    (row,) = audit.entries(hq_db, action="user.set_role", target="chen")
    assert row["actor"] == "boss"
    assert row["details"] | {} == row["details"] and row["details"]["was_role"] == "membership"
    assert admin.post("/setup/users/nobody/role", data={"role": "analyst"}).status_code == 404
    own = admin.post("/setup/users/boss/role", data={"role": "analyst"})
    assert own.status_code == 400 and "自己" in _problem(own.get_data(as_text=True))


def test_reset_password_and_deactivate_end_the_users_sessions(app, admin, hq_db):
    make_user(hq_db, "analyst", username="sun")
    sun = sign_in(app.test_client(), "sun")
    page = admin.post("/setup/users/sun/password", data={}).get_data(as_text=True)
    new_password = re.search(r'id="secret-value">([^<]+)<', page).group(1)
    assert sun.get("/setup/rules").status_code == 302  # signed out
    sun = sign_in(app.test_client(), "sun", new_password)
    assert admin.post("/setup/users/sun/active", data={"active": "0"}).status_code == 303
    assert sun.get("/setup/rules").status_code == 302
    assert not HqUser.get_by_id("sun").active
    assert admin.post("/setup/users/sun/active", data={"active": "1"}).status_code == 303
    assert HqUser.get_by_id("sun").active
    assert admin.post("/setup/users/sun/active", data={"active": "maybe"}).status_code == 400
    actions = {e["action"] for e in audit.entries(hq_db, target="sun")}
    assert {"user.reset_password", "user.deactivate", "user.activate"} <= actions


def test_a_revoked_token_stops_working(app, admin, hq_db):
    page = admin.post(
        "/setup/tokens", data={"name": "BI 报表", "role": "admin", "days": "30"}
    ).get_data(as_text=True)
    token = re.search(r'id="secret-value">(hyt_[^<]+)<', page).group(1)
    token_id = token.split("_")[1]
    bearer = app.test_client()
    bearer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert bearer.get("/api/audit").status_code == 200
    assert token not in admin.get("/setup/users").get_data(as_text=True)
    assert admin.post(f"/setup/tokens/{token_id}/revoke").status_code == 303
    assert bearer.get("/api/audit").status_code == 401
    assert {"token.issue", "token.revoke"} <= {
        e["action"] for e in audit.entries(hq_db, target=f"token:{token_id}")
    }
    assert admin.post("/setup/tokens/000000000000/revoke").status_code == 404
    bad = admin.post("/setup/tokens", data={"name": "x", "role": "analyst", "days": "abc"})
    assert bad.status_code == 400 and "有效天数" in _problem(bad.get_data(as_text=True))


# ---- the audit log


def _entries(db) -> None:
    rows = [
        ("li", "points.adjust", "m-1", "S001", dt.datetime(2026, 11, 30, 15, 59)),  # 11-30 23:59
        ("li", "points.adjust", "m-2", "S002", dt.datetime(2026, 11, 30, 16, 0)),  # 12-01 00:00
        ("wu", "card.block", "K9", "S001", dt.datetime(2026, 12, 1, 3, 0)),
        ("wu", "user.add", "zz", None, dt.datetime(2026, 12, 2, 3, 0)),
        ("wu", "user.set_role", "zz", None, dt.datetime(2026, 12, 2, 4, 0)),
    ]
    with db.atomic():
        for actor, action, target, store, at in rows:
            audit.record(db, actor, action, target, store=store, at=at)


def test_the_audit_search_filters_and_pages(app, admin, hq_db):
    _entries(hq_db)

    def targets(**query) -> list[str]:
        resp = admin.get("/api/audit", query_string=query)
        assert resp.status_code == 200, resp.get_json()
        return [e["target"] for e in resp.get_json()["entries"]]

    assert targets(actor="li") == ["m-2", "m-1"]
    assert targets(action="points.adjust", store="S001") == ["m-1"]
    assert targets(action="user.", actor="wu") == ["zz", "zz"]
    assert targets(action="user.*", target="zz") == ["zz", "zz"]
    assert targets(target="K9") == ["K9"]
    # the chain's business days (Asia/Shanghai), both ends inclusive
    assert targets(**{"from": "2026-12-01", "to": "2026-12-01"}) == ["K9", "m-2"]
    assert targets(**{"to": "2026-11-30"}) == ["m-1"]
    body = admin.get(
        "/api/audit", query_string={"actor": "wu", "per_page": 2, "page": 2}
    ).get_json()
    assert (body["total"], body["pages"], [e["target"] for e in body["entries"]]) == (3, 2, ["K9"])
    page = admin.get("/audit", query_string={"actor": "wu", "per_page": 2}).get_data(as_text=True)
    assert "共 3 条" in page and 'id="next"' in page and "actor=wu" in page
    assert "新增账号" in page and "修改角色" in page


@pytest.mark.parametrize(
    "query",
    [
        {"page": "abc"},
        {"page": "0"},
        {"per_page": "1000"},
        {"from": "2026-13-01"},
        {"to": "yesterday"},
        {"from": "2026-12-02", "to": "2026-12-01"},
        {"action": "x" * 65},
        {"actor": "a\x00b"},
    ],
)
def test_bad_audit_parameters_get_a_400_in_chinese(admin, query):
    page = admin.get("/audit", query_string=query)
    assert page.status_code == 400
    assert re.search(r"[\u4e00-\u9fff]", _problem(page.get_data(as_text=True)))
    api = admin.get("/api/audit", query_string=query)
    assert api.status_code == 400 and api.get_json()["message"]


def test_who_may_read_the_audit_log(app, hq_db):
    assert session_client(app, hq_db, "analyst").get("/audit").status_code == 403
    assert session_client(app, hq_db, "store", "S001").get("/api/audit").status_code == 403
    assert session_client(app, hq_db, "membership").get("/audit").status_code == 200


# ---- store enrolment codes


def test_an_admin_makes_a_store_enrolment_code_shown_once(admin, hq_db):
    resp = admin.post("/setup/enrol", data={"store": "S010", "valid": "24h"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200, _problem(page)
    code = re.search(r'id="enrol-code">([^<]+)<', page).group(1)
    assert check_code(hq_db, "S010", code, utcnow()).store == "S010"
    assert code not in admin.get("/setup/enrol").get_data(as_text=True)
    (row,) = audit.entries(hq_db, action="enrol.create")
    assert (row["actor"], row["target"], row["store"]) == ("boss", "store:S010", "S010")
    for data in ({"store": "S 10", "valid": "24h"}, {"store": "S010", "valid": "1y"}, {}):
        bad = admin.post("/setup/enrol", data=data)
        assert bad.status_code == 400, data
        assert re.search(r"[\u4e00-\u9fff]", _problem(bad.get_data(as_text=True))), data


def test_setup_pages_never_answer_500_to_odd_requests(admin):
    for url in ("/setup/rules/999", "/setup/rules/0"):
        assert admin.get(url).status_code == 404
    for url, data in (
        ("/setup/rules/preview", {}),
        ("/setup/rules/publish", {"document": "x" * 300_000}),
        ("/setup/rules/publish", {"document": "[" * 5000 + "]" * 5000}),
        ("/setup/offline", {}),
        ("/setup/offline/remove", {}),
        ("/setup/users", {}),
        ("/setup/tokens", {}),
        ("/setup/users/x/password", {"password": "1"}),
    ):
        resp = admin.post(url, data=data)
        assert 400 <= resp.status_code < 500, (url, resp.status_code)


# ---- in a browser


def test_an_admin_edits_a_tier_threshold_publishes_and_adds_a_user(app, hq_db):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def after(driver, *ids: str) -> str:
        """Wait for the next page to show one of ``ids`` (a form's answer): its text."""
        found = WebDriverWait(driver, 20).until(
            lambda d: next(
                (d.find_element(By.ID, i) for i in ids if d.find_elements(By.ID, i)), None
            )
        )
        return found.text

    publish_rules(hq_db, DEMO_RULES.to_dict() | {"version": 2, "schema": 2, "tiers": LADDER})
    _report("S001", 2)
    _report("S002", 1)
    make_user(hq_db, "admin", username="boss")
    for i in range(30):
        audit.record(
            hq_db, "li", "points.adjust", f"m-{i}", reason="补录积分", store="S001", delta=i
        )
    with live_server(app) as base, chromium(1366, 768) as driver:
        driver.get(f"{base}/setup/rules")
        driver.find_element(By.ID, "username").send_keys("boss")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
        after(driver, "document")
        assert '"version": 3' in driver.find_element(By.ID, "document").get_property("value")
        driver.find_element(By.CSS_SELECTOR, "#form-tiers summary").click()
        gold = driver.find_elements(By.CSS_SELECTOR, "#form-tiers .rung-threshold")[1]
        assert gold.get_property("value") == "5000"
        gold.clear()
        gold.send_keys("6000")
        driver.execute_script("document.getElementById('section-forms').scrollIntoView();")
        shot(driver, "hq-rules-forms")
        driver.find_element(By.ID, "check-tiers").click()
        changes = after(driver, "diff-changes", "problem")
        assert "tiers.ladder[1].threshold" in changes and "6000" in changes
        shot(driver, "hq-rules-diff")
        driver.find_element(By.ID, "publish").click()
        assert "规则版本 3 已发布" in after(driver, "notice", "problem")
        assert driver.find_element(By.ID, "version-in-force").text == "3"
        status = driver.find_element(By.ID, "store-status").text
        assert "S001" in status and "落后" in status
        shot(driver, "hq-rules-published")
        assert RulesVersion.get_by_id(3).data["tiers"]["ladder"][1]["threshold"] == 6000

        driver.get(f"{base}/audit")
        assert "rules:3" in driver.find_element(By.ID, "audit-rows").text
        shot(driver, "hq-audit")

        driver.get(f"{base}/setup/users")
        driver.find_element(By.ID, "new-username").send_keys("zhou")
        driver.find_element(By.ID, "new-display-name").send_keys("周敏")
        driver.find_element(By.CSS_SELECTOR, "#new-role option[value='analyst']").click()
        driver.find_element(By.ID, "add-user-button").click()
        after(driver, "secret-value", "problem")
        assert driver.find_elements(By.ID, "secret-value"), driver.find_element(
            By.ID, "problem"
        ).text
        assert "zhou" in driver.find_element(By.ID, "accounts").text
        shot(driver, "hq-users")

        driver.get(f"{base}/setup/enrol")
        driver.find_element(By.ID, "enrol-store").send_keys("S003")
        driver.find_element(By.CSS_SELECTOR, "#enrol-form button").click()
        assert after(driver, "enrol-code", "problem")
        assert driver.find_elements(By.ID, "enrol-code"), driver.find_element(By.ID, "problem").text
        shot(driver, "hq-enrol")
    assert users.get_user("zhou").role == "analyst"
