"""Card types as products (the 198元年卡) and 充值升级, as pure rules both sides apply.

A card product is valid from its first day through its last day, both included: a card
whose last day is today is still valid today and lapsed tomorrow. A lapsed card prices
as its fallback card type (普通卡 by default) until it is renewed; HQ's nightly
``card-expiry`` job then moves the member to the fallback for good
(docs/programme/cards.md).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from core.errors import Conflict, ValidationError
from core.rules import CardProduct, CardUpgrade, Rules

ONE_DAY = dt.timedelta(days=1)


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day of the month ``months`` later; a day that month lacks (29 Feb in a
    common year, 31 Jan + 1 month) rolls over to the 1st of the month after, so a period
    "until the day before" ends on that month's last day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    if day.day <= last:
        return dt.date(year, month, day.day)
    return dt.date(year, month, last) + ONE_DAY


def period_end(product: CardProduct, start: dt.date) -> dt.date:
    """The last valid day of a period that starts on ``start``: ``months`` later less a
    day, or ``days`` days including the first."""
    if product.months:
        return add_months(start, product.months) - ONE_DAY
    return start + dt.timedelta(days=product.days - 1)


def is_lapsed(expires_on: dt.date | None, today: dt.date) -> bool:
    """A card lapses the day after its last valid day; without a last day it never does."""
    return expires_on is not None and today > expires_on


@dataclass(frozen=True, slots=True)
class CardPeriod:
    """What selling a card product to a member gives: the validity and whether it renews
    the card the member holds."""

    card_type: str
    price: int
    valid_from: dt.date
    valid_to: dt.date
    renewal: bool


def sell(
    product: CardProduct,
    current_type: str | None,
    current_expires_on: dt.date | None,
    today: dt.date,
) -> CardPeriod:
    """The period a sale of ``product`` on ``today`` gives a member who holds
    ``current_type`` until ``current_expires_on``.

    - The same card, still valid (its last day today or later): a renewal, extending from
      the day after the old last day; refused when the product is not renewable.
    - The same card, lapsed: a renewal starting today.
    - Any other card type: a new card starting today."""
    same = current_type == product.card_type
    if same and current_expires_on is not None and not is_lapsed(current_expires_on, today):
        if not product.renewable:
            raise Conflict(
                f"{product.card_type}有效期至 {current_expires_on.isoformat()}, 不可续费 "
                f"(this card cannot be renewed before it lapses)",
                field="card_type",
            )
        start = current_expires_on + ONE_DAY
    else:
        start = today
    return CardPeriod(
        product.card_type,
        product.price,
        start,
        period_end(product, start),
        renewal=same and current_expires_on is not None,
    )


def product_for(rules: Rules, card_type: str) -> CardProduct:
    """The card product of that name in ``rules``, or a ValidationError naming the ones sold."""
    product = rules.cards.product(card_type)
    if product is None:
        sold = [p.card_type for p in rules.cards.products]
        raise ValidationError(
            f"{card_type!r} 不是可购买的卡, 可选: {sold} (not a card product)", field="card_type"
        )
    return product


def card_type_in_force(
    rules: Rules, card_type: str | None, expires_on: dt.date | None, today: dt.date
) -> str | None:
    """The card type a member prices and earns with on ``today``: a card product past its
    last day counts as its fallback. A card product without a last day (given by hand)
    and every other card type count as they are."""
    product = rules.cards.product(card_type)
    if product is not None and is_lapsed(expires_on, today):
        return product.fallback
    return card_type


def upgrade_for_topup(rules: Rules, amount: int, current_type: str | None) -> CardUpgrade | None:
    """充值升级: the upgrade a single top-up of ``amount`` fen earns, or None. The highest
    threshold reached wins; a member already on an upgrade's card type of that threshold or
    higher is not moved (an upgrade never moves a member down), nor one already on it."""
    reached = [u for u in rules.cards.upgrades if amount >= u.threshold]
    if not reached:
        return None
    best = max(reached, key=lambda u: u.threshold)
    held = [u.threshold for u in rules.cards.upgrades if u.card_type == current_type]
    if best.card_type == current_type or (held and max(held) >= best.threshold):
        return None
    return best


def parse_day(text: str | None) -> dt.date | None:
    """An ISO date (or the date of an ISO time) as a member column holds it, or None."""
    if not text:
        return None
    return dt.date.fromisoformat(str(text)[:10])
