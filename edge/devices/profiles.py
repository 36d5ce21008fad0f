"""Device models as data: one JSON file per model in ``firmware_profiles/``.

Each file is checked against a small schema when it is loaded; an error names
the file and the key path. The file name (without ``.json``) is the profile's
name, which the configuration refers to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from core.errors import ConfigError

KINDS = ("printer", "reader", "display")
PRINTER_TRANSPORTS = ("usb", "network", "serial", "file", "virtual")
READER_TRANSPORTS = ("usb_hid", "serial", "virtual")
DISPLAY_TRANSPORTS = ("serial", "virtual")
CHINESE_METHODS = ("gb18030_fs", "raster")
DISPLAY_COMMAND_SETS = ("epson_dmd", "cd5220", "logic_controls")
CUTTERS = ("full", "partial", "none")


# ---------------------------------------------------------------- schema
# A schema is a dict: key -> (check, required). ``check`` is a callable that
# returns an error message or None, or a nested schema dict.

Check = Callable[[Any], str | None]


def _is(kind: type, what: str) -> Check:
    def check(value: Any) -> str | None:
        if kind is not bool and isinstance(value, bool):
            return f"must be {what}"
        return None if isinstance(value, kind) else f"must be {what}"

    return check


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _int_range(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be an integer from {low} to {high}"
        return None

    return check


def _hex_id(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) != 4:
        return "must be a 4-digit hex string like '04b8'"
    try:
        int(value, 16)
    except ValueError:
        return "must be a 4-digit hex string like '04b8'"
    return None


def _list_of_str(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        return "must be a list of strings"
    return None


def _list_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or not value or not all(x in choices for x in value):
            return f"must be a non-empty list of {', '.join(choices)}"
        return None

    return check


def _hex_bytes(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a hex string like '1c26'"
    try:
        bytes.fromhex(value)
    except ValueError:
        return "must be a hex string like '1c26'"
    return None


_STR = _is(str, "a string")
_BOOL = _is(bool, "true or false")

USB_SCHEMA: dict[str, tuple[Any, bool]] = {
    "vendor_id": (_hex_id, True),
    "product_id": (_hex_id, True),
    "verified": (_BOOL, True),
    "interface": (_int_range(0, 15), False),
    "out_ep": (_int_range(0, 255), False),
    "in_ep": (_int_range(0, 255), False),
}

FLOW_CONTROLS = ("none", "dsrdtr", "rtscts", "xonxoff")


def flow_control_kwargs(flow: str) -> dict[str, bool]:
    """pyserial's arguments for one of FLOW_CONTROLS."""
    return {name: flow == name for name in ("dsrdtr", "rtscts", "xonxoff")}


SERIAL_SCHEMA: dict[str, tuple[Any, bool]] = {
    "baudrate": (_int_range(1200, 921600), True),
    "bytesize": (_int_range(5, 8), False),
    "parity": (_one_of("N", "E", "O"), False),
    "stopbits": (_int_range(1, 2), False),
    # what the device's DIP switches or setup page say; a printer that signals "buffer
    # full" on DSR loses lines when it is ignored, a display without the wires hangs
    # when it is waited for
    "flow_control": (_one_of(*FLOW_CONTROLS), False),
}

COMMON_SCHEMA: dict[str, tuple[Any, bool]] = {
    "kind": (_one_of(*KINDS), True),
    "manufacturer": (_STR, True),
    "model": (_STR, True),
    "usb": (USB_SCHEMA, False),
    "serial": (SERIAL_SCHEMA, False),
    "quirks": (_list_of_str, True),
    "tested_firmware": (_list_of_str, True),
    "note": (_STR, False),
}

PRINTER_SCHEMA: dict[str, tuple[Any, bool]] = {
    **COMMON_SCHEMA,
    "transports": (_list_of(PRINTER_TRANSPORTS), True),
    "command_set": (_one_of("escpos"), True),
    "escpos_profile": (_STR, True),
    "chinese": (
        {
            "method": (_one_of(*CHINESE_METHODS), True),
            "encoding": (_one_of("gb18030", "gbk", "gb2312"), False),
        },
        True,
    ),
    "paper": (
        {
            "width_mm": (_int_range(40, 120), True),
            # either may be left out when escpos_profile names a python-escpos model
            "dots": (_int_range(200, 1000), False),
            "chars": (_int_range(16, 80), False),
        },
        True,
    ),
    "cutter": (_one_of(*CUTTERS), True),
    "drawer": (
        {
            "pin": (_int_range(2, 5), True),
            "on_ms": (_int_range(2, 510), True),
            "off_ms": (_int_range(2, 510), True),
        },
        False,
    ),
    "feed_before_cut": (_int_range(0, 20), False),
}

READER_SCHEMA: dict[str, tuple[Any, bool]] = {
    **COMMON_SCHEMA,
    "transports": (_list_of(READER_TRANSPORTS), True),
    "strip_chars": (_STR, False),
    "min_length": (_int_range(1, 200), False),
    "max_length": (_int_range(1, 500), False),
}

DISPLAY_SCHEMA: dict[str, tuple[Any, bool]] = {
    **COMMON_SCHEMA,
    "transports": (_list_of(DISPLAY_TRANSPORTS), True),
    "command_set": (_one_of(*DISPLAY_COMMAND_SETS), True),
    "columns": (_int_range(8, 40), True),
    "rows": (_int_range(1, 4), True),
    "chinese": (
        {
            "supported": (_BOOL, True),
            "encoding": (_one_of("gb18030", "gbk", "gb2312"), False),
            "enter": (_hex_bytes, False),
            "exit": (_hex_bytes, False),
        },
        True,
    ),
}

SCHEMAS = {"printer": PRINTER_SCHEMA, "reader": READER_SCHEMA, "display": DISPLAY_SCHEMA}


def validate(data: Any, source: str) -> list[str]:
    """Every problem in one profile, as 'source: key.path: message'."""
    if not isinstance(data, dict):
        return [f"{source}: the file must hold a JSON object"]
    kind = data.get("kind")
    if kind not in SCHEMAS:
        return [f"{source}: kind: must be one of {', '.join(KINDS)}"]
    problems: list[str] = []
    _validate_dict(data, SCHEMAS[kind], source, "", problems)
    return problems


def _validate_dict(
    data: Mapping[str, Any],
    schema: Mapping[str, tuple[Any, bool]],
    source: str,
    prefix: str,
    problems: list[str],
) -> None:
    for key in data:
        if key not in schema:
            problems.append(f"{source}: {prefix}{key}: unknown key")
    for key, (check, required) in schema.items():
        path = f"{prefix}{key}"
        if key not in data or data[key] is None:
            if required:
                problems.append(f"{source}: {path}: required")
            continue
        value = data[key]
        if isinstance(check, dict):
            if not isinstance(value, dict):
                problems.append(f"{source}: {path}: must be an object")
            else:
                _validate_dict(value, check, source, path + ".", problems)
            continue
        message = check(value)
        if message:
            problems.append(f"{source}: {path}: {message} (got {value!r})")


# ---------------------------------------------------------------- typed views


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    manufacturer: str
    model: str
    transports: tuple[str, ...]
    usb_vendor_id: int | None
    usb_product_id: int | None
    usb_verified: bool
    serial: dict[str, Any]
    quirks: tuple[str, ...]
    tested_firmware: tuple[str, ...]
    note: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def usb_id(self) -> str | None:
        if self.usb_vendor_id is None or self.usb_product_id is None:
            return None
        return f"{self.usb_vendor_id:04x}:{self.usb_product_id:04x}"

    def has_quirk(self, quirk: str) -> bool:
        return quirk in self.quirks

    def serial_settings(self) -> dict[str, Any]:
        # printers have long waited on DSR/DTR (python-escpos's default); displays and
        # readers have no handshake wires
        flow = "dsrdtr" if self.kind == "printer" else "none"
        s = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1, "flow_control": flow}
        s.update(self.serial)
        return s


@dataclass(frozen=True)
class PrinterProfile(Profile):
    escpos_profile: str = "default"
    chinese_method: str = "gb18030_fs"
    encoding: str = "gb18030"
    paper_width_mm: int = 80
    paper_dots: int = 576
    paper_chars: int = 48
    cutter: str = "full"
    drawer_pin: int | None = 2
    drawer_on_ms: int = 100
    drawer_off_ms: int = 100
    feed_before_cut: int = 4
    usb_out_ep: int = 0x01
    usb_in_ep: int = 0x82


@dataclass(frozen=True)
class ReaderProfile(Profile):
    strip_chars: str = ""
    min_length: int = 4
    max_length: int = 128
    usb_interface: int = 0


@dataclass(frozen=True)
class DisplayProfile(Profile):
    command_set: str = "epson_dmd"
    columns: int = 20
    rows: int = 2
    chinese: bool = False
    encoding: str = "gb18030"
    chinese_enter: bytes = b""
    chinese_exit: bytes = b""


AnyProfile = PrinterProfile | ReaderProfile | DisplayProfile


def escpos_capability(name: str) -> dict[str, Any] | None:
    """python-escpos's capability profile ``name`` (media and fonts), or None without the
    library. An unknown name is a ConfigError: python-escpos would refuse it at open."""
    try:
        from escpos.capabilities import CAPABILITIES
    except ImportError:
        return None
    known = CAPABILITIES["profiles"]
    if name not in known:
        raise ConfigError(f"escpos_profile: python-escpos has no profile {name!r}", field=name)
    return known[name]


def _paper_size(paper: dict[str, Any], escpos_profile: str, source: str) -> tuple[int, int]:
    """Dots and font A columns: the profile's own, else inherited from python-escpos; a
    stated width wider than python-escpos says the model prints is an error."""
    try:
        capability = escpos_capability(escpos_profile)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", field=source) from exc
    pixels = columns = None
    if capability is not None:
        pixels = capability.get("media", {}).get("width", {}).get("pixels")
        columns = capability.get("fonts", {}).get("0", {}).get("columns")
        pixels = pixels if isinstance(pixels, int) else None
        columns = columns if isinstance(columns, int) and pixels is not None else None
    dots = paper.get("dots", pixels)
    chars = paper.get("chars", columns)
    if dots is None or chars is None:
        missing = "paper.dots" if dots is None else "paper.chars"
        raise ConfigError(
            f"{source}: {missing}: required (python-escpos profile {escpos_profile!r} "
            "does not give it, or python-escpos is not installed)",
            field=source,
        )
    if pixels is not None and dots > pixels:
        raise ConfigError(
            f"{source}: paper.dots: {dots} is wider than the {pixels} dots python-escpos "
            f"profile {escpos_profile!r} prints",
            field=source,
        )
    return dots, chars


def build_profile(name: str, data: dict[str, Any], source: str) -> AnyProfile:
    problems = validate(data, source)
    if problems:
        raise ConfigError("invalid device profile:\n  " + "\n  ".join(problems), field=source)
    usb = data.get("usb") or {}
    common: dict[str, Any] = {
        "name": name,
        "kind": data["kind"],
        "manufacturer": data["manufacturer"],
        "model": data["model"],
        "transports": tuple(data["transports"]),
        "usb_vendor_id": int(usb["vendor_id"], 16) if usb else None,
        "usb_product_id": int(usb["product_id"], 16) if usb else None,
        "usb_verified": bool(usb.get("verified", False)),
        "serial": dict(data.get("serial") or {}),
        "quirks": tuple(data["quirks"]),
        "tested_firmware": tuple(data["tested_firmware"]),
        "note": data.get("note", ""),
        "raw": data,
    }
    if data["kind"] == "printer":
        drawer = data.get("drawer")
        dots, chars = _paper_size(data["paper"], data["escpos_profile"], source)
        return PrinterProfile(
            **common,
            escpos_profile=data["escpos_profile"],
            chinese_method=data["chinese"]["method"],
            encoding=data["chinese"].get("encoding", "gb18030"),
            paper_width_mm=data["paper"]["width_mm"],
            paper_dots=dots,
            paper_chars=chars,
            cutter=data["cutter"],
            drawer_pin=drawer["pin"] if drawer else None,
            drawer_on_ms=drawer["on_ms"] if drawer else 100,
            drawer_off_ms=drawer["off_ms"] if drawer else 100,
            feed_before_cut=data.get("feed_before_cut", 4),
            usb_out_ep=usb.get("out_ep", 0x01),
            usb_in_ep=usb.get("in_ep", 0x82),
        )
    if data["kind"] == "reader":
        return ReaderProfile(
            **common,
            strip_chars=data.get("strip_chars", ""),
            min_length=data.get("min_length", 4),
            max_length=data.get("max_length", 128),
            usb_interface=usb.get("interface", 0),
        )
    chinese = data["chinese"]
    return DisplayProfile(
        **common,
        command_set=data["command_set"],
        columns=data["columns"],
        rows=data["rows"],
        chinese=chinese["supported"],
        encoding=chinese.get("encoding", "gb18030"),
        chinese_enter=bytes.fromhex(chinese.get("enter", "")),
        chinese_exit=bytes.fromhex(chinese.get("exit", "")),
    )


def load_file(path: Path) -> AnyProfile:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path.name}: cannot read profile: {exc}", field=path.name) from exc
    return build_profile(path.stem, data, path.name)


class ProfileLibrary:
    """All profiles in one directory (the shipped ``firmware_profiles`` package by default)."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is None:
            directory = Path(str(resources.files("firmware_profiles")))
        self.directory = directory

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def load(self, name: str, kind: str | None = None) -> AnyProfile:
        path = self.directory / f"{name}.json"
        if not path.is_file():
            raise ConfigError(
                f"no device profile named {name!r} in {self.directory}; known: "
                + ", ".join(self.names()),
                field=name,
            )
        profile = load_file(path)
        if kind is not None and profile.kind != kind:
            raise ConfigError(
                f"profile {name!r} is a {profile.kind} profile, not a {kind}", field=name
            )
        return profile

    def load_all(self) -> tuple[list[AnyProfile], list[str]]:
        """Every valid profile, and the problems of the invalid ones."""
        good: list[AnyProfile] = []
        problems: list[str] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                good.append(load_file(path))
            except ConfigError as exc:
                problems.append(exc.message)
        return good, problems

    def match_usb(self, vendor_id: int, product_id: int) -> list[AnyProfile]:
        profiles, _ = self.load_all()
        return [
            p for p in profiles if p.usb_vendor_id == vendor_id and p.usb_product_id == product_id
        ]
