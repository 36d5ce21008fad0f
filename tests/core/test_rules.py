"""The rules document: round trip and validation."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import ValidationError
from core.money import MoneyError, Rounding
from core.rules import DEMO_RULES, Rules, TopUpBonus


def test_round_trip() -> None:
    assert Rules.from_dict(DEMO_RULES.to_dict()) == DEMO_RULES


@pytest.mark.parametrize(
    ("card_type", "tier", "rate"),
    [
        ("金卡", "钻石", 880),
        ("金卡", "", 900),
        (None, None, 1000),
        ("银卡", "钻石", 880),
        ("银卡", None, 950),
    ],
)
def test_member_rate_the_better_applies(card_type: str | None, tier: str | None, rate: int) -> None:
    assert DEMO_RULES.member_rate(card_type, tier) == rate


def test_member_day_by_weekday_or_day_of_month() -> None:
    rules = Rules(member_day_weekdays=(2,), member_day_month_days=(18,))
    assert rules.is_member_day(dt.date(2026, 11, 25))  # Wednesday
    assert rules.is_member_day(dt.date(2026, 12, 18))
    assert not rules.is_member_day(dt.date(2026, 11, 23))


def test_topup_bonus_takes_the_best_tier_met() -> None:
    rules = Rules(topup_bonuses=(TopUpBonus(100000, 25000), TopUpBonus(50000, 10000)))
    assert [rules.topup_bonus(a) for a in (49999, 50000, 100000)] == [0, 10000, 25000]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"card_type_discount": {"金卡": 1200}}, None),
        ({"rounding": "to_even"}, "rounding"),
        ({"points_per_yuan_redeemed": 0}, None),
        ({"member_day_points_multiplier": 0}, None),
        ({"stored_value_spend": "newest_first"}, "stored_value_spend"),
    ],
)
def test_bad_rules_documents(doc: dict, field: str | None) -> None:
    with pytest.raises((ValidationError, MoneyError)) as err:
        Rules.from_dict(doc)
    if field:
        assert isinstance(err.value, ValidationError) and err.value.field == field


def test_rounding_is_read_from_text() -> None:
    assert Rules.from_dict({"rounding": "yuan_down"}).rounding is Rounding.YUAN_DOWN


def test_the_stored_value_spend_order_travels_only_when_chosen() -> None:
    # a store on older software refuses unknown keys: the default must not add one
    assert "stored_value_spend" not in DEMO_RULES.to_dict()
    chosen = Rules.from_dict({"version": 7, "stored_value_spend": "principal_first"})
    assert chosen.to_dict()["stored_value_spend"] == "principal_first"
    assert Rules.from_dict(chosen.to_dict()) == chosen


def test_a_document_of_a_newer_schema_or_with_an_unknown_key_is_not_supported():
    """A till refuses such a document as a whole (core.rules.RulesNotSupported) and keeps
    the rules it has; a malformed schema number is plain bad input."""
    from core.rules import RULES_SCHEMA, RulesNotSupported

    doc = DEMO_RULES.to_dict()
    with pytest.raises(RulesNotSupported, match="newer") as newer:
        Rules.from_dict(doc | {"schema": RULES_SCHEMA + 1})
    assert newer.value.field == "schema"
    with pytest.raises(RulesNotSupported, match="unknown rules keys") as unknown:
        Rules.from_dict(doc | {"schema": RULES_SCHEMA, "gift_wrap": True})
    assert unknown.value.field == "gift_wrap"
    for bad in (0, "2", True, None):
        with pytest.raises(ValidationError, match="schema") as err:
            Rules.from_dict(doc | {"schema": bad})
        assert not isinstance(err.value, RulesNotSupported)
    assert Rules.from_dict(doc | {"schema": 1}) == DEMO_RULES


def test_a_document_that_uses_no_later_field_is_what_the_first_release_wrote():
    """Later fields go only when used, so older tills keep trading on such documents."""
    from core.rules import FIRST_RELEASE_KEYS

    assert tuple(DEMO_RULES.to_dict()) == FIRST_RELEASE_KEYS
    assert tuple(Rules().to_dict()) == FIRST_RELEASE_KEYS
