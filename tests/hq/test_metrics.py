"""HQ's /metrics: who may read it, and what the gauges read from the database (on SQLite
and PostgreSQL). The HQ API and an ingest worker scraped as real processes while a store
talks to them: tests/sync/test_metrics.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hq.api import create_app
from hq.config import HqConfig
from hq.metrics import HqCollector
from hq.models import DeadLetter, HeldItem, HqException, Store, bind, open_database
from tests.metrics_helpers import parse, total, value

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
