"""``huiyuan-hq backup --out FILE``: a consistent copy of the chain database while HQ runs.

SQLite: SQLite's online backup API (the WAL included; the workers keep writing).
PostgreSQL: ``pg_dump --format=custom`` of the database URL (restore with
``pg_restore --clean --if-exists -d URL FILE``). What a restored HQ gets back from the
stores, and what it does not, is in docs/operations.md, "Backup and restore".
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import click

from core.sqlite_copy import copy_sqlite

PG_DUMP = "pg_dump"


def backup_sqlite(path: Path, out: Path) -> None:
    """The database at ``path`` copied to ``out`` through the backup API."""
    copy_sqlite(path, out)


def backup_postgres(url: str, out: Path) -> None:
    """``pg_dump`` of ``url`` in its custom format; CalledProcessError if it fails."""
    partial = out.with_name(out.name + ".partial")
    # a password goes through the environment, not the command line (ps shows that)
    parts = urlparse(url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
        url = parts._replace(netloc=netloc).geturl()
    subprocess.run(  # noqa: S603
        [PG_DUMP, "--format=custom", "--file", str(partial), "--dbname", url],
        check=True,
        env=env,
        capture_output=True,
    )
    os.replace(partial, out)


@click.command("backup")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the backup file to write",
)
@click.pass_context
def backup(ctx: click.Context, out: Path) -> None:
    """Back up the chain database while HQ runs (SQLite backup API, or pg_dump)."""
    url = ctx.obj["config"].database_url
    scheme = urlparse(url).scheme
    try:
        if scheme == "sqlite":
            backup_sqlite(Path(url.removeprefix("sqlite:///")), out)
        elif shutil.which(PG_DUMP) is None:
            click.echo(f"error: {PG_DUMP} is not installed (postgresql-client)", err=True)
            sys.exit(2)
        else:
            backup_postgres(url, out)
    except subprocess.CalledProcessError as exc:
        click.echo(f"error: pg_dump failed: {exc.stderr.decode(errors='replace')}", err=True)
        sys.exit(1)
    except (OSError, sqlite3.Error) as exc:
        click.echo(f"error: backup to {out} failed: {exc}", err=True)
        sys.exit(1)
    click.echo(f"backed up to {out} ({out.stat().st_size} bytes)")
