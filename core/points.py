"""Points: earning by card type with a member-day multiplier, lots that expire,
consumed oldest first."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.errors import InsufficientFunds, ValidationError
from core.rules import Rules


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    earned_on: dt.date
    expires_on: dt.date  # the last day the points can be used
    remaining: int


def points_earned(rules: Rules, card_type: str | None, base_fen: int, day: dt.date) -> int:
    """Whole points for ``base_fen`` paid: floor(yuan × rate) × member-day multiplier."""
    if base_fen <= 0:
        return 0
    points = base_fen * rules.earn_rate(card_type) // 100
    if rules.is_member_day(day):
        points *= rules.member_day_points_multiplier
    return points


def sale_points_earned(
    rules: Rules, card_type: str | None, points_base: int, total: int, points_fen: int, day: dt.date
) -> int:
    """Points a sale earns: on its points base (``PricedBasket.points_base``) less the share
    of it paid with points (``points_fen`` of ``total``), so points never earn points."""
    base = points_base
    if points_fen and total:
        base -= points_fen * base // total
    return points_earned(rules, card_type, base, day)


def expiry_for(rules: Rules, earned_on: dt.date) -> dt.date:
    return earned_on + dt.timedelta(days=rules.points_expiry_days)


def usable(lots: list[Lot], today: dt.date) -> list[Lot]:
    """Lots with points left that have not expired, soonest expiry first."""
    live = [lot for lot in lots if lot.remaining > 0 and lot.expires_on >= today]
    return sorted(live, key=lambda lot: (lot.expires_on, lot.earned_on, lot.lot_id))


def balance(lots: list[Lot], today: dt.date) -> int:
    return sum(lot.remaining for lot in usable(lots, today))


def consume(lots: list[Lot], points: int, today: dt.date) -> list[tuple[str, int]]:
    """Take ``points`` from the lots that expire soonest; returns (lot_id, taken) pairs."""
    if points < 0:
        raise ValidationError("points to use must not be negative", field="points")
    taken: list[tuple[str, int]] = []
    left = points
    for lot in usable(lots, today):
        if left == 0:
            break
        take = min(lot.remaining, left)
        taken.append((lot.lot_id, take))
        left -= take
    if left:
        raise InsufficientFunds(
            f"积分不足: 需要 {points} 分, 可用 {points - left} 分",
            field="points",
            needed=points,
            available=points - left,
        )
    return taken


def expired(lots: list[Lot], today: dt.date) -> list[tuple[str, int]]:
    """Lots past their last day that still hold points: (lot_id, points to expire)."""
    return [
        (lot.lot_id, lot.remaining) for lot in lots if lot.remaining > 0 and lot.expires_on < today
    ]


def points_for_fen(rules: Rules, amount_fen: int) -> int:
    """Points needed to pay ``amount_fen`` (rounded up: points never pay more than they are worth)."""
    return -(-amount_fen * rules.points_per_yuan_redeemed // 100)


def fen_for_points(rules: Rules, points: int) -> int:
    return points * 100 // rules.points_per_yuan_redeemed
