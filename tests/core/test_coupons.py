"""Coupons in pricing, from tables: each template kind, minimum spend, categories, two
coupons, percent after member discount, never negative, rounding after, the order of
application (docs/programme/coupons.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from core.coupons import (
    CODE_ALPHABET,
    CODE_LENGTH,
    CouponInput,
    CouponTemplate,
    new_code,
    normalise_code,
    valid_on,
)
from core.errors import ValidationError
from core.money import Rounding
from core.points import points_earned
from core.pricing import LineInput, MemberContext, price_basket
from core.rules import Rules

RULES = Rules(version=3, card_type_discount={"金卡": 900}, rounding=Rounding.NONE)
GOLD = MemberContext("m-gold", "金卡")


def tpl(kind: str = "amount", **kw) -> CouponTemplate:
    data = {"id": kw.pop("id", "T1"), "name": "券", "kind": kind} | kw
    return CouponTemplate.from_dict(data)


def ln(sku: str, unit: int, qty: int = 1, cat: str = "", promo: int | None = None) -> LineInput:
    return LineInput(sku, sku, qty, unit, promo, 0, False, False, cat)


def cp(code: str, t: CouponTemplate) -> CouponInput:
    return CouponInput(code, t)


A = ln("A", 1000, cat="food")
B = ln("B", 3000, cat="drink")
C = ln("C", 500, qty=2, cat="food")


@pytest.mark.parametrize(
    ("lines", "member", "coupons", "amounts", "coupon_total"),
    [
        # amount off over all lines, spread by largest remainders: 10 yuan off 40 yuan
        ([A, B], None, [tpl(amount=1000)], [750, 2250], 1000),
        # amount off a category only
        ([A, B], None, [tpl(amount=300, categories=["drink"])], [1000, 2700], 300),
        # amount off named SKUs (a SKU or a category matches)
        ([A, B, C], None, [tpl(amount=200, skus=["C"])], [1000, 3000, 800], 200),
        # percent off: 10% off the food lines
        (
            [A, B, C],
            None,
            [tpl("percent", off_permille=100, categories=["food"])],
            [900, 3000, 900],
            200,
        ),
        # percent after member discount: 金卡 90% of 1000 = 900, then 20% off -> 720
        ([A], GOLD, [tpl("percent", off_permille=200)], [720], 180),
        # gift: one unit of the gift SKU free (2 × 5 yuan: one unit off)
        ([A, C], None, [tpl("gift", gift_sku="C")], [1000, 500], 500),
        # gift after member discount: the unit as it stands (900 of a 金卡's 1000)
        ([A], GOLD, [tpl("gift", gift_sku="A")], [0], 900),
        # never negative: 50 yuan off a 10 yuan basket takes 10 yuan
        ([A], None, [tpl(amount=5000)], [0], 1000),
        # two coupons: 5 yuan off drinks, then 10% off what is left of everything
        (
            [A, B],
            None,
            [tpl(amount=500, categories=["drink"]), tpl("percent", id="T2", off_permille=100)],
            [900, 2250],
            850,
        ),
    ],
)
def test_coupon_table(lines, member, coupons, amounts, coupon_total):
    claimed = [cp(f"CODE{i}", t) for i, t in enumerate(coupons)]
    basket = price_basket(RULES, lines, member, coupons=claimed)
    assert [line.amount for line in basket.lines] == amounts
    assert basket.coupon_discount == coupon_total
    assert sum(c.discount for c in basket.coupons) == coupon_total
    assert basket.total == sum(amounts)
    assert all(line.amount >= 0 for line in basket.lines)
    assert basket.subtotal - basket.total == (
        basket.member_discount + basket.coupon_discount + basket.order_discount
    )


@pytest.mark.parametrize(
    ("min_spend", "member", "ok"),
    [
        (1000, None, True),  # exactly reached
        (1001, None, False),
        (1000, GOLD, False),  # judged after member discount: 900 < 1000
        (900, GOLD, True),
    ],
)
def test_minimum_spend_judged_after_member_discount(min_spend, member, ok):
    claimed = [cp("X", tpl(amount=100, min_spend=min_spend, categories=["food"]))]
    if ok:
        assert price_basket(RULES, [A, B], member, coupons=claimed).coupon_discount == 100
    else:
        with pytest.raises(ValidationError) as err:
            price_basket(RULES, [A, B], member, coupons=claimed)
        assert err.value.field == "coupons[0]"


def test_minimum_spend_is_before_the_order_discount():
    """The order discount comes before coupons but does not disqualify one."""
    claimed = [cp("X", tpl(amount=100, min_spend=1000))]
    basket = price_basket(RULES, [A], None, order_discount_rate=900, coupons=claimed)
    assert (basket.order_discount, basket.coupon_discount, basket.total) == (100, 100, 800)


@pytest.mark.parametrize(
    ("coupons", "field"),
    [
        ([cp("X", tpl(amount=100, categories=["toys"]))], "coupons[0]"),  # nothing eligible
        ([cp("X", tpl("gift", gift_sku="Z"))], "coupons[0]"),  # gift not in the basket
        ([cp("X", tpl(amount=1)), cp("X", tpl(amount=1))], "coupons[1]"),  # twice
    ],
)
def test_refusals_name_the_coupon(coupons, field):
    with pytest.raises(ValidationError) as err:
        price_basket(RULES, [A, B], None, coupons=coupons)
    assert err.value.field == field


def test_order_of_application_and_rounding_after():
    """promotion → member → order → coupons → manual → 抹零, in fen (the worked example of
    docs/programme/coupons.md)."""
    rules = Rules(version=3, card_type_discount={"金卡": 900}, rounding=Rounding.JIAO_DOWN)
    lines = [ln("A", 2999, promo=2599, cat="food"), ln("B", 4555, cat="drink")]
    basket = price_basket(
        rules,
        lines,
        GOLD,
        order_discount_rate=950,
        manual_adjustment=100,
        coupons=[cp("X", tpl("percent", off_permille=100, categories=["drink"]))],
    )
    a, b = basket.lines
    # promotion price 25.99 (no member discount on it); 45.55 × 90% = 41.00 (40.995 half up)
    assert (a.gross, a.member_discount, b.gross, b.member_discount) == (2599, 0, 4555, 455)
    # order discount 5% of 66.99 = 3.35 (3.3495 -> 3.35 by half-up on the price), allocated
    assert basket.order_discount == 335
    assert (a.order_discount, b.order_discount) == (130, 205)
    # coupon: 10% off what is left of B (4100 - 205 = 3895) = 389.5 -> 390
    assert (a.coupon_discount, b.coupon_discount) == (0, 390)
    # manual 1.00 allocated, then 抹零 to the jiao
    assert basket.manual_adjustment == 100
    assert basket.total == 2599 + 4555 - 455 - 335 - 390 - 100 - basket.rounding
    assert basket.total % 10 == 0 and basket.rounding == 4
    assert basket.total == 5870


def test_points_are_earned_on_what_is_paid_after_coupons():
    rules = Rules(version=3, points_per_yuan={"*": 1}, rounding=Rounding.NONE)
    member = MemberContext("m", None)
    plain = price_basket(rules, [B], member)
    with_coupon = price_basket(rules, [B], member, coupons=[cp("X", tpl(amount=1000))])
    day = dt.date(2026, 12, 1)
    assert points_earned(rules, None, plain.points_base, day) == 30
    assert points_earned(rules, None, with_coupon.points_base, day) == 20


def test_no_coupon_gives_the_same_basket():
    lines = [A, B, C]
    assert price_basket(RULES, lines, GOLD, 950, 100) == price_basket(
        RULES, lines, GOLD, 950, 100, coupons=()
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "amount"}, "amount"),
        ({"kind": "percent", "off_permille": 0}, "off_permille"),
        ({"kind": "percent", "off_permille": 1001}, "off_permille"),
        ({"kind": "gift"}, "gift_sku"),
        ({"kind": "bogus"}, "kind"),
        (
            {"kind": "amount", "amount": 1, "valid_days": 3, "valid_from": "2026-01-01"},
            "valid_days",
        ),
        (
            {
                "kind": "amount",
                "amount": 1,
                "valid_from": "2026-02-01",
                "valid_until": "2026-01-01",
            },
            "valid_until",
        ),
        ({"kind": "amount", "amount": 1, "valid_from": "soon"}, "valid_from"),
        ({"kind": "amount", "amount": 1, "colour": "red"}, "colour"),
        ({"kind": "amount", "amount": True}, "amount"),
    ],
)
def test_bad_templates_are_refused_by_field(data, field):
    with pytest.raises(ValidationError) as err:
        CouponTemplate.from_dict({"id": "T", "name": "券"} | data)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("template", "issued", "window"),
    [
        ({"valid_days": 30}, "2026-12-04", ("2026-12-04", "2027-01-02")),
        ({"valid_days": 1}, "2026-12-04", ("2026-12-04", "2026-12-04")),
        (
            {"valid_from": "2026-12-01", "valid_until": "2026-12-31"},
            "2026-12-04",
            ("2026-12-01", "2026-12-31"),
        ),
        ({}, "2026-12-04", (None, None)),
    ],
)
def test_validity_window(template, issued, window):
    t = tpl(amount=100, **template)
    start, end = t.issue_window(dt.date.fromisoformat(issued))
    assert (start and start.isoformat(), end and end.isoformat()) == window
    assert valid_on(start, end, dt.date.fromisoformat(issued))


@pytest.mark.parametrize(
    ("start", "end", "day", "ok"),
    [
        ("2026-12-01", "2026-12-31", "2026-12-31", True),
        ("2026-12-01", "2026-12-31", "2027-01-01", False),
        ("2026-12-01", "2026-12-31", "2026-11-30", False),
        (None, None, "2030-01-01", True),
    ],
)
def test_valid_on(start, end, day, ok):
    assert valid_on(start, end, dt.date.fromisoformat(day)) is ok


def test_codes_are_short_random_and_read_back_as_typed():
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == CODE_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert normalise_code(" abcd-efgh-ijkl ") == "ABCDEFGH1JK1"
    assert normalise_code("o0O") == "000"


def test_template_round_trip_and_describe():
    t = tpl("percent", off_permille=120, min_spend=10000, categories=["food"], valid_days=7)
    assert CouponTemplate.from_dict(t.to_dict()) == t
    assert t.describe() == "满100元8.8折"
    assert tpl(amount=550).describe() == "减5.50元"
    assert tpl("gift", gift_sku="A").describe() == "赠 A"


def test_the_new_member_coupon_rule_is_sent_only_when_set_and_checked():
    assert "new_member_coupon" not in Rules(version=4).to_dict()
    doc = Rules(version=4, new_member_coupon="NEW5").to_dict()
    assert doc["new_member_coupon"] == "NEW5" and doc["schema"] == 2
    assert Rules.from_dict(doc).new_member_coupon == "NEW5"
    with pytest.raises(ValidationError) as err:
        Rules.from_dict(doc | {"new_member_coupon": 5})
    assert err.value.field == "new_member_coupon"
