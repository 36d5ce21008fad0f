"""Tiers and growth value at HQ (docs/programme/tiers.md), and stores' rules status
(docs/programme/rules.md).

Growth is kept cheap to evaluate: the sale and return appliers add to a per-member,
per-day spend summary (``MemberDaySpend``, one upsert each) and actions are
``GrowthEvent`` rows unique by (kind, ref). ``evaluate_tiers`` is then set-based SQL
over the window: one statement computes every member's growth and tier (the rules of
``core.tiers``, written as SQL) into a temporary table of the members that change, one
UPDATE applies it, one INSERT writes the ``TierChange`` rows; only the members whose
tier changed are sent to stores. A re-run for the same day finds nothing to change.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import NotFound, ValidationError
from core.rules import DEMO_RULES, Rules, TierRules
from core.tiers import DECAY, DOWNGRADE, MANUAL, UPGRADE, window_start
from hq import audit
from hq.bulk_changes import log_member_changes, timestamp_param
from hq.changes import ChangeSet, flush_changes
from hq.ledger import Book
from hq.models import (
    GrowthEvent,
    ManualTier,
    Member,
    MemberDaySpend,
    RulesVersion,
    Sale,
    Store,
    TierChange,
    is_postgres,
    utcnow,
)

# ---- rules in force ---------------------------------------------------------------


def newest_rules(db: pw.Database) -> Rules:
    """The newest published rules version (the demo rules when none is published)."""
    row = RulesVersion.select().order_by(RulesVersion.version.desc()).first()
    return Rules.from_dict(row.data) if row is not None else DEMO_RULES


# ---- the spend summary (one hook in hq/apply.py's apply_sale / apply_return) ------


def paid_fen(body: dict[str, Any], total_key: str) -> int:
    """Money a sale took (or a return gave back): its total less its points tenders."""
    points = sum(
        int(t.get("amount") or 0)
        for t in body.get("tenders") or []
        if isinstance(t, dict) and t.get("kind") == "points"
    )
    return int(body[total_key]) - points


def add_spend(book: Book | None, member_id: str, day: dt.date, spend: int, sales: int) -> None:
    """Add to a member's day in the spend summary: with the batch's ``book``, sent with
    the batch's other writes (no round trip of its own); without, at once."""
    query = MemberDaySpend.insert(
        member_id=member_id, day=day, spend=spend, sales=sales
    ).on_conflict(
        conflict_target=[MemberDaySpend.member_id, MemberDaySpend.day],
        update={
            MemberDaySpend.spend: MemberDaySpend.spend + pw.EXCLUDED.spend,
            MemberDaySpend.sales: MemberDaySpend.sales + pw.EXCLUDED.sales,
        },
    )
    if book is None:
        query.execute()
    else:
        book.query(query)


def merge_growth(from_id: str, to_id: str) -> None:
    """A merge (hq/members.py) moves the merged member's growth record to the survivor:
    spend per day added to the survivor's same day, growth events as they are."""
    rows = list(MemberDaySpend.select().where(MemberDaySpend.member_id == from_id))
    for row in rows:
        add_spend(None, to_id, row.day, row.spend, row.sales)
    MemberDaySpend.delete().where(MemberDaySpend.member_id == from_id).execute()
    GrowthEvent.update(member_id=to_id).where(GrowthEvent.member_id == from_id).execute()


def _day(occurred_at: str) -> dt.date:
    return dt.datetime.fromisoformat(occurred_at).date()


def _points_tendered_sql(postgres: bool) -> str:
    """SQL: the points tenders' fen in a row's ``body`` (as ``paid_fen`` leaves out)."""
    if postgres:
        return (
            "COALESCE((SELECT SUM(CAST(t->>'amount' AS bigint)) FROM "
            "json_array_elements(CAST(body AS json)->'tenders') t WHERE t->>'kind' = 'points'), 0)"
        )
    return (
        "COALESCE((SELECT SUM(json_extract(t.value, '$.amount')) FROM "
        "json_each(body, '$.tenders') t WHERE json_extract(t.value, '$.kind') = 'points'), 0)"
    )


def rebuild_spend(db: pw.Database) -> int:
    """Rebuild the spend summary from the sales and returns (it is derived data), set
    based: what the appliers add, summed per member and business day (the date of the
    item's own ``occurred_at``). The number of member-days written."""
    postgres = is_postgres(db)
    points = _points_tendered_sql(postgres)
    day = "CAST(substr(occurred_at, 1, 10) AS date)" if postgres else "substr(occurred_at, 1, 10)"
    # fixed SQL text: no values
    sql = (
        "INSERT INTO member_day_spend (member_id, day, spend, sales) "  # noqa: S608
        "SELECT member_id, day, SUM(spend), SUM(sales) FROM ("
        f"SELECT member_id, {day} AS day, total - {points} AS spend, 1 AS sales "
        "FROM sale WHERE member_id IS NOT NULL "
        f"UNION ALL SELECT member_id, {day}, -(refund_total - {points}), 0 "
        'FROM "return" WHERE member_id IS NOT NULL'
        ") x GROUP BY member_id, day"
    )
    with db.atomic():
        MemberDaySpend.delete().execute()
        db.execute_sql(sql)
    return MemberDaySpend.select().count()


# ---- growth events ----------------------------------------------------------------


def record_growth_event(
    db: pw.Database,
    member_id: str,
    kind: str,
    ref: str,
    day: dt.date,
    rules: Rules | None = None,
) -> bool:
    """Growth for one action (e.g. ``review`` with the review's id as ``ref``), at the
    points the rules give it; False when the rules give none or it was recorded."""
    points = (rules or newest_rules(db)).tiers.events.get(kind, 0)
    if points <= 0:
        return False
    with db.atomic():
        done = GrowthEvent.select().where((GrowthEvent.kind == kind) & (GrowthEvent.ref == ref))
        if done.exists():
            return False
        # a concurrent recorder of the same (kind, ref) loses quietly on the unique key
        GrowthEvent.insert(
            member_id=member_id, kind=kind, points=points, ref=ref, day=day, at=utcnow()
        ).on_conflict_ignore().execute()
    return True


def grant_action_growth(
    db: pw.Database, day: dt.date, rules: Rules | None = None
) -> dict[str, int]:
    """The set-based growth events the nightly job grants before evaluating: a profile
    complete enough (``profile_complete``, once per member) and being named as a
    referrer (``referral``, once per member referred). Counts of events written."""
    tr = (rules or newest_rules(db)).tiers
    p = db.param
    now = utcnow()
    counts = {}
    sources = {
        "profile_complete": (
            "id",
            "'profile_complete:' || id",
            f"profile_score >= {p}",
            [tr.profile_complete_score],
        ),
        "referral": ("referred_by", "'referral:' || id", "referred_by IS NOT NULL", []),
    }
    with db.atomic():
        for kind, (owner, ref, where, params) in sources.items():
            points = tr.events.get(kind, 0)
            if points <= 0:
                counts[kind] = 0
                continue
            # identifiers are fixed text above; values are bound parameters
            sql = (
                "INSERT INTO growth_event (member_id, kind, points, ref, day, at) "  # noqa: S608
                f"SELECT {owner}, {p}, {p}, {ref}, {p}, {p} FROM member "
                f"WHERE status = 'active' AND {where} "
                "ON CONFLICT (kind, ref) DO NOTHING"
            )
            cursor = db.execute_sql(sql, [kind, points, _d(db, day), now, *params])
            counts[kind] = max(cursor.rowcount, 0)
    return counts


# ---- the evaluation ---------------------------------------------------------------


def _d(db: pw.Database, day: dt.date) -> Any:
    """A date as a bound parameter: ISO text on SQLite (how peewee keeps DateFields)."""
    return day if is_postgres(db) else day.isoformat()


def _rank_sql(tr: TierRules, column: str) -> str:
    """``column``'s rung on the ladder, -1 for none (names are bound, see _params)."""
    if not tr.ladder:
        return "-1"
    whens = " ".join(f"WHEN {{name{i}}} THEN {i}" for i in range(len(tr.ladder)))
    return f"(CASE {column} {whens} ELSE -1 END)"


def _earned_sql(tr: TierRules, column: str) -> str:
    whens = " ".join(
        f"WHEN {column} >= {{threshold{i}}} THEN {i}" for i in reversed(range(len(tr.ladder)))
    )
    return f"(CASE {whens} ELSE -1 END)"


def _name_sql(tr: TierRules, column: str) -> str:
    whens = " ".join(f"WHEN {i} THEN {{name{i}}}" for i in range(len(tr.ladder)))
    return f"(CASE {column} {whens} ELSE NULL END)"


EVAL_TABLE = "tier_eval"
CHANGED_SQL = "SELECT member_id FROM tier_eval WHERE reason IS NOT NULL"

# Every rule of core.tiers as one query: growth in the window (spend and events), the
# rung it earns, decay, the manual floor, the minimum hold. Only rows that change are
# kept. {…} are bound parameters filled in by _evaluation_sql.
_EVAL_SQL = """
CREATE TEMPORARY TABLE tier_eval AS
WITH spend AS (
    SELECT member_id, CAST(SUM(spend) AS BIGINT) AS net, MAX(CASE WHEN sales > 0 THEN day END) AS last_buy
    FROM member_day_spend WHERE day >= {start} AND day <= {day} GROUP BY member_id
), ev AS (
    SELECT member_id, SUM(points) AS pts
    FROM growth_event WHERE day >= {start} AND day <= {day} GROUP BY member_id
), g AS (
    SELECT m.id AS member_id, m.tier AS old_tier, m.growth AS old_growth, m.tier_since,
        (CASE WHEN COALESCE(s.net, 0) > 0 THEN s.net * {per_yuan} / 100 ELSE 0 END)
            + COALESCE(e.pts, 0) AS growth,
        s.last_buy,
        CASE WHEN mt.until >= {day} THEN mt.tier END AS manual_tier
    FROM member m
    LEFT JOIN spend s ON s.member_id = m.id
    LEFT JOIN ev e ON e.member_id = m.id
    LEFT JOIN manual_tier mt ON mt.member_id = m.id
    WHERE m.status = 'active'
), r AS (
    SELECT g.*, {rank_old} AS now_rank, {earned} AS earned, {rank_manual} AS manual_rank,
        {lapsed} AS lapsed
    FROM g
), d AS (
    SELECT r.*, CASE WHEN lapsed = 1 AND earned > 0 THEN earned - 1 ELSE earned END AS decayed
    FROM r
), t AS (
    SELECT d.*, CASE WHEN manual_rank > decayed THEN manual_rank ELSE decayed END AS target
    FROM d
), f AS (
    SELECT t.*,
        CASE WHEN target < now_rank AND tier_since IS NOT NULL AND tier_since > {hold}
            THEN now_rank ELSE target END AS final
    FROM t
)
SELECT member_id, old_tier, old_growth, growth,
    CASE WHEN final = now_rank THEN old_tier ELSE {name_final} END AS new_tier,
    CASE WHEN final = now_rank THEN NULL
        WHEN final > now_rank THEN {upgrade}
        WHEN lapsed = 1 AND earned > 0 AND final = earned - 1 THEN {decay}
        ELSE {downgrade} END AS reason
FROM f
WHERE final <> now_rank OR growth <> old_growth
"""


def _evaluation_sql(db: pw.Database, tr: TierRules, day: dt.date) -> tuple[str, list[Any]]:
    """The evaluation query with its placeholders, and its parameters in order."""
    values: dict[str, Any] = {
        "start": _d(db, window_start(tr, day)),
        "day": _d(db, day),
        "per_yuan": tr.growth_per_yuan,
        "hold": _d(db, day - dt.timedelta(days=tr.min_hold_days)),
        "upgrade": UPGRADE,
        "decay": DECAY,
        "downgrade": DOWNGRADE,
    }
    for i, step in enumerate(tr.ladder):
        values[f"name{i}"] = step.name
        values[f"threshold{i}"] = step.threshold
    if tr.lapse_days > 0:
        values["lapse"] = _d(db, day - dt.timedelta(days=tr.lapse_days))
        lapsed = "(CASE WHEN last_buy IS NULL OR last_buy <= {lapse} THEN 1 ELSE 0 END)"
    else:
        lapsed = "0"
    text = _EVAL_SQL.replace("{rank_old}", _rank_sql(tr, "old_tier"))
    text = text.replace("{rank_manual}", _rank_sql(tr, "manual_tier"))
    text = text.replace("{earned}", _earned_sql(tr, "growth"))
    text = text.replace("{name_final}", _name_sql(tr, "final"))
    text = text.replace("{lapsed}", lapsed)
    # every {name} left is a value: a placeholder each time it appears, in order
    params: list[Any] = []
    out: list[str] = []
    rest = text
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        out.append(head + db.param)
        params.append(values[name])
    out.append(rest)
    return "".join(out), params


def evaluate_tiers(db: pw.Database, day: dt.date, rules: Rules | None = None) -> dict[str, int]:
    """Evaluate every active member's growth and tier for ``day`` (docs/programme/tiers.md)
    with the newest published rules unless ``rules`` is given. Updates ``Member.growth``,
    ``tier`` and ``tier_since`` where they change, writes a ``TierChange`` per tier
    change and sends those members to stores; idempotent for a day. Counts:
    ``members_changed`` (growth or tier), ``upgrade``, ``downgrade``, ``decay``."""
    rules = rules or newest_rules(db)
    tr = rules.tiers
    counts = {"members_changed": 0, UPGRADE: 0, DOWNGRADE: 0, DECAY: 0}
    if not tr.ladder:
        return counts  # no ladder: tiers are not evaluated (given by hand only)
    now = timestamp_param(db, utcnow())
    sql, params = _evaluation_sql(db, tr, day)
    p = db.param
    with db.atomic():
        db.execute_sql(f"DROP TABLE IF EXISTS {EVAL_TABLE}")
        db.execute_sql(sql, params)
        counts["members_changed"] = db.execute_sql(
            f"SELECT COUNT(*) FROM {EVAL_TABLE}"  # noqa: S608
        ).fetchone()[0]
        db.execute_sql(
            # the table name is the constant above; values are bound parameters
            f"UPDATE member SET growth = e.growth, tier = e.new_tier, "  # noqa: S608
            f"tier_since = CASE WHEN e.reason IS NULL THEN member.tier_since ELSE {p} END, "
            f"updated_at = {p} FROM {EVAL_TABLE} e WHERE member.id = e.member_id",
            [_d(db, day), now],
        )
        db.execute_sql(
            "INSERT INTO tier_change (member_id, from_tier, to_tier, reason, growth, day, at) "  # noqa: S608
            f"SELECT member_id, old_tier, new_tier, reason, growth, {p}, {p} "
            f"FROM {EVAL_TABLE} WHERE reason IS NOT NULL",
            [_d(db, day), now],
        )
        for reason, n in db.execute_sql(
            f"SELECT reason, COUNT(*) FROM {EVAL_TABLE} "  # noqa: S608
            "WHERE reason IS NOT NULL GROUP BY reason"
        ).fetchall():
            counts[reason] = n
        # each member whose tier changed goes to the stores, built by the database
        log_member_changes(db, CHANGED_SQL, [], now)
        # a failure rolls the transaction back, the temporary table with it
        db.execute_sql(f"DROP TABLE {EVAL_TABLE}")
    return counts


# ---- a tier given by hand ----------------------------------------------------------


def set_tier(
    db: pw.Database,
    member_id: str,
    tier: str,
    by: str,
    reason: str,
    day: dt.date,
    until: dt.date | None = None,
    rules: Rules | None = None,
) -> TierChange | None:
    """Give ``member_id`` the tier ``tier`` by hand (audited ``tier.set``). With ``until``
    the evaluation does not downgrade below it up to and including that day; without,
    the next evaluation applies the usual rules (the minimum hold included). The tier
    must be on the ladder, or have a discount, in the newest rules. None when the
    member already holds it and the floor is unchanged."""
    from hq.ledger import resolve_member

    reason = audit.require_reason(reason, "手工调整等级 (setting a tier by hand)")
    by = audit.require_actor(by)
    rules = rules or newest_rules(db)
    known = {s.name for s in rules.tiers.ladder} | set(rules.tier_discount)
    if tier not in known:
        raise ValidationError(
            f"等级 {tier} 不在规则中 (tier {tier!r} is neither on the ladder nor has a "
            f"discount in rules version {rules.version}; known: {sorted(known)})",
            field="tier",
        )
    if until is not None and until < day:
        raise ValidationError(f"--until {until} is before today {day}", field="until")
    if until is not None and rules.tiers.rank(tier) < 0:
        raise ValidationError(
            f"等级 {tier} 不在等级阶梯上, 不能保级 (a floor --until needs a tier on the ladder: "
            f"{[s.name for s in rules.tiers.ladder]})",
            field="until",
        )
    now = utcnow()
    with db.atomic():
        try:
            member = resolve_member(db, member_id, lock=True)
        except NotFound:
            raise NotFound(f"会员 {member_id} 不存在 (no such member)", field="member") from None
        floor = ManualTier.get_or_none(ManualTier.member_id == member.id)
        if member.tier == tier and (floor.until if floor else None) == until:
            return None
        audit.record(
            db,
            by,
            "tier.set",
            member.id,
            reason,
            at=now,
            **{"from": member.tier, "to": tier, "until": until.isoformat() if until else None},
        )
        if until is not None:
            row = {"tier": tier, "until": until, "by": by, "reason": reason, "at": now}
            ManualTier.insert(member_id=member.id, **row).on_conflict(
                conflict_target=[ManualTier.member_id],
                update={getattr(ManualTier, k): v for k, v in row.items()},
            ).execute()
        else:
            ManualTier.delete().where(ManualTier.member_id == member.id).execute()
        change = None
        if member.tier != tier:
            change = TierChange.create(
                member_id=member.id,
                from_tier=member.tier,
                to_tier=tier,
                reason=MANUAL,
                growth=member.growth,
                day=day,
                at=now,
                by=by,
            )
            member.tier, member.tier_since, member.updated_at = tier, day, now
            member.save(only=[Member.tier, Member.tier_since, Member.updated_at])
            changes = ChangeSet()
            changes.member(member.id)
            flush_changes(db, changes, now)
        return change


def tier_history(member_id: str) -> list[dict[str, Any]]:
    return [
        {
            "day": c.day.isoformat() if isinstance(c.day, dt.date) else c.day,
            "from": c.from_tier,
            "to": c.to_tier,
            "reason": c.reason,
            "growth": c.growth,
            "by": c.by,
        }
        for c in TierChange.select()
        .where(TierChange.member_id == member_id)
        .order_by(TierChange.id)
    ]


# ---- the nightly job ---------------------------------------------------------------


def ensure_spend_summary(db: pw.Database) -> int:
    """Fill the spend summary from the sales when it is empty but members have sales (an
    HQ upgraded to this release: its sales predate the summary); the member-days written."""
    if MemberDaySpend.select().exists():
        return 0
    if not Sale.select().where(Sale.member_id.is_null(False)).exists():
        return 0
    return rebuild_spend(db)


def run_nightly(db: pw.Database, day: dt.date) -> dict[str, int]:
    """What the nightly job does for ``day``: the spend summary filled if an upgrade left
    it empty, action growth, then the evaluation, with the newest published rules."""
    rules = newest_rules(db)
    rebuilt = ensure_spend_summary(db)
    granted = grant_action_growth(db, day, rules)
    counts = evaluate_tiers(db, day, rules)
    return (
        counts | {f"growth_{kind}": n for kind, n in granted.items()} | {"spend_rebuilt": rebuilt}
    )


def tier_evaluation_job(ctx: Any) -> dict[str, int]:
    """``tier-evaluation`` (hq/scheduler.JOBS), for the chain's business day."""
    return run_nightly(ctx.db, ctx.today())


# ---- stores' rules status ----------------------------------------------------------


def apply_rules_status(ctx: Any, body: dict[str, Any]) -> None:
    """A store's ``rules_status`` item: the version it prices with and a version it
    refused (hq/apply.APPLIERS). No money moves; the ingest's item id makes a resent
    item a no-op, and items apply in the store's order, so the last one stands."""
    store = ctx.item.store
    updated = (
        Store.update(
            rules_version=body["version_in_force"],
            rules_refused_version=body.get("refused_version"),
            rules_refused_reason=body.get("reason") or None,
            rules_status_at=body["at"],
        )
        .where(Store.code == store)
        .execute()
    )
    if not updated:
        raise NotFound(f"store {store} is not known", field="store")


def rules_status(db: pw.Database) -> dict[str, Any]:
    """Every store's rules status against the newest published version: ``behind`` is
    true for a store whose version in force is older (or unknown: it never reported)."""
    newest = RulesVersion.select(pw.fn.MAX(RulesVersion.version)).scalar()
    stores = []
    for s in Store.select().order_by(Store.code):
        stores.append(
            {
                "store": s.code,
                "version_in_force": s.rules_version,
                "refused_version": s.rules_refused_version,
                "refused_reason": s.rules_refused_reason,
                "reported_at": s.rules_status_at,
                "behind": newest is not None
                and (s.rules_version is None or s.rules_version < newest),
            }
        )
    return {"newest_version": newest, "stores": stores}
