"""Returns and receipts through the till API (docs/till-screen.md, "Returns and receipts"):
a sale found again by the receipt number its barcode carries (or typed short), by its
member, or among the day's sales; a return previewed to the fen before the manager
approves it; the return slip reading as a refund with the points taken back once,
negative; a reprint marked 重打."""

from __future__ import annotations

from core.receipt import Receipt
from edge.devices.escpos_decode import decode
from edge.devices.profiles import ProfileLibrary
from edge.devices.receipt_render import RenderOptions, layout_receipt, render
from edge.models import Sale
from tests.edge.conftest import sign_in

OIL, APPLES, MILK = "P0003", "P0009", "P0002"
P80 = ProfileLibrary().load("virtual_printer_80mm")


def _sale(client, headers, lines, tenders, card="C0001", **more):
    body = {"lines": lines, "tenders": tenders, **more}
    if card:
        body["member"] = {"card_no": card}
    res = client.post("/api/v1/sales", headers=headers, json=body)
    assert res.status_code == 201, res.json
    return res.json


def _find(client, headers, **query):
    return client.get("/api/v1/sales", headers=headers, query_string=query)


def test_a_sale_is_found_by_the_number_its_receipt_prints_and_carries_as_a_barcode(
    client, cashier, demo_till
):
    sale = _sale(client, cashier, [{"sku": OIL}], [{"kind": "cash", "amount": 10000}])
    receipt = sale["receipt"]
    number = receipt["barcode"]
    assert number == f"S001-{sale['outbox_seq']:06d}" == receipt["document_no"]
    printed = decode(render(layout_receipt(Receipt.from_dict(receipt), 48), P80, RenderOptions()))
    assert printed.barcodes == [number]
    assert any(line.startswith("单号:") and line.endswith(number) for line in printed.lines)
    for typed in (number, number.lower(), str(sale["outbox_seq"]), f"{sale['outbox_seq']:06d}"):
        res = _find(client, cashier, receipt_no=typed)
        assert res.status_code == 200, (typed, res.json)
        (found,) = res.json["sales"]
        assert found["sale_id"] == sale["sale_id"] and found["receipt_no"] == number
    assert found["cashier"] == receipt["cashier"] and found["member"]["card_no_tail"] == "0001"
    assert found["lines"] == [
        {
            "line_no": 1,
            "sku": OIL,
            "name": "金龙鱼调和油 5L",
            "qty": 1,
            "returned_qty": 0,
            "left": 1,
            "amount": sale["total"],
            "refundable": sale["total"],
        }
    ]
    assert found["tenders"] == [{"kind": "cash", "label": "现金", "amount": sale["total"]}]


def test_receipt_numbers_that_name_no_sale_here_say_why_in_chinese(client, cashier, manager):
    sale = _sale(client, cashier, [{"sku": OIL, "qty": 2}], [{"kind": "cash", "amount": 20000}])
    ret = client.post(
        f"/api/v1/sales/{sale['sale_id']}/returns",
        headers=manager,
        json={"lines": [{"line_no": 1, "qty": 1}]},
    )
    assert ret.status_code == 201, ret.json
    slip_no = ret.json["receipt"]["document_no"]
    for query, status, words in (
        ({"receipt_no": "S002-000001"}, 404, "不是本店"),
        ({"receipt_no": "99999"}, 404, "不存在"),
        ({"receipt_no": "abc"}, 400, "小票号格式不对"),
        ({"receipt_no": "0"}, 400, "小票号格式不对"),
        ({"receipt_no": slip_no}, 404, "是退款单"),
        ({"receipt_no": "1", "member_id": "x"}, 400, "只能选一种"),
        ({"limit": "0", "member_id": "x"}, 400, "limit 须为"),
        ({"member_id": "nobody"}, 404, "会员不存在"),
        ({"per_page": "51"}, 400, "per_page 须为"),
        ({"colour": "red"}, 400, "不认识的查询参数"),
    ):
        res = _find(client, cashier, **query)
        assert res.status_code == status and words in res.json["message"], (query, res.json)
    # the return slip's message names the sale's own number, which finds it
    original = _find(client, cashier, receipt_no=slip_no).json["message"]
    assert sale["receipt"]["barcode"] in original


def test_a_members_newest_sales_and_the_days_sales_page_by_page(client, cashier, clock):
    first = _sale(client, cashier, [{"sku": OIL}], [{"kind": "cash", "amount": 10000}])
    _sale(client, cashier, [{"sku": APPLES}], [{"kind": "cash", "amount": 1000}], card=None)
    clock.advance(minutes=5)
    second = _sale(client, cashier, [{"sku": MILK}], [{"kind": "cash", "amount": 10000}])
    member_id = second["sale"]["member_id"]
    res = _find(client, cashier, member_id=member_id, limit="5")
    assert [s["sale_id"] for s in res.json["sales"]] == [second["sale_id"], first["sale_id"]]
    res = _find(client, cashier, member_id=member_id, limit="1")
    assert [s["sale_id"] for s in res.json["sales"]] == [second["sale_id"]]
    page1 = _find(client, cashier, per_page="2").json
    page2 = _find(client, cashier, per_page="2", page="2").json
    assert page1["more"] and not page2["more"]
    assert [s["sale_id"] for s in page1["sales"]][0] == second["sale_id"]
    assert [s["sale_id"] for s in page2["sales"]] == [first["sale_id"]]
    clock.advance(days=1)  # a new store day: yesterday's sales are not today's
    cashier = sign_in(client)  # (the session went idle overnight)
    assert _find(client, cashier).json["sales"] == []
    assert len(_find(client, cashier, member_id=member_id).json["sales"]) == 2


def test_the_return_preview_is_what_the_return_refunds(client, cashier, manager):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 50000}
    )
    sale = _sale(
        client,
        cashier,
        [{"sku": OIL, "qty": 2}, {"sku": APPLES, "qty": 3}],
        [{"kind": "stored_value", "amount": 5000}, {"kind": "cash", "amount": 20000}],
        member_password="123456",
    )
    assert sale["points_earned"] > 0
    lines = [{"line_no": 1, "qty": 1}, {"line_no": 2, "qty": 2}]
    quote = client.post(
        f"/api/v1/sales/{sale['sale_id']}/returns/quote", headers=cashier, json={"lines": lines}
    )
    assert quote.status_code == 200, quote.json
    q = quote.json
    assert {t["kind"] for t in q["tenders"]} == {"stored_value", "cash"}
    assert sum(t["amount"] for t in q["tenders"]) == q["refund_total"] > 0
    assert q["points_reversed"] > 0 and not q["full"]
    # nothing was written: the same quote again, and a cashier alone may not return
    again = client.post(
        f"/api/v1/sales/{sale['sale_id']}/returns/quote", headers=cashier, json={"lines": lines}
    )
    assert again.json == q
    refused = client.post(
        f"/api/v1/sales/{sale['sale_id']}/returns", headers=cashier, json={"lines": lines}
    )
    assert refused.status_code == 403 and refused.json["field"].startswith("manager")
    done = client.post(
        f"/api/v1/sales/{sale['sale_id']}/returns",
        headers=cashier,
        json={"lines": lines, "manager": {"code": "9001", "pin": "9999"}},
    )
    assert done.status_code == 201, done.json
    ret = done.json["return"]
    assert ret["refund_total"] == q["refund_total"]
    assert [{"kind": t["kind"], "amount": t["amount"]} for t in q["tenders"]] == ret["tenders"]
    assert ret["points_reversed"] == q["points_reversed"]
    assert ret["stored_value"] == q["stored_value"]
    # what is left shows on the sale, and the rest previews as the full return
    (view,) = _find(client, cashier, receipt_no=sale["receipt"]["barcode"]).json["sales"]
    assert [(ln["returned_qty"], ln["left"]) for ln in view["lines"]] == [(1, 1), (2, 1)]
    assert view["status"] == "partly_returned" and view["refunded"] == q["refund_total"]
    rest = client.post(f"/api/v1/sales/{sale['sale_id']}/returns/quote", headers=cashier, json={})
    assert rest.json["full"] and rest.json["refund_total"] == sale["total"] - q["refund_total"]
    for body, words in (
        ({"lines": [{"line_no": 1, "qty": 2}]}, "最多可退 1 件"),
        ({"lines": []}, "退货行须为"),
        ({"lines": [{"line_no": "1", "qty": 1}]}, "整数的行号和数量"),
    ):
        bad = client.post(
            f"/api/v1/sales/{sale['sale_id']}/returns/quote", headers=cashier, json=body
        )
        assert bad.status_code == 400 and words in bad.json["message"], bad.json
    unknown = client.post("/api/v1/sales/nope/returns/quote", headers=cashier, json={})
    assert unknown.status_code == 404 and "不存在" in unknown.json["message"]


def test_the_return_slip_reads_as_a_refund_with_points_taken_back_once(client, cashier, manager):
    sale = _sale(client, cashier, [{"sku": OIL, "qty": 3}], [{"kind": "cash", "amount": 30000}])
    earned = sale["points_earned"]
    assert earned > 0
    done = client.post(
        f"/api/v1/sales/{sale['sale_id']}/returns",
        headers=manager,
        json={"lines": [{"line_no": 1, "qty": 3}]},
    )
    assert done.status_code == 201, done.json
    slip = done.json["receipt"]
    assert slip["kind"] == "return" and "退款" in slip["title"]
    assert slip["member"]["points_earned"] == -earned
    assert f"原小票 {sale['receipt']['barcode']}" in slip["footer"]
    assert (
        slip["document_no"].startswith("S001-")
        and slip["document_no"] != sale["receipt"]["barcode"]
    )
    lines = decode(render(layout_receipt(Receipt.from_dict(slip), 48), P80, RenderOptions())).lines
    text = "\n".join(lines)
    assert "退货退款单" in text and "+-" not in text
    (points_line,) = [ln for ln in lines if ln.startswith("本次积分")]
    assert points_line.endswith(f"-{earned}") and points_line.count("-") == 1
    assert any(ln.startswith("退款合计") for ln in lines)
    assert any(ln.startswith("退现金") for ln in lines)
    assert "应付" not in text


def test_a_reprint_is_marked_and_is_the_same_receipt(client, cashier):
    sale = _sale(client, cashier, [{"sku": OIL}], [{"kind": "cash", "amount": 10000}])
    res = client.post(f"/api/v1/sales/{sale['sale_id']}/reprint", headers=cashier)
    assert res.status_code == 200, res.json
    copy = res.json["receipt"]
    assert copy["reprint"] is True and copy["opens_drawer"] is False
    assert {k: v for k, v in copy.items() if k not in ("reprint", "opens_drawer")} == {
        k: v for k, v in sale["receipt"].items() if k not in ("reprint", "opens_drawer")
    }
    lines = decode(render(layout_receipt(Receipt.from_dict(copy), 48), P80, RenderOptions())).lines
    assert any("重打" in ln for ln in lines)


def test_a_receipt_from_before_receipt_numbers_is_reprinted_with_its_number(client, cashier):
    sale = _sale(client, cashier, [{"sku": OIL}], [{"kind": "cash", "amount": 10000}])
    row = Sale.get_by_id(sale["sale_id"])
    old = dict(row.receipt)
    del old["barcode"]
    old["document_no"] = sale["sale_id"]  # as receipts were stored before they had one
    Sale.update(receipt=old).where(Sale.id == row.id).execute()
    copy = client.post(f"/api/v1/sales/{sale['sale_id']}/reprint", headers=cashier).json["receipt"]
    assert copy["document_no"] == copy["barcode"] == sale["receipt"]["barcode"]
    (found,) = _find(client, cashier, receipt_no=copy["barcode"]).json["sales"]
    assert found["sale_id"] == sale["sale_id"] and found["receipt_no"] == copy["barcode"]
