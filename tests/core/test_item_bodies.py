"""Every up item body is typed and checked by kind (core.protocol, "up item bodies")."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from core import protocol as p
from core.errors import ProtocolError
from core.ids import uuid7

GOLDEN = Path(__file__).resolve().parents[1] / "edge" / "golden" / "checkout.json"
MEMBER = uuid7()


def _plain(value):  # noqa: ANN001, ANN202 - the golden file's own encoding of keys and tuples
    if isinstance(value, dict):
        if "__tuple__" in value:
            return [_plain(v) for v in value["__tuple__"]]
        return {k: _plain(v) for k, v in value.items() if k != "__keys__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def golden_sales() -> list[dict]:
    """The sale bodies real checkouts wrote (ids stand in for the golden file's markers)."""
    out = []
    for result in json.loads(GOLDEN.read_text())["results"]:
        if not isinstance(result, dict) or "sale" not in result:
            continue
        body = _plain(result["sale"])
        body["sale_id"] = uuid7()
        if body["member_id"]:
            body["member_id"] = MEMBER
            body["pricing_input"]["member"]["member_id"] = MEMBER
        out.append(body)
    return out


def test_the_sales_real_tills_send_are_valid():
    bodies = golden_sales()
    assert len(bodies) > 5
    assert any(b["member_id"] for b in bodies) and any(
        b["stored_value"]["principal"] for b in bodies
    )
    for body in bodies:
        p.validate_sale_body(body)


SALE = golden_sales()[0]
RETURN = {
    "return_id": uuid7(),
    "sale_id": uuid7(),
    "member_id": MEMBER,
    "cashier": "1001",
    "approved_by": "9001",
    "lines": [{"line_no": 1, "sku": "P0009", "name": "苹果", "qty": 1, "amount": 795}],
    "refund_total": 795,
    "tenders": [{"kind": "cash", "amount": 795}],
    "stored_value": {"principal": 0, "bonus": 0},
    "points_restored": 0,
    "points_lots_restored": [],
    "points_reversed": 0,
    "points_debt": 0,
}
TOPUP = {
    "topup_id": uuid7(),
    "member_id": MEMBER,
    "principal": 50000,
    "bonus": 10000,
    "tender": "cash",
    "cashier": "1001",
}
REGISTRATION = {
    "member_id": MEMBER,
    "name": "张三",
    "phone": "13800000001",
    "gender": "M",
    "birthday": None,
    "birthday_calendar": "solar",
    "birthday_leap_month": False,
    "card_no": "C0001",
    "card_type": "金卡",
    "staff_code": "1001",
    "password_hash": None,
    "cashier": "1001",
    "registered_at": "2026-11-23T10:00:00+08:00",
}
BODIES = {"sale": SALE, "return": RETURN, "topup": TOPUP, "registration": REGISTRATION}


def _with(body: dict, path: str, value: object) -> dict:
    out = copy.deepcopy(body)
    target = out
    *parents, last = path.split(".")
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    elif value is KeyError:
        del target[last]
    else:
        target[last] = value
    return out


@pytest.mark.parametrize("kind", list(BODIES))
def test_each_kind_accepts_what_its_till_sends(kind):
    raw = {
        "v": 1,
        "store": "S001",
        "seq": 1,
        "id": uuid7(),
        "kind": kind,
        "occurred_at": "2026-11-23T10:00:00+08:00",
        "rules_version": 1,
        "body": BODIES[kind],
    }
    assert p.validate_item(raw).body == BODIES[kind]


@pytest.mark.parametrize(
    ("kind", "path", "value", "field"),
    [
        ("sale", "stored_value.principal", -50000, "principal"),
        ("sale", "stored_value.bonus", "1", "bonus"),
        ("sale", "points_earned", -1, "points_earned"),
        ("sale", "points_used", p.MAX_AMOUNT + 1, "points_used"),
        ("sale", "total", 2**63, "total"),
        ("sale", "change", True, "change"),
        ("sale", "tenders.0.kind", "coupon", "kind"),
        ("sale", "tenders.0.amount", 0, "amount"),
        ("sale", "points_lots_used", [["lot", -5]], "points"),
        ("sale", "points_lots_used", [["x" * 65, 5]], "lot_id"),
        ("sale", "pricing_input.lines.0.qty", 0, "qty"),
        ("sale", "pricing_input.order_discount_rate", 1001, "order_discount_rate"),
        ("sale", "lines.0.amount", -1, "amount"),
        ("sale", "member_id", "not-a-uuid", "member_id"),
        ("sale", "card_no", "9" * 300_000, "card_no"),
        ("sale", "cashier", "", "cashier"),
        ("sale", "offline", "no", "offline"),
        ("sale", "lines", [], "lines"),
        ("return", "refund_total", -77700, "refund_total"),
        ("return", "stored_value", {"principal": 77700}, "bonus"),
        ("return", "points_reversed", -1, "points_reversed"),
        ("return", "points_debt", KeyError, "points_debt"),
        ("return", "lines.0.qty", 100_000, "qty"),
        ("return", "sale_id", "", "sale_id"),
        ("topup", "principal", -50000, "principal"),
        ("topup", "principal", 0, "principal"),
        ("topup", "bonus", -1, "bonus"),
        ("topup", "tender", "stored_value", "tender"),
        ("registration", "name", "张" * 256, "name"),
        ("registration", "card_no", "9" * 300_000, "card_no"),
        ("registration", "staff_code", "E" * 65, "staff_code"),
        ("registration", "gender", "X", "gender"),
        ("registration", "birthday_calendar", "mayan", "birthday_calendar"),
        ("registration", "member_id", "m1", "member_id"),
    ],
)
def test_a_bad_field_is_refused_by_name(kind, path, value, field):
    validate = p.BODY_VALIDATORS[kind]
    with pytest.raises(ProtocolError) as caught:
        validate(_with(BODIES[kind], path, value), f"{kind} body")
    assert caught.value.field == field, caught.value.message
