"""Card readers: USB HID keyboards read directly with pyusb, serial readers, a virtual one.

Every reader has ``open()``, ``read(timeout_s) -> list[str]`` (raw reads that
ended with Enter/CR) and ``close()``; ``open``/``read`` raise DeviceError when
the device is gone. The reader worker turns raw reads into card numbers.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from core.errors import DeviceError

from ._hw import require
from .hid import HidKeyboardDecoder, clean_card, report_for
from .profiles import ReaderProfile, flow_control_kwargs
from .state import Backoff, DeviceState, HealthTracker

log = logging.getLogger(__name__)


HID_CLASS_OUT = 0x21  # host to device, class request, to an interface
HID_SET_IDLE = 0x0A
HID_SET_PROTOCOL = 0x0B
HID_PROTOCOL_BOOT = 0
HID_SUBCLASS_BOOT = 1


class CardReader(Protocol):
    def open(self) -> None: ...
    def read(self, timeout_s: float) -> list[str]: ...
    def close(self) -> None: ...


class UsbHidReader:
    """A HID keyboard-emulating reader, claimed from the kernel so keystrokes reach us only."""

    def __init__(
        self,
        vendor_id: int,
        product_id: int,
        interface: int = 0,
        backend: Any = None,
        *,
        repeats_without_release: bool = False,
    ) -> None:
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.interface = interface
        self.backend = backend
        self.decoder = HidKeyboardDecoder(repeats_without_release=repeats_without_release)
        self._dev: Any = None
        self._ep: Any = None
        self._detached = False

    def open(self) -> None:
        usb_core = require("usb.core")
        usb_util = require("usb.util")
        dev = usb_core.find(
            idVendor=self.vendor_id, idProduct=self.product_id, backend=self.backend
        )
        if dev is None:
            raise DeviceError(
                f"USB card reader {self.vendor_id:04x}:{self.product_id:04x} not found (未找到读卡器)"
            )
        try:
            if dev.is_kernel_driver_active(self.interface):
                dev.detach_kernel_driver(self.interface)
                self._detached = True
            dev.set_configuration()
            intf = dev.get_active_configuration()[(self.interface, 0)]
            ep = usb_util.find_descriptor(
                intf,
                custom_match=lambda e: (
                    usb_util.endpoint_direction(e.bEndpointAddress) == usb_util.ENDPOINT_IN
                    and usb_util.endpoint_type(e.bmAttributes) == usb_util.ENDPOINT_TYPE_INTR
                ),
            )
            if ep is None:
                raise DeviceError("card reader has no interrupt IN endpoint")
            usb_util.claim_interface(dev, self.interface)
        except usb_core.USBError as exc:
            raise DeviceError(f"cannot claim USB card reader: {exc}") from exc
        self._request_boot_reports(dev, intf, usb_core)
        self._dev, self._ep = dev, ep
        self.decoder.reset()

    def _request_boot_reports(self, dev: Any, intf: Any, usb_core: Any) -> None:
        """Ask for 8-byte boot reports, sent only when a key changes.

        With the kernel driver gone nobody else sets this up: a keyboard left in report
        protocol may send another layout, and a non-zero idle rate repeats the last
        report, which a reader that repeats keys without release would type twice.
        """
        requests = [(HID_SET_IDLE, 0, "SET_IDLE 0")]
        if intf.bInterfaceSubClass == HID_SUBCLASS_BOOT:
            requests.insert(0, (HID_SET_PROTOCOL, HID_PROTOCOL_BOOT, "SET_PROTOCOL boot"))
        for request, value, name in requests:
            try:
                dev.ctrl_transfer(HID_CLASS_OUT, request, value, self.interface, None, 500)
            except usb_core.USBError as exc:  # optional for a boot device; many stall it
                log.info("card reader ignored %s: %s", name, exc)

    def read(self, timeout_s: float) -> list[str]:
        if self._dev is None:
            raise DeviceError("card reader is not open")
        usb_core = require("usb.core")
        try:
            data = self._ep.read(self._ep.wMaxPacketSize, timeout=max(1, int(timeout_s * 1000)))
        except usb_core.USBTimeoutError:
            return []
        except usb_core.USBError as exc:
            raise DeviceError(f"card reader read failed: {exc}") from exc
        return self.decoder.feed(bytes(data))

    def close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is None:
            return
        usb_core = require("usb.core")
        usb_util = require("usb.util")
        try:
            usb_util.release_interface(dev, self.interface)
            if self._detached:
                dev.attach_kernel_driver(self.interface)
        except (usb_core.USBError, NotImplementedError) as exc:
            log.warning("releasing card reader: %s", exc)
        finally:
            usb_util.dispose_resources(dev)
            self._detached = False


class SerialReader:
    """A reader that sends the card number followed by CR and/or LF."""

    def __init__(self, port: str, settings: dict[str, Any]) -> None:
        self.port = port
        self.settings = settings
        self._serial: Any = None
        self._buffer = bytearray()

    def open(self) -> None:
        serial = require("serial")
        try:
            self._serial = serial.Serial(
                self.port,
                baudrate=self.settings["baudrate"],
                bytesize=self.settings["bytesize"],
                parity=self.settings["parity"],
                stopbits=self.settings["stopbits"],
                **flow_control_kwargs(self.settings.get("flow_control", "none")),
                timeout=0.1,
            )
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"cannot open serial card reader {self.port}: {exc}") from exc
        self._buffer.clear()

    def read(self, timeout_s: float) -> list[str]:
        if self._serial is None:
            raise DeviceError("card reader is not open")
        serial = require("serial")
        try:
            self._serial.timeout = timeout_s
            chunk = self._serial.read(max(1, self._serial.in_waiting or 1))
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"serial card reader read failed: {exc}") from exc
        self._buffer += chunk
        reads = []
        while True:
            cut = min(
                (i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0),
                default=-1,
            )
            if cut < 0:
                break
            line = bytes(self._buffer[:cut])
            del self._buffer[: cut + 1]
            if line:
                reads.append(line.decode("ascii", errors="replace"))
        return reads

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()


class VirtualReader:
    """A reader for rehearsals and tests: feed it card numbers, garbage, disconnects.

    Everything goes through the same HID decoder as a real USB reader.
    """

    def __init__(self) -> None:
        self.decoder = HidKeyboardDecoder()
        self._reports: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self.connected = True
        self.is_open = False
        self.open_count = 0

    # ---- fault and input injection
    def swipe(self, card_no: str, *, right_shift: bool = False) -> None:
        for report in report_for(card_no, right_shift=right_shift):
            self._reports.put(report)

    def inject_reports(self, reports: list[bytes]) -> None:
        for report in reports:
            self._reports.put(bytes(report))

    def inject_garbage(self) -> None:
        """What a dirty stripe or a half swipe sends: a short report, an error-rollover
        report, an unmapped key, then Enter with nothing read."""
        self.inject_reports(
            [
                b"\x00",
                bytes([0, 0, 1, 1, 1, 1, 1, 1]),
                bytes([0, 0, 0x3A, 0, 0, 0, 0, 0]),
                bytes(8),
                *report_for(""),
            ]
        )

    def unplug(self) -> None:
        with self._lock:
            self.connected = False

    def plug(self) -> None:
        with self._lock:
            self.connected = True

    # ---- CardReader
    def open(self) -> None:
        with self._lock:
            if not self.connected:
                raise DeviceError("virtual card reader unplugged")
            self.is_open = True
            self.open_count += 1
        self.decoder.reset()

    def read(self, timeout_s: float) -> list[str]:
        with self._lock:
            if not self.connected:
                self.is_open = False
                raise DeviceError("virtual card reader unplugged")
        try:
            report = self._reports.get(timeout=timeout_s)
        except queue.Empty:
            return []
        return self.decoder.feed(report)

    def close(self) -> None:
        self.is_open = False


class ReaderWorker:
    """Background thread: keeps the reader open, turns reads into card numbers."""

    POLL_S = 0.2

    def __init__(
        self,
        reader: CardReader,
        profile: ReaderProfile,
        health: HealthTracker,
        backoff: Backoff,
        max_queued: int = 32,
    ) -> None:
        self.reader = reader
        self.profile = profile
        self.health = health
        self.backoff = backoff
        self._cards: deque[str] = deque(maxlen=max_queued)
        self._cards_ready = threading.Condition()
        self._callbacks: list[Callable[[str], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rejected_reads = 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hy-card-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close()
        self.health.set(DeviceState.DISCONNECTED)

    def on_card(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    def next_card(self, timeout_s: float) -> str | None:
        with self._cards_ready:
            if not self._cards:
                self._cards_ready.wait(max(0.0, timeout_s))
            return self._cards.popleft() if self._cards else None

    def clear(self) -> None:
        with self._cards_ready:
            self._cards.clear()

    def handle_read(self, raw: str) -> str | None:
        p = self.profile
        card = clean_card(raw, p.strip_chars, p.min_length, p.max_length)
        if card is None:
            self.rejected_reads += 1
            message = f"unreadable card data ignored ({len(raw)} chars)"
            log.warning("card reader: %s", message)
            self.health.set(self.health.state, message)
            return None
        with self._cards_ready:
            self._cards.append(card)
            self._cards_ready.notify_all()
        for callback in list(self._callbacks):
            try:
                callback(card)
            except Exception as exc:  # a till callback must not kill the reader thread
                log.exception("card callback failed")
                self.health.set(self.health.state, f"card callback failed: {exc}")
        return card

    def _close(self) -> None:
        try:
            self.reader.close()
        except Exception as exc:
            log.warning("closing card reader: %s", exc)
            self.health.set(self.health.state, f"close failed: {exc}")

    def _run(self) -> None:
        opened = False
        while not self._stop.is_set():
            if not opened:
                self.health.set(DeviceState.CONNECTING)
                try:
                    self.reader.open()
                except Exception as exc:
                    log.warning("card reader open failed: %s", exc)
                    self.health.fail(DeviceState.DISCONNECTED, exc)
                    self._stop.wait(self.backoff.next_delay())
                    continue
                opened = True
                self.backoff.reset()
                self.health.set(DeviceState.READY)
                log.info("card reader ready")
            try:
                reads = self.reader.read(self.POLL_S)
            except Exception as exc:
                log.warning("card reader lost: %s", exc)
                self.health.fail(DeviceState.DISCONNECTED, exc)
                self._close()
                opened = False
                self._stop.wait(self.backoff.next_delay())
                continue
            for raw in reads:
                self.handle_read(raw)
