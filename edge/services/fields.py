"""What a till request may carry: every text it sends is checked here, once, at the door.

A till sends short things: codes a scanner or a card reader typed, a name, a phone, a
date, a PIN. Every text in a request body, in a query string and in a URL is refused with
a 400 naming the field and the limit (before any service runs, so nothing is committed)
when it is

- longer than its field's limit (``FIELD_LIMITS``, else ``MAX_TEXT_LEN``): a longer text
  is no input a till makes, only a paste or a probe, and it would travel to HQ in the
  outbox (issue 9, defect 5);
- not encodable as UTF-8 (a lone surrogate such as ``"\\ud800"`` is valid JSON but no
  text: SQLite, the outbox and HQ cannot store it), or holds a NUL (PostgreSQL refuses
  one in text);
- or nested deeper than ``MAX_DEPTH`` (no request has more than three levels).

Refusals never repeat the text back, only its length.
"""

from __future__ import annotations

from typing import Any

from core.errors import ValidationError

MAX_CODE_LEN = 64  # card numbers, SKUs, barcodes, staff codes, ids: far shorter in practice
MAX_QUERY_LEN = 100  # what a cashier types into a search box
MAX_TEXT_LEN = 200  # any other text a till sends
MAX_DEPTH = 8
MAX_FIELD_NAME = 80  # a field named in a refusal is cut to this

# The limit of each field, by its own name wherever it sits (``member.card_no``,
# ``lines[3].sku``, ``manager.code``); a field not listed gets MAX_TEXT_LEN.
FIELD_LIMITS: dict[str, int] = {
    **dict.fromkeys(
        (
            "card_no",
            "member_id",
            "sku",
            "barcode",
            "code",
            "staff_code",
            "sale_id",
            "return_id",
            "topup_id",
            "pin",
            "password",
            "member_password",
        ),
        MAX_CODE_LEN,
    ),
    "q": MAX_QUERY_LEN,
    "name": 32,
    "phone": 32,
    "gender": 8,
    "birthday": 32,
    "birthday_calendar": 16,
    "card_type": 32,
    "kind": 32,
}


def _shown(field: str) -> str:
    return field if len(field) <= MAX_FIELD_NAME else field[: MAX_FIELD_NAME - 1] + "…"


def check_text(value: str, field: str, limit: int | None = None) -> str:
    """``value`` unchanged if it fits ``field`` (see the module docstring); else a 400."""
    if limit is None:
        limit = FIELD_LIMITS.get(field.rsplit(".", 1)[-1], MAX_TEXT_LEN)
    shown = _shown(field)
    if len(value) > limit:
        raise ValidationError(
            f"{shown} 太长: {len(value)} 个字符, 最多 {limit} (longer than {limit} characters)",
            field=shown,
            limit=limit,
        )
    if "\x00" in value:
        raise ValidationError(f"{shown} 含有空字符 (contains a NUL character)", field=shown)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            f"{shown} 含有无效字符 (not valid Unicode text: a lone surrogate)", field=shown
        ) from None
    return value


def check_body(data: Any, where: str = "", depth: int = 0) -> Any:
    """Check every text (keys too) in a parsed JSON request body; return it unchanged."""
    if depth > MAX_DEPTH:
        raise ValidationError(
            f"请求嵌套太深 (request body nested deeper than {MAX_DEPTH} levels)",
            field=_shown(where) or None,
        )
    if isinstance(data, str):
        check_text(data, where or "body")
    elif isinstance(data, dict):
        for key, value in data.items():
            # a key is named as it would be printed, so even an unencodable one is readable
            name = key.encode("utf-8", "backslashreplace").decode("utf-8")
            path = f"{where}.{name}" if where else name
            check_text(key, path, MAX_CODE_LEN)
            check_body(value, path, depth + 1)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_body(value, f"{where}[{i}]", depth + 1)
    return data
