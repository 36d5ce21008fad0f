"""Coupons as data: templates, codes, validity, and the discount coupons give a basket.

A coupon template (券模板) says what a coupon gives and when it may be used; HQ
publishes templates to every till (change entity ``coupon_template``) and issues
coupons from them, and a till may issue one itself (a new-member gift). Both sides
price a basket's coupons with ``coupon_discounts`` below, called by
``core.pricing.price_basket`` at its step 4 (docs/programme/coupons.md):

1. promotion prices, 2. member discount, 3. order discount, 4. **coupons**,
5. manual adjustment (折让), 6. 抹零.

Each coupon, in the order the till lists them:

- its *eligible lines* are those of its SKUs or categories (all lines when it names
  none); a gift coupon's is the line of its gift SKU;
- its minimum spend is judged on the eligible lines' amounts after member discount
  (before the order discount: a cashier's hand discount never disqualifies a coupon);
- it takes its discount from what is left of the eligible lines (after the order
  discount and any earlier coupon), never more than is left, so no line goes negative:
  amount off = ``min(amount, left)``; percent off = ``off_permille`` of what is left,
  rounded half up to the fen; gift = one unit of the gift line, as that line stands;
- the discount is spread over the eligible lines by largest remainders.

Points are earned on what is paid after coupons (the line amounts).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import ValidationError
from core.money import MAX_AMOUNT, allocate

KINDS = ("amount", "percent", "gift")
SOURCES = ("hq", "till", "campaign", "gift")
MAX_TEMPLATE_ID = 32
MAX_TARGETS = 200

# Codes: 12 characters of Crockford's base32 (no I, L, O, U): 60 random bits, short
# enough to type, only digits and capitals so any Code 128 / Code 39 barcode carries it.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


def new_code() -> str:
    """A fresh coupon code: unguessable (``secrets``), 12 characters."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """A code as typed or scanned: capitals, no dashes or spaces, O read as 0 and I/L as 1."""
    return text.strip().upper().translate(_READ_AS)


def _int(data: dict[str, Any], key: str, lo: int, hi: int, default: int | None = 0) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(
            f"coupon template {key} must be an integer from {lo} to {hi}", field=key
        )
    return value


def _date(data: dict[str, Any], key: str) -> dt.date | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(
            f"coupon template {key} must be an ISO date (YYYY-MM-DD)", field=key
        ) from None


def _texts(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or ()
    if not isinstance(value, list | tuple) or len(value) > MAX_TARGETS:
        raise ValidationError(f"coupon template {key} must be a list of codes", field=key)
    for v in value:
        if not isinstance(v, str) or not 0 < len(v) <= 64:
            raise ValidationError(
                f"coupon template {key} must hold codes of 1..64 characters", field=key
            )
    return tuple(value)


@dataclass(frozen=True, slots=True)
class CouponTemplate:
    """What a coupon gives and when. Immutable once published: a change is a new template."""

    id: str
    name: str
    kind: str  # one of KINDS
    amount: int = 0  # fen off (kind amount)
    off_permille: int = 0  # permille off (kind percent): 100 = 10% off (九折)
    gift_sku: str | None = None  # the SKU given free, one unit (kind gift)
    min_spend: int = 0  # fen of eligible goods after member discount
    categories: tuple[str, ...] = ()  # eligible categories; with skus: either matches
    skus: tuple[str, ...] = ()
    valid_from: dt.date | None = None  # fixed dates (inclusive) ...
    valid_until: dt.date | None = None
    valid_days: int = 0  # ... or N days from the day of issue (that day counts)
    per_member_limit: int = 0  # coupons of this template one member may hold in all; 0: any

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "amount": self.amount,
            "off_permille": self.off_permille,
            "gift_sku": self.gift_sku,
            "min_spend": self.min_spend,
            "categories": list(self.categories),
            "skus": list(self.skus),
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "valid_days": self.valid_days,
            "per_member_limit": self.per_member_limit,
        }

    @classmethod
    def from_dict(cls, data: Any) -> CouponTemplate:
        if not isinstance(data, dict):
            raise ValidationError("coupon template must be an object", field="template")
        unknown = set(data) - set(cls.__dataclass_fields__) - {"active", "created_at"}
        if unknown:
            raise ValidationError(
                f"coupon template: unknown keys {sorted(unknown)}", field=sorted(unknown)[0]
            )
        tid, name, kind = data.get("id"), data.get("name"), data.get("kind")
        if not isinstance(tid, str) or not 0 < len(tid) <= MAX_TEMPLATE_ID:
            raise ValidationError(
                f"coupon template id must be 1..{MAX_TEMPLATE_ID} characters", field="id"
            )
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise ValidationError("coupon template name must be 1..64 characters", field="name")
        if kind not in KINDS:
            raise ValidationError(f"coupon template kind must be one of {KINDS}", field="kind")
        t = cls(
            id=tid,
            name=name,
            kind=kind,
            amount=_int(data, "amount", 0, MAX_AMOUNT),
            off_permille=_int(data, "off_permille", 0, 1000),
            gift_sku=data.get("gift_sku") or None,
            min_spend=_int(data, "min_spend", 0, MAX_AMOUNT),
            categories=_texts(data, "categories"),
            skus=_texts(data, "skus"),
            valid_from=_date(data, "valid_from"),
            valid_until=_date(data, "valid_until"),
            valid_days=_int(data, "valid_days", 0, 3660),
            per_member_limit=_int(data, "per_member_limit", 0, 1000),
        )
        t.check()
        return t

    def check(self) -> None:
        if self.kind == "amount" and self.amount < 1:
            raise ValidationError("an amount-off coupon needs amount > 0 fen", field="amount")
        if self.kind == "percent" and not 1 <= self.off_permille <= 1000:
            raise ValidationError(
                "a percent-off coupon needs off_permille from 1 to 1000", field="off_permille"
            )
        if self.kind == "gift" and (not isinstance(self.gift_sku, str) or not self.gift_sku):
            raise ValidationError("a gift coupon needs gift_sku", field="gift_sku")
        if self.valid_days and (self.valid_from or self.valid_until):
            raise ValidationError(
                "validity is either fixed dates or valid_days after issue, not both",
                field="valid_days",
            )
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValidationError("valid_until is before valid_from", field="valid_until")

    @property
    def value(self) -> int:
        """The face value shown on a list (fen off; 0 for percent and gift coupons)."""
        return self.amount if self.kind == "amount" else 0

    def describe(self) -> str:
        """What the coupon gives, in the cashier's words."""
        if self.kind == "amount":
            cents = f".{self.amount % 100:02d}" if self.amount % 100 else ""  # 减10元, 减5.50元
            what = f"减{self.amount // 100}{cents}元"
        elif self.kind == "percent":
            pay = 1000 - self.off_permille  # 九折 pays 900‰
            what = f"{pay // 100}{'.' + f'{pay % 100:02d}'.rstrip('0') if pay % 100 else ''}折"
        else:
            what = f"赠 {self.gift_sku}"
        if self.min_spend:
            what = f"满{self.min_spend // 100}元" + what
        return what

    def issue_window(self, issued_on: dt.date) -> tuple[dt.date | None, dt.date | None]:
        """(valid_from, expires_on) of a coupon issued on ``issued_on``."""
        if self.valid_days:
            return issued_on, issued_on + dt.timedelta(days=self.valid_days - 1)
        return self.valid_from, self.valid_until

    def matches(self, sku: str, category: str) -> bool:
        if not self.categories and not self.skus:
            return True
        return sku in self.skus or (bool(category) and category in self.categories)


def valid_on(valid_from: Any, expires_on: Any, day: dt.date) -> bool:
    """Whether a coupon with these dates (ISO text, dates or None) may be used on ``day``."""
    start = dt.date.fromisoformat(str(valid_from)[:10]) if valid_from else None
    end = dt.date.fromisoformat(str(expires_on)[:10]) if expires_on else None
    return (start is None or start <= day) and (end is None or day <= end)


@dataclass(frozen=True, slots=True)
class CouponInput:
    """A coupon claimed for a basket: its code and its template as the till holds it."""

    code: str
    template: CouponTemplate


@dataclass(frozen=True, slots=True)
class CouponLine:
    """What coupon pricing needs of one line."""

    sku: str
    category: str
    qty: int
    after_member: int  # the line's amount after member discount (minimum spend)
    left: int  # what is left of it when coupons come (after the order discount)


@dataclass(frozen=True, slots=True)
class AppliedCoupon:
    code: str
    template_id: str
    discount: int
    lines: tuple[tuple[int, int], ...]  # (line_no, fen) for each line it took from

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "template_id": self.template_id,
            "discount": self.discount,
            "lines": [list(p) for p in self.lines],
        }


def coupon_discounts(
    coupons: Sequence[CouponInput], lines: Sequence[CouponLine]
) -> tuple[list[int], tuple[AppliedCoupon, ...]]:
    """Per-line coupon discounts (fen) and each coupon as applied; see the module docstring.

    Refuses (ValidationError naming ``coupons[i]``) a code listed twice, a coupon no line
    of the basket qualifies for, and a minimum spend not reached."""
    taken = [0] * len(lines)
    applied = []
    seen: set[str] = set()
    for i, coupon in enumerate(coupons):
        where = f"coupons[{i}]"
        t = coupon.template
        if coupon.code in seen:
            raise ValidationError(f"优惠券 {coupon.code} 重复 (coupon listed twice)", field=where)
        seen.add(coupon.code)
        if t.kind == "gift":
            eligible = [n for n, ln in enumerate(lines) if ln.sku == t.gift_sku]
        else:
            eligible = [n for n, ln in enumerate(lines) if t.matches(ln.sku, ln.category)]
        if not eligible:
            raise ValidationError(
                f"优惠券 {coupon.code} ({t.name}) 没有适用的商品 (no eligible goods in the basket)",
                field=where,
            )
        # a gift's minimum spend is on the goods its categories/SKUs name (all by default)
        judged = (
            [n for n, ln in enumerate(lines) if t.matches(ln.sku, ln.category)]
            if t.kind == "gift"
            else eligible
        )
        spend = sum(lines[n].after_member for n in judged)
        if spend < t.min_spend:
            raise ValidationError(
                f"优惠券 {coupon.code} ({t.name}) 需满 {t.min_spend} 分, 适用商品 {spend} 分 "
                "(minimum spend not reached)",
                field=where,
            )
        left = [lines[n].left - taken[n] for n in eligible]
        total_left = sum(left)
        if t.kind == "amount":
            off = min(t.amount, total_left)
        elif t.kind == "percent":
            off = (total_left * t.off_permille * 2 + 1000) // 2000
        else:  # gift: one unit of the gift line as it stands
            eligible, left = eligible[:1], left[:1]
            off = left[0] // lines[eligible[0]].qty
        parts = allocate(off, left) if off else [0] * len(left)
        for n, part in zip(eligible, parts, strict=True):
            taken[n] += part
        applied.append(
            AppliedCoupon(
                coupon.code,
                t.id,
                off,
                tuple((n + 1, p) for n, p in zip(eligible, parts, strict=True) if p),
            )
        )
    return taken, tuple(applied)
