"""The store's database: peewee models declared without a database, bound at start.

SQLite in WAL mode with synchronous=FULL: a transaction the till acknowledged
survives a process kill and a power cut. Every write transaction begins
IMMEDIATE so the till API and the sync agent (two processes) queue for the
write lock instead of failing half-way.

Who checkpoints the WAL (copies it back into the database file):

- the till server (``huiyuan-edge serve``) runs a checkpointer child process
  (edge/checkpointer.py), so no sale pays for copying the WAL; its own connections
  checkpoint automatically only as a backstop, far past where the child keeps the WAL;
- every other process (the sync agent, CLI commands, tests) keeps SQLite's automatic
  checkpoint at commit, every ``edge.checkpointer.AUTOCHECKPOINT_PAGES``, so the WAL stays bounded
  whether or not the till server runs. The sync agent's commits are not on a
  cashier's clock, and a checkpoint in another process never blocks the till's writes.
"""

from __future__ import annotations

import json
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

from core.errors import ConfigError
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
    # ---- the programme's fields as HQ sends them (core.protocol.MEMBER_PROGRAMME_FIELDS)
    growth = BigIntegerField(default=0)
    tier_since = CharField(null=True)
    card_expires_on = CharField(null=True)
    occupation = CharField(default="")
    preferences = JSONField(null=True)
    anniversaries = JSONField(null=True)
    notes = TextField(default="")
    tags = JSONField(null=True)
    extra = JSONField(null=True)
    profile_score = IntegerField(default=0)
    referred_by = CharField(null=True)


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
    category = CharField(default="", index=True)  # the chain's category code (coupons target it)
    cost = BigIntegerField(null=True)  # fen, for margin reports; null = not known


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

SCHEMA_VERSION = 5

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


# Invariant 8: a registration carries the phone to HQ in plaintext (over TLS); once HQ
# has acknowledged it, the outbox copy is scrubbed.
SCRUB_CONTACTS_TRIGGER = (
    "CREATE TRIGGER outbox_scrub_contacts AFTER UPDATE OF acked ON outbox "
    "WHEN NEW.acked AND NEW.kind = 'registration' BEGIN "
    "UPDATE outbox SET payload = json_set(payload, '$.body.phone', '') WHERE seq = NEW.seq; "
    "END"
)


class SchemaOutdated(ConfigError):
    """The database file is older than this software: ``huiyuan-edge migrate`` upgrades it.

    The services refuse to open such a file rather than migrate it themselves: migrations
    run once, by the ``huiyuan-edge-migrate`` oneshot unit (or by hand), after a backup."""


def open_database(
    path: str | Path, synchronous: str = "FULL", *, upgrade: bool = False
) -> SqliteDatabase:
    """Open (creating if needed) the store database and bind the models.

    A new file gets the current schema. An existing file of an older schema is refused
    (``SchemaOutdated``, naming the command) unless ``upgrade`` is set, which only
    ``huiyuan-edge migrate`` does (edge/migrate.py: backup first, then ``migrate``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(
        str(path),
        pragmas={
            "journal_mode": "wal",
            "synchronous": synchronous.upper(),
            "foreign_keys": 1,
            "busy_timeout": 10000,
            # per connection, and waitress runs four: 32 MB each grew the till server by
            # ~110 MB for no measurable speed (the OS page cache holds the file anyway)
            "cache_size": -8000,
            # deleted and overwritten rows are zeroed, so scrubbed contacts do not linger in free pages
            "secure_delete": 1,
        },
        lock_type="IMMEDIATE",
        check_same_thread=False,
    )
    db.bind(MODELS)
    db.connect(reuse_if_open=True)
    version = schema_version(db)
    if version == 0 or upgrade:
        migrate(db)
    elif version < SCHEMA_VERSION:
        db.close()
        raise SchemaOutdated(
            f"数据库 {path} 的结构版本为 {version}，本软件需要 {SCHEMA_VERSION}：请先运行 "
            f"huiyuan-edge migrate（会先备份）。 The database has schema {version}, older "
            f"than this software's {SCHEMA_VERSION}: run `huiyuan-edge migrate` first "
            "(it backs the file up), or start huiyuan-edge-migrate.service.",
            field="database.path",
        )
    check_not_newer(db, path)
    return db


def schema_version(db: SqliteDatabase) -> int:
    return int(db.execute_sql("PRAGMA user_version").fetchone()[0])


def check_not_newer(db: SqliteDatabase, path: Path) -> None:
    version = schema_version(db)
    if version > SCHEMA_VERSION:
        db.close()
        raise ConfigError(
            f"{path} has schema {version}, newer than this software ({SCHEMA_VERSION})",
            field="database.path",
        )


def migrate(db: SqliteDatabase) -> tuple[int, int]:
    """Bring the bound database to ``SCHEMA_VERSION``: a new file gets the current schema,
    an older one runs each numbered step in ``MIGRATIONS`` in turn, all in one
    transaction. Returns (version before, version after). Back the file up first
    (edge/migrate.py does, before calling this)."""
    with db.atomic():
        # the write lock is held from here: a second migrator waits, then finds it done
        version = schema_version(db)
        if version >= SCHEMA_VERSION:
            return version, version
        if version < 1:
            db.create_tables(MODELS)  # the current schema, as the models declare it
            db.execute_sql(SCRUB_CONTACTS_TRIGGER)
            db.execute_sql(_HELD_PHONES_INDEX)
        else:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](db)
            # what early schema-1 files lack, added then without a schema number: the
            # sync agent's tables, and the trigger (with the scrub it would have done)
            db.create_tables(MODELS, safe=True)
            db.execute_sql(SCRUB_CONTACTS_TRIGGER.replace("TRIGGER", "TRIGGER IF NOT EXISTS", 1))
            db.execute_sql(
                "UPDATE outbox SET payload = json_set(payload, '$.body.phone', '') "
                "WHERE acked AND kind = 'registration' AND json_extract(payload, '$.body.phone') != ''"
            )
        db.execute_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return version, SCHEMA_VERSION


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


# schema 3: the few members whose phone the store holds (edge/phones.py prunes the rest)
_HELD_PHONES_INDEX = (
    'CREATE INDEX IF NOT EXISTS "member_phone_held" ON "member" ("id") '
    'WHERE "phone_enc" IS NOT NULL'
)


def _migrate_to_3(db: SqliteDatabase) -> None:
    """Schema 2 -> 3 (invariant 8): a member's ``phone_hash`` becomes the chain's lookup hash,
    whose key HQ sends with a snapshot. Until it arrives, the hashes written under the store's
    own key stay usable, marked ``L``; when it does, every phone held is hashed again and
    the phones of members this store has no registration pending for are dropped
    (edge.phones.install_lookup_key)."""
    db.execute_sql(
        "UPDATE member SET phone_hash = 'L' || phone_hash "
        "WHERE phone_hash IS NOT NULL AND phone_hash NOT LIKE 'L%'"
    )
    db.execute_sql(_HELD_PHONES_INDEX)


def _migrate_to_4(db: SqliteDatabase) -> None:
    """Schema 3 -> 4 (the membership programme): new tables, and new columns on existing
    ones, which are all nullable or have a constant default (so old rows read as "not
    set"). ``migrate`` creates the new tables after the steps; this adds the columns."""
    add_missing_columns(db)


def add_missing_columns(db: SqliteDatabase) -> list[str]:
    """Add the columns the models declare that existing tables lack: nullable ones, and NOT
    NULL ones with a constant default. Anything else is refused by name."""
    from playhouse.migrate import SqliteMigrator
    from playhouse.migrate import migrate as run

    added = []
    migrator = SqliteMigrator(db)
    for model in MODELS:
        table = model._meta.table_name
        if not db.table_exists(table):
            continue  # created whole by ``migrate``
        have = {c.name for c in db.get_columns(table)}
        for f in model._meta.sorted_fields:
            if f.column_name in have:
                continue
            if not f.null and (f.default is None or callable(f.default)):
                raise ConfigError(
                    f"table {table} lacks column {f.column_name}, which is NOT NULL "
                    "without a constant default: this upgrade needs its own migration step",
                    field="database.path",
                )
            run(migrator.add_column(table, f.column_name, f))
            added.append(f"{table}.{f.column_name}")
    return added


# each step takes the database from the number before it to its own number
def _migrate_to_5(db: SqliteDatabase) -> None:
    """Schema 4 -> 5 (the cashier's screen, issue 13; follow-ups, issue 14): new tables
    (created by ``migrate`` after the steps) and new nullable or defaulted columns."""
    add_missing_columns(db)


MIGRATIONS = {2: _migrate_to_2, 3: _migrate_to_3, 4: _migrate_to_4, 5: _migrate_to_5}


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


# ---- the membership programme (issue 11): new tables, one block per part; each block
# ends with its own ``MODELS += [...]``. Schema 4 creates them on an older file.

# -- tiers (tiers, growth value, member day)

# -- cards (card types as products, card replacement)


class CardSale(BaseModel):
    """A card product sold at this till (the 198元年卡): what it gave, and its receipt."""

    id = CharField(primary_key=True)
    member_id = CharField(index=True)
    card_type = CharField()
    price = BigIntegerField()
    valid_from = CharField()
    valid_to = CharField()
    renewal = BooleanField(default=False)
    cashier = CharField()
    occurred_at = CharField()
    receipt = JSONField()


MODELS += [CardSale]


# -- points (points rules, gifts, referral)


class Gift(BaseModel):
    """HQ's gift catalogue as last sent (change entity ``gift``; docs/programme/points.md)."""

    gift_id = CharField(primary_key=True)
    name = CharField()
    points = BigIntegerField()  # per unit
    kind = CharField()  # goods | coupon
    sku = CharField(null=True)
    coupon_template = CharField(null=True)
    active = BooleanField(default=True)
    valid_from = CharField(null=True)  # ISO dates, both days included
    valid_to = CharField(null=True)


class GiftRedemption(BaseModel):
    """A gift redeemed here: its points left in the same transaction (ledger ``gift``)."""

    id = CharField(primary_key=True)
    member_id = CharField(index=True)
    gift_id = CharField()
    qty = IntegerField()
    points = BigIntegerField()
    cashier = CharField()
    occurred_at = CharField()
    body = JSONField()
    receipt = JSONField()


MODELS += [Gift, GiftRedemption]

# -- coupons (coupons)


class CouponTemplate(BaseModel):
    """A coupon template as HQ published it (core.coupons.CouponTemplate as ``data``)."""

    id = CharField(primary_key=True)
    data = JSONField(default=dict)
    active = BooleanField(default=True)


class TillCoupon(BaseModel):
    """A coupon this till issued (a new-member gift, a points gift), until and after HQ
    describes it too (SyncCoupon): its issue went up as a ``coupon_issue`` item."""

    code = CharField(primary_key=True)
    member_id = CharField(index=True)
    template_id = CharField()
    valid_from = CharField(null=True)
    expires_on = CharField(null=True)
    issued_at = CharField()
    source = CharField(default="till")
    ref = CharField(null=True)
    cashier = CharField(null=True)


class CouponRedemption(BaseModel):
    """A coupon this till took in a sale; ``returned`` once the sale was fully returned.
    A coupon with a redemption not returned is used here, whatever HQ last said."""

    code = CharField(index=True)
    sale_id = CharField(index=True)
    member_id = CharField(index=True)
    day = CharField()
    offline = BooleanField(default=False)  # taken under the offline policy, not HQ's hold
    returned = BooleanField(default=False)


MODELS += [CouponTemplate, TillCoupon, CouponRedemption]

# -- upkeep (stored value, profile, password)


class SvRefund(BaseModel):
    """A refund of stored value principal paid in cash (edge/services/upkeep.py), with the
    bonus forfeited as HQ's authorization said; its id is the client's idempotency key."""

    id = CharField(primary_key=True)
    member_id = CharField(index=True)
    principal = BigIntegerField()
    bonus = BigIntegerField()  # forfeited
    cashier = CharField()
    approved_by = CharField()
    reason = CharField(default="")
    authorization_id = CharField()
    occurred_at = CharField()
    receipt = JSONField()


MODELS += [SvRefund]

# -- staff (maintainers, categories and cost)


class StaffRegistry(BaseModel):
    """HQ's staff registry as this till holds it (change entity ``staff``; no PIN: sign-in
    uses ``Staff``). Maintainer codes are checked against it once it has arrived
    (edge/services/maintainers.py)."""

    code = CharField(primary_key=True)
    name = CharField(default="")
    store = CharField(default="")
    role = CharField(default="")
    status = CharField(default="active")  # active | leaving | closed
    updated_at = CharField()


class MaintainerRequest(BaseModel):
    """An open maintainer transfer from this store (change entity ``staff_transfer``),
    for the manager to approve or reject at the till; ``decision`` is this till's answer,
    sent up and waiting for HQ."""

    id = CharField(primary_key=True)
    status = CharField()  # HQ's: pending | store_approved
    data = JSONField()  # HQ's transfer state, as sent
    decision = CharField(null=True)  # approve | reject
    decided_by = CharField(null=True)
    decided_at = CharField(null=True)
    updated_at = CharField()


MODELS += [StaffRegistry, MaintainerRequest]

# ---- end of the programme's tables


# ---- the cashier's screen (issue 13) and follow-ups (issue 14): one block per part; each
# declares its tables and ends with its own ``MODELS += [...]``. New columns on existing
# tables must be nullable or have a constant default (schema 5 adds them).
# -- sale & pay (products' pinyin, parked sales)
# A product's name as the scan box finds it: full pinyin and initials (core.names, as
# members' names; ``nfsq`` finds 农夫山泉). Null until written (edge.services.products
# fills rows written before these columns by the first search that meets them).
Product._meta.add_field("name_pinyin", CharField(null=True))
Product._meta.add_field("name_initials", CharField(null=True))


class ParkedSale(BaseModel):
    """A basket put aside (挂单) to serve the next customer; recalling it (取单) deletes it.
    Kept on the box, so it survives a reload of the screen or a restart."""

    id = CharField(primary_key=True)
    lines = JSONField()  # [{sku, qty, line_discount}] as POST /sales/quote takes them
    member_id = CharField(null=True)
    discounts = JSONField(null=True)  # {order_discount_rate, manual_adjustment}
    parked_by = CharField()
    parked_at = CharField(index=True)
    note = CharField(default="")
    total = BigIntegerField(default=0)  # fen, as quoted when parked: for the recall list


MODELS += [ParkedSale]

# -- members at the till
# -- returns and receipts
# -- shifts and day close


class Shift(BaseModel):
    """A staff member's shift on this till (edge/services/shifts.py): opened with a float
    (integer fen counted into the drawer), closed (交班) with a cash count; what the till
    expected and the difference are kept with the figures as they went up to HQ."""

    id = CharField(primary_key=True)
    staff_code = CharField(index=True)
    staff_name = CharField(default="")
    day = CharField(index=True)  # the store's business day the shift opened on
    opened_at = CharField()
    float_fen = BigIntegerField()
    status = CharField(default="open")  # open | closed
    closed_at = CharField(null=True)
    counted = BigIntegerField(null=True)
    denominations = JSONField(null=True)  # {"10000": 3, ...}: fen per note or coin -> how many
    expected = BigIntegerField(null=True)
    difference = BigIntegerField(null=True)  # counted - expected: > 0 长款, < 0 短款
    figures = JSONField(null=True)
    receipt = JSONField(null=True)


class DayClose(BaseModel):
    """日结: the store's business day closed by a manager, once; a re-close is explicit
    and gets the next revision (HQ keeps every revision, the latest counts)."""

    id = CharField(primary_key=True)
    day = CharField()
    revision = IntegerField(default=1)
    closed_by = CharField()
    closed_at = CharField()
    figures = JSONField()
    receipt = JSONField()

    class Meta:
        indexes = ((("day", "revision"), True),)


MODELS += [Shift, DayClose]


# -- follow-ups
class FollowUp(BaseModel):
    """A follow-up call of this store as HQ made it (change entity ``followup``; only open
    tasks are kept): ``status`` is done once its outcome was recorded here (sent up as a
    ``followup_outcome`` item; HQ's closed task then removes the row)."""

    id = CharField(primary_key=True)
    member_id = CharField(index=True)
    kind = CharField()
    staff_code = CharField(null=True, index=True)  # null: the store's, for its manager
    reason = CharField(default="")
    due_on = CharField()  # ISO date
    status = CharField(default="open")  # open | done
    data = JSONField()  # HQ's record as sent
    updated_at = CharField()


class FollowUpOutcome(BaseModel):
    """An outcome recorded at this till; its id is the screen's idempotency key."""

    outcome_id = CharField(primary_key=True)
    followup_id = CharField(index=True)
    member_id = CharField(index=True)
    staff_code = CharField()
    reached = BooleanField()
    satisfaction = IntegerField(null=True)
    said = CharField(default="")
    complaint = CharField(default="")
    request = CharField(default="")
    recorded_at = CharField()


MODELS += [FollowUp, FollowUpOutcome]
# ---- end of the cashier's screen's tables
