"""Stored value (principal and bonus kept apart) and tender settlement."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InsufficientFunds, ValidationError
from core.rules import DEMO_RULES, SV_SPEND_ORDERS, Rules, TopUpBonus
from core.stored_value import Split, refund_split, spend_split, topup_split
from core.tenders import Settlement, Tender, settle

# 充500送100, 充1000送250
RULES = Rules(topup_bonuses=(TopUpBonus(50000, 10000), TopUpBonus(100000, 25000)))


@pytest.mark.parametrize(
    ("amount", "bonus"),
    [(100, 0), (49999, 0), (50000, 10000), (99999, 10000), (100000, 25000), (300000, 25000)],
)
def test_topup_bonus_tiers_kept_apart_from_principal(amount: int, bonus: int) -> None:
    assert topup_split(RULES, amount) == Split(amount, bonus)
    assert topup_split(DEMO_RULES, amount) == Split(amount, bonus)


def test_topup_without_bonus_rules() -> None:
    assert topup_split(Rules(), 50000) == Split(50000, 0)


@pytest.mark.parametrize("amount", [0, -100, 12.5, True, "50000", 10**10 + 1])
def test_topup_refuses_bad_amounts(amount: object) -> None:
    with pytest.raises(ValidationError) as err:
        topup_split(RULES, amount)  # type: ignore[arg-type]
    assert err.value.field == "amount"


@pytest.mark.parametrize(
    ("balance", "amount", "expected"),
    [
        (Split(50000, 10000), 6000, Split(5000, 1000)),
        (Split(50000, 10000), 60000, Split(50000, 10000)),
        (Split(50000, 10000), 0, Split(0, 0)),
        (Split(2, 1), 1, Split(1, 0)),  # the larger share takes the odd fen
        (Split(1, 2), 1, Split(0, 1)),
        (Split(1, 1), 1, Split(1, 0)),  # ties: principal first, so bonus never grows
        (Split(0, 500), 300, Split(0, 300)),
        (Split(700, 0), 300, Split(300, 0)),
        (Split(0, 0), 0, Split(0, 0)),
    ],
)
def test_spend_split_is_proportional_and_exact(
    balance: Split, amount: int, expected: Split
) -> None:
    assert spend_split(balance, amount) == expected


@pytest.mark.parametrize(
    ("order", "balance", "amount", "expected"),
    [
        ("principal_first", Split(50000, 10000), 6000, Split(6000, 0)),
        ("principal_first", Split(50000, 10000), 55000, Split(50000, 5000)),
        ("principal_first", Split(0, 500), 300, Split(0, 300)),
        ("principal_first", Split(-100, 500), 400, Split(0, 400)),  # overdraft repaid later
        ("bonus_first", Split(50000, 10000), 6000, Split(0, 6000)),
        ("bonus_first", Split(50000, 10000), 15000, Split(5000, 10000)),
        ("bonus_first", Split(300, -50), 250, Split(250, 0)),
        ("proportional", Split(50000, 10000), 6000, Split(5000, 1000)),
    ],
)
def test_spend_split_in_the_chains_order(
    order: str, balance: Split, amount: int, expected: Split
) -> None:
    assert spend_split(balance, amount, order) == expected


def test_an_unknown_spend_order_is_refused() -> None:
    with pytest.raises(ValidationError):
        spend_split(Split(100, 100), 50, "newest_first")


def test_spend_more_than_the_balance() -> None:
    with pytest.raises(InsufficientFunds) as err:
        spend_split(Split(50000, 10000), 60001)
    assert err.value.field == "stored_value"
    assert err.value.details == {"needed": 60001, "available": 60000}
    with pytest.raises(ValidationError):
        spend_split(Split(100, 0), -1)


def test_refund_split_over_partial_refunds_restores_the_spent_split() -> None:
    spent = Split(5003, 1001)
    parts = [1000, 2000, 3004]  # fen of a 6004-fen tender refunded in three returns
    already, back = 0, Split(0, 0)
    for part in parts:
        step = refund_split(spent, part, spent.total, already)
        back = Split(back.principal + step.principal, back.bonus + step.bonus)
        already += part
    assert back == spent


def test_each_refund_puts_back_exactly_its_part() -> None:
    # 2500 principal + 500 bonus spent; 255 fen of it refunded: not 212 + 42 = 254
    step = refund_split(Split(2500, 500), 255, 3000)
    assert step == Split(212, 43)
    with pytest.raises(ValidationError):
        refund_split(Split(2500, 500), 255, 8440)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10**8),
    st.integers(0, 10**8),
    st.data(),
)
def test_a_full_return_restores_every_balance(
    principal: int, bonus: int, data: st.DataObject
) -> None:
    balance = Split(principal, bonus)
    amount = data.draw(st.integers(0, balance.total), label="spend")
    order = data.draw(st.sampled_from(SV_SPEND_ORDERS), label="order")
    spent = spend_split(balance, amount, order)
    assert spent.total == amount
    assert 0 <= spent.principal <= principal and 0 <= spent.bonus <= bonus
    left = Split(principal - spent.principal, bonus - spent.bonus)
    # refunded in k random steps of the tender's fen
    cuts = sorted(data.draw(st.lists(st.integers(0, amount), max_size=6), label="cuts"))
    bounds = [0, *cuts, amount]
    already = 0
    for a, b in zip(bounds, bounds[1:], strict=False):
        step = refund_split(spent, b - a, amount, already) if amount else Split(0, 0)
        assert step.principal >= 0 and step.bonus >= 0
        assert step.total == b - a  # each return puts back what its receipt says
        left = Split(left.principal + step.principal, left.bonus + step.bonus)
        already += b - a
    assert left == balance


# ---- tenders ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "tenders", "expected"),
    [
        (8750, [Tender("cash", 10000)], Settlement(8750, 0, 0, 1250)),
        (8750, [Tender("cash", 8750)], Settlement(8750, 0, 0, 0)),
        (8750, [Tender("stored_value", 8750)], Settlement(0, 8750, 0, 0)),
        (8750, [Tender("points", 750), Tender("cash", 10000)], Settlement(8000, 0, 750, 2000)),
        (
            8750,
            [Tender("stored_value", 5000), Tender("points", 1000), Tender("cash", 5000)],
            Settlement(2750, 5000, 1000, 2250),
        ),
        (8750, [Tender("cash", 5000), Tender("cash", 5000)], Settlement(8750, 0, 0, 1250)),
        (0, [], Settlement(0, 0, 0, 0)),
        (0, [Tender("cash", 100)], Settlement(0, 0, 0, 100)),
    ],
)
def test_settle(total: int, tenders: list[Tender], expected: Settlement) -> None:
    settlement = settle(total, tenders)
    assert settlement == expected
    assert settlement.cash + settlement.stored_value + settlement.points_fen == total


def test_applied_lists_only_what_was_used() -> None:
    settlement = settle(8750, [Tender("points", 750), Tender("cash", 10000)])
    assert settlement.applied() == [Tender("cash", 8000), Tender("points", 750)]


@pytest.mark.parametrize(
    ("tenders", "field"),
    [
        ([Tender("cash", 100), Tender("wechat", 100)], "tenders[1].kind"),
        ([Tender("", 100)], "tenders[0].kind"),
        ([Tender("cash", 0)], "tenders[0].amount"),
        ([Tender("cash", -100)], "tenders[0].amount"),
        ([Tender("cash", 100), Tender("cash", 99.5)], "tenders[1].amount"),  # type: ignore[arg-type]
        ([Tender("cash", True)], "tenders[0].amount"),
        ([Tender("cash", "100")], "tenders[0].amount"),  # type: ignore[arg-type]
        ([Tender("cash", 10**10 + 1)], "tenders[0].amount"),
        # only cash gives change: non-cash may not exceed the total
        ([Tender("stored_value", 9000)], "tenders"),
        ([Tender("stored_value", 5000), Tender("points", 4000)], "tenders"),
    ],
)
def test_bad_tenders_name_the_field(tenders: list[Tender], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        settle(8750, tenders)
    assert err.value.field == field


@pytest.mark.parametrize(
    "tenders",
    [[Tender("cash", 8749)], [Tender("stored_value", 5000), Tender("cash", 3000)], []],
)
def test_tenders_that_do_not_cover_the_total(tenders: list[Tender]) -> None:
    with pytest.raises(InsufficientFunds) as err:
        settle(8750, tenders)
    assert err.value.field == "tenders"
    assert err.value.details["due"] == 8750
    assert err.value.details["paid"] == sum(t.amount for t in tenders)


@given(
    st.integers(0, 10**7),
    st.lists(
        st.tuples(st.sampled_from(["cash", "stored_value", "points"]), st.integers(1, 10**7)),
        max_size=5,
    ),
)
def test_settlement_either_covers_exactly_or_refuses(total: int, raw: list) -> None:
    tenders = [Tender(k, a) for k, a in raw]
    try:
        s = settle(total, tenders)
    except (ValidationError, InsufficientFunds):
        offered = sum(a for _, a in raw)
        non_cash = sum(a for k, a in raw if k != "cash")
        assert offered < total or non_cash > total
        return
    assert s.cash + s.stored_value + s.points_fen == total
    assert s.change >= 0 and s.cash >= 0
    assert s.change == sum(a for _, a in raw) - total
