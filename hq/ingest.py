"""Ingest: one batch from one store, one database transaction, an ack after commit.

``ingest_batch`` returns what the caller must publish *after* it returns (the
transaction is committed by then): the ack for the store and the change records
for the live push. Refusal is total: every item HQ reads and refuses, for any
reason (invalid, forged, oversized, a business rule, or an exception nobody
foresaw), is dead-lettered and rejected in the ack, and the cursor passes it.
Only a message whose envelope cannot be read is dead-lettered without an ack:
nothing in it can be attributed to a seq. See docs/protocol.md, "Refusals".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import peewee as pw

from core.errors import HuiyuanError, NotFound, ProtocolError
from core.protocol import (
    HOLD_WINDOW,
    MAX_PAYLOAD_BYTES,
    MAX_READ_BYTES,
    Ack,
    Batch,
    Change,
    Hello,
    Rejection,
    UpItem,
    decode_json,
    safe_text,
    unencodable_field,
    validate_batch,
    validate_item,
    validate_state,
)
from hq.apply import BatchCache, ItemContext, MoneyRefused, apply_item
from hq.changes import ChangeSet, flush_changes
from hq.ledger import Book
from hq.members import touch_through
from hq.models import DeadLetter, HeldItem, ProcessedItem, Store, Writes, is_postgres, one_of

log = logging.getLogger("hq.ingest")

DEAD_LETTER_KEEP_BYTES = 64 * 1024
TRANSACTION_ATTEMPTS = 5
# A rejection's reason in an ack is cut to this many UTF-8 bytes, so that an ack rejecting
# every item of a full batch still fits MAX_PAYLOAD_BYTES; the dead letter keeps it whole.
ACK_REASON_BYTES = 400
# A batch is run whole at most this many times (each refused item makes one more run);
# past that its items run one per transaction, so that a batch of n refused items costs
# O(n) item applications, not O(n²).
WHOLE_BATCH_RUNS = 4


@dataclass
class IngestOutcome:
    ack: Ack | None = None
    changes: list[Change] = field(default_factory=list)
    dead_letter: str | None = None  # the reason code when the whole message was refused
    applied: int = 0
    duplicates: int = 0
    held: int = 0


def dead_letter(
    topic: str,
    payload: bytes,
    code: str,
    reason: str,
    now: dt.datetime,
    store: str | None = None,
    seq: int | None = None,
) -> None:
    reason = safe_text(reason)[:2000]
    DeadLetter.create(
        topic=safe_text(topic)[:255],
        store=store,
        seq=seq,
        code=code,
        reason=reason,
        payload=payload[:DEAD_LETTER_KEEP_BYTES],
        payload_size=len(payload),
        received_at=now,
    )
    log.warning("dead letter %s on %s (store=%s seq=%s): %s", code, topic, store, seq, reason)


def _protocol_code(exc: ProtocolError) -> str:
    text = exc.message
    if "schema version" in text:
        return "bad_version"
    if "unknown kind" in text:
        return "unknown_kind"
    return "invalid"


RETRYABLE_NAMES = {"DeadlockDetected", "SerializationFailure", "TransactionRollbackError"}


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, pw.IntegrityError | pw.OperationalError | pw.InterfaceError):
        return True
    return any(cls.__name__ in RETRYABLE_NAMES for cls in type(exc).__mro__)


def first_line(exc: BaseException) -> str:
    """An error's first line only: PostgreSQL's DETAIL line of a unique-key race holds the
    key's value (``Key (phone)=(138...) already exists``), which no log may show."""
    return str(exc).split("\n", 1)[0]


def _drop_values(exc: BaseException) -> None:
    """Keep only the first line of a database error, and drop the driver's exception it
    was raised from (a traceback prints that one's message in full)."""
    exc.args = (first_line(exc),)
    exc.__cause__ = exc.__context__ = None
    exc.__suppress_context__ = True


def _transaction(db: pw.Database, work: Any) -> Any:
    """Run ``work`` in a transaction, retrying on deadlocks, serialization failures,
    unique-key races (two workers registering one phone) and lost connections."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            with db.atomic():
                return work()
        except Exception as exc:
            if not _retryable(exc) or attempt == TRANSACTION_ATTEMPTS:
                if isinstance(exc, pw.IntegrityError):
                    _drop_values(exc)  # it is logged and becomes a refusal's reason
                raise
            log.info(
                "transaction retry %d after %s: %s", attempt, type(exc).__name__, first_line(exc)
            )
            if isinstance(exc, pw.OperationalError | pw.InterfaceError) and not db.in_transaction():
                db.close()  # reconnect on the next attempt if the connection is gone
            time.sleep(0.02 * attempt)
    raise AssertionError("unreachable")


def _lock_store(db: pw.Database, code: str, now: dt.datetime) -> Store:
    """The store's row, locked (made in epoch 1 the first time: a later epoch becomes
    current once HQ applies an item in it)."""
    query = Store.select().where(Store.code == code)
    if is_postgres(db):
        query = query.for_update()
    store = query.get_or_none()
    if store is None:
        Store.insert(code=code, created_at=now).on_conflict_ignore().execute()
        store = query.get()
    return store


def epoch_cursor(code: str, epoch: int) -> int:
    """HQ's cursor for ``code`` in ``epoch``: every seq up to it has a ProcessedItem row
    (applied, rejected or a duplicate of an id HQ had), and no seq after it has one."""
    top = (
        ProcessedItem.select(pw.fn.MAX(ProcessedItem.seq))
        .where((ProcessedItem.store == code) & (ProcessedItem.epoch == epoch))
        .scalar()
    )
    return int(top or 0)


def _epoch_view(row: Store, epoch: int) -> Store:
    """The store's cursor in ``epoch``, as an unsaved Store: its row when that is the
    current epoch, otherwise read from the items HQ processed in that epoch."""
    if epoch == row.epoch:
        return row
    cursor = epoch_cursor(row.code, epoch)
    return Store(code=row.code, epoch=epoch, acked_through=cursor, reported_seq=cursor)


def ingest_batch(
    db: pw.Database, topic: str, topic_store: str, payload: bytes, now: dt.datetime
) -> IngestOutcome:
    """Validate, apply and commit one batch; the caller publishes ``outcome.ack`` afterwards.

    A batch over MAX_PAYLOAD_BYTES whose envelope HQ can still read (up to MAX_READ_BYTES)
    has each of its items refused as ``oversized``: acknowledged, so the store moves on."""
    oversized = len(payload) > MAX_PAYLOAD_BYTES
    try:
        raw = decode_json(payload, "batch", limit=MAX_READ_BYTES)
    except ProtocolError as exc:
        code = "oversized" if oversized else "malformed"
        return _refuse(db, topic, payload, code, exc.message, now, topic_store)
    try:
        batch = validate_batch(raw)
    except ProtocolError as exc:
        return _refuse(db, topic, payload, _protocol_code(exc), exc.message, now, topic_store)
    if batch.store != topic_store:
        return _refuse(
            db,
            topic,
            payload,
            "forged",
            f"batch store {batch.store!r} published on {topic_store!r}'s topic",
            now,
            topic_store,
        )

    refused: dict[int, tuple[str, str]] = {}
    if oversized:
        reason = (
            f"记录过大, 总部拒收 (oversized: a batch of {len(payload)} bytes, "
            f"more than {MAX_PAYLOAD_BYTES})"
        )
        refused = {seq: ("oversized", reason) for seq in map(_usable_seq, batch.items) if seq}
    return _apply_batch(db, topic, payload, batch, refused, now)


def _usable_seq(raw_item: Any) -> int | None:
    seq = raw_item.get("seq") if isinstance(raw_item, dict) else None
    return seq if type(seq) is int and seq >= 1 else None


def _outage(exc: BaseException) -> bool:
    """A failure of the database connection (after _transaction's retries), not of an item:
    nothing is refused for it; the batch goes unacknowledged and the store resends."""
    return isinstance(exc, pw.OperationalError | pw.InterfaceError)


def _unprocessable(exc: BaseException) -> tuple[str, str]:
    reason = f"总部无法处理此记录 (HQ could not process this item: {type(exc).__name__}: {exc})"
    return "unprocessable", reason


def _apply_batch(
    db: pw.Database,
    topic: str,
    payload: bytes,
    batch: Batch,
    refused: dict[int, tuple[str, str]],
    now: dt.datetime,
) -> IngestOutcome:
    """The batch in one transaction, run again with an item rejected up front each time one
    is refused: by a business rule (``apply_failed``), or by an exception nobody foresaw
    while HQ applied it (``unprocessable``; the exception is logged).

    After WHOLE_BATCH_RUNS runs, or after an unforeseen failure outside any item (when the
    batch's rows are written), each item runs in its own transaction, in seq order, and
    is refused the same way if it fails alone. Either way the refusal itself
    must commit: if that fails too, HQ cannot write at all, nothing is refused, and the
    exception goes up (no ack: the store resends)."""

    def attempt(items: list[Any]) -> IngestOutcome:
        return _transaction(db, lambda: _apply(db, topic, payload, batch, items, refused, now))

    def refuse_culprit(exc: Exception, default: int | None) -> None:
        seq = getattr(exc, "hy_seq", None) or default
        if _outage(exc) or seq is None or refused.get(seq, ("",))[0] == "unprocessable":
            raise exc
        log.exception("store %s seq %d: HQ cannot process it; refusing it", batch.store, seq)
        refused[seq] = _unprocessable(exc)

    for _ in range(WHOLE_BATCH_RUNS):
        try:
            return attempt(batch.items)
        except _ItemRefused as exc:
            log.info("store %s seq %d refused: %s", batch.store, exc.seq, exc.reason)
            refused[exc.seq] = ("apply_failed", exc.reason)
        except Exception as exc:
            if getattr(exc, "hy_seq", None) is None and not _outage(exc):
                log.exception("store %s batch failed whole: its items one by one", batch.store)
                break
            refuse_culprit(exc, None)
    else:
        log.info("store %s: %d items refused, the rest one by one", batch.store, len(refused))
    total = IngestOutcome()
    rejected: dict[int, Rejection] = {}
    for raw_item in sorted(batch.items, key=lambda r: _usable_seq(r) or 0):
        while True:
            try:
                out = attempt([raw_item])
                break
            except _ItemRefused as exc:
                if exc.seq in refused:
                    raise AssertionError(f"seq {exc.seq} refused up front, then applied") from exc
                refused[exc.seq] = ("apply_failed", exc.reason)
            except Exception as exc:
                refuse_culprit(exc, _usable_seq(raw_item))
        for r in out.ack.rejected if out.ack else ():
            rejected[r.seq] = r
        total.ack = out.ack
        total.changes += out.changes
        total.applied += out.applied
        total.duplicates += out.duplicates
        total.held += out.held
        total.dead_letter = total.dead_letter or out.dead_letter
    if total.ack is not None:
        total.ack = replace(total.ack, rejected=tuple(rejected[k] for k in sorted(rejected)))
    return total


def _apply(
    db: pw.Database,
    topic: str,
    payload: bytes,
    batch: Batch,
    items: list[Any],
    refused: dict[int, tuple[str, str]],
    now: dt.datetime,
) -> IngestOutcome:
    """``items`` (the batch's, or one of them) in the caller's transaction; an item
    listed in ``refused`` is rejected with that code and reason instead of applied."""
    topic_store = batch.store
    # an oversized batch's items past the cursor are not kept: the store resends them
    hold = len(payload) <= MAX_PAYLOAD_BYTES
    outcome = IngestOutcome()
    row = _lock_store(db, topic_store, now)
    # every epoch has its own cursor (docs/protocol.md, "Batches, acks and resends"):
    # the row keeps the one of its current epoch, the highest in which HQ applied an item
    store = _epoch_view(row, batch.epoch)
    changes = ChangeSet()
    rejected: list[Rejection] = []
    cache = BatchCache(Book(db))
    cache.prefetch(store.code, items)
    ids = [r.get("id") for r in items if isinstance(r, dict) and isinstance(r.get("id"), str)]
    seen_ids = (
        {
            i
            for (i,) in ProcessedItem.select(ProcessedItem.item_id)
            .where(one_of(ProcessedItem.item_id, ids))
            .tuples()
        }
        if ids
        else set()
    )
    processed: list[dict[str, Any]] = []
    duplicates: list[int] = []
    run = _Run(
        db, topic, store, now, changes, rejected, outcome, cache, seen_ids, processed, refused
    )
    ordered = sorted(((_usable_seq(r), r) for r in items), key=lambda pair: pair[0] or 0)
    for seq, raw_item in ordered:
        if seq is None:
            dead_letter(
                topic,
                _bytes(raw_item),
                "invalid",
                "item without a usable seq",
                now,
                topic_store,
            )
            continue
        if seq <= store.acked_through:
            outcome.duplicates += 1
            duplicates.append(seq)
            continue
        if seq > store.acked_through + 1:
            # what HQ would refuse unread, or could not even store, is not held: it is
            # refused when the store resends it at the cursor
            if (
                hold
                and seq - store.acked_through <= HOLD_WINDOW
                and seq not in refused
                and unencodable_field(raw_item) is None
            ):
                HeldItem.insert(
                    store=store.code, epoch=store.epoch, seq=seq, item=raw_item, received_at=now
                ).on_conflict_ignore().execute()
                outcome.held += 1
            continue
        run.process(seq, raw_item)
        store.acked_through = seq
    rejected[:0] = _previous_rejections(store, duplicates)
    # the gap may be filled now: apply what was held, in order
    held = list(
        HeldItem.select(HeldItem.id, HeldItem.epoch, HeldItem.seq)
        .where(HeldItem.store == store.code)
        .order_by(HeldItem.seq)
        .tuples()
    )
    run_ids = []
    for row_id, epoch, seq in held:
        if epoch == store.epoch and seq == store.acked_through + 1 + len(run_ids):
            run_ids.append(row_id)
    if run_ids:
        for row in HeldItem.select().where(HeldItem.id.in_(run_ids)).order_by(HeldItem.seq):
            run.process(row.seq, row.item)
            store.acked_through = row.seq
    if held:
        HeldItem.delete().where(
            (HeldItem.store == store.code)
            & (HeldItem.epoch == store.epoch)
            & (HeldItem.seq <= store.acked_through)
        ).execute()
    store.reported_seq = max(store.reported_seq, batch.last_seq)
    # a batch in another epoch moves the store's row only if it is a later epoch in
    # which HQ applied something: a message cannot retire the store's own epoch by itself
    current = store.epoch == row.epoch or (store.epoch > row.epoch and outcome.applied > 0)
    if store.epoch > row.epoch and current:
        log.warning("store %s starts epoch %d (was %d)", store.code, store.epoch, row.epoch)
    # the batch's writes, the change log's counter and its records: on PostgreSQL
    # two round trips (see hq.models.Writes)
    writes = Writes(db)
    cache.book.flush(writes)
    writes.insert(ProcessedItem, processed)
    moved: dict[str, Any] = {}
    if current:
        moved = {
            "epoch": store.epoch,
            "acked_through": store.acked_through,
            "reported_seq": store.reported_seq,
        }
    writes.query(Store.update(last_seen=now, online=True, **moved).where(Store.code == store.code))
    outcome.changes = flush_changes(db, changes, now, cache.book, writes)
    writes.send()
    outcome.ack = Ack(store.code, store.epoch, store.acked_through, tuple(rejected))
    return outcome


class _ItemRefused(Exception):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


def _bytes(raw: Any) -> bytes:
    """An item as JSON bytes for its dead letter, whatever it holds (lone surrogates are
    written as escapes; what cannot be written at all is described instead)."""
    try:
        return json.dumps(raw, ensure_ascii=False, default=str).encode("utf-8", "backslashreplace")
    except (RecursionError, ValueError, TypeError) as exc:
        return f"<{type(raw).__name__} that cannot be written back: {exc}>".encode()


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    data = text.encode()
    return text if len(data) <= limit else data[: limit - 3].decode(errors="ignore") + "..."


def _refuse(
    db: pw.Database,
    topic: str,
    payload: bytes,
    code: str,
    reason: str,
    now: dt.datetime,
    store: str | None,
) -> IngestOutcome:
    with db.atomic():
        dead_letter(topic, payload, code, reason, now, store)
    return IngestOutcome(dead_letter=code)


def _previous_rejections(store: Store, seqs: list[int]) -> list[Rejection]:
    """The resent items that HQ had rejected: listed again in the ack."""
    if not seqs:
        return []
    rows = (
        ProcessedItem.select(ProcessedItem.seq, ProcessedItem.code, ProcessedItem.reason)
        .where(
            (ProcessedItem.store == store.code)
            & (ProcessedItem.epoch == store.epoch)
            & (one_of(ProcessedItem.seq, seqs))
            & (ProcessedItem.status == "rejected")
        )
        .order_by(ProcessedItem.seq)
    )
    return [Rejection(r.seq, r.code or "invalid", r.reason or "") for r in rows]


@dataclass
class _Run:
    """One batch being applied: where items go, what they produced."""

    db: pw.Database
    topic: str
    store: Store
    now: dt.datetime
    changes: ChangeSet
    rejected: list[Rejection]
    outcome: IngestOutcome
    cache: BatchCache
    seen_ids: set[str]
    processed: list[dict[str, Any]]
    refused: dict[int, tuple[str, str]]

    def _record(
        self,
        seq: int,
        item_id: str | None,
        kind: str | None,
        status: str,
        code: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.processed.append(
            {
                "item_id": item_id,
                "store": self.store.code,
                "epoch": self.store.epoch,
                "seq": seq,
                "kind": kind,
                "status": status,
                "code": code,
                "reason": reason,
                "processed_at": self.now,
            }
        )
        if item_id:
            self.seen_ids.add(item_id)

    def _reject(
        self,
        seq: int,
        raw_item: Any,
        code: str,
        reason: str,
        item_id: str | None = None,
        kind: str | None = None,
    ) -> None:
        dead_letter(self.topic, _bytes(raw_item), code, reason, self.now, self.store.code, seq)
        reason = _cut(safe_text(reason), ACK_REASON_BYTES)
        self._record(seq, item_id, kind, "rejected", code, reason)
        self.rejected.append(Rejection(seq, code, reason))

    def _again(self, seq: int, raw_item: Any, item: UpItem) -> None:
        """An item HQ processed before at another seq or epoch (a box restored from its
        backup sends its items again under new seqs): the seq is settled as a duplicate,
        or rejected again as it was the first time."""
        first = next((r for r in self.processed if r["item_id"] == item.id), None)
        if first is None:
            found = ProcessedItem.get_or_none(ProcessedItem.item_id == item.id)
            first = {"status": found.status, "code": found.code, "reason": found.reason}
        if first["status"] == "rejected":
            self._reject(seq, raw_item, first["code"], first["reason"] or "", None, item.kind)
            return
        self._record(seq, None, item.kind, "duplicate", reason=f"item {item.id}")
        self.outcome.duplicates += 1
        # the member's record now says it reflects this seq too, so that the store (which
        # adds its own items after ``through`` to HQ's figures) does not count it twice
        member_id = item.body.get("member_id")
        try:
            member = self.cache.book.member(member_id) if isinstance(member_id, str) else None
        except NotFound:
            member = None
        if member is not None:
            touch_through(member, self.store.code, seq, self.cache.book)
            self.changes.member(member.id)

    def process(self, seq: int, raw_item: Any) -> None:
        """Apply the item at ``seq`` (the store's next) or reject it; either way it is
        recorded as processed, so the cursor can pass it."""
        forced = self.refused.get(seq)
        if forced is not None and forced[0] != "apply_failed":
            self._reject(seq, raw_item, *forced)  # refused unread: oversized, unprocessable
            return
        bad_text = unencodable_field(raw_item, "item")
        if bad_text is not None:
            self._reject(seq, raw_item, "invalid", f"{bad_text} is not valid Unicode text")
            return
        try:
            item = validate_item(raw_item)
        except ProtocolError as exc:
            self._reject(seq, raw_item, _protocol_code(exc), exc.message)
            return
        if item.store != self.store.code:
            self._reject(
                seq,
                raw_item,
                "forged",
                f"item store {item.store!r} inside {self.store.code!r}'s batch",
            )
            return
        if item.id in self.seen_ids:
            self._again(seq, raw_item, item)
            return
        item_changes = ChangeSet()
        if forced is not None:
            self._reject(seq, raw_item, *forced, item.id, item.kind)
            return
        try:
            apply_item(ItemContext(self.db, item, self.now, item_changes, self.cache))
        except MoneyRefused as exc:  # refused before it wrote anything: no need to run again
            self._reject(seq, raw_item, "apply_failed", exc.message, item.id, item.kind)
            return
        except (HuiyuanError, KeyError, TypeError, ValueError) as exc:
            reason = (
                exc.message if isinstance(exc, HuiyuanError) else f"{type(exc).__name__}: {exc}"
            )
            # no savepoint per item (two round trips each): abandon the batch's transaction
            # and run it again with this item rejected up front
            raise _ItemRefused(seq, reason) from exc
        except Exception as exc:
            exc.hy_seq = seq  # type: ignore[attr-defined]  # whose it was, for _apply_batch
            raise
        for key, value in item_changes.records.items():
            self.changes.records.pop(key, None)
            self.changes.records[key] = value
        self._record(seq, item.id, item.kind, "applied")
        self.outcome.applied += 1


def handle_hello(db: pw.Database, hello: Hello, now: dt.datetime) -> Ack:
    """What HQ has of a store; the store resends everything after ``acked_through``."""

    def work() -> Ack:
        # a hello never moves the epoch: it is answered from the cursor of its own epoch
        row = _lock_store(db, hello.store, now)
        store = _epoch_view(row, hello.epoch)
        row.last_seen = now
        row.online = True
        if hello.down_cursor is not None:
            row.down_cursor = hello.down_cursor
        if hello.last_seq is not None and store is row:
            row.reported_seq = hello.last_seq
        row.save()
        # HQ acks only after its commit, so a store can never hold an ack past HQ's
        # cursor in the same epoch, unless HQ's database went back in time (restored
        # from a backup): then ask the store to resend what HQ no longer has
        rewind = hello.acked_through > store.acked_through
        if rewind:
            log.warning(
                "store %s says HQ acked through %d, HQ holds through %d: restored database? "
                "asking it to resend from %d",
                store.code,
                hello.acked_through,
                store.acked_through,
                store.acked_through + 1,
            )
        return Ack(store.code, store.epoch, store.acked_through, (), rewind=rewind)

    return _transaction(db, work)


def note_store_state(db: pw.Database, store_code: str, payload: bytes, now: dt.datetime) -> None:
    """The store's retained state (online / its will): shown in the API."""
    online = validate_state(decode_json(payload, "state")).online
    with db.atomic():
        Store.insert(code=store_code, created_at=now).on_conflict_ignore().execute()
        Store.update(online=online, last_seen=now).where(Store.code == store_code).execute()
