"""DevicesConfig: defaults run a demo store; errors name the key path."""

from __future__ import annotations

import tomllib

import pytest

from core.errors import ConfigError
from edge.devices.config import DevicesConfig, describe, to_toml


def test_defaults_are_virtual_devices():
    cfg = DevicesConfig.from_dict({})
    assert (cfg.printer.driver, cfg.reader.driver, cfg.display.driver) == ("virtual",) * 3
    assert cfg == DevicesConfig()


def test_every_field_has_a_description():
    rows = describe()
    assert len(rows) > 20
    for path, _default, doc in rows:
        assert doc, path


def test_values_are_read():
    cfg = DevicesConfig.from_dict(
        {
            "printer": {
                "driver": "network",
                "profile": "epson_tm_t88v_chinese",
                "host": "192.168.1.50",
                "header_lines": ["电话 0571-88888888"],
            },
            "display": {
                "driver": "serial",
                "profile": "cd5220_generic",
                "serial_port": "/dev/ttyUSB1",
            },
            "reconnect_max_s": 10,
        }
    )
    assert cfg.printer.host == "192.168.1.50"
    assert cfg.printer.header_lines == ("电话 0571-88888888",)
    assert cfg.reconnect_max_s == 10.0 and isinstance(cfg.reconnect_max_s, float)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"printr": {}}, "devices.printr"),
        ({"printer": {"drvier": "usb"}}, "devices.printer.drvier"),
        ({"printer": {"driver": "bluetooth"}}, "devices.printer.driver"),
        ({"printer": {"tcp_port": "9100"}}, "devices.printer.tcp_port"),
        ({"printer": {"enabled": "yes"}}, "devices.printer.enabled"),
        ({"printer": {"header_lines": "hello"}}, "devices.printer.header_lines"),
        ({"printer": {"profile": "nope"}}, "devices.printer.profile"),
        ({"printer": {"profile": "magtek_dynamag"}}, "devices.printer.profile"),
        ({"printer": {"driver": "network", "profile": "epson_tm_t20iii"}}, "devices.printer.host"),
        (
            {"printer": {"driver": "network", "profile": "xprinter_xp58iih", "host": "h"}},
            "devices.printer.driver",
        ),
        ({"printer": {"qr_size": 40}}, "devices.printer.qr_size"),
        ({"printer": {"usb_vendor_id": "zzzz"}}, "devices.printer.usb_vendor_id"),
        (
            {"reader": {"driver": "serial", "profile": "generic_serial_reader"}},
            "devices.reader.serial_port",
        ),
        (
            {"reader": {"driver": "usb_hid", "profile": "generic_serial_reader"}},
            "devices.reader.driver",
        ),
        ({"display": {"idle_lines": ["a", "b", "c"]}}, "devices.display.idle_lines"),
        ({"reconnect_min_s": 60}, "devices.reconnect_min_s"),
        ({"printer": "usb"}, "devices.printer"),
    ],
)
def test_bad_values_name_the_key_path(data, path):
    with pytest.raises(ConfigError) as info:
        DevicesConfig.from_dict(data)
    assert info.value.message.startswith(path), info.value.message
    assert info.value.field == path


def test_toml_round_trip():
    cfg = DevicesConfig.from_dict(
        {
            "printer": {"driver": "usb", "profile": "epson_tm_t20iii", "header_lines": ['a "q"']},
            "reader": {"driver": "usb_hid", "profile": "syc_id_ic_125khz"},
            "display": {
                "driver": "serial",
                "profile": "logic_controls_pd3000",
                "serial_port": "/dev/ttyS0",
                "idle_lines": ["欢迎", "WELCOME"],
            },
        }
    )
    text = to_toml(cfg)
    assert text.startswith("[devices]\n")
    again = DevicesConfig.from_dict(tomllib.loads(text)["devices"])
    assert again == cfg
