"""Refusal is total (issue 9, defects 5 and 6): whatever an item or message holds, HQ
applies it, answers it, or refuses it with a reason (a dead letter; for a batch's item
also a rejection in the ack, its seq passed by the cursor; for an authorization a
``declined`` answer). Only an unreadable envelope goes without an ack."""

from __future__ import annotations

import datetime as dt
import json
import logging

import peewee as pw
import pytest

from core import protocol as p
from core.ids import uuid7
from hq import ingest
from hq.ingest import ACK_REASON_BYTES, ingest_batch
from hq.models import DeadLetter, HeldItem, Member, ProcessedItem, Store
from hq.worker import IngestWorker
from tests.hq.conftest import hq_config
from tests.hq.edge_sim import Items, RecordingClient, auth_properties, message

NOW = dt.datetime(2026, 11, 25, 2, 0)


def batch_bytes(store: str, items: list[dict], epoch: int = 1) -> bytes:
    """A batch exactly as the store's agent writes one (no size check: it may be too big)."""
    return p.encode_json(
        {
            "v": 1,
            "store": store,
            "epoch": epoch,
            "first_seq": items[0]["seq"],
            "last_seq": items[-1]["seq"],
            "items": items,
        }
    )


def ingest_raw(db, store: str, payload: bytes) -> ingest.IngestOutcome:
    return ingest_batch(db, p.up_topic(store, "tx"), store, payload, NOW)


def letters(store: str) -> list[tuple[int | None, str]]:
    rows = DeadLetter.select().where(DeadLetter.store == store).order_by(DeadLetter.id)
    return [(d.seq, d.code) for d in rows]


@pytest.fixture
def worker(hq_db, hq_db_url) -> IngestWorker:
    """The real worker's dispatch, with no broker: what it publishes is recorded."""
    w = IngestWorker(hq_config(hq_db_url, None), db=hq_db)
    w.client = RecordingClient()
    return w


# ---- defect 5: an oversized item is acknowledged as refused -------------------------


def test_an_oversized_item_is_acked_as_refused_and_the_next_is_applied(hq_db):
    items = Items("S5")
    mid = uuid7()
    assert ingest_raw(hq_db, "S5", batch_bytes("S5", [items.registration(mid, "13800000051")]))
    big = items.registration(uuid7(), "13800000052", card_no="9" * 300_000)
    payload = batch_bytes("S5", [big])
    assert len(payload) > p.MAX_PAYLOAD_BYTES
    outcome = ingest_raw(hq_db, "S5", payload)
    assert outcome.ack is not None and outcome.ack.acked_through == 2
    [rejection] = outcome.ack.rejected
    assert (rejection.seq, rejection.code) == (2, "oversized")
    assert str(len(payload)) in rejection.reason and "记录过大" in rejection.reason
    assert letters("S5") == [(2, "oversized")]
    assert Member.get_or_none(Member.id == big["body"]["member_id"]) is None
    after = ingest_raw(hq_db, "S5", batch_bytes("S5", [items.topup(mid, 700)]))
    assert after.ack.acked_through == 3 and after.ack.rejected == ()
    assert Member.get_by_id(mid).sv_principal == 700
    # resent, it is a duplicate and is reported refused again
    again = ingest_raw(hq_db, "S5", payload)
    assert again.ack.acked_through == 3 and [r.seq for r in again.ack.rejected] == [2]


def test_an_oversized_item_past_the_cursor_is_neither_held_nor_acked(hq_db):
    items = Items("S6")
    items.seq = 4  # seqs 1..4 have not arrived
    payload = batch_bytes("S6", [items.registration(uuid7(), "13800000061", card_no="8" * 300_000)])
    outcome = ingest_raw(hq_db, "S6", payload)
    assert outcome.ack.acked_through == 0 and outcome.ack.rejected == ()
    assert HeldItem.select().where(HeldItem.store == "S6").count() == 0


def test_a_payload_past_the_read_limit_is_dead_lettered_unread(hq_db):
    outcome = ingest_raw(hq_db, "S7", b" " * (p.MAX_READ_BYTES + 1))
    assert outcome.ack is None and outcome.dead_letter == "oversized"
    assert letters("S7") == [(None, "oversized")]


# ---- defect 6: what nobody foresaw is refused item by item ---------------------------


def test_an_item_that_fails_unforeseen_is_refused_and_its_neighbours_applied(
    hq_db, monkeypatch, caplog
):
    real_apply = ingest.apply_item

    def apply_item(ctx):
        if ctx.item.kind == "topup" and ctx.item.body["principal"] == 4242:
            raise RuntimeError("nobody foresaw this")
        return real_apply(ctx)

    monkeypatch.setattr(ingest, "apply_item", apply_item)
    items = Items("S8")
    mid = uuid7()
    batch = [
        items.registration(mid, "13800000081"),
        items.topup(mid, 4242),
        items.topup(mid, 1000),
    ]
    with caplog.at_level(logging.ERROR, logger="hq.ingest"):
        outcome = ingest_raw(hq_db, "S8", batch_bytes("S8", batch))
    assert outcome.ack.acked_through == 3
    [rejection] = outcome.ack.rejected
    assert (rejection.seq, rejection.code) == (2, "unprocessable")
    assert "RuntimeError: nobody foresaw this" in rejection.reason
    assert "nobody foresaw this" in caplog.text  # the exception is logged with its trace
    assert Member.get_by_id(mid).sv_principal == 1000
    assert letters("S8") == [(2, "unprocessable")]
    rows = ProcessedItem.select().where(ProcessedItem.store == "S8").order_by(ProcessedItem.seq)
    assert [(r.seq, r.status) for r in rows] == [(1, "applied"), (2, "rejected"), (3, "applied")]
    assert Store.get_by_id("S8").acked_through == 3


def test_a_held_item_that_fails_unforeseen_when_its_gap_fills_is_refused(hq_db, monkeypatch):
    real_apply = ingest.apply_item

    def apply_item(ctx):
        if ctx.item.kind == "topup" and ctx.item.body["principal"] == 4242:
            raise RuntimeError("held and broken")
        return real_apply(ctx)

    monkeypatch.setattr(ingest, "apply_item", apply_item)
    items = Items("SH")
    mid = uuid7()
    one, two, three = (
        items.registration(mid, "13800000111"),
        items.topup(mid, 500),
        items.topup(mid, 4242),
    )
    assert ingest_raw(hq_db, "SH", batch_bytes("SH", [one])).ack.acked_through == 1
    assert ingest_raw(hq_db, "SH", batch_bytes("SH", [three])).ack.acked_through == 1  # held
    outcome = ingest_raw(hq_db, "SH", batch_bytes("SH", [two]))
    assert outcome.ack.acked_through == 3
    assert [(r.seq, r.code) for r in outcome.ack.rejected] == [(3, "unprocessable")]
    assert Member.get_by_id(mid).sv_principal == 500


def test_a_failure_outside_any_item_is_traced_to_its_item_one_by_one(hq_db, monkeypatch):
    items = Items("SO")
    mid, cursed = uuid7(), uuid7()
    real_flush = ingest.flush_changes

    def flush_changes(db, changes, *args):
        if ("member", cursed) in changes.records:
            raise RuntimeError("cannot write this member's change")
        return real_flush(db, changes, *args)

    monkeypatch.setattr(ingest, "flush_changes", flush_changes)
    batch = [
        items.registration(mid, "13800000121"),
        items.registration(cursed, "13800000122"),
        items.topup(mid, 900),
    ]
    outcome = ingest_raw(hq_db, "SO", batch_bytes("SO", batch))
    assert outcome.ack.acked_through == 3
    assert [(r.seq, r.code) for r in outcome.ack.rejected] == [(2, "unprocessable")]
    assert Member.get_by_id(mid).sv_principal == 900
    assert Member.get_or_none(Member.id == cursed) is None
    assert outcome.applied == 2


def test_nothing_is_refused_when_hq_cannot_write_at_all(hq_db, monkeypatch):
    def down(*args, **kwargs):
        raise pw.OperationalError("the database is down")

    monkeypatch.setattr(ingest, "apply_item", down)
    monkeypatch.setattr(ingest, "dead_letter", down)
    monkeypatch.setattr(ingest.time, "sleep", lambda s: None)
    items = Items("S9")
    with pytest.raises(pw.OperationalError):
        ingest_raw(hq_db, "S9", batch_bytes("S9", [items.registration(uuid7(), "13800000091")]))
    assert ProcessedItem.select().where(ProcessedItem.store == "S9").count() == 0
    assert Store.get_or_none(Store.code == "S9") is None


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("principal", 10**30, "invalid"),
        ("principal", 2**63, "invalid"),
        ("name", "\ud800", "invalid"),
        ("kind", "\udfff", "invalid"),
        ("body", [[[]]], "invalid"),
        ("seq_type", "x", None),
    ],
)
def test_hostile_items_are_refused_with_a_reason_and_never_block(hq_db, field, value, code):
    items = Items("SA")
    mid = uuid7()
    bad = items.registration(uuid7(), "13800000101") if field == "name" else items.topup(mid, 1)
    if field == "principal":
        bad["body"]["principal"] = value
    elif field == "name":
        bad["body"]["name"] = value
    elif field in ("kind", "body"):
        bad[field] = value
    first = items.registration(mid, "13800000102")
    good = items.topup(mid, 300)
    bad["seq"], first["seq"], good["seq"] = 2, 1, 3
    payload = json.dumps(
        {"v": 1, "store": "SA", "epoch": 1, "first_seq": 1, "last_seq": 3, "items": []}
    )
    if field == "seq_type":
        bad["seq"] = value  # no usable seq: dead-lettered, and the cursor waits for seq 2
    raw = json.loads(payload)
    raw["items"] = [first, bad, good]
    outcome = ingest_raw(hq_db, "SA", json.dumps(raw, ensure_ascii=True).encode())
    assert outcome.ack is not None
    if code is None:
        assert outcome.ack.acked_through == 1
        assert letters("SA") == [(None, "invalid")]
        return
    assert outcome.ack.acked_through == 3
    assert [(r.seq, r.code) for r in outcome.ack.rejected] == [(2, code)]
    p.validate_ack(p.decode_json(p.encode_json(outcome.ack.to_dict())))  # the store reads it
    assert letters("SA") == [(2, code)]
    assert Member.get_by_id(mid).sv_principal == 300


def test_an_ack_rejecting_a_full_batch_with_long_reasons_still_fits_a_message():
    reason = ingest._cut("无法处理 " * 1000, ACK_REASON_BYTES)
    assert len(reason.encode()) <= ACK_REASON_BYTES
    rejected = tuple(p.Rejection(p.MAX_SEQ - i, "unprocessable", reason) for i in range(500))
    ack = p.Ack("S" * 32, p.MAX_EPOCH, p.MAX_SEQ, rejected)
    assert len(p.encode_json(ack.to_dict())) <= p.MAX_PAYLOAD_BYTES


# ---- every up topic through the worker's dispatch -------------------------------------


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("hello", {"v": 1, "store": "SB", "epoch": 2**40, "acked_through": 0}),
        ("hello", {"v": 1, "store": "SB", "epoch": 1, "acked_through": 2**63}),
        ("hello", {"v": 1, "store": "SB", "epoch": 1, "acked_through": 0, "last_seq": 10**30}),
        ("chgreq", {"v": 1, "store": "SB", "after": 10**30}),
        ("chgreq", {"v": 1, "store": "SB", "after": 2**62 + 1}),
        ("state", {"v": 1, "online": True, "ts": "t", "epoch": 10**30}),
        ("tx", {"v": 1, "store": "SB", "epoch": 2**31, "first_seq": 1, "last_seq": 1}),
        ("tx", {"v": 1, "store": "SB", "epoch": 1, "first_seq": 1, "last_seq": 2**63}),
    ],
)
def test_huge_integers_in_any_message_are_dead_lettered_naming_the_field(worker, name, body):
    worker.dispatch(message(p.up_topic("SB", name), json.dumps({**body, "items": [{}]}).encode()))
    [letter] = DeadLetter.select().where(DeadLetter.store == "SB")
    assert letter.code in ("invalid", "malformed")
    bad = next(k for k, v in body.items() if isinstance(v, int) and not 0 <= v <= 2**30)
    assert bad in letter.reason
    store = Store.get_or_none(Store.code == "SB")
    assert store is None or (store.epoch, store.acked_through) == (1, 0)


@pytest.mark.parametrize("name", ["tx", "hello", "chgreq", "snapreq", "state", "auth"])
def test_deeply_nested_json_on_any_topic_is_dead_lettered(worker, name):
    props = auth_properties("SC") if name == "auth" else None
    worker.dispatch(message(p.up_topic("SC", name), b"[" * 100_000 + b"]" * 100_000, props))
    [letter] = DeadLetter.select().where(DeadLetter.store == "SC")
    assert "nested too deeply" in letter.reason
    if name == "auth":
        [(payload, _)] = worker.client.on(p.down_topic("SC", "auth"))
        assert p.validate_auth_response(p.decode_json(payload)).status == "declined"


def test_an_invalid_authorization_is_declined_with_the_reason(worker):
    props = auth_properties("SD", b"k" * 16)
    body = {"v": 1, "store": "SD", "sale_id": "sale-9", "member_id": uuid7(), "points": 10**30}
    worker.dispatch(message(p.up_topic("SD", "auth"), json.dumps(body).encode(), props))
    [(payload, answer_props)] = worker.client.on(p.down_topic("SD", "auth"))
    answer = p.validate_auth_response(p.decode_json(payload))
    assert (answer.sale_id, answer.status, answer.code) == ("sale-9", "declined", "invalid")
    assert "points" in answer.reason and "授权请求无效" in answer.reason
    assert answer_props.CorrelationData == b"k" * 16
    assert letters("SD") == [(None, "invalid")]


def test_an_authorization_with_a_foreign_response_topic_is_not_answered(worker):
    props = auth_properties("SD")
    props.ResponseTopic = p.down_topic("OTHER", "auth")
    worker.dispatch(message(p.up_topic("SD", "auth"), b"{}", props))
    assert worker.client.published == []
    assert letters("SD") == [(None, "forged")]


def test_a_handler_failing_unforeseen_refuses_and_answers(worker, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("unforeseen")

    monkeypatch.setattr("hq.worker.authorize_spend", broken)
    monkeypatch.setattr("hq.worker.handle_hello", broken)
    body = {"v": 1, "store": "SE", "sale_id": "sale-1", "member_id": uuid7(), "points": 1}
    with caplog.at_level(logging.ERROR, logger="hq.worker"):
        worker.dispatch(
            message(p.up_topic("SE", "auth"), json.dumps(body).encode(), auth_properties("SE"))
        )
        hello = {"v": 1, "store": "SE", "epoch": 1, "acked_through": 0}
        worker.dispatch(message(p.up_topic("SE", "hello"), json.dumps(hello).encode()))
    assert "unforeseen" in caplog.text
    [(payload, _)] = worker.client.on(p.down_topic("SE", "auth"))
    answer = p.validate_auth_response(p.decode_json(payload))
    assert (answer.sale_id, answer.status, answer.code) == ("sale-1", "declined", "unprocessable")
    assert letters("SE") == [(None, "unprocessable"), (None, "unprocessable")]


def test_a_batch_of_many_refused_items_costs_linear_work(hq_db, monkeypatch):
    calls = []
    real_apply = ingest.apply_item

    def counting(ctx):
        calls.append(ctx.item.seq)
        return real_apply(ctx)

    monkeypatch.setattr(ingest, "apply_item", counting)
    items = Items("SL")
    mid = uuid7()
    batch = [items.registration(mid, "13800000131")]
    for _ in range(15):
        batch.append(items.sale(None, 1000, stored_value=(500, 0)))  # apply_failed
        batch.append(items.topup(mid, 10))
    outcome = ingest_raw(hq_db, "SL", batch_bytes("SL", batch))
    assert outcome.ack.acked_through == 31
    assert [r.seq for r in outcome.ack.rejected] == list(range(2, 31, 2))
    assert {r.code for r in outcome.ack.rejected} == {"apply_failed"}
    assert Member.get_by_id(mid).sv_principal == 150
    # whole runs are capped, then one transaction per item: not one rerun per refusal
    assert len(calls) <= 3 * len(batch), len(calls)  # one rerun per refusal made 151


def test_a_message_with_a_higher_epoch_does_not_block_the_store(worker):
    """A hello never moves the epoch, and a batch in another epoch is applied against
    that epoch's own cursor: neither makes the store's own epoch stale."""
    items = Items("SX")
    mid = uuid7()
    hello = {"v": 1, "store": "SX", "epoch": 7, "acked_through": 0}
    worker.dispatch(message(p.up_topic("SX", "hello"), json.dumps(hello).encode()))
    assert Store.get_by_id("SX").epoch == 1
    outcome = ingest_raw(
        worker.db, "SX", batch_bytes("SX", [items.registration(mid, "13900000141")])
    )
    assert outcome.ack is not None and outcome.ack.acked_through == 1
    # a batch in a higher epoch whose only item HQ refuses moves nothing
    forged = ingest_raw(worker.db, "SX", batch_bytes("SX", [{"seq": 1, "kind": "x"}], epoch=9))
    assert forged.ack is not None and (forged.ack.epoch, forged.ack.rejected[0].seq) == (9, 1)
    assert (Store.get_by_id("SX").epoch, Store.get_by_id("SX").acked_through) == (1, 1)
    # even one HQ applies leaves the store's own epoch working from its own cursor
    other = uuid7()
    later = Items("SX")
    later.seq = 1  # seq 1 of epoch 9 was the refused item
    ingest_raw(worker.db, "SX", batch_bytes("SX", [later.registration(other, "13900000142")], 9))
    assert Store.get_by_id("SX").epoch == 9
    outcome = ingest_raw(worker.db, "SX", batch_bytes("SX", [items.topup(mid, 300)]))
    assert outcome.dead_letter is None
    assert (outcome.ack.epoch, outcome.ack.acked_through, outcome.ack.rejected) == (1, 2, ())
    assert Member.get_by_id(mid).sv_principal == 300
