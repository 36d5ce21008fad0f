"""Birthdays, solar (公历) or lunar (农历): when is the next one?"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lunardate import LunarDate

from core.errors import ValidationError

CALENDARS = ("solar", "lunar")


@dataclass(frozen=True, slots=True)
class Birthday:
    calendar: str  # solar | lunar
    year: int | None
    month: int
    day: int
    leap_month: bool = False  # lunar only: born in a leap month (闰月)

    def __post_init__(self) -> None:
        if self.calendar not in CALENDARS:
            raise ValidationError(
                f"生日历法须为公历或农历 (birthday calendar must be solar or lunar, got {self.calendar!r})",
                field="birthday_calendar",
            )
        if not 1 <= self.month <= 12:
            raise ValidationError(
                f"生日月份须为1到12 (birthday month must be 1-12, got {self.month})",
                field="birthday",
            )
        limit = 31 if self.calendar == "solar" else 30
        if not 1 <= self.day <= limit:
            raise ValidationError(
                f"生日日期须为1到{limit} (birthday day must be 1-{limit}, got {self.day})",
                field="birthday",
            )
        if self.calendar == "solar":
            try:
                dt.date(self.year or 2000, self.month, self.day)
            except ValueError:
                raise ValidationError(
                    f"没有这一天: {self.month}月{self.day}日 (no such date: {self.month}-{self.day})",
                    field="birthday",
                ) from None
        elif self.year is not None:
            try:
                # the constructor checks nothing: only the conversion finds a 30th in a
                # 29-day month or a leap month the year does not have
                LunarDate(self.year, self.month, self.day, self.leap_month).to_solar_date()
            except ValueError:
                raise ValidationError(
                    "农历没有这一天: "
                    f"{self.year}年{'闰' if self.leap_month else ''}{self.month}月{self.day}日 "
                    f"(no such lunar date: {self.year}-{self.month}-{self.day})",
                    field="birthday",
                ) from None

    @classmethod
    def parse(cls, text: str, calendar: str = "solar", leap_month: bool = False) -> Birthday:
        """'1990-05-12' or '05-12' (no year)."""
        parts = str(text).strip().split("-")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValidationError(
                f"生日格式应为 YYYY-MM-DD 或 MM-DD: {text!r} (birthday must look like YYYY-MM-DD or MM-DD)",
                field="birthday",
            ) from None
        if len(nums) == 3:
            return cls(calendar, nums[0], nums[1], nums[2], leap_month)
        if len(nums) == 2:
            return cls(calendar, None, nums[0], nums[1], leap_month)
        raise ValidationError(
            f"生日格式应为 YYYY-MM-DD 或 MM-DD: {text!r} (birthday must look like YYYY-MM-DD or MM-DD)",
            field="birthday",
        )

    def isoformat(self) -> str:
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d}"
            if self.year
            else f"{self.month:02d}-{self.day:02d}"
        )

    def in_year(self, year: int) -> dt.date | None:
        """The solar date of this birthday in ``year``'s celebration, or None if it has none.

        Solar 29 February falls on 28 February in common years. A lunar birthday is
        celebrated on its lunar month/day in the lunar year starting in ``year``; a
        lunar 30th in a short month falls on the 29th; a leap-month birthday is kept
        in the ordinary month when the year has no such leap month.
        """
        if self.calendar == "solar":
            day = self.day
            if self.month == 2 and day == 29:
                leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
                day = 29 if leap else 28
            return dt.date(year, self.month, day)
        for leap in (True, False) if self.leap_month else (False,):
            for day in (self.day, self.day - 1):
                try:
                    return LunarDate(year, self.month, day, leap).to_solar_date()
                except ValueError:
                    continue
        return None

    def next_on_or_after(self, today: dt.date) -> dt.date:
        for year in (today.year - 1, today.year, today.year + 1):
            date = self.in_year(year)
            if date and date >= today:
                return date
        raise ValidationError("birthday cannot be placed in the calendar")  # pragma: no cover
