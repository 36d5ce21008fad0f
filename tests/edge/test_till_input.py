"""Issue 9 defects 5 and 8, till side: every text field of every till route is capped and
checked at the boundary, so an oversized, mistyped or unencodable value is a 4xx naming
the field (and the limit), before anything is committed; never a 201 or a 500."""

from __future__ import annotations

import json

import pytest

from edge.models import Card, Member, SaleReturn, TopUp
from tests.edge.conftest import sign_in

HUGE = "1" * 300_000
LONE = "\ud800"  # a lone surrogate: valid in JSON text, not encodable as UTF-8


def _sale(client, headers) -> str:
    res = client.post(
        "/api/v1/sales",
        headers=headers,
        json={
            "lines": [{"sku": "P0002", "qty": 2}],
            "tenders": [{"kind": "cash", "amount": 20000}],
        },
    )
    assert res.status_code == 201, res.json
    return res.json["sale_id"]


def _post(client, path: str, headers: dict[str, str], payload: object):
    """As a till sends it: JSON text with \\u escapes (which may spell a lone surrogate)."""
    return client.post(
        path, headers=headers, data=json.dumps(payload), content_type="application/json"
    )


def _refused(res, field: str, status: int = 400) -> dict:
    assert res.status_code == status, (res.status_code, res.json)
    assert res.json["field"] == field, res.json
    assert res.json["message"]
    assert len(res.json["message"]) < 300  # the refusal never repeats a pasted text back
    return res.json


def test_a_300k_card_no_is_refused_naming_the_limit_and_nothing_is_registered(client, cashier):
    members = Member.select().count()
    res = client.post(
        "/api/v1/members",
        headers=cashier,
        json={"name": "李四", "phone": "13700000001", "card_no": HUGE},
    )
    body = _refused(res, "card_no")
    assert "64" in body["message"]
    assert Member.select().count() == members
    assert Card.get_or_none(Card.card_no == HUGE) is None


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        (
            "/api/v1/members",
            {"name": "李四", "phone": "13700000001", "staff_code": HUGE},
            "staff_code",
        ),
        ("/api/v1/members", {"name": "李" * 40, "phone": "13700000001"}, "name"),
        ("/api/v1/members", {"name": "李四", "phone": "1" * 5000}, "phone"),
        (
            "/api/v1/members",
            {"name": "李四", "phone": "13700000001", "birthday": "1" * 5000},
            "birthday",
        ),
        (
            "/api/v1/members",
            {"name": "李四", "phone": "13700000001", "card_type": "金" * 300},
            "card_type",
        ),
        ("/api/v1/sales/quote", {"lines": [{"sku": "P" * 65}]}, "lines[0].sku"),
        ("/api/v1/sales/quote", {"lines": [{"barcode": "6" * 65}]}, "lines[0].barcode"),
        (
            "/api/v1/sales/quote",
            {"lines": [{"sku": "P0002"}], "member": {"phone": HUGE}},
            "member.phone",
        ),
        (
            "/api/v1/sales",
            {
                "lines": [{"sku": "P0002"}],
                "tenders": [{"kind": "cash", "amount": 20000}],
                "member_password": "1" * 65,
            },
            "member_password",
        ),
        (
            "/api/v1/sales",
            {
                "lines": [{"sku": "P0002"}],
                "tenders": [{"kind": "cash", "amount": 20000}],
                "manual_adjustment": 10,
                "manager": {"code": HUGE, "pin": "9999"},
            },
            "manager.code",
        ),
        (
            "/api/v1/topups",
            {"member": {"card_no": "C0001"}, "amount": 100, "topup_id": HUGE},
            "topup_id",
        ),
        ("/api/v1/session", {"staff_code": HUGE, "pin": "1234"}, "staff_code"),
        # a field nobody reads is capped too: no request carries a 300 KB text
        ("/api/v1/sales/quote", {"lines": [{"sku": "P0002"}], "note": HUGE}, "note"),
    ],
)
def test_every_text_field_is_capped(client, cashier, path, payload, field):
    _refused(_post(client, path, cashier, payload), field)


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/api/v1/session", {"staff_code": LONE, "pin": "1234"}, "staff_code"),
        ("/api/v1/sales/quote", {"lines": [{"sku": LONE}]}, "lines[0].sku"),
        (
            "/api/v1/sales/quote",
            {"lines": [{"sku": "P0002"}], "member": {"card_no": LONE}},
            "member.card_no",
        ),
        (
            "/api/v1/topups",
            {"member": {"card_no": "C0001"}, "amount": 100, "topup_id": LONE},
            "topup_id",
        ),
        (
            "/api/v1/members",
            {"name": "李四", "phone": "13700000001", "card_type": ["金卡"]},
            "card_type",
        ),
        (
            "/api/v1/members",
            {"name": "李四", "phone": "13700000001", "card_type": {"a": 1}},
            "card_type",
        ),
        ("/api/v1/members", {"name": "李四", "phone": "13700000001", "gender": ["M"]}, "gender"),
        (
            "/api/v1/members",
            {
                "name": "李四",
                "phone": "13700000001",
                "birthday": "1990-01-01",
                "birthday_calendar": [],
            },
            "birthday_calendar",
        ),
        (
            "/api/v1/sales",
            {"lines": [{"sku": "P0002"}], "tenders": [{"kind": ["cash"], "amount": 20000}]},
            "tenders[0].kind",
        ),
        (
            "/api/v1/sales",
            {"lines": [{"sku": "P0002"}], "tenders": [{"kind": {"k": "cash"}, "amount": 20000}]},
            "tenders[0].kind",
        ),
        (
            "/api/v1/sales/quote",
            {"lines": [{"sku": "P0002"}], LONE: 1},
            LONE.encode("utf-8", "backslashreplace").decode(),
        ),
    ],
)
def test_unencodable_and_mistyped_values_are_a_400_naming_the_field(
    client, cashier, path, payload, field
):
    _refused(_post(client, path, cashier, payload), field)


def test_a_lone_surrogate_in_return_id_is_refused_and_nothing_is_returned(client, manager):
    sale_id = _sale(client, manager)
    res = _post(client, f"/api/v1/sales/{sale_id}/returns", manager, {"return_id": LONE})
    _refused(res, "return_id")
    assert SaleReturn.select().count() == 0


def test_a_lone_surrogate_topup_id_commits_nothing(client, cashier):
    res = _post(
        client,
        "/api/v1/topups",
        cashier,
        {"member": {"card_no": "C0001"}, "amount": 100, "topup_id": LONE},
    )
    _refused(res, "topup_id")
    assert TopUp.select().count() == 0


@pytest.mark.parametrize(("path", "field"), [("/api/v1/products", "q"), ("/api/v1/members", "q")])
def test_a_70k_query_is_a_400_naming_q(client, cashier, path, field):
    res = client.get(path, headers=cashier, query_string={"q": "%" * 70_000})
    body = _refused(res, field)
    assert "100" in body["message"]


@pytest.mark.parametrize("path", ["/api/v1/products", "/api/v1/members"])
def test_a_nul_in_a_query_is_a_400(client, cashier, path):
    _refused(client.get(path, headers=cashier, query_string={"q": "a\x00b"}), "q")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sales/" + "S" * 200,
        "/api/v1/members/" + "M" * 200,
        "/api/v1/members/by-card/" + "C" * 200,
        "/api/v1/products/" + "P" * 200,
    ],
)
def test_long_path_ids_are_a_400(client, cashier, path):
    res = client.get(path, headers=cashier)
    assert res.status_code == 400, res.json
    assert "64" in res.json["message"]


def test_an_ordinary_search_still_works(client, cashier):
    res = client.get("/api/v1/products", headers=cashier, query_string={"q": "P0002"})
    assert res.status_code == 200 and res.json["products"]


def test_the_manager_sign_in_is_unaffected(client):
    assert sign_in(client, "9001", "9999")
