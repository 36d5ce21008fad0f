"""Ingest over a real broker: apply once, in order, ack after commit, bad input dead-lettered."""

from __future__ import annotations

import datetime as dt
import json
import time

from core import protocol as p
from core.ids import uuid7
from hq.ingest import handle_hello, ingest_batch
from hq.ledger import ledger_sums
from hq.models import DeadLetter, HeldItem, Member, ProcessedItem, Sale, Store, TopUp
from tests.hq.edge_sim import Items, wait_until

NOW = dt.datetime(2026, 11, 23, 2, 0)


def balances_match_ledger(member_id: str) -> None:
    m = Member.get_by_id(member_id)
    sums = ledger_sums(member_id)
    assert (m.sv_principal, m.sv_bonus, m.points) == (
        sums["principal"],
        sums["bonus"],
        sums["points"],
    )


def test_batch_is_applied_then_acked(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    batch = [
        items.registration(mid, "13800000001"),
        items.topup(mid, 50000, 10000),
        items.sale(mid, 10000, stored_value=(8333, 1667), points_earned=100),
    ]
    edge.send(batch)
    ack = edge.wait_acked(3)
    assert ack == {"v": 1, "store": store_code, "epoch": 1, "acked_through": 3, "rejected": []}
    m = Member.get_by_id(mid)
    assert (m.sv_principal, m.sv_bonus, m.points) == (50000 - 8333, 10000 - 1667, 100)
    assert m.through == {store_code: 3}
    balances_match_ledger(mid)
    assert Store.get_by_id(store_code).acked_through == 3
    # the member change went down live, with balances and through
    live = wait_until(
        lambda: [c for page in edge.live for c in page["changes"] if c["key"] == mid],
        10,
        "live push",
    )
    assert live[-1]["data"]["stored_value"] == {"principal": 41667, "bonus": 8333}
    assert live[-1]["data"]["through"] == {store_code: 3}


def test_duplicate_batch_is_ignored_and_reacked(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    batch = [items.registration(mid, "13800000002"), items.topup(mid, 20000)]
    edge.send(batch)
    edge.wait_acked(2)
    edge.send(batch)
    acks = edge.wait_ack_count(2)
    assert acks[-1]["acked_through"] == 2
    assert Member.get_by_id(mid).sv_principal == 20000
    assert TopUp.select().where(TopUp.store == store_code).count() == 1
    balances_match_ledger(mid)


def test_out_of_order_batches_are_held_then_applied(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    first = [items.registration(mid, "13800000003"), items.topup(mid, 1000)]
    second = [items.topup(mid, 2000), items.topup(mid, 3000)]
    edge.send(second)
    ack = edge.wait_ack_count(1)[-1]
    assert ack["acked_through"] == 0  # a gap holds the cursor
    assert HeldItem.select().where(HeldItem.store == store_code).count() == 2
    edge.send(first)
    edge.wait_acked(4)
    assert Member.get_by_id(mid).sv_principal == 6000
    assert HeldItem.select().where(HeldItem.store == store_code).count() == 0
    balances_match_ledger(mid)


def test_gap_holds_cursor_until_resend(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    one = items.registration(mid, "13800000004")
    two = items.topup(mid, 1000)
    three = items.topup(mid, 2000)
    edge.send([one])
    edge.wait_acked(1)
    edge.send([three])
    acks = edge.wait_ack_count(2)
    assert acks[-1]["acked_through"] == 1
    assert Store.get_by_id(store_code).acked_through == 1
    assert Member.get_by_id(mid).sv_principal == 0  # seq 3 is not applied before seq 2
    edge.send([two, three])  # the store resends from acked_through + 1
    edge.wait_acked(3)
    assert Member.get_by_id(mid).sv_principal == 3000
    balances_match_ledger(mid)


def test_bad_input_is_dead_lettered_and_good_input_applied(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    edge.send([items.registration(mid, "13800000005"), items.topup(mid, 1000)])
    edge.wait_acked(2)

    # whole-message failures: dead letter, no ack, nothing else lost
    edge.publish("tx", b"{not json")
    edge.publish("tx", b"x" * (p.MAX_PAYLOAD_BYTES + 1))
    wrong_version = p.decode_json(p.make_batch(store_code, 1, [items.topup(mid, 1, 0)]))
    items.seq -= 1
    wrong_version["v"] = 2
    edge.publish("tx", p.encode_json(wrong_version))
    forged = p.decode_json(p.make_batch(store_code, 1, [items.topup(mid, 1, 0)]))
    items.seq -= 1
    forged["store"] = "OTHER1"
    for it in forged["items"]:
        it["store"] = "OTHER1"
    edge.publish("tx", p.encode_json(forged))

    # item failures inside a good batch: rejected in the ack, the cursor passes them
    unknown = items.topup(mid, 500)
    unknown["kind"] = "lottery"
    bad_v = items.topup(mid, 500)
    bad_v["v"] = 9
    forged_item = items.topup(mid, 500)
    forged_item["store"] = "OTHER2"
    good_after = items.topup(mid, 4000)
    edge.send([unknown, bad_v, forged_item, good_after])
    ack = edge.wait_acked(6)
    assert [(r["seq"], r["code"]) for r in ack["rejected"]] == [
        (3, "unknown_kind"),
        (4, "bad_version"),
        (5, "forged"),
    ]
    assert Member.get_by_id(mid).sv_principal == 5000
    codes = {d.code: d.reason for d in DeadLetter.select().where(DeadLetter.store == store_code)}
    assert set(codes) >= {"malformed", "oversized", "bad_version", "forged", "unknown_kind"}
    assert "lottery" in codes["unknown_kind"]
    assert "OTHER1" in " ".join(
        d.reason for d in DeadLetter.select().where(DeadLetter.code == "forged")
    )
    # a resend of a rejected item is a duplicate and is reported rejected again
    acks_before = len(edge.acks)  # counted before sending: the ack can beat the next line
    edge.send([unknown])
    again = edge.wait_ack_count(acks_before + 1)[-1]
    assert again["acked_through"] == 6 and again["rejected"][0]["seq"] == 3
    assert ProcessedItem.select().where(ProcessedItem.store == store_code).count() == 6
    balances_match_ledger(mid)


def test_apply_failure_is_rejected_not_blocking(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    before = [items.registration(mid, "13800000010"), items.topup(mid, 1000)]
    bad = items.sale(None, 1000, stored_value=(500, 0))  # a balance move without a member
    also_bad = items.topup(uuid7(), 0)
    after = items.sale(mid, 1000, stored_value=(300, 0))
    edge.send([*before, bad, also_bad, after])
    ack = edge.wait_acked(5)
    assert [(r["seq"], r["code"]) for r in ack["rejected"]] == [
        (3, "apply_failed"),
        (4, "invalid"),  # a top-up of 0 is refused by its shape, before HQ applies it
    ]
    assert "member" in ack["rejected"][0]["reason"]
    assert Sale.select().where(Sale.store == store_code).count() == 1
    assert Member.get_by_id(mid).sv_principal == 700
    balances_match_ledger(mid)
    assert (
        DeadLetter.select()
        .where(
            (DeadLetter.store == store_code) & (DeadLetter.code.in_(["apply_failed", "invalid"]))
        )
        .count()
        == 2
    )


def test_broker_restart_loses_and_doubles_nothing(hq_db, hq_db_url, own_mosquitto):
    from hq.worker import IngestWorker
    from tests.hq.conftest import hq_config
    from tests.hq.edge_sim import EdgeSim

    worker = IngestWorker(hq_config(hq_db_url, own_mosquitto), db=hq_db).start()
    edge = EdgeSim(own_mosquitto, "R1")
    try:
        items = Items("R1")
        mid = uuid7()
        plan = [items.registration(mid, "13800000011")] + [items.topup(mid, 100) for _ in range(20)]
        edge.send(plan[:11])
        edge.wait_acked(11)
        own_mosquitto.restart()
        wait_until(worker.connected.is_set, 15, "worker reconnected")
        wait_until(lambda: edge.client.is_connected(), 15, "edge reconnected")
        time.sleep(0.3)  # subscriptions renewed in on_connect
        acked = edge.acked_through()
        edge.send(plan[acked:])  # the store resends from its last ack
        edge.wait_acked(21)
        edge.send(plan[5:15])  # and a stale resend changes nothing
        wait_until(lambda: len(edge.acks) >= 3, 10, "re-ack")
        assert Member.get_by_id(mid).sv_principal == 2000
        assert TopUp.select().where(TopUp.store == "R1").count() == 20
        balances_match_ledger(mid)
    finally:
        edge.close()
        worker.stop()


def test_hello_reports_cursor_and_pages(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    edge.send([items.registration(mid, "13800000006")])
    edge.wait_acked(1)
    before = len(edge.acks)
    edge.publish("hello", p.encode_json(p.Hello(store_code, 1, 0, 0, last_seq=9).to_dict()))
    acks = edge.wait_ack_count(before + 1)
    assert acks[-1]["acked_through"] == 1 and acks[-1]["rejected"] == []
    assert "rewind" not in acks[-1]
    store = Store.get_by_id(store_code)
    assert store.reported_seq - store.acked_through == 8  # the backlog HQ shows
    page = wait_until(lambda: edge.pages, 10, "page")[-1]
    assert page["snapshot_required"] is True  # cursor 0 with members: load a snapshot first
    latest = page["latest"]
    edge.publish("chgreq", p.encode_json(p.ChangeRequest(store_code, latest - 1, 10).to_dict()))
    page = wait_until(lambda: len(edge.pages) >= 2 and edge.pages[-1], 10, "page 2")
    assert page["from"] == latest and page["to"] == latest and page["more"] is False
    assert len(page["changes"]) == 1


def test_hello_past_hqs_cursor_gets_a_rewind(hq_db, store_code):
    """A store holding an ack HQ no longer has (HQ restored from a backup) is told
    to resend; a store in an older epoch, or at HQ's cursor, is not."""
    items = Items(store_code)
    batch = p.make_batch(store_code, 1, [items.registration(uuid7(), "13800000016")])
    assert ingest_batch(hq_db, f"hy/v1/{store_code}/up/tx", store_code, batch, NOW).ack
    at_cursor = handle_hello(hq_db, p.Hello(store_code, 1, 1, 0), NOW)
    assert (at_cursor.acked_through, at_cursor.rewind) == (1, False)
    past = handle_hello(hq_db, p.Hello(store_code, 1, 40, 0), NOW)
    assert (past.acked_through, past.rewind) == (1, True)
    assert Store.get_by_id(store_code).acked_through == 1  # HQ's cursor is not moved by it


def test_snapshot_chunks_carry_members(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    edge.send([items.registration(mid, "13800000007", card_no="C-7"), items.topup(mid, 700)])
    edge.wait_acked(2)
    edge.publish("snapreq", p.encode_json(p.SnapshotRequest(store_code).to_dict()))
    first = wait_until(lambda: edge.chunks, 10, "snapshot chunk")[0]
    wait_until(lambda: len(edge.chunks) >= first["count"], 10, "all chunks")
    records = list(p.assemble_snapshot(p.validate_snapshot_chunk(c) for c in edge.chunks))
    member = next(r for r in records if r["entity"] == "member" and r["key"] == mid)
    assert member["data"]["stored_value"]["principal"] == 700
    assert any(r["entity"] == "card" and r["key"] == "C-7" for r in records)
    assert any(r["entity"] == "rules" for r in records)
    assert all(r["seq"] == first["cursor"] for r in records)


def test_hostile_messages_through_the_broker_are_all_answered_or_refused(worker, edge, store_code):
    """Issue 9 defect 6 through the real broker: each message ends dead-lettered or
    answered, the auth one declined, and the store's next batch goes through."""
    items = Items(store_code)
    mid = uuid7()
    reg, huge, topup = (
        items.registration(mid, "13800000031"),
        items.topup(mid, 1),
        items.topup(mid, 800),
    )
    huge["body"]["principal"] = 10**30
    batch = {"v": 1, "store": store_code, "epoch": 1, "first_seq": 1, "last_seq": 3}
    hostile = [
        ("tx", b"[" * 200_000),
        ("tx", json.dumps({**batch, "epoch": 2**40, "items": [huge]}).encode()),
        ("hello", json.dumps({**batch, "acked_through": 2**63}).encode()),
        ("chgreq", json.dumps({"v": 1, "store": store_code, "after": 10**30}).encode()),
        ("snapreq", b'{"v":1,"store":"' + b"\xff" * 10 + b'"}'),
        ("state", b'{"v":1,"online":true,"ts":"t","epoch":1e999}'),
    ]
    for name, payload in hostile:
        edge.publish(name, payload)
    answer = edge.authorize(
        p.AuthRequest(store_code, "sale-x", mid, stored_value=2**62)  # past MAX_AMOUNT
    )
    assert (answer["status"], answer["code"]) == ("declined", "invalid")
    wait_until(
        lambda: DeadLetter.select().where(DeadLetter.store == store_code).count() == 7,
        15,
        "every hostile message dead-lettered",
    )
    edge.publish("tx", json.dumps({**batch, "items": [reg, huge, topup]}).encode())
    ack = edge.wait_acked(3)
    assert [(r["seq"], r["code"]) for r in ack["rejected"]] == [(2, "invalid")]
    assert Member.get_by_id(mid).sv_principal == 800
