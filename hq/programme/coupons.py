"""Coupons at HQ: templates, issuing, and what a sale, a return or a till's issue does to
a coupon (docs/programme/coupons.md).

Templates are immutable once added (a new offer is a new template), so HQ and every
till price a coupon alike. A coupon is single use chain-wide: online, the till's
authorization holds it (hq/auth.py); offline, the store's ``coupons`` policy lets it
be redeemed and HQ applies the first sale that claims it; a second sale claiming it
posts as sold (the goods left the store) and opens a ``coupon_double_use`` exception.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.coupons import SOURCES, CouponInput, CouponTemplate, new_code, valid_on
from core.errors import Conflict, NotFound, ValidationError
from core.pricing import PricedBasket
from hq import audit
from hq.changes import ChangeSet, coupon_state, flush_changes
from hq.ledger import resolve_member
from hq.models import Coupon, HqException, Member, Product
from hq.models import CouponTemplate as TemplateRow

# ---- templates ------------------------------------------------------------------------


def template_state(row: TemplateRow) -> dict[str, Any]:
    """A template as it goes down (change entity ``coupon_template``)."""
    return dict(row.data) | {"active": row.active}


def add_template(
    db: pw.Database,
    data: dict[str, Any],
    *,
    by: str,
    now: dt.datetime,
    changes: ChangeSet | None = None,
) -> CouponTemplate:
    """Add a template (validated by ``core.coupons``), audited as ``coupon.template``."""
    template = CouponTemplate.from_dict(data)
    by = audit.require_actor(by)
    own = changes is None
    changes = changes if changes is not None else ChangeSet()
    with db.atomic():
        if TemplateRow.get_or_none(TemplateRow.id == template.id) is not None:
            raise Conflict(f"券模板已存在: {template.id} (template exists)", field="id")
        row = TemplateRow.create(
            id=template.id,
            name=template.name,
            data=template.to_dict(),
            active=True,
            created_at=now,
            created_by=by,
        )
        audit.record(db, by, "coupon.template", template.id, at=now, template=template.to_dict())
        changes.add("coupon_template", row.id, template_state(row))
        if own:
            flush_changes(db, changes, now)
    return template


def list_templates() -> list[dict[str, Any]]:
    return [
        template_state(row) | {"created_by": row.created_by}
        for row in TemplateRow.select().order_by(TemplateRow.id)
    ]


def template(template_id: str) -> CouponTemplate:
    row = TemplateRow.get_or_none(TemplateRow.id == template_id)
    if row is None:
        raise NotFound(f"券模板不存在: {template_id} (unknown template)", field="template_id")
    return CouponTemplate.from_dict(row.data)


def _held(member_id: str, template_id: str) -> int:
    return (
        Coupon.select()
        .where((Coupon.member_id == member_id) & (Coupon.template_id == template_id))
        .count()
    )


# ---- issuing --------------------------------------------------------------------------


def issue_coupons(
    db: pw.Database,
    template_id: str,
    member_ids: list[str],
    *,
    by: str,
    source: str,
    ref: str | None,
    now: dt.datetime,
    changes: ChangeSet | None = None,
    today: dt.date | None = None,
) -> list[str]:
    """Issue one coupon of ``template_id`` to each member; the codes issued, in order.
    ``today`` is the chain's business day (``HqConfig.business_day``), the first day of a
    template valid N days from issue; ``now.date()`` when not given.

    A member already holding ``per_member_limit`` coupons of the template (any status)
    gets none (skipped, so a campaign can be run again). Each coupon is audited as
    ``coupon.issue`` by ``by``. With ``changes`` the caller's transaction and change
    set are used (the caller flushes); without, this commits and flushes its own."""
    by = audit.require_actor(by)
    if source not in SOURCES:
        raise ValidationError(f"source must be one of {SOURCES}", field="source")
    own = changes is None
    changes = changes if changes is not None else ChangeSet()
    codes: list[str] = []
    with db.atomic():
        row = TemplateRow.get_or_none(TemplateRow.id == template_id)
        if row is None:
            raise NotFound(f"券模板不存在: {template_id} (unknown template)", field="template")
        if not row.active:
            raise ValidationError(f"券模板已停用: {template_id} (inactive)", field="template")
        t = CouponTemplate.from_dict(row.data)
        valid_from, expires_on = t.issue_window(today or now.date())
        for given in member_ids:
            member = resolve_member(db, given)
            if t.per_member_limit and _held(member.id, t.id) >= t.per_member_limit:
                continue
            code = _unused_code()
            coupon = Coupon.create(
                code=code,
                member_id=member.id,
                value=t.value,
                status="issued",
                expires_on=expires_on,
                template_id=t.id,
                issued_at=now,
                valid_from=valid_from,
                source=source,
                ref=ref,
            )
            audit.record(
                db, by, "coupon.issue", code, at=now, template_id=t.id, member_id=member.id,
                source=source, ref=ref,
            )  # fmt: skip
            changes.add("coupon", code, coupon_state(coupon))
            codes.append(code)
        if own:
            flush_changes(db, changes, now)
    return codes


def _unused_code() -> str:
    while True:  # 60 random bits: a clash is all but impossible, but never reuse a code
        code = new_code()
        if not Coupon.select().where(Coupon.code == code).exists():
            return code


def member_coupons(member_id: str) -> list[dict[str, Any]]:
    return [
        coupon_state(c)
        for c in Coupon.select().where(Coupon.member_id == member_id).order_by(Coupon.issued_at)
    ]


# ---- what the stores send -------------------------------------------------------------


def _refused(name: str, message: str) -> ValidationError:
    from hq.apply import MoneyRefused

    return MoneyRefused(message, field=name)


def pricing_coupons(pi: dict[str, Any]) -> tuple[CouponInput, ...]:
    """The coupons a sale's ``pricing_input`` claims, with the templates it priced them by."""
    raw = pi.get("coupons") or []
    if not isinstance(raw, list):
        raise ValidationError("pricing_input.coupons must be a list", field="coupons")
    out = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("code"), str):
            raise ValidationError("pricing_input.coupons: {code, template}", field="coupons")
        out.append(CouponInput(entry["code"], CouponTemplate.from_dict(entry.get("template"))))
    return tuple(out)


def check_sale_coupons(ctx: Any, body: dict[str, Any], priced: PricedBasket | None) -> None:
    """The coupons a sale claims add up and were priced by HQ's own templates: refused
    (before anything posts) if not. Whether each coupon could be used is judged when the
    sale is applied (``apply_sale_coupons``): the sale happened either way."""
    claimed = body.get("coupons") or []
    inputs = pricing_coupons(body["pricing_input"])
    if not claimed and not inputs:
        return
    if body.get("member_id") is None:
        raise _refused("coupons", "没有会员的销售不能用券 (coupons need the sale's member)")
    if [c.get("code") for c in claimed] != [c.code for c in inputs]:
        raise _refused("coupons", "销售的券与计价的券不符 (coupons differ from pricing_input)")
    for c in inputs:
        row = TemplateRow.get_or_none(TemplateRow.id == c.template.id)
        if row is None or CouponTemplate.from_dict(row.data) != c.template:
            raise _refused(
                "coupons",
                f"券 {c.code} 的模板 {c.template.id} 与总部不符 (template differs from HQ's)",
            )
    if priced is not None:
        given = [(c.get("code"), c.get("template_id"), c.get("discount")) for c in claimed]
        due = [(a.code, a.template_id, a.discount) for a in priced.coupons]
        if given != due or body.get("coupon_discount") != priced.coupon_discount:
            raise _refused("coupons", f"券抵扣与总部重新计价不符 (coupons: till {given}, HQ {due})")


def apply_sale_coupons(ctx: Any, body: dict[str, Any], member: Member | None) -> None:
    """Mark the sale's coupons used; a coupon HQ cannot honour (used by another sale,
    another member's, unknown, not valid that day) opens an exception with the
    discount it gave: the money is posted as sold, the store is never blocked."""
    claimed = body.get("coupons") or []
    if not claimed or member is None:
        return
    sale_id = body["sale_id"]
    day = _day(ctx.item.occurred_at)
    _check_categories(ctx, body, member)
    for c in claimed:
        code = c["code"]
        coupon = Coupon.get_or_none(Coupon.code == code)
        problem = None
        if coupon is None:
            kind, problem = "coupon_unknown", "总部没有这张券 (unknown coupon)"
        elif coupon.used_sale == sale_id:
            continue
        elif coupon.status == "used" or (coupon.status == "held" and coupon.held_for != sale_id):
            kind = "coupon_double_use"
            problem = (
                f"券已被另一笔销售使用 (already used by sale {coupon.used_sale or coupon.held_for} "
                f"at {coupon.used_store or '?'})"
            )
        elif coupon.member_id and not _same(ctx, coupon.member_id, member.id):
            kind, problem = "coupon_invalid", "券不属于该会员 (another member's coupon)"
        elif coupon.template_id and coupon.template_id != c.get("template_id"):
            kind, problem = "coupon_invalid", "券模板不符 (not this coupon's template)"
        elif not valid_on(coupon.valid_from, coupon.expires_on, day):
            kind, problem = "coupon_invalid", f"券在 {day} 不可用 (not valid that day)"
        if problem is not None:
            HqException.create(
                kind=kind,
                member_id=member.id,
                store=ctx.item.store,
                seq=ctx.item.seq,
                ref=code,
                balance="coupons",
                amount=int(c.get("discount") or 0),
                details={"sale_id": sale_id, "reason": problem, "offline": body.get("offline")},
                created_at=ctx.now,
            )
            continue
        coupon.status = "used"
        coupon.held_for = None
        coupon.used_sale = sale_id
        coupon.used_store = ctx.item.store
        coupon.save()
        ctx.changes.add("coupon", code, coupon_state(coupon))


def _check_categories(ctx: Any, body: dict[str, Any], member: Member) -> None:
    """The categories the till priced coupons by, against HQ's products: a product HQ
    files under another category (changed since, or a till's mistake) opens a
    ``coupon_category`` exception with the coupons' discount; the sale posts as sold."""
    lines = body["pricing_input"]["lines"]
    skus = {line["sku"] for line in lines}
    known = {
        p.sku: (p.data or {}).get("category") or ""
        for p in Product.select().where(Product.sku.in_(list(skus)))
    }
    differs = [
        {"sku": line["sku"], "till": line.get("category", ""), "hq": known[line["sku"]]}
        for line in lines
        if line["sku"] in known and line.get("category", "") != known[line["sku"]]
    ]
    if differs:
        HqException.create(
            kind="coupon_category",
            member_id=member.id,
            store=ctx.item.store,
            seq=ctx.item.seq,
            ref=body["sale_id"],
            balance="coupons",
            amount=int(body.get("coupon_discount") or 0),
            details={"sale_id": body["sale_id"], "lines": differs},
            created_at=ctx.now,
        )


def _same(ctx: Any, one: str, other: str) -> bool:
    try:
        return ctx.book.member(one).id == ctx.book.member(other).id
    except NotFound:
        return one == other


def return_coupons(ctx: Any, body: dict[str, Any], sale: Any) -> None:
    """A return that takes back all the sale had left gives its coupons back
    (``coupons_restored``: the sale's codes); any other return gives none. Checked
    before the return posts; call before the return is added to the cache."""
    restored = body.get("coupons_restored") or []
    if not restored:
        return
    sold = [c.get("code") for c in sale.body.get("coupons") or []]
    if not isinstance(restored, list) or sorted(restored) != sorted(sold):
        raise _refused("coupons_restored", "退回的券不是原小票的券 (not the sale's coupons)")
    returned: dict[int, int] = {}
    for ret in [*ctx.cache.returns_of.get(body["sale_id"], []), body]:
        for line in ret["lines"]:
            returned[line["line_no"]] = returned.get(line["line_no"], 0) + line["qty"]
    if any(returned.get(line["line_no"], 0) < line["qty"] for line in sale.body["lines"]):
        raise _refused(
            "coupons_restored", "部分退货不退券 (only a full return gives the coupons back)"
        )
    for code in restored:
        coupon = Coupon.get_or_none(Coupon.code == code)
        if coupon is None or coupon.used_sale != body["sale_id"]:
            continue  # HQ never took it for this sale (a double use): nothing to give back
        coupon.status = "issued"
        coupon.used_sale = None
        coupon.used_store = None
        coupon.save()
        ctx.changes.add("coupon", code, coupon_state(coupon))


def apply_coupon_issue(ctx: Any, body: dict[str, Any]) -> None:
    """A coupon a till issued (up kind ``coupon_issue``): the template must exist and the
    dates be the template's for the day of issue (refused otherwise); a code HQ already
    holds for the same member and template is the same coupon (nothing more happens).
    Past the member's limit (two stores offline) the coupon stands, as the member was
    given it, and a ``coupon_over_limit`` exception tells staff."""
    code = body["code"]
    row = TemplateRow.get_or_none(TemplateRow.id == body["template_id"])
    if row is None:
        raise _refused("template_id", f"券模板不存在: {body['template_id']} (unknown template)")
    t = CouponTemplate.from_dict(row.data)
    member = ctx.book.member(body["member_id"])
    issued_on = _day(body["issued_at"])
    valid_from, expires_on = t.issue_window(issued_on)
    if (body.get("valid_from"), body.get("expires_on")) != (_iso(valid_from), _iso(expires_on)):
        raise _refused("expires_on", f"券有效期与模板 {t.id} 不符 (dates are not the template's)")
    existing = Coupon.get_or_none(Coupon.code == code)
    if existing is not None:
        if existing.template_id == t.id and _same(ctx, existing.member_id or "", member.id):
            return
        raise _refused("code", f"券号已被使用: {code} (code exists)")
    over = bool(t.per_member_limit) and _held(member.id, t.id) >= t.per_member_limit
    coupon = Coupon.create(
        code=code,
        member_id=member.id,
        value=t.value,
        status="issued",
        expires_on=expires_on,
        template_id=t.id,
        issued_at=ctx.now,
        valid_from=valid_from,
        source=body["source"],
        ref=body.get("ref"),
        issued_store=ctx.item.store,
    )
    audit.record(
        ctx.db, audit.till_actor(ctx.item.store, body.get("cashier")), "coupon.issue", code,
        store=ctx.item.store, at=ctx.now, template_id=t.id, member_id=member.id,
        source=body["source"], ref=body.get("ref"),
    )  # fmt: skip
    if over:
        HqException.create(
            kind="coupon_over_limit",
            member_id=member.id,
            store=ctx.item.store,
            seq=ctx.item.seq,
            ref=code,
            balance="coupons",
            amount=t.value,
            details={"template_id": t.id, "limit": t.per_member_limit},
            created_at=ctx.now,
        )
    ctx.changes.add("coupon", code, coupon_state(coupon))


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _day(text: str) -> dt.date:
    return dt.datetime.fromisoformat(str(text)).date()
