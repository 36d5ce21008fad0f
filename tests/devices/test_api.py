"""The devices blueprint: states, checks, reader long poll; JSON 4xx/503, never 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from core.errors import DeviceError
from edge.devices.api import EXTENSION_KEY, devices_bp
from edge.devices.config import DevicesConfig
from edge.devices.manager import DeviceManager

from .conftest import wait_for


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
