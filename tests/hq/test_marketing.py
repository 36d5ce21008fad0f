"""Marketing lists and segments (hq/marketing/), on SQLite and PostgreSQL: each list and
condition against hand-computed members of the fixed chain in tests/hq/marketing_data.py
(its docstring and tables say who bought what and when)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from openpyxl import load_workbook

from core.birthday import Birthday
from core.errors import ValidationError
from hq import scheduler
from hq.api import create_app
from hq.config import HqConfig
from hq.marketing import api as marketing_api
from hq.marketing import audience, lists, segments, settings
from hq.models import AuditEntry, ListRun, ListRunMember
from tests.browser import chromium, live_server, shot
from tests.hq import marketing_data as md
from tests.hq.signin import PASSWORD, bearer_client, make_user, session_client


@pytest.fixture
def chain(hq_db):
    return md.load(hq_db)


def who(db, conditions, as_of=md.TODAY):
    b = audience.compile_spec(db, {"conditions": conditions}, settings.current(db), as_of)
    ids = audience.member_ids(b, "", 1000)
    assert audience.count(b) == len(ids)
    return md.names(ids)


def listed(db, kind, start, store=None):
    b = lists.builder(db, kind, start, store, md.TODAY)
    return md.names(list(audience.iter_member_ids(b, page=2)))  # pages of 2: the keyset


# ---- lists ------------------------------------------------------------------------------


def test_new_members_are_last_months_from_the_first_to_the_last_day(hq_db, chain):
    # A registered on 1 November, B on the 30th; C on 1 December is January's, D on 31
    # October November's; H (registered in November) was merged away
    assert listed(hq_db, "new_members", dt.date(2026, 12, 1)) == ["A", "B"]
    assert listed(hq_db, "new_members", dt.date(2027, 1, 1)) == ["C"]
    assert listed(hq_db, "new_members", dt.date(2026, 11, 1)) == ["D"]
    assert listed(hq_db, "new_members", dt.date(2026, 12, 1), store="S1") == ["A"]


def test_birthdays_of_the_month_solar_and_lunar(hq_db, chain):
    # A 12-31 and B 12-01 (solar); C lunar 11-07 = 2026-12-15, E lunar 10-23 = 2026-12-01;
    # D lunar 10-07 = 2026-11-15 (November's); F solar 11-30; H merged
    assert listed(hq_db, "birthdays", dt.date(2026, 12, 1)) == ["A", "B", "C", "E"]
    assert listed(hq_db, "birthdays", dt.date(2026, 11, 1)) == ["D", "F"]
    assert who(hq_db, [{"kind": "birthday_month", "values": [6, 7]}]) == ["J", "K"]


def test_lunar_keys_follow_the_birthday_rules():
    # 2025 has a leap sixth month: lunar 6-10 of the leap month is 2025-08-03, of the
    # ordinary one 2025-07-04; 2026 has none, so a leap-month 6-10 falls on 2026-07-23
    assert "06-10L" in audience.lunar_keys(2025, 8)
    assert "06-10" in audience.lunar_keys(2025, 7) and "06-10" not in audience.lunar_keys(2025, 8)
    assert {"06-10", "06-10L"} <= set(audience.lunar_keys(2026, 7))
    # every key of a month is celebrated in that month, and each day of it has a key
    for key in audience.lunar_keys(2026, 12):
        b = Birthday("lunar", None, int(key[:2]), int(key[3:5]), key.endswith("L"))
        days = [b.in_year(y) for y in (2025, 2026)]
        assert any(d and (d.year, d.month) == (2026, 12) for d in days), key
    assert len({k for k in audience.lunar_keys(2026, 12) if not k.endswith("L")}) >= 31


def test_dormant_are_those_who_bought_before_but_not_in_the_three_months(hq_db, chain):
    # cut 1 September: E last bought 31 August, J 2 June, K 1 June; F bought on
    # 1 September (not dormant); G never bought (not counted, as the KPI)
    assert listed(hq_db, "dormant", dt.date(2026, 12, 1)) == ["E", "J", "K"]
    assert listed(hq_db, "dormant", dt.date(2026, 12, 1), store="S2") == ["J"]


def test_weekly_list_and_its_call_days(hq_db, chain):
    # the week from Monday 7 December: registered 30 November - 6 December
    start = dt.date(2026, 12, 7)
    assert listed(hq_db, "weekly_new", start) == ["B", "C"]
    run, made = lists.produce(hq_db, "weekly_new", start, md.NOW, "test", md.TODAY)
    assert made and run.members == 2
    days = {
        md.names([r.member_id])[0]: r.day
        for r in ListRunMember.select().where(ListRunMember.run == run.id)
    }
    # C first bought on 1 December: call on the 8th; B has not bought: a week after joining
    assert {k: str(v)[:10] for k, v in days.items()} == {"B": "2026-12-07", "C": "2026-12-08"}


def test_the_scheduler_makes_each_list_once(hq_db, hq_db_url, chain):
    ctx = scheduler.JobContext(
        hq_db, HqConfig(database_url=hq_db_url), clock=lambda: dt.datetime(2026, 12, 1, 1, 0)
    )
    job = next(j for j in scheduler.JOBS if j.name == "marketing-lists")
    assert job.run(ctx) == {"lists_made": 4}
    assert job.run(ctx) == {"lists_made": 0}  # run twice the same day: one list each
    runs = {r.kind: r for r in lists.runs_for(dt.date(2026, 12, 1))}
    assert set(runs) == {"new_members", "birthdays", "dormant", "weekly_new"}
    assert runs["new_members"].members == 2 and runs["birthdays"].members == 4
    assert runs["weekly_new"].start == dt.date(2026, 11, 30)
    assert ListRun.select().count() == 4
    # the stored list stays as it was: a new registration does not join it
    b = lists.run_builder(hq_db, runs["dormant"], None)
    assert md.names(audience.member_ids(b)) == ["E", "J", "K"]
    # a campaign pages through it by the run's key
    walked = list(lists.iter_run_member_ids(runs["dormant"], page=2))
    assert md.names(walked) == ["E", "J", "K"] and walked == sorted(walked)
    assert lists.run_member_ids(runs["dormant"], walked[0], 1) == [walked[1]]


# ---- segments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # new: registered 2 Nov - 1 Dec; established: bought (or joined) since 3 Sep;
        # dormant: since 5 June; lost: before
        ({"kind": "lifecycle", "values": ["new"]}, ["B", "C"]),
        ({"kind": "lifecycle", "values": ["established"]}, ["A", "D", "F"]),
        ({"kind": "lifecycle", "values": ["dormant"]}, ["E"]),
        ({"kind": "lifecycle", "values": ["lost"]}, ["G", "J", "K"]),
        # 2026's buyers (f, fen): A 2/15000, C 1/3000, E 2/21000, F 3/17500, J 4/101000,
        # K 1/2000; medians f 2, fen 15000 (the lower middle of six)
        ({"kind": "quadrant", "values": ["hf_hm"]}, ["F", "J"]),
        ({"kind": "quadrant", "values": ["hf_lm"]}, []),
        ({"kind": "quadrant", "values": ["lf_hm"]}, ["E"]),
        ({"kind": "quadrant", "values": ["lf_lm", "hf_lm"]}, ["A", "C", "K"]),
        # R by last day K < J < E < F < A < C: scores 1, 2, 3, 4, 5, 5
        ({"kind": "rfm", "r": [5]}, ["A", "C"]),
        ({"kind": "rfm", "r": [1, 2]}, ["J", "K"]),
        # F: C, K 1; A, E 3 (tied); F, J 5
        ({"kind": "rfm", "f": [3]}, ["A", "E"]),
        ({"kind": "rfm", "f": [5], "m": [5]}, ["J"]),
        ({"kind": "rfm", "m": [1]}, ["K"]),
        ({"kind": "tags", "values": ["投诉"]}, ["E"]),
        ({"kind": "tags", "values": ["投诉", "退款"]}, ["E", "F"]),
        ({"kind": "card_type", "values": ["年卡"]}, ["B", "E", "J"]),
        ({"kind": "tier", "values": ["银卡", "金卡"]}, ["A", "C", "E", "F", "J"]),
        ({"kind": "store", "by": "registered", "values": ["S2"]}, ["B", "F", "G", "J"]),
        # home: most tickets in the window; E's tie (S1, S2 one each) goes to S1
        ({"kind": "store", "by": "home", "values": ["S1"]}, ["A", "C", "E", "K"]),
        ({"kind": "store", "by": "home", "values": ["S2"], "months": 4}, ["F"]),
        ({"kind": "store", "by": "home", "values": ["S2"], "months": 3}, []),  # F: 1 and 1
        ({"kind": "maintainer", "values": ["E2"]}, ["B", "F", "G", "J"]),
        ({"kind": "birthday_month", "values": [12]}, ["A", "B", "C", "E"]),
        ({"kind": "category", "values": ["药品"], "months": 3}, ["A", "C", "F"]),
        ({"kind": "category", "values": ["器械"]}, ["E", "J"]),
    ],
)
def test_each_condition(hq_db, chain, condition, expected):
    assert who(hq_db, [condition]) == expected


def test_conditions_combine_with_and(hq_db, chain):
    assert who(
        hq_db,
        [
            {"kind": "lifecycle", "values": ["established"]},
            {"kind": "store", "by": "registered", "values": ["S2"]},
        ],
    ) == ["F"]
    assert who(
        hq_db, [{"kind": "tags", "values": ["投诉"]}, {"kind": "quadrant", "values": ["lf_hm"]}]
    ) == ["E"]
    assert who(
        hq_db,
        [{"kind": "birthday_month", "values": [12]}, {"kind": "card_type", "values": ["年卡"]}],
    ) == ["B", "E"]
    # a list is a condition too: the dormant who are at risk
    assert who(
        hq_db,
        [
            {"kind": "list", "list": "dormant", "month": "2026-12"},
            {"kind": "tags", "values": ["投诉"]},
        ],
    ) == ["E"]
    assert who(hq_db, []) == ["A", "B", "C", "D", "E", "F", "G", "J", "K"]


def test_thresholds_are_settings(hq_db, chain):
    assert settings.current(hq_db)["new_days"] == 30
    settings.update(hq_db, {"new_days": 31}, "test", md.NOW)
    # A registered 1 November: new within 31 days
    assert who(hq_db, [{"kind": "lifecycle", "values": ["new"]}]) == ["A", "B", "C"]
    with pytest.raises(ValidationError, match="流失天数须大于沉睡天数"):
        settings.update(hq_db, {"lost_days": 60}, "test", md.NOW)
    with pytest.raises(ValidationError, match="未知的阈值"):
        settings.update(hq_db, {"x": 1}, "test", md.NOW)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"kind": "nope"}, "未知的条件"),
        ({"kind": "lifecycle", "values": ["zombie"]}, "未知的值"),
        ({"kind": "rfm"}, "RFM"),
        ({"kind": "rfm", "r": [6]}, "值须为1到5"),
        ({"kind": "tags", "values": ["10%"]}, "标签不能含"),
        ({"kind": "store", "by": "x", "values": ["S1"]}, "开卡门店或常去门店"),
        ({"kind": "quadrant", "values": ["hf_hm"], "months": 0}, "1到36个月"),
        ({"kind": "list", "list": "dormant", "month": "2026-13"}, "YYYY-MM"),
        ({"kind": "birthday_month", "values": [13]}, "值须为1到12"),
    ],
)
def test_bad_conditions_are_refused_in_chinese(hq_db, condition, message):
    with pytest.raises(ValidationError, match=message):
        audience.compile_spec(hq_db, {"conditions": [condition]}, settings.current(hq_db), md.TODAY)


# ---- the API, exports, console ----------------------------------------------------------


@pytest.fixture
def app(hq_db, hq_db_url, chain, monkeypatch):
    monkeypatch.setattr(marketing_api, "today", lambda: md.TODAY)
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return app


def test_saved_segments_with_a_live_count(app, hq_db):
    client = session_client(app, hq_db, "membership")
    conditions = [{"kind": "lifecycle", "values": ["dormant", "lost"]}]
    assert client.post("/api/marketing/count", json={"conditions": conditions}).get_json() == {
        "count": 4
    }
    made = client.post("/api/marketing/segments", json={"name": "唤醒", "conditions": conditions})
    assert made.status_code == 201
    seg = made.get_json()["segment"]
    assert seg["created_by"].startswith("membership-") and "沉睡会员" in seg["summary"]
    listed_ = client.get("/api/marketing/segments").get_json()["segments"]
    assert [(s["name"], s["count"]) for s in listed_] == [("唤醒", 4)]
    again = client.post("/api/marketing/segments", json={"name": "唤醒", "conditions": conditions})
    assert again.status_code == 400 and "已有同名分群" in again.get_json()["message"]
    bad = client.post("/api/marketing/segments", json={"name": "x", "conditions": [{"kind": "?"}]})
    assert bad.status_code == 400 and "未知的条件" in bad.get_json()["message"]
    changed = client.put(
        f"/api/marketing/segments/{seg['id']}",
        json={"name": "唤醒", "conditions": conditions + [{"kind": "tags", "values": ["投诉"]}]},
    )
    assert changed.status_code == 200
    one = client.get(f"/api/marketing/segments/{seg['id']}").get_json()
    assert one["segment"]["count"] == 1 and [r["member_id"] for r in one["rows"]] == [
        md.MEMBER_ID["E"]
    ]
    page = client.post(
        "/api/marketing/audience?limit=2", json={"conditions": conditions}
    ).get_json()
    assert md.names(page["member_ids"]) == ["E", "G"] and page["next_after"] == md.MEMBER_ID["G"]
    # a snapshot: the segment's members stored as of today, once a day, paged by its key
    snap = client.post(f"/api/marketing/segments/{seg['id']}/snapshot")
    assert snap.status_code == 201 and snap.get_json()["run"]["members"] == 1
    assert client.post(f"/api/marketing/segments/{seg['id']}/snapshot").status_code == 200
    run = lists.get_run(snap.get_json()["run"]["id"])
    assert md.names(list(lists.iter_run_member_ids(run))) == ["E"]
    assert client.delete(f"/api/marketing/segments/{seg['id']}").status_code == 200
    assert client.get(f"/api/marketing/segments/{seg['id']}").status_code == 404


def test_lists_by_api_masked_and_scoped(app, hq_db):
    client = bearer_client(app, hq_db, "membership")
    body = client.get("/api/marketing/lists?kind=birthdays&month=2026-12").get_json()
    assert body["count"] == 4
    rows = {r["name"]: r for r in body["rows"]}
    assert rows["会员C"]["birthday"] == "2026-12-15 (农历11月7日)"
    assert rows["会员A"]["phone"] == "138****0065"  # always masked
    store = session_client(app, hq_db, "store", "S1")
    mine = store.get("/api/marketing/lists?kind=birthdays&month=2026-12").get_json()
    assert sorted(r["name"] for r in mine["rows"]) == ["会员A", "会员C", "会员E"]
    refused = store.get("/api/marketing/lists?kind=birthdays&month=2026-12&store=S2")
    assert refused.status_code == 403 and "其他门店" in refused.get_json()["message"]
    assert (
        store.post("/api/marketing/segments", json={"name": "x", "conditions": []}).status_code
        == 403
    )
    area = session_client(app, hq_db, "area", "华南")
    assert area.get("/api/marketing/lists?kind=dormant&month=2026-12").get_json()["count"] == 1
    analyst = session_client(app, hq_db, "analyst")
    assert analyst.get("/api/marketing/lists?kind=dormant").status_code == 403
    bad = client.get("/api/marketing/lists?kind=nope")
    assert bad.status_code == 400 and "名单类型无效" in bad.get_json()["message"]
    assert client.get("/api/marketing/lists?kind=dormant&limit=0").status_code == 400


def test_runs_by_api_and_idempotent(app, hq_db):
    client = session_client(app, hq_db, "membership")
    first = client.post("/api/marketing/runs", json={"kind": "dormant", "month": "2026-12"})
    again = client.post("/api/marketing/runs", json={"kind": "dormant", "month": "2026-12"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.get_json()["run"]["id"] == again.get_json()["run"]["id"]
    runs = client.get("/api/marketing/runs?month=2026-12").get_json()["runs"]
    assert [(r["kind"], r["members"]) for r in runs] == [("dormant", 3)]
    one = client.get(f"/api/marketing/runs/{runs[0]['id']}?store=S1").get_json()
    assert one["members"] == 2 and [r["name"] for r in one["rows"]] == ["会员E", "会员K"]
    assert client.get("/api/marketing/runs/999").status_code == 404


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_exports_are_masked_and_audited(app, hq_db, fmt):
    client = session_client(app, hq_db, "membership")
    resp = client.get(f"/api/marketing/export?kind=new_members&month=2026-12&format={fmt}")
    assert resp.status_code == 200
    if fmt == "xlsx":
        sheet = load_workbook(io.BytesIO(resp.data)).worksheets[0]
        values = [[c.value for c in row] for row in sheet.iter_rows()]
    else:
        text = resp.data.decode("utf-8")
        assert text.startswith("\ufeff")
        values = [line.split(",") for line in text[1:].strip().split("\r\n")]
    assert values[0][:4] == ["会员号", "姓名", "手机号", "开卡门店"]
    assert sorted(v[1] for v in values[1:]) == ["会员A", "会员B"]
    assert all("****" in v[2] for v in values[1:])
    entry = AuditEntry.get(AuditEntry.action == "marketing.export")
    assert entry.target == "list:new_members:2026-12-01" and entry.actor.startswith("membership-")
    assert client.get("/api/marketing/export?kind=dormant&format=pdf").status_code == 400


def test_console_pages(app, hq_db):
    lists.produce(hq_db, "birthdays", dt.date(2026, 12, 1), md.NOW, "scheduler", md.TODAY)
    client = session_client(app, hq_db, "membership")
    page = client.get("/marketing?month=2026-12").get_data(as_text=True)
    assert "本月名单 (2026-12)" in page and "生日祝福" in page and 'data-key="L"' in page
    view = client.get("/marketing?kind=dormant&month=2026-12&store=S1").get_data(as_text=True)
    assert 'id="list-count">2<' in view and "会员E" in view
    bad = client.get("/marketing?kind=dormant&month=2026-99")
    assert bad.status_code == 400 and "YYYY-MM" in bad.get_data(as_text=True)
    segs = client.get("/marketing/segments").get_data(as_text=True)
    assert "分群条件" in segs and "marketing.js" in segs and "<script>" not in segs
    assert session_client(app, hq_db, "analyst").get("/marketing").status_code == 403


def test_segments_module_checks_names(hq_db):
    with pytest.raises(ValidationError, match="分群名称"):
        segments.check(hq_db, " ", [{"kind": "tags", "values": ["投诉"]}], md.TODAY)
    with pytest.raises(ValidationError, match="至少添加一个条件"):
        segments.check(hq_db, "x", [], md.TODAY)


def test_segment_builder_in_a_browser(app, hq_db):
    """The builder counts live as boxes are ticked, saves, and the saved segment shows
    its count; the lists page shows this month's stored lists."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    lists.scheduled(hq_db, md.TODAY, md.NOW)
    username = make_user(hq_db, "membership")
    with live_server(app) as base, chromium(1366, 768) as driver:
        wait = WebDriverWait(driver, 10)
        driver.get(f"{base}/marketing/segments")
        driver.find_element(By.NAME, "username").send_keys(username)
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "builder")))
        count = driver.find_element(By.ID, "live-count")
        wait.until(lambda d: count.text == "9")
        driver.find_element(By.ID, "lc-dormant").click()
        driver.find_element(By.ID, "lc-lost").click()
        wait.until(lambda d: count.text == "4")
        driver.find_element(By.ID, "tag-1").click()  # 投诉
        wait.until(lambda d: count.text == "1")
        shot(driver, "console-marketing-builder")
        driver.find_element(By.ID, "segment-name").send_keys("沉睡投诉")
        driver.find_element(By.ID, "save-segment").click()
        row = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#segments tr[data-segment]"))
        )
        assert "沉睡投诉" in row.text and "生命周期: 沉睡会员, 流失会员 且 标签: 投诉" in row.text
        assert row.find_element(By.CSS_SELECTOR, "td.num").text == "1"
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        shot(driver, "console-marketing-segments")
        driver.find_element(By.ID, "tab-lists").click()
        runs = wait.until(ec.presence_of_element_located((By.ID, "runs")))
        assert "生日祝福" in runs.text and "上周新会员回访" in runs.text
        shot(driver, "console-marketing-lists")
        driver.find_element(By.PARTIAL_LINK_TEXT, "沉睡会员唤醒").click()
        view = wait.until(ec.presence_of_element_located((By.ID, "list-rows")))
        assert "会员E" in view.text
        driver.execute_script("document.getElementById('list-view').scrollIntoView()")
        shot(driver, "console-marketing-list")


@pytest.mark.parametrize(
    ("first", "end", "rows"),
    [
        ("2026-01-01", "2027-01-01", {"year": ["2026-01-01"]}),
        ("2026-09-01", "2027-01-01", {"month": ["2026-09-01"], "quarter": ["2026-10-01"]}),
        (
            "2025-12-01",
            "2026-12-01",
            {
                "month": ["2025-12-01", "2026-10-01", "2026-11-01"],
                "quarter": ["2026-01-01", "2026-04-01", "2026-07-01"],
            },
        ),
    ],
)
def test_a_window_is_covered_by_the_fewest_summary_rows(first, end, rows):
    part = audience.period_rows(dt.date.fromisoformat(first), dt.date.fromisoformat(end))
    got: dict[str, list[str]] = {}
    params = iter(part.params)
    for kind in ("year", "quarter", "month"):
        marker = f"kind = '{kind}' AND start IN ("
        if marker in part.text:
            n = part.text.split(marker)[1].split(")")[0].count("?")
            got[kind] = [next(params).isoformat() for _ in range(n)]
    assert got == rows


def test_thresholds_by_api_and_console_audited(app, hq_db):
    client = session_client(app, hq_db, "membership")
    names = [s["name"] for s in client.get("/api/marketing/settings").get_json()["settings"]]
    assert names == [
        "new_days", "dormant_days", "lost_days", "window_months", "weekly_call_days",
        "quiet_start_hour", "quiet_end_hour", "cap_campaigns", "cap_days",
    ]  # fmt: skip
    bad = client.put("/api/marketing/settings", json={"dormant_days": "x"})
    assert bad.status_code == 400 and "须为整数" in bad.get_json()["message"]
    assert client.put("/api/marketing/settings", json={"new_days": 31}).status_code == 200
    assert (
        client.post(
            "/api/marketing/count", json={"conditions": [{"kind": "lifecycle", "values": ["new"]}]}
        ).get_json()["count"]
        == 3
    )
    form = client.post("/marketing/settings", data={"lost_days": "200"})
    assert form.status_code == 302
    assert settings.current(hq_db)["lost_days"] == 200
    refused = client.post("/marketing/settings", data={"lost_days": "30"})
    assert refused.status_code == 400 and "流失天数须大于沉睡天数" in refused.get_data(as_text=True)
    assert AuditEntry.select().where(AuditEntry.action == "marketing.settings").count() == 2
    store = session_client(app, hq_db, "store", "S1")
    assert store.put("/api/marketing/settings", json={"new_days": 5}).status_code == 403
    assert "disabled" in store.get("/marketing/segments").get_data(as_text=True)
