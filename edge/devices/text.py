"""Column layout for fixed-pitch devices where a CJK character takes two columns.

Receipt printers and pole displays in their Chinese (GB) mode print every
double-byte GB character as a full-width glyph, so "×", "…", "“" and "·",
which Unicode calls ambiguous width, take two columns there too. ``char_width``
counts what the device prints, and ``gb_printable`` swaps what a GB ROM font
lacks for a placeholder of the same width, so a layout never shifts.
"""

from __future__ import annotations

import functools
import unicodedata

#: Full-width yen sign: one GB2312 character (A3A4), where "¥" would need a
#: four-byte GB18030 sequence that printer ROM fonts lack.
YUAN = "￥"


@functools.lru_cache(maxsize=8192)
def char_width(ch: str) -> int:
    if ord(ch) < 0x80:
        return 1
    if unicodedata.combining(ch):
        return 0
    if unicodedata.east_asian_width(ch) in ("W", "F", "A"):
        return 2
    try:
        return 2 if len(ch.encode("gb18030")) == 2 else 1
    except UnicodeEncodeError:  # a lone surrogate
        return 1


# control characters become spaces, ¥ becomes ￥ (str.translate: one C loop, not one
# Python step a character; a receipt passes about 1,300 characters through here)
_DEVICE_TEXT = str.maketrans({**{chr(i): " " for i in range(0x20)}, "\x7f": " ", "¥": YUAN})


def normalize(text: str) -> str:
    """Text as a device should lay it out: control characters as spaces, ¥ as ￥."""
    return text.translate(_DEVICE_TEXT)


def gb_printable(text: str) -> str:
    """``text`` with what a GB2312/GBK ROM font cannot print replaced, width for width.

    ROM fonts hold the double-byte GB characters, not the four-byte GB18030
    ones (emoji, rare ideographs); those become "？" (two columns) or "?" (one).
    """
    text = normalize(text)
    if text.isascii():
        return text
    try:
        encoded = len(text.encode("gb18030"))
    except UnicodeEncodeError:  # a lone surrogate: character by character below
        encoded = -1
    # each ASCII character is one byte and every other one two or four: the text is all
    # printable exactly when the bytes are one per ASCII character and two per other
    if encoded == 2 * len(text) - len(text.encode("ascii", "ignore")):
        return text
    return _gb_printable_each(text)


def _gb_printable_each(text: str) -> str:
    """``gb_printable`` one character at a time, for normalized text that needs it."""
    out = []
    for ch in text:
        if ord(ch) < 0x80:
            out.append(ch)
            continue
        width = char_width(ch)
        try:
            double_byte = len(ch.encode("gb18030")) == 2
        except UnicodeEncodeError:
            double_byte = False
        if double_byte:
            out.append(ch)
        elif width:
            out.append("？" if width == 2 else "?")
    return "".join(out)


def text_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def truncate(text: str, width: int) -> str:
    """The longest prefix of ``text`` that fits ``width`` columns (never splits a wide char)."""
    out: list[str] = []
    used = 0
    for ch in text:
        w = char_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)


def pad_right(text: str, width: int) -> str:
    text = truncate(text, width)
    return text + " " * (width - text_width(text))


def pad_left(text: str, width: int) -> str:
    text = truncate(text, width)
    return " " * (width - text_width(text)) + text


def center(text: str, width: int) -> str:
    text = truncate(text, width)
    gap = width - text_width(text)
    left = gap // 2
    return " " * left + text + " " * (gap - left)


def split_to_width(text: str, width: int) -> list[str]:
    """Wrap ``text`` into pieces no wider than ``width`` columns."""
    lines: list[str] = []
    rest = text
    while rest:
        piece = truncate(rest, width)
        if not piece:  # a single char wider than the line; give it its own line
            piece = rest[0]
        lines.append(piece)
        rest = rest[len(piece) :]
    return lines or [""]


def left_right(left: str, right: str, width: int) -> str:
    """``left`` and ``right`` on one line of ``width`` columns; left is cut to make room."""
    room = width - text_width(right) - 1
    if room < 0:
        return pad_left(right, width)
    return pad_right(left, room) + " " + right


def columns(cells: list[tuple[str, int, str]]) -> str:
    """Cells of (text, width, align 'l'|'r') joined into one line."""
    parts = []
    for text, width, align in cells:
        parts.append(pad_left(text, width) if align == "r" else pad_right(text, width))
    return "".join(parts)


def is_ascii(text: str) -> bool:
    return all(ord(ch) < 128 for ch in text)
