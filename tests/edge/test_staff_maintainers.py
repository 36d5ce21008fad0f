"""Maintainers and serving staff checked at the till offline, and the store manager's
decision on maintainer transfers (docs/programme/staff.md, "At the till")."""

from __future__ import annotations

import json

import pytest

from core import protocol as p
from edge.models import MaintainerRequest, Member, Outbox, Sale, StaffRegistry
from edge.sync.apply import Applier, load_snapshot
from tests.edge.conftest import sign_in

STORE = "S001"  # the demo till's store
SALE = {"lines": [{"sku": "P0001"}], "tenders": [{"kind": "cash", "amount": 1000}]}
REGISTRY = [
    ("E01", "王芳", STORE, "active"),
    ("E02", "李娜", STORE, "leaving"),
    ("E03", "张伟", STORE, "closed"),
    ("E09", "赵磊", "S002", "active"),
]


def send_down(till, *changes: p.Change) -> None:
    with till.db.atomic():
        Applier(till.store, till.keys, till.now().isoformat()).apply_changes(list(changes))


def staff_change(seq: int, code: str, name: str, store: str, status: str) -> p.Change:
    data = {"code": code, "name": name, "store": store, "role": "guide", "status": status}
    return p.Change(seq, "staff", code, "upsert", data)


def transfer_change(seq: int, tid: str, status: str = "pending", store: str = STORE) -> p.Change:
    return p.Change(
        seq,
        "staff_transfer",
        tid,
        "upsert",
        {
            "transfer_id": tid,
            "member_ids": ["m1", "m2"],
            "from_staff": "E01",
            "to_staff": "E09",
            "from_store": store,
            "to_store": "S002",
            "reason": "会员搬家",
            "requested_by": "hq-ops",
            "requested_at": "2026-11-23T01:00:00Z",
            "status": status,
            "store_approved_by": None,
            "rejected_reason": None,
        },
    )


@pytest.fixture
def with_registry(demo_till):
    send_down(demo_till, *(staff_change(i + 1, *row) for i, row in enumerate(REGISTRY)))
    return demo_till


def register(client, headers, staff_code, n=1):
    body = {"name": "新会员", "phone": f"1370000{n:04d}"}
    if staff_code is not None:
        body["staff_code"] = staff_code
    return client.post("/api/v1/members", headers=headers, json=body)


# ---- registration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (None, 201, None),
        ("", 201, None),
        ("1001", 201, None),  # the till's own staff (edge.models.Staff)
        ("9001", 201, None),
        ("7777", 400, "不是本店员工"),
        ("E01", 400, "不是本店员工"),  # HQ's code, but HQ's registry has not arrived
    ],
)
def test_before_the_registry_arrives_the_tills_own_staff_are_the_rule(
    client, cashier, code, status, message
):
    res = register(client, cashier, code)
    assert res.status_code == status, res.json
    if message:
        assert res.json["field"] == "staff_code" and message in res.json["message"]
    else:
        member = Member.get_by_id(res.json["member"]["member_id"])
        assert member.staff_code == code


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("E01", 201, None),
        ("E09", 201, None),  # another store's staff member may look after a member here
        (None, 201, None),
        ("1001", 400, "不是总部登记的员工"),  # once HQ's registry is here, it is the rule
        ("E02", 400, "正在离职交接"),
        ("E03", 400, "已离职"),
        ("X99", 400, "不是总部登记的员工"),
    ],
)
def test_once_hqs_registry_arrives_a_maintainer_must_be_in_it_and_active(
    with_registry, client, cashier, code, status, message
):
    registrations = Outbox.select().where(Outbox.kind == "registration")
    before = registrations.count()  # the demo's own members
    res = register(client, cashier, code)
    assert res.status_code == status, res.json
    if message:
        assert res.json["field"] == "staff_code" and message in res.json["message"]
        assert registrations.count() == before
    else:
        item = json.loads(registrations.order_by(Outbox.seq.desc()).get().payload)
        assert item["body"]["staff_code"] == code


def test_a_code_closed_later_is_refused_from_then_on(with_registry, client, cashier):
    assert register(client, cashier, "E01", 1).status_code == 201
    send_down(with_registry, staff_change(10, "E01", "王芳", STORE, "closed"))
    res = register(client, cashier, "E01", 2)
    assert res.status_code == 400 and "已离职" in res.json["message"]


def test_the_maintainer_list_follows_the_rule(demo_till, client, cashier):
    res = client.get("/api/v1/maintainers", headers=cashier)
    assert [(m["code"], m["source"]) for m in res.json["maintainers"]] == [
        ("1001", "till"),
        ("9001", "till"),
    ]
    send_down(demo_till, *(staff_change(i + 1, *row) for i, row in enumerate(REGISTRY)))
    res = client.get("/api/v1/maintainers", headers=cashier)
    assert res.json["maintainers"] == [
        {"code": "E01", "name": "王芳", "role": "guide", "source": "hq"}
    ]


def test_the_registry_loads_from_a_snapshot(demo_till):
    records = [staff_change(5, *row).to_dict() for row in REGISTRY]
    records.append(transfer_change(5, "T1").to_dict())
    load_snapshot(demo_till.db, STORE, demo_till.keys, records, 5, demo_till.now().isoformat())
    assert {s.code: s.status for s in StaffRegistry.select()} == {
        "E01": "active",
        "E02": "leaving",
        "E03": "closed",
        "E09": "active",
    }
    assert [r.id for r in MaintainerRequest.select()] == ["T1"]


# ---- serving staff on a sale ----------------------------------------------------------


@pytest.mark.parametrize(
    ("served_by", "status", "sent"),
    [
        (None, 201, None),
        ("1001", 201, None),  # the cashier: the default, not repeated in the body
        ("E01", 201, "E01"),
        ("E02", 201, "E02"),  # leaving: still serves customers
        ("E03", 400, None),
        ("X99", 400, None),
        (7, 400, None),
    ],
)
def test_a_sale_names_who_served_it(with_registry, client, cashier, served_by, status, sent):
    body = dict(SALE) if served_by is None else SALE | {"served_by": served_by}
    res = client.post("/api/v1/sales", headers=cashier, json=body)
    assert res.status_code == status, res.json
    if status != 201:
        assert res.json["field"] == "served_by"
        assert Sale.select().count() == 0
        return
    sale = Sale.get_by_id(res.json["sale_id"])
    assert sale.body.get("served_by") == sent
    p.validate_sale_body(sale.body)
    if sent is None:
        assert "served_by" not in sale.body  # an older HQ sees the body it always saw


# ---- transfers at the till ------------------------------------------------------------


def test_the_manager_sees_this_stores_open_transfers_only(with_registry, client, cashier, manager):
    send_down(
        with_registry,
        transfer_change(20, "T1"),
        transfer_change(21, "T2", store="S002"),
        transfer_change(22, "T3", status="store_approved"),
    )
    assert client.get("/api/v1/maintainers/transfers", headers=cashier).status_code == 403
    res = client.get("/api/v1/maintainers/transfers", headers=manager)
    shown = {t["transfer_id"]: t for t in res.json["transfers"]}
    assert set(shown) == {"T1", "T3"}
    assert (shown["T1"]["from_name"], shown["T1"]["to_name"], shown["T1"]["members"]) == (
        "王芳",
        "赵磊",
        2,
    )
    # HQ's outcome removes it
    send_down(with_registry, transfer_change(23, "T1", status="done"))
    res = client.get("/api/v1/maintainers/transfers", headers=manager)
    assert [t["transfer_id"] for t in res.json["transfers"]] == ["T3"]


def test_a_managers_approval_goes_up_as_one_item(with_registry, client, manager):
    send_down(with_registry, transfer_change(20, "T1"))
    res = client.post("/api/v1/maintainers/transfers/T1/approve", headers=manager, json={})
    assert res.status_code == 201, res.json
    assert res.json["transfer"]["decision"] == "approve"
    item = json.loads(Outbox.select().where(Outbox.kind == "staff_decision").get().payload)
    assert item["body"] == {
        "transfer_id": "T1",
        "decision": "approve",
        "decided_at": "2026-11-23T10:00:00+08:00",
        "approved_by": "9001",
        "cashier": "9001",
        "reason": "",
    }
    p.validate_item(item)
    again = client.post("/api/v1/maintainers/transfers/T1/approve", headers=manager, json={})
    assert again.status_code == 409 and "等待总部" in again.json["message"]
    assert Outbox.select().where(Outbox.kind == "staff_decision").count() == 1


def test_a_cashier_with_the_managers_pin_may_reject_with_a_reason(with_registry, client, cashier):
    send_down(with_registry, transfer_change(20, "T1"))
    url = "/api/v1/maintainers/transfers/T1/reject"
    manager_pin = {"code": "9001", "pin": "9999"}
    assert client.post(url, headers=cashier, json={"reason": "x"}).status_code == 403
    res = client.post(url, headers=cashier, json={"manager": manager_pin})
    assert res.status_code == 400 and res.json["field"] == "reason"
    res = client.post(url, headers=cashier, json={"manager": manager_pin, "reason": "会员不同意"})
    assert res.status_code == 201, res.json
    body = json.loads(Outbox.select().where(Outbox.kind == "staff_decision").get().payload)["body"]
    assert (body["decision"], body["approved_by"], body["cashier"], body["reason"]) == (
        "reject",
        "9001",
        "1001",
        "会员不同意",
    )


@pytest.mark.parametrize(
    ("tid", "status", "code"),
    [("NOPE", None, 404), ("T3", "store_approved", 409)],
)
def test_only_a_pending_transfer_of_this_store_is_decided(
    with_registry, client, manager, tid, status, code
):
    send_down(with_registry, transfer_change(20, "T3", status="store_approved"))
    res = client.post(f"/api/v1/maintainers/transfers/{tid}/approve", headers=manager, json={})
    assert res.status_code == code, res.json
    assert res.json["field"] == "transfer_id"
    assert Outbox.select().where(Outbox.kind == "staff_decision").count() == 0


def test_the_members_new_maintainer_arrives_as_a_member_change(with_registry, client):
    headers = sign_in(client)
    res = register(client, headers, "E01")
    member_id = res.json["member"]["member_id"]
    member = Member.get_by_id(member_id)
    assert member.staff_code == "E01"
    data = {
        "member_id": member_id,
        "name": member.name,
        "phone": None,
        "staff_code": "E09",
        "registered_at": member.registered_at,
        "registered_store": STORE,
        "status": "active",
        "stored_value": {"principal": 0, "bonus": 0},
        "points_debt": 0,
        "points_lots": [],
        "through": {},
    }
    send_down(with_registry, p.Change(30, "member", member_id, "upsert", data))
    assert Member.get_by_id(member_id).staff_code == "E09"


# ---- asking for a transfer at the till ------------------------------------------------


def test_any_staff_member_may_ask_for_a_transfer_which_goes_up_as_one_item(
    with_registry, client, cashier
):
    member_id = register(client, cashier, "E01").json["member"]["member_id"]
    url = "/api/v1/maintainers/transfers"
    ask = {"from_staff": "E01", "to_staff": "E09", "member_ids": [member_id], "reason": "搬家"}
    res = client.post(url, headers=cashier, json=ask)
    assert res.status_code == 201, res.json
    item = json.loads(Outbox.select().where(Outbox.kind == "staff_request").get().payload)
    p.validate_item(item)
    assert item["body"] | {"transfer_id": "-"} == {
        "transfer_id": "-",
        "from_staff": "E01",
        "to_staff": "E09",
        "member_ids": [member_id],
        "reason": "搬家",
        "requested_by": "1001",
        "requested_at": "2026-11-23T10:00:00+08:00",
    }
    assert res.json["transfer"]["transfer_id"] == item["body"]["transfer_id"]
    # the member stays with E01 until HQ applies it and the manager approves
    assert Member.get_by_id(member_id).staff_code == "E01"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to_staff": "E02"}, "to_staff"),  # leaving: takes no members
        ({"to_staff": "X99"}, "to_staff"),
        ({"to_staff": "E01"}, "to_staff"),  # the same
        ({"reason": " "}, "reason"),
        ({"from_staff": "E03"}, "member_ids"),  # not this member's maintainer
        ({"member_ids": ["not-a-uuid"]}, "member_ids[0]"),
        ({"member_ids": []}, "member_ids"),
        ({"from_staff": None}, "from_staff"),
    ],
)
def test_a_bad_transfer_request_is_refused_at_the_till(
    with_registry, client, cashier, change, field
):
    member_id = register(client, cashier, "E01").json["member"]["member_id"]
    ask = {"from_staff": "E01", "to_staff": "E09", "member_ids": [member_id], "reason": "搬家"}
    res = client.post("/api/v1/maintainers/transfers", headers=cashier, json=ask | change)
    assert res.status_code == 400, res.json
    assert res.json["field"] == field
    assert Outbox.select().where(Outbox.kind == "staff_request").count() == 0
