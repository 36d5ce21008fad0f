"""Tender validation: the till never accepts a sale its tenders do not cover."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import InsufficientFunds, ValidationError
from core.money import MAX_AMOUNT, format_yuan

TENDER_KINDS = {"cash": "现金", "stored_value": "储值", "points": "积分抵扣"}


@dataclass(frozen=True, slots=True)
class Tender:
    kind: str
    amount: int  # fen offered (for cash, what the customer handed over)


@dataclass(frozen=True, slots=True)
class Settlement:
    cash: int  # cash kept (offered minus change)
    stored_value: int
    points_fen: int
    change: int

    def applied(self) -> list[Tender]:
        out = []
        for kind, amount in (
            ("cash", self.cash),
            ("stored_value", self.stored_value),
            ("points", self.points_fen),
        ):
            if amount:
                out.append(Tender(kind, amount))
        return out


def sum_by_kind(amounts: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Fen per tender kind, summed over (kind, amount) pairs: what a sale or a return took
    or gave back in each kind (the till's replay check, HQ's money checks)."""
    total: dict[str, int] = {}
    for kind, amount in amounts:
        total[kind] = total.get(kind, 0) + amount
    return total


def settle(total: int, tenders: list[Tender]) -> Settlement:
    """Check tenders against the total; only cash gives change."""
    sums = dict.fromkeys(TENDER_KINDS, 0)
    for i, tender in enumerate(tenders):
        where = f"tenders[{i}]"
        if tender.kind not in TENDER_KINDS:
            raise ValidationError(
                f"不支持的付款方式 ({where}.kind must be one of {sorted(TENDER_KINDS)},"
                f" got {tender.kind!r})",
                field=f"{where}.kind",
            )
        if (
            isinstance(tender.amount, bool)
            or not isinstance(tender.amount, int)
            or not 0 < tender.amount <= MAX_AMOUNT
        ):
            raise ValidationError(
                f"付款金额须大于 0 且不超过 {format_yuan(MAX_AMOUNT)}"
                f" ({where}.amount must be a positive integer of fen, at most {MAX_AMOUNT})",
                field=f"{where}.amount",
            )
        sums[tender.kind] += tender.amount
    non_cash = sums["stored_value"] + sums["points"]
    if non_cash > total:
        raise ValidationError(
            f"储值和积分合计 {format_yuan(non_cash)}, 超过应付 {format_yuan(total)}"
            " (只有现金可以找零) (stored value and points exceed the amount due)",
            field="tenders",
        )
    offered = non_cash + sums["cash"]
    if offered < total:
        raise InsufficientFunds(
            f"付款不足: 应付 {format_yuan(total)}, 实付 {format_yuan(offered)},"
            f" 还差 {format_yuan(total - offered)} (payment short of the amount due)",
            field="tenders",
            due=total,
            paid=offered,
        )
    change = offered - total
    return Settlement(
        cash=sums["cash"] - change,
        stored_value=sums["stored_value"],
        points_fen=sums["points"],
        change=change,
    )
