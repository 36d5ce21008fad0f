"""Without the hardware extra: edge.devices imports, virtual devices work, real ones say
what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys, tempfile, pathlib

    BLOCKED = ("usb", "escpos", "serial", "PIL", "qrcode")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Block())

    import edge.devices.manager, edge.devices.api, edge.devices.cli  # noqa: F401
    from core.errors import DeviceError
    from core.receipt import Receipt
    from edge.devices.config import DevicesConfig
    from edge.devices.manager import DeviceManager
    from edge.devices.printer import EscposTransport
    from edge.devices.profiles import ProfileLibrary
    from edge.devices.reader import UsbHidReader

    m = DeviceManager.from_config(DevicesConfig(), pathlib.Path(tempfile.mkdtemp()))
    m.start()
    job = m.print_receipt(Receipt("sale", "销售小票", "店", "S1", "N1", "2026-01-01 00:00:00", "甲"))
    import time
    for _ in range(300):
        if m.print_job(job).status == "done":
            break
        time.sleep(0.01)
    print("virtual", m.print_job(job).status)
    m.stop()

    for attempt in (
        lambda: EscposTransport("network", ProfileLibrary().load("epson_tm_t88v"), host="h").open(),
        lambda: UsbHidReader(0xFFFF, 0x0035).open(),
    ):
        try:
            attempt()
        except DeviceError as exc:
            print("hint", exc.message)
    """
)


def test_edge_devices_without_hardware_libraries():
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "virtual done" in lines
    hints = [line for line in lines if line.startswith("hint")]
    assert len(hints) == 2
    assert "python-escpos is not installed" in hints[0]
    assert "pyusb is not installed" in hints[1]
    assert all("pip install 'huiyuan[hardware]'" in h for h in hints)
