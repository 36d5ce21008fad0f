"""Report periods (day, week from Monday, month, quarter, year) and scopes (chain, area,
store, staff). Pure: no database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

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
    """A calendar period of the chain's business days: ``[start, end)``.

    ``cut`` (optional): the period to date, cut after that day (its last day, included):
    1-5 December is ``Period("month", 2026-12-01, cut=2026-12-05)``, ``.end`` 6 December.
    A cut period is never whole (``until`` returns the whole period for its last day);
    its ``previous()`` and ``same_last_year()`` are cut at the same offset (上月同期,
    去年同期), clamped to the end of a shorter month (31 March: 28/29 February)."""

    kind: str
    start: dt.date
    cut: dt.date | None = None

    def __post_init__(self) -> None:
        if self.kind not in PERIOD_KINDS:
            raise ValidationError(
                f"周期类型无效 (period kind must be one of {PERIOD_KINDS})", field="kind"
            )
        if _start_of(self.kind, self.start) != self.start:
            raise ValidationError(
                f"周期起始日无效 ({self.start} does not start a {self.kind})", field="start"
            )
        if self.cut is not None and not self.start <= self.cut < self.whole_end - dt.timedelta(
            days=1
        ):
            raise ValidationError(
                f"截止日须在周期内且早于其最后一天 (cut-off {self.cut} must fall inside"
                f" {self.kind} {self.start} before its last day)",
                field="to",
            )

    @property
    def is_cut(self) -> bool:
        return self.cut is not None

    @property
    def end(self) -> dt.date:
        """The first day after the period (exclusive): the day after the cut-off for a
        cut period."""
        if self.cut is not None:
            return self.cut + dt.timedelta(days=1)
        return self.whole_end

    @property
    def whole_end(self) -> dt.date:
        """The first day after the whole period (a cut period's too)."""
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

    def whole(self) -> Period:
        """The whole period (itself when not cut)."""
        return Period(self.kind, self.start)

    def until(self, day: dt.date) -> Period:
        """The period to date: cut after ``day`` (included). ``day`` on or after the last
        day: the whole period; before its start: ValidationError."""
        whole = self.whole()
        if day < whole.start:
            raise ValidationError(
                f"截止日早于周期开始 (cut-off {day} before {whole.start})", field="to"
            )
        if day >= whole.last_day:
            return whole
        return Period(self.kind, self.start, day)

    def _cut_like(self, other: Period) -> Period:
        """``other`` (a whole period of this kind) cut at this period's offset: the same
        number of days in for a day or week; for a month, quarter or year the same month
        offset and day of month, clamped to that month's last day."""
        if self.cut is None:
            return other
        if self.kind in ("day", "week"):
            return other.until(other.start + (self.cut - self.start))
        months = (self.cut.year - self.start.year) * 12 + self.cut.month - self.start.month
        month = add_months(other.start, months)
        last = add_months(month, 1) - dt.timedelta(days=1)
        return other.until(month.replace(day=min(self.cut.day, last.day)))

    def previous(self) -> Period:
        """The period of the same kind just before (环比); for a cut period, that period
        to the same offset (上月同期)."""
        before = Period(self.kind, _start_of(self.kind, self.start - dt.timedelta(days=1)))
        return self._cut_like(before)

    def next(self) -> Period:
        return Period(self.kind, self.whole_end)

    def same_last_year(self) -> Period:
        """The period of the same kind a year before (同比): the same day (29 Feb: 28 Feb),
        the same ISO week number (or the last week of that year), the same month, quarter.
        A cut period: that period to the same offset (去年同期)."""
        if self.kind == "week":
            iso_year, week, _ = self.start.isocalendar()
            try:
                return self._cut_like(
                    Period("week", dt.date.fromisocalendar(iso_year - 1, week, 1))
                )
            except ValueError:  # week 53 of a year whose previous has 52
                return self._cut_like(Period("week", dt.date.fromisocalendar(iso_year - 1, 52, 1)))
        try:
            start = self.start.replace(year=self.start.year - 1)
        except ValueError:  # 29 February
            start = self.start.replace(year=self.start.year - 1, day=28)
        return self._cut_like(Period(self.kind, start))

    def contains(self, day: dt.date) -> bool:
        return self.start <= day < self.end

    @property
    def span(self) -> str:
        """The days covered, short: 12月1日-5日, 11月30日-12月2日, 2025年12月29日-2026年1月1日
        (a whole month: 11月; any other whole period: its first and last day)."""
        a, b = self.start, self.last_day
        if self.kind == "day":
            return f"{a.month}月{a.day}日"
        if self.kind == "month" and self.cut is None:
            return f"{a.month}月"
        if a.year != b.year:
            return f"{a.year}年{a.month}月{a.day}日-{b.year}年{b.month}月{b.day}日"
        if a.month == b.month:
            return f"{a.month}月{a.day}日-{b.day}日"
        return f"{a.month}月{a.day}日-{b.month}月{b.day}日"

    @property
    def label(self) -> str:
        """Chinese: 2026年11月23日, 2026年第48周, 2026年11月, 2026年第4季度, 2026年; a cut
        period: 2026年12月1日-5日, 2026年第49周 (11月30日-12月2日)."""
        s = self.start
        if self.cut is not None:
            if self.kind == "week":
                return f"{self.whole().label} ({self.span})"
            if s.year == self.last_day.year:
                return f"{s.year}年{self.span}"
            return self.span
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

    def to_dict(self) -> dict[str, Any]:
        """``key`` is the whole period's; a cut period also has ``to`` (its last day)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "key": self.key,
            "label": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }
        if self.cut is not None:
            out["to"] = self.cut.isoformat()
        return out


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
