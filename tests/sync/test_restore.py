"""HQ's database restored from a backup: the stores resend what HQ no longer has."""

from __future__ import annotations

import shutil
import sqlite3

from edge.models import Outbox
from edge.sync.apply import down_cursor
from hq.changes import latest_change_seq
from hq.models import Member as HqMember
from hq.models import ProcessedItem
from hq.models import Sale as HqSale
from hq.models import Store as HqStore
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import StoreBox, wait_until

NEW_PHONE = "13900000077"


def test_a_restored_hq_gets_back_everything_it_had_acknowledged(
    tmp_path, mosquitto, sqlite_hq_url, stores
):
    hq_file = tmp_path / "hq.sqlite3"
    backup = tmp_path / "hq-backup.sqlite3"
    worker = start_worker(sqlite_hq_url, mosquitto)
    a = StoreBox(tmp_path / "a", new_code("R"), mosquitto)
    stores.append(a)
    a.load_demo(members=2)
    a.sell({"card_no": "C0001"}, [{"sku": "P0002"}])
    a.start_agent()
    try:
        wait_until(lambda: a.pending() == 0, 30, "first drain")
        with sqlite3.connect(hq_file) as live, sqlite3.connect(backup) as copy:
            live.backup(copy)  # last night's backup
        restored_through = HqStore.get_by_id(a.code).acked_through
        restored_changes = latest_change_seq()
        new_id = a.register("赵六", NEW_PHONE)
        for _ in range(3):
            a.sell({"card_no": "C0001"}, [{"sku": "P0003"}])
        wait_until(lambda: a.pending() == 0, 30, "second drain")
        # and the store has followed HQ's change log past what the backup holds
        wait_until(
            lambda: a.query(down_cursor) >= latest_change_seq() > restored_changes,
            30,
            "store A caught up with HQ's changes",
        )
        total = a.outbox_count()
        assert HqStore.get_by_id(a.code).acked_through == total > restored_through
        # the acknowledged registration's phone was scrubbed from the outbox
        payload = a.query(
            lambda: Outbox.get((Outbox.kind == "registration") & (Outbox.seq > restored_through))
        ).payload
        assert NEW_PHONE not in payload
    finally:
        worker.stop()

    # the HQ server is lost and restored from the backup
    a.stop_agent()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"hq.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, hq_file)
    worker = start_worker(sqlite_hq_url, mosquitto)
    try:
        assert HqStore.get_by_id(a.code).acked_through == restored_through
        a.start_agent()  # says hello; HQ answers with a rewind
        wait_until(
            lambda: HqStore.get_by_id(a.code).acked_through == total and a.pending() == 0,
            30,
            "the store resent what the restored HQ lacked",
        )
        assert "resending from" in a.agent_log()
        # the restored change log issues its seqs again for other changes: the store's
        # cursor means nothing there, so it reloads from a snapshot and follows on
        wait_until(lambda: "loaded snapshot" in a.agent_log(), 30, "snapshot after the restore")
        wait_until(
            lambda: a.query(down_cursor) == latest_change_seq(), 30, "store A follows HQ again"
        )
        assert a.ledger_matches_balances() == []
        assert ProcessedItem.select().where(ProcessedItem.store == a.code).count() == total
        assert HqSale.select().where(HqSale.store == a.code).count() == 4
        assert HqMember.get_by_id(new_id).phone == NEW_PHONE
    finally:
        worker.stop()
