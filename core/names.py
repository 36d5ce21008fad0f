"""Search keys for member names: full pinyin and initials (zs finds 张三)."""

from __future__ import annotations

import unicodedata

from pypinyin import Style, lazy_pinyin

# Surnames whose everyday reading differs from their reading as a surname: pypinyin
# reads 曾小贤 as "ceng", so a cashier typing "zxx" would not find him.
SURNAME_READINGS = {
    "曾": "zeng",
    "单": "shan",
    "解": "xie",
    "仇": "qiu",
    "区": "ou",
    "朴": "piao",
    "查": "zha",
    "缪": "miao",
    "覃": "qin",
    "翟": "zhai",
    "盖": "ge",
    "种": "chong",
    "员": "yun",
    "秘": "bi",
    "阚": "kan",
    "隗": "wei",
    "召": "shao",
    "宓": "fu",
}


def _syllables(text: str, style: Style) -> str:
    return "".join(lazy_pinyin(text, style=style, errors="default"))


def pinyin_keys(name: str, *, person: bool = True) -> tuple[str, str]:
    """'张三' -> ('zhangsan', 'zs'); Latin letters are kept, lower-cased; other marks dropped.

    A person's name has its first character read as a surname: '曾小贤' ->
    ('zengxiaoxian', 'zxx'); a product's name (``person=False``) is read as plain text:
    '农夫山泉 550ml' -> ('nongfushanquan550ml', 'nfsq550ml').
    """
    name = unicodedata.normalize("NFKC", name).strip()
    surname = SURNAME_READINGS.get(name[:1]) if person else None
    if surname:
        rest = name[1:]
        full = surname + _syllables(rest, Style.NORMAL)
        initials = surname[0] + _syllables(rest, Style.FIRST_LETTER)
    else:
        full = _syllables(name, Style.NORMAL)
        initials = _syllables(name, Style.FIRST_LETTER)
    keep = str.isalnum
    return (
        "".join(ch for ch in full.lower() if keep(ch) and ch.isascii()),
        "".join(ch for ch in initials.lower() if keep(ch) and ch.isascii()),
    )
