"""Ingest: one batch from one store, one database transaction, an ack after commit.

``ingest_batch`` returns what the caller must publish *after* it returns (the
transaction is committed by then): the ack for the store and the change records
for the live push. Whole-message failures are dead-lettered and get no ack;
item failures are rejected in the ack and the cursor passes them.
See docs/protocol.md, "Batches, acks and resends".
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import peewee as pw

from core.errors import HuiyuanError, ProtocolError
from core.protocol import (
    HOLD_WINDOW,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    UP_KINDS,
    Ack,
    Change,
    Hello,
    Rejection,
    decode_json,
    validate_batch,
    validate_item,
)
from hq.apply import ItemContext, apply_item
from hq.changes import ChangeSet, flush_changes
from hq.models import DeadLetter, HeldItem, ProcessedItem, Store, is_postgres

log = logging.getLogger("hq.ingest")

DEAD_LETTER_KEEP_BYTES = 64 * 1024
TRANSACTION_ATTEMPTS = 5


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
    DeadLetter.create(
        topic=topic,
        store=store,
        seq=seq,
        code=code,
        reason=reason[:2000],
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


def _transaction(db: pw.Database, work: Any) -> Any:
    """Run ``work`` in a transaction, retrying on serialization failures, deadlocks and
    unique-key races (two workers registering one phone)."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            with db.atomic():
                return work()
        except (pw.IntegrityError, pw.OperationalError) as exc:
            if attempt == TRANSACTION_ATTEMPTS:
                raise
            log.info("transaction retry %d after %s: %s", attempt, type(exc).__name__, exc)
            time.sleep(0.02 * attempt)
    raise AssertionError("unreachable")


def _lock_store(db: pw.Database, code: str, epoch: int, now: dt.datetime) -> Store:
    Store.insert(code=code, epoch=epoch, created_at=now).on_conflict_ignore().execute()
    query = Store.select().where(Store.code == code)
    if is_postgres(db):
        query = query.for_update()
    return query.get()


def ingest_batch(
    db: pw.Database, topic: str, topic_store: str, payload: bytes, now: dt.datetime
) -> IngestOutcome:
    """Validate, apply and commit one batch; the caller publishes ``outcome.ack`` afterwards."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return _refuse(
            db,
            topic,
            payload,
            "oversized",
            f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
            now,
            topic_store,
        )
    try:
        raw = decode_json(payload, "batch")
    except ProtocolError as exc:
        return _refuse(db, topic, payload, "malformed", exc.message, now, topic_store)
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

    def work() -> IngestOutcome:
        outcome = IngestOutcome()
        store = _lock_store(db, topic_store, batch.epoch, now)
        if batch.epoch < store.epoch:
            dead_letter(
                topic,
                payload,
                "stale_epoch",
                f"epoch {batch.epoch} < HQ's {store.epoch}",
                now,
                topic_store,
            )
            outcome.dead_letter = "stale_epoch"
            return outcome
        if batch.epoch > store.epoch:
            log.warning("store %s starts epoch %d (was %d)", store.code, batch.epoch, store.epoch)
            store.epoch = batch.epoch
            store.acked_through = 0
        changes = ChangeSet()
        rejected: list[Rejection] = []
        seqs = [(r.get("seq") if isinstance(r, dict) else None) for r in batch.items]
        ordered = sorted(
            zip(seqs, batch.items, strict=True),
            key=lambda pair: pair[0] if isinstance(pair[0], int) else 0,
        )
        for seq, raw_item in ordered:
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
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
                previous = _previous_rejection(store, seq)
                if previous:
                    rejected.append(previous)
                continue
            if seq > store.acked_through + 1:
                if seq - store.acked_through <= HOLD_WINDOW:
                    HeldItem.insert(
                        store=store.code, epoch=store.epoch, seq=seq, item=raw_item, received_at=now
                    ).on_conflict_ignore().execute()
                    outcome.held += 1
                continue
            _process(db, topic, store, seq, raw_item, now, changes, rejected, outcome)
            store.acked_through = seq
        # the gap may be filled now: apply what was held, in order
        while True:
            held = HeldItem.get_or_none(
                (HeldItem.store == store.code)
                & (HeldItem.epoch == store.epoch)
                & (HeldItem.seq == store.acked_through + 1)
            )
            if held is None:
                break
            _process(db, topic, store, held.seq, held.item, now, changes, rejected, outcome)
            store.acked_through = held.seq
            held.delete_instance()
        HeldItem.delete().where(
            (HeldItem.store == store.code)
            & ((HeldItem.epoch < store.epoch) | (HeldItem.seq <= store.acked_through))
        ).execute()
        store.last_seen = now
        store.online = True
        store.save()
        outcome.changes = flush_changes(db, changes, now)
        outcome.ack = Ack(store.code, store.epoch, store.acked_through, tuple(rejected))
        return outcome

    return _transaction(db, work)


def _bytes(raw: Any) -> bytes:
    import json

    return json.dumps(raw, ensure_ascii=False, default=str).encode()


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


def _previous_rejection(store: Store, seq: int) -> Rejection | None:
    row = ProcessedItem.get_or_none(
        (ProcessedItem.store == store.code)
        & (ProcessedItem.epoch == store.epoch)
        & (ProcessedItem.seq == seq)
    )
    if row is None or row.status != "rejected":
        return None
    return Rejection(seq, row.code or "invalid", row.reason or "")


def _process(
    db: pw.Database,
    topic: str,
    store: Store,
    seq: int,
    raw_item: Any,
    now: dt.datetime,
    changes: ChangeSet,
    rejected: list[Rejection],
    outcome: IngestOutcome,
) -> None:
    """Apply the item at ``seq`` (the next one for the store) or reject it; either way
    record it as processed, so the cursor can pass it."""

    def reject(code: str, reason: str, item_id: str | None = None, kind: str | None = None) -> None:
        dead_letter(topic, _bytes(raw_item), code, reason, now, store.code, seq)
        ProcessedItem.create(
            item_id=item_id,
            store=store.code,
            epoch=store.epoch,
            seq=seq,
            kind=kind,
            status="rejected",
            code=code,
            reason=reason,
            processed_at=now,
        )
        rejected.append(Rejection(seq, code, reason))

    try:
        item = validate_item(raw_item)
    except ProtocolError as exc:
        reject(_protocol_code(exc), exc.message)
        return
    if item.store != store.code:
        reject("forged", f"item store {item.store!r} inside {store.code!r}'s batch")
        return
    if ProcessedItem.get_or_none(ProcessedItem.item_id == item.id) is not None:
        reject(
            "invalid", f"item id {item.id} was already processed at another seq", None, item.kind
        )
        return
    item_changes = ChangeSet()
    try:
        with db.atomic():  # a savepoint: a refused item leaves nothing behind
            apply_item(ItemContext(db, item, now, item_changes))
    except (HuiyuanError, KeyError, TypeError, ValueError) as exc:
        reason = exc.message if isinstance(exc, HuiyuanError) else f"{type(exc).__name__}: {exc}"
        reject("apply_failed", reason, item.id, item.kind)
        return
    for key, value in item_changes.records.items():
        changes.records.pop(key, None)
        changes.records[key] = value
    ProcessedItem.create(
        item_id=item.id,
        store=store.code,
        epoch=store.epoch,
        seq=seq,
        kind=item.kind,
        status="applied",
        processed_at=now,
    )
    outcome.applied += 1


def handle_hello(db: pw.Database, hello: Hello, now: dt.datetime) -> Ack:
    """What HQ has of a store; the store resends everything after ``acked_through``."""

    def work() -> Ack:
        store = _lock_store(db, hello.store, hello.epoch, now)
        if hello.epoch > store.epoch:
            store.epoch = hello.epoch
            store.acked_through = 0
        store.last_seen = now
        store.online = True
        if hello.down_cursor is not None:
            store.down_cursor = hello.down_cursor
        store.save()
        return Ack(store.code, store.epoch, store.acked_through, ())

    return _transaction(db, work)


def note_store_state(db: pw.Database, store_code: str, payload: bytes, now: dt.datetime) -> None:
    """The store's retained state (online / its will): shown in the API."""
    raw = decode_json(payload, "state")
    if not isinstance(raw, dict) or raw.get("v") != SCHEMA_VERSION:
        raise ProtocolError("state: not a v1 object")
    online = bool(raw.get("online"))
    with db.atomic():
        Store.insert(code=store_code, created_at=now).on_conflict_ignore().execute()
        Store.update(online=online, last_seen=now).where(Store.code == store_code).execute()


KNOWN_KINDS = tuple(UP_KINDS)
