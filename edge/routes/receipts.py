"""Returns and receipts at the till (docs/till-screen.md, "Returns and receipts"): find a
sale by its receipt number (scanned from the receipt's barcode or typed), by its member,
or among the store day's sales; preview what a return would refund before a manager
approves it. The return itself (POST /api/v1/sales/<id>/returns) and the reprint
(POST /api/v1/sales/<id>/reprint) stay beside the sale routes in edge/api.py. Described in
edge/openapi/receipts.json."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from core.errors import ValidationError
from edge.api import body, signed_in, till
from edge.services import receipts
from edge.services import sales as sales_svc

bp = Blueprint("receipts", __name__, url_prefix="/api/v1/sales")

QUERIES = ("receipt_no", "member_id", "limit", "page", "per_page")


def _count(name: str, default: int, most: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise ValidationError(
            f"{name} 须为 1 到 {most} 的整数 ({name} must be an integer from 1 to {most})",
            field=name,
        )
    return int(text)


@bp.get("")
def find_sales():
    """One of: ``receipt_no`` (that sale), ``member_id`` (the member's newest sales, at
    most ``limit``), or neither (the store day's sales, newest first, ``page`` by
    ``per_page``). Each sale as ``receipts.sale_view`` gives it."""
    signed_in()
    t = till()
    unknown = sorted(k for k in request.args if k not in QUERIES)
    if unknown:
        raise ValidationError(
            f"不认识的查询参数: {unknown[0][:32]} (unknown query; this takes {list(QUERIES)})",
            field=unknown[0][:32],
        )
    if "receipt_no" in request.args and "member_id" in request.args:
        raise ValidationError(
            "按小票号或按会员查找, 只能选一种 (give receipt_no or member_id, not both)",
            field="receipt_no",
        )
    if "receipt_no" in request.args:
        sale = receipts.find_sale(t, request.args["receipt_no"])
        return jsonify(sales=[receipts.sale_view(t, sale)], more=False)
    if "member_id" in request.args:
        limit = _count("limit", 10, receipts.MEMBER_SALES_MAX)
        found = receipts.member_sales(t, request.args["member_id"], limit)
        return jsonify(sales=[receipts.sale_view(t, s) for s in found], more=False)
    page = _count("page", 1, 10_000)
    per_page = _count("per_page", 10, receipts.DAY_PAGE_MAX)
    found, more = receipts.days_sales(t, page, per_page)
    return jsonify(
        sales=[receipts.sale_view(t, s) for s in found], page=page, per_page=per_page, more=more
    )


@bp.post("/<sale_id>/returns/quote")
def quote_return(sale_id: str):
    """What returning these lines (``{lines: [{line_no, qty}]}``; none: all that is left)
    would refund, per tender and in points; nothing is written and no manager is needed."""
    signed_in()
    data = body()
    return jsonify(
        sales_svc.quote_return(till(), sale_id, sales_svc.return_lines(data.get("lines")))
    )
