"""Points: earning by card type and member day, lots consumed soonest-expiry first."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InsufficientFunds, ValidationError
from core.points import (
    Lot,
    balance,
    consume,
    expired,
    expiry_for,
    fen_for_points,
    points_earned,
    points_for_fen,
    usable,
)
from core.rules import Rules

RULES = Rules(
    points_per_yuan={"*": 1, "金卡": 2, "员工卡": 0},
    member_day_weekdays=(2,),  # Wednesday
    member_day_month_days=(18,),
    member_day_points_multiplier=3,
    points_per_yuan_redeemed=100,
    points_expiry_days=365,
)
MONDAY = dt.date(2026, 11, 23)
WEDNESDAY = dt.date(2026, 11, 25)
THE_18TH = dt.date(2026, 12, 18)  # a Friday


@pytest.mark.parametrize(
    ("card_type", "base", "day", "expected"),
    [
        ("普通卡", 12345, MONDAY, 123),  # ¥123.45 -> 123 points (whole points, floor)
        ("金卡", 12345, MONDAY, 246),
        (None, 12345, MONDAY, 123),  # the "*" default
        ("未知卡", 12345, MONDAY, 123),
        ("员工卡", 12345, MONDAY, 0),
        ("普通卡", 12345, WEDNESDAY, 369),  # member day ×3
        ("金卡", 12345, WEDNESDAY, 738),
        ("金卡", 12345, THE_18TH, 738),
        ("普通卡", 99, MONDAY, 0),
        ("普通卡", 0, WEDNESDAY, 0),
        ("普通卡", -500, WEDNESDAY, 0),  # a negative base never takes points
    ],
)
def test_points_earned(card_type: str | None, base: int, day: dt.date, expected: int) -> None:
    assert points_earned(RULES, card_type, base, day) == expected


def test_no_default_rate_earns_nothing() -> None:
    rules = Rules(points_per_yuan={"金卡": 2})
    assert points_earned(rules, "普通卡", 10000, MONDAY) == 0
    assert points_earned(rules, "金卡", 10000, MONDAY) == 200


def test_expiry_is_counted_from_the_day_earned() -> None:
    assert expiry_for(RULES, MONDAY) == dt.date(2027, 11, 23)


def lot(lot_id: str, earned: str, expires: str, remaining: int) -> Lot:
    return Lot(lot_id, dt.date.fromisoformat(earned), dt.date.fromisoformat(expires), remaining)


LOTS = [
    lot("late", "2026-06-01", "2027-06-01", 300),
    lot("soon", "2025-12-01", "2026-12-01", 100),
    lot("gone", "2025-11-01", "2026-11-22", 500),  # expired yesterday
    lot("today", "2025-11-23", "2026-11-23", 50),  # last day today: still usable
    lot("empty", "2025-10-01", "2026-11-30", 0),
]


def test_usable_lots_soonest_expiry_first() -> None:
    assert [x.lot_id for x in usable(LOTS, MONDAY)] == ["today", "soon", "late"]
    assert balance(LOTS, MONDAY) == 450
    assert balance(LOTS, dt.date(2026, 11, 24)) == 400


@pytest.mark.parametrize(
    ("points", "taken"),
    [
        (0, []),
        (30, [("today", 30)]),
        (50, [("today", 50)]),
        (120, [("today", 50), ("soon", 70)]),
        (450, [("today", 50), ("soon", 100), ("late", 300)]),
    ],
)
def test_consume_takes_from_the_soonest_expiring_lots(points: int, taken: list) -> None:
    assert consume(LOTS, points, MONDAY) == taken


def test_expired_lots_cannot_be_used() -> None:
    with pytest.raises(InsufficientFunds) as err:
        consume(LOTS, 451, MONDAY)
    assert err.value.field == "points"
    assert err.value.details == {"needed": 451, "available": 450}
    with pytest.raises(InsufficientFunds) as err:
        consume(LOTS, 401, dt.date(2026, 11, 24))
    assert err.value.details == {"needed": 401, "available": 400}


def test_consume_refuses_negative_points() -> None:
    with pytest.raises(ValidationError) as err:
        consume(LOTS, -1, MONDAY)
    assert err.value.field == "points"


def test_expired_lists_lots_past_their_last_day() -> None:
    assert expired(LOTS, MONDAY) == [("gone", 500)]
    assert sorted(expired(LOTS, dt.date(2026, 12, 2))) == [
        ("gone", 500),
        ("soon", 100),
        ("today", 50),
    ]


@pytest.mark.parametrize(
    ("per_yuan", "fen", "points"),
    [
        (100, 0, 0),
        (100, 1, 1),
        (100, 150, 150),
        (50, 1, 1),  # half a point rounds up
        (50, 3, 2),
        (50, 100, 50),
        (1000, 1, 10),
        (30, 10, 3),
        (30, 11, 4),  # 3.3 -> 4
    ],
)
def test_points_for_fen_rounds_up(per_yuan: int, fen: int, points: int) -> None:
    rules = Rules(points_per_yuan_redeemed=per_yuan)
    assert points_for_fen(rules, fen) == points


@given(st.integers(1, 1000), st.integers(0, 10**9))
def test_points_never_pay_more_than_they_are_worth(per_yuan: int, fen: int) -> None:
    rules = Rules(points_per_yuan_redeemed=per_yuan)
    points = points_for_fen(rules, fen)
    assert fen_for_points(rules, points) >= fen  # enough points to cover the fen
    assert points == 0 or fen_for_points(rules, points - 1) < fen  # and no more than needed


@given(
    st.lists(
        st.tuples(st.integers(0, 800), st.integers(0, 1000)),  # (days to expiry from base, points)
        max_size=10,
    ),
    st.integers(0, 5000),
)
def test_consume_never_takes_more_than_a_lot_holds(spec: list, want: int) -> None:
    base = dt.date(2026, 1, 1)
    lots = [Lot(f"l{i}", base, base + dt.timedelta(days=d), n) for i, (d, n) in enumerate(spec)]
    today = dt.date(2026, 6, 1)
    available = balance(lots, today)
    if want > available:
        with pytest.raises(InsufficientFunds):
            consume(lots, want, today)
        return
    taken = consume(lots, want, today)
    assert sum(n for _, n in taken) == want
    by_id = {x.lot_id: x for x in lots}
    for lot_id, n in taken:
        assert 0 < n <= by_id[lot_id].remaining
        assert by_id[lot_id].expires_on >= today
    expiries = [by_id[lot_id].expires_on for lot_id, _ in taken]
    assert expiries == sorted(expiries)
