"""Decoding USB HID keyboard boot reports into card numbers (pure, no USB).

A boot report is 8 bytes: modifier bitmask, reserved, then up to six key
usage ids pressed at that moment. Readers "type" a card number: each key is
pressed in one report and released in the next (or the next key replaces
it). A key counts when it appears in a report and was not in the previous
one, so a held key is not repeated; Enter ends the read.
"""

from __future__ import annotations

from collections.abc import Iterable

LEFT_SHIFT = 0x02
RIGHT_SHIFT = 0x20
SHIFT_MASK = LEFT_SHIFT | RIGHT_SHIFT
ERROR_ROLLOVER = 0x01  # every key slot 0x01: too many keys down, the report says nothing
ENTER_KEYS = frozenset({0x28, 0x58})  # Enter and keypad Enter

# usage id -> (unshifted, shifted)
_KEYMAP: dict[int, tuple[str, str]] = {}
for _i, _c in enumerate("abcdefghijklmnopqrstuvwxyz"):
    _KEYMAP[0x04 + _i] = (_c, _c.upper())
for _i, (_c, _s) in enumerate(zip("1234567890", "!@#$%^&*()", strict=True)):
    _KEYMAP[0x1E + _i] = (_c, _s)
_KEYMAP.update(
    {
        0x2C: (" ", " "),
        0x2D: ("-", "_"),
        0x2E: ("=", "+"),
        0x2F: ("[", "{"),
        0x30: ("]", "}"),
        0x31: ("\\", "|"),
        0x33: (";", ":"),
        0x34: ("'", '"'),
        0x35: ("`", "~"),
        0x36: (",", "<"),
        0x37: (".", ">"),
        0x38: ("/", "?"),
        0x54: ("/", "/"),
        0x55: ("*", "*"),
        0x56: ("-", "-"),
        0x57: ("+", "+"),
        0x63: (".", "."),
    }
)
for _i, _c in enumerate("1234567890"):
    _KEYMAP[0x59 + _i] = (_c, _c)  # keypad 1..9, 0


def key_char(usage: int, shifted: bool) -> str | None:
    pair = _KEYMAP.get(usage)
    if pair is None:
        return None
    return pair[1] if shifted else pair[0]


class HidKeyboardDecoder:
    """Feed raw reports; get back each completed read (the text before Enter)."""

    def __init__(self, max_length: int = 256, *, repeats_without_release: bool = False) -> None:
        self.max_length = max_length
        # some cheap readers send every keystroke as its own report, with no release in
        # between, so "11" arrives as two identical reports: count each one
        self.repeats_without_release = repeats_without_release
        self._buffer: list[str] = []
        self._previous: frozenset[int] = frozenset()
        self.ignored_reports = 0

    def feed(self, report: bytes | Iterable[int]) -> list[str]:
        data = bytes(report)
        if len(data) < 3:
            self.ignored_reports += 1
            return []
        modifiers = data[0]
        keys = [k for k in data[2:8] if k != 0]
        if keys and all(k == ERROR_ROLLOVER for k in keys):
            self.ignored_reports += 1
            return []  # phantom state: keep the previous key set
        shifted = bool(modifiers & SHIFT_MASK)
        done: list[str] = []
        for usage in keys:
            if usage in self._previous and not self.repeats_without_release:
                continue  # still held from the last report: not a new press
            if usage in ENTER_KEYS:
                done.append("".join(self._buffer))
                self._buffer.clear()
                continue
            ch = key_char(usage, shifted)
            if ch is None:
                self.ignored_reports += 1
                continue
            if len(self._buffer) < self.max_length:
                self._buffer.append(ch)
        self._previous = frozenset(keys)
        return done

    def reset(self) -> None:
        self._buffer.clear()
        self._previous = frozenset()

    @property
    def pending(self) -> str:
        return "".join(self._buffer)


def clean_card(raw: str, strip_chars: str, min_length: int, max_length: int) -> str | None:
    """The card number from one read, or None when it is not plausibly a card number.

    Magstripe readers frame track 2 as ``;digits?`` and track 1 as ``%...?``;
    the profile says which sentinels to strip.
    """
    text = raw.strip().strip(strip_chars).strip() if strip_chars else raw.strip()
    if not (min_length <= len(text) <= max_length):
        return None
    if not text.isprintable() or not text.isascii():
        return None
    return text


def report_for(text: str, *, right_shift: bool = False) -> list[bytes]:
    """Reports that type ``text`` then Enter, each key followed by a release (for tests and
    the virtual reader)."""
    reverse: dict[str, tuple[int, bool]] = {}
    for usage, (plain, shifted) in sorted(_KEYMAP.items(), reverse=True):
        reverse[shifted] = (usage, plain != shifted)
        reverse[plain] = (usage, False)
    out = []
    shift_bit = RIGHT_SHIFT if right_shift else LEFT_SHIFT
    for ch in text:
        usage, needs_shift = reverse[ch]
        out.append(bytes([shift_bit if needs_shift else 0, 0, usage, 0, 0, 0, 0, 0]))
        out.append(bytes(8))
    out.append(bytes([0, 0, 0x28, 0, 0, 0, 0, 0]))
    out.append(bytes(8))
    return out
