"""Reconciliation at HQ: every member's figures agree, or HQ staff see where they do not.

Three comparisons, each per member:

* HQ's balance against HQ's ledger (``hq_ledger_differences``; kind ``ledger_mismatch``);
* a store's cached balances against HQ's (kind ``balance_mismatch``);
* a store's ledger against HQ's balance (kind ``store_ledger_mismatch``).

A store reports a digest per bucket of member ids (core/digest.py); HQ compares each
bucket with its own (``compare_digest``), asks the store for the rows of the buckets
that differ, compares those member by member (``compare_rows``), opens one exception
per member, kind and store while none is open (``record_differences``), and repairs
the store from its own record (``repair``): the member's state goes down again as a
change, which the store applies as any other, and the store squares its ledger with
the repaired balance (``LedgerFix``).

When figures may rightly differ they are not compared: a member with a change after
the store's down cursor (the store has not seen HQ's latest figure yet), and a member
with outbox items the store has not had acknowledged (HQ has not seen the store's).
HQ reads its balances before the changes after the cursor, so a change committed
while the comparison runs marks its member unsettled rather than different.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import peewee as pw

from core.digest import (
    DEFAULT_BUCKETS,
    TOPIC_DIGEST,
    TOPIC_LEDGER_FIX,
    TOPIC_REQUEST,
    DigestRequest,
    DigestRows,
    Figures,
    LedgerFix,
    StoreDigest,
    bucket_digests,
    bucket_of,
    validate_digest_rows,
    validate_store_digest,
)
from core.errors import ProtocolError
from core.ids import uuid7
from core.protocol import Change, decode_json, down_topic
from hq.changes import ChangeSet, flush_changes, latest_change_seq
from hq.models import ChangeRecord, HqException, ReconcileRecord, is_postgres
from hq.models import Member as HqMember

log = logging.getLogger("hq.reconcile")

KIND_STORE_BALANCE = "balance_mismatch"
KIND_STORE_LEDGER = "store_ledger_mismatch"
KIND_HQ_LEDGER = "ledger_mismatch"
DIGEST_RECORD = "digest:{}"
# the request a store's digest last answered: kept apart from the latest digest, which a
# periodic one (a store's digest_interval) may replace before the asker looks
ANSWER_RECORD = "digest-answer:{}"
HQ_LEDGER_RECORD = "hq_ledger"
# PostgreSQL advisory lock key serialising the opening of reconciliation exceptions
EXCEPTIONS_LOCK = 0x48590001
HQ_LEDGER_EVERY = dt.timedelta(minutes=5)  # a worker checks HQ's ledger at most this often
MAX_DRILL_BUCKETS = 64  # buckets asked for in one drill-down request


def _member_order(db: pw.Database) -> str:
    # code point order on both databases, as core.digest.bucket_digests wants it
    return 'ORDER BY id COLLATE "C"' if is_postgres(db) else "ORDER BY id"


def _marks(db: pw.Database, values: list[str]) -> str:
    """One bound parameter per value, in the database's own style (? or %s)."""
    return ", ".join(db.param for _ in values)


def hq_rows(db: pw.Database, member_ids: list[str] | None = None) -> Iterator[tuple[str, Figures]]:
    """(member id, HQ's figures) of every member, or of those named, in code point order."""
    sql = "SELECT id, sv_principal, sv_bonus, points FROM member"
    params: list[str] = []
    if member_ids is not None:
        if not member_ids:
            return
        sql += f" WHERE id IN ({_marks(db, member_ids)})"
        params = member_ids
    cursor = db.execute_sql(f"{sql} {_member_order(db)}", params)
    for mid, principal, bonus, points in cursor:
        yield mid, Figures.from_total(principal, bonus, points)


def unsettled_members(after: int) -> set[str]:
    """Members with a change after ``after``: a store at that cursor has not seen HQ's
    current figures for them. A merge unsettles both of its members."""
    out = {
        key
        for (key,) in ChangeRecord.select(ChangeRecord.key)
        .where((ChangeRecord.seq > after) & (ChangeRecord.entity == "member"))
        .tuples()
    }
    for (data,) in (
        ChangeRecord.select(ChangeRecord.data)
        .where((ChangeRecord.seq > after) & (ChangeRecord.entity == "merge"))
        .tuples()
    ):
        data = ChangeRecord.data.python_value(data) if isinstance(data, str) else data
        out.update(m for m in (data.get("from_member_id"), data.get("to_member_id")) if m)
    return out


# ---- bucket level -------------------------------------------------------------------


@dataclass(frozen=True)
class BucketDifference:
    store: str
    bucket: int
    side: str  # shown | ledger
    hq: tuple[int, str]
    theirs: tuple[int, str]

    def line(self) -> str:
        return (
            f"store {self.store} bucket {self.bucket} ({self.side}): HQ {self.hq[0]} members "
            f"{self.hq[1]}, store {self.theirs[0]} members {self.theirs[1]}"
        )


@dataclass
class DigestComparison:
    store: str
    at: str
    down_cursor: int
    compared: int = 0
    skipped: int = 0  # buckets with members not settled on one side or the other
    behind: bool = False  # the store's cursor is past HQ's change log (HQ restored)
    differences: list[BucketDifference] = field(default_factory=list)

    @property
    def buckets(self) -> list[int]:
        return sorted({d.bucket for d in self.differences})


def compare_digest(db: pw.Database, digest: StoreDigest) -> DigestComparison:
    """Compare a store's digest with HQ's figures, bucket by bucket."""
    out = DigestComparison(digest.store, digest.at, digest.down_cursor)
    if digest.down_cursor > latest_change_seq():
        out.behind = True
        return out
    ours = bucket_digests(hq_rows(db), digest.buckets)  # balances first, then the changes
    unsettled = {bucket_of(m, digest.buckets) for m in unsettled_members(digest.down_cursor)}
    skip = unsettled | set(digest.pending)
    for b in range(digest.buckets):
        if b in skip:
            out.skipped += 1
            continue
        out.compared += 1
        for side, theirs in (("shown", digest.shown[b]), ("ledger", digest.ledger[b])):
            if tuple(theirs) != ours[b]:
                out.differences.append(BucketDifference(digest.store, b, side, ours[b], theirs))
    return out


def save_digest(digest: StoreDigest, now: dt.datetime) -> None:
    ReconcileRecord.insert(
        name=DIGEST_RECORD.format(digest.store), at=now, data=digest.to_dict()
    ).on_conflict(
        conflict_target=[ReconcileRecord.name],
        update={ReconcileRecord.at: now, ReconcileRecord.data: digest.to_dict()},
    ).execute()
    if digest.request_id:
        answer = {"request_id": digest.request_id}
        ReconcileRecord.insert(
            name=ANSWER_RECORD.format(digest.store), at=now, data=answer
        ).on_conflict(
            conflict_target=[ReconcileRecord.name],
            update={ReconcileRecord.at: now, ReconcileRecord.data: answer},
        ).execute()


def latest_digests(stores: list[str] | None = None) -> list[StoreDigest]:
    query = ReconcileRecord.select().where(ReconcileRecord.name.startswith("digest:"))
    if stores is not None:
        query = query.where(ReconcileRecord.name.in_([DIGEST_RECORD.format(s) for s in stores]))
    return [validate_store_digest(r.data) for r in query.order_by(ReconcileRecord.name)]


# ---- member level -------------------------------------------------------------------


def _figures_text(f: Figures | None) -> str:
    if f is None:
        return "none"
    return (
        f"sv_principal={f.sv_principal} sv_bonus={f.sv_bonus} "
        f"points={f.points} points_debt={f.points_debt}"
    )


@dataclass(frozen=True)
class MemberDifference:
    """One member whose figures differ: HQ's balance against ``theirs`` (a store's cached
    balance, a store's ledger, or HQ's own ledger). None: the member is not there."""

    kind: str
    member_id: str
    store: str | None
    hq: Figures | None
    theirs: Figures | None

    @property
    def theirs_label(self) -> str:
        return {
            KIND_STORE_BALANCE: "store balance",
            KIND_STORE_LEDGER: "store ledger",
            KIND_HQ_LEDGER: "HQ ledger",
        }[self.kind]

    def details(self) -> dict[str, object]:
        return {
            "hq": self.hq.to_dict() if self.hq else None,
            "theirs": self.theirs.to_dict() if self.theirs else None,
            "theirs_is": self.theirs_label,
        }

    def line(self) -> str:
        where = f"store {self.store}" if self.store else "HQ"
        return (
            f"{self.kind} member {self.member_id} at {where}: HQ balance "
            f"{_figures_text(self.hq)}; {self.theirs_label} {_figures_text(self.theirs)}"
        )


def compare_rows(db: pw.Database, rows: DigestRows) -> list[MemberDifference]:
    """Compare a store's member rows with HQ's, member by member."""
    ids = [r.member_id for r in rows.rows]
    ours = dict(hq_rows(db, ids))
    in_complete: list[str] = []
    if rows.complete:
        wanted = set(rows.complete)
        in_complete = [
            mid
            for (mid,) in HqMember.select(HqMember.id).tuples()
            if bucket_of(mid, rows.buckets) in wanted
        ]
        ours.update(hq_rows(db, [m for m in in_complete if m not in ours]))
    unsettled = unsettled_members(rows.down_cursor)  # after the balances: see the docstring
    out = []
    for row in rows.rows:
        if row.member_id in unsettled:
            continue
        hq = ours.get(row.member_id)
        if row.shown != hq:
            out.append(
                MemberDifference(KIND_STORE_BALANCE, row.member_id, rows.store, hq, row.shown)
            )
        if row.ledger != hq:
            out.append(
                MemberDifference(KIND_STORE_LEDGER, row.member_id, rows.store, hq, row.ledger)
            )
    held = set(ids)
    for mid in in_complete:
        if mid not in held and mid not in unsettled:
            out.append(MemberDifference(KIND_STORE_BALANCE, mid, rows.store, ours[mid], None))
    return out


HQ_LEDGER_SQL = """
SELECT m.id, m.sv_principal, m.sv_bonus, m.points,
       COALESCE(l.principal, 0), COALESCE(l.bonus, 0), COALESCE(l.points, 0)
FROM member m
LEFT JOIN (SELECT member_id, SUM(principal) AS principal, SUM(bonus) AS bonus,
                  SUM(points) AS points
           FROM ledger_entry GROUP BY member_id) l ON l.member_id = m.id
WHERE (m.sv_principal <> COALESCE(l.principal, 0) OR m.sv_bonus <> COALESCE(l.bonus, 0)
   OR m.points <> COALESCE(l.points, 0)) {only}
ORDER BY m.id
"""


def hq_ledger_differences(
    db: pw.Database, member_ids: list[str] | None = None
) -> list[MemberDifference]:
    """Members (all, or those named) whose balance at HQ is not the sum of their ledger at
    HQ (one statement, so one snapshot of both)."""
    only, params = "", []
    if member_ids is not None:
        if not member_ids:
            return []
        only, params = f"AND m.id IN ({_marks(db, member_ids)})", member_ids
    return [
        MemberDifference(
            KIND_HQ_LEDGER,
            mid,
            None,
            Figures.from_total(principal, bonus, points),
            Figures.from_total(l_principal, l_bonus, l_points),
        )
        for mid, principal, bonus, points, l_principal, l_bonus, l_points in db.execute_sql(
            HQ_LEDGER_SQL.format(only=only), params
        )
    ]


def record_differences(
    diffs: list[MemberDifference], now: dt.datetime, repairs: dict[str, int] | None = None
) -> int:
    """Open one exception per member, kind and store unless one is open; returns how many
    were opened. ``repairs`` maps a member to the change seq that re-sent its state: kept
    in the exception (``details.repair_change``) until a digest at or past it confirms
    the repair. Call inside a transaction."""
    repairs = repairs or {}
    opened = 0
    if diffs and is_postgres(HqException._meta.database):
        # several workers reconcile at once: the look for an open exception and the insert
        # of a new one must not interleave, or two nodes open the same one twice
        HqException._meta.database.execute_sql(
            "SELECT pg_advisory_xact_lock(%s)", (EXCEPTIONS_LOCK,)
        )
    for d in diffs:
        query = HqException.select().where(
            (HqException.kind == d.kind)
            & (HqException.member_id == d.member_id)
            & (HqException.status == "open")
        )
        query = query.where(
            HqException.store.is_null() if d.store is None else HqException.store == d.store
        )
        details = d.details()
        if d.member_id in repairs:
            details["repair_change"] = repairs[d.member_id]
        existing = query.first()
        if existing is not None:
            if d.member_id in repairs:
                existing.details = {**existing.details, "repair_change": repairs[d.member_id]}
                existing.save()
            continue
        HqException.create(
            kind=d.kind, member_id=d.member_id, store=d.store, details=details, created_at=now
        )
        log.warning("reconciliation: %s", d.line())
        opened += 1
    return opened


def repair(
    db: pw.Database, diffs: list[MemberDifference], now: dt.datetime
) -> tuple[list[Change], list[str]]:
    """Re-send HQ's state of every differing member HQ holds, as a change (the store
    applies it like any other and ledgers the move); returns the changes to publish and
    the members the store must square its ledger for (those it holds). A member whose
    balance at HQ disagrees with HQ's own ledger is not repaired from that record: its
    exceptions wait for HQ staff. Call inside a transaction."""
    doubtful = {
        d.member_id for d in hq_ledger_differences(db, sorted({d.member_id for d in diffs}))
    }
    changes = ChangeSet()
    fix: set[str] = set()
    for d in diffs:
        if d.store is None or d.member_id in doubtful:
            continue
        if d.hq is not None:
            changes.member(d.member_id)
        if d.theirs is not None and d.hq is not None:
            fix.add(d.member_id)
    return flush_changes(db, changes, now), sorted(fix)


def check_hq_ledger(
    db: pw.Database, now: dt.datetime, force: bool = False
) -> list[MemberDifference] | None:
    """HQ's balances against its ledger, opening exceptions; None when it was checked less
    than HQ_LEDGER_EVERY ago (and not forced)."""
    last = ReconcileRecord.get_or_none(ReconcileRecord.name == HQ_LEDGER_RECORD)
    if not force and last is not None and now - last.at < HQ_LEDGER_EVERY:
        return None
    diffs = hq_ledger_differences(db)
    with db.atomic():
        record_differences(diffs, now)
        data = {"differences": len(diffs)}
        ReconcileRecord.insert(name=HQ_LEDGER_RECORD, at=now, data=data).on_conflict(
            conflict_target=[ReconcileRecord.name],
            update={ReconcileRecord.at: now, ReconcileRecord.data: data},
        ).execute()
    return diffs


# ---- on demand ------------------------------------------------------------------------


def digest_requests(stores: list[str]) -> dict[str, DigestRequest]:
    """A request for a fresh digest to each store (``huiyuan-hq reconcile --ask``)."""
    return {s: DigestRequest(s, str(uuid7()), DEFAULT_BUCKETS) for s in stores}


def answered(requests: dict[str, DigestRequest]) -> set[str]:
    """The stores that have answered our request (their latest digest is that answer or
    a later one)."""
    store_of = {ANSWER_RECORD.format(s): s for s in requests}
    rows = ReconcileRecord.select().where(ReconcileRecord.name.in_(list(store_of)))
    return {
        store_of[r.name]
        for r in rows
        if r.data.get("request_id") == requests[store_of[r.name]].request_id
    }


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    differences: int = 0


def reconcile_report(db: pw.Database, now: dt.datetime, stores: list[str] | None = None) -> Report:
    """What ``huiyuan-hq reconcile`` prints: HQ's balances against its ledger, and each
    store's latest digest against HQ's figures now. A differing bucket is shown with the
    open exceptions of that store whose members fall in it (the drill-down's findings),
    or as a bucket when none is open yet."""
    report = Report()
    for d in check_hq_ledger(db, now, force=True) or []:
        report.lines.append(d.line())
        report.differences += 1
    digests = latest_digests(stores)
    for store in sorted(set(stores or ()) - {d.store for d in digests}):
        report.lines.append(f"store {store}: no digest received yet")
        report.differences += 1
    for digest in digests:
        cmp = compare_digest(db, digest)
        if cmp.behind:
            report.lines.append(
                f"store {digest.store}: digest of {digest.at} is at change {digest.down_cursor}, "
                "past HQ's change log (HQ restored?): not compared"
            )
            report.differences += 1
            continue
        report.lines.append(
            f"store {digest.store}: digest of {digest.at} at change {digest.down_cursor}: "
            f"{cmp.compared} buckets compared, {cmp.skipped} not settled, "
            f"{len(cmp.differences)} differ"
        )
        open_rows = list(
            HqException.select().where(
                (HqException.store == digest.store)
                & (HqException.status == "open")
                & HqException.kind.in_([KIND_STORE_BALANCE, KIND_STORE_LEDGER])
            )
        )
        report.differences += len(cmp.differences)
        listed: set[int] = set()
        for bd in cmp.differences:
            report.lines.append("  " + bd.line())
            if bd.bucket in listed:
                continue
            listed.add(bd.bucket)
            for e in open_rows:
                if bucket_of(e.member_id, digest.buckets) == bd.bucket:
                    report.lines.append("    " + _exception_difference(e).line())
        # a repair is sent as a change; until a digest at or past it shows the member's
        # bucket agreeing, the difference stands (its bucket is merely not settled)
        for e in open_rows:
            sent = e.details.get("repair_change")
            if sent is not None and sent > digest.down_cursor:
                report.differences += 1
                report.lines.append(
                    f"  {_exception_difference(e).line()} (repair sent as change {sent}, "
                    "not yet confirmed by a digest)"
                )
    return report


def _exception_difference(e: HqException) -> MemberDifference:
    hq, theirs = e.details.get("hq"), e.details.get("theirs")
    return MemberDifference(
        e.kind,
        e.member_id,
        e.store,
        Figures(**hq) if hq else None,
        Figures(**theirs) if theirs else None,
    )


# ---- the worker's handler -------------------------------------------------------------


@dataclass
class Outgoing:
    """What handling one message asks the worker to publish: down messages and changes."""

    messages: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


def handle_message(
    db: pw.Database, store: str, name: str, payload: bytes, now: dt.datetime
) -> Outgoing:
    """Handle a store's up/digest or up/digestrows; ProtocolError if it is malformed or
    names another store than its topic's."""
    out = Outgoing()
    if name == TOPIC_DIGEST:
        digest = validate_store_digest(decode_json(payload, name))
        _same_store(digest.store, store, name)
        with db.atomic():
            save_digest(digest, now)
        cmp = compare_digest(db, digest)
        check_hq_ledger(db, now)
        log.info(
            "digest from %s at change %d: %d buckets compared, %d not settled, %d differ",
            store,
            digest.down_cursor,
            cmp.compared,
            cmp.skipped,
            len(cmp.differences),
        )
        if cmp.differences:
            wanted = tuple(cmp.buckets[:MAX_DRILL_BUCKETS])
            req = DigestRequest(store, str(uuid7()), digest.buckets, wanted)
            out.messages.append((down_topic(store, TOPIC_REQUEST), req.to_dict()))
        return out
    rows = validate_digest_rows(decode_json(payload, name))
    _same_store(rows.store, store, name)
    diffs = compare_rows(db, rows)
    if not diffs:
        return out
    with db.atomic():
        out.changes, fix = repair(db, diffs, now)
        repairs = {c.key: c.seq for c in out.changes if c.entity == "member"}
        record_differences(diffs, now, repairs)
    if fix:
        msg = LedgerFix(store, str(uuid7()), tuple(fix))
        out.messages.append((down_topic(store, TOPIC_LEDGER_FIX), msg.to_dict()))
    log.warning(
        "store %s: %d member figures differ; %d members re-sent, %d ledgers to square",
        store,
        len(diffs),
        len(out.changes),
        len(fix),
    )
    return out


def _same_store(named: str, store: str, what: str) -> None:
    if named != store:
        raise ProtocolError(f"{what} from {named!r} on {store!r}'s topic")
