"""The console's dashboard (概览, ``/``) and reports (报表, ``/reports``), and the reports'
export to Excel and CSV (``/reports/export``).

Every figure comes from the KPI engine (hq/reports/kpis.py); this module only chooses
which figures, for which scope and period, and lays them out. A principal limited to
some stores (a store or area manager, ``current().stores``) is offered only those, and
asking for another is refused (403). Bad query parameters are a 400 page in Chinese.

The cadences follow the chains' own practice: daily and weekly tracking (this period
against the previous one), monthly and quarterly analysis (and the same period last
year), the yearly review (against last year, month by month).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import quote

import peewee as pw
from flask import Blueprint, Response, current_app, request, url_for
from markupsafe import Markup

from core.errors import ValidationError
from hq import audit
from hq.access.guard import current, requires
from hq.console import charts
from hq.models import Store, utcnow
from hq.reports import kpis
from hq.reports.export import (
    CELL,
    CSV_MIME,
    MONEY_UNITS,
    RATIO_UNITS,
    TEXT,
    XLSX_MIME,
    Cell,
    Column,
    Table,
    to_csv,
    to_xlsx,
)
from hq.reports.periods import Period, Scope, parse_period, period_containing

bp = Blueprint("reports", __name__, template_folder="templates")

KINDS: dict[str, str] = {
    "day": "日报",
    "week": "周报",
    "month": "月报",
    "quarter": "季报",
    "year": "年报",
}
CADENCE: dict[str, str] = {
    "day": "跟踪",
    "week": "跟踪",
    "month": "分析",
    "quarter": "分析",
    "year": "回顾",
}
# what a breakdown's rows are ("": no breakdown, the scope's figures against the past)
BY: dict[str, str] = {
    "": "汇总",
    "store": "按门店",
    "area": "按区域",
    "staff": "按员工",
    "tier": "按会员等级",
    "card_type": "按卡类",
    "gender": "按性别",
}
ROW_WORDS: dict[str, str] = {
    "store": "门店",
    "area": "区域",
    "staff": "员工",
    "tier": "会员等级",
    "card_type": "卡类",
    "gender": "性别",
}
DASHBOARD_KINDS: dict[str, str] = {"day": "今日", "week": "本周", "month": "本月"}
PREVIOUS_WORDS: dict[str, str] = {
    "day": "昨日",
    "week": "上周",
    "month": "上月",
    "quarter": "上季",
    "year": "去年",
}
# the dashboard's figures, most important first (会员交易额占有率 leads)
DASHBOARD_KEYS = (
    "member_sales_share",
    "sales_fen",
    "member_sales_fen",
    "tickets",
    "avg_ticket",
    "new_members",
    "active_members",
    "repeat_rate",
)
SHARE_KEY = "member_sales_share"
TOP_STORES = 15  # the dashboard's store bars: the biggest by sales
MOST_BARS = 40  # a breakdown's bars (its table has every row)
REPORT_CHART_WIDTH = 960  # the reports' charts span the page; the dashboard's are half
SALES_KEY = "sales_fen"
UNIT_SUFFIX = {"days": " 天", "years": " 岁", "per_member": " 次"}
EXPORT_FORMATS = ("xlsx", "csv")
FIRST_YEAR, LAST_YEAR = 1990, 2199  # the periods a report may be asked for


# ---- scopes the principal may see ---------------------------------------------------


@dataclass(frozen=True)
class ScopeChoice:
    value: str  # chain | area:华东 | store:S001 (the query parameter)
    label: str
    scope: Scope


def _db() -> pw.Database:
    return current_app.extensions["hq_db"]


def _stores() -> list[Store]:
    return list(Store.select(Store.code, Store.name, Store.area).order_by(Store.code))


def _store_label(store: Store) -> str:
    return f"{store.code} {store.name}".strip()


def scope_choices() -> list[ScopeChoice]:
    """The scopes the signed-in principal may pick: the chain, its areas and stores for
    the chain-wide roles; an area manager's area and its stores; a store manager's store."""
    me = current()
    stores = [s for s in _stores() if me.sees_store(s.code)]
    if me.stores is not None:  # a store of theirs HQ has not heard from yet: still theirs
        known = {s.code for s in stores}
        stores += [Store(code=code, name="") for code in sorted(me.stores - known)]
    out: list[ScopeChoice] = []
    if me.stores is None:
        out.append(ScopeChoice("chain", "全连锁", Scope("chain")))
        areas = sorted({s.area for s in stores if s.area})
        out.extend(ScopeChoice(f"area:{a}", f"区域 {a}", Scope("area", a)) for a in areas)
    elif me.role.scoped == "area" and me.scope:
        out.append(ScopeChoice(f"area:{me.scope}", f"区域 {me.scope}", Scope("area", me.scope)))
    out.extend(
        ScopeChoice(f"store:{s.code}", f"门店 {_store_label(s)}", Scope("store", s.code))
        for s in stores
    )
    return out


def pick_scope(raw: str | None) -> ScopeChoice:
    """The scope asked for (``scope=``), checked against what the principal may see;
    without one, the widest the principal has."""
    choices = scope_choices()
    if not raw:
        if not choices:
            raise ValidationError("没有可查看的门店 (no store to report on)", field="scope")
        return choices[0]
    for choice in choices:
        if choice.value == raw:
            return choice
    kind, _, key = raw.partition(":")
    me = current()
    if kind == "store" and key:
        me.require_store(key)  # another store's figures: 403
        raise ValidationError(f"门店不存在: {key} (no such store)", field="scope")
    if kind == "area" and key:
        if me.stores is not None:
            me.require_store(None)  # another area: 403
        raise ValidationError(f"区域不存在: {key} (no such area)", field="scope")
    if kind == "chain":
        me.require_store(None)  # a scoped role asking for the whole chain: 403
    raise ValidationError(
        f"范围须为 chain、area:区域 或 store:门店代码 (scope must be chain, area:X or store:CODE),"
        f" got {raw!r}",
        field="scope",
    )


# ---- periods --------------------------------------------------------------------------


def today() -> dt.date:
    """The chain's business day now. The instant comes from ``app.config["HQ_CLOCK"]``
    when set (a callable returning naive UTC: tests pin the day with it), else the
    system clock."""
    clock = current_app.config.get("HQ_CLOCK") or utcnow
    return current_app.config["HQ"].business_day(clock())


def to_date(period: Period, day: dt.date) -> Period:
    """The period as far as it has run on ``day``: cut after ``day`` while it is still
    running (1-5 December on 5 December), whole when it is over (or on its last day)."""
    if period.contains(day):
        return period.until(day)
    return period


def previous_words(kind: str, before: Period, with_span: bool = False) -> str:
    """What the period before is called: 上月, or 上月同期 for a period to date (with
    its days: 上月同期 (11月1日-5日))."""
    if not before.is_cut:
        return PREVIOUS_WORDS[kind]
    word = f"{PREVIOUS_WORDS[kind]}同期" if kind != "year" else "去年同期"
    return f"{word} ({before.span})" if with_span else word


def pick_kind(raw: str | None, default: str = "month") -> str:
    kind = raw or default
    if kind not in KINDS:
        raise ValidationError(
            f"周期须为 {'/'.join(KINDS)} (kind must be one of {', '.join(KINDS)}), got {raw!r}",
            field="kind",
        )
    return kind


def pick_period(kind: str, raw: str | None) -> Period:
    """The period asked for (``period=``: ``Period.key`` such as 2026-11, 2026-W48,
    2026-Q4, or any day in it), of ``kind``; without one, the current period."""
    if not raw:
        return period_containing(kind, today())
    period = parse_period(kind, raw)
    if not FIRST_YEAR <= period.start.year <= LAST_YEAR:
        # the pages also reach the period before, the one after and last year's
        raise ValidationError(
            f"期间须在 {FIRST_YEAR} 至 {LAST_YEAR} 年之间 (period out of range), got {raw!r}",
            field="period",
        )
    return period


def recent_periods(kind: str, ending: Period, n: int = 12) -> list[Period]:
    """``ending`` and the ``n - 1`` periods before it, newest first (the period picker)."""
    out = [ending]
    for _ in range(n - 1):
        out.append(out[-1].previous())
    return out


def period_value(period: Period) -> str:
    """The text a period is asked for by (``period=``), which ``parse_period`` reads."""
    return period.key


# ---- showing figures ------------------------------------------------------------------


def _round_half_up(value: Fraction) -> int:
    sign = -1 if value < 0 else 1
    return sign * int(abs(value) + Fraction(1, 2))


def show(value: Any, unit: str) -> str:
    """A figure as the screen shows it: ¥ yuan for money, one-decimal percentages for
    ratios, counts with separators, "—" when there is nothing to measure."""
    if value is None:
        return "—"
    if unit == TEXT or isinstance(value, str | Change):
        return str(value)
    value = Fraction(value)
    if unit in MONEY_UNITS:
        fen = _round_half_up(value)
        sign = "-" if fen < 0 else ""
        whole, cents = divmod(abs(fen), 100)
        return f"{sign}¥{whole:,}.{cents:02d}"
    if unit in RATIO_UNITS:
        tenths = _round_half_up(value * 1000)
        sign = "-" if tenths < 0 else ""
        return f"{sign}{abs(tenths) // 10}.{abs(tenths) % 10}%"
    if value.denominator == 1:
        text = f"{int(value):,}"
    else:
        hundredths = _round_half_up(value * 100)
        sign = "-" if hundredths < 0 else ""
        text = f"{sign}{abs(hundredths) // 100:,}.{abs(hundredths) % 100:02d}"
    return text + UNIT_SUFFIX.get(unit, "")


@dataclass(frozen=True)
class Change:
    text: str
    direction: str  # up | down | flat
    tone: str  # good | bad | flat (the colour)

    @property
    def css(self) -> str:
        return f"{self.direction} tone-{self.tone}"

    def __str__(self) -> str:  # in a report's table and its export
        return self.text


def change(current_value: Any, previous_value: Any, unit: str, better: int = 1) -> Change:
    """How a figure moved: ratios in percentage points (+1.2 个百分点), everything else
    relative (+12.3%); a start from nothing is 新增. ``better`` is the figure's good
    direction (``Kpi.better``: +1 up, -1 down, 0 neither), which colours it."""
    if current_value is None or previous_value is None:
        return Change("—", "flat", "flat")
    cur, prev = Fraction(current_value), Fraction(previous_value)
    if cur == prev:
        return Change("持平", "flat", "flat")
    direction = "up" if cur > prev else "down"
    if better == 0:
        tone = "flat"
    else:
        tone = "good" if (direction == "up") == (better > 0) else "bad"
    arrow = "▲" if direction == "up" else "▼"
    if unit in RATIO_UNITS:
        tenths = _round_half_up((cur - prev) * 1000)
        text = f"{arrow} {abs(tenths) // 10}.{abs(tenths) % 10} 个百分点"
    elif prev == 0:
        text = f"{arrow} 新增"
    else:
        tenths = _round_half_up((cur - prev) / abs(prev) * 1000)
        text = f"{arrow} {abs(tenths) // 10}.{abs(tenths) % 10}%"
    return Change(text, direction, tone)


# ---- the KPI engine, as these pages use it ------------------------------------------


def kpi_list(kind: str) -> list[kpis.Kpi]:
    """The figures a summary of ``kind`` shows: each defined for it, one value each (a
    figure per member group is a breakdown of its own). Daily and weekly tracking shows
    the tracking figures (what happened); the analysis and review figures (the member
    base: active, churn, dormant, activation...) from the month up."""
    return [
        k
        for k in kpis.KPIS
        if k.group is None
        and kind in k.kinds
        and (k.cadence == "tracking" or kind in ("month", "quarter", "year"))
    ]


def dashboard_kpis() -> list[kpis.Kpi]:
    return [kpis.BY_KEY[key] for key in DASHBOARD_KEYS]


@dataclass(frozen=True)
class Compared:
    current: dict[str, Any]
    previous: dict[str, Any]
    last_year: dict[str, Any]


def series_points(
    db: pw.Database, scope: Scope, kind: str, n: int, ending: dt.date, key: str
) -> list[tuple[str, Any]]:
    """(label, value) oldest first for a line chart: ``key`` over the last ``n`` periods
    of ``kind`` up to the one containing ``ending``."""
    return [
        (_short_label(item["period"]), item.get(key))
        for item in kpis.series(db, scope, kind, n, ending, keys=(key,))
    ]


def _short_label(period: Period) -> str:
    if period.kind == "day":
        return f"{period.start.month}/{period.start.day}"
    if period.kind == "month":
        return f"{period.start.month}月"
    if period.kind == "week":
        return f"{period.start.month}/{period.start.day}周"
    return period.label


# a breakdown's figures that are not a KPI of their own
EXTRA_COLUMNS = {"contribution": ("贡献率", "ratio")}
# the figures each kind of breakdown row carries (kpis.breakdown), in the engine's order
BREAKDOWN_KEYS: dict[str, tuple[str, ...]] = {
    "store": kpis.PLACE_KEYS,
    "area": kpis.PLACE_KEYS,
    "staff": kpis.STAFF_ROW_KEYS,
    "tier": kpis.GROUP_KEYS,
    "card_type": kpis.GROUP_KEYS,
    "gender": kpis.GROUP_KEYS,
}


def breakdown_columns(by: str, rows: list[dict[str, Any]]) -> list[Column]:
    """The columns of a breakdown: the row's name, then each figure the rows carry, named
    and typed as the KPI engine names them (a staff row's figures are ``STAFF_KPIS``)."""
    names: dict[str, tuple[str, str]] = {k.key: (k.zh, k.unit) for k in kpis.KPIS}
    if by == "staff":
        names.update({k.key: (k.zh, k.unit) for k in kpis.STAFF_KPIS})
    names.update(EXTRA_COLUMNS)
    keys = list(BREAKDOWN_KEYS[by])
    for row in rows[:1]:
        keys += [k for k in row if k not in keys and k not in ("key", "label")]
    columns = [Column("label", ROW_WORDS[by])]
    for key in keys:
        zh, unit = names.get(key, (key, "count"))
        columns.append(Column(key, zh, unit))
    return columns


# ---- the reports, as tables -----------------------------------------------------------


@dataclass
class Report:
    """One report: what it covers and its table (the screen and the export share it)."""

    kind: str
    period: Period
    choice: ScopeChoice
    by: str
    table: Table

    @property
    def name(self) -> str:
        by = f" {BY[self.by]}" if self.by else ""
        return f"{KINDS[self.kind]} {self.period.label} {self.choice.label}{by}"

    @property
    def filename(self) -> str:
        by = f"-{self.by}" if self.by else ""
        scope = self.choice.value.replace(":", "-")
        return f"huiyuan-report-{self.kind}-{period_value(self.period)}-{scope}{by}"


def _breakdown_scope(choice: ScopeChoice) -> Scope | None:
    return None if choice.scope.kind == "chain" else choice.scope


def build_report(
    db: pw.Database,
    kind: str,
    period: Period,
    choice: ScopeChoice,
    by: str,
    day: dt.date | None = None,
) -> Report:
    """A report of ``period``. ``day`` (the business day): a period still running on it
    is compared to date (本期至今 against 上月同期 and 去年同期, ``kpis.compare``); a
    finished period, or ``day`` None, whole periods."""
    if by not in BY:
        raise ValidationError(
            f"汇总维度须为 {'/'.join(k for k in BY if k)} 或留空 (by must be one of"
            f" {', '.join(k for k in BY if k)} or empty), got {by!r}",
            field="by",
        )
    if by == "area" and choice.scope.kind == "store":
        raise ValidationError("门店范围内不能按区域汇总 (no area breakdown within one store)")
    notes = [
        ("期间", f"{period.label} ({period.start.isoformat()} – {period.last_day.isoformat()})"),
        ("范围", choice.label),
        ("维度", BY[by]),
    ]
    if not by:
        shown = kpi_list(kind)
        keys = tuple(k.key for k in shown)
        with_last_year = kind in ("month", "quarter")  # analysis: and the same period last year
        got = kpis.compare(db, choice.scope, period, keys, day, last_year=with_last_year)
        spans: dict[str, Period] = got["periods"]
        # tracking, and the review (whose previous period is last year): no last year
        figures = Compared(got["current"], got["previous"], got["last_year"])
        current, before, last_year = spans["current"], spans["previous"], spans["last_year"]
        cut = got["to_date"]
        cols = [
            Column("kpi", "指标"),
            Column("current", f"本期至今 ({current.span})" if cut else "本期", CELL),
            Column("previous", previous_words(kind, before, with_span=True), CELL),
            Column("change", "环比" if kind != "year" else "同比", TEXT),
        ]
        if with_last_year:
            ly_word = f"去年同期 ({last_year.span})" if cut else "去年同期"
            cols += [Column("last_year", ly_word, CELL), Column("yoy", "同比", TEXT)]
        compared_spans = f"{current.label} 对比 {before.label}"
        if with_last_year:
            compared_spans += f"、{last_year.label}"
        if cut:
            compared_spans += f" (至{day.month}月{day.day}日, 各取同样天数)"
            notes.append(("对比", compared_spans))
            notes.append(
                (
                    "截至当日",
                    "有效会员、增长、流失、沉睡、唤醒只对整月以上定义: 本期为截至当日的数,"
                    " 不作对比",
                )
            )
        else:
            notes.append(("对比", compared_spans))
        table = Table(f"{KINDS[kind]} {period.label}", cols, [], notes)
        # one row per figure: its values carry the row's unit (the columns mix money,
        # counts and ratios)
        for kpi in shown:
            cur = figures.current.get(kpi.key)
            prev = figures.previous.get(kpi.key)
            name = kpi.zh
            if kpi.key in got["as_of"]:  # whole months only: as of the day, not compared
                cur = got["as_of"][kpi.key]
                name = f"{kpi.zh} (截至{day.month}月{day.day}日)"
            row: list[Any] = [name, Cell(cur, kpi.unit), Cell(prev, kpi.unit)]
            row.append(change(cur, prev, kpi.unit, kpi.better))
            if with_last_year:
                ly = figures.last_year.get(kpi.key)
                row.append(Cell(ly, kpi.unit))
                row.append(change(cur, ly, kpi.unit, kpi.better))
            table.rows.append(row)
        return Report(kind, period, choice, by, table)
    rows = list(kpis.breakdown(db, by, period, within=_breakdown_scope(choice)))
    columns = breakdown_columns(by, rows)
    table = Table(f"{KINDS[kind]} {period.label} {BY[by]}", columns, [], notes)
    for r in rows:
        table.rows.append([r.get(c.key) for c in columns])
    return Report(kind, period, choice, by, table)


# ---- views ----------------------------------------------------------------------------


def dashboard() -> Any:
    """概览: this day / week / month against the previous one, for the chosen scope."""
    from hq.console import render

    db = _db()
    choice = pick_scope(request.args.get("scope"))
    kind = request.args.get("kind") or "month"
    if kind not in DASHBOARD_KINDS:
        raise ValidationError(
            f"周期须为 day/week/month (kind must be day, week or month), got {kind!r}",
            field="kind",
        )
    day = today()
    period = period_containing(kind, day)
    # this period so far and the one before to the same day (上月同期); on its last day
    # (and for a day) whole periods. The dashboard shows no last year: not asked for.
    so_far = to_date(period, day)
    before_period = so_far.previous()
    now = kpis.figures(db, choice.scope, so_far, DASHBOARD_KEYS)
    before = kpis.figures(db, choice.scope, before_period, DASHBOARD_KEYS)
    cards = []
    # the whole-month figures (active members) are not defined for 1-5 December: the
    # month's own so far (as of today), not compared (docs/kpis.md "Periods to date")
    as_of: dict[str, Any] = {}
    month_only = [k for k in DASHBOARD_KEYS if k in kpis.MONTH_ONLY_KEYS]
    if so_far.is_cut and month_only and kpis.whole_months(period):
        as_of = kpis.figures(db, choice.scope, period, month_only)
    for kpi in dashboard_kpis():
        cur = as_of.get(kpi.key, now.get(kpi.key))
        prev = before.get(kpi.key)
        cards.append(
            {
                "kpi": kpi,
                "value": show(cur, kpi.unit),
                "previous": show(prev, kpi.unit),
                "change": change(cur, prev, kpi.unit, kpi.better),
                "lead": kpi.key == SHARE_KEY,
                "note": f"截至{day.month}月{day.day}日" if kpi.key in as_of else "",
            }
        )
    glance = _at_a_glance(db, choice.scope, day, {kind: (now, before)})
    units = {k.key: k.unit for k in kpis.KPIS}
    share_unit, sales_unit = units[SHARE_KEY], units[SALES_KEY]
    month = period_containing("month", day)
    share_line = charts.line_chart(
        series_points(db, choice.scope, "month", 12, day, SHARE_KEY),
        share_unit,
        f"近12个月会员交易额占有率 (至{month.label})",
    )
    daily_sales = charts.line_chart(
        series_points(db, choice.scope, "day", day.day, day, SALES_KEY),
        sales_unit,
        f"{month.label}每日销售额",
        css="line sales",
    )
    per_store = per_store_sales = None
    stores_cut = False
    if choice.scope.kind != "store":
        # the biggest stores by sales (a chain of 200 would not fit a screen)
        rows = kpis.breakdown(db, "store", period, within=_breakdown_scope(choice))
        stores_cut = len(rows) > TOP_STORES
        rows = rows[:TOP_STORES]
        per_store = charts.bar_chart(
            [(r["label"], r.get(SHARE_KEY)) for r in rows],
            share_unit,
            f"{DASHBOARD_KINDS[kind]}各门店会员交易额占有率",
        )
        per_store_sales = charts.bar_chart(
            [(r["label"], r.get(SALES_KEY)) for r in rows],
            sales_unit,
            f"{DASHBOARD_KINDS[kind]}各门店销售额",
            css="bars sales",
        )
    return render(
        "dashboard.html",
        choice=choice,
        choices=scope_choices(),
        kind=kind,
        kinds=DASHBOARD_KINDS,
        period=period,
        so_far=so_far,
        before_period=before_period,
        previous_word=previous_words(kind, before_period),
        previous_span=previous_words(kind, before_period, with_span=True),
        cards=cards,
        glance=glance,
        glance_kpis=[kpis.BY_KEY[k] for k in GLANCE_KEYS],
        share_line=share_line,
        daily_sales=daily_sales,
        per_store=per_store,
        per_store_sales=per_store_sales,
        top_stores=TOP_STORES,
        stores_cut=stores_cut,
        month=month,
        report_url=url_for(
            "reports.reports_page", kind=kind, period=period_value(period), scope=choice.value
        ),
    )


GLANCE_KEYS = ("member_sales_share", "sales_fen", "tickets", "new_members")


def _at_a_glance(
    db: pw.Database,
    scope: Scope,
    day: dt.date,
    known: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Today, this week and this month side by side, each against the one before, for the
    few figures a manager looks at first (the chosen cadence's are already known)."""
    rows = []
    for kind, word in DASHBOARD_KINDS.items():
        period = to_date(period_containing(kind, day), day)
        if kind in known:
            now, before = known[kind]
        else:
            now = kpis.figures(db, scope, period, GLANCE_KEYS)
            before = kpis.figures(db, scope, period.previous(), GLANCE_KEYS)
        cells = []
        for key in GLANCE_KEYS:
            kpi = kpis.BY_KEY[key]
            cur, prev = now.get(key), before.get(key)
            cells.append(
                {
                    "value": show(cur, kpi.unit),
                    "previous": show(prev, kpi.unit),
                    "change": change(cur, prev, kpi.unit, kpi.better),
                }
            )
        rows.append(
            {
                "kind": kind,
                "word": word,
                "previous_word": previous_words(kind, period.previous()),
                "cells": cells,
            }
        )
    return rows


def _report_from_args() -> Report:
    choice = pick_scope(request.args.get("scope"))
    kind = pick_kind(request.args.get("kind"))
    period = pick_period(kind, request.args.get("period"))
    by = request.args.get("by", "")
    # a period still running: to date, unless whole periods are asked for (whole=1)
    whole = request.args.get("whole", "")
    if whole not in ("", "0", "1"):
        raise ValidationError(f"whole 须为 0 或 1 (whole must be 0 or 1), got {whole!r}")
    day = None if whole == "1" else today()
    return build_report(_db(), kind, period, choice, by, day)


@bp.get("/reports")
@requires("reports.read")
def reports_page() -> Any:
    from hq.console import render

    report = _report_from_args()
    db = _db()
    trend = None
    if not report.by:
        trend = _trend_chart(db, report)
    bars = None
    if report.by and report.table.rows:
        bars = _breakdown_chart(report)
    args = {"kind": report.kind, "scope": report.choice.value, "by": report.by}
    # a running period's summary is to date; whole periods on request (whole=1)
    whole_url = to_date_url = None
    running = report.period.contains(today()) and today() < report.period.last_day
    if running and not report.by:
        here = {**args, "period": period_value(report.period)}
        if request.args.get("whole") == "1":
            to_date_url = url_for("reports.reports_page", **here)
        else:
            whole_url = url_for("reports.reports_page", whole="1", **here)
    last_day = today() if whole_url else report.period.last_day  # a summary to date
    return render(
        "reports.html",
        report=report,
        kinds=KINDS,
        cadence=CADENCE,
        by_options=_by_options(report.choice),
        choices=scope_choices(),
        recent=recent_periods(report.kind, period_containing(report.kind, today())),
        period_value=period_value,
        trend=trend,
        bars=bars,
        cell=_show_cell,
        tone=_tone,
        last_day=last_day,
        previous_url=url_for(
            "reports.reports_page", period=period_value(report.period.previous()), **args
        ),
        next_url=_next_url(report, args),
        export_urls={
            fmt: url_for(
                "reports.export",
                period=period_value(report.period),
                format=fmt,
                **args,
                **({"whole": "1"} if request.args.get("whole") == "1" else {}),
            )
            for fmt in EXPORT_FORMATS
        },
        can_export=current().can("reports.export"),
        compared_spans=dict(report.table.notes).get("对比"),
        whole_url=whole_url,
        to_date_url=to_date_url,
    )


def _next_url(report: Report, args: dict[str, str]) -> str | None:
    following = period_containing(report.kind, report.period.end)
    if following.start > today():
        return None
    return url_for("reports.reports_page", period=period_value(following), **args)


def _by_options(choice: ScopeChoice) -> dict[str, str]:
    if choice.scope.kind == "store":
        return {k: v for k, v in BY.items() if k != "area"}
    return dict(BY)


def _tone(value: Any) -> str:
    return value.css if isinstance(value, Change) else ""


def _show_cell(value: Any, unit: str) -> str:
    if isinstance(value, Cell):
        return show(value.value, value.unit)
    return show(value, unit)


def _trend_chart(db: pw.Database, report: Report) -> tuple[str, Markup]:
    """The trend behind a summary: 14 days, 12 weeks, 12 months or 8 quarters up to the
    period; a yearly review shows its own year's months."""
    kind, period = report.kind, report.period
    unit = kpis.BY_KEY[SHARE_KEY].unit
    if kind == "year":
        points = series_points(db, report.choice.scope, "month", 12, period.last_day, SHARE_KEY)
        title = f"{period.label}各月会员交易额占有率"
    else:
        n = {"day": 14, "week": 12, "month": 12, "quarter": 8}[kind]
        points = series_points(db, report.choice.scope, kind, n, period.start, SHARE_KEY)
        title = f"会员交易额占有率 · 至{period.label}的{n}{_UNIT_WORD[kind]}"
    return title, charts.line_chart(points, unit, title, width=REPORT_CHART_WIDTH, height=220)


_UNIT_WORD = {"day": "天", "week": "周", "month": "个月", "quarter": "个季度"}
CHART_PREFERENCE = (SHARE_KEY, "contribution", SALES_KEY, "recruited_sales_fen")


def _breakdown_chart(report: Report) -> tuple[str, Markup] | None:
    """A breakdown's bars: its member sales share, group contribution or sales."""
    columns = report.table.columns
    index = next(
        (i for key in CHART_PREFERENCE for i, c in enumerate(columns) if c.key == key), None
    )
    if index is None:
        return None
    column = columns[index]
    title = f"{column.zh} · {BY[report.by]}"
    if len(report.table.rows) > MOST_BARS:
        title += f" (前{MOST_BARS})"
    bars = charts.bar_chart(
        [(str(row[0]), row[index]) for row in report.table.rows[:MOST_BARS]],
        column.unit,
        title,
        width=REPORT_CHART_WIDTH,
    )
    return title, bars


@bp.get("/reports/export")
@requires("reports.export")
def export() -> Any:
    fmt = request.args.get("format", "xlsx")
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(
            f"导出格式须为 xlsx 或 csv (format must be xlsx or csv), got {fmt!r}", field="format"
        )
    db = _db()
    report = _report_from_args()
    table = report.table
    me = current()
    now = utcnow()
    table.notes.append(("导出人", me.display_name or me.actor))
    with db.atomic():
        audit.record(
            db,
            me.actor,
            "report.export",
            report.name,
            store=report.choice.scope.key if report.choice.scope.kind == "store" else None,
            format=fmt,
            kind=report.kind,
            period=period_value(report.period),
            scope=report.choice.value,
            by=report.by,
            rows=len(table.rows),
        )
    if fmt == "xlsx":
        body, mime = to_xlsx(table, generated_at=now), XLSX_MIME
    else:
        body, mime = to_csv(table), CSV_MIME
    filename = f"{report.filename}.{fmt}"
    resp = Response(body, mimetype=mime)
    # HTTP headers are Latin-1: an ASCII name for old clients, the real one (an area may
    # be 华东) in RFC 5987 form for every browser since IE9
    plain = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    resp.headers["Content-Disposition"] = (
        f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename)}"
    )
    return resp
