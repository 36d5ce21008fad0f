"""``huiyuan-edge migrate``: back the store database up, then bring it to the current schema.

Migrations run here, once, not in every process that opens the file: the till and the
sync agent refuse a file of an older schema (``edge.models.SchemaOutdated``) and the
``huiyuan-edge-migrate`` oneshot unit, which both services Require and start After, runs
this command first. The backup is a consistent copy taken through SQLite's online backup
API (a copy of the file alone would miss what is still in the WAL), beside the database,
named for the schema it holds and the time it was taken:
``edge.sqlite3.backup-v1-20261204T192500.123456Z``; the newest ``keep`` of them are kept.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
from pathlib import Path

import click

from core.errors import HuiyuanError
from core.sqlite_copy import copy_sqlite

BACKUP_INFIX = ".backup-v"


def backup_path(db_path: Path, version: int, now: dt.datetime) -> Path:
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return db_path.with_name(f"{db_path.name}{BACKUP_INFIX}{version}-{stamp}")


def backups(db_path: Path) -> list[Path]:
    """The migration backups beside ``db_path``, oldest first (by the time in the name)."""
    found = db_path.parent.glob(f"{db_path.name}{BACKUP_INFIX}*")
    return sorted(found, key=lambda p: p.name.rsplit("-", 1)[-1])


def backup_database(db_path: Path, target: Path) -> None:
    """A consistent copy of ``db_path`` at ``target`` (mode 0600) through SQLite's online
    backup API (core.sqlite_copy)."""
    copy_sqlite(db_path, target)


def migrate_database(
    db_path: Path, keep: int = 3, now: dt.datetime | None = None
) -> tuple[int, int, Path | None]:
    """Back up (when there is data of an older schema) and migrate ``db_path``.
    Returns (version before, version after, the backup or None)."""
    from edge.models import SCHEMA_VERSION, open_database
    from edge.sync.apply import ensure_sync_tables

    version, backup = 0, None
    if db_path.exists():
        conn = sqlite3.connect(db_path)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
        if 0 < version < SCHEMA_VERSION:
            backup = backup_path(db_path, version, now or dt.datetime.now(dt.UTC))
            backup_database(db_path, backup)
            for old in backups(db_path)[:-keep]:
                old.unlink()
    db = open_database(db_path, upgrade=True)
    try:
        after = int(db.execute_sql("PRAGMA user_version").fetchone()[0])
        ensure_sync_tables(db)
    finally:
        db.close()
    return version, after, backup


@click.command("migrate")
@click.option(
    "--keep", default=3, show_default=True, type=click.IntRange(min=1), help="backups kept"
)
def migrate_command(keep: int) -> None:
    """Back the database up, then bring it to this software's schema (run once after an
    upgrade, before the till and the sync agent start; safe to run again)."""
    from edge.cli import _load

    cfg = _load()
    try:
        before, after, backup = migrate_database(cfg.db_path, keep)
    except HuiyuanError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    if before == after:
        click.echo(
            f"数据库结构版本 {after}，无需迁移 (schema {after}, nothing to migrate): {cfg.db_path}"
        )
        return
    if backup is None:
        click.echo(f"新数据库 (new database), schema {after}: {cfg.db_path}")
        return
    click.echo(f"已备份 (backed up): {backup}")
    click.echo(f"数据库结构版本 {before} → {after} (schema {before} -> {after}): {cfg.db_path}")
