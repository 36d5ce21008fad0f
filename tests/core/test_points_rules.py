"""Points rules from tables (docs/programme/points.md): the yearly reset (积分清零), the
lock period, the redemption window, points expiring mid-basket."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import InsufficientFunds, ValidationError
from core.points import (
    Lot,
    RedemptionClosed,
    balance,
    check_redemption_open,
    consume,
    expiry_for,
    points_balance,
    usable_from,
)
from core.rules import RULES_SCHEMA, RedemptionWindow, Rules

D = dt.date.fromisoformat


@pytest.mark.parametrize(
    ("rules", "earned_on", "last_day"),
    [
        (Rules(), "2026-05-01", "2027-05-01"),  # rolling: points_expiry_days later
        (Rules(points_expiry_days=30), "2026-12-20", "2027-01-19"),
        # 积分清零 12-31: earned before it, gone on it (last usable day the 30th)
        (Rules(points_reset_date="12-31"), "2026-05-01", "2026-12-30"),
        (Rules(points_reset_date="12-31"), "2026-12-30", "2026-12-30"),
        # earned on the reset day itself: lasts to the next one
        (Rules(points_reset_date="12-31"), "2026-12-31", "2027-12-30"),
        (Rules(points_reset_date="01-01"), "2026-07-01", "2026-12-31"),
        (Rules(points_reset_date="03-01"), "2028-02-29", "2028-02-29"),
        (Rules(points_reset_date="03-01"), "2028-03-01", "2029-02-28"),
        # the reset replaces the rolling expiry
        (Rules(points_reset_date="06-30", points_expiry_days=10), "2026-01-01", "2026-06-29"),
    ],
)
def test_last_usable_day_rolling_or_yearly_reset(rules, earned_on, last_day):
    assert expiry_for(rules, D(earned_on)) == D(last_day)


def lot(lot_id: str, earned_on: str, expires_on: str, remaining: int) -> Lot:
    return Lot(lot_id, D(earned_on), D(expires_on), remaining)


LOTS = [
    lot("old", "2025-12-05", "2026-12-04", 30),  # its last day is 2026-12-04
    lot("mid", "2026-11-01", "2027-11-01", 50),
    lot("new", "2026-12-01", "2027-12-01", 100),  # a sale 3 days before 12-04
]


@pytest.mark.parametrize(
    ("today", "lock_days", "available", "locked"),
    [
        ("2026-12-04", 0, 180, 0),
        ("2026-12-05", 0, 150, 0),  # "old" gone the day after its last day
        ("2026-12-04", 7, 80, 100),  # "new" is still in its return window
        ("2026-12-08", 7, 150, 0),  # ... usable from 12-08 (earned 12-01 + 7)
        ("2026-12-07", 7, 50, 100),
    ],
)
def test_available_and_locked(today, lock_days, available, locked):
    rules = Rules(points_lock_days=lock_days)
    got = points_balance(rules, LOTS, D(today))
    assert (got.available, got.locked) == (available, locked)
    assert balance(LOTS, D(today), lock_days) == available


def test_unlocks_on_is_the_first_usable_day():
    rules = Rules(points_lock_days=7)
    assert usable_from(rules, D("2026-12-01")) == D("2026-12-08")
    assert points_balance(rules, LOTS, D("2026-12-04")).unlocks_on == D("2026-12-08")
    assert points_balance(rules, LOTS, D("2026-12-08")).unlocks_on is None


def test_points_expiring_mid_basket_usable_today_gone_tomorrow():
    """A basket paid with points on a lot's last day takes it first; the same basket the
    next day cannot use it."""
    assert consume(LOTS, 60, D("2026-12-04")) == [("old", 30), ("mid", 30)]
    assert consume(LOTS, 60, D("2026-12-05")) == [("mid", 50), ("new", 10)]
    with pytest.raises(InsufficientFunds) as err:
        consume(LOTS, 160, D("2026-12-05"))
    assert err.value.details["available"] == 150


def test_a_locked_lot_is_not_consumed_and_the_refusal_says_so():
    with pytest.raises(InsufficientFunds) as err:
        consume(LOTS, 81, D("2026-12-04"), lock_days=7)
    assert err.value.details["available"] == 80
    assert "100 分在锁定期内" in err.value.message
    assert consume(LOTS, 80, D("2026-12-04"), lock_days=7) == [("old", 30), ("mid", 50)]


WINDOWS = (
    RedemptionWindow(D("2026-11-01"), D("2026-11-30"), "感恩回馈月"),
    RedemptionWindow(D("2027-05-01"), D("2027-05-07")),
)


@pytest.mark.parametrize(
    ("today", "opens"),
    [
        ("2026-11-01", None),
        ("2026-11-30", None),
        ("2027-05-07", None),
        ("2026-10-31", "2026-11-01"),  # the day before it opens
        ("2026-12-01", "2027-05-01"),  # between two windows
        ("2027-05-08", "closed"),  # after the last one
    ],
)
def test_redemption_outside_the_window_is_refused_naming_when_it_opens(today, opens):
    rules = Rules(points_redemption_windows=WINDOWS)
    if opens is None:
        check_redemption_open(rules, D(today))
        return
    with pytest.raises(RedemptionClosed) as err:
        check_redemption_open(rules, D(today))
    assert err.value.http_status == 403 and err.value.field == "points"
    if opens == "closed":
        assert "积分兑换期已结束" in err.value.message
    else:
        assert f"将于 {opens} 开放" in err.value.message
        assert err.value.details["opens_on"] == opens
    if opens == "2026-11-01":
        assert "感恩回馈月" in err.value.message


def test_no_window_means_always_open():
    check_redemption_open(Rules(), D("2026-01-01"))


def test_the_rules_round_trip_and_say_their_schema():
    rules = Rules(
        points_reset_date="12-31",
        points_lock_days=7,
        points_redemption_windows=(WINDOWS[1], WINDOWS[0]),
    )
    doc = rules.to_dict()
    assert doc["schema"] == RULES_SCHEMA
    assert doc["points_redemption_windows"][1] == {
        "start": "2026-11-01",
        "end": "2026-11-30",
        "name": "感恩回馈月",
    }
    back = Rules.from_dict(doc)
    assert back.points_redemption_windows == WINDOWS  # sorted by start
    assert back.points_reset_date == "12-31" and back.points_lock_days == 7
    # the defaults send nothing new: an older till keeps loading the document
    assert not {"points_reset_date", "points_lock_days", "points_redemption_windows"} & set(
        Rules().to_dict()
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("points_reset_date", "02-29"),
        ("points_reset_date", "13-01"),
        ("points_reset_date", "1231"),
        ("points_lock_days", -1),
        ("points_lock_days", 400),
        ("points_lock_days", True),
        ("points_redemption_windows", [{"start": "2026-12-01", "end": "2026-11-01"}]),
        ("points_redemption_windows", [{"start": "2026-12-01"}]),
        ("points_redemption_windows", [{"start": "x", "end": "2026-11-01"}]),
        ("points_redemption_windows", [{"start": "2026-11-01", "end": "2026-11-02", "z": 1}]),
        ("points_redemption_windows", {"start": "2026-11-01"}),
    ],
)
def test_bad_points_rules_are_refused_naming_the_field(key, value):
    with pytest.raises(ValidationError) as err:
        Rules.from_dict({"schema": RULES_SCHEMA, key: value})
    assert str(err.value.field).startswith(key)
