"""A fake pyusb backend presenting one HID boot keyboard (a card reader).

pyusb lets a program pass any ``usb.backend.IBackend``; this one answers the
descriptor queries, kernel-driver calls and interrupt reads the way libusb
would, so the reader's real pyusb code runs unchanged.
"""

from __future__ import annotations

import queue
import threading
from types import SimpleNamespace

import usb.backend
import usb.core

ENODEV = 19


def _desc(**fields: object) -> SimpleNamespace:
    return SimpleNamespace(**fields)


class FakeHidKeyboardBackend(usb.backend.IBackend):
    def __init__(
        self, vendor_id: int, product_id: int, *, kernel_driver_active: bool = True
    ) -> None:
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.kernel_driver_active = kernel_driver_active
        self.plugged = True
        self.calls: list[str] = []
        self.claimed: set[int] = set()
        self.stalls: set[tuple[int, int]] = set()  # control requests answered with a STALL
        self.configuration = 0
        self._reports: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self._device = object()
        self.device_descriptor = _desc(
            bLength=18,
            bDescriptorType=1,
            bcdUSB=0x0200,
            bDeviceClass=0,
            bDeviceSubClass=0,
            bDeviceProtocol=0,
            bMaxPacketSize0=8,
            idVendor=vendor_id,
            idProduct=product_id,
            bcdDevice=0x0100,
            iManufacturer=0,
            iProduct=0,
            iSerialNumber=0,
            bNumConfigurations=1,
            address=7,
            bus=1,
            port_number=2,
            port_numbers=(2,),
            speed=2,
        )
        self.config_descriptor = _desc(
            bLength=9,
            bDescriptorType=2,
            wTotalLength=34,
            bNumInterfaces=1,
            bConfigurationValue=1,
            iConfiguration=0,
            bmAttributes=0xA0,
            bMaxPower=50,
            extra_descriptors=[],
        )
        self.interface_descriptor = _desc(
            bLength=9,
            bDescriptorType=4,
            bInterfaceNumber=0,
            bAlternateSetting=0,
            bNumEndpoints=1,
            bInterfaceClass=3,
            bInterfaceSubClass=1,
            bInterfaceProtocol=1,
            iInterface=0,
            extra_descriptors=[],
        )
        self.endpoint_descriptor = _desc(
            bLength=7,
            bDescriptorType=5,
            bEndpointAddress=0x81,
            bmAttributes=0x03,
            wMaxPacketSize=8,
            bInterval=10,
            bRefresh=0,
            bSynchAddress=0,
            extra_descriptors=[],
        )

    # ---- test controls
    def push(self, *reports: bytes) -> None:
        for report in reports:
            self._reports.put(bytes(report))

    def unplug(self) -> None:
        self.plugged = False

    def plug(self) -> None:
        self.plugged = True
        self.kernel_driver_active = True  # the kernel grabs a re-plugged keyboard again

    def _gone(self) -> None:
        if not self.plugged:
            raise usb.core.USBError(
                "No such device (it may have been disconnected)", ENODEV, ENODEV
            )

    # ---- IBackend
    def enumerate_devices(self):
        if self.plugged:
            yield self._device

    def get_device_descriptor(self, dev):
        return self.device_descriptor

    def get_configuration_descriptor(self, dev, config):
        if config != 0:
            raise IndexError(config)
        return self.config_descriptor

    def get_interface_descriptor(self, dev, intf, alt, config):
        if (intf, alt, config) != (0, 0, 0):
            raise IndexError(intf)
        return self.interface_descriptor

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        if (ep, intf, alt, config) != (0, 0, 0, 0):
            raise IndexError(ep)
        return self.endpoint_descriptor

    def open_device(self, dev):
        self._gone()
        self.calls.append("open")
        return "handle"

    def close_device(self, dev_handle):
        self.calls.append("close")

    def set_configuration(self, dev_handle, config_value):
        self._gone()
        self.calls.append(f"set_configuration {config_value}")
        self.configuration = config_value

    def get_configuration(self, dev_handle):
        return self.configuration

    def claim_interface(self, dev_handle, intf):
        self._gone()
        if self.kernel_driver_active:
            raise usb.core.USBError("Resource busy", 16, 16)
        self.calls.append(f"claim {intf}")
        self.claimed.add(intf)

    def release_interface(self, dev_handle, intf):
        self.calls.append(f"release {intf}")
        self.claimed.discard(intf)

    def is_kernel_driver_active(self, dev_handle, intf):
        self._gone()
        return self.kernel_driver_active

    def detach_kernel_driver(self, dev_handle, intf):
        self.calls.append(f"detach {intf}")
        self.kernel_driver_active = False

    def attach_kernel_driver(self, dev_handle, intf):
        self.calls.append(f"attach {intf}")
        self.kernel_driver_active = True

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
        self._gone()
        self.calls.append(f"ctrl {bmRequestType:#04x} {bRequest:#04x} {wValue} {wIndex}")
        if (bmRequestType, bRequest) in self.stalls:
            raise usb.core.USBError("Pipe error", 32, 32)
        return len(data) if data is not None else 0

    def intr_read(self, dev_handle, ep, intf, buff, timeout):
        self._gone()
        if ep != 0x81 or intf not in self.claimed:
            raise usb.core.USBError("interface not claimed", 5, 5)
        try:
            report = self._reports.get(timeout=min(timeout, 200) / 1000)
        except queue.Empty:
            raise usb.core.USBTimeoutError("Operation timed out", 110, 110) from None
        buff[: len(report)] = __import__("array").array("B", report)
        return len(report)
