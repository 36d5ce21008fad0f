"""Gifts at the till (docs/programme/points.md): the catalogue from HQ's changes, redeeming
points for a gift through the till API (one transaction, one outbox item, a slip), the
redemption window, the lock, online authorization and the offline policy for points."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import types

import pytest

from core.protocol import BODY_VALIDATORS, UP_KINDS, Change
from core.rules import DEMO_RULES, RedemptionWindow
from edge.api import create_app
from edge.models import GiftRedemption, Ledger, Member, Outbox, PointsLot, Setting
from edge.services import members as member_svc
from edge.services.context import SpendDecision
from edge.sync.apply import Applier
from tests.edge.conftest import sign_in
from tests.sync.helpers import ledger_mismatches

TODAY = dt.date(2026, 11, 23)  # the clock fixture's day


def gift_change(seq: int, gift_id: str, **data) -> Change:
    d = {
        "gift_id": gift_id,
        "name": f"礼品{gift_id}",
        "points": 500,
        "kind": "goods",
        "sku": "P0001",
        "coupon_template": None,
        "active": True,
        "valid_from": None,
        "valid_to": None,
    } | data
    return Change(seq, "gift", gift_id, "upsert", d)


def send_down(till, *changes: Change) -> None:
    with till.db.atomic():
        Applier(till.store, till.keys, till.now().isoformat()).apply_changes(list(changes))


def give_points(member_id: str, lot_id: str, points: int, earned_on: dt.date, days: int = 365):
    PointsLot.create(
        lot_id=lot_id,
        member_id=member_id,
        earned_on=earned_on.isoformat(),
        expires_on=(earned_on + dt.timedelta(days=days)).isoformat(),
        remaining=points,
        origin="test",
    )
    Ledger.create(
        member_id=member_id,
        account="points",
        delta=points,
        reason="hq",
        ref=lot_id,
        occurred_at=earned_on.isoformat(),
        day=earned_on.isoformat(),
    )


def use_rules(rules) -> None:
    Setting.insert(key="rules", value=rules.to_dict()).on_conflict_replace().execute()


@pytest.fixture
def member_id(demo_till) -> str:
    member = Member.select().where(Member.status == "active").order_by(Member.id).first()
    PointsLot.delete().where(PointsLot.member_id == member.id).execute()
    Ledger.delete().where((Ledger.member_id == member.id) & (Ledger.account == "points")).execute()
    Member.update(points_debt=0).where(Member.id == member.id).execute()
    give_points(member.id, "old", 800, TODAY - dt.timedelta(days=300))
    give_points(member.id, "new", 1200, TODAY - dt.timedelta(days=2))
    send_down(
        demo_till,
        gift_change(1, "G1", points=500),
        gift_change(2, "G2", points=3000),
        gift_change(3, "OLD", active=False),
        gift_change(4, "LATER", valid_from="2026-12-01"),
    )
    return member.id


def redeem(client, headers, member_id, **body):
    return client.post(f"/api/v1/members/{member_id}/gift-redemptions", json=body, headers=headers)


def test_the_catalogue_lists_the_gifts_on_offer_today(client, cashier, member_id):
    res = client.get("/api/v1/gifts", headers=cashier)
    assert res.status_code == 200
    assert [g["gift_id"] for g in res.json["gifts"]] == ["G1", "G2"]
    assert res.json["gifts"][0] | {} == {
        "gift_id": "G1",
        "name": "礼品G1",
        "points": 500,
        "kind": "goods",
        "sku": "P0001",
        "coupon_template": None,
        "valid_from": None,
        "valid_to": None,
    }


def test_a_goods_gift_spends_points_in_one_transaction_with_one_outbox_item(
    client, cashier, member_id, demo_till
):
    before = Outbox.select().count()
    res = redeem(client, cashier, member_id, gift_id="G1", qty=2, redemption_id="R-1")
    assert res.status_code == 201, res.json
    got = res.json
    assert (got["points_used"], got["qty"], got["offline"], got["replayed"]) == (
        1000,
        2,
        True,
        False,
    )
    # soonest-expiring lot first
    assert got["redemption"]["points_lots_used"] == [["old", 800], ["new", 200]]
    assert PointsLot.get_by_id("old").remaining == 0
    assert PointsLot.get_by_id("new").remaining == 1000
    gift_rows = Ledger.select().where((Ledger.reason == "gift") & (Ledger.ref == "R-1"))
    assert [(r.account, r.delta, r.offline) for r in gift_rows] == [("points", -1000, True)]
    items = list(Outbox.select().where(Outbox.seq > before))
    assert [i.kind for i in items] == ["gift_redemption"]
    body = items[0].payload["body"] if isinstance(items[0].payload, dict) else None
    if body is None:
        import json

        body = json.loads(items[0].payload)["body"]
    assert set(UP_KINDS["gift_redemption"]) <= set(body)
    BODY_VALIDATORS["gift_redemption"](body, "gift_redemption body")
    assert "outbox_seq" not in body
    assert GiftRedemption.get_by_id("R-1").points == 1000
    slip = got["receipt"]
    assert slip["kind"] == "gift" and slip["title"] == "积分兑换单"
    assert slip["lines"][0]["name"] == "礼品G1" and slip["lines"][0]["qty"] == 2
    assert slip["member"]["points_balance"] == 1000
    assert "本次使用积分 1000" in slip["footer"]
    assert ledger_mismatches(demo_till.store, TODAY) == []
    # a retry with the same id is the same redemption, spent once
    again = redeem(client, cashier, member_id, gift_id="G1", qty=2, redemption_id="R-1")
    assert again.status_code == 200 and again.json["replayed"] is True
    assert again.json["points_used"] == 1000
    assert PointsLot.get_by_id("new").remaining == 1000
    # the same id for another redemption is refused
    other = redeem(client, cashier, member_id, gift_id="G1", qty=1, redemption_id="R-1")
    assert other.status_code == 409 and other.json["field"] == "redemption_id"


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({}, 400, "gift_id", "gift_id"),
        ({"gift_id": "G1", "qty": 0}, 400, "qty", "qty"),
        ({"gift_id": "G1", "qty": "2"}, 400, "qty", "qty"),
        ({"gift_id": "G1", "password": 5}, 400, "password", "password"),
        ({"gift_id": "NOPE"}, 404, "gift_id", "不在兑换目录"),
        ({"gift_id": "OLD"}, 404, "gift_id", "不在兑换目录"),
        ({"gift_id": "LATER"}, 403, "gift_id", "2026-12-01"),
        # 800 + 1200 points, 3000 asked
        ({"gift_id": "G2"}, 422, "points", "积分不足"),
        # a password given is checked (none set, or a wrong one)
        ({"gift_id": "G1", "password": "000000"}, 403, "password", "密码"),
    ],
)
def test_bad_or_impossible_redemptions_are_refused_and_change_nothing(
    client, cashier, member_id, body, status, field, words
):
    before = (Outbox.select().count(), Ledger.select().count())
    res = redeem(client, cashier, member_id, **body)
    assert res.status_code == status, res.json
    assert res.json["field"] == field and words in res.json["message"]
    assert (Outbox.select().count(), Ledger.select().count()) == before


def test_locked_points_cannot_be_redeemed_until_the_return_window_closes(
    client, cashier, member_id, demo_till, clock
):
    use_rules(dataclasses.replace(DEMO_RULES, version=7, points_lock_days=7))
    shown = client.get(f"/api/v1/members/{member_id}/points", headers=cashier).json
    assert (shown["available"], shown["locked"], shown["unlocks_on"]) == (800, 1200, "2026-11-28")
    res = redeem(client, cashier, member_id, gift_id="G1", qty=2)
    assert res.status_code == 422 and "1200 分在锁定期内" in res.json["message"]
    assert redeem(client, cashier, member_id, gift_id="G1").status_code == 201
    clock.advance(days=5)  # 2026-11-28: the sale's lot is usable
    assert redeem(client, sign_in(client), member_id, gift_id="G1", qty=2).status_code == 201


def test_outside_the_redemption_window_the_till_says_when_it_opens(
    client, cashier, member_id, demo_till, clock
):
    window = RedemptionWindow(dt.date(2026, 12, 1), dt.date(2026, 12, 31), "感恩回馈月")
    use_rules(dataclasses.replace(DEMO_RULES, version=8, points_redemption_windows=(window,)))
    res = redeem(client, cashier, member_id, gift_id="G1")
    assert res.status_code == 403
    assert res.json["error"] == "redemption_closed"
    assert "感恩回馈月" in res.json["message"] and "2026-12-01" in res.json["message"]
    shown = client.get(f"/api/v1/members/{member_id}/points", headers=cashier).json
    assert shown["redemption_open"] is False and "2026-12-01" in shown["redemption_message"]
    # the points tender is refused the same way
    sale = client.post(
        "/api/v1/sales",
        json={
            "member": {"member_id": member_id},
            "lines": [{"sku": "P0001", "qty": 1}],
            "tenders": [{"kind": "points", "amount": 100}, {"kind": "cash", "amount": 100000}],
        },
        headers=cashier,
    )
    assert sale.status_code == 403 and sale.json["error"] == "redemption_closed"
    clock.advance(days=8)  # 2026-12-01
    assert redeem(client, sign_in(client), member_id, gift_id="G1").status_code == 201


class Approving:
    def __init__(self, approve: bool = True) -> None:
        self.approve = approve
        self.asked = []

    def authorize(self, request):
        self.asked.append(request)
        if self.approve:
            return SpendDecision(online=True, approved=True, authorization_id="auth-1")
        return SpendDecision(online=True, approved=False, reason="积分不足")


def test_online_hq_authorizes_the_points_and_a_refusal_stops_the_redemption(
    client, cashier, member_id, demo_till
):
    demo_till.authorizer = Approving()
    res = redeem(client, cashier, member_id, gift_id="G1", redemption_id="R-on")
    assert res.status_code == 201
    assert res.json["offline"] is False
    assert res.json["redemption"]["authorization_id"] == "auth-1"
    asked = demo_till.authorizer.asked[0]
    assert (asked.sale_id, asked.points, asked.stored_value) == ("R-on", 500, 0)
    demo_till.authorizer = Approving(approve=False)
    res = redeem(client, cashier, member_id, gift_id="G1")
    assert res.status_code == 422 and "总部拒绝授权" in res.json["message"]


def test_offline_the_points_policy_limits_redemptions_per_day(
    client, cashier, member_id, demo_till
):
    # the tests' offline policy: at most 5000 points a day per member at this store
    give_points(member_id, "big", 9000, TODAY - dt.timedelta(days=30))
    assert redeem(client, cashier, member_id, gift_id="G2").status_code == 201
    res = redeem(client, cashier, member_id, gift_id="G2")
    assert res.status_code == 422 and "离线积分支付每日限额" in res.json["message"]


def test_a_coupon_gift_issues_through_the_coupons_part(
    client, cashier, member_id, demo_till, monkeypatch
):
    """The till's side of a coupon gift: ``edge.services.coupons.issue_at_till`` (the
    coupons part) is called once per unit in the redemption's transaction; the end-to-end
    coupon gift is tested after the parts are merged."""
    calls = []

    def issue_at_till(t, member, template, *, source, ref, cashier):
        calls.append((member, template, source, ref, cashier))
        return {"code": f"CPN{len(calls)}"}

    fake = types.ModuleType("edge.services.coupons")
    fake.issue_at_till = issue_at_till
    monkeypatch.setitem(sys.modules, "edge.services.coupons", fake)
    send_down(demo_till, gift_change(9, "CP", kind="coupon", sku=None, coupon_template="T-10"))
    res = redeem(client, cashier, member_id, gift_id="CP", qty=2, redemption_id="R-cp")
    assert res.status_code == 201, res.json
    assert res.json["coupon_codes"] == ["CPN1", "CPN2"]
    assert calls == [(member_id, "T-10", "gift", "R-cp", "1001")] * 2
    assert "券号 CPN1" in res.json["receipt"]["footer"]


def test_a_gift_removed_at_hq_is_no_longer_offered(client, cashier, member_id, demo_till):
    send_down(demo_till, gift_change(10, "G1", active=False))
    assert [g["gift_id"] for g in client.get("/api/v1/gifts", headers=cashier).json["gifts"]] == [
        "G2"
    ]
    assert redeem(client, cashier, member_id, gift_id="G1").status_code == 404


def test_the_routes_need_a_signed_in_cashier(client, member_id):
    assert client.get("/api/v1/gifts").status_code == 401
    assert redeem(client, {}, member_id, gift_id="G1").status_code == 401


def test_a_member_points_view_counts_a_debt(client, member_id, demo_till):
    Member.update(points_debt=300).where(Member.id == member_id).execute()
    headers = sign_in(client)
    shown = client.get(f"/api/v1/members/{member_id}/points", headers=headers).json
    assert shown["available"] == 1700 and shown["debt"] == 300
    res = redeem(client, headers, member_id, gift_id="G2")
    assert res.status_code == 422 and "积分欠款 300" in res.json["message"]
    assert member_svc.points_balance(member_id, TODAY) == 2000


def test_create_app_registers_the_points_routes(demo_till):
    rules = {r.rule for r in create_app(demo_till).url_map.iter_rules()}
    assert {"/api/v1/gifts", "/api/v1/members/<member_id>/gift-redemptions"} <= rules


def test_the_points_tender_of_a_sale_skips_locked_points(client, cashier, member_id, demo_till):
    use_rules(dataclasses.replace(DEMO_RULES, version=9, points_lock_days=7))
    # 800 usable (100 points a yuan: 8 yuan), 1200 locked; ten waters cost more than 9 yuan
    sale = {
        "member": {"member_id": member_id},
        "lines": [{"sku": "P0001", "qty": 10}],
        "tenders": [{"kind": "points", "amount": 900}, {"kind": "cash", "amount": 100000}],
    }
    res = client.post("/api/v1/sales", json=sale, headers=cashier)
    assert res.status_code == 422 and "在锁定期内" in res.json["message"], res.json
    sale["tenders"][0]["amount"] = 800
    res = client.post("/api/v1/sales", json=sale, headers=cashier)
    assert res.status_code == 201, res.json
    assert res.json["sale"]["points_lots_used"] == [["old", 800]]


def test_the_slip_prints_on_a_58mm_printer(client, cashier, member_id):
    from core.receipt import Receipt
    from edge.devices.escpos_decode import decode
    from edge.devices.profiles import ProfileLibrary
    from edge.devices.receipt_render import RenderOptions, layout_receipt, render

    res = redeem(client, cashier, member_id, gift_id="G1")
    slip = Receipt.from_dict(res.json["receipt"])
    profile = ProfileLibrary().load("xprinter_xp58iih")
    text = "\n".join(decode(render(layout_receipt(slip, 32), profile, RenderOptions())).lines)
    assert "积分兑换单" in text and "礼品G1" in text and "本次使用积分 500" in text
