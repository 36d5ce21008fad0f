"""The technician CLI: profiles, scan, assign, write-config, test."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.errors import ConfigError, DeviceError
from edge.devices import cli as cli_module
from edge.devices import discovery
from edge.devices.cli import devices
from edge.devices.config import DevicesConfig

from .fake_usb import FakeHidKeyboardBackend


@pytest.fixture
def run(tmp_path: Path):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(devices, ["--data-dir", str(tmp_path / "data"), *args])

    return invoke


def test_profiles_lists_every_model(run):
    result = run("profiles")
    assert result.exit_code == 0, result.output
    assert "epson_tm_t20iii" in result.output
    assert "04b8:0e28" in result.output
    assert "(unverified)" in result.output
    result = run("profiles", "--kind", "display")
    assert "cd5220_generic" in result.output and "epson_tm_t20iii" not in result.output


def test_profiles_exits_with_config_error_for_an_invalid_file(run, tmp_path):
    (tmp_path / "bad.json").write_text('{"kind": "printer"}', encoding="utf-8")
    result = CliRunner().invoke(devices, ["--profiles-dir", str(tmp_path), "profiles"])
    assert result.exit_code == ConfigError.code
    assert "bad.json: manufacturer: required" in result.output


def test_scan_matches_usb_devices_through_pyusb(run, monkeypatch):
    known = FakeHidKeyboardBackend(0xFFFF, 0x0035)
    unknown = FakeHidKeyboardBackend(0x1234, 0xABCD)

    def fake_scan_usb():
        return discovery.scan_usb(backend=known) + discovery.scan_usb(backend=unknown)

    monkeypatch.setattr(cli_module, "scan_usb", fake_scan_usb)
    monkeypatch.setattr(
        cli_module, "scan_serial", lambda: [("/dev/ttyUSB0", "USB-Serial CH340", 0x1A86, 0x7523)]
    )
    result = run("scan")
    assert result.exit_code == 0, result.output
    assert "ffff:0035 bus 1 address 7" in result.output
    assert "-> syc_id_ic_125khz" in result.output
    assert "1234:abcd" in result.output and "未知设备 / unknown device" in result.output
    assert "/dev/ttyUSB0" in result.output
    result = run("scan", "--json")
    assert '"usb_id": "1234:abcd"' in result.output


def test_scan_without_libusb_still_lists_serial_ports(run, monkeypatch):
    def no_usb():
        raise DeviceError("pyusb found no libusb backend")

    monkeypatch.setattr(cli_module, "scan_usb", no_usb)
    monkeypatch.setattr(cli_module, "scan_serial", lambda: [("/dev/ttyS0", "n/a", None, None)])
    result = run("scan")
    assert result.exit_code == 0
    assert "no libusb backend" in result.output
    assert "/dev/ttyS0" in result.output


def test_assign_and_write_config(run, tmp_path):
    assert (
        run("assign", "printer", "epson_tm_t88v_chinese", "--host", "192.168.1.50").exit_code == 0
    )
    assert run("assign", "reader", "syc_id_ic_125khz").exit_code == 0
    result = run("assign", "display", "cd5220_generic", "--port", "/dev/ttyUSB0")
    assert result.exit_code == 0, result.output
    assert "CD5220" in result.output
    target = tmp_path / "devices.toml"
    result = run("write-config", str(target))
    assert result.exit_code == 0, result.output
    cfg = DevicesConfig.from_dict(tomllib.loads(target.read_text(encoding="utf-8"))["devices"])
    assert (cfg.printer.driver, cfg.printer.host) == ("network", "192.168.1.50")
    assert (cfg.reader.driver, cfg.reader.profile) == ("usb_hid", "syc_id_ic_125khz")
    assert (cfg.display.driver, cfg.display.serial_port) == ("serial", "/dev/ttyUSB0")
    assert run("write-config", str(target)).exit_code == ConfigError.code  # no silent overwrite
    assert run("write-config", "--force", str(target)).exit_code == 0


def test_assign_rejects_a_wrong_profile_or_missing_port(run):
    result = run("assign", "reader", "epson_tm_t20iii")
    assert result.exit_code == ConfigError.code
    assert "not a reader" in result.output
    result = run("assign", "display", "cd5220_generic")  # serial only, no --port
    assert result.exit_code == ConfigError.code
    assert "devices.display.driver" in result.output


def test_test_printer_prints_the_test_page(run, tmp_path):
    result = run("test", "printer", "--timeout", "5")
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert "PRINTER TEST" in (tmp_path / "data" / "virtual_printer.txt").read_text(encoding="utf-8")


def test_test_display(run):
    result = run("test", "display", "--timeout", "5")
    assert result.exit_code == 0, result.output


def test_test_reader_without_a_swipe_fails_with_the_device_code(run):
    result = run("test", "reader", "--timeout", "0.2")
    assert result.exit_code == DeviceError.code
    assert "no card read" in result.output


def test_test_with_a_config_file(run, tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text(
        '[devices.printer]\nprofile = "virtual_printer_58mm_raster"\n'
        'font_path = "/nonexistent.ttc"\n',
        encoding="utf-8",
    )
    result = run("test", "printer", "--config", str(config), "--timeout", "0.5")
    assert result.exit_code == DeviceError.code
    assert "state=error" in result.output
    assert "CJK font not found" in result.output
