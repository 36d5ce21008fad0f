"""Member upkeep at the till (docs/programme/upkeep.md): edit a member's profile, set,
change or reset the payment password, refund stored value principal in cash (a manager,
online only) and the member's stored value statement. Described in
edge/openapi/upkeep.json."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from core.errors import ValidationError
from edge.api import after_commit_print, body, manager_signed_in, signed_in, till
from edge.services import members as member_svc
from edge.services import upkeep

bp = Blueprint("upkeep", __name__, url_prefix="/api/v1/members")


@bp.get("/<member_id>/profile")
def get_profile(member_id: str):
    """The member's summary with the richer profile (tags, at-risk tags, completeness)."""
    signed_in()
    t = till()
    return jsonify(member=upkeep.member_view(t, member_svc.resolve(member_id)))


@bp.route("/<member_id>", methods=["PUT", "PATCH"])
def edit_member(member_id: str):
    """Only the fields the body names change; it goes to HQ as a ``member_update``."""
    staff = signed_in()
    return jsonify(upkeep.update_member(till(), member_id, body(), staff))


def _only(data: dict, allowed: tuple[str, ...]) -> dict:
    unknown = sorted(str(k)[:32] for k in data if k not in allowed)
    if unknown:
        raise ValidationError(
            f"不认识的字段: {unknown} (unknown fields; this takes {list(allowed)})",
            field=unknown[0],
        )
    return data


@bp.post("/<member_id>/password")
def set_password(member_id: str):
    """A password for a member who has none."""
    staff = signed_in()
    data = _only(body(), ("password",))
    return jsonify(upkeep.set_password(till(), member_id, data.get("password"), staff)), 201


@bp.put("/<member_id>/password")
def change_password(member_id: str):
    """A new password, with the old one."""
    staff = signed_in()
    data = _only(body(), ("old_password", "password"))
    return jsonify(
        upkeep.change_password(
            till(), member_id, data.get("old_password"), data.get("password"), staff
        )
    )


@bp.post("/<member_id>/password/reset")
def reset_password(member_id: str):
    """A forgotten password replaced with a new one: a manager's action."""
    staff = signed_in()
    data = _only(body(), ("password", "manager"))
    approver = manager_signed_in("重置会员密码")
    return jsonify(upkeep.reset_password(till(), member_id, data.get("password"), staff, approver))


@bp.post("/<member_id>/stored-value/refunds")
def refund_stored_value(member_id: str):
    """储值退款: unspent principal back in cash, a manager's action, authorized by HQ."""
    staff = signed_in()
    data = _only(body(), ("amount", "reason", "refund_id", "manager"))
    refund_id = data.get("refund_id")
    if refund_id is not None and not isinstance(refund_id, str):
        raise ValidationError("退款编号须为文字 (refund_id must be a string)", field="refund_id")
    approver = manager_signed_in("储值退款")
    result = upkeep.refund_stored_value(
        till(), staff, approver, member_id, data.get("amount"), data.get("reason"), refund_id
    )
    if not result["replayed"]:
        after_commit_print(result["receipt"])
    return jsonify(result), 200 if result["replayed"] else 201


@bp.get("/<member_id>/stored-value/statement")
def stored_value_statement(member_id: str):
    """The member's stored value movements from this till's ledger, opening to closing."""
    signed_in()
    return jsonify(
        upkeep.statement(till(), member_id, request.args.get("from"), request.args.get("to"))
    )
