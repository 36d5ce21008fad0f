"""Returns through the till API: each return refunds each tender the way it was paid,
and what one return's receipt says is what goes back, to the fen."""

from __future__ import annotations

from edge.models import Ledger

OIL, APPLES = "P0003", "P0009"


def _member(client, headers, card="C0001"):
    return client.get(f"/api/v1/members/by-card/{card}", headers=headers).json["member"]


def _ret(client, headers, sale_id, **body):
    return client.post(f"/api/v1/sales/{sale_id}/returns", headers=headers, json=body)


def _ledger(ref: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in Ledger.select().where(Ledger.ref == ref):
        out[row.account] = out.get(row.account, 0) + row.delta
    return out


def test_each_return_refunds_its_total_exactly_over_cash_stored_value_and_points(
    client, cashier, manager
):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 50000}
    )
    earn = client.post(
        "/api/v1/sales",
        headers=cashier,
        json={
            "member": {"card_no": "C0001"},
            "lines": [{"sku": OIL, "qty": 10}],
            "tenders": [{"kind": "cash", "amount": 70000}],
        },
    )
    assert earn.status_code == 201, earn.json
    before = _member(client, cashier)
    res = client.post(
        "/api/v1/sales",
        headers=cashier,
        json={
            "member": {"card_no": "C0001"},
            "lines": [{"sku": OIL}, {"sku": APPLES, "qty": 3}],
            "tenders": [
                {"kind": "points", "amount": 500},
                {"kind": "stored_value", "amount": 3000},
                {"kind": "cash", "amount": 10000},
            ],
            "member_password": "123456",
        },
    )
    assert res.status_code == 201, res.json
    sale = res.json["sale"]
    paid = {t["kind"]: t["amount"] for t in sale["tenders"]}
    assert sum(paid.values()) == sale["total"]
    returns = [
        _ret(client, manager, res.json["sale_id"], lines=[{"line_no": 2, "qty": 1}]),
        _ret(client, manager, res.json["sale_id"], lines=[{"line_no": 2, "qty": 1}]),
        _ret(client, manager, res.json["sale_id"]),
    ]
    back = dict.fromkeys(paid, 0)
    for r in returns:
        assert r.status_code == 201, r.json
        ret = r.json["return"]
        tenders = {t["kind"]: t["amount"] for t in ret["tenders"]}
        # the drawer, the balances and the receipt all say the same as the goods returned
        assert sum(tenders.values()) == ret["refund_total"]
        assert sum(t["amount"] for t in r.json["receipt"]["tenders"]) == ret["refund_total"]
        sv = ret["stored_value"]
        assert sv["principal"] + sv["bonus"] == tenders.get("stored_value", 0)
        moved = _ledger(ret["return_id"])
        assert moved.get("sv_principal", 0) + moved.get("sv_bonus", 0) == tenders.get(
            "stored_value", 0
        )
        # 100 points pay one yuan: the points tender's fen come back as as many points
        assert ret["points_restored"] == tenders.get("points", 0)
        for kind, amount in tenders.items():
            back[kind] += amount
    assert back == paid
    after = _member(client, cashier)
    assert after["stored_value"] == before["stored_value"]
    assert after["points"] == before["points"]


def test_a_line_listed_twice_in_one_return_is_refused_clearly(client, cashier, manager):
    res = client.post(
        "/api/v1/sales",
        headers=cashier,
        json={
            "lines": [{"sku": APPLES, "qty": 3}],
            "tenders": [{"kind": "cash", "amount": 3000}],
        },
    )
    twice = _ret(
        client,
        manager,
        res.json["sale_id"],
        lines=[{"line_no": 1, "qty": 1}, {"line_no": 1, "qty": 1}],
    )
    assert twice.status_code == 400 and twice.json["field"] == "lines"
    assert twice.json["message"].startswith("第 1 行列了两次")
    line_amount = res.json["sale"]["lines"][0]["amount"]  # 3 × 7.99 after 抹零
    more = _ret(client, manager, res.json["sale_id"], lines=[{"line_no": 1, "qty": 2}])
    assert more.status_code == 201  # one line, two units: fine
    assert more.json["return"]["refund_total"] == line_amount * 2 // 3


def test_a_return_id_used_for_another_sale_is_a_conflict(client, cashier, manager):
    ids = []
    for _ in range(2):
        res = client.post(
            "/api/v1/sales",
            headers=cashier,
            json={"lines": [{"sku": OIL}], "tenders": [{"kind": "cash", "amount": 7000}]},
        )
        ids.append(res.json["sale_id"])
    return_id = "01a20bee-0000-7000-8000-000000000001"
    first = _ret(client, manager, ids[0], return_id=return_id)
    assert first.status_code == 201
    assert _ret(client, manager, ids[0], return_id=return_id).status_code == 200
    other = _ret(client, manager, ids[1], return_id=return_id)
    assert other.status_code == 409 and other.json["field"] == "return_id"
