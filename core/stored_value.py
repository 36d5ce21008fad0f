"""Stored value (储值): principal and bonus kept apart.

A top-up adds principal (what the member paid) and bonus (what the chain gave,
e.g. 充500送100). A spend takes from both as the rules' ``stored_value_spend``
says: in proportion to the balance (the default, so the bonus share of what is
left never grows), or principal first, or bonus first. A refund puts back
exactly the split that was taken, whichever order took it. Bonus is never
refunded as cash.
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


def spend_split(balance: Split, amount: int, order: str = "proportional") -> Split:
    """What a spend of ``amount`` takes from principal and from bonus (``order``: one of
    ``core.rules.SV_SPEND_ORDERS``). A part below zero (an overdraft being repaid) gives
    nothing; the other part gives the rest."""
    if amount < 0:
        raise ValidationError("stored value spend must not be negative", field="amount")
    if amount > balance.total:
        raise InsufficientFunds(
            f"储值余额不足: 需要 {amount} 分, 余额 {balance.total} 分",
            field="stored_value",
            needed=amount,
            available=balance.total,
        )
    if order == "proportional":
        principal, bonus = allocate(amount, [balance.principal, balance.bonus])
    elif order == "principal_first":
        principal = min(amount, max(0, balance.principal))
        bonus = amount - principal
    elif order == "bonus_first":
        bonus = min(amount, max(0, balance.bonus))
        principal = amount - bonus
    else:
        raise ValidationError(f"unknown stored value spend order {order!r}", field="order")
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


def refund_forfeit(balance: Split, refund: int, terms: str = "all") -> Split:
    """What a refund of ``refund`` fen of principal in cash (储值退款) takes from the
    balance: that principal, and the bonus the chain's terms (``Rules.sv_refund_bonus``)
    forfeit with it: ``all`` of it, or in ``proportional`` measure (the bonus kept is
    ``bonus × principal left ÷ principal``, rounded down, so a full refund forfeits all).
    Only unspent principal is refunded: never more than the principal held."""
    if isinstance(refund, bool) or not isinstance(refund, int) or refund <= 0:
        raise ValidationError("refund must be a positive integer of fen", field="amount")
    if refund > balance.principal:
        raise InsufficientFunds(
            f"可退本金不足: 申请退 {refund} 分, 本金余额 {max(0, balance.principal)} 分 "
            "(only unspent principal is refunded)",
            field="amount",
            needed=refund,
            available=max(0, balance.principal),
        )
    bonus = max(0, balance.bonus)
    if terms == "all":
        forfeit = bonus
    elif terms == "proportional":
        forfeit = bonus - bonus * (balance.principal - refund) // balance.principal
    else:
        raise ValidationError(f"unknown refund terms {terms!r}", field="sv_refund_bonus")
    return Split(refund, forfeit)
