"""The chain's phone lookup key, and what a store receives about a member (invariant 8).

HQ keeps every member's phone in clear; a store receives a member's phone only as
``phone_hash`` (HMAC-SHA256 of the normalised phone under the chain lookup key, see
core.phone) with ``phone_key_id`` and ``phone_last4``. The key itself goes to a store only
on its own topic, in the header of the snapshot it asked for (docs/protocol.md).

The key is 32 random bytes in a file of mode 0600, made by ``huiyuan-hq init-lookup-key``
or on first use. Every HQ process of a chain must read the same file: under systemd it is
handed over as the credential ``lookup.key`` (``LoadCredential=``).
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.keyfiles import create_key_file
from core.phone import LOOKUP_KEY_BYTES, PhoneHasher, lookup_key_id, phone_last4
from core.protocol import Change

# the member state fields that never leave HQ in clear
CLEAR_CONTACT_FIELDS = ("phone",)


def create_lookup_key(path: Path) -> bool:
    """Create the key file if absent (32 random bytes, mode 0600). True if it was created."""
    return create_key_file(path, LOOKUP_KEY_BYTES)


class ChainLookup:
    """The chain lookup key, read from its file on first use (created there if absent,
    unless ``create`` is False: a key handed over by systemd is never made up here)."""

    def __init__(self, locate: Callable[[], tuple[Path, bool]]) -> None:
        self.locate = locate  # -> (path, whether to create it if absent); called on first use

    @classmethod
    def of_key(cls, key: bytes) -> ChainLookup:
        """A lookup with the key given (tests, benchmarks): nothing read from a file."""
        lookup = cls(lambda: (Path("/nonexistent"), False))
        lookup.__dict__["key"] = key  # what the cached property would hold
        return lookup

    @functools.cached_property
    def key(self) -> bytes:
        path, create = self.locate()
        if create:
            create_lookup_key(path)
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"lookup key file not found: {path} (run `huiyuan-hq init-lookup-key`)",
                field="lookup_key_file",
            ) from None
        if len(key) != LOOKUP_KEY_BYTES:
            raise ConfigError(
                f"lookup key file {path} must hold {LOOKUP_KEY_BYTES} bytes, got {len(key)}",
                field="lookup_key_file",
            )
        return key

    @functools.cached_property
    def hasher(self) -> PhoneHasher:
        return PhoneHasher(self.key)

    @functools.cached_property
    def key_id(self) -> str:
        return lookup_key_id(self.key)

    def header(self) -> dict[str, str]:
        """The key as a store receives it, on its own topic only: id and base64 bytes."""
        return {"id": self.key_id, "key": base64.b64encode(self.key).decode("ascii")}

    def member_for_store(self, data: dict[str, Any]) -> dict[str, Any]:
        """A member's state as it goes down: the phone replaced by its lookup hash, key id
        and last four digits (a member without a phone gets empty ones)."""
        if not any(name in data for name in CLEAR_CONTACT_FIELDS):
            return data
        out = {k: v for k, v in data.items() if k not in CLEAR_CONTACT_FIELDS}
        phone = data.get("phone") or ""
        out["phone_hash"] = self.hasher(phone) if phone else ""
        out["phone_key_id"] = self.key_id if phone else ""
        out["phone_last4"] = phone_last4(phone) if phone else ""
        return out

    def change_for_store(self, change: Change) -> Change:
        if change.entity != "member":
            return change
        return Change(
            change.seq, change.entity, change.key, change.op, self.member_for_store(change.data)
        )

    def record_for_store(self, record: dict[str, Any]) -> dict[str, Any]:
        """A change-shaped snapshot record (a dict), as ``change_for_store``."""
        if record.get("entity") != "member":
            return record
        return record | {"data": self.member_for_store(record["data"])}


def lookup_key_location(config: Any) -> tuple[Path, bool]:
    """Where an ``HqConfig``'s lookup key is, and whether HQ may make it there (not when
    systemd hands it over: a key made up there would differ from the other nodes')."""
    path = config.lookup_key_path()
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    return path, not (creds and path.parent == Path(creds))


def chain_lookup(config: Any) -> ChainLookup:
    """The lookup key an ``HqConfig`` names, read (or made) when a member first needs it."""
    return ChainLookup(lambda: lookup_key_location(config))
