"""An existing store database upgrades in place, keeping its sales and outbox."""

from __future__ import annotations

import sqlite3

import pytest

from edge.demo_data import load_demo
from edge.migrate import backups, migrate_database
from edge.models import SCHEMA_VERSION, SchemaOutdated
from edge.services import sales
from edge.services import staff as staff_svc
from edge.services.context import open_till
from tests.edge.conftest import make_config

# schema 1 of the tables schema 2 changed, as peewee created them
V1_TABLES = {
    "sale_line": (
        'CREATE TABLE "sale_line" ("sale_id" VARCHAR(255) NOT NULL, "line_no" INTEGER NOT NULL, '
        '"sku" VARCHAR(255) NOT NULL, "qty" INTEGER NOT NULL, "amount" INTEGER NOT NULL, '
        '"earns_points" INTEGER NOT NULL, "returned_qty" INTEGER NOT NULL, '
        'PRIMARY KEY ("sale_id", "line_no"))',
    ),
    "points_lot": (
        'CREATE TABLE "points_lot" ("lot_id" VARCHAR(255) NOT NULL PRIMARY KEY, '
        '"member_id" VARCHAR(255) NOT NULL, "earned_on" VARCHAR(255) NOT NULL, '
        '"expires_on" VARCHAR(255) NOT NULL, "remaining" INTEGER NOT NULL, '
        '"origin" VARCHAR(255) NOT NULL)',
        'CREATE INDEX "points_lot_member_id" ON "points_lot" ("member_id")',
    ),
}
V1_SALE_INDEXES = (
    'CREATE INDEX "sale_member_id" ON "sale" ("member_id")',
    'CREATE INDEX "sale_occurred_at" ON "sale" ("occurred_at")',
)


def _dump(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {
        table: sorted(conn.execute(f'SELECT * FROM "{table}"'))  # noqa: S608 - fixed names
        for table in ("sale", "sale_line", "points_lot", "ledger", "outbox", "member", "counter")
    }


def _to_schema_1(path) -> None:  # noqa: ANN001
    """Turn a current database back into what schema 1 wrote: same rows, schema-1 tables."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for table, (create, *indexes) in V1_TABLES.items():
        conn.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_old"')
        conn.execute(f'DROP INDEX IF EXISTS "{table}_member_id"')
        conn.execute(create)
        conn.execute(f'INSERT INTO "{table}" SELECT * FROM "{table}_old"')  # noqa: S608
        conn.execute(f'DROP TABLE "{table}_old"')
        for index in indexes:
            conn.execute(index)
    for index in V1_SALE_INDEXES:
        conn.execute(index)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    conn.close()


def test_a_schema_1_database_migrates_and_keeps_its_sales_and_outbox(tmp_path, clock):
    cfg = make_config(tmp_path)
    till = open_till(cfg, clock=clock, create_key=True)
    load_demo(till, members=5)
    _, cashier = staff_svc.sign_in(till, "1001", "1234")
    for card in ("C0001", "C0002", None):
        req = {"lines": [{"sku": "P0002", "qty": 2}, {"sku": "P0009"}]}
        req["tenders"] = [{"kind": "cash", "amount": 50000}]
        if card:
            req["member"] = {"card_no": card}
        sales.checkout(till, cashier, sales.CheckoutRequest.from_request(req))
    till.db.close()
    path = cfg.db_path
    _to_schema_1(path)
    conn = sqlite3.connect(path)
    before = _dump(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    assert before["sale"] and before["sale_line"] and before["points_lot"] and before["outbox"]

    with pytest.raises(SchemaOutdated, match="huiyuan-edge migrate"):
        open_till(cfg, clock=clock)  # the services do not migrate: huiyuan-edge migrate does
    assert migrate_database(path) == (1, SCHEMA_VERSION, backups(path)[0])

    copy = sqlite3.connect(backups(path)[0])  # a consistent copy of schema 1, taken first
    assert copy.execute("PRAGMA user_version").fetchone()[0] == 1
    assert _dump(copy) == before
    copy.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert _dump(conn) == before  # (schema 2 -> 3: tests/edge/test_phones.py)
    schema = {name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master")}
    assert schema["sale_line"].endswith("WITHOUT ROWID")
    assert schema["points_lot"].endswith("WITHOUT ROWID")
    assert "points_lot_member_id" in schema
    assert "sale_member_id" not in schema and "sale_occurred_at" not in schema
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    # and the migrated database sells and returns as before
    till = open_till(cfg, clock=clock)
    _, cashier = staff_svc.sign_in(till, "1001", "1234")
    _, manager = staff_svc.sign_in(till, "9001", "9999")
    done = sales.checkout(
        till,
        cashier,
        sales.CheckoutRequest.from_request(
            {
                "member": {"card_no": "C0001"},
                "lines": [{"sku": "P0002"}],
                "tenders": [{"kind": "cash", "amount": 50000}],
            }
        ),
    )
    back = sales.return_sale(till, manager, done["sale_id"], None)
    assert back["return"]["refund_total"] == done["total"]
    assert done["outbox_seq"] == len(before["outbox"]) + 1
    till.db.close()
