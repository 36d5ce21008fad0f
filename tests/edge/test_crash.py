"""SIGKILL the till API in the middle of a stream of sales: nothing acknowledged is lost,
nothing is half-written, and the outbox sequence has no gap."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter as Tally

from edge.config import load_config
from edge.models import Counter, Ledger, Outbox, Sale, SaleLine, open_database
from tests.broker import free_port
from tests.edge.conftest import demo_store_cli

ACKS_BEFORE_KILL = 60
DEADLINE_S = 60


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as res:  # noqa: S310 - a local test server
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_sigkill_mid_stream_loses_no_acknowledged_sale(tmp_path):
    port = free_port()
    cli = demo_store_cli(tmp_path, port, members=5)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([*cli, "serve"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, session = _post(f"{base}/session", {"staff_code": "1001", "pin": "1234"})
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        assert status == 201
        headers = {"Authorization": f"Bearer {session['token']}"}
        acked: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def sell(worker: int) -> None:
            n = 0
            while not stop.is_set() and n < 2000:
                n += 1
                body = {
                    "member": {"card_no": "C0001"} if n % 2 else None,
                    "lines": [
                        {"sku": "P0002", "qty": 1 + n % 3},
                        {"sku": "P0009", "qty": 2},
                        {"sku": "P0006"},
                    ],
                    "tenders": [{"kind": "cash", "amount": 100000}],
                }
                if body["member"] is None:
                    del body["member"]
                try:
                    status, result = _post(f"{base}/sales", body, headers)
                except (
                    urllib.error.URLError,
                    ConnectionError,
                    TimeoutError,
                    OSError,
                    http.client.HTTPException,  # IncompleteRead: killed mid-response
                ):
                    return  # the server is gone
                if status == 201:
                    with lock:
                        acked.append(result["sale_id"])

        threads = [threading.Thread(target=sell, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + DEADLINE_S
        while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        assert len(acked) >= ACKS_BEFORE_KILL
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        log.close()

    cfg = load_config(tmp_path / "edge.toml")
    db = open_database(cfg.db_path)
    try:
        sales = {s.id: s for s in Sale.select()}
        missing = [sid for sid in acked if sid not in sales]
        assert not missing, f"{len(missing)} acknowledged sales lost"
        seqs = [o.seq for o in Outbox.select().order_by(Outbox.seq)]
        assert seqs == list(range(1, len(seqs) + 1)), "outbox sequence has a gap"
        assert Counter.get_by_id("outbox").value == seqs[-1]
        outbox_sales = Tally(
            json.loads(o.payload)["body"]["sale_id"]
            for o in Outbox.select().where(Outbox.kind == "sale")
        )
        for sale_id, sale in sales.items():
            assert outbox_sales[sale_id] == 1, (
                f"sale {sale_id} has {outbox_sales[sale_id]} outbox messages"
            )
            assert SaleLine.select().where(SaleLine.sale_id == sale_id).count() == len(
                sale.body["lines"]
            )
            if sale.member_id:
                assert (
                    Ledger.select().where(Ledger.ref == sale_id).count() == 1
                )  # the points earned
        assert len(outbox_sales) == len(sales)
    finally:
        db.close()
