"""Stores' shift closes (交班) and day closes (日结) at HQ: ``shift_close`` and ``day_close``
items applied, and their figures compared with what HQ holds.

core.protocol has checked every figure is an integer in range and every sum adds up; here
the store the body names must be the item's own (otherwise the item is refused), and
each close is kept once. Then HQ compares the figures it can with what it applied for
that store: for a day, its sales (count and total, the members' part) and refunds as the
reports' summary of the store's day holds them (one row read); for a shift, that staff
member's sales between the shift's open and close (a range of the sales' store index). The store's items arrive in seq order and a close is
written after the facts it covers, so by then HQ holds them all (or dead-lettered them).
A difference is recorded as an HqException (``day_close_mismatch``, ``shift_mismatch``)
for staff to look at, and the close is kept: a till's report is not money HQ posts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import Conflict
from hq.models import CardSale, ReportStoreDay, Sale, StoreDayClose, StoreShift, TopUp


def _refused(field: str, message: str) -> Exception:
    from hq.apply import MoneyRefused  # hq.apply imports this module for APPLIERS

    return MoneyRefused(message, field=field)


def _own_store(ctx: Any, body: dict[str, Any]) -> None:
    if body["store"] != ctx.item.store:
        raise _refused(
            "store",
            f"报告的门店 {body['store']} 不是发送门店 {ctx.item.store} "
            f"(body store {body['store']!r} is not the item's store {ctx.item.store!r})",
        )


def _shift_sales(store: str, staff_code: str, opened_at: str, closed_at: str) -> tuple[int, int]:
    """How many sales, and their total, HQ holds by ``staff_code`` at ``store`` from the
    shift's open to its close (both the till's ISO times): a range of the (store,
    occurred_utc) index."""
    fallback = dt.datetime(1970, 1, 1)
    start, end = Sale.utc_of(opened_at, fallback), Sale.utc_of(closed_at, fallback)
    count, total = (
        Sale.select(pw.fn.COUNT(1), pw.fn.COALESCE(pw.fn.SUM(Sale.total), 0))
        .where(
            (Sale.store == store)
            & (Sale.occurred_utc >= start)
            & (Sale.occurred_utc <= end)
            & (Sale.cashier == staff_code)
        )
        .tuples()
        .get()
    )
    return int(count), int(total)


def _day_span(day: str) -> tuple[str, str]:
    """A store's business day as a range of its own ISO times (``occurred_at``, the till's
    text with the store's offset), as the till chose the day's rows."""
    return day, (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def _day_topups(store: str, day: str) -> tuple[int, int, int]:
    """The top-ups HQ holds for the store's day: count, principal, bonus (fen)."""
    first, end = _day_span(day)
    count, principal, bonus = (
        TopUp.select(
            pw.fn.COUNT(1),
            pw.fn.COALESCE(pw.fn.SUM(TopUp.principal), 0),
            pw.fn.COALESCE(pw.fn.SUM(TopUp.bonus), 0),
        )
        .where((TopUp.store == store) & (TopUp.occurred_at >= first) & (TopUp.occurred_at < end))
        .tuples()
        .get()
    )
    return int(count), int(principal), int(bonus)


def _day_card_sales(store: str, day: str) -> tuple[int, int]:
    """The card products HQ holds as sold at the store that day: count, total (fen)."""
    first, end = _day_span(day)
    count, total = (
        CardSale.select(pw.fn.COUNT(1), pw.fn.COALESCE(pw.fn.SUM(CardSale.price), 0))
        .where(
            (CardSale.store == store)
            & (CardSale.occurred_at >= first)
            & (CardSale.occurred_at < end)
        )
        .tuples()
        .get()
    )
    return int(count), int(total)


def _compare(pairs: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    return [
        {"figure": name, "store": said, "hq": held} for name, said, held in pairs if said != held
    ]


def _flag(ctx: Any, kind: str, ref: str, reason: str, differences: list[dict[str, Any]]) -> None:
    """One open exception for the close, its amount the largest difference of a total."""
    totals = [abs(d["store"] - d["hq"]) for d in differences if d["figure"].endswith("total")]
    ctx.open_exception(
        kind, ref, {"reason": reason, "differences": differences}, max(totals, default=0)
    )


def apply_shift_close(ctx: Any, body: dict[str, Any]) -> None:
    _own_store(ctx, body)
    if StoreShift.get_or_none(StoreShift.shift_id == body["shift_id"]) is not None:
        raise Conflict(f"shift {body['shift_id']} was already ingested", field="shift_id")
    ctx.book.flush()  # the batch's sales before this item are rows before they are counted
    store, f = ctx.item.store, body["figures"]
    sales = _shift_sales(store, body["staff_code"], body["opened_at"], body["closed_at"])
    differences = _compare(
        [
            ("sales count", f["sales"]["count"], sales[0]),
            ("sales total", f["sales"]["total"], sales[1]),
        ]
    )
    if differences:
        _flag(
            ctx,
            "shift_mismatch",
            body["shift_id"],
            f"{store} 门店 {body['staff_name']}({body['staff_code']}) 的交班单与总部收到的销售不符 "
            f"(the shift's sales differ from the sales HQ holds for this staff member)",
            differences,
        )
    StoreShift.create(
        shift_id=body["shift_id"],
        store=store,
        seq=ctx.item.seq,
        staff_code=body["staff_code"],
        staff_name=body["staff_name"],
        day=body["day"],
        opened_at=body["opened_at"],
        closed_at=body["closed_at"],
        float_fen=body["float"],
        counted=body["counted"],
        expected=body["expected"],
        difference=body["difference"],
        body=body,
        ingested_at=ctx.now,
    )


def apply_day_close(ctx: Any, body: dict[str, Any]) -> None:
    _own_store(ctx, body)
    store, day, f = ctx.item.store, body["day"], body["figures"]
    if StoreDayClose.get_or_none(StoreDayClose.close_id == body["close_id"]) is not None:
        raise Conflict(f"day close {body['close_id']} was already ingested", field="close_id")
    taken = StoreDayClose.get_or_none(
        (StoreDayClose.store == store)
        & (StoreDayClose.day == day)
        & (StoreDayClose.revision == body["revision"])
    )
    if taken is not None:
        raise Conflict(
            f"{store} {day} revision {body['revision']} was already ingested", field="revision"
        )
    ctx.book.flush()  # the batch's sales before this item are rows before they are counted
    # the reports' summary of the store's day (hq/reports/summary.py), kept by the ingest
    # as each sale and return is applied: one row, however many sales the chain holds
    held = ReportStoreDay.get_or_none(
        (ReportStoreDay.store == store) & (ReportStoreDay.day == dt.date.fromisoformat(day))
    )
    topups, cards = _day_topups(store, day), _day_card_sales(store, day)
    differences = _compare(
        [
            ("sales count", f["sales"]["count"], held.tickets if held else 0),
            ("sales total", f["sales"]["total"], held.sales_fen if held else 0),
            ("member sales count", f["sales"]["member_count"], held.m_tickets if held else 0),
            ("member sales total", f["sales"]["member_total"], held.m_sales_fen if held else 0),
            ("returns total", f["returns"]["total"], held.returns_fen if held else 0),
            ("topups count", f["topups"]["count"], topups[0]),
            ("topups principal total", f["topups"]["principal"], topups[1]),
            ("topups bonus total", f["topups"]["bonus"], topups[2]),
            ("card sales count", f["card_sales"]["count"], cards[0]),
            ("card sales total", f["card_sales"]["total"], cards[1]),
        ]
    )
    if differences:
        _flag(
            ctx,
            "day_close_mismatch",
            body["close_id"],
            f"{store} 门店 {day} 的日结与总部收到的销售、退货、充值不符 "
            f"(the day close differs from what HQ holds for the store's day)",
            differences,
        )
    StoreDayClose.create(
        close_id=body["close_id"],
        store=store,
        seq=ctx.item.seq,
        day=day,
        revision=body["revision"],
        closed_by=body["closed_by"],
        closed_at=body["closed_at"],
        sales_count=f["sales"]["count"],
        sales_total=f["sales"]["total"],
        cash_net=f["cash_net"],
        shifts_difference=f["shifts_difference"],
        mismatch=bool(differences),
        body=body,
        ingested_at=ctx.now,
    )


# ---- the console's view ---------------------------------------------------------------


def store_closes(store: str, limit: int = 30) -> dict[str, Any]:
    """A store's latest day closes (each day's latest revision first) and shifts."""
    closes = list(
        StoreDayClose.select()
        .where(StoreDayClose.store == store)
        .order_by(StoreDayClose.day.desc(), StoreDayClose.revision.desc())
        .limit(limit)
    )
    shifts = list(
        StoreShift.select()
        .where(StoreShift.store == store)
        .order_by(StoreShift.closed_at.desc())
        .limit(limit)
    )
    return {"day_closes": closes, "shifts": shifts}
