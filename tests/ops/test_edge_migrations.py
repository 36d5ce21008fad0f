"""Every released edge schema upgrades to the current one, once, after a backup.

The fixtures (tests/fixtures/edge_schema_*.sql) were written by the releases that shipped
each schema (tests/fixtures/make_edge_schemas.py); the tests go to whatever
``SCHEMA_VERSION`` is, so a new migration is tested from every older release too.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli import main as edge_cli
from edge.migrate import backups, migrate_database
from edge.models import MIGRATIONS, SCHEMA_VERSION, SchemaOutdated, open_database
from edge.services import sales
from edge.services import staff as staff_svc
from edge.services.context import open_till
from tests.edge.conftest import CN, make_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RELEASED = sorted(p.stem for p in FIXTURES.glob("edge_schema_*.sql"))
# the member's phone columns are re-keyed by later schemas (issue 10); the rest must survive
REKEYED = {("member", "phone_hash"), ("member", "phone_enc")}


def released_database(name: str, data_dir: Path) -> Path:
    """The fixture's database at <data_dir>/edge.sqlite3 with its member key in keys/."""
    (data_dir / "keys").mkdir(parents=True)
    shutil.copy(FIXTURES / "edge_member.key", data_dir / "keys" / "member.key")
    path = data_dir / "edge.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / f"{name}.sql").read_text(encoding="utf-8"))
    conn.close()
    return path


def version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def rows(path: Path, like: dict | None = None) -> dict[str, tuple[tuple[str, ...], set[tuple]]]:
    """Each table's columns and rows (of the tables and columns in ``like``, if given),
    leaving out the re-keyed columns."""
    conn = sqlite3.connect(path)
    out = {}
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in like or tables:
            have = [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")')]
            cols = tuple(like[table][0] if like else (c for c in have if (table, c) not in REKEYED))
            select = ", ".join(f'"{c}"' for c in cols)
            out[table] = (cols, set(conn.execute(f'SELECT {select} FROM "{table}"')))  # noqa: S608
    finally:
        conn.close()
    return out


def schema(path: Path) -> dict[str, object]:
    """What the schema is made of: each object's kind, each table's columns and its SQL
    (WITHOUT ROWID or not), each index's columns; not how the CREATE text was spelled."""
    conn = sqlite3.connect(path)
    try:
        out: dict[str, object] = {}
        for kind, name, table in conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ):
            if kind == "table":
                info = [c[1:] for c in conn.execute(f'PRAGMA table_info("{name}")')]
                rowid = conn.execute(
                    "SELECT sql LIKE '%WITHOUT ROWID' FROM sqlite_master WHERE name = ?", (name,)
                ).fetchone()[0]
                out[name] = (kind, tuple(info), bool(rowid))
            elif kind == "index":
                cols = tuple(c[2] for c in conn.execute(f'PRAGMA index_info("{name}")'))
                out[name] = (kind, table, cols)
            else:
                out[name] = (kind, table)
        return out
    finally:
        conn.close()


def test_every_schema_step_has_a_migration():
    assert sorted(MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))
    assert {int(name.split("_v")[1][0]) for name in RELEASED} >= {1, 2}


@pytest.mark.parametrize("name", RELEASED)
def test_a_released_database_migrates_to_the_current_schema_with_its_data(tmp_path, name):
    path = released_database(name, tmp_path / "edge")
    released = version_of(path)
    before = rows(path)
    assert all(before[t][1] for t in ("sale", "sale_line", "outbox", "ledger", "points_lot"))

    if released < SCHEMA_VERSION:
        with pytest.raises(SchemaOutdated, match="huiyuan-edge migrate"):
            open_database(path)  # what the till and the sync agent do: refuse, not migrate
        assert version_of(path) == released
        assert rows(path) == before  # and nothing was touched

    done = migrate_database(path, now=dt.datetime(2026, 12, 4, 19, 30, tzinfo=dt.UTC))
    assert version_of(path) == SCHEMA_VERSION
    assert rows(path, like=before) == before  # every row and value (new columns aside)

    # the same schema as a database this software makes from nothing
    fresh = tmp_path / "fresh" / "edge.sqlite3"
    migrate_database(fresh)
    assert schema(path) == schema(fresh)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    if released < SCHEMA_VERSION:
        (backup,) = backups(path)
        assert done == (released, SCHEMA_VERSION, backup)
        assert backup.name == f"edge.sqlite3.backup-v{released}-20261204T193000.000000Z"
        assert backup.stat().st_mode & 0o777 == 0o600
        assert version_of(backup) == released and rows(backup) == before
    else:
        assert done == (SCHEMA_VERSION, SCHEMA_VERSION, None) and backups(path) == []

    # a second run finds nothing to do and takes no backup
    assert migrate_database(path)[2] is None
    assert len(backups(path)) == (released < SCHEMA_VERSION)


@pytest.mark.parametrize("name", RELEASED)
def test_a_migrated_database_sells_tops_up_and_returns(tmp_path, name):
    path = released_database(name, tmp_path / "edge")
    outbox_before = len(rows(path)["outbox"][1])
    migrate_database(path)
    cfg = make_config(tmp_path)
    clock = lambda: dt.datetime(2026, 12, 4, 10, 0, tzinfo=CN)  # noqa: E731
    till = open_till(cfg, clock=clock)
    try:
        _, cashier = staff_svc.sign_in(till, "1001", "1234")
        _, manager = staff_svc.sign_in(till, "9001", "9999")
        req = {
            "member": {"card_no": "C0001"},
            "lines": [{"sku": "P0002"}],
            "tenders": [{"kind": "cash", "amount": 50000}],
        }
        done = sales.checkout(till, cashier, sales.CheckoutRequest.from_request(req))
        assert done["outbox_seq"] == outbox_before + 1
        back = sales.return_sale(till, manager, done["sale_id"], None)
        assert back["return"]["refund_total"] == done["total"]
        topped = sales.top_up(till, cashier, {"card_no": "C0002"}, 10000)
        assert topped["principal"] == 10000
    finally:
        till.db.close()


def test_backups_beyond_keep_are_removed_oldest_first(tmp_path):
    path = released_database("edge_schema_v1_last", tmp_path / "edge")
    original = path.read_bytes()
    for minute in range(4):
        path.write_bytes(original)  # the same schema-1 file again (the WAL was checkpointed)
        when = dt.datetime(2026, 12, 4, 19, minute, tzinfo=dt.UTC)
        migrate_database(path, keep=2, now=when)
    assert [p.name.rsplit("-", 1)[1] for p in backups(path)] == [
        "20261204T190200.000000Z",
        "20261204T190300.000000Z",
    ]


def _cli_config(tmp_path: Path, path: Path) -> Path:
    toml = tmp_path / "edge.toml"
    toml.write_text(f'data_dir = "{path.parent}"\n[security]\nscrypt_n = 1024\n', encoding="utf-8")
    return toml


def test_the_services_refuse_an_old_schema_and_name_the_command(tmp_path):
    path = released_database("edge_schema_v1_last", tmp_path / "edge")
    toml = _cli_config(tmp_path, path)
    runner = CliRunner()
    for command in ("serve", "serve-sync"):
        result = runner.invoke(edge_cli, ["-c", str(toml), command])
        assert result.exit_code == SchemaOutdated.code, (command, result.output)
        assert "huiyuan-edge migrate" in result.output
        assert version_of(path) == 1

    result = runner.invoke(edge_cli, ["-c", str(toml), "migrate"])
    assert result.exit_code == 0, result.output
    assert "已备份 (backed up)" in result.output and f"1 → {SCHEMA_VERSION}" in result.output
    assert version_of(path) == SCHEMA_VERSION
    result = runner.invoke(edge_cli, ["-c", str(toml), "migrate"])
    assert result.exit_code == 0 and "无需迁移" in result.output
