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

    # -- points rules (docs/programme/points.md)

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
        if rules.points_per_yuan_redeemed <= 0:
            raise ValidationError("points_per_yuan_redeemed must be positive")
        try:
            check_rate(rules.member_day_discount, "member_day_discount")
        except ValueError as exc:
            raise ValidationError(str(exc), field="member_day_discount") from None
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
