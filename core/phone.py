"""Mainland China mobile numbers: the natural key of a member."""

from __future__ import annotations

import hashlib
import hmac
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


# ---- the chain's keyed lookup hash (invariant 8) ---------------------------------------
#
# A store finds a member by phone through HMAC-SHA256(chain lookup key, normalised phone),
# never through the number itself: HQ holds the key (hq/lookup.py) and hands it only to a
# store, on its own topic. Both sides compute the hash here, so they agree byte for byte.

LOOKUP_KEY_BYTES = 32


def lookup_key_id(key: bytes) -> str:
    """A short public name for a lookup key (not the key): the first 8 hex digits of a
    hash of it, so a store can tell which key a record was hashed with."""
    if len(key) != LOOKUP_KEY_BYTES:
        raise ValidationError(
            f"lookup key must be {LOOKUP_KEY_BYTES} bytes, got {len(key)}", field="lookup_key"
        )
    return hashlib.sha256(b"huiyuan lookup key id\x00" + key).hexdigest()[:8]


def phone_lookup_hash(key: bytes, phone: str) -> str:
    """The keyed lookup hash of an already normalised phone, as lowercase hex."""
    return hmac.digest(key, phone.encode("ascii"), "sha256").hex()


class PhoneHasher:
    """``phone_lookup_hash`` under one key, for a snapshot's million members: HMAC's inner
    and outer hash states computed once (RFC 2104), about a third of ``hmac.digest``'s time
    per call here (bench/keys.py). Tests check it against ``phone_lookup_hash``."""

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0") if len(key) <= 64 else hashlib.sha256(key).digest()
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block.ljust(64, b"\0")))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block.ljust(64, b"\0")))

    def __call__(self, phone: str) -> str:
        inner = self._inner.copy()
        inner.update(phone.encode("ascii"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def phone_last4(phone: str) -> str:
    """What a cashier sees to confirm a member: the last four digits."""
    return phone[-4:]
