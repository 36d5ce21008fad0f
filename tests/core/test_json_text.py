"""JSON text for rows and the wire: orjson must write what json.dumps wrote.

Stored sale bodies, receipts and outbox payloads were written by the standard library
before orjson; HQ and every store compare and decode them, so the text is pinned here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.protocol import encode_json, json_text

# What rows and messages hold: text (Chinese, escapes, control characters, astral
# symbols), integers in the 64-bit range, booleans, null, lists and tuples, dicts.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def stdlib(obj: object, sort_keys: bool) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


@given(documents)
def test_the_same_text_as_the_standard_library(doc: object) -> None:
    assert json_text(doc) == stdlib(doc, sort_keys=False)
    assert json_text(doc, sort_keys=True) == stdlib(doc, sort_keys=True)
    assert encode_json(doc) == stdlib(doc, sort_keys=True).encode()


def test_a_receipt_line_byte_for_byte() -> None:
    doc = {"name": "维生素C 片\t“特价”", "qty": 2, "note": None, "tail": "\x01\u2028😀", "ok": True}
    assert json_text(doc) == (
        '{"name":"维生素C 片\\t“特价”","qty":2,"note":null,"tail":"\\u0001\u2028😀","ok":true}'
    )
    assert encode_json({"b": 1, "a": [1, (2, 3)]}) == b'{"a":[1,[2,3]],"b":1}'


@dataclass
class _Thing:
    x: int


@pytest.mark.parametrize(
    "value", [dt.datetime(2026, 11, 24, 9, 0), dt.date(2026, 11, 24), _Thing(1)]
)
def test_times_and_objects_are_refused_as_json_refused_them(value: object) -> None:
    with pytest.raises(TypeError):
        encode_json({"at": value})
    with pytest.raises(TypeError):
        json_text([value])
