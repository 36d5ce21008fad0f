"""The programme's rules as data: one versioned object both sides price with.

HQ publishes a rules document; every edge prices with the version it holds and
records that version on each sale, so HQ can re-price with the same rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from core.errors import ValidationError
from core.money import Rounding, check_rate


@dataclass(frozen=True, slots=True)
class TopUpBonus:
    """充500送100: a top-up of at least ``threshold`` fen earns ``bonus`` fen."""

    threshold: int
    bonus: int


# How a stored-value spend is taken from principal (paid) and bonus (given): in proportion
# to the balance, so the bonus share of what is left never grows; or one of them first, as
# the chain's prepaid-card terms say (先扣本金 / 先扣赠送).
SV_SPEND_ORDERS = ("proportional", "principal_first", "bonus_first")


# The rules document's schema. A document that uses anything added after the first
# release says so with ``"schema": RULES_SCHEMA``; a till that knows an older schema
# refuses the document as a whole (``RulesNotSupported``) and keeps trading on the
# last rules it could load (docs/programme/rules.md).
RULES_SCHEMA = 2

# The keys of the first release's documents, which every till knows. Any other field of
# ``Rules`` is sent only when it differs from its default, so a chain that does not use
# a newer feature keeps older tills trading on its documents.
FIRST_RELEASE_KEYS = (
    "version",
    "card_type_discount",
    "tier_discount",
    "promo_excludes_member_discount",
    "points_per_yuan",
    "promo_earns_points",
    "member_day_weekdays",
    "member_day_month_days",
    "member_day_points_multiplier",
    "points_per_yuan_redeemed",
    "points_expiry_days",
    "topup_bonuses",
    "rounding",
)


class RulesNotSupported(ValidationError):
    """A rules document this software cannot honour (a newer schema, or a key it does not
    know): the till keeps the rules it has and reports the refusal."""

    slug = "rules_not_supported"


def section(decode: Callable[[Any], Any]) -> dict[str, Any]:
    """``field(..., metadata=section(Cls.from_dict))``: how a later field is read back
    from its JSON form (it is written by its ``to_dict()``, or as is)."""
    return {"decode": decode}


def _encode(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


# -- points rules (docs/programme/points.md)


def _month_day(value: Any, field_name: str) -> tuple[int, int]:
    """ "MM-DD" (a day of every year; 02-29 is refused: it is not in every year)."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != "-":
        raise ValidationError(f"{field_name} must be MM-DD, got {value!r}", field=field_name)
    try:
        month, day = int(value[:2]), int(value[3:])
        dt.date(2001, month, day)
    except ValueError:
        raise ValidationError(
            f"{field_name} must be a day of every year as MM-DD, got {value!r}", field=field_name
        ) from None
    return month, day


def _iso_day(value: Any, field_name: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(
            f"{field_name} must be a date YYYY-MM-DD, got {value!r}", field=field_name
        ) from None


@dataclass(frozen=True, slots=True)
class RedemptionWindow:
    """积分兑换期: points may be redeemed from ``start`` to ``end`` (both included),
    e.g. a 感恩回馈月; ``name`` is what the till says."""

    start: dt.date
    end: dt.date
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: Any) -> RedemptionWindow:
        if isinstance(data, RedemptionWindow):
            return data
        where = "points_redemption_windows"
        if not isinstance(data, dict) or set(data) - {"start", "end", "name"}:
            raise ValidationError(
                f"{where}: each window is {{start, end, name?}}, got {data!r}", field=where
            )
        start = _iso_day(data.get("start"), f"{where}.start")
        end = _iso_day(data.get("end"), f"{where}.end")
        if end < start:
            raise ValidationError(f"{where}: end {end} is before start {start}", field=where)
        name = data.get("name", "")
        if not isinstance(name, str) or len(name) > 40:
            raise ValidationError(f"{where}.name must be text of at most 40", field=where)
        return cls(start, end, name)


def _windows(data: Any) -> tuple[RedemptionWindow, ...]:
    if not isinstance(data, list | tuple):
        raise ValidationError(
            "points_redemption_windows must be a list", field="points_redemption_windows"
        )
    return tuple(sorted((RedemptionWindow.from_dict(w) for w in data), key=lambda w: w.start))


def _reset_date(data: Any) -> str:
    if data is None:
        return ""
    _month_day(data, "points_reset_date")
    return data


def _lock_days(data: Any) -> int:
    if isinstance(data, bool) or not isinstance(data, int) or not 0 <= data <= 366:
        raise ValidationError(
            f"points_lock_days must be a whole number of days 0..366, got {data!r}",
            field="points_lock_days",
        )
    return data


@dataclass(frozen=True, slots=True)
class Rules:
    version: int = 1
    # member discount (permille of the price) by card type and by tier; the better applies
    card_type_discount: dict[str, int] = field(default_factory=dict)
    tier_discount: dict[str, int] = field(default_factory=dict)
    # special-price (promotion) goods get no member discount on top
    promo_excludes_member_discount: bool = True
    # points earned per yuan paid, by card type ("*" is the default)
    points_per_yuan: dict[str, int] = field(default_factory=lambda: {"*": 1})
    promo_earns_points: bool = True
    # member day: weekdays (0=Monday) and/or days of month, with a points multiplier
    member_day_weekdays: tuple[int, ...] = ()
    member_day_month_days: tuple[int, ...] = ()
    member_day_points_multiplier: int = 1
    # redemption: how many points pay one yuan
    points_per_yuan_redeemed: int = 100
    points_expiry_days: int = 365
    topup_bonuses: tuple[TopUpBonus, ...] = ()
    stored_value_spend: str = "proportional"  # one of SV_SPEND_ORDERS
    # 抹零
    rounding: Rounding = Rounding.NONE

    # ---- added after the first release: sent only when not the default (see
    # FIRST_RELEASE_KEYS); a section is a frozen dataclass with to_dict()/from_dict()
    # declared with metadata=section(Cls.from_dict). One block per part of the programme.

    # -- tiers, growth value and member day (docs/programme/tiers.md)

    # -- card types as products (docs/programme/cards.md)

    # -- points rules (docs/programme/points.md)
    # 积分清零: "MM-DD"; points earned before that day expire on it (their last usable
    # day is the day before), instead of points_expiry_days after they were earned
    points_reset_date: str = field(default="", metadata=section(_reset_date))
    # points from a sale cannot be spent for this many days (its return window): a lot
    # is usable from earned_on + points_lock_days
    points_lock_days: int = field(default=0, metadata=section(_lock_days))
    # points may be redeemed (tender, gifts) only inside one of these; none: always
    points_redemption_windows: tuple[RedemptionWindow, ...] = field(
        default=(), metadata=section(_windows)
    )

    # -- coupons (docs/programme/coupons.md)

    # -- stored value and member upkeep (docs/programme/upkeep.md)

    # -- maintainers and products (docs/programme/staff.md)

    # ---- end of the later fields

    def member_rate(self, card_type: str | None, tier: str | None) -> int:
        rates = [1000]
        if card_type and card_type in self.card_type_discount:
            rates.append(self.card_type_discount[card_type])
        if tier and tier in self.tier_discount:
            rates.append(self.tier_discount[tier])
        return min(rates)

    def earn_rate(self, card_type: str | None) -> int:
        if card_type and card_type in self.points_per_yuan:
            return self.points_per_yuan[card_type]
        return self.points_per_yuan.get("*", 0)

    def is_member_day(self, day: dt.date) -> bool:
        return day.weekday() in self.member_day_weekdays or day.day in self.member_day_month_days

    def topup_bonus(self, amount: int) -> int:
        best = 0
        for tier in self.topup_bonuses:
            if amount >= tier.threshold:
                best = max(best, tier.bonus)
        return best

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "card_type_discount": dict(self.card_type_discount),
            "tier_discount": dict(self.tier_discount),
            "promo_excludes_member_discount": self.promo_excludes_member_discount,
            "points_per_yuan": dict(self.points_per_yuan),
            "promo_earns_points": self.promo_earns_points,
            "member_day_weekdays": list(self.member_day_weekdays),
            "member_day_month_days": list(self.member_day_month_days),
            "member_day_points_multiplier": self.member_day_points_multiplier,
            "points_per_yuan_redeemed": self.points_per_yuan_redeemed,
            "points_expiry_days": self.points_expiry_days,
            "topup_bonuses": [[t.threshold, t.bonus] for t in self.topup_bonuses],
            "rounding": str(self.rounding),
        } | self._later_fields()

    def _later_fields(self) -> dict[str, Any]:
        """Fields added after the first release, only where they differ from the default:
        a store on older software cannot load a document with a key it does not know,
        which is right only when it could not honour the key. A document with any of
        them (``stored_value_spend`` aside, which predates the schema number) says
        ``"schema": RULES_SCHEMA``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in FIRST_RELEASE_KEYS:
                continue
            value = getattr(self, f.name)
            if value != _default(f):
                out[f.name] = _encode(value)
        if set(out) - {"stored_value_spend"}:
            out = {"schema": RULES_SCHEMA} | out
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rules:
        d = dict(data)
        schema = d.pop("schema", 1)
        if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
            raise ValidationError("rules schema must be a positive integer", field="schema")
        if schema > RULES_SCHEMA:
            raise RulesNotSupported(
                f"rules schema {schema} is newer than this software's {RULES_SCHEMA}",
                field="schema",
            )
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise RulesNotSupported(
                f"unknown rules keys: {sorted(unknown)}", field=sorted(unknown)[0]
            )
        for f in fields(cls):
            if f.name in d and f.name not in FIRST_RELEASE_KEYS:
                decode = f.metadata.get("decode")
                if decode is not None:
                    d[f.name] = decode(d[f.name])
                elif isinstance(_default(f), tuple):
                    d[f.name] = tuple(d[f.name])
        for key in ("card_type_discount", "tier_discount"):
            for name, rate in d.get(key, {}).items():
                check_rate(rate, f"{key}.{name}")
        for key in ("member_day_weekdays", "member_day_month_days"):
            if key in d:
                d[key] = tuple(d[key])
        if "topup_bonuses" in d:
            d["topup_bonuses"] = tuple(
                t if isinstance(t, TopUpBonus) else TopUpBonus(int(t[0]), int(t[1]))
                for t in d["topup_bonuses"]
            )
        if "rounding" in d:
            try:
                d["rounding"] = Rounding(d["rounding"])
            except ValueError:
                raise ValidationError(
                    f"rounding must be one of {[r.value for r in Rounding]}", field="rounding"
                ) from None
        rules = cls(**d)
        if rules.stored_value_spend not in SV_SPEND_ORDERS:
            raise ValidationError(
                f"stored_value_spend must be one of {list(SV_SPEND_ORDERS)}, "
                f"got {rules.stored_value_spend!r}",
                field="stored_value_spend",
            )
        if rules.points_per_yuan_redeemed <= 0:
            raise ValidationError("points_per_yuan_redeemed must be positive")
        if rules.member_day_points_multiplier < 1:
            raise ValidationError("member_day_points_multiplier must be at least 1")
        return rules


DEMO_RULES = Rules(
    version=1,
    card_type_discount={"普通卡": 1000, "银卡": 950, "金卡": 900},
    tier_discount={"钻石": 880},
    points_per_yuan={"*": 1, "金卡": 2},
    member_day_weekdays=(2,),  # Wednesday
    member_day_points_multiplier=2,
    points_per_yuan_redeemed=100,
    topup_bonuses=(TopUpBonus(50000, 10000), TopUpBonus(100000, 25000)),
    rounding=Rounding.JIAO_DOWN,
)
