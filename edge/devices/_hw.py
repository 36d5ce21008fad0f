"""Guarded imports of the hardware libraries.

HQ and a demo store install without the ``hardware`` extra; importing
``edge.devices`` must still work there. Only using a real device needs them,
and then the error says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from core.errors import DeviceError

INSTALL_HINT = "pip install 'huiyuan[hardware]'"
NO_LIBUSB = "pyusb found no libusb backend; 请安装 / install: apt-get install libusb-1.0-0"

_PACKAGES = {
    "usb": "pyusb",
    "usb.core": "pyusb",
    "usb.util": "pyusb",
    "escpos": "python-escpos",
    "escpos.printer": "python-escpos",
    "serial": "pyserial",
    "serial.tools.list_ports": "pyserial",
    "PIL": "pillow",
    "PIL.Image": "pillow",
    "PIL.ImageDraw": "pillow",
    "PIL.ImageFont": "pillow",
}


def require(module: str) -> ModuleType:
    """Import a hardware module or raise DeviceError naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = _PACKAGES.get(module, module.split(".")[0])
        raise DeviceError(
            f"{package} is not installed ({exc}); 请安装硬件依赖 / install it with: {INSTALL_HINT}",
            package=package,
        ) from exc


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
