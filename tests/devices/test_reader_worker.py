"""The card reader thread: card numbers out, garbage ignored, reconnect after unplug."""

from __future__ import annotations

import os
import tty

import pytest

from edge.devices.profiles import ProfileLibrary
from edge.devices.reader import ReaderWorker, SerialReader, VirtualReader
from edge.devices.state import Backoff, DeviceState, HealthTracker

from .conftest import wait_for

LIB = ProfileLibrary()


@pytest.fixture
def running():
    reader = VirtualReader()
    health = HealthTracker()
    worker = ReaderWorker(reader, LIB.load("magtek_dynamag"), health, Backoff(0.01, 0.05))
    worker.start()
    wait_for(lambda: health.state == DeviceState.READY)
    yield reader, worker, health
    worker.stop()


def test_swipes_become_card_numbers(running):
    reader, worker, _ = running
    seen: list[str] = []
    worker.on_card(seen.append)
    reader.swipe(";6225880112345678?")
    reader.swipe(";6225880187654321?", right_shift=True)
    assert worker.next_card(2) == "6225880112345678"
    assert worker.next_card(2) == "6225880187654321"
    assert seen == ["6225880112345678", "6225880187654321"]


def test_next_card_times_out(running):
    _, worker, _ = running
    assert worker.next_card(0.05) is None


def test_garbage_is_ignored_and_recorded(running):
    reader, worker, health = running
    reader.inject_reports(
        [
            bytes.fromhex("0000330000000000"),
            bytes.fromhex("0200380000000000"),
            bytes.fromhex("0000280000000000"),
        ]
    )  # ";?" then Enter: a bad swipe
    reader.inject_reports([b"\x01", b"\xff" * 8])  # short and nonsense reports
    reader.swipe(";12345678?")
    assert worker.next_card(2) == "12345678"
    assert worker.rejected_reads == 1
    assert "unreadable card data" in health.health.last_error


def test_a_failing_callback_does_not_stop_the_reader(running):
    reader, worker, health = running

    def boom(card: str) -> None:
        raise RuntimeError("till busy")

    worker.on_card(boom)
    reader.swipe("11112222")
    assert worker.next_card(2) == "11112222"
    wait_for(lambda: "card callback failed" in (health.health.last_error or ""))
    reader.swipe("33334444")
    assert worker.next_card(2) == "33334444"


def test_unplug_and_replug(running):
    reader, worker, health = running
    reader.unplug()
    wait_for(
        lambda: (
            health.state in (DeviceState.DISCONNECTED, DeviceState.CONNECTING)
            and health.health.last_error
        )
    )
    assert "unplugged" in health.health.last_error
    reader.plug()
    wait_for(lambda: health.state == DeviceState.READY)
    reader.swipe("55556666")
    assert worker.next_card(2) == "55556666"
    assert reader.open_count >= 2


def test_queue_is_bounded():
    reader = VirtualReader()
    worker = ReaderWorker(
        reader, LIB.load("virtual_reader"), HealthTracker(), Backoff(), max_queued=2
    )
    for card in ("1", "2", "3"):
        worker.handle_read(card)
    assert [worker.next_card(0), worker.next_card(0), worker.next_card(0)] == ["2", "3", None]


def test_serial_reader_through_a_pty():
    pytest.importorskip("serial")
    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    profile = LIB.load("generic_serial_reader")
    reader = SerialReader(os.ttyname(slave), profile.serial_settings())
    health = HealthTracker()
    worker = ReaderWorker(reader, profile, health, Backoff(0.01, 0.05))
    worker.start()
    try:
        wait_for(lambda: health.state == DeviceState.READY)
        os.write(master, b"0012345678\r\n0087654321\r")
        assert worker.next_card(2) == "0012345678"
        assert worker.next_card(2) == "0087654321"
    finally:
        worker.stop()
        os.close(master)
        os.close(slave)
