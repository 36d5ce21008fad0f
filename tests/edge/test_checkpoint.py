"""The till server's WAL checkpointer process: the WAL stays bounded under a stream of
sales, empties when the store goes idle, stopping it loses nothing, it never outlives its
till server, and the WAL stays bounded even if it dies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.checkpointer import AUTOCHECKPOINT_PAGES, WalCheckpointer
from edge.services import sales
from edge.services import staff as staff_svc
from edge.services.context import start_checkpointer
from tests.edge.conftest import make_config

MB = 2**20


def _sell(till, n: int, wal_sizes: list[int] | None = None, pause: float = 0) -> list[str]:  # noqa: ANN001
    _, staff = staff_svc.sign_in(till, "1001", "1234")
    ids = []
    for i in range(n):
        req = {
            "member": {"card_no": "C0001" if i % 2 else "C0002"},
            "lines": [{"sku": "P0009", "qty": 1 + i % 3}, {"sku": "P0002"}, {"sku": "P0010"}],
            "tenders": [{"kind": "cash", "amount": 50000}],
        }
        ids.append(sales.checkout(till, staff, sales.CheckoutRequest.from_request(req))["sale_id"])
        if wal_sizes is not None:
            wal_sizes.append(_wal_size(till))
        time.sleep(pause)
    return ids


def _wal_size(till) -> int:  # noqa: ANN001
    path = till.config.db_path.with_name(till.config.db_path.name + "-wal")
    return path.stat().st_size if path.exists() else 0


def _autocheckpoint(till) -> int:  # noqa: ANN001
    return till.db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0]


def _wait_for(predicate, timeout: float = 5.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_without_its_rounds_the_wal_grows_with_every_sale(demo_till):
    # the control for the tests below: no round run yet (an hour away), and the till's
    # own automatic checkpoint only at the backstop, 4 x 8 MB here
    checkpointer = WalCheckpointer(demo_till.db, interval=3600, limit_bytes=8 * MB).start()
    try:
        sizes: list[int] = []
        _sell(demo_till, 400, sizes)
    finally:
        checkpointer.stop()
    assert sizes == sorted(sizes) and sizes[-1] > 16 * MB


def test_wal_stays_bounded_under_a_stream_of_sales_and_empties_when_idle(demo_till):
    checkpointer = WalCheckpointer(demo_till.db, interval=0.02, limit_bytes=MB).start()
    try:
        # no sale pays for a checkpoint: the till's own is only the backstop, 4 x 1 MB
        assert _autocheckpoint(demo_till) == 4 * MB // 4096 == checkpointer.backstop_pages
        sizes: list[int] = []
        # a stream far faster than a store's (hundreds a second), with the moments between
        # sales that a till has; a gapless one is bench/till.py's (docs/benchmarks.md)
        _sell(demo_till, 400, sizes, pause=0.002)
        # unbounded, 400 sales write about 30 MB of WAL (the test above); a checkpointer
        # slowed by another process's fsyncs may let it pass 4 MB now and then
        assert max(sizes) <= 8 * MB, max(sizes)
        assert checkpointer.counts["passive"] > 0 and checkpointer.counts["failed"] == 0
        # idle: the next rounds truncate the WAL to nothing (the round counts its
        # TRUNCATE only once the pragma has returned, a moment after the file is cut)
        assert _wait_for(
            lambda: _wal_size(demo_till) == 0 and checkpointer.counts["truncate"] >= 1
        ), (_wal_size(demo_till), checkpointer.counts)
    finally:
        checkpointer.stop()


def test_under_a_gapless_stream_the_wal_restarts_instead_of_growing(demo_till):
    # sales back to back, as bench/till.py sells: rounds run as soon as the WAL file grows
    # (looked at every 50 ms here), and each ends in a RESTART, so the next sales write
    # over the file's blocks instead of appending
    checkpointer = WalCheckpointer(demo_till.db, interval=1.0, limit_bytes=MB).start()
    try:
        sizes: list[int] = []
        for _ in range(8):  # at most 1,600 sales: a loaded machine may take a while
            _sell(demo_till, 200, sizes)
            if checkpointer.counts["restart"] >= 1:
                break
        assert checkpointer.counts["restart"] >= 1, checkpointer.counts
        # unbounded, 400 sales write about 30 MB (the first test); restarted, the file is
        # cut back to the limit and mostly written over
        assert max(sizes) <= 16 * MB, (max(sizes), len(sizes), checkpointer.counts)
    finally:
        checkpointer.stop()
    assert _wal_size(demo_till) == 0


def test_connections_opened_after_start_do_not_checkpoint_either(demo_till):
    checkpointer = WalCheckpointer(demo_till.db, interval=3600).start()
    seen = []

    def request_thread() -> None:  # as waitress runs each request on its own thread
        seen.append(_autocheckpoint(demo_till))
        demo_till.db.close()

    try:
        worker = threading.Thread(target=request_thread)
        worker.start()
        worker.join()
    finally:
        checkpointer.stop()
    assert seen == [checkpointer.backstop_pages] == [16 * MB * 4 // 4096]
    assert _autocheckpoint(demo_till) == AUTOCHECKPOINT_PAGES


def test_stop_ends_the_process_empties_the_wal_and_loses_nothing(tmp_path, clock):
    from edge.demo_data import load_demo
    from edge.services.context import open_till

    cfg = make_config(tmp_path, database={"checkpoint_interval_ms": 3_600_000, "wal_limit_mb": 64})
    till = open_till(cfg, clock=clock, create_key=True)
    load_demo(till, members=5)
    checkpointer = start_checkpointer(till)
    assert checkpointer.interval == 3600 and checkpointer.limit_bytes == 64 * MB
    ids = _sell(till, 50)
    assert _wal_size(till) > 0
    started = time.monotonic()
    checkpointer.stop()
    assert time.monotonic() - started < 2 and not checkpointer.running
    assert _wal_size(till) == 0  # its last round was a TRUNCATE
    assert _autocheckpoint(till) == AUTOCHECKPOINT_PAGES
    till.db.close()

    conn = sqlite3.connect(cfg.db_path)
    assert {r[0] for r in conn.execute("SELECT id FROM sale")} == set(ids)
    seqs = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'sale'").fetchone()[0] == 50
    conn.close()
    assert checkpointer.counts["truncate"] >= 1  # read from its file before it was removed


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0): it has exited if /proc says so
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


def test_the_checkpointer_ends_when_its_till_server_is_killed(tmp_path):
    """A till server killed with SIGKILL closes the pipe; the child sees it and exits."""
    from edge.services.context import open_till

    cfg = make_config(tmp_path)
    open_till(cfg, create_key=True).db.close()
    script = (
        "import sys, time\n"
        "from edge.services.context import open_till, start_checkpointer\n"
        "from edge.config import load_config\n"
        f"till = open_till(load_config(overrides={{'data_dir': {str(cfg.data_dir)!r}}}))\n"
        "cp = start_checkpointer(till)\n"
        "print(cp.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(server.stdout.readline())
        assert not _process_gone(child)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        assert _wait_for(lambda: _process_gone(child), timeout=10), "checkpointer outlived the till"
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


def test_if_the_checkpointer_dies_the_wal_stays_bounded_by_the_backstop(demo_till):
    checkpointer = WalCheckpointer(demo_till.db, interval=3600, limit_bytes=MB).start()
    try:
        os.kill(checkpointer.pid, signal.SIGKILL)
        assert _wait_for(lambda: not checkpointer.running)
        sizes: list[int] = []
        _sell(demo_till, 400, sizes)  # about 30 MB of WAL unchecked (the first test)
    finally:
        checkpointer.stop()
    # the till's own automatic checkpoint at 4 x 1 MB restarts the WAL; a checkpoint that
    # found a reader may let it pass that by a few sales
    assert max(sizes) <= 6 * MB, max(sizes)
