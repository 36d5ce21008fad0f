"""The real pyusb code path of the HID card reader, through a fake pyusb backend."""

from __future__ import annotations

import pytest

from core.errors import DeviceError
from edge.devices.hid import report_for
from edge.devices.reader import UsbHidReader

from .fake_usb import FakeHidKeyboardBackend

VID, PID = 0xFFFF, 0x0035


def read_until(reader: UsbHidReader, want: int, max_reads: int = 200) -> list[str]:
    got: list[str] = []
    for _ in range(max_reads):
        got += reader.read(0.05)
        if len(got) >= want:
            break
    return got


@pytest.fixture
def backend() -> FakeHidKeyboardBackend:
    return FakeHidKeyboardBackend(VID, PID)


def test_open_detaches_the_kernel_driver_and_claims_the_interface(backend):
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    assert "detach 0" in backend.calls
    assert backend.calls.index("detach 0") < backend.calls.index("claim 0")
    assert backend.claimed == {0}
    reader.close()
    assert backend.claimed == set()
    assert backend.kernel_driver_active, "the keyboard goes back to the kernel on close"


def test_reads_a_card_typed_as_boot_reports(backend):
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    backend.push(*report_for("0012345678"))
    backend.push(*report_for(";6225880112345678?", right_shift=True))
    assert read_until(reader, 2) == ["0012345678", ";6225880112345678?"]
    reader.close()


def test_read_timeout_returns_nothing(backend):
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    assert reader.read(0.01) == []
    reader.close()


def test_missing_device_is_a_device_error(backend):
    backend.unplug()
    with pytest.raises(DeviceError, match="not found"):
        UsbHidReader(VID, PID, backend=backend).open()


def test_unplug_while_reading_is_a_device_error(backend):
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    backend.unplug()
    with pytest.raises(DeviceError, match="read failed"):
        reader.read(0.05)
    reader.close()


def test_reopen_after_replug(backend):
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    backend.unplug()
    with pytest.raises(DeviceError):
        reader.read(0.05)
    reader.close()
    backend.plug()
    reader.open()
    backend.push(*report_for("87654321"))
    assert read_until(reader, 1) == ["87654321"]
    reader.close()


def test_wrong_ids_are_not_found(backend):
    with pytest.raises(DeviceError, match="1234:5678"):
        UsbHidReader(0x1234, 0x5678, backend=backend).open()


def test_open_asks_for_boot_reports_sent_only_on_change(backend):
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    claim = backend.calls.index("claim 0")
    assert backend.calls[claim + 1 : claim + 3] == [
        "ctrl 0x21 0x0b 0 0",  # SET_PROTOCOL boot, on the claimed interface
        "ctrl 0x21 0x0a 0 0",  # SET_IDLE 0: no repeated reports while a key is held
    ]
    reader.close()


def test_a_reader_that_stalls_the_hid_requests_still_reads(backend):
    backend.stalls = {(0x21, 0x0A), (0x21, 0x0B)}
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    backend.push(*report_for("0012345678"))
    assert read_until(reader, 1) == ["0012345678"]
    reader.close()


def test_a_non_boot_hid_interface_gets_no_set_protocol(backend):
    backend.interface_descriptor.bInterfaceSubClass = 0
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    assert not any(c.startswith("ctrl 0x21 0x0b") for c in backend.calls)
    assert "ctrl 0x21 0x0a 0 0" in backend.calls
    reader.close()


def test_several_keys_and_both_shifts_through_the_usb_path(backend):
    reader = UsbHidReader(VID, PID, backend=backend)
    reader.open()
    backend.push(
        bytes.fromhex("0000331e1f000000"),  # ";12" in one report
        bytes.fromhex("0000000000000000"),
        bytes.fromhex("2000380000000000"),  # right shift + "/" = "?"
        bytes.fromhex("0200040000000000"),  # left shift + "a" = "A"
        bytes.fromhex("0000280000000000"),  # Enter
    )
    assert read_until(reader, 1) == [";12?A"]
    reader.close()
