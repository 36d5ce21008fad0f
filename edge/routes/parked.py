"""Parked sales (挂单/取单): a basket put aside while the cashier serves the next customer,
kept on the box (edge.models.ParkedSale) so it survives a reload of the screen. Recalling
one (DELETE) hands it back and removes it, so two screens cannot both take it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from core.errors import Conflict, NotFound, ValidationError
from core.ids import uuid7
from edge.api import body, signed_in, till
from edge.models import Member, ParkedSale
from edge.services import members as member_svc
from edge.services import sales as sales_svc

bp = Blueprint("parked", __name__, url_prefix="/api/v1/parked")

MAX_PARKED = 50  # per till: a parked sale is a basket waiting minutes, not a store room
MAX_NOTE = 100


def _note(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError("备注须为文字 (note must be a text)", field="note")
    value = value.strip()
    if len(value) > MAX_NOTE:
        raise ValidationError(
            f"备注最多 {MAX_NOTE} 个字 (note is at most {MAX_NOTE} characters)", field="note"
        )
    return value


def _as_dict(p: ParkedSale, with_lines: bool = True) -> dict[str, Any]:
    member = Member.get_or_none(Member.id == p.member_id) if p.member_id else None
    out = {
        "id": p.id,
        "member_id": p.member_id,
        "member_name": member_svc.mask_name(member.name) if member else None,
        "discounts": p.discounts or {},
        "parked_by": p.parked_by,
        "parked_at": p.parked_at,
        "note": p.note,
        "total": p.total,
        "line_count": len(p.lines),
        "items": sum(line["qty"] for line in p.lines),
    }
    if with_lines:
        out["lines"] = p.lines
    return out


@bp.post("")
def park_sale():
    """Park the basket: the lines, member and discounts as POST /sales/quote takes them
    (checked and priced the same way), and an optional note."""
    staff = signed_in()
    t = till()
    data = body()
    req = sales_svc.BasketRequest.from_request(data)
    note = _note(data.get("note"))
    member = sales_svc.find_member(t, req.member)
    basket, inputs = sales_svc.price(t, req, member)
    if ParkedSale.select().count() >= MAX_PARKED:
        raise Conflict(
            f"挂单已满 ({MAX_PARKED} 单), 请先取单 (at most {MAX_PARKED} parked sales)",
            field="parked",
        )
    parked = ParkedSale.create(
        id=uuid7(),
        lines=[
            {"sku": given["sku"], "qty": given["qty"], "line_discount": given["line_discount"]}
            for given in inputs
        ],
        member_id=member.id if member else None,
        discounts={
            "order_discount_rate": req.order_discount_rate,
            "manual_adjustment": req.manual_adjustment,
            "coupons": list(req.coupons),
        },
        parked_by=staff.code,
        parked_at=t.now().isoformat(timespec="seconds"),
        note=note,
        total=basket.total,
    )
    return jsonify(parked=_as_dict(parked)), 201


@bp.get("")
def list_parked():
    """The parked sales, the latest first, each with its lines."""
    signed_in()
    rows = ParkedSale.select().order_by(ParkedSale.parked_at.desc(), ParkedSale.id.desc())
    return jsonify(parked=[_as_dict(p) for p in rows])


@bp.delete("/<parked_id>")
def recall_parked(parked_id: str):
    """Recall (取单): the parked sale, removed from the list in the same transaction."""
    signed_in()
    parked_id = member_svc.check_code(parked_id, "parked_id")
    with till().db.atomic():
        parked = ParkedSale.get_or_none(ParkedSale.id == parked_id)
        if parked is None:
            raise NotFound("这笔挂单不存在或已被取走 (no such parked sale)", field="parked_id")
        out = _as_dict(parked)
        parked.delete_instance()
    return jsonify(parked=out)
