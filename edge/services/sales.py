"""Checkout, returns and top-ups: each one SQLite transaction with one outbox message."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from peewee import fn

from core.errors import Conflict, Forbidden, InsufficientFunds, NotFound, ValidationError
from core.ids import is_uuid, uuid7
from core.money import MAX_AMOUNT, MAX_QTY, allocate, format_yuan
from core.points import (
    RedemptionClosed,
    check_redemption_open,
    consume,
    expiry_for,
    fen_for_points,
    points_earned,
    points_for_fen,
    sale_points_earned,
)
from core.pricing import LineInput, MemberContext, PricedBasket, price_basket, share_of
from core.protocol import json_text
from core.rules import Rules
from core.stored_value import Split, refund_split, spend_split, topup_split
from core.tenders import TENDER_KINDS, Settlement, Tender, settle, sum_by_kind
from edge.models import Ledger, Member, PointsLot, Product, Sale, SaleLine, SaleReturn, TopUp
from edge.services import cards as cards_svc
from edge.services import coupons as coupon_svc
from edge.services import maintainers, receipts
from edge.services import members as member_svc
from edge.services.context import SpendDecision, SpendRequest, Till
from edge.services.offline import policy_in_force
from edge.services.outbox import enqueue
from edge.services.staff import SignedIn, require_manager, verify_counted

MAX_LINES = 200


# ---- request parsing ----------------------------------------------------------------


def _int(
    data: dict[str, Any],
    key: str,
    where: str,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = MAX_AMOUNT,
) -> int:
    value = data.get(key, default)
    label = _LABELS.get(key, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"{label}须为整数 ({where}{key} must be an integer)", field=f"{where}{key}"
        )
    if not minimum <= value <= maximum:
        low, high = (
            (format_yuan(minimum), format_yuan(maximum))
            if key in _MONEY_KEYS
            else (str(minimum), str(maximum))
        )
        raise ValidationError(
            f"{label}须在 {low} 到 {high} 之间, 现为 {_shown(key, value)}"
            f" ({where}{key} must be from {minimum} to {maximum})",
            field=f"{where}{key}",
        )
    return value


# what the cashier calls each figure a basket or a tender carries
_LABELS = {
    "qty": "数量",
    "line_discount": "单品优惠金额",
    "order_discount_rate": "整单折扣率 (千分比)",
    "manual_adjustment": "折让金额",
    "amount": "金额",
}
_MONEY_KEYS = frozenset({"line_discount", "manual_adjustment", "amount"})


def _shown(key: str, value: int) -> str:
    """A refused figure as the cashier typed it (money in yuan); a huge one cut short."""
    if key in _MONEY_KEYS and abs(value) <= MAX_AMOUNT * 100:
        return format_yuan(value)
    text = str(value)
    return text if len(text) <= 16 else text[:16] + "…"


def _optional_id(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not is_uuid(value):
        raise ValidationError(f"{key} 须为 UUID ({key} must be a UUID)", field=key)
    return value


MEMBER_KEYS = ("card_no", "member_id", "phone")


def member_ref(value: Any) -> dict[str, str]:
    """``{card_no | member_id | phone: text}`` as a till sends it, checked: the first one given."""
    if not isinstance(value, dict):
        raise ValidationError(_NO_MEMBER, field="member")
    for key in MEMBER_KEYS:
        given = value.get(key)
        if given is not None and not isinstance(given, str):
            raise ValidationError(
                f"会员{_MEMBER_LABELS[key]}须为文字 (member.{key} must be a string)",
                field=f"member.{key}",
            )
    for key in MEMBER_KEYS:
        if (value.get(key) or "").strip():
            return {key: member_svc.check_code(value[key].strip(), f"member.{key}")}
    raise ValidationError(_NO_MEMBER, field="member")


_NO_MEMBER = "请用卡号、会员编号或手机号指明会员 (member must name card_no, member_id or phone)"
_MEMBER_LABELS = {"card_no": "卡号", "member_id": "编号", "phone": "手机号"}


@dataclass(frozen=True)
class BasketRequest:
    member: dict[str, str] | None
    lines: tuple[tuple[str, int, int], ...]  # (sku or barcode, qty, line discount fen)
    order_discount_rate: int
    manual_adjustment: int
    manager: dict[str, Any] | None
    coupons: tuple[str, ...] = ()  # coupon codes claimed (docs/programme/coupons.md)

    @classmethod
    def from_request(cls, data: Any) -> BasketRequest:
        if not isinstance(data, dict):
            raise ValidationError("请求须为 JSON 对象 (request body must be a JSON object)")
        member = member_ref(data.get("member")) if data.get("member") is not None else None
        raw_lines = data.get("lines")
        if not isinstance(raw_lines, list) or not raw_lines:
            raise ValidationError(
                "购物篮是空的, 请先扫描商品 (lines must be a non-empty list)", field="lines"
            )
        if len(raw_lines) > MAX_LINES:
            raise ValidationError(
                f"一单最多 {MAX_LINES} 行商品 (at most {MAX_LINES} lines)", field="lines"
            )
        lines = []
        for i, line in enumerate(raw_lines):
            where = f"lines[{i}]."
            if not isinstance(line, dict):
                raise ValidationError(
                    f"第 {i + 1} 行须为对象 (lines[{i}] must be an object)", field=f"lines[{i}]"
                )
            key = "sku" if line.get("sku") else "barcode"
            code = line.get(key)
            if not isinstance(code, str) or not code:
                raise ValidationError(
                    f"第 {i + 1} 行缺少商品编码或条码 ({where}sku or barcode is required)",
                    field=f"{where}{key}",
                )
            member_svc.check_code(code, f"{where}{key}")
            lines.append(
                (
                    code,
                    _int(line, "qty", where, 1, 1, MAX_QTY),
                    _int(line, "line_discount", where, 0),
                )
            )
        rate = _int(data, "order_discount_rate", "", 1000)
        if rate > 1000:
            raise ValidationError(
                "整单折扣率为千分比, 最多 1000 (不打折) (order_discount_rate is permille, at most 1000)",
                field="order_discount_rate",
            )
        manager = data.get("manager")
        if manager is not None and not isinstance(manager, dict):
            raise ValidationError(
                "店长授权须含店长编号和PIN (manager must be an object {code, pin})", field="manager"
            )
        return cls(
            member,
            tuple(lines),
            rate,
            _int(data, "manual_adjustment", "", 0),
            manager,
            coupon_svc.parse_codes(data.get("coupons")),
        )


@dataclass(frozen=True)
class CheckoutRequest:
    basket: BasketRequest
    tenders: tuple[Tender, ...]
    sale_id: str | None
    member_password: str | None
    served_by: str | None = None  # -- staff: the serving staff (导购), checked at checkout

    @classmethod
    def from_request(cls, data: Any) -> CheckoutRequest:
        basket = BasketRequest.from_request(data)
        raw = data.get("tenders")
        if not isinstance(raw, list) or not raw:
            raise ValidationError(
                "请填写付款金额 (tenders must be a non-empty list)", field="tenders"
            )
        tenders = []
        for i, t in enumerate(raw):
            if not isinstance(t, dict):
                raise ValidationError(
                    f"第 {i + 1} 笔付款须为对象 (tenders[{i}] must be an object)",
                    field=f"tenders[{i}]",
                )
            kind = t.get("kind")
            if not isinstance(kind, str) or kind not in TENDER_KINDS:
                raise ValidationError(
                    f"不支持的付款方式 (tenders[{i}].kind must be one of {sorted(TENDER_KINDS)})",
                    field=f"tenders[{i}].kind",
                )
            tenders.append(Tender(kind, _int(t, "amount", f"tenders[{i}].", None, 1)))
        password = data.get("member_password")
        if password is not None and not isinstance(password, str):
            raise ValidationError(
                "会员密码须为文字 (member_password must be a string)", field="member_password"
            )
        served_by = data.get("served_by")  # -- staff
        if served_by is not None and not isinstance(served_by, str):
            raise ValidationError("导购编号须为文字 (served_by must be a text)", field="served_by")
        return cls(
            basket, tuple(tenders), _optional_id(data, "sale_id"), password, served_by or None
        )


# ---- pricing ------------------------------------------------------------------------


def find_member(till: Till, ref: dict[str, str] | None) -> Member | None:
    if not ref:
        return None
    if ref.get("card_no"):
        member = member_svc.by_card(ref["card_no"])
    elif ref.get("member_id"):
        member = member_svc.resolve(ref["member_id"])
    else:
        member = member_svc.by_phone(till, ref["phone"])
    _require_active(member.status)
    return member


def _require_active(status: str) -> None:
    if status != "active":
        raise Forbidden(f"会员状态为 {status}, 不能消费 (member not active)", field="member")


class _Product(NamedTuple):
    sku: str
    barcode: str | None
    name: str
    price: int
    promo_price: int | None
    no_member_discount: bool
    no_points: bool
    active: bool


@lru_cache(maxsize=64)
def _products_sql(n: int) -> str:
    marks = ", ".join("?" * n)
    return (
        'SELECT "sku", "barcode", "name", "price", "promo_price", "no_member_discount", '  # noqa: S608
        f'"no_points", "active" FROM "product" WHERE "sku" IN ({marks}) OR "barcode" IN ({marks})'
    )


def _products(codes: list[str]) -> dict[str, _Product]:
    """The product each code names, by SKU first, else by barcode: one query per basket."""
    unique = sorted(set(codes))
    rows = [
        _Product(sku, barcode, name, price, promo, bool(no_md), bool(no_pts), bool(active))
        for sku, barcode, name, price, promo, no_md, no_pts, active in Product._meta.database.execute_sql(
            _products_sql(len(unique)), unique + unique
        )
    ]
    by_sku = {p.sku: p for p in rows}
    by_barcode = {p.barcode: p for p in rows if p.barcode is not None}
    found = {}
    for code in unique:
        product = by_sku.get(code) or by_barcode.get(code)
        if product is not None:
            found[code] = product
    return found


def price(
    till: Till,
    req: BasketRequest,
    member: Member | None,
    rules: Rules | None = None,
    day: dt.date | None = None,
) -> tuple[PricedBasket, list[dict[str, Any]]]:
    """``day``: the sale's business day (its member-day rate); default today."""
    rules = rules or till.rules()
    products = _products([code for code, _, _ in req.lines])
    lines, inputs = [], []
    for code, qty, line_discount in req.lines:
        p = products.get(code)
        if p is None or not p.active:
            raise NotFound(f"商品 {code} 不存在或已下架 (unknown product)", field="lines", sku=code)
        line = LineInput(
            p.sku,
            p.name,
            qty,
            p.price,
            p.promo_price,
            line_discount,
            p.no_member_discount,
            p.no_points,
        )
        lines.append(line)
        inputs.append(
            {
                "sku": p.sku,
                "name": p.name,
                "qty": qty,
                "unit_price": p.price,
                "promo_price": p.promo_price,
                "line_discount": line_discount,
                "no_member_discount": p.no_member_discount,
                "no_points": p.no_points,
            }
        )
    # -- cards: a lapsed card product prices as its fallback (edge/services/cards.py)
    card_type = cards_svc.in_force(till, member, till.now().date(), rules) if member else None
    ctx = MemberContext(member.id, card_type, member.tier) if member else None
    coupons = coupon_svc.claimed(till, req.coupons, member.id if member else None)
    if coupons:  # coupons may target categories: the lines carry theirs (only then)
        cats = coupon_svc.categories([line.sku for line in lines])
        lines = [dataclasses.replace(line, category=cats.get(line.sku, "")) for line in lines]
        for given in inputs:
            given["category"] = cats.get(given["sku"], "")
    basket = price_basket(
        rules,
        lines,
        ctx,
        req.order_discount_rate,
        req.manual_adjustment,
        till.rounding(rules),
        coupons,
        day=day or till.now().date(),
    )
    return basket, inputs


def quote(till: Till, req: BasketRequest, staff: SignedIn | None = None) -> dict[str, Any]:
    """The priced basket; ``manager_needed`` names what checkout will ask a manager to
    approve (null once a manager's code+PIN in the request has been checked, or when the
    signed-in ``staff`` is a manager), so the screen asks at the discount, not at paying."""
    member = find_member(till, req.member)
    basket, _ = price(till, req, member)
    action = manager_needed_for(till, staff, req, basket)
    if action and req.manager is not None and staff is not None:
        require_manager(till, staff, req.manager, action)  # a wrong code or PIN: 403 now
        action = None
    today = till.now().date()
    out = basket_dict(basket)
    out["points_preview"] = (
        points_earned(
            till.rules(), cards_svc.in_force(till, member, today), basket.points_base, today
        )
        if member
        else 0
    )
    out["member"] = member_svc.summary(till, member, today) if member else None
    out["manager_needed"] = action
    out["points_tender"] = _points_tender(till.rules(), out["member"], basket.total, today)
    return out


def _points_tender(
    rules: Rules, member: dict[str, Any] | None, total: int, today: dt.date
) -> dict[str, Any] | None:
    """What the member's points can pay of this basket, for the payment panel: the
    points, what they are worth, the most they may pay (never past the total), and
    whether points may be spent today (the rules' redemption windows)."""
    if member is None:
        return None
    points = max(0, member["points"])
    worth = fen_for_points(rules, points)
    try:
        check_redemption_open(rules, today)
        closed = None
    except RedemptionClosed as exc:
        closed = exc.message
    return {
        "points": points,
        "worth": worth,
        "points_per_yuan": rules.points_per_yuan_redeemed,
        "max_fen": min(worth, total),
        "closed": closed,
    }


def basket_dict(basket: PricedBasket) -> dict[str, Any]:
    out = {
        "rules_version": basket.rules_version,
        "lines": [
            {
                "line_no": ln.line_no,
                "sku": ln.sku,
                "name": ln.name,
                "qty": ln.qty,
                "unit_price": ln.unit_price,
                "list_price": ln.list_price,
                "gross": ln.gross,
                "line_discount": ln.line_discount,
                "member_discount": ln.member_discount,
                "order_discount": ln.order_discount,
                "manual_adjustment": ln.manual_adjustment,
                "rounding": ln.rounding,
                "amount": ln.amount,
                "promo": ln.promo,
                "earns_points": ln.earns_points,
            }
            for ln in basket.lines
        ],
        "subtotal": basket.subtotal,
        "line_discount": basket.line_discount,
        "member_discount": basket.member_discount,
        "order_discount": basket.order_discount,
        "manual_adjustment": basket.manual_adjustment,
        "rounding": basket.rounding,
        "total": basket.total,
    } | _coupon_figures(basket)
    if basket.coupons:
        for line, priced in zip(out["lines"], basket.lines, strict=True):
            line["coupon_discount"] = priced.coupon_discount
    return out


def _coupon_figures(basket: PricedBasket) -> dict[str, Any]:
    """The coupons a basket used and what each line gave to them; only when there are
    any, so a sale without coupons reads exactly as before (docs/programme/coupons.md)."""
    if not basket.coupons:
        return {}
    return {
        "coupon_discount": basket.coupon_discount,
        "coupons": [c.to_dict() for c in basket.coupons],
    }


# ---- balances -----------------------------------------------------------------------

_POLICY_LABEL = {"stored_value": "储值", "points": "积分"}
# ledger reasons of spends counted against the offline daily limit (gift: points)
OFFLINE_SPEND_REASONS = ("sale", "gift")


def check_offline_policy(
    till: Till, member_id: str, stored_value: int, points: int, day: str
) -> None:
    """Offline spends: the policy in force per balance kind (invariant 3): HQ's (this
    store's override, else the chain's), else the store's own [offline] file."""
    for kind, amount, accounts in (
        ("stored_value", stored_value, ("sv_principal", "sv_bonus")),
        ("points", points, ("points",)),
    ):
        if not amount:
            continue
        policy = policy_in_force(till.config, kind).policy
        label = _POLICY_LABEL[kind]
        shown = format_yuan if kind == "stored_value" else (lambda n: f"{n} 积分")  # points
        if policy.mode == "online_only":
            raise Forbidden(
                f"{label}支付需要总部在线授权, 当前无法连接总部 (online authorization required)",
                field="tenders",
                policy="online_only",
            )
        used = -(
            Ledger.select(fn.COALESCE(fn.SUM(Ledger.delta), 0))
            .where(
                (Ledger.member_id == member_id)
                & (Ledger.account.in_(accounts))
                & (Ledger.day == day)
                & (Ledger.offline == True)  # noqa: E712
                & (Ledger.reason.in_(OFFLINE_SPEND_REASONS))
                & (Ledger.delta < 0)
            )
            .scalar()
        )
        if used + amount > policy.daily_limit:
            raise InsufficientFunds(
                f"离线{label}支付每日限额 {shown(policy.daily_limit)}, 今日已用 {shown(used)},"
                f" 本次 {shown(amount)} (offline daily limit)",
                field="tenders",
                policy="floor_limit",
                limit=policy.daily_limit,
                used=used,
            )


def _ledger(
    rows: list[dict[str, Any]],
    member_id: str,
    account: str,
    delta: int,
    reason: str,
    ref: str,
    at: str,
    day: str,
    offline: bool = False,
) -> None:
    if delta:
        rows.append(
            {
                "member_id": member_id,
                "account": account,
                "delta": delta,
                "reason": reason,
                "ref": ref,
                "occurred_at": at,
                "day": day,
                "offline": offline,
            }
        )


# ---- checkout -----------------------------------------------------------------------


def checkout(till: Till, staff: SignedIn, req: CheckoutRequest) -> dict[str, Any]:
    if req.sale_id:
        done = _committed_sale(till, req.sale_id)
        if done is not None:
            return _replayed_sale(till, done, req)
    rules = till.rules()
    member = find_member(till, req.basket.member)
    if req.served_by != staff.code:  # -- staff: the cashier is the default, always fine
        maintainers.check_staff(req.served_by, "served_by", serving=True)
    now = till.now()  # before pricing: the sale's day is its member-day rate's day
    basket, inputs = price(till, req.basket, member, rules, now.date())
    action = manager_needed_for(till, staff, req.basket, basket)
    approver = require_manager(till, staff, req.basket.manager, action) if action else None
    settlement = settle(basket.total, list(req.tenders))
    points_needed = points_for_fen(rules, settlement.points_fen) if settlement.points_fen else 0
    if (settlement.stored_value or points_needed) and member is None:
        raise ValidationError(
            "储值或积分支付需要先识别会员 (identify the member first)", field="tenders"
        )
    if settlement.stored_value:
        if not member.password_hash:  # type: ignore[union-attr]
            raise Forbidden(
                "会员未设置密码, 不能使用储值 (member has no password)", field="member_password"
            )
        if not req.member_password or not verify_counted(
            till,
            f"password_failures:{member.id}",  # type: ignore[union-attr]
            "会员密码",
            req.member_password,
            member.password_hash,  # type: ignore[union-attr]
            "member_password",
        ):
            raise Forbidden("会员密码错误 (wrong member password)", field="member_password")
    today, day = now.date(), now.date().isoformat()
    sale_id = req.sale_id or uuid7()
    decision: SpendDecision | None = None
    if points_needed:  # points rules (docs/programme/points.md): the redemption window
        check_redemption_open(rules, today)
    to_hold = coupon_svc.to_authorize(tuple(c.code for c in basket.coupons))
    if settlement.stored_value or points_needed or to_hold:
        decision = till.authorizer.authorize(
            SpendRequest(sale_id, member.id, settlement.stored_value, points_needed, day, to_hold)  # type: ignore[union-attr]
        )
        if decision.online and not decision.approved:
            raise InsufficientFunds(f"总部拒绝授权: {decision.reason}", field="tenders")

    with till.db.atomic():
        # a retry with the client's sale id may have committed meanwhile; an id minted
        # here just now cannot have
        done = _committed_sale(till, sale_id) if req.sale_id else None
        if done is not None:
            return _replayed_sale(till, done, req)
        sale = _write_sale(
            till,
            staff,
            approver,
            sale_id,
            member,
            basket,
            inputs,
            settlement,
            points_needed,
            decision,
            now,
            today,
            day,
            req,
            rules,
            to_hold,
        )
    return sale_result(sale)


def manager_needed_for(
    till: Till, staff: SignedIn | None, req: BasketRequest, basket: PricedBasket
) -> str | None:
    """What in this basket needs a manager's approval at checkout (a 折让; line and order
    discounts past the cashier's limit), named as the approval dialog says it; or None."""
    if req.manual_adjustment:
        return "折让"
    if (staff is None or not staff.is_manager) and _over_cashier_discount_limit(till, basket):
        limit = till.config.till.cashier_discount_limit
        percent = f"{limit // 10}" + (f".{limit % 10}" if limit % 10 else "")
        return f"手工折扣超过小计的{percent}%"
    return None


def _over_cashier_discount_limit(till: Till, basket: PricedBasket) -> bool:
    """Line and order discounts are typed in by hand: past the store's limit a cashier
    needs a manager, as for a 折让 (member discounts and promotion prices are the rules')."""
    given = basket.line_discount + basket.order_discount
    return given * 1000 > basket.subtotal * till.config.till.cashier_discount_limit


def _committed_sale(till: Till, sale_id: str) -> Sale | None:
    """The sale with this id if one was committed; the cashier UI sends an id with every sale."""
    if till.db.execute_sql(_SALE_EXISTS_SQL, (sale_id,)).fetchone() is None:
        return None
    return Sale.get_or_none(Sale.id == sale_id)


# The statements a checkout writes, written out: the query builder cost more than running
# them (docs/benchmarks.md, till). Same columns and values as Model.create/insert_many gave.
_SALE_EXISTS_SQL = 'SELECT 1 FROM "sale" WHERE "id" = ?'
_BALANCES_SQL = (
    'SELECT "sv_principal", "sv_bonus", "points_debt", "status" FROM "member" WHERE "id" = ?'
)
_MEMBER_BALANCES_SQL = (
    'UPDATE "member" SET "sv_principal" = ?, "sv_bonus" = ?, "points_debt" = ?, '
    '"updated_at" = ? WHERE "id" = ?'
)
_LOT_TAKE_SQL = 'UPDATE "points_lot" SET "remaining" = "remaining" - ? WHERE "lot_id" = ?'
_LOT_SQL = (
    'INSERT INTO "points_lot" ("lot_id", "member_id", "earned_on", "expires_on", "remaining", '
    '"origin") VALUES (?, ?, ?, ?, ?, ?)'
)
_SALE_SQL = (
    'INSERT INTO "sale" ("id", "member_id", "cashier", "occurred_at", "rules_version", "total", '
    '"refunded", "status", "body", "receipt") VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)'
)
# every column but the ledger's own id, in the model's order
_LEDGER_COLUMNS = tuple(f.column_name for f in Ledger._meta.sorted_fields if f.name != "id")
_LINE_COLUMNS = tuple(f.column_name for f in SaleLine._meta.sorted_fields)


@lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...], rows: int) -> str:
    """INSERT of ``rows`` rows in one statement (tables and columns are ours, values bound)."""
    row = "(" + ", ".join("?" * len(columns)) + ")"
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ' + ", ".join([row] * rows)  # noqa: S608


def _refresh_balances(member: Member) -> None:
    """The member's balances read again inside the write lock: the sync agent may have
    applied a change from HQ (a top-up elsewhere, a merge, a block) since the swipe."""
    row = Member._meta.database.execute_sql(_BALANCES_SQL, (member.id,)).fetchone()
    if row is None:
        raise NotFound(f"会员不存在: {member.id}", field="member_id")
    _require_active(row[3])
    member.sv_principal, member.sv_bonus, member.points_debt = row[:3]


def _write_sale(
    till,
    staff,
    approver,
    sale_id,
    member,
    basket,
    inputs,
    settlement: Settlement,
    points_needed,
    decision,
    now,
    today,
    day,
    req,
    rules=None,
    to_hold: tuple[str, ...] = (),
) -> Sale:  # noqa: ANN001
    rules = rules or till.rules()  # the rules the basket was priced with
    db = till.db
    at = now.isoformat(timespec="milliseconds")
    offline = decision is not None and not decision.online
    ledger: list[dict[str, Any]] = []
    sv = Split(0, 0)
    lots_used: list[tuple[str, int]] = []
    earned = 0
    new_lot = None
    if member is not None:
        _refresh_balances(member)
        if offline:
            check_offline_policy(till, member.id, settlement.stored_value, points_needed, day)
        if settlement.stored_value:
            sv = spend_split(
                Split(member.sv_principal, member.sv_bonus),
                settlement.stored_value,
                rules.stored_value_spend,
            )
        if points_needed:
            lots_used = consume(
                member_svc.live_lots(member.id, today), points_needed, today, rules.points_lock_days
            )
        earned = sale_points_earned(
            rules,
            cards_svc.in_force(till, member, today, rules),
            basket.points_base,
            basket.total,
            settlement.points_fen,
            today,
        )
        _ledger(ledger, member.id, "sv_principal", -sv.principal, "sale", sale_id, at, day, offline)
        _ledger(ledger, member.id, "sv_bonus", -sv.bonus, "sale", sale_id, at, day, offline)
        _ledger(ledger, member.id, "points", -points_needed, "sale", sale_id, at, day, offline)
        _ledger(ledger, member.id, "points", earned, "sale", sale_id, at, day)
        for lot_id, taken in lots_used:
            db.execute_sql(_LOT_TAKE_SQL, (taken, lot_id))
        if earned:
            recovered = min(member.points_debt, earned)
            new_lot = {
                "lot_id": f"{sale_id}:earn",
                "earned_on": day,
                "expires_on": expiry_for(rules, today).isoformat(),
            }
            db.execute_sql(
                _LOT_SQL,
                (
                    new_lot["lot_id"],
                    member.id,
                    day,
                    new_lot["expires_on"],
                    earned - recovered,
                    sale_id,
                ),
            )
            member.points_debt -= recovered
        member.sv_principal -= sv.principal
        member.sv_bonus -= sv.bonus
        member.updated_at = at
        # only the balances changed; writing all 22 columns cost more than the sale's SQL
        db.execute_sql(
            _MEMBER_BALANCES_SQL,
            (member.sv_principal, member.sv_bonus, member.points_debt, at, member.id),
        )
        member._dirty.clear()
    if ledger:
        db.execute_sql(
            _insert_sql("ledger", _LEDGER_COLUMNS, len(ledger)),
            [row[c] for row in ledger for c in _LEDGER_COLUMNS],
        )
    body = {
        "sale_id": sale_id,
        "member_id": member.id if member else None,
        "card_no": (req.basket.member or {}).get("card_no"),
        "cashier": staff.code,
        "approved_by": approver.code if approver else None,
        "pricing_input": {
            "lines": inputs,
            "member": {
                "member_id": member.id,
                "card_type": cards_svc.in_force(till, member, today, rules),
                "tier": member.tier,
            }
            if member
            else None,
            "order_discount_rate": req.basket.order_discount_rate,
            "manual_adjustment": req.basket.manual_adjustment,
            "rounding": till.rounding(rules),
        },
        **basket_dict(basket),
        "tenders": [{"kind": t.kind, "amount": t.amount} for t in settlement.applied()],
        "change": settlement.change,
        "stored_value": {"principal": sv.principal, "bonus": sv.bonus},
        "points_used": points_needed,
        "points_lots_used": [[lot_id, n] for lot_id, n in lots_used],
        "points_earned": earned,
        "points_lot": new_lot,
        "offline": offline,
        "authorization_id": decision.authorization_id if decision else None,
    }
    if req.served_by and req.served_by != staff.code:  # -- staff: absent means the cashier
        body["served_by"] = req.served_by
    body.pop("rules_version")
    coupon_svc.redeem_in_sale(till, body, basket, decision, day, to_hold)  # issue 11
    item = enqueue(till, "sale", body, at, rules.version)
    receipt = receipts.sale_receipt_dict(till, body, member, staff, at, today, item.seq)
    receipt["outbox_seq"] = item.seq
    sale = Sale(
        id=sale_id,
        member_id=body["member_id"],
        cashier=staff.code,
        occurred_at=at,
        rules_version=rules.version,
        total=basket.total,
        body=body,
        receipt=receipt,
    )
    db.execute_sql(
        _SALE_SQL,
        (
            sale_id,
            sale.member_id,
            sale.cashier,
            at,
            sale.rules_version,
            sale.total,
            sale.status,
            json_text(body),
            json_text(receipt),
        ),
    )
    sale._dirty.clear()
    db.execute_sql(
        _insert_sql("sale_line", _LINE_COLUMNS, len(basket.lines)),
        [
            value
            for ln in basket.lines
            for value in (sale_id, ln.line_no, ln.sku, ln.qty, ln.amount, ln.earns_points, 0)
        ],
    )
    return sale


def _replayed_sale(till: Till, done: Sale, req: CheckoutRequest) -> dict[str, Any]:
    """A retry with a committed sale's id gets that sale back, but only if it asks for
    the same sale: a client that reused an id for another basket would otherwise be
    told a sale it never made was done (and its own sale would be lost)."""
    body = done.body
    given = body["pricing_input"]
    stored_lines = [(ln["sku"], ln["qty"], ln["line_discount"]) for ln in given["lines"]]
    # a code names its product the way pricing resolved it: SKU first, else barcode
    products = _products([code for code, _, _ in req.basket.lines])
    asked_lines = [
        (products[code].sku if code in products else code, qty, line_discount)
        for code, qty, line_discount in req.basket.lines
    ]
    # what the customer handed over: the sale records cash net of its change
    offered = sum_by_kind((t["kind"], t["amount"]) for t in body["tenders"])
    if body.get("change"):
        offered["cash"] = offered.get("cash", 0) + body["change"]
    asked = sum_by_kind((t.kind, t.amount) for t in req.tenders)
    member = find_member(till, req.basket.member) if req.basket.member else None
    # the sale's member may have been merged since: compare survivors
    sold_to = find_member(till, {"member_id": body["member_id"]}) if body["member_id"] else None
    differs = [
        name
        for name, same in (
            ("lines", asked_lines == stored_lines),
            ("order_discount_rate", req.basket.order_discount_rate == given["order_discount_rate"]),
            ("manual_adjustment", req.basket.manual_adjustment == given["manual_adjustment"]),
            ("tenders", asked == offered),
            ("member", (member and member.id) == (sold_to and sold_to.id)),
            ("coupons", list(req.basket.coupons) == [c["code"] for c in body.get("coupons", [])]),
        )
        if not same
    ]
    if differs:
        raise Conflict(
            f"小票号 {done.id} 已用于另一笔交易 (sale_id already used for a different sale: "
            f"{', '.join(differs)} differ)",
            field="sale_id",
        )
    return sale_result(done, replay=True)


def sale_result(sale: Sale, replay: bool = False) -> dict[str, Any]:
    receipt = dict(sale.receipt)
    seq = receipt.pop("outbox_seq", None)
    return {
        "sale_id": sale.id,
        "status": sale.status,
        "total": sale.total,
        "change": sale.body["change"],
        "points_earned": sale.body["points_earned"],
        "offline": sale.body["offline"],
        "outbox_seq": seq,
        "replayed": replay,
        "sale": sale.body,
        "receipt": receipt,
    }


# ---- returns ------------------------------------------------------------------------


def return_lines(lines: Any) -> list[tuple[int, int]] | None:
    """A return request's ``lines``: [{line_no, qty}], or None (absent: all that is left)."""
    if lines is None:
        return None
    if not isinstance(lines, list) or not lines or len(lines) > MAX_LINES:
        raise ValidationError(
            "退货行须为 {line_no, qty} 的列表, 或不填表示全部退货"
            " (lines must be a non-empty list of {line_no, qty}, or omitted to return all)",
            field="lines",
        )
    parsed = []
    for i, ln in enumerate(lines):
        if not isinstance(ln, dict) or not all(
            isinstance(ln.get(k), int) and not isinstance(ln.get(k), bool)
            for k in ("line_no", "qty")
        ):
            raise ValidationError(
                f"第 {i + 1} 个退货行须有整数的行号和数量 (lines[{i}] must have integer line_no and qty)",
                field=f"lines[{i}]",
            )
        parsed.append((ln["line_no"], ln["qty"]))
    return parsed


@dataclass(frozen=True)
class _ReturnPlan:
    """What a return takes and gives back, computed before anything is written: the
    preview (``quote_return``) and the return itself (``return_sale``) share it."""

    returned: list[dict[str, Any]]  # {line_no, sku, name, qty, amount}
    refund_total: int
    last: bool  # takes the last units: the sale is then fully returned
    back: dict[str, int]  # fen refunded per tender kind
    before: dict[str, int]  # fen refunded per tender kind by earlier returns
    paid: dict[str, int]
    sv_back: Split
    points_restored: int  # points given back for a points tender
    points_before: int  # points restored by earlier returns
    points_reversed: int  # earned points taken back
    member: Member | None


def _plan_return(
    sale: Sale, sale_lines: dict[int, SaleLine], lines: list[tuple[int, int]] | None
) -> _ReturnPlan:
    wanted = (
        lines
        if lines is not None
        else [
            (n, sl.qty - sl.returned_qty)
            for n, sl in sale_lines.items()
            if sl.qty > sl.returned_qty
        ]
    )
    if not wanted:
        raise ValidationError("这张小票已全部退货 (nothing left to return)", field="lines")
    listed = [line_no for line_no, _ in wanted]
    if len(set(listed)) != len(listed):
        twice = next(n for n in listed if listed.count(n) > 1)
        raise ValidationError(
            f"第 {twice} 行列了两次, 请合并数量 (line {twice} listed twice)", field="lines"
        )
    returned, refund_total = [], 0
    eligible_total = sum(sl.amount for sl in sale_lines.values() if sl.earns_points)
    eligible_before = sum(
        share_of(sl.amount, sl.returned_qty, sl.qty)
        for sl in sale_lines.values()
        if sl.earns_points
    )
    eligible_now = 0
    for line_no, qty in wanted:
        sl = sale_lines.get(line_no)
        if sl is None:
            raise ValidationError(f"小票没有第 {line_no} 行 (no such line)", field="lines")
        if qty <= 0 or qty > sl.qty - sl.returned_qty:
            raise ValidationError(
                f"第 {line_no} 行最多可退 {sl.qty - sl.returned_qty} 件 (return quantity too large)",
                field="lines",
            )
        amount = share_of(sl.amount, qty, sl.qty, sl.returned_qty)
        refund_total += amount
        if sl.earns_points:
            eligible_now += amount
        name = sale.body["lines"][line_no - 1]["name"]
        returned.append(
            {"line_no": line_no, "sku": sl.sku, "name": name, "qty": qty, "amount": amount}
        )
    body = sale.body
    taking = {r["line_no"]: r["qty"] for r in returned}
    last = all(sl.returned_qty + taking.get(n, 0) >= sl.qty for n, sl in sale_lines.items())
    paid = {t["kind"]: t["amount"] for t in body["tenders"]}
    before = _refunded_by_tender(sale.id)
    back = _tender_refunds(paid, before, refund_total, last)
    sv_back = Split(0, 0)
    if back.get("stored_value"):
        spent = Split(body["stored_value"]["principal"], body["stored_value"]["bonus"])
        sv_back = refund_split(
            spent, back["stored_value"], paid["stored_value"], before.get("stored_value", 0)
        )
    points_restored = points_before = reversed_pts = 0
    member = Member.get_or_none(Member.id == body["member_id"]) if body["member_id"] else None
    if member is not None:
        member = member_svc.resolve(member.id)
        if body["points_used"] and back.get("points"):
            # points go back as points, in step with the fen the points tender refunds
            points_before = share_of(body["points_used"], before.get("points", 0), paid["points"])
            points_restored = share_of(
                body["points_used"], back["points"], paid["points"], before.get("points", 0)
            )
        if body["points_earned"] and eligible_total:
            reversed_pts = share_of(
                body["points_earned"], eligible_now, eligible_total, eligible_before
            )
    return _ReturnPlan(
        returned,
        refund_total,
        last,
        back,
        before,
        paid,
        sv_back,
        points_restored,
        points_before,
        reversed_pts,
        member,
    )


def _sale_lines(sale_id: str) -> dict[int, SaleLine]:
    return {sl.line_no: sl for sl in SaleLine.select().where(SaleLine.sale_id == sale_id)}


def quote_return(till: Till, sale_id: str, lines: list[tuple[int, int]] | None) -> dict[str, Any]:
    """What a return of these lines (None: all that is left) would refund, per tender
    and in points, without writing anything: the cashier shows it before the manager
    approves. The return itself gives exactly these figures while the sale is unchanged."""
    sale = Sale.get_or_none(Sale.id == sale_id)
    if sale is None:
        raise NotFound(f"小票 {sale_id} 不存在 (unknown sale)", field="sale_id")
    plan = _plan_return(sale, _sale_lines(sale_id), lines)
    return {
        "sale_id": sale_id,
        "lines": plan.returned,
        "refund_total": plan.refund_total,
        "tenders": [
            {"kind": k, "label": TENDER_KINDS[k], "amount": plan.back[k]}
            for k in plan.paid
            if plan.back[k]
        ],
        "stored_value": {"principal": plan.sv_back.principal, "bonus": plan.sv_back.bonus},
        "points_restored": plan.points_restored,
        "points_reversed": plan.points_reversed,
        "full": plan.last,
    }


def return_sale(
    till: Till,
    staff: SignedIn,
    sale_id: str,
    lines: list[tuple[int, int]] | None,
    manager: Any = None,
    return_id: str | None = None,
) -> dict[str, Any]:
    """Return all (lines=None) or some units; reverses points, refunds each tender as paid."""
    approver = require_manager(till, staff, manager, "退货")
    if return_id:
        done = SaleReturn.get_or_none(SaleReturn.id == return_id)
        if done is not None:
            return _replayed_return(done, sale_id, lines)
    return_id = return_id or uuid7()
    rules = till.rules()
    now = till.now()
    at, today, day = now.isoformat(timespec="milliseconds"), now.date(), now.date().isoformat()
    with till.db.atomic():
        done = SaleReturn.get_or_none(SaleReturn.id == return_id)
        if done is not None:
            return _replayed_return(done, sale_id, lines)
        sale = Sale.get_or_none(Sale.id == sale_id)
        if sale is None:
            raise NotFound(f"小票 {sale_id} 不存在 (unknown sale)", field="sale_id")
        plan = _plan_return(sale, _sale_lines(sale_id), lines)
        for r in plan.returned:
            SaleLine.update(returned_qty=SaleLine.returned_qty + r["qty"]).where(
                (SaleLine.sale_id == sale_id) & (SaleLine.line_no == r["line_no"])
            ).execute()
        body = sale.body
        tenders = [{"kind": k, "amount": plan.back[k]} for k in plan.paid if plan.back[k]]
        sv_back = plan.sv_back
        ledger: list[dict[str, Any]] = []
        lots_restored, debt = [], 0
        member = plan.member
        if member is not None:
            if plan.points_restored:
                lots_restored = _restore_lots(
                    body, plan.points_restored, plan.points_before, member.id, rules, today
                )
            if plan.points_reversed:
                debt = _reverse_earned(body, plan.points_reversed, member.id, today)
            _ledger(
                ledger, member.id, "sv_principal", sv_back.principal, "return", return_id, at, day
            )
            _ledger(ledger, member.id, "sv_bonus", sv_back.bonus, "return", return_id, at, day)
            _ledger(
                ledger,
                member.id,
                "points",
                plan.points_restored - plan.points_reversed,
                "return",
                return_id,
                at,
                day,
            )
            member.sv_principal += sv_back.principal
            member.sv_bonus += sv_back.bonus
            member.points_debt += debt
            member.updated_at = at
            member.save()
            if ledger:
                Ledger.insert_many(ledger).execute()
        sale.refunded += plan.refund_total
        sale.status = "returned" if plan.last else "partly_returned"
        sale.save()
        ret_body = {
            "return_id": return_id,
            "sale_id": sale_id,
            "member_id": member.id if member else None,
            "cashier": staff.code,
            "approved_by": approver.code,
            "lines": plan.returned,
            "refund_total": plan.refund_total,
            "tenders": tenders,
            "stored_value": {"principal": sv_back.principal, "bonus": sv_back.bonus},
            "points_restored": plan.points_restored,
            "points_lots_restored": lots_restored,
            "points_reversed": plan.points_reversed,
            "points_debt": debt,
        }
        coupon_svc.on_full_return(till, sale, ret_body, plan.last)  # coupons (issue 11)
        item = enqueue(till, "return", ret_body, at, sale.rules_version)
        receipt = receipts.return_receipt(
            till,
            ret_body,
            member,
            staff,
            at,
            today,
            item.seq,
            receipts.sale_receipt_no(till, sale),
        )
        SaleReturn.create(
            id=return_id,
            sale_id=sale_id,
            cashier=staff.code,
            occurred_at=at,
            refund_total=plan.refund_total,
            body=ret_body,
            receipt=receipt.to_dict(),
        )
    return {
        "return_id": return_id,
        "replayed": False,
        "return": ret_body,
        "receipt": receipt.to_dict(),
    }


def _replayed_return(
    done: SaleReturn, sale_id: str, lines: list[tuple[int, int]] | None
) -> dict[str, Any]:
    """A retry with a committed return's id gets that return back, but only if it asks
    for the same return: the same sale, and the same lines (or, for a return of all that
    was left, a return that did take all that was left)."""
    if done.sale_id != sale_id:
        raise Conflict(
            f"退货单号 {done.id} 已用于另一张小票 (return_id already used for another sale)",
            field="return_id",
        )
    took = sorted((r["line_no"], r["qty"]) for r in done.body["lines"])
    same = sorted(lines) == took if lines is not None else _took_all_left(done)
    if not same:
        raise Conflict(
            f"退货单号 {done.id} 已用于另一次退货 (return_id already used for other lines)",
            field="return_id",
        )
    return {"return_id": done.id, "replayed": True, "return": done.body, "receipt": done.receipt}


_LAST_RETURN_SQL = (
    f'SELECT "id" FROM "{SaleReturn._meta.table_name}" '  # noqa: S608 (a model's own name)
    'WHERE "sale_id" = ? ORDER BY rowid DESC LIMIT 1'
)


def _took_all_left(done: SaleReturn) -> bool:
    """Whether ``done`` returned all its sale had left: then nothing is left after it, so
    the sale is fully returned and no return came after it."""
    sale = Sale.get_or_none(Sale.id == done.sale_id)
    last = SaleReturn._meta.database.execute_sql(_LAST_RETURN_SQL, (done.sale_id,)).fetchone()
    return (
        sale is not None and sale.status == "returned" and last is not None and last[0] == done.id
    )


def _refunded_by_tender(sale_id: str) -> dict[str, int]:
    """Fen refunded so far to each tender kind of a sale, over its earlier returns."""
    out: dict[str, int] = {}
    for (ret_body,) in (
        SaleReturn.select(SaleReturn.body).where(SaleReturn.sale_id == sale_id).tuples()
    ):
        for t in ret_body["tenders"]:
            out[t["kind"]] = out.get(t["kind"], 0) + t["amount"]
    return out


def _tender_refunds(
    paid: dict[str, int], before: dict[str, int], refund_total: int, last: bool
) -> dict[str, int]:
    """Split a return's ``refund_total`` over the tenders, in proportion to what each has
    left to refund: the parts add up to the refund exactly (so the receipt, the drawer and
    the balances agree), no tender gets back more than it paid, and the return that takes
    the last units gives every tender exactly what it has left."""
    left = {kind: amount - before.get(kind, 0) for kind, amount in paid.items()}
    if last:
        return left
    kinds = list(left)
    parts = allocate(min(refund_total, sum(left.values())), [left[k] for k in kinds])
    return dict(zip(kinds, parts, strict=True))


def _restore_lots(
    body: dict[str, Any], points: int, skip: int, member_id: str, rules, today: dt.date
) -> list[list[Any]]:  # noqa: ANN001
    """Put ``points`` back into the lots they came from, after the first ``skip`` already restored."""
    out = []
    left = points
    for lot_id, taken in body["points_lots_used"]:
        if left == 0:
            break
        available = taken - min(taken, skip)
        skip = max(0, skip - taken)
        give = min(available, left)
        if give <= 0:
            continue
        updated = (
            PointsLot.update(remaining=PointsLot.remaining + give)
            .where(PointsLot.lot_id == lot_id)
            .execute()
        )
        if not updated:
            PointsLot.create(
                lot_id=lot_id,
                member_id=member_id,
                earned_on=today.isoformat(),
                expires_on=expiry_for(rules, today).isoformat(),
                remaining=give,
                origin="restored",
            )
        out.append([lot_id, give])
        left -= give
    return out


def _reverse_earned(body: dict[str, Any], points: int, member_id: str, today: dt.date) -> int:
    """Take back earned points: from the sale's own lot first, then soonest-expiring; the rest is debt."""
    left = points
    if body.get("points_lot"):
        lot = PointsLot.get_or_none(PointsLot.lot_id == body["points_lot"]["lot_id"])
        if lot is not None and lot.remaining > 0:
            take = min(lot.remaining, left)
            PointsLot.update(remaining=PointsLot.remaining - take).where(
                PointsLot.lot_id == lot.lot_id
            ).execute()
            left -= take
    if left:
        usable = sorted(
            member_svc.live_lots(member_id, today), key=lambda lot: (lot.expires_on, lot.lot_id)
        )
        for lot in usable:
            if not left:
                break
            take = min(lot.remaining, left)
            PointsLot.update(remaining=PointsLot.remaining - take).where(
                PointsLot.lot_id == lot.lot_id
            ).execute()
            left -= take
    return left


# ---- top-up -------------------------------------------------------------------------


def top_up(
    till: Till,
    staff: SignedIn,
    member_ref: dict[str, str],
    amount: int,
    topup_id: str | None = None,
    manager: Any = None,
) -> dict[str, Any]:
    """Stored value top-up paid in cash; the bonus (充500送100) is kept apart from principal.
    At most ``till.topup_max``; past a cashier's limits (``topup_needs_manager``) a
    manager approves with ``manager: {code, pin}``."""
    if topup_id:
        done = TopUp.get_or_none(TopUp.id == topup_id)
        if done is not None:
            return _replayed_topup(till, done, member_ref, amount)
    cfg = till.config.till
    if isinstance(amount, int) and amount > cfg.topup_max:
        raise ValidationError(
            f"单笔充值最多 {cfg.topup_max} 分 (a top-up is at most {cfg.topup_max} fen)",
            field="amount",
        )
    rules = till.rules()
    split = topup_split(rules, amount)
    member = find_member(till, member_ref)
    if member is None:
        raise ValidationError("充值需要会员 (member required)", field="member")
    topup_id = topup_id or uuid7()
    now = till.now()
    at, day = now.isoformat(timespec="milliseconds"), now.date().isoformat()
    action = topup_needs_manager(till, staff, amount, day)
    approver = require_manager(till, staff, manager, action) if action else None
    with till.db.atomic():
        done = TopUp.get_or_none(TopUp.id == topup_id)
        if done is not None:
            return _replayed_topup(till, done, member_ref, amount)
        action = None if approver else topup_needs_manager(till, staff, amount, day)
        if action:  # another top-up by this cashier committed meanwhile
            raise Forbidden(f"{action}需要店长授权 (manager PIN required)", field="manager")
        # the sync agent may have merged the member since the swipe: credit the survivor
        member = member_svc.resolve(member.id)
        _require_active(member.status)
        ledger: list[dict[str, Any]] = []
        _ledger(ledger, member.id, "sv_principal", split.principal, "topup", topup_id, at, day)
        _ledger(ledger, member.id, "sv_bonus", split.bonus, "topup", topup_id, at, day)
        Ledger.insert_many(ledger).execute()
        member.sv_principal += split.principal
        member.sv_bonus += split.bonus
        member.updated_at = at
        member.save()
        body = {
            "topup_id": topup_id,
            "member_id": member.id,
            "principal": split.principal,
            "bonus": split.bonus,
            "tender": "cash",
            "cashier": staff.code,
        }
        # -- cards: 充值升级, in the top-up's transaction and said in its item
        upgraded = cards_svc.upgrade_on_topup(till, member, split.principal, rules, at)
        if upgraded:
            body["card_type"] = upgraded
        enqueue(till, "topup", body, at, rules.version)
        receipt = receipts.topup_receipt(till, body, member, staff, at, now.date())
        TopUp.create(
            id=topup_id,
            member_id=member.id,
            principal=split.principal,
            bonus=split.bonus,
            cashier=staff.code,
            occurred_at=at,
            receipt=receipt.to_dict(),
        )
    return {
        "topup_id": topup_id,
        "replayed": False,
        "principal": split.principal,
        "bonus": split.bonus,
        "receipt": receipt.to_dict(),
    } | ({"card_type": upgraded} if upgraded else {})


_TOPPED_UP_TODAY_SQL = (
    f'SELECT COALESCE(SUM("principal"), 0) FROM "{TopUp._meta.table_name}" '  # noqa: S608
    'WHERE "cashier" = ? AND substr("occurred_at", 1, 10) = ?'
)


def topup_needs_manager(till: Till, staff: SignedIn, amount: int, day: str) -> str | None:
    """What makes a cashier's top-up need a manager, or None: one top-up past
    ``till.cashier_topup_limit``, or what they topped up on the store's ``day`` (across
    their shifts) going past ``till.cashier_topup_day_limit``. A manager needs none."""
    if staff.is_manager:
        return None
    cfg = till.config.till
    if amount > cfg.cashier_topup_limit:
        return f"单笔充值超过收银员限额 {format_yuan(cfg.cashier_topup_limit, '')} 元, "
    so_far = till.db.execute_sql(_TOPPED_UP_TODAY_SQL, (staff.code, day)).fetchone()[0]
    if so_far + amount > cfg.cashier_topup_day_limit:
        return f"今日充值将超过收银员限额 {format_yuan(cfg.cashier_topup_day_limit, '')} 元, "
    return None


def _replayed_topup(
    till: Till, done: TopUp, member_ref: dict[str, str], amount: int
) -> dict[str, Any]:
    """A retry with a committed top-up's id gets that top-up back, but only if it asks for
    the same one (the member, after any merge, and the amount paid in): a reused id must
    not tell the till a top-up it never made was done."""
    member = find_member(till, member_ref)
    topped_up = member_svc.resolve(done.member_id)
    differs = [
        name
        for name, same in (
            ("member", member is not None and member.id == topped_up.id),
            ("amount", amount == done.principal),
        )
        if not same
    ]
    if differs:
        raise Conflict(
            f"充值单号 {done.id} 已用于另一笔充值 (topup_id already used for a different "
            f"top-up: {', '.join(differs)} differ)",
            field="topup_id",
        )
    return {
        "topup_id": done.id,
        "replayed": True,
        "principal": done.principal,
        "bonus": done.bonus,
        "receipt": done.receipt,
    }
