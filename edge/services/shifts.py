"""Shifts and the day close (交班 / 日结): the cash a drawer should hold, and the store's day.

A shift belongs to one signed-in staff member on this till: opened with a float (the cash
counted into the drawer), closed with a cash count. What the drawer should hold is the
float plus the cash this staff member took and minus the cash they paid out between the
shift's open and close, read from what the till recorded:

- a sale's cash tender is what it settled, net of the change given (``Sale.body``);
- a return refunds each tender as it was paid; its cash tender left the drawer;
- a stored value top-up and a card product (年卡) are paid in cash;
- a stored value refund (储值退款) is paid out in cash.

Checkout never needs an open shift: a sale outside any shift still counts in the day
close, which covers every sale, return, top-up, card sale and refund of the store's
business day (the till clock's local date), whoever made it.

A day closes once. A second close of the same day is refused (409) unless it asks to
re-close (``reclose``): that makes the next revision, sent up too, and HQ keeps the latest.
Open shifts of the day must be closed first. Each close is printed and goes up to HQ as a
``shift_close`` or ``day_close`` item, in the close's own transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from peewee import SQL

from core.errors import Conflict, NotFound, ValidationError
from core.ids import uuid7
from core.money import MAX_AMOUNT, format_yuan
from core.protocol import DENOMINATIONS, MAX_ID_LEN, figures_skeleton
from core.receipt import Receipt
from core.tenders import TENDER_KINDS
from edge.models import CardSale, DayClose, Sale, SaleReturn, Shift, Staff, SvRefund, TopUp
from edge.services.context import Till
from edge.services.outbox import enqueue
from edge.services.receipts import local_time, report_receipt
from edge.services.staff import SignedIn


def _amount(value: Any, field: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
        raise ValidationError(
            f"{what}须为 0 到 {MAX_AMOUNT} 的整数(分) "
            f"({field} must be an integer of fen, 0..{MAX_AMOUNT})",
            field=field,
        )
    return value


def _client_id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LEN:
        raise ValidationError(
            f"编号须为 1 到 {MAX_ID_LEN} 个字符 ({field} must be a text of 1..{MAX_ID_LEN})",
            field=field,
        )
    return value


def counted_cash(counted: Any, denominations: Any) -> tuple[int, dict[str, int] | None]:
    """The cash counted: the total typed, or the sum of a count by denomination (fen per
    note or coin -> how many), or both when they agree."""
    notes = None
    if denominations is not None:
        if not isinstance(denominations, dict):
            raise ValidationError(
                "面额点数须为 {面额(分): 张数} (denominations must be an object)",
                field="denominations",
            )
        notes = {}
        total = 0
        for face, n in denominations.items():
            if face not in DENOMINATIONS:
                raise ValidationError(
                    f"不认识的面额 {str(face)[:12]} (denomination must be one of "
                    f"{list(DENOMINATIONS)}, in fen)",
                    field="denominations",
                )
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 100_000:
                raise ValidationError(
                    f"面额 {face} 的张数须为 0 到 100000 的整数 "
                    f"(denominations[{face}] must be an integer 0..100000)",
                    field="denominations",
                )
            if n:
                notes[face] = n
                total += int(face) * n
        if counted is None:
            counted = total
        elif counted != total:
            raise ValidationError(
                f"点数合计 {format_yuan(total, '')} 元与填写的实点金额不符 "
                f"(counted {counted} differs from the denominations' sum {total})",
                field="counted",
            )
    if counted is None:
        raise ValidationError("请填写实点现金 (counted is required)", field="counted")
    return _amount(counted, "counted", "实点现金"), notes


# ---- figures ----------------------------------------------------------------------------


# How far back the till's clock may have been set (an NTP step, a hand correction) without
# a report missing a row: see ``_first_rowid``.
CLOCK_STEP_TOLERATED = dt.timedelta(days=1)


def _first_rowid(model: Any, since: str) -> int:
    """The first rowid of ``model``'s table whose ``occurred_at`` is at or after ``since``,
    found by bisection over rowids (a few dozen indexed lookups), so that a report reads
    the rows of its span, not a year of sales: sales, returns and top-ups have no index on
    their time (schema 2 dropped it: a page written per sale), but rows are appended as
    they happen, so their rowids follow their times, as far as the clock went forward."""
    db = model._meta.database
    table = model._meta.table_name
    lo, hi = db.execute_sql(
        f'SELECT COALESCE(MIN(rowid), 0), COALESCE(MAX(rowid), 0) + 1 FROM "{table}"'  # noqa: S608
    ).fetchone()
    probe = f'SELECT rowid, "occurred_at" FROM "{table}" WHERE rowid >= ? ORDER BY rowid LIMIT 1'  # noqa: S608
    while lo < hi:
        mid = (lo + hi) // 2
        found = db.execute_sql(probe, (mid,)).fetchone()
        if found is None or found[1] >= since:
            hi = mid
        else:
            lo = found[0] + 1
    return lo


def _rows(model: Any, start: str, end: str | None, cashier: str | None, *fields: Any) -> Any:
    """``fields`` of the rows of ``model`` in the span (read from a rowid a tolerated clock
    step before it), and their cashier."""
    margin = (dt.date.fromisoformat(start[:10]) - CLOCK_STEP_TOLERATED).isoformat()
    query = model.select(model.cashier, *fields).where(
        SQL("rowid >= ?", [_first_rowid(model, margin)]) & (model.occurred_at >= start)
    )
    if end is not None:
        query = query.where(model.occurred_at < end)
    if cashier is not None:
        query = query.where(model.cashier == cashier)
    return query


def figures(till: Till, start: str, end: str | None, cashier: str | None = None) -> dict[str, Any]:
    """What the till recorded from ``start`` (an ISO instant or date, included) to ``end``
    (excluded; None: up to now), for one ``cashier`` or everyone: sales by tender, member
    and walk-in, returns, top-ups, card sales, stored value refunds, and the cash that came
    into and left the drawer. Also the same per staff member, under ``by_staff``."""
    out = figures_skeleton()
    by_staff: dict[str, dict[str, Any]] = {}

    def staff_row(code: str) -> dict[str, Any]:
        return by_staff.setdefault(
            code,
            {"code": code, "sales_count": 0, "sales_total": 0, "returns_total": 0, "cash_net": 0},
        )

    sales = out["sales"]
    for sale in _rows(Sale, start, end, cashier, Sale.total, Sale.body):
        body = sale.body
        sales["count"] += 1
        sales["total"] += sale.total
        who = "member" if body.get("member_id") else "walkin"
        sales[f"{who}_count"] += 1
        sales[f"{who}_total"] += sale.total
        sales["change"] += body.get("change", 0)
        sales["points_used"] += body.get("points_used", 0)
        cash = 0
        for t in body["tenders"]:
            sales["tenders"][t["kind"]] += t["amount"]
            cash += t["amount"] if t["kind"] == "cash" else 0
        row = staff_row(sale.cashier)
        row["sales_count"] += 1
        row["sales_total"] += sale.total
        row["cash_net"] += cash
    sales["cash_received"] = sales["tenders"]["cash"] + sales["change"]
    returns = out["returns"]
    for ret in _rows(SaleReturn, start, end, cashier, SaleReturn.refund_total, SaleReturn.body):
        returns["count"] += 1
        returns["total"] += ret.refund_total
        cash = 0
        for t in ret.body["tenders"]:
            returns["tenders"][t["kind"]] += t["amount"]
            cash += t["amount"] if t["kind"] == "cash" else 0
        row = staff_row(ret.cashier)
        row["returns_total"] += ret.refund_total
        row["cash_net"] -= cash
    for top in _rows(TopUp, start, end, cashier, TopUp.principal, TopUp.bonus):
        out["topups"]["count"] += 1
        out["topups"]["principal"] += top.principal
        out["topups"]["bonus"] += top.bonus
        staff_row(top.cashier)["cash_net"] += top.principal
    for card in _rows(CardSale, start, end, cashier, CardSale.price):
        out["card_sales"]["count"] += 1
        out["card_sales"]["total"] += card.price
        staff_row(card.cashier)["cash_net"] += card.price
    for refund in _rows(SvRefund, start, end, cashier, SvRefund.principal):
        out["sv_refunds"]["count"] += 1
        out["sv_refunds"]["total"] += refund.principal
        staff_row(refund.cashier)["cash_net"] -= refund.principal
    out["cash_in"] = (
        sales["tenders"]["cash"] + out["topups"]["principal"] + out["card_sales"]["total"]
    )
    out["cash_out"] = returns["tenders"]["cash"] + out["sv_refunds"]["total"]
    out["cash_net"] = out["cash_in"] - out["cash_out"]
    names = {s.code: s.name for s in Staff.select(Staff.code, Staff.name)}
    out["by_staff"] = [
        {**row, "name": names.get(code, "")} for code, row in sorted(by_staff.items())
    ]
    return out


# ---- shifts ----------------------------------------------------------------------------


def _now(till: Till) -> tuple[dt.datetime, str]:
    now = till.now()
    return now, now.isoformat(timespec="milliseconds")


def open_shift_of(staff_code: str) -> Shift | None:
    return (
        Shift.select()
        .where((Shift.staff_code == staff_code) & (Shift.status == "open"))
        .order_by(Shift.opened_at.desc())
        .first()
    )


def shift_view(shift: Shift) -> dict[str, Any]:
    return {
        "shift_id": shift.id,
        "staff_code": shift.staff_code,
        "staff_name": shift.staff_name,
        "day": shift.day,
        "status": shift.status,
        "opened_at": shift.opened_at,
        "float": shift.float_fen,
        "closed_at": shift.closed_at,
        "counted": shift.counted,
        "denominations": shift.denominations,
        "expected": shift.expected,
        "difference": shift.difference,
        "figures": shift.figures,
        "receipt": shift.receipt,
    }


def current_shift(till: Till, staff: SignedIn) -> dict[str, Any]:
    """The staff member's open shift on this till with its figures so far, or None."""
    shift = open_shift_of(staff.code)
    if shift is None:
        return {"shift": None}
    so_far = figures(till, shift.opened_at, None, staff.code)
    view = shift_view(shift)
    view["figures"] = so_far
    view["expected"] = shift.float_fen + so_far["cash_net"]
    return {"shift": view}


def open_shift(till: Till, staff: SignedIn, float_fen: Any, shift_id: Any = None) -> dict[str, Any]:
    """Open a shift for the signed-in staff with a float; one open shift each. A retry with
    the same ``shift_id`` gets the shift it opened."""
    float_fen = _amount(float_fen, "float", "备用金")
    shift_id = _client_id(shift_id, "shift_id") or uuid7()
    now, at = _now(till)
    with till.db.atomic():
        done = Shift.get_or_none(Shift.id == shift_id)
        if done is not None:
            if done.staff_code != staff.code or done.float_fen != float_fen:
                raise Conflict(
                    f"班次编号 {shift_id} 已用于另一个班次 (shift_id already used)",
                    field="shift_id",
                )
            return {"shift": shift_view(done), "replayed": True}
        already = open_shift_of(staff.code)
        if already is not None:
            raise Conflict(
                f"{staff.name} 已有未交班的班次 (开班于 {local_time(already.opened_at)}), "
                "请先交班 (this staff member has a shift open)",
                field="shift",
            )
        shift = Shift.create(
            id=shift_id,
            staff_code=staff.code,
            staff_name=staff.name,
            day=now.date().isoformat(),
            opened_at=at,
            float_fen=float_fen,
        )
    return {"shift": shift_view(shift), "replayed": False}


def shift_slip(shift_id: str) -> dict[str, Any]:
    """A closed shift's printed slip, for a reprint."""
    shift = Shift.get_or_none(Shift.id == shift_id)
    if shift is None or shift.receipt is None:
        raise NotFound(f"交班单 {shift_id} 不存在 (no closed shift with this id)", field="shift_id")
    return shift.receipt


def _require_open(staff: SignedIn) -> Shift:
    shift = open_shift_of(staff.code)
    if shift is None:
        raise NotFound(
            f"{staff.name} 没有未交班的班次, 请先开班 (no open shift for this staff member)",
            field="shift",
        )
    return shift


def count_shift(till: Till, staff: SignedIn, counted: Any, denominations: Any) -> dict[str, Any]:
    """What closing now would say, without closing: expected cash and the difference."""
    shift = _require_open(staff)
    counted, notes = counted_cash(counted, denominations)
    so_far = figures(till, shift.opened_at, None, staff.code)
    expected = shift.float_fen + so_far["cash_net"]
    return {
        "shift_id": shift.id,
        "float": shift.float_fen,
        "counted": counted,
        "denominations": notes,
        "expected": expected,
        "difference": counted - expected,
        "figures": so_far,
    }


def close_shift(
    till: Till, staff: SignedIn, counted: Any, denominations: Any, shift_id: Any = None
) -> dict[str, Any]:
    """交班: the cash counted against what the drawer should hold; printed and sent up.
    With ``shift_id`` (the screen sends it), a retry of a close that was done gets the
    closed shift back (``replayed``) instead of "no open shift"."""
    counted, notes = counted_cash(counted, denominations)
    shift_id = _client_id(shift_id, "shift_id")
    with till.db.atomic():
        done = Shift.get_or_none(Shift.id == shift_id) if shift_id else None
        if done is not None and done.status == "closed" and done.staff_code == staff.code:
            if done.counted != counted:
                raise Conflict(
                    f"该班次已于 {local_time(done.closed_at)} 交班, 实点 {format_yuan(done.counted, '')} 元 "
                    "(this shift was closed with another count)",
                    field="shift_id",
                )
            return {"shift": shift_view(done), "replayed": True}
        shift = _require_open(staff)
        if shift_id and shift.id != shift_id:
            raise Conflict(
                f"班次 {shift_id} 不是 {staff.name} 当前的班次 (not this staff member's open shift)",
                field="shift_id",
            )
        _, at = _now(till)
        shift_figures = figures(till, shift.opened_at, None, staff.code)
        shift_figures.pop("by_staff")
        expected = shift.float_fen + shift_figures["cash_net"]
        body = {
            "shift_id": shift.id,
            "store": till.store,
            "staff_code": staff.code,
            "staff_name": staff.name,
            "day": shift.day,
            "opened_at": shift.opened_at,
            "closed_at": at,
            "float": shift.float_fen,
            "counted": counted,
            "expected": expected,
            "difference": counted - expected,
            "figures": shift_figures,
        }
        enqueue(till, "shift_close", body, at, till.rules().version)
        shift.status = "closed"
        shift.closed_at = at
        shift.counted = counted
        shift.denominations = notes
        shift.expected = expected
        shift.difference = counted - expected
        shift.figures = shift_figures
        shift.receipt = shift_receipt(till, body, notes).to_dict()
        shift.save()
    return {"shift": shift_view(shift), "replayed": False}


# ---- the day close ----------------------------------------------------------------------


def _day(till: Till, value: Any) -> str:
    today = till.now().date()
    if value is None:
        return today.isoformat()
    try:
        day = dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise ValidationError("营业日须为日期, 如 2026-12-05 (day must be YYYY-MM-DD)", field="day")
    if day > today:
        raise ValidationError(f"不能日结未来的日期 {value} (day is in the future)", field="day")
    return value


def _shift_line(shift: Shift) -> dict[str, Any]:
    return {
        "shift_id": shift.id,
        "staff_code": shift.staff_code,
        "staff_name": shift.staff_name,
        "opened_at": shift.opened_at,
        "closed_at": shift.closed_at,
        "float": shift.float_fen,
        "expected": shift.expected,
        "counted": shift.counted,
        "difference": shift.difference,
    }


def day_report(till: Till, day_value: Any = None) -> dict[str, Any]:
    """The store's business day as a day close would report it (nothing written), with the
    shifts opened that day, those still open, and the day's earlier closes."""
    day = _day(till, day_value)
    end = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    report = figures(till, day, end)
    report["staff"] = report.pop("by_staff")
    shifts = list(Shift.select().where(Shift.day == day).order_by(Shift.opened_at))
    closed = [s for s in shifts if s.status == "closed"]
    report["shifts"] = [_shift_line(s) for s in closed]
    report["shifts_difference"] = sum(s.difference for s in closed)
    closes = list(DayClose.select().where(DayClose.day == day).order_by(DayClose.revision))
    return {
        "day": day,
        "figures": report,
        "open_shifts": [
            {"shift_id": s.id, "staff_code": s.staff_code, "staff_name": s.staff_name}
            for s in shifts
            if s.status == "open"
        ],
        "closes": [
            {
                "close_id": c.id,
                "revision": c.revision,
                "closed_by": c.closed_by,
                "closed_at": c.closed_at,
            }
            for c in closes
        ],
    }


def close_day(
    till: Till, staff: SignedIn, approver: SignedIn, day_value: Any = None, reclose: Any = False
) -> dict[str, Any]:
    """日结 by a manager (``approver``): once per business day; ``reclose`` makes the next
    revision of a day already closed. Every shift of the day must be closed first."""
    if not isinstance(reclose, bool):
        raise ValidationError(
            "reclose 须为 true 或 false (reclose must be a boolean)", field="reclose"
        )
    with till.db.atomic():
        report = day_report(till, day_value)
        day = report["day"]
        if report["open_shifts"]:
            names = "、".join(
                f"{s['staff_name']}({s['staff_code']})" for s in report["open_shifts"]
            )
            raise Conflict(
                f"{day} 还有未交班的班次: {names}, 请先交班 (close the open shifts first)",
                field="shifts",
            )
        revision = len(report["closes"]) + 1
        if revision > 1 and not reclose:
            last = report["closes"][-1]
            raise Conflict(
                f"营业日 {day} 已于 {local_time(last['closed_at'])} 日结, "
                "如需重新日结请确认重新日结 (the day is closed; send reclose to close it again)",
                field="day",
            )
        _, at = _now(till)
        close_id = uuid7()
        body = {
            "close_id": close_id,
            "store": till.store,
            "day": day,
            "revision": revision,
            "closed_by": approver.code,
            "closed_at": at,
            "figures": report["figures"],
        }
        enqueue(till, "day_close", body, at, till.rules().version)
        receipt = day_close_receipt(till, body, approver).to_dict()
        DayClose.create(
            id=close_id,
            day=day,
            revision=revision,
            closed_by=approver.code,
            closed_at=at,
            figures=report["figures"],
            receipt=receipt,
        )
    return {
        "close_id": close_id,
        "day": day,
        "revision": revision,
        "figures": report["figures"],
        "receipt": receipt,
    }


# ---- printed slips -----------------------------------------------------------------------


def _row(label: str, fen: int | None = None, text: str | None = None) -> dict[str, Any]:
    return {"label": label, "fen": fen, "text": text}


def _tender_rows(tenders: dict[str, int], prefix: str) -> list[dict[str, Any]]:
    return [_row(f"{prefix}{TENDER_KINDS[k]}", v) for k, v in tenders.items() if v]


def _money_sections(f: dict[str, Any]) -> list[dict[str, Any]]:
    s, r = f["sales"], f["returns"]
    return [
        {
            "title": "销售",
            "rows": [
                _row("笔数", text=str(s["count"])),
                _row("金额", s["total"]),
                *_tender_rows(s["tenders"], ""),
                _row("找零", s["change"]),
                _row("会员销售", text=f"{s['member_count']}笔"),
                _row("会员金额", s["member_total"]),
                _row("散客销售", text=f"{s['walkin_count']}笔"),
                _row("散客金额", s["walkin_total"]),
                _row("积分使用", text=f"{s['points_used']}积分"),
            ],
        },
        {
            "title": "退货与其他",
            "rows": [
                _row("退货", text=f"{r['count']}笔"),
                _row("退款金额", r["total"]),
                *_tender_rows(r["tenders"], "退"),
                _row("储值充值", text=f"{f['topups']['count']}笔"),
                _row("充值金额", f["topups"]["principal"]),
                _row("充值赠送", f["topups"]["bonus"]),
                _row("卡费收入", f["card_sales"]["total"]),
                _row("储值退款", f["sv_refunds"]["total"]),
            ],
        },
    ]


DENOMINATION_LABELS = dict(
    zip(DENOMINATIONS, ("100元", "50元", "20元", "10元", "5元", "1元", "5角", "1角"), strict=True)
)


def shift_receipt(till: Till, body: dict[str, Any], notes: dict[str, int] | None) -> Receipt:
    cash = [
        _row("备用金", body["float"]),
        _row("现金收入", body["figures"]["cash_in"]),
        _row("现金支出", -body["figures"]["cash_out"]),
        _row("应有现金", body["expected"]),
        _row("实点现金", body["counted"]),
        _row(_difference_label(body["difference"]), body["difference"]),
    ]
    sections = [{"title": "现金", "rows": cash}, *_money_sections(body["figures"])]
    if notes:
        sections.append(
            {
                "title": "点钞",
                "rows": [
                    _row(f"{DENOMINATION_LABELS[face]} x {n}", int(face) * n)
                    for face, n in sorted(notes.items(), key=lambda x: -int(x[0]))
                ],
            }
        )
    return report_receipt(
        till,
        kind="shift",
        title="交班单",
        document_no=body["shift_id"],
        at=body["closed_at"],
        cashier=body["staff_name"],
        sections=sections,
        footer=(f"开班 {local_time(body['opened_at'])}", f"交班 {local_time(body['closed_at'])}"),
    )


def _difference_label(difference: int) -> str:
    return "长款" if difference > 0 else "短款" if difference < 0 else "差额"


def day_close_receipt(till: Till, body: dict[str, Any], approver: SignedIn) -> Receipt:
    f = body["figures"]
    sections = _money_sections(f)
    sections.insert(
        0,
        {
            "title": f"营业日 {body['day']}",
            "rows": [
                _row("现金收入", f["cash_in"]),
                _row("现金支出", -f["cash_out"]),
                _row("现金净额", f["cash_net"]),
            ],
        },
    )
    sections.append(
        {
            "title": "按员工",
            "rows": [
                _row(f"{s['name'] or s['code']} {s['sales_count']}笔", s["sales_total"])
                for s in f["staff"]
            ],
        }
    )
    sections.append(
        {
            "title": "班次",
            "rows": [
                _row(
                    f"{s['staff_name'] or s['staff_code']} {_difference_label(s['difference'])}",
                    s["difference"],
                )
                for s in f["shifts"]
            ]
            + [_row("班次差额合计", f["shifts_difference"])],
        }
    )
    return report_receipt(
        till,
        kind="day_close",
        title="日结单" + (f" (第{body['revision']}次)" if body["revision"] > 1 else ""),
        document_no=body["close_id"],
        at=body["closed_at"],
        cashier=approver.name,
        sections=sections,
        footer=(f"日结人 {approver.name}",),
    )
