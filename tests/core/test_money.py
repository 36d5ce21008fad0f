"""Money in integer fen: parsing, formatting, rates, allocation and 抹零."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import (
    MoneyError,
    Rounding,
    allocate,
    apply_rate,
    check_rate,
    fen,
    format_yuan,
    parse_yuan,
    round_due,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.5", 1250),
        ("12.50", 1250),
        ("¥12.50", 1250),
        ("￥12.50", 1250),
        ("12", 1200),
        (" 12 ", 1200),
        ("0.01", 1),
        ("0", 0),
        ("1,234.56", 123456),
        ("-3.20", -320),
        (".5", 50),
    ],
)
def test_parse_yuan(text: str, expected: int) -> None:
    assert parse_yuan(text) == expected
    assert type(parse_yuan(text)) is int


@pytest.mark.parametrize(
    "text", ["abc", "1.234", "0.001", "nan", "NaN", "inf", "-Infinity", "", "¥", "12元", "1.2.3"]
)
def test_parse_yuan_refuses(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_yuan(text)


@pytest.mark.parametrize(
    ("amount", "symbol", "expected"),
    [
        (12345, "¥", "¥123.45"),
        (1250, "¥", "¥12.50"),
        (5, "¥", "¥0.05"),
        (0, "¥", "¥0.00"),
        (-5, "¥", "-¥0.05"),
        (-12345, "¥", "-¥123.45"),
        (100, "", "1.00"),
    ],
)
def test_format_yuan(amount: int, symbol: str, expected: str) -> None:
    assert format_yuan(amount, symbol) == expected


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_format_then_parse_round_trips(amount: int) -> None:
    assert parse_yuan(format_yuan(amount)) == amount


@pytest.mark.parametrize("value", [1.0, "1", True, None])
def test_fen_refuses_non_integers(value: object) -> None:
    with pytest.raises(MoneyError):
        fen(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [
        (999, 880, 879),  # 879.12
        (1000, 880, 880),
        (2997, 900, 2697),  # 2697.3
        (1, 500, 1),  # 0.5 rounds up
        (3, 500, 2),  # 1.5 rounds up
        (5, 500, 3),  # 2.5 rounds up (half up, not to even)
        (15, 900, 14),  # 13.5
        (11, 950, 10),  # 10.45
        (19, 950, 18),  # 18.05
        (0, 880, 0),
        (12345, 1000, 12345),
        (12345, 0, 0),
    ],
)
def test_apply_rate_rounds_half_up_to_the_fen(amount: int, rate: int, expected: int) -> None:
    assert apply_rate(amount, rate) == expected


@pytest.mark.parametrize("rate", [-1, 1001, 9.5, True, "880"])
def test_bad_rates(rate: object) -> None:
    with pytest.raises(MoneyError):
        check_rate(rate)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        apply_rate(100, rate)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=1000))
def test_apply_rate_is_the_nearest_fen(amount: int, rate: int) -> None:
    result = apply_rate(amount, rate)
    exact_times_1000 = amount * rate
    # |result - exact| <= 1/2 fen, ties upward
    assert -500 < result * 1000 - exact_times_1000 <= 500
    assert 0 <= result <= amount


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (100, [1, 1, 1], [34, 33, 33]),
        (-100, [1, 1, 1], [-34, -33, -33]),
        (101, [1, 1, 1], [34, 34, 33]),
        (7, [2, 0, 5], [2, 0, 5]),
        (10, [3, 3], [5, 5]),
        (1, [1, 1], [1, 0]),  # ties go to the earlier weight
        (1, [1, 2], [0, 1]),  # largest remainder first
        (10, [0, 0], [10, 0]),  # no weights: all on the first
        (0, [5, 5], [0, 0]),
        (0, [], []),
        (999, [5990, 4990, 200], [535, 446, 18]),  # 535.2, 445.9, 17.9
    ],
)
def test_allocate_table(total: int, weights: list[int], expected: list[int]) -> None:
    assert allocate(total, weights) == expected


def test_allocate_over_nothing() -> None:
    with pytest.raises(MoneyError):
        allocate(5, [])


@given(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=30),
)
def test_allocate_adds_up_and_is_proportional(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert parts == allocate(total, list(weights))  # deterministic
    weight_sum = sum(weights)
    if weight_sum:
        for part, weight in zip(parts, weights, strict=True):
            # within one fen of the exact share: |part*W - total*w| < W
            assert abs(part * weight_sum - total * weight) < weight_sum
            if weight == 0:
                assert part == 0
            assert part * total >= 0  # every part has the total's sign (or is zero)


@pytest.mark.parametrize(
    ("amount", "mode", "expected"),
    [
        (1234, Rounding.NONE, 1234),
        (1234, Rounding.JIAO_DOWN, 1230),  # 抹分
        (1239, Rounding.JIAO_DOWN, 1230),
        (1230, Rounding.JIAO_DOWN, 1230),
        (1299, Rounding.YUAN_DOWN, 1200),  # 抹角
        (1200, Rounding.YUAN_DOWN, 1200),
        (1234, Rounding.JIAO_HALF_UP, 1230),
        (1235, Rounding.JIAO_HALF_UP, 1240),
        (1249, Rounding.YUAN_HALF_UP, 1200),
        (1250, Rounding.YUAN_HALF_UP, 1300),
        (5, Rounding.JIAO_HALF_UP, 10),
        (4, Rounding.JIAO_HALF_UP, 0),
        (0, Rounding.YUAN_HALF_UP, 0),
        (-1234, Rounding.JIAO_DOWN, -1234),  # nothing to round on a refund amount
        (1234, "jiao_down", 1230),  # the configured string works too
    ],
)
def test_round_due(amount: int, mode: Rounding | str, expected: int) -> None:
    assert round_due(amount, mode) == expected


def test_round_due_unknown_mode() -> None:
    with pytest.raises(ValueError):
        round_due(100, "to_even")


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(list(Rounding)))
def test_round_due_properties(amount: int, mode: Rounding) -> None:
    due = round_due(amount, mode)
    assert due >= 0
    if mode is Rounding.NONE:
        assert due == amount
        return
    unit = 10 if mode.value.startswith("jiao") else 100
    assert due % unit == 0
    if mode.value.endswith("down"):
        assert 0 <= amount - due < unit
    else:
        assert -unit < 2 * (due - amount) <= unit
