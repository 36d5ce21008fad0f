"""Invariant 1 under crashes: SIGKILL the edge agent or an HQ worker, restart the broker."""

from __future__ import annotations

import pytest

from edge.models import Outbox
from hq.models import DeadLetter, ProcessedItem
from hq.models import Sale as HqSale
from hq.models import Store as HqStore
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import HqProcess, StoreBox, init_hq, wait_until


def queue_sales(store: StoreBox, n: int) -> None:
    for i in range(n):
        store.sell(
            {"card_no": "C0001"} if i % 5 == 0 else None, [{"sku": "P0001", "qty": 1 + i % 3}]
        )


def hq_acked(code: str) -> int:
    row = HqStore.get_or_none(HqStore.code == code)
    return row.acked_through if row else 0


def assert_exactly_once(store: StoreBox, sales: int) -> None:
    total = store.outbox_count()
    assert store.pending() == 0
    assert (
        store.query(lambda: Outbox.select().where(Outbox.reject_code.is_null(False)).count()) == 0
    )
    assert hq_acked(store.code) == total
    assert ProcessedItem.select().where(ProcessedItem.store == store.code).count() == total
    assert HqSale.select().where(HqSale.store == store.code).count() == sales
    assert DeadLetter.select().where(DeadLetter.store == store.code).count() == 0


def test_sigkill_of_the_edge_agent_mid_batch(tmp_path, mosquitto, hq_db_url, stores):
    worker = start_worker(hq_db_url, mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("K"), mosquitto, batch_size=10, window=2)
        stores.append(a)
        a.load_demo(members=2)
        queue_sales(a, 400)
        total = a.outbox_count()
        a.start_agent()
        wait_until(lambda: hq_acked(a.code) >= 60, 30, "the drain under way")
        a.kill_agent()
        at_kill = hq_acked(a.code)
        assert 0 < at_kill < total, "killed mid-drain"
        a.start_agent()
        wait_until(lambda: a.pending() == 0, 60, "drained after the restart")
        assert_exactly_once(a, 400)
    finally:
        worker.stop()


def test_hq_worker_killed_between_commit_and_ack(
    tmp_path, own_mosquitto, sqlite_hq_url, stores, hq_processes
):
    # its own broker: `serve-ingest` keeps a day-long session in the shared subscription,
    # and Mosquitto goes on handing a share of messages to the killed worker's session
    mosquitto = own_mosquitto
    db = init_hq(sqlite_hq_url)
    a = StoreBox(tmp_path / "a", new_code("H"), mosquitto, batch_size=25, window=1)
    stores.append(a)
    a.load_demo(members=2)
    queue_sales(a, 60)
    total = a.outbox_count()
    crashing = HqProcess(
        sqlite_hq_url,
        mosquitto,
        f"hq-{a.code}-crash",
        tmp_path / "hq1.log",
        "kill_after_commit",
    )
    hq_processes.append(crashing)
    a.start_agent()
    crashing.proc.wait(timeout=30)  # SIGKILLed itself after its first commit
    committed = hq_acked(a.code)
    assert committed > 0
    # nothing acknowledged: what was queued, and what the agent queued since (the rules
    # version it took)
    assert a.pending() == a.outbox_count() >= total, "no ack was sent for the committed batch"
    hq_processes.append(HqProcess(sqlite_hq_url, mosquitto, f"hq-{a.code}", tmp_path / "hq2.log"))
    wait_until(lambda: a.pending() == 0, 60, "drained by the second worker")
    assert_exactly_once(a, 60)
    db.close()


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_broker_restart_mid_drain(tmp_path, own_mosquitto, sqlite_hq_url, stores, how):
    worker = start_worker(sqlite_hq_url, own_mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("R"), own_mosquitto, batch_size=10, window=2)
        stores.append(a)
        a.load_demo(members=2)
        queue_sales(a, 300)
        a.start_agent()
        wait_until(lambda: hq_acked(a.code) >= 40, 30, "the drain under way")
        if how == "kill":
            own_mosquitto.kill()
            own_mosquitto.start()
        else:
            own_mosquitto.restart()
        wait_until(lambda: a.pending() == 0, 60, "drained after the broker came back")
        assert_exactly_once(a, 300)
    finally:
        worker.stop()
