"""Receipt models for sales, returns and top-ups (the printer renders them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.receipt import (
    Receipt,
    ReceiptLine,
    ReceiptMember,
    ReceiptTender,
    mask_name,
    sale_line_dicts,
    sale_tender_dicts,
)
from core.tenders import TENDER_KINDS
from edge.models import Card, Member
from edge.services import members as member_svc
from edge.services.context import Till
from edge.services.staff import SignedIn

_FIRST_CARD_SQL = 'SELECT "card_no" FROM "card" WHERE "member_id" = ? ORDER BY "issued_at" LIMIT 1'


def _local(at: str) -> str:
    """The store's wall-clock time of an ISO instant, to the second: 2026-11-24 14:24:42."""
    return dt.datetime.fromisoformat(at).replace(tzinfo=None).isoformat(" ", "seconds")


def _member_dict(
    till: Till, member: Member | None, earned: int, today: dt.date, card_no: str | None = None
) -> dict[str, Any] | None:
    """The receipt's ``ReceiptMember`` as ``to_dict`` gives it (same keys, same order).

    The card is the one the member showed (``card_no``), else their first card."""
    if member is None:
        return None
    if not card_no:
        row = Card._meta.database.execute_sql(_FIRST_CARD_SQL, (member.id,)).fetchone()
        card_no = row[0] if row else ""
    return {
        "masked_name": mask_name(member.name),
        "masked_phone": f"*******{member.phone_tail}" if member.phone_tail else "",
        "card_no_tail": card_no[-4:],
        "tier": member.tier or member.card_type,
        "points_earned": earned,
        "points_balance": member_svc.points_balance(member.id, today) - member.points_debt,
        "stored_value_balance": member.sv_principal + member.sv_bonus,
        "self_service_url": till.config.till.self_service_url.format(member_id=member.id),
    }


def _member(till: Till, member: Member | None, earned: int, today: dt.date) -> ReceiptMember | None:
    data = _member_dict(till, member, earned, today)
    return None if data is None else ReceiptMember(**data)


def _tenders(tenders: list[dict[str, Any]], points_used: int = 0) -> tuple[ReceiptTender, ...]:
    return tuple(
        ReceiptTender(
            t["kind"],
            TENDER_KINDS[t["kind"]],
            t["amount"],
            points_used if t["kind"] == "points" else 0,
        )
        for t in tenders
    )


def sale_receipt(
    till: Till,
    body: dict[str, Any],
    member: Member | None,
    staff: SignedIn,
    at: str,
    today: dt.date,
) -> Receipt:
    return Receipt.from_dict(sale_receipt_dict(till, body, member, staff, at, today))


def sale_receipt_dict(
    till: Till,
    body: dict[str, Any],
    member: Member | None,
    staff: SignedIn,
    at: str,
    today: dt.date,
) -> dict[str, Any]:
    """``sale_receipt(...).to_dict()`` built as the dict itself, once: the same keys in the
    same order, the same tuples; no dataclasses built and walked again on every sale."""
    lines = sale_line_dicts(body["lines"], member is not None)
    change = body["change"]
    tenders = sale_tender_dicts(body["tenders"], change, body["points_used"])
    return {
        "kind": "sale",
        "title": "销售小票",
        "store_name": till.config.store.name,
        "store_code": till.store,
        "document_no": body["sale_id"],
        "occurred_at": _local(at),
        "cashier": staff.name,
        "lines": lines,
        "subtotal": body["subtotal"],
        "discount_total": body["subtotal"] - body["total"] - body["rounding"],
        "rounding": body["rounding"],
        "total": body["total"],
        "tenders": tenders,
        "change": change,
        "member": _member_dict(till, member, body["points_earned"], today, body.get("card_no")),
        "footer": ("谢谢惠顾, 欢迎再次光临",)
        + (("离线交易, 联网后同步",) if body["offline"] else ()),
        "reprint": False,
        "opens_drawer": any(t["kind"] == "cash" for t in body["tenders"]),
        "extra": {},
    }


def return_receipt(
    till: Till,
    body: dict[str, Any],
    member: Member | None,
    staff: SignedIn,
    at: str,
    today: dt.date,
) -> Receipt:
    return Receipt(
        kind="return",
        title="退货单",
        store_name=till.config.store.name,
        store_code=till.store,
        document_no=body["return_id"],
        occurred_at=_local(at),
        cashier=staff.name,
        lines=tuple(
            ReceiptLine(
                name=r["name"], qty=r["qty"], unit_price=r["amount"] // r["qty"], amount=r["amount"]
            )
            for r in body["lines"]
        ),
        subtotal=body["refund_total"],
        total=body["refund_total"],
        tenders=_tenders(body["tenders"], body["points_restored"]),
        member=_member(till, member, -body["points_reversed"], today),
        footer=(f"原小票 {body['sale_id']}",),
        opens_drawer=any(t["kind"] == "cash" for t in body["tenders"]),
    )


def topup_receipt(
    till: Till, body: dict[str, Any], member: Member, staff: SignedIn, at: str, today: dt.date
) -> Receipt:
    return Receipt(
        kind="topup",
        title="充值凭证",
        store_name=till.config.store.name,
        store_code=till.store,
        document_no=body["topup_id"],
        occurred_at=_local(at),
        cashier=staff.name,
        lines=(
            ReceiptLine(
                name="储值充值", qty=1, unit_price=body["principal"], amount=body["principal"]
            ),
            ReceiptLine(
                name="充值赠送", qty=1, unit_price=body["bonus"], amount=0, note="赠送金额不可提现"
            ),
        )
        if body["bonus"]
        else (
            ReceiptLine(
                name="储值充值", qty=1, unit_price=body["principal"], amount=body["principal"]
            ),
        ),
        subtotal=body["principal"],
        total=body["principal"],
        tenders=(ReceiptTender("cash", "现金", body["principal"]),),
        member=_member(till, member, 0, today),
        opens_drawer=True,
    )


# -- shifts and day close: a slip of labelled figures (交班单, 日结单), printed through the
# same receipt path; edge.devices.receipt_render lays ``extra["sections"]`` out
def report_receipt(
    till: Till,
    *,
    kind: str,
    title: str,
    document_no: str,
    at: str,
    cashier: str,
    sections: list[dict[str, Any]],
    footer: tuple[str, ...] = (),
) -> Receipt:
    """A report slip: ``sections`` are ``{"title", "rows": [{"label", "fen", "text"}]}``,
    a row showing ``fen`` in yuan, else ``text``. It never opens the drawer."""
    return Receipt(
        kind=kind,
        title=title,
        store_name=till.config.store.name,
        store_code=till.store,
        document_no=document_no,
        occurred_at=_local(at),
        cashier=cashier,
        footer=footer,
        extra={"sections": sections},
    )
