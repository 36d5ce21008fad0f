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
from hq.models import Authorization, Coupon, Member, RulesVersion

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
        existing = Authorization.get_or_none(
            (Authorization.store == req.store) & (Authorization.sale_id == req.sale_id)
        )
        if req.action == "release":
            return _release(existing, req, changes)
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
        return _hold(db, req, now, changes)

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


def _spend_order() -> str:
    """The latest published rules' stored-value spend order: the one the till will use."""
    latest = RulesVersion.select().order_by(RulesVersion.version.desc()).first()
    return Rules.from_dict(latest.data).stored_value_spend if latest else "proportional"


def _hold(db: pw.Database, req: AuthRequest, now: dt.datetime, changes: ChangeSet) -> AuthResponse:
    try:
        member = resolve_member(db, req.member_id)
    except NotFound:
        return _decline(req, req.member_id, "not_found", f"会员不存在: {req.member_id}", now)
    avail = available(member, now)
    sv = avail["stored_value"]
    try:
        split = spend_split(
            Split(max(0, sv["principal"]), max(0, sv["bonus"])),
            req.stored_value,
            _spend_order(),
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
