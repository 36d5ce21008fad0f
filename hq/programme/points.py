"""Points at HQ (docs/programme/points.md): the nightly expiry, manual adjustments.

The expiry is set-based: for the chain's business day it posts one ``expiry`` ledger row
for every lot whose last day has passed and that still holds points, zeroes those lots
and lowers the members' points by the same sums, in one transaction, then sends each
changed member down. A lot that holds nothing is never touched again, so a re-run the
same day (or after a crash) posts nothing more.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import peewee as pw

from core.errors import ValidationError
from core.points import RedemptionClosed, check_redemption_open, expiry_for
from core.protocol import Change
from core.rules import Rules
from hq import audit
from hq.bulk_changes import log_changes_of
from hq.changes import ChangeSet, flush_changes
from hq.ledger import Book, Posting, credit_points, spend_points
from hq.models import (
    Authorization,
    ChangeRecord,
    Gift,
    GiftRedemption,
    LedgerEntry,
    Member,
    PointsLot,
    RulesVersion,
    is_postgres,
    utcnow,
)

EXPIRY_REF = "expiry:{day}"
_LOT, _LEDGER, _MEMBER = (m._meta.table_name for m in (PointsLot, LedgerEntry, Member))

# PostgreSQL: one statement, so one snapshot: the expiring lots locked, zeroed, their
# points posted to the ledger and taken from their members; the changed members' ids back.
EXPIRY_SQL_PG = f"""
WITH due AS (
    SELECT "lot_id", "member_id", "remaining" FROM "{_LOT}"
    WHERE "remaining" > 0 AND "expires_on" < %(day)s
    FOR UPDATE
), zeroed AS (
    UPDATE "{_LOT}" AS p SET "remaining" = 0 FROM due
    WHERE p."lot_id" = due."lot_id"
    RETURNING due."lot_id", due."member_id", due."remaining"
), posted AS (
    INSERT INTO "{_LEDGER}"
        ("member_id", "balance", "principal", "bonus", "points", "reason", "ref", "lot_id",
         "store", "seq", "at")
    SELECT "member_id", 'points', 0, 0, -"remaining", 'expiry', %(ref)s, "lot_id",
           NULL, NULL, %(at)s
    FROM zeroed
    RETURNING "member_id", "points"
)
UPDATE "{_MEMBER}" AS m SET "points" = m."points" + s."points", "updated_at" = %(at)s
FROM (SELECT "member_id", SUM("points") AS "points", COUNT(*) AS "lots" FROM posted
      GROUP BY "member_id") AS s
WHERE m."id" = s."member_id"
RETURNING m."id", s."lots"
"""  # noqa: S608

# SQLite: the same in three statements inside one IMMEDIATE transaction (one writer)
EXPIRY_SQL_SQLITE = (
    f'SELECT DISTINCT "member_id" FROM "{_LOT}" WHERE "remaining" > 0 AND "expires_on" < ?',  # noqa: S608
    f'INSERT INTO "{_LEDGER}" ("member_id", "balance", "principal", "bonus", "points",'  # noqa: S608
    ' "reason", "ref", "lot_id", "store", "seq", "at")'
    f' SELECT "member_id", \'points\', 0, 0, -"remaining", \'expiry\', ?, "lot_id", NULL, NULL, ?'
    f' FROM "{_LOT}" WHERE "remaining" > 0 AND "expires_on" < ?',
    f'UPDATE "{_MEMBER}" SET "points" = "points" - s."expired", "updated_at" = ?'  # noqa: S608
    f' FROM (SELECT "member_id", SUM("remaining") AS "expired" FROM "{_LOT}"'
    ' WHERE "remaining" > 0 AND "expires_on" < ? GROUP BY "member_id") AS s'
    f' WHERE "{_MEMBER}"."id" = s."member_id"',
    f'UPDATE "{_LOT}" SET "remaining" = 0 WHERE "remaining" > 0 AND "expires_on" < ?',  # noqa: S608
)


def _expire_rows(db: pw.Database, today: dt.date, now: dt.datetime) -> tuple[list[str], int]:
    """Run the set-based expiry inside the caller's transaction: (changed member ids, lots)."""
    day = today.isoformat()
    ref = EXPIRY_REF.format(day=day)
    if is_postgres(db):
        rows = db.execute_sql(EXPIRY_SQL_PG, {"day": day, "ref": ref, "at": now}).fetchall()
        return [row[0] for row in rows], sum(int(row[1]) for row in rows)
    select, insert, update_members, update_lots = EXPIRY_SQL_SQLITE
    members = [row[0] for row in db.execute_sql(select, (day,))]
    if not members:
        return [], 0
    at = LedgerEntry.at.db_value(now)
    lots = db.execute_sql(insert, (ref, at, day)).rowcount
    db.execute_sql(update_members, (Member.updated_at.db_value(now), day))
    db.execute_sql(update_lots, (day,))
    return members, lots


def _transaction(db: pw.Database, work: Any) -> Any:
    from hq.ingest import _transaction as run  # hq.ingest imports hq.apply, which imports us

    return run(db, work)


def expire_points(
    db: pw.Database, today: dt.date, now: dt.datetime | None = None
) -> dict[str, int]:
    """The nightly ``points-expiry`` for the business day ``today``: lots whose last day
    is before it lose what they hold (one ``expiry`` ledger row each, ref
    ``expiry:<day>``), their members' points drop by as much and go down to the stores.
    Idempotent: a re-run finds no lot past its last day that holds points."""
    now = now or utcnow()

    def work() -> dict[str, int]:
        members, lots = _expire_rows(db, today, now)
        log_changes_of(db, members, now)  # their full state, built by the database
        return {"expired_lots": lots, "members": len(members)}

    # on SQLite the transaction begins IMMEDIATE (hq.models.open_database): the only
    # writer meanwhile, so the statements see one state
    return _transaction(db, work)


# at most this many change records are pushed live after the expiry; beyond it only the
# last one is, and each store, seeing a gap after its cursor, pages through the rest
PUSH_ALL_UP_TO = 1000


def points_expiry_job(ctx: Any) -> dict[str, int]:
    """``hq.scheduler`` job ``points-expiry`` (nightly, for the chain's business day): the
    expiry, then its member changes pushed to the stores (best effort, as the CLI's
    commands do; a store that misses them gets them from the change log)."""
    from hq.changes import latest_change_seq
    from hq.cli import push_changes

    before = latest_change_seq()
    counts = expire_points(ctx.db, ctx.today(), ctx.clock())
    if counts["members"]:
        query = ChangeRecord.select().where(ChangeRecord.seq > before).order_by(ChangeRecord.seq)
        if counts["members"] > PUSH_ALL_UP_TO:
            query = query.order_by(ChangeRecord.seq.desc()).limit(1)
        records = [Change(r.seq, r.entity, r.key, r.op, r.data) for r in query]
        push_changes(ctx.config, sorted(records, key=lambda c: c.seq))
    return counts


# ---- manual adjustment ------------------------------------------------------------


def current_rules() -> Rules:
    row = RulesVersion.select().order_by(RulesVersion.version.desc()).first()
    return Rules.from_dict(row.data) if row is not None else Rules()


MAX_ADJUST = 100_000_000


def adjust_points(
    db: pw.Database,
    member_id: str,
    delta: int,
    *,
    by: str,
    reason: str,
    today: dt.date,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """积分调整 by HQ staff, with a reason, in the audit log (``points.adjust``).

    A positive ``delta`` makes a new lot (its last day by the rules: rolling expiry or
    the yearly reset); a negative one takes points from the lots that expire soonest and
    never takes the balance below zero (nor more than the member's usable lots hold).
    Ledger reason ``adjust``; the member goes down to the stores."""
    reason = audit.require_reason(reason, "积分调整")
    by = audit.require_actor(by)
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise ValidationError(
            "积分调整数量须为非零整数 (delta must be a non-zero integer)", field="delta"
        )
    if abs(delta) > MAX_ADJUST:
        raise ValidationError(f"积分调整数量过大 (at most {MAX_ADJUST})", field="delta")
    now = now or utcnow()

    def work() -> dict[str, Any]:
        book = Book(db)
        member = book.member(member_id)  # following merges; locked on PostgreSQL
        adjust_id = str(uuid.uuid4())
        posting = Posting("adjust", f"adjust:{adjust_id}", None, None, now)
        if delta > 0:
            rules = current_rules()
            expires_on = expiry_for(rules, today)
            lot_id = f"adjust:{adjust_id}"
            credit_points(member, delta, posting, lot_id, today, expires_on, book)
            detail: dict[str, Any] = {"lot_id": lot_id, "expires_on": expires_on.isoformat()}
        else:
            usable = sum(
                lot.remaining for lot in book.live_lots(member.id) if lot.expires_on >= today
            )
            take = -delta
            if take > min(usable, max(0, member.points)):
                raise ValidationError(
                    f"积分不足: 扣减 {take} 分, 可扣 {min(usable, max(0, member.points))} 分 "
                    "(an adjustment never takes points below zero)",
                    field="delta",
                )
            usable_lots = [
                (lot.lot_id, lot.remaining)
                for lot in book.live_lots(member.id)
                if lot.expires_on >= today
            ]
            taken = spend_points(member, take, posting, usable_lots, book)
            detail = {"lots": [[lot_id, n] for lot_id, n in taken]}
        book.flush()
        audit.record(
            db,
            by,
            "points.adjust",
            member.id,
            reason,
            at=now,
            delta=delta,
            points_after=member.points,
            **detail,
        )
        changes = ChangeSet()
        changes.member(member.id)
        pushed = flush_changes(db, changes, now)
        return {
            "member_id": member.id,
            "delta": delta,
            "points": member.points,
            **detail,
            "changes": pushed,
        }

    return _transaction(db, work)


# ---- the gift catalogue (积分兑换礼品) ---------------------------------------------------

GIFT_ID_MAX = 32


def gift_state(gift: Gift) -> dict[str, Any]:
    """A gift as it goes down (change entity ``gift``) and as ``gift list`` shows it."""
    return {
        "gift_id": gift.gift_id,
        "name": gift.name,
        "points": gift.points,
        "kind": gift.kind,
        "sku": gift.sku,
        "coupon_template": gift.coupon_template,
        "active": gift.active,
        "valid_from": gift.valid_from.isoformat() if gift.valid_from else None,
        "valid_to": gift.valid_to.isoformat() if gift.valid_to else None,
    }


def _check_gift(
    gift_id: str,
    name: str,
    points: int,
    kind: str,
    sku: str | None,
    template: str | None,
    valid_from: dt.date | None,
    valid_to: dt.date | None,
) -> None:
    from core.protocol import GIFT_KINDS, MAX_AMOUNT

    if not gift_id or len(gift_id) > GIFT_ID_MAX or not gift_id.isascii() or " " in gift_id:
        raise ValidationError(
            f"礼品编号须为 1..{GIFT_ID_MAX} 个字母数字 (gift id)", field="gift_id"
        )
    if not name.strip() or len(name) > 64:
        raise ValidationError("礼品名称须为 1..64 字 (name)", field="name")
    if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= MAX_AMOUNT:
        raise ValidationError("兑换积分须为正整数 (points must be positive)", field="points")
    if kind not in GIFT_KINDS:
        raise ValidationError(f"礼品类型须为 {'/'.join(GIFT_KINDS)} (kind)", field="kind")
    if kind == "goods" and (not sku or template):
        raise ValidationError("实物礼品须有商品编码 --sku, 不能有券模板 (goods: sku)", field="sku")
    if kind == "coupon" and (not template or sku):
        raise ValidationError(
            "券礼品须有券模板 --template, 不能有商品编码 (coupon: template)",
            field="coupon_template",
        )
    if valid_from and valid_to and valid_to < valid_from:
        raise ValidationError("有效期结束早于开始 (valid_to before valid_from)", field="valid_to")


def add_gift(
    db: pw.Database,
    gift_id: str,
    *,
    name: str,
    points: int,
    kind: str,
    sku: str | None = None,
    coupon_template: str | None = None,
    valid_from: dt.date | None = None,
    valid_to: dt.date | None = None,
    by: str,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    """Add a gift to the catalogue, or replace one (audited ``gift.add``); sent down."""
    by = audit.require_actor(by)
    _check_gift(gift_id, name, points, kind, sku, coupon_template, valid_from, valid_to)
    now = now or utcnow()

    def work() -> tuple[dict[str, Any], list[Any]]:
        row = {
            "gift_id": gift_id,
            "name": name.strip(),
            "points": points,
            "kind": kind,
            "sku": sku,
            "coupon_template": coupon_template,
            "active": True,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "updated_at": now,
            "updated_by": by,
        }
        Gift.insert(**row).on_conflict(
            conflict_target=[Gift.gift_id],
            update={getattr(Gift, k): v for k, v in row.items() if k != "gift_id"},
        ).execute()
        gift = Gift.get_by_id(gift_id)
        state = gift_state(gift)
        audit.record(db, by, "gift.add", gift_id, at=now, **state)
        changes = ChangeSet()
        changes.add("gift", gift_id, state)
        return state, flush_changes(db, changes, now)

    return _transaction(db, work)


def remove_gift(
    db: pw.Database, gift_id: str, *, by: str, now: dt.datetime | None = None
) -> tuple[dict[str, Any], list[Any]]:
    """Take a gift off the catalogue: it stays at HQ, inactive (late items from stores
    that redeemed it offline are still checked against it); stores stop offering it."""
    by = audit.require_actor(by)
    now = now or utcnow()

    def work() -> tuple[dict[str, Any], list[Any]]:
        gift = Gift.get_or_none(Gift.gift_id == gift_id)
        if gift is None:
            from core.errors import NotFound

            raise NotFound(f"礼品不存在: {gift_id}", field="gift_id")
        gift.active, gift.updated_at, gift.updated_by = False, now, by
        gift.save()
        state = gift_state(gift)
        audit.record(db, by, "gift.remove", gift_id, at=now)
        changes = ChangeSet()
        changes.add("gift", gift_id, state)
        return state, flush_changes(db, changes, now)

    return _transaction(db, work)


def list_gifts(include_removed: bool = False) -> list[dict[str, Any]]:
    query = Gift.select().order_by(Gift.gift_id)
    if not include_removed:
        query = query.where(Gift.active == True)  # noqa: E712
    return [gift_state(g) for g in query]


def gift_records() -> Any:
    """The catalogue as snapshot records' (key, data): every gift, removed ones too."""
    for gift in Gift.select().order_by(Gift.gift_id):
        yield gift.gift_id, gift_state(gift)


def apply_gift_redemption(ctx: Any, body: dict[str, Any]) -> None:
    """HQ's applier of ``gift_redemption`` (hq.apply.APPLIERS): the gift must be in HQ's
    catalogue, of the kind and SKU/template the till said, valid on the day, and the
    points exactly its price × qty (invariant 9), else the item is refused before
    anything is posted. Then the points are spent (the till's lots first), a held
    authorization settled, the redemption kept and the member sent down."""
    from core.errors import Conflict
    from hq.apply import _refused
    from hq.members import touch_through

    redemption_id = body["redemption_id"]
    if GiftRedemption.get_or_none(GiftRedemption.redemption_id == redemption_id) is not None:
        raise Conflict(
            f"gift redemption {redemption_id} was already ingested", field="redemption_id"
        )
    gift = Gift.get_or_none(Gift.gift_id == body["gift_id"])
    if gift is None:
        raise _refused("gift_id", f"礼品不在总部目录中 (gift {body['gift_id']} unknown at HQ)")
    if (
        body["kind"] != gift.kind
        or (body.get("sku") or None) != gift.sku
        or (body.get("coupon_template") or None) != gift.coupon_template
    ):
        raise _refused("kind", f"礼品类型/商品与总部目录不符 (gift {gift.gift_id})")
    qty, points = body["qty"], body["points_used"]
    if body["points_each"] != gift.points or points != gift.points * qty:
        raise _refused(
            "points_used",
            f"礼品积分与总部目录不符 (gift {gift.gift_id}: {gift.points} × {qty}, "
            f"till said {body['points_each']} × {qty} = {points})",
        )
    day = dt.date.fromisoformat(ctx.item.occurred_at[:10])
    if (gift.valid_from and day < gift.valid_from) or (gift.valid_to and day > gift.valid_to):
        raise _refused("gift_id", f"礼品 {gift.gift_id} 在 {day} 不可兑换 (outside its dates)")
    rules = ctx.cache.rules_for(ctx.item.rules_version)
    if rules is not None:
        try:
            check_redemption_open(rules, day)
        except RedemptionClosed as exc:
            raise _refused("points_used", exc.message) from None
    member = ctx.book.member(body["member_id"])
    ctx.book.insert(
        GiftRedemption,
        redemption_id=redemption_id,
        store=ctx.item.store,
        seq=ctx.item.seq,
        member_id=member.id,
        gift_id=gift.gift_id,
        qty=qty,
        points=points,
        occurred_at=ctx.item.occurred_at,
        body=body,
        ingested_at=ctx.now,
    )
    held = Authorization.get_or_none(
        (Authorization.store == ctx.item.store)
        & (Authorization.sale_id == redemption_id)
        & (Authorization.status == "held")
    )
    if held is not None:
        held.status = "settled"
        held.save(only=[Authorization.status])
    prefer = [(str(lot), int(n)) for lot, n in body.get("points_lots_used") or []]
    lock = rules.points_lock_days if rules is not None else 0
    posting = ctx.posting("gift", redemption_id)
    spend_points(member, points, posting, prefer, ctx.book, on=day, lock_days=lock)
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)
