"""Pole displays: command-set bytes, screens, and a real serial port through a pty."""

from __future__ import annotations

import os
import select
import time
import tty

import pytest

from edge.devices.display import (
    DisplayWorker,
    FrameFormatter,
    SerialDisplay,
    VirtualDisplay,
    encode_frame,
    frame_bytes,
    init_bytes,
)
from edge.devices.profiles import ProfileLibrary
from edge.devices.state import Backoff, DeviceState, HealthTracker
from edge.devices.text import text_width

from .conftest import wait_for

LIB = ProfileLibrary()
CD5220 = LIB.load("cd5220_generic")
DMD = LIB.load("epson_dm_d110")
DMD_CN = LIB.load("epson_dm_d110_chinese")
LOGIC = LIB.load("logic_controls_pd3000")

ROW1 = b"A" * 20
ROW2 = b"B" * 20


@pytest.mark.parametrize(
    ("command_set", "init", "frame"),
    [
        ("epson_dmd", b"\x1b@\x1f\x01\x1fC\x00", b"\x1f$\x01\x01" + ROW1 + b"\x1f$\x01\x02" + ROW2),
        ("cd5220", b"\x1b@\x0c", b"\x1bQA" + ROW1 + b"\r" + b"\x1bQB" + ROW2 + b"\r"),
        ("logic_controls", b"\x1f\x11\x14", b"\x10\x00" + ROW1 + b"\x10\x14" + ROW2),
    ],
)
def test_command_sets(command_set, init, frame):
    assert init_bytes(command_set) == init
    assert frame_bytes(command_set, [ROW1, ROW2]) == frame


def test_unknown_command_set():
    with pytest.raises(ValueError):
        init_bytes("hitachi")


def test_ascii_display_screens_are_two_rows_of_twenty():
    f = FrameFormatter(CD5220)
    screens = [
        f.item("Cola 330ml", 350),
        f.item("可口可乐", 350),
        f.total(12345),
        f.change(20000, 7655),
        f.greeting("张*", "金卡"),
        f.greeting(None, None),
        f.idle(),
        f.test_pattern(),
    ]
    for screen in screens:
        assert len(screen.rows) == 2
        for row in screen.rows:
            assert row.isascii() and len(row) == 20, row
    assert screens[0].rows == ("Cola 330ml          ", "PRICE           3.50")
    assert screens[1].rows[0].startswith("ITEM")  # no Chinese font: a neutral label
    assert screens[2].rows[1] == "              123.45"
    assert screens[3].rows == ("PAID          200.00", "CHANGE         76.55")
    assert screens[5].rows[0].strip() == "WELCOME"


def test_chinese_display_screens_fit_by_column_width():
    f = FrameFormatter(DMD_CN)
    item = f.item("康师傅红烧牛肉面超大桶装", 550)
    assert item.rows[0] == "康师傅红烧牛肉面超大"  # ten double-width characters fill 20 columns
    assert item.rows[1] == "单价          ￥5.50"
    greeting = f.greeting("张*", "金卡")
    assert greeting.rows[0].strip() == "张*您好"
    assert greeting.rows[1].strip() == "金卡会员"
    for row in item.rows + greeting.rows:
        assert text_width(row) == 20


def test_chinese_rows_are_wrapped_in_the_profile_s_chinese_mode():
    frame = FrameFormatter(DMD_CN).total(900)
    row1 = "合计".encode("gb18030") + b" " * 16
    row2 = b" " * 14 + b"\xa3\xa4" + b"9.00"  # ￥ is GB2312 A3A4
    assert encode_frame(frame, DMD_CN) == (
        b"\x1f$\x01\x01\x1c&" + row1 + b"\x1c." + b"\x1f$\x01\x02\x1c&" + row2 + b"\x1c."
    )
    ascii_only = FrameFormatter(DMD_CN).test_pattern()
    assert encode_frame(ascii_only, DMD_CN).startswith(b"\x1f$\x01\x0112345678901234567890")


def test_idle_lines_from_config():
    f = FrameFormatter(DMD_CN, idle=("欢迎光临本店", "WELCOME"))
    assert [row.strip() for row in f.idle().rows] == ["欢迎光临本店", "WELCOME"]


@pytest.fixture
def pty_pair():
    pytest.importorskip("serial")
    master, slave = os.openpty()
    tty.setraw(slave)  # the display side: no CR->NL translation, no echo
    tty.setraw(master)
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


def read_available(fd: int, want: int, timeout: float = 2.0) -> bytes:
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            out += os.read(fd, 4096)
    return bytes(out)


@pytest.mark.parametrize("profile", [CD5220, DMD, LOGIC], ids=lambda p: p.command_set)
def test_serial_display_through_a_pty(pty_pair, profile):
    master, path = pty_pair
    display = SerialDisplay(path, profile.serial_settings())
    health = HealthTracker()
    worker = DisplayWorker(display, profile, health, Backoff(0.01, 0.05))
    frame = FrameFormatter(profile).total(900)
    expected = init_bytes(profile.command_set) + encode_frame(frame, profile)
    worker.start()
    try:
        worker.show(frame)
        got = read_available(master, len(expected))
        wait_for(lambda: health.state == DeviceState.READY)
    finally:
        worker.stop()
    assert got == expected
    if profile.command_set == "cd5220":
        assert got.count(b"\r") == 2 and b"\n" not in got  # CR survived: the pty is raw


def test_latest_frame_wins_and_is_shown_again_after_a_reconnect():
    display = VirtualDisplay()
    health = HealthTracker()
    worker = DisplayWorker(display, CD5220, health, Backoff(0.01, 0.05))
    f = FrameFormatter(CD5220)
    worker.start()
    try:
        worker.show(f.item("A", 100))
        worker.show(f.total(100))
        wait_for(lambda: worker.current == f.total(100))
        display.unplug()
        worker.show(f.change(200, 100))
        wait_for(lambda: health.state == DeviceState.DISCONNECTED)
        assert "unplugged" in health.health.last_error
        display.plug()
        wait_for(lambda: worker.current == f.change(200, 100))
    finally:
        worker.stop()
    assert display.output.endswith(encode_frame(f.change(200, 100), CD5220))
    assert display.open_count >= 2


def test_missing_serial_port_is_reported():
    pytest.importorskip("serial")
    health = HealthTracker()
    worker = DisplayWorker(
        SerialDisplay("/dev/nonexistent-tty", CD5220.serial_settings()),
        CD5220,
        health,
        Backoff(0.01, 0.05),
    )
    worker.start()
    try:
        wait_for(lambda: health.health.last_error is not None)
    finally:
        worker.stop()
    assert "cannot open display port /dev/nonexistent-tty" in health.health.last_error


def test_chinese_display_counts_gb_symbols_full_width_and_swaps_missing_glyphs():
    f = FrameFormatter(DMD_CN)
    item = f.item("¥9.9可乐×2𠮷野家", 990)
    assert item.rows[0] == "￥9.9可乐×2？野家  "  # ￥, ×, ？ take two columns each
    assert all(text_width(row) == 20 for row in item.rows)
    encoded = encode_frame(item, DMD_CN)
    assert "𠮷".encode("gb18030") not in encoded and "¥".encode("gb18030") not in encoded
    assert "×".encode("gb18030") in encoded
