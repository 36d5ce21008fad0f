"""The till and its devices: a receipt per sale, and a sale that never waits on a printer."""

from __future__ import annotations

import pytest

from edge.api import create_app
from edge.devices.config import DevicesConfig
from edge.devices.manager import DeviceManager
from edge.devices.printer import PAPER_OK, PAPER_OUT
from tests.devices.conftest import wait_for
from tests.edge.conftest import sign_in

SALE = {
    "member": {"card_no": "C0001"},
    "lines": [{"sku": "P0002", "qty": 2}, {"sku": "P0009"}],
    "tenders": [{"kind": "cash", "amount": 20000}],
}


@pytest.fixture
def devices(demo_till, tmp_path):
    cfg = DevicesConfig.from_dict({"reconnect_min_s": 0.05, "reconnect_max_s": 0.2})
    manager = DeviceManager.from_config(cfg, tmp_path / "devices")
    manager.start()
    yield manager
    manager.stop()


@pytest.fixture
def till_client(demo_till, devices):
    return create_app(demo_till, devices).test_client()


def test_a_sale_prints_its_receipt_and_shows_the_change(till_client, devices):
    headers = sign_in(till_client)
    res = till_client.post("/api/v1/sales", headers=headers, json=SALE)
    assert res.status_code == 201, res.json
    printer = devices.virtual_printer
    wait_for(lambda: any("销售小票" in line for line in printer.text_lines()))
    text = "\n".join(printer.text_lines())
    assert "蒙牛纯牛奶" in text and "张*" in text
    assert "张三" not in text  # the member's name is masked on paper


def test_paper_out_never_fails_a_sale_and_the_receipt_prints_later(till_client, devices):
    printer = devices.virtual_printer
    printer.set_paper(PAPER_OUT)
    headers = sign_in(till_client)
    res = till_client.post("/api/v1/sales", headers=headers, json=SALE)
    assert res.status_code == 201, res.json
    wait_for(lambda: devices.states()["printer"]["state"] == "paper_out")
    assert devices.states()["printer"]["queue_depth"] == 1
    status = till_client.get("/api/v1/status", headers=headers).json
    assert status["devices"]["printer"]["state"] == "paper_out"
    printer.set_paper(PAPER_OK)
    wait_for(lambda: devices.states()["printer"]["queue_depth"] == 0, timeout=5)
    assert any("销售小票" in line for line in printer.text_lines())


def test_unplugged_printer_reprints_on_return(till_client, devices):
    printer = devices.virtual_printer
    printer.unplug()
    headers = sign_in(till_client)
    sale = till_client.post("/api/v1/sales", headers=headers, json=SALE)
    assert sale.status_code == 201
    again = till_client.post(f"/api/v1/sales/{sale.json['sale_id']}/reprint", headers=headers)
    assert again.status_code == 200 and again.json["print_job"]
    printer.plug()
    wait_for(lambda: devices.states()["printer"]["queue_depth"] == 0, timeout=5)
    text = "\n".join(printer.text_lines())
    assert text.count("销售小票") == 2
    assert "重打" in text


def test_a_swipe_on_the_store_reader_becomes_a_member_lookup(till_client, devices):
    headers = sign_in(till_client)
    wait_for(lambda: devices.states()["reader"]["state"] == "ready")
    swiped = till_client.post(
        "/api/v1/devices/virtual/reader/swipe", headers=headers, json={"card_no": "C0001"}
    )
    assert swiped.status_code == 202, swiped.json
    # what the cashier screen does: wait for a read, then look the card up
    read = till_client.get("/api/v1/devices/reader/next?timeout=2", headers=headers)
    assert read.status_code == 200 and read.json == {"card_no": "C0001"}
    member = till_client.get(f"/api/v1/members/by-card/{read.json['card_no']}", headers=headers)
    assert member.status_code == 200 and member.json["member"]["masked_name"] == "张*"
    found = member.json["member"]
    greeting = devices.formatter.greeting("张*", found["tier"] or found["card_type"])
    wait_for(lambda: devices.display_worker.current == greeting)


def test_card_reads_and_device_checks_need_a_signed_in_cashier(till_client, devices):
    devices.virtual_reader.swipe("C0001")
    for method, path in (
        ("get", "/api/v1/devices/reader/next?timeout=0"),
        ("post", "/api/v1/devices/printer/test"),
        ("post", "/api/v1/devices/virtual/printer/unplug"),
        ("get", "/api/v1/devices/scan"),
        ("get", "/api/v1/devices"),  # the states too, as GET /api/v1/status
    ):
        res = getattr(till_client, method)(path)
        assert res.status_code == 401, (path, res.json)
        assert res.json["error"]
    assert devices.next_card(2) == "C0001"  # nobody took the read


def test_a_rehearsed_paper_out_through_the_api(till_client, devices):
    headers = sign_in(till_client)
    res = till_client.post("/api/v1/devices/virtual/printer/paper_out", headers=headers)
    assert res.status_code == 202
    sale = till_client.post("/api/v1/sales", headers=headers, json=SALE)
    assert sale.status_code == 201
    wait_for(
        lambda: (
            till_client.get("/api/v1/devices", headers=headers).json["printer"]["state"]
            == "paper_out"
        )
    )
    till_client.post("/api/v1/devices/virtual/printer/paper_ok", headers=headers)
    wait_for(lambda: devices.states()["printer"]["queue_depth"] == 0, timeout=5)
    assert any("销售小票" in line for line in devices.virtual_printer.text_lines())
