"""The store's database: peewee models declared without a database, bound at start.

SQLite in WAL mode with synchronous=FULL: a transaction the till acknowledged
survives a process kill and a power cut. Every write transaction begins
IMMEDIATE so the till API and the sync agent (two processes) queue for the
write lock instead of failing half-way.

Who checkpoints the WAL (copies it back into the database file):

- the till server (``huiyuan-edge serve``) turns off its connections' automatic
  checkpoint and runs a ``WalCheckpointer`` thread with its own connection, so no
  sale pays for copying the WAL;
- every other process (the sync agent, CLI commands, tests) keeps SQLite's automatic
  checkpoint at commit, every ``AUTOCHECKPOINT_PAGES``, so the WAL stays bounded
  whether or not the till server runs. The sync agent's commits are not on a
  cashier's clock, and a checkpoint in another process never blocks the till's writes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from peewee import (
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    CompositeKey,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
)

from core.protocol import json_text


class JSONField(TextField):
    def db_value(self, value: Any) -> str | None:
        return None if value is None else json_text(value)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        legacy_table_names = False


class Setting(BaseModel):
    """Small key/value facts: rules document, sync cursors, schema version."""

    key = CharField(primary_key=True)
    value = JSONField()


class Counter(BaseModel):
    """Gapless counters, advanced inside the transaction that uses the number."""

    name = CharField(primary_key=True)
    value = BigIntegerField(default=0)


class Staff(BaseModel):
    code = CharField(primary_key=True)
    name = CharField()
    role = CharField()  # cashier | manager
    pin_hash = CharField()
    active = BooleanField(default=True)


class StaffSession(BaseModel):
    token_hash = CharField(primary_key=True)
    staff_code = CharField(index=True)
    created_at = CharField()
    expires_at = CharField()


class Member(BaseModel):
    id = CharField(primary_key=True)  # UUID minted where the member registered
    name = CharField()
    name_pinyin = CharField(index=True)
    name_initials = CharField(index=True)
    phone_hash = CharField(unique=True, null=True)
    phone_enc = BlobField(null=True)
    phone_tail = CharField(default="")  # last four digits, for the cashier to confirm
    gender = CharField(default="")
    birthday = CharField(null=True)
    birthday_calendar = CharField(default="solar")
    birthday_leap_month = BooleanField(default=False)
    card_type = CharField(default="普通卡")
    tier = CharField(default="")
    staff_code = CharField(null=True)  # the staff member who looks after this member
    password_hash = CharField(null=True)
    status = CharField(default="active")  # active | merged | blocked
    registered_at = CharField()
    registered_store = CharField()
    sv_principal = BigIntegerField(default=0)
    sv_bonus = BigIntegerField(default=0)
    points_debt = BigIntegerField(default=0)  # points reversed on returns after being spent
    updated_at = CharField()


class MemberAlias(BaseModel):
    """An old member id merged into a survivor at HQ."""

    old_id = CharField(primary_key=True)
    member_id = CharField(index=True)


class Card(BaseModel):
    card_no = CharField(primary_key=True)
    member_id = CharField(index=True)
    status = CharField(default="active")  # active | blocked
    issued_at = CharField()


class PointsLot(BaseModel):
    lot_id = CharField(primary_key=True)
    member_id = CharField(index=True)
    earned_on = CharField()
    expires_on = CharField()
    remaining = BigIntegerField()
    origin = CharField(default="")  # sale id, or "hq"

    class Meta:
        without_rowid = True  # schema 2: the table is its primary key's b-tree


class Product(BaseModel):
    sku = CharField(primary_key=True)
    barcode = CharField(null=True, unique=True)
    name = CharField()
    price = BigIntegerField()
    promo_price = BigIntegerField(null=True)
    no_member_discount = BooleanField(default=False)
    no_points = BooleanField(default=False)
    active = BooleanField(default=True)
    updated_at = CharField()


class Sale(BaseModel):
    id = CharField(primary_key=True)
    # schema 2: no index on member_id or occurred_at; no query reads sales by either
    # (sale ids are UUIDv7, in time order), and each cost a page written per sale
    member_id = CharField(null=True)
    cashier = CharField()
    occurred_at = CharField()
    rules_version = IntegerField()
    total = BigIntegerField()
    refunded = BigIntegerField(default=0)
    status = CharField(default="completed")  # completed | partly_returned | returned
    body = JSONField()  # exactly what went up to HQ
    receipt = JSONField()


class SaleLine(BaseModel):
    sale_id = CharField()
    line_no = IntegerField()
    sku = CharField()
    qty = IntegerField()
    amount = BigIntegerField()
    earns_points = BooleanField()
    returned_qty = IntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("sale_id", "line_no")
        without_rowid = True  # schema 2: the table is its primary key's b-tree


class SaleReturn(BaseModel):
    id = CharField(primary_key=True)
    sale_id = CharField(index=True)
    cashier = CharField()
    occurred_at = CharField()
    refund_total = BigIntegerField()
    body = JSONField()
    receipt = JSONField()


class TopUp(BaseModel):
    id = CharField(primary_key=True)
    member_id = CharField(index=True)
    principal = BigIntegerField()
    bonus = BigIntegerField()
    cashier = CharField()
    occurred_at = CharField()
    receipt = JSONField()


class Ledger(BaseModel):
    """Every balance movement. A member's cached balances equal the sum of these."""

    member_id = CharField(index=True)
    account = CharField()  # sv_principal | sv_bonus | points
    delta = BigIntegerField()
    reason = CharField()  # sale | return | topup | expiry | hq
    ref = CharField()
    occurred_at = CharField()
    day = CharField()  # local date, for offline daily limits
    offline = BooleanField(default=False)  # a spend allowed under the offline policy


class Outbox(BaseModel):
    """What the sync agent drains to HQ; written in the same transaction as the fact."""

    seq = BigIntegerField(primary_key=True)
    id = CharField(unique=True)
    kind = CharField()
    occurred_at = CharField()
    payload = TextField()  # the up item, JSON, exactly as it will be published
    acked = BooleanField(default=False, index=True)
    acked_at = CharField(null=True)
    reject_code = CharField(null=True)
    reject_reason = TextField(null=True)


MODELS = [
    Setting,
    Counter,
    Staff,
    StaffSession,
    Member,
    MemberAlias,
    Card,
    PointsLot,
    Product,
    Sale,
    SaleLine,
    SaleReturn,
    TopUp,
    Ledger,
    Outbox,
]

SCHEMA_VERSION = 2

# Schema 2 rebuilds these tables WITHOUT ROWID (the same columns, in the same order): a
# checkout wrote each one's rows and its primary-key index, two b-trees, and now one.
_REBUILT_WITHOUT_ROWID = {
    "sale_line": (
        'CREATE TABLE "sale_line_v2" ("sale_id" VARCHAR(255) NOT NULL, '
        '"line_no" INTEGER NOT NULL, "sku" VARCHAR(255) NOT NULL, "qty" INTEGER NOT NULL, '
        '"amount" INTEGER NOT NULL, "earns_points" INTEGER NOT NULL, '
        '"returned_qty" INTEGER NOT NULL, PRIMARY KEY ("sale_id", "line_no")) WITHOUT ROWID',
        (),
    ),
    "points_lot": (
        'CREATE TABLE "points_lot_v2" ("lot_id" VARCHAR(255) NOT NULL PRIMARY KEY, '
        '"member_id" VARCHAR(255) NOT NULL, "earned_on" VARCHAR(255) NOT NULL, '
        '"expires_on" VARCHAR(255) NOT NULL, "remaining" INTEGER NOT NULL, '
        '"origin" VARCHAR(255) NOT NULL) WITHOUT ROWID',
        ('CREATE INDEX "points_lot_member_id" ON "points_lot" ("member_id")',),
    ),
}
AUTOCHECKPOINT_PAGES = 1000  # SQLite's default

log = logging.getLogger(__name__)


def open_database(path: str | Path, synchronous: str = "FULL") -> SqliteDatabase:
    """Open (creating if needed) the store database, migrate it, and bind the models."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(
        str(path),
        pragmas={
            "journal_mode": "wal",
            "synchronous": synchronous.upper(),
            "foreign_keys": 1,
            "busy_timeout": 10000,
            "cache_size": -32000,
            # deleted and overwritten rows are zeroed, so scrubbed contacts do not linger in free pages
            "secure_delete": 1,
        },
        lock_type="IMMEDIATE",
        check_same_thread=False,
    )
    db.bind(MODELS)
    db.connect(reuse_if_open=True)
    migrate(db, path)
    return db


def migrate(db: SqliteDatabase, path: Path) -> None:
    """Numbered migrations; the file is copied aside before any migration of existing data."""
    version = db.execute_sql("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path} has schema {version}, newer than this software ({SCHEMA_VERSION})"
        )
    if version > 0 and path.exists():
        _copy_aside(db, path.with_name(f"{path.name}.before-v{SCHEMA_VERSION}"))
    with db.atomic():
        # the till and the sync agent open the same file: the other may have migrated
        # between our first look and this write lock
        version = db.execute_sql("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version < 1:
            db.create_tables(MODELS)  # the current schema, as the models declare it
            # Invariant 8: a registration carries the phone to HQ in plaintext (over TLS);
            # once HQ has acknowledged it, the outbox copy is scrubbed.
            db.execute_sql(
                "CREATE TRIGGER outbox_scrub_contacts AFTER UPDATE OF acked ON outbox "
                "WHEN NEW.acked AND NEW.kind = 'registration' BEGIN "
                "UPDATE outbox SET payload = json_set(payload, '$.body.phone', '') WHERE seq = NEW.seq; "
                "END"
            )
        elif version < 2:
            _migrate_to_2(db)
        db.execute_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _copy_aside(db: SqliteDatabase, target: Path) -> None:
    """A consistent copy through SQLite's backup API: the file alone would miss what is
    still in the WAL, and another process may be writing."""
    copy = sqlite3.connect(target)
    try:
        db.connection().backup(copy)
    finally:
        copy.close()


def _migrate_to_2(db: SqliteDatabase) -> None:
    """Schema 1 -> 2: sale_line and points_lot WITHOUT ROWID; sale's unused indexes dropped."""
    db.execute_sql('DROP INDEX IF EXISTS "sale_member_id"')
    db.execute_sql('DROP INDEX IF EXISTS "sale_occurred_at"')
    for table, (create, indexes) in _REBUILT_WITHOUT_ROWID.items():
        db.execute_sql(create)
        db.execute_sql(f'INSERT INTO "{table}_v2" SELECT * FROM "{table}" ORDER BY rowid')  # noqa: S608
        db.execute_sql(f'DROP TABLE "{table}"')
        db.execute_sql(f'ALTER TABLE "{table}_v2" RENAME TO "{table}"')
        for index in indexes:
            db.execute_sql(index)


class WalCheckpointer:
    """Copies the WAL into the database between sales, from a thread with its own connection.

    ``start()`` turns off the automatic checkpoint of ``db``'s connections (each thread of
    the till server has one); then it runs a round every ``interval`` seconds, and sooner
    when the WAL file grew by a sixteenth of ``limit_bytes`` (it looks twenty times an
    interval), that is when sales are appending to it:

    - while sales come in: PASSIVE checkpoints, which never block a writer, a few rounds a
      millisecond apart until one finds nothing new to copy; then a RESTART, which waits up
      to ``RESTART_WAIT_MS`` for the write lock and holds it while it copies what the
      sales committed since (a sale may wait for it, about a millisecond), so that the next
      sale writes the WAL from its beginning, over the blocks the file already has (cut to
      ``limit_bytes``), instead of appending to it: an appending commit's fsync also
      journals the file's new size and blocks (p50 0.34 ms against 0.20 ms overwriting, for
      a checkout's commit on the benchmark store);
    - once nothing was committed for a whole interval: TRUNCATE, leaving an empty WAL;
    - as a backstop, when the RESTART could not run and the WAL file outgrew
      ``limit_bytes``: TRUNCATE, attempted without waiting (busy timeout 0), so it gives up
      at once rather than hold a sale; past twice the limit it waits up to 100 ms, and a
      sale may then wait for it.

    ``stop()`` ends the thread after a last TRUNCATE and gives ``db`` its automatic
    checkpoint back.
    """

    CATCH_UP_ROUNDS = 8
    POLLS_PER_INTERVAL = 20  # how often, in an interval, it looks at the WAL file's size
    RESTART_WAIT_MS = 5  # also the longest it holds the write lock waiting for readers

    def __init__(
        self, db: SqliteDatabase, interval: float = 1.0, limit_bytes: int = 16 * 2**20
    ) -> None:
        self.db = db
        self.path = str(db.database)
        self.wal_path = self.path + "-wal"
        self.interval = interval
        self.limit_bytes = limit_bytes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_version: int | None = None
        self.counts = {
            "passive": 0,
            "truncate": 0,
            "restart": 0,
            "busy": 0,
            "failed": 0,
        }  # what it did, for tests

    def start(self) -> WalCheckpointer:
        self.db.pragma("wal_autocheckpoint", 0, permanent=True)
        self.db.pragma("journal_size_limit", self.limit_bytes, permanent=True)
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("WAL checkpointer did not stop within %.1f s", timeout)
        self.db.pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES, permanent=True)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wal_size(self) -> int:
        try:
            return os.path.getsize(self.wal_path)
        except OSError:
            return 0

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # never wait for the till's write lock: a checkpoint that cannot run now runs
            # next round
            conn.execute("PRAGMA busy_timeout = 0")
            poll = self.interval / self.POLLS_PER_INTERVAL
            step = max(self.limit_bytes // 16, 1)
            due = time.monotonic() + self.interval
            low = self.wal_size()
            while not self._stop.wait(poll):
                size = self.wal_size()
                low = min(low, size)
                # a round every interval, and sooner whenever sales are appending to the
                # WAL file (it grew a sixteenth of the limit): see checkpoint_once
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
        # RESTART: copy what the sales committed since, and see that the next sale writes
        # the WAL from its beginning, over blocks the file already has (cut to limit_bytes
        # by journal_size_limit). A sale that appends to the file instead pays for more in
        # its fsync (the file's new size and blocks go through the file system's journal):
        # a checkout's commit measured p50 0.34 ms appending against 0.20 ms overwriting.
        # It waits at most RESTART_WAIT_MS for the write lock, and holds it while it copies
        # the frames committed since the passive rounds, a millisecond or so.
        conn.execute(f"PRAGMA busy_timeout = {self.RESTART_WAIT_MS}")
        try:
            restarted = not busy and not self._checkpoint(conn, "RESTART")[0]
        finally:
            conn.execute("PRAGMA busy_timeout = 0")
        if restarted:
            return  # the next sale starts the WAL over and cuts the file to limit_bytes
        size = self.wal_size()
        if size > 2 * self.limit_bytes:
            # far past the limit: this one may make a sale wait, up to 100 ms
            conn.execute("PRAGMA busy_timeout = 100")
            try:
                self._checkpoint(conn, "TRUNCATE")
            finally:
                conn.execute("PRAGMA busy_timeout = 0")
        elif size > self.limit_bytes:
            self._checkpoint(conn, "TRUNCATE")

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
        try:
            busy, frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:  # e.g. locked: try again next round
            self.counts["failed"] += 1
            log.warning("WAL checkpoint (%s) failed: %s", mode, exc)
            return 1, 0, 0
        self.counts[mode.lower() if not busy else "busy"] += 1
        return busy, frames, copied


# ---- added by the sync agent (edge/sync); created by ensure_sync_tables on older files ----


class MemberBase(BaseModel):
    """HQ's last word on a member's balances and how far it had applied each store's items.

    The cached balances on ``Member`` are this plus the store's own outbox items with a
    seq above ``through[store]`` (see edge/sync/apply.py)."""

    member_id = CharField(primary_key=True)
    sv_principal = BigIntegerField(default=0)
    sv_bonus = BigIntegerField(default=0)
    points_debt = BigIntegerField(default=0)
    lots = JSONField(default=list)  # [{lot_id, earned_on, expires_on, remaining}]
    through = JSONField(default=dict)  # {store: seq}


class SyncCoupon(BaseModel):
    """A coupon as HQ last described it (issued | held | used)."""

    code = CharField(primary_key=True)
    member_id = CharField(null=True, index=True)
    value = BigIntegerField(default=0)
    status = CharField(default="issued")
    expires_on = CharField(null=True)
    data = JSONField(default=dict)


MODELS += [MemberBase, SyncCoupon]
