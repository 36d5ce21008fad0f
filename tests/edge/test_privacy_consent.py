"""Marketing consent at the till (PIPL): asked at registration, changeable later; each
answer goes to HQ in the outbox, never assumed."""

from __future__ import annotations

import json

import pytest

from core.protocol import validate_item
from edge.models import Member, Outbox


def last_item(kind: str) -> dict:
    row = Outbox.select().where(Outbox.kind == kind).order_by(Outbox.seq.desc()).first()
    return json.loads(row.payload)


def register(client, headers, phone: str, **extra):
    return client.post(
        "/api/v1/members", headers=headers, json={"name": "钱七", "phone": phone, **extra}
    )


def test_consent_at_registration_goes_to_hq_and_defaults_to_none(client, cashier):
    res = register(client, cashier, "13700002001", consent={"sms": True, "call": False})
    assert res.status_code == 201, res.json
    item = last_item("registration")
    assert item["body"]["consent"] == {"sms": True, "wechat": False, "call": False}
    validate_item(item)  # what HQ checks
    res = register(client, cashier, "13700002002")
    assert res.status_code == 201
    assert last_item("registration")["body"]["consent"] == {
        "sms": False,
        "wechat": False,
        "call": False,
    }


@pytest.mark.parametrize(
    "consent",
    [{"sms": "yes"}, {"email": True}, ["sms"], "all", {"sms": 1}],
)
def test_a_bad_consent_at_registration_is_a_400_naming_it(client, cashier, consent):
    before = Outbox.select().count()
    res = register(client, cashier, "13700002003", consent=consent)
    assert res.status_code == 400 and res.json["field"] == "consent", res.json
    assert Outbox.select().count() == before
    assert Member.select().where(Member.name == "钱七").count() == 0


def test_consent_changed_at_the_till_by_a_cashier(client, cashier):
    member_id = register(client, cashier, "13700002004").json["member"]["member_id"]
    res = client.put(
        f"/api/v1/members/{member_id}/consent", headers=cashier, json={"consent": {"wechat": True}}
    )
    assert res.status_code == 200, res.json
    assert (res.json["member_id"], res.json["consent"]) == (member_id, {"wechat": True})
    item = last_item("consent")
    assert item["seq"] == res.json["seq"]
    assert item["body"]["consent"] == {"wechat": True}
    assert item["body"]["cashier"] == "1001"
    validate_item(item)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"consent": {}}, 400, "consent"),
        ({"consent": {"fax": True}}, 400, "consent"),
        ({"consent": {"sms": None}}, 400, "consent"),
        ({}, 400, "consent"),
    ],
)
def test_a_bad_consent_change_is_a_4xx(client, cashier, body, status, field):
    member_id = register(client, cashier, "13700002005").json["member"]["member_id"]
    res = client.put(f"/api/v1/members/{member_id}/consent", headers=cashier, json=body)
    assert res.status_code == status and res.json["field"] == field, res.json


def test_consent_change_needs_a_signed_in_staff_member_and_a_known_member(client, cashier):
    res = client.put(
        "/api/v1/members/01a20000-0000-7000-8000-00000000beef/consent",
        headers=cashier,
        json={"consent": {"sms": True}},
    )
    assert res.status_code == 404
    res = client.put(
        "/api/v1/members/01a20000-0000-7000-8000-00000000beef/consent",
        json={"consent": {"sms": True}},
    )
    assert res.status_code == 401
