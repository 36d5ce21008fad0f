"""Coupons at the till: issue one (a new-member gift, a points gift), list a member's,
look one up by code, redeem in a sale, give back on a full return
(docs/programme/coupons.md).

What the till knows of a coupon: HQ's last word (``SyncCoupon``, from the change log),
the coupons it issued itself (``TillCoupon``, until HQ's word arrives) and the coupons
it took in its own sales (``CouponRedemption``), which count as used here whatever HQ
last said, until the sale is fully returned.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.coupons import (
    MAX_TEMPLATE_ID,
    CouponInput,
    CouponTemplate,
    new_code,
    normalise_code,
    valid_on,
)
from core.errors import Conflict, Forbidden, InsufficientFunds, NotFound, ValidationError
from core.protocol import MAX_CODE_CHARS, MAX_COUPONS
from edge.models import CouponRedemption, SyncCoupon, TillCoupon
from edge.models import CouponTemplate as TemplateRow
from edge.services.context import Till
from edge.services.offline import policy_in_force
from edge.services.outbox import enqueue

TILL_SOURCES = ("till", "gift")


# ---- reading ------------------------------------------------------------------------


def template(template_id: str) -> CouponTemplate:
    found = _readable_template(template_id)
    if found is None:
        raise NotFound(
            f"券模板不存在: {template_id} (unknown coupon template)", field="template_id"
        )
    return found


def _readable_template(template_id: str | None) -> CouponTemplate | None:
    """The template as HQ published it, or None when this till does not hold it or
    cannot read it (a newer HQ's, kept inactive by the sync applier)."""
    row = TemplateRow.get_or_none(TemplateRow.id == (template_id or ""))
    if row is None:
        return None
    try:
        return CouponTemplate.from_dict(row.data)
    except ValidationError:
        return None


def _returned_sales(code: str) -> set[str]:
    return {
        r.sale_id
        for r in CouponRedemption.select(CouponRedemption.sale_id).where(
            (CouponRedemption.code == code) & (CouponRedemption.returned == True)  # noqa: E712
        )
    }


def _used_here(code: str) -> str | None:
    row = (
        CouponRedemption.select(CouponRedemption.sale_id)
        .where((CouponRedemption.code == code) & (CouponRedemption.returned == False))  # noqa: E712
        .first()
    )
    return row.sale_id if row else None


def coupon_state(code: str) -> dict[str, Any] | None:
    """A coupon as this till sees it, or None: code, member, template, dates, status
    (issued | held | used) and whether HQ has described it yet (``at_hq``)."""
    sync = SyncCoupon.get_or_none(SyncCoupon.code == code)
    own = TillCoupon.get_or_none(TillCoupon.code == code)
    if sync is None and own is None:
        return None
    if sync is not None:
        d = sync.data or {}
        status = sync.status
        if status == "used" and d.get("used_sale") in _returned_sales(code):
            status = "issued"  # returned here; HQ's word on the return is on its way
        state = {
            "code": code,
            "member_id": sync.member_id,
            "template_id": d.get("template_id") or (own.template_id if own else None),
            "valid_from": d.get("valid_from") or (own.valid_from if own else None),
            "expires_on": sync.expires_on,
            "status": status,
            "value": sync.value,
            "at_hq": True,
        }
    else:
        state = {
            "code": code,
            "member_id": own.member_id,
            "template_id": own.template_id,
            "valid_from": own.valid_from,
            "expires_on": own.expires_on,
            "status": "issued",
            "value": 0,
            "at_hq": False,
        }
    used = _used_here(code)
    if used is not None:
        state["status"], state["used_sale"] = "used", used
    return state


def describe(state: dict[str, Any], day: dt.date) -> dict[str, Any]:
    """A coupon for the cashier: its state, what it gives, and whether it is usable today."""
    out = dict(state)
    t = _readable_template(state.get("template_id"))
    out["template"] = t.to_dict() if t else None
    out["name"] = t.name if t else None
    out["gives"] = t.describe() if t else None
    out["usable"] = bool(
        t is not None
        and state["status"] == "issued"
        and valid_on(state.get("valid_from"), state.get("expires_on"), day)
    )
    return out


def find(code: str) -> dict[str, Any] | None:
    """A coupon by its code as typed or scanned: as given, in capitals, else read the way
    our codes are written (no dashes or spaces, O as 0, I and L as 1)."""
    for candidate in dict.fromkeys((code, code.upper(), normalise_code(code))):
        state = coupon_state(candidate)
        if state is not None:
            return state
    return None


def lookup(till: Till, code: str) -> dict[str, Any]:
    code = check_code(code, "code")
    state = find(code)
    if state is None:
        raise NotFound(f"优惠券 {code} 不存在 (unknown coupon)", field="code")
    return describe(state, till.now().date())


def member_coupons(till: Till, member_id: str, usable_only: bool = True) -> list[dict[str, Any]]:
    """A member's coupons (the usable ones by default), soonest to expire first."""
    codes = {
        c.code for c in SyncCoupon.select(SyncCoupon.code).where(SyncCoupon.member_id == member_id)
    } | {
        c.code for c in TillCoupon.select(TillCoupon.code).where(TillCoupon.member_id == member_id)
    }
    day = till.now().date()
    out = []
    for code in sorted(codes):
        state = coupon_state(code)
        if state is None or state["member_id"] != member_id:
            continue
        item = describe(state, day)
        if item["usable"] or not usable_only:
            out.append(item)
    out.sort(key=lambda c: (c.get("expires_on") or "9999-12-31", c["code"]))
    return out


def check_code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value.strip()) <= MAX_CODE_CHARS:
        raise ValidationError(
            f"{where} 须为 1..{MAX_CODE_CHARS} 个字符的券号 (a coupon code)", field=where
        )
    return value.strip()


def parse_codes(raw: Any) -> tuple[str, ...]:
    """The ``coupons`` of a quote or sale request: a list of codes (each read as typed)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_COUPONS:
        raise ValidationError(
            f"coupons 须为最多 {MAX_COUPONS} 个券号的列表 (a list of coupon codes)", field="coupons"
        )
    codes = tuple(check_code(c, f"coupons[{i}]") for i, c in enumerate(raw))
    if len(set(codes)) != len(codes):
        raise ValidationError("同一张券用了两次 (a coupon listed twice)", field="coupons")
    return codes


# ---- redeeming ----------------------------------------------------------------------


def claimed(till: Till, codes: tuple[str, ...], member_id: str | None) -> list[CouponInput]:
    """The coupons a basket claims, each checked usable by ``member_id`` today, with its
    template: what core prices them by."""
    if not codes:
        return []
    if member_id is None:
        raise ValidationError("用券需要先识别会员 (identify the member first)", field="coupons")
    day = till.now().date()
    out = []
    for i, code in enumerate(codes):
        where = f"coupons[{i}]"
        state = find(code)
        if state is None:
            raise NotFound(f"优惠券 {code} 不存在 (unknown coupon)", field=where)
        if state["member_id"] and state["member_id"] != member_id:
            raise Forbidden(f"优惠券 {code} 不属于该会员 (another member's coupon)", field=where)
        if state["status"] != "issued":
            raise Forbidden(
                f"优惠券 {code} 已{_STATUS.get(state['status'], state['status'])}", field=where
            )
        if not valid_on(state.get("valid_from"), state.get("expires_on"), day):
            raise Forbidden(f"优惠券 {code} 不在有效期内 (not valid today)", field=where)
        found = _readable_template(state.get("template_id"))
        if found is None:
            raise Forbidden(
                f"优惠券 {code} 的券模板本店没有, 不能使用 (no template for it here)", field=where
            )
        out.append(CouponInput(state["code"], found))
    return out


_STATUS = {"used": "使用 (already used)", "held": "被占用 (held by another sale)"}


def categories(skus: list[str]) -> dict[str, str]:
    from edge.models import Product

    return {
        sku: cat or ""
        for sku, cat in Product.select(Product.sku, Product.category)
        .where(Product.sku.in_(skus))
        .tuples()
    }


def to_authorize(codes: tuple[str, ...]) -> tuple[str, ...]:
    """The codes HQ knows (an online hold); a coupon this till issued that HQ has not yet
    described is this store's alone until then, so it needs no hold."""
    if not codes:
        return ()
    known = {
        c.code for c in SyncCoupon.select(SyncCoupon.code).where(SyncCoupon.code.in_(list(codes)))
    }
    return tuple(c for c in codes if c in known)


def check_offline_policy(till: Till, member_id: str, n: int, day: str) -> None:
    """Coupons redeemed without HQ's hold (invariant 3): ``online_only`` refuses;
    ``floor_limit`` allows ``daily_limit`` coupons per member per day at this store."""
    if not n:
        return
    policy = policy_in_force(till.config, "coupons").policy
    if policy.mode == "online_only":
        raise Forbidden(
            "用券需要总部在线授权, 当前无法连接总部 (online authorization required)",
            field="coupons",
            policy="online_only",
        )
    used = (
        CouponRedemption.select()
        .where(
            (CouponRedemption.member_id == member_id)
            & (CouponRedemption.day == day)
            & (CouponRedemption.offline == True)  # noqa: E712
        )
        .count()
    )
    if used + n > policy.daily_limit:
        raise InsufficientFunds(
            f"离线用券每日限 {policy.daily_limit} 张, 今日已用 {used}, 本次 {n} (offline daily limit)",
            field="coupons",
            policy="floor_limit",
            limit=policy.daily_limit,
            used=used,
        )


def redeem_in_sale(
    till: Till,
    body: dict[str, Any],
    basket: Any,
    decision: Any,
    day: str,
    asked: tuple[str, ...],
) -> None:
    """Inside the sale's transaction: record the coupons the sale used (the offline
    policy first for those HQ did not hold) and put their templates in the sale's
    ``pricing_input`` so HQ re-prices with them.

    ``asked`` is what ``to_authorize`` answered before the authorization: the codes
    HQ knew then. A coupon this till issued may become known while HQ is asked about
    the rest (its description arrives through the sync agent); it was this store's
    alone when the sale was decided, and stays so for this sale."""
    if not basket.coupons:
        return
    codes = [c.code for c in basket.coupons]
    held = asked if decision is not None and decision.online and decision.approved else ()
    for code in codes:  # the sync agent may have applied HQ's word since pricing
        state = coupon_state(code)
        if state is None or not (
            state["status"] == "issued" or (state["status"] == "held" and code in held)
        ):
            raise Forbidden(f"优惠券 {code} 已被使用 (already used)", field="coupons")
    unheld = [c for c in asked if c not in held]
    check_offline_policy(till, body["member_id"], len(unheld), day)
    body["pricing_input"]["coupons"] = [
        {"code": code, "template": template(coupon_state(code)["template_id"]).to_dict()}
        for code in codes
    ]
    for code in codes:
        CouponRedemption.create(
            code=code,
            sale_id=body["sale_id"],
            member_id=body["member_id"],
            day=day,
            offline=code in unheld,
        )


def on_full_return(till: Till, sale: Any, ret_body: dict[str, Any], last: bool) -> None:
    """A return that takes back all the sale had left gives its coupons back
    (``coupons_restored`` in the return body); a partial return gives none."""
    used = [c["code"] for c in sale.body.get("coupons") or []]
    if not used or not last:
        return
    CouponRedemption.update(returned=True).where(
        (CouponRedemption.sale_id == sale.id) & (CouponRedemption.code.in_(used))
    ).execute()
    ret_body["coupons_restored"] = used


# ---- issuing ------------------------------------------------------------------------


def _held_by(member_id: str, template_id: str) -> int:
    synced = {
        c.code
        for c in SyncCoupon.select(SyncCoupon.code, SyncCoupon.data).where(
            SyncCoupon.member_id == member_id
        )
        if (c.data or {}).get("template_id") == template_id
    }
    own = {
        c.code
        for c in TillCoupon.select(TillCoupon.code).where(
            (TillCoupon.member_id == member_id) & (TillCoupon.template_id == template_id)
        )
    }
    return len(synced | own)


def issue_at_till(
    t: Till, member_id: str, template_id: str, *, source: str, ref: str | None, cashier: str
) -> dict[str, Any]:
    """Mint a coupon of ``template_id`` for the member, in the caller's SQLite transaction
    (or its own), with one ``coupon_issue`` outbox item. Refused when the template is
    unknown or inactive, or the member already holds the template's limit."""
    from edge.services import members as member_svc

    if source not in TILL_SOURCES:
        raise ValidationError(f"source must be one of {TILL_SOURCES}", field="source")
    if not isinstance(template_id, str) or not 0 < len(template_id) <= MAX_TEMPLATE_ID:
        raise ValidationError("template_id must name a coupon template", field="template_id")
    now = t.now()
    at = now.isoformat(timespec="seconds")
    with t.db.atomic():
        member = member_svc.resolve(member_id)
        row = TemplateRow.get_or_none(TemplateRow.id == template_id)
        if row is None or not row.active:
            raise NotFound(f"券模板不存在或已停用: {template_id}", field="template_id")
        tpl = CouponTemplate.from_dict(row.data)
        if tpl.per_member_limit and _held_by(member.id, tpl.id) >= tpl.per_member_limit:
            raise Conflict(
                f"会员已领 {tpl.per_member_limit} 张 {tpl.name}, 不能再发 (per-member limit)",
                field="template_id",
            )
        valid_from, expires_on = tpl.issue_window(now.date())
        code = new_code()
        while coupon_state(code) is not None:
            code = new_code()
        body = {
            "code": code,
            "member_id": member.id,
            "template_id": tpl.id,
            "valid_from": valid_from.isoformat() if valid_from else None,
            "expires_on": expires_on.isoformat() if expires_on else None,
            "issued_at": at,
            "source": source,
            "ref": ref,
            "cashier": cashier,
        }
        TillCoupon.create(**body)
        enqueue(t, "coupon_issue", body, at, t.rules().version)
    return describe(coupon_state(code) or {}, now.date()) | {"source": source}


def new_member_gift(till: Till, member_id: str, cashier: str) -> dict[str, Any] | None:
    """The rules' new-member coupon (``new_member_coupon``), if any, given at registration
    (in its transaction). A template this till does not hold yet gives nothing (the
    registration never fails for a gift)."""
    template_id = till.rules().new_member_coupon
    if not isinstance(template_id, str) or not template_id:
        return None
    row = TemplateRow.get_or_none(TemplateRow.id == template_id)
    if row is None or not row.active:
        return None
    return issue_at_till(
        till, member_id, template_id, source="gift", ref="registration", cashier=cashier
    )
