"""HQ's chain database: peewee models declared without a database, bound at start.

``open_database(url)`` chooses SQLite (``sqlite:///path``, one shop) or PostgreSQL
(``postgresql://...``, a chain); ``bind(db)`` binds every model and creates the
tables. Money is integer fen; points are integer points.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

import peewee as pw
from playhouse.db_url import connect

from core.errors import ConfigError
from core.protocol import json_text


class JSONText(pw.TextField):
    """JSON stored as text, so SQLite and PostgreSQL behave alike."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return json_text(value, sort_keys=True)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return json.loads(value)


class BaseModel(pw.Model):
    class Meta:
        legacy_table_names = False


class Store(BaseModel):
    code = pw.CharField(primary_key=True, max_length=32)
    name = pw.CharField(default="")
    epoch = pw.IntegerField(default=1)
    acked_through = pw.BigIntegerField(default=0)  # the ingest cursor: contiguous seqs applied
    reported_seq = pw.BigIntegerField(default=0)  # newest seq the store has told us of
    last_seen = pw.DateTimeField(null=True)
    online = pw.BooleanField(default=False)
    down_cursor = pw.BigIntegerField(default=0)  # the store's change cursor, as it last told us
    created_at = pw.DateTimeField()
    # -- tiers: the store's rules status, as its last ``rules_status`` item said
    # (docs/programme/rules.md); null: the store never reported (older software)
    rules_version = pw.IntegerField(null=True)  # the version it prices with
    rules_refused_version = pw.IntegerField(null=True)  # a newer version it refused
    rules_refused_reason = pw.TextField(null=True)
    rules_status_at = pw.CharField(null=True, max_length=40)  # the store's time of it
    # the 区域 an area manager looks after (hq/access: the area role sees its stores)
    area = pw.CharField(null=True, max_length=32, index=True)


class Member(BaseModel):
    id = pw.CharField(primary_key=True, max_length=36)
    name = pw.CharField(default="")
    phone = pw.CharField(null=True, index=True, max_length=20)
    gender = pw.CharField(default="", max_length=1)
    birthday = pw.CharField(null=True, max_length=10)
    birthday_calendar = pw.CharField(default="solar", max_length=5)
    birthday_leap_month = pw.BooleanField(default=False)
    card_type = pw.CharField(null=True)
    tier = pw.CharField(null=True)
    staff_code = pw.CharField(null=True, index=True)  # -- reports: indexed for staff KPIs
    # the scrypt hash the registering till made (never the password); goes down to
    # every store so the member pays with stored value anywhere in the chain
    password_hash = pw.CharField(null=True, max_length=200)
    registered_at = pw.CharField(default="")  # ISO with offset, as the till wrote it
    registered_utc = pw.DateTimeField(null=True)  # the same instant, for ordering
    registered_store = pw.CharField(null=True, max_length=32)
    status = pw.CharField(default="active", max_length=10)  # active | merged
    merged_into = pw.CharField(null=True, max_length=36, index=True)
    sv_principal = pw.BigIntegerField(default=0)
    sv_bonus = pw.BigIntegerField(default=0)
    points = pw.BigIntegerField(default=0)  # may be negative: a debt from an overdraft
    through = JSONText(default=dict)  # {store: highest seq of that store applied here}
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()
    # ---- the programme's fields (core.protocol.MEMBER_PROGRAMME_FIELDS), sent to stores
    growth = pw.BigIntegerField(default=0)
    tier_since = pw.DateField(null=True)
    card_expires_on = pw.DateField(null=True, index=True)  # the nightly card-expiry scan
    occupation = pw.CharField(default="", max_length=64)
    preferences = JSONText(null=True)
    anniversaries = JSONText(null=True)
    notes = pw.TextField(default="")
    tags = JSONText(null=True)
    extra = JSONText(null=True)
    profile_score = pw.IntegerField(default=0)
    referred_by = pw.CharField(null=True, max_length=36)
    # -- members (console search): keys hq/member_search.py derives from the name and the
    # phone wherever HQ writes them (search_keys); null on rows from before these columns
    # until init-db fills them (backfill_search_keys). Indexed with the id (the block at
    # the end of this module) so a prefix search reads one index range in a stable order.
    name_pinyin = pw.CharField(null=True, max_length=128)  # 张三 -> zhangsan
    name_initials = pw.CharField(null=True, max_length=32)  # 张三 -> zs
    phone_last4 = pw.CharField(null=True, max_length=4)  # blanked with the phone on erasure


class PhoneKey(BaseModel):
    """One live member per normalised phone; the unique key makes concurrent
    registrations of one phone collide, so the second one merges."""

    phone = pw.CharField(primary_key=True, max_length=20)
    member_id = pw.CharField(max_length=36)


class CardType(BaseModel):
    name = pw.CharField(primary_key=True)
    data = JSONText(default=dict)


class Tier(BaseModel):
    name = pw.CharField(primary_key=True)
    data = JSONText(default=dict)


class Card(BaseModel):
    card_no = pw.CharField(primary_key=True, max_length=40)
    member_id = pw.CharField(max_length=36, index=True)
    card_type = pw.CharField(null=True)
    status = pw.CharField(default="active", max_length=10)  # active | blocked
    blocked_reason = pw.CharField(null=True)
    issued_store = pw.CharField(null=True, max_length=32)


class PointsLot(BaseModel):
    lot_id = pw.CharField(primary_key=True, max_length=64)
    member_id = pw.CharField(max_length=36, index=True)
    earned_on = pw.DateField()
    expires_on = pw.DateField()
    earned = pw.BigIntegerField()
    remaining = pw.BigIntegerField()
    store = pw.CharField(null=True, max_length=32)


class LedgerEntry(BaseModel):
    """Every balance movement. A member's balances always equal the sums here."""

    member_id = pw.CharField(max_length=36, index=True)
    balance = pw.CharField(max_length=16)  # stored_value | points
    principal = pw.BigIntegerField(default=0)
    bonus = pw.BigIntegerField(default=0)
    points = pw.BigIntegerField(default=0)
    reason = pw.CharField(max_length=24)  # sale | return | topup | debt | adjust
    ref = pw.CharField(null=True, max_length=64)  # sale / return / top-up id
    lot_id = pw.CharField(null=True, max_length=64)
    store = pw.CharField(null=True, max_length=32)
    seq = pw.BigIntegerField(null=True)
    at = pw.DateTimeField()


class Sale(BaseModel):
    sale_id = pw.CharField(primary_key=True, max_length=64)
    store = pw.CharField(max_length=32, index=True)
    seq = pw.BigIntegerField()
    member_id = pw.CharField(null=True, max_length=36, index=True)
    total = pw.BigIntegerField()
    rules_version = pw.IntegerField()
    offline = pw.BooleanField(default=False)
    authorization_id = pw.CharField(null=True, max_length=36)
    occurred_at = pw.CharField()
    body = JSONText()
    ingested_at = pw.DateTimeField()
    # -- staff: who the sale is credited to (hq/programme/staff.py ``sale_credit``), filled
    # when HQ applies it; null on sales applied before these columns existed
    cashier = pw.CharField(null=True, max_length=64, index=True)
    served_by = pw.CharField(
        null=True, max_length=64, index=True
    )  # 导购; the cashier if none named
    maintainer = pw.CharField(null=True, max_length=64, index=True)  # the member's 维护人 then
    # [{"line_no", "sku", "category", "cost"}]: each line's category and unit cost (fen, or
    # null when unknown) from HQ's catalogue when the sale was applied, for margin reports
    line_goods = JSONText(null=True)
    # -- operations (the console's sales list, hq/console/ops_data.py): the sale's instant
    # in naive UTC, filled when HQ applies it (``occurred_at`` is the till's text, whose
    # offset may differ between stores); older rows are filled by ``create_schema``
    # (init-db) through ``fill_occurred_utc``. The list pages by keyset on
    # (occurred_utc, sale_id), chain-wide or per store, so a page is an index range scan
    # at any table size.
    occurred_utc = pw.DateTimeField(null=True)

    class Meta:
        indexes = (
            (("occurred_utc", "sale_id"), False),  # -- operations
            (("store", "occurred_utc", "sale_id"), False),  # -- operations
        )

    @staticmethod
    def utc_of(occurred_at: str, fallback: dt.datetime) -> dt.datetime:
        """-- operations: the till's ISO time as naive UTC; ``fallback`` (the ingest
        time) when it is not an ISO time with an offset, so a sale always has one."""
        try:
            value = dt.datetime.fromisoformat(occurred_at)
        except (TypeError, ValueError):
            return fallback
        if value.tzinfo is None:
            return fallback
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    @classmethod
    def fill_occurred_utc(cls, batch: int = 2000) -> int:
        """-- operations: fill ``occurred_utc`` of sales applied before the column existed,
        ``batch`` rows per statement (bounded: each round fills every row it reads).
        Returns how many rows it filled."""
        db = cls._meta.database
        filled = 0
        while True:
            rows = list(
                cls.select(cls.sale_id, cls.occurred_at, cls.ingested_at)
                .where(cls.occurred_utc.is_null())
                .limit(batch)
                .tuples()
            )
            if not rows:
                return filled
            values = [(cls.utc_of(at, ingested), sid) for sid, at, ingested in rows]
            with db.atomic():
                if is_postgres(db):
                    from psycopg2.extras import execute_values

                    execute_values(
                        db.cursor(),
                        'UPDATE "sale" AS s SET "occurred_utc" = v.t FROM (VALUES %s) AS v (t, id) '
                        'WHERE s."sale_id" = v.id',
                        values,
                        template="(%s::timestamp, %s)",
                        page_size=batch,
                    )
                else:
                    db.cursor().executemany(
                        'UPDATE "sale" SET "occurred_utc" = ? WHERE "sale_id" = ?', values
                    )
            filled += len(rows)


class Return(BaseModel):
    return_id = pw.CharField(primary_key=True, max_length=64)
    sale_id = pw.CharField(max_length=64, index=True)
    store = pw.CharField(max_length=32)
    seq = pw.BigIntegerField()
    member_id = pw.CharField(null=True, max_length=36, index=True)
    refund_total = pw.BigIntegerField()
    occurred_at = pw.CharField()
    body = JSONText()
    ingested_at = pw.DateTimeField()


class TopUp(BaseModel):
    topup_id = pw.CharField(primary_key=True, max_length=64)
    store = pw.CharField(max_length=32)
    seq = pw.BigIntegerField()
    member_id = pw.CharField(max_length=36, index=True)
    principal = pw.BigIntegerField()
    bonus = pw.BigIntegerField()
    occurred_at = pw.CharField()
    body = JSONText()
    ingested_at = pw.DateTimeField()

    class Meta:
        # a day close compares the store's top-ups of its day (hq/shifts.py)
        indexes = ((("store", "occurred_at"), False),)


class ProcessedItem(BaseModel):
    """At most once: one row per (store, epoch, seq) and per item id."""

    item_id = pw.CharField(null=True, unique=True, max_length=36)
    store = pw.CharField(max_length=32)
    epoch = pw.IntegerField()
    seq = pw.BigIntegerField()
    kind = pw.CharField(null=True, max_length=16)
    status = pw.CharField(max_length=10)  # applied | rejected | duplicate (an id again)
    code = pw.CharField(null=True, max_length=24)
    reason = pw.TextField(null=True)
    processed_at = pw.DateTimeField()

    class Meta:
        indexes = ((("store", "epoch", "seq"), True),)


class HeldItem(BaseModel):
    """An item that arrived after a gap: kept, not applied, not acknowledged."""

    store = pw.CharField(max_length=32)
    epoch = pw.IntegerField()
    seq = pw.BigIntegerField()
    item = JSONText()
    received_at = pw.DateTimeField()

    class Meta:
        indexes = ((("store", "epoch", "seq"), True),)


class DeadLetter(BaseModel):
    topic = pw.CharField()
    store = pw.CharField(null=True, max_length=32, index=True)
    seq = pw.BigIntegerField(null=True)
    code = pw.CharField(max_length=24, index=True)  # the console filters by it, metrics count by it
    reason = pw.TextField()
    payload = pw.BlobField()  # the bytes as received (first 64 KiB of an oversized one)
    payload_size = pw.IntegerField()
    received_at = pw.DateTimeField()
    # -- operations: who resolved it in the console, when, how (hq/console/ops_data.py
    # RESOLUTIONS) and their note; null while it waits (audited ``dead_letter.resolve``)
    resolved_at = pw.DateTimeField(null=True)
    resolved_by = pw.CharField(null=True, max_length=64)
    resolution = pw.CharField(null=True, max_length=16)
    resolution_note = pw.TextField(null=True)


class HqException(BaseModel):
    """Something HQ staff must look at: overdrafts, re-price mismatches."""

    kind = pw.CharField(
        max_length=24, index=True
    )  # overdraft | unknown_rules | unknown_member | balance_mismatch | store_ledger_mismatch | ledger_mismatch
    status = pw.CharField(default="open", max_length=10)  # open | closed
    member_id = pw.CharField(null=True, max_length=36, index=True)
    store = pw.CharField(null=True, max_length=32)
    seq = pw.BigIntegerField(null=True)
    ref = pw.CharField(null=True, max_length=64)
    balance = pw.CharField(null=True, max_length=16)  # stored_value | points
    amount = pw.BigIntegerField(default=0)  # fen or points short
    recovered = pw.BigIntegerField(default=0)
    details = JSONText(default=dict)
    created_at = pw.DateTimeField()
    closed_at = pw.DateTimeField(null=True)
    # -- operations: a person's resolution in the console, beside HQ's own ``status`` (which
    # it does not change: an overdraft stays open until recovered); null while it waits
    resolved_at = pw.DateTimeField(null=True)
    resolved_by = pw.CharField(null=True, max_length=64)
    resolution = pw.CharField(null=True, max_length=16)
    resolution_note = pw.TextField(null=True)


class Counter(BaseModel):
    name = pw.CharField(primary_key=True, max_length=32)
    value = pw.BigIntegerField(default=0)


class ChangeRecord(BaseModel):
    seq = pw.BigIntegerField(primary_key=True)
    entity = pw.CharField(max_length=16)
    key = pw.CharField(max_length=64)
    op = pw.CharField(max_length=8)
    data = JSONText()
    created_at = pw.DateTimeField()


class RulesVersion(BaseModel):
    version = pw.IntegerField(primary_key=True)
    data = JSONText()
    published_at = pw.DateTimeField()


class Product(BaseModel):
    sku = pw.CharField(primary_key=True, max_length=64)
    name = pw.CharField()
    unit_price = pw.BigIntegerField()
    data = JSONText(default=dict)


class Coupon(BaseModel):
    code = pw.CharField(primary_key=True, max_length=64)
    member_id = pw.CharField(null=True, max_length=36, index=True)
    value = pw.BigIntegerField()
    status = pw.CharField(default="issued", max_length=10)  # issued | held | used
    held_for = pw.CharField(null=True, max_length=64)  # sale id
    expires_on = pw.DateField(null=True)
    # -- coupons (coupons): added by issue 11, nullable (docs/programme/coupons.md)
    template_id = pw.CharField(null=True, max_length=32, index=True)
    issued_at = pw.DateTimeField(null=True, index=True)  # -- reports: the coupon KPIs by period
    valid_from = pw.DateField(null=True)
    source = pw.CharField(null=True, max_length=10)  # hq | till | campaign | gift
    ref = pw.CharField(null=True, max_length=64)  # the campaign, gift or till item it came from
    issued_store = pw.CharField(null=True, max_length=32)
    used_sale = pw.CharField(null=True, max_length=64)
    used_store = pw.CharField(null=True, max_length=32)


class Merge(BaseModel):
    from_member = pw.CharField(max_length=36, index=True)
    to_member = pw.CharField(max_length=36, index=True)
    store = pw.CharField(null=True, max_length=32)  # where the duplicate surfaced, or null (HQ)
    staff = pw.CharField(null=True)  # staff code at the till, or the HQ user
    reason = pw.CharField(max_length=24)  # same_phone | manual
    at = pw.DateTimeField()


class Authorization(BaseModel):
    id = pw.CharField(primary_key=True, max_length=36)
    store = pw.CharField(max_length=32)
    sale_id = pw.CharField(max_length=64)
    member_id = pw.CharField(max_length=36, index=True)
    stored_value = pw.BigIntegerField(default=0)
    sv_principal = pw.BigIntegerField(default=0)
    sv_bonus = pw.BigIntegerField(default=0)
    points = pw.BigIntegerField(default=0)
    coupons = JSONText(default=list)
    status = pw.CharField(max_length=10)  # held | declined | released | settled
    response = JSONText()
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()

    class Meta:
        indexes = ((("store", "sale_id"), True),)


class OfflinePolicyRow(BaseModel):
    """An offline policy HQ published (hq/offline.py): the chain's for a balance kind
    (``store`` NULL, key ``kind``) or one store's override (key ``kind@store``). A
    removed override stays as a row with ``removed`` set, so snapshots carry the removal."""

    key = pw.CharField(primary_key=True, max_length=64)
    kind = pw.CharField(max_length=16)
    store = pw.CharField(max_length=32, null=True)
    mode = pw.CharField(max_length=16)
    daily_limit = pw.BigIntegerField(default=0)
    version = pw.IntegerField(default=1)  # 1, 2, ... per key, at each set or removal
    published_at = pw.DateTimeField()
    published_by = pw.CharField(max_length=64, null=True)
    removed = pw.BooleanField(default=False)

    class Meta:
        table_name = "offline_policy"  # the earlier kind-only table is left unused


class ReconcileRecord(BaseModel):
    """What reconciliation last saw: ``digest:{store}`` holds the store's latest balance
    digest as received (hq/reconcile.py), ``hq_ledger`` when HQ last checked its own
    balances against its ledger."""

    name = pw.CharField(primary_key=True, max_length=48)
    at = pw.DateTimeField()
    data = JSONText(default=dict)


MODELS: list[type[BaseModel]] = [
    Store,
    Member,
    PhoneKey,
    CardType,
    Tier,
    Card,
    PointsLot,
    LedgerEntry,
    Sale,
    Return,
    TopUp,
    ProcessedItem,
    HeldItem,
    DeadLetter,
    HqException,
    Counter,
    ChangeRecord,
    RulesVersion,
    Product,
    Coupon,
    Merge,
    Authorization,
    OfflinePolicyRow,
    ReconcileRecord,
]


def open_database(url: str) -> pw.Database:
    """``sqlite:///var/hq.sqlite3`` or ``postgresql://user@host:5432/name``."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return connect(
            url,
            pragmas={"journal_mode": "wal", "busy_timeout": 15000, "synchronous": "normal"},
            timeout=15,
            lock_type="IMMEDIATE",
        )
    if scheme in ("postgres", "postgresql"):
        return connect(url)
    raise ConfigError(f"database URL must be sqlite:/// or postgresql://, got {url!r}")


def is_postgres(db: pw.Database) -> bool:
    return isinstance(db, pw.PostgresqlDatabase)


def one_of(field: pw.Field, values: Iterable[Any]) -> pw.Expression:
    """``field IN (values)``; on PostgreSQL ``field = ANY(%s)`` with the values as one
    array parameter (the query builder's cost grows with every value of an IN list,
    and a batch asks for hundreds of ids)."""
    values = list(values)
    if is_postgres(field.model._meta.database):
        return field == pw.fn.ANY(pw.Value(values, unpack=False, converter=False))
    return field.in_(values)


class Writes:
    """Statements of one transaction written without the query builder (whose cost per
    value dominated an ingest batch's writes) and sent together: on PostgreSQL as one
    multi-statement round trip at ``send()`` (each one costs a scheduling round on a
    busy box), on SQLite (in process) at once. Errors are peewee's, so an
    IntegrityError still makes the ingest retry its transaction."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.postgres = is_postgres(db)
        self.pending: list[bytes] = []

    def insert(
        self, model: type[BaseModel], rows: list[dict[str, Any]], update: Sequence[pw.Field] = ()
    ) -> None:
        """INSERT complete rows (dicts with the same keys), 500 to a statement. With
        ``update``, a row whose primary key exists sets those columns from the new row
        instead (``ON CONFLICT DO UPDATE``): an UPDATE of many rows in one statement."""
        if not rows:
            return
        fields = [model._meta.fields[name] for name in rows[0]]
        columns = ", ".join(f'"{f.column_name}"' for f in fields)
        # identifiers come from the model, values are bound parameters
        head = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES '  # noqa: S608
        tail = ""
        if update:
            sets = ", ".join(f'"{f.column_name}" = EXCLUDED."{f.column_name}"' for f in update)
            tail = f' ON CONFLICT ("{model._meta.primary_key.column_name}") DO UPDATE SET {sets}'
        values = [tuple(f.db_value(row[f.name]) for f in fields) for row in rows]
        if not self.postgres:
            marks = ", ".join("?" for _ in fields)
            with pw.__exception_wrapper__:
                self.db.cursor().executemany(f"{head}({marks}){tail}", values)
            return
        cursor = self.db.cursor()
        template = "(" + ", ".join("%s" for _ in fields) + ")"
        for i in range(0, len(values), 500):
            tuples = b", ".join(cursor.mogrify(template, v) for v in values[i : i + 500])
            self.pending.append(head.encode() + tuples + tail.encode())

    def query(self, query: pw.Query) -> None:
        """A peewee write query, sent with the others."""
        sql, params = query.sql()
        if self.postgres:
            self.pending.append(self.db.cursor().mogrify(sql, params))
        else:
            self.db.execute_sql(sql, params)

    def send(self, last: pw.Query | None = None) -> Any:
        """Send what is pending, then ``last`` (if any) in the same round trip; returns
        the cursor, holding ``last``'s rows (PostgreSQL runs the statements in order
        and answers with the last one's result)."""
        if last is not None:
            sql, params = last.sql()
            if not self.postgres:
                return self.db.execute_sql(sql, params)
            self.pending.append(self.db.cursor().mogrify(sql, params))
        if not self.pending:
            return None
        with pw.__exception_wrapper__:
            cursor = self.db.cursor()
            cursor.execute(b";\n".join(self.pending))
        self.pending.clear()
        return cursor


def insert_rows(
    model: type[BaseModel], rows: list[dict[str, Any]], update: Sequence[pw.Field] = ()
) -> None:
    """``Writes.insert`` sent at once."""
    writes = Writes(model._meta.database)
    writes.insert(model, rows, update)
    writes.send()


# pg_advisory_xact_lock's key for schema creation: any fixed bigint, the same in every release
SCHEMA_LOCK_KEY = 0x68795F736368656D  # "hy_schem"


def bind(db: pw.Database, create: bool = True) -> pw.Database:
    db.bind(MODELS)
    if create:
        with db.connection_context() if db.is_closed() else _noop():
            create_schema(db)
    return db


def create_schema(db: pw.Database) -> None:
    """Create the tables and add missing columns, one process at a time: in one transaction
    that first takes a PostgreSQL advisory lock (on SQLite it begins IMMEDIATE: SQLite's
    write lock, waited for up to the busy timeout). Several ``init-db`` run at once then
    create the schema once and the others find it made. (Without it, concurrent CREATE
    TABLE IF NOT EXISTS on PostgreSQL fails on pg_type's unique index, and two processes
    adding the same missing column fail on the duplicate.)"""
    postgres = is_postgres(db)
    with db.atomic() if postgres else db.atomic("IMMEDIATE"):
        if postgres:
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        # columns first: creating the tables also creates every index IF NOT EXISTS, on
        # existing tables too, and an index on a column not yet there fails on PostgreSQL
        # and on SQLite silently indexes the column's name as a text
        add_missing_columns(db)
        db.create_tables(MODELS, safe=True)
        create_statistics(db)  # -- campaigns
    # -- operations: sales applied before the column existed, a transaction per batch
    Sale.fill_occurred_utc()
    # -- members (console search): rows from before the search keys get theirs, a batch
    # per transaction (an interrupted init-db goes on where it stopped; no long lock)
    from hq.member_search import backfill_search_keys

    backfill_search_keys(db)
    # -- campaigns: each member's last purchase day, on rows from before the column
    from hq.reports.summary import backfill_last_day

    backfill_last_day(db)


# -- campaigns (audience speed): PostgreSQL multiplies the selectivities of two columns as
# if independent; ``report_member_spend``'s ``kind`` and ``start`` are not (2026-01-01
# starts a year, a quarter and a month row). Without these statistics it guesses a tenth
# of a year's rows, reads them by index in member order, one heap page a row (6 s of a
# segment over 1,000,000 members instead of 1 s: docs/benchmarks.md). ANALYZE fills them.
PG_STATISTICS = (
    "CREATE STATISTICS IF NOT EXISTS report_member_spend_kind_start (mcv, dependencies)"
    " ON kind, start FROM report_member_spend",
)


def create_statistics(db: pw.Database) -> None:
    """PostgreSQL's extended statistics (``PG_STATISTICS``); nothing on SQLite."""
    if is_postgres(db):
        for statement in PG_STATISTICS:
            db.execute_sql(statement)


# -- end campaigns


def add_missing_columns(db: pw.Database) -> list[str]:
    """Add the columns a newer release declares to tables an older one made (``init-db``
    after an upgrade): nullable ones, and NOT NULL ones with a constant default (the
    old rows get the default; e.g. ``store.reported_seq``, which the first release
    lacked). Anything else (NOT NULL without a constant default, a changed type) is
    refused by name rather than guessed at."""
    from playhouse.migrate import SchemaMigrator, migrate

    added = []
    migrator = SchemaMigrator.from_database(db)
    for model in MODELS:
        table = model._meta.table_name
        if not db.table_exists(table):
            continue  # created whole, with its indexes, by create_tables
        have = {c.name for c in db.get_columns(table)}
        for f in model._meta.sorted_fields:
            if f.column_name in have:
                continue
            if not f.null and (f.default is None or callable(f.default)):
                raise ConfigError(
                    f"table {table} lacks column {f.column_name}, which is NOT NULL "
                    "without a constant default: this upgrade needs a migration",
                    field="database_url",
                )
            bare = copy.copy(f)  # its index comes with create_tables' (IF NOT EXISTS)
            bare.index = bare.unique = False
            with db.atomic():
                migrate(migrator.add_column(table, f.column_name, bare))
            added.append(f"{table}.{f.column_name}")
    return added


def check_schema(db: pw.Database) -> None:
    """Refuse a database whose schema is older than this software (a table or column the
    models declare is missing): the services do not change the schema themselves,
    ``huiyuan-hq init-db`` (the huiyuan-hq-migrate unit) does."""
    missing = []
    with db.connection_context() if db.is_closed() else _noop():
        for model in MODELS:
            table = model._meta.table_name
            if not db.table_exists(table):
                missing.append(table)
                continue
            have = {c.name for c in db.get_columns(table)}
            missing += [
                f"{table}.{f.column_name}"
                for f in model._meta.sorted_fields
                if f.column_name not in have
            ]
    if missing:
        raise ConfigError(
            f"the HQ database lacks {', '.join(missing[:5])}"
            f"{' and more' if len(missing) > 5 else ''}: run `huiyuan-hq init-db` "
            "(systemctl restart huiyuan-hq-migrate) after an upgrade",
            field="database_url",
        )


class _noop:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def utcnow() -> dt.datetime:
    """Naive UTC: what both databases store without surprises."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# ---- the scheduler (hq/scheduler.py) ----


class SchedulerState(BaseModel):
    """The scheduler's shared state: ``leader`` (who leads; on SQLite the lease, held until
    ``at``) and ``job:<name>`` (when a job last started, by whom, how many times)."""

    name = pw.CharField(primary_key=True, max_length=64)
    holder = pw.CharField(max_length=128, default="")
    at = pw.DateTimeField()
    runs = pw.BigIntegerField(default=0)


MODELS.append(SchedulerState)


# ---- personal data (PIPL): hq/privacy.py ----------------------------------------------


class MemberConsent(BaseModel):
    """One answer of a member about one marketing channel, kept as history: the newest
    row per channel is in force (``hq.privacy.consented``); none means no consent."""

    member_id = pw.CharField(max_length=36, index=True)
    channel = pw.CharField(max_length=16)  # core.protocol.CONSENT_CHANNELS
    granted = pw.BooleanField()
    at = pw.DateTimeField()  # when the member gave the answer (naive UTC)
    store = pw.CharField(null=True, max_length=32)  # where (null: at HQ)
    source = pw.CharField(max_length=16)  # registration | till | hq | member (unsubscribed)
    by = pw.CharField(null=True, max_length=64)  # the cashier or HQ user who recorded it
    recorded_at = pw.DateTimeField()


class PrivacyRequest(BaseModel):
    """A member's request about their personal data, as audit: ``export`` or ``erase``."""

    kind = pw.CharField(max_length=10)  # export | erase
    member_id = pw.CharField(max_length=36, index=True)
    at = pw.DateTimeField()
    by = pw.CharField(max_length=64)
    reason = pw.TextField(default="")


MODELS += [MemberConsent, PrivacyRequest]


# ---- the chain CA (hq/pki.py) ----


class Certificate(BaseModel):
    """Every certificate the chain CA issued (hq/pki.py): a store's (CN = store code),
    HQ's own client identity (CN ``hq``) or the broker's server certificate. A revoked
    one is in the CRL the broker reads."""

    serial = pw.CharField(primary_key=True, max_length=40)  # lower-case hex (hq.ca.serial_text)
    common_name = pw.CharField(max_length=64, index=True)
    kind = pw.CharField(max_length=8)  # store | hq | broker
    not_before = pw.DateTimeField()
    not_after = pw.DateTimeField()
    issued_at = pw.DateTimeField()
    revoked_at = pw.DateTimeField(null=True)
    revoke_reason = pw.CharField(max_length=200, null=True)


MODELS.append(Certificate)  # declared after the list: new tables go at the end of this module


class EnrolmentCode(BaseModel):
    """A one-time code a technician types on a store box to enrol it (hq/enrol.py): kept
    only as its SHA-256; spent once, expiring, void after a few wrong tries."""

    store = pw.CharField(max_length=32, index=True)
    code_hash = pw.CharField(max_length=64, unique=True)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    used_at = pw.DateTimeField(null=True)
    created_by = pw.CharField(max_length=64, default="")
    attempts = pw.IntegerField(default=0)  # wrong codes tried for this store while it was live


MODELS.append(EnrolmentCode)  # declared after the list: new tables go at the end of this module


# ---- audit and scheduled runs (hq/audit.py, hq/scheduler.py) ----


class AuditEntry(BaseModel):
    """One sensitive action, by whom and why (hq/audit.py): balance and points adjustments,
    tiers given by hand, card blocks and replacements, coupons issued, rules published,
    maintainers moved. Append only; the console (issue 12) searches it."""

    at = pw.DateTimeField(index=True)
    actor = pw.CharField(max_length=64)  # HQ user, or "store:S001/staff:0001" from a till
    action = pw.CharField(max_length=48, index=True)  # e.g. points.adjust, tier.set
    target = pw.CharField(max_length=64, index=True)  # member id, card no, coupon code, ...
    reason = pw.TextField(default="")
    store = pw.CharField(max_length=32, null=True)
    details = JSONText(default=dict)


class JobRun(BaseModel):
    """One run of a scheduled job (hq/scheduler.py) with what it counted."""

    job = pw.CharField(max_length=64, index=True)
    node = pw.CharField(max_length=128)
    started_at = pw.DateTimeField()
    finished_at = pw.DateTimeField(null=True)
    status = pw.CharField(max_length=10)  # running | ok | failed
    counts = JSONText(default=dict)  # what the job returned, e.g. {"expired_lots": 12}
    error = pw.TextField(null=True)


MODELS += [AuditEntry, JobRun]


# ---- the membership programme (issue 11): new tables, one block per part; each block
# ends with its own ``MODELS += [...]`` (new columns on existing tables are added by
# ``init-db``: nullable, or NOT NULL with a constant default).

# -- tiers (tiers, growth value, member day): hq/programme/tiers.py


class MemberDaySpend(BaseModel):
    """Growth's spend summary: a member's money paid per business day, returns taken off
    on the return's day (``spend`` fen, may be negative), and how many sales. Kept by
    the sale and return appliers; derived data, rebuilt by ``rebuild_spend``."""

    member_id = pw.CharField(max_length=36)
    day = pw.DateField()
    spend = pw.BigIntegerField(default=0)
    sales = pw.IntegerField(default=0)

    class Meta:
        primary_key = pw.CompositeKey("member_id", "day")


class GrowthEvent(BaseModel):
    """Growth for an action (core.rules.GROWTH_EVENT_KINDS); one per (kind, ref), so
    recording it again is a no-op."""

    member_id = pw.CharField(max_length=36, index=True)
    kind = pw.CharField(max_length=24)
    points = pw.IntegerField()
    ref = pw.CharField(max_length=80)
    day = pw.DateField(index=True)
    at = pw.DateTimeField()

    class Meta:
        indexes = ((("kind", "ref"), True),)


class TierChange(BaseModel):
    """One change of a member's tier, with its reason (core.tiers.REASONS)."""

    member_id = pw.CharField(max_length=36, index=True)
    from_tier = pw.CharField(null=True)
    to_tier = pw.CharField(null=True)
    reason = pw.CharField(max_length=10)  # upgrade | downgrade | decay | manual
    growth = pw.BigIntegerField(default=0)
    day = pw.DateField()
    at = pw.DateTimeField()
    by = pw.CharField(null=True, max_length=64)  # the HQ user of a manual change


class ManualTier(BaseModel):
    """A tier given by hand: a floor for the evaluation until ``until`` (null: none)."""

    member_id = pw.CharField(primary_key=True, max_length=36)
    tier = pw.CharField()
    until = pw.DateField(null=True)
    by = pw.CharField(max_length=64)
    reason = pw.TextField()
    at = pw.DateTimeField()


MODELS += [MemberDaySpend, GrowthEvent, TierChange, ManualTier]

# -- cards (card types as products, card replacement)


class CardSale(BaseModel):
    """A card product sold at a till (the 198元年卡), as HQ applied it: the price checked
    against the rules version the store priced with, the period HQ gave."""

    card_sale_id = pw.CharField(primary_key=True, max_length=64)
    store = pw.CharField(max_length=32)
    seq = pw.BigIntegerField()
    member_id = pw.CharField(max_length=36, index=True)
    card_type = pw.CharField(max_length=32)
    price = pw.BigIntegerField()
    valid_from = pw.DateField()
    valid_to = pw.DateField()
    renewal = pw.BooleanField(default=False)
    rules_version = pw.IntegerField()
    occurred_at = pw.CharField()
    body = JSONText()
    ingested_at = pw.DateTimeField()

    class Meta:
        indexes = ((("store", "occurred_at"), False),)  # a day close's card sales


class CardTypeChange(BaseModel):
    """Every change of a member's card type: a sale, a 充值升级, a lapse to the fallback,
    a change by hand. ``ref`` is the sale or top-up id, or ``lapse:<last day>`` (one
    lapse per member and last day: the nightly job's re-run finds it done)."""

    member_id = pw.CharField(max_length=36, index=True)
    from_type = pw.CharField(max_length=32, null=True)
    to_type = pw.CharField(max_length=32)
    expires_on = pw.DateField(null=True)
    reason = pw.CharField(max_length=16)  # sale | renewal | upgrade | lapse | manual | merge
    ref = pw.CharField(max_length=64, null=True)
    store = pw.CharField(max_length=32, null=True)
    by = pw.CharField(max_length=64, null=True)
    at = pw.DateTimeField()

    class Meta:
        indexes = ((("member_id", "reason", "ref"), True),)


MODELS += [CardSale, CardTypeChange]

# -- points (points rules, gifts, referral)


class Gift(BaseModel):
    """积分兑换礼品: the catalogue (docs/programme/points.md), sent down as ``gift``.
    A removed gift stays, inactive, so stores drop it and HQ still checks late items."""

    gift_id = pw.CharField(primary_key=True, max_length=32)
    name = pw.CharField(max_length=64)
    points = pw.BigIntegerField()  # points per unit
    kind = pw.CharField(max_length=8)  # goods | coupon
    sku = pw.CharField(null=True, max_length=64)  # goods
    coupon_template = pw.CharField(null=True, max_length=64)  # coupon
    active = pw.BooleanField(default=True)
    valid_from = pw.DateField(null=True)
    valid_to = pw.DateField(null=True)  # the last day it can be redeemed
    updated_at = pw.DateTimeField()
    updated_by = pw.CharField(max_length=64)


class GiftRedemption(BaseModel):
    """A gift redeemed at a till, as HQ applied it."""

    redemption_id = pw.CharField(primary_key=True, max_length=64)
    store = pw.CharField(max_length=32)
    seq = pw.BigIntegerField()
    member_id = pw.CharField(max_length=36, index=True)
    gift_id = pw.CharField(max_length=32, index=True)
    qty = pw.IntegerField()
    points = pw.BigIntegerField()
    occurred_at = pw.CharField()
    body = JSONText()
    ingested_at = pw.DateTimeField()


MODELS += [Gift, GiftRedemption]

# -- coupons (coupons)


class CouponTemplate(BaseModel):
    """A coupon template (core.coupons.CouponTemplate as ``data``); immutable once added,
    so every coupon issued from it is priced alike at HQ and at every till."""

    id = pw.CharField(primary_key=True, max_length=32)
    name = pw.CharField(max_length=64)
    data = JSONText()
    active = pw.BooleanField(default=True)  # inactive: no more issued; issued ones still count
    created_at = pw.DateTimeField()
    created_by = pw.CharField(max_length=64)


MODELS += [CouponTemplate]

# -- upkeep (stored value, profile, password)


class MemberFieldStamp(BaseModel):
    """When each profile field of a member was last changed (hq/programme/upkeep.py): a
    till's edit or HQ's applies field by field only when newer (newest change wins)."""

    member_id = pw.CharField(max_length=36)
    field = pw.CharField(
        max_length=32
    )  # a core.protocol.MEMBER_UPDATE_FIELDS name, or password_hash
    changed_at = pw.DateTimeField()  # naive UTC
    store = pw.CharField(max_length=32, null=True)  # where (null: at HQ)

    class Meta:
        primary_key = pw.CompositeKey("member_id", "field")


class UpkeepState(BaseModel):
    """What the upkeep jobs last did (hq/programme/upkeep.py): ``profile_fields``, the
    rules' profile fields the completeness scores were last computed with."""

    name = pw.CharField(primary_key=True, max_length=48)
    data = JSONText(default=dict)
    at = pw.DateTimeField()


MODELS += [MemberFieldStamp, UpkeepState]

# -- staff (maintainers, categories and cost)

STAFF_STATUSES = ("active", "leaving", "closed")
TRANSFER_STATUSES = ("pending", "store_approved", "done", "rejected")


class StaffMember(BaseModel):
    """HQ's staff registry (hq/programme/staff.py): who may look after members (维护人) and
    be credited with sales. Sent to every store as the change entity ``staff`` (no PIN:
    tills keep their own sign-in PINs)."""

    code = pw.CharField(primary_key=True, max_length=64)
    name = pw.CharField(max_length=64)
    store = pw.CharField(max_length=32, index=True)
    role = pw.CharField(max_length=16, default="cashier")  # cashier | manager | guide
    status = pw.CharField(max_length=10, default="active")  # STAFF_STATUSES
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()
    closed_at = pw.DateTimeField(null=True)


class MaintainerTransfer(BaseModel):
    """A request to move members from one maintainer to another: pending -> the store
    manager's approval (store_approved) -> across stores, HQ's approval -> done (the members
    moved); or rejected at either step."""

    id = pw.CharField(primary_key=True, max_length=36)
    member_ids = JSONText()  # the members to move (list of ids)
    from_staff = pw.CharField(max_length=64, index=True)
    to_staff = pw.CharField(max_length=64)
    from_store = pw.CharField(max_length=32, index=True)  # whose manager approves
    to_store = pw.CharField(max_length=32)
    reason = pw.TextField()
    requested_by = pw.CharField(max_length=64)
    requested_at = pw.DateTimeField()
    status = pw.CharField(max_length=16, default="pending", index=True)  # TRANSFER_STATUSES
    store_approved_by = pw.CharField(null=True, max_length=100)
    store_approved_at = pw.DateTimeField(null=True)
    hq_approved_by = pw.CharField(null=True, max_length=64)
    hq_approved_at = pw.DateTimeField(null=True)
    rejected_by = pw.CharField(null=True, max_length=100)
    rejected_reason = pw.TextField(null=True)
    done_at = pw.DateTimeField(null=True)
    moved = pw.IntegerField(default=0)  # members whose maintainer changed


class Recruitment(BaseModel):
    """Who recruited a member: the maintainer named at registration (hq/programme/staff.py
    ``note_registration``), kept when the maintainer later changes (staff-sales report)."""

    member_id = pw.CharField(primary_key=True, max_length=36)
    staff_code = pw.CharField(max_length=64, index=True)
    store = pw.CharField(max_length=32)
    registered_utc = pw.DateTimeField(null=True)


MODELS += [StaffMember, MaintainerTransfer, Recruitment]

# ---- end of the programme's tables


# ---- HQ's own people: console sign-in, sessions, integration tokens (hq/access/)


class HqUser(BaseModel):
    """A head-office account. ``role`` is one of hq.access.roles.ROLES; ``scope`` is the
    store code (store manager) or area (area manager) it is limited to, else null."""

    username = pw.CharField(primary_key=True, max_length=64)
    display_name = pw.CharField(default="", max_length=64)
    role = pw.CharField(max_length=16)
    scope = pw.CharField(null=True, max_length=32)
    password_hash = pw.CharField(max_length=200)
    active = pw.BooleanField(default=True)
    failed_logins = pw.IntegerField(default=0)  # since the last good one
    locked_until = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()
    password_changed_at = pw.DateTimeField()
    last_login_at = pw.DateTimeField(null=True)


class HqSession(BaseModel):
    """A signed-in console session. The cookie holds a random token; only its SHA-256
    is stored, so a copied database signs nobody in."""

    token_hash = pw.CharField(primary_key=True, max_length=64)
    username = pw.CharField(max_length=64, index=True)
    csrf = pw.CharField(max_length=64)  # sent back in forms and X-CSRF-Token
    created_at = pw.DateTimeField()
    last_seen = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    ended_at = pw.DateTimeField(null=True)


class ApiToken(BaseModel):
    """A bearer token for an integration, with its own role and scope (not a user's)."""

    token_id = pw.CharField(primary_key=True, max_length=16)  # public: shown and revoked by
    name = pw.CharField(max_length=64)
    token_hash = pw.CharField(max_length=64, unique=True)
    role = pw.CharField(max_length=16)
    scope = pw.CharField(null=True, max_length=32)
    created_by = pw.CharField(max_length=64)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)
    last_used_at = pw.DateTimeField(null=True)


MODELS += [HqUser, HqSession, ApiToken]

# ---- end of HQ's people

# ---- the console's tables (issue 12), one block per part
# -- reports (summary tables the KPIs read): hq/reports/summary.py keeps them in the
# ingest's transaction; ``huiyuan-hq reports-rebuild`` rebuilds them from the sales


class ReportStoreDay(BaseModel):
    """A store's business day: all sales (walk-ins and members) and the members' part,
    returns taken off on the return's day. Money in fen; ``items`` is the quantity sold,
    ``lines`` the receipt lines."""

    store = pw.CharField(max_length=32)
    day = pw.DateField(index=True)
    tickets = pw.IntegerField(default=0)
    sales_fen = pw.BigIntegerField(default=0)  # sales' totals, returns not taken off
    returns_fen = pw.BigIntegerField(default=0)  # refunds given that day
    items = pw.BigIntegerField(default=0)
    returned_items = pw.BigIntegerField(default=0)
    lines = pw.BigIntegerField(default=0)
    m_tickets = pw.IntegerField(default=0)  # m_: the sales with a member
    m_sales_fen = pw.BigIntegerField(default=0)
    m_returns_fen = pw.BigIntegerField(default=0)
    m_items = pw.BigIntegerField(default=0)
    m_returned_items = pw.BigIntegerField(default=0)
    m_lines = pw.BigIntegerField(default=0)

    class Meta:
        primary_key = pw.CompositeKey("store", "day")


class ReportMemberSpend(BaseModel):
    """A member's buying at one store in one period (``kind`` day | month | quarter |
    year, ``start`` its first day): tickets, net fen and items (returns off on the
    return's day), the first and last day bought, and the member's groups as of the
    newest sale (for 贡献率). ``home_store`` is where the member registered."""

    kind = pw.CharField(max_length=8)
    start = pw.DateField()
    member_id = pw.CharField(max_length=36)
    store = pw.CharField(max_length=32)
    home_store = pw.CharField(null=True, max_length=32)
    tickets = pw.IntegerField(default=0)
    amount = pw.BigIntegerField(default=0)
    items = pw.BigIntegerField(default=0)
    first_day = pw.DateField(null=True)
    last_day = pw.DateField(null=True)
    tier = pw.CharField(null=True, max_length=64)
    card_type = pw.CharField(null=True, max_length=64)
    gender = pw.CharField(default="", max_length=1)
    birth_year = pw.IntegerField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("kind", "start", "member_id", "store")
        indexes = ((("member_id", "kind", "start"), False),)


class ReportMember(BaseModel):
    """One row per registered member: home store, recruiter, registration day (the till's
    local date), first and last purchase day; ``merged`` once merged into another (not
    counted)."""

    member_id = pw.CharField(primary_key=True, max_length=36)
    home_store = pw.CharField(null=True, max_length=32, index=True)
    staff = pw.CharField(null=True, max_length=64, index=True)
    reg_day = pw.DateField(null=True, index=True)
    first_day = pw.DateField(null=True, index=True)
    # -- campaigns: the lifecycle stage reads it (not a MAX over the spend rows per query);
    # rows from before the column get theirs from init-db (reports.summary.backfill_last_day)
    last_day = pw.DateField(null=True)
    gender = pw.CharField(default="", max_length=1)
    birth_year = pw.IntegerField(null=True)
    merged = pw.BooleanField(default=False)


class ReportRollup(BaseModel):
    """The distinct-member counts of a week, month, quarter or year (whole, or to a day:
    the running periods the dashboard compares to date), rolled up by the scheduler
    (hq/reports/rollup.py, job ``reports-rollup``): per sales scope (``chain`` "", each
    ``area``, each ``store``) the buyers' counts, per ``home`` store the member-base counts
    (hq.reports.kpis BUYER_FIELDS / BASE_FIELDS, as a list of ints in ``data``)."""

    kind = pw.CharField(max_length=8)
    start = pw.DateField()
    # a period to date (Period.until): its last day, ISO; "" for the whole period
    until = pw.CharField(max_length=10, default="")
    scope_kind = pw.CharField(max_length=16)  # chain | area | store | home | g:<group column>
    scope_key = pw.CharField(max_length=100)  # g:...: "<store or empty>|<group>"
    data = JSONText()
    computed_at = pw.DateTimeField()

    class Meta:
        primary_key = pw.CompositeKey("kind", "start", "until", "scope_kind", "scope_key")


MODELS += [ReportStoreDay, ReportMemberSpend, ReportMember, ReportRollup]

# -- members (console search: hq/member_search.py)
Member.add_index(Member.name_pinyin, Member.id)
Member.add_index(Member.name_initials, Member.id)
Member.add_index(Member.phone_last4, Member.id)
# a store or area manager's search reads only their stores' members of the range
Member.add_index(Member.registered_store, Member.name_pinyin, Member.id)
Member.add_index(Member.registered_store, Member.name_initials, Member.id)
# -- operations (exception and dead-letter resolution)
# -- setup
# ---- end of the console's tables


# ---- issue 13 and 14 at HQ: one block per part, each ending with its own ``MODELS += [...]``
# -- shifts and day close (reports from the stores): hq/shifts.py applies the
# ``shift_close`` and ``day_close`` items; a figure that differs from the sales HQ holds
# is an HqException (``day_close_mismatch``, ``shift_mismatch``), not a refusal


class StoreShift(BaseModel):
    """A shift closed at a till (交班): the cash counted against what the till expected."""

    shift_id = pw.CharField(primary_key=True, max_length=64)
    store = pw.CharField(max_length=32)
    seq = pw.BigIntegerField()
    staff_code = pw.CharField(max_length=64)
    staff_name = pw.CharField(max_length=255, default="")
    day = pw.CharField(max_length=10)
    opened_at = pw.CharField(max_length=40)
    closed_at = pw.CharField(max_length=40)
    float_fen = pw.BigIntegerField()
    counted = pw.BigIntegerField()
    expected = pw.BigIntegerField()
    difference = pw.BigIntegerField()  # counted - expected: > 0 长款, < 0 短款
    body = JSONText()
    ingested_at = pw.DateTimeField()

    class Meta:
        indexes = ((("store", "day"), False),)


class StoreDayClose(BaseModel):
    """A store's business day closed (日结); a re-close is the next revision, kept beside."""

    close_id = pw.CharField(primary_key=True, max_length=64)
    store = pw.CharField(max_length=32)
    seq = pw.BigIntegerField()
    day = pw.CharField(max_length=10)
    revision = pw.IntegerField()
    closed_by = pw.CharField(max_length=64)
    closed_at = pw.CharField(max_length=40)
    sales_count = pw.BigIntegerField()
    sales_total = pw.BigIntegerField()
    cash_net = pw.BigIntegerField()
    shifts_difference = pw.BigIntegerField()
    mismatch = pw.BooleanField(default=False)  # HQ's sales for the day said otherwise
    body = JSONText()
    ingested_at = pw.DateTimeField()

    class Meta:
        indexes = ((("store", "day", "revision"), True),)


MODELS += [StoreShift, StoreDayClose]
# -- follow-ups (回访)


class FollowUpRule(BaseModel):
    """A follow-up rule the chain sets (hq/followups/tasks.py ``RULE_DEFAULTS``): one row per
    kind; a kind without a row runs with its defaults. ``days`` is the kind's number of
    days (after the first purchase, after the service sale, without a purchase, or to call
    within); ``params`` the kind's thresholds."""

    kind = pw.CharField(primary_key=True, max_length=16)
    enabled = pw.BooleanField(default=True)
    days = pw.IntegerField()
    params = JSONText(default=dict)
    updated_at = pw.DateTimeField()
    updated_by = pw.CharField(max_length=64)


class FollowUp(BaseModel):
    """A follow-up call (回访) to make: for one member, of one kind, assigned to the member's
    maintainer (``staff_code``; null: the store's, for its manager) at ``store``, due on
    ``due_on``; overdue while open past it. ``ref`` names what it follows (a sale, a month,
    a last purchase day): (member, kind, ref) is made once ever, and ``open_key``
    (member:kind while open, else null) keeps one open task per member and kind."""

    id = pw.CharField(primary_key=True, max_length=36)
    member_id = pw.CharField(max_length=36, index=True)
    kind = pw.CharField(max_length=16)
    ref = pw.CharField(max_length=64, default="")
    store = pw.CharField(max_length=32, index=True)
    staff_code = pw.CharField(null=True, max_length=64, index=True)
    reason = pw.TextField(default="")
    due_on = pw.DateField(index=True)
    status = pw.CharField(max_length=8, default="open", index=True)  # open | done
    open_key = pw.CharField(null=True, unique=True, max_length=60)
    created_at = pw.DateTimeField()
    done_at = pw.DateTimeField(null=True)
    done_by = pw.CharField(null=True, max_length=64)  # the staff code, or the HQ user
    outcome_id = pw.CharField(null=True, max_length=36)

    class Meta:
        indexes = ((("member_id", "kind", "ref"), True),)


class FollowUpOutcome(BaseModel):
    """What a call gave, from a till (item ``followup_outcome``) or the console; the
    ``outcome_id`` (a UUID the screen mints) makes recording it idempotent."""

    outcome_id = pw.CharField(primary_key=True, max_length=36)
    followup_id = pw.CharField(max_length=36, index=True)
    member_id = pw.CharField(max_length=36, index=True)
    store = pw.CharField(null=True, max_length=32)
    staff_code = pw.CharField(null=True, max_length=64, index=True)  # who called
    reached = pw.BooleanField()
    satisfaction = pw.IntegerField(null=True)  # 1..5
    said = pw.TextField(default="")
    complaint = pw.TextField(default="")
    request = pw.TextField(default="")
    recorded_at = pw.CharField(max_length=40)  # the till's ISO time, or HQ's
    source = pw.CharField(max_length=8)  # till | console
    ingested_at = pw.DateTimeField(index=True)


MODELS += [FollowUpRule, FollowUp, FollowUpOutcome]
# -- marketing lists and segments
# hq/marketing/: the lists the scheduler stores on their day (a stable campaign audience),
# the chain's thresholds, saved segments


class MarketingSetting(BaseModel):
    """One of the chain's marketing thresholds (hq/marketing/settings.py ``DEFAULTS``);
    a missing row means the default."""

    name = pw.CharField(primary_key=True, max_length=48)
    value = pw.IntegerField()
    updated_by = pw.CharField(max_length=64)
    updated_at = pw.DateTimeField()


class ListRun(BaseModel):
    """A list as produced on its day (hq/marketing/lists.py): ``kind`` (new_members |
    birthdays | dormant | weekly_new), ``start`` the month or week it is for, ``scope``
    "" (chain-wide) or a store code; one run per kind, start and scope."""

    id = pw.AutoField()
    kind = pw.CharField(max_length=16)
    start = pw.DateField()
    scope = pw.CharField(max_length=32, default="")
    members = pw.IntegerField(default=0)
    made_at = pw.DateTimeField()
    made_by = pw.CharField(max_length=64)  # "scheduler" or the HQ user

    class Meta:
        indexes = ((("kind", "start", "scope"), True),)


class ListRunMember(BaseModel):
    """A member of a stored list, with the list's date for them (the birthday, the call
    day of the weekly list, the last purchase day of the dormant list)."""

    run = pw.IntegerField()
    member_id = pw.CharField(max_length=36)
    day = pw.DateField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("run", "member_id")


class Segment(BaseModel):
    """A saved segment: an AND of conditions (hq/marketing/segments.py) as JSON."""

    id = pw.AutoField()
    name = pw.CharField(max_length=64, unique=True)
    conditions = JSONText()
    created_by = pw.CharField(max_length=64)
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()


MODELS += [MarketingSetting, ListRun, ListRunMember, Segment]

# -- campaigns (issue 14): hq/marketing/campaigns.py (create, launch), sending.py (the
# crash-safe send loop), tracking.py (results); docs/campaigns.md


class Campaign(BaseModel):
    """A campaign: an audience, a benefit, channels and a schedule.

    ``audience``: {"list": kind, "start": "YYYY-MM-DD"} | {"segment": id} | {"run": id};
    frozen at launch to the ListRun ``run_id`` (so the members it reaches never move).
    ``benefit``: {} | {"coupon": template_id} | {"points": n} | {"gift": "text"}.
    ``channels``: a subset of ["sms", "wechat", "call"]. ``text``: the message, with
    placeholders (hq/marketing/campaigns.py ``PLACEHOLDERS``). ``send_at``: naive UTC, not
    before. ``control_pct``: members held out (no message, no benefit) to compare with.
    ``status``: draft | scheduled | sending | done | cancelled."""

    id = pw.AutoField()
    name = pw.CharField(max_length=64)
    audience = JSONText()
    run_id = pw.IntegerField(null=True)
    benefit = JSONText(default=dict)
    channels = JSONText()
    text = pw.TextField(default="")
    send_at = pw.DateTimeField()
    window_days = pw.IntegerField(default=14)  # sales counted this many days from send_at
    control_pct = pw.IntegerField(default=0)  # 0..50
    message_cost_fen = pw.IntegerField(default=0)  # what one SMS / template message costs
    status = pw.CharField(max_length=10, default="draft", index=True)
    recipients = pw.IntegerField(default=0)  # treated + control, set at launch
    created_by = pw.CharField(max_length=64)
    created_at = pw.DateTimeField()
    launched_by = pw.CharField(null=True, max_length=64)
    launched_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)


class CampaignRecipient(BaseModel):
    """A member of a launched campaign's audience: ``control`` (held out) or treated;
    ``benefit_ref`` what they were given (a coupon code, a points entry), set in the same
    transaction as the benefit so a restart never gives it twice."""

    campaign = pw.IntegerField()
    member_id = pw.CharField(max_length=36, index=True)
    control = pw.BooleanField(default=False)
    benefit_ref = pw.CharField(null=True, max_length=64)
    benefit_at = pw.DateTimeField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("campaign", "member_id")


class CampaignSend(BaseModel):
    """One message to one member on one channel (sms | wechat). ``key`` is the
    idempotency key the gateway sees (``c<campaign>:<member>:<channel>``): a send retried
    after a crash carries the same key, and the gateway sends it once.
    ``status``: pending | sending (handed to the gateway, answer not yet recorded) | sent |
    delivered | failed | skipped (``reason``: consent, unsubscribed, cap, no_contact,
    cancelled). ``next_at``: not before (backoff, quiet hours)."""

    id = pw.AutoField()
    campaign = pw.IntegerField()
    member_id = pw.CharField(max_length=36)
    channel = pw.CharField(max_length=8)
    key = pw.CharField(max_length=64, unique=True)
    status = pw.CharField(max_length=10, default="pending")
    reason = pw.CharField(max_length=16, default="")
    attempts = pw.IntegerField(default=0)
    next_at = pw.DateTimeField()
    last_error = pw.CharField(max_length=200, default="")
    gateway_id = pw.CharField(max_length=64, default="")
    sent_at = pw.DateTimeField(null=True)
    delivered_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField()

    class Meta:
        indexes = (
            (("campaign", "status", "next_at"), False),
            (("member_id", "sent_at"), False),  # the frequency cap
            (("channel", "gateway_id"), False),  # delivery reports
        )


class MemberWechat(BaseModel):
    """A member's openid on the chain's WeChat official account (what a template message
    is addressed to), bound by hq/channels/wechat.py; one per member."""

    member_id = pw.CharField(primary_key=True, max_length=36)
    openid = pw.CharField(max_length=64, unique=True)
    bound_at = pw.DateTimeField()
    source = pw.CharField(max_length=16)  # import | portal


MODELS += [Campaign, CampaignRecipient, CampaignSend, MemberWechat]
# -- end campaigns
# ---- end of issue 13 and 14's tables

# -- memberpage (the member's own page, hq/portal/): verification codes for binding a phone


class MemberPageCode(BaseModel):
    """A verification code sent to bind a phone on the member's page (hq/portal/binding.py).
    The code is kept only as an HMAC under a key derived from the chain lookup key; the
    phone only as its lookup hash. ``locked_until``: set on the fifth wrong try."""

    id = pw.AutoField()
    member_id = pw.CharField(max_length=36, index=True)
    phone_hash = pw.CharField(max_length=64, index=True)
    code_hash = pw.CharField(max_length=64)
    created_at = pw.DateTimeField(index=True)
    expires_at = pw.DateTimeField()
    tries = pw.IntegerField(default=0)
    used = pw.BooleanField(default=False)
    locked_until = pw.DateTimeField(null=True)


MODELS += [MemberPageCode]
# -- end memberpage
