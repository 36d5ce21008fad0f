"""A durable print queue in its own SQLite file.

The sale is committed before the till asks for a receipt, so a receipt must
survive a paper-out printer, an unplugged cable and a restart of the box. A
job stays ``queued`` until the printer has taken all its bytes; a job whose
data cannot be rendered at all becomes ``failed`` so it never blocks the ones
behind it. A job interrupted mid-write is printed again in full (a duplicate
receipt is better than a lost one).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS print_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,              -- receipt | test_page
    payload TEXT NOT NULL,           -- JSON
    status TEXT NOT NULL DEFAULT 'queued',  -- queued | done | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS print_jobs_status ON print_jobs (status, seq);
"""


@dataclass(frozen=True, slots=True)
class PrintJob:
    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    last_error: str | None
    created_at: float


class PrintQueue:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, kind: str, payload: dict[str, Any]) -> str:
        job_id = uuid.uuid4().hex
        body = json.dumps(payload, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT INTO print_jobs (id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                (job_id, kind, body, time.time()),
            )
        return job_id

    def next_queued(self) -> PrintJob | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, kind, payload, status, attempts, last_error, created_at"
                " FROM print_jobs WHERE status = 'queued' ORDER BY seq LIMIT 1"
            ).fetchone()
        return _job(row) if row else None

    def get(self, job_id: str) -> PrintJob | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, kind, payload, status, attempts, last_error, created_at"
                " FROM print_jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
        return _job(row) if row else None

    def mark_done(self, job_id: str) -> None:
        self._finish(job_id, "done", None)

    def mark_failed(self, job_id: str, error: str) -> None:
        """The job itself is bad (cannot be rendered): never retried."""
        self._finish(job_id, "failed", error)

    def record_attempt(self, job_id: str, error: str) -> None:
        """The printer was not able to take the job; it stays queued."""
        with self._lock:
            self._db.execute(
                "UPDATE print_jobs SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, job_id),
            )

    def _finish(self, job_id: str, status: str, error: str | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE print_jobs SET status = ?, attempts = attempts + 1, last_error = ?,"
                " finished_at = ? WHERE id = ?",
                (status, error, time.time(), job_id),
            )

    def depth(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM print_jobs WHERE status = 'queued'"
            ).fetchone()
        return int(count)

    def purge_finished(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM print_jobs WHERE status != 'queued' AND finished_at < ?", (cutoff,)
            )
        return cur.rowcount


def _job(row: tuple[Any, ...]) -> PrintJob:
    job_id, kind, payload, status, attempts, last_error, created_at = row
    return PrintJob(job_id, kind, json.loads(payload), status, attempts, last_error, created_at)
