"""Real worker processes: a SIGKILL between commit and ack, two workers sharing a subscription."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from core.ids import uuid7
from core.rules import DEMO_RULES
from hq.ledger import ledger_sums
from hq.models import Member, ProcessedItem, Sale, Store, TopUp, bind, open_database
from hq.rules import publish_rules
from tests.broker import Mosquitto
from tests.hq.edge_sim import EdgeSim, Items, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class WorkerProcess:
    def __init__(self, db_url: str, broker: Mosquitto, client_id: str, fault: str = "") -> None:
        env = {**os.environ, "PYTHONPATH": ROOT}
        env.pop("HY_HQ_FAULT", None)
        if fault:
            env["HY_HQ_FAULT"] = fault
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hq.cli",
                "--database-url",
                db_url,
                *broker.cli_args("hq"),
                "serve-ingest",
                "--client-id",
                client_id,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def hq_online(edge: EdgeSim) -> bool:
    with edge.lock:
        return bool(edge.hq_state) and edge.hq_state[-1].get("online") is True


def test_worker_killed_between_commit_and_ack_reacks_without_doubling(
    hq_db, hq_db_url, own_mosquitto, processes
):
    store = f"K{uuid7()[-6:]}"
    edge = EdgeSim(own_mosquitto, store)
    try:
        crashing = WorkerProcess(hq_db_url, own_mosquitto, "hq-crash", "kill_after_commit")
        processes.append(crashing)
        wait_until(lambda: hq_online(edge), 15, "worker online")
        items = Items(store)
        mid = uuid7()
        batch = [items.registration(mid, "13300000001"), items.topup(mid, 8000)]
        edge.send(batch)
        assert crashing.wait_exit() == -signal.SIGKILL
        assert edge.acks == []  # committed, but never acknowledged
        assert Store.get_by_id(store).acked_through == 2
        # HQ's will tells the stores it is gone
        wait_until(lambda: not hq_online(edge), 15, "HQ will: online=false")

        restarted = WorkerProcess(hq_db_url, own_mosquitto, "hq-crash")
        processes.append(restarted)
        wait_until(lambda: hq_online(edge), 15, "worker back online")
        edge.hello(acked_through=0)  # the store resends from its last ack (0)
        edge.send(batch)
        wait_until(lambda: edge.acked_through() == 2, 15, "re-ack")
        assert all(a["rejected"] == [] for a in edge.acks)
        m = Member.get_by_id(mid)
        assert m.sv_principal == 8000  # applied once
        assert ProcessedItem.select().where(ProcessedItem.store == store).count() == 2
        sums = ledger_sums(mid)
        assert sums["principal"] == 8000
    finally:
        edge.close()


def drain(edge: EdgeSim, items: list[dict], batch_size: int, timeout: float) -> None:
    """Send everything, resend from the last ack when acks stall: the edge's rules."""
    deadline = time.monotonic() + timeout
    last_progress = -1
    sent_at = 0.0
    while time.monotonic() < deadline:
        acked = edge.acked_through()
        if acked >= len(items):
            return
        if acked != last_progress or time.monotonic() - sent_at > 2.0:
            last_progress = acked
            sent_at = time.monotonic()
            pending = items[acked:]
            for i in range(0, len(pending), batch_size):
                edge.send(pending[i : i + batch_size])
        time.sleep(0.05)
    raise AssertionError(f"{edge.store} acked {edge.acked_through()} of {len(items)}")


@pytest.mark.postgres
@pytest.mark.parametrize("kill_one", [False, True], ids=["both", "one_killed"])
def test_two_workers_ingest_three_stores_at_once_on_postgres(
    pg_url, own_mosquitto, processes, monkeypatch, kill_one
):
    """Two worker processes share the subscription. With ``one_killed``, one is SIGKILLed
    mid-run: the stores resend what it had in flight, everything is applied once, and
    the survivor answers the dead one's will at once (its own heartbeat is an hour away
    here), so the stores are not told HQ is gone while it is not."""
    monkeypatch.setenv("HY_HQ_STATE_INTERVAL", "3600")
    db = open_database(pg_url)
    bind(db)
    publish_rules(db, DEMO_RULES.to_dict())
    for n in (1, 2):
        processes.append(WorkerProcess(pg_url, own_mosquitto, f"hq-w{n}"))
    stores = [f"P{n}{uuid7()[-5:]}" for n in range(3)]
    edges = [EdgeSim(own_mosquitto, s) for s in stores]
    shared_member = uuid7()
    try:
        wait_until(lambda: hq_online(edges[0]), 15, "workers online")
        time.sleep(0.5)  # let both workers join the shared subscription
        plans: dict[str, list[dict]] = {}
        for n, store in enumerate(stores):
            items = Items(store)
            mid = shared_member if n == 0 else uuid7()
            # stores 1 and 2 register the same phone at once: one merge, whichever worker wins
            phone = "13200000000" if n == 0 else "13200000099"
            plan = [items.registration(mid, phone)]
            for k in range(59):
                if k % 3 == 0:
                    plan.append(items.topup(shared_member if n == 0 or k % 2 else mid, 1000))
                else:
                    plan.append(items.sale(mid, 500 + k, points_earned=5))
            plans[store] = plan
        threads = [
            threading.Thread(target=drain, args=(edge, plans[edge.store], 5, 60)) for edge in edges
        ]
        for t in threads:
            t.start()
        if kill_one:
            wait_until(lambda: sum(e.acked_through() for e in edges) >= 60, 60, "a third in")
            processes[0].proc.send_signal(signal.SIGKILL)
            assert processes[0].wait_exit() == -signal.SIGKILL
        for t in threads:
            t.join(70)
        if kill_one:
            with edges[0].lock:
                states = [s.get("online") for s in edges[0].hq_state]
            assert False in states  # the dead worker's will reached the stores
            wait_until(lambda: hq_online(edges[0]), 15, "the survivor says HQ is online")
        for edge in edges:
            assert edge.acked_through() == 60, (edge.store, edge.acked_through())
        for store in stores:
            assert Store.get_by_id(store).acked_through == 60
            assert ProcessedItem.select().where(ProcessedItem.store == store).count() == 60
            expected_sales = sum(1 for i in plans[store] if i["kind"] == "sale")
            assert Sale.select().where(Sale.store == store).count() == expected_sales
            expected_topups = sum(1 for i in plans[store] if i["kind"] == "topup")
            assert TopUp.select().where(TopUp.store == store).count() == expected_topups
        for m in Member.select():
            sums = ledger_sums(m.id)
            assert (m.sv_principal, m.points) == (sums["principal"], sums["points"])
        from hq.models import Merge

        merged = [m for m in Member.select() if m.status == "merged"]
        assert len(merged) == 1 and Merge.select().count() == 1
        survivor = Member.get_by_id(merged[0].merged_into)
        assert survivor.through.keys() >= {stores[1], stores[2]}
        total_topups = sum(
            i["body"]["principal"] for plan in plans.values() for i in plan if i["kind"] == "topup"
        )
        assert sum(m.sv_principal for m in Member.select()) == total_topups
    finally:
        for edge in edges:
            edge.close()
        db.close()
