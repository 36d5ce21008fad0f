"""The devices blueprint: states, checks, reader long poll; JSON 4xx/503, never 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from core.errors import DeviceError
from edge.devices import discovery
from edge.devices.api import EXTENSION_KEY, devices_bp
from edge.devices.config import DevicesConfig
from edge.devices.manager import DeviceManager

from .conftest import make_receipt, wait_for


@pytest.fixture
def manager(tmp_path: Path):
    m = DeviceManager.from_config(
        DevicesConfig.from_dict({"reconnect_min_s": 0.01, "reconnect_max_s": 0.05}), tmp_path
    )
    m.start()
    yield m
    m.stop()


@pytest.fixture
def client(manager):
    app = Flask(__name__)
    app.extensions[EXTENSION_KEY] = manager
    app.register_blueprint(devices_bp)
    return app.test_client()


def test_states(client, manager):
    wait_for(lambda: manager.states()["printer"]["state"] == "ready")
    body = client.get("/api/v1/devices").get_json()
    assert body["printer"]["state"] == "ready"
    assert body["printer"]["queue_depth"] == 0
    assert set(body) == {"printer", "reader", "display"}


def test_printer_test_page(client, manager):
    response = client.post("/api/v1/devices/printer/test")
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    wait_for(lambda: manager.print_job(job_id).status == "done")


def test_display_test(client, manager):
    assert client.post("/api/v1/devices/display/test").status_code == 202
    wait_for(lambda: manager.display_worker.current == manager.formatter.test_pattern())


def test_reader_long_poll(client, manager):
    wait_for(lambda: manager.states()["reader"]["state"] == "ready")
    assert client.get("/api/v1/devices/reader/next?timeout=0.05").status_code == 204
    manager.virtual_reader.swipe("0012345678")
    response = client.get("/api/v1/devices/reader/next?timeout=2")
    assert response.status_code == 200
    assert response.get_json() == {"card_no": "0012345678"}


@pytest.mark.parametrize("timeout", ["abc", "31", "-1", "nan"])
def test_reader_bad_timeout(client, timeout):
    response = client.get(f"/api/v1/devices/reader/next?timeout={timeout}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid"


def test_no_manager_is_503_json():
    app = Flask(__name__)
    app.register_blueprint(devices_bp)
    response = app.test_client().get("/api/v1/devices")
    assert response.status_code == 503
    assert response.get_json()["error"] == "device"


def test_unexpected_errors_are_json_not_500(client, manager, monkeypatch):
    def broken() -> dict:
        raise DeviceError("printer exploded")

    monkeypatch.setattr(manager, "states", broken)
    response = client.get("/api/v1/devices")
    assert response.status_code == 503
    assert response.get_json() == {"error": "device", "message": "printer exploded"}

    def buggy() -> str:
        raise KeyError("oops")

    monkeypatch.setattr(manager, "print_test_page", buggy)
    response = client.post("/api/v1/devices/printer/test")
    assert response.status_code == 503
    assert "KeyError" in response.get_json()["message"]


def test_rehearsal_faults_through_the_api(client, manager):
    wait_for(lambda: manager.states()["reader"]["state"] == "ready")
    response = client.post("/api/v1/devices/virtual/reader/garbage")
    assert response.status_code == 202
    wait_for(lambda: manager.reader_worker.rejected_reads == 1)
    assert "unreadable card data" in manager.states()["reader"]["last_error"]
    assert client.post("/api/v1/devices/virtual/display/unplug").status_code == 202
    manager.display_total(100)
    wait_for(lambda: "unplugged" in (manager.states()["display"]["last_error"] or ""))
    assert client.post("/api/v1/devices/virtual/display/plug").status_code == 202
    wait_for(lambda: manager.states()["display"]["state"] == "ready")
    assert client.post("/api/v1/devices/virtual/printer/fail_write").status_code == 202
    job_id = manager.print_receipt(make_receipt(opens_drawer=False))
    wait_for(lambda: manager.print_job(job_id).status == "done")
    assert manager.print_job(job_id).attempts == 2  # the injected failure, then the print


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/v1/devices/virtual/printer/explode", None, 400, "action"),
        ("/api/v1/devices/virtual/display/paper_out", None, 400, "action"),
        ("/api/v1/devices/virtual/reader/swipe", {"card_no": ""}, 400, "card_no"),
        ("/api/v1/devices/virtual/reader/swipe", {"card_no": "卡"}, 400, "card_no"),
        ("/api/v1/devices/virtual/scale/unplug", None, 404, "role"),
    ],
)
def test_bad_rehearsals_are_4xx(client, path, body, status, field):
    response = client.post(path, json=body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["field"] == field


def test_faults_cannot_be_injected_into_a_real_device(tmp_path):
    cfg = DevicesConfig.from_dict(
        {"display": {"driver": "serial", "profile": "cd5220_generic", "serial_port": "/dev/x"}}
    )
    m = DeviceManager.from_config(cfg, tmp_path)
    app = Flask(__name__)
    app.extensions[EXTENSION_KEY] = m
    app.register_blueprint(devices_bp)
    response = app.test_client().post("/api/v1/devices/virtual/display/unplug")
    assert response.status_code == 409
    assert "real device (serial)" in response.get_json()["message"]
    m.stop()


def test_scan_from_the_till_api(client, monkeypatch):
    monkeypatch.setattr(discovery, "scan_usb", lambda: [(0xFFFF, 0x0035, "bus 1 address 7", 0)])

    def no_serial():
        raise DeviceError("pyserial is not installed")

    monkeypatch.setattr(discovery, "scan_serial", no_serial)
    body = client.get("/api/v1/devices/scan").get_json()
    assert body["devices"] == [
        {
            "bus": "usb",
            "usb_id": "ffff:0035",
            "where": "bus 1 address 7",
            "description": "",
            "profiles": ["syc_id_ic_125khz"],
        }
    ]
    assert body["problems"] == ["serial: pyserial is not installed"]
