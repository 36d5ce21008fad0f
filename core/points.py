"""Points: earning by card type with a member-day multiplier, lots that expire,
consumed oldest first."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.errors import Forbidden, InsufficientFunds, ValidationError
from core.rules import Rules


class RedemptionClosed(Forbidden):
    """Points redeemed outside the rules' redemption windows."""

    slug = "redemption_closed"


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
    """The last day points earned on ``earned_on`` can be used: ``points_expiry_days``
    later, or with a yearly reset date (积分清零) the day before the first reset date
    after the day they were earned (points earned on the reset date itself last to the
    next one)."""
    if rules.points_reset_date:
        return next_reset(rules, earned_on) - dt.timedelta(days=1)
    return earned_on + dt.timedelta(days=rules.points_expiry_days)


def next_reset(rules: Rules, after: dt.date) -> dt.date:
    """The first yearly reset day strictly after ``after`` (the rules must have one)."""
    month, day = int(rules.points_reset_date[:2]), int(rules.points_reset_date[3:])
    reset = dt.date(after.year, month, day)
    return reset if reset > after else dt.date(after.year + 1, month, day)


def usable_from(rules: Rules, earned_on: dt.date) -> dt.date:
    """The first day a lot's points can be spent: after the lock (the sale's return window)."""
    return earned_on + dt.timedelta(days=rules.points_lock_days)


def locked_earned_after(rules: Rules, today: dt.date) -> dt.date:
    """Lots earned after this day are still locked on ``today`` (the SQL form of the lock)."""
    return today - dt.timedelta(days=rules.points_lock_days)


def usable(lots: list[Lot], today: dt.date, lock_days: int = 0) -> list[Lot]:
    """Lots with points left that have not expired and are past their lock, soonest expiry first."""
    unlocked_by = today - dt.timedelta(days=lock_days)
    live = [
        lot
        for lot in lots
        if lot.remaining > 0 and lot.expires_on >= today and lot.earned_on <= unlocked_by
    ]
    return sorted(live, key=lambda lot: (lot.expires_on, lot.earned_on, lot.lot_id))


def balance(lots: list[Lot], today: dt.date, lock_days: int = 0) -> int:
    return sum(lot.remaining for lot in usable(lots, today, lock_days))


def locked(lots: list[Lot], today: dt.date, lock_days: int) -> int:
    """Points not yet usable because of the lock (not expired, earned too recently)."""
    return balance(lots, today) - balance(lots, today, lock_days)


@dataclass(frozen=True, slots=True)
class PointsBalance:
    available: int  # usable today
    locked: int  # not expired, not yet usable (lock period)
    unlocks_on: dt.date | None  # when the next locked points become usable


def points_balance(rules: Rules, lots: list[Lot], today: dt.date) -> PointsBalance:
    """What a member's lots hold on ``today``: available and locked points."""
    lock = rules.points_lock_days
    live = [lot for lot in lots if lot.remaining > 0 and lot.expires_on >= today]
    still = [lot for lot in live if usable_from(rules, lot.earned_on) > today]
    return PointsBalance(
        balance(live, today, lock),
        sum(lot.remaining for lot in still),
        min((usable_from(rules, lot.earned_on) for lot in still), default=None),
    )


def check_redemption_open(rules: Rules, today: dt.date) -> None:
    """Refuse a points redemption (points tender, gift) outside the redemption windows,
    saying when the next one opens."""
    windows = rules.points_redemption_windows
    if not windows or any(w.start <= today <= w.end for w in windows):
        return
    nxt = next((w for w in windows if w.start > today), None)
    if nxt is None:
        raise RedemptionClosed(
            "积分兑换期已结束, 当前不能使用积分 (points redemption is closed)",
            field="points",
        )
    label = f"「{nxt.name}」" if nxt.name else ""
    raise RedemptionClosed(
        f"积分兑换{label}将于 {nxt.start.isoformat()} 开放 (至 {nxt.end.isoformat()}), "
        f"当前不能使用积分 (points redemption opens on {nxt.start.isoformat()})",
        field="points",
        opens_on=nxt.start.isoformat(),
    )


def consume(
    lots: list[Lot], points: int, today: dt.date, lock_days: int = 0
) -> list[tuple[str, int]]:
    """Take ``points`` from the lots that expire soonest; returns (lot_id, taken) pairs."""
    if points < 0:
        raise ValidationError("points to use must not be negative", field="points")
    taken: list[tuple[str, int]] = []
    left = points
    for lot in usable(lots, today, lock_days):
        if left == 0:
            break
        take = min(lot.remaining, left)
        taken.append((lot.lot_id, take))
        left -= take
    if left:
        still = locked(lots, today, lock_days) if lock_days else 0
        raise InsufficientFunds(
            f"积分不足: 需要 {points} 分, 可用 {points - left} 分"
            + (f" (另有 {still} 分在锁定期内, 暂不可用)" if still else ""),
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
