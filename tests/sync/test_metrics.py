"""A store's two metrics endpoints scraped over HTTP from the real processes: the till API
(``huiyuan-edge serve``) and the sync agent (``huiyuan-edge serve-sync``), with HQ's
ingest worker coming and going and the broker going away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import free_port
from tests.metrics_helpers import scrape, try_scrape, value
from tests.sync.conftest import new_code
from tests.sync.helpers import ROOT, HqProcess, init_hq, store_toml, wait_until

SALE = {"lines": [{"sku": "P0001", "qty": 1}], "tenders": [{"kind": "cash", "amount": 100000}]}


class EdgeProcess:
    def __init__(self, config: Path, command: str, log: Path) -> None:
        self._log = log.open("ab")
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "-c", str(config), command],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture
def running() -> Iterator[list]:
    started: list = []
    yield started
    for proc in reversed(started):
        proc.stop()


def _post(url: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=10) as res:  # noqa: S310 - the local till
        return res.status, json.loads(res.read() or b"{}")


def test_a_store_s_metrics_follow_hq_going_and_coming_and_a_printer_fault(
    tmp_path, own_mosquitto, running
):
    code = new_code("X")
    till_port, sync_port = free_port(), free_port()
    config = store_toml(tmp_path / "store", code, own_mosquitto.url)
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f"\n[http]\nport = {till_port}\n\n[metrics]\nsync_port = {sync_port}\n")
    cli = [sys.executable, "-m", "edge.cli", "-c", str(config)]
    subprocess.run(
        [*cli, "demo-data", "--members", "2"], check=True, capture_output=True, timeout=60
    )
    db_url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    init_hq(db_url).close()

    running.append(EdgeProcess(config, "serve", tmp_path / "till.log"))
    running.append(EdgeProcess(config, "serve-sync", tmp_path / "sync.log"))
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
    hq = HqProcess(db_url, own_mosquitto.url, "hq-metrics", tmp_path / "hq.log")
    running.append(hq)
    wait_until(
        lambda: value(scrape(till_metrics), "huiyuan_outbox_pending_items") == 0, 30, "drained"
    )
    got = scrape(till_metrics)
    assert value(got, "huiyuan_outbox_acked_through") == backlog
    assert value(got, "huiyuan_outbox_oldest_pending_age_seconds") == 0
    assert value(got, "huiyuan_outbox_last_ack_timestamp_seconds") > 0
    wait_until(lambda: value(scrape(sync_metrics), "huiyuan_sync_hq_online") == 1, 15, "HQ online")
    assert value(scrape(sync_metrics), "huiyuan_sync_acked_through") == backlog

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
