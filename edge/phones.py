"""How the store finds a member by phone without holding the chain's phones (invariant 8).

- HQ sends each member's phone as ``phone_hash`` (HMAC-SHA256 under the chain lookup key,
  core.phone), ``phone_key_id`` and ``phone_last4``; the store keeps the hash in
  ``member.phone_hash`` and the last four digits in ``member.phone_tail``.
- The chain lookup key reaches the store in the header of a snapshot it asked for, on its
  own topic; it is kept in the ``setting`` table encrypted under the store's member key.
- A phone number in clear (``member.phone_enc``, encrypted) is kept only for a member this
  store registered, until HQ has acknowledged the registration (and ``keep_hours`` more,
  so that a registration resent to an HQ restored from a backup still has its phone).
- A member registered before the store holds the chain key is hashed with the store's own
  key, marked ``L`` (``L`` + hex); it is hashed again when the key arrives.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
from typing import Any

from peewee import SqliteDatabase

from core.errors import ProtocolError
from core.phone import lookup_key_id, normalise_phone, phone_lookup_hash
from edge.key_rotation import writing_keys
from edge.models import Member, Setting
from edge.security import MemberKeys

log = logging.getLogger("edge.phones")

LOOKUP_KEY_SETTING = "phones.lookup_key"
LOCAL_PREFIX = "L"

# members whose phone this store may hold in clear: registered here, and HQ has not
# acknowledged the registration, or did so after the cutoff (?)
_PRUNE_SQL = (
    "UPDATE member SET phone_enc = NULL WHERE phone_enc IS NOT NULL AND NOT EXISTS ("
    "SELECT 1 FROM outbox o WHERE json_extract(o.payload, '$.body.member_id') = member.id "
    "AND o.kind = 'registration' AND (NOT o.acked OR o.acked_at > ?))"
)


@functools.lru_cache(maxsize=4)
def _unwrap(keys: MemberKeys, blob: bytes) -> bytes:
    return base64.b64decode(keys.decrypt(blob, LOOKUP_KEY_SETTING))


def held_lookup_key(keys: MemberKeys) -> tuple[str, bytes] | None:
    """The chain lookup key this store holds, (id, key bytes), or None."""
    row = Setting.get_or_none(Setting.key == LOOKUP_KEY_SETTING)
    if row is None:
        return None
    return row.value["id"], _unwrap(keys, base64.b64decode(row.value["enc"]))


def held_key_id() -> str | None:
    row = Setting.get_or_none(Setting.key == LOOKUP_KEY_SETTING)
    return row.value["id"] if row is not None else None


def phone_hash(keys: MemberKeys, phone: str) -> str:
    """The ``member.phone_hash`` a normalised phone has at this store now: the chain's hash
    once the store holds the chain key, else the store's own (``L`` + hex)."""
    held = held_lookup_key(keys)
    if held is None:
        return LOCAL_PREFIX + keys.lookup_hash(phone)
    return phone_lookup_hash(held[1], phone)


def lookup_phone_hash(keys: MemberKeys, text: str) -> str:
    """``phone_hash`` of a phone as typed (normalised first; ValidationError if not a phone)."""
    return phone_hash(keys, normalise_phone(text))


def find_by_phone(keys: MemberKeys, text: str) -> Member | None:
    """The member whose ``phone_hash`` is a typed phone's, or None. Looked up again if the
    chain key arrived between hashing and reading (the sync agent hashes every held phone
    again in that transaction)."""
    phone = normalise_phone(text)
    held = held_key_id()
    member = Member.get_or_none(Member.phone_hash == phone_hash(keys, phone))
    if member is None and held_key_id() != held:
        member = Member.get_or_none(Member.phone_hash == phone_hash(keys, phone))
    return member


def install_lookup_key(
    db: SqliteDatabase, keys: MemberKeys, header: dict[str, str], keep_since: str
) -> bool:
    """Keep the chain lookup key from a snapshot header; call inside the snapshot's
    transaction, before its records. Every phone still held in clear (this store's own
    registrations, and every member of a database from before schema 3) is hashed with it;
    then phones are dropped as ``prune_phones`` says. True if the key was new here."""
    key = base64.b64decode(header["key"])
    key_id = lookup_key_id(key)
    if key_id != header["id"]:
        raise ProtocolError("snapshot lookup_key: id does not match the key", field="lookup_key")
    if held_key_id() == key_id:
        return False
    blob = writing_keys(keys).encrypt(header["key"], LOOKUP_KEY_SETTING)
    Setting.insert(
        key=LOOKUP_KEY_SETTING,
        value={"id": key_id, "enc": base64.b64encode(blob).decode("ascii")},
    ).on_conflict_replace().execute()
    rehashed = 0
    rows = db.execute_sql(
        "SELECT id, phone_enc FROM member WHERE phone_enc IS NOT NULL AND status = 'active'"
    ).fetchall()
    for member_id, enc in rows:
        chain_hash = phone_lookup_hash(key, keys.decrypt(enc, member_id))
        # HQ keeps one live member per phone, and will merge a duplicate: until then the
        # member this store holds the phone of answers to it
        db.execute_sql(
            "UPDATE member SET phone_hash = NULL WHERE phone_hash = ? AND id != ?",
            (chain_hash, member_id),
        )
        db.execute_sql("UPDATE member SET phone_hash = ? WHERE id = ?", (chain_hash, member_id))
        rehashed += 1
    # a local hash no phone is held for any more cannot be recomputed: HQ's records bring
    # the chain's hash of those members
    db.execute_sql(
        "UPDATE member SET phone_hash = NULL WHERE phone_hash LIKE ? AND phone_enc IS NULL",
        (LOCAL_PREFIX + "%",),
    )
    dropped = prune_phones(db, keep_since)
    log.info(
        "chain lookup key %s installed: %d phones rehashed, %d dropped", key_id, rehashed, dropped
    )
    return True


def prune_phones(db: SqliteDatabase, keep_since: str) -> int:
    """Drop every phone held in clear except this store's registrations HQ has not
    acknowledged, or acknowledged after ``keep_since`` (ISO time). Only once the store
    holds the chain key: before it, the phone is how a member is hashed again."""
    if held_key_id() is None:
        return 0
    return db.execute_sql(_PRUNE_SQL, (keep_since,)).rowcount


def keep_since(now: dt.datetime, keep_hours: float) -> str:
    return (now - dt.timedelta(hours=keep_hours)).isoformat(timespec="seconds")


def member_phone_fields(d: dict[str, Any]) -> tuple[str | None, str]:
    """(phone_hash, phone_tail) of a member record from HQ: the hash only while the
    member is active (a merged or blocked member answers to no phone)."""
    status = d.get("status") or "active"
    phone_hash_ = d.get("phone_hash") or None
    return (phone_hash_ if status == "active" else None), str(d.get("phone_last4") or "")[-4:]


def records_need_key(records: Any) -> bool:
    """Whether change records carry a member hashed with a key this store does not hold
    (a store holding no key, or an old one, asks for a snapshot, which brings the key)."""
    held = None
    looked = False
    for change in records:
        if change.entity != "member" or not change.data.get("phone_key_id"):
            continue
        if not looked:
            held, looked = held_key_id(), True
        if change.data["phone_key_id"] != held:
            return True
    return False
