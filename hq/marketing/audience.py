# ruff: noqa: S608 - the SQL text is fixed (dialect pieces and placeholders); values are bound
"""An audience: the members a list or a segment names, computed in the database.

A spec is an AND of conditions, each a small JSON object (docs/marketing.md)::

    {"conditions": [{"kind": "lifecycle", "values": ["dormant"]},
                    {"kind": "store", "by": "registered", "values": ["S001"]}],
     "as_of": "2026-12-01"}

Every condition compiles to SQL (one text for SQLite and PostgreSQL, values bound):
predicates on ``member m`` and its ``report_member r`` row, and common table expressions
over the summary tables the ingest keeps (``report_member_spend``: per member, store and
month). So an audience over 1,000,000 members is a handful of set-based scans, never a
loop over members in Python. Merged members (``status = 'merged'``) are never in one,
nor are members without a registration row (``report_member``).

``count`` gives the live count; ``member_ids`` a keyset page (ids ascending, after a given
id); ``snapshot`` stores the audience once (``ListRun`` + ``ListRunMember``, one INSERT
... SELECT) so a campaign pages through a stable set with ``run_member_ids``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import peewee as pw

from core.birthday import Birthday
from core.errors import ValidationError
from core.profile import AT_RISK_TAGS
from hq.models import is_postgres
from hq.reports.kpis import DORMANT_MONTHS
from hq.reports.periods import add_months

LIFECYCLE = {"new": "新会员", "established": "老会员", "dormant": "沉睡会员", "lost": "流失会员"}
QUADRANTS = {
    "hf_hm": "高频高消费",
    "hf_lm": "高频低消费",
    "lf_hm": "低频高消费",
    "lf_lm": "低频低消费",
}
LISTS = {
    "new_members": "新会员激活",
    "birthdays": "生日祝福",
    "dormant": "沉睡会员唤醒",
    "weekly_new": "上周新会员回访",
}
KINDS = {
    "list": "名单",
    "lifecycle": "生命周期",
    "quadrant": "四象限",
    "rfm": "RFM 评分",
    "tags": "标签",
    "card_type": "卡类型",
    "tier": "等级",
    "store": "门店",
    "maintainer": "维护人",
    "birthday_month": "生日月份",
    "category": "购买品类",
}
MAX_VALUES = 200
WORK_MEM = "64MB"  # PostgreSQL, per audience query (SET LOCAL)
MAX_CONDITIONS = 20
_PLAIN = re.compile(r"^[^%_\\\"]{1,64}$")  # a value safe inside a LIKE pattern


def _bad(message: str, field: str = "conditions") -> ValidationError:
    return ValidationError(message, field=field)


# ---- SQL pieces -------------------------------------------------------------------------


@dataclass
class Part:
    """A piece of SQL text and its parameters, in the order of its ``?``s."""

    text: str
    params: list[Any] = field(default_factory=list)


class Builder:
    """Collects a query's CTEs, joins and WHERE predicates, each with its own parameters,
    and writes them out in text order (so the parameters line up)."""

    def __init__(
        self, db: pw.Database, today: dt.date | None = None, last_days: bool = True
    ) -> None:
        self.db = db
        self.today = today or dt.date.today()  # which summary rows can hold data yet
        # whether a window's last day bought is read (the R of RFM): without it a window
        # not aligned to a year skips the late members' rows inside it
        self.last_days = last_days
        self.pg = is_postgres(db)
        self.ctes: list[Part] = []
        self.joins: list[Part] = []
        self.where: list[Part] = [Part("m.status = 'active'")]
        self.windows: dict[tuple[dt.date, dt.date], str] = {}
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def one_of(self, column: str, values: list[Any]) -> Part:
        if not values:
            return Part("1=0")
        if self.pg:
            return Part(f"{column} = ANY(?)", [list(values)])
        return Part(f"{column} IN ({', '.join('?' for _ in values)})", list(values))

    def sql(self, select: str, tail: Part | None = None) -> Part:
        params: list[Any] = []
        text = ""
        if self.ctes:
            text = "WITH " + ", ".join(p.text for p in self.ctes) + " "
            for p in self.ctes:
                params += p.params
        text += f"SELECT {select} FROM member m JOIN report_member r ON r.member_id = m.id"
        for p in self.joins:
            text += f" {p.text}"
            params += p.params
        text += " WHERE " + " AND ".join(f"({p.text})" for p in self.where)
        for p in self.where:
            params += p.params
        if tail is not None:
            text += f" {tail.text}"
            params += tail.params
        return Part(text, params)

    def run(self, part: Part) -> list[tuple[Any, ...]]:
        with self.db.atomic():
            return list(self.execute(part).fetchall())

    def execute(self, part: Part) -> Any:
        """Run ``part`` (inside a transaction). On PostgreSQL without nested loops: the
        planner cannot estimate how many members pass a HAVING or a window condition
        (it guesses a handful), and a nested loop over 1,000,000 members on that guess
        takes hours where hash joins take seconds (docs/benchmarks.md). And with room to
        sort and hash a million members in memory (``work_mem``, for this transaction)."""
        if self.pg:
            self.db.execute_sql("SET LOCAL enable_nestloop = off")
            self.db.execute_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")
            self.db.execute_sql("SET LOCAL jit = off")  # compiling costs a second, gains none
        return self.db.execute_sql(*self.dialect(part))

    def dialect(self, part: Part) -> tuple[str, list[Any]]:
        if self.pg:
            return part.text.replace("?", "%s"), part.params
        return part.text, [_sqlite_value(v) for v in part.params]


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _window(months: int, as_of: dt.date) -> tuple[dt.date, dt.date]:
    """The whole months of a behaviour window ending with ``as_of``'s month: [first, end)."""
    end = add_months(as_of.replace(day=1), 1)
    return add_months(end, -months), end


def _fewest(first: dt.date, end: dt.date) -> list[tuple[str, dt.date]]:
    """The periods (kind, start) that cover the whole months [first, end) exactly once,
    as few as can: a year for a whole calendar year, a quarter for a whole quarter,
    months for the rest."""
    picked: list[tuple[str, dt.date]] = []
    day = first
    while day < end:
        if day.month == 1 and add_months(day, 12) <= end:
            kind, step = "year", 12
        elif day.month % 3 == 1 and add_months(day, 3) <= end:
            kind, step = "quarter", 3
        else:
            kind, step = "month", 1
        picked.append((kind, day))
        day = add_months(day, step)
    return picked


def _periods_part(periods: list[tuple[str, dt.date]], alias: str = "") -> Part:
    """WHERE part: the ``report_member_spend`` rows of ``periods``."""
    a = alias
    parts, params = [], []
    for kind in ("year", "quarter", "month"):
        starts = [start for k, start in periods if k == kind]
        if starts:
            marks = ", ".join("?" for _ in starts)
            parts.append(f"({a}kind = '{kind}' AND {a}start IN ({marks}))")
            params += starts
    return Part("(" + " OR ".join(parts) + ")", params) if parts else Part("1=0")


def period_rows(first: dt.date, end: dt.date, alias: str = "") -> Part:
    """WHERE part: the ``report_member_spend`` rows that cover the whole months [first,
    end) exactly once, as few as can (12 months ending in December are one row per
    member and store instead of twelve)."""
    return _periods_part(_fewest(first, end), alias)


@dataclass
class Cover:
    """A window's rows, signed: the sums over ``plus`` less the sums over ``minus`` are
    the window's. ``late`` (the months of the window in its last year, and that year's
    periods after the window) when a year row stands for months after the window too:
    its last day bought may then lie after the window."""

    plus: list[tuple[str, dt.date]]
    minus: list[tuple[str, dt.date]]
    late: tuple[dt.date, dt.date, list[tuple[str, dt.date]]] | None = None


def window_cover(first: dt.date, end: dt.date, today: dt.date) -> Cover:
    """The rows to read for the whole months [first, end): per calendar year the window
    touches, either the fewest periods inside it, or that year's row less the periods
    outside it, whichever reads fewer periods that can hold rows (none starts after
    ``today``). Twelve months ending in November: a month of last year, and this year's
    row (less December, empty until December): two periods where the months and
    quarters were six. Which rows are read never changes the sums, only their cost."""
    plus: list[tuple[str, dt.date]] = []
    minus: list[tuple[str, dt.date]] = []
    late = None
    year = first.year
    while dt.date(year, 1, 1) < end:
        jan, next_jan = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
        low, high = max(first, jan), min(end, next_jan)
        inside = _fewest(low, high)
        before, after = _fewest(jan, low), _fewest(high, next_jan)

        def held(periods: list[tuple[str, dt.date]]) -> int:
            return sum(1 for _, start in periods if start <= today)

        if (before or after) and 1 + held(before + after) < held(inside):
            plus.append(("year", jan))
            minus += before + after
            if after:
                late = (low, high, after)
        else:
            plus += inside
        year += 1
    return Cover(plus, minus, late)


def _window_cte(b: Builder, months: int, as_of: dt.date) -> str:
    """A CTE of each buyer's tickets (f), net fen (v) and last day bought (last_day) in
    the window (one per window: the quadrants and RFM of one window share it), read
    from the rows ``window_cover`` picks.

    The sums are signed. A year row's last day counts when it falls in the window: one
    before the window means nothing bought in it that year at that store; one after it
    (the member bought after the window, at that store) hides the last day in it, which
    then comes from that year's rows inside the window (quarters and months), for those
    members only, and only when ``b.last_days`` (an R score) asks for last days."""
    first, end = _window(months, as_of)
    if (first, end) in b.windows:
        return b.windows[(first, end)]
    name = b.windows[(first, end)] = b.name("w")
    cover = window_cover(first, end, b.today)
    if not cover.minus:
        rows = _periods_part(cover.plus)
        b.ctes.append(
            Part(
                f"{name} AS (SELECT member_id, SUM(tickets) AS f, SUM(amount) AS v,"
                f" MAX(last_day) AS last_day FROM report_member_spend WHERE {rows.text}"
                " GROUP BY member_id HAVING SUM(tickets) > 0)",
                rows.params,
            )
        )
        return name
    plus, minus = _periods_part(cover.plus), _periods_part(cover.minus)
    signed = b.name("ws")
    if b.last_days:
        last = Part(
            "MAX(CASE WHEN c > 0 AND last_day >= ? AND last_day < ? THEN last_day END)",
            [first, end],
        )
    else:  # the quadrants and F and M scores read no last day
        last = Part("CAST(NULL AS DATE)")
    b.ctes.append(
        Part(
            f"{signed} AS (SELECT member_id, SUM(c * tickets) AS f, SUM(c * amount) AS v,"
            f" {last.text} AS last_day FROM (SELECT member_id, tickets, amount, last_day,"
            f" CASE WHEN {minus.text} THEN -1 ELSE 1 END AS c FROM report_member_spend"
            f" WHERE {plus.text} OR {minus.text}) x GROUP BY member_id"
            " HAVING SUM(c * tickets) > 0)",
            last.params + minus.params + plus.params + minus.params,
        )
    )
    if cover.late is None or not b.last_days:
        b.ctes.append(Part(f"{name} AS (SELECT member_id, f, v, last_day FROM {signed})"))
        return name
    low, high, after = cover.late
    inside, later = _periods_part(_fewest(low, high)), _periods_part(after)
    late = b.name("wl")
    b.ctes.append(
        Part(
            f"{late} AS (SELECT member_id, MAX(last_day) AS last_day FROM report_member_spend"
            f" WHERE {inside.text} AND tickets > 0 AND member_id IN (SELECT member_id FROM"
            f" report_member_spend WHERE {later.text} AND tickets > 0) GROUP BY member_id)",
            inside.params + later.params,
        )
    )
    b.ctes.append(
        Part(
            f"{name} AS (SELECT s.member_id, s.f, s.v, CASE WHEN l.last_day IS NULL THEN"
            " s.last_day WHEN s.last_day IS NULL OR l.last_day > s.last_day THEN l.last_day"
            f" ELSE s.last_day END AS last_day FROM {signed} s LEFT JOIN {late} l"
            " ON l.member_id = s.member_id)"
        )
    )
    return name


# ---- birthdays --------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def lunar_keys(year: int, month: int) -> tuple[str, ...]:
    """The lunar birthdays ('MM-DD', 'MM-DDL' for a leap month) celebrated in the solar
    month ``year-month`` (``core.birthday.Birthday.in_year``: a 30th in a short month on
    the 29th, a leap-month birthday in the ordinary month in a year without that leap)."""
    keys: set[str] = set()
    for lunar_year in (year - 1, year):
        for m in range(1, 13):
            for d in range(1, 31):
                for leap in (False, True):
                    day = Birthday("lunar", None, m, d, leap).in_year(lunar_year)
                    if day is not None and (day.year, day.month) == (year, month):
                        keys.add(f"{m:02d}-{d:02d}{'L' if leap else ''}")
    return tuple(sorted(keys))


def birthday_part(b: Builder, year: int, months: list[int]) -> Part:
    """Members whose birthday (solar, or lunar as celebrated in ``year``) falls in one of
    ``months`` of ``year``. The birthday text is 'YYYY-MM-DD' or 'MM-DD'."""
    md = "substr(m.birthday, length(m.birthday) - 4, 5)"
    solar = b.one_of(f"substr({md}, 1, 2)", [f"{mo:02d}" for mo in months])
    keys = sorted({k for mo in months for k in lunar_keys(year, mo)})
    leap = "CASE WHEN m.birthday_leap_month THEN 'L' ELSE '' END"
    lunar = b.one_of(f"{md} || {leap}", keys)
    return Part(
        f"m.birthday IS NOT NULL AND length(m.birthday) >= 5 AND ("
        f"(m.birthday_calendar <> 'lunar' AND {solar.text}) OR"
        f" (m.birthday_calendar = 'lunar' AND {lunar.text}))",
        solar.params + lunar.params,
    )


# ---- conditions -------------------------------------------------------------------------


def _values(cond: dict[str, Any], allowed: dict[str, str] | None = None) -> list[str]:
    values = cond.get("values")
    if not isinstance(values, list) or not values or len(values) > MAX_VALUES:
        raise _bad(
            f"{KINDS[cond['kind']]}: 请选择1到{MAX_VALUES}个值 (values must be a list of 1..{MAX_VALUES})"
        )
    out = []
    for v in values:
        if not isinstance(v, str) or not v.strip() or len(v) > 64:
            raise _bad(f"{KINDS[cond['kind']]}: 值无效 (each value must be a text of 1..64)")
        if allowed is not None and v not in allowed:
            raise _bad(f"{KINDS[cond['kind']]}: 未知的值 {v} (must be one of {', '.join(allowed)})")
        out.append(v.strip())
    return out


def _int_values(cond: dict[str, Any], low: int, high: int, key: str = "values") -> list[int]:
    values = cond.get(key)
    if not isinstance(values, list) or not values:
        raise _bad(f"{KINDS[cond['kind']]}: 请选择至少一个值 ({key} must be a non-empty list)")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise _bad(
                f"{KINDS[cond['kind']]}: 值须为{low}到{high} ({key}: integers {low}..{high})"
            )
    return sorted(set(values))


def _months(cond: dict[str, Any], default: int) -> int:
    months = cond.get("months", default)
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 36:
        raise _bad("统计窗口须为1到36个月 (months must be 1..36)", "months")
    return months


def _month_arg(text: Any) -> dt.date:
    try:
        day = dt.date.fromisoformat(f"{text}-01") if len(str(text)) == 7 else None
    except ValueError:
        day = None
    if day is None:
        raise _bad(
            f"月份格式应为 YYYY-MM: {str(text)[:20]!r} (month must look like 2026-12)", "month"
        )
    return day


def _week_arg(text: Any) -> dt.date:
    try:
        day = dt.date.fromisoformat(str(text))
    except ValueError:
        raise _bad(
            f"周须为其中一天 YYYY-MM-DD: {str(text)[:20]!r} (week: a day in it)", "week"
        ) from None
    return day - dt.timedelta(days=day.weekday())


def list_bounds(kind: str, cond: dict[str, Any]) -> dt.date:
    """The first day of the month (monthly lists) or the Monday (weekly list) the list
    is for."""
    if kind == "weekly_new":
        return _week_arg(cond.get("week"))
    return _month_arg(cond.get("month"))


def _list_part(b: Builder, cond: dict[str, Any], settings: dict[str, int]) -> None:
    kind = cond.get("list")
    if kind not in LISTS:
        raise _bad(f"未知的名单: {str(kind)[:20]} (list must be one of {', '.join(LISTS)})", "list")
    start = list_bounds(kind, cond)
    if kind == "new_members":  # last month's new members
        b.where.append(Part("r.reg_day >= ? AND r.reg_day < ?", [add_months(start, -1), start]))
    elif kind == "weekly_new":  # last week's new members
        b.where.append(
            Part("r.reg_day >= ? AND r.reg_day < ?", [start - dt.timedelta(days=7), start])
        )
    elif kind == "birthdays":
        b.where.append(birthday_part(b, start.year, [start.month]))
    else:  # dormant: bought before, nothing in the 3 months before the 1st (the KPI's)
        cut = add_months(start, -DORMANT_MONTHS)
        b.where.append(
            Part(
                # NOT EXISTS, an anti-join: PostgreSQL hashes a NOT IN only when it fits
                # in work_mem, and otherwise scans the subquery once per member
                "r.first_day < ? AND NOT EXISTS (SELECT 1 FROM report_member_spend s"
                " WHERE s.member_id = r.member_id AND s.kind = 'month' AND s.start >= ?"
                " AND s.start < ? AND s.tickets > 0)",
                [cut, cut, start],
            )
        )


def _lifecycle(b: Builder, cond: dict[str, Any], as_of: dt.date, settings: dict[str, int]) -> None:
    values = _values(cond, LIFECYCLE)
    new_from = as_of - dt.timedelta(days=settings["new_days"] - 1)
    dormant_from = as_of - dt.timedelta(days=settings["dormant_days"] - 1)
    lost_from = as_of - dt.timedelta(days=settings["lost_days"] - 1)
    # the last day bought, as the ingest keeps it on the member's row (the registration
    # day for one who never bought)
    last = "COALESCE(r.last_day, r.reg_day)"
    stage = Part(
        f"CASE WHEN r.reg_day >= ? THEN 'new' WHEN {last} >= ? THEN 'established'"
        f" WHEN {last} >= ? THEN 'dormant' ELSE 'lost' END",
        [new_from, dormant_from, lost_from],
    )
    inside = b.one_of(stage.text, values)
    b.where.append(Part(inside.text, stage.params + inside.params))


def _quadrant(b: Builder, cond: dict[str, Any], as_of: dt.date, settings: dict[str, int]) -> None:
    values = _values(cond, QUADRANTS)
    w = _window_cte(b, _months(cond, settings["window_months"]), as_of)
    med = b.name("md")
    # the lower median of each: the middle row of the buyers ordered by it, row (n + 1) / 2;
    # on PostgreSQL the ordered-set aggregate that picks that row (the first whose share
    # of the rows reaches a half): a sort each instead of a window over the buyers. Each a
    # scalar subquery, so each is computed once (an aggregate in the FROM list would be a
    # nested loop's inner side, computed again for every member)
    if b.pg:
        text = (
            f"{med} AS (SELECT (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY f) FROM {w})"
            f" AS mf, (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY v) FROM {w}) AS mv)"
        )
    else:
        text = (
            f"{med} AS (SELECT (SELECT f FROM (SELECT f, ROW_NUMBER() OVER (ORDER BY f) AS rn,"
            f" COUNT(*) OVER () AS n FROM {w}) x WHERE rn = (n + 1) / 2) AS mf,"
            f" (SELECT v FROM (SELECT v, ROW_NUMBER() OVER (ORDER BY v) AS rn,"
            f" COUNT(*) OVER () AS n FROM {w}) y WHERE rn = (n + 1) / 2) AS mv)"
        )
    b.ctes.append(Part(text))
    b.joins.append(Part(f"JOIN {w} ON {w}.member_id = m.id CROSS JOIN {med}"))
    parts = []
    for v in values:
        f_op = ">" if v.startswith("hf") else "<="
        m_op = ">" if v.endswith("hm") else "<="
        parts.append(f"({w}.f {f_op} {med}.mf AND {w}.v {m_op} {med}.mv)")
    b.where.append(Part(" OR ".join(parts)))


def _rfm(b: Builder, cond: dict[str, Any], as_of: dt.date, settings: dict[str, int]) -> None:
    picked = {k: _int_values(cond, 1, 5, k) for k in ("r", "f", "m") if k in cond}
    if not picked:
        raise _bad("RFM: 请至少选择 R、F、M 之一的分数 (give r, f or m scores)", "rfm")
    w = _window_cte(b, _months(cond, settings["window_months"]), as_of)
    sc = b.name("rfm")

    def score(column: str) -> str:
        # 1 + floor(5 (rank - 1) / (n - 1)), capped at 5: quintiles by rank, ties together
        rank = f"RANK() OVER (ORDER BY {column})"
        return (
            f"CASE WHEN COUNT(*) OVER () = 1 THEN 5 ELSE CASE WHEN 1 + (5 * ({rank} - 1))"
            f" / (COUNT(*) OVER () - 1) > 5 THEN 5 ELSE 1 + (5 * ({rank} - 1))"
            f" / (COUNT(*) OVER () - 1) END END"
        )

    # only the scores asked for: each is a sort of every buyer in the window
    column = {"r": "last_day", "f": "f", "m": "v"}
    scores = ", ".join(f"{score(column[key])} AS {key}" for key in picked)
    b.ctes.append(Part(f"{sc} AS (SELECT member_id, {scores} FROM {w})"))
    b.joins.append(Part(f"JOIN {sc} ON {sc}.member_id = m.id"))
    for key, values in picked.items():
        b.where.append(b.one_of(f"{sc}.{key}", values))


def _tags(b: Builder, cond: dict[str, Any]) -> None:
    values = _values(cond)
    for v in values:
        if not _PLAIN.match(v):
            raise _bad(f'标签不能含 % _ \\ " ({v[:20]})', "values")
    b.where.append(Part(" OR ".join("m.tags LIKE ?" for _ in values), [f'%"{v}"%' for v in values]))


def _store(b: Builder, cond: dict[str, Any], as_of: dt.date, settings: dict[str, int]) -> None:
    values = _values(cond)
    by = cond.get("by", "registered")
    if by == "registered":
        b.where.append(b.one_of("m.registered_store", values))
        return
    if by != "home":
        raise _bad("门店条件须按开卡门店或常去门店 (by must be registered or home)", "by")
    # home: the store of most tickets in the window (ties: the lowest code)
    first, end = _window(_months(cond, settings["window_months"]), as_of)
    name = b.name("hs")
    rows = period_rows(first, end)
    b.ctes.append(
        Part(
            f"{name} AS (SELECT member_id, store FROM (SELECT member_id, store, ROW_NUMBER()"
            " OVER (PARTITION BY member_id ORDER BY SUM(tickets) DESC, store) AS rn FROM"
            f" report_member_spend WHERE {rows.text} AND tickets > 0"
            " GROUP BY member_id, store) x WHERE rn = 1)",
            rows.params,
        )
    )
    inside = b.one_of("store", values)
    b.where.append(
        Part(f"m.id IN (SELECT member_id FROM {name} WHERE {inside.text})", inside.params)
    )


def _category(b: Builder, cond: dict[str, Any], as_of: dt.date, settings: dict[str, int]) -> None:
    values = _values(cond)
    for v in values:
        if not _PLAIN.match(v):
            raise _bad(f'品类不能含 % _ \\ " ({v[:20]})', "values")
    first, end = _window(_months(cond, settings["window_months"]), as_of)
    likes = " OR ".join("line_goods LIKE ?" for _ in values)
    b.where.append(
        Part(
            "m.id IN (SELECT member_id FROM sale WHERE member_id IS NOT NULL"
            f" AND occurred_at >= ? AND occurred_at < ? AND ({likes}))",
            [first.isoformat(), end.isoformat()] + [f'%"category":"{v}"%' for v in values],
        )
    )


def compile_spec(db: pw.Database, spec: Any, settings: dict[str, int], today: dt.date) -> Builder:
    """The spec as a query builder; every bad part a ValidationError (400) in Chinese."""
    if not isinstance(spec, dict):
        raise _bad("受众须为对象 (the audience must be an object)", "spec")
    conditions = spec.get("conditions")
    if not isinstance(conditions, list) or len(conditions) > MAX_CONDITIONS:
        raise _bad(
            f"条件须为列表, 最多{MAX_CONDITIONS}个 (conditions: a list of at most {MAX_CONDITIONS})"
        )
    as_of = today
    if spec.get("as_of"):
        try:
            as_of = dt.date.fromisoformat(str(spec["as_of"]))
        except ValueError:
            raise _bad("统计日期格式应为 YYYY-MM-DD (as_of must be a date)", "as_of") from None
    recency = any(isinstance(c, dict) and c.get("kind") == "rfm" and "r" in c for c in conditions)
    b = Builder(db, today, last_days=recency)
    for cond in conditions:
        if not isinstance(cond, dict) or cond.get("kind") not in KINDS:
            raise _bad(f"未知的条件 (condition kind must be one of {', '.join(KINDS)})")
        kind = cond["kind"]
        if kind == "list":
            _list_part(b, cond, settings)
        elif kind == "lifecycle":
            _lifecycle(b, cond, as_of, settings)
        elif kind == "quadrant":
            _quadrant(b, cond, as_of, settings)
        elif kind == "rfm":
            _rfm(b, cond, as_of, settings)
        elif kind == "tags":
            _tags(b, cond)
        elif kind in ("card_type", "tier", "maintainer"):
            column = {"card_type": "m.card_type", "tier": "m.tier", "maintainer": "m.staff_code"}
            b.where.append(b.one_of(column[kind], _values(cond)))
        elif kind == "store":
            _store(b, cond, as_of, settings)
        elif kind == "birthday_month":
            b.where.append(birthday_part(b, as_of.year, _int_values(cond, 1, 12)))
        else:
            _category(b, cond, as_of, settings)
    return b


def limit_to_stores(b: Builder, stores: frozenset[str] | None) -> None:
    """A store or area manager's audience: their stores' members (registered there)."""
    if stores is not None:
        b.where.append(b.one_of("m.registered_store", sorted(stores)))


# ---- using one --------------------------------------------------------------------------


def count(b: Builder) -> int:
    (row,) = b.run(b.sql("COUNT(*)"))
    return int(row[0])


def member_ids(b: Builder, after: str = "", limit: int = 1000) -> list[str]:
    """One keyset page of the audience's member ids, ascending, after ``after``."""
    b.where.append(Part("m.id > ?", [after]))
    try:
        rows = b.run(b.sql("m.id", Part("ORDER BY m.id LIMIT ?", [int(limit)])))
    finally:
        b.where.pop()
    return [r[0] for r in rows]


def keyset(fetch: Callable[[str, int], list[str]], page: int = 5000) -> Iterator[str]:
    """Every id ``fetch(after, limit)`` gives, page by page: ids ascending, each page
    after the last id of the one before."""
    after = ""
    while True:
        ids = fetch(after, page)
        yield from ids
        if len(ids) < page:
            return
        after = ids[-1]


def iter_member_ids(b: Builder, page: int = 5000) -> Iterator[str]:
    """Every member id of the audience, page by page (each page one query)."""
    return keyset(lambda after, limit: member_ids(b, after, limit), page)


__all__ = [
    "KINDS",
    "LIFECYCLE",
    "LISTS",
    "QUADRANTS",
    "AT_RISK_TAGS",
    "Builder",
    "Part",
    "birthday_part",
    "compile_spec",
    "count",
    "iter_member_ids",
    "limit_to_stores",
    "list_bounds",
    "lunar_keys",
    "member_ids",
]
