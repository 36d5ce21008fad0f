"""Till routes of the staff part (docs/programme/staff.md): who may be named as a member's
maintainer here, and the store manager's view and decision of maintainer transfers."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from core.errors import ValidationError
from edge.api import _json, body, manager_signed_in, signed_in, till
from edge.services import maintainers

bp = Blueprint("staff", __name__, url_prefix="/api/v1/maintainers")


@bp.get("")
def list_maintainers():
    """Staff who may be named as a member's maintainer at this store."""
    signed_in()
    return jsonify(maintainers=maintainers.maintainers(till()))


@bp.get("/transfers")
def list_transfers():
    """This store's open maintainer transfers (a manager)."""
    manager_signed_in("查看维护人转移申请")
    return jsonify(transfers=maintainers.open_transfers(till()))


@bp.post("/transfers")
def request_transfer():
    """Any signed-in staff member asks HQ to move members between maintainers."""
    staff = signed_in()
    return jsonify(transfer=maintainers.request_transfer(till(), body(), staff.code)), 201


def _decide(transfer_id: str, decision: str):
    manager = manager_signed_in("审批维护人转移")
    cashier = g.staff  # who is signed in (the manager, or a cashier given the manager's PIN)
    data = _json()
    if data is not None and not isinstance(data, dict):
        raise ValidationError(
            "请求须为 JSON 对象或为空 (request body must be a JSON object or empty)"
        )
    result = maintainers.decide(
        till(), transfer_id, decision, manager.code, cashier.code, (data or {}).get("reason")
    )
    return jsonify(transfer=result), 201


@bp.post("/transfers/<transfer_id>/approve")
def approve_transfer(transfer_id: str):
    """The manager approves a pending transfer; HQ applies it when the item arrives."""
    return _decide(transfer_id, "approve")


@bp.post("/transfers/<transfer_id>/reject")
def reject_transfer(transfer_id: str):
    """The manager rejects a pending transfer, with a reason."""
    return _decide(transfer_id, "reject")
