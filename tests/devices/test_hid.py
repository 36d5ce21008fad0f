"""HID keyboard boot-report decoding, from tables of real report bytes."""

from __future__ import annotations

import pytest

from edge.devices.hid import HidKeyboardDecoder, clean_card, key_char, report_for

R = bytes.fromhex  # a report as an 8-byte hex string


def decode_all(reports: list[bytes]) -> list[str]:
    decoder = HidKeyboardDecoder()
    out: list[str] = []
    for report in reports:
        out += decoder.feed(report)
    return out


@pytest.mark.parametrize(
    ("usage", "shifted", "expected"),
    [
        (0x04, False, "a"),
        (0x04, True, "A"),
        (0x1E, False, "1"),
        (0x27, False, "0"),
        (0x1F, True, "@"),
        (0x33, False, ";"),
        (0x38, True, "?"),  # track 2 end sentinel
        (0x22, True, "%"),  # track 1 start sentinel (shift+5)
        (0x2D, False, "-"),
        (0x59, False, "1"),  # keypad 1
        (0x62, False, "0"),  # keypad 0
        (0x3A, False, None),  # F1: not a character
    ],
)
def test_key_char(usage, shifted, expected):
    assert key_char(usage, shifted) == expected


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        # press/release per key, Enter ends the read
        (
            [
                "00001e0000000000",
                "0000000000000000",
                "00001f0000000000",
                "0000000000000000",
                "0000280000000000",
                "0000000000000000",
            ],
            ["12"],
        ),
        # left shift (0x02) and right shift (0x20) both shift: ";" then "?" via shift+/
        (
            [
                "0000330000000000",
                "0000000000000000",
                "0200380000000000",
                "0000000000000000",
                "2000380000000000",
                "0000000000000000",
                "0000280000000000",
            ],
            [";??"],
        ),
        # both shifts at once still one shift
        (["2200040000000000", "0000280000000000"], ["A"]),
        # several keys in one report (fast readers): order in the report is the order typed
        (["00001e1f20000000", "0000000000000000", "0000280000000000"], ["123"]),
        # a held key is not repeated while it stays in the report
        (
            [
                "00001e0000000000",
                "00001e0000000000",
                "00001e0000000000",
                "0000000000000000",
                "0000280000000000",
            ],
            ["1"],
        ),
        # rollover: "1" held while "2" is pressed -> "2" counted once, "1" not again
        (
            [
                "00001e0000000000",
                "00001e1f00000000",
                "00001f0000000000",
                "0000000000000000",
                "0000280000000000",
            ],
            ["12"],
        ),
        # same key pressed twice needs the release in between
        (
            [
                "00001e0000000000",
                "0000000000000000",
                "00001e0000000000",
                "0000000000000000",
                "0000580000000000",
            ],
            ["11"],
        ),  # keypad Enter ends a read too
        # error rollover (all 0x01) says nothing and does not reset the held keys
        (
            [
                "00001e0000000000",
                "0000010101010101",
                "00001e0000000000",
                "0000000000000000",
                "0000280000000000",
            ],
            ["1"],
        ),
        # two reads in a row
        (
            [
                "0000270000000000",
                "0000280000000000",
                "0000000000000000",
                "0000260000000000",
                "0000280000000000",
            ],
            ["0", "9"],
        ),
        # an empty read (Enter alone)
        (["0000280000000000"], [""]),
        # non-character keys (F1) are skipped
        (["00003a0000000000", "00001e0000000000", "0000280000000000"], ["1"]),
    ],
)
def test_decoder_table(reports, expected):
    assert decode_all([R(r) for r in reports]) == expected


def test_readers_that_repeat_keys_without_release():
    reports = ["00001e0000000000", "00001e0000000000", "00001f0000000000", "0000280000000000"]
    plain = HidKeyboardDecoder()
    quirky = HidKeyboardDecoder(repeats_without_release=True)
    assert [x for r in reports for x in plain.feed(R(r))] == ["12"]
    assert [x for r in reports for x in quirky.feed(R(r))] == ["112"]


def test_short_reports_are_ignored():
    decoder = HidKeyboardDecoder()
    assert decoder.feed(b"\x00") == []
    assert decoder.ignored_reports == 1


def test_max_length_bounds_the_buffer():
    decoder = HidKeyboardDecoder(max_length=3)
    out: list[str] = []
    for report in report_for("123456"):
        out += decoder.feed(report)
    assert out == ["123"]


def test_report_for_round_trips_every_printable_ascii_character():
    text = "".join(chr(c) for c in range(0x20, 0x7F))
    assert decode_all(report_for(text)) == [text]
    assert decode_all(report_for(text, right_shift=True)) == [text]


@pytest.mark.parametrize(
    ("raw", "strip", "expected"),
    [
        (";6225880112345678?", ";?%", "6225880112345678"),
        ("%B6225880112345678^ZHANG/SAN^2912?", "%?", "B6225880112345678^ZHANG/SAN^2912"),
        ("0012345678", "", "0012345678"),
        ("  0012345678 ", "", "0012345678"),
        (";?", ";?", None),  # empty after the sentinels: a bad swipe
        ("12", "", None),  # shorter than min_length
        ("x" * 65, "", None),  # longer than max_length
        ("12\x0734", "", None),  # control characters: garbage
    ],
)
def test_clean_card(raw, strip, expected):
    assert clean_card(raw, strip, 4, 64) == expected
