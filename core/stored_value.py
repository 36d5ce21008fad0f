"""Stored value (储值): principal and bonus kept apart.

A top-up adds principal (what the member paid) and bonus (what the chain gave,
e.g. 充500送100). A spend takes from both in proportion to the balance, so the
bonus share of what is left never grows; a refund puts back exactly the split
that was taken. Bonus is never refunded as cash.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InsufficientFunds, ValidationError
from core.money import MAX_AMOUNT, allocate
from core.pricing import share_of
from core.rules import Rules


@dataclass(frozen=True, slots=True)
class Split:
    principal: int
    bonus: int

    @property
    def total(self) -> int:
        return self.principal + self.bonus


def topup_split(rules: Rules, amount: int) -> Split:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise ValidationError(
            f"top-up amount must be a positive integer of fen, at most {MAX_AMOUNT}", field="amount"
        )
    return Split(amount, rules.topup_bonus(amount))


def spend_split(balance: Split, amount: int) -> Split:
    if amount < 0:
        raise ValidationError("stored value spend must not be negative", field="amount")
    if amount > balance.total:
        raise InsufficientFunds(
            f"储值余额不足: 需要 {amount} 分, 余额 {balance.total} 分",
            field="stored_value",
            needed=amount,
            available=balance.total,
        )
    principal, bonus = allocate(amount, [balance.principal, balance.bonus])
    return Split(principal, bonus)


def refund_split(spent: Split, part: int, whole: int, already: int = 0) -> Split:
    """The split to put back when ``part`` fen of the ``whole``-fen stored value tender
    are refunded, after ``already`` fen refunded before.

    The two halves add up to ``part`` exactly on every return (the member gets back
    what the receipt says), and over all returns to exactly the split that was spent.
    """
    if whole != spent.total:
        raise ValidationError(
            f"refund of a {whole}-fen tender from a {spent.total}-fen spend", field="stored_value"
        )
    principal = share_of(spent.principal, part, whole, already)
    return Split(principal, part - principal)
