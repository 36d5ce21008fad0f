"""Checkout, returns and top-ups give exactly what they gave before the hot path was
written out: results (types included), rows, and the outbox payload byte for byte.

The golden file was recorded from the query-builder implementation. To record it again
after a deliberate change of behaviour: HY_RECORD_GOLDEN=1 pytest tests/edge/test_checkout_golden.py
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from core.errors import HuiyuanError
from core.rules import DEMO_RULES
from edge.models import Card, Member, MemberAlias, Setting
from edge.services import members as member_svc
from edge.services import sales
from edge.services import staff as staff_svc

GOLDEN = Path(__file__).parent / "golden" / "checkout.json"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# a password hash carried in a registration's payload (salted: random by design)
SCRYPT_RE = re.compile(r"scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+")
MILK, OIL, TISSUE, COLD, MASKS, APPLES, CREAM, BAG = (
    "P0002",
    "P0003",
    "P0004",
    "P0006",
    "P0008",
    "P0009",
    "P0012",
    "P0015",
)
FIXED_SALE_ID = "01936f5e-0000-7000-8000-000000000001"

# columns whose values are random by design (salts, nonces, keyed hashes)
RANDOM_COLUMNS = {"phone_enc", "phone_hash", "password_hash", "pin_hash", "token_hash"}


def _tagged(value: Any) -> Any:
    """JSON-able, keeping tuples apart from lists."""
    if isinstance(value, tuple):
        return {"__tuple__": [_tagged(v) for v in value]}
    if isinstance(value, list):
        return [_tagged(v) for v in value]
    if isinstance(value, dict):
        return {"__keys__": list(value), **{k: _tagged(v) for k, v in value.items()}}
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    return value


# Schema 2 made these tables WITHOUT ROWID: their rows in the order they were written
# (rowid order before), by the rowid of the sale that wrote them
ORDER = {
    "sale_line": '(SELECT s.rowid FROM "sale" s WHERE s."id" = "sale_id"), "line_no"',
    "points_lot": '(SELECT s.rowid FROM "sale" s WHERE s."id" = "origin"), "lot_id"',
}


def _tables(path: Path) -> dict[str, list[Any]]:
    conn = sqlite3.connect(path)
    out: dict[str, list[Any]] = {}
    for table in (
        "member",
        "card",
        "points_lot",
        "sale",
        "sale_line",
        "sale_return",
        "top_up",
        "ledger",
        "outbox",
        "counter",
    ):
        cur = conn.execute(f'SELECT * FROM "{table}" ORDER BY {ORDER.get(table, "rowid")}')  # noqa: S608 - fixed names
        names = [d[0] for d in cur.description]
        rows = []
        for row in cur:
            record = {}
            for name, value in zip(names, row, strict=True):
                if name in RANDOM_COLUMNS:
                    continue
                if name in ("body", "receipt") and isinstance(value, str):
                    value = {"json": json.loads(value)}  # the object, not its key order
                record[name] = value
            rows.append(record)
        out[table] = rows
    conn.close()
    return out


def _normalised(record: Any) -> Any:
    """Ids minted at random become <id1>, <id2>, ... in order of first appearance."""
    text = json.dumps(record, ensure_ascii=False, sort_keys=False)
    names: dict[str, str] = {}

    def name(m: re.Match[str]) -> str:
        return names.setdefault(m.group(0), f"<id{len(names) + 1}>")

    return json.loads(SCRYPT_RE.sub("<scrypt>", UUID_RE.sub(name, text)))


def _run(till, clock) -> dict[str, Any]:  # noqa: ANN001
    _, cashier = staff_svc.sign_in(till, "1001", "1234")
    _, manager = staff_svc.sign_in(till, "9001", "9999")
    results: list[Any] = []
    zhang = member_svc.by_card("C0001")
    li = member_svc.by_card("C0002")

    def checkout(staff, **req):  # noqa: ANN001, ANN003
        try:
            out = sales.checkout(till, staff, sales.CheckoutRequest.from_request(req))
        except HuiyuanError as exc:
            out = {"error": type(exc).__name__, "message": exc.message, "field": exc.field}
        results.append(_tagged(out))
        clock.advance(minutes=7)
        return out

    def cash(amount):  # noqa: ANN001, ANN202
        return [{"kind": "cash", "amount": amount}]

    checkout(cashier, lines=[{"sku": APPLES, "qty": 2}], tenders=cash(2000))
    checkout(
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": APPLES, "qty": 10}, {"sku": COLD}, {"barcode": "6901234567002"}],
        tenders=cash(20000),
    )
    checkout(
        cashier,
        member={"phone": "13800000002"},
        lines=[{"sku": MILK, "qty": 3}, {"sku": MASKS}, {"sku": BAG, "qty": 2}],
        tenders=cash(30000),
    )
    results.append(
        _tagged(sales.top_up(till, cashier, {"card_no": "C0001"}, 100000))
    )  # 充1000送250
    checkout(
        cashier,
        member={"member_id": zhang.id},
        lines=[{"sku": OIL}, {"sku": CREAM}],
        tenders=[{"kind": "stored_value", "amount": 5000}, {"kind": "cash", "amount": 50000}],
        member_password="123456",
    )
    # points: 张三 has earned some; pay part of a basket with them
    checkout(
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": TISSUE, "qty": 2}],
        tenders=[{"kind": "points", "amount": 300}, {"kind": "cash", "amount": 10000}],
    )
    # order discount and a manual adjustment that a manager approves for a cashier
    checkout(
        cashier,
        member={"card_no": "C0002"},
        lines=[{"sku": CREAM, "qty": 1, "line_discount": 500}, {"sku": APPLES}],
        order_discount_rate=950,
        manual_adjustment=120,
        manager={"code": "9001", "pin": "9999"},
        tenders=cash(40000),
    )
    checkout(manager, lines=[{"sku": OIL}], manual_adjustment=90, tenders=cash(6900))
    # a client-given sale id, then the same request again: replayed, nothing written twice
    for _ in range(2):
        checkout(
            cashier,
            member={"card_no": "C0001"},
            lines=[{"sku": MILK}],
            tenders=cash(5000),
            sale_id=FIXED_SALE_ID,
        )
    clock.advance(days=2)  # Wednesday: member day, double points
    checkout(cashier, member={"card_no": "C0001"}, lines=[{"sku": OIL}], tenders=cash(10000))
    # returns: part, then the rest, of the sale paid with points
    points_sale = next(
        r for r in results if isinstance(r, dict) and r.get("sale", {}).get("points_used")
    )
    sid = points_sale["sale_id"]
    results.append(_tagged(sales.return_sale(till, manager, sid, [(1, 1)])))
    results.append(_tagged(sales.return_sale(till, manager, sid, None)))
    # a points debt: 李四 spends earned points, then returns the sale that earned them
    earned_sale = results[2]["sale_id"]
    checkout(
        cashier,
        member={"card_no": "C0002"},
        lines=[{"sku": APPLES}],
        tenders=[{"kind": "points", "amount": 100}, {"kind": "cash", "amount": 1000}],
    )
    results.append(_tagged(sales.return_sale(till, manager, earned_sale, None)))
    checkout(cashier, member={"card_no": "C0002"}, lines=[{"sku": OIL}], tenders=cash(7000))
    # HQ's rules arrive (a new version): the next sale is priced with them
    doc = DEMO_RULES.to_dict() | {"version": 7, "card_type_discount": {"银卡": 800}}
    Setting.replace(key="rules", value=doc).execute()
    checkout(cashier, member={"card_no": "C0002"}, lines=[{"sku": OIL}], tenders=cash(7000))
    results.append(
        _tagged(
            sales.quote(
                till,
                sales.BasketRequest.from_request(
                    {"member": {"card_no": "C0002"}, "lines": [{"sku": CREAM}]}
                ),
            )
        )
    )
    # refusals
    checkout(cashier, lines=[{"sku": "NOPE"}], tenders=cash(100))
    checkout(cashier, lines=[{"sku": OIL}], tenders=cash(100))
    checkout(cashier, lines=[{"sku": OIL}], tenders=[{"kind": "points", "amount": 6990}])
    checkout(
        cashier,
        member={"card_no": "C0001"},
        lines=[{"sku": OIL}],
        tenders=[{"kind": "stored_value", "amount": 6990}],
        member_password="654321",
    )
    checkout(cashier, member={"card_no": "C0404"}, lines=[{"sku": OIL}], tenders=cash(7000))
    checkout(cashier, lines=[{"sku": OIL}], manual_adjustment=10, tenders=cash(7000))
    # a member merged at HQ: an old card still names the old id, which leads to the survivor
    MemberAlias.create(old_id=FIXED_SALE_ID.replace("0001", "0002"), member_id=zhang.id)
    Card.create(card_no="C0900", member_id=FIXED_SALE_ID.replace("0001", "0002"), issued_at="x")
    checkout(cashier, member={"card_no": "C0900"}, lines=[{"sku": BAG}], tenders=cash(100))
    Member.update(status="blocked").where(Member.id == li.id).execute()
    checkout(cashier, member={"member_id": li.id}, lines=[{"sku": OIL}], tenders=cash(7000))
    Card.update(status="blocked").where(Card.card_no == "C0002").execute()
    checkout(cashier, member={"card_no": "C0002"}, lines=[{"sku": OIL}], tenders=cash(7000))
    return {"results": results, "tables": _tables(till.config.db_path)}


def test_checkout_results_and_rows_are_as_recorded(demo_till, clock):
    got = _normalised(_run(demo_till, clock))
    if os.environ.get("HY_RECORD_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert got["results"] == want["results"]
    for table, rows in want["tables"].items():
        assert got["tables"][table] == rows, table
