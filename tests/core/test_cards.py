"""Card types as products and 充值升级 (core/cards.py), from tables."""

from __future__ import annotations

import datetime as dt

import pytest

from core.cards import (
    add_months,
    card_type_in_force,
    is_lapsed,
    period_end,
    product_for,
    sell,
    upgrade_for_topup,
)
from core.errors import Conflict, ValidationError
from core.rules import CardProduct, CardRules, Rules

D = dt.date.fromisoformat
ANNUAL = CardProduct("年卡", 19800, months=12)
MONTHLY = CardProduct("月卡", 2900, months=1, renewable=False)
TEN_DAYS = CardProduct("体验卡", 0, days=10, fallback="银卡")
RULES = Rules(
    version=7,
    card_type_discount={"年卡": 900, "银卡": 950},
    cards=CardRules(
        (ANNUAL, MONTHLY, TEN_DAYS),
        CardRules.from_dict(
            {
                "upgrades": [
                    {"threshold": 200000, "card_type": "钻石卡"},
                    {"threshold": 50000, "card_type": "金卡"},
                ]
            }
        ).upgrades,
    ),
)


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        ("2026-03-15", 12, "2027-03-15"),
        ("2024-02-29", 12, "2025-03-01"),  # no 29 Feb next year: the 1st of March
        ("2024-02-29", 48, "2028-02-29"),
        ("2026-01-31", 1, "2026-03-01"),
        ("2026-12-31", 2, "2027-03-01"),
        ("2026-11-30", 3, "2027-03-01"),
        ("2026-11-30", 2, "2027-01-30"),
    ],
)
def test_add_months(day: str, months: int, expected: str) -> None:
    assert add_months(D(day), months) == D(expected)


@pytest.mark.parametrize(
    ("product", "start", "last_day"),
    [
        (ANNUAL, "2026-03-15", "2027-03-14"),
        (ANNUAL, "2024-02-29", "2025-02-28"),  # bought on 29 Feb: through 28 Feb
        (ANNUAL, "2025-03-01", "2026-02-28"),
        (ANNUAL, "2027-03-01", "2028-02-29"),  # a leap year's last day of February
        (MONTHLY, "2026-01-31", "2026-02-28"),
        (TEN_DAYS, "2026-12-25", "2027-01-03"),
    ],
)
def test_period_end(product: CardProduct, start: str, last_day: str) -> None:
    assert period_end(product, D(start)) == D(last_day)


@pytest.mark.parametrize(
    ("expires_on", "today", "lapsed"),
    [
        ("2026-12-01", "2026-12-01", False),  # expires today: still valid today
        ("2026-12-01", "2026-12-02", True),  # lapsed tomorrow
        ("2026-12-01", "2026-11-30", False),
        (None, "2030-01-01", False),
    ],
)
def test_expires_today_means_valid_today(expires_on: str | None, today: str, lapsed: bool) -> None:
    assert is_lapsed(D(expires_on) if expires_on else None, D(today)) is lapsed


@pytest.mark.parametrize(
    ("current", "expires_on", "today", "valid_from", "valid_to", "renewal"),
    [
        # a new card from today
        ("普通卡", None, "2026-12-04", "2026-12-04", "2027-12-03", False),
        # renewal before expiry: extends from the old last day
        ("年卡", "2027-01-10", "2026-12-04", "2027-01-11", "2028-01-10", True),
        # renewal on the last day: still before expiry
        ("年卡", "2026-12-04", "2026-12-04", "2026-12-05", "2027-12-04", True),
        # renewal after expiry: from today
        ("年卡", "2026-12-03", "2026-12-04", "2026-12-04", "2027-12-03", True),
        # an annual card bought on 29 Feb
        ("普通卡", None, "2028-02-29", "2028-02-29", "2029-02-28", False),
        # another card product held: a new card from today
        ("体验卡", "2026-12-10", "2026-12-04", "2026-12-04", "2027-12-03", False),
    ],
)
def test_sell_annual_card(
    current: str,
    expires_on: str | None,
    today: str,
    valid_from: str,
    valid_to: str,
    renewal: bool,
) -> None:
    period = sell(ANNUAL, current, D(expires_on) if expires_on else None, D(today))
    assert (period.valid_from, period.valid_to, period.renewal) == (
        D(valid_from),
        D(valid_to),
        renewal,
    )
    assert (period.card_type, period.price) == ("年卡", 19800)


def test_a_card_that_is_not_renewable_is_refused_while_valid_and_sold_again_once_lapsed() -> None:
    with pytest.raises(Conflict) as err:
        sell(MONTHLY, "月卡", D("2026-12-20"), D("2026-12-04"))
    assert err.value.field == "card_type"
    period = sell(MONTHLY, "月卡", D("2026-12-03"), D("2026-12-04"))
    assert (period.valid_from, period.valid_to) == (D("2026-12-04"), D("2027-01-03"))


@pytest.mark.parametrize(
    ("card_type", "expires_on", "today", "in_force"),
    [
        ("年卡", "2026-12-04", "2026-12-04", "年卡"),  # last day: still the 年卡
        ("年卡", "2026-12-04", "2026-12-05", "普通卡"),  # the day after: its fallback
        ("体验卡", "2026-12-04", "2026-12-05", "银卡"),  # a fallback of the chain's choice
        ("年卡", None, "2030-01-01", "年卡"),  # given by hand without a last day
        ("金卡", "2020-01-01", "2026-12-05", "金卡"),  # not a card product: never lapses
        (None, None, "2026-12-05", None),
    ],
)
def test_card_type_in_force(
    card_type: str | None, expires_on: str | None, today: str, in_force: str | None
) -> None:
    expires = D(expires_on) if expires_on else None
    assert card_type_in_force(RULES, card_type, expires, D(today)) == in_force


def test_a_lapsed_annual_card_gets_no_annual_card_discount() -> None:
    in_force = card_type_in_force(RULES, "年卡", D("2026-12-04"), D("2026-12-05"))
    assert RULES.member_rate(in_force, None) == 1000
    in_force = card_type_in_force(RULES, "年卡", D("2026-12-04"), D("2026-12-04"))
    assert RULES.member_rate(in_force, None) == 900


@pytest.mark.parametrize(
    ("amount", "current", "upgraded_to"),
    [
        (49999, "普通卡", None),
        (50000, "普通卡", "金卡"),  # at least the threshold
        (250000, "普通卡", "钻石卡"),  # the highest threshold reached wins
        (50000, "金卡", None),  # already there
        (60000, "钻石卡", None),  # never moved down
        (200000, "金卡", "钻石卡"),
        (50000, "年卡", "金卡"),
    ],
)
def test_topup_upgrade(amount: int, current: str, upgraded_to: str | None) -> None:
    upgrade = upgrade_for_topup(RULES, amount, current)
    assert (upgrade.card_type if upgrade else None) == upgraded_to


def test_product_for_names_the_products_sold() -> None:
    assert product_for(RULES, "年卡") is ANNUAL
    with pytest.raises(ValidationError, match="年卡") as err:
        product_for(RULES, "金卡")
    assert err.value.field == "card_type"


def test_the_cards_section_round_trips_and_travels_only_when_used() -> None:
    doc = RULES.to_dict()
    assert doc["schema"] >= 2
    assert doc["cards"]["products"][0] == {
        "card_type": "年卡",
        "price": 19800,
        "months": 12,
        "renewable": True,
        "fallback": "普通卡",
    }
    assert Rules.from_dict(doc) == RULES
    assert "cards" not in Rules(version=2).to_dict()


@pytest.mark.parametrize(
    ("cards", "field"),
    [
        ({"products": [{"card_type": "年卡", "price": 19800}]}, "cards.products[0].months"),
        (
            {"products": [{"card_type": "年卡", "price": 1, "months": 12, "days": 365}]},
            "cards.products[0].months",
        ),
        (
            {"products": [{"card_type": "年卡", "price": -1, "months": 12}]},
            "cards.products[0].price",
        ),
        (
            {"products": [{"card_type": "年卡", "price": 1.5, "months": 12}]},
            "cards.products[0].price",
        ),
        (
            {"products": [{"card_type": "年卡", "price": 1, "months": 12, "fallback": "年卡"}]},
            "cards.products[0].fallback",
        ),
        (
            {"products": [{"card_type": "", "price": 1, "months": 12}]},
            "cards.products[0].card_type",
        ),
        (
            {"products": [{"card_type": "年卡", "price": 1, "months": 12, "colour": "red"}]},
            "cards.products[0].colour",
        ),
        (
            {
                "products": [
                    {"card_type": "年卡", "price": 1, "months": 12},
                    {"card_type": "年卡", "price": 2, "months": 6},
                ]
            },
            "cards.products",
        ),
        (
            {
                "products": [
                    {"card_type": "年卡", "price": 1, "months": 12},
                    {"card_type": "月卡", "price": 2, "months": 1, "fallback": "年卡"},
                ]
            },
            "cards.products[1].fallback",
        ),
        ({"upgrades": [{"threshold": 0, "card_type": "金卡"}]}, "cards.upgrades[0].threshold"),
        (
            {
                "products": [{"card_type": "年卡", "price": 1, "months": 12}],
                "upgrades": [{"threshold": 100, "card_type": "年卡"}],
            },
            "cards.upgrades[0].card_type",
        ),
        ({"upgrades": "金卡"}, "cards.upgrades"),
        ({"colour": []}, "cards"),
    ],
)
def test_bad_cards_sections_are_refused_by_field(cards: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Rules.from_dict({"version": 2, "schema": 2, "cards": cards})
    assert err.value.field == field


# ---- the up items' bodies (core.protocol) --------------------------------------------

MEMBER = "01a20000-0000-7000-8000-000000000001"
CARD_SALE = {
    "card_sale_id": "s1",
    "member_id": MEMBER,
    "card_type": "年卡",
    "price": 19800,
    "valid_from": "2026-11-23",
    "valid_to": "2027-11-22",
    "renewal": False,
    "tender": "cash",
    "cashier": "1001",
}
REPLACE = {
    "replace_id": "r1",
    "member_id": MEMBER,
    "old_card_no": "C0001",
    "new_card_no": "N0001",
    "reason": "换卡",
    "cashier": "1001",
    "approved_by": "9001",
}
BLOCK = {
    "block_id": "b1",
    "card_no": "C0001",
    "member_id": None,
    "reason": "挂失",
    "cashier": "1001",
    "approved_by": "9001",
}
TOPUP = {
    "topup_id": "t1",
    "member_id": MEMBER,
    "principal": 50000,
    "bonus": 0,
    "tender": "cash",
    "cashier": "1001",
}


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("card_sale", CARD_SALE),
        ("card_replace", REPLACE),
        ("card_block", BLOCK),
        ("topup", TOPUP | {"card_type": "金卡"}),
        ("topup", TOPUP),
    ],
)
def test_the_card_items_a_till_sends_are_valid(kind: str, body: dict) -> None:
    from core.protocol import BODY_VALIDATORS

    assert BODY_VALIDATORS[kind](dict(body), kind) == body


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("card_sale", CARD_SALE | {"price": -1}, "price"),
        ("card_sale", CARD_SALE | {"price": 1.5}, "price"),
        ("card_sale", CARD_SALE | {"valid_to": "2026-11-22"}, "valid_to"),
        ("card_sale", CARD_SALE | {"valid_from": "2026-13-01"}, "valid_from"),
        ("card_sale", CARD_SALE | {"renewal": "no"}, "renewal"),
        ("card_sale", CARD_SALE | {"tender": "stored_value"}, "tender"),
        ("card_sale", CARD_SALE | {"member_id": "nobody"}, "member_id"),
        ("card_replace", REPLACE | {"new_card_no": "C0001"}, "new_card_no"),
        ("card_replace", REPLACE | {"approved_by": None}, "approved_by"),
        ("card_block", BLOCK | {"card_no": ""}, "card_no"),
        ("card_block", BLOCK | {"reason": 3}, "reason"),
        ("topup", TOPUP | {"card_type": ""}, "card_type"),
        ("topup", TOPUP | {"card_type": 5}, "card_type"),
    ],
)
def test_bad_card_items_are_refused_by_field(kind: str, body: dict, field: str) -> None:
    from core.errors import ProtocolError
    from core.protocol import BODY_VALIDATORS

    with pytest.raises(ProtocolError) as err:
        BODY_VALIDATORS[kind](dict(body), kind)
    assert err.value.field == field
