"""The API behind the cashier's basket and payment: products found by code, name, pinyin
or initials; parked sales (挂单/取单); the discount approval a quote asks for; the offline
banner's figures."""

from __future__ import annotations

from edge.models import Outbox, ParkedSale, Product
from edge.services import products as product_svc

WATER, MILK, OIL = "P0001", "P0002", "P0003"


def _search(client, headers, q):
    res = client.get("/api/v1/products", headers=headers, query_string={"q": q})
    assert res.status_code == 200, res.json
    return res.json


def test_a_barcode_or_sku_is_an_exact_match(client, cashier):
    by_barcode = _search(client, cashier, "6901234567001")
    assert by_barcode["exact"]["sku"] == WATER
    assert [p["sku"] for p in by_barcode["products"]] == [WATER]
    assert _search(client, cashier, "P0002")["exact"]["name"].startswith("蒙牛")


def test_a_name_pinyin_or_initials_finds_products(client, cashier):
    assert [p["sku"] for p in _search(client, cashier, "农夫")["products"]] == [WATER]
    for q in ("nfsq", "NFSQ", "nongfu", "shanquan"):
        found = _search(client, cashier, q)
        assert found["exact"] is None
        assert [p["sku"] for p in found["products"]] == [WATER], q
    # several matches: the screen lists them to pick from
    assert {p["sku"] for p in _search(client, cashier, "kl")["products"]} >= {"P0006", "P0007"}
    assert _search(client, cashier, "zzzzqqq")["products"] == []


def test_products_written_before_the_search_keys_are_found_too(client, cashier):
    Product.update(name_pinyin=None, name_initials=None).execute()
    assert [p["sku"] for p in _search(client, cashier, "wcdm")["products"]] == ["P0010"]
    assert Product.select().where(Product.name_pinyin.is_null()).count() == 0


def test_a_product_name_is_read_as_text_not_as_a_surname():
    assert product_svc.search_keys("单车 (城市款)") == {
        "name_pinyin": "danchechengshikuan",
        "name_initials": "dccsk",
    }


def test_park_list_and_recall(client, cashier):
    basket = {
        "lines": [{"sku": WATER, "qty": 3}, {"sku": OIL, "line_discount": 100}],
        "member": {"card_no": "C0001"},
        "order_discount_rate": 950,
        "note": "顾客去取钱包",
    }
    res = client.post("/api/v1/parked", headers=cashier, json=basket)
    assert res.status_code == 201, res.json
    parked = res.json["parked"]
    quote = client.post(
        "/api/v1/sales/quote",
        headers=cashier,
        json={k: v for k, v in basket.items() if k != "note"},
    ).json
    assert parked["total"] == quote["total"]
    assert parked["lines"] == [
        {"sku": WATER, "qty": 3, "line_discount": 0},
        {"sku": OIL, "qty": 1, "line_discount": 100},
    ]
    assert parked["discounts"]["order_discount_rate"] == 950
    assert parked["member_id"] == quote["member"]["member_id"]
    assert parked["parked_by"] == "1001" and parked["note"] == "顾客去取钱包"
    assert parked["items"] == 4 and parked["line_count"] == 2

    listed = client.get("/api/v1/parked", headers=cashier).json["parked"]
    assert [p["id"] for p in listed] == [parked["id"]]
    assert listed[0]["member_name"] == "张*"  # masked, as the member panel shows it

    recalled = client.delete(f"/api/v1/parked/{parked['id']}", headers=cashier)
    assert recalled.status_code == 200 and recalled.json["parked"] == parked
    assert client.get("/api/v1/parked", headers=cashier).json["parked"] == []
    again = client.delete(f"/api/v1/parked/{parked['id']}", headers=cashier)
    assert again.status_code == 404 and "已被取走" in again.json["message"]


def test_parking_checks_the_basket_as_a_quote_does(client, cashier):
    empty = client.post("/api/v1/parked", headers=cashier, json={"lines": []})
    assert empty.status_code == 400 and "购物篮是空的" in empty.json["message"]
    unknown = client.post("/api/v1/parked", headers=cashier, json={"lines": [{"sku": "NOPE"}]})
    assert unknown.status_code == 404
    note = client.post(
        "/api/v1/parked", headers=cashier, json={"lines": [{"sku": WATER}], "note": 7}
    )
    assert note.status_code == 400 and note.json["field"] == "note"
    assert ParkedSale.select().count() == 0


def test_parked_sales_are_limited(client, cashier, monkeypatch):
    from edge.routes import parked as parked_routes

    monkeypatch.setattr(parked_routes, "MAX_PARKED", 2)
    for _ in range(2):
        ok = client.post("/api/v1/parked", headers=cashier, json={"lines": [{"sku": WATER}]})
        assert ok.status_code == 201
    full = client.post("/api/v1/parked", headers=cashier, json={"lines": [{"sku": WATER}]})
    assert full.status_code == 409 and "挂单已满" in full.json["message"]


def test_a_quote_names_the_approval_a_discount_needs(client, cashier, manager):
    big = {"lines": [{"sku": OIL}], "order_discount_rate": 500}
    asked = client.post("/api/v1/sales/quote", headers=cashier, json=big)
    assert asked.status_code == 200 and "手工折扣超过" in asked.json["manager_needed"]
    wrong = client.post(
        "/api/v1/sales/quote",
        headers=cashier,
        json=big | {"manager": {"code": "9001", "pin": "0000"}},
    )
    assert wrong.status_code == 403 and wrong.json["field"] == "manager"
    approved = client.post(
        "/api/v1/sales/quote",
        headers=cashier,
        json=big | {"manager": {"code": "9001", "pin": "9999"}},
    )
    assert approved.status_code == 200 and approved.json["manager_needed"] is None
    as_manager = client.post("/api/v1/sales/quote", headers=manager, json=big)
    assert as_manager.json["manager_needed"] is None
    small = client.post("/api/v1/sales/quote", headers=cashier, json={"lines": [{"sku": OIL}]})
    assert small.json["manager_needed"] is None
    adjusted = client.post(
        "/api/v1/sales/quote",
        headers=manager,
        json={"lines": [{"sku": OIL}], "manual_adjustment": 90},
    )
    assert adjusted.json["manager_needed"] == "折让"  # a 折让 is always approved, by name


def test_status_tells_the_age_of_the_oldest_unsent_item(client, cashier):
    sale = client.post(
        "/api/v1/sales",
        headers=cashier,
        json={"lines": [{"sku": WATER}], "tenders": [{"kind": "cash", "amount": 200}]},
    )
    assert sale.status_code == 201
    status = client.get("/api/v1/status", headers=cashier).json
    oldest = Outbox.select().where(Outbox.acked == False).order_by(Outbox.seq).first()  # noqa: E712
    assert status["outbox"]["pending"] >= 1
    assert status["outbox"]["oldest_pending_at"] == oldest.occurred_at
    assert status["now"]
