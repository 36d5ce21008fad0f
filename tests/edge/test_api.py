"""The till API end to end through Flask's test client."""

from __future__ import annotations

import pytest

from edge.models import Ledger, Member, Outbox, Sale
from tests.edge.conftest import sign_in

MILK, APPLES, COLD_MEDICINE, OIL = "P0002", "P0009", "P0006", "P0003"


def sale(client, headers, **body):
    return client.post("/api/v1/sales", headers=headers, json=body)


def member_by_card(client, headers, card):
    res = client.get(f"/api/v1/members/by-card/{card}", headers=headers)
    assert res.status_code == 200, res.json
    return res.json["member"]


def test_sign_in_rejects_wrong_pin(client):
    res = client.post("/api/v1/session", json={"staff_code": "1001", "pin": "0000"})
    assert res.status_code == 403
    assert res.json["field"] == "pin"


def test_requests_without_session_get_401(client):
    res = client.get("/api/v1/members?q=zs")
    assert res.status_code == 401
    assert res.json["error"] == "unauthorized"


def test_find_member_by_pinyin_initials_name_phone_and_card(client, cashier):
    by_initials = client.get("/api/v1/members?q=zs", headers=cashier).json["members"]
    assert [m["name"] for m in by_initials] == ["张三"]
    assert (
        client.get("/api/v1/members?q=zhangsan", headers=cashier).json["members"][0]["name"]
        == "张三"
    )
    assert client.get("/api/v1/members?q=张", headers=cashier).json["members"][0]["name"] == "张三"
    by_phone = client.get("/api/v1/members?q=13800000002", headers=cashier).json["members"]
    assert [m["name"] for m in by_phone] == ["李四"]
    assert by_phone[0]["phone"] == "*******0002"
    assert member_by_card(client, cashier, "C0001")["name"] == "张三"


def test_walk_in_cash_sale_with_change(client, cashier):
    res = sale(
        client,
        cashier,
        lines=[{"sku": APPLES, "qty": 2}],
        tenders=[{"kind": "cash", "amount": 2000}],
    )
    assert res.status_code == 201, res.json
    # 2 × 7.99 = 15.98, 抹分 (jiao_down) -> 15.90, change 4.10
    assert res.json["total"] == 1590
    assert res.json["change"] == 410
    assert res.json["points_earned"] == 0
    assert res.json["receipt"]["opens_drawer"] is True
    assert Outbox.select().where(Outbox.kind == "sale").count() == 1


def test_member_sale_applies_card_discount_and_earns_points(client, cashier):
    res = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": APPLES, "qty": 10}, {"sku": COLD_MEDICINE}],
        tenders=[{"kind": "cash", "amount": 10000}],
    )
    assert res.status_code == 201, res.json
    body = res.json["sale"]
    apples, medicine = body["lines"]
    assert apples["member_discount"] == 799  # 金卡 90折 on 79.90
    assert medicine["member_discount"] == 0  # excluded from member discount
    assert res.json["total"] == 7191 + 1850 - body["rounding"] == 9040
    assert res.json["points_earned"] == res.json["total"] * 2 // 100  # 金卡 earns 2 points per yuan
    assert member_by_card(client, cashier, "C0001")["points"] == res.json["points_earned"]


def test_stored_value_needs_member_password(client, cashier):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 50000}
    )
    lines = [{"sku": OIL}]
    no_pw = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=lines,
        tenders=[{"kind": "stored_value", "amount": 6290}],
    )
    assert no_pw.status_code == 403 and no_pw.json["field"] == "member_password"
    wrong = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=lines,
        tenders=[{"kind": "stored_value", "amount": 6290}],
        member_password="000000",
    )
    assert wrong.status_code == 403
    ok = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=lines,
        tenders=[{"kind": "stored_value", "amount": 6290}],
        member_password="123456",
    )
    assert ok.status_code == 201, ok.json
    sv = ok.json["sale"]["stored_value"]
    assert sv["principal"] + sv["bonus"] == 6290
    # spent in proportion to 500 principal : 100 bonus
    assert sv == {"principal": 5242, "bonus": 1048}


def test_top_up_bonus_is_kept_apart(client, cashier):
    res = client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0002"}, "amount": 50000}
    )
    assert res.status_code == 201, res.json
    assert (res.json["principal"], res.json["bonus"]) == (50000, 10000)
    member = member_by_card(client, cashier, "C0002")
    assert member["stored_value"] == {"principal": 50000, "bonus": 10000, "total": 60000}


def test_mixed_tenders_cash_stored_value_points(client, cashier, demo_till):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 10000}
    )
    earn = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": "P0010", "qty": 5}],
        tenders=[{"kind": "cash", "amount": 50000}],
    )
    assert earn.status_code == 201
    points = member_by_card(client, cashier, "C0001")["points"]
    assert points >= 500
    res = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": OIL}],
        tenders=[
            {"kind": "points", "amount": 300},
            {"kind": "stored_value", "amount": 3000},
            {"kind": "cash", "amount": 5000},
        ],
        member_password="123456",
    )
    assert res.status_code == 201, res.json
    assert res.json["sale"]["points_used"] == 300  # 100 points per yuan
    assert res.json["change"] == 300 + 3000 + 5000 - res.json["total"]


@pytest.mark.parametrize(
    ("order", "taken"),
    [
        ("proportional", {"principal": 15000, "bonus": 3000}),
        ("principal_first", {"principal": 18000, "bonus": 0}),
        ("bonus_first", {"principal": 8000, "bonus": 10000}),
    ],
)
def test_stored_value_is_spent_in_the_order_the_rules_say(client, cashier, demo_till, order, taken):
    from core.rules import DEMO_RULES
    from edge.models import Setting

    doc = DEMO_RULES.to_dict() | {"version": 2, "stored_value_spend": order}
    Setting.replace(key="rules", value=doc).execute()
    topup = client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 50000}
    )
    assert (topup.json["principal"], topup.json["bonus"]) == (50000, 10000)  # 充500送100
    res = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": "P0010", "qty": 5}],
        tenders=[{"kind": "stored_value", "amount": 18000}, {"kind": "cash", "amount": 100000}],
        member_password="123456",
    )
    assert res.status_code == 201, res.json
    assert res.json["sale"]["stored_value"] == taken
    member = Member.get(Member.name == "张三")
    assert (member.sv_principal, member.sv_bonus) == (
        50000 - taken["principal"],
        10000 - taken["bonus"],
    )
    # a full return puts back exactly what was taken
    back = client.post(
        f"/api/v1/sales/{res.json['sale_id']}/returns",
        headers=sign_in(client, "9001", "9999"),
        json={},
    )
    assert back.status_code == 201, back.json
    member = Member.get(Member.name == "张三")
    assert (member.sv_principal, member.sv_bonus) == (50000, 10000)


def test_tenders_must_cover_the_sale(client, cashier):
    res = sale(client, cashier, lines=[{"sku": OIL}], tenders=[{"kind": "cash", "amount": 100}])
    assert res.status_code == 422
    assert "付款不足" in res.json["message"]
    assert (
        Sale.select().count() == 0 and Outbox.select().count() == 20
    )  # only the demo registrations


def test_manual_adjustment_needs_a_manager(client, cashier):
    body = dict(
        lines=[{"sku": OIL}], manual_adjustment=90, tenders=[{"kind": "cash", "amount": 10000}]
    )
    refused = sale(client, cashier, **body)
    assert refused.status_code == 403 and refused.json["field"] == "manager"
    approved = sale(client, cashier, manager={"code": "9001", "pin": "9999"}, **body)
    assert approved.status_code == 201, approved.json
    assert approved.json["sale"]["manual_adjustment"] == 90
    assert approved.json["sale"]["approved_by"] == "9001"
    wrong_role = sale(client, cashier, manager={"code": "1001", "pin": "1234"}, **body)
    assert wrong_role.status_code == 403


def test_retrying_a_sale_with_its_id_does_not_double_it(client, cashier):
    body = dict(
        sale_id="01a209ec-e670-7606-8291-2e74d6822032",
        lines=[{"sku": OIL}],
        tenders=[{"kind": "cash", "amount": 10000}],
    )
    first = sale(client, cashier, **body)
    again = sale(client, cashier, **body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["replayed"] is True
    assert Sale.select().count() == 1
    assert Outbox.select().where(Outbox.kind == "sale").count() == 1


def test_a_retry_gets_its_mixed_tender_member_sale_back(client, cashier):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 50000}
    )
    body = dict(
        sale_id="01a209ec-e670-7606-8291-2e74d6822033",
        member={"card_no": "C0001"},
        lines=[{"sku": OIL, "qty": 2}, {"barcode": "6901234567002"}],
        tenders=[{"kind": "stored_value", "amount": 3000}, {"kind": "cash", "amount": 20000}],
        member_password="123456",
    )
    first = sale(client, cashier, **body)
    assert first.status_code == 201, first.json
    again = sale(client, cashier, **body)
    assert again.status_code == 200 and again.json["replayed"] is True
    assert again.json["sale"] == first.json["sale"]


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"lines": [{"sku": OIL, "qty": 2}]}, "lines"),
        ({"lines": [{"sku": "P0002"}]}, "lines"),
        ({"tenders": [{"kind": "cash", "amount": 20000}]}, "tenders"),
        ({"member": {"card_no": "C0001"}}, "member"),
        ({"order_discount_rate": 950}, "order_discount_rate"),
    ],
)
def test_a_sale_id_reused_for_another_sale_is_refused(client, cashier, change, differs):
    body = dict(
        sale_id="01a209ec-e670-7606-8291-2e74d6822034",
        lines=[{"sku": OIL}],
        tenders=[{"kind": "cash", "amount": 10000}],
    )
    assert sale(client, cashier, **body).status_code == 201
    reused = sale(client, cashier, **{**body, **change})
    assert reused.status_code == 409, reused.json
    assert reused.json["field"] == "sale_id" and differs in reused.json["message"]
    assert reused.json["message"].startswith("小票号")
    assert Sale.select().count() == 1


def test_full_return_restores_every_balance(client, cashier, manager):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 50000}
    )
    before = member_by_card(client, cashier, "C0001")
    res = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": OIL, "qty": 2}, {"sku": APPLES, "qty": 3}],
        tenders=[{"kind": "stored_value", "amount": 5000}, {"kind": "cash", "amount": 20000}],
        member_password="123456",
    )
    assert res.status_code == 201, res.json
    sale_id = res.json["sale_id"]
    part = client.post(
        f"/api/v1/sales/{sale_id}/returns",
        headers=manager,
        json={"lines": [{"line_no": 1, "qty": 1}]},
    )
    assert part.status_code == 201, part.json
    rest = client.post(f"/api/v1/sales/{sale_id}/returns", headers=manager, json={})
    assert rest.status_code == 201, rest.json
    after = member_by_card(client, cashier, "C0001")
    assert after["stored_value"] == before["stored_value"]
    assert after["points"] == before["points"]
    refunded = part.json["return"]["refund_total"] + rest.json["return"]["refund_total"]
    assert refunded == res.json["total"]
    cash_back = sum(
        t["amount"]
        for r in (part, rest)
        for t in r.json["return"]["tenders"]
        if t["kind"] == "cash"
    )
    assert cash_back == res.json["total"] - 5000
    again = client.post(f"/api/v1/sales/{sale_id}/returns", headers=manager, json={})
    assert again.status_code == 400 and "全部退货" in again.json["message"]


def test_return_needs_manager(client, cashier):
    res = sale(client, cashier, lines=[{"sku": OIL}], tenders=[{"kind": "cash", "amount": 10000}])
    refused = client.post(f"/api/v1/sales/{res.json['sale_id']}/returns", headers=cashier, json={})
    assert refused.status_code == 403


def test_balances_equal_the_ledger(client, cashier, manager, demo_till):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 100000}
    )
    for _ in range(3):
        r = sale(
            client,
            cashier,
            member={"card_no": "C0001"},
            lines=[{"sku": "P0012"}, {"sku": APPLES, "qty": 2}],
            tenders=[{"kind": "stored_value", "amount": 5000}, {"kind": "cash", "amount": 30000}],
            member_password="123456",
        )
        assert r.status_code == 201, r.json
    client.post(
        f"/api/v1/sales/{r.json['sale_id']}/returns",
        headers=manager,
        json={"lines": [{"line_no": 2, "qty": 1}]},
    )
    member = Member.get(Member.name == "张三")
    totals = {
        account: sum(
            e.delta
            for e in Ledger.select().where(
                (Ledger.member_id == member.id) & (Ledger.account == account)
            )
        )
        for account in ("sv_principal", "sv_bonus", "points")
    }
    assert totals["sv_principal"] == member.sv_principal
    assert totals["sv_bonus"] == member.sv_bonus
    assert totals["points"] == member_by_card(client, cashier, "C0001")["points"]


def test_register_member_and_find_them_at_once(client, cashier):
    res = client.post(
        "/api/v1/members",
        headers=cashier,
        json={
            "name": "王小明",
            "phone": "+86 137-0000-1234",
            "gender": "M",
            "birthday": "1990-08-15",
            "birthday_calendar": "lunar",
            "card_no": "N0001",
            "card_type": "银卡",
            "staff_code": "1001",
        },
    )
    assert res.status_code == 201, res.json
    assert res.json["member"]["birthday_calendar"] == "lunar"
    assert (
        client.get("/api/v1/members?q=wxm", headers=cashier).json["members"][0]["name"] == "王小明"
    )
    assert member_by_card(client, cashier, "N0001")["name"] == "王小明"
    again = client.post(
        "/api/v1/members", headers=cashier, json={"name": "王小明", "phone": "13700001234"}
    )
    assert again.status_code == 409 and again.json["field"] == "phone"
    card_taken = client.post(
        "/api/v1/members",
        headers=cashier,
        json={"name": "赵六", "phone": "13700009999", "card_no": "N0001"},
    )
    assert card_taken.status_code == 409 and card_taken.json["field"] == "card_no"
    item = Outbox.select().where(Outbox.kind == "registration").order_by(Outbox.seq.desc()).first()
    assert '"phone":"13700001234"' in item.payload


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/v1/sales", None, 400, None),
        ("/api/v1/sales", {"lines": []}, 400, "lines"),
        (
            "/api/v1/sales",
            {"lines": [{"sku": "P0001", "qty": 0}], "tenders": [{"kind": "cash", "amount": 1}]},
            400,
            "lines[0].qty",
        ),
        (
            "/api/v1/sales",
            {"lines": [{"sku": "P0001", "qty": "2"}], "tenders": [{"kind": "cash", "amount": 1}]},
            400,
            "lines[0].qty",
        ),
        (
            "/api/v1/sales",
            {"lines": [{"sku": "P0001"}], "tenders": [{"kind": "cash", "amount": 1.5}]},
            400,
            "tenders[0].amount",
        ),
        (
            "/api/v1/sales",
            {"lines": [{"sku": "P0001"}], "tenders": [{"kind": "bitcoin", "amount": 100}]},
            400,
            "tenders[0].kind",
        ),
        (
            "/api/v1/sales",
            {"lines": [{"sku": "NOPE"}], "tenders": [{"kind": "cash", "amount": 100}]},
            404,
            "lines",
        ),
        (
            "/api/v1/sales",
            {
                "lines": [{"sku": "P0001"}],
                "tenders": [{"kind": "cash", "amount": 1000}],
                "order_discount_rate": 1200,
            },
            400,
            "order_discount_rate",
        ),
        (
            "/api/v1/sales",
            {
                "member": {"card_no": "X"},
                "lines": [{"sku": "P0001"}],
                "tenders": [{"kind": "cash", "amount": 1000}],
            },
            404,
            "card_no",
        ),
        (
            "/api/v1/sales",
            {
                "lines": [{"sku": "P0001", "line_discount": 99999}],
                "tenders": [{"kind": "cash", "amount": 1000}],
            },
            400,
            "lines[0].line_discount",
        ),
        (
            "/api/v1/sales",
            {
                "lines": [{"sku": "P0001"}],
                "tenders": [{"kind": "cash", "amount": 1000}],
                "sale_id": "abc",
            },
            400,
            "sale_id",
        ),
        ("/api/v1/sales/quote", {"lines": "P0001"}, 400, "lines"),
        ("/api/v1/members", {"name": "", "phone": "13800000009"}, 400, "name"),
        ("/api/v1/members", {"name": "赵六", "phone": "12345"}, 400, "phone"),
        (
            "/api/v1/members",
            {"name": "赵六", "phone": "13800000009", "birthday": "1990-02-30"},
            400,
            "birthday",
        ),
        (
            "/api/v1/members",
            {"name": "赵六", "phone": "13800000009", "card_type": "黑卡"},
            400,
            "card_type",
        ),
        ("/api/v1/members", {"name": "赵六", "phone": "13800000009", "gender": "X"}, 400, "gender"),
        ("/api/v1/topups", {"member": {"card_no": "C0001"}, "amount": -5}, 400, "amount"),
        ("/api/v1/topups", {"member": "C0001", "amount": 500}, 400, "member"),
        ("/api/v1/sales/nope/returns", {}, 403, "manager"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(client, cashier, path, body, status, field):
    if body is None:
        res = client.post(path, headers=cashier, data="{not json", content_type="application/json")
    else:
        res = client.post(path, headers=cashier, json=body)
    assert res.status_code == status, res.json
    assert res.json["message"]
    if field:
        assert res.json.get("field") == field


def test_unknown_route_and_method_are_json(client, cashier):
    assert client.get("/api/v1/nope", headers=cashier).json["error"] == "not_found"
    assert client.put("/api/v1/sales", headers=cashier).status_code == 405


def test_unknown_sale_is_404(client):
    headers = sign_in(client, "9001", "9999")
    assert client.post("/api/v1/sales/nope/returns", headers=headers, json={}).status_code == 404
    assert client.get("/api/v1/sales/nope", headers=headers).status_code == 404


def test_status_reports_backlog(client, cashier):
    res = client.get("/api/v1/status", headers=cashier)
    assert res.json["outbox"]["pending"] == 20
    assert res.json["store"] == "S001"


def test_offline_floor_limit_caps_stored_value_per_member_per_day(client, cashier, clock):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 100000}
    )
    spend = dict(member={"card_no": "C0001"}, lines=[{"sku": "P0011"}], member_password="123456")
    first = sale(
        client,
        cashier,
        tenders=[{"kind": "stored_value", "amount": 15000}, {"kind": "cash", "amount": 90000}],
        **spend,
    )
    assert first.status_code == 201 and first.json["offline"] is True
    over = sale(
        client,
        cashier,
        tenders=[{"kind": "stored_value", "amount": 5001}, {"kind": "cash", "amount": 90000}],
        **spend,
    )
    assert over.status_code == 422 and over.json["details"] == {
        "limit": 20000,
        "policy": "floor_limit",
        "used": 15000,
    }
    at_limit = sale(
        client,
        cashier,
        tenders=[{"kind": "stored_value", "amount": 5000}, {"kind": "cash", "amount": 90000}],
        **spend,
    )
    assert at_limit.status_code == 201
    clock.advance(days=1)
    cashier = sign_in(client)  # yesterday's session has expired
    next_day = sale(
        client,
        cashier,
        tenders=[{"kind": "stored_value", "amount": 5000}, {"kind": "cash", "amount": 90000}],
        **spend,
    )
    assert next_day.status_code == 201


def test_offline_never_spends_more_than_the_cached_balance(client, cashier):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 1000}
    )
    res = sale(
        client,
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": "P0011"}],
        member_password="123456",
        tenders=[{"kind": "stored_value", "amount": 1001}, {"kind": "cash", "amount": 90000}],
    )
    assert res.status_code == 422 and "储值余额不足" in res.json["message"]


def test_online_only_policy_refuses_offline_spends(tmp_path, clock):
    from edge.api import create_app
    from edge.demo_data import load_demo
    from edge.services.context import open_till
    from tests.edge.conftest import make_config

    cfg = make_config(tmp_path, offline={"points": {"mode": "online_only"}})
    t = open_till(cfg, clock=clock, create_key=True)
    load_demo(t, members=2)
    c = create_app(t).test_client()
    h = sign_in(c)
    sale(
        c,
        h,
        member={"card_no": "C0001"},
        lines=[{"sku": "P0010", "qty": 2}],
        tenders=[{"kind": "cash", "amount": 20000}],
    )
    res = sale(
        c,
        h,
        member={"card_no": "C0001"},
        lines=[{"sku": "P0001"}],
        tenders=[{"kind": "points", "amount": 100}, {"kind": "cash", "amount": 100}],
    )
    assert res.status_code == 403
    assert res.json["details"]["policy"] == "online_only"
    assert "需要总部在线授权" in res.json["message"]


def test_cashier_screen_is_served(client):
    res = client.get("/")
    assert res.status_code == 200
    assert "会员收银台" in res.get_data(as_text=True)
    res.close()
