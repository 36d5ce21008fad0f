"""The store's side of reconciliation: its balance digest, the rows HQ drills into, and
squaring its ledger with its cached balances when HQ says so.

Figures are read in one SQLite read transaction, so the down cursor, the outbox's
unacknowledged members and the balances all describe the same moment. See
core/digest.py for the digest itself and docs/protocol.md for the messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from peewee import SqliteDatabase

from core.digest import (
    DEFAULT_BUCKETS,
    DigestRequest,
    DigestRows,
    Figures,
    LedgerFix,
    MemberRow,
    StoreDigest,
    bucket_digests,
    bucket_of,
    chunk_rows,
)
from edge.models import Ledger
from edge.sync.apply import OUTBOX_MEMBER, down_cursor, get_setting

log = logging.getLogger("edge.sync.digest")

ACKED_THROUGH = "sync.acked_through"  # as edge/sync/agent.py keeps it

# Every member with its cached balances (points: all cached lots minus the debt) and its
# ledger sums, in member id order (SQLite's BINARY order is code point order).
FIGURES_SQL = """
SELECT m.id, m.sv_principal, m.sv_bonus,
       COALESCE(l.lots, 0) - m.points_debt, m.points_debt,
       COALESCE(g.principal, 0), COALESCE(g.bonus, 0), COALESCE(g.points, 0)
FROM member m
LEFT JOIN (SELECT member_id, SUM(remaining) AS lots FROM points_lot GROUP BY member_id) l
       ON l.member_id = m.id
LEFT JOIN (SELECT member_id,
                  SUM(CASE WHEN account = 'sv_principal' THEN delta ELSE 0 END) AS principal,
                  SUM(CASE WHEN account = 'sv_bonus' THEN delta ELSE 0 END) AS bonus,
                  SUM(CASE WHEN account = 'points' THEN delta ELSE 0 END) AS points
           FROM ledger GROUP BY member_id) g
       ON g.member_id = m.id
{where}
ORDER BY m.id
"""


def member_rows(db: SqliteDatabase, member_ids: list[str] | None = None) -> Iterator[MemberRow]:
    """(member id, shown figures, ledger figures) of every member, or of those named."""
    if member_ids is None:
        cursor = db.execute_sql(FIGURES_SQL.format(where=""))
    else:
        marks = ", ".join("?" for _ in member_ids)
        cursor = db.execute_sql(FIGURES_SQL.format(where=f"WHERE m.id IN ({marks})"), member_ids)
    for mid, principal, bonus, points, debt, l_principal, l_bonus, l_points in cursor:
        yield MemberRow(
            mid,
            Figures(principal, bonus, points, debt),
            Figures.from_total(l_principal, l_bonus, l_points),
        )


def pending_members(db: SqliteDatabase) -> set[str]:
    """Members with outbox items HQ has not acknowledged, and the survivors of merged ids
    among them (their cached figures include those items; HQ's do not yet)."""
    ids = {
        mid
        for (mid,) in db.execute_sql(
            f"SELECT DISTINCT {OUTBOX_MEMBER} FROM outbox WHERE acked = 0"  # noqa: S608
        )
        if mid
    }
    if ids:
        marks = ", ".join("?" for _ in ids)
        ids |= {
            mid
            for (mid,) in db.execute_sql(
                f"SELECT member_id FROM member_alias WHERE old_id IN ({marks})",  # noqa: S608
                list(ids),
            )
        }
    return ids


def _outbox_position(db: SqliteDatabase) -> tuple[int, int]:
    acked = int(get_setting(ACKED_THROUGH, 0) or 0)
    (last,) = db.execute_sql("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()
    return acked, int(last)


def build_digest(
    db: SqliteDatabase,
    store: str,
    at: str,
    buckets: int = DEFAULT_BUCKETS,
    request_id: str | None = None,
) -> StoreDigest:
    """This store's digest of every member, shown and ledger, as of one moment."""
    with db.atomic():
        cursor = down_cursor()
        acked, last = _outbox_position(db)
        pending = pending_members(db)
        shown: list[tuple[str, Figures]] = []
        ledger: list[tuple[str, Figures]] = []
        for row in member_rows(db):
            shown.append((row.member_id, row.shown))
            ledger.append((row.member_id, row.ledger))
    return StoreDigest(
        store=store,
        at=at,
        buckets=buckets,
        down_cursor=cursor,
        acked_through=acked,
        last_seq=last,
        pending=tuple(sorted({bucket_of(m, buckets) for m in pending})),
        shown=tuple(bucket_digests(shown, buckets)),
        ledger=tuple(bucket_digests(ledger, buckets)),
        request_id=request_id,
    )


def bucket_rows(db: SqliteDatabase, store: str, req: DigestRequest) -> list[DigestRows]:
    """The member rows of the buckets HQ asked about, in messages that fit the wire;
    members with items HQ has not acknowledged are left out, their buckets partial."""
    wanted = set(req.wanted)
    with db.atomic():
        cursor = down_cursor()
        pending = pending_members(db)
        by_bucket: dict[int, list[MemberRow]] = {b: [] for b in wanted}
        for row in member_rows(db):
            b = bucket_of(row.member_id, req.buckets)
            if b in wanted and row.member_id not in pending:
                by_bucket[b].append(row)
    partial = frozenset(bucket_of(m, req.buckets) for m in pending)
    return [
        DigestRows(store, req.request_id, req.buckets, cursor, complete, tuple(rows))
        for complete, rows in chunk_rows(by_bucket, partial)
    ]


def square_ledger(db: SqliteDatabase, fix: LedgerFix, now: str) -> int:
    """Write one ledger entry (reason ``reconcile``, ref the request) per account where a
    named member's ledger sums differ from its cached balances; returns entries written.

    Applying a change from HQ ledgers every move of a cached balance, so the ledger
    keeps equalling the balances from here whichever of HQ's repair messages comes
    first."""
    entries = []
    with db.atomic():
        for row in member_rows(db, list(fix.members)):
            for account, cached, ledgered in (
                ("sv_principal", row.shown.sv_principal, row.ledger.sv_principal),
                ("sv_bonus", row.shown.sv_bonus, row.ledger.sv_bonus),
                ("points", row.shown.points, row.ledger.points),
            ):
                if cached != ledgered:
                    entries.append(
                        {
                            "member_id": row.member_id,
                            "account": account,
                            "delta": cached - ledgered,
                            "reason": "reconcile",
                            "ref": f"reconcile:{fix.request_id}",
                            "occurred_at": now,
                            "day": now[:10],
                            "offline": False,
                        }
                    )
        if entries:
            Ledger.insert_many(entries).execute()
    for e in entries:
        log.warning(
            "ledger squared with the cached balance at HQ's request: member %s %s %+d",
            e["member_id"],
            e["account"],
            e["delta"],
        )
    return len(entries)
