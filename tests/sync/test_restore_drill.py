"""The restore drill, on SQLite and PostgreSQL HQ, with the supported commands.

HQ and a store are backed up (``huiyuan-hq backup``, ``huiyuan-edge backup``) while
they run; the stores keep trading; HQ's machine is lost (its worker killed, its
database replaced by the backup) and restored; every item the stores made reaches HQ
exactly once and the balances agree. Then a store box is rebuilt from its own backup:
it must not hand out again the seqs HQ already took (edge/backup.py).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from edge.models import Outbox
from edge.models import Sale as EdgeSale
from edge.models import TopUp as EdgeTopUp
from hq.models import Member as HqMember
from hq.models import ProcessedItem
from hq.models import Sale as HqSale
from hq.models import Store as HqStore
from hq.models import TopUp as HqTopUp
from tests.sync.conftest import new_code
from tests.sync.helpers import ROOT, HqProcess, StoreBox, init_hq, wait_until
from tests.sync.test_reconcile import reconcile_cli


def run(*args: str) -> str:
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def hq_backup(db_url: str, out: Path) -> None:
    assert "backed up to" in run("hq.cli", "--database-url", db_url, "backup", "--out", str(out))


def edge_backup(box: StoreBox, out: Path) -> None:
    assert "已备份到" in run("edge.cli", "-c", str(box.config_path), "backup", "--out", str(out))


def lose_and_restore_hq(db_url: str, backup: Path, db) -> None:  # noqa: ANN001
    """HQ's database is gone; the backup is put back the documented way."""
    db.close()
    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copy(backup, path)
    else:
        subprocess.run(  # noqa: S603
            ["pg_restore", "--clean", "--if-exists", "--no-owner", "-d", db_url, str(backup)],  # noqa: S607
            check=True,
            capture_output=True,
            timeout=60,
        )


def kill(hq: HqProcess) -> None:
    """The HQ machine dies: no clean disconnect, so the broker publishes its will."""
    hq.proc.send_signal(signal.SIGKILL)
    hq.proc.wait(timeout=10)
    hq.stop()


def item_ids(box: StoreBox) -> list[str]:
    return box.query(lambda: [r.id for r in Outbox.select(Outbox.id)])


def assert_all_at_hq_once(box: StoreBox) -> None:
    """Every item of the store's outbox processed (applied) at HQ once, and the store's
    sales and top-ups all at HQ."""
    ids = item_ids(box)
    rows = list(ProcessedItem.select().where(ProcessedItem.item_id.in_(ids)))
    assert len(rows) == len(ids) == len(set(ids))
    assert {r.status for r in rows} == {"applied"}
    assert {r.store for r in rows} == {box.code}
    sales = box.query(lambda: EdgeSale.select().count())
    topups = box.query(lambda: EdgeTopUp.select().count())
    assert HqSale.select().where(HqSale.store == box.code).count() == sales
    assert HqTopUp.select().where(HqTopUp.store == box.code).count() == topups


def settled(box: StoreBox) -> bool:
    return box.pending() == 0


def reported_rules(box: StoreBox) -> bool:
    """The store has written its rules_status item (the version it took from HQ)."""
    return box.query(lambda: Outbox.select().where(Outbox.kind == "rules_status").exists())


def test_hq_lost_and_restored_from_its_backup_gets_every_item_once(
    tmp_path, mosquitto, hq_db_url, stores, hq_processes
):
    db = init_hq(hq_db_url)
    hq = HqProcess(hq_db_url, mosquitto, "hq-drill", tmp_path / "hq.log")
    hq_processes.append(hq)
    a = StoreBox(tmp_path / "a", new_code("D"), mosquitto)
    b = StoreBox(tmp_path / "b", new_code("E"), mosquitto)
    stores += [a, b]
    a.load_demo(members=3)
    b.load_staff_and_products()
    a.top_up({"card_no": "C0001"}, 20000)
    a.sell({"card_no": "C0001"}, [{"sku": "P0002"}])
    a.start_agent()
    b.start_agent()
    wait_until(lambda: settled(a), 30, "A drained")
    b.register("钱七", "13900000081")
    wait_until(lambda: settled(b), 30, "B drained")

    # last night's backups, taken while the tills and HQ run
    hq_file = tmp_path / "hq-backup.dump"
    hq_backup(hq_db_url, hq_file)
    edge_backup(a, tmp_path / "a-backup.sqlite3")
    restored = {s.code: HqStore.get_by_id(s.code).acked_through for s in (a, b)}

    # a day of trading after the backup, at both stores, some of it with HQ down
    new_a = a.register("赵六", "13900000077")
    a.top_up({"member_id": new_a}, 5000)
    a.sell({"card_no": "C0001"}, [{"sku": "P0003"}])
    b.sell({"card_no": "C0001"}, [{"sku": "P0001"}])
    b.top_up({"card_no": "C0002"}, 3000)
    wait_until(lambda: settled(a) and settled(b), 30, "day traded and drained")
    assert all(HqStore.get_by_id(s.code).acked_through > restored[s.code] for s in (a, b))

    kill(hq)
    b.sell({"card_no": "C0002"}, [{"sku": "P0002"}])  # the stores trade on meanwhile
    a.sell(None, [{"sku": "P0001"}])
    lose_and_restore_hq(hq_db_url, hq_file, db)
    db = init_hq(hq_db_url)
    assert {s.code: HqStore.get_by_id(s.code).acked_through for s in (a, b)} == restored

    restarted = HqProcess(hq_db_url, mosquitto, "hq-drill", tmp_path / "hq.log")
    hq_processes.append(restarted)
    # HQ online again: each store says hello, is told to rewind, and resends
    for box in (a, b):
        wait_until(
            lambda box=box: (
                settled(box) and HqStore.get_by_id(box.code).acked_through == box.outbox_count()
            ),
            60,
            f"{box.code} resent what the restored HQ lacked",
        )
        assert "resending from" in box.agent_log()
        assert_all_at_hq_once(box)
    assert HqMember.get_by_id(new_a).sv_principal == 5000
    # the figures agree: HQ against its ledger, every store against HQ
    wait_until(
        lambda: reconcile_cli(hq_db_url, mosquitto, "--ask").returncode == 0,
        90,
        "reconcile: no differences",
    )
    db.close()


def test_a_store_box_rebuilt_from_its_backup_takes_no_seq_hq_already_has(
    tmp_path, mosquitto, hq_db_url, stores, hq_processes
):
    db = init_hq(hq_db_url)
    hq_processes.append(HqProcess(hq_db_url, mosquitto, "hq-rebuilt", tmp_path / "hq.log"))
    workdir = tmp_path / "a"
    a = StoreBox(workdir, new_code("F"), mosquitto)
    stores.append(a)
    a.load_demo(members=2)
    a.top_up({"card_no": "C0001"}, 10000)
    a.start_agent()
    # drained, including the rules_status item the store writes once it takes HQ's rules
    # (written after this wait, it would be pending in the backup too and renumbered)
    wait_until(lambda: settled(a) and reported_rules(a), 30, "A drained")
    a.stop_agent()
    # an item still in the outbox when the backup runs: HQ gets it after the backup
    a.sell({"card_no": "C0001"}, [{"sku": "P0002"}])
    backup = tmp_path / "a-backup.sqlite3"
    edge_backup(a, backup)
    backup_top = a.outbox_count()
    in_backup = set(item_ids(a))
    a.start_agent()
    lost_reg = a.register("孙八", "13900000088")
    a.sell({"card_no": "C0001"}, [{"sku": "P0003"}])
    wait_until(lambda: settled(a), 30, "A drained after the backup")
    hq_cursor = HqStore.get_by_id(a.code).acked_through
    assert hq_cursor == a.outbox_count() > backup_top
    lost = set(item_ids(a)) - in_backup

    # the box dies; a new one gets the store's backup (and its key credential)
    a.close()
    stores.remove(a)
    data = Path(a.config.db_path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{data}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, data)
    rebuilt = StoreBox(workdir, a.code, mosquitto)
    stores.append(rebuilt)
    # the till trades before its sync agent has heard from HQ: this sale gets a seq HQ
    # already holds for something else
    sale = rebuilt.sell({"card_no": "C0002"}, [{"sku": "P0001"}])
    assert rebuilt.outbox_count() == backup_top + 1 <= hq_cursor
    rebuilt.start_agent()
    wait_until(lambda: settled(rebuilt), 60, "rebuilt box drained")
    assert "restored from a backup?" in rebuilt.agent_log()

    # its unacknowledged items now follow HQ's cursor; HQ applied the new sale once
    # and took the pending one from the backup as a duplicate of its id
    seqs = rebuilt.query(lambda: [r.seq for r in Outbox.select().order_by(Outbox.seq)])
    assert seqs == list(range(1, backup_top)) + [hq_cursor + 1, hq_cursor + 2]
    assert HqStore.get_by_id(a.code).acked_through == hq_cursor + 2
    assert HqSale.select().where(HqSale.sale_id == sale["sale_id"]).count() == 1
    tail = ProcessedItem.select().where(
        (ProcessedItem.store == a.code) & (ProcessedItem.seq > hq_cursor)
    )
    assert sorted(r.status for r in tail) == ["applied", "duplicate"]
    # what the box lost is still at HQ, once, and comes back down to it
    assert ProcessedItem.select().where(ProcessedItem.item_id.in_(list(lost))).count() == len(lost)
    assert HqMember.get_by_id(lost_reg).name == "孙八"
    wait_until(lambda: rebuilt.member(lost_reg) is not None, 30, "lost member back at the box")
    wait_until(
        lambda: reconcile_cli(hq_db_url, mosquitto, "--ask").returncode == 0,
        90,
        "reconcile: no differences",
    )
    wait_until(lambda: rebuilt.ledger_matches_balances() == [], 30, "box ledger squared")
    db.close()
