"""Search keys for member names: full pinyin and initials (zs finds 张三)."""

from __future__ import annotations

import unicodedata

from pypinyin import Style, lazy_pinyin


def pinyin_keys(name: str) -> tuple[str, str]:
    """'张三' -> ('zhangsan', 'zs'); Latin letters are kept, lower-cased; other marks dropped."""
    name = unicodedata.normalize("NFKC", name).strip()
    full = "".join(lazy_pinyin(name, style=Style.NORMAL, errors="default"))
    initials = "".join(lazy_pinyin(name, style=Style.FIRST_LETTER, errors="default"))
    keep = str.isalnum
    return (
        "".join(ch for ch in full.lower() if keep(ch) and ch.isascii()),
        "".join(ch for ch in initials.lower() if keep(ch) and ch.isascii()),
    )
