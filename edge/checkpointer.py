"""The till server's WAL checkpointer: a child process that copies the WAL into the
database between sales, so no sale pays for it.

It runs as its own process (``python -m edge.checkpointer``), not as a thread of the
till server: a thread shares the server's GIL, and every checkpoint round handed the GIL
back and forth with the thread serving the sale. Measured on the benchmark store, the
thread cost each checkout about 50 µs at p50 and the p99 rose by about 1.5 ms
(docs/benchmarks.md, till). The child needs only the standard library and ``sqlite3``.

The parent (``WalCheckpointer``) talks to it through two things only:

- the child's standard input: closing it (``stop()``, or the parent dying in any way)
  tells the child to run a last TRUNCATE and exit, so no checkpointer outlives its till;
- a small counts file the child rewrites after every round (what it did, for tests and
  the benchmark).

Every other process (the sync agent, CLI commands, tests) keeps SQLite's automatic
checkpoint at commit, every ``AUTOCHECKPOINT_PAGES``. The till server's connections keep
one too, at ``BACKSTOP_FACTOR`` times the WAL limit: with the child running the WAL never
gets that long, and if the child died it still cannot grow without bound.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

AUTOCHECKPOINT_PAGES = 1000  # SQLite's default
BACKSTOP_FACTOR = 4
COUNT_KEYS = ("passive", "truncate", "restart", "busy", "failed")
_COUNTS_BYTES = 256

log = logging.getLogger(__name__)


class _Database(Protocol):  # what WalCheckpointer needs of peewee's SqliteDatabase
    database: str

    def pragma(self, key: str, value: Any = ..., permanent: bool = ...) -> Any: ...


class CheckpointLoop:
    """The rounds, on the child's own connection. It looks at the database twenty times an
    interval and runs a round every ``interval`` seconds, and sooner when the WAL file grew
    by a sixteenth of ``limit_bytes``, that is when sales are appending to it:

    - while sales come in: PASSIVE checkpoints, which never block a writer, a few rounds a
      millisecond apart until one finds nothing new to copy; then a RESTART (up to
      ``RESTART_TRIES`` of them, a moment apart, while sales hold the write lock each time
      it looks), which waits up to ``RESTART_WAIT_MS`` for the write lock and holds it
      while it copies what the sales committed since (a sale may wait for it, about a
      millisecond), so that the next sale writes the WAL from its beginning, over the
      blocks the file already has (cut to ``limit_bytes``), instead of appending to it: an
      appending commit's fsync also journals the file's new size and blocks (p50 0.34 ms
      against 0.20 ms overwriting, for a checkout's commit on the benchmark store);
    - once nothing was committed for a whole interval: TRUNCATE, leaving an empty WAL;
    - as a backstop, when the RESTART could not run and the WAL file outgrew
      ``limit_bytes``: TRUNCATE, attempted without waiting (busy timeout 0), so it gives up
      at once rather than hold a sale; past twice the limit it waits up to 100 ms, and a
      sale may then wait for it.
    """

    CATCH_UP_ROUNDS = 8
    POLLS_PER_INTERVAL = 20
    RESTART_WAIT_MS = 5  # also the longest it holds the write lock waiting for readers
    RESTART_TRIES = 4

    def __init__(
        self, path: str, interval: float, limit_bytes: int, counts_path: str | None = None
    ) -> None:
        self.path = path
        self.wal_path = path + "-wal"
        self.interval = interval
        self.limit_bytes = limit_bytes
        self.counts = dict.fromkeys(COUNT_KEYS, 0)
        self._counts_fd = os.open(counts_path, os.O_WRONLY) if counts_path else None
        self._last_version: int | None = None

    def wal_size(self) -> int:
        try:
            return os.path.getsize(self.wal_path)
        except OSError:
            return 0

    def run(self, stop_fd: int) -> None:
        """Rounds until ``stop_fd`` reaches end of file, then a last TRUNCATE."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            # never wait for the till's write lock: a checkpoint that cannot run now runs
            # next round
            conn.execute("PRAGMA busy_timeout = 0")
            poll = self.interval / self.POLLS_PER_INTERVAL
            step = max(self.limit_bytes // 16, 1)
            due = time.monotonic() + self.interval
            low = self.wal_size()
            while not _ended(stop_fd, poll):
                size = self.wal_size()
                low = min(low, size)
                if time.monotonic() >= due or size >= low + step:
                    self.checkpoint_once(conn)
                    due = time.monotonic() + self.interval
                    low = self.wal_size()
            conn.execute("PRAGMA busy_timeout = 2000")  # stopping: the last one may wait
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    def checkpoint_once(self, conn: sqlite3.Connection) -> None:
        """One round: passive while busy, truncate when idle or past the limit."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        idle, self._last_version = version == self._last_version, version
        if idle:
            if self.wal_size():
                self._checkpoint(conn, "TRUNCATE")
            return
        previous = -1
        for _ in range(self.CATCH_UP_ROUNDS):
            busy, frames, copied = self._checkpoint(conn, "PASSIVE")
            if busy or frames == copied == previous:
                break  # all copied and nothing committed since: the next sale restarts the WAL
            previous = frames
            time.sleep(0.001)  # let the sale that is writing now finish
        restarted = False
        with _waiting(conn, self.RESTART_WAIT_MS):
            for _ in range(self.RESTART_TRIES if not busy else 0):
                if not self._checkpoint(conn, "RESTART")[0]:
                    restarted = True
                    break
                # a sale held the write lock each time SQLite looked (a few times in
                # RESTART_WAIT_MS): under a gapless stream of sales on a busy machine that
                # can go on, so look again at another moment of the sales' rhythm
                time.sleep(random.uniform(0.0002, 0.002))  # noqa: S311 - timing jitter
        if restarted:
            return  # the next sale starts the WAL over and cuts the file to limit_bytes
        size = self.wal_size()
        if size > 2 * self.limit_bytes:
            # far past the limit: this one may make a sale wait, up to 100 ms
            with _waiting(conn, 100):
                self._checkpoint(conn, "TRUNCATE")
        elif size > self.limit_bytes:
            self._checkpoint(conn, "TRUNCATE")

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
        try:
            busy, frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:  # e.g. locked: try again next round
            self._count("failed")
            log.warning("WAL checkpoint (%s) failed: %s", mode, exc)
            return 1, 0, 0
        self._count(mode.lower() if not busy else "busy")
        return busy, frames, copied

    def _count(self, key: str) -> None:
        self.counts[key] += 1
        if self._counts_fd is not None:
            # one small write at offset 0; a parent that reads it mid-write reads it again
            text = json.dumps(self.counts).encode()
            os.pwrite(self._counts_fd, text.ljust(_COUNTS_BYTES), 0)


@contextmanager
def _waiting(conn: sqlite3.Connection, ms: int) -> Iterator[None]:
    """Lets the checkpoints inside wait up to ``ms`` for a lock, then never again."""
    conn.execute(f"PRAGMA busy_timeout = {int(ms)}")
    try:
        yield
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def _ended(fd: int, timeout: float) -> bool:
    """Waits up to ``timeout`` on the parent's pipe: true once it is closed."""
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable) and os.read(fd, 4096) == b""


class WalCheckpointer:
    """The till server's handle on its checkpointer process.

    ``start()`` sets the automatic checkpoint of ``db``'s connections (each thread of the
    till server has one) to the backstop and starts the child; ``stop()`` ends the child
    after its last TRUNCATE and gives ``db`` SQLite's default automatic checkpoint back.
    """

    def __init__(self, db: _Database, interval: float = 1.0, limit_bytes: int = 16 * 2**20) -> None:
        self.db = db
        self.path = str(db.database)
        self.interval = interval
        self.limit_bytes = limit_bytes
        self._process: subprocess.Popen[bytes] | None = None
        self._counts_path: str | None = None
        self._last_counts = dict.fromkeys(COUNT_KEYS, 0)

    @property
    def backstop_pages(self) -> int:
        page_size = self.db.pragma("page_size")
        return max(BACKSTOP_FACTOR * self.limit_bytes // page_size, AUTOCHECKPOINT_PAGES)

    def start(self) -> WalCheckpointer:
        self.db.pragma("wal_autocheckpoint", self.backstop_pages, permanent=True)
        self.db.pragma("journal_size_limit", self.limit_bytes, permanent=True)
        fd, self._counts_path = tempfile.mkstemp(prefix="hy-wal-checkpointer-", suffix=".json")
        os.close(fd)
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "edge.checkpointer",
                self.path,
                "--interval",
                repr(self.interval),
                "--limit-bytes",
                str(self.limit_bytes),
                "--counts",
                self._counts_path,
            ],
            stdin=subprocess.PIPE,
            close_fds=True,
        )
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def counts(self) -> dict[str, int]:
        """What the child has done so far: rounds by mode, busy and failed ones."""
        for attempt in range(3) if self._counts_path is not None else ():
            text = Path(self._counts_path).read_bytes().strip()
            try:
                self._last_counts = json.loads(text) if text else self._last_counts
                break
            except ValueError:  # read while the child rewrote it: read again
                if attempt == 2:
                    raise
                time.sleep(0.001)
        return dict(self._last_counts)

    def stop(self, timeout: float = 10.0) -> None:
        process = self._process
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # end of file: the child's last round, then exit
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("WAL checkpointer did not stop within %.1f s; killing it", timeout)
                process.kill()
                process.wait()
            if process.returncode:
                log.warning("WAL checkpointer exited with status %s", process.returncode)
        if self._counts_path is not None:
            self._last_counts = self.counts  # the final counts, kept once the file is gone
            Path(self._counts_path).unlink(missing_ok=True)
            self._counts_path = None
        self.db.pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES, permanent=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the till server's WAL checkpointer")
    parser.add_argument("db")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--limit-bytes", type=int, default=16 * 2**20)
    parser.add_argument("--counts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="wal-checkpointer: %(message)s")
    # Ctrl-C at a terminal reaches the whole process group: the till server stops this
    # process itself, after its own shutdown, by closing our standard input
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    CheckpointLoop(args.db, args.interval, args.limit_bytes, args.counts).run(sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
