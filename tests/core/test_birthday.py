"""Birthdays: the next solar or lunar occurrence, checked against known conversions."""

from __future__ import annotations

import datetime as dt

import pytest

from core.birthday import Birthday
from core.errors import ValidationError

TODAY = dt.date(2026, 11, 23)


@pytest.mark.parametrize(
    ("birthday", "today", "expected"),
    [
        # solar: this year if still ahead, else next year; today itself counts
        (Birthday("solar", 1990, 12, 1), TODAY, dt.date(2026, 12, 1)),
        (Birthday("solar", 1990, 5, 12), TODAY, dt.date(2027, 5, 12)),
        (Birthday("solar", 1990, 11, 23), TODAY, dt.date(2026, 11, 23)),
        (Birthday("solar", None, 1, 1), dt.date(2026, 12, 31), dt.date(2027, 1, 1)),
        # 29 February falls on 28 February in common years
        (Birthday("solar", 1996, 2, 29), TODAY, dt.date(2027, 2, 28)),
        (Birthday("solar", 1996, 2, 29), dt.date(2027, 3, 1), dt.date(2028, 2, 29)),
        # lunar 1990-08-15 (中秋): 2026-09-25 has passed, so 2027-09-15
        (Birthday("lunar", 1990, 8, 15), TODAY, dt.date(2027, 9, 15)),
        (Birthday("lunar", 1990, 8, 15), dt.date(2026, 9, 1), dt.date(2026, 9, 25)),
        # lunar 1 January is 春节: 2027-02-06
        (Birthday("lunar", None, 1, 1), TODAY, dt.date(2027, 2, 6)),
        # lunar 12th month of lunar 2025 lands in January 2026 ... already past; 2026's is 2027-01-xx
        (Birthday("lunar", None, 12, 8), dt.date(2026, 1, 1), dt.date(2026, 1, 26)),
        # lunar 30th of the 12th month: lunar 2026 has a 29-day 12th month, so 除夕 2027-02-05
        (Birthday("lunar", None, 12, 30), TODAY, dt.date(2027, 2, 5)),
        # born in 闰六月 2025 (starts 2025-07-25): celebrated in the leap month when there is one
        (Birthday("lunar", 2025, 6, 1, leap_month=True), dt.date(2025, 7, 1), dt.date(2025, 7, 25)),
        # ... and in the ordinary sixth month in years without (lunar 2026-06-01 = 2026-07-14)
        (Birthday("lunar", 2025, 6, 1, leap_month=True), dt.date(2026, 1, 1), dt.date(2026, 7, 14)),
        # 闰二月 2023 starts 2023-03-22
        (Birthday("lunar", None, 2, 1, leap_month=True), dt.date(2023, 3, 1), dt.date(2023, 3, 22)),
    ],
)
def test_next_birthday(birthday: Birthday, today: dt.date, expected: dt.date) -> None:
    assert birthday.next_on_or_after(today) == expected


def test_lunar_birthday_never_before_today_and_within_about_a_year() -> None:
    bday = Birthday("lunar", None, 3, 30)
    day = dt.date(2026, 1, 1)
    while day < dt.date(2027, 1, 1):
        nxt = bday.next_on_or_after(day)
        assert day <= nxt <= day + dt.timedelta(days=385)
        day += dt.timedelta(days=17)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("gregorian", 1990, 1, 1), "birthday_calendar"),
        (("solar", 1990, 13, 1), "birthday"),
        (("solar", 1990, 0, 1), "birthday"),
        (("solar", 1990, 4, 31), "birthday"),
        (("solar", 1990, 2, 29), "birthday"),  # 1990 was a common year
        (("solar", None, 1, 32), "birthday"),
        (("lunar", None, 1, 31), "birthday"),
        # lunar 2026's 12th month has 29 days
        (("lunar", 2026, 12, 30), "birthday"),
        # lunar 2026 has no leap month at all
        (("lunar", 2026, 4, 1, True), "birthday"),
        # 闰二月 2023 has 29 days
        (("lunar", 2023, 2, 30, True), "birthday"),
    ],
)
def test_impossible_birthdays_are_refused(args: tuple, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Birthday(*args)
    assert err.value.field == field


def test_valid_leap_and_30th_dates_are_accepted() -> None:
    Birthday("lunar", 2023, 2, 29, leap_month=True)
    Birthday("lunar", 2025, 6, 29, leap_month=True)
    Birthday("solar", 1996, 2, 29)
    Birthday("solar", None, 2, 29)


@pytest.mark.parametrize(
    ("text", "calendar", "expected"),
    [
        ("1990-05-12", "solar", Birthday("solar", 1990, 5, 12)),
        (" 05-12 ", "solar", Birthday("solar", None, 5, 12)),
        ("1990-08-15", "lunar", Birthday("lunar", 1990, 8, 15)),
    ],
)
def test_parse_and_isoformat(text: str, calendar: str, expected: Birthday) -> None:
    parsed = Birthday.parse(text, calendar)
    assert parsed == expected
    assert Birthday.parse(parsed.isoformat(), calendar) == parsed


@pytest.mark.parametrize("text", ["1990/05/12", "May 12", "", "1990-05-12-01", "12"])
def test_parse_refuses_other_shapes(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        Birthday.parse(text)
    assert err.value.field == "birthday"


@pytest.mark.parametrize(
    ("args", "cashier_reads"),
    [
        (("lunar", 2026, 4, 1, True), "农历没有这一天: 2026年闰4月1日"),
        (("lunar", 2026, 12, 30), "农历没有这一天: 2026年12月30日"),
        (("solar", 1990, 2, 29), "没有这一天: 2月29日"),
        (("solar", 1990, 13, 1), "生日月份须为1到12"),
    ],
)
def test_the_cashier_reads_chinese_first(args: tuple, cashier_reads: str) -> None:
    with pytest.raises(ValidationError) as err:
        Birthday(*args)
    assert err.value.message.startswith(cashier_reads)
