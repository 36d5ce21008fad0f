"""Balance digests: how a store and HQ show each other that every member's figures agree.

Pure code, computed the same way on both sides. Members fall into ``buckets`` by a
hash of their id; each bucket's digest is the count of its members and a hash of
their sorted ``(member_id, sv_principal, sv_bonus, points, points_debt)`` lines. Two
sides with equal figures give equal digests; a bucket that differs names the few
members to compare one by one (the drill-down), without shipping every row.

Messages (``docs/protocol.md``, "Balance digests"):

    hy/v1/{store}/up/digest       StoreDigest   every digest_interval s, and when asked
    hy/v1/{store}/down/digestreq  DigestRequest HQ asks for a digest, or for buckets' rows
    hy/v1/{store}/up/digestrows   DigestRows    the member rows of the buckets asked for
    hy/v1/{store}/down/ledgerfix  LedgerFix     square these members' ledger with their
                                                cached balances (after HQ's repair)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from core.errors import ProtocolError
from core.ids import is_uuid
from core.money import MAX_AMOUNT
from core.protocol import (
    SCHEMA_VERSION,
    _require,
    _store,
    _version,
    int_in,
)

DEFAULT_BUCKETS = 256
MAX_BUCKETS = 1024  # 1024 buckets x 2 digests stay well under MAX_PAYLOAD_BYTES
HASH_HEX = 32  # a bucket's hash: the first 128 bits of SHA-256, lowercase hex
MAX_ROWS = 1000  # member rows in one digestrows message (under 200 kB)
MAX_MEMBERS = 10**9  # members in one bucket
MAX_SEQ = 2**63 - 1
MEMBER_ID_RE = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")
HEX_RE = re.compile(rf"^[0-9a-f]{{{HASH_HEX}}}$")

TOPIC_DIGEST = "digest"  # up
TOPIC_ROWS = "digestrows"  # up
TOPIC_REQUEST = "digestreq"  # down
TOPIC_LEDGER_FIX = "ledgerfix"  # down


class Figures(NamedTuple):
    """One member's balances as compared: money in fen, points in points.

    ``points`` is the cached lots' sum minus ``points_debt`` (no expiry applied: HQ
    does not expire points yet, so an expired-but-cached lot is still a figure both
    sides hold)."""

    sv_principal: int
    sv_bonus: int
    points: int
    points_debt: int

    @classmethod
    def from_total(cls, sv_principal: int, sv_bonus: int, points: int) -> Figures:
        """Figures from a points total (HQ's balance, a ledger's sum): the debt is
        what the total is below zero."""
        return cls(int(sv_principal), int(sv_bonus), int(points), max(0, -int(points)))

    def to_dict(self) -> dict[str, int]:
        return self._asdict()


def bucket_of(member_id: str, buckets: int) -> int:
    """The member's bucket: the first 4 bytes of SHA-256(member id, UTF-8), big-endian, mod
    ``buckets``."""
    head = hashlib.sha256(member_id.encode()).digest()[:4]
    return int.from_bytes(head, "big") % buckets


def row_line(member_id: str, f: Figures) -> bytes:
    """What a bucket hash covers for one member: ``id|principal|bonus|points|debt\\n``."""
    return _line(member_id, *f)


def _line(member_id: str, sv_principal: int, sv_bonus: int, points: int, debt: int) -> bytes:
    return f"{member_id}|{sv_principal}|{sv_bonus}|{points}|{debt}\n".encode()


EMPTY_HASH = hashlib.sha256(b"").hexdigest()[:HASH_HEX]


class DigestBuilder:
    """Bucket digests built one member at a time, in ascending member id order (code point
    order: SQLite's BINARY, PostgreSQL's ``COLLATE "C"``). Rows out of order are a bug in
    the caller's query, refused rather than hashed differently. Holds 2 x ``buckets``
    small objects whatever the number of members."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets
        self.hashes = [hashlib.sha256() for _ in range(buckets)]
        self.counts = [0] * buckets
        self.last: str | None = None

    def add(
        self,
        member_id: str,
        sv_principal: int,
        sv_bonus: int,
        points: int,
        points_debt: int,
        bucket: int | None = None,
    ) -> None:
        """One member's line (``row_line``); ``bucket`` if the caller has it already."""
        if self.last is not None and member_id <= self.last:
            raise ValueError(f"rows not in ascending member id order at {member_id!r}")
        self.last = member_id
        b = bucket_of(member_id, self.buckets) if bucket is None else bucket
        self.hashes[b].update(_line(member_id, sv_principal, sv_bonus, points, points_debt))
        self.counts[b] += 1

    def result(self) -> list[tuple[int, str]]:
        return [
            (self.counts[b], self.hashes[b].hexdigest()[:HASH_HEX]) for b in range(self.buckets)
        ]


def bucket_digests(rows: Iterable[tuple[str, Figures]], buckets: int) -> list[tuple[int, str]]:
    """``[(count, hash)]`` per bucket from (member id, figures) in ascending id order."""
    builder = DigestBuilder(buckets)
    for member_id, figures in rows:
        builder.add(member_id, *figures)
    return builder.result()


# ---- messages -----------------------------------------------------------------------


def _bucket_count(raw: dict[str, Any], where: str) -> int:
    return int_in(raw, "buckets", where, 1, MAX_BUCKETS)


def _bucket_list(raw: dict[str, Any], key: str, buckets: int, where: str) -> tuple[int, ...]:
    value = _require(raw, key, list, where)
    if len(value) > buckets:
        raise ProtocolError(f"{where}: {key} lists more than {buckets} buckets", field=key)
    out = []
    for b in value:
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < buckets:
            raise ProtocolError(
                f"{where}: {key} holds a bucket outside 0..{buckets - 1}", field=key
            )
        out.append(b)
    return tuple(sorted(set(out)))


def _digest_list(
    raw: dict[str, Any], key: str, buckets: int, where: str
) -> tuple[tuple[int, str], ...]:
    value = _require(raw, key, list, where)
    if len(value) != buckets:
        raise ProtocolError(f"{where}: {key} must list {buckets} buckets", field=key)
    out = []
    for entry in value:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or isinstance(entry[0], bool)
            or not isinstance(entry[0], int)
            or not 0 <= entry[0] <= MAX_MEMBERS
            or not isinstance(entry[1], str)
            or not HEX_RE.match(entry[1])
        ):
            raise ProtocolError(
                f"{where}: each {key} entry must be [count 0..{MAX_MEMBERS}, "
                f"{HASH_HEX} lowercase hex digits]",
                field=key,
            )
        out.append((entry[0], entry[1]))
    return tuple(out)


def _plain(message: Any) -> dict[str, Any]:
    """A message dataclass as its wire object: tuples (of tuples) become lists."""
    return {f.name: _listed(getattr(message, f.name)) for f in fields(message)}


def _listed(value: Any) -> Any:
    return [_listed(v) for v in value] if isinstance(value, tuple) else value


def _request_id(raw: dict[str, Any], where: str) -> str | None:
    value = raw.get("request_id")
    if value is None:
        return None
    if not isinstance(value, str) or not is_uuid(value):
        raise ProtocolError(f"{where}: request_id must be null or a UUID", field="request_id")
    return value


def _addressed(raw: Any, where: str) -> tuple[str, str]:
    """The store and request id that every down message of HQ's carries."""
    _version(raw, where)
    store = _store(raw, where)
    request_id = _request_id(raw, where)
    if request_id is None:
        raise ProtocolError(f"{where}: missing field 'request_id'", field="request_id")
    return store, request_id


def _member_id(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not MEMBER_ID_RE.match(value):
        raise ProtocolError(f"{where}: {key} holds a malformed member id", field=key)
    return value


def _member_ids(raw: dict[str, Any], key: str, limit: int, where: str) -> tuple[str, ...]:
    value = _require(raw, key, list, where)
    if len(value) > limit:
        raise ProtocolError(f"{where}: {key} lists more than {limit} members", field=key)
    return tuple(_member_id(m, key, where) for m in value)


@dataclass(frozen=True, slots=True)
class StoreDigest:
    """A store's digest of every member it holds, twice: the cached balances the till
    uses (``shown``) and the sums of its own ledger (``ledger``).

    ``down_cursor`` is the change seq the figures reflect; ``pending`` the buckets of
    members with items in the outbox HQ has not acknowledged (their figures include
    what HQ has not seen yet, so they are not compared)."""

    store: str
    at: str
    buckets: int
    down_cursor: int
    acked_through: int
    last_seq: int
    pending: tuple[int, ...]
    shown: tuple[tuple[int, str], ...]
    ledger: tuple[tuple[int, str], ...]
    request_id: str | None = None
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


def validate_store_digest(raw: Any, where: str = "digest") -> StoreDigest:
    _version(raw, where)
    store = _store(raw, where)
    at = _require(raw, "at", str, where)
    if len(at) > 40:
        raise ProtocolError(f"{where}: at must be an ISO time", field="at")
    buckets = _bucket_count(raw, where)
    return StoreDigest(
        store=store,
        at=at,
        buckets=buckets,
        down_cursor=int_in(raw, "down_cursor", where, 0, MAX_SEQ),
        acked_through=int_in(raw, "acked_through", where, 0, MAX_SEQ),
        last_seq=int_in(raw, "last_seq", where, 0, MAX_SEQ),
        pending=_bucket_list(raw, "pending", buckets, where),
        shown=_digest_list(raw, "shown", buckets, where),
        ledger=_digest_list(raw, "ledger", buckets, where),
        request_id=_request_id(raw, where),
    )


@dataclass(frozen=True, slots=True)
class DigestRequest:
    """HQ to a store: ``buckets`` empty asks for a fresh digest now; otherwise for the
    member rows of those buckets (answered on up/digestrows)."""

    store: str
    request_id: str
    buckets: int
    wanted: tuple[int, ...] = ()
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


def validate_digest_request(raw: Any, where: str = "digestreq") -> DigestRequest:
    store, request_id = _addressed(raw, where)
    buckets = _bucket_count(raw, where)
    return DigestRequest(store, request_id, buckets, _bucket_list(raw, "wanted", buckets, where))


class MemberRow(NamedTuple):
    member_id: str
    shown: Figures
    ledger: Figures

    def to_list(self) -> list[Any]:
        return [self.member_id, *self.shown, *self.ledger]


@dataclass(frozen=True, slots=True)
class DigestRows:
    """A store's member rows for buckets HQ asked about. ``complete`` lists the buckets
    all of whose members are in this message (a member HQ holds in one of them but
    the store does not is missing at the store). Members with items HQ has not
    acknowledged are left out (their figures include what HQ has not seen), and
    their buckets, like a bucket too large for one message, are in no message's
    ``complete``."""

    store: str
    request_id: str | None
    buckets: int
    down_cursor: int
    complete: tuple[int, ...]
    rows: tuple[MemberRow, ...]
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "store": self.store,
            "request_id": self.request_id,
            "buckets": self.buckets,
            "down_cursor": self.down_cursor,
            "complete": list(self.complete),
            "rows": [r.to_list() for r in self.rows],
        }


def _figure(value: Any, where: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not -MAX_AMOUNT <= value <= MAX_AMOUNT
    ):
        raise ProtocolError(
            f"{where}: each figure in rows must be an integer within ±{MAX_AMOUNT}", field="rows"
        )
    return value


def validate_digest_rows(raw: Any, where: str = "digestrows") -> DigestRows:
    _version(raw, where)
    store = _store(raw, where)
    buckets = _bucket_count(raw, where)
    rows_raw = _require(raw, "rows", list, where)
    if len(rows_raw) > MAX_ROWS:
        raise ProtocolError(f"{where}: more than {MAX_ROWS} rows", field="rows")
    rows = []
    for r in rows_raw:
        if not isinstance(r, list) or len(r) != 9:
            raise ProtocolError(
                f"{where}: each row must be [member_id, 4 shown figures, 4 ledger figures]",
                field="rows",
            )
        figures = [_figure(x, where) for x in r[1:]]
        rows.append(
            MemberRow(_member_id(r[0], "rows", where), Figures(*figures[:4]), Figures(*figures[4:]))
        )
    return DigestRows(
        store=store,
        request_id=_request_id(raw, where),
        buckets=buckets,
        down_cursor=int_in(raw, "down_cursor", where, 0, MAX_SEQ),
        complete=_bucket_list(raw, "complete", buckets, where),
        rows=tuple(rows),
    )


@dataclass(frozen=True, slots=True)
class LedgerFix:
    """HQ to a store: write a ledger entry (reason ``reconcile``) for each named member
    so that its ledger sums equal its cached balances. HQ sends it with the member's
    state re-sent as a change; since applying a change ledgers every move of the cached
    balance, the two may arrive in either order."""

    store: str
    request_id: str
    members: tuple[str, ...]
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


def validate_ledger_fix(raw: Any, where: str = "ledgerfix") -> LedgerFix:
    store, request_id = _addressed(raw, where)
    return LedgerFix(store, request_id, _member_ids(raw, "members", MAX_ROWS, where))


def chunk_rows(
    rows_by_bucket: dict[int, list[MemberRow]], partial: frozenset[int] = frozenset()
) -> Iterator[tuple[tuple[int, ...], list[MemberRow]]]:
    """Split buckets' rows into messages of at most MAX_ROWS rows: ``(complete buckets,
    rows)``. Whole buckets go together while they fit; a bucket larger than MAX_ROWS
    goes in parts, and it and the ``partial`` buckets are listed as complete in none."""
    complete: list[int] = []
    rows: list[MemberRow] = []
    for b in sorted(rows_by_bucket):
        mine = rows_by_bucket[b]
        if len(mine) > MAX_ROWS or b in partial:
            for i in range(0, len(mine), MAX_ROWS):
                yield (), mine[i : i + MAX_ROWS]
            continue
        if len(rows) + len(mine) > MAX_ROWS:
            yield tuple(complete), rows
            complete, rows = [], []
        complete.append(b)
        rows.extend(mine)
    if complete or rows:
        yield tuple(complete), rows
