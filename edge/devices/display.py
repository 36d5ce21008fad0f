"""Customer pole displays (2x20 VFD) over serial, and a virtual one.

Only the latest frame matters to a customer, so the till's calls replace a
pending frame and a worker thread writes it; a display that comes back after
being unplugged gets the current frame again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import DeviceError
from core.money import format_yuan

from ._hw import require
from .profiles import DisplayProfile, flow_control_kwargs
from .state import Backoff, DeviceState, HealthTracker
from .text import YUAN, center, gb_printable, is_ascii, left_right, normalize, pad_right

log = logging.getLogger(__name__)

ESC, US, CLR = b"\x1b", b"\x1f", b"\x0c"


# ---------------------------------------------------------------- command sets (pure)


def init_bytes(command_set: str) -> bytes:
    if command_set == "epson_dmd":
        return ESC + b"@" + US + b"\x01" + US + b"C\x00"  # init, overwrite mode, cursor off
    if command_set == "cd5220":
        return ESC + b"@" + CLR
    if command_set == "logic_controls":
        return US + b"\x11" + b"\x14"  # reset, normal display mode, cursor off
    raise ValueError(f"unknown display command set {command_set!r}")


def frame_bytes(command_set: str, rows: list[bytes], columns: int = 20) -> bytes:
    """Bytes that show ``rows`` (already encoded and padded to ``columns``)."""
    out = bytearray()
    if command_set == "epson_dmd":
        for y, row in enumerate(rows, start=1):
            out += US + b"$" + bytes([1, y]) + row  # US $ x y: cursor to column x, row y
        return bytes(out)
    if command_set == "cd5220":
        for y, row in enumerate(rows):
            out += ESC + b"Q" + (b"A" if y == 0 else b"B") + row + b"\r"  # ESC Q A|B text CR
        return bytes(out)
    if command_set == "logic_controls":
        for y, row in enumerate(rows):
            out += b"\x10" + bytes([y * columns]) + row  # 0x10 n: cursor to position n
        return bytes(out)
    raise ValueError(f"unknown display command set {command_set!r}")


# ---------------------------------------------------------------- what to show (pure)


@dataclass(frozen=True, slots=True)
class Frame:
    rows: tuple[str, ...]


class FrameFormatter:
    """Screens for the till's events, in Chinese where the display can, else ASCII."""

    def __init__(self, profile: DisplayProfile, idle: tuple[str, str] | None = None) -> None:
        self.columns = profile.columns
        self.rows = profile.rows
        self.chinese = profile.chinese
        self.idle_rows = idle

    def _amount(self, fen: int) -> str:
        return format_yuan(fen, symbol=YUAN if self.chinese else "")

    def _frame(self, *rows: str) -> Frame:
        padded = [pad_right(self._fit(r), self.columns) for r in rows[: self.rows]]
        padded += [" " * self.columns] * (self.rows - len(padded))
        return Frame(tuple(padded))

    def _fit(self, text: str) -> str:
        text = normalize(text)
        if self.chinese:
            return gb_printable(text)
        return text if is_ascii(text) else "".join(c if ord(c) < 128 else "" for c in text).strip()

    def _pick(self, chinese: str, ascii_text: str) -> str:
        return chinese if self.chinese else ascii_text

    def item(self, name: str, price_fen: int) -> Frame:
        label = name if (self.chinese or is_ascii(name)) else (self._fit(name) or "ITEM")
        return self._frame(
            label, left_right(self._pick("单价", "PRICE"), self._amount(price_fen), self.columns)
        )

    def total(self, total_fen: int) -> Frame:
        return self._frame(
            self._pick("合计", "TOTAL"),
            left_right("", self._amount(total_fen), self.columns),
        )

    def change(self, paid_fen: int, change_fen: int) -> Frame:
        return self._frame(
            left_right(self._pick("实收", "PAID"), self._amount(paid_fen), self.columns),
            left_right(self._pick("找零", "CHANGE"), self._amount(change_fen), self.columns),
        )

    def greeting(self, member_name_masked: str | None, tier: str | None) -> Frame:
        if self.chinese:
            first = f"{member_name_masked}您好" if member_name_masked else "欢迎光临"
            second = f"{tier}会员" if tier else "谢谢惠顾"
        else:
            first = "WELCOME, MEMBER" if member_name_masked else "WELCOME"
            tier_ascii = self._fit(tier or "")
            second = f"TIER {tier_ascii}" if tier_ascii else "THANK YOU"
        return self._frame(center(first, self.columns), center(second, self.columns))

    def idle(self) -> Frame:
        if self.idle_rows:
            return self._frame(*(center(self._fit(r), self.columns) for r in self.idle_rows))
        first = self._pick("欢迎光临", "WELCOME")
        return self._frame(center(first, self.columns), center("HUIYUAN", self.columns))

    def test_pattern(self) -> Frame:
        digits = "".join(str(i % 10) for i in range(1, self.columns + 1))
        second = self._pick("显示测试 中文OK", "DISPLAY TEST")
        return self._frame(digits, second)


def encode_frame(frame: Frame, profile: DisplayProfile) -> bytes:
    rows = []
    for row in frame.rows:
        if profile.chinese and not is_ascii(row):
            encoded = profile.chinese_enter + gb_printable(row).encode(profile.encoding, "replace")
            rows.append(encoded + profile.chinese_exit)
        else:
            rows.append(row.encode("ascii", "replace"))
    return frame_bytes(profile.command_set, rows, profile.columns)


# ---------------------------------------------------------------- transports


class DisplayTransport(Protocol):
    def open(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class SerialDisplay:
    def __init__(self, port: str, settings: dict[str, Any], write_timeout_s: float = 1.0) -> None:
        self.port = port
        self.settings = settings
        self.write_timeout_s = write_timeout_s
        self._serial: Any = None

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
                timeout=0.2,
                write_timeout=self.write_timeout_s,
            )
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"cannot open display port {self.port}: {exc}") from exc

    def write(self, data: bytes) -> None:
        if self._serial is None:
            raise DeviceError("display is not open")
        serial = require("serial")
        try:
            self._serial.write(data)
            self._serial.flush()
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"display write failed: {exc}") from exc

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()


class VirtualDisplay:
    """Records the bytes of its latest writes; can be unplugged and plugged again."""

    KEPT_WRITES = 200  # every sale writes here: a tail, not the whole day (see VirtualPrinter)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.writes: list[bytes] = []
        self.connected = True
        self.is_open = False
        self.open_count = 0

    @property
    def output(self) -> bytes:
        with self._lock:
            return b"".join(self.writes)

    def unplug(self) -> None:
        with self._lock:
            self.connected = False
            self.is_open = False

    def plug(self) -> None:
        with self._lock:
            self.connected = True

    def open(self) -> None:
        with self._lock:
            if not self.connected:
                raise DeviceError("virtual display unplugged")
            self.is_open = True
            self.open_count += 1

    def write(self, data: bytes) -> None:
        with self._lock:
            if not self.connected or not self.is_open:
                raise DeviceError("virtual display unplugged")
            self.writes.append(bytes(data))
            del self.writes[: -self.KEPT_WRITES]

    def close(self) -> None:
        with self._lock:
            self.is_open = False


class DisplayWorker:
    """Background thread: keeps the display open and shows the latest frame."""

    def __init__(
        self,
        transport: DisplayTransport,
        profile: DisplayProfile,
        health: HealthTracker,
        backoff: Backoff,
    ) -> None:
        self.transport = transport
        self.profile = profile
        self.health = health
        self.backoff = backoff
        self._lock = threading.Lock()
        self._pending: Frame | None = None
        self.current: Frame | None = None  # the frame last written successfully
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open = False

    def show(self, frame: Frame) -> None:
        with self._lock:
            self._pending = frame
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hy-display", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close()
        self.health.set(DeviceState.DISCONNECTED)

    def _close(self) -> None:
        self._open = False
        try:
            self.transport.close()
        except Exception as exc:
            log.warning("closing display: %s", exc)
            self.health.set(self.health.state, f"close failed: {exc}")

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._open:
                self.health.set(DeviceState.CONNECTING)
                try:
                    self.transport.open()
                    self.transport.write(init_bytes(self.profile.command_set))
                except Exception as exc:
                    log.warning("display open failed: %s", exc)
                    self.health.fail(DeviceState.DISCONNECTED, exc)
                    self._close()
                    self._stop.wait(self.backoff.next_delay())
                    continue
                self._open = True
                self.backoff.reset()
                self.health.set(DeviceState.READY)
                with self._lock:  # show the current frame again after a reconnect
                    if self._pending is None:
                        self._pending = self.current
            with self._lock:
                frame, self._pending = self._pending, None
            if frame is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self.transport.write(encode_frame(frame, self.profile))
                self.current = frame
            except Exception as exc:
                log.warning("display lost: %s", exc)
                self.health.fail(DeviceState.DISCONNECTED, exc)
                with self._lock:
                    if self._pending is None:
                        self._pending = frame
                self._close()
                self._stop.wait(self.backoff.next_delay())
