"""Report periods (day, week from Monday, month, quarter, year) and scopes (chain, area,
store, staff). Pure: no database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.errors import ValidationError

PERIOD_KINDS = ("day", "week", "month", "quarter", "year")
SCOPE_KINDS = ("chain", "area", "store", "staff")


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(day: dt.date, n: int) -> dt.date:
    """The first of the month ``n`` months after ``day``'s month (n may be negative)."""
    index = day.year * 12 + (day.month - 1) + n
    return dt.date(index // 12, index % 12 + 1, 1)


def _start_of(kind: str, day: dt.date) -> dt.date:
    if kind == "day":
        return day
    if kind == "week":
        return day - dt.timedelta(days=day.weekday())
    if kind == "month":
        return _month_start(day)
    if kind == "quarter":
        return dt.date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    if kind == "year":
        return dt.date(day.year, 1, 1)
    raise ValidationError(f"周期类型无效 (period kind must be one of {PERIOD_KINDS})", field="kind")


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar period of the chain's business days: ``[start, end)``."""

    kind: str
    start: dt.date

    def __post_init__(self) -> None:
        if self.kind not in PERIOD_KINDS:
            raise ValidationError(
                f"周期类型无效 (period kind must be one of {PERIOD_KINDS})", field="kind"
            )
        if _start_of(self.kind, self.start) != self.start:
            raise ValidationError(
                f"周期起始日无效 ({self.start} does not start a {self.kind})", field="start"
            )

    @property
    def end(self) -> dt.date:
        """The first day after the period (exclusive)."""
        if self.kind == "day":
            return self.start + dt.timedelta(days=1)
        if self.kind == "week":
            return self.start + dt.timedelta(days=7)
        return add_months(self.start, {"month": 1, "quarter": 3, "year": 12}[self.kind])

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self) -> Period:
        """The period of the same kind just before (环比)."""
        return Period(self.kind, _start_of(self.kind, self.start - dt.timedelta(days=1)))

    def next(self) -> Period:
        return Period(self.kind, self.end)

    def same_last_year(self) -> Period:
        """The period of the same kind a year before (同比): the same day (29 Feb: 28 Feb),
        the same ISO week number (or the last week of that year), the same month, quarter."""
        if self.kind == "week":
            iso_year, week, _ = self.start.isocalendar()
            try:
                return Period("week", dt.date.fromisocalendar(iso_year - 1, week, 1))
            except ValueError:  # week 53 of a year whose previous has 52
                return Period("week", dt.date.fromisocalendar(iso_year - 1, 52, 1))
        try:
            start = self.start.replace(year=self.start.year - 1)
        except ValueError:  # 29 February
            start = self.start.replace(year=self.start.year - 1, day=28)
        return Period(self.kind, start)

    def contains(self, day: dt.date) -> bool:
        return self.start <= day < self.end

    @property
    def label(self) -> str:
        """Chinese: 2026年11月23日, 2026年第48周, 2026年11月, 2026年第4季度, 2026年."""
        s = self.start
        if self.kind == "day":
            return f"{s.year}年{s.month}月{s.day}日"
        if self.kind == "week":
            iso_year, week, _ = s.isocalendar()
            return f"{iso_year}年第{week}周"
        if self.kind == "month":
            return f"{s.year}年{s.month}月"
        if self.kind == "quarter":
            return f"{s.year}年第{(s.month - 1) // 3 + 1}季度"
        return f"{s.year}年"

    @property
    def key(self) -> str:
        """Machine text that ``parse_period(kind, key)`` reads back: 2026-11-23, 2026-W48,
        2026-11, 2026-Q4, 2026."""
        s = self.start
        if self.kind == "day":
            return s.isoformat()
        if self.kind == "week":
            iso_year, week, _ = s.isocalendar()
            return f"{iso_year}-W{week:02d}"
        if self.kind == "month":
            return f"{s.year}-{s.month:02d}"
        if self.kind == "quarter":
            return f"{s.year}-Q{(s.month - 1) // 3 + 1}"
        return str(s.year)

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "key": self.key,
            "label": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


def period_containing(kind: str, day: dt.date) -> Period:
    """The period of ``kind`` that ``day`` falls in."""
    return Period(kind, _start_of(kind, day))


def parse_period(kind: str, text: str) -> Period:
    """Read a period: ``day`` 2026-11-23; ``week`` 2026-W48 (ISO week) or any day of it;
    ``month`` 2026-11; ``quarter`` 2026-Q4; ``year`` 2026. Any kind also takes a day
    (YYYY-MM-DD) and means the period containing it. Bad text: ValidationError naming
    the field ``period`` (``kind`` for a bad kind)."""
    if kind not in PERIOD_KINDS:
        raise ValidationError(
            f"周期类型无效: {kind!r} (period kind must be one of {', '.join(PERIOD_KINDS)})",
            field="kind",
        )
    text = (text or "").strip()
    bad = ValidationError(
        f"周期无效: {text!r} (period must look like {_EXAMPLES[kind]})", field="period"
    )
    if len(text) > 20:
        raise bad
    try:
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            return period_containing(kind, dt.date.fromisoformat(text))
        if kind == "week" and "-W" in text.upper():
            year, week = text.upper().split("-W")
            return Period("week", dt.date.fromisocalendar(int(year), int(week), 1))
        if kind == "month" and len(text) == 7 and text[4] == "-":
            return Period("month", dt.date(int(text[:4]), int(text[5:]), 1))
        if kind == "quarter" and "-Q" in text.upper():
            year, quarter = text.upper().split("-Q")
            q = int(quarter)
            if not 1 <= q <= 4:
                raise bad
            return Period("quarter", dt.date(int(year), 3 * q - 2, 1))
        if kind == "year" and len(text) == 4 and text.isdigit():
            return Period("year", dt.date(int(text), 1, 1))
    except ValueError:
        raise bad from None
    raise bad


_EXAMPLES = {
    "day": "2026-11-23",
    "week": "2026-W48",
    "month": "2026-11",
    "quarter": "2026-Q4",
    "year": "2026",
}


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose figures: ``chain`` (key ""), ``area`` (the area's name), ``store`` (its
    code), ``staff`` (a staff code)."""

    kind: str
    key: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCOPE_KINDS:
            raise ValidationError(
                f"范围类型无效 (scope kind must be one of {SCOPE_KINDS})", field="scope"
            )
        if self.kind != "chain" and not self.key:
            raise ValidationError(
                f"请指定{_SCOPE_ZH[self.kind]} ({self.kind} needs a key)", field="key"
            )

    @property
    def label(self) -> str:
        return "全连锁" if self.kind == "chain" else f"{_SCOPE_ZH[self.kind]} {self.key}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "key": self.key, "label": self.label}


CHAIN = Scope("chain")
_SCOPE_ZH = {"chain": "全连锁", "area": "区域", "store": "门店", "staff": "员工"}
