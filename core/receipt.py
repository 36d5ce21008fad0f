"""The receipt model: everything a printer needs, with no printer in sight.

The till builds one from a committed sale, return or top-up; the device layer
turns it into ESC/POS bytes (or a raster image). All amounts are integer fen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
    title: str  # 销售小票 / 退货单 / 充值凭证
    store_name: str
    store_code: str
    document_no: str  # the sale/return/top-up id as printed
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
