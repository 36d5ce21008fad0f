"""Follow-up calls at the till (docs/followups.md): HQ's tasks applied from the change
entity ``followup`` (this store's open ones only), today's calls of the signed-in staff
and a manager's whole list, a member's calls, and an outcome recorded and sent up in the
same transaction, idempotently."""

from __future__ import annotations

import json

import pytest

from core import protocol as p
from core.ids import uuid7
from edge.models import FollowUp, FollowUpOutcome, Member, Outbox
from edge.sync.apply import Applier

TODAY = "2026-11-23"  # the demo till's clock (tests/edge/conftest.py)


def send_down(till, *changes: p.Change) -> None:
    with till.db.atomic():
        Applier(till.store, till.keys, till.now().isoformat()).apply_changes(list(changes))


def task(seq: int, member_id: str, **data) -> p.Change:
    key = data.pop("followup_id", None) or uuid7()
    state = {
        "followup_id": key,
        "member_id": member_id,
        "kind": "new_member",
        "kind_label": "新会员回访",
        "store": "S001",
        "staff_code": "1001",
        "reason": "首次消费 2026-11-16 后 7 天回访",
        "due_on": TODAY,
        "status": "open",
    } | data
    return p.Change(seq, "followup", key, "upsert", state)


@pytest.fixture
def members(demo_till):
    return [m.id for m in Member.select().order_by(Member.id).limit(4)]


@pytest.fixture
def calls(demo_till, members):
    """Due today (1001's), overdue (1001's), due later (1001's), the manager's, another
    store's."""
    changes = [
        task(1, members[0]),
        task(2, members[1], due_on="2026-11-20", kind="dormant", kind_label="沉睡会员回访"),
        task(3, members[2], due_on="2026-11-30"),
        task(4, members[3], staff_code="9001", kind="complaint", kind_label="投诉处理"),
        task(5, members[0], store="S002", staff_code="1001"),
    ]
    send_down(demo_till, *changes)
    return [c.key for c in changes]


def test_the_stores_open_tasks_come_down_and_closed_ones_go(demo_till, members, calls):
    assert {t.id for t in FollowUp.select()} == set(calls[:4])  # not S002's
    row = FollowUp.get_by_id(calls[0])
    assert (row.member_id, row.staff_code, row.due_on, row.status) == (
        members[0],
        "1001",
        TODAY,
        "open",
    )
    # closed at HQ, moved to another store, deleted: dropped here
    send_down(
        demo_till,
        task(6, members[0], followup_id=calls[0], status="done"),
        task(7, members[1], followup_id=calls[1], store="S002"),
        p.Change(8, "followup", calls[2], "delete", {}),
    )
    assert {t.id for t in FollowUp.select()} == {calls[3]}


def test_todays_calls_of_the_signed_in_staff(client, cashier, manager, members, calls):
    res = client.get("/api/v1/followups", headers=cashier)
    assert res.status_code == 200 and res.json["today"] == TODAY
    listed = res.json["followups"]
    # the overdue one first; the one due later and the manager's are not listed
    assert [c["followup_id"] for c in listed] == [calls[1], calls[0]]
    first = listed[0]
    assert first["overdue"] is True and listed[1]["overdue"] is False
    assert first["kind_label"] == "沉睡会员回访" and first["staff_code"] == "1001"
    member = Member.get_by_id(members[1])
    assert first["masked_name"] != member.name and first["masked_name"][0] == member.name[0]
    assert first["phone"] == f"*******{member.phone_tail}"  # never the number in clear
    # a manager sees the store's; a cashier may not
    whole = client.get("/api/v1/followups?all=1", headers=manager).json["followups"]
    assert whole[0]["followup_id"] == calls[1]  # overdue first, then today's
    assert {c["followup_id"] for c in whole[1:]} == {calls[0], calls[3]}
    refused = client.get("/api/v1/followups?all=1", headers=cashier)
    assert refused.status_code == 403 and refused.json["field"].startswith("manager")
    bad = client.get("/api/v1/followups?all=yes", headers=cashier)
    assert bad.status_code == 400 and bad.json["field"] == "all"


def test_a_members_open_calls(client, cashier, members, calls):
    res = client.get(f"/api/v1/members/{members[2]}/followups", headers=cashier)
    assert [c["due_on"] for c in res.json["followups"]] == ["2026-11-30"]
    nobody = client.get(f"/api/v1/members/{uuid7()}/followups", headers=cashier)
    assert nobody.status_code == 404 and "会员不存在" in nobody.json["message"]


def outcome(**fields) -> dict:
    return {
        "outcome_id": uuid7(),
        "reached": True,
        "satisfaction": 2,
        "said": "洗发水不错",
        "complaint": "排队太久",
        "request": "",
    } | fields


def test_an_outcome_is_recorded_and_sent_up_once(client, cashier, demo_till, calls):
    body = outcome()
    res = client.post(f"/api/v1/followups/{calls[0]}/outcome", headers=cashier, json=body)
    assert res.status_code == 201, res.json
    assert res.json["outcome"]["complaint"] == "排队太久"
    assert FollowUp.get_by_id(calls[0]).status == "done"
    sent = Outbox.select().where(Outbox.kind == "followup_outcome")
    assert sent.count() == 1
    item = p.validate_item(json.loads(sent[0].payload))  # as HQ will read it
    assert item.body["followup_id"] == calls[0] and item.body["staff_code"] == "1001"
    assert item.body["satisfaction"] == 2 and item.body["reached"] is True
    # the screen retries (same outcome_id): the same answer, nothing sent again
    again = client.post(f"/api/v1/followups/{calls[0]}/outcome", headers=cashier, json=body)
    assert again.status_code == 200 and again.json == res.json
    assert sent.count() == 1
    # a second outcome for the same call is refused
    other = client.post(f"/api/v1/followups/{calls[0]}/outcome", headers=cashier, json=outcome())
    assert other.status_code == 409 and "已记录" in other.json["message"]
    # no longer among today's calls; HQ's open state sent again keeps it done here
    listed = client.get("/api/v1/followups", headers=cashier).json["followups"]
    assert calls[0] not in [c["followup_id"] for c in listed]
    send_down(demo_till, task(9, FollowUp.get_by_id(calls[0]).member_id, followup_id=calls[0]))
    assert FollowUp.get_by_id(calls[0]).status == "done"


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"outcome_id": "123"}, "outcome_id", "UUID"),
        ({"reached": "yes"}, "reached", "是否联系上"),
        ({"satisfaction": 6}, "satisfaction", "1到5分"),
        ({"satisfaction": True}, "satisfaction", "1到5分"),
        ({"reached": False, "satisfaction": 3}, "satisfaction", "未联系上"),
        ({"reached": False, "satisfaction": None}, "reached", "不能记录投诉"),
        ({"said": 5}, "said", "须为文字"),
        ({"request": "要" * 501}, "request", "太长"),
    ],
)
def test_a_bad_outcome_is_a_400_in_chinese(client, cashier, calls, fields, field, words):
    res = client.post(
        f"/api/v1/followups/{calls[0]}/outcome", headers=cashier, json=outcome(**fields)
    )
    assert res.status_code == 400 and res.json["field"] == field, res.json
    assert words in res.json["message"]
    assert FollowUpOutcome.select().count() == 0 and FollowUp.get_by_id(calls[0]).status == "open"


def test_an_unknown_call_is_a_404(client, cashier, calls):
    res = client.post(f"/api/v1/followups/{uuid7()}/outcome", headers=cashier, json=outcome())
    assert res.status_code == 404 and "没有这条回访" in res.json["message"]
    not_reached = outcome(reached=False, satisfaction=None, complaint="", said="无人接听")
    ok = client.post(f"/api/v1/followups/{calls[1]}/outcome", headers=cashier, json=not_reached)
    assert ok.status_code == 201 and ok.json["outcome"]["reached"] is False
