"""The wire between store edges and HQ: topics, envelopes and their validation.

Pure code: both sides import it, neither does I/O here. ``docs/protocol.md`` is
the prose contract; this module is its executable half.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.errors import ProtocolError
from core.ids import is_uuid

SCHEMA_VERSION = 1
TOPIC_ROOT = "hy/v1"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH_ITEMS = 500
MAX_PAGE_CHANGES = 1000
DEFAULT_PAGE_CHANGES = 500
SNAPSHOT_THRESHOLD = 100_000
SNAPSHOT_CHUNK_BYTES = 128 * 1024
HOLD_WINDOW = 10_000
AUTH_TIMEOUT_S = 1.5
INGEST_SUBSCRIPTION = f"$share/ingest/{TOPIC_ROOT}/+/up/#"

STORE_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# Kinds of item a store sends up. Each names the body fields it requires; the full
# bodies (all money integer fen) are:
#   sale: {sale_id, member_id|null, card_no|null, cashier, pricing_input: {lines: [{sku,
#     name, qty, unit_price, promo_price|null, line_discount, no_member_discount,
#     no_points}], member: {member_id, card_type, tier}|null, order_discount_rate,
#     manual_adjustment, rounding}, lines: [priced line], subtotal, member_discount,
#     order_discount, manual_adjustment, rounding, total, tenders: [{kind, amount}],
#     change, stored_value: {principal, bonus}, points_used, points_lots_used:
#     [[lot_id, n]], points_earned, points_lot: {lot_id, earned_on, expires_on}|null,
#     offline: bool, authorization_id|null}
#   return: {return_id, sale_id, member_id|null, cashier, lines: [{line_no, qty, amount}],
#     refund_total, tenders, stored_value: {principal, bonus}, points_restored,
#     points_lots_restored: [[lot_id, n]], points_reversed, points_debt}
#   topup: {topup_id, member_id, principal, bonus, tender: "cash", cashier}
#   registration: {member_id, name, phone, gender, birthday, birthday_calendar,
#     birthday_leap_month, card_no|null, card_type, staff_code|null, registered_at,
#     password_hash|null (optional; see PASSWORD_HASH_RE)}
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


def up_topic(store: str, name: str) -> str:
    return store_topic(store, "up", name)


def down_topic(store: str, name: str) -> str:
    return store_topic(store, "down", name)


def hq_changes_topic() -> str:
    return f"{TOPIC_ROOT}/hq/chg"


def parse_store_topic(topic: str) -> tuple[str, str, str]:
    """'hy/v1/S001/up/tx' -> ('S001', 'up', 'tx'); ProtocolError if not a store topic."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT or parts[3] not in ("up", "down"):
        raise ProtocolError(f"not a store topic: {topic!r}")
    if not STORE_CODE_RE.match(parts[2]) or parts[2] == "hq":
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


# Every integer on the wire fits a signed 64-bit column (PostgreSQL BIGINT, SQLite INTEGER);
# one that does not is refused by name here, before it can reach a database or a sum.
# Money and points have a much lower cap of their own (MAX_AMOUNT).
MAX_WIRE_INT = 2**63 - 1
# The largest amount of money (fen) or points any single wire figure may carry: ¥100,000,000.
MAX_AMOUNT = 10**10


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ProtocolError(f"{where}: missing field {key!r}", field=key)
    value = obj[key]
    if isinstance(value, bool) and kind is int:
        raise ProtocolError(f"{where}: field {key!r} must be int, got bool", field=key)
    if type(value) is int and not -MAX_WIRE_INT <= value <= MAX_WIRE_INT:
        raise ProtocolError(f"{where}: field {key!r} is out of range", field=key)
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
    if kind == "registration":
        validate_password_hash(body.get("password_hash"), f"{where} registration body")
    return UpItem(v, store, seq, item_id, kind, occurred_at, rules_version, body)


# A member password travels only as the memory-hard hash the till made of it
# (edge.security.hash_secret): scrypt$N$r$p$salt$digest, base64 salt and digest.
PASSWORD_HASH_RE = re.compile(
    r"^scrypt\$\d{1,8}\$\d{1,3}\$\d{1,3}\$[A-Za-z0-9+/=]{4,64}\$[A-Za-z0-9+/=]{4,128}$"
)


# The chain's one set of scrypt parameters for member passwords, which every till hashes
# with (edge.security.hash_secret). The cost of checking a password is the hash's own: one
# with a larger cost from the wire would tie up a till for seconds a try (issue 9, defect
# 7), so a hash with any other parameters is refused at HQ, by the store's applier and
# by edge.security.verify_secret.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_PREFIX = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$"


def validate_password_hash(value: Any, where: str = "member") -> str | None:
    """None (no password set) or a hash of the shape the tills write, with the chain's
    parameters (SCRYPT_N, SCRYPT_R, SCRYPT_P)."""
    if value is None:
        return None
    if not isinstance(value, str) or not PASSWORD_HASH_RE.fullmatch(value):
        raise ProtocolError(
            f"{where}: password_hash must be null or an scrypt hash "
            "(scrypt$N$r$p$salt$digest), never a password",
            field="password_hash",
        )
    if not value.startswith(SCRYPT_PREFIX):
        raise ProtocolError(
            f"{where}: password_hash must use the chain's scrypt parameters "
            f"N={SCRYPT_N}, r={SCRYPT_R}, p={SCRYPT_P}",
            field="password_hash",
        )
    return value


def decode_json(payload: bytes, what: str = "payload") -> Any:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"{what} is {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{what} is not UTF-8 JSON: {exc}") from None


# JSON as the system writes it, for the wire and for rows: UTF-8, no spaces, optionally
# sorted keys. orjson writes exactly the text json.dumps(obj, ensure_ascii=False,
# separators=(",", ":"), sort_keys=...) gave (tests/core/test_json_text.py checks) in about a
# tenth of the time, which a checkout pays three times. Datetimes and dataclasses are
# refused, as json refused them: times travel as ISO text that the code wrote itself.
_JSON_PLAIN = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_JSON_SORTED = _JSON_PLAIN | orjson.OPT_SORT_KEYS


def encode_json(obj: Any) -> bytes:
    """The canonical bytes of a wire message: compact UTF-8 JSON with sorted keys."""
    return orjson.dumps(obj, option=_JSON_SORTED)


def json_text(obj: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text for a row, keys in the object's own order unless ``sort_keys``."""
    return orjson.dumps(obj, option=_JSON_SORTED if sort_keys else _JSON_PLAIN).decode()


# ---- shared field helpers -----------------------------------------------------------


def _version(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: must be an object")
    v = _require(raw, "v", int, where)
    if v != SCHEMA_VERSION:
        raise ProtocolError(
            f"{where}: unsupported schema version {v} (expected {SCHEMA_VERSION})", field="v"
        )
    return raw


def _store(raw: dict[str, Any], where: str) -> str:
    store = _require(raw, "store", str, where)
    if not STORE_CODE_RE.match(store) or store == "hq":
        raise ProtocolError(f"{where}: bad store code {store!r}", field="store")
    return store


def _nonneg(raw: dict[str, Any], key: str, where: str) -> int:
    value = _require(raw, key, int, where)
    if value < 0:
        raise ProtocolError(f"{where}: {key} must not be negative", field=key)
    return value


def int_in(raw: dict[str, Any], key: str, where: str, lo: int, hi: int) -> int:
    """``raw[key]`` as an int (not a bool) within ``lo..hi``; ProtocolError naming it if not."""
    value = _require(raw, key, int, where)
    if not lo <= value <= hi:
        raise ProtocolError(f"{where}: {key} must be {lo}..{hi}, got {value}", field=key)
    return value


# ---- batch and ack ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """What a store publishes on up/tx. ``items`` stay raw: HQ validates each one
    separately so that one bad item is rejected without losing its neighbours."""

    store: str
    epoch: int
    first_seq: int
    last_seq: int
    items: list[Any]
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "store": self.store,
            "epoch": self.epoch,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "items": self.items,
        }


def validate_batch(raw: Any, where: str = "batch") -> Batch:
    _version(raw, where)
    store = _store(raw, where)
    epoch = _require(raw, "epoch", int, where)
    if epoch < 1:
        raise ProtocolError(f"{where}: epoch must be >= 1", field="epoch")
    first = _require(raw, "first_seq", int, where)
    last = _require(raw, "last_seq", int, where)
    items = _require(raw, "items", list, where)
    if not items or len(items) > MAX_BATCH_ITEMS:
        raise ProtocolError(f"{where}: 1 to {MAX_BATCH_ITEMS} items, got {len(items)}")
    if first < 1 or last < first:
        raise ProtocolError(f"{where}: bad seq range {first}..{last}", field="first_seq")
    return Batch(store, epoch, first, last, items)


def make_batch(store: str, epoch: int, items: list[UpItem | dict[str, Any]]) -> bytes:
    """Encode a batch for up/tx; ProtocolError if it would not fit in one message."""
    dicts = [i.to_dict() if isinstance(i, UpItem) else i for i in items]
    if not dicts:
        raise ProtocolError("a batch needs at least one item")
    batch = Batch(store, epoch, dicts[0]["seq"], dicts[-1]["seq"], dicts)
    validate_batch(batch.to_dict())
    payload = encode_json(batch.to_dict())
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"batch is {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
    return payload


REJECT_CODES = ("invalid", "unknown_kind", "bad_version", "forged", "apply_failed")


@dataclass(frozen=True, slots=True)
class Rejection:
    seq: int
    code: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "code": self.code, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Ack:
    """HQ's cumulative acknowledgement, sent on down/ack only after its commit.

    ``rewind`` (answering a hello only) says HQ holds less than it once acknowledged,
    i.e. its database was restored from a backup: the store takes ``acked_through``
    as the truth even though it is lower, and resends everything after it."""

    store: str
    epoch: int
    acked_through: int
    rejected: tuple[Rejection, ...] = ()
    v: int = SCHEMA_VERSION
    rewind: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {
            "v": self.v,
            "store": self.store,
            "epoch": self.epoch,
            "acked_through": self.acked_through,
            "rejected": [r.to_dict() for r in self.rejected],
        }
        if self.rewind:
            out["rewind"] = True
        return out


def validate_ack(raw: Any, where: str = "ack") -> Ack:
    _version(raw, where)
    store = _store(raw, where)
    epoch = _require(raw, "epoch", int, where)
    acked = _nonneg(raw, "acked_through", where)
    rejected = []
    for i, r in enumerate(_require(raw, "rejected", list, where)):
        w = f"{where}.rejected[{i}]"
        if not isinstance(r, dict):
            raise ProtocolError(f"{w}: must be an object")
        rejected.append(
            Rejection(
                _require(r, "seq", int, w),
                _require(r, "code", str, w),
                _require(r, "reason", str, w),
            )
        )
    rewind = raw.get("rewind", False)
    if not isinstance(rewind, bool):
        raise ProtocolError(f"{where}: rewind must be true or false", field="rewind")
    return Ack(store, epoch, acked, tuple(rejected), rewind=rewind)


# ---- hello and state ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """Sent by a store on connect and whenever HQ comes back online."""

    store: str
    epoch: int
    acked_through: int  # what the store believes HQ has acknowledged
    down_cursor: int | None = None  # ask for the change page after it too
    last_seq: int | None = None  # the newest seq in the store's outbox (HQ shows the backlog)
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "store": self.store,
            "epoch": self.epoch,
            "acked_through": self.acked_through,
            "down_cursor": self.down_cursor,
            "last_seq": self.last_seq,
        }


def validate_hello(raw: Any, where: str = "hello") -> Hello:
    _version(raw, where)
    store = _store(raw, where)
    epoch = _require(raw, "epoch", int, where)
    acked = _nonneg(raw, "acked_through", where)
    cursor = raw.get("down_cursor")
    if cursor is not None:
        cursor = _nonneg(raw, "down_cursor", where)
    last_seq = raw.get("last_seq")
    if last_seq is not None:
        last_seq = _nonneg(raw, "last_seq", where)
    return Hello(store, epoch, acked, cursor, last_seq)


@dataclass(frozen=True, slots=True)
class PeerState:
    """Retained on hy/v1/hq/state (HQ) and hy/v1/{store}/up/state (a store)."""

    online: bool
    ts: str
    epoch: int | None = None
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": self.v, "online": self.online, "ts": self.ts}
        if self.epoch is not None:
            out["epoch"] = self.epoch
        return out


def validate_state(raw: Any, where: str = "state") -> PeerState:
    _version(raw, where)
    online = _require(raw, "online", bool, where)
    ts = _require(raw, "ts", str, where)
    epoch = raw.get("epoch")
    if epoch is not None:
        epoch = _require(raw, "epoch", int, where)
    return PeerState(online, ts, epoch)


# ---- down-sync: changes, pages, snapshots -------------------------------------------

CHANGE_ENTITIES = (
    "member",
    "card",
    "card_block",
    "card_type",
    "tier",
    "rules",
    "product",
    "coupon",
    "merge",
    "offline_policy",
)
SNAPSHOT_ORDER = (
    "rules",
    "offline_policy",
    "card_type",
    "tier",
    "product",
    "member",
    "card",
    "card_block",
    "coupon",
    "merge",
)


@dataclass(frozen=True, slots=True)
class Change:
    """One change-log record: the entity's full current state after the change."""

    seq: int
    entity: str
    key: str
    op: str  # "upsert" | "delete"
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "entity": self.entity,
            "key": self.key,
            "op": self.op,
            "data": self.data,
        }


def validate_change(raw: Any, where: str = "change") -> Change:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: must be an object")
    seq = _nonneg(raw, "seq", where)
    entity = _require(raw, "entity", str, where)
    if entity not in CHANGE_ENTITIES:
        raise ProtocolError(f"{where}: unknown entity {entity!r}", field="entity")
    key = _require(raw, "key", str, where)
    op = _require(raw, "op", str, where)
    if op not in ("upsert", "delete"):
        raise ProtocolError(f"{where}: op must be upsert or delete", field="op")
    data = _require(raw, "data", dict, where)
    return Change(seq, entity, key, op, data)


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    store: str
    after: int
    limit: int = DEFAULT_PAGE_CHANGES
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.v, "store": self.store, "after": self.after, "limit": self.limit}


def validate_change_request(raw: Any, where: str = "chgreq") -> ChangeRequest:
    _version(raw, where)
    store = _store(raw, where)
    after = _nonneg(raw, "after", where)
    limit = raw.get("limit", DEFAULT_PAGE_CHANGES)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_CHANGES:
        raise ProtocolError(f"{where}: limit must be 1..{MAX_PAGE_CHANGES}", field="limit")
    return ChangeRequest(store, after, limit)


@dataclass(frozen=True, slots=True)
class ChangePage:
    """A page of changes ``from``..``to`` (inclusive), or a demand for a snapshot."""

    from_seq: int
    to_seq: int
    changes: tuple[Change, ...]
    more: bool
    latest: int
    snapshot_required: bool = False
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        if self.snapshot_required:
            return {"v": self.v, "snapshot_required": True, "latest": self.latest}
        return {
            "v": self.v,
            "from": self.from_seq,
            "to": self.to_seq,
            "changes": [c.to_dict() for c in self.changes],
            "more": self.more,
            "latest": self.latest,
        }


def validate_change_page(raw: Any, where: str = "chg") -> ChangePage:
    _version(raw, where)
    latest = _nonneg(raw, "latest", where)
    if raw.get("snapshot_required") is True:
        return ChangePage(0, 0, (), False, latest, snapshot_required=True)
    from_seq = _nonneg(raw, "from", where)
    to_seq = _nonneg(raw, "to", where)
    changes = tuple(
        validate_change(c, f"{where}.changes[{i}]")
        for i, c in enumerate(_require(raw, "changes", list, where))
    )
    more = _require(raw, "more", bool, where)
    seqs = [c.seq for c in changes]
    if seqs != sorted(seqs) or (seqs and (seqs[0] < from_seq or seqs[-1] != to_seq)):
        raise ProtocolError(f"{where}: changes out of order or outside {from_seq}..{to_seq}")
    return ChangePage(from_seq, to_seq, changes, more, latest)


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    store: str
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.v, "store": self.store}


def validate_snapshot_request(raw: Any, where: str = "snapreq") -> SnapshotRequest:
    _version(raw, where)
    return SnapshotRequest(_store(raw, where))


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    snapshot_id: str
    cursor: int
    index: int
    count: int
    sha256: str
    data: str  # base64 of this chunk's bytes of the gzip file
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "snapshot_id": self.snapshot_id,
            "cursor": self.cursor,
            "index": self.index,
            "count": self.count,
            "sha256": self.sha256,
            "data": self.data,
        }


def validate_snapshot_chunk(raw: Any, where: str = "snap") -> SnapshotChunk:
    _version(raw, where)
    chunk = SnapshotChunk(
        _require(raw, "snapshot_id", str, where),
        _nonneg(raw, "cursor", where),
        _nonneg(raw, "index", where),
        _require(raw, "count", int, where),
        _require(raw, "sha256", str, where),
        _require(raw, "data", str, where),
    )
    if chunk.count < 1 or chunk.index >= chunk.count:
        raise ProtocolError(f"{where}: chunk {chunk.index} of {chunk.count}", field="index")
    return chunk


def encode_snapshot(records: Iterable[dict[str, Any]]) -> bytes:
    """gzip'd JSON lines, one change-shaped record per line (streamed: records may be
    a generator over millions of members)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:
        buffer: list[bytes] = []
        for record in records:
            buffer.append(encode_json(record))
            if len(buffer) >= 1000:
                gz.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            gz.write(b"\n".join(buffer) + b"\n")
    return out.getvalue()


def snapshot_chunks(
    records: Iterable[dict[str, Any]], cursor: int, snapshot_id: str
) -> list[SnapshotChunk]:
    blob = encode_snapshot(records)
    digest = hashlib.sha256(blob).hexdigest()
    pieces = [
        blob[i : i + SNAPSHOT_CHUNK_BYTES] for i in range(0, len(blob), SNAPSHOT_CHUNK_BYTES)
    ] or [b""]
    return [
        SnapshotChunk(
            snapshot_id, cursor, i, len(pieces), digest, base64.b64encode(p).decode("ascii")
        )
        for i, p in enumerate(pieces)
    ]


def assemble_snapshot(chunks: Iterable[SnapshotChunk]) -> Iterator[dict[str, Any]]:
    """Records of a complete snapshot; ProtocolError if chunks are missing or corrupt."""
    by_index: dict[int, SnapshotChunk] = {}
    for chunk in chunks:
        by_index[chunk.index] = chunk
    if not by_index:
        raise ProtocolError("snapshot has no chunks")
    first = next(iter(by_index.values()))
    if sorted(by_index) != list(range(first.count)):
        raise ProtocolError(f"snapshot {first.snapshot_id}: chunks missing")
    if any(c.snapshot_id != first.snapshot_id for c in by_index.values()):
        raise ProtocolError("snapshot chunks from different snapshots")
    blob = b"".join(base64.b64decode(by_index[i].data) for i in range(first.count))
    if hashlib.sha256(blob).hexdigest() != first.sha256:
        raise ProtocolError(f"snapshot {first.snapshot_id}: sha256 mismatch")
    for line in gzip.decompress(blob).splitlines():
        if line:
            yield json.loads(line)


# ---- online authorization -----------------------------------------------------------

AUTH_ACTIONS = ("hold", "release")
AUTH_STATUSES = ("approved", "declined", "released")


@dataclass(frozen=True, slots=True)
class AuthRequest:
    store: str
    sale_id: str
    member_id: str
    action: str = "hold"
    stored_value: int = 0
    points: int = 0
    coupons: tuple[str, ...] = ()
    requested_at: str = ""
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "store": self.store,
            "sale_id": self.sale_id,
            "member_id": self.member_id,
            "action": self.action,
            "stored_value": self.stored_value,
            "points": self.points,
            "coupons": list(self.coupons),
            "requested_at": self.requested_at,
        }


def validate_auth_request(raw: Any, where: str = "auth") -> AuthRequest:
    _version(raw, where)
    store = _store(raw, where)
    sale_id = _require(raw, "sale_id", str, where)
    member_id = _require(raw, "member_id", str, where)
    if not is_uuid(member_id):
        raise ProtocolError(f"{where}: member_id is not a UUID", field="member_id")
    if not sale_id or len(sale_id) > 64:
        raise ProtocolError(f"{where}: bad sale_id", field="sale_id")
    action = raw.get("action", "hold")
    if action not in AUTH_ACTIONS:
        raise ProtocolError(f"{where}: action must be one of {AUTH_ACTIONS}", field="action")
    sv = _nonneg(raw, "stored_value", where) if "stored_value" in raw else 0
    pts = _nonneg(raw, "points", where) if "points" in raw else 0
    coupons = raw.get("coupons", [])
    if not isinstance(coupons, list) or not all(isinstance(c, str) for c in coupons):
        raise ProtocolError(f"{where}: coupons must be a list of codes", field="coupons")
    requested_at = raw.get("requested_at", "")
    if not isinstance(requested_at, str):
        raise ProtocolError(f"{where}: requested_at must be a string", field="requested_at")
    return AuthRequest(store, sale_id, member_id, action, sv, pts, tuple(coupons), requested_at)


@dataclass(frozen=True, slots=True)
class AuthResponse:
    sale_id: str
    status: str
    authorization_id: str | None = None
    code: str | None = None
    reason: str | None = None
    stored_value_split: dict[str, int] | None = None
    balances: dict[str, Any] | None = None
    v: int = SCHEMA_VERSION

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "sale_id": self.sale_id,
            "status": self.status,
            "authorization_id": self.authorization_id,
            "code": self.code,
            "reason": self.reason,
            "stored_value_split": self.stored_value_split,
            "balances": self.balances,
        }


def validate_auth_response(raw: Any, where: str = "auth response") -> AuthResponse:
    _version(raw, where)
    status = _require(raw, "status", str, where)
    if status not in AUTH_STATUSES:
        raise ProtocolError(f"{where}: status must be one of {AUTH_STATUSES}", field="status")
    return AuthResponse(
        _require(raw, "sale_id", str, where),
        status,
        raw.get("authorization_id"),
        raw.get("code"),
        raw.get("reason"),
        raw.get("stored_value_split"),
        raw.get("balances"),
    )


# ---- offline policies ---------------------------------------------------------------

BALANCE_KINDS = ("stored_value", "points", "coupons")
OFFLINE_MODES = ("online_only", "floor_limit")


@dataclass(frozen=True, slots=True)
class OfflinePolicy:
    kind: str
    mode: str = "online_only"
    daily_limit: int = 0  # fen / points / coupons per member per day at one store

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mode": self.mode, "daily_limit": self.daily_limit}


def validate_offline_policy(raw: Any, where: str = "offline_policy") -> OfflinePolicy:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: must be an object")
    kind = _require(raw, "kind", str, where)
    if kind not in BALANCE_KINDS:
        raise ProtocolError(f"{where}: kind must be one of {BALANCE_KINDS}", field="kind")
    mode = _require(raw, "mode", str, where)
    if mode not in OFFLINE_MODES:
        raise ProtocolError(f"{where}: mode must be one of {OFFLINE_MODES}", field="mode")
    limit = _nonneg(raw, "daily_limit", where) if "daily_limit" in raw else 0
    return OfflinePolicy(kind, mode, limit)


def offline_allowance(policy: OfflinePolicy, cached_balance: int, spent_today: int) -> int:
    """How much of ``policy.kind`` a member may still spend offline today at this store."""
    if policy.mode == "online_only":
        return 0
    return max(0, min(policy.daily_limit - spent_today, cached_balance))
