"""Cards at the till (edge/services/cards.py, edge/routes/cards.py): the 198元年卡 sold,
renewed and lapsing, priced by the card type in force; 充值升级; 换卡 and 挂失."""

from __future__ import annotations

import json

import pytest

from core.rules import DEMO_RULES, CardRules, Rules
from edge.models import Card, CardSale, Member, Outbox, Setting
from tests.edge.conftest import sign_in

MANAGER = {"code": "9001", "pin": "9999"}
RULES = Rules.from_dict(
    DEMO_RULES.to_dict()
    | {
        "version": 5,
        "schema": 2,
        "card_type_discount": {"普通卡": 1000, "银卡": 950, "金卡": 900, "年卡": 850},
        "topup_bonuses": [],
        "rounding": "none",
        "cards": {
            "products": [
                {"card_type": "年卡", "price": 19800, "months": 12},
                {"card_type": "月卡", "price": 2900, "months": 1, "renewable": False},
            ],
            "upgrades": [{"threshold": 50000, "card_type": "金卡"}],
        },
    }
)


@pytest.fixture
def cards_client(app, demo_till):
    Setting.replace(key="rules", value=RULES.to_dict()).execute()
    return app.test_client()


def _member(card_no: str) -> Member:
    return Member.get_by_id(Card.get_by_id(card_no).member_id)


def _items(kind: str) -> list[dict]:
    return [json.loads(o.payload) for o in Outbox.select().where(Outbox.kind == kind)]


def _sell(client, headers, member_id, card_type="年卡", **extra):
    return client.post(
        f"/api/v1/members/{member_id}/card-product",
        headers=headers,
        json={"card_type": card_type, "tender": "cash", **extra},
    )


def _quote_rate(client, headers, card_no="C0002") -> int:
    """The member discount on one 苹果 (799 fen): what the card type in force gives."""
    res = client.post(
        "/api/v1/sales/quote",
        headers=headers,
        json={"member": {"card_no": card_no}, "lines": [{"sku": "P0009", "qty": 100}]},
    )
    assert res.status_code == 200, res.json
    return res.json["member_discount"]


def _summary(client, headers, member_id) -> dict:
    res = client.get(f"/api/v1/members/{member_id}", headers=headers)
    assert res.status_code == 200
    return res.json["member"]


def test_selling_an_annual_card_writes_the_member_a_record_one_item_and_a_receipt(
    cards_client, clock
):
    cashier = sign_in(cards_client)
    member = _member("C0002")  # 银卡
    assert _quote_rate(cards_client, cashier) == 79900 - 79900 * 950 // 1000
    res = _sell(cards_client, cashier, member.id)
    assert res.status_code == 201, res.json
    sold = res.json
    assert (sold["card_type"], sold["price"], sold["renewal"]) == ("年卡", 19800, False)
    assert (sold["valid_from"], sold["valid_to"]) == ("2026-11-23", "2027-11-22")
    assert sold["receipt"]["total"] == 19800
    assert "有效期 2026-11-23 至 2027-11-22" in sold["receipt"]["lines"][0]["note"]
    after = Member.get_by_id(member.id)
    assert (after.card_type, after.card_expires_on) == ("年卡", "2027-11-22")
    assert CardSale.get_by_id(sold["card_sale_id"]).price == 19800
    (item,) = _items("card_sale")
    assert item["body"] == {
        "card_sale_id": sold["card_sale_id"],
        "member_id": member.id,
        "card_type": "年卡",
        "price": 19800,
        "valid_from": "2026-11-23",
        "valid_to": "2027-11-22",
        "renewal": False,
        "tender": "cash",
        "cashier": "1001",
    }
    assert item["rules_version"] == 5
    assert _quote_rate(cards_client, cashier) == 79900 - 79900 * 850 // 1000
    summary = _summary(cards_client, cashier, member.id)
    assert summary["card_expires_on"] == "2027-11-22"
    assert summary["card_lapsed"] is False
    assert summary["renewal"] == {"card_type": "年卡", "price": 19800}
    # a retry with the same id gets the same sale, and nothing more is written
    again = _sell(cards_client, cashier, member.id, card_sale_id=sold["card_sale_id"])
    assert again.status_code == 200 and again.json["replayed"] is True
    assert len(_items("card_sale")) == 1


def test_an_annual_card_expiring_today_is_valid_today_and_lapsed_tomorrow(cards_client, clock):
    cashier = sign_in(cards_client)
    member = _member("C0002")
    Member.update(card_type="年卡", card_expires_on="2026-11-23").where(
        Member.id == member.id
    ).execute()
    assert _quote_rate(cards_client, cashier) == 79900 - 79900 * 850 // 1000
    summary = _summary(cards_client, cashier, member.id)
    assert (summary["card_lapsed"], summary["card_type_in_force"]) == (False, "年卡")
    clock.advance(days=1)
    cashier = sign_in(cards_client)
    assert _quote_rate(cards_client, cashier) == 0  # 普通卡: no discount
    summary = _summary(cards_client, cashier, member.id)
    assert (summary["card_lapsed"], summary["card_type_in_force"]) == (True, "普通卡")
    assert summary["renewal"] == {"card_type": "年卡", "price": 19800}
    # a sale the day after the lapse: priced and sent as the fallback
    sale = cards_client.post(
        "/api/v1/sales",
        headers=cashier,
        json={
            "member": {"card_no": "C0002"},
            "lines": [{"sku": "P0009", "qty": 1}],
            "tenders": [{"kind": "cash", "amount": 799}],
        },
    )
    assert sale.status_code == 201, sale.json
    (item,) = _items("sale")
    assert item["body"]["pricing_input"]["member"]["card_type"] == "普通卡"
    assert item["body"]["member_discount"] == 0


@pytest.mark.parametrize(
    ("expires_on", "valid_from", "valid_to"),
    [
        ("2026-12-31", "2027-01-01", "2027-12-31"),  # before expiry: from the old end
        ("2026-11-23", "2026-11-24", "2027-11-23"),  # on its last day: still before
        ("2026-11-20", "2026-11-23", "2027-11-22"),  # after expiry: from today
    ],
)
def test_renewal_before_and_after_expiry(cards_client, expires_on, valid_from, valid_to):
    cashier = sign_in(cards_client)
    member = _member("C0002")
    Member.update(card_type="年卡", card_expires_on=expires_on).where(
        Member.id == member.id
    ).execute()
    res = _sell(cards_client, cashier, member.id)
    assert res.status_code == 201, res.json
    assert (res.json["valid_from"], res.json["valid_to"], res.json["renewal"]) == (
        valid_from,
        valid_to,
        True,
    )
    assert Member.get_by_id(member.id).card_expires_on == valid_to


def test_bad_card_sales_are_refused_by_field(cards_client):
    cashier = sign_in(cards_client)
    member = _member("C0002")
    for body, status, field in (
        ({"card_type": "金卡"}, 400, "card_type"),  # not sold
        ({}, 400, "card_type"),
        ({"card_type": "年卡", "tender": "stored_value"}, 400, "tender"),
        ({"card_type": 3}, 400, "card_type"),
    ):
        res = cards_client.post(
            f"/api/v1/members/{member.id}/card-product", headers=cashier, json=body
        )
        assert (res.status_code, res.json["field"]) == (status, field), res.json
    missing = _sell(cards_client, cashier, "00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert _sell(cards_client, cashier, member.id, "月卡").status_code == 201
    again = _sell(cards_client, cashier, member.id, "月卡")
    assert again.status_code == 409 and again.json["field"] == "card_type"
    assert "不可续费" in again.json["message"]
    assert len(_items("card_sale")) == 1


def test_a_topup_past_the_threshold_upgrades_the_card_in_the_same_transaction(cards_client):
    manager = sign_in(cards_client, "9001", "9999")
    member = _member("C0002")
    small = cards_client.post(
        "/api/v1/topups", headers=manager, json={"member": {"card_no": "C0002"}, "amount": 49900}
    )
    assert small.status_code == 201 and "card_type" not in small.json
    assert Member.get_by_id(member.id).card_type == "银卡"
    big = cards_client.post(
        "/api/v1/topups", headers=manager, json={"member": {"card_no": "C0002"}, "amount": 50000}
    )
    assert big.status_code == 201 and big.json["card_type"] == "金卡"
    assert Member.get_by_id(member.id).card_type == "金卡"
    first, second = _items("topup")
    assert "card_type" not in first["body"]
    assert second["body"]["card_type"] == "金卡"


def test_card_replacement_needs_a_manager_and_keeps_everything_with_the_member(cards_client):
    cashier = sign_in(cards_client)
    member = _member("C0002")
    Member.update(sv_principal=1234).where(Member.id == member.id).execute()
    path = f"/api/v1/members/{member.id}/card-replacement"
    body = {"old_card_no": "C0002", "new_card_no": "N0002", "reason": "卡片损坏"}
    refused = cards_client.post(path, headers=cashier, json=body)
    assert refused.status_code == 403 and refused.json["field"] == "manager"
    taken = cards_client.post(
        path, headers=cashier, json=body | {"new_card_no": "C0001", "manager": MANAGER}
    )
    assert taken.status_code == 409 and taken.json["field"] == "new_card_no"
    assert "已被其他会员使用" in taken.json["message"]
    not_theirs = cards_client.post(
        path, headers=cashier, json=body | {"old_card_no": "C0001", "manager": MANAGER}
    )
    assert not_theirs.status_code == 404 and not_theirs.json["field"] == "old_card_no"
    res = cards_client.post(path, headers=cashier, json=body | {"manager": MANAGER})
    assert res.status_code == 201, res.json
    assert Card.get_by_id("C0002").status == "blocked"
    assert Card.get_by_id("N0002").status == "active"
    old = cards_client.get("/api/v1/members/by-card/C0002", headers=cashier)
    assert old.status_code == 403
    new = cards_client.get("/api/v1/members/by-card/N0002", headers=cashier)
    assert new.status_code == 200
    assert new.json["member"]["member_id"] == member.id
    assert new.json["member"]["stored_value"]["principal"] == 1234
    (item,) = _items("card_replace")
    assert item["body"] | {"replace_id": "x"} == {
        "replace_id": "x",
        "member_id": member.id,
        "old_card_no": "C0002",
        "new_card_no": "N0002",
        "reason": "卡片损坏",
        "cashier": "1001",
        "approved_by": "9001",
    }


def test_a_lost_card_is_blocked_at_once_and_sent_once(cards_client):
    cashier = sign_in(cards_client)
    refused = cards_client.post("/api/v1/cards/C0002/block", headers=cashier, json={})
    assert refused.status_code == 403
    res = cards_client.post(
        "/api/v1/cards/C0002/block", headers=cashier, json={"manager": MANAGER, "reason": "丢失"}
    )
    assert res.status_code == 201 and res.json["already"] is False
    assert cards_client.get("/api/v1/members/by-card/C0002", headers=cashier).status_code == 403
    again = cards_client.post(
        "/api/v1/cards/C0002/block", headers=cashier, json={"manager": MANAGER}
    )
    assert again.status_code == 200 and again.json["already"] is True
    (item,) = _items("card_block")
    assert (item["body"]["card_no"], item["body"]["reason"]) == ("C0002", "丢失")
    assert item["body"]["approved_by"] == "9001"
    unknown = cards_client.post(
        "/api/v1/cards/NOPE1/block", headers=cashier, json={"manager": MANAGER}
    )
    assert unknown.status_code == 404 and unknown.json["field"] == "card_no"


def test_an_older_till_without_card_products_prices_as_before(app, demo_till):
    client = app.test_client()
    cashier = sign_in(client)
    assert DEMO_RULES.cards == CardRules()
    # the demo rules: 银卡 at 950, and the summary says nothing has lapsed
    assert _quote_rate(client, cashier) == 79900 - 79900 * 950 // 1000
    summary = _summary(client, cashier, _member("C0002").id)
    assert "card_lapsed" not in summary and "renewal" not in summary


def test_a_card_product_is_sold_not_given_at_registration(cards_client):
    cashier = sign_in(cards_client)
    before = len(_items("registration"))  # the demo's members
    res = cards_client.post(
        "/api/v1/members",
        headers=cashier,
        json={"name": "王五", "phone": "13900000099", "card_type": "年卡"},
    )
    assert res.status_code == 400 and res.json["field"] == "card_type", res.json
    assert "须购买" in res.json["message"]
    assert len(_items("registration")) == before


def test_a_card_sold_here_outlives_an_older_member_record_from_hq(cards_client, demo_till):
    from core.protocol import Change
    from edge.sync.apply import Applier, ensure_sync_tables

    ensure_sync_tables(demo_till.db)
    cashier = sign_in(cards_client)
    member = _member("C0002")
    sold = _sell(cards_client, cashier, member.id).json
    seq = Outbox.get(Outbox.kind == "card_sale").seq
    record = {
        "member_id": member.id,
        "name": member.name,
        "card_type": "银卡",  # HQ has not applied the sale yet
        "card_expires_on": None,
        "status": "active",
        "stored_value": {"principal": 0, "bonus": 0},
        "points_lots": [],
    }

    def hq_sends(change_seq: int, through: int) -> None:
        change = Change(change_seq, "member", member.id, "upsert", record | {"through": through})
        with demo_till.db.atomic():
            Applier(demo_till.store, demo_till.keys, "2026-11-23T11:00:00+08:00").apply_changes(
                [change]
            )

    hq_sends(1, {})
    after = Member.get_by_id(member.id)
    assert (after.card_type, after.card_expires_on) == ("年卡", sold["valid_to"])
    # once HQ has applied the sale (through its seq), HQ's word is the member's card
    record |= {"card_type": "年卡", "card_expires_on": "2027-11-22"}
    hq_sends(2, {demo_till.store: seq})
    assert Member.get_by_id(member.id).card_expires_on == "2027-11-22"
    record |= {"card_type": "普通卡", "card_expires_on": None}  # e.g. changed by hand at HQ
    hq_sends(3, {demo_till.store: seq})
    assert Member.get_by_id(member.id).card_type == "普通卡"


def test_an_erased_members_card_receipts_lose_the_masked_name(cards_client):
    from edge.sync.erase import erase_local_copies

    cashier = sign_in(cards_client)
    member = _member("C0002")
    sold = _sell(cards_client, cashier, member.id).json
    assert CardSale.get_by_id(sold["card_sale_id"]).receipt["member"]["masked_name"]
    with Member._meta.database.atomic():
        erase_local_copies(member.id)
    receipt = CardSale.get_by_id(sold["card_sale_id"]).receipt
    assert (receipt["member"]["masked_name"], receipt["member"]["masked_phone"]) == ("", "")
