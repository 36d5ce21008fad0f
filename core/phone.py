"""Mainland China mobile numbers: the natural key of a member."""

from __future__ import annotations

import re
import unicodedata

from core.errors import ValidationError

_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")


def normalise_phone(text: str) -> str:
    """'+86 138-1234-5678' -> '13812345678'; ValidationError names what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("手机号不能为空 (phone is required)", field="phone")
    # NFKC: full-width digits and brackets typed with a Chinese IME become ASCII
    digits = re.sub(r"[\s\-()]", "", unicodedata.normalize("NFKC", text).strip())
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    # the messages do not repeat the text: a mistyped number is still someone's number,
    # and refusals reach HQ's and the store's logs
    if not (digits.isascii() and digits.isdigit()):
        raise ValidationError("手机号只能包含数字 (phone must be digits)", field="phone")
    if not _MOBILE.match(digits):
        raise ValidationError(
            f"手机号应为以1开头的11位数字 (phone must be 11 digits from 1, got {len(digits)})",
            field="phone",
        )
    return digits
