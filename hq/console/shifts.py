"""The stores' shift closes and day closes (交班/日结) in the console: one page per store,
linked from the store's page, and its JSON twin; permission ``stores.read``, limited to
the principal's stores (hq/shifts.py keeps them as the tills sent them)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from hq.access.guard import current, requires
from hq.console import ops_data as data
from hq.console import render
from hq.shifts import store_closes

bp = Blueprint("shift_closes", __name__)


def _closes(code: str) -> tuple[dict[str, Any], dict[str, Any]]:
    code = data.store_code(code, "code") or ""
    current().require_store(code)
    store = data.store_detail(code)
    found = store_closes(code)
    day_closes = [
        {
            "close_id": c.close_id,
            "day": c.day,
            "revision": c.revision,
            "closed_by": c.closed_by,
            "closed_at": c.closed_at[:19].replace("T", " "),
            "sales_count": c.sales_count,
            "sales_total": c.sales_total,
            "member_total": c.body["figures"]["sales"]["member_total"],
            "walkin_total": c.body["figures"]["sales"]["walkin_total"],
            "returns_total": c.body["figures"]["returns"]["total"],
            "tenders": c.body["figures"]["sales"]["tenders"],
            "cash_net": c.cash_net,
            "shifts_difference": c.shifts_difference,
            "mismatch": c.mismatch,
        }
        for c in found["day_closes"]
    ]
    shifts = [
        {
            "shift_id": s.shift_id,
            "day": s.day,
            "staff_code": s.staff_code,
            "staff_name": s.staff_name,
            "opened_at": s.opened_at[:19].replace("T", " "),
            "closed_at": s.closed_at[:19].replace("T", " "),
            "float": s.float_fen,
            "expected": s.expected,
            "counted": s.counted,
            "difference": s.difference,
        }
        for s in found["shifts"]
    ]
    return store, {"day_closes": day_closes, "shifts": shifts}


@bp.get("/stores/<code>/closes")
@requires("stores.read")
def closes_page(code: str) -> Any:
    store, closes = _closes(code)
    return render("store_closes.html", store=store, **closes)


@bp.get("/api/stores/<code>/closes")
@requires("stores.read")
def closes_json(code: str) -> Any:
    """The page's JSON twin."""
    store, closes = _closes(code)
    return jsonify(store=store["code"], **closes)
