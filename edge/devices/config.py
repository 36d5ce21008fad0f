"""The ``[devices]`` section of the edge configuration.

Every field has a default and a one-line description (``metadata["doc"]``).
The defaults use the virtual devices, so a demo store runs with no hardware.
``DevicesConfig.from_dict`` rejects unknown keys and bad values with a
ConfigError naming the key path (``devices.printer.driver``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError

from .profiles import ProfileLibrary


def _f(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


PRINTER_DRIVERS = ("virtual", "usb", "network", "serial", "file")
READER_DRIVERS = ("virtual", "usb_hid", "serial")
DISPLAY_DRIVERS = ("virtual", "serial")


@dataclass(frozen=True)
class PrinterConfig:
    enabled: bool = _f(True, "print receipts at all (false: jobs are still queued, never printed)")
    driver: str = _f("virtual", "virtual | usb | network | serial | file")
    profile: str = _f("virtual_printer_80mm", "firmware profile name (file in firmware_profiles/)")
    host: str = _f("", "network printers: IP address or host name")
    tcp_port: int = _f(9100, "network printers: TCP port (raw printing)")
    serial_port: str = _f("", "serial printers: device path, e.g. /dev/ttyUSB0")
    baudrate: int = _f(0, "serial printers: baud rate; 0 uses the profile's")
    device_file: str = _f("", "file driver: device path, e.g. /dev/usb/lp0")
    usb_vendor_id: str = _f("", "USB printers: vendor id (hex) overriding the profile's")
    usb_product_id: str = _f("", "USB printers: product id (hex) overriding the profile's")
    font_path: str = _f("", "raster receipts: CJK font file; empty searches the system")
    query_status: bool = _f(True, "ask the printer for its paper status before each job")
    timeout_s: float = _f(5.0, "network/serial/usb write timeout in seconds")
    qr_size: int = _f(6, "QR code module size in dots (1-16)")
    header_lines: tuple[str, ...] = _f((), "extra lines printed under the store name")


@dataclass(frozen=True)
class ReaderConfig:
    enabled: bool = _f(True, "read member cards at all")
    driver: str = _f("virtual", "virtual | usb_hid | serial")
    profile: str = _f("virtual_reader", "firmware profile name")
    serial_port: str = _f("", "serial readers: device path")
    baudrate: int = _f(0, "serial readers: baud rate; 0 uses the profile's")
    usb_vendor_id: str = _f("", "USB readers: vendor id (hex) overriding the profile's")
    usb_product_id: str = _f("", "USB readers: product id (hex) overriding the profile's")


@dataclass(frozen=True)
class DisplayConfig:
    enabled: bool = _f(True, "drive the customer display at all")
    driver: str = _f("virtual", "virtual | serial")
    profile: str = _f("virtual_display", "firmware profile name")
    serial_port: str = _f("", "device path, e.g. /dev/ttyUSB1")
    baudrate: int = _f(0, "baud rate; 0 uses the profile's (9600 8N1 for most)")
    idle_lines: tuple[str, ...] = _f((), "up to two lines shown when idle; empty: 欢迎光临")


@dataclass(frozen=True)
class DevicesConfig:
    printer: PrinterConfig = _f(PrinterConfig(), "receipt printer")
    reader: ReaderConfig = _f(ReaderConfig(), "card reader")
    display: DisplayConfig = _f(DisplayConfig(), "customer pole display")
    reconnect_min_s: float = _f(0.5, "first reconnect delay after a device fault, seconds")
    reconnect_max_s: float = _f(30.0, "longest reconnect delay, seconds")
    profiles_dir: str = _f("", "extra directory of firmware profiles; empty: the shipped ones")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DevicesConfig:
        if d is None:
            d = {}
        cfg = _build(cls, d, "devices")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def profile_library(self) -> ProfileLibrary:
        return ProfileLibrary(Path(self.profiles_dir) if self.profiles_dir else None)

    def validate(self) -> None:
        """Cross-field checks: drivers, profiles and the settings each driver needs."""
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ConfigError(
                "devices.reconnect_min_s: must be > 0 and <= reconnect_max_s",
                field="devices.reconnect_min_s",
            )
        library = self.profile_library()
        checks = (
            ("printer", self.printer, PRINTER_DRIVERS),
            ("reader", self.reader, READER_DRIVERS),
            ("display", self.display, DISPLAY_DRIVERS),
        )
        for role, section, drivers in checks:
            path = f"devices.{role}"
            if section.driver not in drivers:
                raise ConfigError(
                    f"{path}.driver: {section.driver!r} must be one of {', '.join(drivers)}",
                    field=f"{path}.driver",
                )
            try:
                profile = library.load(section.profile, kind=role)
            except ConfigError as exc:
                raise ConfigError(
                    f"{path}.profile: {exc.message}", field=f"{path}.profile"
                ) from exc
            if section.driver != "virtual" and section.driver not in profile.transports:
                raise ConfigError(
                    f"{path}.driver: profile {profile.name} supports "
                    f"{', '.join(profile.transports)}, not {section.driver}",
                    field=f"{path}.driver",
                )
            for key in ("usb_vendor_id", "usb_product_id"):
                value = getattr(section, key, "")
                if value and not _is_hex4(value):
                    raise ConfigError(
                        f"{path}.{key}: {value!r} must be 4 hex digits", field=f"{path}.{key}"
                    )
            needed = {
                "network": "host",
                "serial": "serial_port",
                "file": "device_file",
            }.get(section.driver)
            if needed and not getattr(section, needed):
                raise ConfigError(
                    f"{path}.{needed}: required for driver {section.driver}",
                    field=f"{path}.{needed}",
                )
            if section.driver in ("usb", "usb_hid") and profile.usb_vendor_id is None:
                if not (section.usb_vendor_id and section.usb_product_id):
                    raise ConfigError(
                        f"{path}.usb_vendor_id: profile {profile.name} has no USB ids; set them",
                        field=f"{path}.usb_vendor_id",
                    )
        if not 1 <= self.printer.qr_size <= 16:
            raise ConfigError(
                "devices.printer.qr_size: must be 1-16", field="devices.printer.qr_size"
            )
        if len(self.display.idle_lines) > 2:
            raise ConfigError(
                "devices.display.idle_lines: at most two lines", field="devices.display.idle_lines"
            )


def _is_hex4(value: str) -> bool:
    try:
        int(value, 16)
    except ValueError:
        return False
    return len(value) == 4


def describe(cls: type = DevicesConfig, prefix: str = "devices") -> list[tuple[str, Any, str]]:
    """(key path, default, description) for every field, for docs and ``write-config``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], path)
        else:
            rows.append((path, f.default, f.metadata.get("doc", "")))
    return rows


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a table, got {data!r}", field=path)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{path}.{key}: unknown key (known: {', '.join(sorted(names))})",
                field=f"{path}.{key}",
            )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(hints[key], value, f"{path}.{key}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: must be true or false, got {value!r}", field=path)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{path}: must be a whole number >= 0, got {value!r}", field=path)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{path}: must be a number >= 0, got {value!r}", field=path)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: must be a string, got {value!r}", field=path)
        return value
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
            raise ConfigError(f"{path}: must be a list of strings, got {value!r}", field=path)
        return tuple(value)
    raise ConfigError(f"{path}: unsupported setting type {hint!r}", field=path)  # pragma: no cover


def _to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def to_toml(cfg: DevicesConfig, *, only_changed: bool = False) -> str:
    """``cfg`` as a ``[devices]`` TOML table (with sub-tables), each key with its description."""
    lines = ["[devices]"]
    default = DevicesConfig().to_dict()
    data = cfg.to_dict()
    docs = {path: doc for path, _, doc in describe()}
    sections = []
    for key, value in data.items():
        if isinstance(value, dict):
            sections.append((key, value))
            continue
        if only_changed and default[key] == value:
            continue
        lines.append(f"# {docs[f'devices.{key}']}")
        lines.append(f"{key} = {_toml_value(value)}")
    for name, table in sections:
        lines.append("")
        lines.append(f"[devices.{name}]")
        for key, value in table.items():
            if only_changed and default[name][key] == value:
                continue
            lines.append(f"# {docs[f'devices.{name}.{key}']}")
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
