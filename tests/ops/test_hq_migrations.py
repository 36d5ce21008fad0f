"""An HQ database made by the first released hq/models.py is upgraded by today's
`huiyuan-hq init-db` with its rows intact, on SQLite and PostgreSQL.

The first release's models are kept verbatim in tests/fixtures/hq_models_first_release.py;
every table gets a row with a value in every column, written by those models.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
from pathlib import Path

import peewee as pw
import pytest

from hq import models as current

ROOT = Path(__file__).resolve().parents[2]
FIRST = ROOT / "tests" / "fixtures" / "hq_models_first_release.py"
T0 = dt.datetime(2026, 11, 20, 9, 30, 0)


@pytest.fixture
def first_release():
    spec = importlib.util.spec_from_file_location("hq_models_first_release", FIRST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def a_value(field: pw.Field, n: int) -> object:
    """A value of the field's kind, different per table (``n``)."""
    if isinstance(field, pw.BooleanField):
        return True
    if isinstance(field, pw.DateTimeField):
        return T0 + dt.timedelta(minutes=n)
    if isinstance(field, pw.DateField):
        return (T0 + dt.timedelta(days=n)).date()
    if isinstance(field, pw.IntegerField | pw.BigIntegerField | pw.FloatField):
        return 100 + n
    if isinstance(field, pw.BlobField):
        return f"{field.name}-{n}".encode()
    if type(field).__name__ == "JSONText":
        return {"n": n, "text": "会员"}
    max_length = getattr(field, "max_length", None) or 255
    return f"{field.name[:6]}-{n}"[:max_length]


def hq_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hq.cli", "--database-url", url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def plain(value: object) -> object:
    """psycopg2 gives a bytea column back as a memoryview."""
    return bytes(value) if isinstance(value, memoryview) else value


def make_first_release_database(module, url: str) -> dict[str, list[dict]]:
    """The first release's schema with one row per table; returns the rows written."""
    db = module.open_database(url)
    module.bind(db, create=True)
    written = {}
    with db.connection_context():
        for n, model in enumerate(module.MODELS):
            row = {f.name: a_value(f, n) for f in model._meta.sorted_fields}
            model.insert(row).execute()
            written[model._meta.table_name] = [
                {f.column_name: row[f.name] for f in model._meta.sorted_fields}
            ]
    db.close()
    return written


def test_the_first_release_schema_upgrades_with_its_rows(first_release, hq_db_url):
    written = make_first_release_database(first_release, hq_db_url)
    done = hq_cli(hq_db_url, "init-db")
    assert done.returncode == 0, done.stderr
    again = hq_cli(hq_db_url, "init-db")  # twice is the same as once
    assert again.returncode == 0, again.stderr

    db = current.open_database(hq_db_url)
    current.bind(db, create=False)
    try:
        with db.connection_context():
            # every table and column the current models declare is there
            for model in current.MODELS:
                table = model._meta.table_name
                assert db.table_exists(table), table
                have = {c.name for c in db.get_columns(table)}
                assert {f.column_name for f in model._meta.sorted_fields} <= have, table
            # every old row is there with every old value, read by today's models
            by_table = {m._meta.table_name: m for m in current.MODELS}
            for table, rows in written.items():
                model = by_table.get(table)
                if model is None:
                    continue  # a table the current release no longer uses stays as it was
                found = [
                    {col: plain(getattr(r, model._meta.columns[col].name)) for col in rows[0]}
                    for r in model.select()
                ]
                assert found == rows, table
            # and the current release writes to the upgraded tables
            member = current.Member.get()
            member.points += 1
            member.save()
            assert current.SchedulerState.select().count() == 0
    finally:
        db.close()


@pytest.mark.parametrize("command", ["serve-api", "serve-ingest", "serve-scheduler"])
def test_the_hq_services_refuse_an_old_schema_and_name_init_db(first_release, tmp_path, command):
    url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    make_first_release_database(first_release, url)
    done = hq_cli(url, command)
    assert done.returncode == 17, done.stderr
    assert "store.reported_seq" in done.stderr and "huiyuan-hq init-db" in done.stderr
    # and nothing was changed: init-db still finds the column missing and adds it
    db = current.open_database(url)
    try:
        assert "reported_seq" not in {c.name for c in db.get_columns("store")}
    finally:
        db.close()
