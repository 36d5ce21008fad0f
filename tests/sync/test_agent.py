"""The agent against a scripted HQ: batches, window, acks (duplicate, stale, rejecting), resends."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from core import protocol as p
from edge.demo_data import load_demo
from edge.models import Outbox, Setting
from edge.services.context import open_till
from edge.services.staff import sign_in
from edge.sync.agent import SyncAgent
from tests.broker import Mosquitto
from tests.edge.conftest import make_config
from tests.sync.conftest import new_code
from tests.sync.helpers import wait_until


class ScriptedHq:
    """Plays HQ by hand: records what the store sends, acks what the test says."""

    def __init__(self, broker: Mosquitto, store: str) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.batches: list[dict] = []
        self.hellos: list[dict] = []
        self.chgreqs: list[dict] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"fake-hq-{store}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(f"hy/v1/{store}/up/#", qos=1)
        broker.paho_tls(self.client, "hq")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, 10, "fake HQ subscribed")

    def _on_message(self, client, userdata, msg) -> None:
        obj = p.decode_json(msg.payload)
        with self.lock:
            if msg.topic.endswith("/up/tx"):
                self.batches.append(obj)
            elif msg.topic.endswith("/up/hello"):
                self.hellos.append(obj)
            elif msg.topic.endswith("/up/chgreq"):
                self.chgreqs.append(obj)

    def firsts(self) -> list[int]:
        with self.lock:
            return [b["first_seq"] for b in self.batches]

    def ack(self, through: int, rejected=(), epoch: int = 1, store: str | None = None) -> None:
        ack = p.Ack(store or self.store, epoch, through, tuple(p.Rejection(*r) for r in rejected))
        self.client.publish(p.down_topic(self.store, "ack"), p.encode_json(ack.to_dict()), qos=1)

    def state(self, online: bool) -> None:
        payload = p.encode_json(p.PeerState(online, "2026-11-23T10:00:00+08:00").to_dict())
        self.client.publish(p.hq_state_topic(), payload, qos=1, retain=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def store(tmp_path):
    code = new_code("U")
    till = open_till(make_config(tmp_path, store={"code": code}), create_key=True)
    load_demo(till, members=2)  # two registrations: seq 1 and 2
    _, staff = sign_in(till, "1001", "1234")
    from edge.services import sales

    for _ in range(10):  # seq 3..12
        sales.checkout(
            till,
            staff,
            sales.CheckoutRequest.from_request(
                {"lines": [{"sku": "P0001"}], "tenders": [{"kind": "cash", "amount": 1000}]}
            ),
        )
    yield till
    till.db.close()


@pytest.fixture
def hq(own_mosquitto, store) -> Iterator[ScriptedHq]:
    fake = ScriptedHq(own_mosquitto, store.store)
    yield fake
    fake.close()


@pytest.fixture
def agent(store, own_mosquitto, hq) -> Iterator[SyncAgent]:
    cfg = own_mosquitto.sync_config(store.store, batch_size=5, window=2, ack_timeout=0.6)
    a = SyncAgent(store, cfg).start()
    yield a
    a.stop()


def acked_seqs() -> list[int]:
    return [r.seq for r in Outbox.select().where(Outbox.acked == True).order_by(Outbox.seq)]  # noqa: E712


def test_window_of_batches_and_only_acks_move_the_outbox(agent, hq):
    wait_until(lambda: hq.firsts()[:2] == [1, 6], 10, "two batches in flight")
    hello = wait_until(lambda: hq.hellos, 10, "hello")[0]
    assert (hello["acked_through"], hello["down_cursor"], hello["epoch"]) == (0, 0, 1)
    first = hq.batches[0]
    assert [i["seq"] for i in first["items"]] == [1, 2, 3, 4, 5]
    assert first["last_seq"] == 5 and first["store"] == agent.store
    assert len(hq.firsts()) == 2  # the window is full until an ack
    assert acked_seqs() == []
    hq.ack(5)
    wait_until(lambda: 11 in hq.firsts(), 10, "the next batch after an ack")
    wait_until(lambda: acked_seqs() == [1, 2, 3, 4, 5], 10, "rows marked on ack")
    hq.ack(12)
    wait_until(lambda: len(acked_seqs()) == 12, 10, "all acked")
    assert Setting.get_by_id("sync.acked_through").value == 12
    # the acknowledged registration no longer holds the phone number (invariant 8)
    assert all(
        '"phone":""' in r.payload for r in Outbox.select().where(Outbox.kind == "registration")
    )


def test_duplicate_stale_foreign_and_future_acks_change_nothing(agent, hq):
    wait_until(lambda: len(hq.firsts()) >= 2, 10, "batches")
    hq.ack(7)
    hq.ack(7)
    wait_until(lambda: agent.drain.acked_through == 7, 10, "ack 7")
    hq.ack(3)  # stale: never un-marks
    hq.ack(10, epoch=2)  # another epoch
    hq.ack(8, store="OTHER")  # answered for another store (ignored)
    hq.ack(7)
    wait_until(lambda: hq.firsts().count(11) >= 1, 10, "drain continued")
    assert agent.drain.acked_through == 7
    assert acked_seqs() == list(range(1, 8))
    assert Setting.get_by_id("sync.acked_through").value == 7


def test_an_ack_past_the_last_seq_moves_the_unacked_items_after_it(agent, hq, store):
    """HQ holds seqs this box never made (the box was restored from a backup): the items
    HQ has not acknowledged move, in order, to the seqs after HQ's cursor, and so does
    the till's next sale."""
    wait_until(lambda: len(hq.firsts()) >= 2, 10, "batches")
    hq.ack(7)
    wait_until(lambda: agent.drain.acked_through == 7, 10, "ack 7")
    ids = [r.id for r in Outbox.select().where(Outbox.seq > 7).order_by(Outbox.seq)]
    hq.ack(40)  # HQ's cursor: seqs 8..40 were taken by what this box lost
    wait_until(lambda: 41 in hq.firsts(), 10, "resent after HQ's cursor")
    moved = list(Outbox.select().where(Outbox.seq > 7).order_by(Outbox.seq))
    assert [r.seq for r in moved] == list(range(41, 46))
    assert [r.id for r in moved] == ids
    assert all(p.decode_json(r.payload.encode())["seq"] == r.seq for r in moved)
    assert agent.drain.acked_through == 7  # nothing after 7 is acknowledged by it
    from edge.services.outbox import next_number

    with store.db.atomic() as txn:
        assert next_number("outbox") == 46
        txn.rollback()  # only looked
    hq.ack(45)
    wait_until(lambda: agent.drain.acked_through == 45, 10, "moved items acknowledged")
    assert Outbox.select().where(Outbox.acked == False).count() == 0  # noqa: E712


def test_a_rejected_seq_is_recorded_and_the_store_moves_on(agent, hq):
    wait_until(lambda: len(hq.firsts()) >= 1, 10, "batch")
    hq.ack(12, rejected=[(4, "apply_failed", "退货的原销售单不存在")])
    wait_until(lambda: len(acked_seqs()) == 12, 10, "all acked")
    row = Outbox.get_by_id(4)
    assert (row.reject_code, row.reject_reason) == ("apply_failed", "退货的原销售单不存在")
    assert Outbox.select().where(Outbox.reject_code.is_null(False)).count() == 1
    # a duplicate ack listing the rejection again is harmless
    hq.ack(12, rejected=[(4, "apply_failed", "退货的原销售单不存在")])
    assert agent.drain.acked_through == 12


def test_no_ack_resends_from_the_last_ack(agent, hq):
    wait_until(lambda: hq.firsts()[:2] == [1, 6], 10, "batches")
    hq.ack(5)  # HQ holds 6..10 after a gap it has not filled: the store must resend 6
    wait_until(lambda: hq.firsts().count(6) >= 2, 10, "resend from acked_through + 1")
    assert 1 not in hq.firsts()[2:]  # nothing before the ack is resent
    hq.ack(12)
    wait_until(lambda: len(acked_seqs()) == 12, 10, "all acked")


def test_hq_back_online_triggers_hello_and_resend(agent, hq):
    wait_until(lambda: hq.hellos and len(hq.firsts()) >= 2, 10, "started")
    hq.ack(5)
    wait_until(lambda: agent.drain.acked_through == 5, 10, "ack 5")
    hq.state(False)
    wait_until(lambda: agent.hq_online is False, 10, "HQ offline seen")
    hellos, batches = len(hq.hellos), len(hq.batches)
    hq.state(True)
    wait_until(lambda: len(hq.hellos) > hellos, 10, "a hello when HQ is back")
    assert hq.hellos[-1]["acked_through"] == 5
    wait_until(lambda: 6 in hq.firsts()[batches:], 10, "resend from 6")
    hq.state(True)  # a heartbeat: no new hello
    hq.ack(12)
    wait_until(lambda: len(acked_seqs()) == 12, 10, "all acked")


def test_restarted_agent_says_hello_with_its_last_ack(store, own_mosquitto, hq):
    cfg = own_mosquitto.sync_config(store.store, batch_size=5)
    first = SyncAgent(store, cfg).start()
    try:
        wait_until(lambda: hq.firsts(), 10, "batches")
        hq.ack(9)
        wait_until(lambda: first.drain.acked_through == 9, 10, "ack 9")
    finally:
        first.stop()
    hellos = len(hq.hellos)
    second = SyncAgent(store, cfg).start()
    try:
        wait_until(lambda: len(hq.hellos) > hellos, 10, "hello")
        assert hq.hellos[-1]["acked_through"] == 9
        wait_until(lambda: 10 in hq.firsts(), 10, "resent from 10")
    finally:
        second.stop()


def test_a_gap_seen_just_after_a_request_is_asked_for_again(agent, hq):
    """A live page after a gap that arrives within the rate limit of the last request is
    asked for again once the limit allows: the answer to that last request may predate
    the changes the gap hides (it came back before HQ committed them)."""
    import time

    from edge.sync.agent import GAP_REQUEST_S

    hq.state(True)
    wait_until(lambda: hq.hellos, 10, "hello")
    # HQ answers the store's hello with an empty page: nothing after its cursor (0) yet
    empty = p.ChangePage(1, 0, (), False, 0)
    hq.client.publish(p.down_topic(hq.store, "chg"), p.encode_json(empty.to_dict()), qos=1)
    wait_until(lambda: not agent.page_pending, 10, "the store has its answer")
    with hq.lock:
        asked = len(hq.chgreqs)
    # then changes 1..3 are committed and only the last is pushed live, at once
    agent.page_requested_at = time.monotonic()  # as if a request had just gone
    change = p.Change(3, "tier", "VIP", "upsert", {"name": "VIP"})
    live = p.ChangePage(3, 3, (change,), False, 3)
    hq.client.publish(p.hq_changes_topic(), p.encode_json(live.to_dict()), qos=1)
    wait_until(lambda: agent.gap_seen, 10, "the gap noted")
    time.sleep(GAP_REQUEST_S)
    wait_until(lambda: len(hq.chgreqs) > asked, 10, "the store asks again after the gap")
    with hq.lock:
        assert hq.chgreqs[-1]["after"] == 0
    assert not agent.gap_seen
