"""The store's side of reconciliation: its balance digest, the rows HQ drills into, and
squaring its ledger with its cached balances when HQ says so.

Figures are read in one SQLite read transaction, so the down cursor, the outbox's
unacknowledged members and the balances all describe the same moment. See
core/digest.py for the digest itself and docs/protocol.md for the messages.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from peewee import SqliteDatabase

from core.digest import (
    DEFAULT_BUCKETS,
    TOPIC_DIGEST,
    TOPIC_LEDGER_FIX,
    TOPIC_REQUEST,
    TOPIC_ROWS,
    DigestBuilder,
    DigestRequest,
    DigestRows,
    Figures,
    LedgerFix,
    MemberRow,
    StoreDigest,
    bucket_of,
    chunk_rows,
    validate_digest_request,
    validate_ledger_fix,
)
from core.errors import ProtocolError
from core.protocol import decode_json
from edge.models import Ledger
from edge.services.context import Till
from edge.sync.apply import OUTBOX_MEMBER, alias_targets, down_cursor, get_setting

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
    return (_member_row(raw) for raw in cursor)


def _member_row(raw: tuple) -> MemberRow:
    mid, principal, bonus, points, debt, l_principal, l_bonus, l_points = raw
    return MemberRow(
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
    return ids | alias_targets(ids)


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
    """This store's digest of every member, shown and ledger, as of one moment (one pass
    over the members, nothing per member kept)."""
    shown, ledger = DigestBuilder(buckets), DigestBuilder(buckets)
    with db.atomic():
        cursor = down_cursor()
        acked, last = _outbox_position(db)
        pending = pending_members(db)
        for mid, principal, bonus, points, debt, l_principal, l_bonus, l_points in db.execute_sql(
            FIGURES_SQL.format(where="")
        ):
            b = bucket_of(mid, buckets)
            shown.add(mid, principal, bonus, points, debt, b)
            ledger.add(mid, l_principal, l_bonus, l_points, max(0, -l_points), b)
    return StoreDigest(
        store=store,
        at=at,
        buckets=buckets,
        down_cursor=cursor,
        acked_through=acked,
        last_seq=last,
        pending=tuple(sorted({bucket_of(m, buckets) for m in pending})),
        shown=tuple(shown.result()),
        ledger=tuple(ledger.result()),
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
        for raw in db.execute_sql(FIGURES_SQL.format(where="")):
            b = bucket_of(raw[0], req.buckets)
            if b in wanted and raw[0] not in pending:
                by_bucket[b].append(_member_row(raw))
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


class DigestPublisher:
    """The sync agent's digests, on a thread (and SQLite connection) of their own: reading
    every member takes seconds on a large store, which should not hold up the outbox.

    Sends a digest every ``interval`` seconds while ``connected`` (0: only when asked),
    answers HQ's ``digestreq`` and applies its ``ledgerfix`` (queued by ``ask`` from the
    network thread). ``publish(topic name, object)`` sends one up message."""

    def __init__(
        self,
        till: Till,
        interval: float,
        connected: threading.Event,
        publish: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.till = till
        self.interval = interval
        self.connected = connected
        self.publish = publish
        self.asked: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> DigestPublisher:
        self.thread = threading.Thread(target=self._run, name="edge-digest", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.asked.put(("stop", b""))
        if self.thread is not None:
            self.thread.join(timeout=30)

    def ask(self, name: str, payload: bytes) -> None:
        self.asked.put((name, payload))

    def _run(self) -> None:
        due = time.monotonic() + self.interval
        while not self.stop_event.is_set():
            wait = max(0.0, due - time.monotonic()) if self.interval else None
            try:
                name, payload = self.asked.get(timeout=wait)
            except queue.Empty:
                name, payload = "periodic", b""
            try:
                if name == "periodic":
                    due = time.monotonic() + self.interval
                    if self.connected.is_set():
                        self.send_digest()
                elif name == TOPIC_REQUEST:
                    self.answer(validate_digest_request(decode_json(payload, name)))
                elif name == TOPIC_LEDGER_FIX:
                    fix = validate_ledger_fix(decode_json(payload, name))
                    self._mine(fix.store, name)
                    square_ledger(self.till.db, fix, self._iso())
            except ProtocolError as exc:
                log.warning("dropped a bad %s message: %s", name, exc.message)
            except Exception:
                log.exception("balance digest step failed")  # the next one tries again
        if not self.till.db.is_closed():
            self.till.db.close()  # this thread's connection

    def send_digest(self, request_id: str | None = None) -> None:
        digest = build_digest(self.till.db, self.till.store, self._iso(), request_id=request_id)
        self.publish(TOPIC_DIGEST, digest.to_dict())

    def answer(self, req: DigestRequest) -> None:
        self._mine(req.store, TOPIC_REQUEST)
        if not req.wanted:
            self.send_digest(req.request_id)
            return
        for rows in bucket_rows(self.till.db, self.till.store, req):
            self.publish(TOPIC_ROWS, rows.to_dict())

    def _mine(self, store: str, what: str) -> None:
        if store != self.till.store:
            raise ProtocolError(f"{what} for store {store!r} on {self.till.store!r}'s topic")

    def _iso(self) -> str:
        return self.till.now().isoformat(timespec="seconds")
