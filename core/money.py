"""Money is integer fen (分). No float ever carries money.

Discount rates are integer permille of the price paid: 880 means 88折 (12% off),
950 means 95折. Rounding of fractions of a fen is always explicit.
"""

from __future__ import annotations

import enum
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import NewType

Fen = NewType("Fen", int)
Permille = NewType("Permille", int)

FULL_RATE = Permille(1000)
# No till amount is larger than ¥100,000,000; the bound keeps every sum of a sale
# (200 lines × MAX_QTY × MAX_AMOUNT) inside SQLite's and PostgreSQL's 64-bit integers.
MAX_AMOUNT = 10**10
MAX_QTY = 99_999


class MoneyError(ValueError):
    """A money amount or rate that cannot be accepted."""


def fen(value: int) -> Fen:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(f"money must be an integer number of fen, got {value!r}")
    return Fen(value)


def parse_yuan(text: str) -> Fen:
    """Parse a yuan amount as a person writes it ("12.5", "¥12.50", "12") into fen."""
    cleaned = str(text).strip().replace("¥", "").replace("￥", "").replace(",", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise MoneyError(f"不是金额: {text!r} (not an amount of yuan)") from None
    if not amount.is_finite():
        raise MoneyError(f"不是金额: {text!r} (not an amount of yuan)")
    scaled = amount * 100
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"金额最多两位小数: {text!r} (more than two decimals)")
    return Fen(int(scaled))


def format_yuan(amount: int, symbol: str = "¥") -> str:
    """12345 -> '¥123.45'; negative amounts keep their sign before the symbol."""
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(int(amount)), 100)
    return f"{sign}{symbol}{whole}.{part:02d}"


def check_rate(rate: int, what: str = "rate") -> Permille:
    if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= 1000:
        raise MoneyError(f"{what} must be an integer permille from 0 to 1000, got {rate!r}")
    return Permille(rate)


def apply_rate(amount: int, rate: int) -> Fen:
    """The price after a permille rate, rounded half up to the fen (88折 of 999 -> 879)."""
    check_rate(rate)
    return Fen((amount * rate * 2 + 1000) // 2000)


def allocate(total: int, weights: list[int]) -> list[Fen]:
    """Split ``total`` fen across ``weights`` in proportion, largest remainder first.

    The parts always add up to ``total`` exactly and the split is deterministic
    (ties go to the earlier weight), so the edge and HQ allocate alike.
    """
    if not weights:
        if total:
            raise MoneyError("cannot allocate a non-zero amount over nothing")
        return []
    weight_sum = sum(weights)
    if weight_sum == 0:
        parts = [0] * len(weights)
        parts[0] = total
        return [Fen(p) for p in parts]
    sign = -1 if total < 0 else 1
    magnitude = abs(total)
    floors = [magnitude * w // weight_sum for w in weights]
    remainders = [magnitude * w % weight_sum for w in weights]
    short = magnitude - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:short]:
        floors[i] += 1
    return [Fen(sign * p) for p in floors]


class Rounding(enum.StrEnum):
    """How the amount due is rounded for the customer (抹零)."""

    NONE = "none"
    JIAO_DOWN = "jiao_down"  # 抹分: drop the fen
    YUAN_DOWN = "yuan_down"  # 抹角: drop fen and jiao
    JIAO_HALF_UP = "jiao_half_up"
    YUAN_HALF_UP = "yuan_half_up"


def round_due(amount: int, mode: Rounding | str) -> Fen:
    """The amount due after 抹零. Never negative, never above ``amount`` for *_DOWN modes."""
    mode = Rounding(mode)
    if amount <= 0 or mode is Rounding.NONE:
        return Fen(amount)
    unit = 10 if mode in (Rounding.JIAO_DOWN, Rounding.JIAO_HALF_UP) else 100
    if mode in (Rounding.JIAO_DOWN, Rounding.YUAN_DOWN):
        return Fen(amount - amount % unit)
    return Fen(((amount * 2 + unit) // (2 * unit)) * unit)


def to_decimal_yuan(amount: int) -> Decimal:
    """For reports and spreadsheets only: fen as an exact Decimal of yuan."""
    return (Decimal(int(amount)) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
