"""The sale receipt is built as a dict on the hot path: it must be exactly what the
receipt model's ``to_dict`` gives (keys, key order, tuples), so a reprint, the stored
row and the printer see the same receipt."""

from __future__ import annotations

from typing import Any

from core.receipt import Receipt
from edge.models import Member
from edge.services import receipts
from edge.services import staff as staff_svc

AT = "2026-11-24T10:15:30.123+08:00"


def _shape(value: Any) -> Any:
    """The value with its container types and dict key order made visible."""
    if isinstance(value, dict):
        return ("dict", [(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, tuple | list):
        return (type(value).__name__, [_shape(v) for v in value])
    return (type(value).__name__, value)


def _body(**over: Any) -> dict[str, Any]:
    line = {"name": "牛奶", "qty": 2, "unit_price": 1290, "amount": 2300, "gross": 2580}
    body = {
        "sale_id": "01936f5e-0000-7000-8000-000000000001",
        "lines": [
            line | {"promo": True, "earns_points": True},
            line | {"name": "纸巾", "promo": False, "earns_points": False},
            line | {"name": "大米", "promo": False, "earns_points": True},
        ],
        "subtotal": 7740,
        "total": 6900,
        "rounding": 0,
        "tenders": [{"kind": "cash", "amount": 6900}],
        "change": 0,
        "points_used": 0,
        "points_earned": 69,
        "offline": False,
    }
    return body | over


def test_the_sale_receipt_dict_is_the_models_to_dict(demo_till):
    _, staff = staff_svc.sign_in(demo_till, "1001", "1234")
    member = Member.select().first()
    today = demo_till.now().date()
    for body in (
        _body(),
        _body(change=3100, tenders=[{"kind": "cash", "amount": 6900}]),
        _body(
            offline=True,
            points_used=500,
            tenders=[
                {"kind": "points", "amount": 500},
                {"kind": "stored_value", "amount": 3000},
                {"kind": "cash", "amount": 3400},
            ],
            change=600,
        ),
    ):
        for who in (member, None):
            built = receipts.sale_receipt_dict(demo_till, body, who, staff, AT, today)
            model = Receipt.from_dict(built)
            assert _shape(model.to_dict()) == _shape(built)
            assert receipts.sale_receipt(demo_till, body, who, staff, AT, today) == model
            assert (built["member"] is None) == (who is None)
            assert built["opens_drawer"] is True
