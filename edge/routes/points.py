"""Till routes of the points part (docs/programme/points.md): a member's available and
locked points, the gift catalogue, redeeming points for a gift."""

from __future__ import annotations

from flask import Blueprint, jsonify

from edge.api import after_commit_print, body, signed_in, till
from edge.services import members as member_svc
from edge.services import points as points_svc

bp = Blueprint("points", __name__, url_prefix="/api/v1")


@bp.get("/members/<member_id>/points")
def member_points(member_id: str):
    """Available and locked points today, and whether redemption is open."""
    signed_in()
    t = till()
    return jsonify(points_svc.member_points(t, member_svc.resolve(member_id)))


@bp.get("/gifts")
def list_gifts():
    """The gifts on offer today (积分兑换目录)."""
    signed_in()
    return jsonify(gifts=points_svc.gifts(till()))


@bp.post("/members/<member_id>/gift-redemptions")
def redeem_gift(member_id: str):
    """Redeem points for a gift: {gift_id, qty?, password?, redemption_id?}."""
    staff = signed_in()
    gift_id, qty, password, rid = points_svc.check_request(body())
    result = points_svc.redeem_gift(till(), staff, member_id, gift_id, qty, password, rid)
    if not result["replayed"]:
        after_commit_print(result["receipt"])
    return jsonify(result), 200 if result["replayed"] else 201
