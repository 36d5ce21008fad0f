"""The till's /metrics: who may read it, the checkout histogram, the outbox as the till
reads it from SQLite, the devices' states, and the [metrics] section."""

from __future__ import annotations

import ipaddress

import pytest

from edge.api import create_app
from edge.config import config_problems
from edge.models import Outbox
from edge.sync.apply import put_setting
from tests.devices.conftest import wait_for
from tests.edge.conftest import make_config, sign_in
from tests.edge.test_till_devices import devices  # noqa: F401 - the virtual devices fixture
from tests.metrics_helpers import parse, value

SALE = {"lines": [{"sku": "P0001", "qty": 1}], "tenders": [{"kind": "cash", "amount": 100000}]}
TOKEN = "a-token-for-prometheus-0123456789"  # noqa: S105
LAN = {"REMOTE_ADDR": "192.168.1.20"}


def scrape(client, **kwargs):
    res = client.get("/metrics", **kwargs)
    assert res.status_code == 200, res.get_data(as_text=True)
    return parse(res.get_data(as_text=True))


def test_without_a_token_only_this_box_reads_till_metrics(client):
    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    res = client.get("/metrics", environ_base=LAN)
    assert res.status_code == 403
    assert b"huiyuan_" not in res.data


def test_with_a_token_every_scrape_needs_it(demo_till, tmp_path):
    token_file = tmp_path / "metrics-token"
    token_file.write_text(TOKEN)
    demo_till.config.extra["metrics"] = {"token_file": str(token_file)}
    app = create_app(demo_till)
    client = app.test_client()
    assert client.get("/metrics", environ_base=LAN).status_code == 403  # the door comes first
    # Prometheus scrapes from a network named in http.allow
    app.extensions["huiyuan.networks"] += (ipaddress.ip_network("192.168.1.0/24"),)
    assert client.get("/metrics").status_code == 401  # loopback too
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    got = scrape(client, environ_base=LAN, headers={"Authorization": f"Bearer {TOKEN}"})
    assert value(got, "huiyuan_outbox_pending_items") is not None


def test_each_checkout_is_timed_by_outcome(client):
    headers = sign_in(client)
    before = scrape(client)
    assert value(before, "huiyuan_checkout_seconds_count", outcome="completed") == 0
    assert client.post("/api/v1/sales", json=SALE, headers=headers).status_code == 201
    sale_id = "0192f0e0-0000-7000-8000-000000000001"
    again = {**SALE, "sale_id": sale_id}
    assert client.post("/api/v1/sales", json=again, headers=headers).status_code == 201
    assert client.post("/api/v1/sales", json=again, headers=headers).status_code == 200
    bad = {**SALE, "tenders": [{"kind": "cash", "amount": 1}]}  # short of the total
    assert client.post("/api/v1/sales", json=bad, headers=headers).status_code == 422
    got = scrape(client)
    assert value(got, "huiyuan_checkout_seconds_count", outcome="completed") == 2
    assert value(got, "huiyuan_checkout_seconds_count", outcome="replayed") == 1
    assert value(got, "huiyuan_checkout_seconds_count", outcome="refused") == 1
    assert value(got, "huiyuan_checkout_seconds_count", outcome="error") == 0
    # a quote is a request, not a checkout
    assert client.post("/api/v1/sales/quote", json=SALE, headers=headers).status_code == 200
    got = scrape(client)
    assert value(got, "huiyuan_checkout_seconds_count", outcome="completed") == 2
    assert value(got, "huiyuan_till_requests_total", endpoint="sales.quote_sale", status="2xx") == 1
    assert (
        value(got, "huiyuan_till_requests_total", endpoint="sales.create_sale", status="4xx") == 1
    )


def test_a_request_refused_at_the_door_is_counted(client):
    headers = sign_in(client)
    res = client.post("/api/v1/sales", json={**SALE, "sale_id": "x\x00"}, headers=headers)
    assert res.status_code == 400
    got = scrape(client)
    assert value(got, "huiyuan_checkout_seconds_count", outcome="refused") == 1


def test_the_outbox_backlog_its_oldest_item_and_the_last_ack(client, demo_till, clock):
    headers = sign_in(client)
    first = scrape(client)
    pending = value(first, "huiyuan_outbox_pending_items")
    assert pending == value(first, "huiyuan_outbox_last_seq") > 0  # the demo's registrations
    assert value(first, "huiyuan_outbox_oldest_pending_age_seconds") == 0  # written just now
    assert value(first, "huiyuan_outbox_last_ack_timestamp_seconds") is None  # never acked

    clock.advance(minutes=20)
    assert client.post("/api/v1/sales", json=SALE, headers=headers).status_code == 201
    got = scrape(client)
    assert value(got, "huiyuan_outbox_pending_items") == pending + 1
    assert value(got, "huiyuan_outbox_oldest_pending_age_seconds") == 20 * 60

    # the sync agent records HQ's ack (edge.sync.agent.record_ack): everything but the sale
    acked_at = clock().isoformat(timespec="seconds")
    Outbox.update(acked=True, acked_at=acked_at).where(Outbox.seq <= pending).execute()
    put_setting("sync.acked_through", int(pending))
    clock.advance(minutes=1)
    got = scrape(client)
    assert value(got, "huiyuan_outbox_pending_items") == 1
    assert value(got, "huiyuan_outbox_oldest_pending_age_seconds") == 60
    assert value(got, "huiyuan_outbox_acked_through") == pending
    assert value(got, "huiyuan_outbox_last_ack_timestamp_seconds") == clock().timestamp() - 60


def test_device_states_show_a_printer_out_of_paper(demo_till, devices):  # noqa: F811
    client = create_app(demo_till, devices).test_client()
    wait_for(lambda: devices.states()["printer"]["state"] == "ready")
    got = scrape(client)
    assert value(got, "huiyuan_device_state", role="printer", state="ready") == 1
    assert value(got, "huiyuan_device_state", role="printer", state="paper_out") == 0
    assert value(got, "huiyuan_device_needs_attention", role="printer") == 0
    headers = sign_in(client)
    res = client.post("/api/v1/devices/virtual/printer/paper_out", headers=headers)
    assert res.status_code == 202
    # the printer finds out at its next job
    assert client.post("/api/v1/devices/printer/test", headers=headers).status_code == 202
    wait_for(lambda: devices.states()["printer"]["state"] == "paper_out")
    got = scrape(client)
    assert value(got, "huiyuan_device_state", role="printer", state="paper_out") == 1
    assert value(got, "huiyuan_device_state", role="printer", state="ready") == 0
    assert value(got, "huiyuan_device_needs_attention", role="printer") == 1
    assert value(got, "huiyuan_device_needs_attention", role="display") == 0


def test_no_devices_no_device_series(client):
    got = scrape(client)
    assert not any(name.startswith("huiyuan_device_") for name, _ in got)


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"sync_port": 70000}, "metrics.sync_port: 70000 out of range"),
        ({"port": 9000}, "metrics.port: unknown key"),
        ({"sync_port": "9612"}, "metrics.sync_port: '9612' should be int"),
        ({"token_file": "/no/such/token"}, "metrics.token_file: no such file '/no/such/token'"),
        (
            {"sync_port": 9612, "sync_host": "0.0.0.0"},  # noqa: S104
            "metrics.sync_host: '0.0.0.0' is not loopback: set metrics.token_file",
        ),
    ],
)
def test_metrics_section_problems_are_named(section, problem, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    _, problems = config_problems({"metrics": section})
    assert problems == [problem]


def test_a_good_metrics_section_loads(tmp_path):
    cfg = make_config(tmp_path, metrics={"sync_port": 9612})
    assert cfg.extra["metrics"] == {"sync_port": 9612}
