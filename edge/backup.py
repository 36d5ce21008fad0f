"""The store box's backup, and what a box restored from one does when HQ is ahead of it.

``huiyuan-edge backup --out FILE`` copies the live database through SQLite's online
backup API: the till keeps trading (WAL readers do not block its writer) and the copy
holds everything committed when it ran, the WAL included. The member data key is not
in it: keep the key's credential apart (docs/operations.md, "Backup and restore").

A box restored from its backup (or rebuilt with an empty database) has lost the outbox
items it made after the backup. HQ applied them already, at seqs the box will hand out
again to new sales; HQ would take those as duplicates by seq and drop them. The box
learns it from HQ's answer to its hello: an ack past the box's last seq.
``move_past_hq_cursor`` then moves every outbox item HQ has not acknowledged to the
seqs after HQ's cursor, in order, and the outbox counter with them (docs/protocol.md,
"A box restored from its backup").
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path

import click
from peewee import SqliteDatabase

from core.sqlite_copy import copy_sqlite

log = logging.getLogger("edge.backup")


def backup_database(db: SqliteDatabase, out: Path) -> int:
    """A consistent copy of the open database at ``out`` (written aside, then renamed,
    so that ``out`` is never half a file); returns its size in bytes."""
    return copy_sqlite(Path(db.database), out)


def move_past_hq_cursor(db: SqliteDatabase, acked_through: int, hq_cursor: int) -> int:
    """Outbox items after ``acked_through`` become the seqs after ``hq_cursor``; returns
    how far they moved (0 when HQ is not past this box's last seq after all).

    Runs in one IMMEDIATE transaction, so the till cannot allocate a seq meanwhile. The
    new seqs are all above the old ones (HQ's cursor is past the box's last seq), so one
    UPDATE moves them without a collision. An item HQ had already applied at its old seq
    is recognised at the new one by its id (a duplicate at HQ)."""
    with db.atomic("IMMEDIATE"):
        top = db.execute_sql('SELECT MAX("seq") FROM "outbox"').fetchone()[0] or 0
        if hq_cursor <= top:
            return 0
        shift = hq_cursor - acked_through
        db.execute_sql(
            'UPDATE "outbox" SET "seq" = "seq" + ?, "payload" = json_set("payload", '
            '\'$.seq\', "seq" + ?) WHERE "seq" > ?',
            (shift, shift, acked_through),
        )
        db.execute_sql(
            'INSERT INTO "counter" ("name", "value") VALUES (\'outbox\', ?) '
            'ON CONFLICT ("name") DO UPDATE SET "value" = "value" + ?',
            (hq_cursor, shift),
        )
    log.warning(
        "HQ holds seqs through %d, this box's outbox ended at %d: restored from a backup? "
        "items after %d now follow HQ's cursor (moved by %d)",
        hq_cursor,
        top,
        acked_through,
        shift,
    )
    return shift


@click.command("backup")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="备份文件 (the backup file to write).",
)
def backup(out: Path) -> None:
    """Back up the store database while the till trades (SQLite online backup)."""
    from edge.cli import _open

    till = _open()
    try:
        size = backup_database(till.db, out)
    except (OSError, sqlite3.Error) as exc:
        click.echo(f"备份失败: {out}: {exc} (backup failed)", err=True)
        sys.exit(1)
    finally:
        till.db.close()
    click.echo(f"已备份到 {out} ({size} 字节) (backed up)")
