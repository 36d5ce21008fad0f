"""Stores' shift closes (交班) and day closes (日结) at HQ: ``shift_close`` and ``day_close``
items applied, and their figures compared with what HQ holds.

core.protocol has checked every figure is an integer in range and every sum adds up; here
the store the body names must be the item's own (otherwise the item is refused), and
each close is kept once. Then HQ compares the figures it can with the sales, returns and
top-ups it applied for that store: for a day, the day's; for a shift, that staff member's
between the shift's open and close. The store's items arrive in seq order and a close is
written after the facts it covers, so by then HQ holds them all (or dead-lettered them).
A difference is recorded as an HqException (``day_close_mismatch``, ``shift_mismatch``)
for staff to look at, and the close is kept: a till's report is not money HQ posts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import Conflict
from hq.models import HqException, Return, Sale, StoreDayClose, StoreShift, TopUp


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


def _held(
    model: Any, amount: Any, store: str, start: str, end: str, cashier: str | None = None
) -> tuple[int, int]:
    """How many rows and how much of ``amount`` HQ holds for ``store`` with
    ``start <= occurred_at < end`` (the till's own ISO text), for ``cashier`` if given."""
    where = (model.store == store) & (model.occurred_at >= start) & (model.occurred_at < end)
    if cashier is not None:
        where &= model.cashier == cashier
    count, total = (
        model.select(pw.fn.COUNT(1), pw.fn.COALESCE(pw.fn.SUM(amount), 0))
        .where(where)
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
    ctx.book.insert(
        HqException,
        kind=kind,
        member_id=None,
        store=ctx.item.store,
        seq=ctx.item.seq,
        ref=ref,
        details={"reason": reason, "differences": differences},
        created_at=ctx.now,
        status="open",
        balance=None,
        amount=max(totals, default=0),
        recovered=0,
        closed_at=None,
    )


def apply_shift_close(ctx: Any, body: dict[str, Any]) -> None:
    _own_store(ctx, body)
    if StoreShift.get_or_none(StoreShift.shift_id == body["shift_id"]) is not None:
        raise Conflict(f"shift {body['shift_id']} was already ingested", field="shift_id")
    ctx.book.flush()  # the batch's sales before this item are rows before they are counted
    store, f = ctx.item.store, body["figures"]
    # the close's own instant is its end: a sale in the same millisecond is the shift's
    end = body["closed_at"] + "\uffff"
    sales = _held(Sale, Sale.total, store, body["opened_at"], end, body["staff_code"])
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
    end = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    sales = _held(Sale, Sale.total, store, day, end)
    returns = _held(Return, Return.refund_total, store, day, end)
    topups = _held(TopUp, TopUp.principal, store, day, end)
    differences = _compare(
        [
            ("sales count", f["sales"]["count"], sales[0]),
            ("sales total", f["sales"]["total"], sales[1]),
            ("returns count", f["returns"]["count"], returns[0]),
            ("returns total", f["returns"]["total"], returns[1]),
            ("topups count", f["topups"]["count"], topups[0]),
            ("topups total", f["topups"]["principal"], topups[1]),
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
