"""What feeds systemd's watchdog at HQ (core/systemd.py) besides each loop's own checks:
the database answers a query, on a connection opened for the check (so a restarted
PostgreSQL is found again rather than failing on a dead connection forever)."""

from __future__ import annotations

import peewee as pw

from core.systemd import HealthCheck


def database_answers(db: pw.Database) -> HealthCheck:
    def database_answers() -> bool:
        with db.connection_context():
            return db.execute_sql("SELECT 1").fetchone()[0] == 1

    return database_answers
