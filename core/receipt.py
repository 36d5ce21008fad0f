"""The receipt model: everything a printer needs, with no printer in sight.

The till builds one from a committed sale, return or top-up; the device layer
turns it into ESC/POS bytes (or a raster image). All amounts are integer fen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from core.tenders import TENDER_KINDS


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    name: str
    qty: int
    unit_price: int  # fen, the price charged per unit before member/order discounts
    amount: int  # fen, what the line costs after every discount
    discount: int = 0  # fen, all discounts on this line (line, member, order), positive
    note: str = ""  # e.g. "特价" (promotion price), "不积分" (no points)


@dataclass(frozen=True, slots=True)
class ReceiptTender:
    kind: str  # cash | stored_value | points
    label: str  # 现金 / 储值 / 积分抵扣
    amount: int  # fen
    points: int = 0  # points used, for points tenders


@dataclass(frozen=True, slots=True)
class ReceiptMember:
    masked_name: str  # 张*
    masked_phone: str  # 138****5678
    card_no_tail: str  # last 4 digits
    tier: str
    points_earned: int
    points_balance: int
    stored_value_balance: int  # fen, principal + bonus
    self_service_url: str = ""  # encoded as a QR code on the receipt


@dataclass(frozen=True, slots=True)
class Receipt:
    kind: str  # sale | return | topup
    title: str  # 销售小票 / 退货退款单 / 充值凭证
    store_name: str
    store_code: str
    document_no: str  # the receipt number of a sale or return ("S001-000123"), else the id
    occurred_at: str  # local time, "2026-11-23 19:30:05"
    cashier: str
    lines: tuple[ReceiptLine, ...] = ()
    subtotal: int = 0
    discount_total: int = 0  # all discounts, positive
    rounding: int = 0  # 抹零, positive when the customer pays less
    total: int = 0
    tenders: tuple[ReceiptTender, ...] = ()
    change: int = 0
    member: ReceiptMember | None = None
    footer: tuple[str, ...] = ()
    reprint: bool = False
    opens_drawer: bool = False  # a cash tender was taken
    extra: dict[str, Any] = field(default_factory=dict)
    # the receipt number printed as a CODE128 barcode under the totals ("S001-000123"):
    # the till looks the sale up by it (edge/services/receipts.py find_sale)
    barcode: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Receipt:
        data = dict(data)
        data["lines"] = tuple(ReceiptLine(**x) for x in data.get("lines", ()))
        data["tenders"] = tuple(ReceiptTender(**x) for x in data.get("tenders", ()))
        if data.get("member"):
            data["member"] = ReceiptMember(**data["member"])
        data["footer"] = tuple(data.get("footer", ()))
        return cls(**data)


def mask_name(name: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***; a one-character name stays as it is."""
    name = name.strip()
    if len(name) <= 1:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_phone(phone: str) -> str:
    """13812345678 -> 138****5678."""
    digits = phone.strip()
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def sale_line_dicts(lines: Iterable[dict[str, Any]], member: bool) -> tuple[dict[str, Any], ...]:
    """A sale body's lines (core.protocol) as the receipt prints them (ReceiptLine's keys):
    the till's printout and HQ's console both show a sale this way."""
    no_member_note = "不积分" if member else ""
    return tuple(
        {
            "name": ln["name"],
            "qty": ln["qty"],
            "unit_price": ln["unit_price"],
            "amount": ln["amount"],
            "discount": ln["gross"] - ln["amount"],
            "note": "特价" if ln["promo"] else ("" if ln["earns_points"] else no_member_note),
        }
        for ln in lines
    )


def sale_tender_dicts(
    tenders: Iterable[dict[str, Any]], change: int, points_used: int
) -> tuple[dict[str, Any], ...]:
    """A sale body's tenders as the receipt prints them (ReceiptTender's keys): cash as
    the customer handed it over (the change line shows what came back)."""
    return tuple(
        {
            "kind": kind,
            "label": TENDER_KINDS[kind],
            "amount": t["amount"] + change if kind == "cash" else t["amount"],
            "points": points_used if kind == "points" else 0,
        }
        for t in tenders
        for kind in (t["kind"],)
    )
