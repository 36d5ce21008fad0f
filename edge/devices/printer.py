"""Receipt printers: transports (python-escpos USB/network/serial/file, or virtual) and the
worker that drains the durable print queue into whichever printer is configured.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from core.errors import DeviceError
from core.receipt import Receipt

from . import escpos_commands as cmd
from ._hw import require
from .escpos_decode import decode
from .print_queue import PrintJob, PrintQueue
from .profiles import PrinterProfile
from .receipt_render import RenderOptions, layout_receipt, layout_test_page, render
from .state import Backoff, DeviceState, HealthTracker

log = logging.getLogger(__name__)

PAPER_OK, PAPER_NEAR_END, PAPER_OUT = 2, 1, 0


class PrinterTransport(Protocol):
    def open(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def paper_status(self) -> int | None:
        """2 plenty, 1 near end, 0 out; None when the printer cannot say."""
        ...

    def close(self) -> None: ...


class EscposTransport:
    """Any python-escpos printer class used as a byte pipe (the bytes are built by us)."""

    def __init__(
        self,
        driver: str,
        profile: PrinterProfile,
        *,
        host: str = "",
        tcp_port: int = 9100,
        serial_port: str = "",
        baudrate: int = 0,
        device_file: str = "",
        usb_vendor_id: int | None = None,
        usb_product_id: int | None = None,
        timeout_s: float = 5.0,
        query_status: bool = True,
    ) -> None:
        self.driver = driver
        self.profile = profile
        self.query_status = (
            query_status and driver != "file" and not profile.has_quirk("no_status_reply")
        )
        self._kwargs: dict[str, Any]
        self._rtscts = False
        if driver == "network":
            self._kwargs = {"host": host, "port": tcp_port, "timeout": timeout_s}
        elif driver == "serial":
            s = profile.serial_settings()
            self._kwargs = {
                "devfile": serial_port,
                "baudrate": baudrate or s["baudrate"],
                "bytesize": s["bytesize"],
                "parity": s["parity"],
                "stopbits": s["stopbits"],
                "timeout": timeout_s,
                # python-escpos's Serial passes dsrdtr and xonxoff; RTS/CTS is set on
                # the open port (open())
                "dsrdtr": s["flow_control"] == "dsrdtr",
                "xonxoff": s["flow_control"] == "xonxoff",
            }
            self._rtscts = s["flow_control"] == "rtscts"
        elif driver == "file":
            self._kwargs = {"devfile": device_file}
        elif driver == "usb":
            self._kwargs = {
                "idVendor": usb_vendor_id or profile.usb_vendor_id,
                "idProduct": usb_product_id or profile.usb_product_id,
                "timeout": int(timeout_s * 1000),
                "in_ep": profile.usb_in_ep,
                "out_ep": profile.usb_out_ep,
            }
        else:
            raise DeviceError(f"unknown printer driver {driver!r}")
        self._printer: Any = None

    def _printer_class(self) -> Any:
        printers = require("escpos.printer")
        return {
            "network": _closing_network_class(printers.Network),
            "serial": printers.Serial,
            "file": printers.File,
            "usb": printers.Usb,
        }[self.driver]

    def open(self) -> None:
        printer_class = self._printer_class()
        printer = printer_class(profile=self.profile.escpos_profile, **self._kwargs)
        try:
            printer.open()
            if self.driver == "serial" and self._rtscts:
                printer.device.rtscts = True  # pyserial applies it to the open port
        except Exception as exc:  # escpos, socket, serial and usb (no backend) errors alike
            raise DeviceError(f"cannot open {self.driver} printer: {exc}") from exc
        self._printer = printer

    def write(self, data: bytes) -> None:
        if self._printer is None:
            raise DeviceError("printer is not open")
        try:
            self._printer._raw(data)  # the transport's only job: send our bytes
        except Exception as exc:  # socket, serial and usb each raise their own kind
            raise DeviceError(f"{self.driver} printer write failed: {exc}") from exc

    def paper_status(self) -> int | None:
        if not self.query_status or self._printer is None:
            return None
        try:
            return int(self._printer.paper_status())
        except Exception as exc:
            raise DeviceError(f"printer status query failed: {exc}") from exc

    def close(self) -> None:
        printer, self._printer = self._printer, None
        if printer is not None:
            try:
                printer.close()
            except Exception as exc:
                log.warning("closing printer: %s", exc)


def _closing_network_class(network: type) -> type:
    """python-escpos 3.1's Network.open leaves the socket open when connect() fails; a
    printer that is off for hours would leak one socket per retry."""

    class ClosingNetwork(network):  # type: ignore[misc, valid-type]
        def open(self, raise_not_found: bool = True) -> None:
            if self._device:
                self.close()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect((self.host, self.port))
            except OSError as exc:
                sock.close()
                raise DeviceError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
            self.device = sock

    return ClosingNetwork


class VirtualPrinter:
    """Records the bytes of its latest writes; faults can be injected (unplug, paper out,
    failing writes)."""

    # a demo till prints here all day: keep a tail for tests and the technician, not every
    # receipt ever printed (that grew the till server by about 2 kB a sale)
    KEPT_WRITES = 200

    def __init__(self, encoding: str = "gb18030") -> None:
        self.encoding = encoding
        self._lock = threading.Lock()
        self.jobs: list[bytes] = []  # one entry per write() that succeeded, the latest ones
        self.connected = True
        self.paper = PAPER_OK
        self.fail_writes = 0  # the next N writes raise, as a cable pulled mid-job would
        self.is_open = False
        self.open_count = 0

    @property
    def output(self) -> bytes:
        with self._lock:
            return b"".join(self.jobs)

    def text_lines(self) -> list[str]:
        return decode(self.output, self.encoding).lines

    def unplug(self) -> None:
        with self._lock:
            self.connected = False
            self.is_open = False

    def plug(self) -> None:
        with self._lock:
            self.connected = True

    def set_paper(self, status: int) -> None:
        with self._lock:
            self.paper = status

    def fail_next_write(self) -> None:
        """The next write fails, as a cable pulled in the middle of a receipt would."""
        with self._lock:
            self.fail_writes += 1

    def open(self) -> None:
        with self._lock:
            if not self.connected:
                raise DeviceError("virtual printer unplugged")
            self.is_open = True
            self.open_count += 1

    def write(self, data: bytes) -> None:
        with self._lock:
            if not self.connected or not self.is_open:
                raise DeviceError("virtual printer unplugged")
            if self.fail_writes > 0:
                self.fail_writes -= 1
                raise DeviceError("virtual printer write failed (injected)")
            self.jobs.append(bytes(data))
            del self.jobs[: -self.KEPT_WRITES]

    def paper_status(self) -> int | None:
        with self._lock:
            if not self.connected:
                raise DeviceError("virtual printer unplugged")
            return self.paper

    def close(self) -> None:
        with self._lock:
            self.is_open = False


class _SetupError(DeviceError):
    """A job cannot be rendered on this box (e.g. no CJK font); retried after a fix."""


class PrinterWorker:
    """Background thread: keeps the printer open and prints queued jobs in order."""

    IDLE_POLL_S = 1.0
    DRAWER_MAX_AGE_S = 10.0  # a drawer kick that could not be sent by then is dropped

    def __init__(
        self,
        transport: PrinterTransport,
        profile: PrinterProfile,
        queue: PrintQueue,
        health: HealthTracker,
        backoff: Backoff,
        options: RenderOptions,
        header_lines: tuple[str, ...] = (),
        on_printed: Callable[[PrintJob, bytes], None] | None = None,
    ) -> None:
        self.transport = transport
        self.profile = profile
        self.queue = queue
        self.health = health
        self.backoff = backoff
        self.options = options
        self.header_lines = header_lines
        self.on_printed = on_printed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawer_requested_at: float | None = None
        self._lock = threading.Lock()
        self._open = False

    # ---- called from the till's threads: never block, never raise
    def wake(self) -> None:
        self._wake.set()

    def request_drawer(self) -> None:
        with self._lock:
            self._drawer_requested_at = time.monotonic()
        self._wake.set()

    # ---- lifecycle
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hy-printer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close()
        self.health.set(DeviceState.DISCONNECTED)

    # ---- rendering (pure; also used by the CLI to preview)
    def render_job(self, job: PrintJob) -> bytes:
        if job.kind == "test_page":
            blocks = layout_test_page(self.profile, job.payload.get("stamp", ""))
            return render(blocks, self.profile, self.options)
        if job.kind == "receipt":
            receipt = Receipt.from_dict(job.payload["receipt"])
            blocks = layout_receipt(receipt, self.profile.paper_chars, self.header_lines)
            # a receipt printed long after its sale (printer back, box restarted) must not
            # pop the drawer open in front of nobody
            fresh = time.time() - job.created_at <= self.DRAWER_MAX_AGE_S
            opens = bool(job.payload.get("open_drawer")) and fresh
            options = RenderOptions(opens, self.options.qr_size, self.options.font_path)
            return render(blocks, self.profile, options)
        raise ValueError(f"unknown print job kind {job.kind!r}")

    # ---- the loop
    def _close(self) -> None:
        self._open = False
        try:
            self.transport.close()
        except Exception as exc:
            log.warning("closing printer: %s", exc)
            self.health.set(self.health.state, f"close failed: {exc}")

    def _lost(self, exc: BaseException, state: DeviceState = DeviceState.DISCONNECTED) -> None:
        log.warning("printer: %s", exc)
        self.health.fail(state, exc)
        self._close()
        self._stop.wait(self.backoff.next_delay())

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._open:
                self.health.set(DeviceState.CONNECTING)
                try:
                    self.transport.open()
                except Exception as exc:
                    self._lost(exc)
                    continue
                self._open = True
                self.backoff.reset()
                self.health.set(DeviceState.READY)
                log.info("printer ready")
            try:
                self._kick_drawer_if_requested()
                job = self.queue.next_queued()
                if job is None:
                    self._wake.wait(self.IDLE_POLL_S)
                    self._wake.clear()
                    continue
                paper = self.transport.paper_status()
                if paper == PAPER_OUT:
                    self.health.set(DeviceState.PAPER_OUT, "paper out (缺纸)")
                    # woken early by a drawer request: the cashier still needs to give change
                    self._wake.wait(self.backoff.next_delay())
                    self._wake.clear()
                    continue
                if paper == PAPER_NEAR_END:
                    self.health.set(self.health.state, "paper near end (纸将用尽)")
                self._print(job)
            except _SetupError as exc:  # the printer is fine; the box is not set up to print
                log.error("printer: %s", exc)
                self.health.fail(DeviceState.ERROR, exc.message)
                self._stop.wait(self.backoff.next_delay())
            except DeviceError as exc:
                self._lost(exc)
            except Exception as exc:  # a bug must not kill the worker; keep it visible
                log.exception("printer worker error")
                self._lost(exc, DeviceState.ERROR)

    def _kick_drawer_if_requested(self) -> None:
        with self._lock:
            requested, self._drawer_requested_at = self._drawer_requested_at, None
        if requested is None or self.profile.drawer_pin is None:
            return
        if time.monotonic() - requested > self.DRAWER_MAX_AGE_S:
            log.warning("drawer kick dropped: the printer was away for too long")
            return
        p = self.profile
        try:
            if self.transport.paper_status() == PAPER_OUT:
                if not p.has_quirk("realtime_drawer_pulse"):
                    # ESC p would sit in the buffer and open the drawer when paper returns
                    message = "drawer not opened: paper out (缺纸, 请用钥匙开钱箱)"
                    log.warning("printer: %s", message)
                    self.health.set(DeviceState.PAPER_OUT, message)
                    return
                self.transport.write(cmd.drawer_pulse_realtime(p.drawer_pin, p.drawer_on_ms))
                return
            self.transport.write(cmd.drawer_kick(p.drawer_pin, p.drawer_on_ms, p.drawer_off_ms))
        except DeviceError:
            with self._lock:  # try again after reconnecting, while still fresh
                self._drawer_requested_at = requested
            raise

    def _print(self, job: PrintJob) -> None:
        try:
            data = self.render_job(job)
        except DeviceError as exc:  # e.g. no CJK font: a setup problem, keep the job
            self.queue.record_attempt(job.id, str(exc))
            raise _SetupError(exc.message) from exc
        except Exception as exc:
            log.exception("print job %s cannot be rendered; marked failed", job.id)
            self.queue.mark_failed(job.id, f"{type(exc).__name__}: {exc}")
            self.health.set(self.health.state, f"job {job.id} failed: {exc}")
            return
        self.health.set(DeviceState.BUSY)
        try:
            self.transport.write(data)
        except DeviceError as exc:
            self.queue.record_attempt(job.id, str(exc))
            raise
        if self.on_printed is not None:
            # before the job shows as done, so whoever waits for "done" finds its record
            self.on_printed(job, data)
        self.queue.mark_done(job.id)
        self.health.set(DeviceState.READY)
