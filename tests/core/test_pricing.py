"""The pricing engine: tables of real baskets, and the invariants as properties."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ValidationError
from core.money import Rounding
from core.pricing import LineInput, MemberContext, PricedBasket, price_basket, share_of
from core.rules import Rules

RULES = Rules(
    version=7,
    card_type_discount={"普通卡": 1000, "银卡": 950, "金卡": 900},
    tier_discount={"钻石": 880},
    rounding=Rounding.NONE,
)
GOLD = MemberContext("m-gold", "金卡")
SILVER_DIAMOND = MemberContext("m-sd", "银卡", "钻石")


def line(
    sku: str = "P1",
    qty: int = 1,
    unit: int = 1000,
    promo: int | None = None,
    disc: int = 0,
    no_md: bool = False,
    no_pts: bool = False,
) -> LineInput:
    return LineInput(sku, f"商品{sku}", qty, unit, promo, disc, no_md, no_pts)


def amounts(basket: PricedBasket) -> list[int]:
    return [ln.amount for ln in basket.lines]


# ---- tables of baskets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "member", "expected_amounts", "member_discount"),
    [
        # 散客: no member discount
        ([line(qty=2, unit=1990)], None, [3980], 0),
        # 金卡 90%: 3 × 9.99 = 29.97 -> 26.97 (26.973 rounds to the fen)
        ([line(qty=3, unit=999)], GOLD, [2697], 300),
        # 银卡 95% but tier 钻石 88%: the better applies
        ([line(unit=1000)], SILVER_DIAMOND, [880], 120),
        ([line(unit=1000)], MemberContext("m", "金卡", "钻石"), [880], 120),
        ([line(unit=1000)], MemberContext("m", "金卡", "青铜"), [900], 100),
        ([line(unit=1000)], MemberContext("m", "银卡"), [950], 50),
        ([line(unit=1000)], MemberContext("m", "普通卡"), [1000], 0),
        ([line(unit=1000)], MemberContext("m", "未知卡"), [1000], 0),
        ([line(unit=1000)], MemberContext("m", None, "钻石"), [880], 120),
        # promotion price: no member discount on top (the rules say so)
        ([line(unit=5990, promo=4990)], GOLD, [4990], 0),
        # goods excluded from member discount, beside a line that gets it
        ([line("A", unit=1000, no_md=True), line("B", unit=1000)], GOLD, [1000, 900], 100),
        # line discount first, member discount on what is left
        ([line(qty=2, unit=1000, disc=200)], GOLD, [1620], 180),
        # member discount per line, each rounded half up: 9.99×0.9=8.991, 0.05×0.9=0.045
        ([line("A", unit=999), line("B", unit=5)], GOLD, [899, 5], 100),
        # a free line stays free
        ([line("A", unit=0), line("B", unit=1000)], GOLD, [0, 900], 100),
    ],
)
def test_member_and_line_discounts(
    lines: list[LineInput],
    member: MemberContext | None,
    expected_amounts: list[int],
    member_discount: int,
) -> None:
    basket = price_basket(RULES, lines, member)
    assert amounts(basket) == expected_amounts
    assert basket.member_discount == member_discount
    assert basket.total == sum(expected_amounts)
    assert basket.rules_version == 7


def test_promotion_line_reports_both_prices() -> None:
    basket = price_basket(RULES, [line(qty=2, unit=5990, promo=4990)], GOLD)
    (ln,) = basket.lines
    assert (ln.unit_price, ln.list_price, ln.gross, ln.promo) == (4990, 5990, 9980, True)
    assert basket.subtotal == 9980


def test_a_promotion_price_above_the_list_price_never_charges_more() -> None:
    basket = price_basket(RULES, [line(qty=2, unit=500, promo=900)], GOLD)
    (ln,) = basket.lines
    assert (ln.unit_price, ln.list_price, ln.gross, ln.promo) == (500, 500, 1000, False)
    assert ln.member_discount == 100  # an ordinary line: 金卡 9折 applies
    same = price_basket(RULES, [line(unit=500, promo=500)], GOLD).lines[0]
    assert (same.unit_price, same.promo, same.member_discount) == (500, False, 50)


def test_promotion_goods_get_member_discount_when_the_rules_allow() -> None:
    rules = dataclasses.replace(RULES, promo_excludes_member_discount=False)
    basket = price_basket(rules, [line(unit=5990, promo=4990)], GOLD)
    assert amounts(basket) == [4491]  # 49.90 × 0.9 = 44.91
    assert basket.member_discount == 499


def test_points_flags() -> None:
    lines = [
        line("A", unit=1000),
        line("B", unit=2000, no_pts=True),
        line("C", unit=5990, promo=4990),
    ]
    basket = price_basket(RULES, lines, GOLD)
    assert [ln.earns_points for ln in basket.lines] == [True, False, True]
    assert basket.points_base == 900 + 4990
    no_promo_points = dataclasses.replace(RULES, promo_earns_points=False)
    basket = price_basket(no_promo_points, lines, GOLD)
    assert [ln.earns_points for ln in basket.lines] == [True, False, False]
    assert basket.points_base == 900
    # a walk-in customer earns nothing
    assert price_basket(RULES, lines).points_base == 0


@pytest.mark.parametrize(
    ("lines", "rate", "expected_amounts", "order_discount"),
    [
        ([line("A", unit=6000), line("B", unit=4000)], 950, [5700, 3800], 500),
        # 88折 of 10.00 is 1.20, split 119.88 : 0.12 by largest remainder
        ([line("A", unit=999), line("B", unit=1)], 880, [879, 1], 120),
        ([line("A", unit=100), line("B", unit=100), line("C", unit=100)], 990, [99, 99, 99], 3),
        ([line("A", unit=1000)], 1000, [1000], 0),
        ([line("A", unit=1000)], 0, [0], 1000),
    ],
)
def test_order_discount_permille(
    lines: list[LineInput], rate: int, expected_amounts: list[int], order_discount: int
) -> None:
    basket = price_basket(RULES, lines, None, order_discount_rate=rate)
    assert amounts(basket) == expected_amounts
    assert basket.order_discount == order_discount
    assert sum(ln.order_discount for ln in basket.lines) == order_discount


def test_order_discount_applies_after_member_discount() -> None:
    basket = price_basket(RULES, [line(unit=10000)], GOLD, order_discount_rate=900)
    assert (basket.member_discount, basket.order_discount, basket.total) == (1000, 900, 8100)


def test_manual_adjustment_is_allocated_and_bounded() -> None:
    lines = [line("A", unit=600), line("B", unit=400)]
    basket = price_basket(RULES, lines, manual_adjustment=100)
    assert amounts(basket) == [540, 360]
    assert [ln.manual_adjustment for ln in basket.lines] == [60, 40]
    assert price_basket(RULES, lines, manual_adjustment=1000).total == 0
    for bad in (1001, -1):
        with pytest.raises(ValidationError) as err:
            price_basket(RULES, lines, manual_adjustment=bad)
        assert err.value.field == "manual_adjustment"
    with pytest.raises(ValidationError) as err:
        price_basket(RULES, lines, manual_adjustment=1.5)  # type: ignore[arg-type]
    assert err.value.field == "manual_adjustment"


def test_manual_adjustment_is_bounded_by_what_is_left_after_discounts() -> None:
    with pytest.raises(ValidationError):
        price_basket(RULES, [line(unit=1000)], GOLD, manual_adjustment=901)
    assert price_basket(RULES, [line(unit=1000)], GOLD, manual_adjustment=900).total == 0


@pytest.mark.parametrize(
    ("units", "mode", "total", "rounding"),
    [
        ([1234], Rounding.NONE, 1234, 0),
        ([1234], Rounding.JIAO_DOWN, 1230, 4),
        ([1299], Rounding.YUAN_DOWN, 1200, 99),
        ([1235], Rounding.JIAO_HALF_UP, 1240, -5),
        ([1250], Rounding.YUAN_HALF_UP, 1300, -50),
        ([617, 617], Rounding.JIAO_DOWN, 1230, 4),
        ([1199, 1], Rounding.YUAN_DOWN, 1200, 0),
    ],
)
def test_rounding_mo_ling(units: list[int], mode: Rounding, total: int, rounding: int) -> None:
    lines = [line(f"P{i}", unit=u) for i, u in enumerate(units)]
    for basket in (
        price_basket(RULES, lines, rounding=mode),
        price_basket(dataclasses.replace(RULES, rounding=mode), lines),
    ):
        assert basket.total == total
        assert basket.rounding == rounding
        assert sum(ln.rounding for ln in basket.lines) == rounding
        assert sum(amounts(basket)) == total


def test_store_rounding_overrides_the_rules() -> None:
    rules = dataclasses.replace(RULES, rounding=Rounding.JIAO_DOWN)
    assert price_basket(rules, [line(unit=1234)], rounding="none").total == 1234
    assert price_basket(rules, [line(unit=1234)]).total == 1230


def test_discount_totals_reconcile() -> None:
    lines = [
        line("A", qty=2, unit=1999, disc=99),
        line("B", unit=5990, promo=4990),
        line("C", unit=333),
    ]
    basket = price_basket(
        RULES, lines, GOLD, order_discount_rate=950, manual_adjustment=77, rounding="jiao_down"
    )
    assert basket.subtotal == 3998 + 4990 + 333
    assert (
        basket.subtotal
        - basket.line_discount
        - basket.member_discount
        - basket.order_discount
        - basket.manual_adjustment
        - basket.rounding
        == basket.total
    )
    assert basket.discount_total == basket.subtotal - basket.total - basket.rounding
    for ln in basket.lines:
        assert ln.gross - ln.discount_total == ln.amount


@pytest.mark.parametrize(
    ("lines", "kwargs", "field"),
    [
        ([], {}, "lines"),
        ([line("A"), line("B", qty=0)], {}, "lines[1].qty"),
        ([line("A", qty=-1)], {}, "lines[0].qty"),
        ([line("A", qty=100_000)], {}, "lines[0].qty"),
        ([line("A", qty="2")], {}, "lines[0].qty"),  # type: ignore[arg-type]
        ([line("A", qty=True)], {}, "lines[0].qty"),
        ([line("A", unit=-1)], {}, "lines[0].unit_price"),
        ([line("A", unit=12.5)], {}, "lines[0].unit_price"),  # type: ignore[arg-type]
        ([line("A", unit=10**10 + 1)], {}, "lines[0].unit_price"),
        ([line("A"), line("B"), line("C", promo=-1)], {}, "lines[2].promo_price"),
        ([line("A", promo=9.9)], {}, "lines[0].promo_price"),  # type: ignore[arg-type]
        ([line("A", qty=2, unit=100, disc=201)], {}, "lines[0].line_discount"),
        ([line("A", unit=100, disc=-1)], {}, "lines[0].line_discount"),
        # the line discount is bounded by the promotion price actually charged
        ([line("A", unit=1000, promo=500, disc=501)], {}, "lines[0].line_discount"),
        ([line("A")], {"order_discount_rate": 1001}, "order_discount_rate"),
        ([line("A")], {"order_discount_rate": -1}, "order_discount_rate"),
        ([line("A")], {"rounding": "to_even"}, "rounding"),
    ],
)
def test_errors_name_the_field(lines: list[LineInput], kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        price_basket(RULES, lines, GOLD, **kwargs)
    assert err.value.field == field
    assert field in err.value.message or field in ("lines", "rounding")


# ---- share_of: returns in steps ---------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "part", "whole", "already", "expected"),
    [
        (1000, 1, 3, 0, 333),
        (1000, 2, 3, 1, 667),
        (1000, 3, 3, 0, 1000),
        (1000, 0, 3, 1, 0),
        (1, 1, 2, 0, 0),
        (1, 1, 2, 1, 1),
    ],
)
def test_share_of(amount: int, part: int, whole: int, already: int, expected: int) -> None:
    assert share_of(amount, part, whole, already) == expected


@pytest.mark.parametrize(
    ("part", "whole", "already"), [(1, 0, 0), (-1, 3, 0), (1, 3, -1), (3, 3, 1)]
)
def test_share_of_refuses_impossible_returns(part: int, whole: int, already: int) -> None:
    with pytest.raises(ValidationError):
        share_of(1000, part, whole, already)


@st.composite
def steps_of(draw: st.DrawFn, whole: int) -> list[int]:
    """``whole`` units returned in a random number of steps (some may be zero)."""
    cuts = sorted(draw(st.lists(st.integers(0, whole), max_size=6)))
    bounds = [0, *cuts, whole]
    return [b - a for a, b in zip(bounds, bounds[1:], strict=False)]


@given(
    st.integers(-(10**9), 10**9),
    st.integers(1, 500).flatmap(lambda w: st.tuples(st.just(w), steps_of(w))),
)
def test_share_of_in_any_number_of_steps_adds_up_to_the_whole(
    amount: int, whole_and_steps: tuple[int, list[int]]
) -> None:
    whole, steps = whole_and_steps
    already, refunded = 0, 0
    for part in steps:
        share = share_of(amount, part, whole, already)
        assert min(0, amount) <= share <= max(0, amount)
        refunded += share
        already += part
    assert refunded == amount


# ---- properties of whole baskets --------------------------------------------------------

CARD_TYPES = [None, "普通卡", "银卡", "金卡", "未知卡"]
TIERS = [None, "", "钻石", "青铜"]


@st.composite
def line_inputs(draw: st.DrawFn, i: int) -> LineInput:
    qty = draw(st.integers(1, 50))
    unit = draw(st.integers(0, 200_000))
    promo = draw(st.none() | st.integers(0, unit + 1000))
    gross = qty * (unit if promo is None else min(unit, promo))  # promo never charges more
    disc = draw(st.integers(0, gross))
    return LineInput(f"P{i}", "x", qty, unit, promo, disc, draw(st.booleans()), draw(st.booleans()))


@st.composite
def baskets(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 8))
    lines = [draw(line_inputs(i)) for i in range(n)]
    member = draw(
        st.none()
        | st.builds(
            MemberContext, st.just("m"), st.sampled_from(CARD_TYPES), st.sampled_from(TIERS)
        )
    )
    rules = dataclasses.replace(
        RULES,
        promo_excludes_member_discount=draw(st.booleans()),
        promo_earns_points=draw(st.booleans()),
    )
    rate = draw(st.integers(0, 1000))
    before_manual = price_basket(rules, lines, member, rate, 0, Rounding.NONE).total
    manual = draw(st.integers(0, before_manual))
    rounding = draw(st.sampled_from(list(Rounding)))
    return {
        "rules": rules,
        "lines": lines,
        "member": member,
        "order_discount_rate": rate,
        "manual_adjustment": manual,
        "rounding": rounding,
    }


@settings(max_examples=300, deadline=None)
@given(baskets())
def test_basket_invariants(case: dict) -> None:
    basket = price_basket(**case)
    assert basket.total >= 0
    assert all(ln.amount >= 0 for ln in basket.lines)
    assert sum(ln.amount for ln in basket.lines) == basket.total
    assert basket.subtotal == sum(ln.gross for ln in basket.lines)
    for ln, inp in zip(basket.lines, case["lines"], strict=True):
        assert ln.gross - ln.discount_total == ln.amount
        assert ln.member_discount >= 0 and ln.order_discount >= 0 and ln.manual_adjustment >= 0
        if case["member"] is None or inp.no_member_discount:
            assert ln.member_discount == 0
        if ln.promo and case["rules"].promo_excludes_member_discount:
            assert ln.member_discount == 0
        if inp.no_points or case["member"] is None:
            assert not ln.earns_points
    assert 0 <= basket.points_base <= basket.total
    # the same input gives the same output (invariant 5: edge and HQ agree)
    assert price_basket(**case) == basket


@settings(max_examples=150, deadline=None)
@given(baskets(), st.data())
def test_returning_everything_in_steps_refunds_exactly_the_total(
    case: dict, data: st.DataObject
) -> None:
    basket = price_basket(**case)
    refunded = 0
    for ln in basket.lines:
        already = 0
        for part in data.draw(steps_of(ln.qty)):
            refunded += share_of(ln.amount, part, ln.qty, already)
            already += part
    assert refunded == basket.total
