"""The chain's phone lookup key as tests give it to HQ code and to stores (invariant 8)."""

from __future__ import annotations

import base64
from typing import Any

from core.phone import lookup_key_id, phone_last4, phone_lookup_hash
from hq.lookup import ChainLookup

TEST_LOOKUP_KEY = bytes(range(1, 33))
TEST_LOOKUP = ChainLookup.of_key(TEST_LOOKUP_KEY)


def lookup_header(key: bytes = TEST_LOOKUP_KEY) -> dict[str, str]:
    """The key as a snapshot header carries it."""
    return {"id": lookup_key_id(key), "key": base64.b64encode(key).decode("ascii")}


def hq_phone(phone: str | None, key: bytes = TEST_LOOKUP_KEY) -> dict[str, Any]:
    """A member record's phone fields as HQ sends them (an erased member's are empty)."""
    if not phone:
        return {"phone_hash": "", "phone_key_id": "", "phone_last4": ""}
    return {
        "phone_hash": phone_lookup_hash(key, phone),
        "phone_key_id": lookup_key_id(key),
        "phone_last4": phone_last4(phone),
    }


def give_lookup_key(till: Any, now: str, key: bytes = TEST_LOOKUP_KEY) -> None:
    """Install the key at a store as a snapshot header would."""
    from edge.phones import install_lookup_key

    with till.db.atomic():
        install_lookup_key(till.db, till.keys, lookup_header(key), now)
