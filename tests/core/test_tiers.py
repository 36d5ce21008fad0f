"""Tiers, growth value and member day as rules: tables for each rule (core/tiers.py,
core/rules.py's tiers section, core/pricing.py's member-day rate)."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import ValidationError
from core.pricing import LineInput, MemberContext, price_basket
from core.rules import RULES_SCHEMA, Rules, RulesNotSupported, TierRules, TierStep
from core.tiers import (
    DECAY,
    DOWNGRADE,
    UPGRADE,
    decide,
    earned_rank,
    growth,
    growth_from_spend,
    lapsed,
    window_start,
)

LADDER = (TierStep("银", 0), TierStep("金", 1000), TierStep("钻", 5000))
TR = TierRules(ladder=LADDER, growth_per_yuan=1, window_days=365, lapse_days=90)
DAY = dt.date(2026, 6, 30)


def d(days_ago: int) -> dt.date:
    return DAY - dt.timedelta(days=days_ago)


# ---- growth ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_yuan", "net_fen", "events", "expected"),
    [
        (1, 0, 0, 0),
        (1, 99, 0, 0),  # under a yuan: none
        (1, 100, 0, 1),
        (1, 199_999, 0, 1999),  # whole yuan only (floor)
        (2, 150, 0, 3),  # 1.5 yuan × 2 = 3
        (1, -500, 0, 0),  # more returned than bought in the window: never below zero
        (1, -500, 30, 30),  # ... but events still count
        (1, 10_000, 50, 150),
        (0, 10_000, 50, 50),  # growth from actions only
    ],
)
def test_growth(per_yuan: int, net_fen: int, events: int, expected: int) -> None:
    rules = TierRules(ladder=LADDER, growth_per_yuan=per_yuan)
    assert growth(rules, net_fen, events) == expected
    assert growth_from_spend(rules, net_fen) == expected - events


@pytest.mark.parametrize(
    ("window_days", "start"),
    [(1, DAY), (30, dt.date(2026, 6, 1)), (365, dt.date(2025, 7, 1))],
)
def test_window_counts_the_day_and_the_days_before(window_days: int, start: dt.date) -> None:
    assert window_start(TierRules(window_days=window_days), DAY) == start


@pytest.mark.parametrize(
    ("value", "rank"),
    [(0, 0), (999, 0), (1000, 1), (1001, 1), (4999, 1), (5000, 2), (10**9, 2)],
)
def test_earned_rank_exactly_on_a_threshold_reaches_it(value: int, rank: int) -> None:
    assert earned_rank(TR, value) == rank


def test_below_the_lowest_rung_there_is_no_tier() -> None:
    rules = TierRules(ladder=(TierStep("金", 100),))
    assert earned_rank(rules, 99) == -1
    assert decide(rules, DAY, None, None, 99, DAY) == decide(rules, DAY, None, None, 0, DAY)
    assert decide(rules, DAY, None, None, 99, DAY).tier is None


@pytest.mark.parametrize(
    ("lapse_days", "last_purchase", "expected"),
    [
        (0, None, False),  # decay off
        (90, None, True),
        (90, d(0), False),
        (90, d(89), False),  # the 90 days end today: a purchase 89 days ago is in them
        (90, d(90), True),
        (90, d(400), True),
    ],
)
def test_lapsed(lapse_days: int, last_purchase: dt.date | None, expected: bool) -> None:
    rules = TierRules(ladder=LADDER, lapse_days=lapse_days)
    assert lapsed(rules, last_purchase, DAY) is expected


# ---- the decision ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "current", "since", "growth_value", "last_buy", "manual", "until", "tier", "reason"),
    [
        ("new member, nothing earned yet", None, None, 0, None, None, None, "银", UPGRADE),
        ("unchanged", "银", d(10), 500, d(1), None, None, "银", None),
        ("upgrade", "银", d(10), 1000, d(1), None, None, "金", UPGRADE),
        ("two rungs at once", "银", d(10), 7000, d(1), None, None, "钻", UPGRADE),
        ("exactly on the threshold", "金", d(400), 1000, d(1), None, None, "金", None),
        ("one under the threshold", "金", d(400), 999, d(1), None, None, "银", DOWNGRADE),
        # decay: no purchase in 90 days -> one rung below what growth earns, not lower
        ("lapsed", "钻", d(400), 6000, d(100), None, None, "金", DECAY),
        ("lapsed again next night", "金", d(0), 6000, d(101), None, None, "金", None),
        ("lapsed on the lowest rung", "银", d(400), 10, d(100), None, None, "银", None),
        # the lapse decided the final rung (growth alone would give 金): decay
        ("lapsed and growth fell too", "钻", d(400), 1500, d(100), None, None, "银", DECAY),
        ("buys again after decay", "金", d(30), 6000, d(0), None, None, "钻", UPGRADE),
        # manual tier: a floor up to and including its day, then the usual rules
        ("manual floor", "钻", d(5), 0, d(1), "钻", DAY, "钻", None),
        ("manual floor, upgrade past it", "金", d(5), 6000, d(1), "金", DAY, "钻", UPGRADE),
        ("manual expired yesterday", "钻", d(5), 0, d(1), "钻", d(1), "银", DOWNGRADE),
        ("manual floor beats decay", "钻", d(400), 6000, d(100), "钻", d(-10), "钻", None),
        # a tier off the ladder stays while growth earns none; replaced when it earns one
        ("off-ladder kept", "黑卡", d(5), -1, None, None, None, "黑卡", None),
    ],
)
def test_decide(
    case: str,
    current: str | None,
    since: dt.date | None,
    growth_value: int,
    last_buy: dt.date | None,
    manual: str | None,
    until: dt.date | None,
    tier: str | None,
    reason: str | None,
) -> None:
    got = decide(TR, DAY, current, since, growth_value, last_buy, manual, until)
    assert (got.tier, got.reason) == (tier, reason), case
    assert got.changed is (reason is not None)


@pytest.mark.parametrize(
    ("since", "held"),
    [(d(0), True), (d(29), True), (d(30), False), (None, False)],
)
def test_minimum_hold_holds_downgrades_not_upgrades(since: dt.date | None, held: bool) -> None:
    rules = TierRules(ladder=LADDER, min_hold_days=30)
    down = decide(rules, DAY, "钻", since, 0, DAY)
    assert (down.tier, down.reason) == (("钻", None) if held else ("银", DOWNGRADE))
    up = decide(rules, DAY, "银", since, 5000, DAY)
    assert (up.tier, up.reason) == ("钻", UPGRADE)


def test_no_ladder_no_evaluation() -> None:
    got = decide(TierRules(), DAY, "钻石", d(1), 10**6, None)
    assert (got.tier, got.reason) == ("钻石", None)


# ---- the rules section ----------------------------------------------------------------


def test_tiers_section_round_trip_and_schema() -> None:
    rules = Rules(
        version=3,
        tiers=TierRules(
            ladder=LADDER,
            growth_per_yuan=2,
            events={"review": 5, "referral": 100},
            window_days=180,
            lapse_days=60,
            min_hold_days=30,
        ),
        member_day_discount=850,
    )
    doc = rules.to_dict()
    assert doc["schema"] == RULES_SCHEMA
    assert doc["tiers"]["ladder"] == [
        {"name": "银", "threshold": 0},
        {"name": "金", "threshold": 1000},
        {"name": "钻", "threshold": 5000},
    ]
    assert doc["member_day_discount"] == 850
    assert Rules.from_dict(doc) == rules


def test_defaults_send_nothing_new() -> None:
    doc = Rules(version=2).to_dict()
    assert "tiers" not in doc and "member_day_discount" not in doc and "schema" not in doc


@pytest.mark.parametrize(
    ("tiers", "field"),
    [
        (
            {"ladder": [{"name": "金", "threshold": 10}, {"name": "银", "threshold": 10}]},
            "tiers.ladder[1].threshold",
        ),
        (
            {"ladder": [{"name": "金", "threshold": 10}, {"name": "金", "threshold": 20}]},
            "tiers.ladder[1]",
        ),
        ({"ladder": [{"name": "", "threshold": 0}]}, "tiers.ladder[0].name"),
        ({"ladder": [{"name": "金", "threshold": -1}]}, "tiers.ladder[0].threshold"),
        ({"ladder": [{"name": "金", "threshold": True}]}, "tiers.ladder[0].threshold"),
        ({"ladder": [{"name": "金"}]}, "tiers.ladder[0]"),
        ({"ladder": "金"}, "tiers.ladder"),
        ({"events": {"birthday": 5}}, "tiers.events.birthday"),
        ({"events": {"review": -5}}, "tiers.events.review"),
        ({"window_days": 0}, "tiers.window_days"),
        ({"window_days": 30, "lapse_days": 31}, "tiers.lapse_days"),
        ({"profile_complete_score": 101}, "tiers.profile_complete_score"),
        ({"min_hold_days": "30"}, "tiers.min_hold_days"),
        ([], "tiers"),
    ],
)
def test_bad_tiers_sections_name_the_field(tiers: object, field: str) -> None:
    doc = {"schema": RULES_SCHEMA, "version": 4, "tiers": tiers}
    with pytest.raises(ValidationError) as exc:
        Rules.from_dict(doc)
    assert exc.value.field == field
    assert not isinstance(exc.value, RulesNotSupported)


def test_an_unknown_tiers_key_is_a_newer_document() -> None:
    doc = {"schema": RULES_SCHEMA, "version": 4, "tiers": {"ladder": [], "bonus_rungs": 1}}
    with pytest.raises(RulesNotSupported) as exc:
        Rules.from_dict(doc)
    assert exc.value.field == "tiers.bonus_rungs"


@pytest.mark.parametrize("rate", [-1, 1001, "900", 9.5, True])
def test_bad_member_day_discount(rate: object) -> None:
    with pytest.raises(ValidationError) as exc:
        Rules.from_dict({"schema": RULES_SCHEMA, "version": 4, "member_day_discount": rate})
    assert exc.value.field == "member_day_discount"


# ---- member day in pricing ------------------------------------------------------------

WEDNESDAY = dt.date(2026, 7, 1)
THURSDAY = dt.date(2026, 7, 2)
MD_RULES = Rules(
    version=5,
    card_type_discount={"普通卡": 1000, "银卡": 950, "金卡": 900},
    tier_discount={"钻石": 800},
    member_day_weekdays=(2,),
    member_day_month_days=(18,),
    member_day_discount=880,
)


def ln(unit: int = 1000, promo: int | None = None, no_md: bool = False) -> LineInput:
    return LineInput("P", "商品", 1, unit, promo, 0, no_md, False)


@pytest.mark.parametrize(
    ("case", "member", "day", "lines", "amounts"),
    [
        ("member day, plain card", MemberContext("m", "普通卡"), WEDNESDAY, [ln()], [880]),
        ("not a member day", MemberContext("m", "普通卡"), THURSDAY, [ln()], [1000]),
        ("day of month", MemberContext("m", "普通卡"), dt.date(2026, 7, 18), [ln()], [880]),
        ("no day given: no member day", MemberContext("m", "普通卡"), None, [ln()], [1000]),
        # the better of the usual member rate and the member-day rate, never both
        ("gold card 90% vs 88%", MemberContext("m", "金卡"), WEDNESDAY, [ln()], [880]),
        (
            "diamond tier 80% is better",
            MemberContext("m", "银卡", "钻石"),
            WEDNESDAY,
            [ln()],
            [800],
        ),
        ("walk-in customer", None, WEDNESDAY, [ln()], [1000]),
        # the member-day rate follows the member discount's exclusions
        ("promo goods excluded", MemberContext("m", "普通卡"), WEDNESDAY, [ln(1000, 700)], [700]),
        (
            "no member discount goods",
            MemberContext("m", "普通卡"),
            WEDNESDAY,
            [ln(no_md=True)],
            [1000],
        ),
    ],
)
def test_member_day_discount(
    case: str,
    member: MemberContext | None,
    day: dt.date | None,
    lines: list[LineInput],
    amounts: list[int],
) -> None:
    basket = price_basket(MD_RULES, lines, member, day=day)
    assert [line.amount for line in basket.lines] == amounts, case


def test_without_a_member_day_discount_the_day_changes_nothing() -> None:
    rules = Rules(version=1, card_type_discount={"金卡": 900}, member_day_weekdays=(2,))
    member = MemberContext("m", "金卡")
    assert price_basket(rules, [ln()], member, day=WEDNESDAY) == price_basket(rules, [ln()], member)
