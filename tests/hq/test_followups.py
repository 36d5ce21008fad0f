"""Follow-up calls at HQ (docs/followups.md), on SQLite and PostgreSQL: the rules, the job
making tasks idempotently and assigning them to the maintainer, overdue tasks, the
change entity, and a till's outcome through the real ingest (a complaint tags the member
and reaches the store manager; a bad item is dead-lettered while the batch goes on)."""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest
from click.testing import CliRunner

from core import protocol as p
from core.errors import ValidationError
from core.ids import uuid7
from core.rules import DEMO_RULES
from hq.api import create_app
from hq.changes import snapshot_records
from hq.cli import main
from hq.config import HqConfig, MqttSettings
from hq.followups import tasks
from hq.ingest import ingest_batch
from hq.models import (
    AuditEntry,
    ChangeRecord,
    DeadLetter,
    FollowUp,
    FollowUpOutcome,
    Member,
    ProcessedItem,
    Store,
    bind,
    open_database,
)
from hq.programme import staff as programme
from hq.rules import publish_product, publish_rules
from tests.browser import chromium, live_server, shot
from tests.hq.edge_sim import TZ, Items
from tests.hq.signin import PASSWORD, make_user, session_client
from tests.lookup_keys import TEST_LOOKUP

NOW = dt.datetime(2026, 12, 1, 2, 0)  # naive UTC
S1, S2 = "S1", "S2"
SKU = "6901234567890"  # the SKU of tests.hq.edge_sim's sales
PHONES = itertools.count(1)


def ingest(db, items: Items, batch: list[dict]) -> p.Ack:
    outcome = ingest_batch(
        db,
        p.up_topic(items.store, "tx"),
        items.store,
        p.make_batch(items.store, 1, batch),
        NOW.replace(tzinfo=dt.UTC),
    )
    assert outcome.ack is not None, outcome.dead_letter
    return outcome.ack


@pytest.fixture
def chain(hq_db):
    """E01 (a guide) and M01 (the manager) at S1; E09 at S2."""
    for code, name, store, role in (
        ("E01", "王芳", S1, "guide"),
        ("M01", "刘店长", S1, "manager"),
        ("E09", "赵磊", S2, "guide"),
    ):
        programme.add_staff(hq_db, code, name, store, role, "hq-admin", NOW)
    return hq_db


def at(items: Items, day: str) -> None:
    """The next item happens on the till's business day ``day`` (10:00 local)."""
    items.clock = dt.datetime.fromisoformat(f"{day}T10:00:00").replace(tzinfo=TZ)


def member_buying(db, items: Items, days: list[str], staff_code: str | None = "E01") -> str:
    member_id = uuid7()
    at(items, days[0])
    phone = f"139{next(PHONES):08d}"
    batch = [items.registration(member_id, phone, staff_code=staff_code)]
    for day in days:
        at(items, day)
        batch.append(items.sale(member_id))
    assert ingest(db, items, batch).rejected == ()
    return member_id


def open_tasks(member_id: str) -> dict[str, FollowUp]:
    return {
        t.kind: t
        for t in FollowUp.select().where(
            (FollowUp.member_id == member_id) & (FollowUp.status == "open")
        )
    }


def test_a_new_member_is_called_a_week_after_the_first_purchase_once(chain):
    items = Items(S1)
    member = member_buying(chain, items, ["2026-11-24"])
    nobody = member_buying(chain, items, ["2026-11-24"], staff_code=None)
    assert tasks.make_tasks(chain, dt.date(2026, 11, 30), NOW)["new_member"] == 0  # day 6
    made = tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)
    assert made["new_member"] == 2 and made["overdue"] == 0
    task = open_tasks(member)["new_member"]
    assert (task.store, task.staff_code, task.due_on) == (S1, "E01", dt.date(2026, 12, 1))
    assert "2026-11-24" in task.reason
    # no maintainer: the store's task, for its manager to hand out
    assert (
        open_tasks(nobody)["new_member"].store,
        open_tasks(nobody)["new_member"].staff_code,
    ) == (
        S1,
        None,
    )
    # the job again, the same day or later: nothing twice; overdue once past the due day
    again = tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)
    later = tasks.make_tasks(chain, dt.date(2026, 12, 3), NOW)
    assert again["new_member"] == later["new_member"] == 0
    assert later["overdue"] == 2 and FollowUp.select().count() == 2
    # down to the stores: one change each, and the open ones in a snapshot
    sent = {c.key: c.data for c in ChangeRecord.select().where(ChangeRecord.entity == "followup")}
    assert sent[task.id] == {
        "followup_id": task.id,
        "member_id": member,
        "kind": "new_member",
        "kind_label": "新会员回访",
        "store": S1,
        "staff_code": "E01",
        "reason": task.reason,
        "due_on": "2026-12-01",
        "status": "open",
    }
    _, records = snapshot_records(chain, TEST_LOOKUP)
    assert {r["key"] for r in records if r["entity"] == "followup"} == set(sent)


def test_a_service_sale_is_called_three_days_after(chain):
    publish_product(chain, SKU, "精致洗车", 10000, category="洗护", service=True)
    items = Items(S1)
    member = member_buying(chain, items, ["2026-11-20", "2026-11-28"])
    made = tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)
    assert made["service_sale"] == 1
    task = open_tasks(member)["service_sale"]
    # the earlier sale's call is already due: one open call per member and kind
    assert task.due_on == dt.date(2026, 11, 23) and "精致洗车" in task.reason
    assert tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)["service_sale"] == 0
    # once it is done, the next service's call is made
    tasks.record_at_hq(chain, task.id, {"outcome_id": uuid7(), "reached": True}, "hq-ops", NOW)
    assert tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)["service_sale"] == 1
    assert open_tasks(member)["service_sale"].due_on == dt.date(2026, 12, 1)


def test_a_product_is_a_service_by_the_rules_categories_too(chain):
    publish_product(chain, SKU, "汽车保养", 10000, category="保养")
    items = Items(S1)
    member_buying(chain, items, ["2026-11-28"])
    assert tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)["service_sale"] == 0
    tasks.set_rule(
        chain,
        "service_sale",
        enabled=True,
        days=3,
        params={"categories": ["保养"]},
        by="hq-ops",
        now=NOW,
    )
    assert tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)["service_sale"] == 1


def test_regulars_monthly_slipping_regulars_and_dormant_members(chain):
    items = Items(S1)
    regular = member_buying(chain, items, ["2026-10-05", "2026-10-20", "2026-11-03", "2026-11-25"])
    # four visits in August, none since: slipping, and 98 days without a purchase
    slipping = member_buying(chain, items, ["2026-08-04", "2026-08-11", "2026-08-18", "2026-08-25"])
    once = member_buying(chain, items, ["2026-11-02"])
    made = tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)
    assert set(open_tasks(regular)) == {"regular"}
    assert open_tasks(regular)["regular"].ref == "2026-12"
    assert open_tasks(regular)["regular"].due_on == dt.date(2026, 12, 8)
    assert set(open_tasks(slipping)) == {"slipping", "dormant"}
    assert open_tasks(slipping)["dormant"].due_on == dt.date(2026, 11, 23)
    assert "2026-08-25" in open_tasks(slipping)["dormant"].reason
    assert open_tasks(once) == {}
    assert (made["regular"], made["slipping"], made["dormant"]) == (1, 1, 1)
    # done this month: not again this month; a new one next month
    task = open_tasks(regular)["regular"]
    tasks.record_at_hq(chain, task.id, {"outcome_id": uuid7(), "reached": False}, "hq-ops", NOW)
    assert tasks.make_tasks(chain, dt.date(2026, 12, 20), NOW)["regular"] == 0
    # a rule switched off makes nothing
    tasks.set_rule(chain, "regular", enabled=False, days=7, params={}, by="hq-ops", now=NOW)
    assert "regular" not in tasks.make_tasks(chain, dt.date(2027, 1, 2), NOW)


def test_dormant_calls_and_dormant_lists_share_one_threshold(chain):
    """The dormant rule's days are marketing's 沉睡会员 threshold: setting either sets
    both, so the calls and the 沉睡会员唤醒 list never disagree on who is dormant."""
    from hq.marketing import settings as marketing_settings

    assert tasks.rules()["dormant"].days == marketing_settings.current(chain)["dormant_days"] == 90
    tasks.set_rule(chain, "dormant", enabled=True, days=120, params={}, by="hq-ops", now=NOW)
    assert marketing_settings.current(chain)["dormant_days"] == 120
    marketing_settings.update(chain, {"dormant_days": 100}, "hq-ops", NOW)
    assert tasks.rules()["dormant"].days == 100
    # the lost threshold bounds it: a dormant rule past it is refused, naming the field
    with pytest.raises(ValidationError) as refused:
        tasks.set_rule(chain, "dormant", enabled=True, days=200, params={}, by="hq-ops", now=NOW)
    assert refused.value.field == "lost_days"
    assert tasks.rules()["dormant"].days == 100


@pytest.mark.parametrize(
    ("kind", "days", "params", "field"),
    [
        ("birthday", 3, {}, "kind"),
        ("dormant", 5, {}, "days"),
        ("regular", 7, {"min_visits": 0}, "params.min_visits"),
        ("regular", 7, {"colour": 1}, "params.colour"),
        ("service_sale", 3, {"categories": "保养"}, "params.categories"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(chain, kind, days, params, field):
    with pytest.raises(ValidationError) as refused:
        tasks.set_rule(chain, kind, enabled=True, days=days, params=params, by="hq-ops", now=NOW)
    assert refused.value.field == field and refused.value.message[0] >= "\u4e00"


def outcome_item(items: Items, task: FollowUp, **fields) -> dict:
    body = {
        "outcome_id": uuid7(),
        "followup_id": task.id,
        "member_id": task.member_id,
        "staff_code": "E01",
        "reached": True,
        "satisfaction": 4,
        "said": "东西好用",
        "complaint": "",
        "request": "",
        "recorded_at": "2026-12-01T15:00:00+08:00",
    } | fields
    return items._item("followup_outcome", body)


def test_a_tills_outcome_closes_the_task_and_a_complaint_reaches_the_store_manager(
    chain, hq_db_url
):
    items = Items(S1)
    one = member_buying(chain, items, ["2026-11-24"])
    two = member_buying(chain, items, ["2026-11-24"])
    tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)
    first, second = open_tasks(one)["new_member"], open_tasks(two)["new_member"]
    bad = outcome_item(items, first, followup_id=uuid7())  # no such task
    complaint = outcome_item(items, first, satisfaction=2, complaint="收银员态度差")
    fine = outcome_item(items, second, request="想要新品试用")
    ack = ingest(chain, items, [bad, complaint, fine])
    # the bad item is refused and dead-lettered with its reason; the others are applied
    assert [(r.seq, r.code) for r in ack.rejected] == [(bad["seq"], "apply_failed")]
    letter = DeadLetter.get(DeadLetter.seq == bad["seq"])
    assert "回访任务不存在" in letter.reason
    assert ProcessedItem.select().where(ProcessedItem.status == "applied").count() >= 2
    done = FollowUp.get_by_id(first.id)
    assert (done.status, done.done_by, done.open_key) == ("done", "E01", None)
    stored = FollowUpOutcome.get(FollowUpOutcome.followup_id == first.id)
    assert (stored.satisfaction, stored.complaint, stored.source) == (2, "收银员态度差", "till")
    # the complaint: the member is tagged 投诉 and the store manager gets a call to make
    assert "投诉" in Member.get_by_id(one).tags
    escalated = open_tasks(one)["complaint"]
    assert (escalated.store, escalated.staff_code) == (S1, "M01")
    assert "收银员态度差" in escalated.reason and escalated.due_on == dt.date(2026, 12, 1)
    assert "投诉" not in (Member.get_by_id(two).tags or [])
    # the stores hear of it: the task closed, the complaint's task, the member's tags
    changed = [
        (c.entity, c.key, c.data.get("status"))
        for c in ChangeRecord.select().where(ChangeRecord.seq > 0).order_by(ChangeRecord.seq)
    ]
    assert ("followup", first.id, "done") in changed
    assert ("followup", escalated.id, "open") in changed
    member_change = [
        c for c in ChangeRecord.select().where(ChangeRecord.key == one) if c.entity == "member"
    ][-1]
    assert "投诉" in member_change.data["tags"]
    # the staff contribution report counts the calls done
    figures = {r["code"]: r for r in programme.staff_sales(S1)}
    assert figures["E01"]["followups_done"] == 2 and figures["M01"]["followups_done"] == 0
    shown = CliRunner().invoke(
        main, ["--database-url", hq_db_url, "staff-sales", "--store", S1, "--from", "2026-12-01"]
    )
    bind(chain, create=False)  # the CLI bound HQ's models to its own connection
    assert shown.exit_code == 0, shown.output
    assert "followups_done" in shown.output
    assert [ln.split()[-1] for ln in shown.output.splitlines() if ln.startswith("E01")] == ["2"]
    # the same outcome again (a till restored from a backup): nothing doubled
    again = outcome_item(items, first, **{k: complaint["body"][k] for k in complaint["body"]})
    assert ingest(chain, items, [again]).rejected == ()
    assert FollowUpOutcome.select().count() == 2
    assert FollowUp.select().where(FollowUp.kind == "complaint").count() == 1


def test_another_stores_outcome_is_refused(chain):
    items = Items(S1)
    member = member_buying(chain, items, ["2026-11-24"])
    tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)
    task = open_tasks(member)["new_member"]
    other = Items(S2)
    ack = ingest(chain, other, [outcome_item(other, task)])
    assert [r.code for r in ack.rejected] == ["apply_failed"]
    assert "门店" in DeadLetter.select().order_by(DeadLetter.id.desc()).first().reason
    assert FollowUp.get_by_id(task.id).status == "open"


# ---- the console's page 回访 ---------------------------------------------------------------


NO_BROKER = MqttSettings(url="mqtt://127.0.0.1:1", client_id="hq-test")  # pushes fail fast


@pytest.fixture
def app(hq_db, hq_db_url):
    app = create_app(HqConfig(database_url=hq_db_url, mqtt=NO_BROKER), db=hq_db)
    app.testing = True
    return app


@pytest.fixture
def two_stores(chain):
    """A due call at S1 (E01's, overdue by now), one at S2, and one at S1 due next month."""
    Store.create(code=S1, name="一店", area="华东", created_at=NOW)
    Store.create(code=S2, name="二店", area="华南", created_at=NOW)
    one, two = Items(S1), Items(S2)
    mine = member_buying(chain, one, ["2026-11-24"])
    theirs = member_buying(chain, two, ["2026-11-24"], staff_code="E09")
    tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)
    later = FollowUp.create(
        id=uuid7(),
        member_id=mine,
        kind="regular",
        ref="later",
        store=S1,
        staff_code="E01",
        reason="常客月度回访",
        due_on=dt.date.today() + dt.timedelta(days=30),
        created_at=NOW,
    )
    return open_tasks(mine)["new_member"], open_tasks(theirs)["new_member"], later


def test_the_page_lists_the_managers_stores_calls_with_overdue_ones_marked(app, two_stores):
    mine, theirs, later = two_stores
    store = session_client(app, app.extensions["hq_db"], "store", S1)
    page = store.get("/followups")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "回访" in html
    assert mine.id in html and later.id in html and theirs.id not in html
    assert f'data-id="{mine.id}" class="overdue"' in html
    assert f'data-id="{later.id}" class="overdue"' not in html
    assert "<script>" not in html and " onclick=" not in html  # the console's strict CSP
    assert "Alt+0" in html
    listed = store.get("/api/followups?status=overdue").get_json()
    assert [t["followup_id"] for t in listed["followups"]] == [mine.id]
    assert listed["followups"][0]["overdue"] is True
    assert listed["summary"] == [{"store": S1, "open": 2, "overdue": 1, "done_30d": 0}]
    # another store's list or task is refused; a bad filter is a 400 in Chinese
    assert store.get(f"/followups?store={S2}").status_code == 403
    assert store.get(f"/followups/{theirs.id}").status_code == 403
    bad = store.get("/followups?status=late")
    assert bad.status_code == 400 and "状态须为" in bad.get_data(as_text=True)
    # an analyst has no follow-ups; the chain's membership head sees every store's
    analyst = session_client(app, app.extensions["hq_db"], "analyst")
    assert analyst.get("/followups").status_code == 403
    head = session_client(app, app.extensions["hq_db"], "membership")
    assert theirs.id in head.get("/followups").get_data(as_text=True)


def test_an_outcome_recorded_in_the_console(app, two_stores):
    db = app.extensions["hq_db"]
    mine, _, _ = two_stores
    store = session_client(app, db, "store", S1)
    form = store.get(f"/followups/{mine.id}").get_data(as_text=True)
    outcome_id = re.search(r'name="outcome_id" value="([^"]+)"', form).group(1)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    data = {
        "csrf": csrf,
        "outcome_id": outcome_id,
        "reached": "1",
        "satisfaction": "1",
        "said": "等了很久",
        "complaint": "店员不理人",
        "request": "",
    }
    # without the session's CSRF token the form is refused
    bare = app.test_client()
    bare.set_cookie(*_session_cookie(store))
    assert bare.post(f"/followups/{mine.id}/outcome", data=data | {"csrf": "x"}).status_code == 403
    sent = store.post(f"/followups/{mine.id}/outcome", data=data)
    assert sent.status_code == 302, sent.get_data(as_text=True)
    assert "done=1" in sent.headers["Location"]
    done = FollowUp.get_by_id(mine.id)
    assert done.status == "done" and done.done_by.startswith("store-")
    assert "店员不理人" in store.get(f"/followups/{mine.id}").get_data(as_text=True)
    assert "投诉" in Member.get_by_id(mine.member_id).tags
    assert open_tasks(mine.member_id)["complaint"].staff_code == "M01"
    assert AuditEntry.get(AuditEntry.action == "followups.outcome").target == mine.member_id
    # the same form sent twice (a double click): one outcome
    assert store.post(f"/followups/{mine.id}/outcome", data=data).status_code == 302
    assert FollowUpOutcome.select().where(FollowUpOutcome.followup_id == mine.id).count() == 1
    bad = store.post(
        f"/followups/{open_tasks(mine.member_id)['complaint'].id}/outcome",
        data=data | {"outcome_id": uuid7(), "satisfaction": "9"},
    )
    assert bad.status_code == 400 and "满意度" in bad.get_data(as_text=True)


def test_the_rules_are_set_in_the_console_by_who_may_publish_rules(app, two_stores):
    db = app.extensions["hq_db"]
    head = session_client(app, db, "membership")
    form = {"enabled": "1", "days": "5", "min_visits": "6", "window_days": "60"}
    assert head.post("/followups/rules/regular", data=form).status_code == 302
    assert tasks.rules()["regular"] == tasks.Rule(
        "regular", True, 5, {"min_visits": 6, "window_days": 60}
    )
    store = session_client(app, db, "store", S1)
    assert store.post("/followups/rules/regular", data=form).status_code == 403
    assert 'id="rule-regular"' not in store.get("/followups").get_data(as_text=True)
    refused = head.post("/followups/rules/regular", data=form | {"min_visits": "0"})
    assert refused.status_code == 400 and "最少消费次数" in refused.get_data(as_text=True)
    assert head.post("/followups/rules/birthday", data=form).status_code == 404


def _session_cookie(client) -> tuple[str, str]:
    from hq.access.guard import SESSION_COOKIE

    return SESSION_COOKIE, client.get_cookie(SESSION_COOKIE).value


def test_browser_a_store_manager_records_a_call_in_the_console(tmp_path):
    """The page as a store manager uses it, once (on SQLite), with screenshots."""
    from selenium.webdriver.common.by import By

    url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    db = bind(open_database(url))
    publish_rules(db, DEMO_RULES.to_dict())
    for code, name, store, role in (("E01", "王芳", S1, "guide"), ("M01", "刘店长", S1, "manager")):
        programme.add_staff(db, code, name, store, role, "hq-admin", NOW)
    Store.create(code=S1, name="一店", area="华东", created_at=NOW)
    items = Items(S1)
    member = member_buying(db, items, ["2026-11-24"])
    member_buying(db, items, ["2026-08-04", "2026-08-11", "2026-08-18", "2026-08-25"])
    tasks.make_tasks(db, dt.date(2026, 12, 1), NOW)
    app = create_app(HqConfig(database_url=url, console_secure_cookie=False, mqtt=NO_BROKER), db=db)
    make_user(db, "store", S1, username="liu")
    with live_server(app) as base, chromium(1366, 768) as driver:
        driver.get(base + "/login")
        driver.find_element(By.ID, "username").send_keys("liu")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + "\n")
        driver.find_element(By.CSS_SELECTOR, 'a[data-key="0"]').click()
        rows = driver.find_elements(By.CSS_SELECTOR, "#followups tbody tr.overdue")
        assert len(rows) == 3  # all due by 2026-12-01: overdue on any day this test runs
        shot(driver, "hq-followups")
        task = open_tasks(member)["new_member"]
        driver.find_element(By.CSS_SELECTOR, f'tr[data-id="{task.id}"] a').click()
        driver.find_element(By.ID, "reached-yes").click()
        driver.find_element(By.ID, "said").send_keys("很满意")
        driver.find_element(By.ID, "request").send_keys("希望周末有活动")
        shot(driver, "hq-followup-form")
        driver.find_element(By.ID, "outcome-submit").click()
        assert "已记录回访结果" in driver.find_element(By.ID, "notice").text
        assert "希望周末有活动" in driver.page_source
        shot(driver, "hq-followup-done")
    assert FollowUp.get_by_id(task.id).status == "done"


def test_erasing_a_member_blanks_what_their_calls_said_and_closes_their_calls(chain):
    from hq.privacy import erase_member

    items = Items(S1)
    member = member_buying(chain, items, ["2026-08-04", "2026-08-11", "2026-08-18", "2026-08-25"])
    tasks.make_tasks(chain, dt.date(2026, 12, 1), NOW)
    dormant = open_tasks(member)["dormant"]
    ack = ingest(chain, items, [outcome_item(items, dormant, complaint="价格太贵")])
    assert ack.rejected == ()
    erase_member(chain, Member.get_by_id(member), "会员要求删除", "hq-ops", NOW)
    said = FollowUpOutcome.get(FollowUpOutcome.member_id == member)
    assert (said.said, said.complaint, said.request) == ("", "", "")
    assert open_tasks(member) == {}
    assert all(t.reason == "" for t in FollowUp.select().where(FollowUp.member_id == member))
    last = (
        ChangeRecord.select()
        .where(ChangeRecord.entity == "followup")
        .order_by(ChangeRecord.seq.desc())
        .first()
    )
    assert last.data["status"] == "done" and last.data["member_id"] == member


def test_a_merged_members_calls_become_the_survivors_once(chain):
    """The loser's open calls move to the survivor, except one the survivor already has
    (closed as ``merged``); what the loser's calls said moves too; the stores hear of
    every open task that moved or closed."""
    from hq.changes import ChangeSet, flush_changes
    from hq.members import merge_members

    items = Items(S1)
    loser = member_buying(chain, items, ["2026-08-04"])
    survivor = member_buying(chain, items, ["2026-08-05"])

    def task(member: str, kind: str, ref: str, status: str = "open") -> FollowUp:
        return FollowUp.create(
            id=uuid7(), member_id=member, kind=kind, ref=ref, store=S1, staff_code="E01",
            reason="", due_on=dt.date(2026, 12, 3), status=status,
            open_key=f"{member}:{kind}" if status == "open" else None, created_at=NOW,
        )  # fmt: skip

    theirs = task(survivor, "dormant", "2026-08-05")
    twin = task(loser, "dormant", "2026-08-04")  # the survivor has an open dormant call
    moved = task(loser, "regular", "2026-12")
    done = task(loser, "new_member", "", status="done")
    FollowUpOutcome.create(
        outcome_id=uuid7(), followup_id=done.id, member_id=loser, store=S1, staff_code="E01",
        reached=True, satisfaction=5, said="挺好", recorded_at="2026-08-12T10:00:00+08:00",
        source="till", ingested_at=NOW,
    )  # fmt: skip
    changes = ChangeSet()
    with chain.atomic():
        merge_members(chain, loser, survivor, store=None, staff="E9", reason="staff", now=NOW,
                      changes=changes)  # fmt: skip
        flush_changes(chain, changes, NOW)
    assert open_tasks(loser) == {}
    assert {k: t.id for k, t in open_tasks(survivor).items()} == {
        "dormant": theirs.id,
        "regular": moved.id,
    }
    assert FollowUp.get_by_id(moved.id).open_key == f"{survivor}:regular"
    closed = FollowUp.get_by_id(twin.id)
    assert (closed.status, closed.done_by, closed.open_key) == ("done", "merged", None)
    assert FollowUp.get_by_id(done.id).member_id == survivor  # the survivor had none
    assert FollowUpOutcome.get(FollowUpOutcome.followup_id == done.id).member_id == survivor
    sent = {r.key: r.data for r in ChangeRecord.select().where(ChangeRecord.entity == "followup")}
    assert sent[moved.id]["member_id"] == survivor and sent[moved.id]["status"] == "open"
    assert sent[twin.id]["status"] == "done"
    assert done.id not in sent  # a done call is no store's business
