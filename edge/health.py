"""What feeds systemd's watchdog on the edge (core/systemd.py): the till is healthy while
its server loop goes round and its database answers; the sync agent while its worker
loop goes round."""

from __future__ import annotations

from typing import Any

from peewee import SqliteDatabase

from core.systemd import HealthCheck


def database_answers(db: SqliteDatabase) -> HealthCheck:
    """A check that reads the database file (the schema page), not just the connection."""

    def database_answers() -> bool:
        return db.execute_sql("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0

    return database_answers


def till_checks(server: Any, db: SqliteDatabase) -> list[HealthCheck]:
    """The till's serving loop (TillServer.pulse) went round and the database answers."""
    return [server.pulse.advanced, database_answers(db)]
