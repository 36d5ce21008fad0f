"""The wire between store edges and HQ: topics, envelopes and their validation.

Pure code: both sides import it, neither does I/O here. ``docs/protocol.md`` is
the prose contract; this module is its executable half.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from core.errors import ProtocolError
from core.ids import is_uuid

SCHEMA_VERSION = 1
TOPIC_ROOT = "hy/v1"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH_ITEMS = 500

STORE_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# Kinds of item a store sends up. Each names the body fields it requires.
UP_KINDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "sale": {"sale_id": str, "lines": list, "total": int, "tenders": list},
    "return": {"return_id": str, "sale_id": str, "lines": list, "refund_total": int},
    "topup": {"topup_id": str, "member_id": str, "principal": int, "bonus": int},
    "registration": {"member_id": str, "name": str, "phone": str, "registered_at": str},
}


# ---- topics -------------------------------------------------------------------------


def hq_state_topic() -> str:
    return f"{TOPIC_ROOT}/hq/state"


def store_topic(store: str, direction: str, name: str) -> str:
    if not STORE_CODE_RE.match(store):
        raise ProtocolError(f"bad store code {store!r}", field="store")
    return f"{TOPIC_ROOT}/{store}/{direction}/{name}"


def parse_store_topic(topic: str) -> tuple[str, str, str]:
    """'hy/v1/S001/up/tx' -> ('S001', 'up', 'tx'); ProtocolError if not a store topic."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT or parts[3] not in ("up", "down"):
        raise ProtocolError(f"not a store topic: {topic!r}")
    if not STORE_CODE_RE.match(parts[2]):
        raise ProtocolError(f"bad store code in topic: {topic!r}")
    return parts[2], parts[3], parts[4]


# ---- envelopes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpItem:
    """One outbox message: what a store tells HQ happened."""

    v: int
    store: str
    seq: int
    id: str
    kind: str
    occurred_at: str
    rules_version: int
    body: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "store": self.store,
            "seq": self.seq,
            "id": self.id,
            "kind": self.kind,
            "occurred_at": self.occurred_at,
            "rules_version": self.rules_version,
            "body": self.body,
        }


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ProtocolError(f"{where}: missing field {key!r}", field=key)
    value = obj[key]
    if isinstance(value, bool) and kind is int:
        raise ProtocolError(f"{where}: field {key!r} must be int, got bool", field=key)
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ProtocolError(
            f"{where}: field {key!r} must be {name}, got {type(value).__name__}", field=key
        )
    return value


def validate_item(raw: Any, where: str = "item") -> UpItem:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: must be an object")
    v = _require(raw, "v", int, where)
    if v != SCHEMA_VERSION:
        raise ProtocolError(f"{where}: unsupported schema version {v} (expected {SCHEMA_VERSION})")
    store = _require(raw, "store", str, where)
    if not STORE_CODE_RE.match(store):
        raise ProtocolError(f"{where}: bad store code {store!r}", field="store")
    seq = _require(raw, "seq", int, where)
    if seq < 1:
        raise ProtocolError(f"{where}: seq must be >= 1", field="seq")
    item_id = _require(raw, "id", str, where)
    if not is_uuid(item_id):
        raise ProtocolError(f"{where}: id is not a UUID", field="id")
    kind = _require(raw, "kind", str, where)
    if kind not in UP_KINDS:
        raise ProtocolError(f"{where}: unknown kind {kind!r}", field="kind")
    occurred_at = _require(raw, "occurred_at", str, where)
    rules_version = _require(raw, "rules_version", int, where)
    body = _require(raw, "body", dict, where)
    for key, typ in UP_KINDS[kind].items():
        _require(body, key, typ, f"{where} {kind} body")
    return UpItem(v, store, seq, item_id, kind, occurred_at, rules_version, body)


def decode_json(payload: bytes, what: str = "payload") -> Any:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"{what} is {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{what} is not UTF-8 JSON: {exc}") from None


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
