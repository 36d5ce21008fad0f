"""Receipt models for sales, returns and top-ups (the printer renders them), and finding a
sale again by its receipt number, its member or its day (returns and reprints).

A sale's or return's receipt number is the store's code and the sequence number of the
outbox item written in its transaction ("S001-000123"): unique in the store, known at
commit, printed as 单号 and as a CODE128 barcode, and looked up through the outbox's
primary key, so a checkout writes nothing more for it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from core.errors import NotFound, ValidationError
from core.pricing import share_of
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
from edge.models import Card, Member, Sale, SaleLine
from edge.services import members as member_svc
from edge.services.context import Till
from edge.services.member_link import self_service_url  # -- memberpage
from edge.services.staff import SignedIn

_FIRST_CARD_SQL = 'SELECT "card_no" FROM "card" WHERE "member_id" = ? ORDER BY "issued_at" LIMIT 1'


def local_time(at: str) -> str:
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
        "self_service_url": self_service_url(till, member.id),  # -- memberpage
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


def receipt_no(store: str, seq: int) -> str:
    """The receipt number of the fact whose outbox item has ``seq``: "S001-000123"."""
    return f"{store}-{seq:06d}"


def sale_receipt(
    till: Till,
    body: dict[str, Any],
    member: Member | None,
    staff: SignedIn,
    at: str,
    today: dt.date,
    seq: int = 0,
) -> Receipt:
    return Receipt.from_dict(sale_receipt_dict(till, body, member, staff, at, today, seq))


def sale_receipt_dict(
    till: Till,
    body: dict[str, Any],
    member: Member | None,
    staff: SignedIn,
    at: str,
    today: dt.date,
    seq: int = 0,
) -> dict[str, Any]:
    """``sale_receipt(...).to_dict()`` built as the dict itself, once: the same keys in the
    same order, the same tuples; no dataclasses built and walked again on every sale.
    ``seq``: the sale's outbox item, its receipt number (none: the sale id is printed)."""
    number = receipt_no(till.store, seq) if seq else ""
    lines = sale_line_dicts(body["lines"], member is not None)
    change = body["change"]
    tenders = sale_tender_dicts(body["tenders"], change, body["points_used"])
    return {
        "kind": "sale",
        "title": "销售小票",
        "store_name": till.config.store.name,
        "store_code": till.store,
        "document_no": number or body["sale_id"],
        "occurred_at": local_time(at),
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
        "barcode": number,
    }


def return_receipt(
    till: Till,
    body: dict[str, Any],
    member: Member | None,
    staff: SignedIn,
    at: str,
    today: dt.date,
    seq: int = 0,
    sale_no: str = "",
) -> Receipt:
    """The return slip: it reads as a refund (退货退款单, 退款合计, each tender as 退...),
    its lines are what went back, and the member's points taken back show once, negative
    (``points_earned`` = -points_reversed). ``seq``: the return's outbox item;
    ``sale_no``: the sale's receipt number."""
    return Receipt(
        kind="return",
        title="退货退款单",
        store_name=till.config.store.name,
        store_code=till.store,
        document_no=receipt_no(till.store, seq) if seq else body["return_id"],
        occurred_at=local_time(at),
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
        footer=(f"原小票 {sale_no or body['sale_id']}", "退款已按原支付方式退回"),
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
        occurred_at=local_time(at),
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


# ---- finding a sale again (returns, reprints) ------------------------------------------

# how far back a member's sales are looked for at the till (the sale table has no index
# on member_id: a lookup walks the newest sales back to this many days, never further)
MEMBER_SALES_DAYS = 90
MEMBER_SALES_MAX = 20
DAY_PAGE_MAX = 50

_OUTBOX_ITEM_SQL = 'SELECT "kind", "payload" FROM "outbox" WHERE "seq" = ?'
_NEWEST_SALES_SQL = 'SELECT "id", "member_id", "occurred_at" FROM "sale" ORDER BY rowid DESC'


def parse_receipt_no(till: Till, text: str) -> int:
    """The outbox sequence number a receipt number names: "S001-000123" as scanned from
    the barcode, or "123" / "000123" as a cashier types it. Another store's receipt says so."""
    given = (text or "").strip()
    store, _, digits = given.rpartition("-")
    if not digits.isdigit() or len(digits) > 12 or int(digits) <= 0:
        raise ValidationError(
            f"小票号格式不对: “{given[:40]}”, 例如 {receipt_no(till.store, 123)} 或 123"
            " (receipt_no is the store code and a number)",
            field="receipt_no",
        )
    if store and store.upper() != till.store.upper():
        raise NotFound(
            f"小票 {given} 不是本店 ({till.store}) 的小票, 请到门店 {store} 办理"
            " (the receipt is another store's)",
            field="receipt_no",
        )
    return int(digits)


def find_sale(till: Till, text: str) -> Sale:
    """The sale whose receipt number is ``text`` (``parse_receipt_no``), through the outbox
    item its checkout wrote."""
    seq = parse_receipt_no(till, text)
    number = receipt_no(till.store, seq)
    row = till.db.execute_sql(_OUTBOX_ITEM_SQL, (seq,)).fetchone()
    sale = None
    if row is not None:
        kind, payload = row
        body = json.loads(payload)["body"]
        if kind == "return":
            raise NotFound(
                f"{number} 是退款单, 请扫描或输入原销售小票号 {sale_receipt_no(till, body['sale_id'])}"
                " (that is a return slip, not a sale)",
                field="receipt_no",
            )
        if kind == "sale":
            sale = Sale.get_or_none(Sale.id == body["sale_id"])
    if sale is None:
        raise NotFound(
            f"小票 {number} 不存在 (no sale with this receipt number)", field="receipt_no"
        )
    return sale


def sale_receipt_no(till: Till, sale: Sale | str) -> str:
    """A sale's receipt number (its receipt's barcode, or its outbox item's number for a
    sale receipted before receipts carried one); the sale id if neither is known."""
    if isinstance(sale, str):
        found = Sale.get_or_none(Sale.id == sale)
        if found is None:
            return sale
        sale = found
    receipt = sale.receipt
    if receipt.get("barcode"):
        return receipt["barcode"]
    if receipt.get("outbox_seq"):
        return receipt_no(till.store, receipt["outbox_seq"])
    return sale.id


def reprint_copy(till: Till, receipt: dict[str, Any], sale: Sale) -> dict[str, Any]:
    """The copy a reprint prints and shows: marked 重打, opening no drawer, and numbered
    (a sale receipted before receipts carried their number gets it, and its barcode)."""
    copy = receipt | {"reprint": True, "opens_drawer": False}
    if not copy.get("barcode"):
        number = sale_receipt_no(till, sale)
        if number != sale.id:
            copy |= {"document_no": number, "barcode": number}
    return copy


def sale_view(till: Till, sale: Sale) -> dict[str, Any]:
    """A sale as the return and reprint dialogs show it: its receipt number, who sold it
    to whom (masked, as printed), each line with what is left to return and what that
    would refund, and the tenders it was paid with."""
    body = sale.body
    lines = []
    for sl in SaleLine.select().where(SaleLine.sale_id == sale.id).order_by(SaleLine.line_no):
        left = sl.qty - sl.returned_qty
        lines.append(
            {
                "line_no": sl.line_no,
                "sku": sl.sku,
                "name": body["lines"][sl.line_no - 1]["name"],
                "qty": sl.qty,
                "returned_qty": sl.returned_qty,
                "left": left,
                "amount": sl.amount,
                "refundable": share_of(sl.amount, left, sl.qty, sl.returned_qty),
            }
        )
    member = sale.receipt.get("member")
    return {
        "sale_id": sale.id,
        "receipt_no": sale_receipt_no(till, sale),
        "occurred_at": local_time(sale.occurred_at),
        "cashier": sale.receipt.get("cashier", sale.cashier),
        "member_id": sale.member_id,
        "member": {"masked_name": member["masked_name"], "card_no_tail": member["card_no_tail"]}
        if member
        else None,
        "total": sale.total,
        "refunded": sale.refunded,
        "status": sale.status,
        "lines": lines,
        "tenders": [
            {"kind": t["kind"], "label": TENDER_KINDS[t["kind"]], "amount": t["amount"]}
            for t in body["tenders"]
        ],
    }


def member_sales(till: Till, member_id: str, limit: int) -> list[Sale]:
    """The member's newest sales at this store, at most ``limit``, from the last
    ``MEMBER_SALES_DAYS`` days (a merged member's old id counts as theirs)."""
    member = member_svc.resolve(member_id)
    ids = {member.id, member_id}
    since = (till.now() - dt.timedelta(days=MEMBER_SALES_DAYS)).isoformat()
    found: list[str] = []
    for sale_id, sold_to, at in till.db.execute_sql(_NEWEST_SALES_SQL):
        if at < since or len(found) >= limit:
            break
        if sold_to in ids:
            found.append(sale_id)
    return _sales(found)


def days_sales(till: Till, page: int, per_page: int) -> tuple[list[Sale], bool]:
    """The store day's sales at this till, newest first: one page, and whether more follow."""
    day = till.now().date().isoformat()
    skip, found, more = (page - 1) * per_page, [], False
    for sale_id, _member, at in till.db.execute_sql(_NEWEST_SALES_SQL):
        if at[:10] < day:
            break
        if skip:
            skip -= 1
        elif len(found) < per_page:
            found.append(sale_id)
        else:
            more = True
            break
    return _sales(found), more


def _sales(ids: list[str]) -> list[Sale]:
    by_id = {s.id: s for s in Sale.select().where(Sale.id.in_(ids))} if ids else {}
    return [by_id[i] for i in ids]


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
        occurred_at=local_time(at),
        cashier=cashier,
        footer=footer,
        extra={"sections": sections},
    )
