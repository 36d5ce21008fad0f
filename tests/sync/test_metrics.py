"""Every /metrics endpoint scraped over HTTP from the real processes: the HQ API and an
ingest worker while a store talks to them, and a store's till API (``huiyuan-edge
serve``) and sync agent (``huiyuan-edge serve-sync``) with HQ's ingest worker coming and
going and the broker going away."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from core import protocol as p
from core.ids import uuid7
from hq.models import HqException
from tests.broker import free_port
from tests.hq.edge_sim import EdgeSim, Items
from tests.metrics_helpers import fetch, scrape, total, try_scrape, value
from tests.sync.conftest import new_code
from tests.sync.helpers import ROOT, HqProcess, init_hq, store_toml, wait_until

TOKEN = "prometheus-scrapes-with-this-token"  # noqa: S105
NOW = dt.datetime(2026, 12, 4, 12, 0, 0)
SALE = {"lines": [{"sku": "P0001", "qty": 1}], "tenders": [{"kind": "cash", "amount": 100000}]}


class CliProcess(HqProcess):
    """``python -m <module> <args>`` (the till, the sync agent, the HQ API), stopped as
    HqProcess stops a worker: SIGTERM, then SIGKILL if it lingers."""

    def __init__(  # its own start; HqProcess's runs serve-ingest only
        self, module: str, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self._log = log.open("ab")
        command = [sys.executable, "-m", module, *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )


def _post(url: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=10) as res:  # noqa: S310 - the local till
        return res.status, json.loads(res.read() or b"{}")


def test_a_store_s_metrics_follow_hq_going_and_coming_and_a_printer_fault(
    tmp_path, own_mosquitto, hq_processes
):
    code = new_code("X")
    till_port, sync_port = free_port(), free_port()
    config = store_toml(tmp_path / "store", code, own_mosquitto)
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f"\n[http]\nport = {till_port}\n\n[metrics]\nsync_port = {sync_port}\n")
    cli = [sys.executable, "-m", "edge.cli", "-c", str(config)]
    subprocess.run(
        [*cli, "demo-data", "--members", "2"], check=True, capture_output=True, timeout=60
    )
    db_url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    init_hq(db_url).close()

    for command in ("serve", "serve-sync"):
        hq_processes.append(
            CliProcess("edge.cli", ["-c", str(config), command], tmp_path / f"{command}.log")
        )
    till = f"http://127.0.0.1:{till_port}"
    till_metrics, sync_metrics = f"{till}/metrics", f"http://127.0.0.1:{sync_port}/metrics"

    # the agent is connected; HQ has never said it is online
    wait_until(
        lambda: value(try_scrape(sync_metrics), "huiyuan_sync_connected") == 1, 30, "agent up"
    )
    assert value(scrape(sync_metrics), "huiyuan_sync_hq_online") == 0
    wait_until(lambda: try_scrape(till_metrics), 30, "till up")

    status, session = _post(f"{till}/api/v1/session", {"staff_code": "1001", "pin": "1234"})
    token = session["token"]
    assert _post(f"{till}/api/v1/sales", SALE, token)[0] == 201
    got = scrape(till_metrics)
    assert value(got, "huiyuan_checkout_seconds_count", outcome="completed") == 1
    backlog = value(got, "huiyuan_outbox_pending_items")
    assert backlog == value(got, "huiyuan_outbox_last_seq") > 1  # registrations and the sale
    assert value(got, "huiyuan_outbox_last_ack_timestamp_seconds") is None

    # HQ comes: the backlog drains, the agent sees HQ online, the last ack has a time
    hq = HqProcess(db_url, own_mosquitto, "hq-metrics", tmp_path / "hq.log")
    hq_processes.append(hq)
    # the backlog drains, and so does what the store sends once HQ is there: the rules
    # version it took from HQ's snapshot (one rules_status item)
    last = backlog + 1

    def drained() -> bool:
        got = scrape(till_metrics)
        return (
            value(got, "huiyuan_outbox_last_seq") == last
            and value(got, "huiyuan_outbox_pending_items") == 0
        )

    wait_until(drained, 30, "drained")
    got = scrape(till_metrics)
    assert value(got, "huiyuan_outbox_acked_through") == last
    assert value(got, "huiyuan_outbox_oldest_pending_age_seconds") == 0
    assert value(got, "huiyuan_outbox_last_ack_timestamp_seconds") > 0
    wait_until(lambda: value(scrape(sync_metrics), "huiyuan_sync_hq_online") == 1, 15, "HQ online")
    assert value(scrape(sync_metrics), "huiyuan_sync_acked_through") == last

    # HQ's worker is killed (its will says HQ is offline): a sale waits in the outbox
    hq.proc.send_signal(signal.SIGKILL)
    hq.proc.wait(timeout=10)
    wait_until(lambda: value(scrape(sync_metrics), "huiyuan_sync_hq_online") == 0, 30, "HQ offline")
    assert _post(f"{till}/api/v1/sales", SALE, token)[0] == 201
    got = scrape(till_metrics)
    assert value(got, "huiyuan_outbox_pending_items") == 1
    assert value(got, "huiyuan_checkout_seconds_count", outcome="completed") == 2
    assert value(scrape(sync_metrics), "huiyuan_sync_inflight_batches") == 0  # held back

    # a printer out of paper shows on the till's /metrics
    base = f"{till}/api/v1/devices"
    assert _post(f"{base}/virtual/printer/paper_out", {}, token)[0] == 202
    assert _post(f"{base}/printer/test", {}, token)[0] == 202
    wait_until(
        lambda: (
            value(scrape(till_metrics), "huiyuan_device_state", role="printer", state="paper_out")
            == 1
        ),
        15,
        "paper out shown",
    )
    assert value(scrape(till_metrics), "huiyuan_device_needs_attention", role="printer") == 1

    # the broker goes: the agent says it is not connected; the till's figures stay readable
    own_mosquitto.stop()
    wait_until(
        lambda: value(scrape(sync_metrics), "huiyuan_sync_connected") == 0, 30, "agent offline"
    )
    assert value(scrape(till_metrics), "huiyuan_outbox_pending_items") == 1


def test_hq_api_and_ingest_worker_metrics_move_as_a_store_talks(
    tmp_path, own_mosquitto, hq_processes, monkeypatch
):
    db_url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    db = init_hq(db_url)
    token_file = tmp_path / "metrics-token"
    token_file.write_text(TOKEN)
    api_port, worker_port = free_port(), free_port()
    # the token and the worker's port as a systemd unit's environment would give them
    monkeypatch.setenv("HY_HQ_METRICS_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("HY_HQ_INGEST_METRICS_PORT", str(worker_port))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    hq_processes.append(
        CliProcess(
            "hq.cli",
            ["--database-url", db_url, "serve-api", "--port", str(api_port)],
            tmp_path / "api.log",
        )
    )
    hq_processes.append(HqProcess(db_url, own_mosquitto, "hq-metrics", tmp_path / "hq.log"))
    api = f"http://127.0.0.1:{api_port}/metrics"
    worker = f"http://127.0.0.1:{worker_port}/metrics"
    wait_until(lambda: try_scrape(api, TOKEN), 30, "HQ API /metrics")
    assert fetch(api)[0] == 401  # Prometheus without the token reads nothing
    wait_until(
        lambda: value(try_scrape(worker, TOKEN), "huiyuan_ingest_mqtt_connected") == 1,
        30,
        "worker connected",
    )
    assert fetch(worker)[0] == 401  # a token configured guards the worker's port too
    store = f"M{uuid7()[-6:]}"
    edge = EdgeSim(own_mosquitto, store)
    try:
        # a store says it has 5 items HQ has not acknowledged: HQ's backlog for it is 5
        edge.publish("hello", p.encode_json(p.Hello(store, 1, 0, None, last_seq=5).to_dict()))
        wait_until(
            lambda: value(scrape(api, TOKEN), "huiyuan_store_backlog_items", store=store) == 5,
            15,
            "backlog 5 at HQ",
        )
        items = Items(store)
        member = uuid7()
        edge.send([items.registration(member, "13300000077"), items.topup(member, 5000)])
        edge.wait_acked(2)
        hq = scrape(api, TOKEN)
        assert value(hq, "huiyuan_store_backlog_items", store=store) == 3
        assert value(hq, "huiyuan_store_acked_through", store=store) == 2
        counted = scrape(worker, TOKEN)
        assert value(counted, "huiyuan_ingest_items_total", outcome="applied") == 2
        assert value(counted, "huiyuan_ingest_batches_total", outcome="acked") == 1
        assert value(counted, "huiyuan_ingest_batch_seconds_count") == 1
        assert value(counted, "huiyuan_ingest_messages_total", topic="tx") == 1

        # a bad message: dead-lettered, counted at HQ (from the table) and by the worker
        before = total(hq, "huiyuan_dead_letters_total")
        edge.publish("tx", b"{not json")
        wait_until(
            lambda: total(scrape(api, TOKEN), "huiyuan_dead_letters_total") == before + 1,
            15,
            "dead letter counted",
        )
        assert total(scrape(worker, TOKEN), "huiyuan_ingest_dead_letters_total") == 1
        # a hello naming another store on this store's topic: refused as forged
        other = p.Hello("OTHER", 1, 0).to_dict()
        edge.publish("hello", p.encode_json(other))
        wait_until(
            lambda: value(scrape(api, TOKEN), "huiyuan_dead_letters_total", code="forged") == 1,
            15,
            "forged hello counted",
        )
        assert value(scrape(worker, TOKEN), "huiyuan_ingest_dead_letters_total", code="forged") == 1

        # an exception HQ staff must look at shows until it is closed
        row = HqException.create(kind="overdraft", store=store, created_at=NOW)
        assert value(scrape(api, TOKEN), "huiyuan_exceptions_open", kind="overdraft") == 1
        HqException.update(status="closed").where(HqException.id == row.id).execute()
        assert value(scrape(api, TOKEN), "huiyuan_exceptions_open", kind="overdraft") == 0

        # the broker goes: the worker says so while it keeps trying
        own_mosquitto.stop()
        wait_until(
            lambda: value(scrape(worker, TOKEN), "huiyuan_ingest_mqtt_connected") == 0,
            15,
            "worker disconnected",
        )
    finally:
        edge.close()
        db.close()
