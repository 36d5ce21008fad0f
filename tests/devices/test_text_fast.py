"""``normalize`` and ``gb_printable`` take whole strings through C (str.translate, one
gb18030 encode) instead of a Python step a character; they must give exactly what the
character-by-character rules give, which these tests state again as the reference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.devices.text import YUAN, _gb_printable_each, gb_printable, normalize


def normalize_each(text: str) -> str:
    """The rule: control characters (and DEL) as spaces, ¥ as ￥, all else kept."""
    return "".join(
        " " if ord(ch) < 0x20 or ch == "\x7f" else YUAN if ch == "¥" else ch for ch in text
    )


# receipt-like text: ASCII, controls, ¥, CJK of the GB2312 and GB18030-only kinds, emoji,
# combining marks, ambiguous-width signs, and lone surrogates
PIECES = st.sampled_from(
    [
        "a",
        "Z",
        " ",
        "9",
        "\n",
        "\t",
        "\x00",
        "\x7f",
        "¥",
        "￥",
        "张",
        "三",
        "×",
        "…",
        "“",
        "·",
        "𠀀",
        "😀",
        "\u0301",
        "é",
        "€",
        "\u00a0",
        "\ud800",
        "\udfff",
        "　",
        "①",
    ]
)
TEXTS = st.one_of(
    st.lists(PIECES, max_size=40).map("".join),
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFFFF), max_size=40),
)


@given(TEXTS)
def test_normalize_is_the_character_rule(text):
    assert normalize(text) == normalize_each(text)


@given(TEXTS)
def test_gb_printable_is_the_character_rule(text):
    assert gb_printable(text) == _gb_printable_each(normalize_each(text))


def test_the_fast_paths_and_the_slow_one_on_known_strings():
    assert gb_printable("合计 ¥12.50\n") == "合计 ￥12.50 "
    assert (
        gb_printable("😀 张\ud800") == "？ 张?"
    )  # a four-byte emoji is two columns, a surrogate one
    assert gb_printable("𠀀x") == "？x"
