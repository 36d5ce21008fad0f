"""Online authorization of balance spends, idempotent by (store, sale id).

An approved request holds the amounts (available = balance - active holds); the
sale item later settles the hold instead of spending twice. Every answer is stored,
so a retry of the same request gets the same answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import InsufficientFunds, NotFound
from core.ids import uuid7
from core.protocol import AuthRequest, AuthResponse, Change
from core.rules import Rules
from core.stored_value import Split, spend_split
from hq.changes import ChangeSet, coupon_state, flush_changes
from hq.ingest import _transaction
from hq.ledger import resolve_member
from hq.models import Authorization, Coupon, Member, RulesVersion, is_postgres

HOLD_TTL = dt.timedelta(minutes=30)


def _held(member_id: str, now: dt.datetime) -> dict[str, int]:
    row = (
        Authorization.select(
            pw.fn.COALESCE(pw.fn.SUM(Authorization.sv_principal), 0).alias("principal"),
            pw.fn.COALESCE(pw.fn.SUM(Authorization.sv_bonus), 0).alias("bonus"),
            pw.fn.COALESCE(pw.fn.SUM(Authorization.points), 0).alias("points"),
        )
        .where(
            (Authorization.member_id == member_id)
            & (Authorization.status == "held")
            & (Authorization.expires_at > now)
        )
        .dicts()
        .get()
    )
    return {k: int(v) for k, v in row.items()}


def available(member: Member, now: dt.datetime) -> dict[str, Any]:
    held = _held(member.id, now)
    return {
        "stored_value": {
            "principal": member.sv_principal - held["principal"],
            "bonus": member.sv_bonus - held["bonus"],
        },
        "points": member.points - held["points"],
    }


def _same_request(auth: Authorization, req: AuthRequest) -> bool:
    return (
        auth.stored_value == req.stored_value
        and auth.points == req.points
        and sorted(auth.coupons or []) == sorted(req.coupons)
    )


def authorize_spend(
    db: pw.Database, req: AuthRequest, now: dt.datetime
) -> tuple[AuthResponse, list[Change]]:
    """Hold or release the spends of one sale; the same sale id always gets the same answer.

    Returns the answer and the change records (coupons held/released) to push."""

    def work() -> tuple[AuthResponse, list[Change]]:
        changes = ChangeSet()
        response = _answer(changes)
        return response, flush_changes(db, changes, now)

    def _answer(changes: ChangeSet) -> AuthResponse:
        if req.action == "release":
            return _release(_earlier(req), req, changes)
        member, existing, rules_key = _lock_member(db, req)
        if existing is not None:
            if not _same_request(existing, req):
                return AuthResponse(
                    req.sale_id,
                    "declined",
                    None,
                    "conflict",
                    "同一销售单的授权金额不一致 (sale id reused with other amounts)",
                )
            return AuthResponse(**{k: v for k, v in existing.response.items() if k != "v"})
        if member is None:
            return _decline(req, req.member_id, "not_found", f"会员不存在: {req.member_id}", now)
        return _hold(db, req, member, rules_key, now, changes)

    return _transaction(db, work)


def _decline(
    req: AuthRequest, member_id: str, code: str, reason: str, now: dt.datetime
) -> AuthResponse:
    response = AuthResponse(req.sale_id, "declined", None, code, reason)
    Authorization.create(
        id=uuid7(),
        store=req.store,
        sale_id=req.sale_id,
        member_id=member_id,
        stored_value=req.stored_value,
        points=req.points,
        coupons=list(req.coupons),
        status="declined",
        response=response.to_dict(),
        created_at=now,
        expires_at=now,
    )
    return response


RulesKey = tuple[int, Any] | None  # (version, published_at) of the latest rules, None if none

_spend_orders: dict[RulesKey, str] = {None: "proportional"}


def _spend_order(key: RulesKey) -> str:
    """The latest published rules' stored-value spend order: the one the till will use.

    Read and parsed once per rules version and publication (a version published again
    gets a new ``published_at``, so it is read again)."""
    order = _spend_orders.get(key)
    if order is None:
        row = RulesVersion.get_by_id(key[0])  # type: ignore[index]
        order = Rules.from_dict(row.data).stored_value_spend
        _spend_orders.clear()  # only the latest version is ever asked for again
        _spend_orders.update({None: "proportional", key: order})
    return order


def _earlier(req: AuthRequest) -> Authorization | None:
    """The sale's earlier authorization, if any."""
    return Authorization.get_or_none(
        (Authorization.store == req.store) & (Authorization.sale_id == req.sale_id)
    )


def _lock_member(
    db: pw.Database, req: AuthRequest
) -> tuple[Member | None, Authorization | None, RulesKey]:
    """In one statement: the request's member, locked for update on PostgreSQL; the
    sale's earlier authorization; the latest rules version's key. The member is None
    when no live member has that id (none, or a merge chain that ends nowhere); the
    earlier authorization is then read alone.

    The sum of the member's live holds is NOT read here: under READ COMMITTED a
    statement that waited for the lock still reads with the snapshot it started with,
    so it would miss a hold committed by the transaction it waited for. It is read in
    the next statement, after the lock is held (``available``)."""
    earlier = Authorization.alias("earlier")
    latest = RulesVersion.select(RulesVersion.version).order_by(RulesVersion.version.desc())
    published = RulesVersion.select(RulesVersion.published_at).order_by(RulesVersion.version.desc())
    query = (
        Member.select(
            Member,
            earlier,
            latest.limit(1).alias("rules_version"),
            published.limit(1).alias("rules_published_at"),
        )
        .join(
            earlier,
            pw.JOIN.LEFT_OUTER,
            on=(earlier.store == req.store) & (earlier.sale_id == req.sale_id),
            attr="earlier",
        )
        .where(Member.id == req.member_id)
    )
    if is_postgres(db):
        query = query.for_update(of=Member)
    member = query.get_or_none()
    if member is None:
        return None, _earlier(req), None
    existing = getattr(member, "earlier", None)
    if existing is not None and existing.id is None:  # the outer join found none
        existing = None
    version = member.rules_version
    rules_key = None if version is None else (version, member.rules_published_at)
    if member.status == "merged" and member.merged_into:
        try:
            member = resolve_member(db, member.merged_into)
        except NotFound:
            return None, existing, rules_key
    return member, existing, rules_key


def _hold(
    db: pw.Database,
    req: AuthRequest,
    member: Member,
    rules_key: RulesKey,
    now: dt.datetime,
    changes: ChangeSet,
) -> AuthResponse:
    avail = available(member, now)
    sv = avail["stored_value"]
    try:
        split = spend_split(
            Split(max(0, sv["principal"]), max(0, sv["bonus"])),
            req.stored_value,
            _spend_order(rules_key),
        )
    except InsufficientFunds as exc:
        return _decline(req, member.id, "insufficient", exc.message, now)
    if req.points > avail["points"]:
        return _decline(
            req,
            member.id,
            "insufficient",
            f"积分不足: 需要 {req.points} 分, 可用 {max(0, avail['points'])} 分",
            now,
        )
    coupons = []
    for code in req.coupons:
        coupon = Coupon.get_or_none(Coupon.code == code)
        if coupon is None:
            return _decline(req, member.id, "not_found", f"优惠券不存在: {code}", now)
        if coupon.status != "issued" or (coupon.member_id and coupon.member_id != member.id):
            return _decline(req, member.id, "coupon_unusable", f"优惠券不可用: {code}", now)
        if coupon.expires_on and coupon.expires_on < now.date():
            return _decline(req, member.id, "coupon_unusable", f"优惠券已过期: {code}", now)
        coupons.append(coupon)
    auth_id = uuid7()
    balances = {
        "stored_value": {
            "principal": sv["principal"] - split.principal,
            "bonus": sv["bonus"] - split.bonus,
        },
        "points": avail["points"] - req.points,
    }
    response = AuthResponse(
        req.sale_id,
        "approved",
        auth_id,
        None,
        None,
        {"principal": split.principal, "bonus": split.bonus},
        balances,
    )
    Authorization.create(
        id=auth_id,
        store=req.store,
        sale_id=req.sale_id,
        member_id=member.id,
        stored_value=req.stored_value,
        sv_principal=split.principal,
        sv_bonus=split.bonus,
        points=req.points,
        coupons=list(req.coupons),
        status="held",
        response=response.to_dict(),
        created_at=now,
        expires_at=now + HOLD_TTL,
    )
    for coupon in coupons:
        coupon.status = "held"
        coupon.held_for = req.sale_id
        coupon.save()
        changes.add("coupon", coupon.code, coupon_state(coupon))
    return response


def _release(existing: Authorization | None, req: AuthRequest, changes: ChangeSet) -> AuthResponse:
    if existing is None:
        return AuthResponse(req.sale_id, "released", None, "not_found", "no hold for this sale")
    if existing.status == "held":
        existing.status = "released"
        existing.save(only=[Authorization.status])
        for code in existing.coupons or []:
            coupon = Coupon.get_or_none(Coupon.code == code)
            if coupon is not None and coupon.status == "held":
                coupon.status = "issued"
                coupon.held_for = None
                coupon.save()
                changes.add("coupon", coupon.code, coupon_state(coupon))
    return AuthResponse(req.sale_id, "released", existing.id, None, None)
