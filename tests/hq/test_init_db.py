"""``huiyuan-hq init-db`` run by several units at once (every HQ unit used to run it as
ExecStartPre) creates the schema once: a PostgreSQL advisory lock, on SQLite an IMMEDIATE
transaction, around the whole schema creation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import peewee as pw
import pytest

from hq.models import MODELS, bind, open_database

ROOT = Path(__file__).resolve().parents[2]
AT_ONCE = 4


def init_db_at_once(url: str) -> None:
    cmd = [sys.executable, "-m", "hq.cli", "--database-url", url, "init-db"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(AT_ONCE)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * AT_ONCE, "\n".join(outputs)


def a_plain_nullable_column() -> tuple[str, str]:
    """A table and a nullable column without index or constraint: one an older release
    may not have had, which ``init-db`` adds."""
    for model in MODELS:
        for f in model._meta.sorted_fields:
            plain = not (f.index or f.unique or f.primary_key or isinstance(f, pw.ForeignKeyField))
            if f.null and plain:
                return model._meta.table_name, f.column_name
    raise AssertionError("no plain nullable column")


@pytest.mark.parametrize("attempt", range(2))
def test_init_db_run_by_several_processes_at_once_on_a_fresh_database(hq_db_url, attempt):
    init_db_at_once(hq_db_url)
    db = bind(open_database(hq_db_url), create=False)
    try:
        assert {m._meta.table_name for m in MODELS} <= set(db.get_tables())
    finally:
        db.close()


@pytest.mark.parametrize("attempt", range(2))
def test_init_db_run_at_once_after_an_upgrade_adds_the_column_once(hq_db_url, attempt):
    table, column = a_plain_nullable_column()
    db = bind(open_database(hq_db_url), create=True)
    db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')  # as an older release made it
    db.close()
    init_db_at_once(hq_db_url)
    db = open_database(hq_db_url)
    try:
        assert column in {c.name for c in db.get_columns(table)}
    finally:
        db.close()


def unit(name: str) -> dict[str, list[str]]:
    """A systemd unit file's keys and their values (a key may repeat), all sections."""
    keys: dict[str, list[str]] = {}
    for line in (ROOT / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_the_schema_is_made_by_one_oneshot_unit_the_hq_services_require():
    migrate = unit("huiyuan-hq-migrate.service")
    assert migrate["Type"] == ["oneshot"]
    assert migrate["ExecStart"] == ["/opt/huiyuan/.venv/bin/huiyuan-hq init-db"]
    for name in ("huiyuan-hq-api.service", "huiyuan-hq-ingest@.service"):
        service = unit(name)
        assert not any("init-db" in v for v in service.get("ExecStartPre", [])), name
        assert "huiyuan-hq-migrate.service" in service["Requires"][0].split(), name
        assert "huiyuan-hq-migrate.service" in service["After"][0].split(), name
