"""Turn ESC/POS bytes back into the text lines a printer would print.

Used by tests to check the layout of a receipt, and by the virtual printer to
show a rehearsal's receipts as text. Knows the commands this package sends;
anything else is an error rather than silently skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Decoded:
    lines: list[str] = field(default_factory=list)
    cuts: int = 0
    drawer_kicks: int = 0
    qr_codes: list[str] = field(default_factory=list)
    barcodes: list[str] = field(default_factory=list)  # CODE128 data, code set prefix dropped
    images: list[tuple[int, int]] = field(default_factory=list)  # (width dots, rows) per band
    status_queries: int = 0


class DecodeError(ValueError):
    pass


def decode(data: bytes, encoding: str = "gb18030") -> Decoded:
    out = Decoded()
    text = bytearray()
    current = ""
    chinese = False
    i = 0
    n = len(data)

    def flush_text() -> None:
        nonlocal text, current
        if text:
            current += text.decode(encoding if chinese else "ascii", errors="replace")
            text = bytearray()

    def newline() -> None:
        nonlocal current
        flush_text()
        out.lines.append(current)
        current = ""

    while i < n:
        b = data[i]
        if b == 0x0A:
            newline()
            i += 1
        elif b == 0x1B:  # ESC
            flush_text()
            cmd = data[i + 1 : i + 2]
            if cmd == b"@":
                i += 2
            elif cmd in (b"a", b"E", b"!", b"-", b"M", b"t", b"2"):
                i += 3 if cmd != b"2" else 2
            elif cmd == b"d":
                for _ in range(data[i + 2]):
                    newline()
                i += 3
            elif cmd == b"p":
                out.drawer_kicks += 1
                i += 5
            else:
                raise DecodeError(f"unknown ESC command {cmd!r} at byte {i}")
        elif b == 0x1D:  # GS
            flush_text()
            cmd = data[i + 1 : i + 2]
            if cmd in (b"!", b"h", b"w", b"H", b"f"):
                i += 3
            elif cmd == b"k" and data[i + 2 : i + 3] == b"I":  # GS k 73 n d1..dn: CODE128
                length = data[i + 3]
                out.barcodes.append(data[i + 6 : i + 4 + length].decode("ascii", errors="replace"))
                i += 4 + length
            elif cmd == b"V":
                out.cuts += 1
                i += 3 if data[i + 2] in (0, 1, 48, 49) else 4
            elif cmd == b"(" and data[i + 2 : i + 3] == b"k":
                length = data[i + 3] | (data[i + 4] << 8)
                body = data[i + 5 : i + 5 + length]
                if body[:2] == b"1P":
                    out.qr_codes.append(body[3:].decode("ascii", errors="replace"))
                i += 5 + length
            elif cmd == b"v" and data[i + 2 : i + 3] == b"0":
                width_bytes = data[i + 4] | (data[i + 5] << 8)
                rows = data[i + 6] | (data[i + 7] << 8)
                out.images.append((width_bytes * 8, rows))
                i += 8 + width_bytes * rows
            else:
                raise DecodeError(f"unknown GS command {cmd!r} at byte {i}")
        elif b == 0x1C:  # FS
            flush_text()
            cmd = data[i + 1 : i + 2]
            if cmd == b"&":
                chinese = True
            elif cmd == b".":
                chinese = False
            else:
                raise DecodeError(f"unknown FS command {cmd!r} at byte {i}")
            i += 2
        elif b == 0x10 and data[i + 1 : i + 2] == b"\x04":  # DLE EOT n
            out.status_queries += 1
            i += 3
        elif b == 0x10 and data[i + 1 : i + 3] == b"\x14\x01":  # DLE DC4 1 m t: pulse now
            out.drawer_kicks += 1
            i += 5
        else:
            if chinese and b >= 0x81:
                # GB18030: two bytes, or four when the second is a digit
                step = 4 if i + 1 < n and 0x30 <= data[i + 1] <= 0x39 else 2
                text += data[i : i + step]
                i += step
            else:
                text.append(b)
                i += 1
    flush_text()
    if current:
        out.lines.append(current)
    return out
