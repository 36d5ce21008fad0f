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


# -- cards: card types as products (docs/programme/cards.md)

CARD_TYPE_DEFAULT = "普通卡"
MAX_VALIDITY_MONTHS = 120
MAX_VALIDITY_DAYS = 3660


def _card_label(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 32:
        raise ValidationError(
            f"{field_name} 须为1到32个字的卡类型名 (must be a card type name of 1..32 characters)",
            field=field_name,
        )
    return value


def _card_int(data: dict[str, Any], key: str, where: str, lo: int, hi: int) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(
            f"{where}.{key} 须为 {lo}..{hi} 的整数 (must be an integer in {lo}..{hi})",
            field=f"{where}.{key}",
        )
    return value


@dataclass(frozen=True, slots=True)
class CardProduct:
    """A card type sold as a product (the 198元年卡): its price in fen, its validity in
    months or days (one of them), whether a holder may renew it before it lapses, and the
    card type a member falls back to when it lapses."""

    card_type: str
    price: int
    months: int = 0
    days: int = 0
    renewable: bool = True
    fallback: str = CARD_TYPE_DEFAULT

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"card_type": self.card_type, "price": self.price}
        if self.months:
            out["months"] = self.months
        if self.days:
            out["days"] = self.days
        return out | {"renewable": self.renewable, "fallback": self.fallback}

    @classmethod
    def from_dict(cls, data: Any, where: str = "cards.products") -> CardProduct:
        if isinstance(data, CardProduct):
            return data
        if not isinstance(data, dict):
            raise ValidationError(f"{where} 须为对象 (must be an object)", field=where)
        unknown = set(data) - {"card_type", "price", "months", "days", "renewable", "fallback"}
        if unknown:
            raise ValidationError(
                f"{where}: 未知字段 {sorted(unknown)} (unknown keys)",
                field=f"{where}.{sorted(unknown)[0]}",
            )
        card_type = _card_label(data.get("card_type"), f"{where}.card_type")
        fallback = _card_label(data.get("fallback", CARD_TYPE_DEFAULT), f"{where}.fallback")
        if fallback == card_type:
            raise ValidationError(
                f"{where}.fallback 不能是卡类型本身 (a card cannot fall back to itself)",
                field=f"{where}.fallback",
            )
        from core.money import MAX_AMOUNT

        price = _card_int(data, "price", where, 0, MAX_AMOUNT)
        months = _card_int(data, "months", where, 0, MAX_VALIDITY_MONTHS)
        days = _card_int(data, "days", where, 0, MAX_VALIDITY_DAYS)
        if (months > 0) == (days > 0):
            raise ValidationError(
                f"{where}: 有效期须为月数或天数之一 (give exactly one of months and days)",
                field=f"{where}.months",
            )
        renewable = data.get("renewable", True)
        if not isinstance(renewable, bool):
            raise ValidationError(f"{where}.renewable 须为 true/false", field=f"{where}.renewable")
        return cls(card_type, price, months, days, renewable, fallback)


@dataclass(frozen=True, slots=True)
class CardUpgrade:
    """充值升级: a single top-up of at least ``threshold`` fen moves the member to ``card_type``."""

    threshold: int
    card_type: str

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "card_type": self.card_type}

    @classmethod
    def from_dict(cls, data: Any, where: str = "cards.upgrades") -> CardUpgrade:
        if isinstance(data, CardUpgrade):
            return data
        if not isinstance(data, dict) or set(data) - {"threshold", "card_type"}:
            raise ValidationError(
                f"{where} 须为 {{threshold, card_type}} (must be an object of threshold and card_type)",
                field=where,
            )
        from core.money import MAX_AMOUNT

        threshold = _card_int(data, "threshold", where, 1, MAX_AMOUNT)
        return cls(threshold, _card_label(data.get("card_type"), f"{where}.card_type"))


@dataclass(frozen=True, slots=True)
class CardRules:
    """The rules' ``cards`` section: card products and top-up upgrades (core/cards.py
    applies them)."""

    products: tuple[CardProduct, ...] = ()
    upgrades: tuple[CardUpgrade, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "products": [p.to_dict() for p in self.products],
            "upgrades": [u.to_dict() for u in self.upgrades],
        }

    @classmethod
    def from_dict(cls, data: Any) -> CardRules:
        if isinstance(data, CardRules):
            return data
        if not isinstance(data, dict) or set(data) - {"products", "upgrades"}:
            raise ValidationError(
                "cards 须为 {products, upgrades} (cards must be an object of products and upgrades)",
                field="cards",
            )
        out = []
        for key, decode in (
            ("products", CardProduct.from_dict),
            ("upgrades", CardUpgrade.from_dict),
        ):
            raw = data.get(key, [])
            if not isinstance(raw, list | tuple):
                raise ValidationError(
                    f"cards.{key} 须为列表 (must be a list)", field=f"cards.{key}"
                )
            out.append(tuple(decode(x, f"cards.{key}[{i}]") for i, x in enumerate(raw)))
        products, upgrades = out
        names = [p.card_type for p in products]
        if len(set(names)) != len(names):
            raise ValidationError(
                "cards.products: 同一卡类型出现两次 (a card type is sold once)",
                field="cards.products",
            )
        sold = set(names)
        for i, p in enumerate(products):
            if p.fallback in sold:
                raise ValidationError(
                    f"cards.products[{i}].fallback 不能是另一种有期限的卡 "
                    "(a card falls back to a card type without a validity)",
                    field=f"cards.products[{i}].fallback",
                )
        thresholds = [u.threshold for u in upgrades]
        if len(set(thresholds)) != len(thresholds):
            raise ValidationError(
                "cards.upgrades: 充值门槛重复 (two upgrades at one threshold)",
                field="cards.upgrades",
            )
        for i, u in enumerate(upgrades):
            if u.card_type in sold:
                raise ValidationError(
                    f"cards.upgrades[{i}].card_type 是需购买的卡 (an upgrade moves to a card "
                    "type without a validity, not to one that is sold)",
                    field=f"cards.upgrades[{i}].card_type",
                )
        return cls(products, tuple(sorted(upgrades, key=lambda u: u.threshold)))

    def product(self, card_type: str | None) -> CardProduct | None:
        for p in self.products:
            if p.card_type == card_type:
                return p
        return None


# -- end of cards
# -- upkeep (docs/programme/upkeep.md): the chain's own profile fields and its terms for
# refunding stored value

# What a refund of principal does to the bonus (储值退款, the chain's prepaid-card terms):
# "all": any refund forfeits the whole bonus (赠送金额作废); "proportional": the bonus
# goes in the proportion of the principal refunded (half the principal back, half the
# bonus gone; the bonus kept is rounded down, so a full refund forfeits all of it).
SV_REFUND_BONUS = ("all", "proportional")

# The types a chain-defined profile field may have (ProfileField.type).
PROFILE_FIELD_TYPES = ("text", "number", "date", "choice")
MAX_PROFILE_FIELDS = 20
MAX_PROFILE_CHOICES = 50


@dataclass(frozen=True, slots=True)
class ProfileField:
    """A profile field the chain defines itself (kept in the member's ``extra``): ``name``
    is the key, ``label`` what the screen shows; ``type`` one of PROFILE_FIELD_TYPES,
    ``choices`` the values a ``choice`` field may take; ``required`` at registration."""

    name: str
    label: str = ""
    type: str = "text"
    choices: tuple[str, ...] = ()
    required: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "label": self.label, "type": self.type}
        if self.choices:
            out["choices"] = list(self.choices)
        if self.required:
            out["required"] = True
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "profile_fields") -> ProfileField:
        if not isinstance(data, dict):
            raise ValidationError(f"{where} must be an object {{name, label, type}}", field=where)
        unknown = set(data) - {"name", "label", "type", "choices", "required"}
        if unknown:
            raise ValidationError(f"{where}: unknown keys {sorted(unknown)}", field=where)
        name = data.get("name")
        if (
            not isinstance(name, str)
            or not (name.isascii() and name.isidentifier())
            or len(name) > 32
        ):
            raise ValidationError(
                f"{where}.name must be an ASCII identifier of at most 32 characters, got {name!r}",
                field=f"{where}.name",
            )
        label = data.get("label", "")
        if not isinstance(label, str) or len(label) > 32:
            raise ValidationError(
                f"{where}.label must be text of at most 32 characters", field=f"{where}.label"
            )
        kind = data.get("type", "text")
        if kind not in PROFILE_FIELD_TYPES:
            raise ValidationError(
                f"{where}.type must be one of {list(PROFILE_FIELD_TYPES)}, got {kind!r}",
                field=f"{where}.type",
            )
        choices = data.get("choices", [])
        if (
            not isinstance(choices, list | tuple)
            or len(choices) > MAX_PROFILE_CHOICES
            or not all(isinstance(c, str) and 0 < len(c) <= 32 for c in choices)
        ):
            raise ValidationError(
                f"{where}.choices must be a list of at most {MAX_PROFILE_CHOICES} texts",
                field=f"{where}.choices",
            )
        if (kind == "choice") != bool(choices):
            raise ValidationError(
                f"{where}.choices: a choice field needs choices, and only a choice field has them",
                field=f"{where}.choices",
            )
        required = data.get("required", False)
        if not isinstance(required, bool):
            raise ValidationError(
                f"{where}.required must be true or false", field=f"{where}.required"
            )
        return cls(name, label, kind, tuple(choices), required)


def profile_fields_from(data: Any) -> tuple[ProfileField, ...]:
    """The rules' ``profile_fields``: a list of ProfileField objects, names unique."""
    if not isinstance(data, list | tuple) or len(data) > MAX_PROFILE_FIELDS:
        raise ValidationError(
            f"profile_fields must be a list of at most {MAX_PROFILE_FIELDS} fields",
            field="profile_fields",
        )
    out = tuple(
        f if isinstance(f, ProfileField) else ProfileField.from_dict(f, f"profile_fields[{i}]")
        for i, f in enumerate(data)
    )
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ValidationError("profile_fields: a name is declared twice", field="profile_fields")
    return out


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


# -- tiers: the tier ladder and growth value (成长值) (docs/programme/tiers.md)

# Growth from actions the chain chooses: the event kinds a chain may give points for.
GROWTH_EVENT_KINDS = ("profile_complete", "referral", "review")


@dataclass(frozen=True, slots=True)
class TierStep:
    """One rung of the ladder: a member whose growth is at least ``threshold`` holds it."""

    name: str
    threshold: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "threshold": self.threshold}


def _whole(raw: dict[str, Any], key: str, default: int, where: str, lo: int = 0) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValidationError(
            f"{where}.{key} must be an integer of at least {lo}, got {value!r}",
            field=f"{where}.{key}",
        )
    return value


@dataclass(frozen=True, slots=True)
class TierRules:
    """The chain's tier ladder and how growth is earned (core/tiers.py applies it).

    An empty ladder (the default) means no tier evaluation: tiers stay as they are."""

    ladder: tuple[TierStep, ...] = ()  # ascending thresholds, distinct names
    growth_per_yuan: int = 1  # growth per yuan of net spend (money paid, returns taken off)
    events: dict[str, int] = field(default_factory=dict)  # GROWTH_EVENT_KINDS -> points
    profile_complete_score: int = 80  # profile_score at least this earns "profile_complete"
    window_days: int = 365  # growth counts spend and events of the last N days
    lapse_days: int = 0  # no purchase in N days: one rung below what growth earns (0: off)
    min_hold_days: int = 0  # no downgrade within N days of the tier being set

    def to_dict(self) -> dict[str, Any]:
        return {
            "ladder": [step.to_dict() for step in self.ladder],
            "growth_per_yuan": self.growth_per_yuan,
            "events": dict(self.events),
            "profile_complete_score": self.profile_complete_score,
            "window_days": self.window_days,
            "lapse_days": self.lapse_days,
            "min_hold_days": self.min_hold_days,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> TierRules:
        where = "tiers"
        if isinstance(raw, TierRules):
            return raw
        if not isinstance(raw, dict):
            raise ValidationError(f"{where} must be an object", field=where)
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise RulesNotSupported(
                f"unknown {where} keys: {sorted(unknown)}", field=f"{where}.{sorted(unknown)[0]}"
            )
        ladder_raw = raw.get("ladder", [])
        if not isinstance(ladder_raw, list | tuple):
            raise ValidationError(f"{where}.ladder must be a list", field=f"{where}.ladder")
        ladder: list[TierStep] = []
        for i, step in enumerate(ladder_raw):
            at = f"{where}.ladder[{i}]"
            if isinstance(step, TierStep):
                step = step.to_dict()
            if not isinstance(step, dict) or set(step) != {"name", "threshold"}:
                raise ValidationError(f"{at} must be {{name, threshold}}", field=at)
            name = step["name"]
            if not isinstance(name, str) or not name.strip() or len(name) > 32:
                raise ValidationError(f"{at}.name must be a text of 1..32", field=f"{at}.name")
            threshold = _whole(step, "threshold", 0, at)
            if ladder and threshold <= ladder[-1].threshold:
                raise ValidationError(
                    f"{at}.threshold must be above the rung below ({ladder[-1].threshold})",
                    field=f"{at}.threshold",
                )
            if any(s.name == name for s in ladder):
                raise ValidationError(f"{at}.name {name!r} is already on the ladder", field=at)
            ladder.append(TierStep(name, threshold))
        events = raw.get("events", {})
        if not isinstance(events, dict):
            raise ValidationError(f"{where}.events must be an object", field=f"{where}.events")
        for kind in events:
            if kind not in GROWTH_EVENT_KINDS:
                raise ValidationError(
                    f"{where}.events.{kind}: kind must be one of {list(GROWTH_EVENT_KINDS)}",
                    field=f"{where}.events.{kind}",
                )
            _whole(events, kind, 0, f"{where}.events")
        window = _whole(raw, "window_days", 365, where, lo=1)
        lapse = _whole(raw, "lapse_days", 0, where)
        if lapse > window:
            raise ValidationError(
                f"{where}.lapse_days ({lapse}) must not exceed window_days ({window})",
                field=f"{where}.lapse_days",
            )
        score = _whole(raw, "profile_complete_score", 80, where)
        if score > 100:
            raise ValidationError(
                f"{where}.profile_complete_score must be 0..100",
                field=f"{where}.profile_complete_score",
            )
        return cls(
            ladder=tuple(ladder),
            growth_per_yuan=_whole(raw, "growth_per_yuan", 1, where),
            events=dict(events),
            profile_complete_score=score,
            window_days=window,
            lapse_days=lapse,
            min_hold_days=_whole(raw, "min_hold_days", 0, where),
        )

    def rank(self, tier: str | None) -> int:
        """The rung's index on the ladder; -1 for no tier or one not on the ladder."""
        for i, step in enumerate(self.ladder):
            if step.name == tier:
                return i
        return -1


# -- end of tiers


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
    tiers: TierRules = field(default_factory=TierRules, metadata=section(TierRules.from_dict))
    # member day's own member rate (permille; 1000: none): the member gets the better of
    # it and the card-type/tier rate on a member day (core/pricing.py)
    member_day_discount: int = 1000

    # -- card types as products (docs/programme/cards.md)
    cards: CardRules = field(default_factory=CardRules, metadata=section(CardRules.from_dict))

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
    # the coupon template a member is given at registration (新人券), by id; "" for none
    new_member_coupon: str = ""

    # -- stored value and member upkeep (docs/programme/upkeep.md)
    # what a refund of principal does to the bonus: one of SV_REFUND_BONUS
    sv_refund_bonus: str = "all"
    # points the referrer earns when a member they brought registers (0: none); the lot
    # expires as earned points do (points_expiry_days)
    referral_points: int = 0
    # the chain's own profile fields, kept in the member's ``extra``
    profile_fields: tuple[ProfileField, ...] = field(
        default=(), metadata=section(profile_fields_from)
    )

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

    def member_rate_on(self, card_type: str | None, tier: str | None, day: dt.date | None) -> int:
        """The member rate on ``day``: on a member day the better of the usual rate and
        ``member_day_discount`` (docs/programme/tiers.md, "Member day")."""
        rate = self.member_rate(card_type, tier)
        if day is not None and self.member_day_discount < rate and self.is_member_day(day):
            return self.member_day_discount
        return rate

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
        if rules.sv_refund_bonus not in SV_REFUND_BONUS:
            raise ValidationError(
                f"sv_refund_bonus must be one of {list(SV_REFUND_BONUS)}, "
                f"got {rules.sv_refund_bonus!r}",
                field="sv_refund_bonus",
            )
        if (
            isinstance(rules.referral_points, bool)
            or not isinstance(rules.referral_points, int)
            or not 0 <= rules.referral_points <= 1_000_000
        ):
            raise ValidationError(
                "referral_points must be an integer from 0 to 1000000", field="referral_points"
            )
        if rules.points_per_yuan_redeemed <= 0:
            raise ValidationError("points_per_yuan_redeemed must be positive")
        try:
            check_rate(rules.member_day_discount, "member_day_discount")
        except ValueError as exc:
            raise ValidationError(str(exc), field="member_day_discount") from None
        if rules.member_day_points_multiplier < 1:
            raise ValidationError("member_day_points_multiplier must be at least 1")
        # -- coupons
        if not isinstance(rules.new_member_coupon, str) or len(rules.new_member_coupon) > 32:
            raise ValidationError(
                "new_member_coupon must be a coupon template id (text, at most 32 characters)",
                field="new_member_coupon",
            )
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
