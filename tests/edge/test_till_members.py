"""The member at the cashier's screen, through the till API (docs/till-screen.md, "The
member"): the search finds cards with letters, names, pinyin and phones; the summary's
glance fields; the registration form's choices; a top-up previewed before it is paid."""

from __future__ import annotations

import pytest

from core.rules import DEMO_RULES, Rules
from edge.models import Card, Member, PointsLot, Setting
from tests.edge.test_cards import RULES as CARD_RULES

# the cards tests' card products (年卡 sold and renewable, 月卡 not renewable early), no
# 充值升级, the demo's top-up bonuses, and a tier ladder
RULES = Rules.from_dict(
    CARD_RULES.to_dict()
    | {
        "version": 7,
        "topup_bonuses": DEMO_RULES.to_dict()["topup_bonuses"],
        "cards": CARD_RULES.cards.to_dict() | {"upgrades": []},
        "tiers": {
            "ladder": [
                {"name": "白银", "threshold": 0},
                {"name": "黄金", "threshold": 1000},
                {"name": "钻石", "threshold": 5000},
            ]
        },
    }
)


def set_up_zhang_san(**columns) -> Member:
    """张三 (C0001) with these rules, 1250 points (100 a yuan: ¥12.50), growth 1200 on 黄金
    and ``columns`` set."""
    Setting.replace(key="rules", value=RULES.to_dict()).execute()
    zs = _member("C0001")
    PointsLot.create(
        lot_id="L1",
        member_id=zs.id,
        earned_on="2026-11-01",
        expires_on="2027-11-01",
        remaining=1250,
    )
    Member.update(tier="黄金", growth=1200, **columns).where(Member.id == zs.id).execute()
    return zs


def _member(card_no: str) -> Member:
    return Member.get_by_id(Card.get_by_id(card_no).member_id)


def _buy_card(client, headers, member_id: str, card_type: str) -> dict:
    """The card product sold for cash; the member's summary after."""
    res = client.post(
        f"/api/v1/members/{member_id}/card-product",
        headers=headers,
        json={"card_type": card_type, "tender": "cash"},
    )
    assert res.status_code == 201, res.json
    return client.get(f"/api/v1/members/{member_id}", headers=headers).json["member"]


def _search(client, headers, q: str) -> list[dict]:
    res = client.get("/api/v1/members", query_string={"q": q}, headers=headers)
    assert res.status_code == 200, res.json
    return res.json["members"]


@pytest.mark.parametrize("typed", ["C0001", "c0001", " C0001 "])
def test_a_card_number_with_letters_finds_its_member(client, cashier, typed):
    found = _search(client, cashier, typed)
    assert [m["name"] for m in found] == ["张三"]
    assert found[0]["cards"] == ["C0001"]


def test_the_search_finds_a_name_its_pinyin_initials_and_full_pinyin_and_a_phone(client, cashier):
    assert "张三" in [m["name"] for m in _search(client, cashier, "张")]
    assert "张三" in [m["name"] for m in _search(client, cashier, "zs")]
    assert "张三" in [m["name"] for m in _search(client, cashier, "zhangsan")]
    assert [m["name"] for m in _search(client, cashier, "13800000002")] == ["李四"]
    assert _search(client, cashier, "C9999") == []


def test_a_blocked_card_or_one_whose_member_is_gone_finds_nobody(client, cashier, demo_till):
    Card.update(status="blocked").where(Card.card_no == "C0002").execute()
    assert _search(client, cashier, "C0002") == []
    Card.create(card_no="X0404", member_id="no-such-member", issued_at="2026-11-01T10:00:00")
    assert _search(client, cashier, "X0404") == []


def test_the_glance_has_points_worth_birthday_tags_tier_progress_and_card_offers(
    client, cashier, demo_till, clock
):
    # a birthday this month: lunar 十月十六 is 2026-11-24 (the clock is 2026-11-23)
    zs = set_up_zhang_san(tags=["投诉", "爱喝茶"], birthday="10-16", birthday_calendar="lunar")
    res = client.get(f"/api/v1/members/{zs.id}", headers=cashier)
    assert res.status_code == 200, res.json
    m = res.json["member"]
    assert m["points"] == 1250 and m["points_value"] == 1250
    assert m["tier_progress"] == {
        "tier": "黄金",
        "growth": 1200,
        "next_tier": "钻石",
        "next_threshold": 5000,
        "to_next": 3800,
    }
    assert m["birthday_this_month"] is True and m["birthday_today"] is False
    assert m["birthday_next"] == m["birthday_this_month_on"] == "2026-11-24"
    assert m["tags"] == ["投诉", "爱喝茶"] and m["at_risk"] == ["投诉"]
    assert m["card_offers"][0] == {
        "card_type": "年卡",
        "price": 19800,
        "renewal": False,
        "valid_from": "2026-11-23",
        "valid_to": "2027-11-22",
    }
    assert [(o["card_type"], o["renewal"]) for o in m["card_offers"]] == [
        ("年卡", False),
        ("月卡", False),
    ]
    # the card bought: the offer is now a renewal from the day after its last day
    m = _buy_card(client, cashier, zs.id, "年卡")
    assert m["card_type"] == "年卡" and m["card_expires_on"] == "2027-11-22"
    assert m["card_offers"][0] == {
        "card_type": "年卡",
        "price": 19800,
        "renewal": True,
        "valid_from": "2027-11-23",
        "valid_to": "2028-11-22",
    }
    # a 月卡 may not be renewed before it lapses: once held, it is not offered
    m = _buy_card(client, cashier, zs.id, "月卡")
    assert [(o["card_type"], o["renewal"]) for o in m["card_offers"]] == [("年卡", False)]


def test_the_glance_of_a_member_without_a_ladder_birthday_or_points(client, cashier):
    m = _search(client, cashier, "C0002")[0]
    assert m["tier_progress"] is None and m["card_offers"] == []
    assert m["points_value"] == 0 and m["birthday_this_month"] is False
    assert m["birthday_next"] is None and m["birthday_this_month_on"] is None
    assert m["tags"] == [] and m["at_risk"] == []


def test_the_registration_form_offers_the_card_types_a_registration_takes(
    client, cashier, demo_till
):
    Setting.replace(key="rules", value=RULES.to_dict()).execute()
    res = client.get("/api/v1/member-form", headers=cashier)
    assert res.status_code == 200, res.json
    form = res.json
    assert form["card_types"] == ["普通卡", "银卡", "金卡"]  # 年卡 is sold, not given
    assert form["default_card_type"] == "普通卡"
    assert [c["channel"] for c in form["consent"]] == ["sms", "wechat", "call"]
    assert form["card_products"][0]["card_type"] == "年卡"
    for card_type in form["card_types"]:
        res = client.post(
            "/api/v1/members",
            headers=cashier,
            json={"name": "王五", "phone": f"1370000000{len(card_type)}", "card_type": card_type},
        )
        assert res.status_code in (201, 409), res.json


def _preview(client, headers, amount):
    return client.get("/api/v1/topups/preview", query_string={"amount": amount}, headers=headers)


def test_the_top_up_preview_gives_the_bonus_the_top_up_then_gives(client, cashier):
    res = _preview(client, cashier, "60000")
    assert res.status_code == 200, res.json
    p = res.json
    assert (p["principal"], p["bonus"], p["total"]) == (60000, 10000, 70000)
    assert p["next_bonus"] == {"threshold": 100000, "bonus": 25000, "more": 40000}
    assert p["bonus_tiers"] == [
        {"threshold": 50000, "bonus": 10000},
        {"threshold": 100000, "bonus": 25000},
    ]
    assert p["needs_manager"] is None
    done = client.post(
        "/api/v1/topups",
        headers=cashier,
        json={"member": {"card_no": "C0002"}, "amount": 60000},
    )
    assert done.status_code == 201, done.json
    assert (done.json["principal"], done.json["bonus"]) == (p["principal"], p["bonus"])
    small = _preview(client, cashier, "100").json
    assert small["bonus"] == 0 and small["next_bonus"]["more"] == 49900


def test_the_top_up_preview_says_when_a_manager_must_approve(client, cashier, manager):
    over = _preview(client, cashier, "250000").json  # past the cashier's ¥2000 a top-up
    assert over["needs_manager"].startswith("单笔充值超过收银员限额 2000.00 元")
    assert over["needs_manager"].endswith("需要店长授权")
    assert _preview(client, manager, "250000").json["needs_manager"] is None
    refused = client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0002"}, "amount": 250000}
    )
    assert refused.status_code == 403 and refused.json["field"] == "manager"


@pytest.mark.parametrize("amount", ["", "0", "-5", "12.5", "abc", "²", "9" * 30, "1000001"])
def test_a_bad_top_up_preview_amount_is_a_400_in_chinese(client, cashier, amount):
    res = _preview(client, cashier, amount)
    assert res.status_code == 400, res.json
    assert res.json["field"] == "amount" and "充值" in res.json["message"]


def test_the_preview_needs_a_signed_in_cashier(client):
    assert _preview(client, {}, "100").status_code == 401
    assert client.get("/api/v1/member-form").status_code == 401


def test_the_preview_counts_what_the_cashier_topped_up_today(client, cashier, demo_till):
    day_limit = demo_till.config.till.cashier_topup_day_limit  # ¥10,000
    single = demo_till.config.till.cashier_topup_limit  # ¥2,000
    for _ in range(day_limit // single):
        res = client.post(
            "/api/v1/topups",
            headers=cashier,
            json={"member": {"card_no": "C0002"}, "amount": single},
        )
        assert res.status_code == 201, res.json
    over = _preview(client, cashier, "100").json
    assert over["needs_manager"].startswith("今日充值将超过收银员限额 10000.00 元")


def test_a_birthday_passed_this_month_is_still_this_months(client, cashier, demo_till):
    """The clock is 2026-11-23: a solar 11-05 has passed (next: 2027), a lunar 十月初一
    (2026-11-09 this year) too; the screen says 本月生日 with this month's day."""
    zs = _member("C0001")
    for birthday, calendar, this_month, following in (
        ("1990-11-05", "solar", "2026-11-05", "2027-11-05"),
        ("10-01", "lunar", "2026-11-09", "2027-10-29"),
        ("1990-12-01", "solar", None, "2026-12-01"),
    ):
        Member.update(birthday=birthday, birthday_calendar=calendar).where(
            Member.id == zs.id
        ).execute()
        m = client.get(f"/api/v1/members/{zs.id}", headers=cashier).json["member"]
        assert (m["birthday_this_month"], m["birthday_this_month_on"], m["birthday_next"]) == (
            this_month is not None,
            this_month,
            following,
        ), birthday
