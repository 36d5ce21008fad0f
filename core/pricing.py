"""The pricing engine: a basket and the rules in, every fen accounted for out.

Order of work, the same on the edge and at HQ (invariant 5):

1. each line: quantity × (promotion price or list price), less its line discount;
2. member discount, per line, at the better of card-type and tier rate — and on a
   member day (``day`` given and ``Rules.is_member_day``) the better of that and
   ``Rules.member_day_discount``: one member rate, never two stacked — not on lines
   excluded from member discount, nor on promotion-price lines when the rules say
   so (the member-day rate follows the same exclusions);
3. order discount (permille of what is left), allocated across lines;
4. coupons, in the order given, each on its eligible lines' amounts as they stand
   (minimum spend judged after member discount; never more than a line has left;
   ``core.coupons.coupon_discounts``);
5. manual adjustment (折让, fen; manager only — enforced by the caller), allocated;
6. 抹零 on the amount due, allocated.

Points are earned on the line amounts, so on what is paid after coupons. Without
coupons steps 1-3, 5 and 6 give exactly what they gave before coupons existed.

Allocation uses largest remainders, so the lines always add up to the total and
a return can refund each line exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.coupons import AppliedCoupon, CouponInput, CouponLine, coupon_discounts
from core.errors import ValidationError
from core.money import (
    MAX_AMOUNT,
    MAX_QTY,
    MoneyError,
    Rounding,
    allocate,
    apply_rate,
    check_rate,
    round_due,
)
from core.rules import Rules


@dataclass(frozen=True, slots=True)
class LineInput:
    sku: str
    name: str
    qty: int
    unit_price: int
    promo_price: int | None = None
    line_discount: int = 0
    no_member_discount: bool = False
    no_points: bool = False
    category: str = ""  # the product's category (coupons may target it)


@dataclass(frozen=True, slots=True)
class MemberContext:
    member_id: str
    card_type: str | None = None
    tier: str | None = None


@dataclass(frozen=True, slots=True)
class PricedLine:
    line_no: int
    sku: str
    name: str
    qty: int
    unit_price: int  # the unit price charged (promotion price when there is one)
    list_price: int
    gross: int  # qty × unit_price
    line_discount: int
    member_discount: int
    order_discount: int
    manual_adjustment: int
    rounding: int
    amount: int  # what the customer pays for this line
    promo: bool
    earns_points: bool
    coupon_discount: int = 0

    @property
    def discount_total(self) -> int:
        return (
            self.line_discount
            + self.member_discount
            + self.order_discount
            + self.coupon_discount
            + self.manual_adjustment
            + self.rounding
        )


@dataclass(frozen=True, slots=True)
class PricedBasket:
    rules_version: int
    lines: tuple[PricedLine, ...]
    subtotal: int  # sum of gross
    line_discount: int
    member_discount: int
    order_discount: int
    manual_adjustment: int
    rounding: int
    total: int
    coupon_discount: int = 0
    coupons: tuple[AppliedCoupon, ...] = ()

    @property
    def discount_total(self) -> int:
        return self.subtotal - self.total - self.rounding

    @property
    def points_base(self) -> int:
        return sum(line.amount for line in self.lines if line.earns_points)


def _charged(line: LineInput) -> int:
    """The unit price charged: a promotion price only ever lowers the list price (a
    "promotion" above it, e.g. a stale or mistyped price, never charges more)."""
    if line.promo_price is not None and line.promo_price < line.unit_price:
        return line.promo_price
    return line.unit_price


def _check_line(i: int, line: LineInput) -> None:
    where = f"lines[{i}]"
    for name in ("qty", "unit_price", "line_discount"):
        value = getattr(line, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{where}.{name} must be an integer", field=f"{where}.{name}")
    if not 1 <= line.qty <= MAX_QTY:
        raise ValidationError(f"{where}.qty must be from 1 to {MAX_QTY}", field=f"{where}.qty")
    if line.promo_price is not None and (
        isinstance(line.promo_price, bool) or not isinstance(line.promo_price, int)
    ):
        raise ValidationError(
            f"{where}.promo_price must be an integer", field=f"{where}.promo_price"
        )
    for name in ("unit_price", "promo_price"):
        value = getattr(line, name)
        if value is not None and not 0 <= value <= MAX_AMOUNT:
            raise ValidationError(
                f"{where}.{name} must be from 0 to {MAX_AMOUNT} fen", field=f"{where}.{name}"
            )
    gross = line.qty * _charged(line)
    if not 0 <= line.line_discount <= gross:
        raise ValidationError(
            f"{where}.line_discount must be between 0 and the line's {gross} fen",
            field=f"{where}.line_discount",
        )


def price_basket(
    rules: Rules,
    lines: list[LineInput] | tuple[LineInput, ...],
    member: MemberContext | None = None,
    order_discount_rate: int = 1000,
    manual_adjustment: int = 0,
    rounding: Rounding | str | None = None,
    coupons: tuple[CouponInput, ...] | list[CouponInput] = (),
    day: dt.date | None = None,
) -> PricedBasket:
    """Price a basket. ``rounding`` overrides the rules' 抹零 when the store configures its own;
    ``coupons`` are the coupons claimed, each with its template (step 4); ``day`` is the
    sale's business day (its member-day rate; None: no member day)."""
    if not lines:
        raise ValidationError("购物车为空 (the basket is empty)", field="lines")
    try:
        check_rate(order_discount_rate, "order_discount_rate")
    except MoneyError as exc:
        raise ValidationError(str(exc), field="order_discount_rate") from None
    try:
        rounding_mode = Rounding(rules.rounding if rounding is None else rounding)
    except ValueError:
        raise ValidationError(
            f"rounding must be one of {[r.value for r in Rounding]}, got {rounding!r}",
            field="rounding",
        ) from None
    for i, line in enumerate(lines):
        # the common case checked inline (exact ints in range); anything else goes through
        # _check_line, which raises the same errors it always did
        qty, unit_price, promo_price = line.qty, line.unit_price, line.promo_price
        if not (
            type(qty) is int
            and type(unit_price) is int
            and type(line.line_discount) is int
            and 1 <= qty <= MAX_QTY
            and 0 <= unit_price <= MAX_AMOUNT
            and (
                promo_price is None or (type(promo_price) is int and 0 <= promo_price <= MAX_AMOUNT)
            )
            and 0 <= line.line_discount <= qty * _charged(line)
        ):
            _check_line(i, line)
    member_rate = rules.member_rate_on(member.card_type, member.tier, day) if member else 1000
    promo_excludes = rules.promo_excludes_member_discount
    promo_earns = rules.promo_earns_points

    units, gross, line_disc, member_disc, after_member = [], [], [], [], []
    promo_flags, earns = [], []
    for line in lines:
        promo = line.promo_price is not None and line.promo_price < line.unit_price
        unit = line.promo_price if promo else line.unit_price  # _charged(line)
        g = line.qty * unit
        net = g - line.line_discount
        excluded = line.no_member_discount or (promo and promo_excludes)
        m = 0 if (excluded or member is None) else net - apply_rate(net, member_rate)
        units.append(unit)
        gross.append(g)
        line_disc.append(line.line_discount)
        member_disc.append(m)
        after_member.append(net - m)
        promo_flags.append(promo)
        earns.append(member is not None and not line.no_points and (promo_earns or not promo))

    after_member_total = sum(after_member)
    order_disc_total = after_member_total - apply_rate(after_member_total, order_discount_rate)
    order_disc = _allocate(order_disc_total, after_member)
    after_order = [a - o for a, o in zip(after_member, order_disc, strict=True)]
    applied: tuple[AppliedCoupon, ...] = ()
    coupon_disc = [0] * len(after_order)
    if coupons:
        coupon_disc, applied = coupon_discounts(
            coupons,
            [
                CouponLine(ln.sku, ln.category, ln.qty, after_member[i], after_order[i])
                for i, ln in enumerate(lines)
            ],
        )
        after_order = [a - c for a, c in zip(after_order, coupon_disc, strict=True)]
    after_order_total = sum(after_order)

    if isinstance(manual_adjustment, bool) or not isinstance(manual_adjustment, int):
        raise ValidationError(
            "manual_adjustment must be an integer of fen", field="manual_adjustment"
        )
    if not 0 <= manual_adjustment <= after_order_total:
        raise ValidationError(
            f"manual_adjustment must be between 0 and {after_order_total} fen",
            field="manual_adjustment",
        )
    manual = _allocate(manual_adjustment, after_order)
    after_manual = [a - m for a, m in zip(after_order, manual, strict=True)]
    due = sum(after_manual)
    rounded = round_due(due, rounding_mode)
    # half-up rounding may round up; allocate the signed difference
    rounding_parts = _allocate(due - rounded, after_manual)
    amounts = [a - r for a, r in zip(after_manual, rounding_parts, strict=True)]

    # positional, in PricedLine's field order (line_no, sku, name, qty, unit_price,
    # list_price, gross, line_discount, member_discount, order_discount,
    # manual_adjustment, rounding, amount, promo, earns_points)
    priced = tuple(
        PricedLine(
            i + 1,
            line.sku,
            line.name,
            line.qty,
            units[i],
            line.unit_price,
            gross[i],
            line_disc[i],
            member_disc[i],
            order_disc[i],
            manual[i],
            rounding_parts[i],
            amounts[i],
            promo_flags[i],
            earns[i],
            coupon_disc[i],
        )
        for i, line in enumerate(lines)
    )
    return PricedBasket(
        rules_version=rules.version,
        lines=priced,
        subtotal=sum(gross),
        line_discount=sum(line_disc),
        member_discount=sum(member_disc),
        order_discount=order_disc_total,
        manual_adjustment=manual_adjustment,
        rounding=due - rounded,
        total=rounded,
        coupon_discount=sum(coupon_disc),
        coupons=applied,
    )


def _allocate(total: int, weights: list[int]) -> list[int]:
    """``allocate``, with nothing to allocate answered at once (most baskets have no order
    discount, 折让 or 抹零): zero over any weights is all zeros."""
    if total == 0 and weights:
        return [0] * len(weights)
    return allocate(total, weights)


def share_of(amount: int, part: int, whole: int, already: int = 0) -> int:
    """The exact share of ``amount`` for ``part`` of ``whole`` units, after ``already``.

    Cumulative, so returning a line's units in any number of steps refunds exactly
    the line's amount in the end: share(a, 1, 3) + share(a, 2, 3, already=1) == a.
    """
    if whole <= 0 or part < 0 or already < 0 or already + part > whole:
        raise ValidationError(f"cannot take {part} more of {whole} after {already}")
    return amount * (already + part) // whole - amount * already // whole
