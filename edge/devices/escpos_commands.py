"""ESC/POS byte building: pure functions, no I/O (the transports only send bytes)."""

from __future__ import annotations

ESC = b"\x1b"
GS = b"\x1d"
FS = b"\x1c"
DLE = b"\x10"
LF = b"\n"

INIT = ESC + b"@"
CHINESE_ON = FS + b"&"  # FS &: enter the double-byte (GB) character mode
CHINESE_OFF = FS + b"."  # FS .: leave it
PAPER_STATUS_QUERY = DLE + b"\x04\x04"  # DLE EOT 4: roll paper sensor status

ALIGN = {"l": ESC + b"a\x00", "c": ESC + b"a\x01", "r": ESC + b"a\x02"}


def bold(on: bool) -> bytes:
    return ESC + b"E" + (b"\x01" if on else b"\x00")


def char_size(double_height: bool = False, double_width: bool = False) -> bytes:
    """GS ! n: bit 0-3 height multiplier - 1, bit 4-7 width multiplier - 1."""
    return GS + b"!" + bytes([(0x10 if double_width else 0) | (0x01 if double_height else 0)])


def feed(lines: int) -> bytes:
    return ESC + b"d" + bytes([max(0, min(lines, 255))])


def cut(mode: str) -> bytes:
    """GS V m: 0 full cut, 1 partial cut; nothing for printers without a cutter."""
    if mode == "full":
        return GS + b"V\x00"
    if mode == "partial":
        return GS + b"V\x01"
    return b""


def drawer_kick(pin: int, on_ms: int, off_ms: int) -> bytes:
    """ESC p m t1 t2: pulse drawer connector pin 2 (m=0) or pin 5 (m=1); times in 2 ms units."""
    m = 0 if pin == 2 else 1
    return ESC + b"p" + bytes([m, max(1, min(on_ms // 2, 255)), max(1, min(off_ms // 2, 255))])


def drawer_pulse_realtime(pin: int, on_ms: int) -> bytes:
    """DLE DC4 1 m t: a real-time pulse, run at once even while the printer is offline for
    lack of paper (ESC p would wait in the buffer and open the drawer when paper returns).
    t counts 100 ms units, 1-8."""
    m = 0 if pin == 2 else 1
    return DLE + b"\x14\x01" + bytes([m, max(1, min((on_ms + 99) // 100, 8))])


def _gs_k(fn: bytes, params: bytes) -> bytes:
    body = b"1" + fn + params  # cn = '1' (49): QR Code
    n = len(body)
    return GS + b"(k" + bytes([n & 0xFF, n >> 8]) + body


def qr_native(data: str, module_size: int = 6, error_level: str = "M") -> bytes:
    """GS ( k, function 165/167/169/180/181: model 2, module size, error level, store, print."""
    payload = data.encode("ascii", errors="replace")
    level = {"L": b"0", "M": b"1", "Q": b"2", "H": b"3"}[error_level]
    return (
        _gs_k(b"A", b"2\x00")  # fn 165: model 2
        + _gs_k(b"C", bytes([max(1, min(module_size, 16))]))  # fn 167: module size
        + _gs_k(b"E", level)  # fn 169: error correction
        + _gs_k(b"P", b"0" + payload)  # fn 180: store the data
        + _gs_k(b"Q", b"0")  # fn 181: print
    )


def code128(data: str, height: int = 64, module_width: int = 2) -> bytes:
    """GS h / GS w / GS f / GS H / GS k 73: a CODE128 barcode (code set B) of ``data``,
    with no human-readable text under it (the receipt prints the number itself). The
    bytes python-escpos's ``barcode(..., "CODE128", function_type="B", pos="OFF")`` sends
    after its alignment (tests/devices/test_receipt_render.py holds them together)."""
    payload = b"{B" + data.encode("ascii")
    if not data or len(payload) > 255 or any(not 32 <= b < 127 for b in payload):
        raise ValueError(f"CODE128 takes 1-253 printable ASCII characters, not {data!r}")
    return (
        GS
        + b"h"
        + bytes([max(1, min(height, 255))])
        + GS
        + b"w"
        + bytes([max(2, min(module_width, 6))])
        + GS
        + b"f\x00"
        + GS
        + b"H\x00"
        + GS
        + b"kI"
        + bytes([len(payload)])
        + payload
    )


def raster_image(width: int, height: int, packed: bytes, band_rows: int = 256) -> bytes:
    """GS v 0 in bands of ``band_rows`` rows (small printer buffers); bit 1 = black."""
    width_bytes = (width + 7) // 8
    if len(packed) != width_bytes * height:
        raise ValueError(f"raster data is {len(packed)} bytes, expected {width_bytes * height}")
    out = bytearray()
    for top in range(0, height, band_rows):
        rows = min(band_rows, height - top)
        out += GS + b"v0\x00" + bytes([width_bytes & 0xFF, width_bytes >> 8])
        out += bytes([rows & 0xFF, rows >> 8])
        out += packed[top * width_bytes : (top + rows) * width_bytes]
    return bytes(out)
