"""Discounts typed in by hand: a cashier may give up to the store's limit, past it a
manager signs in or approves with a PIN, as for a 折让."""

from __future__ import annotations

from edge.api import create_app
from edge.demo_data import load_demo
from edge.services.context import open_till
from tests.edge.conftest import make_config, sign_in

OIL = "P0003"  # 69.90, no promotion; walk-in sales, so no member discount
CASH = [{"kind": "cash", "amount": 100000}]


def _sale(client, headers, **body):
    return client.post(
        "/api/v1/sales", headers=headers, json={"lines": [{"sku": OIL}], "tenders": CASH} | body
    )


def test_a_cashier_gives_up_to_ten_percent_by_hand(client, cashier):
    line = _sale(client, cashier, lines=[{"sku": OIL, "line_discount": 699}])
    assert line.status_code == 201, line.json
    assert line.json["sale"]["approved_by"] is None
    order = _sale(client, cashier, order_discount_rate=900)
    assert order.status_code == 201, order.json


def test_past_the_limit_a_cashier_needs_a_manager(client, cashier, manager):
    for body in (
        {"lines": [{"sku": OIL, "line_discount": 700}]},
        {"order_discount_rate": 899},
        {"lines": [{"sku": OIL, "line_discount": 400}], "order_discount_rate": 950},
        {"order_discount_rate": 0},
    ):
        refused = _sale(client, cashier, **body)
        assert refused.status_code == 403, (body, refused.json)
        assert refused.json["field"] == "manager"
        assert refused.json["message"].startswith("手工折扣超过小计的10%需要店长授权")
        approved = _sale(client, cashier, manager={"code": "9001", "pin": "9999"}, **body)
        assert approved.status_code == 201, approved.json
        assert approved.json["sale"]["approved_by"] == "9001"
        assert approved.json["sale"]["cashier"] == "1001"
        by_manager = _sale(client, manager, **body)
        assert by_manager.status_code == 201, by_manager.json


def test_a_store_can_require_a_manager_for_every_hand_discount(tmp_path, clock):
    till = open_till(
        make_config(tmp_path, till={"cashier_discount_limit": 0}), clock=clock, create_key=True
    )
    try:
        load_demo(till, members=2)
        client = create_app(till).test_client()
        cashier = sign_in(client)
        res = _sale(client, cashier, lines=[{"sku": OIL, "line_discount": 1}])
        assert res.status_code == 403 and "小计的0%" in res.json["message"]
        assert _sale(client, cashier).status_code == 201
        # member discounts and promotion prices come from the rules: not hand discounts
        member = _sale(
            client, cashier, member={"card_no": "C0001"}, lines=[{"sku": OIL}, {"sku": "P0002"}]
        )
        assert member.status_code == 201, member.json
        assert member.json["sale"]["member_discount"] > 0
        assert member.json["sale"]["lines"][1]["promo"] is True
    finally:
        till.db.close()


def test_the_limit_is_validated():
    from edge.config import config_problems

    _, problems = config_problems({"till": {"cashier_discount_limit": 1001}})
    assert any(p.startswith("till.cashier_discount_limit") for p in problems)
