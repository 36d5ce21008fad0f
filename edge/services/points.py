"""Points at the till (docs/programme/points.md): a member's available and locked points,
the gift catalogue, and redeeming points for a gift (积分兑换).

A redemption spends points as the points tender does: the redemption window first, an
online authorization from HQ with its timeout (keyed by the redemption id), else the
offline policy for points; then the lots (soonest-expiring first, never locked ones),
the ledger (reason ``gift``), the redemption and ONE outbox item ``gift_redemption`` in
one SQLite transaction, and a slip to print.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.errors import Conflict, Forbidden, InsufficientFunds, NotFound, ValidationError
from core.ids import uuid7
from core.points import Lot, balance, check_redemption_open, consume, points_balance
from core.protocol import MAX_GIFT_QTY
from core.receipt import mask_name
from edge.models import Gift, GiftRedemption, Member
from edge.services import members as member_svc
from edge.services.context import SpendRequest, Till
from edge.services.member_link import self_service_url  # -- memberpage
from edge.services.outbox import enqueue
from edge.services.sales import (
    _LOT_TAKE_SQL,
    _require_active,
    check_offline_policy,
)
from edge.services.staff import SignedIn, verify_counted

_ALL_LOTS_SQL = (
    'SELECT "lot_id", "earned_on", "expires_on", "remaining" FROM "points_lot" '
    'WHERE "member_id" = ? AND "remaining" > 0'
)
_MEMBER_STATE_SQL = 'SELECT "status", "points_debt" FROM "member" WHERE "id" = ?'
_LEDGER_SQL = (
    'INSERT INTO "ledger" ("member_id", "account", "delta", "reason", "ref", "occurred_at", '
    '"day", "offline") VALUES (?, ?, ?, ?, ?, ?, ?, ?)'
)


def _lots(member_id: str) -> list[Lot]:
    date = dt.date.fromisoformat
    return [
        Lot(lot_id, date(earned), date(expires), remaining)
        for lot_id, earned, expires, remaining in Member._meta.database.execute_sql(
            _ALL_LOTS_SQL, (member_id,)
        )
    ]


def member_points(till: Till, member: Member, today: dt.date | None = None) -> dict[str, Any]:
    """What the member's points are today: available (usable now), locked (a sale's
    return window, usable from ``unlocks_on``), the debt, and whether redemption is open."""
    today = today or till.now().date()
    rules = till.rules()
    got = points_balance(rules, _lots(member.id), today)
    try:
        check_redemption_open(rules, today)
        closed = None
    except Forbidden as exc:
        closed = exc.message
    return {
        "member_id": member.id,
        "available": got.available - member.points_debt,
        "locked": got.locked,
        "unlocks_on": got.unlocks_on.isoformat() if got.unlocks_on else None,
        "debt": member.points_debt,
        "redemption_open": closed is None,
        "redemption_message": closed,
    }


# ---- the gift catalogue -----------------------------------------------------------


def gift_dict(gift: Gift) -> dict[str, Any]:
    return {
        "gift_id": gift.gift_id,
        "name": gift.name,
        "points": gift.points,
        "kind": gift.kind,
        "sku": gift.sku,
        "coupon_template": gift.coupon_template,
        "valid_from": gift.valid_from,
        "valid_to": gift.valid_to,
    }


def _offered(gift: Gift, today: dt.date) -> bool:
    day = today.isoformat()
    return (
        gift.active
        and (not gift.valid_from or gift.valid_from <= day)
        and (not gift.valid_to or day <= gift.valid_to)
    )


def gifts(till: Till, today: dt.date | None = None) -> list[dict[str, Any]]:
    """The gifts on offer today, cheapest first."""
    today = today or till.now().date()
    rows = Gift.select().where(Gift.active == True).order_by(Gift.points, Gift.gift_id)  # noqa: E712
    return [gift_dict(g) for g in rows if _offered(g, today)]


# ---- redeeming ----------------------------------------------------------------------


def check_request(data: dict[str, Any]) -> tuple[str, int, str | None, str | None]:
    """{gift_id, qty?, password?, redemption_id?} of a redemption request, checked."""
    gift_id = data.get("gift_id")
    if not isinstance(gift_id, str) or not gift_id or len(gift_id) > 32:
        raise ValidationError("礼品编号 gift_id 须为文字 (gift_id is required)", field="gift_id")
    qty = data.get("qty", 1)
    if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_GIFT_QTY:
        raise ValidationError(f"兑换数量 qty 须为 1..{MAX_GIFT_QTY} 的整数 (qty)", field="qty")
    password = data.get("password")
    if password is not None and (not isinstance(password, str) or not 0 < len(password) <= 64):
        raise ValidationError("会员密码 password 须为文字 (password)", field="password")
    rid = data.get("redemption_id")
    if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= 64):
        raise ValidationError("redemption_id 须为文字 (redemption_id)", field="redemption_id")
    return gift_id, qty, password, rid


def _result(done: GiftRedemption, replayed: bool) -> dict[str, Any]:
    return {
        "redemption_id": done.id,
        "member_id": done.member_id,
        "gift_id": done.gift_id,
        "qty": done.qty,
        "points_used": done.points,
        "offline": done.body["offline"],
        "outbox_seq": done.body.get("outbox_seq"),
        "coupon_codes": done.body.get("coupon_codes", []),
        "replayed": replayed,
        "redemption": done.body,
        "receipt": done.receipt,
    }


def _replayed(done: GiftRedemption, member_id: str, gift_id: str, qty: int) -> dict[str, Any]:
    if (done.member_id, done.gift_id, done.qty) != (member_id, gift_id, qty):
        raise Conflict(
            f"兑换单号 {done.id} 已用于另一次兑换 (redemption id reused)", field="redemption_id"
        )
    return _result(done, True)


def redeem_gift(
    till: Till,
    staff: SignedIn,
    member_id: str,
    gift_id: str,
    qty: int = 1,
    password: str | None = None,
    redemption_id: str | None = None,
) -> dict[str, Any]:
    """Redeem ``qty`` of a gift with the member's points (see the module's docstring)."""
    if redemption_id:
        done = GiftRedemption.get_or_none(GiftRedemption.id == redemption_id)
        if done is not None:
            return _replayed(done, member_svc.resolve(member_id).id, gift_id, qty)
    member = member_svc.resolve(member_id)
    _require_active(member.status)
    rules = till.rules()
    now = till.now()
    today, day = now.date(), now.date().isoformat()
    gift = Gift.get_or_none(Gift.gift_id == gift_id)
    if gift is None or not gift.active:
        raise NotFound(f"礼品 {gift_id} 不在兑换目录中 (no such gift)", field="gift_id")
    if not _offered(gift, today):
        raise Forbidden(
            f"礼品「{gift.name}」兑换期为 {gift.valid_from or '...'} 至 {gift.valid_to or '...'}"
            " (gift not redeemable today)",
            field="gift_id",
        )
    check_redemption_open(rules, today)
    if password is not None:
        if not member.password_hash:
            raise Forbidden("会员未设置密码 (member has no password)", field="password")
        if not verify_counted(
            till,
            f"password_failures:{member.id}",
            "会员密码",
            password,
            member.password_hash,
            "password",
        ):
            raise Forbidden("会员密码错误 (wrong member password)", field="password")
    points = gift.points * qty
    rid = redemption_id or uuid7()
    decision = till.authorizer.authorize(SpendRequest(rid, member.id, 0, points, day))
    if decision.online and not decision.approved:
        raise InsufficientFunds(f"总部拒绝授权: {decision.reason}", field="points")
    offline = not decision.online
    with till.db.atomic():
        if redemption_id:
            done = GiftRedemption.get_or_none(GiftRedemption.id == redemption_id)
            if done is not None:
                return _replayed(done, member.id, gift_id, qty)
        row = till.db.execute_sql(_MEMBER_STATE_SQL, (member.id,)).fetchone()
        _require_active(row[0])
        if offline:
            check_offline_policy(till, member.id, 0, points, day)
        lots = member_svc.live_lots(member.id, today)
        if row[1] > 0:  # a points debt: what the lots hold is not all the member's
            usable = balance(lots, today, rules.points_lock_days) - row[1]
            if usable < points:
                raise InsufficientFunds(
                    f"积分不足: 需要 {points} 分, 可用 {max(0, usable)} 分 (积分欠款 {row[1]})",
                    field="points",
                )
        taken = consume(lots, points, today, rules.points_lock_days)
        at = now.isoformat(timespec="milliseconds")
        for lot_id, n in taken:
            till.db.execute_sql(_LOT_TAKE_SQL, (n, lot_id))
        till.db.execute_sql(
            _LEDGER_SQL, (member.id, "points", -points, "gift", rid, at, day, offline)
        )
        coupon_codes: list[str] = []
        if gift.kind == "coupon":
            coupon_codes = _issue_coupons(till, member.id, gift, qty, rid, staff)
        body = {
            "redemption_id": rid,
            "member_id": member.id,
            "gift_id": gift.gift_id,
            "name": gift.name,
            "kind": gift.kind,
            "qty": qty,
            "points_each": gift.points,
            "points_used": points,
            "points_lots_used": [[lot_id, n] for lot_id, n in taken],
            "sku": gift.sku,
            "coupon_template": gift.coupon_template,
            "coupon_codes": coupon_codes,
            "cashier": staff.code,
            "offline": offline,
            "authorization_id": decision.authorization_id,
        }
        item = enqueue(till, "gift_redemption", dict(body), at, rules.version)
        receipt = slip(till, body, member, staff, at, today)
        body["outbox_seq"] = item.seq  # kept with the redemption here, not sent
        done = GiftRedemption.create(
            id=rid,
            member_id=member.id,
            gift_id=gift.gift_id,
            qty=qty,
            points=points,
            cashier=staff.code,
            occurred_at=at,
            body=body,
            receipt=receipt,
        )
    return _result(done, False)


def _issue_coupons(
    till: Till, member_id: str, gift: Gift, qty: int, ref: str, staff: SignedIn
) -> list[str]:
    """A coupon gift: the coupons part's ``issue_at_till`` issues each coupon (its own
    records, in this transaction); the codes go in the redemption for the slip."""
    from edge.services.coupons import issue_at_till  # the coupons part (docs/programme/coupons.md)

    codes = []
    for _ in range(qty):
        issued = issue_at_till(
            till, member_id, gift.coupon_template, source="gift", ref=ref, cashier=staff.code
        )
        codes.append(str(issued.get("code", "")))
    return codes


def slip(
    till: Till, body: dict[str, Any], member: Member, staff: SignedIn, at: str, today: dt.date
) -> dict[str, Any]:
    """The printed slip (a ``core.receipt.Receipt`` as a dict): the gift, the points paid
    and the points left."""
    from edge.services.receipts import local_time

    balance = member_svc.points_balance(member.id, today) - member.points_debt
    lines = [
        {
            "name": body["name"],
            "qty": body["qty"],
            "unit_price": 0,
            "amount": 0,
            "discount": 0,
            "note": f"{body['points_each']}积分/件",
        }
    ]
    footer = [f"本次使用积分 {body['points_used']}", f"剩余积分 {balance}"]
    footer += [f"券号 {code}" for code in body["coupon_codes"]]
    if body["offline"]:
        footer.append("离线兑换, 联网后同步")
    return {
        "kind": "gift",
        "title": "积分兑换单",
        "store_name": till.config.store.name,
        "store_code": till.store,
        "document_no": body["redemption_id"],
        "occurred_at": local_time(at),
        "cashier": staff.name,
        "lines": lines,
        "subtotal": 0,
        "discount_total": 0,
        "rounding": 0,
        "total": 0,
        "tenders": [
            {"kind": "points", "label": "积分", "amount": 0, "points": body["points_used"]}
        ],
        "change": 0,
        "member": {
            "masked_name": mask_name(member.name),
            "masked_phone": f"*******{member.phone_tail}" if member.phone_tail else "",
            "card_no_tail": "",
            "tier": member.tier or member.card_type,
            "points_earned": 0,
            "points_balance": balance,
            "stored_value_balance": member.sv_principal + member.sv_bonus,
            "self_service_url": self_service_url(till, member.id),  # -- memberpage
        },
        "footer": footer,
        "reprint": False,
        "opens_drawer": False,
        "extra": {"gift_id": body["gift_id"]},
    }
