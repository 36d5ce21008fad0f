"""Till routes for coupons (docs/programme/coupons.md): a member's usable coupons, and one
coupon by its code. Redemption is part of the sale (``coupons`` in a quote or a sale)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from core.errors import ValidationError
from edge.api import signed_in, till
from edge.services import coupons as coupon_svc
from edge.services import members as member_svc

bp = Blueprint("coupons", __name__, url_prefix="/api/v1")


@bp.get("/members/<member_id>/coupons")
def member_coupons(member_id: str):
    """The member's coupons usable today (``?all=true``: every one the till knows), each
    with what it gives."""
    signed_in()
    every = request.args.get("all", "false")
    if every not in ("true", "false"):
        raise ValidationError("all 须为 true 或 false (all must be true or false)", field="all")
    member = member_svc.resolve(member_id)
    coupons = coupon_svc.member_coupons(till(), member.id, usable_only=every == "false")
    return jsonify(member_id=member.id, coupons=coupons)


@bp.get("/coupons/<code>")
def get_coupon(code: str):
    """One coupon by its code (as typed or scanned): whose, what it gives, usable today."""
    signed_in()
    return jsonify(coupon=coupon_svc.lookup(till(), code))
