"""The till's single entry point to the store's devices.

Built once at start from ``DevicesConfig``; ``start()`` launches one daemon
thread per device and ``stop()`` joins them. The till calls the methods below
after the sale is committed, so none of them raises for a device fault or
blocks for more than a few milliseconds: printing goes through the durable
queue, the display shows the latest frame when it can, card reads arrive on
a queue filled by the reader thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import ConfigError, Conflict, NotFound, ValidationError
from core.receipt import Receipt

from .config import DevicesConfig
from .display import DisplayTransport, DisplayWorker, FrameFormatter, SerialDisplay, VirtualDisplay
from .escpos_decode import decode
from .print_queue import PrintJob, PrintQueue
from .printer import (
    PAPER_NEAR_END,
    PAPER_OK,
    PAPER_OUT,
    EscposTransport,
    PrinterTransport,
    PrinterWorker,
    VirtualPrinter,
)
from .profiles import DisplayProfile, PrinterProfile, ReaderProfile
from .reader import CardReader, ReaderWorker, SerialReader, UsbHidReader, VirtualReader
from .receipt_render import RenderOptions
from .state import Backoff, DeviceState, HealthTracker

log = logging.getLogger(__name__)

ROLES = ("printer", "reader", "display")
FINISHED_JOBS_KEPT_S = 30 * 24 * 3600  # printed/failed jobs are kept a month for support


class DeviceManager:
    def __init__(
        self,
        cfg: DevicesConfig,
        data_dir: Path,
        *,
        printer_transport: PrinterTransport,
        card_reader: CardReader,
        display_transport: DisplayTransport,
    ) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.printer_profile, self.reader_profile, self.display_profile = _load_profiles(cfg)
        self.health = {role: HealthTracker() for role in ROLES}
        self.print_queue = PrintQueue(data_dir / "print_queue.sqlite3")
        self.printer_transport = printer_transport
        self.card_reader = card_reader
        self.display_transport = display_transport
        self.printer_worker = PrinterWorker(
            printer_transport,
            self.printer_profile,
            self.print_queue,
            self.health["printer"],
            self._backoff(),
            RenderOptions(qr_size=cfg.printer.qr_size, font_path=cfg.printer.font_path),
            header_lines=cfg.printer.header_lines,
            on_printed=self._record_virtual_print
            if isinstance(printer_transport, VirtualPrinter)
            else None,
        )
        self.reader_worker = ReaderWorker(
            card_reader, self.reader_profile, self.health["reader"], self._backoff()
        )
        self.display_worker = DisplayWorker(
            display_transport, self.display_profile, self.health["display"], self._backoff()
        )
        idle = (*cfg.display.idle_lines, "")[:2] if cfg.display.idle_lines else None
        self.formatter = FrameFormatter(self.display_profile, idle)
        self._enabled = {
            "printer": cfg.printer.enabled,
            "reader": cfg.reader.enabled,
            "display": cfg.display.enabled,
        }
        for role, enabled in self._enabled.items():
            if not enabled:
                self.health[role].set(DeviceState.DISABLED)
        self._started = False

    # ------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls, cfg: DevicesConfig, data_dir: Path, *, usb_backend: Any = None
    ) -> DeviceManager:
        """Build the devices the configuration names (virtual ones by default).

        Nothing is opened here: the worker threads open devices after ``start()``,
        so a missing printer or library never stops the till from starting.
        """
        printer_profile, reader_profile, display_profile = _load_profiles(cfg)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            cfg,
            data_dir,
            printer_transport=_printer_transport(cfg, printer_profile),
            card_reader=_card_reader(cfg, reader_profile, usb_backend),
            display_transport=_display_transport(cfg, display_profile),
        )

    def _backoff(self) -> Backoff:
        return Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._started:
            return
        try:
            purged = self.print_queue.purge_finished(FINISHED_JOBS_KEPT_S)
        except Exception as exc:  # housekeeping only; printing still works
            log.warning("print queue purge failed: %s", exc)
        else:
            if purged:
                log.info("purged %d finished print jobs", purged)
        if self._enabled["printer"]:
            self.printer_worker.start()
        if self._enabled["reader"]:
            self.reader_worker.start()
        if self._enabled["display"]:
            self.display_worker.start()
            self.display_idle()
        self._started = True
        log.info("devices started")

    def stop(self) -> None:
        if not self._started:
            self.print_queue.close()
            return
        if self._enabled["display"]:
            self.display_worker.stop()
        if self._enabled["reader"]:
            self.reader_worker.stop()
        if self._enabled["printer"]:
            self.printer_worker.stop()
        self.print_queue.close()
        self._started = False
        log.info("devices stopped")

    # ------------------------------------------------------------ printer

    def print_receipt(self, receipt: Receipt) -> str:
        """Queue ``receipt``; returns the print job id. Never raises.

        A cash sale's drawer kick goes out at once, on its own, so the drawer opens
        while the receipt waits for paper; a kick the printer could not take within
        ``PrinterWorker.DRAWER_MAX_AGE_S`` is dropped rather than sent later.
        """
        if receipt.opens_drawer:
            self.open_drawer()
        return self._enqueue("receipt", receipt, open_drawer=False)

    def reprint(self, receipt: Receipt) -> str:
        """Queue a copy marked 重打; a reprint never opens the drawer."""
        try:
            copy = dataclasses.replace(receipt, reprint=True, opens_drawer=False)
        except Exception as exc:
            return self._queue_failure(exc)
        return self._enqueue("receipt", copy, open_drawer=False)

    def print_test_page(self) -> str:
        try:
            job_id = self.print_queue.enqueue(
                "test_page", {"stamp": time.strftime("%Y-%m-%d %H:%M:%S")}
            )
        except Exception as exc:
            return self._queue_failure(exc)
        self.printer_worker.wake()
        return job_id

    def open_drawer(self) -> None:
        if self._enabled["printer"]:
            self.printer_worker.request_drawer()

    def print_job(self, job_id: str) -> PrintJob | None:
        try:
            return self.print_queue.get(job_id)
        except Exception as exc:
            self._queue_failure(exc)
            return None

    def _enqueue(self, kind: str, receipt: Receipt, *, open_drawer: bool) -> str:
        try:
            job_id = self.print_queue.enqueue(
                kind, {"receipt": receipt.to_dict(), "open_drawer": open_drawer}
            )
        except Exception as exc:
            return self._queue_failure(exc)
        self.printer_worker.wake()
        return job_id

    def _queue_failure(self, exc: BaseException) -> str:
        log.error("print queue failed: %s", exc)
        health = self.health["printer"]
        health.set(health.state, f"print queue failed: {type(exc).__name__}: {exc}")
        return f"failed-{uuid.uuid4().hex}"

    def _record_virtual_print(self, job: PrintJob, data: bytes) -> None:
        """Rehearsals: what the virtual printer printed, readable, in data_dir."""
        try:
            lines = decode(data, self.printer_profile.encoding).lines
            with (self.data_dir / "virtual_printer.txt").open("a", encoding="utf-8") as out:
                out.write(f"===== job {job.id} ({job.kind}) =====\n")
                out.write("\n".join(lines) + "\n")
        except Exception as exc:  # a rehearsal aid must never stop printing
            log.warning("virtual printer log: %s", exc)

    # ------------------------------------------------------------ display

    def display_item(self, name: str, price_fen: int) -> None:
        self._show(lambda: self.formatter.item(name, price_fen))

    def display_total(self, total_fen: int) -> None:
        self._show(lambda: self.formatter.total(total_fen))

    def display_change(self, paid_fen: int, change_fen: int) -> None:
        self._show(lambda: self.formatter.change(paid_fen, change_fen))

    def display_greeting(self, member_name_masked: str | None, tier: str | None) -> None:
        self._show(lambda: self.formatter.greeting(member_name_masked, tier))

    def display_idle(self) -> None:
        self._show(self.formatter.idle)

    def display_test(self) -> None:
        self._show(self.formatter.test_pattern)

    def _show(self, make_frame: Callable[[], Any]) -> None:
        if not self._enabled["display"]:
            return
        try:
            self.display_worker.show(make_frame())
        except Exception as exc:
            log.warning("display frame failed: %s", exc)
            health = self.health["display"]
            health.set(health.state, f"frame failed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ card reader

    def next_card(self, timeout_s: float) -> str | None:
        """The next card number read, waiting up to ``timeout_s`` seconds."""
        return self.reader_worker.next_card(timeout_s)

    def on_card(self, callback: Callable[[str], None]) -> None:
        """``callback(card_no)`` runs on the reader thread for every read; keep it short."""
        self.reader_worker.on_card(callback)

    # ------------------------------------------------------------ states

    def states(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        profiles = {
            "printer": self.printer_profile,
            "reader": self.reader_profile,
            "display": self.display_profile,
        }
        drivers = {
            "printer": self.cfg.printer.driver,
            "reader": self.cfg.reader.driver,
            "display": self.cfg.display.driver,
        }
        for role in ROLES:
            health = self.health[role].health
            out[role] = {
                "state": health.state.value,
                "last_error": health.last_error,
                "profile": profiles[role].name,
                "model": profiles[role].model,
                "driver": drivers[role],
            }
        try:
            out["printer"]["queue_depth"] = self.print_queue.depth()
        except Exception as exc:
            log.warning("print queue depth: %s", exc)
            out["printer"]["queue_depth"] = None
        return out

    # ------------------------------------------------------------ rehearsals

    def rehearse(self, role: str, action: str, card_no: str = "") -> None:
        """Inject a fault or an input into a virtual device, so a store can rehearse.

        printer: unplug | plug | paper_out | paper_near_end | paper_ok | fail_write
        reader:  unplug | plug | swipe (card_no) | garbage
        display: unplug | plug
        """
        device = {
            "printer": self.virtual_printer,
            "reader": self.virtual_reader,
            "display": self.virtual_display,
        }.get(role)
        if role not in ROLES:
            raise NotFound(f"没有这种设备 (no device role {role!r})", field="role")
        if device is None:
            raise Conflict(
                "真实设备不能模拟故障, 只有虚拟设备可以"
                f" (the {role} is a real device ({self.cfg.to_dict()[role]['driver']});"
                " faults can be injected into virtual devices only)",
                field="role",
            )
        actions: dict[str, Callable[[], None]] = {"unplug": device.unplug, "plug": device.plug}
        if isinstance(device, VirtualPrinter):
            actions.update(
                paper_out=lambda: device.set_paper(PAPER_OUT),
                paper_near_end=lambda: device.set_paper(PAPER_NEAR_END),
                paper_ok=lambda: device.set_paper(PAPER_OK),
                fail_write=device.fail_next_write,
            )
        elif isinstance(device, VirtualReader):
            actions.update(swipe=lambda: device.swipe(card_no), garbage=device.inject_garbage)
            if action == "swipe" and not (card_no.isascii() and card_no.isprintable() and card_no):
                raise ValidationError(
                    "模拟刷卡需要卡号 (swipe needs a card_no of printable ASCII)", field="card_no"
                )
        if action not in actions:
            raise ValidationError(
                f"不支持的模拟操作 ({role} rehearsal actions: {', '.join(actions)};"
                f" got {action!r})",
                field="action",
            )
        log.warning("rehearsal: %s %s", role, action)
        actions[action]()
        if role == "printer":
            self.printer_worker.wake()

    # ------------------------------------------------------------ virtual devices, for tests

    @property
    def virtual_printer(self) -> VirtualPrinter | None:
        t = self.printer_transport
        return t if isinstance(t, VirtualPrinter) else None

    @property
    def virtual_reader(self) -> VirtualReader | None:
        r = self.card_reader
        return r if isinstance(r, VirtualReader) else None

    @property
    def virtual_display(self) -> VirtualDisplay | None:
        t = self.display_transport
        return t if isinstance(t, VirtualDisplay) else None


def _load_profiles(cfg: DevicesConfig) -> tuple[PrinterProfile, ReaderProfile, DisplayProfile]:
    library = cfg.profile_library()
    printer = library.load(cfg.printer.profile, "printer")
    reader = library.load(cfg.reader.profile, "reader")
    display = library.load(cfg.display.profile, "display")
    # load() checked each kind; the isinstance checks tell the type checker so
    if not (
        isinstance(printer, PrinterProfile)
        and isinstance(reader, ReaderProfile)
        and isinstance(display, DisplayProfile)
    ):
        raise ConfigError("devices: a profile of the wrong kind was loaded")
    return printer, reader, display


def _hex(value: str) -> int | None:
    return int(value, 16) if value else None


def _printer_transport(cfg: DevicesConfig, profile: PrinterProfile) -> PrinterTransport:
    p = cfg.printer
    if p.driver == "virtual":
        return VirtualPrinter(profile.encoding)
    return EscposTransport(
        p.driver,
        profile,
        host=p.host,
        tcp_port=p.tcp_port,
        serial_port=p.serial_port,
        baudrate=p.baudrate,
        device_file=p.device_file,
        usb_vendor_id=_hex(p.usb_vendor_id),
        usb_product_id=_hex(p.usb_product_id),
        timeout_s=p.timeout_s,
        query_status=p.query_status,
    )


def _card_reader(cfg: DevicesConfig, profile: ReaderProfile, usb_backend: Any) -> CardReader:
    r = cfg.reader
    if r.driver == "virtual":
        return VirtualReader()
    if r.driver == "serial":
        settings = profile.serial_settings()
        if r.baudrate:
            settings["baudrate"] = r.baudrate
        return SerialReader(r.serial_port, settings)
    vendor = _hex(r.usb_vendor_id) or profile.usb_vendor_id
    product = _hex(r.usb_product_id) or profile.usb_product_id
    assert vendor is not None and product is not None  # noqa: S101 - config validated this
    return UsbHidReader(
        vendor,
        product,
        profile.usb_interface,
        backend=usb_backend,
        repeats_without_release=profile.has_quirk("repeats_keys_without_release"),
    )


def _display_transport(cfg: DevicesConfig, profile: DisplayProfile) -> DisplayTransport:
    d = cfg.display
    if d.driver == "virtual":
        return VirtualDisplay()
    settings = profile.serial_settings()
    if d.baudrate:
        settings["baudrate"] = d.baudrate
    return SerialDisplay(d.serial_port, settings)
