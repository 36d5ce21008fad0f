"""Phone numbers as people write them, and pinyin search keys for names."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.names import pinyin_keys
from core.phone import normalise_phone


@pytest.mark.parametrize(
    "text",
    [
        "13812345678",
        " 13812345678 ",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138-1234-5678",
        "+8613812345678",
        "+86-138-1234-5678",
        "0086 138 1234 5678",
        "008613812345678",
        "8613812345678",
        "(+86) 13812345678",
        "１３８１２３４５６７８",  # full-width digits from a Chinese IME
        "（+86）138 1234 5678",  # full-width brackets
        "138\t1234\u30005678",  # tab and an ideographic space
    ],
)
def test_real_formats_normalise(text: str) -> None:
    assert normalise_phone(text) == "13812345678"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "手机号不能为空"),
        ("   ", "手机号不能为空"),
        (None, "手机号不能为空"),
        (13812345678, "手机号不能为空"),  # a number, not text
        ("138.1234.5678", "只能包含数字"),
        ("138-1234-567a", "只能包含数字"),
        ("+86", "只能包含数字"),
        ("+1 415 555 0100", "只能包含数字"),
        ("13" + "\u0663" * 9, "只能包含数字"),  # Arabic-Indic digits are not phone digits
        ("1381234567", "以1开头的11位数字"),  # ten digits
        ("138123456789", "以1开头的11位数字"),  # twelve
        ("23812345678", "以1开头的11位数字"),
        ("12812345678", "以1开头的11位数字"),  # no 12x mobile prefix
        ("010-12345678", "以1开头的11位数字"),  # a landline
    ],
)
def test_bad_phones_say_what_is_wrong(text: object, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        normalise_phone(text)  # type: ignore[arg-type]
    assert err.value.field == "phone"
    assert message in err.value.message


@pytest.mark.parametrize(
    ("name", "full", "initials"),
    [
        ("张三", "zhangsan", "zs"),
        ("李四", "lisi", "ls"),
        ("王小明", "wangxiaoming", "wxm"),
        ("吕布", "lvbu", "lb"),
        # compound surnames
        ("欧阳娜娜", "ouyangnana", "oynn"),
        ("司马懿", "simayi", "smy"),
        ("诸葛亮", "zhugeliang", "zgl"),
        ("尉迟恭", "yuchigong", "ycg"),
        # surnames read differently from the everyday character
        ("曾小贤", "zengxiaoxian", "zxx"),
        ("单田芳", "shantianfang", "stf"),
        ("解晓东", "xiexiaodong", "xxd"),
        ("仇英", "qiuying", "qy"),
        ("区志强", "ouzhiqiang", "ozq"),
        ("查良镛", "zhaliangyong", "zly"),
        ("翟天临", "zhaitianlin", "ztl"),
        # mixed Latin: kept and lower-cased; spaces and marks dropped
        ("Tom张", "tomzhang", "tomz"),
        ("李 Lily", "lilily", "llily"),
        ("ANNA", "anna", "anna"),
        ("张·三", "zhangsan", "zs"),
        (" 张三 ", "zhangsan", "zs"),
        ("Ｔｏｍ", "tom", "tom"),  # full-width Latin
    ],
)
def test_pinyin_keys(name: str, full: str, initials: str) -> None:
    assert pinyin_keys(name) == (full, initials)


def test_pinyin_keys_are_ascii_search_prefixes() -> None:
    for name in ("张三丰", "曾国藩", "欧阳修", "Mary王", "小明2号"):
        full, initials = pinyin_keys(name)
        assert full.isascii() and initials.isascii()
        assert full.startswith(initials[0])
