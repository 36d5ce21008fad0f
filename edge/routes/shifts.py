"""Shifts and the day close at the till (交班 / 日结; edge/services/shifts.py): a staff
member's shift opened with a float and closed with a cash count, the store's day closed
by a manager. Described in edge/openapi/shifts.json."""

from __future__ import annotations

from flask import Blueprint, jsonify

from core.receipt import Receipt
from edge.api import after_commit_print, body, devices, manager_signed_in, signed_in, till
from edge.routes.upkeep import _only  # a body naming only the fields a route takes
from edge.services import shifts

bp = Blueprint("shifts", __name__, url_prefix="/api/v1")


@bp.get("/shifts/current")
def current_shift():
    """The signed-in staff member's open shift with its figures so far, or ``null``."""
    staff = signed_in()
    return jsonify(shifts.current_shift(till(), staff))


@bp.post("/shifts")
def open_shift():
    """开班: a shift for the signed-in staff member, with the float counted into the drawer."""
    staff = signed_in()
    data = _only(body(), ("float", "shift_id"))
    result = shifts.open_shift(till(), staff, data.get("float"), data.get("shift_id"))
    return jsonify(result), 200 if result["replayed"] else 201


@bp.post("/shifts/current/count")
def count_shift():
    """What a close would say now (expected cash, the difference), without closing."""
    staff = signed_in()
    data = _only(body(), ("counted", "denominations"))
    return jsonify(
        shifts.count_shift(till(), staff, data.get("counted"), data.get("denominations"))
    )


@bp.post("/shifts/current/close")
def close_shift():
    """交班: the cash count against the expected cash; the slip prints, HQ is told."""
    staff = signed_in()
    data = _only(body(), ("counted", "denominations", "shift_id"))
    result = shifts.close_shift(
        till(), staff, data.get("counted"), data.get("denominations"), data.get("shift_id")
    )
    if not result["replayed"]:
        after_commit_print(result["shift"]["receipt"])
    return jsonify(result)


@bp.post("/day-close/preview")
def day_close_preview():
    """The day's report as a day close would give it (a manager's)."""
    manager_signed_in("查看日结")
    data = _only(body(), ("day", "manager"))
    return jsonify(shifts.day_report(till(), data.get("day")))


@bp.post("/day-close")
def close_day():
    """日结: once per business day (``reclose`` for another revision); a manager's."""
    staff = signed_in()
    approver = manager_signed_in("日结")
    data = _only(body(), ("day", "reclose", "manager"))
    result = shifts.close_day(till(), staff, approver, data.get("day"), data.get("reclose", False))
    after_commit_print(result["receipt"])
    return jsonify(result), 201


@bp.post("/shifts/<shift_id>/reprint")
def reprint_shift(shift_id: str):
    """A copy of a closed shift's slip (marked 重印)."""
    signed_in()
    receipt = shifts.shift_slip(shift_id)
    manager = devices()
    job = manager.reprint(Receipt.from_dict(receipt)) if manager is not None else None
    return jsonify(receipt=receipt, print_job=job)
