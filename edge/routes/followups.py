"""Till routes of follow-up calls (回访, docs/followups.md): today's calls of the signed-in
staff (a manager: the store's), a member's open calls, and a call's outcome."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from core.errors import ValidationError
from edge.api import body, manager_signed_in, signed_in, till
from edge.services import followups

bp = Blueprint("followups", __name__, url_prefix="/api/v1")


@bp.get("/followups")
def due_calls():
    """Open calls due today or overdue for the signed-in staff; ``?all=1``: the store's
    (a manager)."""
    whole = request.args.get("all", "")
    if whole not in ("", "0", "1"):
        raise ValidationError("all 只能是 0 或 1 (all must be 0 or 1)", field="all")
    if whole == "1":
        staff = manager_signed_in("查看本店全部回访")
    else:
        staff = signed_in()
    calls = followups.due_calls(till(), staff.code, whole_store=whole == "1")
    return jsonify(followups=calls, today=till().now().date().isoformat())


@bp.get("/members/<member_id>/followups")
def member_calls(member_id: str):
    """A member's open calls at this store, whenever due."""
    signed_in()
    return jsonify(followups=followups.member_calls(till(), member_id))


@bp.post("/followups/<followup_id>/outcome")
def record_outcome(followup_id: str):
    """Record a call's outcome (idempotent by ``outcome_id``); it goes up to HQ."""
    staff = signed_in()
    outcome, created = followups.record_outcome(till(), followup_id, body(), staff.code)
    return jsonify(outcome=outcome), 201 if created else 200
