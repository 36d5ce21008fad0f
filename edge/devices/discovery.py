"""What is plugged in: USB devices (pyusb) and serial ports (pyserial), matched to profiles."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import DeviceError

from ._hw import NO_LIBUSB, require
from .profiles import AnyProfile, ProfileLibrary

log = logging.getLogger(__name__)

USB_CLASS_HUB = 0x09


@dataclass(frozen=True)
class FoundDevice:
    bus: str  # "usb" | "serial"
    vendor_id: int | None
    product_id: int | None
    where: str  # "bus 1 address 4" or "/dev/ttyUSB0"
    description: str = ""
    profiles: tuple[str, ...] = field(default=())

    @property
    def usb_id(self) -> str:
        if self.vendor_id is None or self.product_id is None:
            return "-"
        return f"{self.vendor_id:04x}:{self.product_id:04x}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "bus": self.bus,
            "usb_id": self.usb_id,
            "where": self.where,
            "description": self.description,
            "profiles": list(self.profiles),
        }


def scan_usb(backend: Any = None) -> list[tuple[int, int, str, int]]:
    """(vendor id, product id, location, device class) of every USB device but hubs."""
    usb_core = require("usb.core")
    try:
        devices = list(usb_core.find(find_all=True, backend=backend) or ())
    except usb_core.NoBackendError as exc:
        raise DeviceError(NO_LIBUSB) from exc
    found = []
    for dev in devices:
        if dev.bDeviceClass == USB_CLASS_HUB:
            continue
        found.append(
            (dev.idVendor, dev.idProduct, f"bus {dev.bus} address {dev.address}", dev.bDeviceClass)
        )
    return found


def scan_serial() -> list[tuple[str, str, int | None, int | None]]:
    """(device path, description, adapter vendor id, adapter product id) of every serial port."""
    list_ports = require("serial.tools.list_ports")
    return [(p.device, p.description or "", p.vid, p.pid) for p in list_ports.comports()]


def match(
    library: ProfileLibrary,
    usb_devices: list[tuple[int, int, str, int]],
    serial_ports: list[tuple[str, str, int | None, int | None]],
) -> list[FoundDevice]:
    profiles, problems = library.load_all()
    for problem in problems:
        log.warning("skipping invalid profile: %s", problem)
    by_usb: dict[tuple[int, int], list[AnyProfile]] = {}
    for profile in profiles:
        if profile.usb_vendor_id is not None and profile.usb_product_id is not None:
            by_usb.setdefault((profile.usb_vendor_id, profile.usb_product_id), []).append(profile)
    out = []
    for vid, pid, where, _cls in usb_devices:
        names = tuple(p.name for p in by_usb.get((vid, pid), ()))
        out.append(FoundDevice("usb", vid, pid, where, profiles=names))
    for device, description, vid, pid in serial_ports:
        names = tuple(p.name for p in by_usb.get((vid, pid), ())) if vid is not None else ()
        out.append(FoundDevice("serial", vid, pid, device, description, names))
    return out


def scan_and_match(
    library: ProfileLibrary,
    usb_scan: Callable[[], list[tuple[int, int, str, int]]] | None = None,
    serial_scan: Callable[[], list[tuple[str, str, int | None, int | None]]] | None = None,
) -> tuple[list[FoundDevice], list[str]]:
    """Everything plugged in, matched to profiles, and why a bus could not be scanned."""
    usb_scan = usb_scan or scan_usb
    serial_scan = serial_scan or scan_serial
    problems: list[str] = []
    try:
        usb_devices = usb_scan()
    except DeviceError as exc:
        problems.append(f"USB: {exc.message}")
        usb_devices = []
    try:
        serial_ports = serial_scan()
    except DeviceError as exc:
        problems.append(f"serial: {exc.message}")
        serial_ports = []
    return match(library, usb_devices, serial_ports), problems
