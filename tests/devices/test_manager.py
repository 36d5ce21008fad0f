"""DeviceManager: what the till calls never raises or waits, and the whole chain works."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.devices.config import DevicesConfig
from edge.devices.display import encode_frame
from edge.devices.escpos_decode import decode
from edge.devices.manager import DeviceManager
from edge.devices.printer import PAPER_OUT, PrinterWorker

from .conftest import make_receipt, wait_for

FAST = {"reconnect_min_s": 0.01, "reconnect_max_s": 0.05}


@pytest.fixture
def manager(tmp_path: Path):
    m = DeviceManager.from_config(DevicesConfig.from_dict(FAST), tmp_path)
    m.start()
    yield m
    m.stop()


def test_demo_store_defaults_run_everything_virtually(manager):
    wait_for(lambda: all(s["state"] == "ready" for s in manager.states().values()))
    states = manager.states()
    assert set(states) == {"printer", "reader", "display"}
    assert states["printer"]["profile"] == "virtual_printer_80mm"
    assert states["printer"]["queue_depth"] == 0
    assert states["reader"]["last_error"] is None


def test_print_receipt_returns_at_once_and_prints(manager, tmp_path):
    started = time.perf_counter()
    job_id = manager.print_receipt(make_receipt())
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05  # the till does not wait for the printer
    wait_for(lambda: manager.print_job(job_id).status == "done")
    out = decode(manager.virtual_printer.output)
    assert out.drawer_kicks == 1  # a cash sale opens the drawer
    assert "virtual_printer.txt" in {p.name for p in tmp_path.iterdir()}
    assert "应付" in (tmp_path / "virtual_printer.txt").read_text(encoding="utf-8")


def test_reprint_is_marked_and_never_opens_the_drawer(manager):
    job_id = manager.reprint(make_receipt(opens_drawer=True))
    wait_for(lambda: manager.print_job(job_id).status == "done")
    out = decode(manager.virtual_printer.output)
    assert out.drawer_kicks == 0
    assert any("重打" in line for line in out.lines)


def test_paper_out_is_reported_and_the_receipt_waits(manager):
    printer = manager.virtual_printer
    printer.set_paper(PAPER_OUT)
    job_id = manager.print_receipt(make_receipt())
    wait_for(lambda: manager.states()["printer"]["state"] == "paper_out")
    assert manager.states()["printer"]["queue_depth"] == 1
    printer.set_paper(2)
    wait_for(lambda: manager.print_job(job_id).status == "done")
    wait_for(lambda: manager.states()["printer"]["queue_depth"] == 0)


def test_receipts_queued_while_stopped_print_after_restart(tmp_path):
    cfg = DevicesConfig.from_dict(FAST)
    first = DeviceManager.from_config(cfg, tmp_path)
    first.virtual_printer.unplug()
    first.start()
    job_id = first.print_receipt(make_receipt())
    first.stop()  # the box is switched off with the receipt still queued
    second = DeviceManager.from_config(cfg, tmp_path)
    second.start()
    try:
        wait_for(lambda: second.print_job(job_id).status == "done")
    finally:
        second.stop()


def test_calls_never_raise_even_when_the_queue_is_gone(tmp_path):
    m = DeviceManager.from_config(DevicesConfig.from_dict(FAST), tmp_path)
    m.start()
    m.stop()  # the queue's database is closed now
    job_id = m.print_receipt(make_receipt())
    assert job_id.startswith("failed-")
    assert "print queue failed" in m.states()["printer"]["last_error"]
    assert m.reprint(make_receipt()).startswith("failed-")
    m.display_total(100)
    m.open_drawer()
    assert m.states()["printer"]["queue_depth"] is None


def test_display_calls_show_frames(manager):
    display = manager.virtual_display
    manager.display_item("可口可乐", 350)
    manager.display_total(350)
    manager.display_change(500, 150)
    manager.display_greeting("张*", "金卡")
    wait_for(lambda: manager.display_worker.current == manager.formatter.greeting("张*", "金卡"))
    assert display.output.endswith(
        encode_frame(manager.formatter.greeting("张*", "金卡"), manager.display_profile)
    )


def test_open_drawer(manager):
    wait_for(lambda: manager.states()["printer"]["state"] == "ready")
    manager.open_drawer()
    wait_for(lambda: decode(manager.virtual_printer.output).drawer_kicks == 1)


def test_cards_reach_the_till(manager):
    seen: list[str] = []
    manager.on_card(seen.append)
    wait_for(lambda: manager.states()["reader"]["state"] == "ready")
    manager.virtual_reader.swipe("0012345678")
    assert manager.next_card(2) == "0012345678"
    assert seen == ["0012345678"]


def test_disabled_roles(tmp_path):
    cfg = DevicesConfig.from_dict({"display": {"enabled": False}, "reader": {"enabled": False}})
    m = DeviceManager.from_config(cfg, tmp_path)
    m.start()
    try:
        assert m.states()["display"]["state"] == "disabled"
        m.display_total(100)  # a no-op, not an error
        assert m.virtual_display.output == b""
        assert m.next_card(0.01) is None
    finally:
        m.stop()


def test_real_drivers_without_devices_do_not_stop_the_till(tmp_path):
    cfg = DevicesConfig.from_dict(
        {
            **FAST,
            "printer": {
                "driver": "network",
                "profile": "epson_tm_t88v_chinese",
                "host": "127.0.0.1",
                "tcp_port": 1,
                "timeout_s": 0.2,
            },
            "display": {
                "driver": "serial",
                "profile": "cd5220_generic",
                "serial_port": "/dev/nonexistent-tty",
            },
        }
    )
    m = DeviceManager.from_config(cfg, tmp_path)
    m.start()
    try:
        job_id = m.print_receipt(make_receipt())
        m.display_total(100)
        wait_for(
            lambda: m.states()["printer"]["last_error"] and m.states()["display"]["last_error"]
        )
        assert m.print_job(job_id).status == "queued"
    finally:
        m.stop()


def test_usb_reader_gets_the_profile_s_key_repeat_quirk(tmp_path):
    cfg = DevicesConfig.from_dict({"reader": {"driver": "usb_hid", "profile": "generic_msr90"}})
    m = DeviceManager.from_config(cfg, tmp_path)
    try:
        assert m.card_reader.decoder.repeats_without_release is True
        assert (m.card_reader.vendor_id, m.card_reader.product_id) == (0x0801, 0x0002)
    finally:
        m.stop()


def test_a_cash_sale_opens_the_drawer_while_its_receipt_waits_for_paper(manager):
    printer = manager.virtual_printer
    printer.set_paper(PAPER_OUT)
    wait_for(lambda: manager.states()["printer"]["state"] == "ready")
    job_id = manager.print_receipt(make_receipt(opens_drawer=True))
    # the real-time pulse (DLE DC4 1): ESC p would wait in the offline printer's buffer
    wait_for(lambda: printer.output == b"\x10\x14\x01\x00\x01")
    assert manager.print_job(job_id).status == "queued"
    printer.set_paper(2)
    wait_for(lambda: manager.print_job(job_id).status == "done")
    assert decode(printer.output).drawer_kicks == 1  # the receipt itself carries no kick


def test_without_a_real_time_pulse_paper_out_drops_the_kick_and_says_so(tmp_path):
    cfg = DevicesConfig.from_dict({**FAST, "printer": {"profile": "virtual_printer_58mm_raster"}})
    m = DeviceManager.from_config(cfg, tmp_path)
    m.virtual_printer.set_paper(PAPER_OUT)
    m.start()
    try:
        wait_for(lambda: m.states()["printer"]["state"] == "ready")
        m.open_drawer()
        wait_for(lambda: "drawer not opened" in (m.states()["printer"]["last_error"] or ""))
        assert m.states()["printer"]["state"] == "paper_out"
        assert m.virtual_printer.output == b""
    finally:
        m.stop()


def test_a_receipt_printed_long_after_its_sale_does_not_open_the_drawer(manager, monkeypatch):
    monkeypatch.setattr(PrinterWorker, "DRAWER_MAX_AGE_S", 0.2)
    printer = manager.virtual_printer
    printer.unplug()
    job_id = manager.print_receipt(make_receipt(opens_drawer=True))
    time.sleep(0.4)  # the printer stays away longer than a cashier waits
    printer.plug()
    wait_for(lambda: manager.print_job(job_id).status == "done")
    out = decode(printer.output)
    assert "应付" in "\n".join(out.lines)
    assert out.drawer_kicks == 0
