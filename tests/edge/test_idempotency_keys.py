"""Issue 9 defect 9: an idempotency key answers "replayed" only for the same request. A
``topup_id`` reused for another member or amount, or a ``return_id`` reused with other
lines, is a 409 naming the key (as a reused ``sale_id`` is); the same request again still
gets the first answer, and nothing is committed twice."""

from __future__ import annotations

from edge.models import Ledger, SaleReturn, TopUp

TOPUP_ID = "0190f5e2-7a39-7c1e-9a52-3f4e5d6c7b8a"
RETURN_ID = "0190f5e2-7a39-7c1e-9a52-3f4e5d6c7b8b"


def _topup(client, headers, card="C0001", amount=10000):
    return client.post(
        "/api/v1/topups",
        headers=headers,
        json={"member": {"card_no": card}, "amount": amount, "topup_id": TOPUP_ID},
    )


def test_the_same_topup_again_is_replayed_once(client, cashier):
    first = _topup(client, cashier)
    assert first.status_code == 201, first.json
    again = _topup(client, cashier)
    assert again.status_code == 200 and again.json["replayed"] is True
    assert again.json["principal"] == first.json["principal"]
    assert TopUp.select().count() == 1
    assert Ledger.select().where(Ledger.ref == TOPUP_ID).count() == 1


def test_a_topup_id_reused_for_another_amount_is_a_409(client, cashier):
    assert _topup(client, cashier).status_code == 201
    res = _topup(client, cashier, amount=10**6)
    assert res.status_code == 409, res.json
    assert res.json["field"] == "topup_id" and "amount" in res.json["message"]
    assert TopUp.get_by_id(TOPUP_ID).principal == 10000


def test_a_topup_id_reused_for_another_member_is_a_409(client, cashier):
    assert _topup(client, cashier).status_code == 201
    res = _topup(client, cashier, card="C0002")
    assert res.status_code == 409, res.json
    assert res.json["field"] == "topup_id" and "member" in res.json["message"]
    assert TopUp.select().count() == 1


def _sale(client, headers) -> str:
    res = client.post(
        "/api/v1/sales",
        headers=headers,
        json={
            "lines": [{"sku": "P0002", "qty": 3}, {"sku": "P0003"}],
            "tenders": [{"kind": "cash", "amount": 100000}],
        },
    )
    assert res.status_code == 201, res.json
    return res.json["sale_id"]


def _return(client, headers, sale_id, lines=None):
    body = {"return_id": RETURN_ID}
    if lines is not None:
        body["lines"] = lines
    return client.post(f"/api/v1/sales/{sale_id}/returns", headers=headers, json=body)


def test_the_same_return_again_is_replayed_once(client, manager):
    sale_id = _sale(client, manager)
    lines = [{"line_no": 1, "qty": 1}]
    assert _return(client, manager, sale_id, lines).status_code == 201
    again = _return(client, manager, sale_id, lines)
    assert again.status_code == 200 and again.json["replayed"] is True
    assert SaleReturn.select().count() == 1


def test_a_return_id_reused_with_other_lines_is_a_409(client, manager):
    sale_id = _sale(client, manager)
    assert _return(client, manager, sale_id, [{"line_no": 1, "qty": 1}]).status_code == 201
    for other in ([{"line_no": 1, "qty": 2}], [{"line_no": 2, "qty": 1}], None):
        res = _return(client, manager, sale_id, other)
        assert res.status_code == 409, (other, res.json)
        assert res.json["field"] == "return_id" and "lines" in res.json["message"]
    assert SaleReturn.select().count() == 1


def test_a_full_return_replayed_as_a_full_return_is_the_same(client, manager):
    sale_id = _sale(client, manager)
    assert _return(client, manager, sale_id).status_code == 201
    again = _return(client, manager, sale_id)
    assert again.status_code == 200 and again.json["replayed"] is True
    # naming exactly the lines it took back is the same request too
    same = _return(client, manager, sale_id, [{"line_no": 2, "qty": 1}, {"line_no": 1, "qty": 3}])
    assert same.status_code == 200, same.json
    assert _return(client, manager, sale_id, [{"line_no": 1, "qty": 3}]).status_code == 409
