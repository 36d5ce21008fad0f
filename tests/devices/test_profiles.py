"""Firmware profiles: every shipped file is valid; errors name the file and the key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from edge.devices.printer import EscposTransport
from edge.devices.profiles import (
    DisplayProfile,
    PrinterProfile,
    ProfileLibrary,
    ReaderProfile,
    validate,
)


@pytest.fixture
def library() -> ProfileLibrary:
    return ProfileLibrary()


def test_every_shipped_profile_is_valid(library):
    profiles, problems = library.load_all()
    assert problems == []
    kinds = {p.kind for p in profiles}
    assert kinds == {"printer", "reader", "display"}
    real = [p for p in profiles if "virtual" not in p.transports]
    for kind, minimum in (("printer", 3), ("reader", 3), ("display", 3)):
        assert sum(p.kind == kind for p in real) >= minimum, kind


def test_every_profile_lists_tested_firmware_and_real_ones_say_if_ids_are_verified(library):
    profiles, _ = library.load_all()
    for p in profiles:
        assert p.tested_firmware, p.name
        if p.usb_id and not p.usb_verified:
            assert "unverified" in p.note, p.name


def test_printer_widths_match_paper(library):
    profiles, _ = library.load_all()
    for p in profiles:
        if isinstance(p, PrinterProfile):
            assert (p.paper_width_mm, p.paper_dots, p.paper_chars) in (
                (58, 384, 32),
                (80, 576, 48),  # 203 dpi
                (80, 512, 42),  # 180 dpi (TM-T88V): 12-dot font A, 512 // 12 == 42
            ), p.name
            assert p.paper_chars * 12 <= p.paper_dots, p.name


def test_escpos_capability_profiles_exist(library):
    capabilities = pytest.importorskip("escpos.capabilities")
    known = capabilities.CAPABILITIES["profiles"]
    profiles, _ = library.load_all()
    for p in profiles:
        if isinstance(p, PrinterProfile):
            assert p.escpos_profile in known, p.name


def test_typed_views(library):
    printer = library.load("epson_tm_t20iii")
    assert isinstance(printer, PrinterProfile)
    assert printer.usb_id == "04b8:0e28"
    assert printer.chinese_method == "raster"
    reader = library.load("magtek_dynamag", kind="reader")
    assert isinstance(reader, ReaderProfile)
    assert reader.strip_chars == ";?%"
    display = library.load("epson_dm_d110_chinese", kind="display")
    assert isinstance(display, DisplayProfile)
    assert display.chinese and display.chinese_enter == b"\x1c&"
    assert display.serial_settings() == {
        "baudrate": 9600,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "flow_control": "none",
    }


def test_wrong_kind_and_unknown_name(library):
    with pytest.raises(ConfigError, match="is a printer profile, not a reader"):
        library.load("epson_tm_t20iii", kind="reader")
    with pytest.raises(ConfigError, match="no device profile named 'nope'"):
        library.load("nope")


def test_match_usb_finds_every_profile_sharing_the_ids(library):
    names = {p.name for p in library.match_usb(0x04B8, 0x0202)}
    assert names == {"epson_tm_t88v", "epson_tm_t88v_chinese"}
    assert library.match_usb(0x1234, 0x5678) == []


def _printer_data(library: ProfileLibrary) -> dict:
    return json.loads((library.directory / "xprinter_xp80c.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("paper"), "x.json: paper: required"),
        (lambda d: d.update(colour="red"), "x.json: colour: unknown key"),
        (lambda d: d["paper"].update(dots="576"), "x.json: paper.dots: must be an integer"),
        (lambda d: d["chinese"].update(method="magic"), "x.json: chinese.method: must be one of"),
        (
            lambda d: d["usb"].update(vendor_id="4b8"),
            "x.json: usb.vendor_id: must be a 4-digit hex",
        ),
        (lambda d: d.update(transports=[]), "x.json: transports: must be a non-empty list"),
        (lambda d: d.update(kind="toaster"), "x.json: kind: must be one of"),
        (lambda d: d["drawer"].update(pin=True), "x.json: drawer.pin: must be an integer"),
        (lambda d: d.update(tested_firmware="1.0"), "x.json: tested_firmware: must be a list"),
        (
            lambda d: d.setdefault("serial", {"baudrate": 9600}).update(flow_control="cts"),
            "x.json: serial.flow_control: must be one of",
        ),
    ],
)
def test_schema_errors_name_file_and_key(library, mutate, message):
    data = _printer_data(library)
    mutate(data)
    problems = validate(data, "x.json")
    assert any(p.startswith(message) for p in problems), problems


def test_invalid_file_in_a_directory_is_reported_not_fatal(tmp_path: Path, library):
    good = _printer_data(library)
    (tmp_path / "good.json").write_text(json.dumps(good), encoding="utf-8")
    bad = dict(good, cutter="laser")
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    profiles, problems = ProfileLibrary(tmp_path).load_all()
    assert [p.name for p in profiles] == ["good"]
    assert any("bad.json: cutter: must be one of" in p for p in problems)
    assert any(p.startswith("broken.json: cannot read profile") for p in problems)
    with pytest.raises(ConfigError, match="bad.json: cutter"):
        ProfileLibrary(tmp_path).load("bad")


def _printer_with(tmp_path: Path, escpos_profile: str, paper: dict) -> Path:
    data = json.loads(
        (Path(ProfileLibrary().directory) / "epson_tm_t88v.json").read_text(encoding="utf-8")
    )
    data["escpos_profile"] = escpos_profile
    data["paper"] = paper
    (tmp_path / "model_x.json").write_text(json.dumps(data), encoding="utf-8")
    return tmp_path


def test_paper_width_is_inherited_from_the_python_escpos_profile(tmp_path):
    pytest.importorskip("escpos.capabilities")
    library = ProfileLibrary(_printer_with(tmp_path, "TM-T88V", {"width_mm": 80}))
    profile = library.load("model_x")
    assert (profile.paper_dots, profile.paper_chars) == (512, 42)
    library = ProfileLibrary(_printer_with(tmp_path, "TM-T20II", {"width_mm": 80, "chars": 44}))
    assert (library.load("model_x").paper_dots, library.load("model_x").paper_chars) == (576, 44)


@pytest.mark.parametrize(
    ("escpos_profile", "paper", "message"),
    [
        ("TM-T88V", {"width_mm": 80, "dots": 576, "chars": 48}, "wider than the 512 dots"),
        ("default", {"width_mm": 80}, "paper.dots: required"),
        ("TM-T99", {"width_mm": 80, "dots": 576, "chars": 48}, "no profile 'TM-T99'"),
    ],
)
def test_paper_width_disagreeing_with_python_escpos_is_refused(
    tmp_path, escpos_profile, paper, message
):
    pytest.importorskip("escpos.capabilities")
    library = ProfileLibrary(_printer_with(tmp_path, escpos_profile, paper))
    with pytest.raises(ConfigError, match=message) as caught:
        library.load("model_x")
    assert "model_x.json" in caught.value.message


@pytest.mark.parametrize(
    ("flow", "dsrdtr", "xonxoff", "rtscts"),
    [
        (None, True, False, False),
        ("none", False, False, False),
        ("xonxoff", False, True, False),
        ("rtscts", False, False, True),
    ],
)
def test_a_serial_printer_takes_its_flow_control_from_the_profile(
    library, flow, dsrdtr, xonxoff, rtscts
):
    data = _printer_data(library)
    if flow is not None:
        data.setdefault("serial", {"baudrate": 9600})["flow_control"] = flow
    assert validate(data, "x.json") == []
    profile = library.load("xprinter_xp80c", kind="printer")
    profile = dataclasses.replace(profile, serial={**profile.serial, **data.get("serial", {})})
    transport = EscposTransport("serial", profile, serial_port="/dev/ttyS9")
    assert (transport._kwargs["dsrdtr"], transport._kwargs["xonxoff"]) == (dsrdtr, xonxoff)
    assert transport._rtscts is rtscts
