"""The richer profile (core/profile.py), the upkeep rules (core/rules.py) and the refund
terms (core.stored_value.refund_forfeit), from tables."""

from __future__ import annotations

import pytest

from core import protocol as p
from core.errors import InsufficientFunds, ProtocolError, ValidationError
from core.profile import (
    at_risk,
    check_anniversaries,
    check_extra,
    check_profile,
    check_tags,
    completeness,
)
from core.rules import DEMO_RULES, ProfileField, Rules
from core.stored_value import Split, refund_forfeit

CAR = ProfileField("car", "车型", "choice", ("SUV", "轿车"))
PLATE = ProfileField("plate", "车牌", "text", required=True)
KM = ProfileField("km", "里程", "number")
SINCE = ProfileField("since", "车龄起", "date")
DECLARED = (CAR, PLATE, KM, SINCE)
RULES = Rules(profile_fields=DECLARED)


# ---- anniversaries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"name": "结婚纪念日", "date": "2015-10-01"},
            {"name": "结婚纪念日", "date": "2015-10-01", "calendar": "solar"},
        ),
        (
            {"name": "孩子生日", "date": "3-8", "calendar": "solar"},
            {"name": "孩子生日", "date": "03-08", "calendar": "solar"},
        ),
        (
            {"name": "母亲生日", "date": "2023-02-10", "calendar": "lunar", "leap_month": True},
            {"name": "母亲生日", "date": "2023-02-10", "calendar": "lunar", "leap_month": True},
        ),
        (
            {"name": " 开业 ", "date": "08-15", "calendar": "lunar"},
            {"name": "开业", "date": "08-15", "calendar": "lunar"},
        ),
    ],
)
def test_anniversaries_accepted(entry, expected):
    assert check_anniversaries([entry]) == [expected]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("2015-10-01", "anniversaries"),  # not a list
        ([{"name": "x", "date": "2015-10-01"}] * 11, "anniversaries"),
        (["2015-10-01"], "anniversaries[0]"),
        ([{"name": "", "date": "2015-10-01"}], "anniversaries[0].name"),
        (
            [{"name": "很长很长很长很长很长很长很长很长很长", "date": "10-01"}],
            "anniversaries[0].name",
        ),
        ([{"name": "x", "date": "2015-02-30"}], "anniversaries[0].date"),
        ([{"name": "x", "date": "2015/10/01"}], "anniversaries[0].date"),
        ([{"name": "x", "date": "10-01", "calendar": "gregorian"}], "anniversaries[0].calendar"),
        # 2024 has no leap month; a leap month is for lunar dates only
        (
            [{"name": "x", "date": "2024-02-10", "calendar": "lunar", "leap_month": True}],
            "anniversaries[0].date",
        ),
        ([{"name": "x", "date": "10-01", "leap_month": True}], "anniversaries[0].leap_month"),
        ([{"name": "x", "date": "10-01", "where": "上海"}], "anniversaries[0]"),
    ],
)
def test_anniversaries_refused_naming_the_field(value, field):
    with pytest.raises(ValidationError) as err:
        check_anniversaries(value)
    assert err.value.field == field


# ---- tags and the at-risk tags ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "kept", "risk"),
    [
        (["VIP", " 投诉 ", "VIP", ""], ["VIP", "投诉"], ["投诉"]),
        (["退款", "投诉"], ["退款", "投诉"], ["投诉", "退款"]),
        (["爱喝茶"], ["爱喝茶"], []),
        ([], [], []),
    ],
)
def test_tags_kept_once_and_at_risk_recognised(tags, kept, risk):
    assert check_tags(tags) == kept
    assert at_risk(kept) == risk


@pytest.mark.parametrize(
    ("tags", "field"),
    [("投诉", "tags"), ([1], "tags[0]"), (["x"] * 21, "tags"), (["十七个字" * 5], "tags[0]")],
)
def test_bad_tags_refused(tags, field):
    with pytest.raises(ValidationError) as err:
        check_tags(tags)
    assert err.value.field == field


# ---- the chain's own fields ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"car": "SUV", "plate": "沪A12345"}, {"car": "SUV", "plate": "沪A12345"}),
        ({"km": 12000, "plate": "x"}, {"km": 12000, "plate": "x"}),
        ({"since": "2020-05-01", "plate": "x", "car": ""}, {"since": "2020-05-01", "plate": "x"}),
    ],
)
def test_extra_fields_checked_against_the_rules(value, expected):
    assert check_extra(value, DECLARED, require=True) == expected


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ({"colour": "红", "plate": "x"}, "extra", "colour"),
        ({"car": "卡车", "plate": "x"}, "extra.car", "choices"),
        ({"km": "很多", "plate": "x"}, "extra.km", "integer"),
        ({"km": True, "plate": "x"}, "extra.km", "integer"),
        ({"since": "2020-13-01", "plate": "x"}, "extra.since", "YYYY-MM-DD"),
        ({"plate": "x" * 201}, "extra.plate", "200"),
        ({"car": "SUV"}, "extra.plate", "required"),
        ("SUV", "extra", "object"),
    ],
)
def test_bad_extra_fields_refused_by_name(value, field, words):
    with pytest.raises(ValidationError) as err:
        check_extra(value, DECLARED, require=True)
    assert err.value.field == field
    assert words in err.value.message


def test_registration_needs_the_required_fields_even_without_extra():
    with pytest.raises(ValidationError) as err:
        check_profile({"name": "张三"}, RULES, registration=True)
    assert err.value.field == "extra.plate"
    assert check_profile({"name": "张三"}, RULES) == {}  # an edit need not name them


# ---- completeness ---------------------------------------------------------------------------

BARE = {"name": "张三", "phone": "13800000001"}
FULL = BARE | {
    "gender": "F",
    "birthday": "1990-05-12",
    "occupation": "教师",
    "preferences": ["茶"],
    "anniversaries": [{"name": "结婚", "date": "10-01", "calendar": "solar"}],
    "notes": "喜欢早上来",
    "tags": ["VIP"],
}


@pytest.mark.parametrize(
    ("member", "rules", "score"),
    [
        (BARE, Rules(), 24),  # 20 of 85
        (BARE | {"gender": "M", "birthday": "05-12"}, Rules(), 53),  # 45 of 85
        (FULL, Rules(), 100),
        (FULL | {"tags": [], "notes": ""}, Rules(), 88),  # 75 of 85
        (FULL, RULES, 85),  # 85 of 100: no extra field filled
        (FULL | {"extra": {"car": "SUV", "plate": "x"}}, RULES, 92),  # 85 + 15 × 2/4
        (
            FULL | {"extra": {"car": "SUV", "plate": "x", "km": 1, "since": "2020-01-01"}},
            RULES,
            100,
        ),
        ({"name": "", "phone": ""}, Rules(), 0),
    ],
)
def test_completeness_score(member, rules, score):
    assert completeness(member, rules) == score


# ---- the upkeep rules ------------------------------------------------------------------------


def test_default_rules_document_is_unchanged():
    assert "schema" not in Rules().to_dict()
    assert "sv_refund_bonus" not in DEMO_RULES.to_dict()


def test_upkeep_rules_round_trip():
    rules = Rules(
        version=3, sv_refund_bonus="proportional", referral_points=50, profile_fields=DECLARED
    )
    doc = rules.to_dict()
    assert doc["schema"] == 2
    assert doc["profile_fields"][0] == {
        "name": "car",
        "label": "车型",
        "type": "choice",
        "choices": ["SUV", "轿车"],
    }
    assert Rules.from_dict(doc) == rules


@pytest.mark.parametrize(
    ("later", "field"),
    [
        ({"sv_refund_bonus": "none"}, "sv_refund_bonus"),
        ({"referral_points": -1}, "referral_points"),
        ({"referral_points": True}, "referral_points"),
        ({"profile_fields": {"name": "car"}}, "profile_fields"),
        ({"profile_fields": [{"name": "车型"}]}, "profile_fields[0].name"),
        ({"profile_fields": [{"name": "car", "type": "list"}]}, "profile_fields[0].type"),
        ({"profile_fields": [{"name": "car", "type": "choice"}]}, "profile_fields[0].choices"),
        (
            {"profile_fields": [{"name": "car", "type": "text", "choices": ["a"]}]},
            "profile_fields[0].choices",
        ),
        ({"profile_fields": [{"name": "car"}, {"name": "car"}]}, "profile_fields"),
        ({"profile_fields": [{"name": "car", "size": 3}]}, "profile_fields[0]"),
    ],
)
def test_bad_upkeep_rules_refused_by_name(later, field):
    with pytest.raises(ValidationError) as err:
        Rules.from_dict({"version": 2, "schema": 2} | later)
    assert err.value.field == field


# ---- refund terms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "bonus", "refund", "terms", "forfeit"),
    [
        (50000, 10000, 50000, "all", 10000),
        (50000, 10000, 100, "all", 10000),  # any refund forfeits the whole bonus
        (50000, 10000, 50000, "proportional", 10000),
        (50000, 10000, 25000, "proportional", 5000),
        (50000, 10000, 33333, "proportional", 6667),  # bonus kept rounds down
        (50000, 0, 20000, "proportional", 0),
        (50000, -300, 20000, "all", 0),  # a bonus overdraft is not "forfeited"
        (3, 1, 1, "proportional", 1),  # kept 1 × 2 ÷ 3 = 0
    ],
)
def test_refund_forfeits_the_bonus_as_the_terms_say(principal, bonus, refund, terms, forfeit):
    assert refund_forfeit(Split(principal, bonus), refund, terms) == Split(refund, forfeit)


@pytest.mark.parametrize(
    ("balance", "refund", "error"),
    [
        (Split(50000, 10000), 50001, InsufficientFunds),  # only unspent principal
        (Split(0, 10000), 1, InsufficientFunds),  # bonus is never cash
        (Split(50000, 10000), 0, ValidationError),
        (Split(50000, 10000), True, ValidationError),
    ],
)
def test_refund_beyond_principal_refused(balance, refund, error):
    with pytest.raises(error):
        refund_forfeit(balance, refund, "all")


# ---- on the wire -------------------------------------------------------------------------------

MID = "0192f0c4-0000-7000-8000-000000000001"
HASH = p.SCRYPT_PREFIX + "c2FsdHNhbHQ=$ZGlnZXN0ZGlnZXN0"


def _item(kind: str, body: dict) -> dict:
    return {
        "v": p.SCHEMA_VERSION,
        "store": "S001",
        "seq": 1,
        "id": "0192f0c4-0000-7000-8000-0000000000aa",
        "kind": kind,
        "occurred_at": "2026-11-23T10:00:00+08:00",
        "rules_version": 1,
        "body": body,
    }


REFUND = {
    "refund_id": "0192f0c4-0000-7000-8000-0000000000bb",
    "member_id": MID,
    "principal": 20000,
    "bonus": 10000,
    "tender": "cash",
    "authorization_id": "0192f0c4-0000-7000-8000-0000000000cc",
    "cashier": "1001",
    "approved_by": "9001",
    "reason": "搬家",
}
UPDATE = {
    "member_id": MID,
    "changes": {
        "name": "李四",
        "tags": ["投诉"],
        "birthday": {"date": "05-12", "calendar": "solar"},
    },
    "changed_at": "2026-11-23T10:00:00.000+08:00",
    "cashier": "1001",
}
PASSWORD = {
    "member_id": MID,
    "password_hash": HASH,
    "action": "reset",
    "changed_at": "2026-11-23T10:00:00.000+08:00",
    "cashier": "1001",
    "approved_by": "9001",
}


@pytest.mark.parametrize(
    ("kind", "body"),
    [("sv_refund", REFUND), ("member_update", UPDATE), ("member_password", PASSWORD)],
)
def test_upkeep_items_valid(kind, body):
    assert p.validate_item(_item(kind, body)).kind == kind


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("sv_refund", REFUND | {"principal": 0}, "principal"),
        ("sv_refund", REFUND | {"bonus": -1}, "bonus"),
        ("sv_refund", REFUND | {"tender": "stored_value"}, "tender"),
        ("sv_refund", {k: v for k, v in REFUND.items() if k != "approved_by"}, "approved_by"),
        ("member_update", UPDATE | {"changes": {}}, "changes"),
        ("member_update", UPDATE | {"changes": {"phone": "13800000002"}}, "changes"),
        ("member_update", UPDATE | {"changes": {"password_hash": HASH}}, "changes"),
        ("member_update", UPDATE | {"changes": {"tags": "投诉"}}, "tags"),
        ("member_update", UPDATE | {"changes": {"name": ""}}, "name"),
        ("member_update", UPDATE | {"changes": {"birthday": {"date": "02-30"}}}, "birthday"),
        ("member_update", UPDATE | {"changes": {"extra": {"a": [1]}}}, "extra"),
        ("member_password", PASSWORD | {"password_hash": "123456"}, "password_hash"),
        ("member_password", PASSWORD | {"action": "clear"}, "action"),
        (
            "registration",
            {
                "member_id": MID,
                "name": "x",
                "phone": "13800000001",
                "registered_at": "2026-11-23T10:00:00+08:00",
                "referred_by": "me",
            },
            "referred_by",
        ),
        (
            "registration",
            {
                "member_id": MID,
                "name": "x",
                "phone": "13800000001",
                "registered_at": "2026-11-23T10:00:00+08:00",
                "occupation": 3,
            },
            "occupation",
        ),
    ],
)
def test_bad_upkeep_items_refused_naming_the_field(kind, body, field):
    with pytest.raises(ProtocolError) as err:
        p.validate_item(_item(kind, body))
    assert err.value.field == field
