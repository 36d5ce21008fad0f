"""HQ's /metrics: who may read it, what the gauges read from the database, and the HQ API
and an ingest worker scraped over HTTP as the real processes while a store talks to them."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from core import protocol as p
from core.ids import uuid7
from core.rules import DEMO_RULES
from hq.api import create_app
from hq.config import HqConfig
from hq.metrics import HqCollector
from hq.models import DeadLetter, HeldItem, HqException, Store, bind, open_database
from hq.rules import publish_rules
from tests.broker import free_port
from tests.hq.edge_sim import EdgeSim, Items, wait_until
from tests.metrics_helpers import fetch, parse, scrape, total, try_scrape, value

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "prometheus-scrapes-with-this-token"  # noqa: S105
NOW = dt.datetime(2026, 12, 4, 12, 0, 0)


def _token_file(tmp_path: Path, token: str = TOKEN) -> Path:
    path = tmp_path / "metrics-token"
    path.write_text(token + "\n", encoding="utf-8")
    return path


def _client(hq_db, hq_db_url: str, token_file: str = ""):
    config = HqConfig(database_url=hq_db_url, metrics_token_file=token_file)
    return create_app(config, db=hq_db).test_client()


# ---- who may read --------------------------------------------------------------------------


def test_without_a_token_configured_hq_metrics_is_not_there(hq_db, hq_db_url, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    res = _client(hq_db, hq_db_url).get("/metrics", headers={"Authorization": "Bearer x"})
    assert res.status_code == 404
    assert b"huiyuan_" not in res.data


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token-of-some-length", f"Basic {TOKEN}", f"Bearer {TOKEN}x"]
)
def test_hq_metrics_refuses_a_missing_or_wrong_token(hq_db, hq_db_url, tmp_path, header):
    client = _client(hq_db, hq_db_url, str(_token_file(tmp_path)))
    res = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert res.status_code == 401
    assert res.headers["WWW-Authenticate"] == "Bearer"
    assert b"huiyuan_" not in res.data


def test_hq_metrics_takes_the_token_systemd_hands_over(hq_db, hq_db_url, tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    _token_file(creds)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    res = _client(hq_db, hq_db_url).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code == 200
    assert res.headers["Content-Type"].startswith("text/plain; version=")
    assert value(parse(res.get_data(as_text=True)), "huiyuan_hq_database_up") == 1


def test_a_token_too_short_closes_hq_metrics_rather_than_opening_it(hq_db, hq_db_url, tmp_path):
    client = _client(hq_db, hq_db_url, str(_token_file(tmp_path, "short")))
    res = client.get("/metrics", headers={"Authorization": "Bearer short"})
    assert res.status_code == 503
    assert b"huiyuan_" not in res.data


# ---- what the gauges read --------------------------------------------------------------------


def test_the_collector_reads_backlog_held_items_dead_letters_and_exceptions(hq_db):
    Store.create(
        code="S001", reported_seq=25, acked_through=20, online=True, last_seen=NOW, created_at=NOW
    )
    Store.create(code="S002", reported_seq=3, acked_through=3, created_at=NOW)
    for seq, minutes in ((23, 10), (24, 4)):
        HeldItem.create(
            store="S001",
            epoch=1,
            seq=seq,
            item={"seq": seq},
            received_at=NOW - dt.timedelta(minutes=minutes),
        )
    for code in ("forged", "forged", "malformed", "bad_version"):
        DeadLetter.create(
            topic="hy/v1/S001/up/tx",
            store="S001",
            code=code,
            reason="test",
            payload=b"{}",
            payload_size=2,
            received_at=NOW,
        )
    for kind, status in (
        ("overdraft", "open"),
        ("overdraft", "closed"),
        ("balance_mismatch", "open"),
    ):
        HqException.create(kind=kind, status=status, store="S001", created_at=NOW)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(HqCollector(hq_db, clock=lambda: NOW))
    got = parse(generate_latest(registry).decode())

    assert value(got, "huiyuan_hq_database_up") == 1
    assert value(got, "huiyuan_store_backlog_items", store="S001") == 5
    assert value(got, "huiyuan_store_backlog_items", store="S002") == 0
    assert value(got, "huiyuan_store_acked_through", store="S001") == 20
    assert value(got, "huiyuan_store_online", store="S001") == 1
    assert value(got, "huiyuan_store_online", store="S002") == 0
    seen = NOW.replace(tzinfo=dt.UTC).timestamp()
    assert value(got, "huiyuan_store_last_seen_timestamp_seconds", store="S001") == seen
    assert value(got, "huiyuan_store_last_seen_timestamp_seconds", store="S002") is None
    assert value(got, "huiyuan_store_held_items", store="S001") == 2
    assert value(got, "huiyuan_store_oldest_held_item_age_seconds", store="S001") == 600
    assert value(got, "huiyuan_store_oldest_held_item_age_seconds", store="S002") == 0
    assert value(got, "huiyuan_dead_letters_total", code="forged") == 2
    assert value(got, "huiyuan_dead_letters_total", code="bad_version") == 1
    assert value(got, "huiyuan_dead_letters_total", code="stale_epoch") == 0  # there from the start
    assert value(got, "huiyuan_exceptions_open", kind="overdraft") == 1
    assert value(got, "huiyuan_exceptions_total", kind="overdraft") == 2
    assert value(got, "huiyuan_exceptions_open", kind="balance_mismatch") == 1
    assert value(got, "huiyuan_exceptions_open", kind="unknown_member") == 0


def test_a_database_hq_cannot_reach_shows_as_database_up_0(tmp_path):
    unreachable = open_database(f"sqlite:///{tmp_path / 'no-such-dir' / 'hq.sqlite3'}")
    bind(unreachable, create=False)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HqCollector(unreachable))
    got = parse(generate_latest(registry).decode())
    assert value(got, "huiyuan_hq_database_up") == 0
    assert total(got, "huiyuan_store_backlog_items") == 0


# ---- the real processes ----------------------------------------------------------------------


class Process:
    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self._log = log.open("ab")
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hq.cli", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture
def hq_processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in started:
        proc.stop()


def test_hq_api_and_ingest_worker_metrics_move_as_a_store_talks(
    tmp_path, own_mosquitto, hq_processes
):
    db_url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    db = open_database(db_url)
    bind(db)
    publish_rules(db, DEMO_RULES.to_dict())
    env = {"HY_HQ_DATABASE_URL": db_url, "HY_MQTT_URL": own_mosquitto.url}
    env["HY_HQ_METRICS_TOKEN_FILE"] = str(_token_file(tmp_path))
    env.pop("CREDENTIALS_DIRECTORY", None)
    api_port, worker_port = free_port(), free_port()
    hq_processes.append(Process(["serve-api", "--port", str(api_port)], tmp_path / "api.log", env))
    hq_processes.append(
        Process(
            ["serve-ingest", "--client-id", "hq-metrics", "--metrics-port", str(worker_port)],
            tmp_path / "ingest.log",
            env,
        )
    )
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
    edge = EdgeSim(own_mosquitto.url, store)
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
