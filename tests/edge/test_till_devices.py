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
    status = till_client.get("/api/v1/status").json
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
    assert "重印" in text
