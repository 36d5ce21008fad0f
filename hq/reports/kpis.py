# ruff: noqa: S608 - the SQL text holds identifiers and placeholders only; every value is bound
"""The figures a chain manages by (docs/kpis.md has each one's formula, period, cadence
and freshness). They read only the summary tables (hq/reports/summary.py) and a few
indexed ones, so each call stays well under a second at chain scale.

Values: ``int`` (counts, fen), ``fractions.Fraction`` (ratios and averages: exact, never
a float), ``dict[str, Fraction]`` for a figure per member group, or ``None`` when the
denominator is empty (an empty period, a store without members).

Two notions of "whose": sales figures follow where the sale happened (``store``); the
member-base figures (new members, activation, active, growth, churn, dormant, wake-up,
age) follow the member's home store, where they registered (the store that keeps them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import peewee as pw

from core.errors import NotFound, ValidationError
from hq.models import Store, is_postgres
from hq.reports.periods import CHAIN, Period, Scope, add_months, period_containing

# ---- the chain's thresholds (seeds/000, 003: 沉睡会员 = no purchase for 3 months) ---------

ACTIVE_MONTHS = (
    3  # 有效会员: bought in the last 3 calendar months (the period's month and 2 before)
)
DORMANT_MONTHS = 3  # 沉睡会员: bought before, but not in the 3 months before the period
ACTIVATION_DAYS = 30  # 激活: a new member bought again within 30 days after registering
REPEAT_TICKETS = 2  # 回头: at least 2 purchases in the period (in the scope)


@dataclass(frozen=True, slots=True)
class Kpi:
    """One figure: ``key`` (English, stable), ``zh`` and ``en`` names, ``unit`` (count |
    fen | ratio | days | years | qty | per_member), ``cadence`` (tracking: daily/weekly;
    analysis: monthly/quarterly; review: yearly), ``base`` (True: follows the member's home
    store; False: where the sale happened), ``kinds``: the period kinds it is defined
    for, ``group`` (for a figure per member group: tier | card_type | gender), ``better``
    (+1 higher is better, -1 lower is better, 0 neither)."""

    key: str
    zh: str
    en: str
    unit: str
    cadence: str = "tracking"
    base: bool = False
    kinds: tuple[str, ...] = ("day", "week", "month", "quarter", "year")
    group: str | None = None
    better: int = 1


_MONTHLY = ("month", "quarter", "year")

KPIS: list[Kpi] = [
    Kpi("sales_fen", "销售额", "Sales", "fen"),
    Kpi("member_sales_fen", "会员销售额", "Member sales", "fen"),
    Kpi("member_sales_share", "会员交易额占有率", "Member sales share", "ratio"),
    Kpi("tickets", "交易笔数", "Tickets", "count"),
    Kpi("member_tickets", "会员交易笔数", "Member tickets", "count"),
    Kpi("new_members", "新增开卡数", "New members", "count", base=True),
    Kpi("new_member_rate", "新开卡率", "New member rate", "ratio", base=True),
    Kpi("activation_rate", "激活率", "Activation rate", "ratio", "review", base=True),
    Kpi("buyers", "消费会员数", "Buying members", "count"),
    Kpi("active_members", "有效会员数", "Active members", "count", "analysis", True, _MONTHLY),
    Kpi("member_growth", "会员增长率", "Member growth", "ratio", "analysis", True, _MONTHLY),
    Kpi("churn_rate", "流失率", "Churn rate", "ratio", "analysis", True, _MONTHLY, better=-1),
    Kpi("repeat_rate", "回头率", "Repeat rate", "ratio"),
    Kpi("repeat_frequency", "回头频率", "Repeat frequency", "per_member", "analysis"),
    Kpi(
        "avg_return_days",
        "平均回头天数",
        "Average days between visits",
        "days",
        "analysis",
        better=-1,
    ),
    Kpi("avg_ticket", "客单价", "Average ticket (members)", "fen"),
    Kpi("all_avg_ticket", "全店客单价", "Average ticket (all sales)", "fen"),
    Kpi("items_per_ticket", "客单件", "Items per ticket (members)", "qty"),
    Kpi("avg_item_price", "件单价", "Average item price (members)", "fen"),
    Kpi("attach_rate", "连带率", "Lines per ticket (members)", "qty"),
    Kpi("contribution_tier", "等级贡献率", "Contribution by tier", "ratio", group="tier", better=0),
    Kpi(
        "contribution_card_type",
        "卡类贡献率",
        "Contribution by card type",
        "ratio",
        group="card_type",
        better=0,
    ),
    Kpi(
        "gender_contribution",
        "性别贡献率",
        "Contribution by gender",
        "ratio",
        "analysis",
        group="gender",
        better=0,
    ),
    Kpi("avg_age", "平均年龄", "Average age (buying members)", "years", "analysis", better=0),
    Kpi(
        "dormant_members",
        "沉睡会员数",
        "Dormant members",
        "count",
        "review",
        True,
        _MONTHLY,
        better=-1,
    ),
    Kpi("wake_rate", "唤醒率", "Wake-up rate", "ratio", "review", True, _MONTHLY),
    Kpi("coupons_issued", "发券数", "Coupons issued", "count", "analysis"),
    Kpi(
        "coupon_redemption_rate",
        "促销转化率(券核销率)",
        "Coupon redemption rate",
        "ratio",
        "analysis",
    ),
    Kpi("campaign_coupons_issued", "活动发券数", "Campaign coupons issued", "count", "analysis"),
    Kpi(
        "campaign_redemption_rate",
        "活动券核销率",
        "Campaign coupon redemption",
        "ratio",
        "analysis",
    ),
    Kpi("returns_fen", "退货额", "Returns", "fen", better=-1),
]

# a staff member's figures (Scope("staff", code)): recruited, their sales, maintained
STAFF_KPIS: list[Kpi] = [
    Kpi("new_members", "发展会员数", "Members recruited", "count", base=True),
    Kpi("activation_rate", "激活率", "Activation rate", "ratio", "review", base=True),
    Kpi("recruited_sales_fen", "所发展会员销售额", "Sales of members recruited", "fen"),
    Kpi("maintained_members", "维护会员数", "Members maintained", "count", base=True),
    Kpi("maintained_buyers", "维护会员消费人数", "Maintained members who bought", "count"),
    Kpi("maintained_repeat_rate", "维护会员回头率", "Maintained members' repeat rate", "ratio"),
]

BY_KEY = {k.key: k for k in KPIS}
STAFF_BY_KEY = {k.key: k for k in STAFF_KPIS}
DASHBOARD_KEYS = (
    "sales_fen",
    "member_sales_share",
    "tickets",
    "new_members",
    "new_member_rate",
    "buyers",
    "repeat_rate",
    "avg_ticket",
    "items_per_ticket",
    "avg_item_price",
    "attach_rate",
)
BREAKDOWN_BY = ("store", "area", "staff", "tier", "card_type", "gender")


# ---- SQL helpers (one text for SQLite and PostgreSQL) ---------------------------------


class Sql:
    """Builds a query's WHERE parts with bound parameters; ``?`` in the text becomes the
    database's placeholder."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.pg = is_postgres(db)
        self.params: list[Any] = []

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def one_of(self, column: str, values: list[str] | None) -> str:
        """``column IN (...)``; None: no condition (the whole chain)."""
        if values is None:
            return "1=1"
        if not values:
            return "1=0"
        if self.pg:
            return f"{column} = ANY({self.p(list(values))})"
        return f"{column} IN ({', '.join(self.p(v) for v in values)})"

    def days_between(self, later: str, earlier: str) -> str:
        if self.pg:
            return f"({later} - {earlier})"
        return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"

    def plus_days(self, column: str, n: int) -> str:
        if self.pg:
            return f"({column} + {int(n)})"
        return f"date({column}, '+{int(n)} days')"

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        text = sql.replace("?", "%s") if self.pg else sql
        params = self.params if self.pg else [_sqlite_value(v) for v in self.params]
        return list(self.db.execute_sql(text, params).fetchall())


def _sqlite_value(value: Any) -> Any:
    """Dates as peewee writes them to SQLite (text)."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def stores_of(db: pw.Database, scope: Scope) -> list[str] | None:
    """The store codes a scope covers (None: the whole chain). A staff member's scope is
    their store (for the sales figures); their own figures follow their members."""
    if scope.kind == "chain":
        return None
    if scope.kind == "store":
        return [scope.key]
    if scope.kind == "area":
        return [s.code for s in Store.select(Store.code).where(Store.area == scope.key)]
    from hq.models import StaffMember

    staff = StaffMember.get_or_none(StaffMember.code == scope.key)
    if staff is None:
        raise NotFound(f"员工不存在: {scope.key} (unknown staff)", field="key")
    return [staff.store]


def ratio_of(num: int | None, den: int | None) -> Fraction | None:
    if not den:
        return None
    return Fraction(int(num or 0), int(den))


def _fen(num: int | None, den: int | None) -> int | None:
    """Money per something: fen rounded half up (never a float)."""
    if not den:
        return None
    num = int(num or 0)
    q, r = divmod(num, int(den))
    return q + (1 if 2 * r >= int(den) else 0)


def _spend_rows(q: Sql, period: Period, alias: str = "") -> str:
    """WHERE part selecting a period's member rows: its own kind's row, or the days of a
    week or of a period to date (a cut month's month row holds the whole month)."""
    kind = "day" if period.kind == "week" or period.is_cut else period.kind
    a = alias
    return f"{a}kind = {q.p(kind)} AND {a}start >= {q.p(period.start)} AND {a}start < {q.p(period.end)}"


def _window(q: Sql, first: dt.date, end: dt.date) -> str:
    """WHERE part: month rows of the months from ``first`` (a first of month) to ``end``."""
    return f"kind = 'month' AND start >= {q.p(first)} AND start < {q.p(end)}"


def _active_window(day: dt.date) -> tuple[dt.date, dt.date]:
    """The months a member must have bought in to be active on ``day``: [first, end)."""
    month = day.replace(day=1)
    return add_months(month, 1 - ACTIVE_MONTHS), add_months(month, 1)


# ---- the figures, in groups of one query each ------------------------------------------


def _sales(db: pw.Database, stores: list[str] | None, period: Period) -> dict[str, Any]:
    """The additive figures, from ``report_store_day``."""
    q = Sql(db)
    (row,) = q.run(
        "SELECT COALESCE(SUM(tickets),0), COALESCE(SUM(sales_fen),0), COALESCE(SUM(returns_fen),0),"
        " COALESCE(SUM(m_tickets),0), COALESCE(SUM(m_sales_fen),0), COALESCE(SUM(m_returns_fen),0),"
        " COALESCE(SUM(m_items),0), COALESCE(SUM(m_returned_items),0), COALESCE(SUM(m_lines),0)"
        f" FROM report_store_day WHERE day >= {q.p(period.start)} AND day < {q.p(period.end)}"
        f" AND {q.one_of('store', stores)}"
    )
    tickets, sales, returns, m_tickets, m_sales, m_returns, m_items, m_ret_items, m_lines = map(
        int, row
    )
    net, m_net = sales - returns, m_sales - m_returns
    m_items_net = m_items - m_ret_items
    return {
        "sales_fen": net,
        "member_sales_fen": m_net,
        "returns_fen": returns,
        "tickets": tickets,
        "member_tickets": m_tickets,
        "member_sales_share": ratio_of(m_net, net) if net > 0 else None,
        "avg_ticket": _fen(m_net, m_tickets),
        "all_avg_ticket": _fen(net, tickets),
        "items_per_ticket": ratio_of(m_items_net, m_tickets),
        "avg_item_price": _fen(m_net, m_items_net) if m_items_net > 0 else None,
        "attach_rate": ratio_of(m_lines, m_tickets),
    }


BUYER_FIELDS = ("buyers", "tickets", "repeaters", "gaps", "intervals", "ages", "aged")
BASE_FIELDS = ("new", "activated", "active_end", "active_before", "kept", "ever", "recent", "woken")


def buyers_raw(
    db: pw.Database, period: Period, stores: list[str] | None = None, by: str = "chain"
) -> dict[str, tuple[int, ...]]:
    """Distinct members who bought in the period, per member over a scope's stores: one
    ``BUYER_FIELDS`` tuple for the whole of ``stores`` (by chain, key ""), or per store or
    per area (``by``)."""
    q = Sql(db)
    join, group = "", "''"
    if by == "store":
        group = "s.store"
    elif by == "area":
        join, group = " JOIN store st ON st.code = s.store", "COALESCE(st.area, '')"
    gap = q.days_between("l", "f")
    year = period.last_day.year
    where = _spend_rows(q, period, "s.")
    where += " AND " + q.one_of("s.store", stores)
    rows = q.run(
        "SELECT g, COUNT(*), COALESCE(SUM(t),0),"
        f" COALESCE(SUM(CASE WHEN t >= {REPEAT_TICKETS} THEN 1 ELSE 0 END),0),"
        f" COALESCE(SUM(CASE WHEN t >= 2 THEN {gap} ELSE 0 END),0),"
        " COALESCE(SUM(CASE WHEN t >= 2 THEN t - 1 ELSE 0 END),0),"
        f" COALESCE(SUM(CASE WHEN y IS NOT NULL THEN {int(year)} - y ELSE 0 END),0),"
        " COALESCE(SUM(CASE WHEN y IS NOT NULL THEN 1 ELSE 0 END),0)"
        f" FROM (SELECT {group} AS g, s.member_id, SUM(s.tickets) AS t, MIN(s.first_day) AS f,"
        f" MAX(s.last_day) AS l, MAX(s.birth_year) AS y FROM report_member_spend s{join}"
        f" WHERE {where} GROUP BY 1, 2) m WHERE t > 0 GROUP BY g"
    )
    return {str(r[0]): tuple(int(v) for v in r[1:]) for r in rows}


def buyer_figures(raw: tuple[int, ...] | None) -> dict[str, Any]:
    buyers, tickets, repeaters, gaps, intervals, ages, aged = raw or (0,) * len(BUYER_FIELDS)
    return {
        "buyers": buyers,
        "repeat_rate": ratio_of(repeaters, buyers),
        "repeat_frequency": ratio_of(tickets, buyers),
        "avg_return_days": ratio_of(gaps, intervals),
        "avg_age": ratio_of(ages, aged),
    }


def _by_home(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    return {str(k or ""): int(v) for k, v in rows}


def base_raw(
    db: pw.Database, period: Period, stores: list[str] | None = None
) -> dict[str, tuple[int, ...]]:
    """The member-base counts per home store (``BASE_FIELDS``; additive over stores, as
    every member has one home store): new members and those activated; for a month,
    quarter or year also the active members at its end and before it, those active at
    both (kept), those who ever bought before the dormancy cut, those of them who bought
    in the months before the period (recent), and the dormant ones who bought in it."""
    parts: dict[str, dict[str, int]] = {}
    q = Sql(db)
    later = q.plus_days("r.reg_day", ACTIVATION_DAYS)
    text = (
        "SELECT r.home_store, COUNT(*), COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM"
        " report_member_spend s WHERE s.member_id = r.member_id AND s.kind = 'day'"
        f" AND s.start > r.reg_day AND s.start <= {later} AND s.tickets > 0) THEN 1 ELSE 0 END),0)"
        " FROM report_member r WHERE NOT r.merged"
        f" AND r.reg_day >= {q.p(period.start)} AND r.reg_day < {q.p(period.end)} AND "
    )  # the parameters in the text's order
    rows = q.run(text + q.one_of("r.home_store", stores) + " GROUP BY 1")
    parts["new"] = {str(k or ""): int(n) for k, n, _ in rows}
    parts["activated"] = {str(k or ""): int(a) for k, _, a in rows}
    if whole_months(period):
        before_day = period.start - dt.timedelta(days=1)
        f1, e1 = _active_window(before_day)
        f2, e2 = _active_window(period.last_day)
        cut = add_months(period.start, -DORMANT_MONTHS)

        def window(q: Sql, first: dt.date, end: dt.date) -> str:
            text = f"{_window(q, first, end)} AND tickets > 0 AND "
            return text + q.one_of("home_store", stores)

        for name, (first, end) in (("active_end", (f2, e2)), ("active_before", (f1, e1))):
            q = Sql(db)
            parts[name] = _by_home(
                q.run(
                    "SELECT home_store, COUNT(DISTINCT member_id) FROM report_member_spend"
                    f" WHERE {window(q, first, end)} GROUP BY 1"
                )
            )
        q = Sql(db)
        w1 = window(q, f1, e1)
        w2 = window(q, f2, e2)
        parts["kept"] = _by_home(
            q.run(
                "SELECT home_store, COUNT(*) FROM (SELECT member_id, home_store FROM"
                f" report_member_spend WHERE {w1} INTERSECT SELECT member_id, home_store FROM"
                f" report_member_spend WHERE {w2}) k GROUP BY 1"
            )
        )
        q = Sql(db)
        text = f"SELECT home_store, COUNT(*) FROM report_member WHERE NOT merged AND first_day < {q.p(cut)} AND "
        parts["ever"] = _by_home(q.run(text + q.one_of("home_store", stores) + " GROUP BY 1"))
        q = Sql(db)
        text = (
            "SELECT s.home_store, COUNT(DISTINCT s.member_id) FROM report_member_spend s JOIN"
            " report_member r ON r.member_id = s.member_id WHERE s.kind = 'month'"
            f" AND s.start >= {q.p(cut)} AND s.start < {q.p(period.start)} AND s.tickets > 0"
            f" AND r.first_day < {q.p(cut)} AND NOT r.merged AND "
        )
        parts["recent"] = _by_home(q.run(text + q.one_of("s.home_store", stores) + " GROUP BY 1"))
        q = Sql(db)
        text = (
            "SELECT h, COUNT(*) FROM (SELECT s.member_id, s.home_store AS h FROM report_member_spend s"
            " JOIN report_member r ON r.member_id = s.member_id"
            f" WHERE s.kind = {q.p(period.kind)} AND s.start = {q.p(period.start)}"
            f" AND s.tickets > 0 AND r.first_day < {q.p(cut)} AND NOT r.merged AND "
        )
        text += q.one_of("s.home_store", stores)
        text += (
            " EXCEPT SELECT member_id, home_store FROM report_member_spend WHERE kind = 'month'"
            f" AND start >= {q.p(cut)} AND start < {q.p(period.start)} AND tickets > 0) w GROUP BY h"
        )
        parts["woken"] = _by_home(q.run(text))
    homes = set().union(*(set(v) for v in parts.values()))
    return {h: tuple(parts.get(f, {}).get(h, 0) for f in BASE_FIELDS) for h in homes}


def whole_months(period: Period) -> bool:
    """Whether the whole-month figures (active, growth, churn, dormant, wake-up) are
    defined for the period: a whole month, quarter or year. A period to date has none:
    they are counted from month rows, which hold whole months, so 1-5 November would
    count all of November (``compare(to_date=...)`` gives the current period's own as
    of the cut-off instead)."""
    return period.kind in _MONTHLY and not period.is_cut


MONTH_ONLY_KEYS = ("active_members", "member_growth", "churn_rate", "dormant_members", "wake_rate")


def base_figures(rows: Any, period: Period) -> dict[str, Any]:
    """The member-base figures from ``base_raw`` tuples summed over a scope's home stores."""
    sums = [0] * len(BASE_FIELDS)
    for t in rows:
        for i, v in enumerate(t):
            sums[i] += v
    new, activated, active_end, active_before, kept, ever, recent, woken = sums
    out: dict[str, Any] = {"new_members": new, "activation_rate": ratio_of(activated, new)}
    monthly = whole_months(period)
    dormant = ever - recent
    out.update(
        active_members=active_end if monthly else None,
        member_growth=ratio_of(active_end - active_before, active_before) if monthly else None,
        churn_rate=ratio_of(active_before - kept, active_before) if monthly else None,
        dormant_members=dormant if monthly else None,
        wake_rate=ratio_of(woken, dormant) if monthly else None,
    )
    return out


def _new(db: pw.Database, period: Period, staff: str) -> dict[str, Any]:
    """A staff member's recruits registered in the period (not merged away), activated."""
    q = Sql(db)
    later = q.plus_days("r.reg_day", ACTIVATION_DAYS)
    text = (
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM report_member_spend s"
        " WHERE s.member_id = r.member_id AND s.kind = 'day' AND s.start > r.reg_day"
        f" AND s.start <= {later} AND s.tickets > 0) THEN 1 ELSE 0 END),0)"
        " FROM report_member r WHERE NOT r.merged"
        f" AND r.reg_day >= {q.p(period.start)} AND r.reg_day < {q.p(period.end)}"
    )
    (row,) = q.run(text + f" AND r.staff = {q.p(staff)}")
    new, activated = map(int, row)
    return {"new_members": new, "activation_rate": ratio_of(activated, new)}


GROUP_COLUMNS = ("tier", "card_type", "gender")


def group_raw(
    db: pw.Database,
    by: str,
    period: Period,
    stores: list[str] | None = None,
    per_store: bool = False,
) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Member sales per group (``by``: tier | card_type | gender), live: {(store or "",
    group): (net fen, distinct buyers, tickets)}, per store or over ``stores`` together."""
    if by not in GROUP_COLUMNS:
        raise ValidationError(f"分组无效: {by!r}", field="by")
    q = Sql(db)
    store = "store" if per_store else "''"
    rows = q.run(
        f"SELECT {store}, COALESCE({by}, ''), SUM(amount), COUNT(DISTINCT member_id), SUM(tickets)"
        f" FROM report_member_spend WHERE {_spend_rows(q, period)} AND {q.one_of('store', stores)}"
        " GROUP BY 1, 2"
    )
    return {(str(st), str(g)): (int(a), int(b), int(t)) for st, g, a, b, t in rows}


def _group_rows(
    db: pw.Database, by: str, period: Period, stores: list[str] | None
) -> list[tuple[str, int, int | None, int]]:
    """[(group, net fen, distinct buyers, tickets)] over the scope's stores: from the rollup
    when the period has one (buyers None when summed over several stores of an area:
    a member buying at two of them is not counted twice), else live."""
    from hq.reports import rollup

    rows = rollup.rows_for(db, f"g:{by}", period)
    if rows is None:
        return [(g, a, b, t) for (_, g), (a, b, t) in group_raw(db, by, period, stores).items()]
    sums: dict[str, list[Any]] = {}
    for key, (a, b, t) in rows.items():
        store, _, group = key.partition("|")
        if stores is None and store:
            continue  # the chain's own rows have no store
        if stores is not None and store not in stores:
            continue
        acc = sums.setdefault(group, [0, 0, 0, 0])
        acc[0] += a
        acc[1] += b
        acc[2] += t
        acc[3] += 1
    single = stores is None or len(stores) == 1
    return [(g, a, b if single else None, t) for g, (a, b, t, _) in sums.items()]


def _groups(
    db: pw.Database, stores: list[str] | None, period: Period, total: int
) -> dict[str, Any]:
    """贡献率: each member group's net sales over all net sales (walk-ins included)."""
    out: dict[str, Any] = {}
    for key, column in (
        ("contribution_tier", "tier"),
        ("contribution_card_type", "card_type"),
        ("gender_contribution", "gender"),
    ):
        rows = _group_rows(db, column, period, stores)
        out[key] = {g: Fraction(a, total) for g, a, _, _ in sorted(rows)} if total > 0 else None
    return out


def _coupons(db: pw.Database, stores: list[str] | None, period: Period) -> dict[str, Any]:
    """Coupons issued in the period (HQ's time of issue) and how many of them were used."""
    q = Sql(db)
    start = dt.datetime.combine(period.start, dt.time())
    end = dt.datetime.combine(period.end, dt.time())
    (row,) = q.run(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'used' THEN 1 ELSE 0 END),0),"
        " COALESCE(SUM(CASE WHEN source = 'campaign' THEN 1 ELSE 0 END),0),"
        " COALESCE(SUM(CASE WHEN source = 'campaign' AND status = 'used' THEN 1 ELSE 0 END),0)"
        f" FROM coupon WHERE issued_at >= {q.p(start)} AND issued_at < {q.p(end)}"
        f" AND {q.one_of('issued_store', stores)}"
    )
    issued, used, c_issued, c_used = map(int, row)
    return {
        "coupons_issued": issued,
        "coupon_redemption_rate": ratio_of(used, issued),
        "campaign_coupons_issued": c_issued,
        "campaign_redemption_rate": ratio_of(c_used, c_issued),
    }


# ---- staff ------------------------------------------------------------------------------


def staff_figures(db: pw.Database, code: str, period: Period) -> dict[str, Any]:
    """A staff member's figures: members recruited in the period (and activated), the
    period's net sales of every member they ever recruited, the members they maintain now
    (维护人) and how many of those bought, and bought again (回头率)."""
    out = _new(db, period, code)
    q = Sql(db)
    s_where = _spend_rows(q, period, "s.")
    (row,) = q.run(
        "SELECT COALESCE(SUM(s.amount),0) FROM report_member r JOIN report_member_spend s"
        f" ON s.member_id = r.member_id WHERE {s_where} AND r.staff = {q.p(code)}"
    )
    out["recruited_sales_fen"] = int(row[0])
    q = Sql(db)
    (row,) = q.run(
        f"SELECT COUNT(*) FROM member WHERE staff_code = {q.p(code)} AND status = 'active'"
    )
    out["maintained_members"] = int(row[0])
    q = Sql(db)
    code_p = q.p(code)
    s_where = _spend_rows(q, period, "s.")
    (row,) = q.run(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN t >= 2 THEN 1 ELSE 0 END),0) FROM ("
        "SELECT s.member_id, SUM(s.tickets) AS t FROM member m JOIN report_member_spend s"
        f" ON s.member_id = m.id WHERE m.staff_code = {code_p} AND m.status = 'active'"
        f" AND {s_where} GROUP BY s.member_id) b WHERE t > 0"
    )
    out["maintained_buyers"] = int(row[0])
    out["maintained_repeat_rate"] = ratio_of(int(row[1]), int(row[0]))
    return out


# ---- the public functions ---------------------------------------------------------------

_GROUPS = {
    "sales": {
        "sales_fen", "member_sales_fen", "returns_fen", "tickets", "member_tickets",
        "member_sales_share", "avg_ticket", "all_avg_ticket", "items_per_ticket",
        "avg_item_price", "attach_rate",
    },
    "buyers": {"buyers", "repeat_rate", "repeat_frequency", "avg_return_days", "avg_age"},
    "new": {"new_members", "activation_rate", "new_member_rate"},
    "active": {"active_members", "member_growth", "churn_rate"},
    "wake": {"dormant_members", "wake_rate"},
    "groups": {"contribution_tier", "contribution_card_type", "gender_contribution"},
    "coupons": {
        "coupons_issued", "coupon_redemption_rate", "campaign_coupons_issued",
        "campaign_redemption_rate",
    },
}  # fmt: skip


def _check_keys(keys: Any, known: dict[str, Kpi]) -> list[str]:
    if keys is None:
        return list(known)
    keys = list(keys)
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ValidationError(f"未知指标: {', '.join(unknown)} (unknown figure)", field="keys")
    return keys


def figures(
    db: pw.Database,
    scope: Scope = CHAIN,
    period: Period | None = None,
    keys: Any = None,
    live: bool = False,
) -> dict[str, Any]:
    """The scope's figures for the period: {key: value} for ``keys`` (default: every
    figure of ``KPIS``, or of ``STAFF_KPIS`` for a staff scope). A figure not defined
    for the period's kind (churn for a week) is None. The distinct-member figures of a
    month, quarter or year come from the scheduler's rollup when it has one (``live``:
    always computed now)."""
    if period is None:
        raise ValidationError("请指定周期 (period is required)", field="period")
    if scope.kind == "staff":
        wanted = _check_keys(keys, STAFF_BY_KEY)
        stores_of(db, scope)  # refuses an unknown staff code
        got = staff_figures(db, scope.key, period)
        return {k: got[k] for k in wanted}
    from hq.reports import rollup

    # a period to date reads the rollup only for a cut at the same day (rollup._of)
    wanted = _check_keys(keys, BY_KEY)
    stores = stores_of(db, scope)
    need = {name for name, members in _GROUPS.items() if members & set(wanted)}
    got: dict[str, Any] = {}
    if need & {"sales", "groups", "new"}:
        got.update(_sales(db, stores, period))
    if "buyers" in need:
        raw = None if live else rollup.buyers_for(db, scope.kind, scope.key, period)
        if raw is None:
            raw = buyers_raw(db, period, stores).get("")
        got.update(buyer_figures(raw))
    if need & {"new", "active", "wake"}:
        homes = None if live else rollup.rows_for(db, "home", period)
        if homes is None:
            homes = base_raw(db, period, stores)
        elif stores is not None:
            homes = {h: t for h, t in homes.items() if h in set(stores)}
        got.update(base_figures(homes.values(), period))
        if "tickets" in got:  # asked for the "new" group (only "active": no sales read)
            got["new_member_rate"] = ratio_of(got["new_members"], got["tickets"])
    if "groups" in need:
        got.update(_groups(db, stores, period, got["sales_fen"]))
    if "coupons" in need:
        got.update(_coupons(db, stores, period))
    return {k: got[k] for k in wanted}


def compare(
    db: pw.Database,
    scope: Scope,
    period: Period,
    keys: Any = None,
    to_date: dt.date | None = None,
    last_year: bool = True,
) -> dict[str, Any]:
    """The period against the previous one (环比) and the same period last year (同比):
    {"periods": {current, previous, last_year: Period}, "current": {...}, "previous":
    {...}, "last_year": {...}, "to_date": bool, "as_of": {...}}.

    ``to_date`` (the chain's business day): when it falls inside the period before its
    last day, the period is still running, and the comparison is to date: the period cut
    after ``to_date`` against the previous period and last year's cut at the same offset
    (上月同期, 去年同期; ``Period.until``), all computed live. The whole-month figures
    (``MONTH_ONLY_KEYS``) are then None in all three, and ``as_of`` holds the current
    period's own (the whole period counted so far: as of ``to_date``), not compared.
    Otherwise (``to_date`` None, or the period is over or not begun) whole periods, and
    ``as_of`` is empty. ``last_year`` False: last year's figures are not computed ({})."""
    current = period
    cut = to_date is not None and period.start <= to_date < period.whole().last_day
    if cut:
        current = period.until(to_date)
    periods = {
        "current": current,
        "previous": current.previous(),
        "last_year": current.same_last_year(),
    }
    out: dict[str, Any] = {"periods": periods, "to_date": cut, "as_of": {}}
    for name, p in periods.items():
        out[name] = figures(db, scope, p, keys) if last_year or name != "last_year" else {}
    if cut and scope.kind != "staff":
        wanted = [k for k in _check_keys(keys, BY_KEY) if k in MONTH_ONLY_KEYS]
        if wanted and whole_months(period.whole()):
            out["as_of"] = figures(db, scope, period.whole(), wanted)
    return out


def series(
    db: pw.Database,
    scope: Scope,
    kind: str,
    n: int,
    ending: dt.date,
    keys: Any = ("sales_fen", "member_sales_share", "tickets", "new_members", "buyers"),
) -> list[dict[str, Any]]:
    """The last ``n`` periods of ``kind`` up to the one containing ``ending``, oldest first,
    for charts: [{"period": Period, **figures}]. ``n`` is 1..60."""
    if not isinstance(n, int) or not 1 <= n <= 60:
        raise ValidationError("点数须在 1 到 60 之间 (n must be 1..60)", field="n")
    p = period_containing(kind, ending)
    periods = [p]
    for _ in range(n - 1):
        periods.append(periods[-1].previous())
    return [{"period": q, **figures(db, scope, q, keys)} for q in reversed(periods)]


# ---- breakdowns -----------------------------------------------------------------------

PLACE_KEYS = (
    "sales_fen",
    "member_sales_fen",
    "member_sales_share",
    "tickets",
    "avg_ticket",
    "new_members",
    "new_member_rate",
    "buyers",
    "repeat_rate",
    "active_members",
)
GROUP_KEYS = ("member_sales_fen", "contribution", "buyers", "member_tickets", "avg_ticket")
STAFF_ROW_KEYS = (
    "new_members",
    "recruited_sales_fen",
    "maintained_buyers",
    "maintained_repeat_rate",
)


def breakdown(
    db: pw.Database, by: str, period: Period, within: Scope | None = None
) -> list[dict[str, Any]]:
    """One row per store, area, staff member or member group (tier | card_type | gender),
    within a scope (default the chain), sorted by its main figure, largest first:
    [{"key", "label", figures...}]. Store and area rows carry ``PLACE_KEYS``; group rows
    ``GROUP_KEYS`` (``contribution``: the group's net sales over all net sales, walk-ins
    included); staff rows ``STAFF_ROW_KEYS``."""
    if by not in BREAKDOWN_BY:
        raise ValidationError(
            f"分组无效: {by!r} (by must be one of {', '.join(BREAKDOWN_BY)})", field="by"
        )
    within = within or CHAIN
    stores = stores_of(db, within)
    if by in ("store", "area"):
        return _by_place(db, by, period, stores)
    if by == "staff":
        return _by_staff(db, period, stores)
    return _by_group(db, by, period, stores)


def _place_sql(by: str, alias: str) -> tuple[str, str]:
    """(join, group expression) grouping rows of ``alias`` by store or by area."""
    if by == "store":
        return "", f"{alias}.store"
    return f" JOIN store st ON st.code = {alias}.store", "COALESCE(st.area, '')"


def _by_place(
    db: pw.Database, by: str, period: Period, stores: list[str] | None
) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}

    def row(key: str) -> dict[str, Any]:
        return rows.setdefault(key, {"key": key, "label": key})

    join, group = _place_sql(by, "d")
    q = Sql(db)
    for key, tickets, sales, returns, m_tickets, m_sales, m_returns in q.run(
        f"SELECT {group}, SUM(d.tickets), SUM(d.sales_fen), SUM(d.returns_fen), SUM(d.m_tickets),"
        f" SUM(d.m_sales_fen), SUM(d.m_returns_fen) FROM report_store_day d{join}"
        f" WHERE d.day >= {q.p(period.start)} AND d.day < {q.p(period.end)}"
        f" AND {q.one_of('d.store', stores)} GROUP BY 1"
    ):
        net, m_net = int(sales) - int(returns), int(m_sales) - int(m_returns)
        row(key).update(
            sales_fen=net,
            member_sales_fen=m_net,
            member_sales_share=ratio_of(m_net, net) if net > 0 else None,
            tickets=int(tickets),
            avg_ticket=_fen(m_net, int(m_tickets)),
        )
    from hq.reports import rollup

    raw = rollup.rows_for(db, by, period)
    if raw is None or (by == "area" and stores is not None):
        raw = buyers_raw(db, period, stores, by)
    for key, data in raw.items():
        if by == "store" and stores is not None and key not in stores:
            continue
        f = buyer_figures(data)
        row(key).update(buyers=f["buyers"], repeat_rate=f["repeat_rate"])
    homes = rollup.rows_for(db, "home", period)
    if homes is None:
        homes = base_raw(db, period, stores)
    area_of = {s.code: s.area or "" for s in Store.select(Store.code, Store.area)}
    grouped: dict[str, list[tuple[int, ...]]] = {}
    for home, data in homes.items():
        if stores is not None and home not in stores:
            continue
        grouped.setdefault(home if by == "store" else area_of.get(home, ""), []).append(data)
    for key, datas in grouped.items():
        f = base_figures(datas, period)
        row(key).update(new_members=f["new_members"], active_members=f["active_members"])
    names = {}
    if by == "store":
        names = {s.code: s.name for s in Store.select(Store.code, Store.name)}
    out = []
    for key, r in rows.items():
        for k in PLACE_KEYS:
            r.setdefault(
                k,
                0
                if k
                in (
                    "sales_fen",
                    "member_sales_fen",
                    "tickets",
                    "buyers",
                    "new_members",
                )
                else None,
            )
        r["new_member_rate"] = ratio_of(r["new_members"], r["tickets"])
        if by == "store":
            r["label"] = f"{key} {names.get(key, '')}".strip()
        elif not key:
            r["label"] = "未分区域"
        out.append(r)
    out.sort(key=lambda r: (-r["sales_fen"], r["key"]))
    return out


def _by_group(
    db: pw.Database, by: str, period: Period, stores: list[str] | None
) -> list[dict[str, Any]]:
    total = _sales(db, stores, period)["sales_fen"]
    rows = _group_rows(db, by, period, stores)
    if any(b is None for _, _, b, _ in rows):  # an area from the rollup: its buyers live
        live = group_raw(db, by, period, stores)
        rows = [(g, a, b, t) for (_, g), (a, b, t) in live.items()]
    labels = {"gender": {"M": "男", "F": "女", "": "未填"}}.get(by, {"": "无"})
    out = [
        {
            "key": g,
            "label": labels.get(g, g),
            "member_sales_fen": a,
            "contribution": ratio_of(a, total) if total > 0 else None,
            "buyers": b,
            "member_tickets": t,
            "avg_ticket": _fen(a, t),
        }
        for g, a, b, t in rows
    ]
    out.sort(key=lambda r: (-r["member_sales_fen"], r["key"]))
    return out


def _by_staff(db: pw.Database, period: Period, stores: list[str] | None) -> list[dict[str, Any]]:
    from hq.models import StaffMember

    query = StaffMember.select(StaffMember.code, StaffMember.name, StaffMember.store)
    if stores is not None:
        query = query.where(StaffMember.store.in_(stores))
    staff = {s.code: s for s in query}
    if not staff:
        return []
    codes = sorted(staff)
    rows = {c: {"key": c, "label": f"{staff[c].name} ({staff[c].store})", "new_members": 0,
                "recruited_sales_fen": 0, "maintained_buyers": 0, "maintained_repeat_rate": None}
            for c in codes}  # fmt: skip
    q = Sql(db)
    for code, new in q.run(
        "SELECT r.staff, COUNT(*) FROM report_member r WHERE NOT r.merged"
        f" AND r.reg_day >= {q.p(period.start)} AND r.reg_day < {q.p(period.end)}"
        f" AND {q.one_of('r.staff', codes)} GROUP BY 1"
    ):
        rows[code]["new_members"] = int(new)
    q = Sql(db)
    where = _spend_rows(q, period, "s.")
    for code, amount in q.run(
        "SELECT r.staff, SUM(s.amount) FROM report_member r JOIN report_member_spend s"
        f" ON s.member_id = r.member_id WHERE {where} AND {q.one_of('r.staff', codes)} GROUP BY 1"
    ):
        rows[code]["recruited_sales_fen"] = int(amount or 0)
    q = Sql(db)
    where = _spend_rows(q, period, "s.")
    for code, buyers, repeaters in q.run(
        "SELECT c, COUNT(*), SUM(CASE WHEN t >= 2 THEN 1 ELSE 0 END) FROM ("
        "SELECT m.staff_code AS c, s.member_id, SUM(s.tickets) AS t FROM report_member_spend s"
        f" JOIN member m ON m.id = s.member_id WHERE {where} AND {q.one_of('m.staff_code', codes)}"
        " AND m.status = 'active' GROUP BY 1, 2) b WHERE t > 0 GROUP BY c"
    ):
        rows[code]["maintained_buyers"] = int(buyers)
        rows[code]["maintained_repeat_rate"] = ratio_of(int(repeaters), int(buyers))
    out = list(rows.values())
    out.sort(key=lambda r: (-r["recruited_sales_fen"], r["key"]))
    return out


# ---- JSON ------------------------------------------------------------------------------


def as_json(value: Any) -> Any:
    """A figure for JSON: ints as they are, a Fraction as a float rounded to 4 places (for
    display only: the exact value stays a Fraction), a group dict likewise, a Period as
    its dict."""
    if isinstance(value, Fraction):
        return round(value.numerator / value.denominator, 4)
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, Period | Scope):
        return value.to_dict()
    return value
