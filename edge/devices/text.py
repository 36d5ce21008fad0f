"""Column layout for fixed-pitch devices where a CJK character takes two columns."""

from __future__ import annotations

import unicodedata


def char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


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
