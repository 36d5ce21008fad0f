"""The wire between store edges and HQ: topics, envelopes and their validation.

Pure code: both sides import it, neither does I/O here. ``docs/protocol.md`` is
the prose contract; this module is its executable half.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, cast

import orjson

from core.errors import ProtocolError, ValidationError
from core.ids import is_uuid
from core.money import MAX_AMOUNT

SCHEMA_VERSION = 1
TOPIC_ROOT = "hy/v1"
MAX_PAYLOAD_BYTES = 256 * 1024
# The largest single up item (its compact JSON) a till puts in its outbox: a batch of that
# item alone, envelope included, always fits MAX_PAYLOAD_BYTES.
MAX_ITEM_BYTES = MAX_PAYLOAD_BYTES - 1024
# HQ still reads a batch up to this size to acknowledge its items as refused (`oversized`);
# past it the payload is dead-lettered unread (see docs/protocol.md, "Refusals").
MAX_READ_BYTES = 16 * MAX_PAYLOAD_BYTES
# Bounds of the counters on the wire: outbox and change-log seqs and cursors, and epochs
# (HQ keeps an epoch in a 32-bit column).
MAX_SEQ = 2**62
MAX_EPOCH = 2**31 - 1
MAX_SNAPSHOT_CHUNKS = 2**20
MAX_COUPONS = 20
MAX_CODE_CHARS = 64
MAX_BATCH_ITEMS = 500
MAX_PAGE_CHANGES = 1000
DEFAULT_PAGE_CHANGES = 500
SNAPSHOT_THRESHOLD = 100_000
SNAPSHOT_CHUNK_BYTES = 128 * 1024
HOLD_WINDOW = 10_000
AUTH_TIMEOUT_S = 1.5
INGEST_SUBSCRIPTION = f"$share/ingest/{TOPIC_ROOT}/+/up/#"

STORE_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# Kinds of item a store sends up, each with the body fields every item of it must have.
# The full bodies are typed below ("up item bodies": SaleBody, ReturnBody, TopUpBody,
# RegistrationBody), each checked by its validator in BODY_VALIDATORS, and documented
# field by field in docs/protocol.md ("Item bodies"). All money is integer fen.
UP_KINDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "sale": {"sale_id": str, "lines": list, "total": int, "tenders": list},
    "return": {"return_id": str, "sale_id": str, "lines": list, "refund_total": int},
    "topup": {"topup_id": str, "member_id": str, "principal": int, "bonus": int},
    "registration": {"member_id": str, "name": str, "phone": str, "registered_at": str},
    # a member's marketing consent changed at the till (PIPL; docs/protocol.md "consent")
    "consent": {"member_id": str, "consent": dict, "changed_at": str},
    # ---- programme kinds (issue 11), one block per part:
    # -- tiers (tiers, growth value, member day)
    # the rules version a store prices with, and a document it refused (docs/programme/rules.md)
    "rules_status": {"version_in_force": int, "at": str},
    # -- cards (card types as products, card replacement)
    "card_sale": {"card_sale_id": str, "member_id": str, "card_type": str, "price": int},
    "card_replace": {"replace_id": str, "member_id": str, "old_card_no": str, "new_card_no": str},
    "card_block": {"block_id": str, "card_no": str},
    # -- points (points rules, gifts, referral)
    # points redeemed for a catalogue gift at the till (docs/programme/points.md)
    "gift_redemption": {
        "redemption_id": str,
        "member_id": str,
        "gift_id": str,
        "qty": int,
        "points_used": int,
    },
    # -- coupons (coupons)
    # a coupon a till issued (a new-member gift, a points gift): docs/programme/coupons.md
    "coupon_issue": {"code": str, "member_id": str, "template_id": str, "issued_at": str},
    # -- upkeep (stored value, profile, password)
    # -- upkeep (stored value, profile, password): docs/programme/upkeep.md "On the wire"
    # a refund of unspent principal paid in cash, authorized online (action "refund")
    "sv_refund": {"refund_id": str, "member_id": str, "principal": int, "bonus": int},
    # a member's profile edited at the till: only the fields changed, and when
    "member_update": {"member_id": str, "changes": dict, "changed_at": str},
    # a member's payment password set, changed or reset at the till (its hash only)
    "member_password": {"member_id": str, "password_hash": str, "changed_at": str},
    # -- staff (maintainers, categories and cost)
    # a store manager's decision at the till on a maintainer transfer (docs/programme/staff.md)
    "staff_decision": {"transfer_id": str, "decision": str, "decided_at": str},
    # a transfer of members between maintainers asked for at the till
    "staff_request": {"transfer_id": str, "from_staff": str, "to_staff": str, "reason": str},
    # ---- end of programme kinds
    # -- shifts and day close (issue 13): docs/protocol.md "shift_close" and "day_close"
    "shift_close": {"shift_id": str, "store": str, "day": str, "figures": dict},
    "day_close": {"close_id": str, "store": str, "day": str, "revision": int, "figures": dict},
    # -- follow-ups (issue 14): a follow-up call's outcome recorded at the till
    "followup_outcome": {"outcome_id": str, "followup_id": str, "member_id": str, "reached": bool},
}

# Member fields the programme added (issue 11), sent in a member's change record under
# the column's own name, with the same name on HQ's and the till's ``Member`` (JSON
# values: text, numbers, booleans, ISO dates, lists and objects). A till keeps each one
# as sent; a field absent from a change (an older HQ) leaves the till's column at its
# default. One block per part:
MEMBER_PROGRAMME_FIELDS: tuple[str, ...] = (
    # -- tiers (tiers, growth value, member day)
    "growth",  # growth value (成长值) in the window the tier was evaluated on
    "tier_since",  # ISO date the tier was last set
    # -- cards (card types as products, card replacement)
    "card_expires_on",  # ISO date: the last day of a card type with a validity (年卡)
    # -- points (points rules, gifts, referral)
    # -- coupons (coupons)
    # -- upkeep (stored value, profile, password)
    "occupation",
    "preferences",  # list of texts
    "anniversaries",  # list of {"name", "date", "calendar"}
    "notes",
    "tags",  # list of texts (e.g. 投诉, 退款)
    "extra",  # {field: value} of the chain's own profile fields
    "profile_score",  # data completeness, 0..100
    "referred_by",  # the member id of who brought this member
    # -- staff (maintainers, categories and cost)
)

# Marketing channels a member consents to (or not) one by one; none means no marketing.
CONSENT_CHANNELS = ("sms", "wechat", "call")


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
# Money and points have a much lower cap of their own (core.money.MAX_AMOUNT).
MAX_WIRE_INT = 2**63 - 1


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
    BODY_VALIDATORS[kind](body, f"{where} {kind} body")
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(payload: bytes, what: str = "payload", limit: int = MAX_PAYLOAD_BYTES) -> Any:
    """The JSON value of a wire payload; ProtocolError for anything else, whatever it is:
    over ``limit`` bytes, not UTF-8, not JSON, NaN/Infinity, an integer of more digits
    than Python converts, or nesting deeper than the parser recurses."""
    if len(payload) > limit:
        raise ProtocolError(f"{what} is {len(payload)} bytes, more than {limit}")
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ProtocolError(f"{what} is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ProtocolError(f"{what} is not UTF-8 JSON: {safe_text(str(exc))[:200]}") from None


def safe_text(text: str) -> str:
    """``text`` with any lone surrogate (valid in a Python str and in JSON's \\u escapes,
    not in UTF-8) written as its escape, so that it can be stored, logged and sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unencodable_field(raw: Any, where: str = "") -> str | None:
    """The path of a string (value or key) in ``raw`` that is not valid Unicode (a lone
    surrogate), the shallowest first, or None. Iterative: ``raw`` may be as deep as the
    decoder allows."""
    try:
        orjson.dumps(raw)  # C speed: what it writes holds no lone surrogate
        return None
    except TypeError:  # orjson.JSONEncodeError: a surrogate, or a huge int, deep nesting...
        pass
    queue: deque[tuple[str, Any]] = deque([(where, raw)])
    while queue:
        path, value = queue.popleft()
        if isinstance(value, str):
            if safe_text(value) != value:
                return path or "(value)"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if safe_text(key) != key:
                    return safe_text(name)
                queue.append((name, item))
        elif isinstance(value, list):
            queue.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


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
    epoch = int_in(raw, "epoch", where, 1, MAX_EPOCH)
    first = int_in(raw, "first_seq", where, 1, MAX_SEQ)
    last = int_in(raw, "last_seq", where, 1, MAX_SEQ)
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


REJECT_CODES = (
    "invalid",
    "unknown_kind",
    "bad_version",
    "forged",
    "apply_failed",
    "oversized",
    "unprocessable",
)


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
    epoch = int_in(raw, "epoch", where, 1, MAX_EPOCH)
    acked = int_in(raw, "acked_through", where, 0, MAX_SEQ)
    rejected = []
    for i, r in enumerate(_require(raw, "rejected", list, where)):
        w = f"{where}.rejected[{i}]"
        if not isinstance(r, dict):
            raise ProtocolError(f"{w}: must be an object")
        rejected.append(
            Rejection(
                int_in(r, "seq", w, 1, MAX_SEQ),
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
    epoch = int_in(raw, "epoch", where, 1, MAX_EPOCH)
    acked = int_in(raw, "acked_through", where, 0, MAX_SEQ)
    cursor = raw.get("down_cursor")
    if cursor is not None:
        cursor = int_in(raw, "down_cursor", where, 0, MAX_SEQ)
    last_seq = raw.get("last_seq")
    if last_seq is not None:
        last_seq = int_in(raw, "last_seq", where, 0, MAX_SEQ)
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
        epoch = int_in(raw, "epoch", where, 1, MAX_EPOCH)
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
    # -- staff (maintainers, categories and cost): HQ's staff registry and the open
    # maintainer transfers (docs/programme/staff.md, "On the wire")
    "staff",
    "staff_transfer",
    "coupon_template",  # coupons (issue 11): docs/programme/coupons.md
    # -- points (points rules, gifts, referral)
    "gift",  # the gift catalogue (docs/programme/points.md)
    "followup",  # -- follow-ups (issue 14): a store's follow-up calls (docs/followups.md)
)
# A change of an entity this software does not know (one a newer HQ sends) is valid on
# the wire and skipped by the till with a warning, so a store keeps syncing through a
# page that holds one (docs/protocol.md "Down-sync"); the name must still look like one.
ENTITY_NAME_RE = re.compile(r"^[a-z][a-z_]{0,15}$")
# "erase" (member records only): the member's personal data was erased at HQ; the data is
# the member's state (personal fields empty, status "erased"), and the store also scrubs
# its own copies of the member's contacts (docs/protocol.md "Erasure").
CHANGE_OPS = ("upsert", "delete", "erase")
SNAPSHOT_ORDER = (
    "rules",
    "offline_policy",
    "card_type",
    "tier",
    "product",
    "member",
    "card",
    "card_block",
    "coupon_template",
    "coupon",
    "merge",
    # -- staff (maintainers, categories and cost)
    "staff",
    "staff_transfer",
    "gift",  # points
    "followup",  # -- follow-ups (issue 14)
)


@dataclass(frozen=True, slots=True)
class Change:
    """One change-log record: the entity's full current state after the change."""

    seq: int
    entity: str
    key: str
    op: str  # "upsert" | "delete" | "erase" (CHANGE_OPS)
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
    seq = int_in(raw, "seq", where, 0, MAX_SEQ)
    entity = _require(raw, "entity", str, where)
    if not ENTITY_NAME_RE.match(entity):
        raise ProtocolError(f"{where}: bad entity name {entity!r}", field="entity")
    key = _require(raw, "key", str, where)
    op = _require(raw, "op", str, where)
    if op not in CHANGE_OPS:
        raise ProtocolError(f"{where}: op must be one of {CHANGE_OPS}", field="op")
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
    after = int_in(raw, "after", where, 0, MAX_SEQ)
    limit = (
        int_in(raw, "limit", where, 1, MAX_PAGE_CHANGES) if "limit" in raw else DEFAULT_PAGE_CHANGES
    )
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
    latest = int_in(raw, "latest", where, 0, MAX_SEQ)
    if raw.get("snapshot_required") is True:
        return ChangePage(0, 0, (), False, latest, snapshot_required=True)
    from_seq = int_in(raw, "from", where, 0, MAX_SEQ)
    to_seq = int_in(raw, "to", where, 0, MAX_SEQ)
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
    # chunk 0 only: the chain's phone lookup key {"id", "key" (base64 of 32 bytes)}, which
    # a store receives only here, on its own topic (docs/protocol.md, "Phone lookup key")
    lookup_key: dict[str, str] | None = None
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        out = {
            "v": self.v,
            "snapshot_id": self.snapshot_id,
            "cursor": self.cursor,
            "index": self.index,
            "count": self.count,
            "sha256": self.sha256,
            "data": self.data,
        }
        if self.lookup_key is not None:
            out["lookup_key"] = self.lookup_key
        return out


def validate_snapshot_chunk(raw: Any, where: str = "snap") -> SnapshotChunk:
    _version(raw, where)
    chunk = SnapshotChunk(
        _require(raw, "snapshot_id", str, where),
        int_in(raw, "cursor", where, 0, MAX_SEQ),
        int_in(raw, "index", where, 0, MAX_SNAPSHOT_CHUNKS - 1),
        int_in(raw, "count", where, 1, MAX_SNAPSHOT_CHUNKS),
        _require(raw, "sha256", str, where),
        _require(raw, "data", str, where),
        _lookup_key(raw.get("lookup_key"), f"{where}.lookup_key"),
    )
    if chunk.count < 1 or chunk.index >= chunk.count:
        raise ProtocolError(f"{where}: chunk {chunk.index} of {chunk.count}", field="index")
    return chunk


def _lookup_key(raw: Any, where: str) -> dict[str, str] | None:
    """A snapshot header's lookup key: {"id": 8 hex digits, "key": base64 of 32 bytes}."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"id", "key"}:
        raise ProtocolError(f"{where}: must be an object with id and key", field="lookup_key")
    key_id, key = raw["id"], raw["key"]
    if not (isinstance(key_id, str) and re.fullmatch(r"[0-9a-f]{8}", key_id)):
        raise ProtocolError(f"{where}.id: must be 8 hex digits", field="lookup_key")
    try:
        decoded = base64.b64decode(key, validate=True) if isinstance(key, str) else b""
    except ValueError:
        decoded = b""
    if len(decoded) != 32:
        raise ProtocolError(f"{where}.key: must be base64 of 32 bytes", field="lookup_key")
    return {"id": key_id, "key": key}


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
    records: Iterable[dict[str, Any]],
    cursor: int,
    snapshot_id: str,
    lookup_key: dict[str, str] | None = None,
) -> list[SnapshotChunk]:
    blob = encode_snapshot(records)
    digest = hashlib.sha256(blob).hexdigest()
    pieces = [
        blob[i : i + SNAPSHOT_CHUNK_BYTES] for i in range(0, len(blob), SNAPSHOT_CHUNK_BYTES)
    ] or [b""]
    return [
        SnapshotChunk(
            snapshot_id,
            cursor,
            i,
            len(pieces),
            digest,
            base64.b64encode(p).decode("ascii"),
            lookup_key if i == 0 else None,
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

# "refund" (upkeep): hold ``stored_value`` fen of the member's principal for a refund in
# cash (储值退款); HQ answers with the bonus the chain's terms forfeit with it
AUTH_ACTIONS = ("hold", "release", "refund")
AUTH_STATUSES = ("approved", "declined", "released")
# the decline code for a member HQ has not received yet: the till decides offline
UNKNOWN_MEMBER = "unknown_member"


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
    if not sale_id or len(sale_id) > MAX_CODE_CHARS:
        raise ProtocolError(f"{where}: bad sale_id", field="sale_id")
    action = raw.get("action", "hold")
    if action not in AUTH_ACTIONS:
        raise ProtocolError(f"{where}: action must be one of {AUTH_ACTIONS}", field="action")
    sv = int_in(raw, "stored_value", where, 0, MAX_AMOUNT) if "stored_value" in raw else 0
    pts = int_in(raw, "points", where, 0, MAX_AMOUNT) if "points" in raw else 0
    coupons = raw.get("coupons", [])
    if (
        not isinstance(coupons, list)
        or len(coupons) > MAX_COUPONS
        or not all(isinstance(c, str) and 0 < len(c) <= MAX_CODE_CHARS for c in coupons)
    ):
        raise ProtocolError(
            f"{where}: coupons must be a list of at most {MAX_COUPONS} codes "
            f"of 1..{MAX_CODE_CHARS} characters",
            field="coupons",
        )
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
    for key in ("authorization_id", "code", "reason"):
        if raw.get(key) is not None:
            _require(raw, key, str, where)
    split = raw.get("stored_value_split")
    if split is not None:
        w = f"{where}.stored_value_split"
        _require(raw, "stored_value_split", dict, where)
        split = {k: int_in(split, k, w, 0, MAX_AMOUNT) for k in ("principal", "bonus")}
    balances = raw.get("balances")
    if balances is not None:
        _require(raw, "balances", dict, where)
    return AuthResponse(
        _require(raw, "sale_id", str, where),
        status,
        raw.get("authorization_id"),
        raw.get("code"),
        raw.get("reason"),
        split,
        balances,
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
    limit = int_in(raw, "daily_limit", where, 0, MAX_AMOUNT) if "daily_limit" in raw else 0
    return OfflinePolicy(kind, mode, limit)


def offline_allowance(policy: OfflinePolicy, cached_balance: int, spent_today: int) -> int:
    """How much of ``policy.kind`` a member may still spend offline today at this store."""
    if policy.mode == "online_only":
        return 0
    return max(0, min(policy.daily_limit - spent_today, cached_balance))


# ---- up item bodies -----------------------------------------------------------------
# Every field of every up item's body, typed, with one validator per kind that checks
# types, signs and bounds (docs/protocol.md, "Item bodies", lists them with their
# meaning). What a field means for money (sums, splits, the rules) is checked by HQ
# against the rules version and the sale a return names (hq/apply.py, "Money checks").
# Keys a body carries beyond these are ignored by HQ.

MAX_ID_LEN = 64  # sale, return, top-up, lot and authorization ids (UUIDs at today's tills)
MAX_CODE_LEN = 64  # card numbers, SKUs, staff codes (the till's own cap, edge/services/members)
MAX_NAME_LEN = 255  # product and member names (HQ keeps them in 255-character columns)
MAX_LABEL_LEN = 32  # card types, tiers, rounding modes, tender kinds
MAX_TIME_LEN = 40  # ISO dates and times
MAX_BODY_LINES = 200  # lines per sale (the till's MAX_LINES)
MAX_BODY_TENDERS = 10
MAX_LOT_PAIRS = 1000  # [lot_id, points] pairs a spend or a restore names
MAX_LINE_QTY = 99_999  # core.money.MAX_QTY
TENDER_KINDS_ON_WIRE = ("cash", "stored_value", "points")  # core.tenders.TENDER_KINDS
GENDERS_ON_WIRE = ("M", "F", "")
CALENDARS_ON_WIRE = ("solar", "lunar")


class SplitBody(TypedDict):
    principal: int  # fen of paid-in stored value, 0..MAX_AMOUNT
    bonus: int  # fen of given stored value (充500送100), 0..MAX_AMOUNT


class TenderBody(TypedDict):
    kind: str  # cash | stored_value | points
    amount: int  # fen kept by this tender (cash net of change), 1..MAX_AMOUNT


class LineInputBody(TypedDict):
    """One basket line as the till priced it (core.pricing.LineInput)."""

    sku: str
    name: str
    qty: int
    unit_price: int
    promo_price: int | None
    line_discount: int
    no_member_discount: bool
    no_points: bool


class MemberContextBody(TypedDict):
    member_id: str
    card_type: str | None
    tier: str | None


class PricingInputBody(TypedDict):
    lines: list[LineInputBody]
    member: MemberContextBody | None
    order_discount_rate: int  # permille, 0..1000
    manual_adjustment: int  # fen, 0..MAX_AMOUNT
    rounding: str | None  # core.money.Rounding value the store priced with


class PricedLineBody(TypedDict):
    """One priced line (core.pricing.PricedLine)."""

    line_no: int
    sku: str
    name: str
    qty: int
    unit_price: int
    list_price: int
    gross: int
    line_discount: int
    member_discount: int
    order_discount: int
    manual_adjustment: int
    rounding: int
    amount: int
    promo: bool
    earns_points: bool


class PointsLotBody(TypedDict):
    lot_id: str
    earned_on: str  # ISO date
    expires_on: str  # ISO date, the last day the points can be used


class SaleBody(TypedDict):
    sale_id: str
    member_id: str | None
    card_no: str | None
    cashier: str
    approved_by: NotRequired[str | None]
    pricing_input: PricingInputBody
    lines: list[PricedLineBody]
    subtotal: int
    line_discount: NotRequired[int]
    member_discount: int
    order_discount: int
    manual_adjustment: int
    rounding: int
    total: int
    tenders: list[TenderBody]
    change: int
    stored_value: SplitBody
    points_used: int
    points_lots_used: list[tuple[str, int]]
    points_earned: int
    points_lot: PointsLotBody | None
    offline: bool
    authorization_id: str | None
    # -- staff: who served the customer (导购), when not the cashier; older tills omit it
    served_by: NotRequired[str | None]


class ReturnLineBody(TypedDict):
    line_no: int
    sku: NotRequired[str]
    name: NotRequired[str]
    qty: int
    amount: int


class ReturnBody(TypedDict):
    return_id: str
    sale_id: str
    member_id: str | None
    cashier: str
    approved_by: NotRequired[str | None]
    lines: list[ReturnLineBody]
    refund_total: int
    tenders: list[TenderBody]
    stored_value: SplitBody
    points_restored: int
    points_lots_restored: list[tuple[str, int]]
    points_reversed: int
    points_debt: int


class TopUpBody(TypedDict):
    topup_id: str
    member_id: str
    principal: int
    bonus: int
    tender: str  # "cash"
    cashier: str
    card_type: NotRequired[str]  # -- cards: 充值升级 to this card type (rules' cards.upgrades)


# -- cards (card types as products, card replacement; docs/programme/cards.md)


class CardSaleBody(TypedDict):
    card_sale_id: str
    member_id: str
    card_type: str  # the card product sold (rules' cards.products)
    price: int  # fen paid, the product's price in the item's rules version
    valid_from: str  # ISO date, first valid day
    valid_to: str  # ISO date, last valid day
    renewal: bool
    tender: str  # "cash"
    cashier: str
    approved_by: NotRequired[str | None]


class CardReplaceBody(TypedDict):
    replace_id: str
    member_id: str
    old_card_no: str  # blocked chain-wide
    new_card_no: str  # issued to the member, active
    reason: str
    cashier: str
    approved_by: str  # the manager who approved


class CardBlockBody(TypedDict):
    block_id: str
    card_no: str
    member_id: str | None
    reason: str
    cashier: str
    approved_by: str


def validate_card_sale_body(body: dict[str, Any], where: str = "card_sale body") -> CardSaleBody:
    _texts(body, ("card_sale_id",), where, MAX_ID_LEN)
    _member_id(body, "member_id", where, nullable=False)
    _texts(body, ("card_type",), where, MAX_LABEL_LEN)
    _amounts(body, ("price",), where)
    _texts(body, ("valid_from", "valid_to"), where, MAX_TIME_LEN)
    for key in ("valid_from", "valid_to"):
        try:
            dt.date.fromisoformat(body[key])
        except ValueError:
            raise ProtocolError(f"{where}: {key} is not an ISO date", field=key) from None
    if body["valid_to"] < body["valid_from"]:
        raise ProtocolError(f"{where}: valid_to is before valid_from", field="valid_to")
    _flags(body, ("renewal",), where)
    if body.get("tender") != "cash":
        _text(body, "tender", where, MAX_LABEL_LEN)
        raise ProtocolError(f"{where}: tender must be 'cash'", field="tender")
    _staff(body, where)
    return cast(CardSaleBody, body)


def validate_card_replace_body(
    body: dict[str, Any], where: str = "card_replace body"
) -> CardReplaceBody:
    _texts(body, ("replace_id",), where, MAX_ID_LEN)
    _member_id(body, "member_id", where, nullable=False)
    _texts(body, ("old_card_no", "new_card_no"), where, MAX_CODE_LEN)
    if body["old_card_no"] == body["new_card_no"]:
        raise ProtocolError(f"{where}: new_card_no is the old card", field="new_card_no")
    _texts(body, ("reason",), where, MAX_NAME_LEN)
    _texts(body, ("cashier", "approved_by"), where, MAX_CODE_LEN)
    return cast(CardReplaceBody, body)


def validate_card_block_body(body: dict[str, Any], where: str = "card_block body") -> CardBlockBody:
    _texts(body, ("block_id",), where, MAX_ID_LEN)
    _texts(body, ("card_no",), where, MAX_CODE_LEN)
    _member_id(body, "member_id", where, nullable=True)
    _texts(body, ("reason",), where, MAX_NAME_LEN)
    _texts(body, ("cashier", "approved_by"), where, MAX_CODE_LEN)
    return cast(CardBlockBody, body)


# -- end of cards


class RegistrationBody(TypedDict):
    member_id: str
    name: str
    phone: str
    gender: str
    birthday: str | None
    birthday_calendar: str
    birthday_leap_month: bool
    card_no: str | None
    card_type: str | None
    tier: NotRequired[str | None]
    staff_code: str | None
    password_hash: NotRequired[str | None]
    cashier: NotRequired[str]
    registered_at: str
    # marketing consent per channel (CONSENT_CHANNELS) given at registration; absent in
    # items of older tills, which HQ reads as no consent to anything
    consent: NotRequired[dict[str, bool]]


class ConsentBody(TypedDict):
    member_id: str
    consent: dict[str, bool]  # only the channels that changed
    changed_at: str
    cashier: NotRequired[str]


def _text(
    obj: dict[str, Any],
    key: str,
    where: str,
    max_len: int,
    *,
    optional: bool = False,
    nullable: bool = False,
    min_len: int = 1,
) -> str | None:
    """``obj[key]`` as a string of ``min_len``..``max_len`` characters (or None when
    ``nullable``; absent when ``optional``); ProtocolError naming the field if not."""
    if key not in obj and optional:
        return None
    if nullable and obj.get(key, 0) is None:
        return None
    value = _require(obj, key, str, where)
    if not min_len <= len(value) <= max_len:
        raise ProtocolError(
            f"{where}: {key} must be {min_len}..{max_len} characters, got {len(value)}", field=key
        )
    return value


# The checks below run for every item HQ ingests, so each group of fields takes one
# call with a fast test per field; the detailed helper above runs only to word the
# refusal of a field that fails it.
_MISSING = object()
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def _ints(obj: dict[str, Any], keys: tuple[str, ...], where: str, lo: int, hi: int) -> None:
    for key in keys:
        value = obj.get(key, _MISSING)
        if type(value) is not int or not lo <= value <= hi:
            int_in(obj, key, where, lo, hi)


def _amounts(obj: dict[str, Any], keys: tuple[str, ...], where: str, lo: int = 0) -> None:
    """Money or points: ints within ``lo``..MAX_AMOUNT."""
    _ints(obj, keys, where, lo, MAX_AMOUNT)


def _texts(
    obj: dict[str, Any], keys: tuple[str, ...], where: str, max_len: int, min_len: int = 1
) -> None:
    for key in keys:
        value = obj.get(key)
        if type(value) is not str or not min_len <= len(value) <= max_len:
            _text(obj, key, where, max_len, min_len=min_len)


def _optional_texts(
    obj: dict[str, Any], keys: tuple[str, ...], where: str, max_len: int, min_len: int = 1
) -> None:
    """Strings that may be absent or null."""
    for key in keys:
        value = obj.get(key)
        if value is not None and (type(value) is not str or not min_len <= len(value) <= max_len):
            _text(obj, key, where, max_len, min_len=min_len)


def _flags(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if type(obj.get(key)) is not bool:
            _require(obj, key, bool, where)


def _object(obj: dict[str, Any], key: str, where: str, *, nullable: bool = False) -> Any:
    value = obj.get(key, _MISSING)
    if nullable and value is None:
        return None
    return value if type(value) is dict else _require(obj, key, dict, where)


def _list(obj: dict[str, Any], key: str, where: str, max_items: int, min_items: int = 0) -> list:
    value = obj.get(key)
    if type(value) is not list:
        value = _require(obj, key, list, where)
    if not min_items <= len(value) <= max_items:
        raise ProtocolError(
            f"{where}: {key} must hold {min_items}..{max_items} entries, got {len(value)}",
            field=key,
        )
    return value


def _each(
    obj: dict[str, Any],
    key: str,
    where: str,
    max_items: int,
    check: Callable[[dict[str, Any]], None],
    min_items: int = 0,
) -> None:
    """``check`` every object of the list ``obj[key]``; a refusal names the entry."""
    for i, entry in enumerate(_list(obj, key, where, max_items, min_items)):
        if type(entry) is not dict:
            raise ProtocolError(f"{where} {key}[{i}]: must be an object", field=key)
        try:
            check(entry)
        except ProtocolError as exc:
            message = exc.message.removeprefix(_ENTRY + ": ")
            raise ProtocolError(f"{where} {key}[{i}]: {message}", field=exc.field) from None


_ENTRY = "entry"  # the ``where`` of a check run by _each: replaced by the entry's path


def _member_id(obj: dict[str, Any], key: str, where: str, *, nullable: bool) -> str | None:
    value = obj.get(key, _MISSING)
    if nullable and value is None:
        return None
    if type(value) is not str:
        value = _require(obj, key, str, where)
    if not _UUID_RE.match(value):
        raise ProtocolError(f"{where}: {key} is not a UUID", field=key)
    return value


def _split_body(obj: dict[str, Any], key: str, where: str) -> None:
    _amounts(_object(obj, key, where), ("principal", "bonus"), f"{where} {key}")


def _tender(tender: dict[str, Any]) -> None:
    if tender.get("kind") not in TENDER_KINDS_ON_WIRE:
        _text(tender, "kind", _ENTRY, MAX_LABEL_LEN)
        raise ProtocolError(f"{_ENTRY}: kind must be one of {TENDER_KINDS_ON_WIRE}", field="kind")
    _amounts(tender, ("amount",), _ENTRY, lo=1)


def _lot_pairs(obj: dict[str, Any], key: str, where: str) -> None:
    for i, pair in enumerate(_list(obj, key, where, MAX_LOT_PAIRS)):
        ok = (
            type(pair) is list
            and len(pair) == 2
            and type(pair[0]) is str
            and 1 <= len(pair[0]) <= MAX_ID_LEN
            and type(pair[1]) is int
            and 1 <= pair[1] <= MAX_AMOUNT
        )
        if not ok:
            w = f"{where} {key}[{i}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise ProtocolError(f"{w}: must be [lot_id, points]", field=key)
            _text({"lot_id": pair[0]}, "lot_id", w, MAX_ID_LEN)
            _amounts({"points": pair[1]}, ("points",), w, lo=1)


def _pricing_line(line: dict[str, Any]) -> None:
    _goods_line(line)
    _amounts(line, ("unit_price", "line_discount"), _ENTRY)
    if line.get("promo_price") is not None:
        _amounts(line, ("promo_price",), _ENTRY)
    _flags(line, ("no_member_discount", "no_points"), _ENTRY)


def _priced_line(line: dict[str, Any]) -> None:
    _goods_line(line)
    _ints(line, ("line_no",), _ENTRY, 1, MAX_BODY_LINES)
    _ints(line, _PRICED_LINE_FIGURES, _ENTRY, 0, MAX_WIRE_INT)
    _ints(line, ("rounding",), _ENTRY, -MAX_AMOUNT, MAX_AMOUNT)
    _flags(line, ("promo", "earns_points"), _ENTRY)


_PRICED_LINE_FIGURES = (
    "unit_price",
    "list_price",
    "gross",
    "amount",
    "line_discount",
    "member_discount",
    "order_discount",
    "manual_adjustment",
)


def _goods_line(line: dict[str, Any]) -> None:
    """What every line of a basket names: the goods and how many."""
    _texts(line, ("sku",), _ENTRY, MAX_CODE_LEN)
    _texts(line, ("name",), _ENTRY, MAX_NAME_LEN, min_len=0)
    _ints(line, ("qty",), _ENTRY, 1, MAX_LINE_QTY)


def _returned_line(line: dict[str, Any]) -> None:
    _ints(line, ("line_no",), _ENTRY, 1, MAX_BODY_LINES)
    _optional_texts(line, ("sku",), _ENTRY, MAX_CODE_LEN)
    _optional_texts(line, ("name",), _ENTRY, MAX_NAME_LEN, min_len=0)
    _ints(line, ("qty",), _ENTRY, 1, MAX_LINE_QTY)
    _amounts(line, ("amount",), _ENTRY)


def _staff(obj: dict[str, Any], where: str) -> None:
    _texts(obj, ("cashier",), where, MAX_CODE_LEN)
    _optional_texts(obj, ("approved_by",), where, MAX_CODE_LEN)


def validate_sale_body(body: dict[str, Any], where: str = "sale body") -> SaleBody:
    _texts(body, ("sale_id",), where, MAX_ID_LEN)
    _member_id(body, "member_id", where, nullable=True)
    _optional_texts(body, ("card_no",), where, MAX_CODE_LEN)
    if "card_no" not in body:
        _require(body, "card_no", str, where)
    _staff(body, where)
    pi_where = f"{where} pricing_input"
    pi = _object(body, "pricing_input", where)
    _each(pi, "lines", pi_where, MAX_BODY_LINES, _pricing_line, 1)
    member = _object(pi, "member", pi_where, nullable=True)
    if member is not None:
        w = f"{pi_where} member"
        _member_id(member, "member_id", w, nullable=False)
        _optional_texts(member, ("card_type", "tier"), w, MAX_LABEL_LEN, min_len=0)
        if "card_type" not in member:
            _require(member, "card_type", str, w)
    _ints(pi, ("order_discount_rate",), pi_where, 0, 1000)
    _amounts(pi, ("manual_adjustment",), pi_where)
    _optional_texts(pi, ("rounding",), pi_where, MAX_LABEL_LEN, min_len=0)
    _each(body, "lines", where, MAX_BODY_LINES, _priced_line, 1)
    _ints(body, ("subtotal", "member_discount", "order_discount"), where, 0, MAX_WIRE_INT)
    if "line_discount" in body:
        _ints(body, ("line_discount",), where, 0, MAX_WIRE_INT)
    _ints(body, ("rounding",), where, -MAX_AMOUNT, MAX_AMOUNT)
    _amounts(body, ("manual_adjustment", "total", "change", "points_used", "points_earned"), where)
    _each(body, "tenders", where, MAX_BODY_TENDERS, _tender)
    _split_body(body, "stored_value", where)
    _lot_pairs(body, "points_lots_used", where)
    lot = _object(body, "points_lot", where, nullable=True)
    if lot is not None:
        w = f"{where} points_lot"
        _texts(lot, ("lot_id",), w, MAX_ID_LEN)
        _texts(lot, ("earned_on", "expires_on"), w, MAX_TIME_LEN)
    _flags(body, ("offline",), where)
    _optional_texts(body, ("authorization_id",), where, MAX_ID_LEN)
    _optional_texts(body, ("served_by",), where, MAX_CODE_LEN)  # -- staff
    if "coupons" in body or "coupons" in pi:  # coupons (issue 11)
        _sale_coupons(body, pi, where)
    return cast(SaleBody, body)


def validate_return_body(body: dict[str, Any], where: str = "return body") -> ReturnBody:
    _texts(body, ("return_id", "sale_id"), where, MAX_ID_LEN)
    _member_id(body, "member_id", where, nullable=True)
    _staff(body, where)
    _each(body, "lines", where, MAX_BODY_LINES, _returned_line, 1)
    _amounts(body, ("refund_total", "points_restored", "points_reversed", "points_debt"), where)
    _each(body, "tenders", where, MAX_BODY_TENDERS, _tender)
    _split_body(body, "stored_value", where)
    _lot_pairs(body, "points_lots_restored", where)
    if "coupons_restored" in body:  # coupons (issue 11)
        _codes(body, "coupons_restored", where)
    return cast(ReturnBody, body)


def validate_topup_body(body: dict[str, Any], where: str = "topup body") -> TopUpBody:
    _texts(body, ("topup_id",), where, MAX_ID_LEN)
    _member_id(body, "member_id", where, nullable=False)
    _amounts(body, ("principal",), where, lo=1)
    _amounts(body, ("bonus",), where)
    if body.get("tender") != "cash":
        _text(body, "tender", where, MAX_LABEL_LEN)
        raise ProtocolError(f"{where}: tender must be 'cash'", field="tender")
    _texts(body, ("cashier",), where, MAX_CODE_LEN)
    # -- cards: 充值升级, the card type this top-up moved the member to (absent: none)
    _optional_texts(body, ("card_type",), where, MAX_LABEL_LEN)
    return cast(TopUpBody, body)


def validate_registration_body(
    body: dict[str, Any], where: str = "registration body"
) -> RegistrationBody:
    _member_id(body, "member_id", where, nullable=False)
    _texts(body, ("name",), where, MAX_NAME_LEN)
    _texts(body, ("phone",), where, MAX_LABEL_LEN)
    if body.get("gender", "") not in GENDERS_ON_WIRE:
        _text(body, "gender", where, 1, min_len=0)
        raise ProtocolError(f"{where}: gender must be M, F or empty", field="gender")
    _optional_texts(body, ("birthday",), where, MAX_TIME_LEN)
    _texts(body, ("registered_at",), where, MAX_TIME_LEN)
    if body.get("birthday_calendar", "solar") not in CALENDARS_ON_WIRE:
        _text(body, "birthday_calendar", where, MAX_LABEL_LEN)
        raise ProtocolError(
            f"{where}: birthday_calendar must be one of {CALENDARS_ON_WIRE}",
            field="birthday_calendar",
        )
    if "birthday_leap_month" in body:
        _flags(body, ("birthday_leap_month",), where)
    _optional_texts(body, ("card_no", "staff_code", "cashier"), where, MAX_CODE_LEN)
    _optional_texts(body, ("card_type", "tier"), where, MAX_LABEL_LEN)
    if "consent" in body:
        validate_consent(body["consent"], f"{where} consent", require_all=True)
    validate_registration_profile(body, where)  # upkeep: the richer profile and referral
    return cast(RegistrationBody, body)


def validate_consent(
    raw: Any, where: str = "consent", *, require_all: bool = False
) -> dict[str, bool]:
    """``{channel: bool}`` over CONSENT_CHANNELS: unknown channels and non-booleans are
    refused by name; with ``require_all`` every channel must be named, else at least one."""
    if type(raw) is not dict:
        raise ProtocolError(
            f"{where}: must be an object of {CONSENT_CHANNELS} flags", field="consent"
        )
    for key in raw:
        if key not in CONSENT_CHANNELS:
            raise ProtocolError(
                f"{where}: unknown channel {str(key)[:MAX_LABEL_LEN]!r} (one of {CONSENT_CHANNELS})",
                field="consent",
            )
    if require_all:
        _flags(raw, CONSENT_CHANNELS, where)
    elif not raw:
        raise ProtocolError(f"{where}: names no channel", field="consent")
    else:
        _flags(raw, tuple(raw), where)
    return raw


def validate_consent_body(body: dict[str, Any], where: str = "consent body") -> ConsentBody:
    _member_id(body, "member_id", where, nullable=False)
    validate_consent(body.get("consent"), f"{where} consent")
    _texts(body, ("changed_at",), where, MAX_TIME_LEN)
    _optional_texts(body, ("cashier",), where, MAX_CODE_LEN)
    return cast(ConsentBody, body)


# -- staff (maintainers, categories and cost)
MAINTAINER_DECISIONS = ("approve", "reject")


class StaffDecisionBody(TypedDict):
    """A store manager approved or rejected a maintainer transfer at the till."""

    transfer_id: str
    decision: str  # approve | reject
    decided_at: str  # ISO time with offset
    approved_by: str  # the manager whose PIN decided it
    cashier: str  # who was signed in at the till
    reason: NotRequired[str | None]  # why, as the manager typed it (may be empty)


def validate_staff_decision_body(
    body: dict[str, Any], where: str = "staff_decision body"
) -> StaffDecisionBody:
    _texts(body, ("transfer_id",), where, MAX_ID_LEN)
    if body.get("decision") not in MAINTAINER_DECISIONS:
        _text(body, "decision", where, MAX_LABEL_LEN)
        raise ProtocolError(
            f"{where}: decision must be one of {MAINTAINER_DECISIONS}", field="decision"
        )
    _texts(body, ("decided_at",), where, MAX_TIME_LEN)
    _texts(body, ("approved_by", "cashier"), where, MAX_CODE_LEN)
    _optional_texts(body, ("reason",), where, 500, min_len=0)
    return cast(StaffDecisionBody, body)


MAX_BODY_MEMBER_IDS = 1000  # members one transfer asked for at a till names


class StaffRequestBody(TypedDict):
    """A transfer of members from one maintainer to another, asked for at the till."""

    transfer_id: str  # minted by the till (UUID): HQ's id for the transfer
    from_staff: str
    to_staff: str
    member_ids: list[str] | None  # None: every member of from_staff
    reason: str
    requested_by: str  # the staff member signed in at the till
    requested_at: str


def validate_staff_request_body(
    body: dict[str, Any], where: str = "staff_request body"
) -> StaffRequestBody:
    _texts(body, ("transfer_id",), where, MAX_ID_LEN)
    _texts(body, ("from_staff", "to_staff", "requested_by"), where, MAX_CODE_LEN)
    _texts(body, ("reason",), where, 500)
    _texts(body, ("requested_at",), where, MAX_TIME_LEN)
    if body.get("member_ids") is not None:
        for i, mid in enumerate(_list(body, "member_ids", where, MAX_BODY_MEMBER_IDS, 1)):
            if type(mid) is not str or not _UUID_RE.match(mid):
                raise ProtocolError(f"{where}: member_ids[{i}] is not a UUID", field="member_ids")
    return cast(StaffRequestBody, body)


# -- coupons (coupons): the coupons a sale used, the coupons a full return gives back, and
# a coupon a till issued (docs/programme/coupons.md, "On the wire")


def _codes(obj: dict[str, Any], key: str, where: str) -> None:
    for i, code in enumerate(_list(obj, key, where, MAX_COUPONS)):
        if type(code) is not str or not 0 < len(code) <= MAX_CODE_CHARS:
            raise ProtocolError(f"{where} {key}[{i}]: must be a coupon code", field=key)


def _used_coupon(entry: dict[str, Any]) -> None:
    _texts(entry, ("code",), _ENTRY, MAX_CODE_CHARS)
    _texts(entry, ("template_id",), _ENTRY, MAX_LABEL_LEN)
    _amounts(entry, ("discount",), _ENTRY)


def _priced_coupon(entry: dict[str, Any]) -> None:
    _texts(entry, ("code",), _ENTRY, MAX_CODE_CHARS)
    _object(entry, "template", _ENTRY)


def _sale_coupons(body: dict[str, Any], pi: dict[str, Any], where: str) -> None:
    _each(body, "coupons", where, MAX_COUPONS, _used_coupon)
    _each(pi, "coupons", f"{where} pricing_input", MAX_COUPONS, _priced_coupon)
    _amounts(body, ("coupon_discount",), where)


def validate_coupon_issue_body(body: dict[str, Any], where: str = "coupon_issue body") -> Any:
    _texts(body, ("code",), where, MAX_CODE_CHARS)
    _member_id(body, "member_id", where, nullable=False)
    _texts(body, ("template_id",), where, MAX_LABEL_LEN)
    _texts(body, ("issued_at",), where, MAX_TIME_LEN)
    _optional_texts(body, ("valid_from", "expires_on"), where, MAX_TIME_LEN)
    if body.get("source") not in ("till", "gift"):
        raise ProtocolError(f"{where}: source must be till or gift", field="source")
    _optional_texts(body, ("ref",), where, MAX_ID_LEN)
    _optional_texts(body, ("cashier",), where, MAX_CODE_LEN)
    return body


# -- tiers: a store's rules status (docs/programme/rules.md)

MAX_REFUSAL_LEN = 500


class RulesStatusBody(TypedDict):
    version_in_force: int  # the rules version the store prices with
    refused_version: int | None  # a newer version it refused, or null
    reason: str  # why it refused it ("" when none)
    at: str  # ISO time of the store's decision


def validate_rules_status_body(
    body: dict[str, Any], where: str = "rules_status body"
) -> RulesStatusBody:
    int_in(body, "version_in_force", where, 0, 2**31 - 1)
    refused = body.get("refused_version")
    if refused is not None:
        int_in(body, "refused_version", where, 1, 2**31 - 1)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REFUSAL_LEN:
        raise ProtocolError(
            f"{where}: reason must be a text of at most {MAX_REFUSAL_LEN}", field="reason"
        )
    _texts(body, ("at",), where, MAX_TIME_LEN)
    return cast(RulesStatusBody, body)


# -- end of tiers


BODY_VALIDATORS: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "sale": validate_sale_body,
    "return": validate_return_body,
    "topup": validate_topup_body,
    "registration": validate_registration_body,
    "consent": validate_consent_body,
    # ---- programme kinds (issue 11), one block per part:
    # -- tiers (tiers, growth value, member day)
    "rules_status": validate_rules_status_body,
    # -- cards (card types as products, card replacement)
    "card_sale": validate_card_sale_body,
    "card_replace": validate_card_replace_body,
    "card_block": validate_card_block_body,
    # -- points (points rules, gifts, referral)
    "gift_redemption": lambda body, where: validate_gift_redemption_body(body, where),
    # -- coupons (coupons)
    "coupon_issue": validate_coupon_issue_body,
    # -- upkeep (stored value, profile, password)
    "sv_refund": lambda body, where: validate_sv_refund_body(body, where),
    "member_update": lambda body, where: validate_member_update_body(body, where),
    "member_password": lambda body, where: validate_member_password_body(body, where),
    # -- staff (maintainers, categories and cost)
    "staff_decision": validate_staff_decision_body,
    "staff_request": validate_staff_request_body,
    # ---- end of programme kinds
    # -- shifts and day close (issue 13)
    "shift_close": lambda body, where: validate_shift_close_body(body, where),
    "day_close": lambda body, where: validate_day_close_body(body, where),
    # -- follow-ups (issue 14)
    "followup_outcome": lambda body, where: validate_followup_outcome_body(body, where),
}


# ---- upkeep: stored value refund, profile edits, passwords (docs/programme/upkeep.md) ----

# what a member_update item may change (``changes`` names only these); ``birthday`` is
# one field: {"date", "calendar", "leap_month"} or null
MEMBER_UPDATE_FIELDS = (
    "name",
    "gender",
    "birthday",
    "occupation",
    "preferences",
    "anniversaries",
    "notes",
    "tags",
    "extra",
)
PASSWORD_ACTIONS = ("set", "change", "reset")
MAX_EXTRA_KEYS = 20  # core.rules.MAX_PROFILE_FIELDS


def _profile_value(name: str, value: Any, where: str) -> None:
    """One profile field's value as a till sends it, checked as the till checks it
    (core.profile); ``extra`` only in shape here (its declaration is in the rules,
    which HQ checks it against when it applies the item)."""
    from core import profile  # a pure module beside this one (core.rules, core.birthday)

    try:
        if name == "name":
            if type(value) is not str or not 0 < len(value.strip()) <= 32:
                raise ValidationError("name must be 1..32 characters", field="name")
        elif name == "gender":
            if value not in GENDERS_ON_WIRE:
                raise ValidationError("gender must be M, F or empty", field="gender")
        elif name == "birthday":
            if value is not None:
                if type(value) is not dict or set(value) - {"date", "calendar", "leap_month"}:
                    raise ValidationError(
                        "birthday must be null or {date, calendar, leap_month}", field="birthday"
                    )
                from core.birthday import Birthday

                calendar = value.get("calendar", "solar")
                if calendar not in CALENDARS_ON_WIRE or type(value.get("date")) is not str:
                    raise ValidationError("birthday calendar or date is wrong", field="birthday")
                Birthday.parse(value["date"][:10], calendar, value.get("leap_month") is True)
        elif name == "extra":
            if type(value) is not dict or len(value) > MAX_EXTRA_KEYS:
                raise ValidationError(
                    f"extra must be an object of at most {MAX_EXTRA_KEYS} fields", field="extra"
                )
            for key, v in value.items():
                if len(key) > 32 or not (
                    v is None
                    or (type(v) is str and len(v) <= profile.MAX_EXTRA_TEXT)
                    or (type(v) is int and abs(v) <= profile.MAX_EXTRA_NUMBER)
                ):
                    raise ValidationError(
                        f"extra.{key[:32]} is not a text or number", field="extra"
                    )
        elif name in profile.PROFILE_FIELDS:
            check = {
                "occupation": profile.check_occupation,
                "preferences": profile.check_preferences,
                "anniversaries": profile.check_anniversaries,
                "notes": profile.check_notes,
                "tags": profile.check_tags,
            }[name]
            if value is not None:
                check(value)
    except ValidationError as exc:
        raise ProtocolError(f"{where}: {name}: {exc.message}", field=name) from None


def validate_registration_profile(body: dict[str, Any], where: str) -> None:
    """A registration's richer profile (absent in older tills' items), its referrer and
    its completeness score."""
    from core import profile

    for name in profile.PROFILE_FIELDS:
        if body.get(name) is not None:
            _profile_value(name, body[name], where)
    if "referred_by" in body:
        _member_id(body, "referred_by", where, nullable=True)
    if "profile_score" in body:
        _ints(body, ("profile_score",), where, 0, 100)


def validate_sv_refund_body(body: dict[str, Any], where: str = "sv_refund body") -> dict[str, Any]:
    """``principal``: fen of principal refunded in cash (at least 1); ``bonus``: fen of
    bonus forfeited with it, as HQ's authorization said; ``authorization_id``: HQ's."""
    _texts(body, ("refund_id",), where, MAX_ID_LEN)
    _member_id(body, "member_id", where, nullable=False)
    _amounts(body, ("principal",), where, lo=1)
    _amounts(body, ("bonus",), where)
    if body.get("tender") != "cash":
        _text(body, "tender", where, MAX_LABEL_LEN)
        raise ProtocolError(f"{where}: tender must be 'cash'", field="tender")
    _texts(body, ("authorization_id",), where, MAX_ID_LEN)
    _texts(body, ("cashier", "approved_by"), where, MAX_CODE_LEN)
    _optional_texts(body, ("reason",), where, 200, min_len=0)
    return body


def validate_member_update_body(
    body: dict[str, Any], where: str = "member_update body"
) -> dict[str, Any]:
    _member_id(body, "member_id", where, nullable=False)
    _texts(body, ("changed_at",), where, MAX_TIME_LEN)
    _optional_texts(body, ("cashier",), where, MAX_CODE_LEN)
    changes = _object(body, "changes", where)
    unknown = [str(k)[:MAX_LABEL_LEN] for k in changes if k not in MEMBER_UPDATE_FIELDS]
    if unknown or not changes:
        raise ProtocolError(
            f"{where}: changes must name some of {MEMBER_UPDATE_FIELDS}, got {sorted(unknown)}",
            field="changes",
        )
    for name, value in changes.items():
        _profile_value(name, value, f"{where} changes")
    return body


def validate_member_password_body(
    body: dict[str, Any], where: str = "member_password body"
) -> dict[str, Any]:
    _member_id(body, "member_id", where, nullable=False)
    if validate_password_hash(body.get("password_hash"), where) is None:
        raise ProtocolError(f"{where}: password_hash is required", field="password_hash")
    if body.get("action") not in PASSWORD_ACTIONS:
        _text(body, "action", where, MAX_LABEL_LEN)
        raise ProtocolError(f"{where}: action must be one of {PASSWORD_ACTIONS}", field="action")
    _texts(body, ("changed_at",), where, MAX_TIME_LEN)
    _staff(body, where)


# -- points (points rules, gifts, referral): docs/programme/points.md "On the wire"

GIFT_KINDS = ("goods", "coupon")
MAX_GIFT_QTY = 99


def validate_gift_redemption_body(
    body: dict[str, Any], where: str = "gift_redemption body"
) -> dict[str, Any]:
    """``gift_redemption``: {redemption_id, member_id, gift_id, kind, qty, points_each,
    points_used, points_lots_used, sku?, coupon_template?, coupon_codes?, cashier,
    offline, authorization_id?}. HQ checks the points against its own catalogue."""
    _texts(body, ("redemption_id", "gift_id"), where, MAX_ID_LEN)
    _member_id(body, "member_id", where, nullable=False)
    if body.get("kind") not in GIFT_KINDS:
        raise ProtocolError(f"{where}: kind must be one of {GIFT_KINDS}", field="kind")
    qty = body.get("qty")
    if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_GIFT_QTY:
        raise ProtocolError(f"{where}: qty must be 1..{MAX_GIFT_QTY}", field="qty")
    _amounts(body, ("points_each", "points_used"), where, lo=1)
    if body["points_used"] != body["points_each"] * qty:
        raise ProtocolError(f"{where}: points_used is not points_each × qty", field="points_used")
    _lot_pairs(body, "points_lots_used", where)
    _optional_texts(body, ("sku", "coupon_template", "authorization_id"), where, MAX_CODE_LEN)
    codes = body.get("coupon_codes", [])
    if (
        not isinstance(codes, list)
        or len(codes) > MAX_GIFT_QTY
        or not all(isinstance(c, str) and 0 < len(c) <= MAX_CODE_CHARS for c in codes)
    ):
        raise ProtocolError(f"{where}: coupon_codes must be a list of codes", field="coupon_codes")
    _texts(body, ("cashier",), where, MAX_CODE_LEN)
    _flags(body, ("offline",), where)
    return body


# ---- certificate renewal (hy/v1/{store}/up/certreq, hy/v1/{store}/down/cert) ----------

MAX_PEM_CHARS = 8192  # a P-256 CSR or certificate is under 1,000 characters


@dataclass(frozen=True, slots=True)
class CertRequest:
    """A store asks for a new certificate for a new key, with the one it holds."""

    store: str
    csr: str  # PEM, subject CN = store
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.v, "store": self.store, "csr": self.csr}


@dataclass(frozen=True, slots=True)
class CertReply:
    store: str
    certificate: str  # PEM, signed by the chain CA
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.v, "store": self.store, "certificate": self.certificate}


def _pem(raw: dict[str, Any], key: str, where: str, kind: str) -> str:
    text = _require(raw, key, str, where)
    if len(text) > MAX_PEM_CHARS or f"-----BEGIN {kind}-----" not in text:
        raise ProtocolError(
            f"{where}: {key} must be one PEM {kind.lower()} of at most {MAX_PEM_CHARS} characters",
            field=key,
        )
    return text


def validate_cert_request(raw: Any, where: str = "certreq") -> CertRequest:
    _version(raw, where)
    return CertRequest(_store(raw, where), _pem(raw, "csr", where, "CERTIFICATE REQUEST"))


def validate_cert_reply(raw: Any, where: str = "cert") -> CertReply:
    _version(raw, where)
    return CertReply(_store(raw, where), _pem(raw, "certificate", where, "CERTIFICATE"))


# -- shifts and day close (issue 13): a shift's close (交班) and the store's day close (日结)
# as a till reports them (edge/services/shifts.py; docs/protocol.md). Every figure is an
# integer in range and every sum is checked here; HQ then compares the day with the sales
# it holds (hq/shifts.py) and records a difference as an exception rather than refusing.

# notes and coins a drawer is counted in, as fen (100元 .. 1角)
DENOMINATIONS = ("10000", "5000", "2000", "1000", "500", "100", "50", "10")
MAX_REPORT_FEN = 10**14  # a day's or a shift's total: far past any store's, inside int64
MAX_REPORT_COUNT = 10**8
MAX_REPORT_STAFF = 500
MAX_REPORT_SHIFTS = 500


def figures_skeleton() -> dict[str, Any]:
    """The figures of a shift or a day, all zero: what the till fills and HQ checks."""
    tenders = dict.fromkeys(TENDER_KINDS_ON_WIRE, 0)
    return {
        "sales": {
            "count": 0,
            "total": 0,
            "tenders": dict(tenders),
            "change": 0,
            "cash_received": 0,
            "member_count": 0,
            "member_total": 0,
            "walkin_count": 0,
            "walkin_total": 0,
            "points_used": 0,
        },
        "returns": {"count": 0, "total": 0, "tenders": dict(tenders)},
        "topups": {"count": 0, "principal": 0, "bonus": 0},
        "card_sales": {"count": 0, "total": 0},
        "sv_refunds": {"count": 0, "total": 0},
        "cash_in": 0,
        "cash_out": 0,
        "cash_net": 0,
    }


def _sums_to(where: str, name: str, got: int, want: int) -> None:
    if got != want:
        raise ProtocolError(f"{where}: {name} is {got}, but its parts add up to {want}", field=name)


def _report_fen(obj: dict[str, Any], keys: tuple[str, ...], where: str, lo: int = 0) -> None:
    _ints(obj, keys, where, lo, MAX_REPORT_FEN)


def _counts(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    _ints(obj, keys, where, 0, MAX_REPORT_COUNT)


def _tender_figures(obj: dict[str, Any], where: str) -> int:
    tenders = _object(obj, "tenders", where)
    unknown = set(tenders) - set(TENDER_KINDS_ON_WIRE)
    if unknown:
        raise ProtocolError(f"{where}: unknown tender kind {sorted(unknown)[0]!r}", field="tenders")
    _report_fen(tenders, TENDER_KINDS_ON_WIRE, f"{where} tenders")
    return sum(tenders.values())


def validate_figures(f: dict[str, Any], where: str) -> None:
    """A shift's or a day's figures: each an integer in range, and every sum consistent."""
    sales = _object(f, "sales", where)
    w = f"{where} sales"
    _counts(sales, ("count", "member_count", "walkin_count"), w)
    _report_fen(
        sales,
        ("total", "change", "cash_received", "member_total", "walkin_total", "points_used"),
        w,
    )
    _sums_to(w, "total", sales["total"], _tender_figures(sales, w))
    _sums_to(w, "count", sales["count"], sales["member_count"] + sales["walkin_count"])
    _sums_to(w, "total", sales["total"], sales["member_total"] + sales["walkin_total"])
    cash = sales["tenders"]["cash"]
    _sums_to(w, "cash_received", sales["cash_received"], cash + sales["change"])
    returns = _object(f, "returns", where)
    w = f"{where} returns"
    _counts(returns, ("count",), w)
    _report_fen(returns, ("total",), w)
    _sums_to(w, "total", returns["total"], _tender_figures(returns, w))
    topups = _object(f, "topups", where)
    _counts(topups, ("count",), f"{where} topups")
    _report_fen(topups, ("principal", "bonus"), f"{where} topups")
    for key in ("card_sales", "sv_refunds"):
        part = _object(f, key, where)
        _counts(part, ("count",), f"{where} {key}")
        _report_fen(part, ("total",), f"{where} {key}")
    _report_fen(f, ("cash_in", "cash_out"), where)
    _report_fen(f, ("cash_net",), where, lo=-MAX_REPORT_FEN)
    cash_in = cash + topups["principal"] + f["card_sales"]["total"]
    _sums_to(where, "cash_in", f["cash_in"], cash_in)
    cash_out = returns["tenders"]["cash"] + f["sv_refunds"]["total"]
    _sums_to(where, "cash_out", f["cash_out"], cash_out)
    _sums_to(where, "cash_net", f["cash_net"], f["cash_in"] - f["cash_out"])


def _report_day(body: dict[str, Any], where: str) -> None:
    day = _text(body, "day", where, 10, min_len=10) or ""
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        raise ProtocolError(f"{where}: day must be an ISO date, got {day!r}", field="day") from None


def _counted_shift(obj: dict[str, Any], where: str) -> None:
    """float, expected, counted and difference: difference = counted - expected."""
    _report_fen(obj, ("float", "counted"), where)
    _report_fen(obj, ("expected", "difference"), where, lo=-MAX_REPORT_FEN)
    _sums_to(where, "difference", obj["difference"], obj["counted"] - obj["expected"])


def validate_shift_close_body(body: dict[str, Any], where: str = "shift_close body") -> Any:
    _texts(body, ("shift_id",), where, MAX_ID_LEN)
    _store(body, where)
    _texts(body, ("staff_code",), where, MAX_CODE_LEN)
    _texts(body, ("staff_name",), where, MAX_NAME_LEN, min_len=0)
    _texts(body, ("opened_at", "closed_at"), where, MAX_TIME_LEN)
    _report_day(body, where)
    _counted_shift(body, where)
    figures = _object(body, "figures", where)
    validate_figures(figures, f"{where} figures")
    _sums_to(where, "expected", body["expected"], body["float"] + figures["cash_net"])
    return body


def _staff_figures(entry: dict[str, Any]) -> None:
    _texts(entry, ("code",), _ENTRY, MAX_CODE_LEN)
    _texts(entry, ("name",), _ENTRY, MAX_NAME_LEN, min_len=0)
    _counts(entry, ("sales_count",), _ENTRY)
    _report_fen(entry, ("sales_total", "returns_total"), _ENTRY)
    _report_fen(entry, ("cash_net",), _ENTRY, lo=-MAX_REPORT_FEN)


def _shift_figures(entry: dict[str, Any]) -> None:
    _texts(entry, ("shift_id",), _ENTRY, MAX_ID_LEN)
    _texts(entry, ("staff_code",), _ENTRY, MAX_CODE_LEN)
    _counted_shift(entry, _ENTRY)


def validate_day_close_body(body: dict[str, Any], where: str = "day_close body") -> Any:
    _texts(body, ("close_id",), where, MAX_ID_LEN)
    _store(body, where)
    _report_day(body, where)
    _ints(body, ("revision",), where, 1, 10_000)
    _texts(body, ("closed_by",), where, MAX_CODE_LEN)
    _texts(body, ("closed_at",), where, MAX_TIME_LEN)
    f = _object(body, "figures", where)
    w = f"{where} figures"
    validate_figures(f, w)
    _each(f, "staff", w, MAX_REPORT_STAFF, _staff_figures)
    staff = f["staff"]
    for name, key, whole in (
        ("sales count", "sales_count", f["sales"]["count"]),
        ("sales total", "sales_total", f["sales"]["total"]),
        ("returns total", "returns_total", f["returns"]["total"]),
        ("cash_net", "cash_net", f["cash_net"]),
    ):
        _sums_to(f"{w} staff", name, whole, sum(s[key] for s in staff))
    _each(f, "shifts", w, MAX_REPORT_SHIFTS, _shift_figures)
    _report_fen(f, ("shifts_difference",), w, lo=-MAX_REPORT_FEN)
    _sums_to(
        w, "shifts_difference", f["shifts_difference"], sum(s["difference"] for s in f["shifts"])
    )
    return body


# ---- follow-ups (issue 14): a call's outcome from the till (docs/followups.md) ----------

MAX_FOLLOWUP_TEXT = 500  # what the member said, a complaint, a request (core.followups)


class FollowUpOutcomeBody(TypedDict):
    outcome_id: str  # a UUID the till's screen minted: the idempotency key
    followup_id: str  # HQ's task id (change entity ``followup``)
    member_id: str
    staff_code: str  # who called (the staff signed in at the till)
    reached: bool
    satisfaction: int | None  # 1..5, null when not asked or not reached
    said: str
    complaint: str  # "" for none; else it tags the member and reaches the store manager
    request: str  # "" for none
    recorded_at: str  # ISO time with offset


def validate_followup_outcome_body(
    body: dict[str, Any], where: str = "followup_outcome body"
) -> FollowUpOutcomeBody:
    for key in ("outcome_id", "followup_id"):
        value = body.get(key)
        if type(value) is not str or not _UUID_RE.match(value):
            raise ProtocolError(f"{where}: {key} is not a UUID", field=key)
    _member_id(body, "member_id", where, nullable=False)
    _texts(body, ("staff_code",), where, MAX_CODE_LEN)
    if type(body.get("reached")) is not bool:
        raise ProtocolError(f"{where}: reached must be true or false", field="reached")
    if body.get("satisfaction") is not None:
        int_in(body, "satisfaction", where, 1, 5)
    _texts(body, ("said", "complaint", "request"), where, MAX_FOLLOWUP_TEXT, min_len=0)
    _texts(body, ("recorded_at",), where, MAX_TIME_LEN)
    return cast(FollowUpOutcomeBody, body)
